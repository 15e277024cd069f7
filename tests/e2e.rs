//! End-to-end: the operator, run as a process with only the RBAC it ships, driven through HTTP
//! exactly as Lumos calls it, against a real kube-apiserver and etcd. Every test uses its own
//! namespaces, bindings and Lumos application, so they run in parallel.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use deprovisioner::crd::{Outcome, Phase};
use deprovisioner::fixtures::{self, group, service_account, service_account_in, user};
use kube::Api;
use serde_json::json;
use support::*;

/// The shared operator (one per test binary; killed with the control plane).
fn operator() -> &'static Operator {
    static OP: OnceLock<Operator> = OnceLock::new();
    OP.get_or_init(|| Operator::start(OperatorOpts::default().args(&["--response-deadline", "8s"])))
}

/// A policy subject: the User named by a template.
fn user_template(tmpl: &str) -> serde_json::Value {
    json!({"kind": "User", "name": tmpl})
}

#[tokio::test]
async fn seed_payload_removes_exactly_what_the_policy_names() {
    let c = admin().await;
    let (ns_a, ns_b, other_ns) = (unique("seed-a"), unique("seed-b"), unique("seed-other"));
    let label = unique("seed");
    namespace(&c, &ns_a, &[("seed-team", &label)]).await;
    namespace(&c, &ns_b, &[]).await;
    namespace(&c, &other_ns, &[]).await;
    let peter = || user("peterparker@lumos.com");
    let mj = user("maryjane@lumos.com");
    let devs = role_binding(&c, &ns_a, "developers", "edit", vec![peter(), mj.clone(), group("system:masters")]).await;
    role_binding(&c, &ns_a, "peter-only", "view", vec![user("PeterParker@Lumos.com")]).await;
    let unrelated = role_binding(&c, &ns_a, "others", "view", vec![mj.clone()]).await;
    let outside = role_binding(&c, &other_ns, "developers", "edit", vec![peter()]).await;
    let crb_name = unique("seed-readers");
    let crb =
        cluster_role_binding(&c, &crb_name, "view", &[("lumos-app", &label)], vec![peter(), group("auditors")]).await;
    policy(&c, &unique("seed-policy"), json!({
        "application": {"appId": "demo_app", "instanceId": "0ob3ggjlhx892dc4abcde"},
        "subjects": [{"kind": "User", "name": "{{target_user.email}}", "caseInsensitive": true}],
        "rules": [
            {"permissions": ["Permission One"], "roleBindings": {"namespaceSelector": {"matchLabels": {"seed-team": label}}}},
            {"permissions": ["Permission Two"], "roleBindings": {"namespaces": [ns_b]},
             "clusterRoleBindings": {"selector": {"matchLabels": {"lumos-app": label}}}}
        ]
    })).await;

    let (status, answer, took) = operator().lumos(&fixtures::seed_payload()).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert!(took < Duration::from_secs(10), "answered in {took:?}");

    // The subject is gone from every binding the policy names; everything else is unchanged.
    let after = get_rb(&c, &ns_a, "developers").await.unwrap();
    assert_eq!(names(&after.subjects), vec!["User:maryjane@lumos.com", "Group:system:masters"]);
    assert_eq!(after.role_ref, devs.role_ref);
    assert!(get_rb(&c, &ns_a, "peter-only").await.is_none(), "last subject gone: binding deleted");
    assert_eq!(get_rb(&c, &ns_a, "others").await.unwrap(), unrelated);
    assert_eq!(get_rb(&c, &other_ns, "developers").await.unwrap(), outside, "a namespace the policy does not name");
    let crb_after = get_crb(&c, &crb_name).await.unwrap();
    assert_eq!(names(&crb_after.subjects), vec!["Group:auditors"]);
    assert_eq!(crb_after.role_ref, crb.role_ref);

    // The record is complete.
    let name = request_name(&answer);
    let r = get_request(&c, &name).await;
    let st = r.status.clone().unwrap();
    assert_eq!(st.phase, Phase::Succeeded);
    assert_eq!(st.plan.len(), 3);
    assert_eq!(st.results.len(), 3);
    assert_eq!(st.removed, 3);
    assert!(st.started_at.is_some() && st.completed_at.is_some());
    assert!(st.results.iter().all(|x| matches!(x.outcome, Outcome::Removed | Outcome::Deleted)));
    assert!(st.results.iter().any(|x| x.outcome == Outcome::Deleted && x.object.ends_with("/peter-only")));
    assert!(st.conditions.iter().any(|c| c.type_ == "Complete" && c.status == "True" && c.reason == "Succeeded"));
    assert_eq!(st.message.as_deref().map(|m| answer["msg"].as_str().unwrap().starts_with(m)), Some(true));
    assert_eq!(r.spec.target_user.email, "peterparker@lumos.com");
    assert_eq!(r.spec.custom_fields["username"], "pparker");
    let events = events_for(&c, &name).await;
    assert_eq!(events.iter().filter(|(reason, _)| reason == "Removed").count(), 3, "{events:?}");
    assert!(events.iter().any(|(reason, _)| reason == "Succeeded"));
}

