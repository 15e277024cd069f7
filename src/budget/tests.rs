//! The budget's bound and order, with paused time; and the layer on a mocked API server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use tower::{Service, ServiceExt};

use super::{Budget, BudgetLayer, Priority};
use crate::metrics::{Metrics, PriorityLabels};

fn queued(m: &Metrics, p: Priority) -> i64 {
    m.budget_queued.get_or_create(&PriorityLabels { priority: p.as_str() }).get()
}

/// No more than the limit are in flight; once full, a freed slot goes to the highest priority
/// waiting (creates before status writes before other work before reviews before Events),
/// oldest first within one, whatever the order they queued in.
#[tokio::test(start_paused = true)]
async fn a_full_budget_serves_the_highest_priority_first() {
    let metrics = Metrics::new();
    let budget = Budget::new(2, metrics.clone());
    let a = budget.acquire(Priority::Event).await;
    let b = budget.acquire(Priority::Other).await;
    assert_eq!(budget.in_flight(), 2);

    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiting = tokio::task::JoinSet::new();
    // Queued lowest first: the order served must not follow the order queued.
    for (i, p) in
        [Priority::Event, Priority::Review, Priority::Other, Priority::Status, Priority::Create, Priority::Create]
            .into_iter()
            .enumerate()
    {
        let (budget, order) = (budget.clone(), order.clone());
        waiting.spawn(async move {
            let permit = budget.acquire(p).await;
            order.lock().unwrap().push((p, i));
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(permit);
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(queued(&metrics, Priority::Create), 2);
    assert_eq!(queued(&metrics, Priority::Event), 1);
    assert!(order.lock().unwrap().is_empty(), "nothing past the limit starts");
    assert_eq!(budget.in_flight(), 2);

    drop(a);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(*order.lock().unwrap(), [(Priority::Create, 4)], "one slot freed: the first create");
    assert_eq!(budget.in_flight(), 2, "a freed slot passes straight to a waiter");
    drop(b);
    while waiting.join_next().await.is_some() {}
    let served: Vec<_> = order.lock().unwrap().clone();
    assert_eq!(
        served,
        [
            (Priority::Create, 4),
            (Priority::Create, 5),
            (Priority::Status, 3),
            (Priority::Other, 2),
            (Priority::Review, 1),
            (Priority::Event, 0)
        ]
    );
    assert_eq!(budget.in_flight(), 0);
    assert!(Priority::ALL.iter().all(|p| queued(&metrics, *p) == 0));
    let text = metrics.encode();
    let sum = text.lines().find_map(|l| l.strip_prefix("deprovisioner_budget_wait_seconds_sum{priority=\"event\"} "));
    assert!(sum.and_then(|s| s.parse::<f64>().ok()).is_some_and(|s| s > 0.0), "an Event's wait is observed: {text}");
}

/// A request that gives up waiting (its caller went away) is forgotten: its slot goes to the
/// next one, and it is no longer counted as queued.
#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_takes_no_slot() {
    let metrics = Metrics::new();
    let budget = Budget::new(1, metrics.clone());
    let held = budget.acquire(Priority::Other).await;
    let gave_up = tokio::time::timeout(Duration::from_millis(50), budget.acquire(Priority::Create)).await;
    assert!(gave_up.is_err());
    assert_eq!(queued(&metrics, Priority::Create), 0);
    let next = tokio::spawn({
        let budget = budget.clone();
        async move { budget.acquire(Priority::Event).await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    drop(held);
    let next = tokio::time::timeout(Duration::from_secs(1), next).await.expect("served").unwrap();
    assert_eq!(budget.in_flight(), 1);
    drop(next);
    assert_eq!(budget.in_flight(), 0);
}

/// Through the layer: a create waits for a slot while the budget is full and is sent before an
/// Event queued earlier; a watch and the Lease are sent at once, whatever is queued.
#[tokio::test(start_paused = true)]
async fn the_layer_sends_creates_before_events_and_lets_watches_through() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let budget = Budget::new(1, Metrics::new());
    let svc = tower::Layer::layer(&BudgetLayer(budget.clone()), mock);
    let call = |method: Method, uri: &str| {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let mut svc = svc.clone();
        tokio::spawn(async move { svc.ready().await.unwrap().call(req).await.map(|_| ()).map_err(|e| e.to_string()) })
    };
    let dpr = "/apis/access.deprovisioner.dev/v1alpha1/deprovisionrequests";
    let busy = call(Method::GET, "/api/v1/namespaces");
    let (first, answer_first) = handle.next_request().await.unwrap();
    assert_eq!(first.uri().path(), "/api/v1/namespaces");
    let event = call(Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let create = call(Method::POST, dpr);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let watch = call(Method::GET, &format!("{dpr}?watch=true&resourceVersion=1"));
    let lease = call(Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/d/leases/d");
    let mut bypassed = vec![];
    for _ in 0..2 {
        let (req, answer) = handle.next_request().await.unwrap();
        bypassed.push(req.uri().path().to_string());
        answer.send_response(Response::new(Body::empty()));
    }
    bypassed.sort();
    assert_eq!(
        bypassed,
        [
            "/apis/access.deprovisioner.dev/v1alpha1/deprovisionrequests",
            "/apis/coordination.k8s.io/v1/namespaces/d/leases/d"
        ]
    );
    watch.await.unwrap().unwrap();
    lease.await.unwrap().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await.is_err(),
        "the budget is full"
    );
    answer_first.send_response(Response::new(Body::empty()));
    busy.await.unwrap().unwrap();
    let (next, answer) = handle.next_request().await.unwrap();
    assert_eq!((next.method(), next.uri().path()), (&Method::POST, dpr), "the create before the Event queued first");
    answer.send_response(Response::new(Body::empty()));
    create.await.unwrap().unwrap();
    let (last, answer) = handle.next_request().await.unwrap();
    assert!(last.uri().path().ends_with("/events"));
    answer.send_response(Response::new(Body::empty()));
    event.await.unwrap().unwrap();
    assert_eq!(budget.in_flight(), 0);
}

/// A request that has waited its starving bound goes next whatever its priority: creates arriving
/// without end hold other work up that long, no longer.
#[tokio::test(start_paused = true)]
async fn a_request_waits_behind_higher_priorities_at_most_starving() {
    let budget = Budget::new(1, Metrics::new());
    let held = budget.acquire(Priority::Create).await;
    let started = tokio::time::Instant::now();
    let plan = tokio::spawn({
        let budget = budget.clone();
        async move {
            let _p = budget.acquire(Priority::Status).await;
            started.elapsed()
        }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Creates keep coming, each holding the only slot for 100 ms.
    let creates = tokio::spawn({
        let budget = budget.clone();
        async move {
            loop {
                let b = budget.clone();
                tokio::spawn(async move {
                    let _p = b.acquire(Priority::Create).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    let waited = plan.await.unwrap();
    creates.abort();
    let bound = super::starving(Priority::Status);
    assert_eq!(bound, super::WORK_WAITS);
    assert!(waited >= bound, "it waits while creates queue: {waited:?}");
    assert!(waited <= bound + Duration::from_millis(100), "but no longer than the bound: {waited:?}");
}

#[test]
fn the_next_queue_is_the_highest_priority_unless_one_starves() {
    use std::collections::VecDeque;
    let now = tokio::time::Instant::now();
    let at = |ago: u64| now - Duration::from_millis(ago);
    let mut waiting: [VecDeque<(tokio::time::Instant, ())>; 5] = Default::default();
    assert_eq!(super::next(&waiting, now, 0, 8), None);
    waiting[4].push_back((at(4_000), ()));
    waiting[2].push_back((at(10), ()));
    assert_eq!(super::next(&waiting, now, 7, 8), Some(2));
    assert_eq!(super::next(&waiting, now, 8, 8), None, "no slot free");
    waiting[4].push_front((at(6_000), ()));
    waiting[3].push_back((at(5_000), ()));
    assert_eq!(super::next(&waiting, now, 7, 8), Some(4), "the longest starving first");
}

/// Events start only while few requests are in flight (a quarter of the limit, at least one):
/// in a burst they wait for a quiet moment, at most `EVENTS_WAIT`, instead of taking the work's slots.
#[test]
fn events_start_only_while_the_budget_is_quiet_unless_they_starve() {
    use std::collections::VecDeque;
    let now = tokio::time::Instant::now();
    let at = |ago: u64| now - Duration::from_millis(ago);
    let mut waiting: [VecDeque<(tokio::time::Instant, ())>; 5] = Default::default();
    waiting[4].push_back((at(10), ()));
    assert_eq!(super::next(&waiting, now, 5, 8), None, "busy: the Event waits although slots are free");
    assert_eq!(super::next(&waiting, now, 1, 8), Some(4), "quiet: it goes");
    assert_eq!(super::next(&waiting, now, 0, 2), Some(4), "a small budget keeps one slot for it");
    waiting[4].push_front((at(5_000), ()));
    assert_eq!(super::next(&waiting, now, 7, 8), Some(4), "starving: it goes anyway");
    assert_eq!((super::room(4, 8), super::room(4, 2), super::room(0, 8)), (2, 1, 8));
}

/// An Event asked for while the budget is busy waits until the work in flight thins out.
#[tokio::test(start_paused = true)]
async fn an_event_waits_for_a_quiet_budget() {
    let metrics = Metrics::new();
    let budget = Budget::new(8, metrics.clone());
    let work: Vec<_> = futures::future::join_all((0..3).map(|_| budget.acquire(Priority::Other))).await;
    let event = tokio::spawn({
        let budget = budget.clone();
        async move { budget.acquire(Priority::Event).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!event.is_finished(), "3 of 8 in flight: too busy for an Event");
    assert_eq!(queued(&metrics, Priority::Event), 1);
    let mut work = work.into_iter();
    drop(work.next());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!event.is_finished(), "2 of 8 in flight: still too busy");
    drop(work.next());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(event.is_finished(), "1 left in flight: the Event goes");
    drop(work);
}
