//! The Lumos connector against a real control plane, judged by Lumos's own artifacts: every
//! answer the CLI (`deprovisioner connector …`) and the HTTP endpoint give is validated with the
//! pydantic models of `connector-py` (pinned in `scripts/control-plane`), e.g.
//! `ListAccountsResponse.model_validate_json`. Also pagination to the end while bindings change,
//! the spec's error codes, and (ignored by default, a measurement) paging over 10,000 bindings:
//!
//!   cargo test --release --test connector -- --ignored --nocapture

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deprovisioner::fixtures::{self, group, service_account, service_account_in, user};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use support::sdk::validate;
use support::*;

/// `deprovisioner connector <capability> --json <request>` as the operator's ServiceAccount.
fn cli_as(kubeconfig: &Path, capability: &str, request: &Value) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["connector", capability, "--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--json", &request.to_string()])
        .env_remove("KUBECONFIG")
        .output()
        .expect("running deprovisioner connector");
    assert!(out.status.success(), "{capability}: exit {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{capability}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// As Lumos's agent runs it: with the chart's identity for the agent (deploy/rbac.yaml), never
/// the operator's.
fn cli(capability: &str, request: &Value) -> Value {
    cli_as(&cluster().kubeconfig_as("deprovisioner-lumos-agent"), capability, request)
}

/// Every item of a paged capability, following tokens to the end; each page is validated.
async fn all_pages(model: &str, mut call: impl AsyncFnMut(&Value) -> Value, size: u32) -> Vec<Value> {
    let mut items = vec![];
    let mut request = json!({"request": {}, "page": {"size": size}});
    let mut pages = vec![];
    loop {
        let answer = call(&request).await;
        assert!(answer.get("is_error").is_none(), "{answer}");
        items.extend(answer["response"].as_array().expect("a list").iter().cloned());
        let token = answer.get("page").and_then(|p| p.get("token")).cloned();
        pages.push(answer);
        match token {
            Some(t) => request = json!({"request": {}, "page": {"token": t, "size": size}}),
            None => break,
        }
    }
    validate(&pages.iter().map(|p| (model, p)).collect::<Vec<_>>());
    items
}

fn ids(items: &[Value], field: &str) -> Vec<String> {
    items.iter().map(|i| i[field].as_str().unwrap().to_string()).collect()
}

fn association(a: &Value) -> (String, String, String) {
    let s = |f: &str| a[f].as_str().unwrap().to_string();
    (s("account_id"), s("integration_specific_resource_id"), s("integration_specific_entitlement_id"))
}

#[tokio::test]
async fn every_capability_answers_what_the_sdk_accepts() {
    let c = admin().await;
    let ns = unique("conn");
    namespace(&c, &ns, &[]).await;
    let alice = format!("{ns}-alice@example.com");
    role_binding(
        &c,
        &ns,
        "devs",
        "edit",
        vec![user(&alice), service_account("builder"), user("system:admin"), group("system:authenticated")],
    )
    .await;
    create_role_binding(
        &c,
        fixtures::role_binding(&ns, "readers")
            .role_ref("Role", "reader")
            .subjects([group(&format!("{ns}-auditors"))])
            .build(),
    )
    .await;
    // Protected: the operator's own ServiceAccount and kube-system's are never listed.
    role_binding(&c, &ns, "own", "view", vec![service_account_in("deprovisioner", "deprovisioner")]).await;
    role_binding(&c, &ns, "sys", "view", vec![service_account_in("kube-system", "coredns")]).await;
    cluster_role_binding(&c, &format!("{ns}-admins"), "cluster-admin", &[], vec![user(&alice)]).await;

    let info = cli("info", &json!({}));
    let valid = cli("validate_credentials", &json!({"request": {}}));
    // Other tests in this binary add and remove bindings meanwhile, and each CLI call reads the
    // cluster afresh: the four lists are compared with each other below only when the accounts
    // were the same before and after them (one quiet moment), else they are taken again.
    let list_accounts = || cli("list_accounts", &json!({"request": {}, "page": {"size": 2000}}));
    let (accounts, resources, entitlements, associations) = {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let accounts = list_accounts();
            let resources = cli("list_resources", &json!({"request": {}}));
            let entitlements = cli("list_entitlements", &json!({"request": {}, "page": {"size": 2000}}));
            let associations = cli("find_entitlement_associations", &json!({"request": {}, "page": {"size": 2000}}));
            if list_accounts() == accounts && cli("list_resources", &json!({"request": {}})) == resources {
                break (accounts, resources, entitlements, associations);
            }
            assert!(attempt < 10, "the cluster's bindings never held still for one round of listings");
        }
    };
    let account = cli("get_account", &json!({"request": {"account_id": format!("User:{alice}")}}));
    validate(&[
        ("InfoResponse", &info),
        ("ValidateCredentialsResponse", &valid),
        ("ListAccountsResponse", &accounts),
        ("ListResourcesResponse", &resources),
        ("ListEntitlementsResponse", &entitlements),
        ("FindEntitlementAssociationsResponse", &associations),
        ("GetAccountResponse", &account),
    ]);

    assert_eq!(info["response"]["app_id"], "kubernetes");
    assert_eq!(valid["response"]["valid"], true, "{valid}");
    let kube_system: Namespace = Api::all(c.clone()).get("kube-system").await.unwrap();
    assert_eq!(valid["response"]["unique_tenant_id"].as_str(), kube_system.metadata.uid.as_deref());

    let account_ids: BTreeSet<String> =
        ids(accounts["response"].as_array().unwrap(), "integration_specific_id").into_iter().collect();
    for id in [format!("User:{alice}"), format!("ServiceAccount:{ns}/builder"), format!("Group:{ns}-auditors")] {
        assert!(account_ids.contains(&id), "{id} missing from {account_ids:?}");
    }
    for id in [
        "User:system:admin",
        "Group:system:authenticated",
        "ServiceAccount:deprovisioner/deprovisioner",
        "ServiceAccount:kube-system/coredns",
    ] {
        assert!(!account_ids.contains(id), "protected {id} listed");
    }
    assert!(ids(resources["response"].as_array().unwrap(), "integration_specific_id").contains(&ns));
    assert_eq!(resources["response"][0]["integration_specific_id"], "", "the cluster comes first");

    let found: BTreeSet<_> = associations["response"].as_array().unwrap().iter().map(association).collect();
    for want in [
        (format!("User:{alice}"), ns.clone(), "ClusterRole:edit".to_string()),
        (format!("User:{alice}"), String::new(), "ClusterRole:cluster-admin".to_string()),
        (format!("ServiceAccount:{ns}/builder"), ns.clone(), "ClusterRole:edit".to_string()),
        (format!("Group:{ns}-auditors"), ns.clone(), "Role:reader".to_string()),
    ] {
        assert!(found.contains(&want), "{want:?} missing");
    }
    assert!(!found.iter().any(|(a, r, _)| r == &ns && a.contains("deprovisioner/deprovisioner")));
    let ents = entitlements["response"].as_array().unwrap();
    let reader = ents
        .iter()
        .find(|e| e["integration_specific_resource_id"] == json!(ns) && e["integration_specific_id"] == "Role:reader")
        .expect("Role reader listed");
    assert_eq!(reader["entitlement_type"], "namespace_role");
    assert_eq!(reader["extra_data"]["bindings"], json!([format!("RoleBinding {ns}/readers")]));
    // The view role is bound in this namespace only to protected accounts: not an entitlement here.
    assert!(
        !ents.iter().any(|e| e["integration_specific_resource_id"] == json!(ns)
            && e["integration_specific_id"] == "ClusterRole:view")
    );

    // Every association points at a listed account, entitlement and resource; every entitlement
    // at a declared type and a listed resource of that type's resource type.
    let resource_ids: BTreeSet<String> =
        ids(resources["response"].as_array().unwrap(), "integration_specific_id").into_iter().collect();
    let entitlement_keys: BTreeSet<(String, String)> = ents
        .iter()
        .map(|e| {
            let s = |f: &str| e[f].as_str().unwrap().to_string();
            (s("integration_specific_resource_id"), s("integration_specific_id"))
        })
        .collect();
    for (a, r, e) in &found {
        assert!(account_ids.contains(a), "association of unlisted account {a}");
        assert!(resource_ids.contains(r), "association on unlisted resource {r:?}");
        assert!(entitlement_keys.contains(&(r.clone(), e.clone())), "association of unlisted entitlement {e} on {r:?}");
    }
    let types = info["response"]["entitlement_types"].as_array().unwrap();
    for e in ents {
        let t = types.iter().find(|t| t["type_id"] == e["entitlement_type"]).expect("a declared entitlement type");
        let resource = e["integration_specific_resource_id"].as_str().unwrap();
        let resource_type = resources["response"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["integration_specific_id"] == resource)
            .map(|r| r["resource_type"].clone());
        assert_eq!(resource_type.as_ref(), Some(&t["resource_type_id"]), "{e}");
    }

    assert_eq!(account["response"]["email"], json!(alice), "{account}");
    assert_eq!(account["response"]["account_type"], "user");
    assert_eq!(account["response"]["extra_data"]["binding_count"], 2);
}