#[tokio::test]
async fn every_subject_form_is_matched_and_only_it() {
    let c = admin().await;
    let ns = unique("forms");
    namespace(&c, &ns, &[]).await;
    let app = unique("forms-app");
    role_binding(&c, &ns, "oidc-users", "view", vec![user("oidc:Spider@Lumos.com"), user("oidc:other@lumos.com")])
        .await;
    role_binding(&c, &ns, "groups", "view", vec![group("spider"), group("spiders")]).await;
    role_binding(
        &c,
        &ns,
        "bots",
        "view",
        vec![service_account("spider"), service_account_in("elsewhere", "spider"), service_account("other")],
    )
    .await;
    role_binding(
        &c,
        &ns,
        "sa-as-user",
        "view",
        vec![user(&format!("system:serviceaccount:{ns}:spider")), user("keep@lumos.com")],
    )
    .await;
    role_binding(&c, &ns, "exact-case", "view", vec![user("Spider@Lumos.com"), user("keep@lumos.com")]).await;
    policy(
        &c,
        &unique("forms-policy"),
        json!({
            "application": {"appId": app},
            "subjects": [
                {"kind": "User", "name": "{{target_user.email}}", "prefix": "oidc:", "caseInsensitive": true},
                {"kind": "Group", "name": "{{custom_fields.username}}"},
                {"kind": "ServiceAccount", "namespace": ns, "name": "{{custom_fields.username}}"}
            ],
            "rules": [{"roleBindings": {"namespaces": [ns]}}]
        }),
    )
    .await;
    let (status, answer, _) = operator().lumos(&payload(&app, "spider@lumos.com", &[])).await;
    assert_eq!((status, answer["response"].as_str()), (200, Some("SUCCESS")), "{answer}");
    assert_eq!(names(&get_rb(&c, &ns, "oidc-users").await.unwrap().subjects), vec!["User:oidc:other@lumos.com"]);
    assert_eq!(names(&get_rb(&c, &ns, "groups").await.unwrap().subjects), vec!["Group:spiders"]);
    let bots = get_rb(&c, &ns, "bots").await.unwrap().subjects.unwrap();
    assert_eq!(bots.len(), 2);
    assert_eq!(bots[0].namespace.as_deref(), Some("elsewhere"), "another namespace's SA stays");
    assert_eq!(bots[1].name, "other");
    assert_eq!(names(&get_rb(&c, &ns, "sa-as-user").await.unwrap().subjects), vec!["User:keep@lumos.com"]);
    // Without the prefix the exact-case User is another identity: untouched.
    assert_eq!(names(&get_rb(&c, &ns, "exact-case").await.unwrap().subjects).len(), 2);
}

#[tokio::test]
async fn empty_bindings_are_deleted_or_kept_per_policy() {
    let c = admin().await;
    for keep in [false, true] {
        let ns = unique("empty");
        namespace(&c, &ns, &[]).await;
        let app = unique("empty-app");
        let crb = unique("empty-crb");
        role_binding(&c, &ns, "solo", "view", vec![user("gwen@lumos.com")]).await;
        role_binding(&c, &ns, "pair", "view", vec![user("gwen@lumos.com"), user("miles@lumos.com")]).await;
        cluster_role_binding(&c, &crb, "view", &[], vec![user("gwen@lumos.com")]).await;
        policy(
            &c,
            &unique("empty-policy"),
            json!({
                "application": {"appId": app},
                "emptyBindings": if keep { "Keep" } else { "Delete" },
                "subjects": [user_template("{{target_user.email}}")],
                "rules": [{"roleBindings": {"namespaces": [ns]}, "clusterRoleBindings": {"names": [crb]}}]
            }),
        )
        .await;
        let (_, answer, _) = operator().lumos(&payload(&app, "gwen@lumos.com", &[])).await;
        assert_eq!(answer["response"], "SUCCESS", "{answer}");
        assert_eq!(names(&get_rb(&c, &ns, "pair").await.unwrap().subjects), vec!["User:miles@lumos.com"]);
        let solo = get_rb(&c, &ns, "solo").await;
        let crb_after = get_crb(&c, &crb).await;
        if keep {
            assert!(names(&solo.unwrap().subjects).is_empty());
            assert!(names(&crb_after.unwrap().subjects).is_empty());
        } else {
            assert!(solo.is_none());
            assert!(crb_after.is_none());
        }
    }
}

