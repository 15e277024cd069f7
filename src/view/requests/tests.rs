use std::time::Instant;

use kube::runtime::watcher::{Error, Event};

use super::deliver;
use crate::crd::DeprovisionRequest;
use crate::finished::Finished;
use crate::metrics::Metrics;
use crate::view::health::State;
use crate::view::watch::export;

fn request(name: &str) -> DeprovisionRequest {
    let mut r = crate::fixtures::request(name, crate::fixtures::request_spec("app", "p@lumos.com").build());
    r.metadata.uid = Some(name.into());
    r
}

#[test]
fn the_watch_moves_through_the_health_machine_and_the_calls_see_it() {
    let f = Finished::new();
    let t = Instant::now();
    assert_eq!(f.health().state, State::Listing, "not listed yet");
    assert_eq!(deliver(&f, Ok(&Event::Init), t).state, State::Listing);
    assert_eq!(deliver(&f, Ok(&Event::InitApply(request("a"))), t).state, State::Listing);
    let live = deliver(&f, Ok(&Event::InitDone), t);
    assert_eq!((live.state, live.listed_once, live.last_delivered), (State::Live, true, Some(t)));
    assert_eq!(f.health(), live, "what calls decide from");
    assert_eq!(deliver(&f, Err(&Error::NoResourceVersion), t).state, State::Resuming);
    assert_eq!(deliver(&f, Ok(&Event::Apply(request("b"))), t).state, State::Live, "it resumed");
    let unreadable = Error::WatchFailed(kube::Error::SerdeError(serde_json::from_str::<u8>("x").unwrap_err()));
    assert_eq!(deliver(&f, Err(&unreadable), t).state, State::Lost, "an event was skipped");
    assert_eq!(deliver(&f, Ok(&Event::Delete(request("b"))), t).state, State::Lost, "until the next list");
    deliver(&f, Ok(&Event::Init), t);
    assert_eq!(deliver(&f, Ok(&Event::InitDone), t).state, State::Live);
}

#[test]
fn the_watch_state_is_exported_one_series_per_state() {
    let metrics = Metrics::new();
    export(Some(&metrics), "requests", State::Live);
    export(Some(&metrics), "requests", State::Resuming);
    let text = metrics.encode();
    for (state, value) in [("listing", 0), ("live", 0), ("resuming", 1), ("lost", 0)] {
        let line = format!("watch_state{{watch=\"requests\",state=\"{state}\"}} {value}");
        assert!(text.lines().any(|l| l.ends_with(&line)), "{line} in\n{text}");
    }
}

/// The watch of requests runs through the one watch runner: `Finished` (what calls decide from)
/// follows the runner's health, and a hand-off enters the store and the applied stream before
/// the watch brings the request.
#[tokio::test]
async fn the_runner_tells_finished_its_health_and_hand_offs_enter_the_store() {
    use futures::StreamExt;
    let f = Finished::new();
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let events = futures::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    });
    let requests = super::Requests::fed(events, f.clone(), None, &stop);
    let settle = || async {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    };
    assert_eq!(f.health().state, State::Listing);
    let mut applied = std::pin::pin!(requests.watched.applied());
    tx.send(Ok(Event::Init)).unwrap();
    tx.send(Ok(Event::InitApply(request("a")))).unwrap();
    tx.send(Ok(Event::InitDone)).unwrap();
    settle().await;
    assert_eq!(f.health().state, State::Live);
    assert_eq!(f.health(), requests.watched.health(), "one health: the runner's");
    assert_eq!(applied.next().await.unwrap().metadata.uid.as_deref(), Some("a"), "the list's objects");
    assert!(requests.hand(request("b")));
    settle().await;
    assert_eq!(requests.watched.store().state().len(), 2, "the handed request is in the store");
    assert_eq!(applied.next().await.unwrap().metadata.uid.as_deref(), Some("b"), "and reaches the controller");
    tx.send(Err(Error::NoResourceVersion)).unwrap();
    settle().await;
    assert_eq!(f.health().state, State::Resuming);
    stop.cancel();
}

/// A hand-off says nothing of the watch: it does not make a failed watch live again (calls would
/// trust a watch that may have stalled), and it never replaces a copy the watch already delivered.
#[tokio::test]
async fn a_hand_off_moves_no_health_and_never_replaces_the_watchs_copy() {
    let f = Finished::new();
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let events = futures::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    });
    let requests = super::Requests::fed(events, f.clone(), None, &stop);
    let settle = || async {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    };
    let mut planned = request("a");
    planned.status = Some(Default::default());
    tx.send(Ok(Event::Init)).unwrap();
    tx.send(Ok(Event::InitDone)).unwrap();
    tx.send(Ok(Event::Apply(planned))).unwrap();
    tx.send(Err(Error::NoResourceVersion)).unwrap();
    settle().await;
    assert_eq!(f.health().state, State::Resuming);
    assert!(requests.hand(request("b")));
    assert!(requests.hand(request("a")), "a late hand-off of a request the watch delivered");
    settle().await;
    assert_eq!(f.health().state, State::Resuming, "hand-offs do not move the watch's health");
    assert_eq!(requests.watched.health().state, State::Resuming);
    let store = requests.watched.store().state();
    assert_eq!(store.len(), 2, "the handed request is in the store");
    let a = store.iter().find(|r| r.metadata.uid.as_deref() == Some("a")).unwrap();
    assert!(a.status.is_some(), "the watch's newer copy stays");
    stop.cancel();
}
