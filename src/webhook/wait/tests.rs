//! The wait's decision, directly (one case per row of the module's table and per case the wait
//! used to special-case), then the loop around it with paused time: when it reads, how often,
//! and what it answers.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::watcher::Event;

use super::*;
use crate::crd::{DeprovisionRequestStatus, Phase};
use crate::finished::{Awaited, Finished, Seen};
use crate::view::health::{Health, State};

fn status(phase: Phase) -> Option<Box<DeprovisionRequestStatus>> {
    Some(Box::new(DeprovisionRequestStatus { phase, ..Default::default() }))
}

fn awaited(seen: Seen, here: bool) -> Awaited {
    Awaited { seen, here }
}

fn health(state: State, last_delivered: Instant) -> Health {
    Health { state, listed_once: true, last_delivered: Some(last_delivered) }
}

const DEADLINE: Duration = Duration::from_secs(2);

// ---- the pure decision ----

#[test]
fn an_end_is_answered_at_once_whatever_the_time_or_the_watch() {
    let t = Instant::now();
    let d = t + DEADLINE;
    let watch = health(State::Lost, t);
    let ended = awaited(Seen::Ended(status(Phase::Succeeded)), true);
    for now in [t, d - LAST_LOOK, d] {
        assert_eq!(decide(now, d, &watch, &ended), Decision::Ended(status(Phase::Succeeded)));
    }
    let deleted = awaited(Seen::Ended(None), false);
    assert_eq!(decide(t, d, &watch, &deleted), Decision::Ended(None), "deleted: told as such");
}

#[test]
fn last_look_nothing_known_waits_then_reads_once_to_answer() {
    let t = Instant::now();
    let d = t + DEADLINE;
    let live = health(State::Live, t);
    let nothing = awaited(Seen::Nothing, false);
    assert_eq!(decide(t, d, &live, &nothing), Decision::Wait { until: d - LAST_LOOK });
    let late = d - LAST_LOOK;
    assert_eq!(decide(late, d, &health(State::Live, late), &nothing), Decision::Read { last: true });
    assert_eq!(decide(d, d, &live, &nothing), Decision::Read { last: true }, "even past the deadline");
}

#[test]
fn last_moment_a_live_watch_showing_it_under_way_is_believed_instead_of_a_read() {
    let t = Instant::now();
    let d = t + DEADLINE;
    let under_way = awaited(Seen::Unfinished(status(Phase::InProgress)), false);
    assert_eq!(decide(t, d, &health(State::Live, t), &under_way), Decision::Wait { until: d - LAST_LOOK });
    let look = d - LAST_LOOK;
    assert_eq!(decide(look, d, &health(State::Live, look), &under_way), Decision::Wait { until: d - LAST_MOMENT });
    let moment = d - LAST_MOMENT;
    let answer = decide(moment, d, &health(State::Live, moment), &under_way);
    assert_eq!(answer, Decision::InProgress(status(Phase::InProgress)));
    let created = awaited(Seen::Unfinished(None), false);
    assert_eq!(decide(moment, d, &health(State::Live, moment), &created), Decision::InProgress(None));
}

#[test]
fn live_within_a_watch_quiet_for_a_second_is_not_believed() {
    let t = Instant::now();
    let d = t + DEADLINE;
    let under_way = awaited(Seen::Unfinished(status(Phase::InProgress)), false);
    let look = d - LAST_LOOK;
    let quiet = health(State::Live, look - LIVE_WITHIN - Duration::from_millis(1));
    assert_eq!(decide(look, d, &quiet, &under_way), Decision::Read { last: true });
    let recent = health(State::Live, look - LIVE_WITHIN);
    assert_eq!(decide(look, d, &recent, &under_way), Decision::Wait { until: d - LAST_MOMENT });
    // It went quiet while the call waited for its last moment: read then.
    let moment = d - LAST_MOMENT;
    assert_eq!(decide(moment, d, &recent, &under_way), Decision::Read { last: true });
}

#[test]
fn a_watch_listing_resuming_or_lost_is_not_believed() {
    let t = Instant::now();
    let d = t + DEADLINE;
    let look = d - LAST_LOOK;
    let under_way = awaited(Seen::Unfinished(status(Phase::InProgress)), false);
    for state in [State::Listing, State::Resuming, State::Lost] {
        assert_eq!(decide(look, d, &health(state, look), &under_way), Decision::Read { last: true }, "{state:?}");
    }
}

