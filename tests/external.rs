//! External accounts against real servers: a SCIM 2.0 server that nobody here wrote
//! (`scim2-server` from PyPI, plain and behind TLS), a fault-injecting proxy in front of it for
//! 500s and slowness, and a recording HTTP server for the HTTP action.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use deprovisioner::crd::{Outcome, Phase};
use deprovisioner::fixtures::user;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const TOKEN: &str = "scim-bearer-token-s3cr3t-0001";
const TOKEN_2: &str = "scim-bearer-token-s3cr3t-0002";
const HTTP_SECRET: &str = "http-api-key-s3cr3t-abcdef";

fn operator() -> &'static Operator {
    static OP: OnceLock<Operator> = OnceLock::new();
    OP.get_or_init(|| Operator::start(OperatorOpts::default().args(&["--response-deadline", "8s"])))
}

/// A scim2-server process (its pid file lives with the control plane so teardown kills it).
struct ScimServer {
    url: String,
    _child: Child,
}

fn spawn_scim(args: &[&str], tls: Option<(&str, &str)>) -> ScimServer {
    let c = cluster();
    let bin =
        String::from_utf8(Command::new(repo().join("scripts/control-plane")).arg("scim-bin").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
    let port = free_port();
    let mut cmd = match tls {
        None => Command::new(format!("{bin}/scim2-server")),
        Some((cert, key)) => {
            let mut c = Command::new(format!("{bin}/python"));
            c.arg(repo().join("tests/support/scim_tls.py")).args([cert, key]);
            c
        }
    };
    let log = c.dir.join(format!("scim-{port}.log"));
    let child = cmd
        .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--dynamic-tenants"])
        .args(["--bearer-token", TOKEN, "--bearer-token", TOKEN_2])
        .args(args)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting scim2-server");
    std::fs::write(c.dir.join(format!("scim-{port}.pid")), child.id().to_string()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "scim2-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    ScimServer { url: format!("{scheme}://localhost:{port}"), _child: child }
}

fn scim() -> &'static ScimServer {
    static S: OnceLock<ScimServer> = OnceLock::new();
    S.get_or_init(|| spawn_scim(&[], None))
}

/// The Secrets and ConfigMaps (CA bundles) the suite's policies read, and the only ones the
/// operator may read: by default it may read none.
const SECRET_NAMES: &str = "scim,scim-wrong,http,rotating,basic";
const CONFIG_MAP_NAMES: &str = "scim-ca";

/// Secrets and ConfigMaps the policies reference, in the operator's namespace, and the grant a
/// user gives the operator for them: the chart's RBAC with `rbac.credentials` listing them.
async fn secrets() {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        apply_chart_rbac(
            cluster(),
            &[
                &format!("rbac.credentials.secretNames={{{SECRET_NAMES}}}"),
                &format!("rbac.credentials.configMapNames={{{CONFIG_MAP_NAMES}}}"),
            ],
        );
        // The API server's authorizer sees a new Role a moment after it is created.
        let who = "system:serviceaccount:deprovisioner:deprovisioner";
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for object in SECRET_NAMES
            .split(',')
            .map(|n| format!("secrets/{n}"))
            .chain(CONFIG_MAP_NAMES.split(',').map(|n| format!("configmaps/{n}")))
        {
            while cluster().kubectl(&["auth", "can-i", "get", &object, "-n", "deprovisioner", "--as", who]).stdout
                != b"yes\n"
            {
                assert!(std::time::Instant::now() < deadline, "the operator may still not get {object}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let c = admin().await;
        let api: Api<Secret> = Api::namespaced(c.clone(), "deprovisioner");
        for (name, key, value) in
            [("scim", "token", TOKEN), ("scim-wrong", "token", "not-the-token-000000"), ("http", "key", HTTP_SECRET)]
        {
            let s: Secret =
                serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {key: value}})).unwrap();
            api.create(&Default::default(), &s).await.unwrap();
        }
    })
    .await;
}

/// A fresh tenant (its own users and groups) on the server.
fn tenant(server: &ScimServer) -> String {
    format!("{}/{}", server.url, unique("t"))
}