#[tokio::test]
async fn pages_reach_the_end_once_each_while_bindings_change() {
    let c = admin().await;
    let ns = unique("pages");
    namespace(&c, &ns, &[]).await;
    for i in 0..30 {
        role_binding(&c, &ns, &format!("rb-{i:02}"), "view", vec![user(&format!("{ns}-u{i:02}"))]).await;
    }
    let api: Api<RoleBinding> = Api::namespaced(c.clone(), &ns);
    let mut calls = 0;
    let items = all_pages(
        "ListAccountsResponse",
        async |req| {
            calls += 1;
            let answer = cli("list_accounts", req);
            if calls == 2 {
                // Between pages: one account goes, one that sorts first and one that sorts last arrive.
                api.delete("rb-29", &DeleteParams::default()).await.unwrap();
                for (name, u) in [("rb-first", format!("{ns}-a-first")), ("rb-last", format!("{ns}-zz-last"))] {
                    let rb = fixtures::role_binding(&ns, name).role("view").subjects([user(&u)]).build();
                    api.create(&PostParams::default(), &rb).await.unwrap();
                }
            }
            answer
        },
        7,
    )
    .await;
    let ours: Vec<String> = ids(&items, "integration_specific_id")
        .into_iter()
        .filter(|id| id.starts_with(&format!("User:{ns}-")))
        .collect();
    let unique_ids: BTreeSet<_> = ours.iter().cloned().collect();
    assert_eq!(unique_ids.len(), ours.len(), "an account was listed twice: {ours:?}");
    for i in 0..29 {
        assert!(unique_ids.contains(&format!("User:{ns}-u{i:02}")), "u{i:02} (there throughout) was skipped");
    }
    assert!(unique_ids.contains(&format!("User:{ns}-zz-last")), "an account added after the cursor is listed");
    assert!(calls > 2, "paged in {calls} calls");

    // Associations page to the end as well, each once.
    let assoc =
        all_pages("FindEntitlementAssociationsResponse", async |req| cli("find_entitlement_associations", req), 9)
            .await;
    let keys: Vec<_> = assoc.iter().map(association).collect();
    let set: BTreeSet<_> = keys.iter().cloned().collect();
    assert_eq!(set.len(), keys.len(), "an association was listed twice");
    assert!(set.contains(&(format!("User:{ns}-u00"), ns.clone(), "ClusterRole:view".into())));
    let ents = all_pages("ListEntitlementsResponse", async |req| cli("list_entitlements", req), 3).await;
    assert!(!ents.is_empty());
    let res = all_pages("ListResourcesResponse", async |req| cli("list_resources", req), 2).await;
    assert!(ids(&res, "integration_specific_id").contains(&ns));
}

