//! What webhook calls wait for, by request UID: what the watch of unfinished requests
//! ([`crate::view::requests`]) last showed of each awaited request, whether the controller here
//! works it, its end once known (told directly by the controller here as it writes a terminal
//! status, or read by a call), and that watch's health. A call decides what to do from it
//! (`webhook::wait`); nothing here reads the API server.
//!
//! Requests are known by their UID, never by name: a record deleted and a new one created under
//! the same name (the same call sent again) is another request, and never answered with the
//! outcome remembered for the first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::crd::{DeprovisionRequest, DeprovisionRequestStatus};
use crate::view::health::Health;

/// How long an end (or a create the watch showed before any call waited) is kept for a call
/// that starts waiting late.
const REMEMBER: Duration = Duration::from_secs(60);

/// What a waiting call learns: the terminal status, or `None` when the record was deleted.
pub type Outcome = Option<Box<DeprovisionRequestStatus>>;

/// What is known of an awaited request.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Nothing that still holds: the watch has not shown it since the call began to wait, or
    /// lists again.
    Nothing,
    /// The watch shows it unfinished, with this status (`None`: not planned yet).
    Unfinished(Option<Box<DeprovisionRequestStatus>>),
    /// The watch showed it leave the unfinished set at `at` (it finished or was deleted), or
    /// listed again without it: only a read (or the controller here) tells how it ended.
    Left {
        /// When.
        at: std::time::Instant,
    },
    /// It ended: its terminal status, or `None` when it was deleted.
    Ended(Outcome),
}

/// What a call waiting for one request is given: what is known of it, and whether the
/// controller in this process works it (and will tell its end).
#[derive(Debug, Clone, PartialEq)]
pub struct Awaited {
    /// What is known of it.
    pub seen: Seen,
    /// Handed to the controller here.
    pub here: bool,
}

/// One request: its news (watched by the calls waiting for it) and when it last changed.
struct Entry {
    news: watch::Sender<Awaited>,
    at: Instant,
}

impl Entry {
    fn new(seen: Seen) -> Entry {
        Entry { news: watch::Sender::new(Awaited { seen, here: false }), at: Instant::now() }
    }

    fn is_awaited(&self) -> bool {
        self.news.receiver_count() > 0 && !self.has_ended()
    }

    fn has_ended(&self) -> bool {
        matches!(self.news.borrow().seen, Seen::Ended(_))
    }

    /// Tells the calls waiting for it what the watch showed (an end already known stays).
    fn see(&mut self, seen: Seen) {
        if self.news.send_if_modified(|a| match a.seen {
            Seen::Ended(_) => false,
            _ => {
                a.seen = seen;
                true
            }
        }) {
            self.at = Instant::now();
        }
    }
}

#[derive(Default)]
struct Inner {
    requests: HashMap<String, Entry>,
    /// The health of the watch of unfinished requests (set by that watch).
    health: Health,
}

/// Requests calls wait for, and requests that ended, by UID.
#[derive(Default)]
pub struct Finished {
    inner: Mutex<Inner>,
}

impl Finished {
    /// A shared, empty hub.
    pub fn new() -> Arc<Finished> {
        Arc::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of the request `uid`, and its changes, for a call that waits for it (its
    /// end at once if it ended in the last minute).
    pub fn wait(&self, uid: &str) -> watch::Receiver<Awaited> {
        self.inner().requests.entry(uid.to_string()).or_insert_with(|| Entry::new(Seen::Nothing)).news.subscribe()
    }

    /// Notes that the controller in this process works the request `uid`: it tells its end
    /// directly.
    pub fn worked_here(&self, uid: &str) {
        if let Some(e) = self.inner().requests.get(uid) {
            e.news.send_modify(|a| a.here = true);
        }
    }

    /// Records that the request `uid` ended (`None`: it was deleted) and wakes its callers.
    pub fn done(&self, uid: &str, outcome: Outcome) {
        let mut inner = self.inner();
        let entry = inner.requests.entry(uid.to_string()).or_insert_with(|| Entry::new(Seen::Nothing));
        entry.news.send_modify(|a| *a = Awaited { seen: Seen::Ended(outcome), here: false });
        entry.at = Instant::now();
    }

    /// A read found the request `uid` still unfinished (or could not tell) after the watch
    /// showed it leave: that news no longer holds.
    pub fn left_unconfirmed(&self, uid: &str) {
        if let Some(e) = self.inner().requests.get_mut(uid)
            && matches!(e.news.borrow().seen, Seen::Left { .. })
        {
            e.see(Seen::Nothing);
        }
    }

    /// Whether a call is waiting for the request `uid` (and its end is not known).
    pub fn is_awaited(&self, uid: &str) -> bool {
        self.inner().requests.get(uid).is_some_and(Entry::is_awaited)
    }

    /// The health of the watch of unfinished requests.
    pub fn health(&self) -> Health {
        self.inner().health
    }

    /// Sets the health of the watch of unfinished requests (by that watch).
    pub(crate) fn set_health(&self, health: Health) {
        self.inner().health = health;
    }

    /// Notes what the watch of unfinished requests delivered (at `now`) about the requests calls
    /// wait for. A create is kept (a minute) for the call that made it, which usually begins to
    /// wait a moment after the watch delivered it; anything else about a request nobody waits
    /// for is not.
    pub(crate) fn observe(&self, ev: &watcher::Event<DeprovisionRequest>, now: std::time::Instant) {
        let mut inner = self.inner();
        let requests = &mut inner.requests;
        match ev {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                let Some(uid) = obj.uid() else { return };
                let seen = Seen::Unfinished(obj.status.clone().map(Box::new));
                match requests.get_mut(&uid) {
                    Some(e) => e.see(seen),
                    None if obj.status.is_none() => {
                        requests.insert(uid, Entry::new(seen));
                    }
                    None => {}
                }
            }
            watcher::Event::Delete(obj) => {
                if let Some(e) = obj.uid().and_then(|uid| requests.get_mut(&uid)) {
                    e.see(Seen::Left { at: now });
                }
            }
            // The watch lists again: it may have missed ends, and what it lists is news again.
            watcher::Event::Init => requests.values_mut().for_each(|e| e.see(Seen::Nothing)),
            // What the list did not show is no longer unfinished (or was created after it).
            watcher::Event::InitDone => {
                for e in requests.values_mut().filter(|e| e.news.borrow().seen == Seen::Nothing) {
                    e.see(Seen::Left { at: now });
                }
            }
        }
    }

    /// Forgets ends and creates older than a minute, and requests nobody waits for any more.
    pub fn prune(&self) {
        self.inner().requests.retain(|_, e| {
            let kept = matches!(e.news.borrow().seen, Seen::Ended(_) | Seen::Unfinished(_));
            e.is_awaited() || (kept && e.at.elapsed() < REMEMBER)
        });
    }

    /// What is known of the request `uid`, without waiting for it.
    #[cfg(test)]
    fn peek(&self, uid: &str) -> Option<Awaited> {
        self.inner().requests.get(uid).map(|e| e.news.borrow().clone())
    }

    /// How many requests are held (waiting or remembered).
    pub fn len(&self) -> usize {
        self.inner().requests.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