fn scim_client() -> reqwest::Client {
    let ca = std::fs::read(cluster().dir.join("pki/ca.crt")).unwrap();
    reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap()).build().unwrap()
}

async fn scim_call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = scim_client().request(method, url).bearer_auth(TOKEN).header("content-type", "application/scim+json");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn create_user(base: &str, user_name: &str, email: &str) -> String {
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name,
        "emails": [{"value": email, "primary": true}], "active": true});
    let (status, user) = scim_call(reqwest::Method::POST, &format!("{base}/Users"), Some(body)).await;
    assert_eq!(status, 201, "{user}");
    user["id"].as_str().unwrap().to_string()
}

async fn create_group(base: &str, name: &str, members: &[&str]) -> String {
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name,
        "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>()});
    let (status, g) = scim_call(reqwest::Method::POST, &format!("{base}/Groups"), Some(body)).await;
    assert_eq!(status, 201, "{g}");
    g["id"].as_str().unwrap().to_string()
}

async fn get(base: &str, kind: &str, id: &str) -> Option<Value> {
    let (status, v) = scim_call(reqwest::Method::GET, &format!("{base}/{kind}/{id}"), None).await;
    (status == 200).then_some(v)
}

fn scim_rule(base: &str, extra: Value) -> Value {
    let mut rule = json!({"system": "acme-scim", "baseUrl": base,
        "credentials": {"bearerToken": {"name": "scim", "key": "token"}}});
    rule.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    rule
}

/// Creates a policy for a new app with the given rule; returns the app id.
async fn app_with(rule: Value) -> String {
    secrets().await;
    let c = admin().await;
    let app = unique("ext-app");
    policy(
        &c,
        &unique("ext-policy"),
        json!({
            "application": {"appId": app},
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [rule]
        }),
    )
    .await;
    app
}

async fn record(answer: &Value) -> deprovisioner::crd::DeprovisionRequestStatus {
    get_request(&admin().await, &request_name(answer)).await.status.unwrap()
}

