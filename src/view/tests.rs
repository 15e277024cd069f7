//! The view's unit tests, fed by test streams: the bindings (moved from the binding index), the
//! policies (`policies.rs`), and the one read question (`read.rs`).

mod policies;
mod read;

use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::client::Body;
use kube::runtime::watcher::Event;
use kube::{Api, Client};

use super::barrier::{BARRIER_ANNOTATION, Barrier};
use super::{Fallback, Need, Reader, Since, View, strip};

const SENTINEL: &str = "deprovisioner-index-barrier";
use crate::fixtures;

fn sentinel(ns: &str, value: &str) -> RoleBinding {
    let mut rb = fixtures::role_binding(ns, SENTINEL).role("deprovisioner-index-barrier").build();
    rb.metadata.annotations = Some([(BARRIER_ANNOTATION.to_string(), value.to_string())].into());
    rb
}

fn barrier() -> Barrier<RoleBinding> {
    let (svc, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = Api::namespaced(Client::new(svc, "ops"), "ops");
    Barrier::new(api, SENTINEL, "me".into(), Some("ops"))
}

#[test]
fn strip_keeps_what_planning_reads_and_the_barrier() {
    let mut rb = fixtures::role_binding("team", "edit").role("edit").subjects([fixtures::user("p@x.com")]).build();
    rb.metadata.annotations = Some(
        [
            ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{...}".to_string()),
            (BARRIER_ANNOTATION.to_string(), "me/1".to_string()),
        ]
        .into(),
    );
    rb.metadata.managed_fields = Some(vec![Default::default()]);
    let before = rb.clone();
    strip(&mut rb);
    assert_eq!(rb.metadata.managed_fields, None);
    assert_eq!(rb.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
    assert_eq!(
        (rb.subjects, rb.role_ref, rb.metadata.labels),
        (before.subjects, before.role_ref, before.metadata.labels)
    );
    let mut plain = fixtures::role_binding("team", "view").role("view").build();
    plain.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
    strip(&mut plain);
    assert_eq!(plain.metadata.annotations, None);
}

/// Only this instance's writes on the sentinel itself count; a relist counts once complete.
#[tokio::test]
async fn a_barrier_passes_only_on_its_own_write_as_applied_to_the_store() {
    let b = barrier();
    b.saw(&Event::Apply(sentinel("ops", "other-replica/9")));
    b.saw(&Event::Apply(sentinel("elsewhere", "me/9")));
    let mut lookalike = sentinel("ops", "me/9");
    lookalike.metadata.name = Some("not-the-sentinel".into());
    b.saw(&Event::Apply(lookalike));
    assert_eq!(b.seen(), 0);
    b.saw(&Event::Init);
    b.saw(&Event::InitApply(sentinel("ops", "me/3")));
    assert_eq!(b.seen(), 0, "a relist is not in the store until InitDone");
    b.saw(&Event::InitDone);
    assert_eq!(b.seen(), 3);
    b.saw(&Event::Apply(sentinel("ops", "me/2")));
    assert_eq!(b.seen(), 3, "never goes back");
    b.saw(&Event::Apply(sentinel("ops", "me/4")));
    assert_eq!(b.seen(), 4);
}

/// A read whose watch has not listed falls back once the barrier's time is up; a barrier whose
/// write fails says which sentinel, and does not hang.
#[tokio::test(start_paused = true)]
async fn a_barrier_that_cannot_write_fails_in_time() {
    use futures::channel::mpsc;
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (rb_tx, rb_events) = mpsc::unbounded();
    let (crb_tx, crb_events) = mpsc::unbounded::<Result<Event<k8s_openapi::api::rbac::v1::ClusterRoleBinding>, _>>();
    let stop = tokio_util::sync::CancellationToken::new();
    let (p, n) = (futures::stream::pending(), futures::stream::pending());
    let view = View::fed(&Client::new(svc, "ops"), "ops", SENTINEL, rb_events, crb_events, p, n, None, &stop);
    let need = Need::bindings(true, false);
    let started = tokio::time::Instant::now();
    let err = view.read(Since::Arrived(std::time::Instant::now()), need, Reader::Plan).await.err().unwrap();
    assert!(matches!(err, Fallback::NotLive { .. }), "before the first list: {err}");
    assert_eq!(started.elapsed(), super::BARRIER_TIMEOUT, "waited the barrier's time for the list");
    rb_tx.unbounded_send(Ok(Event::Init)).unwrap();
    rb_tx.unbounded_send(Ok(Event::InitDone)).unwrap();
    drop(crb_tx);
    tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("the barrier write");
        assert_eq!(req.method(), "PATCH");
        assert!(req.uri().path().ends_with(&format!("/namespaces/ops/rolebindings/{SENTINEL}")), "{}", req.uri());
        let body = serde_json::json!({"kind":"Status","apiVersion":"v1","status":"Failure","code":404,"reason":"NotFound","message":"not found"});
        send.send_response(Response::builder().status(404).body(Body::from(body.to_string().into_bytes())).unwrap());
    });
    let err = view.read(Since::Arrived(std::time::Instant::now()), need, Reader::Plan).await.err().unwrap();
    assert!(matches!(err, Fallback::WriteFailed { .. }), "{err}");
    assert!(err.to_string().contains(&format!("RoleBinding/{SENTINEL}")), "{err}");
    stop.cancel();
}