#[tokio::test]
async fn namespace_access_from_the_permission_value_and_label_selected_namespaces() {
    let c = admin().await;
    let (ns1, ns2, ns3, ns4) = (unique("nsacc"), unique("nsacc"), unique("nsacc"), unique("nsacc"));
    let label = unique("tier");
    namespace(&c, &ns1, &[]).await;
    namespace(&c, &ns2, &[]).await;
    namespace(&c, &ns3, &[("tier", &label)]).await;
    namespace(&c, &ns4, &[("tier", &label)]).await;
    for ns in [&ns1, &ns2, &ns3, &ns4] {
        role_binding(&c, ns, "a", "view", vec![user("ned@lumos.com"), user("may@lumos.com")]).await;
        role_binding(&c, ns, "b", "edit", vec![user("ned@lumos.com"), user("may@lumos.com")]).await;
    }
    let app = unique("nsacc-app");
    policy(&c, &unique("nsacc-policy"), json!({
        "application": {"appId": app},
        "subjects": [user_template("{{target_user.email}}")],
        "rules": [
            {"permissions": ["nsacc-*"], "namespaceAccess": {"fromPermissionValue": true}},
            {"permissions": ["tiered"], "roleBindings": {"namespaceSelector": {"matchLabels": {"tier": label}}, "roleRef": {"name": "edit"}}}
        ]
    })).await;
    let (_, answer, _) = operator().lumos(&payload(&app, "ned@lumos.com", &[&ns1, "tiered"])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let subjects = |ns: String, b: &'static str| {
        let c = c.clone();
        async move { names(&get_rb(&c, &ns, b).await.unwrap().subjects) }
    };
    let may = vec!["User:may@lumos.com".to_string()];
    let both = 2;
    assert_eq!(subjects(ns1.clone(), "a").await, may);
    assert_eq!(subjects(ns1.clone(), "b").await, may);
    assert_eq!(subjects(ns2.clone(), "a").await.len(), both, "namespace not named");
    assert_eq!(subjects(ns3.clone(), "a").await.len(), both, "roleRef filter keeps view");
    assert_eq!(subjects(ns3.clone(), "b").await, may);
    assert_eq!(subjects(ns4.clone(), "b").await, may);
}

#[tokio::test]
async fn protected_subjects_are_never_touched() {
    let c = admin().await;
    let ns = unique("prot");
    namespace(&c, &ns, &[]).await;
    let rb = role_binding(
        &c,
        &ns,
        "mixed",
        "view",
        vec![group("system:masters"), service_account_in("deprovisioner", "deprovisioner"), user("victim@lumos.com")],
    )
    .await;
    for (i, subject) in [
        json!({"kind": "Group", "name": "system:masters"}),
        json!({"kind": "ServiceAccount", "namespace": "deprovisioner", "name": "deprovisioner"}),
        json!({"kind": "User", "name": "system:serviceaccount:deprovisioner:deprovisioner"}),
    ]
    .into_iter()
    .enumerate()
    {
        let app = unique(&format!("prot-{i}"));
        policy(
            &c,
            &unique("prot-policy"),
            json!({
                "application": {"appId": app},
                "subjects": [user_template("{{target_user.email}}"), subject],
                "rules": [{"roleBindings": {"namespaces": [ns]}}]
            }),
        )
        .await;
        let (status, answer, _) = operator().lumos(&payload(&app, "victim@lumos.com", &[])).await;
        assert_eq!(status, 200);
        assert_eq!(answer["response"], "FAILURE", "{answer}");
        let msg = answer["msg"].as_str().unwrap();
        assert!(msg.contains("refused") && msg.contains("nothing was changed"), "{msg}");
        let r = get_request(&c, &request_name(&answer)).await;
        assert_eq!(phase(&r), Phase::Failed);
        assert!(r.status.unwrap().conditions.iter().any(|c| c.reason == "ProtectedSubject"));
        assert_eq!(get_rb(&c, &ns, "mixed").await.unwrap(), rb, "nothing changed, not even the victim");
    }
}

#[tokio::test]
async fn unknown_app_is_recorded_as_failed() {
    let c = admin().await;
    let app = unique("nobody-covers");
    let email = format!("{}@lumos.com", unique("u"));
    let (status, answer, _) = operator().lumos(&payload(&app, &email, &["x"])).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"], "FAILURE");
    assert!(answer["msg"].as_str().unwrap().contains("no DeprovisionPolicy covers application"), "{answer}");
    let r = get_request(&c, &request_name(&answer)).await;
    assert_eq!(phase(&r), Phase::Failed);
    let st = r.status.unwrap();
    assert!(st.conditions.iter().any(|c| c.reason == "NoPolicy"));
    assert_eq!(requests_for(&c, &email).await.len(), 1);
}

