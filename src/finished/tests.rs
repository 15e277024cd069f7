use std::time::{Duration, Instant};

use kube::runtime::watcher::Event;
use tokio::sync::watch;

use super::{Awaited, Finished, Outcome, Seen};
use crate::crd::{DeprovisionRequestStatus, Phase};
use crate::view::requests::deliver;
use crate::webhook::wait::{Decision, LAST_MOMENT, decide};

fn done(phase: Phase) -> Option<Box<DeprovisionRequestStatus>> {
    Some(Box::new(DeprovisionRequestStatus { phase, ..Default::default() }))
}

/// The end a waiting call is told.
async fn told(mut rx: watch::Receiver<Awaited>) -> Outcome {
    let a = rx.wait_for(|a| matches!(a.seen, Seen::Ended(_))).await.unwrap().clone();
    match a.seen {
        Seen::Ended(outcome) => outcome,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_waiting_call_is_woken_with_the_outcome() {
    let f = Finished::new();
    let a = f.wait("r1");
    let b = f.wait("r1");
    assert!(f.is_awaited("r1"));
    f.done("r1", done(Phase::Succeeded));
    assert_eq!(told(a).await.unwrap().phase, Phase::Succeeded);
    assert_eq!(told(b).await.unwrap().phase, Phase::Succeeded);
    assert!(!f.is_awaited("r1"));
}

#[tokio::test]
async fn a_call_that_starts_waiting_late_gets_the_remembered_outcome() {
    let f = Finished::new();
    f.done("r2", done(Phase::Failed));
    assert_eq!(told(f.wait("r2")).await.unwrap().phase, Phase::Failed);
    f.done("gone", None);
    assert_eq!(told(f.wait("gone")).await, None, "a deleted record is told as such");
}

#[test]
fn calls_that_stopped_waiting_are_forgotten() {
    let f = Finished::new();
    drop(f.wait("r3"));
    let _kept = f.wait("r4");
    assert!(!f.is_awaited("r3"));
    f.prune();
    assert_eq!(f.len(), 1, "only the call still waiting is held");
    assert!(f.is_awaited("r4"));
}

#[tokio::test(start_paused = true)]
async fn ends_and_creates_are_remembered_a_minute() {
    let f = Finished::new();
    f.done("ended", done(Phase::Succeeded));
    deliver(&f, Ok(&Event::Apply(request("created", None))), Instant::now());
    f.prune();
    assert_eq!(f.len(), 2);
    tokio::time::advance(Duration::from_secs(59)).await;
    f.prune();
    assert_eq!(f.len(), 2, "a call that starts waiting within the minute still finds them");
    tokio::time::advance(Duration::from_secs(2)).await;
    f.prune();
    assert!(f.is_empty(), "forgotten after a minute");
}

#[test]
fn a_request_worked_here_is_known_until_it_ends_or_nobody_waits() {
    let f = Finished::new();
    let waiting = f.wait("r5");
    f.worked_here("r5");
    assert!(waiting.borrow().here, "the call leaves it to the controller here first");
    f.done("r5", done(Phase::Succeeded));
    assert!(!waiting.borrow().here, "told: nothing left to leave");

    drop(f.wait("r6"));
    f.worked_here("r6");
    f.prune();
    assert!(f.peek("r6").is_none_or(|a| !a.here), "nobody waits for it any more");
}

/// A request whose UID is its name.
fn request(name: &str, phase: Option<Phase>) -> crate::crd::DeprovisionRequest {
    let mut r = crate::fixtures::request(name, crate::fixtures::request_spec("app", "p@lumos.com").build());
    r.metadata.uid = Some(name.into());
    r.status = phase.map(|phase| DeprovisionRequestStatus { phase, ..Default::default() });
    r
}

/// How far the request `uid` got as the watch shows it, when a call at its last moment (`now`)
/// would answer from the watch without reading the record (`None`: it reads).
fn seen_at(f: &Finished, uid: &str, now: Instant) -> Option<Option<Box<DeprovisionRequestStatus>>> {
    let awaited = f.peek(uid).unwrap_or(Awaited { seen: Seen::Nothing, here: false });
    match decide(now, now + LAST_MOMENT, &f.health(), &awaited) {
        Decision::InProgress(status) => Some(status),
        _ => None,
    }
}

fn last_seen(f: &Finished, uid: &str) -> Option<Option<Box<DeprovisionRequestStatus>>> {
    seen_at(f, uid, Instant::now())
}

/// The watch delivers `ev` now.
fn observe(f: &Finished, ev: Event<crate::crd::DeprovisionRequest>) {
    deliver(f, Ok(&ev), Instant::now());
}

/// A live watch (it listed and delivers).
fn live() -> std::sync::Arc<Finished> {
    let f = Finished::new();
    observe(&f, Event::Init);
    observe(&f, Event::InitDone);
    f
}

#[test]
fn the_watch_tells_how_far_an_awaited_request_got() {
    let f = live();
    observe(&f, Event::Apply(request("early", Some(Phase::InProgress))));
    let _early = f.wait("early");
    assert!(last_seen(&f, "early").is_none(), "what came before the call waited is not kept");
    // Except a create, delivered a moment before the call that made it begins to wait.
    observe(&f, Event::Apply(request("just-created", None)));
    let _created = f.wait("just-created");
    assert_eq!(last_seen(&f, "just-created"), Some(None), "shown created, not planned yet");
    observe(&f, Event::Apply(request("gone", None)));
    observe(&f, Event::Delete(request("gone", None)));
    let _gone = f.wait("gone");
    assert!(last_seen(&f, "gone").is_none(), "it left the unfinished set before the call waited");

    let _waiting = f.wait("r7");
    assert!(last_seen(&f, "r7").is_none(), "nothing delivered yet: only a read tells");
    observe(&f, Event::Apply(request("r7", None)));
    assert_eq!(last_seen(&f, "r7"), Some(None), "delivered, not planned yet");
    observe(&f, Event::Apply(request("r7", Some(Phase::InProgress))));
    assert_eq!(last_seen(&f, "r7").unwrap().unwrap().phase, Phase::InProgress);

    observe(&f, Event::Delete(request("r7", Some(Phase::InProgress))));
    assert!(last_seen(&f, "r7").is_none(), "it left the unfinished set: its end is read, not guessed");

    observe(&f, Event::InitApply(request("r7", Some(Phase::InProgress))));
    assert!(last_seen(&f, "r7").is_some());
    observe(&f, Event::Init);
    assert!(last_seen(&f, "r7").is_none(), "the watch lists again: it may have missed the end");
    observe(&f, Event::InitApply(request("r7", Some(Phase::InProgress))));
    assert!(last_seen(&f, "r7").is_none(), "not before the list ends");
    observe(&f, Event::InitDone);
    observe(&f, Event::Apply(request("r7", Some(Phase::InProgress))));
    assert!(last_seen(&f, "r7").is_some());
    let later = Instant::now() + Duration::from_secs(2);
    assert!(seen_at(&f, "r7", later).is_none(), "a watch quiet for long is not believed");
    let failed = kube::runtime::watcher::Error::NoResourceVersion;
    deliver(&f, Err(&failed), Instant::now());
    assert!(last_seen(&f, "r7").is_none(), "the watch failed: it may miss the end");
    observe(&f, Event::Apply(request("other", Some(Phase::InProgress))));
    assert!(last_seen(&f, "r7").is_some(), "it resumed where it was: what it showed still holds");

    observe(&f, Event::Apply(request("nobody", Some(Phase::InProgress))));
    assert!(last_seen(&f, "nobody").is_none());
    assert_eq!(f.len(), 4, "requests nobody waits for are not held");
}

#[test]
fn a_relist_that_no_longer_shows_an_awaited_request_says_it_left() {
    let f = live();
    let listed = f.wait("listed");
    let missing = f.wait("missing");
    observe(&f, Event::Apply(request("listed", Some(Phase::InProgress))));
    observe(&f, Event::Apply(request("missing", Some(Phase::InProgress))));
    observe(&f, Event::Init);
    assert_eq!(missing.borrow().seen, Seen::Nothing, "listing: nothing holds");
    observe(&f, Event::InitApply(request("listed", Some(Phase::InProgress))));
    observe(&f, Event::InitDone);
    assert!(matches!(listed.borrow().seen, Seen::Unfinished(Some(_))));
    assert!(matches!(missing.borrow().seen, Seen::Left { .. }), "finished while the watch was down");
    f.left_unconfirmed("missing");
    assert_eq!(missing.borrow().seen, Seen::Nothing, "a read found it still unfinished");
    f.left_unconfirmed("listed");
    assert!(matches!(listed.borrow().seen, Seen::Unfinished(Some(_))), "only a leave is undone");
}

#[test]
fn an_end_told_stays_whatever_the_watch_shows_after() {
    let f = live();
    let rx = f.wait("r8");
    f.done("r8", done(Phase::Succeeded));
    observe(&f, Event::Delete(request("r8", Some(Phase::Succeeded))));
    observe(&f, Event::Init);
    observe(&f, Event::InitDone);
    assert_eq!(rx.borrow().seen, Seen::Ended(done(Phase::Succeeded)));
}

/// A record deleted and created again under its name (the same call sent again) is another
/// request: a call for the new one is never told the outcome remembered for the old one.
#[tokio::test]
async fn a_name_reused_by_a_new_request_is_never_told_the_old_outcome() {
    let f = live();
    f.done("uid-old", done(Phase::Succeeded));
    let new = f.wait("uid-new");
    assert!(!matches!(new.borrow().seen, Seen::Ended(_)), "the old request's outcome is not the new one's");
    let mut again = request("lumos-abc-1", None);
    again.metadata.uid = Some("uid-new".into());
    observe(&f, Event::Apply(again));
    assert_eq!(last_seen(&f, "uid-new"), Some(None), "the watch's news of the new request is the new one's");
    assert!(last_seen(&f, "uid-old").is_none());
    f.done("uid-new", done(Phase::Failed));
    assert_eq!(told(new).await.unwrap().phase, Phase::Failed);
}
