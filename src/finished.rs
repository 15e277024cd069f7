//! Wakes webhook calls when their record finishes. The controller in the same process tells
//! [`Finished`] directly as it writes a terminal status; a watch of unfinished requests tells it
//! about requests another replica finished. A call waits on [`Finished::wait`] instead of opening
//! a watch of its own.
//!
//! Requests are known by their UID, never by name: a record deleted and a new one created under
//! the same name (the same call sent again) is another request, and never answered with the
//! outcome remembered for the first.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::crd::{DeprovisionRequest, DeprovisionRequestStatus};

/// How long a finished request is remembered for a call that starts waiting late.
const REMEMBER: Duration = Duration::from_secs(60);

/// What a waiting call learns: the terminal status, or `None` when the record was deleted.
pub type Outcome = Option<Box<DeprovisionRequestStatus>>;

enum Slot {
    /// Calls wait; `seen` is what the watch delivered about the request since the first call
    /// began to wait.
    Waiting {
        /// The request's name (to read it).
        name: String,
        waiters: Vec<oneshot::Sender<Outcome>>,
        seen: Seen,
    },
    Done {
        outcome: Outcome,
        at: Instant,
    },
}

/// What the request watch delivered about an awaited request.
enum Seen {
    /// Nothing yet, or nothing that still holds: the watch failed or listed again since, or the
    /// request left the unfinished set (its end is then read, by the watch or by the call).
    Nothing,
    /// Unfinished, with this status.
    Unfinished(Option<Box<DeprovisionRequestStatus>>),
}

impl Slot {
    /// Whether a call still waits here.
    fn has_waiters(&self) -> bool {
        matches!(self, Slot::Waiting { waiters, .. } if waiters.iter().any(|w| !w.is_closed()))
    }
}

/// Requests that finished, and the calls waiting for them, by UID.
#[derive(Default)]
pub struct Finished {
    slots: Mutex<HashMap<String, Slot>>,
    /// Requests handed to the controller in this process, which tells their end directly.
    here: Mutex<HashSet<String>>,
    /// When the watch last delivered anything (`None`: it failed since).
    delivered: Mutex<Option<Instant>>,
    /// Requests the watch showed just created (unfinished, not planned) before any call waited
    /// for them, and when: the call that created one usually begins to wait a moment after the
    /// watch delivered the create, and nothing else may change the request before its deadline.
    created: Mutex<HashMap<String, Instant>>,
}

/// How long a create the watch delivered is kept for a call that has not begun to wait yet.
const CREATED_KEPT: Duration = Duration::from_secs(10);

/// How recently the request watch must have delivered something for what it said about a
/// request to be taken as current: a watch that stalls without an error is not believed for
/// long. In a burst, events arrive every few milliseconds.
const LIVE_WITHIN: Duration = Duration::from_secs(1);

/// How long the watch leaves a request worked here to the controller here before reading it:
/// the watch often delivers the end a moment before the controller's own write returns, and the
/// read would be spent for nothing. Past it (the controller here lost the lead and another
/// finished the request), the request is read.
const HERE_FIRST: Duration = Duration::from_secs(1);