#[test]
fn here_first_a_leave_worked_here_is_left_to_the_controller_here_a_second() {
    let t = Instant::now();
    let d = t + Duration::from_secs(10);
    let live = health(State::Live, t);
    let left_here = awaited(Seen::Left { at: t }, true);
    assert_eq!(decide(t, d, &live, &left_here), Decision::Wait { until: t + HERE_FIRST });
    assert_eq!(decide(t + HERE_FIRST, d, &live, &left_here), Decision::Read { last: false });
    // Near the deadline: no later than the last look, and that read is the answer.
    let near = d - LAST_LOOK - Duration::from_millis(500);
    let left_late = awaited(Seen::Left { at: near }, true);
    assert_eq!(decide(near, d, &live, &left_late), Decision::Wait { until: d - LAST_LOOK });
    assert_eq!(decide(d - LAST_LOOK, d, &live, &left_late), Decision::Read { last: true });
}

#[test]
fn a_leave_not_worked_here_is_read_at_once() {
    let t = Instant::now();
    let d = t + DEADLINE;
    let left = awaited(Seen::Left { at: t }, false);
    // Whatever the watch's health: the leave is news that only a read completes.
    for state in State::ALL {
        assert_eq!(decide(t, d, &health(state, t), &left), Decision::Read { last: false }, "{state:?}");
    }
    assert_eq!(decide(d - LAST_MOMENT, d, &health(State::Live, t), &left), Decision::Read { last: true });
}

// ---- the loop, with paused time ----

/// A request whose UID is its name.
fn request(name: &str, phase: Option<Phase>) -> crate::crd::DeprovisionRequest {
    let mut r = crate::fixtures::request(name, crate::fixtures::request_spec("app", "p@lumos.com").build());
    r.metadata.uid = Some(name.into());
    r.status = phase.map(|phase| DeprovisionRequestStatus { phase, ..Default::default() });
    r
}

fn deliver(f: &Finished, ev: Event<crate::crd::DeprovisionRequest>) {
    crate::view::requests::deliver(f, Ok(&ev), tokio::time::Instant::now().into_std());
}

/// A watch that listed and delivers other requests' changes every 200 ms (a burst's traffic).
fn live_watch(f: &Arc<Finished>) -> tokio::task::JoinHandle<()> {
    deliver(f, Event::Init);
    deliver(f, Event::InitDone);
    let f = f.clone();
    tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            deliver(&f, Event::Apply(request(&format!("other-{i}"), Some(Phase::InProgress))));
        }
    })
}

/// What a wait did: its answer, when (since it began), and when it read (and what each read
/// found, in order; `Unfinished(None)` once they run out).
struct Run {
    answer: Answer,
    took: Duration,
    reads: Vec<Duration>,
}

async fn run(f: &Finished, uid: &str, mut found: Vec<Read>) -> Run {
    let start = tokio::time::Instant::now();
    let rx = f.wait(uid);
    let reads = RefCell::new(Vec::new());
    found.reverse();
    let found = RefCell::new(found);
    let read = || {
        reads.borrow_mut().push(start.elapsed());
        let r = found.borrow_mut().pop().unwrap_or(Read::Unfinished(None));
        async move { r }
    };
    let answer = super::wait(f, uid, rx, start + DEADLINE, read).await;
    Run { answer, took: start.elapsed(), reads: reads.into_inner() }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn told_a_call_is_answered_at_once_without_a_read() {
    let f = Finished::new();
    let teller = f.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(700)).await;
        teller.done("r", status(Phase::Succeeded));
    });
    let r = run(&f, "r", vec![]).await;
    assert_eq!(r.answer, Answer::Ended(status(Phase::Succeeded)));
    assert_eq!((r.took, r.reads.len()), (ms(700), 0));
}

#[tokio::test(start_paused = true)]
async fn not_told_and_the_watch_silent_reads_once_at_the_last_look() {
    let f = Finished::new();
    let r = run(&f, "r", vec![Read::Unfinished(status(Phase::InProgress))]).await;
    assert_eq!(r.answer, Answer::InProgress(status(Phase::InProgress)));
    assert_eq!(r.reads, vec![DEADLINE - LAST_LOOK]);
    assert_eq!(r.took, DEADLINE - LAST_LOOK);
    // The read found it ended: answered so, and remembered for the others.
    let r = run(&f, "r2", vec![Read::Ended(status(Phase::Failed))]).await;
    assert_eq!(r.answer, Answer::Ended(status(Phase::Failed)));
    assert_eq!(run(&f, "r2", vec![]).await.reads.len(), 0, "a call that comes later is told");
    // The read failed or was cut off: still in progress, nothing known.
    let r = run(&f, "r3", vec![Read::Failed]).await;
    assert_eq!((r.answer, r.reads.len()), (Answer::InProgress(None), 1));
}

