//! A call's wait for its request, as one pure decision ([`decide`]) asked again whenever what is
//! known of the request changes or the time it named comes:
//!
//! | what is known of the request                  | before `deadline − LAST_LOOK` | until `deadline − LAST_MOMENT` | after        |
//! |-----------------------------------------------|-------------------------------|--------------------------------|--------------|
//! | it ended (told, or read)                      | answer it                     | answer it                      | answer it    |
//! | left the unfinished set, worked here < 1 s ago | wait for the controller here  | read, answer                   | read, answer |
//! | left the unfinished set                       | read (answer if it ended)     | read, answer                   | read, answer |
//! | unfinished, the watch live (delivered < 1 s)  | wait                          | wait                           | answer "in progress" from the watch |
//! | anything else                                 | wait                          | read, answer                   | read, answer |
//!
//! Reading only near the deadline, and not at all while a live watch shows the request under
//! way, is what keeps a burst from reading hundreds of records at once while the API server is
//! busiest (a burst of 1,000 made ~700 reads at the deadline, ~50 since).

use std::future::Future;
use std::time::{Duration, Instant};

use kube::{Api, ResourceExt};
use tokio::sync::watch;

use crate::crd::DeprovisionRequest;
use crate::finished::{Awaited, Finished, Outcome, Seen};
use crate::view::health::Health;

/// How long before the deadline a call not told its request's end reads the record once more
/// (unless a live watch shows it under way).
pub const LAST_LOOK: Duration = Duration::from_millis(300);

/// How long before the deadline a call whose request a live watch shows under way answers so.
pub const LAST_MOMENT: Duration = Duration::from_millis(100);

/// How recently the watch must have delivered something for what it shows to be believed: a
/// watch that stalls without an error is not believed for long (in a burst, events arrive every
/// few milliseconds).
pub const LIVE_WITHIN: Duration = Duration::from_secs(1);

/// How long a request worked here that left the unfinished set is left to the controller here
/// to tell: the watch often shows the end a moment before the controller's own write returns.
/// Past it (the controller here lost the lead and another finished it), the record is read.
pub const HERE_FIRST: Duration = Duration::from_secs(1);

/// What a waiting call does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Wait until `until`, or until what is known of the request changes.
    Wait {
        /// When to decide again.
        until: Instant,
    },
    /// Read the record. `last`: answer from what it says; otherwise only an end is answered,
    /// and the call waits on.
    Read {
        /// The deadline is near: this read is the answer.
        last: bool,
    },
    /// Answer its end (`None`: it was deleted).
    Ended(Outcome),
    /// The deadline came: answer how far it got (`None`: not started, or not known).
    InProgress(Option<Box<crate::crd::DeprovisionRequestStatus>>),
}

/// What a call waiting for a request until `deadline` does at `now` (see the module's table).
pub fn decide(now: Instant, deadline: Instant, health: &Health, awaited: &Awaited) -> Decision {
    let last_look = deadline.checked_sub(LAST_LOOK).unwrap_or(deadline);
    let last_moment = deadline.checked_sub(LAST_MOMENT).unwrap_or(deadline);
    match &awaited.seen {
        Seen::Ended(outcome) => Decision::Ended(outcome.clone()),
        Seen::Left { at } if awaited.here && now < (*at + HERE_FIRST).min(last_look) => {
            Decision::Wait { until: (*at + HERE_FIRST).min(last_look) }
        }
        Seen::Left { .. } => Decision::Read { last: now >= last_look },
        _ if now < last_look => Decision::Wait { until: last_look },
        Seen::Unfinished(status) if health.is_live_within(LIVE_WITHIN, now) => match now < last_moment {
            true => Decision::Wait { until: last_moment },
            false => Decision::InProgress(status.clone()),
        },
        Seen::Unfinished(_) | Seen::Nothing => Decision::Read { last: true },
    }
}

/// What a read of the record found.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// It ended (`None`: deleted, or another object holds its name).
    Ended(Outcome),
    /// Still unfinished, with this status.
    Unfinished(Option<Box<crate::crd::DeprovisionRequestStatus>>),
    /// The read failed or was cut off at the deadline.
    Failed,
}

/// Reads the request `uid`, named `name`, within the deadline. Another object under its name
/// (deleted and created again) means the request was deleted.
pub async fn read(api: &Api<DeprovisionRequest>, name: &str, uid: &str, deadline: tokio::time::Instant) -> Read {
    match tokio::time::timeout_at(deadline, api.get_opt(name)).await {
        Ok(Ok(Some(obj))) if obj.uid().as_deref() != Some(uid) => Read::Ended(None),
        Ok(Ok(Some(obj))) if obj.status.as_ref().is_some_and(|s| s.phase.is_terminal()) => {
            Read::Ended(obj.status.map(Box::new))
        }
        Ok(Ok(Some(obj))) => Read::Unfinished(obj.status.map(Box::new)),
        Ok(Ok(None)) => Read::Ended(None),
        Ok(Err(e)) => {
            tracing::debug!(request = %name, error = %e, "could not read the record");
            Read::Failed
        }
        Err(_) => Read::Failed,
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The request ended (`None`: it was deleted).
    Ended(Outcome),
    /// The deadline came first: how far it got, as last seen (`None`: not known).
    InProgress(Option<Box<crate::crd::DeprovisionRequestStatus>>),
}

/// Waits for the request `uid` (known through `awaited`, from [`Finished::wait`]) until
/// `deadline`, doing what [`decide`] says; `read` reads its record.
pub async fn wait<F, R>(
    finished: &Finished,
    uid: &str,
    mut awaited: watch::Receiver<Awaited>,
    deadline: tokio::time::Instant,
    mut read: F,
) -> Answer
where
    F: FnMut() -> R,
    R: Future<Output = Read>,
{
    loop {
        let now = tokio::time::Instant::now();
        let known = awaited.borrow_and_update().clone();
        match decide(now.into_std(), deadline.into_std(), &finished.health(), &known) {
            Decision::Ended(outcome) => return Answer::Ended(outcome),
            Decision::InProgress(status) => return Answer::InProgress(status),
            Decision::Wait { until } => {
                let until = tokio::time::Instant::from_std(until);
                if tokio::time::timeout_at(until, awaited.changed()).await.is_ok_and(|r| r.is_err()) {
                    // Nobody can tell any more (not while a call waits): decide at `until`.
                    tokio::time::sleep_until(until).await;
                }
            }
            Decision::Read { last } => match read().await {
                Read::Ended(outcome) => {
                    finished.done(uid, outcome.clone());
                    return Answer::Ended(outcome);
                }
                Read::Unfinished(status) if last => return Answer::InProgress(status),
                // How far the watch last showed it got, rather than nothing.
                Read::Failed if last => {
                    let shown = match &known.seen {
                        Seen::Unfinished(status) => status.clone(),
                        _ => None,
                    };
                    return Answer::InProgress(shown);
                }
                Read::Unfinished(_) | Read::Failed => finished.left_unconfirmed(uid),
            },
        }
    }
}

#[cfg(test)]
mod tests;
