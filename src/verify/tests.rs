//! verify.rs's own tests; those of its pure parts (reviews, residual, verdict) live with them in
//! the deprovisioner-core crate.

use serde_json::json;

use super::reviews::identities;
use super::verdict::{Verdict, fails, sentence};
use super::*;
use crate::crd::{ActionKind, BindingAction, BindingScope, EmptyBindingRule, Outcome, SubjectKind};
use crate::fixtures::{self, user};

fn binding(ns: Option<&str>, name: &str, role: &str) -> BindingRef {
    BindingRef {
        scope: ns.map_or(BindingScope::Cluster, |n| BindingScope::Namespaced(n.into())),
        name: name.into(),
        uid: format!("uid-{name}"),
        role_ref: role.into(),
    }
}

fn demo_policy() -> DeprovisionPolicy {
    fixtures::policy(
        "demo-app",
        json!({"application": {"appId": "demo"}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
               "rules": [{"permissions": ["dev"], "roleBindings": {"namespaces": ["team-a"]}},
                         {"permissions": ["ops"], "clusterRoleBindings": {"names": ["ops"]}}]}),
    )
}

#[test]
fn each_spelling_removed_is_asked_about() {
    let removal = |id: i32, name: &str| PlannedAction {
        id,
        policy: "p".into(),
        reason: "r".into(),
        action: Action::RemoveBindingSubject(BindingAction {
            binding: binding(Some("ns"), &format!("b{id}"), "ClusterRole/edit"),
            subject: SubjectRef { kind: "User".into(), name: name.into(), namespace: None },
            when_empty: EmptyBindingRule::Delete,
            managed_by: None,
        }),
    };
    let done = |id: i32, outcome: Outcome| ActionResult {
        id,
        kind: ActionKind::RemoveBindingSubject,
        object: String::new(),
        subject: String::new(),
        outcome,
        message: String::new(),
        at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        external: None,
        subjects_before: None,
        subjects_after: None,
    };
    let plan = [removal(0, "ann@x.io"), removal(1, "Ann@X.io"), removal(2, "ANN@X.IO"), removal(3, "bob@x.io")];
    let results =
        [done(0, Outcome::Removed), done(1, Outcome::Deleted), done(2, Outcome::Failed), done(3, Outcome::Removed)];
    let w = with_removed_spellings(
        vec![Wanted::new(SubjectKind::User, "ann@x.io".into(), None, true).unwrap()],
        &plan,
        &results,
    );
    let users: Vec<String> = identities(&w).into_iter().map(|i| i.user).collect();
    assert_eq!(users, ["ann@x.io", "Ann@X.io"], "not the spelling whose removal failed, nor anyone else");
}

#[test]
fn a_removal_is_shown_once_the_binding_no_longer_names_the_subject_or_is_another() {
    let b = BindingRef { uid: "uid-1".into(), ..binding(Some("team"), "edit", "ClusterRole/edit") };
    let ann = SubjectRef { kind: "User".into(), name: "ann@x.io".into(), namespace: None };
    let subjects = |names: &[&str]| names.iter().map(|n| user(n)).collect::<Vec<_>>();
    let held = subjects(&["ann@x.io", "bob@x.io"]);
    assert!(still_names(Some("uid-1"), Some(&held), &b, &ann), "not seen yet");
    assert!(!still_names(Some("uid-1"), Some(&subjects(&["bob@x.io"])), &b, &ann), "seen");
    assert!(!still_names(Some("uid-1"), None, &b, &ann), "seen: no subjects left");
    assert!(!still_names(Some("uid-2"), Some(&held), &b, &ann), "another binding under the same name");
    assert!(!still_names(Some("uid-1"), Some(&subjects(&["Ann@x.io"])), &b, &ann), "only the exact subject counts");
}