impl Finished {
    /// A shared, empty hub.
    pub fn new() -> Arc<Finished> {
        Arc::default()
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Taken after [`Finished::slots`] when both are held.
    fn created(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves when the request with this `uid` (named `name`) finishes (at once if it
    /// finished in the last minute).
    pub fn wait(&self, uid: &str, name: &str) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let mut slots = self.slots();
        match slots.get_mut(uid) {
            Some(Slot::Done { outcome, .. }) => {
                let _ = tx.send(outcome.clone());
            }
            Some(Slot::Waiting { waiters, .. }) => waiters.push(tx),
            None => {
                let seen = match self.created().remove(uid) {
                    Some(_) => Seen::Unfinished(None),
                    None => Seen::Nothing,
                };
                slots.insert(uid.to_string(), Slot::Waiting { name: name.to_string(), waiters: vec![tx], seen });
            }
        }
        rx
    }

    /// Notes that the controller in this process works the request `uid`: it tells its end
    /// directly.
    pub fn worked_here(&self, uid: &str) {
        self.here.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string());
    }

    fn is_worked_here(&self, uid: &str) -> bool {
        self.here.lock().unwrap_or_else(|p| p.into_inner()).contains(uid)
    }

    /// Records that the request `uid` finished (or was deleted) and wakes its callers.
    pub fn done(&self, uid: &str, outcome: Outcome) {
        self.here.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
        let mut slots = self.slots();
        let done = Slot::Done { outcome: outcome.clone(), at: Instant::now() };
        if let Some(Slot::Waiting { waiters, .. }) = slots.insert(uid.to_string(), done) {
            for w in waiters {
                let _ = w.send(outcome.clone());
            }
        }
    }

    /// Whether a call is waiting for the request `uid`.
    pub fn is_awaited(&self, uid: &str) -> bool {
        matches!(self.slots().get(uid), Some(s) if s.has_waiters())
    }

    /// Notes what the request watch delivered, for the requests calls wait for.
    pub(crate) fn observe(&self, ev: &watcher::Event<DeprovisionRequest>) {
        *self.delivered.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let (obj, unfinished) = match ev {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => (obj, true),
            // It left the unfinished set: its end is read (or the call reads it).
            watcher::Event::Delete(obj) => (obj, false),
            watcher::Event::Init => return self.unseen(),
            watcher::Event::InitDone => return,
        };
        let Some(uid) = obj.uid() else { return };
        let mut slots = self.slots();
        match slots.get_mut(uid.as_str()) {
            Some(Slot::Waiting { seen, .. }) => {
                *seen = match unfinished {
                    true => Seen::Unfinished(obj.status.clone().map(Box::new)),
                    false => Seen::Nothing,
                };
            }
            Some(Slot::Done { .. }) => {}
            // Nobody waits yet: a create is kept a moment for the call that made it.
            None if unfinished && obj.status.is_none() => {
                self.created().insert(uid, Instant::now());
            }
            None => {
                self.created().remove(&uid);
            }
        }
    }

    /// Forgets what the watch delivered about every request: it failed or lists again, and
    /// may have missed their ends.
    fn unseen(&self) {
        *self.delivered.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut slots = self.slots();
        for slot in slots.values_mut() {
            if let Slot::Waiting { seen, .. } = slot {
                *seen = Seen::Nothing;
            }
        }
        self.created().clear();
    }

    /// The status of the request `uid` as the watch last delivered it (`None` inside: not planned yet),
    /// while the watch is live (it delivered something in the last [`LIVE_WITHIN`]) and says the
    /// request is unfinished: how far it got, for a call whose deadline is near, without reading
    /// it again. It may be a moment behind: the watch lags by milliseconds. `None` when the
    /// watch delivered nothing about it since the call began to wait, or failed since, or is
    /// quiet, or saw the request leave the unfinished set: then only a read tells.
    pub fn last_seen(&self, uid: &str) -> Option<Option<Box<DeprovisionRequestStatus>>> {
        self.seen_at(uid, Instant::now())
    }

    fn seen_at(&self, uid: &str, now: Instant) -> Option<Option<Box<DeprovisionRequestStatus>>> {
        let delivered = *self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        if delivered.is_none_or(|at| now.saturating_duration_since(at) > LIVE_WITHIN) {
            return None;
        }
        match self.slots().get(uid) {
            Some(Slot::Waiting { seen: Seen::Unfinished(status), .. }) => Some(status.clone()),
            _ => None,
        }
    }

    /// The requests calls are waiting for: (uid, name).
    fn awaited(&self) -> Vec<(String, String)> {
        let slots = self.slots();
        let waiting = |(uid, s): (&String, &Slot)| match s {
            Slot::Waiting { name, .. } if s.has_waiters() => Some((uid.clone(), name.clone())),
            _ => None,
        };
        slots.iter().filter_map(waiting).collect()
    }

    /// Forgets finished requests older than a minute and calls that stopped waiting.
    pub fn prune(&self) {
        let mut slots = self.slots();
        slots.retain(|_, s| match s {
            Slot::Done { at, .. } => at.elapsed() < REMEMBER,
            Slot::Waiting { waiters, .. } => {
                waiters.retain(|w| !w.is_closed());
                !waiters.is_empty()
            }
        });
        let waiting = |n: &String| matches!(slots.get(n), Some(Slot::Waiting { .. }));
        self.here.lock().unwrap_or_else(|p| p.into_inner()).retain(waiting);
        self.created().retain(|_, at| at.elapsed() < CREATED_KEPT);
    }

    /// How many requests are held (waiting or remembered).
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Watches unfinished requests until `stop`: a request that leaves that set (it finished, or was
/// deleted) and that a call here waits for is read once and its callers woken. Only unfinished
/// requests are listed, so the history of finished ones costs nothing.
pub async fn watch(client: Client, finished: Arc<Finished>, unfinished: String, stop: CancellationToken) {
    let api: Api<DeprovisionRequest> = Api::all(client);
    let events = watcher(api.clone(), watcher::Config::default().fields(&unfinished)).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut prune = tokio::time::interval(Duration::from_secs(10));
    let mut relisted: HashSet<String> = HashSet::new();
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            _ = prune.tick() => { finished.prune(); continue; }
            ev = events.next() => ev,
        };
        let ev = match ev {
            None => return,
            Some(Err(e)) => {
                finished.unseen();
                tracing::debug!(error = %e, "request watch failed; retrying");
                continue;
            }
            Some(Ok(ev)) => ev,
        };
        finished.observe(&ev);
        match ev {
            watcher::Event::Delete(obj) => {
                let (name, Some(uid)) = (obj.name_any(), obj.uid()) else { continue };
                if finished.is_awaited(&uid) {
                    let (api, finished) = (api.clone(), finished.clone());
                    tokio::spawn(async move {
                        if finished.is_worked_here(&uid) {
                            tokio::time::sleep(HERE_FIRST).await;
                            if !finished.is_awaited(&uid) {
                                return;
                            }
                        }
                        read_outcome(api, finished, uid, name).await
                    });
                }
            }
            watcher::Event::Init => relisted.clear(),
            watcher::Event::InitApply(obj) => {
                relisted.extend(obj.uid());
            }
            // After a relist, a call may wait for a request that finished while the watch was
            // down: it is no longer listed.
            watcher::Event::InitDone => {
                for (uid, name) in finished.awaited().into_iter().filter(|(uid, _)| !relisted.contains(uid)) {
                    tokio::spawn(read_outcome(api.clone(), finished.clone(), uid, name));
                }
                relisted = HashSet::new();
            }
            watcher::Event::Apply(_) => {}
        }
    }
}

/// Reads a request that left the unfinished set and wakes its callers. Another object under its
/// name (deleted and created again) means the awaited request was deleted.
async fn read_outcome(api: Api<DeprovisionRequest>, finished: Arc<Finished>, uid: String, name: String) {
    match api.get_opt(&name).await {
        Ok(Some(obj)) if obj.uid().as_deref() != Some(uid.as_str()) => finished.done(&uid, None),
        Ok(Some(obj)) if obj.status.as_ref().is_some_and(|s| s.phase.is_terminal()) => {
            finished.done(&uid, obj.status.map(Box::new))
        }
        Ok(Some(_)) => {} // not finished after all
        Ok(None) => finished.done(&uid, None),
        Err(e) => tracing::debug!(request = %name, error = %e, "could not read a finished request"),
    }
}

#[cfg(test)]
mod tests;