#[tokio::test(start_paused = true)]
async fn a_live_watch_showing_it_under_way_answers_at_the_last_moment_without_a_read() {
    let f = Finished::new();
    let watch = live_watch(&f);
    let f2 = f.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(10)).await;
        deliver(&f2, Event::Apply(request("r", Some(Phase::InProgress))));
    });
    let r = run(&f, "r", vec![]).await;
    watch.abort();
    assert_eq!(r.answer, Answer::InProgress(status(Phase::InProgress)));
    assert_eq!((r.took, r.reads.len()), (DEADLINE - LAST_MOMENT, 0));
}

#[tokio::test(start_paused = true)]
async fn a_request_ending_between_the_last_look_and_the_last_moment_is_answered_ended() {
    let f = Finished::new();
    let watch = live_watch(&f);
    deliver(&f, Event::Apply(request("r", None)));
    let teller = f.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(1800)).await;
        teller.done("r", status(Phase::Succeeded));
    });
    let r = run(&f, "r", vec![]).await;
    watch.abort();
    assert_eq!(r.answer, Answer::Ended(status(Phase::Succeeded)));
    assert_eq!((r.took, r.reads.len()), (ms(1800), 0));
}

#[tokio::test(start_paused = true)]
async fn created_just_before_the_wait_the_watch_is_believed() {
    let f = Finished::new();
    let watch = live_watch(&f);
    // The create's event usually arrives before the call that made it begins to wait.
    deliver(&f, Event::Apply(request("r", None)));
    tokio::time::sleep(ms(5)).await;
    let r = run(&f, "r", vec![]).await;
    watch.abort();
    assert_eq!((r.answer, r.reads.len()), (Answer::InProgress(None), 0));
    // Not a create: a request already under way before anyone waited is read.
    deliver(&f, Event::Apply(request("early", Some(Phase::InProgress))));
    let r = run(&f, "early", vec![]).await;
    assert_eq!(r.reads, vec![DEADLINE - LAST_LOOK]);
}

#[tokio::test(start_paused = true)]
async fn a_watch_gone_quiet_failed_or_relisting_is_not_believed() {
    type Break = fn(&Finished);
    let breaks: [(&str, Break); 3] = [
        ("quiet", |_| {}),
        ("failed", |f| {
            let e = kube::runtime::watcher::Error::NoResourceVersion;
            crate::view::requests::deliver(f, Err(&e), tokio::time::Instant::now().into_std());
        }),
        ("relisting", |f| deliver(f, Event::Init)),
    ];
    for (what, break_it) in breaks {
        let f = Finished::new();
        deliver(&f, Event::Init);
        deliver(&f, Event::InitDone);
        deliver(&f, Event::Apply(request("r", None)));
        let f2 = f.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(500)).await;
            deliver(&f2, Event::Apply(request("r", Some(Phase::InProgress))));
            break_it(&f2);
        });
        let r = run(&f, "r", vec![]).await;
        assert_eq!(r.reads, vec![DEADLINE - LAST_LOOK], "{what}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_leave_not_worked_here_is_read_at_once_and_a_deletion_answered() {
    let f = Finished::new();
    let watch = live_watch(&f);
    deliver(&f, Event::Apply(request("r", None)));
    let f2 = f.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(400)).await;
        deliver(&f2, Event::Delete(request("r", Some(Phase::InProgress))));
    });
    let r = run(&f, "r", vec![Read::Ended(None)]).await;
    watch.abort();
    assert_eq!(r.answer, Answer::Ended(None), "deleted (or another object under its name)");
    assert_eq!((r.reads, r.took), (vec![ms(400)], ms(400)));
}

#[tokio::test(start_paused = true)]
async fn a_leave_read_unfinished_is_read_again_at_the_last_look() {
    let f = Finished::new();
    let f2 = f.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(300)).await;
        // A relist that does not show it (it was created after the list began).
        deliver(&f2, Event::Init);
        deliver(&f2, Event::InitDone);
    });
    let found = vec![Read::Unfinished(None), Read::Unfinished(status(Phase::InProgress))];
    let r = run(&f, "r", found).await;
    assert_eq!(r.reads, vec![ms(300), DEADLINE - LAST_LOOK]);
    assert_eq!(r.answer, Answer::InProgress(status(Phase::InProgress)));
}

