use crate::crd::{DeprovisionRequestStatus, Phase};

use super::Finished;

fn done(phase: Phase) -> Option<Box<DeprovisionRequestStatus>> {
    Some(Box::new(DeprovisionRequestStatus { phase, ..Default::default() }))
}

#[tokio::test]
async fn a_waiting_call_is_woken_with_the_outcome() {
    let f = Finished::new();
    let a = f.wait("r1");
    let b = f.wait("r1");
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
    assert_eq!(f.wait("r2").await.unwrap().unwrap().phase, Phase::Failed);
    f.done("gone", None);
    assert_eq!(f.wait("gone").await.unwrap(), None, "a deleted record is told as such");
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

#[test]
fn a_request_worked_here_is_known_until_it_ends_or_nobody_waits() {
    let f = Finished::new();
    let _waiting = f.wait("r5");
    f.worked_here("r5");
    assert!(f.is_worked_here("r5"), "the watch leaves it to the controller here first");
    f.done("r5", done(Phase::Succeeded));
    assert!(!f.is_worked_here("r5"), "told: nothing left to leave");

    drop(f.wait("r6"));
    f.worked_here("r6");
    f.prune();
    assert!(!f.is_worked_here("r6"), "nobody waits for it any more");
}
