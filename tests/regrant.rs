//! Removals that stick, on a real kube-apiserver: after a request finishes, access that comes
//! back through a binding it removed the person from (edited, or created again under its name)
//! is noticed within seconds, recorded on the request and, with `onRegrant: Remove`, removed
//! again as a first removal by the same policy would remove it (its scope, its `managedBindings`),
//! recorded like one; a binding created later elsewhere is only reported, and access the request
//! never removed is never reported, also when a new leader reads everything again. A re-grant
//! made while no operator runs is found when one starts, and a reported binding deleted unseen
//! and created again is reported again.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deprovisioner::crd::{DeprovisionRequest, DeprovisionRequestStatus, ManagerKind, Outcome, RegrantOrigin};
use deprovisioner::fixtures::{self, user};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, ListParams, PostParams};
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
    setup_with(c, person, json!({"onRegrant": on_regrant}), json!({})).await
}

/// [`setup`] with more fields for the policy's spec and its `roleBindings` rule.
async fn setup_with(c: &Client, person: &str, spec: serde_json::Value, rule: serde_json::Value) -> (String, String) {
    let ns = unique("rg");
    namespace(c, &ns, &[]).await;
    role_binding(c, &ns, "deployers", "view", vec![user(person), user("stays@lumos.com")]).await;
    let app = unique("rg-app");
    let mut role_bindings = json!({"namespaces": [ns]});
    role_bindings.as_object_mut().unwrap().extend(rule.as_object().unwrap().clone());
    let mut spec_all = json!({
        "application": {"appId": app},
        "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
        "rules": [{"roleBindings": role_bindings}]
    });
    spec_all.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    policy(c, &unique("rg-policy"), spec_all).await;
    (ns, app)
}