#[tokio::test]
async fn bad_calls_are_refused_and_create_nothing() {
    let c = admin().await;
    let op = operator();
    let email = format!("{}@lumos.com", unique("bad"));
    let body = serde_json::to_vec(&payload("whatever", &email, &[])).unwrap();
    let path = "/webhooks/lumos/deprovision";
    let json_ct = ("content-type", "application/json");
    let good = format!("Bearer {SECRET}");
    // (headers, body, expected status, words the message must contain)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![json_ct], body.clone(), 401, "missing credentials"),
        (vec![json_ct, ("authorization", "Bearer wrong-secret-0123456789")], body.clone(), 401, "wrong credentials"),
        (vec![json_ct, ("authorization", SECRET)], body.clone(), 401, "missing credentials"),
        (vec![("authorization", &good), ("content-type", "text/plain")], body.clone(), 415, "application/json"),
        (vec![("authorization", &good)], body.clone(), 415, "application/json"),
        (vec![json_ct, ("authorization", &good)], b"{not json".to_vec(), 400, "malformed JSON"),
        (
            vec![json_ct, ("authorization", &good)],
            br#"{"application":{"app_id":"a"}}"#.to_vec(),
            400,
            "no usable target user email",
        ),
        (vec![json_ct, ("authorization", &good)], vec![b' '; 2 * 1024 * 1024], 413, "byte limit"),
    ];
    for (headers, body, want, words) in cases {
        let (status, answer, _) = op.post_raw(path, &headers, body).await;
        assert_eq!(status, want, "{answer}");
        assert_eq!(answer["response"], "FAILURE");
        assert!(answer["msg"].as_str().unwrap().contains(words), "{answer} should say {words:?}");
    }
    assert!(requests_for(&c, &email).await.is_empty(), "no object created");
    assert!(!op.log_text().contains(SECRET), "the secret never reaches the log");
}

