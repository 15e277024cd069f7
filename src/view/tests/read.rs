//! The one read question: barriers shared, only the kinds needed written, fallbacks and their
//! reasons, readiness, and what is exported.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::channel::mpsc::{self, UnboundedSender};
use http::{Request, Response};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::client::Body;
use kube::core::Status;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use crate::crd::DeprovisionPolicy;
use crate::fixtures;
use crate::metrics::{FallbackLabels, Metrics, ReadLabels, WatchStateLabels};
use crate::view::{BARRIER_ANNOTATION, BARRIER_TIMEOUT, Fallback, Need, Reader, Since, View};

const SENTINEL: &str = "deprovisioner-index-barrier";

/// A watch error for an event the client could not read (the event is skipped).
fn unreadable() -> watcher::Error {
    watcher::Error::WatchFailed(kube::Error::SerdeError(serde_json::from_str::<u8>("x").unwrap_err()))
}

type Tx<K> = UnboundedSender<Result<Event<K>, watcher::Error>>;

/// A view fed by test streams, and an API server that answers each sentinel PATCH and has the
/// watch deliver it (unless `deliver` is false), counting the PATCHes per kind.
struct World {
    view: Arc<View>,
    rb: Tx<RoleBinding>,
    crb: Tx<ClusterRoleBinding>,
    policies: Tx<DeprovisionPolicy>,
    namespaces: Tx<Namespace>,
    patches: Arc<[AtomicUsize; 2]>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

/// What the mocked API server does with a sentinel PATCH.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers it, and the watch delivers it.
    Deliver,
    /// Answers it; the watch never delivers it.
    Hold,
    /// Refuses it (500).
    Refuse,
    /// Answers it; the RoleBinding watch first fails on an event it cannot read, then delivers it.
    LoseThenDeliver,
}

impl World {
    fn new(deliver: bool) -> World {
        World::with(if deliver { Mode::Deliver } else { Mode::Hold })
    }