/// Waits until the second after the one the request finished in (a binding created then is
/// "created after the request finished": creation times have seconds only).
async fn past_finish(c: &Client, name: &str) {
    let done = get_request(c, name).await.status.unwrap().completed_at.unwrap().0.as_second();
    while k8s_openapi::jiff::Timestamp::now().as_second() <= done {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that the binding still names `person` after `wait` (nothing removed it).
async fn still_names(c: &Client, ns: &str, name: &str, person: &str, wait: Duration) {
    tokio::time::sleep(wait).await;
    let b = get_rb(c, ns, name).await.unwrap_or_else(|| panic!("{ns}/{name} is gone"));
    assert!(names(&b.subjects).contains(&format!("User:{person}")), "{ns}/{name} lost {person}: {:?}", b.subjects);
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

    assert_eq!(g.origin, Some(RegrantOrigin::RemovedBinding));

    // A new binding for the person, elsewhere, is reported too: as new access, not a re-grant.
    let elsewhere = unique("rg-elsewhere");
    namespace(&c, &elsewhere, &[]).await;
    past_finish(&c, &name).await;
    role_binding(&c, &elsewhere, "new-grant", "view", vec![user(&person)]).await;
    let st = regrants(&c, &name, 2).await;
    assert_eq!(st.regrants[1].object, format!("RoleBinding {elsewhere}/new-grant"));
    assert_eq!(st.regrants[1].origin, Some(RegrantOrigin::NewBinding));
    assert!(st.regrants[1].message.contains("reported only"), "{}", st.regrants[1].message);

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

    let first = get_request(&c, &name).await.status.unwrap();

    add_back(&c, &ns, &person).await;
    let uid = get_rb(&c, &ns, "deployers").await.unwrap().metadata.uid.unwrap();
    let st = regrants(&c, &name, 1).await;
    let g = &st.regrants[0];
    assert!(g.removed_again, "{g:?}");
    assert!(g.message.contains("removed again"), "{}", g.message);
    assert_eq!(names(&get_rb(&c, &ns, "deployers").await.unwrap().subjects), vec!["User:stays@lumos.com"]);
    // Recorded like the first removal's action and result: the same policy and rule, the
    // binding with its UID, the subject, and the subjects before and after.
    let r = g.removal.as_ref().expect("the removal is recorded");
    assert_eq!((r.policy.as_str(), r.reason.as_str()), (first.plan[0].policy.as_str(), first.plan[0].reason.as_str()));
    assert_eq!(r.action.binding.to_string(), format!("RoleBinding {ns}/deployers"));
    assert_eq!((r.action.binding.uid.as_str(), r.action.subject.to_string()), (uid.as_str(), format!("User {person}")));
    assert_eq!(r.outcome, Outcome::Removed);
    let before = vec!["User:stays@lumos.com".to_string(), format!("User:{person}")];
    assert_eq!(
        (r.subjects_before.clone(), r.subjects_after.clone()),
        (Some(before), Some(vec!["User:stays@lumos.com".into()]))
    );
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

#[tokio::test]
async fn with_remove_access_outside_the_policys_scope_is_only_reported() {
    let c = admin().await;
    let person = format!("{}@lumos.com", unique("rg-scope"));
    let (ns, app) = setup(&c, &person, "Remove").await;
    let (_, answer, _) = shared().op.lumos(&payload(&app, &person, &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let name = request_name(&answer);
    past_finish(&c, &name).await;

    // Later, another team grants the person access in a namespace the policy does not name, and
    // someone adds a new binding in the policy's own namespace: neither is a binding this
    // request removed the person from. Both are reported, neither is removed.
    let elsewhere = unique("rg-other-team");
    namespace(&c, &elsewhere, &[]).await;
    role_binding(&c, &elsewhere, "their-grant", "view", vec![user(&person)]).await;
    let st = regrants(&c, &name, 1).await;
    assert_eq!(st.regrants[0].object, format!("RoleBinding {elsewhere}/their-grant"));
    role_binding(&c, &ns, "new-here", "view", vec![user(&person)]).await;
    let st = regrants(&c, &name, 2).await;
    for g in &st.regrants {
        assert_eq!(
            (g.origin, g.removed_again, g.removal.is_none()),
            (Some(RegrantOrigin::NewBinding), false, true),
            "{g:?}"
        );
    }
    still_names(&c, &elsewhere, "their-grant", &person, Duration::from_secs(2)).await;
    still_names(&c, &ns, "new-here", &person, Duration::ZERO).await;
}

#[tokio::test]
async fn with_remove_the_same_binding_no_longer_in_the_policys_scope_is_only_reported() {
    let c = admin().await;
    let person = format!("{}@lumos.com", unique("rg-role"));
    // The policy selects bindings of the `view` role only.
    let (ns, app) = setup_with(&c, &person, json!({"onRegrant": "Remove"}), json!({"roleRef": {"name": "view"}})).await;
    let (_, answer, _) = shared().op.lumos(&payload(&app, &person, &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let name = request_name(&answer);

    // `deployers` is created again under its name, now granting `edit`, naming the person: a
    // re-grant of what the request removed, which the policy's rules no longer select.
    let api = Api::<RoleBinding>::namespaced(c.clone(), &ns);
    api.delete("deployers", &DeleteParams::default()).await.unwrap();
    role_binding(&c, &ns, "deployers", "edit", vec![user(&person)]).await;
    let st = regrants(&c, &name, 1).await;
    let g = &st.regrants[0];
    assert_eq!(
        (g.origin, g.removed_again, g.removal.is_none()),
        (Some(RegrantOrigin::RemovedBinding), false, true),
        "{g:?}"
    );
    assert!(g.message.contains("created again since the removal"), "{}", g.message);
    assert!(g.message.contains("not removed again: outside the scope"), "{}", g.message);
    still_names(&c, &ns, "deployers", &person, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_managed_binding_is_handled_per_managed_bindings_when_removed_again() {
    let c = admin().await;
    for rule in ["Remove", "Fail"] {
        let person = format!("{}@lumos.com", unique("rg-managed"));
        let (ns, app) =
            setup_with(&c, &person, json!({"onRegrant": "Remove", "managedBindings": rule}), json!({})).await;
        let (_, answer, _) = shared().op.lumos(&payload(&app, &person, &[])).await;
        assert_eq!(answer["response"], "SUCCESS", "{rule}: {answer}");
        let name = request_name(&answer);

        // Argo CD now keeps `deployers` in sync, and its source still names the person.
        let api = Api::<RoleBinding>::namespaced(c.clone(), &ns);
        let mut rb = api.get("deployers").await.unwrap();
        rb.subjects.get_or_insert_with(Vec::new).push(user(&person));
        rb.metadata.annotations = Some(
            [(
                "argocd.argoproj.io/tracking-id".to_string(),
                format!("web:rbac.authorization.k8s.io/RoleBinding:{ns}/deployers"),
            )]
            .into(),
        );
        let pp = PostParams { field_manager: Some("argocd-controller".into()), ..Default::default() };
        api.replace("deployers", &pp, &rb).await.unwrap();

        let st = regrants(&c, &name, 1).await;
        let g = &st.regrants[0];
        match rule {
            "Remove" => {
                assert!(g.removed_again, "{g:?}");
                let r = g.removal.as_ref().unwrap();
                assert_eq!(
                    r.action.managed_by.as_ref().map(|m| (m.kind, m.name.as_str())),
                    Some((ManagerKind::ArgoCd, "web"))
                );
                assert!(g.message.contains("managed by Argo CD application web"), "{}", g.message);
                assert_eq!(names(&get_rb(&c, &ns, "deployers").await.unwrap().subjects), vec!["User:stays@lumos.com"]);
            }
            _ => {
                assert!(!g.removed_again && g.removal.is_none(), "{g:?}");
                assert!(g.message.contains("managedBindings: Fail"), "{}", g.message);
                still_names(&c, &ns, "deployers", &person, Duration::from_secs(2)).await;
            }
        }
    }
}

#[tokio::test]
async fn leftover_access_is_never_reported_as_regranted_also_after_a_restart() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let person = format!("{}@lumos.com", unique("rg-left"));
    let (ns, app) =
        setup_with(&c, &person, json!({"onRegrant": "Remove", "onResidualAccess": "Report"}), json!({})).await;
    // Access the policy does not cover, in more bindings than the verification lists (32).
    let left = unique("rg-left");
    namespace(&c, &left, &[]).await;
    for i in 0..33 {
        let rb = fixtures::role_binding(&left, &format!("left-{i}")).role("view").subjects([user(&person)]).build();
        create_role_binding(&c, rb).await;
    }
    let op = Operator::start(OperatorOpts::on(cl));
    let (_, answer, _) = op.lumos(&payload(&app, &person, &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let name = request_name(&answer);
    let st = get_request(&c, &name).await.status.unwrap();
    assert_eq!(
        st.verification.as_ref().unwrap().residual.len(),
        32,
        "the residual list is clipped: {:?}",
        st.verification
    );

    // New leaders read the records and every binding again: with the binding index, then
    // without (watches of its own). Nothing left is reported, nothing removed.
    let mut op = op;
    for args in [&[][..], &["--binding-index", "false"][..]] {
        op.signal("TERM");
        drop(op);
        op = Operator::start(OperatorOpts::on(cl).args(args));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !strip_ansi(&op.log_text()).contains("re-grant watch: watching") {
            assert!(Instant::now() < deadline, "the new leader did not start its re-grant watch:\n{}", op.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let st = get_request(&c, &name).await.status.unwrap();
        assert!(st.regrants.is_empty(), "{args:?}: leftover access reported: {:?}", st.regrants);
        for i in 0..33 {
            still_names(&c, &left, &format!("left-{i}"), &person, Duration::ZERO).await;
        }
    }
    // The watch is live: a re-grant of what the request removed is still removed again.
    add_back(&c, &ns, &person).await;
    let st = regrants_within(&c, &name, 1, Duration::from_secs(20)).await;
    assert!(st.regrants[0].removed_again, "{:?}", st.regrants[0]);
    assert_eq!(st.regrants.len(), 1, "{:?}", st.regrants);
    drop(op);
}