/// A verification asks once the binding index shows its removal: as soon as a change shows it,
/// or a relist ends without it (the index's store takes the new list only at its end), and not
/// while the index still shows the subject.
#[tokio::test(start_paused = true)]
async fn the_index_shows_a_removal_through_a_change_or_the_end_of_a_relist() {
    use futures::channel::mpsc;
    use http::{Request, Response};
    use kube::client::Body;
    use kube::runtime::watcher::Event;
    use tokio::time::{Duration, Instant};

    let (svc, _api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (rb_tx, rb_events) = mpsc::unbounded();
    let (crb_tx, crb_events) = mpsc::unbounded();
    let stop = tokio_util::sync::CancellationToken::new();
    let (none, nothing) = (futures::stream::pending(), futures::stream::pending());
    let view =
        View::fed(&Client::new(svc, "ops"), "ops", "sentinel", rb_events, crb_events, none, nothing, None, &stop);
    let index = view.unvouched(Reader::Verify).unwrap();
    let send = |ev: Event<RoleBinding>| rb_tx.unbounded_send(Ok(ev)).unwrap();
    let rb = |uid: &str, who: &[&str]| {
        fixtures::role_binding("team", "edit").role("edit").uid(uid).subjects(who.iter().map(|w| user(w))).build()
    };
    crb_tx.unbounded_send(Ok(Event::Init)).unwrap();
    crb_tx.unbounded_send(Ok(Event::InitDone)).unwrap();
    send(Event::Init);
    send(Event::InitApply(rb("uid-1", &["ann@x.io", "bob@x.io"])));
    send(Event::InitDone);
    while index.role_binding("team", "edit").is_none() {
        tokio::task::yield_now().await;
    }
    let b = BindingRef { uid: "uid-1".into(), ..binding(Some("team"), "edit", "ClusterRole/edit") };
    let ann = SubjectRef { kind: "User".into(), name: "ann@x.io".into(), namespace: None };
    let removals = [(&b, &ann)];

    // The index still names Ann: the whole wait, then ask anyway.
    let started = Instant::now();
    assert!(!index_caught_up(&index, &removals).await);
    assert_eq!(started.elapsed(), INDEX_CATCH_UP);

    // A change that does not show it, then one that does.
    let started = Instant::now();
    let later = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        send(Event::Apply(rb("uid-1", &["ann@x.io", "bob@x.io", "cy@x.io"])));
        tokio::time::sleep(Duration::from_millis(10)).await;
        send(Event::Apply(rb("uid-1", &["bob@x.io"])));
    };
    let (shown, ()) = tokio::join!(index_caught_up(&index, &removals), later);
    assert!(shown);
    assert_eq!(started.elapsed(), Duration::from_millis(20));

    // The index as it was before a removal it then missed in a watch gap: the relist that
    // follows no longer lists her, and the store shows it only when the relist ends.
    send(Event::Apply(rb("uid-1", &["ann@x.io", "bob@x.io"])));
    while index.role_binding("team", "edit").is_some_and(|r| r.subjects.as_ref().is_some_and(|s| s.len() == 1)) {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let relist = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        send(Event::Init);
        send(Event::InitApply(rb("uid-1", &["bob@x.io"])));
        tokio::time::sleep(Duration::from_millis(10)).await;
        send(Event::InitDone);
    };
    let (shown, ()) = tokio::join!(index_caught_up(&index, &removals), relist);
    assert!(shown, "the end of the relist shows the removal");
    assert_eq!(started.elapsed(), Duration::from_millis(20), "at the relist's end, not after the whole wait");
    stop.cancel();
}