#[tokio::test]
async fn rotated_secret_works_without_restart() {
    // A second, webhook-only replica with a secret file of its own.
    let own = Operator::start(OperatorOpts { args: vec!["--controller=false".into()], ..Default::default() });
    let call = |secret: &'static str| {
        let url = own.url.clone();
        async move {
            let resp = http_client()
                .post(format!("{url}/webhooks/lumos/deprovision"))
                .header("authorization", format!("Bearer {secret}"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&payload(&unique("rot"), "rot@lumos.com", &[])).unwrap())
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    const NEW: &str = "rotated-secret-abcdefghijklmnop";
    assert_eq!(call(SECRET).await, 200);
    assert_eq!(call(NEW).await, 401);
    let replace = |text: String| {
        let tmp = own.secret_file.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &own.secret_file).unwrap();
    };
    replace(format!("{SECRET}\n{NEW}\n"));
    assert_eq!(call(SECRET).await, 200);
    assert_eq!(call(NEW).await, 200);
    replace(format!("{NEW}\n"));
    assert_eq!(call(SECRET).await, 401);
    assert_eq!(call(NEW).await, 200);
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let c = admin().await;
    let ns = unique("dry");
    namespace(&c, &ns, &[]).await;
    let rb = role_binding(&c, &ns, "rb", "view", vec![user("otto@lumos.com")]).await;
    let app = namespace_policy(&c, "dry", &ns).await;
    // Through the webhook (`?dryRun=true`, for Lumos's Test Webhook button) ...
    let (_, answer, _) =
        operator().lumos_to("/webhooks/lumos/deprovision?dryRun=true", &payload(&app, "otto@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert!(
        answer["msg"]
            .as_str()
            .unwrap()
            .starts_with("Dry run: would remove otto@lumos.com from 1 place(s): RoleBinding"),
        "{answer}"
    );
    let r = get_request(&c, &request_name(&answer)).await;
    assert_eq!(phase(&r), Phase::DryRun);
    assert_eq!(r.status.unwrap().plan.len(), 1);
    // ... and as a manual request.
    let spec = fixtures::request_spec(&app, "otto@lumos.com").dry_run(true).build();
    let name = create_request(&c, &unique("manual-dry"), spec).await;
    assert_eq!(phase(&wait_terminal(&c, &name, Duration::from_secs(20)).await), Phase::DryRun);
    assert_eq!(get_rb(&c, &ns, "rb").await.unwrap(), rb);
}

#[tokio::test]
async fn manual_requests_are_reconciled_and_their_spec_is_immutable() {
    operator(); // the controller that reconciles what this test creates
    let c = admin().await;
    let ns = unique("manual");
    namespace(&c, &ns, &[]).await;
    role_binding(&c, &ns, "rb", "view", vec![user("felicia@lumos.com"), user("stays@lumos.com")]).await;
    let app = namespace_policy(&c, "manual", &ns).await;
    let name = unique("manual");
    let yaml = format!(
        "apiVersion: access.deprovisioner.dev/v1alpha1\nkind: DeprovisionRequest\nmetadata:\n  name: {name}\nspec:\n  application:\n    appId: {app}\n  targetUser:\n    email: felicia@lumos.com\n"
    );
    let file = cluster().dir.join(format!("{name}.yaml"));
    std::fs::write(&file, &yaml).unwrap();
    let out = cluster().kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = wait_terminal(&c, &name, Duration::from_secs(20)).await;
    assert_eq!(phase(&r), Phase::Succeeded);
    assert_eq!(names(&get_rb(&c, &ns, "rb").await.unwrap().subjects), vec!["User:stays@lumos.com"]);
    // The API server refuses a changed spec (CEL rule), with the rule's message.
    std::fs::write(&file, yaml.replace("felicia@lumos.com", "someone-else@lumos.com")).unwrap();
    let out = cluster().kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec is immutable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let get = cluster().kubectl(&["get", "dpr", &name]);
    let table = String::from_utf8_lossy(&get.stdout);
    assert!(table.contains("TARGET") && table.contains("felicia@lumos.com") && table.contains("Succeeded"), "{table}");
}

#[tokio::test]
async fn invalid_policies_are_rejected_or_marked() {
    operator(); // the controller that reconciles what this test creates
    let c = admin().await;
    // Rejected by the API server's schema (CEL): a rule that names nothing to remove.
    let bad = format!(
        "apiVersion: access.deprovisioner.dev/v1alpha1\nkind: DeprovisionPolicy\nmetadata:\n  name: {}\nspec:\n  application: {{appId: x}}\n  subjects: [{{kind: User, name: x}}]\n  rules: [{{permissions: [x]}}]\n",
        unique("bad-policy")
    );
    let file = cluster().dir.join(format!("{}.yaml", unique("bad")));
    std::fs::write(&file, bad).unwrap();
    let out = cluster().kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("a rule needs roleBindings, clusterRoleBindings, namespaceAccess, entitlements, scim or http")
    );
    // A ServiceAccount subject without a namespace (the rule names `namespace`, a CEL reserved
    // word: escaped, so the CRD installs on 1.31 too).
    let no_ns = format!(
        "apiVersion: access.deprovisioner.dev/v1alpha1\nkind: DeprovisionPolicy\nmetadata:\n  name: {}\nspec:\n  application: {{appId: x}}\n  subjects: [{{kind: ServiceAccount, name: x}}]\n  rules: [{{clusterRoleBindings: {{names: [x]}}}}]\n",
        unique("sa-no-namespace")
    );
    std::fs::write(&file, no_ns).unwrap();
    let out = cluster().kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a ServiceAccount subject needs a namespace"), "{stderr}");
    // An empty selector never means "everything".
    let empty = format!(
        "apiVersion: access.deprovisioner.dev/v1alpha1\nkind: DeprovisionPolicy\nmetadata:\n  name: {}\nspec:\n  application: {{appId: x}}\n  subjects: [{{kind: User, name: x}}]\n  rules: [{{clusterRoleBindings: {{selector: {{}}}}}}]\n",
        unique("empty-selector")
    );
    std::fs::write(&file, empty).unwrap();
    let out = cluster().kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("an empty selector would select everything"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Accepted by the schema but unusable: a status condition says what is wrong.
    let name = unique("marked-policy");
    policy(
        &c,
        &name,
        json!({"application": {"appId": unique("m")}, "subjects": [user_template("{{target_user.password}}")],
        "rules": [{"roleBindings": {"namespaces": ["x"]}}]}),
    )
    .await;
    let api: Api<deprovisioner::crd::DeprovisionPolicy> = Api::all(c.clone());
    for _ in 0..100 {
        let p = api.get(&name).await.unwrap();
        if let Some(cond) = p.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Valid")) {
            assert_eq!(cond.status, "False");
            assert!(cond.message.contains("unknown field \"target_user.password\""), "{}", cond.message);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("policy never got a Valid condition");
}

#[tokio::test]
async fn concurrent_requests_editing_the_same_bindings_both_succeed() {
    let c = admin().await;
    let ns = unique("race");
    namespace(&c, &ns, &[]).await;
    let people = ["eddie", "cletus", "flash", "betty"];
    for i in 0..6 {
        role_binding(
            &c,
            &ns,
            &format!("shared-{i}"),
            "view",
            people.iter().map(|p| user(&format!("{p}@lumos.com"))).collect(),
        )
        .await;
    }
    let app = namespace_policy(&c, "race", &ns).await;
    let op = operator();
    let calls = people[..3].iter().map(|p| payload(&app, &format!("{p}@lumos.com"), &[])).collect::<Vec<_>>();
    let (a, b, d) = tokio::join!(op.lumos(&calls[0]), op.lumos(&calls[1]), op.lumos(&calls[2]));
    for x in [&a, &b, &d] {
        assert_eq!(x.1["response"], "SUCCESS", "{:?}", x.1);
    }
    for i in 0..6 {
        assert_eq!(
            names(&get_rb(&c, &ns, &format!("shared-{i}")).await.unwrap().subjects),
            vec!["User:betty@lumos.com"]
        );
    }
}

#[tokio::test]
async fn metrics_count_answers_actions_and_finished_requests() {
    // A control plane and operator of this test's own: the other tests of this binary run
    // concurrently against the shared operator, so only here is every count this test's calls.
    let cl = own_cluster();
    let c = cl.admin().await;
    let port = free_port();
    let op = Operator::start(OperatorOpts::on(cl).args(&[
        "--response-deadline",
        "8s",
        "--metrics-listen",
        &format!("127.0.0.1:{port}"),
    ]));
    let ns = unique("metrics");
    namespace(&c, &ns, &[]).await;
    role_binding(&c, &ns, "pair", "view", vec![user("m@lumos.com"), user("stays@lumos.com")]).await;
    let app = namespace_policy(&c, "metrics", &ns).await;

    const SUCCESS_200: &str = r#"deprovisioner_webhook_answers_total{response="SUCCESS",code="200"}"#;
    const FAILURE_200: &str = r#"deprovisioner_webhook_answers_total{response="FAILURE",code="200"}"#;
    const FAILURE_401: &str = r#"deprovisioner_webhook_answers_total{response="FAILURE",code="401"}"#;
    const REMOVED: &str = r#"deprovisioner_actions_total{kind="RemoveBindingSubject",outcome="Removed"}"#;
    const SUCCEEDED: &str = r#"deprovisioner_requests_finished_total{phase="Succeeded"}"#;
    const FAILED: &str = r#"deprovisioner_requests_finished_total{phase="Failed"}"#;
    const ANSWERED: &str = "deprovisioner_webhook_seconds_count";
    let before = scrape(port).await;
    let was = |line: &str| metric(&before, line).unwrap_or(0.0);

    // One removal, one app no policy covers, one call without credentials.
    let (status, answer, _) = op.lumos(&payload(&app, "m@lumos.com", &[])).await;
    assert_eq!((status, answer["response"].as_str()), (200, Some("SUCCESS")), "{answer}");
    let (status, answer, _) = op.lumos(&payload(&unique("metrics-app"), "m@lumos.com", &[])).await;
    assert_eq!((status, answer["response"].as_str()), (200, Some("FAILURE")), "{answer}");
    let (status, _, _) =
        op.post_raw("/webhooks/lumos/deprovision", &[("content-type", "application/json")], b"{}".to_vec()).await;
    assert_eq!(status, 401);

    let want = [
        (SUCCESS_200, 1.0),
        (FAILURE_200, 1.0),
        (FAILURE_401, 1.0),
        (REMOVED, 1.0),
        (SUCCEEDED, 1.0),
        (FAILED, 1.0),
        (ANSWERED, 3.0),
    ];
    // The controller counts a finished request just after writing its status, which is what the
    // webhook answers from: wait briefly for the counts to arrive, then require them exactly.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = scrape(port).await;
        let deltas: Vec<(&str, f64)> =
            want.iter().map(|(l, _)| (*l, metric(&now, l).unwrap_or(0.0) - was(l))).collect();
        if deltas == want || std::time::Instant::now() > deadline {
            assert_eq!(deltas, want, "metrics after this test's calls:\n{now}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The metrics exposition of an operator started with `--metrics-listen 127.0.0.1:<port>`.
async fn scrape(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    http_client().get(url).send().await.unwrap().text().await.unwrap()
}

/// The value of one metric line (`name{labels}`) in an exposition; `None` when it is absent (a
/// labelled counter appears once it is first incremented).
fn metric(text: &str, line: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

#[tokio::test]
async fn a_binding_argo_cd_keeps_in_sync_is_warned_about_or_left_alone() {
    let c = admin().await;
    for rule in ["Remove", "Fail"] {
        let ns = unique("argo");
        namespace(&c, &ns, &[]).await;
        let mut rb = fixtures::role_binding(&ns, "deployers")
            .role("view")
            .subjects([user("logan@lumos.com"), user("stays@lumos.com")])
            .build();
        rb.metadata.annotations = Some(
            [(
                "argocd.argoproj.io/tracking-id".to_string(),
                format!("team-rbac:rbac.authorization.k8s.io/RoleBinding:{ns}/deployers"),
            )]
            .into(),
        );
        create_role_binding(&c, rb).await;
        role_binding(&c, &ns, "by-hand", "view", vec![user("logan@lumos.com"), user("stays@lumos.com")]).await;
        let app = unique("argo-app");
        policy(
            &c,
            &unique("argo-policy"),
            json!({
                "application": {"appId": app},
                "managedBindings": rule,
                "subjects": [user_template("{{target_user.email}}")],
                "rules": [{"roleBindings": {"namespaces": [ns]}}]
            }),
        )
        .await;
        let (_, answer, _) = operator().lumos(&payload(&app, "logan@lumos.com", &[])).await;
        let msg = answer["msg"].as_str().unwrap();
        let st = get_request(&c, &request_name(&answer)).await.status.unwrap();
        if rule == "Remove" {
            assert_eq!(answer["response"], "SUCCESS", "{answer}");
            assert!(
                msg.contains(&format!("; warning: RoleBinding {ns}/deployers is managed by Argo CD application team-rbac: change the source or it will come back")),
                "{msg}"
            );
            assert_eq!(names(&get_rb(&c, &ns, "deployers").await.unwrap().subjects), vec!["User:stays@lumos.com"]);
            let managed: Vec<_> = st
                .plan
                .iter()
                .filter_map(|a| match &a.action {
                    deprovisioner::crd::Action::RemoveBindingSubject(b) => {
                        Some((b.binding.name.clone(), b.managed_by.clone()))
                    }
                    _ => None,
                })
                .collect();
            let argo = managed.iter().find(|(n, _)| n == "deployers").unwrap().1.clone().unwrap();
            assert_eq!((argo.kind, argo.name.as_str()), (deprovisioner::crd::ManagerKind::ArgoCd, "team-rbac"));
            // The binding made by hand names its last writer, who does not sync it: no warning.
            let by_hand = managed.iter().find(|(n, _)| n == "by-hand").unwrap().1.clone().unwrap();
            assert_eq!(by_hand.kind, deprovisioner::crd::ManagerKind::FieldManager);
            assert!(!msg.contains("by-hand is managed"), "{msg}");
        } else {
            assert_eq!(answer["response"], "FAILURE", "{answer}");
            assert!(msg.contains(&format!("RoleBinding {ns}/deployers (Argo CD application team-rbac)")), "{msg}");
            assert!(msg.contains("nothing was changed"), "{msg}");
            assert_eq!(st.phase, Phase::Failed);
            assert!(st.results.is_empty());
            for name in ["deployers", "by-hand"] {
                assert_eq!(names(&get_rb(&c, &ns, name).await.unwrap().subjects).len(), 2, "{name} unchanged");
            }
        }
    }
}

/// The executor writes from the binding index's copy without reading the binding first, and only
/// when that copy is exactly the stored binding: a copy made stale by another writer is refused
/// by the API server as a whole (the patch tests uid and resourceVersion), and the binding is
/// read and written from what is stored, keeping the other writer's subject.
#[tokio::test]
async fn a_stale_index_copy_is_never_written_back() {
    use deprovisioner::crd::{BindingAction, BindingRef, BindingScope, EmptyBindingRule, SubjectRef};
    use deprovisioner::view::{Need, Reader, Since, View};
    let c = admin().await;
    let operator_client = client_for(&cluster().operator_kubeconfig).await;
    let ns = unique("stale-copy");
    namespace(&c, &ns, &[]).await;
    let rb = role_binding(&c, &ns, "pair", "view", vec![user("gone@lumos.com"), user("stays@lumos.com")]).await;
    let solo = role_binding(&c, &ns, "solo", "view", vec![user("gone@lumos.com")]).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let settings = deprovisioner::view::Settings {
        namespace: "deprovisioner",
        sentinel: "deprovisioner-index-barrier",
        bindings: true,
        unfinished: &deprovisioner::controller::unfinished_selector(),
    };
    let finished = deprovisioner::finished::Finished::new();
    let index = View::start(&operator_client, settings, finished, deprovisioner::metrics::Metrics::new(), &stop);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let rbs = Need::bindings(true, false);
    while index.read(Since::Arrived(std::time::Instant::now()), rbs, Reader::Plan).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the index did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Freeze the index's copies, then let another writer add someone to the pair.
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = index.read(Since::Held, rbs, Reader::Exec).await.unwrap();
    assert!(held.role_binding(&ns, "pair").is_some(), "the index holds the binding");
    let api: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(c.clone(), &ns);
    let mut changed = api.get("pair").await.unwrap();
    changed.subjects.as_mut().unwrap().push(user("added-meanwhile@lumos.com"));
    api.replace("pair", &Default::default(), &changed).await.unwrap();
    let action = |b: &k8s_openapi::api::rbac::v1::RoleBinding| BindingAction {
        binding: BindingRef {
            scope: BindingScope::Namespaced(ns.clone()),
            name: name_of(b),
            uid: b.metadata.uid.clone().unwrap(),
            role_ref: "ClusterRole/view".into(),
        },
        subject: SubjectRef { kind: "User".into(), name: "gone@lumos.com".into(), namespace: None },
        when_empty: EmptyBindingRule::Delete,
        managed_by: None,
    };
    let done = deprovisioner::exec::rbac::remove_subject(&operator_client, Some(&index), &action(&rb)).await.unwrap();
    assert_eq!(done.message, format!("removed User gone@lumos.com from RoleBinding {ns}/pair"));
    assert_eq!(
        names(&get_rb(&c, &ns, "pair").await.unwrap().subjects),
        ["User:stays@lumos.com", "User:added-meanwhile@lumos.com"],
        "the other writer's subject stays"
    );
    // A current copy is written directly: the emptied binding is deleted with its uid and
    // resourceVersion as preconditions.
    let done = deprovisioner::exec::rbac::remove_subject(&operator_client, Some(&index), &action(&solo)).await.unwrap();
    assert!(done.message.contains("deleted RoleBinding"), "{}", done.message);
    assert!(get_rb(&c, &ns, "solo").await.is_none());
}

/// A call with nothing to remove, under a policy that selects namespaces by label and
/// ClusterRoleBindings by selector (as the README's and the demo's do), costs one status write
/// (the plan recorded with its finish), one PATCH per barrier sentinel (the webhook's early
/// barrier and the plan share it), and no read of namespaces (the view's watch answers), counted
/// by the API server itself on a control plane of its own.
#[tokio::test]
async fn a_call_with_nothing_to_remove_writes_its_status_once_and_each_barrier_once() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let label = unique("once");
    namespace(&c, &unique("once-a"), &[("once-team", &label)]).await;
    cluster_role_binding(
        &c,
        &unique("once-readers"),
        "view",
        &[("lumos-app", &label)],
        vec![user("someone@lumos.com")],
    )
    .await;
    policy(
        &c,
        &unique("once-policy"),
        json!({
            "application": {"appId": "once_app"},
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaceSelector": {"matchLabels": {"once-team": label}}},
                       "clusterRoleBindings": {"selector": {"matchLabels": {"lumos-app": label}}}}]
        }),
    )
    .await;
    let op = Operator::start(OperatorOpts::on(cl));
    let ready = std::time::Instant::now() + Duration::from_secs(30);
    while http_client().get(format!("{}/readyz", op.url)).send().await.map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(std::time::Instant::now() < ready, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let call = |i: usize| payload("once_app", &format!("nobody-{i}@lumos.com"), &[]);
    // One call first: connections opened, policies and namespaces already in the view.
    let (status, answer, _) = op.lumos(&call(0)).await;
    assert_eq!((status, &answer["response"]), (200, &json!("SUCCESS")), "{answer}");
    let n = 3;
    let before = api_requests(cl);
    for i in 1..=n {
        let (status, answer, _) = op.lumos(&call(i)).await;
        assert_eq!((status, &answer["response"]), (200, &json!("SUCCESS")), "{answer}");
        let st = get_request(&c, &request_name(&answer)).await.status.unwrap();
        assert!(st.plan.iter().all(|a| !a.action.changes_something()), "nothing to remove: {:?}", st.plan);
        assert!(!st.plan.is_empty(), "absences confirmed");
    }
    let after = api_requests(cl);
    let per_call = |k: &str| (after.get(k).unwrap_or(&0.0) - before.get(k).unwrap_or(&0.0)) / n as f64;
    let counts =
        format!("{:#?}", after.iter().map(|(k, v)| (k, v - before.get(k).unwrap_or(&0.0))).collect::<Vec<_>>());
    assert_eq!(per_call("PUT deprovisionrequests/status"), 1.0, "one status write per call: {counts}");
    assert_eq!(per_call("PATCH rolebindings"), 1.0, "one RoleBinding barrier per call: {counts}");
    assert_eq!(per_call("PATCH clusterrolebindings"), 1.0, "one ClusterRoleBinding barrier per call: {counts}");
    assert_eq!(per_call("LIST namespaces"), 0.0, "namespaces from the view's watch: {counts}");
    assert_eq!(per_call("GET namespaces"), 0.0, "every namespace in the watch: {counts}");
    let r = requests_for(&c, "nobody-1@lumos.com").await;
    assert_eq!(phase(&r[0]), Phase::Succeeded);
}
