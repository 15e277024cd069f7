//! Proof of removal on a real kube-apiserver: after the removals the operator asks the API
//! server's own authorizer whether the person can still do what the removed bindings granted,
//! and names every binding that still names them. The operator runs with only the RBAC it ships.
//!
//! The built-in `edit`/`view` roles are empty on this control plane (no controller-manager
//! aggregates them), so each test binds a ClusterRole with real rules of its own.

mod support;

use std::sync::OnceLock;

use deprovisioner::crd::{BindingKind, DeprovisionRequestStatus, Outcome, Phase};
use deprovisioner::fixtures::{group, user};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::*;

fn operator() -> &'static Operator {
    static OP: OnceLock<Operator> = OnceLock::new();
    OP.get_or_init(|| Operator::start(OperatorOpts::default().args(&["--response-deadline", "8s"])))
}

/// A ClusterRole that may read and update Deployments.
async fn deployer_role(c: &kube::Client) -> String {
    let name = unique("vf-deployer");
    let role = ClusterRole {
        metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["apps".into()]),
            resources: Some(vec!["deployments".into()]),
            verbs: vec!["get".into(), "update".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(c.clone()).create(&PostParams::default(), &role).await.unwrap();
    name
}

/// A namespace whose RoleBinding `deployers` grants `role` to `subjects`, and a policy for a new
/// app removing the target (and, when given, a Group) from that namespace's RoleBindings.
/// Returns (namespace, app, policy name).
async fn setup(
    c: &kube::Client,
    role: &str,
    subjects: Vec<k8s_openapi::api::rbac::v1::Subject>,
    policy_group: Option<&str>,
    extra: Value,
) -> (String, String, String) {
    let ns = unique("vf-team");
    namespace(c, &ns, &[]).await;
    role_binding(c, &ns, "deployers", role, subjects).await;
    let app = unique("vf-app");
    let name = unique("vf-policy");
    let mut subjects = vec![json!({"kind": "User", "name": "{{target_user.email}}"})];
    if let Some(g) = policy_group {
        subjects.push(json!({"kind": "Group", "name": g}));
    }
    let mut spec = json!({
        "application": {"appId": app},
        "subjects": subjects,
        "rules": [{"roleBindings": {"namespaces": [ns]}}]
    });
    if let (Some(obj), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    policy(c, &name, spec).await;
    (ns, app, name)
}

fn verified(st: &DeprovisionRequestStatus) -> (String, String) {
    let c = st.conditions.iter().find(|c| c.type_ == "Verified").expect("a Verified condition");
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn access_only_through_the_policys_binding_is_verified_gone() {
    let c = admin().await;
    let role = deployer_role(&c).await;
    let email = format!("{}@lumos.com", unique("vf-only"));
    let (ns, app, _) = setup(&c, &role, vec![user(&email), user("stays@lumos.com")], None, json!({})).await;

    let (_, answer, _) = operator().lumos(&payload(&app, &email, &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(msg.contains("; verified: no remaining access (record: "), "{msg}");
    assert_eq!(names(&get_rb(&c, &ns, "deployers").await.unwrap().subjects), vec!["User:stays@lumos.com"]);

    let st = get_request(&c, &request_name(&answer)).await.status.unwrap();
    assert_eq!(verified(&st), ("True".into(), "NoRemainingAccess".into()));
    let v = st.verification.unwrap();
    assert_eq!(v.identities, vec![format!("User {email}")]);
    let asked: Vec<String> = v.reviews.iter().map(|r| r.describe()).collect();
    // One review per removed binding by default: the role's first grant; the note says what was
    // left out.
    assert_eq!(asked, [format!("get deployments.apps in {ns}")]);
    assert_eq!(
        v.notes,
        [
            "1 more access review(s) of the removed bindings' grants not asked (1 per removed binding and identity, at most 48 in all)"
        ]
    );
    assert!(v.reviews.iter().all(|r| !r.allowed && r.granted_by == format!("RoleBinding {ns}/deployers")));
    assert!(v.residual.is_empty(), "{:?}", v.residual);
    assert!(v.error.is_none());

    // `kubectl get dpr` shows the verdict.
    let out = cluster().kubectl(&["get", "dpr", &request_name(&answer)]);
    let table = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    let col = header.iter().position(|h| *h == "VERIFIED").expect("a VERIFIED column");
    assert_eq!(row[col], "True", "{table}");
}

/// `--reviews-per-binding 2` asks both grants of the deployer role, and the answer counts what
/// else remains allowed. On a control plane of its own: one operator leads per cluster.
#[tokio::test]
async fn more_reviews_per_binding_ask_every_grant() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let role = deployer_role(&c).await;
    let email = format!("{}@lumos.com", unique("vf-two"));
    let (ns, app, policy) = setup(&c, &role, vec![user(&email)], None, json!({})).await;
    let admins = unique("vf-team-admins");
    cluster_role_binding(&c, &admins, &role, &[], vec![user(&email)]).await;
    let op = Operator::start(OperatorOpts::on(cl).args(&["--response-deadline", "8s", "--reviews-per-binding", "2"]));

    let (_, answer, _) = op.lumos(&payload(&app, &email, &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let expected = format!(
        "; still allowed to get deployments.apps in {ns} via ClusterRoleBinding {admins} (not covered by policy {policy}) (and 1 more allowed) (record: "
    );
    assert!(answer["msg"].as_str().unwrap().contains(&expected), "{answer}\nexpected {expected}");
    let v = get_request(&c, &request_name(&answer)).await.status.unwrap().verification.unwrap();
    let asked: Vec<String> = v.reviews.iter().map(|r| r.describe()).collect();
    assert_eq!(asked, [format!("get deployments.apps in {ns}"), format!("update deployments.apps in {ns}")]);
    assert!(v.reviews.iter().all(|r| r.allowed), "{:?}", v.reviews);
    assert!(v.notes.is_empty(), "nothing left out: {:?}", v.notes);
}

#[tokio::test]
async fn an_unrelated_cluster_role_binding_keeps_the_access_and_fails_the_answer() {
    let c = admin().await;
    let role = deployer_role(&c).await;
    let email = format!("{}@lumos.com", unique("vf-crb"));
    let (ns, app, policy) = setup(&c, &role, vec![user(&email)], None, json!({})).await;
    let admins = unique("vf-team-admins");
    cluster_role_binding(&c, &admins, &role, &[], vec![user(&email)]).await;

    let (_, answer, _) = operator().lumos(&payload(&app, &email, &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    let expected = format!(
        "; still allowed to get deployments.apps in {ns} via ClusterRoleBinding {admins} (not covered by policy {policy})"
    );
    assert!(msg.contains(&format!("{expected} (record: ")), "{msg}\nexpected {expected}");
    assert!(!msg.contains('\n'), "one line");
    // The removal stays done and recorded.
    assert!(get_rb(&c, &ns, "deployers").await.is_none(), "its last subject went: deleted");
    let r = get_request(&c, &request_name(&answer)).await;
    let st = r.status.unwrap();
    assert_eq!(st.phase, Phase::Failed);
    assert_eq!(st.results[0].outcome, Outcome::Deleted);
    assert_eq!(verified(&st), ("False".into(), "AccessRemains".into()));
    let v = st.verification.unwrap();
    assert!(v.reviews.iter().all(|r| r.allowed), "{:?}", v.reviews);
    let reason = v.reviews[0].reason.as_deref().unwrap();
    assert!(reason.contains(&format!("ClusterRoleBinding \"{admins}\"")), "the authorizer names it: {reason}");
    assert_eq!(v.residual.len(), 1, "{:?}", v.residual);
    let residual = &v.residual[0];
    assert_eq!((residual.kind, residual.name.as_str()), (BindingKind::ClusterRoleBinding, admins.as_str()));
    assert_eq!(residual.subject, format!("User {email}"));
    assert_eq!(residual.why, format!("not covered by policy {policy}"));
    let events = events_for(&c, &request_name(&answer)).await;
    assert!(events.iter().any(|(reason, note)| reason == "AccessRemains" && note.contains(&admins)), "{events:?}");
}

#[tokio::test]
async fn access_through_a_group_the_policy_lists_is_reported() {
    let c = admin().await;
    let role = deployer_role(&c).await;
    let email = format!("{}@lumos.com", unique("vf-group"));
    let devs = unique("vf-devs");
    let (ns, app, policy) = setup(&c, &role, vec![user(&email)], Some(&devs), json!({})).await;
    // The group keeps the role cluster-wide through a binding no policy covers.
    let by_group = unique("vf-devs-deployers");
    cluster_role_binding(&c, &by_group, &role, &[], vec![group(&devs)]).await;

    let (_, answer, _) = operator().lumos(&payload(&app, &email, &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(msg.contains(&format!("via ClusterRoleBinding {by_group} (not covered by policy {policy})")), "{msg}");
    assert!(get_rb(&c, &ns, "deployers").await.is_none());
    let v = get_request(&c, &request_name(&answer)).await.status.unwrap().verification.unwrap();
    assert_eq!(v.identities, vec![format!("User {email} (groups: {devs})")]);
    assert_eq!(v.residual[0].subject, format!("Group {devs}"));
}

#[tokio::test]
async fn report_mode_answers_success_and_names_what_remains() {
    let c = admin().await;
    let role = deployer_role(&c).await;
    let email = format!("{}@lumos.com", unique("vf-report"));
    let (ns, app, policy) = setup(&c, &role, vec![user(&email)], None, json!({"onResidualAccess": "Report"})).await;
    let admins = unique("vf-report-admins");
    cluster_role_binding(&c, &admins, &role, &[], vec![user(&email)]).await;

    let (_, answer, _) = operator().lumos(&payload(&app, &email, &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(
        msg.contains(&format!("still allowed to get deployments.apps in {ns} via ClusterRoleBinding {admins} (not covered by policy {policy})")),
        "{msg}"
    );
    let st = get_request(&c, &request_name(&answer)).await.status.unwrap();
    assert_eq!(st.phase, Phase::Succeeded);
    assert_eq!(verified(&st), ("False".into(), "AccessRemains".into()));
}
