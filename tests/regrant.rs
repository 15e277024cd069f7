//! Removals that stick, on a real kube-apiserver: after a request finishes, access that comes
//! back (the old binding edited, or a new binding) is noticed within seconds, recorded on the
//! request and, with `onRegrant: Remove`, removed again; a re-grant made while no operator runs is
//! found when one starts, and a reported binding deleted unseen and created again is reported
//! again.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deprovisioner::crd::{DeprovisionRequest, DeprovisionRequestStatus};
use deprovisioner::fixtures::user;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::*;

struct Shared {
    op: Operator,
    metrics: String,
}

fn shared() -> &'static Shared {
    static OP: OnceLock<Shared> = OnceLock::new();
    OP.get_or_init(|| {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let op =
            Operator::start(OperatorOpts::default().args(&["--response-deadline", "8s", "--metrics-listen", &listen]));
        Shared { op, metrics: format!("http://{listen}/metrics") }
    })
}

/// A namespace with RoleBinding `deployers` (the person and someone who stays) and a policy
/// removing the person from that namespace's RoleBindings. Returns (namespace, app).
async fn setup(c: &Client, person: &str, on_regrant: &str) -> (String, String) {
    let ns = unique("rg");
    namespace(c, &ns, &[]).await;
    role_binding(c, &ns, "deployers", "view", vec![user(person), user("stays@lumos.com")]).await;
    let app = unique("rg-app");
    policy(
        c,
        &unique("rg-policy"),
        json!({
            "application": {"appId": app},
            "onRegrant": on_regrant,
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaces": [ns]}}]
        }),
    )
    .await;
    (ns, app)
}

/// Puts the person back into `deployers`, as `kubectl edit` would (field manager `kubectl-edit`).
async fn add_back(c: &Client, ns: &str, person: &str) {
    let api: Api<RoleBinding> = Api::namespaced(c.clone(), ns);
    let mut rb = api.get("deployers").await.unwrap();
    rb.subjects.get_or_insert_with(Vec::new).push(user(person));
    let pp = PostParams { field_manager: Some("kubectl-edit".into()), ..Default::default() };
    api.replace("deployers", &pp, &rb).await.unwrap();
}

/// Waits (10 s at most) until the request records `n` re-grants.
async fn regrants(c: &Client, name: &str, n: usize) -> DeprovisionRequestStatus {
    regrants_within(c, name, n, Duration::from_secs(10)).await
}