#[tokio::test]
async fn errors_are_the_specs_error_responses() {
    let c = admin().await;
    let ns = unique("errors");
    namespace(&c, &ns, &[]).await;
    role_binding(&c, &ns, "two", "view", vec![user(&format!("{ns}-a")), user(&format!("{ns}-b"))]).await;
    let token = cli("list_accounts", &json!({"request": {}, "page": {"size": 1}}))["page"]["token"].clone();
    assert!(token.is_string(), "two accounts, pages of one: a token");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("delete_account", json!({"request": {"account_id": "User:x"}}), "unsupported_operation"),
        ("no_such_capability", json!({"request": {}}), "unsupported_operation"),
        ("list_accounts", json!({"page": {}}), "bad_request"),
        ("list_accounts", json!({"request": []}), "bad_request"),
        ("list_accounts", json!({"request": {}, "page": {"token": "not-ours"}}), "invalid_page_token"),
        ("find_entitlement_associations", json!({"request": {}, "page": {"token": token}}), "invalid_page_token"),
        ("get_account", json!({"request": {}}), "bad_request"),
        ("get_account", json!({"request": {"account_id": "alice"}}), "invalid_value"),
        ("get_account", json!({"request": {"account_id": "User:system:admin"}}), "not_found"),
        ("get_account", json!({"request": {"account_id": "User:nobody-at-all"}}), "not_found"),
    ];
    let mut answers = vec![];
    for (capability, request, code) in &cases {
        let a = cli(capability, request);
        assert_eq!(a["is_error"], true, "{capability} {request}: {a}");
        assert_eq!(a["error"]["error_code"], *code, "{capability} {request}: {a}");
        assert_eq!(a["error"]["app_id"], "kubernetes");
        answers.push(a);
    }
    // Malformed JSON, through a file and through standard input.
    let file = cluster().dir.join(format!("{}.json", unique("bad")));
    std::fs::write(&file, "{not json").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["connector", "list_accounts", "--json-file", file.to_str().unwrap()])
        .args(["--kubeconfig", cluster().operator_kubeconfig.to_str().unwrap()])
        .output()
        .unwrap();
    let from_file: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_file["error"]["error_code"], "bad_request");
    let mut child = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["connector", "list_resources", "--kubeconfig", cluster().operator_kubeconfig.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(br#"{"request": {}}"#).unwrap();
    let from_stdin: Value = serde_json::from_slice(&child.wait_with_output().unwrap().stdout).unwrap();
    assert!(from_stdin["response"].is_array(), "{from_stdin}");
    // A large answer into a gzip file, as the SDK's CLI writes it.
    let gz = cluster().dir.join(format!("{}.json.gz", unique("result")));
    let out = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["connector", "list_resources", "--json", r#"{"request": {}}"#])
        .args(["--kubeconfig", cluster().operator_kubeconfig.to_str().unwrap()])
        .args(["--result-file-path", gz.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()), &mut text)
        .unwrap();
    let from_gz: Value = serde_json::from_str(&text).unwrap();
    assert!(from_gz["response"].is_array(), "{from_gz}");
    // No cluster at all: `info` still answers, a read says why it cannot.
    let offline = |capability: &str| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
            .args(["connector", capability, "--json", r#"{"request": {}}"#])
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let offline_info = offline("info");
    assert_eq!(offline_info["response"]["app_id"], "kubernetes");
    let no_cluster = offline("list_accounts");
    assert_eq!(no_cluster["error"]["error_code"], "connection_rejected", "{no_cluster}");
    // An identity without the operator's RBAC: validate_credentials says what it lacks.
    let nobody = cli_as(&cluster().kubeconfig_as(&unique("nobody")), "validate_credentials", &json!({"request": {}}));
    assert_eq!(nobody["error"]["error_code"], "permission_denied", "{nobody}");
    assert!(nobody["error"]["message"].as_str().unwrap().contains("list rbac.authorization.k8s.io/rolebindings"));
    let mut all: Vec<(&str, &Value)> = answers.iter().map(|a| ("ErrorResponse", a)).collect();
    all.push(("ErrorResponse", &from_file));
    all.push(("ErrorResponse", &nobody));
    all.push(("ListResourcesResponse", &from_stdin));
    all.push(("ListResourcesResponse", &from_gz));
    all.push(("InfoResponse", &offline_info));
    all.push(("ErrorResponse", &no_cluster));
    validate(&all);
}

/// The connector's read secret in the tests (`--connector-secret-file`).
const CONNECTOR_READ: &str = "connector-read-secret-0123456789";
/// The connector's unassign secret in the tests (`--connector-unassign-secret-file`).
const CONNECTOR_UNASSIGN: &str = "connector-unassign-secret-0123456789";

/// An operator's options serving the connector behind its two secrets (besides the webhook's
/// [`SECRET`]).
fn with_connector(opts: OperatorOpts) -> OperatorOpts {
    let file = |name: &str, secret: &str| {
        let path = opts.cluster.dir.join(name);
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        path.to_str().unwrap().to_string()
    };
    let read = file("connector-read.secret", CONNECTOR_READ);
    let unassign = file("connector-unassign.secret", CONNECTOR_UNASSIGN);
    opts.args(&["--connector-secret-file", &read, "--connector-unassign-secret-file", &unassign])
}

fn operator() -> &'static Operator {
    static OP: OnceLock<Operator> = OnceLock::new();
    OP.get_or_init(|| Operator::start(with_connector(OperatorOpts::default())))
}

async fn http(op: &Operator, capability: &str, request: &Value, secret: Option<&str>) -> (u16, Value) {
    let auth = secret.map(|s| format!("Bearer {s}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let (status, body, _) =
        op.post_raw(&format!("/connectors/kubernetes/{capability}"), &headers, request.to_string().into_bytes()).await;
    (status, body)
}

#[tokio::test]
async fn http_serves_the_same_answers_behind_the_connectors_own_secrets() {
    let c = admin().await;
    let ns = unique("http");
    namespace(&c, &ns, &[]).await;
    role_binding(&c, &ns, "devs", "edit", vec![user(&format!("{ns}-bob"))]).await;
    let op = operator();
    let (status, accounts) =
        http(op, "list_accounts", &json!({"request": {}, "page": {"size": 2000}}), Some(CONNECTOR_READ)).await;
    assert_eq!(status, 200);
    assert!(
        ids(accounts["response"].as_array().unwrap(), "integration_specific_id").contains(&format!("User:{ns}-bob"))
    );
    let (_, info) = http(op, "info", &json!({}), Some(CONNECTOR_READ)).await;
    let (_, one) =
        http(op, "get_account", &json!({"request": {"account_id": format!("User:{ns}-bob")}}), Some(CONNECTOR_READ))
            .await;
    let (_, valid) = http(op, "validate_credentials", &json!({"request": {}}), Some(CONNECTOR_READ)).await;
    let (_, unsupported) = http(op, "create_account", &json!({"request": {}}), Some(CONNECTOR_READ)).await;
    assert_eq!(unsupported["error"]["error_code"], "unsupported_operation");
    // The unassign secret reads too (other tests change bindings meanwhile: compare this one's).
    let (status, also) = http(
        op,
        "get_account",
        &json!({"request": {"account_id": format!("User:{ns}-bob")}}),
        Some(CONNECTOR_UNASSIGN),
    )
    .await;
    assert_eq!((status, &also), (200, &one));
    let (status, denied) = http(op, "list_accounts", &json!({"request": {}}), None).await;
    assert_eq!((status, denied["error"]["error_code"].as_str()), (401, Some("unauthorized")), "{denied}");
    let (status, wrong) = http(op, "list_accounts", &json!({"request": {}}), Some("wrong-secret-0123456789")).await;
    assert_eq!(status, 401, "{wrong}");
    // The webhook's secret opens nothing of the connector: not the access map, not a removal.
    for capability in ["find_entitlement_associations", "list_accounts", "info", "unassign_entitlement"] {
        let (status, webhooks) = http(op, capability, &json!({"request": {}}), Some(SECRET)).await;
        assert_eq!((status, webhooks["error"]["error_code"].as_str()), (401, Some("unauthorized")), "{webhooks}");
        let message = webhooks["error"]["message"].as_str().unwrap();
        assert!(message.contains("the connector's secrets (not the webhook's)"), "{message}");
    }
    // Nor does a connector secret open the webhook.
    let auth = format!("Bearer {CONNECTOR_UNASSIGN}");
    let body = serde_json::to_vec(&payload("kubernetes", "someone@example.com", &[])).unwrap();
    let (status, _, _) = op
        .post_raw(
            "/webhooks/lumos/deprovision",
            &[("authorization", &auth), ("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(status, 401, "a connector secret on the webhook");
    // The access map the operator shares between calls follows every change at once: a binding
    // created or emptied just before a call is seen by it.
    let carol = format!("User:{ns}-carol");
    let get = |id: &str| json!({"request": {"account_id": id}});
    role_binding(&c, &ns, "new", "view", vec![user(&format!("{ns}-carol"))]).await;
    let (status, found) = http(op, "get_account", &get(&carol), Some(CONNECTOR_READ)).await;
    assert_eq!((status, found["response"]["integration_specific_id"].as_str()), (200, Some(carol.as_str())), "{found}");
    let api: Api<RoleBinding> = Api::namespaced(c.clone(), &ns);
    let mut emptied = get_rb(&c, &ns, "new").await.unwrap();
    emptied.subjects = None;
    api.replace("new", &PostParams::default(), &emptied).await.unwrap();
    let (_, gone) = http(op, "get_account", &get(&carol), Some(CONNECTOR_READ)).await;
    assert_eq!(gone["error"]["error_code"], "not_found", "{gone}");
    // Pagination over HTTP too.
    let items = all_pages(
        "FindEntitlementAssociationsResponse",
        async |req| http(op, "find_entitlement_associations", req, Some(CONNECTOR_READ)).await.1,
        5,
    )
    .await;
    assert!(
        items.iter().map(association).any(|a| a == (format!("User:{ns}-bob"), ns.clone(), "ClusterRole:edit".into()))
    );
    validate(&[
        ("ListAccountsResponse", &accounts),
        ("InfoResponse", &info),
        ("GetAccountResponse", &one),
        ("ValidateCredentialsResponse", &valid),
        ("ErrorResponse", &unsupported),
        ("ErrorResponse", &denied),
        ("ErrorResponse", &wrong),
    ]);
}

/// Without a connector secret the endpoint is not served: every call is refused 404 saying how
/// to turn it on, the webhook's secret included.
#[tokio::test]
async fn without_a_connector_secret_the_connector_is_not_served() {
    let op = Operator::start(OperatorOpts::default().args(&["--leader-election=false", "--controller=false"]));
    for (capability, secret) in
        [("list_accounts", Some(SECRET)), ("info", None), ("unassign_entitlement", Some(CONNECTOR_UNASSIGN))]
    {
        let (status, answer) = http(&op, capability, &json!({"request": {}}), secret).await;
        assert_eq!((status, answer["error"]["error_code"].as_str()), (404, Some("not_found")), "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("not served") && message.contains("--connector-secret-file"), "{message}");
        validate(&[("ErrorResponse", &answer)]);
    }
    assert!(op.log_text().contains("the Lumos connector is not served over HTTP"), "{}", op.log_text());
}

fn unassign(account: &str, resource_type: &str, resource: &str, entitlement_type: &str, role: &str) -> Value {
    json!({"request": {
        "account_integration_specific_id": account,
        "resource_type": resource_type,
        "resource_integration_specific_id": resource,
        "entitlement_type": entitlement_type,
        "entitlement_integration_specific_id": role,
    }})
}

/// The connector's requests for one account, newest last.
async fn connector_records(c: &kube::Client, account: &str) -> Vec<deprovisioner::crd::DeprovisionRequest> {
    let mut found: Vec<_> = requests_for(c, account)
        .await
        .into_iter()
        .filter(|r| r.spec.source == deprovisioner::crd::RequestSource::LumosConnector)
        .collect();
    found.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
    found
}

#[tokio::test]
async fn unassign_entitlement_removes_exactly_that_grant_through_a_record() {
    let c = admin().await;
    let ns = unique("unassign");
    namespace(&c, &ns, &[]).await;
    let ann = format!("{ns}-ann@example.com");
    let bob = format!("{ns}-bob@example.com");
    role_binding(&c, &ns, "editors", "edit", vec![user(&ann), user(&bob)]).await;
    role_binding(&c, &ns, "viewers", "view", vec![user(&ann)]).await;
    role_binding(&c, &ns, "bots", "edit", vec![service_account("ci"), user(&bob)]).await;
    // The cluster's admin bounds what Lumos may remove: `edit` in this namespace, nothing else.
    policy(
        &c,
        &unique("lumos-connector"),
        json!({"application": {"appId": "kubernetes"},
               "subjects": [{"kind": "LumosAccount", "name": "{{custom_fields.accountId}}"}],
               "rules": [{"entitlements": {"namespaces": [ns], "roles": ["edit"]}}]}),
    )
    .await;
    let op = operator();
    let ann_id = format!("User:{ann}");
    let edit = |account: &str| unassign(account, "namespace", &ns, "namespace_role", "ClusterRole:edit");

    // The read secret may not remove anything: 403 naming what is missing, and nothing recorded.
    let (status, forbidden) = http(op, "unassign_entitlement", &edit(&ann_id), Some(CONNECTOR_READ)).await;
    assert_eq!((status, forbidden["error"]["error_code"].as_str()), (403, Some("permission_denied")), "{forbidden}");
    let message = forbidden["error"]["message"].as_str().unwrap();
    assert!(message.contains("may only read") && message.contains("--connector-unassign-secret-file"), "{message}");
    assert!(connector_records(&c, &ann_id).await.is_empty(), "nothing recorded");
    assert_eq!(
        names(&get_rb(&c, &ns, "editors").await.unwrap().subjects),
        [format!("User:{ann}"), format!("User:{bob}")]
    );

    // Over HTTP with the unassign secret: the grant goes, and exactly that grant.
    let (status, done) = http(op, "unassign_entitlement", &edit(&ann_id), Some(CONNECTOR_UNASSIGN)).await;
    assert_eq!((status, &done), (200, &json!({"response": {"unassigned": true}})));
    assert_eq!(names(&get_rb(&c, &ns, "editors").await.unwrap().subjects), [format!("User:{bob}")]);
    assert_eq!(names(&get_rb(&c, &ns, "viewers").await.unwrap().subjects), [format!("User:{ann}")]);
    let held = |items: &[Value], account: &str, role: &str| {
        items.iter().map(association).any(|a| a == (account.to_string(), ns.clone(), role.to_string()))
    };
    let after = all_pages(
        "FindEntitlementAssociationsResponse",
        async |req| http(op, "find_entitlement_associations", req, Some(CONNECTOR_READ)).await.1,
        500,
    )
    .await;
    assert!(!held(&after, &ann_id, "ClusterRole:edit"), "the association is gone");
    assert!(held(&after, &ann_id, "ClusterRole:view"), "the other role stays");
    // The record says what was done, and `kubectl get dpr` shows it.
    let records = connector_records(&c, &ann_id).await;
    assert_eq!(records.len(), 1, "one record");
    let record = &records[0];
    let st = record.status.as_ref().unwrap();
    assert_eq!((st.phase, st.removed), (deprovisioner::crd::Phase::Succeeded, 1), "{st:?}");
    assert_eq!(record.spec.permissions[0].value, format!("namespace_role/{ns}/ClusterRole:edit"));
    let shown = cluster().kubectl(&["get", "dpr", &name_of(record)]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&ann_id) && shown.contains("kubernetes") && shown.contains("Succeeded"), "{shown}");

    // Through the CLI, as the operator's identity (Lumos's on-premise agent): a ServiceAccount.
    let sa = cli("unassign_entitlement", &edit(&format!("ServiceAccount:{ns}/ci")));
    assert_eq!(sa, json!({"response": {"unassigned": true}}));
    assert_eq!(names(&get_rb(&c, &ns, "bots").await.unwrap().subjects), [format!("User:{bob}")]);

    // Again: the access is already gone, which is what was asked (a record of its own).
    let (_, again) = http(op, "unassign_entitlement", &edit(&ann_id), Some(CONNECTOR_UNASSIGN)).await;
    assert_eq!(again, json!({"response": {"unassigned": true}}));
    assert_eq!(connector_records(&c, &ann_id).await.len(), 2);

    // What the policy does not allow is refused with the record's reason, and nothing changes.
    let (_, view) = http(
        op,
        "unassign_entitlement",
        &unassign(&ann_id, "namespace", &ns, "namespace_role", "ClusterRole:view"),
        Some(CONNECTOR_UNASSIGN),
    )
    .await;
    assert_eq!(view["error"]["error_code"], "permission_denied", "{view}");
    let message = view["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("role \"view\" is not in roles (edit)") && message.contains("record: deprovisionrequest/"),
        "{message}"
    );
    assert_eq!(names(&get_rb(&c, &ns, "viewers").await.unwrap().subjects), [format!("User:{ann}")]);
    let cluster_wide = cli("unassign_entitlement", &unassign(&ann_id, "", "", "cluster_role", "ClusterRole:edit"));
    assert_eq!(cluster_wide["error"]["error_code"], "permission_denied", "{cluster_wide}");
    // A protected account is refused before anything is recorded.
    let (_, protected) =
        http(op, "unassign_entitlement", &edit("ServiceAccount:deprovisioner/deprovisioner"), Some(CONNECTOR_UNASSIGN))
            .await;
    assert_eq!(protected["error"]["error_code"], "permission_denied", "{protected}");
    let system = cli("unassign_entitlement", &edit("User:system:admin"));
    assert_eq!(system["error"]["error_code"], "permission_denied", "{system}");
    assert!(connector_records(&c, "User:system:admin").await.is_empty());
    // Ids this connector never gave out.
    let bad_account = cli("unassign_entitlement", &edit(&ann));
    assert_eq!(bad_account["error"]["error_code"], "invalid_value", "{bad_account}");
    let bad_resource = cli("unassign_entitlement", &unassign(&ann_id, "", &ns, "namespace_role", "ClusterRole:edit"));
    assert_eq!(bad_resource["error"]["error_code"], "invalid_value", "{bad_resource}");
    let missing = cli("unassign_entitlement", &json!({"request": {"account_integration_specific_id": ann_id}}));
    assert_eq!(missing["error"]["error_code"], "bad_request", "{missing}");

    validate(&[
        ("ErrorResponse", &forbidden),
        ("UnassignEntitlementResponse", &done),
        ("UnassignEntitlementResponse", &sa),
        ("UnassignEntitlementResponse", &again),
        ("ErrorResponse", &view),
        ("ErrorResponse", &cluster_wide),
        ("ErrorResponse", &protected),
        ("ErrorResponse", &system),
        ("ErrorResponse", &bad_account),
        ("ErrorResponse", &bad_resource),
        ("ErrorResponse", &missing),
    ]);
}

/// Whoever may create DeprovisionRequests but is not the operator cannot borrow the connector's
/// authority (a `LumosAccount` subject) or the webhook's: the admission policy refuses the source.
#[tokio::test]
async fn only_the_operator_may_record_a_request_as_the_connector() {
    use deprovisioner::crd::{DeprovisionRequest, RequestSource};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef};
    let c = admin().await;
    let sa = unique("creator");
    let role = ClusterRole {
        metadata: kube::api::ObjectMeta { name: Some(sa.clone()), ..Default::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["access.deprovisioner.dev".into()]),
            resources: Some(vec!["deprovisionrequests".into()]),
            verbs: vec!["create".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(c.clone()).create(&PostParams::default(), &role).await.unwrap();
    let binding = ClusterRoleBinding {
        metadata: kube::api::ObjectMeta { name: Some(sa.clone()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: sa.clone(),
        },
        subjects: Some(vec![service_account_in("deprovisioner", &sa)]),
    };
    Api::<ClusterRoleBinding>::all(c.clone()).create(&PostParams::default(), &binding).await.unwrap();
    let as_creator = client_for(&cluster().kubeconfig_as(&sa)).await;
    let api = Api::<DeprovisionRequest>::all(as_creator);
    let dry = PostParams { dry_run: true, ..Default::default() };
    let spec = deprovisioner::connector::answer::unassign_request(
        &"User:victim@example.com".parse().unwrap(),
        &deprovisioner::connector::model::Entitlement::parse("cluster_role", "ClusterRole:admin", "", "").unwrap(),
    );
    // RBAC lets this identity create requests (a Manual one passes admission)...
    let mut manual = spec.clone();
    manual.source = RequestSource::Manual;
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = api.create(&dry, &fixtures::request(&unique("manual"), manual.clone())).await {
        assert!(Instant::now() < deadline, "the creator's RBAC is not in effect: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...but not as the connector, nor as the webhook.
    for (source, says) in [
        (RequestSource::LumosConnector, "only the deprovisioner's Lumos connector"),
        (RequestSource::LumosWebhook, "only the deprovisioner webhook"),
    ] {
        let mut forged = spec.clone();
        forged.source = source;
        let err = api.create(&dry, &fixtures::request(&unique("forged"), forged)).await.unwrap_err();
        assert!(err.to_string().contains(says), "{source:?}: {err}");
    }
    // Lumos's agent records what unassign_entitlement records, and nothing wider: not another
    // source, not another app (whose policies could reach other users or external accounts), not
    // another user, target or entitlement count.
    let agent = Api::<DeprovisionRequest>::all(client_for(&cluster().kubeconfig_as("deprovisioner-lumos-agent")).await);
    agent.create(&dry, &fixtures::request(&unique("agent"), spec.clone())).await.unwrap();
    let mut wider: Vec<(&str, deprovisioner::crd::DeprovisionRequestSpec)> = vec![];
    for source in [RequestSource::Manual, RequestSource::LumosWebhook] {
        wider.push(("another source", deprovisioner::crd::DeprovisionRequestSpec { source, ..spec.clone() }));
    }
    let mut other_app = spec.clone();
    other_app.application.app_id = Some("payments".into());
    wider.push(("another app", other_app));
    let mut other_target = spec.clone();
    other_target.target_user.email = "User:someone-else@example.com".into();
    wider.push(("a target that is not the account", other_target));
    let mut whole_app = spec.clone();
    whole_app.permissions.clear();
    wider.push(("no entitlement (the whole app)", whole_app));
    let mut more_fields = spec.clone();
    more_fields.custom_fields.insert("username".into(), "victim".into());
    wider.push(("other custom fields", more_fields));
    for (what, other) in wider {
        let err = agent.create(&dry, &fixtures::request(&unique("agent"), other)).await.unwrap_err();
        assert!(
            err.to_string().contains("Lumos's agent") || err.to_string().contains("only the deprovisioner webhook"),
            "{what}: {err}"
        );
    }
}

/// The chart's memory limit (`resources.limits.memory` in charts/deprovisioner/values.yaml).
const CHART_MEMORY_LIMIT_MIB: f64 = 256.0;

/// Creates `n` RoleBindings over 100 namespaces `{prefix}-NNN`, 64 at a time: each names a person
/// of its own and a team group shared by 100 bindings (10,000 make 10,100 accounts and 20,000
/// associations).
async fn many_bindings(c: &kube::Client, prefix: &str, n: usize) -> Duration {
    let namespaces = 100;
    for i in 0..namespaces {
        namespace(c, &format!("{prefix}-{i:03}"), &[]).await;
    }
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let c = c.clone();
            async move {
                let ns = format!("{prefix}-{:03}", i % namespaces);
                let rb = fixtures::role_binding(&ns, &format!("rb-{i:05}"))
                    .role(if i % 3 == 0 { "edit" } else { "view" })
                    .subjects([user(&format!("person-{i:05}@example.com")), group(&format!("team-{}", i / 100))])
                    .build();
                Api::<RoleBinding>::namespaced(c, &ns).create(&PostParams::default(), &rb).await.unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    started.elapsed()
}

/// Follows `pages` pages of `list_accounts` of `size` items; returns the ids in order.
async fn list_accounts_pages(op: &Operator, secret: &str, size: u32, pages: usize) -> Vec<String> {
    let mut request = json!({"request": {}, "page": {"size": size}});
    let mut out = vec![];
    for _ in 0..pages {
        let (status, a) = http(op, "list_accounts", &request, Some(secret)).await;
        assert_eq!(status, 200, "{a}");
        assert!(a.get("is_error").is_none(), "{a}");
        let items = a["response"].as_array().unwrap();
        assert_eq!(items.len(), size as usize, "a full page");
        out.extend(ids(items, "integration_specific_id"));
        let token = a["page"]["token"].clone();
        assert!(token.is_string(), "more pages follow: {a}");
        request = json!({"request": {}, "page": {"token": token, "size": size}});
    }
    out
}

/// 30 concurrent `list_accounts` callers at page size 1 (each following its tokens for 10 pages),
/// then 30 at the largest page size, over 10,000 RoleBindings, with the runtime threads of a
/// 16-core node: the operator's peak resident memory (VmHWM) stays under the chart's limit, and
/// every page is right.
#[tokio::test]
async fn concurrent_listings_stay_under_the_charts_memory_limit() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let took = many_bindings(&c, "mem", 10_000).await;
    eprint_uncaptured(&format!("created 10,000 RoleBindings in {}", secs(took)));
    // 16 runtime threads, as on a 16-core node without a CPU limit: up to 16 calls computing at
    // once (2 on this machine's 2 cores would hide what many cores do).
    let op = Operator::start(with_connector(OperatorOpts::on(cl)).env(&[("TOKIO_WORKER_THREADS", "16")]));
    let secret = CONNECTOR_READ;
    // Ready: the index has listed every binding.
    let (_, warm) = http(&op, "list_accounts", &json!({"request": {}, "page": {"size": 1}}), Some(secret)).await;
    assert!(warm["response"].is_array(), "{warm}");
    let (rss_ready, hwm_ready) = (proc_status_mib(op.pid(), "VmRSS:"), proc_status_mib(op.pid(), "VmHWM:"));

    let started = Instant::now();
    let small = futures::future::join_all((0..30).map(|_| list_accounts_pages(&op, secret, 1, 10))).await;
    let small_took = started.elapsed();
    for pages in &small {
        assert_eq!(pages.len(), 10);
        assert!(pages.windows(2).all(|w| w[0] < w[1]), "pages continue in order: {pages:?}");
        assert_eq!(pages, &small[0], "every caller sees the same first accounts");
    }
    let hwm_small = proc_status_mib(op.pid(), "VmHWM:");
    let started = Instant::now();
    let max = deprovisioner::connector::page::MAX_SIZE as u32;
    let large = futures::future::join_all((0..30).map(|_| list_accounts_pages(&op, secret, max, 1))).await;
    let large_took = started.elapsed();
    assert!(large.iter().all(|p| p.len() == max as usize));
    let hwm = proc_status_mib(op.pid(), "VmHWM:");
    eprint_uncaptured(&format!(
        "operator memory over 10,000 RoleBindings: {rss_ready:.0} MiB resident once ready (peak {hwm_ready:.0} MiB); \
         peak {hwm_small:.0} MiB after 30 concurrent list_accounts callers x 10 pages of 1 ({}), \
         peak {hwm:.0} MiB after 30 concurrent pages of {max} ({}); the chart's limit is {CHART_MEMORY_LIMIT_MIB:.0} MiB",
        secs(small_took),
        secs(large_took),
    ));
    assert!(hwm < CHART_MEMORY_LIMIT_MIB, "peak {hwm:.0} MiB is over the chart's limit");
}

/// Seconds, to two decimals.
fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::test]
#[ignore = "a measurement: 10,000 bindings"]
async fn paging_over_ten_thousand_bindings() {
    let n: usize = std::env::var("BINDINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let namespaces = 100;
    let cl = own_cluster();
    let c = cl.admin().await;
    for i in 0..namespaces {
        namespace(&c, &format!("scale-{i:03}"), &[]).await;
    }
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let c = c.clone();
            async move {
                let ns = format!("scale-{:03}", i % namespaces);
                // Each binding: one person of their own and a team group shared by 100 bindings.
                let rb = fixtures::role_binding(&ns, &format!("rb-{i:05}"))
                    .role(if i % 3 == 0 { "edit" } else { "view" })
                    .subjects([user(&format!("person-{i:05}@example.com")), group(&format!("team-{}", i / 100))])
                    .build();
                Api::<RoleBinding>::namespaced(c, &ns).create(&PostParams::default(), &rb).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let count = Api::<RoleBinding>::all(c.clone()).list_metadata(&ListParams::default()).await.unwrap().items.len();
    println!("created {n} RoleBindings in {} ({count} in the cluster)", secs(started.elapsed()));

    let kubeconfig = cl.operator_kubeconfig.clone();
    for (capability, model) in [
        ("list_accounts", "ListAccountsResponse"),
        ("find_entitlement_associations", "FindEntitlementAssociationsResponse"),
    ] {
        for size in [200u32, 1000] {
            let mut per_page = vec![];
            let started = Instant::now();
            let items = all_pages(
                model,
                async |req| {
                    let t = Instant::now();
                    let a = cli_as(&kubeconfig, capability, req);
                    per_page.push(t.elapsed());
                    a
                },
                size,
            )
            .await;
            let total = started.elapsed();
            per_page.sort();
            println!(
                "CLI {capability}, page size {size}: {} items in {} pages, {} in all (with validation); per page (a new process each): median {}, slowest {}",
                items.len(),
                per_page.len(),
                secs(total),
                secs(per_page[per_page.len() / 2]),
                secs(per_page[per_page.len() - 1]),
            );
        }
    }
    let op = Operator::start(with_connector(OperatorOpts::on(cl)));
    for capability in ["list_accounts", "find_entitlement_associations"] {
        let mut per_page = vec![];
        let mut request = json!({"request": {}, "page": {"size": 200}});
        let mut items = 0;
        loop {
            let t = Instant::now();
            let (_, a) = http(&op, capability, &request, Some(CONNECTOR_READ)).await;
            per_page.push(t.elapsed());
            items += a["response"].as_array().map_or(0, Vec::len);
            match a.get("page").and_then(|p| p.get("token")) {
                Some(tok) => request = json!({"request": {}, "page": {"token": tok, "size": 200}}),
                None => break,
            }
        }
        per_page.sort();
        let total: Duration = per_page.iter().sum();
        println!(
            "HTTP {capability}, page size 200: {items} items in {} pages, {} in all; per page median {}, slowest {}",
            per_page.len(),
            secs(total),
            secs(per_page[per_page.len() / 2]),
            secs(per_page[per_page.len() - 1]),
        );
    }
}

/// Last activity (issue 26) from shards written as the audit receiver writes them: the agent's
/// CLI (allowed to read the shards by name only, as the chart grants) and the HTTP endpoint
/// answer `get_last_activity` and `list_activity_records` with what the SDK accepts; accounts
/// never seen are left out, groups and protected accounts are never answered, bad ids are the
/// spec's `invalid_value`.
#[tokio::test]
async fn last_activity_from_the_activity_store_over_the_cli_and_http() {
    use support::activity_store::*;
    let c = admin().await;
    let ns = unique("act");
    let prefix = "deprovisioner-activity";
    grant_shard_reads(&c, "deprovisioner-lumos-agent", prefix).await;
    grant_shard_reads(&c, "deprovisioner", prefix).await;
    let (ann, bot) = (format!("User:{ns}-ann@example.com"), format!("ServiceAccount:{ns}/bot"));
    let since: k8s_openapi::jiff::Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let (ann_at, bot_at) = ("2025-03-01T10:00:00Z".parse().unwrap(), "2025-03-05T12:30:00Z".parse().unwrap());
    let idle = account_outside(&format!("User:{ns}-idle"), &[]);
    // Idle shares a shard with Ann or Bob only by chance; its own shard exists either way.
    put_sightings(
        &c,
        prefix,
        since,
        &[
            (&ann, entry(ann_at, "list pods in a", Some("X509SHA256=ab12"))),
            (&bot, entry(bot_at, "get secrets in b", Some("JTI=9f"))),
        ],
    )
    .await;
    let idle_shard = deprovisioner::activity::ledger::shard_of(&idle);
    let existing: Vec<u16> = [&ann, &bot].iter().map(|a| deprovisioner::activity::ledger::shard_of(a)).collect();
    if !existing.contains(&idle_shard) {
        put_shard(&c, prefix, idle_shard, &deprovisioner::activity::Shard::new(since)).await;
    }
    let unrecorded = account_outside(&format!("User:{ns}-new"), &[&ann, &bot, &idle]);

    let ask = json!({"request": {"account_ids": [&bot, &ann, &idle, &unrecorded, format!("Group:{ns}"), "User:system:admin", &ann]}});
    let want = json!([
        {"account_id": bot, "event_type": "last_activity", "happened_at": "2025-03-05T12:30:00Z"},
        {"account_id": ann, "event_type": "last_activity", "happened_at": "2025-03-01T10:00:00Z"},
    ]);
    let info = cli("info", &json!({}));
    let last = cli("get_last_activity", &ask);
    assert_eq!(last["response"], want, "{last}");
    let bad = cli("get_last_activity", &json!({"request": {"account_ids": [&ann, "alice"]}}));
    assert_eq!(bad["error"]["error_code"], "invalid_value", "{bad}");
    let missing = cli("get_last_activity", &json!({"request": {}}));
    assert_eq!(missing["error"]["error_code"], "bad_request", "{missing}");
    let records = |since_date: &str, actors: Vec<&String>| json!({"request": {"since_date": since_date, "actors": actors.into_iter().map(|a| json!({"account_id": a})).collect::<Vec<_>>()}});
    let both = cli("list_activity_records", &records("2025-02-01", vec![&ann, &bot, &idle]));
    let items = both["response"].as_array().unwrap();
    assert_eq!(
        ids(&items.iter().map(|i| i["actor"].clone()).collect::<Vec<_>>(), "account_id"),
        [bot.clone(), ann.clone()],
        "by account id"
    );
    assert_eq!(items[1]["timestamp"], "2025-03-01T10:00:00Z");
    assert_eq!(items[1]["metadata"]["what"], "list pods in a");
    assert_eq!(items[1]["metadata"]["credential_id"], "X509SHA256=ab12");
    let later = cli("list_activity_records", &records("2025-03-02T00:00:00Z", vec![&ann, &bot]));
    assert_eq!(later["response"].as_array().unwrap().len(), 1, "Ann acted before since_date: {later}");
    // No actors: every account seen, read by name (the agent may not list by label).
    let everyone = cli("list_activity_records", &records("2025-02-01", vec![]));
    let everyone_ids: Vec<String> = everyone["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["actor"]["account_id"].as_str().unwrap().to_string())
        .collect();
    assert!(everyone_ids.contains(&ann) && everyone_ids.contains(&bot), "{everyone}");
    let bad_date = cli("list_activity_records", &records("last week", vec![&ann]));
    assert_eq!(bad_date["error"]["error_code"], "invalid_value", "{bad_date}");

    // Over HTTP, behind the read secret, the same answers.
    let op = operator();
    let (status, over_http) = http(op, "get_last_activity", &ask, Some(CONNECTOR_READ)).await;
    assert_eq!((status, &over_http["response"]), (200, &want), "{over_http}");
    let (_, http_records) =
        http(op, "list_activity_records", &records("2025-02-01", vec![&ann, &bot]), Some(CONNECTOR_READ)).await;
    assert_eq!(http_records["response"], both["response"]);
    let (status, _) = http(op, "get_last_activity", &ask, None).await;
    assert_eq!(status, 401);

    let caps: Vec<&str> =
        info["response"]["capabilities"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(caps.contains(&"get_last_activity") && caps.contains(&"list_activity_records"), "{caps:?}");
    validate(&[
        ("InfoResponse", &info),
        ("GetLastActivityResponse", &last),
        ("GetLastActivityResponse", &over_http),
        ("ListActivityRecordsResponse", &both),
        ("ListActivityRecordsResponse", &later),
        ("ListActivityRecordsResponse", &everyone),
        ("ListActivityRecordsResponse", &http_records),
        ("ErrorResponse", &bad),
        ("ErrorResponse", &missing),
        ("ErrorResponse", &bad_date),
    ]);
}

/// A shard that does not parse is an error naming its ConfigMap, never "nobody was active".
#[tokio::test]
async fn an_unreadable_shard_is_an_error_naming_it() {
    use support::activity_store::*;
    let c = admin().await;
    let prefix = "broken-activity";
    grant_shard_reads(&c, "deprovisioner-lumos-agent", prefix).await;
    let ann = format!("User:{}-ann", unique("broken"));
    let name = deprovisioner::activity::ledger::object_name(prefix, deprovisioner::activity::ledger::shard_of(&ann));
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.clone(), NAMESPACE);
    let cm =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"ledger.json": "{\"since\": 7"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["connector", "get_last_activity", "--activity-prefix", prefix])
        .args(["--kubeconfig", cluster().kubeconfig_as("deprovisioner-lumos-agent").to_str().unwrap()])
        .args(["--json", &json!({"request": {"account_ids": [&ann]}}).to_string()])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["error"]["error_code"], "service_error", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("deprovisioner/{name}")), "{message}");
    validate(&[("ErrorResponse", &answer)]);
}