    fn with(mode: Mode) -> World {
        let deliver = matches!(mode, Mode::Deliver | Mode::LoseThenDeliver);
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (rb, rb_events) = mpsc::unbounded();
        let (crb, crb_events) = mpsc::unbounded();
        let (policies, policy_events) = mpsc::unbounded();
        let (namespaces, ns_events) = mpsc::unbounded();
        let stop = CancellationToken::new();
        let metrics = Metrics::new();
        let client = Client::new(svc, "ops");
        let view = View::fed(
            &client,
            "ops",
            SENTINEL,
            rb_events,
            crb_events,
            policy_events,
            ns_events,
            Some(metrics.clone()),
            &stop,
        );
        let patches: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let (counted, rb_tx, crb_tx) = (patches.clone(), rb.clone(), crb.clone());
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                assert_eq!(req.method(), "PATCH", "only barrier writes: {}", req.uri());
                if mode == Mode::Refuse {
                    let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "etcd unavailable", "reason": "InternalError", "code": 500});
                    let body = Body::from(serde_json::to_vec(&status).unwrap());
                    send.send_response(Response::builder().status(500).body(body).unwrap());
                    continue;
                }
                if mode == Mode::LoseThenDeliver {
                    rb_tx.unbounded_send(Err(unreadable())).unwrap();
                }
                let path = req.uri().path().to_string();
                let body: serde_json::Value =
                    serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
                let value = body["metadata"]["annotations"][BARRIER_ANNOTATION].as_str().unwrap().to_string();
                let annotations = Some([(BARRIER_ANNOTATION.to_string(), value)].into());
                let reply = if path.ends_with(&format!("/namespaces/ops/rolebindings/{SENTINEL}")) {
                    counted[0].fetch_add(1, Ordering::SeqCst);
                    let mut b = fixtures::role_binding("ops", SENTINEL).role(SENTINEL).build();
                    b.metadata.annotations = annotations;
                    if deliver {
                        rb_tx.unbounded_send(Ok(Event::Apply(b.clone()))).unwrap();
                    }
                    serde_json::to_vec(&b).unwrap()
                } else {
                    assert!(path.ends_with(&format!("/clusterrolebindings/{SENTINEL}")), "{path}");
                    counted[1].fetch_add(1, Ordering::SeqCst);
                    let mut b = fixtures::cluster_role_binding(SENTINEL).role(SENTINEL).build();
                    b.metadata.annotations = annotations;
                    if deliver {
                        crb_tx.unbounded_send(Ok(Event::Apply(b.clone()))).unwrap();
                    }
                    serde_json::to_vec(&b).unwrap()
                };
                send.send_response(Response::builder().status(200).body(Body::from(reply)).unwrap());
            }
        });
        World { view, rb, crb, policies, namespaces, patches, metrics, stop }
    }

    /// Every watch lists (empty, but for a policy and a labelled namespace).
    fn list_all(&self) {
        fn list<K>(tx: &Tx<K>, items: Vec<K>) {
            tx.unbounded_send(Ok(Event::Init)).unwrap();
            items.into_iter().for_each(|i| tx.unbounded_send(Ok(Event::InitApply(i))).unwrap());
            tx.unbounded_send(Ok(Event::InitDone)).unwrap();
        }
        list(&self.rb, vec![]);
        list(&self.crb, vec![]);
        let spec = serde_json::json!({"application": {"appId": "web"}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaces": ["team"]}}]});
        list(&self.policies, vec![fixtures::policy("web", spec)]);
        let mut ns = fixtures::namespace("team", &[("tier", "prod")]);
        ns.metadata.annotations = Some([("big".to_string(), "x".repeat(1000))].into());
        list(&self.namespaces, vec![ns]);
    }

    async fn until_ready(&self) {
        let view = self.view.clone();
        let ready = tokio::time::timeout(Duration::from_secs(5), async move {
            while !view.is_ready() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        assert!(ready.await.is_ok(), "the view did not become ready");
    }

    fn patches(&self) -> (usize, usize) {
        (self.patches[0].load(Ordering::SeqCst), self.patches[1].load(Ordering::SeqCst))
    }

    fn gauge(&self, watch: &'static str, state: &'static str) -> i64 {
        let g: Gauge = self.metrics.watch_state.get_or_create(&WatchStateLabels { watch, state }).clone();
        g.get()
    }
}

/// One call: the webhook's early barrier (`prepare`) and the plan's read, with the same arrival,
/// write each sentinel once between them; a later call writes again; a read that needs only
/// RoleBindings writes only their sentinel.
#[tokio::test]
async fn the_webhooks_early_barrier_and_the_plans_read_write_each_sentinel_once() {
    let w = World::new(true);
    w.list_all();
    w.until_ready().await;
    let arrived = Instant::now();
    let (early, plan) = tokio::join!(
        w.view.prepare(arrived, |_| Need::BINDINGS),
        w.view.read(Since::Arrived(arrived), Need::BINDINGS, Reader::Plan)
    );
    early.unwrap();
    assert!(plan.is_ok());
    assert_eq!(w.patches(), (1, 1), "one PATCH per sentinel for the call");
    // The plan after the early barrier passed, as when the record's create took a while.
    w.view.read(Since::Arrived(arrived), Need::BINDINGS, Reader::Plan).await.unwrap();
    assert_eq!(w.patches(), (1, 1), "a barrier sent after the call arrived still serves it");
    let later = Instant::now();
    w.view.read(Since::Arrived(later), Need::bindings(true, false), Reader::Plan).await.unwrap();
    assert_eq!(w.patches(), (2, 1), "a later call: only the kind it needs");
    let reads = w.metrics.reads.get_or_create(&ReadLabels { reader: "plan", source: "view" }).get();
    assert_eq!(reads, 3, "the early barrier is not a read");
    w.stop.cancel();
}

/// A barrier the watch does not deliver within its time falls back `slow`, counted by reason.
#[tokio::test(start_paused = true)]
async fn a_barrier_not_delivered_in_time_falls_back_slow() {
    let w = World::new(false);
    w.list_all();
    w.until_ready().await;
    let started = tokio::time::Instant::now();
    let read = w.view.read(Since::Arrived(Instant::now()), Need::bindings(false, true), Reader::Connector).await;
    assert!(matches!(read, Err(Fallback::Slow { watch: "clusterrolebindings", .. })), "{:?}", read.err());
    assert_eq!(started.elapsed(), BARRIER_TIMEOUT);
    let slow = FallbackLabels { watch: "clusterrolebindings", reason: "slow" };
    assert_eq!(w.metrics.barrier_fallbacks.get_or_create(&slow).get(), 1);
    let api = ReadLabels { reader: "connector", source: "api" };
    assert_eq!(w.metrics.reads.get_or_create(&api).get(), 1);
    w.stop.cancel();
}

/// `Held` never writes: a live watch answers, one that failed (resuming) falls back at once.
/// `Live` trusts a live watch and passes a barrier for a resuming one. Health is exported.
#[tokio::test]
async fn held_never_writes_and_live_passes_a_barrier_only_for_a_watch_that_failed() {
    let w = World::new(true);
    assert!(!w.view.is_ready());
    assert_eq!(w.gauge("rolebindings", "listing"), 1);
    w.list_all();
    w.until_ready().await;
    assert_eq!((w.gauge("rolebindings", "live"), w.gauge("rolebindings", "listing")), (1, 0));
    assert!(w.view.read(Since::Held, Need::BINDINGS, Reader::Verify).await.is_ok());
    assert!(w.view.read(Since::Live, Need::BINDINGS, Reader::Verify).await.is_ok());
    assert_eq!(w.patches(), (0, 0), "a live watch needs no barrier for these");

    let failed = watcher::Error::WatchError(Box::new(Status::failure("watch failed", "Expired").with_code(500)));
    w.rb.unbounded_send(Err(failed)).unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while w.gauge("rolebindings", "resuming") != 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    assert!(waited.await.is_ok(), "the error moved the watch to resuming");
    let held = w.view.read(Since::Held, Need::BINDINGS, Reader::Verify).await;
    assert!(matches!(held, Err(Fallback::NotLive { watch: "rolebindings" })), "{:?}", held.err());
    assert_eq!(w.patches(), (0, 0));
    assert!(w.view.read(Since::Live, Need::BINDINGS, Reader::Verify).await.is_ok());
    assert_eq!(w.patches(), (1, 0), "only the watch that failed passes a barrier");
    assert!(w.view.is_ready(), "an error does not make a replica unready");
    w.stop.cancel();
}

/// Namespaces come from their watch, stripped to what a selector reads; a watch that lists
/// again makes a reader list them from the API server until it ends.
#[tokio::test]
async fn namespaces_come_from_their_watch_stripped() {
    let w = World::new(true);
    w.list_all();
    w.until_ready().await;
    let read = w.view.read(Since::Held, Need::NAMESPACES, Reader::Plan).now_or_never().expect("no barrier");
    let namespaces = read.unwrap().namespaces();
    assert_eq!(namespaces.len(), 1);
    assert_eq!(namespaces[0].name_any(), "team");
    assert_eq!(namespaces[0].labels().get("tier").map(String::as_str), Some("prod"));
    assert_eq!(namespaces[0].metadata.annotations, None, "annotations are not kept");

    w.namespaces.unbounded_send(Ok(Event::Init)).unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while w.gauge("namespaces", "listing") != 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    assert!(waited.await.is_ok());
    let read = w.view.read(Since::Held, Need::NAMESPACES, Reader::Plan).await;
    assert!(matches!(read, Err(Fallback::NotLive { watch: "namespaces" })));
    let fell_back = FallbackLabels { watch: "namespaces", reason: "not_live" };
    assert_eq!(w.metrics.barrier_fallbacks.get_or_create(&fell_back).get(), 1);
    w.stop.cancel();
}

/// A watch that lost an event stays so until a relist, which may be long: a read falls back at
/// once instead of waiting its barrier's time for a watch that cannot pass one.
#[tokio::test(start_paused = true)]
async fn a_watch_that_lost_an_event_falls_back_at_once() {
    let w = World::new(true);
    w.list_all();
    w.until_ready().await;
    w.rb.unbounded_send(Err(unreadable())).unwrap();
    while w.gauge("rolebindings", "lost") != 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = tokio::time::Instant::now();
    let read = w.view.read(Since::Arrived(Instant::now()), Need::bindings(true, false), Reader::Plan).await;
    assert!(matches!(read, Err(Fallback::NotLive { watch: "rolebindings" })), "{:?}", read.err());
    assert_eq!(started.elapsed(), Duration::ZERO, "no wait for a lost watch");
    assert_eq!(w.patches(), (0, 0), "and no barrier written");
    w.stop.cancel();
}

/// An event the watch could not read while the barrier was on its way: the barrier's own event
/// comes, but the store misses that event, so the read is not vouched for.
#[tokio::test]
async fn an_event_lost_while_the_barrier_travels_is_not_vouched_for() {
    let w = World::with(Mode::LoseThenDeliver);
    w.list_all();
    w.until_ready().await;
    let read = w.view.read(Since::Arrived(Instant::now()), Need::bindings(true, false), Reader::Plan).await;
    assert!(matches!(read, Err(Fallback::NotLive { watch: "rolebindings" })), "{:?}", read.err());
    assert_eq!(w.patches(), (1, 0), "the barrier was written");
    w.stop.cancel();
}

/// A barrier write that fails ends every read sharing it at once (they read the API server),
/// instead of each waiting its barrier's time for a write that will never be seen.
#[tokio::test(start_paused = true)]
async fn readers_sharing_a_failed_barrier_write_give_up_at_once() {
    let w = World::with(Mode::Refuse);
    w.list_all();
    w.until_ready().await;
    let started = tokio::time::Instant::now();
    let arrived = Instant::now();
    let rbs = Need::bindings(true, false);
    let (a, b) = tokio::join!(
        w.view.read(Since::Arrived(arrived), rbs, Reader::Plan),
        w.view.read(Since::Arrived(arrived), rbs, Reader::Plan)
    );
    for read in [a, b] {
        assert!(matches!(read, Err(Fallback::WriteFailed { .. }) | Err(Fallback::Slow { .. })), "{:?}", read.err());
    }
    assert!(started.elapsed() < BARRIER_TIMEOUT, "gave up at once: {:?}", started.elapsed());
    w.stop.cancel();
}