async fn regrants_within(c: &Client, name: &str, n: usize, within: Duration) -> DeprovisionRequestStatus {
    let deadline = Instant::now() + within;
    loop {
        let st = get_request(c, name).await.status.unwrap();
        if st.regrants.len() >= n {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{} re-grant(s) recorded, {n} expected: {:?}",
            st.regrants.len(),
            st.regrants
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn access_that_comes_back_is_reported_with_who_wrote_it() {
    let c = admin().await;
    let person = format!("{}@lumos.com", unique("rg-report"));
    let (ns, app) = setup(&c, &person, "Report").await;
    let (_, answer, _) = shared().op.lumos(&payload(&app, &person, &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let name = request_name(&answer);

    // Someone puts the person back with kubectl.
    let t = Instant::now();
    add_back(&c, &ns, &person).await;
    let st = regrants(&c, &name, 1).await;
    println!("re-grant noticed after {:?}", t.elapsed());
    let g = &st.regrants[0];
    assert_eq!(g.object, format!("RoleBinding {ns}/deployers"));
    assert_eq!(g.subject, format!("User {person}"));
    assert_eq!(g.field_manager.as_deref(), Some("kubectl-edit"));
    assert!(!g.removed_again);
    let cond = st.conditions.iter().find(|c| c.type_ == "Regranted").expect("a Regranted condition");
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "AccessRegranted"));
    assert_eq!(
        names(&get_rb(&c, &ns, "deployers").await.unwrap().subjects).len(),
        2,
        "Report leaves the binding as it is"
    );
    // Easy to find, and an Event.
    let labelled = Api::<DeprovisionRequest>::all(c.clone())
        .list(&ListParams::default().labels("access.deprovisioner.dev/regranted=true"))
        .await
        .unwrap();
    assert!(labelled.items.iter().any(|r| r.metadata.name.as_deref() == Some(name.as_str())));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events_for(&c, &name).await.iter().any(|(r, note)| r == "AccessRegranted" && note.contains("kubectl-edit")) {
        assert!(Instant::now() < deadline, "no AccessRegranted Event: {:?}", events_for(&c, &name).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A new binding for the person, elsewhere, counts too.
    let elsewhere = unique("rg-elsewhere");
    namespace(&c, &elsewhere, &[]).await;
    role_binding(&c, &elsewhere, "new-grant", "view", vec![user(&person)]).await;
    let st = regrants(&c, &name, 2).await;
    assert_eq!(st.regrants[1].object, format!("RoleBinding {elsewhere}/new-grant"));

    let metrics = http_client().get(&shared().metrics).send().await.unwrap().text().await.unwrap();
    let line = format!("deprovisioner_regrants_total{{app=\"{app}\"}} 2");
    assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
}

#[tokio::test]
async fn with_remove_it_is_removed_again_and_recorded() {
    let c = admin().await;
    let person = format!("{}@lumos.com", unique("rg-remove"));
    let (ns, app) = setup(&c, &person, "Remove").await;
    let (_, answer, _) = shared().op.lumos(&payload(&app, &person, &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let name = request_name(&answer);

    add_back(&c, &ns, &person).await;
    let st = regrants(&c, &name, 1).await;
    assert!(st.regrants[0].removed_again, "{:?}", st.regrants[0]);
    assert!(st.regrants[0].message.contains("removed again"), "{}", st.regrants[0].message);
    assert_eq!(names(&get_rb(&c, &ns, "deployers").await.unwrap().subjects), vec!["User:stays@lumos.com"]);
    // It comes back again: removed again again, and recorded each time.
    add_back(&c, &ns, &person).await;
    let st = regrants(&c, &name, 2).await;
    assert!(st.regrants[1].removed_again);
    assert_eq!(names(&get_rb(&c, &ns, "deployers").await.unwrap().subjects), vec!["User:stays@lumos.com"]);
}

#[tokio::test]
async fn a_regrant_made_while_the_operator_is_down_is_found_when_it_starts() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let person = format!("{}@lumos.com", unique("rg-down"));
    let (ns, app) = setup(&c, &person, "Report").await;
    let mut op = Operator::start(OperatorOpts::on(cl));
    let (_, answer, _) = op.lumos(&payload(&app, &person, &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let name = request_name(&answer);
    op.kill();

    add_back(&c, &ns, &person).await;
    // The killed leader's Lease runs out first (4 s). This replica runs without a binding index,
    // so the re-grant watch uses watches of its own (the other tests follow the index).
    let op = Operator::start(OperatorOpts::on(cl).args(&["--binding-index", "false"]));
    let st = regrants_within(&c, &name, 1, Duration::from_secs(20)).await;
    assert_eq!(st.regrants[0].object, format!("RoleBinding {ns}/deployers"));
    // Found once: a second restart does not report it again.
    op.signal("TERM");
    drop(op);
    let op = Operator::start(OperatorOpts::on(cl));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !strip_ansi(&op.log_text()).contains("re-grant watch: watching") {
        assert!(Instant::now() < deadline, "the new leader did not start its re-grant watch:\n{}", op.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get_request(&c, &name).await.status.unwrap().regrants.len(), 1);

    // The reported binding is deleted while no operator runs (no replica sees it go), and the
    // next leader has listed the bindings: when someone creates it again naming the person, that
    // is a re-grant again, not the one already reported.
    op.signal("TERM");
    drop(op);
    Api::<RoleBinding>::namespaced(c.clone(), &ns).delete("deployers", &Default::default()).await.unwrap();
    let op = Operator::start(OperatorOpts::on(cl));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !strip_ansi(&op.log_text()).contains("re-grant watch: forgot the reported bindings that are gone forgot=1") {
        assert!(Instant::now() < deadline, "the new leader did not forget the deleted binding:\n{}", op.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    role_binding(&c, &ns, "deployers", "view", vec![user(&person)]).await;
    let st = regrants_within(&c, &name, 2, Duration::from_secs(20)).await;
    assert_eq!(st.regrants[1].object, format!("RoleBinding {ns}/deployers"));
    drop(op);
}