#[tokio::test]
async fn deactivates_the_matching_account_and_records_it() {
    let base = tenant(scim());
    let id = create_user(&base, "pparker", "peter@lumos.com").await;
    let other = create_user(&base, "mj", "mj@lumos.com").await;
    let app = app_with(json!({"scim": scim_rule(&base, json!({}))})).await;
    let (_, answer, _) = operator().lumos(&payload(&app, "peter@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], false);
    assert_eq!(get(&base, "Users", &other).await.unwrap()["active"], true);
    let st = record(&answer).await;
    let r = &st.results[0];
    assert_eq!(r.outcome, Outcome::Deactivated);
    let ext = r.external.as_ref().unwrap();
    assert_eq!(
        (ext.system.as_str(), ext.account_id.as_deref(), ext.http_status, ext.attempts),
        ("acme-scim", Some(id.as_str()), Some(204), 2)
    );
    assert_eq!(r.subject, r#"emails.value eq "peter@lumos.com""#);
    assert_eq!(st.removed, 1);
    // Again: the account is already inactive.
    let (_, again, _) = operator().lumos(&payload(&app, "peter@lumos.com", &[])).await;
    assert_eq!(again["response"], "SUCCESS");
    assert_eq!(record(&again).await.results[0].outcome, Outcome::AlreadyAbsent);
}

#[tokio::test]
async fn deletes_and_removes_from_named_groups() {
    let base = tenant(scim());
    let id = create_user(&base, "gstacy", "gwen@lumos.com").await;
    let keep = create_user(&base, "miles", "miles@lumos.com").await;
    let eng = create_group(&base, "eng", &[&id, &keep]).await;
    let app = app_with(json!({"scim": scim_rule(&base, json!({"action": "Delete", "matchAttribute": "userName",
        "matchValue": "{{custom_fields.username}}", "removeFromGroups": ["eng", "no-such-group"]}))}))
    .await;
    let mut body = payload(&app, "gwen@lumos.com", &[]);
    body["custom_fields"]["username"] = json!("gstacy");
    let (_, answer, _) = operator().lumos(&body).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let members: Vec<String> = get(&base, "Groups", &eng).await.unwrap()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members, vec![keep.clone()]);
    assert!(get(&base, "Users", &id).await.is_none(), "account deleted");
    assert!(get(&base, "Users", &keep).await.is_some());
    let r = &record(&answer).await.results[0];
    assert_eq!(r.outcome, Outcome::Deleted);
    assert!(
        r.message.contains(r#"removed from group "eng""#) && r.message.contains(r#"group "no-such-group" not found"#),
        "{}",
        r.message
    );
}

#[tokio::test]
async fn no_match_is_already_absent_and_two_matches_change_nothing() {
    let base = tenant(scim());
    let app = app_with(json!({"scim": scim_rule(&base, json!({}))})).await;
    let (_, answer, _) = operator().lumos(&payload(&app, "ghost@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert_eq!(record(&answer).await.results[0].outcome, Outcome::AlreadyAbsent);

    let a = create_user(&base, "twin-a", "twin@lumos.com").await;
    let b = create_user(&base, "twin-b", "twin@lumos.com").await;
    let (_, answer, _) = operator().lumos(&payload(&app, "twin@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    assert!(answer["msg"].as_str().unwrap().contains("2 accounts match"), "{answer}");
    for id in [a, b] {
        assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], true);
    }
}

#[tokio::test]
async fn quotes_and_backslashes_in_an_email_cannot_change_the_filter() {
    let base = tenant(scim());
    let tricky = r#"o"hara\x@lumos.com"#;
    let id = create_user(&base, "ohara", tricky).await;
    let decoy = create_user(&base, "decoy", "o@lumos.com").await;
    let app = app_with(json!({"scim": scim_rule(&base, json!({}))})).await;
    let (_, answer, _) = operator().lumos(&payload(&app, tricky, &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], false);
    assert_eq!(get(&base, "Users", &decoy).await.unwrap()["active"], true);
    assert_eq!(record(&answer).await.results[0].subject, r#"emails.value eq "o\"hara\\x@lumos.com""#);
}

/// A proxy in front of the real SCIM server: the first `fail_first` requests get a 500 with
/// `Retry-After: 1`; every request is delayed by `delay`.
#[derive(Clone)]
struct Faults {
    upstream: String,
    fail_first: usize,
    delay: Duration,
    seen: Arc<AtomicUsize>,
    /// When set, only `Authorization: Basic <this>` is accepted, and forwarded as the bearer
    /// token scim2-server knows (it has no basic auth of its own).
    basic: Option<String>,
}

async fn faulty(
    State(f): State<Faults>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let n = f.seen.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(f.delay).await;
    if n < f.fail_first {
        return (StatusCode::INTERNAL_SERVER_ERROR, [("retry-after", "1")], Bytes::from_static(b"{}")).into_response();
    }
    let mut req = reqwest::Client::new().request(method, format!("{}{}", f.upstream, uri)).body(body);
    if let Some(basic) = &f.basic {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Basic {basic}")) {
            return (StatusCode::UNAUTHORIZED, Bytes::from_static(b"{}")).into_response();
        }
        req = req.bearer_auth(TOKEN);
    }
    for name in ["authorization", "content-type", "accept"] {
        if f.basic.is_some() && name == "authorization" {
            continue;
        }
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.clone());
        }
    }
    let resp = req.send().await.unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let ct = resp.headers().get("content-type").cloned();
    let bytes = resp.bytes().await.unwrap();
    let mut out = (status, bytes).into_response();
    if let Some(ct) = ct {
        out.headers_mut().insert("content-type", ct);
    }
    out
}

async fn proxy(f: Faults) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(faulty).with_state(f);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_500_then_success_is_retried() {
    let base = tenant(scim());
    let (origin, path) = base.rsplit_once('/').unwrap();
    let id = create_user(&base, "retry", "retry@lumos.com").await;
    let seen = Arc::new(AtomicUsize::new(0));
    let front = proxy(Faults {
        upstream: origin.to_string(),
        fail_first: 1,
        delay: Duration::ZERO,
        seen: seen.clone(),
        basic: None,
    })
    .await;
    let app = app_with(json!({"scim": scim_rule(&format!("{front}/{path}"), json!({}))})).await;
    let (_, answer, _) = operator().lumos(&payload(&app, "retry@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], false);
    let ext = record(&answer).await.results[0].external.clone().unwrap();
    assert_eq!(ext.attempts, 3, "500, then search, then patch");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_fails_in_bounded_time() {
    let base = tenant(scim());
    let (origin, path) = base.rsplit_once('/').unwrap();
    let id = create_user(&base, "slow", "slow@lumos.com").await;
    let seen = Arc::new(AtomicUsize::new(0));
    let front =
        proxy(Faults { upstream: origin.to_string(), fail_first: 0, delay: Duration::from_secs(3), seen, basic: None })
            .await;
    let app = app_with(
        json!({"scim": scim_rule(&format!("{front}/{path}"), json!({"timeoutSeconds": 1, "maxAttempts": 2}))}),
    )
    .await;
    let (_, answer, took) = operator().lumos(&payload(&app, "slow@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    assert!(answer["msg"].as_str().unwrap().contains("timed out"), "{answer}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let r = &record(&answer).await.results[0];
    assert_eq!((r.outcome, r.external.as_ref().unwrap().attempts), (Outcome::Failed, 2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], true, "nothing changed");
}

#[tokio::test]
async fn tls_with_a_test_ca() {
    // A serving certificate for localhost signed by the control plane's test CA.
    let pki = cluster().dir.join("pki");
    let tls_server = {
        static S: OnceLock<ScimServer> = OnceLock::new();
        S.get_or_init(|| {
            let cert = pki.join("serving.crt");
            let key = pki.join("serving.key");
            spawn_scim(&[], Some((cert.to_str().unwrap(), key.to_str().unwrap())))
        })
    };
    let c = admin().await;
    let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "scim-ca"}, "data": {"ca.crt": ca}})).unwrap();
    let _ = Api::<ConfigMap>::namespaced(c.clone(), "deprovisioner").create(&Default::default(), &cm).await;
    let base = tenant(tls_server);
    let id = create_user(&base, "tls", "tls@lumos.com").await;
    // Without the CA the certificate is not trusted: a clear failure, nothing changed.
    let untrusted = app_with(json!({"scim": scim_rule(&base, json!({"maxAttempts": 1}))})).await;
    let (_, answer, _) = operator().lumos(&payload(&untrusted, "tls@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    assert!(answer["msg"].as_str().unwrap().to_lowercase().contains("certificate"), "{answer}");
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], true);
    // With the test CA from a ConfigMap: done.
    let trusted = app_with(
        json!({"scim": scim_rule(&base, json!({"caBundle": {"configMap": {"name": "scim-ca", "key": "ca.crt"}}}))}),
    )
    .await;
    let (_, answer, _) = operator().lumos(&payload(&trusted, "tls@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], false);
}

#[tokio::test]
async fn wrong_token_fails_clearly_and_no_secret_leaks_anywhere() {
    let c = admin().await;
    let ns = unique("mixed");
    namespace(&c, &ns, &[]).await;
    role_binding(&c, &ns, "rb", "view", vec![user("leak@lumos.com"), user("stays@lumos.com")]).await;
    let base = tenant(scim());
    let id = create_user(&base, "leak", "leak@lumos.com").await;
    let mut rule = scim_rule(&base, json!({}));
    rule["credentials"]["bearerToken"]["name"] = json!("scim-wrong");
    secrets().await;
    let app = unique("mixed-app");
    policy(
        &c,
        &unique("mixed-policy"),
        json!({
            "application": {"appId": app},
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaces": [ns]}}, {"scim": rule}]
        }),
    )
    .await;
    let (_, answer, _) = operator().lumos(&payload(&app, "leak@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(
        msg.contains("Failed 1 of 2")
            && msg.contains("401 Unauthorized")
            && msg.contains("Done: removed leak@lumos.com from RoleBinding"),
        "{msg}"
    );
    assert_eq!(names(&get_rb(&c, &ns, "rb").await.unwrap().subjects), vec!["User:stays@lumos.com"]);
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], true);
    // No credential in the record, the events or the log.
    let name = request_name(&answer);
    let yaml = String::from_utf8(cluster().kubectl(&["get", "dpr", &name, "-o", "yaml"]).stdout).unwrap();
    let events = String::from_utf8(cluster().kubectl(&["get", "events", "-A", "-o", "yaml"]).stdout).unwrap();
    for secret in [TOKEN, TOKEN_2, "not-the-token-000000", HTTP_SECRET] {
        assert!(
            !yaml.contains(secret) && !events.contains(secret) && !operator().log_text().contains(secret),
            "{secret} leaked"
        );
    }
    assert!(yaml.contains("401"), "the record names the failure");
}

#[tokio::test]
async fn a_secret_or_ca_bundle_not_granted_is_not_read() {
    // Unlisted Secrets holding the right token (one named like the chart's webhook Secret) and
    // an unlisted CA bundle: the operator may not read them, the action fails saying so, nothing
    // is called and the token appears nowhere.
    let c = admin().await;
    let base = tenant(scim());
    let id = create_user(&base, "unlisted", "unlisted@lumos.com").await;
    for name in ["not-listed", "deprovisioner-webhook"] {
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"token": TOKEN}})).unwrap();
        Api::<Secret>::namespaced(c.clone(), "deprovisioner").create(&Default::default(), &s).await.unwrap();
        let mut rule = scim_rule(&base, json!({}));
        rule["credentials"]["bearerToken"]["name"] = json!(name);
        let app = app_with(json!({"scim": rule})).await;
        let (_, answer, _) = operator().lumos(&payload(&app, "unlisted@lumos.com", &[])).await;
        assert_eq!(answer["response"], "FAILURE", "{answer}");
        let st = record(&answer).await;
        assert_eq!(st.results[0].outcome, Outcome::Failed);
        let msg = &st.results[0].message;
        assert!(msg.contains(&format!("the operator may not read Secret deprovisioner/{name}")), "{msg}");
        assert!(msg.contains("forbidden"), "{msg}");
    }
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "not-listed-ca"}, "data": {"ca.crt": "x"}})).unwrap();
    Api::<ConfigMap>::namespaced(c.clone(), "deprovisioner").create(&Default::default(), &cm).await.unwrap();
    let app = app_with(
        json!({"scim": scim_rule(&base, json!({"caBundle": {"configMap": {"name": "not-listed-ca", "key": "ca.crt"}}}))}),
    )
    .await;
    let (_, answer, _) = operator().lumos(&payload(&app, "unlisted@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let msg = record(&answer).await.results[0].message.clone();
    assert!(msg.contains("the operator may not read ConfigMap deprovisioner/not-listed-ca"), "{msg}");
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], true, "the account was touched");
    assert!(!operator().log_text().contains(TOKEN));
}