#[tokio::test(start_paused = true)]
async fn here_first_a_leave_worked_here_waits_for_the_controller_here() {
    for tells in [true, false] {
        let f = Finished::new();
        let f2 = f.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(10)).await;
            f2.worked_here("r");
            tokio::time::sleep(ms(190)).await;
            deliver(&f2, Event::Delete(request("r", Some(Phase::InProgress))));
            if tells {
                tokio::time::sleep(ms(50)).await;
                f2.done("r", status(Phase::Succeeded));
            }
        });
        let r = run(&f, "r", vec![Read::Ended(status(Phase::Succeeded))]).await;
        assert_eq!(r.answer, Answer::Ended(status(Phase::Succeeded)), "tells: {tells}");
        match tells {
            true => assert_eq!((r.reads.len(), r.took), (0, ms(250))),
            // It lost the lead and another replica finished it: read after a second.
            false => assert_eq!(r.reads, vec![ms(200) + HERE_FIRST]),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_attached_call_is_told_with_the_call_that_created_the_request() {
    let f = Finished::new();
    let f2 = f.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(10)).await;
        f2.worked_here("r");
        tokio::time::sleep(ms(290)).await;
        f2.done("r", status(Phase::Succeeded));
    });
    let (created, attached) = tokio::join!(run(&f, "r", vec![]), async {
        tokio::time::sleep(ms(100)).await;
        run(&f, "r", vec![]).await
    });
    for r in [created, attached] {
        assert_eq!((r.answer, r.reads.len()), (Answer::Ended(status(Phase::Succeeded)), 0));
    }
}

// ---- the read, against a mocked API server ----

#[tokio::test]
async fn a_read_tells_ended_deleted_another_object_unfinished_or_failed() {
    use http::{Request, Response};
    let (svc, mut handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<kube::client::Body>>();
    let api: Api<DeprovisionRequest> = Api::all(kube::Client::new(svc, "default"));
    let ok = |obj: &DeprovisionRequest| Response::builder().body(serde_json::to_vec(obj).unwrap().into()).unwrap();
    let not_found = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
    let mut other = request("r", Some(Phase::InProgress));
    other.metadata.uid = Some("another".into());
    let answers = vec![
        Some(ok(&request("r", Some(Phase::Succeeded)))),
        Some(ok(&request("r", Some(Phase::InProgress)))),
        Some(ok(&other)),
        Some(Response::builder().status(404).body(serde_json::to_vec(&not_found).unwrap().into()).unwrap()),
        None,
    ];
    let server = tokio::spawn(async move {
        for answer in answers {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(
                (req.method(), req.uri().path()),
                (&http::Method::GET, "/apis/access.deprovisioner.dev/v1alpha1/deprovisionrequests/r")
            );
            match answer {
                Some(a) => send.send_response(a),
                None => send.send_error(std::io::Error::other("test: unreachable")),
            }
        }
    });
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut found = Vec::new();
    for _ in 0..5 {
        found.push(read(&api, "r", "r", deadline).await);
    }
    server.await.unwrap();
    assert_eq!(
        found,
        vec![
            Read::Ended(status(Phase::Succeeded)),
            Read::Unfinished(status(Phase::InProgress)),
            Read::Ended(None),
            Read::Ended(None),
            Read::Failed,
        ]
    );
}

/// The watch showed the request under way, then went quiet; the last read fails: the call is
/// answered with how far the watch showed it got, not "not started".
#[tokio::test(start_paused = true)]
async fn a_failed_last_read_answers_what_the_watch_last_showed() {
    let f = Finished::new();
    deliver(&f, Event::Init);
    deliver(&f, Event::InitDone);
    let r = {
        let rx = f.wait("r");
        deliver(&f, Event::Apply(request("r", Some(Phase::InProgress))));
        drop(rx);
        run(&f, "r", vec![Read::Failed]).await
    };
    assert_eq!(r.reads, vec![DEADLINE - LAST_LOOK], "the quiet watch is not believed: read");
    assert_eq!(r.answer, Answer::InProgress(status(Phase::InProgress)));
}