/// A verification that could not be made is asked again (here the role read fails twice with
/// 503, then works), and says so in its notes; one that never can be made ends with the error
/// and how often it was tried, within [`RETRY_WITHIN`].
#[tokio::test(start_paused = true)]
async fn a_verification_that_could_not_be_made_is_tried_again_within_its_bound() {
    use http::{Request as HttpRequest, Response, StatusCode};
    use kube::client::Body;

    let spec = fixtures::request_spec("demo", "ann@x.io").permissions(["dev"]).build();
    let policies = [demo_policy()];
    let names = ["demo-app".to_string()];
    let plan = [PlannedAction {
        id: 0,
        policy: "demo-app".into(),
        reason: "r".into(),
        action: Action::RemoveBindingSubject(BindingAction {
            binding: binding(Some("team-a"), "edit", "ClusterRole/edit"),
            subject: SubjectRef { kind: "User".into(), name: "ann@x.io".into(), namespace: None },
            when_empty: EmptyBindingRule::Delete,
            managed_by: None,
        }),
    }];
    let results = [ActionResult {
        id: 0,
        kind: ActionKind::RemoveBindingSubject,
        object: "RoleBinding team-a/edit".into(),
        subject: "User ann@x.io".into(),
        outcome: Outcome::Removed,
        message: String::new(),
        at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        external: None,
        subjects_before: None,
        subjects_after: None,
    }];
    let req = Request {
        spec: &spec,
        policy_names: &names,
        policies: &policies,
        plan: &plan,
        results: &results,
        reviews_per_binding: 1,
    };
    // Serves the role (after `role_failures` 503s), denies every review, lists no bindings.
    let serve = |role_failures: usize| {
        let (svc, mut api) = tower_test::mock::pair::<HttpRequest<Body>, Response<Body>>();
        let answered = tokio::spawn(async move {
            let (mut role_reads, mut reviews) = (0, 0);
            while let Some((req, send)) = api.next_request().await {
                let path = req.uri().path().to_string();
                let (status, body) = if path.ends_with("/clusterroles/edit") {
                    role_reads += 1;
                    match role_reads <= role_failures {
                        true => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                                   "reason": "ServiceUnavailable", "message": "etcd is sulking"}),
                        ),
                        false => (
                            StatusCode::OK,
                            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                   "metadata": {"name": "edit"},
                                   "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["update"]}]}),
                        ),
                    }
                } else if path.ends_with("/subjectaccessreviews") {
                    reviews += 1;
                    (
                        StatusCode::CREATED,
                        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                               "spec": {}, "status": {"allowed": false}}),
                    )
                } else {
                    let kind = if path.ends_with("/clusterrolebindings") {
                        "ClusterRoleBindingList"
                    } else {
                        "RoleBindingList"
                    };
                    (
                        StatusCode::OK,
                        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                               "metadata": {"resourceVersion": "1"}, "items": []}),
                    )
                };
                let body = Body::from(serde_json::to_vec(&body).unwrap());
                send.send_response(Response::builder().status(status).body(body).unwrap());
            }
            (role_reads, reviews)
        });
        (Client::new(svc, "default"), answered)
    };

    let (client, answered) = serve(2);
    let started = tokio::time::Instant::now();
    let v = verify(&client, None, &Memory::default(), &req).await;
    assert_eq!(v.error, None, "{v:?}");
    assert_eq!(Verdict::of(&v), Verdict::NoRemainingAccess);
    assert!(!fails(&v));
    assert!(v.notes.iter().any(|n| n.starts_with("verified after 2 failed attempt(s)")), "{:?}", v.notes);
    assert_eq!(started.elapsed(), RETRY_FIRST_PAUSE * 3, "paused 0.1 s, then 0.2 s");
    drop(client);
    assert_eq!(answered.await.unwrap(), (3, 1));

    let (client, answered) = serve(usize::MAX);
    let started = tokio::time::Instant::now();
    let v = verify(&client, None, &Memory::default(), &req).await;
    assert!(started.elapsed() < RETRY_WITHIN, "{:?}", started.elapsed());
    assert_eq!(Verdict::of(&v), Verdict::NotVerified);
    assert!(fails(&v), "not proven: FAILURE by default");
    let error = v.error.clone().unwrap();
    assert!(error.starts_with("reading ClusterRole edit: ") && error.contains("(6 attempts in 3.1s)"), "{error}");
    assert!(sentence(&v).starts_with("removed, but not verified: reading ClusterRole edit"), "{}", sentence(&v));
    drop(client);
    assert_eq!(answered.await.unwrap(), (6, 0));
}

/// A denial the authorizer could not decide is no answer; RBAC's own "role not found" about a
/// binding whose role is missing is noise, not a failure to decide.
#[test]
fn an_undecided_denial_is_no_answer() {
    assert_eq!(undecided(false, None), None);
    assert_eq!(undecided(false, Some("")), None);
    assert_eq!(undecided(true, Some("webhook authorizer: connection refused")), None, "an allow stands");
    let noise = r#"[clusterrole.rbac.authorization.k8s.io "gone" not found, role.rbac.authorization.k8s.io "reader" not found]"#;
    assert_eq!(undecided(false, Some(noise)), None);
    assert_eq!(undecided(false, Some(r#"role.rbac.authorization.k8s.io "reader" not found"#)), None);
    let webhook = r#"[role.rbac.authorization.k8s.io "reader" not found, Post "https://authz.example/": dial tcp: connection refused]"#;
    assert!(undecided(false, Some(webhook)).unwrap().contains("connection refused"));
}