/// A plan whose call arrived before a barrier write in flight began is served by that write; a
/// plan that arrived after it began sends its own once it is seen; a write that failed serves no
/// one.
#[tokio::test]
async fn a_barrier_write_serves_every_call_that_arrived_before_it_began() {
    use std::sync::Arc;
    use std::time::Instant;

    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = Api::namespaced(Client::new(svc, "ops"), "ops");
    let b: Arc<Barrier<RoleBinding>> = Arc::new(Barrier::new(api, SENTINEL, "me".into(), Some("ops")));
    b.saw(&Event::Init);
    b.saw(&Event::InitDone);
    let respond = |send: tower_test::mock::SendResponse<Response<Body>>, status: u16, value: &str| {
        let body = match status {
            200 => serde_json::to_string(&sentinel("ops", value)).unwrap(),
            _ => serde_json::json!({"kind":"Status","apiVersion":"v1","status":"Failure","code":status,"reason":"InternalError","message":"no"}).to_string(),
        };
        send.send_response(Response::builder().status(status).body(Body::from(body.into_bytes())).unwrap());
    };
    let pass = |since: Instant| {
        let b = b.clone();
        tokio::spawn(async move { b.pass(since, Duration::from_secs(5)).await })
    };
    let patched = |req: &Request<Body>| req.method() == "PATCH";

    let arrived = Instant::now();
    let first = pass(arrived);
    let (req, send) = handle.next_request().await.expect("the first write");
    assert!(patched(&req));
    // Arrived before the first write began: served by it, no write of its own.
    let second = pass(arrived);
    // Arrived after it began: waits, then writes.
    let third = pass(Instant::now());
    tokio::time::sleep(Duration::from_millis(50)).await;
    respond(send, 200, "me/1");
    b.saw(&Event::Apply(sentinel("ops", "me/1")));
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let (req, send) = handle.next_request().await.expect("the third call's own write");
    assert!(patched(&req));
    respond(send, 200, "me/2");
    b.saw(&Event::Apply(sentinel("ops", "me/2")));
    third.await.unwrap().unwrap();
    assert_eq!(b.seen(), 2);

    // A failed write: a call that arrived before it began sends a new one.
    let arrived = Instant::now();
    let failing = pass(arrived);
    let (_, send) = handle.next_request().await.expect("the failing write");
    respond(send, 500, "");
    assert!(failing.await.unwrap().is_err());
    let retry = pass(arrived);
    let (req, send) = handle.next_request().await.expect("a new write after the failure");
    assert!(patched(&req));
    respond(send, 200, "me/4");
    b.saw(&Event::Apply(sentinel("ops", "me/4")));
    retry.await.unwrap().unwrap();
}

