use crate::crd::{DeprovisionRequestStatus, Phase};

use super::Finished;

fn done(phase: Phase) -> Option<Box<DeprovisionRequestStatus>> {
    Some(Box::new(DeprovisionRequestStatus { phase, ..Default::default() }))
}

#[tokio::test]
async fn a_waiting_call_is_woken_with_the_outcome() {
    let f = Finished::new();
    let a = f.wait("r1", "r1");
    let b = f.wait("r1", "r1");
    assert!(f.is_awaited("r1"));
    f.done("r1", done(Phase::Succeeded));
    assert_eq!(a.await.unwrap().unwrap().phase, Phase::Succeeded);
    assert_eq!(b.await.unwrap().unwrap().phase, Phase::Succeeded);
    assert!(!f.is_awaited("r1"));
}

#[tokio::test]
async fn a_call_that_starts_waiting_late_gets_the_remembered_outcome() {
    let f = Finished::new();
    f.done("r2", done(Phase::Failed));
    assert_eq!(f.wait("r2", "r2").await.unwrap().unwrap().phase, Phase::Failed);
    f.done("gone", None);
    assert_eq!(f.wait("gone", "gone").await.unwrap(), None, "a deleted record is told as such");
}

#[test]
fn calls_that_stopped_waiting_are_forgotten() {
    let f = Finished::new();
    drop(f.wait("r3", "r3"));
    let _kept = f.wait("r4", "r4");
    assert!(!f.is_awaited("r3"));
    f.prune();
    assert_eq!(f.len(), 1, "only the call still waiting is held");
    assert!(f.is_awaited("r4"));
}

#[test]
fn a_request_worked_here_is_known_until_it_ends_or_nobody_waits() {
    let f = Finished::new();
    let _waiting = f.wait("r5", "r5");
    f.worked_here("r5");
    assert!(f.is_worked_here("r5"), "the watch leaves it to the controller here first");
    f.done("r5", done(Phase::Succeeded));
    assert!(!f.is_worked_here("r5"), "told: nothing left to leave");

    drop(f.wait("r6", "r6"));
    f.worked_here("r6");
    f.prune();
    assert!(!f.is_worked_here("r6"), "nobody waits for it any more");
}

/// A request whose UID is its name.
fn request(name: &str, phase: Option<Phase>) -> crate::crd::DeprovisionRequest {
    let mut r = crate::fixtures::request(name, crate::fixtures::request_spec("app", "p@lumos.com").build());
    r.metadata.uid = Some(name.into());
    r.status = phase.map(|phase| DeprovisionRequestStatus { phase, ..Default::default() });
    r
}

#[test]
fn the_watch_tells_how_far_an_awaited_request_got() {
    use kube::runtime::watcher::Event;
    let f = Finished::new();
    f.observe(&Event::Apply(request("early", Some(Phase::InProgress))));
    let _early = f.wait("early", "early");
    assert!(f.last_seen("early").is_none(), "what came before the call waited is not kept");
    // Except a create, delivered a moment before the call that made it begins to wait.
    f.observe(&Event::Apply(request("just-created", None)));
    let _created = f.wait("just-created", "just-created");
    assert_eq!(f.last_seen("just-created"), Some(None), "shown created, not planned yet");
    f.observe(&Event::Apply(request("gone", None)));
    f.observe(&Event::Delete(request("gone", None)));
    let _gone = f.wait("gone", "gone");
    assert!(f.last_seen("gone").is_none(), "it left the unfinished set before the call waited");

    let _waiting = f.wait("r7", "r7");
    assert!(f.last_seen("r7").is_none(), "nothing delivered yet: only a read tells");
    f.observe(&Event::Apply(request("r7", None)));
    assert_eq!(f.last_seen("r7"), Some(None), "delivered, not planned yet");
    f.observe(&Event::Apply(request("r7", Some(Phase::InProgress))));
    assert_eq!(f.last_seen("r7").unwrap().unwrap().phase, Phase::InProgress);

    f.observe(&Event::Delete(request("r7", Some(Phase::InProgress))));
    assert!(f.last_seen("r7").is_none(), "it left the unfinished set: its end is read, not guessed");

    f.observe(&Event::InitApply(request("r7", Some(Phase::InProgress))));
    assert!(f.last_seen("r7").is_some());
    f.observe(&Event::Init);
    assert!(f.last_seen("r7").is_none(), "the watch lists again: it may have missed the end");
    f.observe(&Event::Apply(request("r7", Some(Phase::InProgress))));
    let later = std::time::Instant::now() + std::time::Duration::from_secs(2);
    assert!(f.seen_at("r7", later).is_none(), "a watch quiet for long is not believed");
    f.unseen();
    assert!(f.last_seen("r7").is_none(), "the watch failed: it may miss the end");

    f.observe(&Event::Apply(request("nobody", Some(Phase::InProgress))));
    assert!(f.last_seen("nobody").is_none());
    assert_eq!(f.len(), 4, "requests nobody waits for are not held");
}

/// A record deleted and created again under its name (the same call sent again) is another
/// request: a call for the new one is never told the outcome remembered for the old one.
#[tokio::test]
async fn a_name_reused_by_a_new_request_is_never_told_the_old_outcome() {
    use kube::runtime::watcher::Event;
    let f = Finished::new();
    f.done("uid-old", done(Phase::Succeeded));
    let mut new = f.wait("uid-new", "lumos-abc-1");
    assert!(new.try_recv().is_err(), "the old request's outcome is not the new one's");
    let mut again = request("lumos-abc-1", None);
    again.metadata.uid = Some("uid-new".into());
    f.observe(&Event::Apply(again));
    assert_eq!(f.last_seen("uid-new"), Some(None), "the watch's news of the new request is the new one's");
    assert!(f.last_seen("uid-old").is_none());
    f.done("uid-new", done(Phase::Failed));
    assert_eq!(new.await.unwrap().unwrap().phase, Phase::Failed);
}