#[tokio::test]
async fn a_rotated_secret_is_used_without_restart() {
    let c = admin().await;
    let api: Api<Secret> = Api::namespaced(c.clone(), "deprovisioner");
    let name = "rotating";
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"token": "stale-token-000000000"}}))
            .unwrap();
    api.create(&Default::default(), &s).await.unwrap();
    let base = tenant(scim());
    let id = create_user(&base, "rot", "rot@lumos.com").await;
    let mut rule = scim_rule(&base, json!({"maxAttempts": 1}));
    rule["credentials"]["bearerToken"]["name"] = json!(name);
    let app = app_with(json!({"scim": rule})).await;
    let (_, answer, _) = operator().lumos(&payload(&app, "rot@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"stringData": {"token": TOKEN_2}}))).await.unwrap();
    let (_, answer, _) = operator().lumos(&payload(&app, "rot@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], false);
}

/// One call the recording server received: method, URI, headers, body.
type Call = (String, String, HeaderMap, String);

/// What the recording server received.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Call>>>);

#[tokio::test]
async fn http_action_sends_escaped_values_and_secret_headers() {
    let rec = Recorded::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = |State(r): State<Recorded>, method: Method, uri: Uri, headers: HeaderMap, body: String| async move {
        let gone = uri.path().contains("ghost");
        r.0.lock().unwrap().push((method.to_string(), uri.to_string(), headers, body));
        if gone { StatusCode::NOT_FOUND } else { StatusCode::ACCEPTED }
    };
    let app = axum::Router::new().fallback(handler).with_state(rec.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let rule = json!({"http": {"system": "internal-tool", "method": "PUT",
        "url": format!("http://{addr}/api/users/{{{{target_user.email}}}}/disable?by={{{{user.email}}}}"),
        "headers": [{"name": "X-Api-Key", "valueFrom": {"name": "http", "key": "key"}}, {"name": "X-Reason", "value": "lumos"}],
        "body": r#"{"email": "{{target_user.email}}", "comment": "removed", "name": "{{target_user.given_name}}"}"#,
        "absentCodes": [404]}});
    let app_id = app_with(rule).await;
    let tricky = r#"bob"}\x@lumos.com"#;
    let mut body = payload(&app_id, tricky, &[]);
    body["target_user"]["given_name"] = json!("Bob \"The\" Builder");
    let (_, answer, _) = operator().lumos(&body).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let calls = rec.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "called exactly once");
    let (method, uri, headers, sent) = calls[0].clone();
    assert_eq!(method, "PUT");
    assert_eq!(uri, "/api/users/bob%22%7D%5Cx%40lumos%2Ecom/disable?by=admin%40lumos%2Ecom");
    assert_eq!(headers["x-api-key"], HTTP_SECRET);
    assert_eq!(headers["x-reason"], "lumos");
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
    let sent: Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent, json!({"email": tricky, "comment": "removed", "name": "Bob \"The\" Builder"}));
    let st = record(&answer).await;
    assert_eq!(st.results[0].outcome, Outcome::Removed);
    assert_eq!(st.results[0].external.as_ref().unwrap().http_status, Some(202));
    assert_eq!(st.phase, Phase::Succeeded);
    // 404 is configured to mean "already gone".
    let (_, answer, _) = operator().lumos(&payload(&app_id, "ghost@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert_eq!(record(&answer).await.results[0].outcome, Outcome::AlreadyAbsent);
}

#[tokio::test]
async fn a_policy_cannot_name_another_namespace_or_put_credentials_in_the_record() {
    // A Secret reference has no namespace field: the API server refuses one.
    let name = unique("ns-policy");
    let yaml = format!(
        "apiVersion: access.deprovisioner.dev/v1alpha1\nkind: DeprovisionPolicy\nmetadata:\n  name: {name}\nspec:\n  application: {{appId: x}}\n  subjects: [{{kind: User, name: x}}]\n  rules:\n  - http:\n      system: x\n      url: http://127.0.0.1:9/x\n      headers: [{{name: X-Key, valueFrom: {{name: s, key: k, namespace: kube-system}}}}]\n"
    );
    let file = cluster().dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = cluster().kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"), "{}", String::from_utf8_lossy(&out.stderr));
    // A literal credential header is refused before anything is called, and never recorded.
    let app = app_with(json!({"http": {"system": "x", "url": "http://127.0.0.1:9/x",
        "headers": [{"name": "Authorization", "value": "Bearer literal-credential"}]}}))
    .await;
    let (_, answer, _) = operator().lumos(&payload(&app, "x@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE");
    assert!(answer["msg"].as_str().unwrap().contains("looks like a credential; use valueFrom"), "{answer}");
    assert!(record(&answer).await.plan.is_empty());
}

#[tokio::test]
async fn basic_auth_credentials_from_secrets() {
    let c = admin().await;
    let name = "basic";
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": name}, "stringData": {"user": "svc-deprov", "password": "pa:ss w0rd"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(c.clone(), "deprovisioner").create(&Default::default(), &s).await.unwrap();
    let base = tenant(scim());
    let (origin, path) = base.rsplit_once('/').unwrap();
    let id = create_user(&base, "basic", "basic@lumos.com").await;
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("svc-deprov:pa:ss w0rd");
    let seen = Arc::new(AtomicUsize::new(0));
    let front =
        proxy(Faults { upstream: origin.to_string(), fail_first: 0, delay: Duration::ZERO, seen, basic: Some(basic) })
            .await;
    let mut rule = scim_rule(&format!("{front}/{path}"), json!({}));
    rule["credentials"] =
        json!({"username": {"name": name, "key": "user"}, "password": {"name": name, "key": "password"}});
    let app = app_with(json!({"scim": rule})).await;
    let (_, answer, _) = operator().lumos(&payload(&app, "basic@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert_eq!(get(&base, "Users", &id).await.unwrap()["active"], false);
    assert!(!operator().log_text().contains("pa:ss w0rd"));
}