#[test]
fn strip_keeps_who_manages_a_binding() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let mut rb = fixtures::role_binding("team", "edit").role("edit").build();
    rb.metadata.annotations = Some(
        [
            (
                "argocd.argoproj.io/tracking-id".to_string(),
                "web:rbac.authorization.k8s.io/RoleBinding:team/edit".into(),
            ),
            ("meta.helm.sh/release-name".to_string(), "web".into()),
            ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{...}".into()),
        ]
        .into(),
    );
    let entry = |manager: &str, fields: serde_json::Value| ManagedFieldsEntry {
        manager: Some(manager.into()),
        fields_v1: Some(FieldsV1(fields)),
        ..Default::default()
    };
    rb.metadata.managed_fields = Some(vec![
        entry("kubectl-create", serde_json::json!({"f:roleRef": {}})),
        entry("argocd-controller", serde_json::json!({"f:subjects": {}})),
    ]);
    strip(&mut rb);
    let kept: Vec<&String> = rb.metadata.annotations.as_ref().unwrap().keys().collect();
    assert_eq!(kept, ["argocd.argoproj.io/tracking-id", "meta.helm.sh/release-name"]);
    let fields = rb.metadata.managed_fields.unwrap();
    assert_eq!(fields.len(), 1, "only the writer of subjects");
    assert_eq!((fields[0].manager.as_deref(), &fields[0].fields_v1), (Some("argocd-controller"), &None));
}

/// The map by subject follows the store through changes, deletions and a relist, and finds a
/// binding under any spelling of a subject it names.
#[test]
fn bindings_are_found_by_subject_through_changes_and_relists() {
    use std::collections::BTreeSet;

    use kube::runtime::reflector;

    use super::by_subject::BySubject;
    use crate::plan::subject::{PrincipalRef, SubjectKey};

    let (store, mut writer) = reflector::store::<RoleBinding>();
    let by = BySubject::default();
    let mut deliver = |ev: Event<RoleBinding>| {
        by.apply(&store, &ev);
        writer.apply_watcher_event(&ev);
    };
    let rb = |ns: &str, name: &str, who: &[&str]| {
        fixtures::role_binding(ns, name).role("view").subjects(who.iter().map(|w| fixtures::user(w))).build()
    };
    let key = |name: &str| -> BTreeSet<SubjectKey> { [PrincipalRef::user(name).key()].into() };
    let ids = |by: &BySubject, name: &str| -> Vec<String> {
        by.ids(&key(name)).into_iter().map(|(ns, n)| format!("{}/{n}", ns.unwrap_or_default())).collect()
    };

    deliver(Event::Init);
    deliver(Event::InitApply(rb("a", "one", &["peter@x.io", "keep@x.io"])));
    deliver(Event::InitApply(rb("b", "two", &["Peter@X.io"])));
    assert!(ids(&by, "peter@x.io").is_empty(), "nothing is live before the list completes");
    deliver(Event::InitDone);
    assert_eq!(ids(&by, "peter@x.io"), ["a/one", "b/two"], "any spelling, one key");
    assert_eq!(ids(&by, "keep@x.io"), ["a/one"]);

    // Peter removed from one: filed under keep only; the other binding deleted.
    deliver(Event::Apply(rb("a", "one", &["keep@x.io"])));
    deliver(Event::Delete(rb("b", "two", &["Peter@X.io"])));
    assert!(ids(&by, "peter@x.io").is_empty());
    assert_eq!(ids(&by, "keep@x.io"), ["a/one"]);

    // A relist replaces everything: what vanished during a watch gap is gone.
    deliver(Event::Apply(rb("c", "three", &["peter@x.io"])));
    deliver(Event::Init);
    deliver(Event::InitApply(rb("d", "four", &["peter@x.io"])));
    assert_eq!(ids(&by, "peter@x.io"), ["c/three"], "the old state serves until the relist ends");
    deliver(Event::InitDone);
    assert_eq!(ids(&by, "peter@x.io"), ["d/four"]);
    assert!(ids(&by, "keep@x.io").is_empty());
    assert_eq!(by.len(), 1);
}

/// The binding watches as the old index's questions saw them, answered from their health.
struct Watches<'a>(&'a super::bindings::BindingWatches);

impl std::ops::Deref for Watches<'_> {
    type Target = super::bindings::BindingWatches;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl Watches<'_> {
    /// Both listed once (what readiness waits for).
    fn is_listed(&self) -> bool {
        self.rb.health().listed_once && self.crb.health().listed_once
    }
    /// Both can pass a barrier (listed, not listing again, no event lost).
    fn is_watching(&self) -> bool {
        self.rb.health().can_barrier() && self.crb.health().can_barrier()
    }
    /// Both live (delivered since their last error): a reader without a barrier trusts them.
    fn is_current(&self) -> bool {
        self.rb.health().is_live() && self.crb.health().is_live()
    }
}

/// The index is watching once both watches listed; a watch error the watcher resumes from (it
/// loses nothing) does not end that, or every plan would list from the API server and `/readyz`
/// fail until some later relist, but readers without a barrier wait for it to deliver again; a
/// relist ends it until the relist ends, and so does an event the client could not read.
#[tokio::test]
async fn a_watch_error_alone_does_not_stop_the_index_watching_a_relist_or_a_lost_event_does() {
    use futures::channel::mpsc;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use kube::core::Status;
    use kube::runtime::watcher;
    use tokio_util::sync::CancellationToken;

    let (svc, _api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (rb_tx, rb_events) = mpsc::unbounded::<Result<Event<RoleBinding>, watcher::Error>>();
    let (crb_tx, crb_events) = mpsc::unbounded::<Result<Event<ClusterRoleBinding>, watcher::Error>>();
    let stop = CancellationToken::new();
    let (p, n) = (futures::stream::pending(), futures::stream::pending());
    let view = View::fed(&Client::new(svc, "ops"), "ops", SENTINEL, rb_events, crb_events, p, n, None, &stop);
    let index = Watches(view.bindings.as_ref().unwrap());
    let rb =
        |name: &str| fixtures::role_binding("team", name).role("view").subjects([fixtures::user("ann@x.io")]).build();
    let error =
        |code: u16| watcher::Error::WatchError(Box::new(Status::failure("watch failed", "Expired").with_code(code)));
    // Waits until the index has applied what was sent (the watches run on their own task).
    async fn until(what: &str, done: impl Fn() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        assert!(waited.await.is_ok(), "{what}");
    }

    for ev in [Event::Init, Event::InitApply(rb("one")), Event::InitDone] {
        rb_tx.unbounded_send(Ok(ev)).unwrap();
    }
    until("RoleBindings listed", || index.role_binding("team", "one").is_some()).await;
    assert!(!index.is_watching() && !index.is_listed(), "ClusterRoleBindings not listed yet");
    crb_tx.unbounded_send(Ok(Event::Init)).unwrap();
    crb_tx.unbounded_send(Ok(Event::InitDone)).unwrap();
    until("both listed", || index.is_watching()).await;

    assert!(index.is_current());

    // An error the watcher resumes from: still watching (barriers prove what it holds), but not
    // current for readers without a barrier until it delivers again.
    rb_tx.unbounded_send(Err(error(500))).unwrap();
    until("the error seen", || !index.is_current()).await;
    assert!(index.is_watching(), "a resumed watch still watches");
    rb_tx.unbounded_send(Ok(Event::Apply(rb("two")))).unwrap();
    until("the change after the error", || index.role_binding("team", "two").is_some()).await;
    assert!(index.is_watching() && index.is_current(), "delivering again");

    // An event the client could not read is dropped: nothing is vouched for until a list.
    let unreadable = serde_json::from_str::<RoleBinding>("{").unwrap_err();
    rb_tx.unbounded_send(Err(watcher::Error::WatchFailed(kube::Error::SerdeError(unreadable)))).unwrap();
    until("an event lost", || !index.is_watching()).await;
    assert!(index.is_listed(), "still ready: plans list from the API server meanwhile");
    rb_tx.unbounded_send(Ok(Event::Apply(rb("two")))).unwrap();
    for ev in [Event::Init, Event::InitApply(rb("one")), Event::InitApply(rb("two")), Event::InitDone] {
        rb_tx.unbounded_send(Ok(ev)).unwrap();
    }
    until("listed again", || index.is_watching() && index.is_current()).await;

    // 410 Gone: the watcher lists again, starting with Init; watching again at its end.
    rb_tx.unbounded_send(Err(error(410))).unwrap();
    rb_tx.unbounded_send(Ok(Event::Init)).unwrap();
    until("the relist began", || !index.is_watching()).await;
    assert!(index.is_listed(), "still ready during a relist");
    rb_tx.unbounded_send(Ok(Event::InitApply(rb("three")))).unwrap();
    rb_tx.unbounded_send(Ok(Event::InitDone)).unwrap();
    until("the relist ended", || index.is_watching()).await;
    assert!(index.role_binding("team", "three").is_some() && index.role_binding("team", "one").is_none());
    stop.cancel();
}

/// The version moves when what the bindings grant changes (a binding created, changed in its
/// subjects or roleRef, deleted; a relist), never for an annotation or label (the barrier's
/// writes), and only once the store holds the change.
#[tokio::test]
async fn the_version_moves_with_what_the_bindings_grant_only() {
    use futures::channel::mpsc;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use kube::runtime::watcher;
    use tokio_util::sync::CancellationToken;

    let (svc, _api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let (rb_tx, rb_events) = mpsc::unbounded::<Result<Event<RoleBinding>, watcher::Error>>();
    let (crb_tx, crb_events) = mpsc::unbounded::<Result<Event<ClusterRoleBinding>, watcher::Error>>();
    let stop = CancellationToken::new();
    let (p, n) = (futures::stream::pending(), futures::stream::pending());
    let view = View::fed(&Client::new(svc, "ops"), "ops", SENTINEL, rb_events, crb_events, p, n, None, &stop);
    let index = Watches(view.bindings.as_ref().unwrap());
    let rb = |name: &str, who: &[&str]| {
        fixtures::role_binding("team", name).role("view").subjects(who.iter().map(|w| fixtures::user(w))).build()
    };
    let send = |ev: Event<RoleBinding>| rb_tx.unbounded_send(Ok(ev)).unwrap();
    // Waits until the index has applied what was sent (the watches run on their own task).
    async fn until(what: &str, done: impl Fn() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        assert!(waited.await.is_ok(), "{what}");
    }
    let subjects = |name: &str| index.role_binding("team", name).map(|b| b.subjects.clone().unwrap_or_default().len());

    for ev in [Event::Init, Event::InitApply(rb("one", &["ann"])), Event::InitDone] {
        send(ev);
    }
    crb_tx.unbounded_send(Ok(Event::Init)).unwrap();
    crb_tx.unbounded_send(Ok(Event::InitDone)).unwrap();
    until("both listed", || index.is_watching() && index.role_binding("team", "one").is_some()).await;
    let listed = index.version();
    assert!(listed > 0, "a list is a change");

    // Annotations and labels only (the barrier's writes; another tool's labels): no change. The
    // sentinel binds no one, as the chart creates it.
    let mut annotated = rb("one", &["ann"]);
    annotated.metadata.annotations = Some([(BARRIER_ANNOTATION.to_string(), "me/1".to_string())].into());
    annotated.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    send(Event::Apply(annotated));
    send(Event::Apply(sentinel("ops", "me/1")));
    send(Event::Apply(sentinel("ops", "me/2")));
    until("the sentinel", || index.role_binding("ops", SENTINEL).is_some()).await;
    assert_eq!(index.version(), listed + 1, "a new binding (the sentinel) once, its barrier writes never");
    let v = index.version();
    // A subject added: a change, seen with the store already holding it.
    send(Event::Apply(rb("one", &["ann", "bob"])));
    until("bob added", || index.version() > v).await;
    assert_eq!(subjects("one"), Some(2), "the store holds the change once the version moved");
    assert_eq!(index.version(), v + 1);
    // A roleRef changed: a change.
    let mut edit = rb("one", &["ann", "bob"]);
    edit.role_ref.name = "edit".into();
    send(Event::Apply(edit));
    until("the role changed", || index.version() == v + 2).await;
    // Deleted: a change.
    send(Event::Delete(rb("one", &["ann", "bob"])));
    until("deleted", || index.version() == v + 3).await;
    assert!(index.role_binding("team", "one").is_none());
    stop.cancel();
}
