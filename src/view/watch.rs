//! The one watch runner: every watch the view keeps runs its events through here into a store,
//! drives its [`Health`] from the events and errors, exports it as
//! `deprovisioner_watch_state{watch,state}`, and logs each change of state. What a watch does
//! besides (file bindings by subject, tell barriers and subscribers) is its [`Hook`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::health::{Health, Input, State};
use crate::metrics::{Metrics, WatchStateLabels};

/// What a watch does with each event besides keeping its store (nothing, by default).
pub trait Hook<K: Resource<DynamicType = ()> + Clone + 'static>: Send + 'static {
    /// Before the store applies `ev`: the store still holds the object as it was.
    fn before(&mut self, _store: &Store<K>, _ev: &Event<K>) {}
    /// After the store applied `ev` and the health moved to `health`.
    fn after(&mut self, _ev: Event<K>, _health: Health) {}
    /// After the watch failed and the health moved to `health`.
    fn failed(&mut self, _health: Health) {}
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Hook<K> for () {}

/// One watch: its store, its health, and the objects it applies for whoever follows them.
pub struct Watched<K: Resource<DynamicType = ()> + 'static> {
    /// The watch's name in metrics and logs (`rolebindings`, `policies`, ...).
    pub name: &'static str,
    store: Store<K>,
    health: watch::Sender<Health>,
    /// Each object the store applied (every one at the end of a list), while someone follows.
    applied: broadcast::Sender<Arc<K>>,
}

/// How many applied objects a follower may fall behind before it is told it lagged (it then
/// takes the whole store again).
const APPLIED_BUFFER: usize = 4096;

impl<K> Watched<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// The watch's health now.
    pub fn health(&self) -> Health {
        *self.health.borrow()
    }

    /// The store, as the watch last delivered it.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Waits at most `timeout` until a barrier can prove the store current
    /// ([`Health::can_barrier`]); says whether it can. Only a watch that is listing is waited
    /// for: one that lost an event stays so until a relist, which may be long (the reader then
    /// reads the API server at once).
    pub async fn until_barrier_can_pass(&self, timeout: Duration) -> bool {
        match self.health().state {
            _ if self.health().can_barrier() => return true,
            State::Lost => return false,
            _ => {}
        }
        let mut rx = self.health.subscribe();
        matches!(tokio::time::timeout(timeout, rx.wait_for(Health::can_barrier)).await, Ok(Ok(_)))
    }

    /// A receiver of the health's changes of state (for a waiter that needs more than a check).
    pub fn subscribe(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    /// Every object the store holds now, then each object the store applies from now on: what
    /// a kube-runtime `Controller` reconciles (`Controller::for_shared_stream` with
    /// [`Watched::store`]), so a controller that starts leading shares this watch instead of
    /// opening its own. A follower that falls behind takes the whole store again (a reconcile
    /// more, never one missed).
    pub fn applied(&self) -> impl Stream<Item = Arc<K>> + Send + 'static
    where
        K: Send + Sync,
    {
        let rx = self.applied.subscribe();
        let store = self.store.clone();
        let now = futures::stream::iter(store.state());
        let later = futures::stream::unfold((rx, store), |(mut rx, store)| async move {
            let next = match rx.recv().await {
                Ok(obj) => vec![obj],
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "a follower of a watch fell behind; it takes the whole store again");
                    store.state()
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((futures::stream::iter(next), (rx, store)))
        });
        now.chain(later.flatten())
    }
}

/// Whether a watch error dropped an event: a line the client could not read is skipped, and the
/// watch goes on after it.
pub fn lost_an_event(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchFailed(kube::Error::SerdeError(_)))
}

/// What a watch event is to the health state machine.
pub fn input_of<K>(ev: &Event<K>) -> Input {
    match ev {
        Event::Init => Input::ListBegins,
        Event::InitApply(_) => Input::Listed,
        Event::InitDone => Input::ListEnds,
        Event::Apply(_) | Event::Delete(_) => Input::Change,
    }
}

/// Sets the `watch_state` series of `watch`: 1 for `state`, 0 for the others.
pub(crate) fn export(metrics: Option<&Metrics>, watch: &'static str, state: State) {
    let Some(m) = metrics else { return };
    for s in State::ALL {
        let labels = WatchStateLabels { watch, state: s.as_str() };
        m.watch_state.get_or_create(&labels).set(i64::from(s == state));
    }
}

/// Runs `events` (a watcher's stream, or a test's own) until `stop`: each event is stripped
/// with `strip`, shown to `hook` before the store applies it, applied, moves the health, and
/// shown to `hook` again. An error moves the health only (the watcher resumes, or lists again
/// and says so with `Init`).
pub fn run<K, H>(
    name: &'static str,
    events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    strip: fn(&mut K),
    hook: H,
    metrics: Option<Arc<Metrics>>,
    stop: &CancellationToken,
) -> Arc<Watched<K>>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    H: Hook<K>,
{
    run_with(name, events, futures::stream::pending(), strip, hook, metrics, stop)
}

/// [`run`], with objects this process wrote (`injected`: the webhook's hand-offs) put into the
/// store, the followers and the hook as the watch's own changes are, ahead of the watch, but
/// never moving the health (they say nothing of the watch) and never over a copy of the same
/// object (same UID) the watch already delivered. It runs until `stop`, which the process gives
/// only once nothing reads the view any more (`main.rs`: after the controllers and the server).
pub fn run_with<K, H>(
    name: &'static str,
    events: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    injected: impl Stream<Item = K> + Send + 'static,
    strip: fn(&mut K),
    mut hook: H,
    metrics: Option<Arc<Metrics>>,
    stop: &CancellationToken,
) -> Arc<Watched<K>>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    H: Hook<K>,
{
    let (store, mut writer) = reflector::store();
    let watched = Arc::new(Watched {
        name,
        store: store.clone(),
        health: watch::channel(Health::default()).0,
        applied: broadcast::channel(APPLIED_BUFFER).0,
    });
    export(metrics.as_deref(), name, State::Listing);
    let (me, stop) = (watched.clone(), stop.clone());
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        let mut injected = std::pin::pin!(injected);
        let mut injecting = true;
        loop {
            // The watch's own events first when both are ready.
            let ev = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                ev = events.next() => ev,
                obj = injected.next(), if injecting => {
                    match obj {
                        Some(obj) => {
                            let held = store.get(&kube::runtime::reflector::ObjectRef::from_obj(&obj));
                            if held.is_some_and(|h| h.meta().uid == obj.meta().uid) {
                                continue; // the watch brought it first: its copy is newer
                            }
                            let ev = Event::Apply(obj).modify(strip);
                            hook.before(&store, &ev);
                            writer.apply_watcher_event(&ev);
                            me.tell_followers(&ev);
                            hook.after(ev, me.health());
                        }
                        None => injecting = false,
                    }
                    continue;
                }
            };
            match ev {
                Some(Ok(ev)) => {
                    let ev = ev.modify(strip);
                    hook.before(&store, &ev);
                    writer.apply_watcher_event(&ev);
                    let health = me.moved(input_of(&ev), metrics.as_deref(), None);
                    me.tell_followers(&ev);
                    hook.after(ev, health);
                }
                Some(Err(e)) => {
                    let lost = lost_an_event(&e);
                    hook.failed(me.moved(Input::Failed { lost_an_event: lost }, metrics.as_deref(), Some(&e)))
                }
                None => return,
            }
        }
    });
    watched
}

impl<K: Resource<DynamicType = ()> + 'static> Watched<K> {
    /// Moves the health by `input`; waiters are woken, the metric set and a line logged only when
    /// the state (or readiness) changes.
    fn moved(&self, input: Input, metrics: Option<&Metrics>, error: Option<&watcher::Error>) -> Health {
        let mut from = None;
        self.health.send_if_modified(|h| {
            let next = h.after(input, Instant::now());
            let changed = next.state != h.state || next.listed_once != h.listed_once;
            from = changed.then_some(h.state);
            *h = next;
            changed
        });
        let health = *self.health.borrow();
        let to = health.state;
        if let Some(e) = error {
            tracing::warn!(watch = self.name, state = to.as_str(), error = %e, "{} watch failed; the watcher resumes", self.name);
        }
        if let Some(from) = from.filter(|f| *f != to) {
            export(metrics, self.name, to);
            match to {
                State::Live => tracing::info!(watch = self.name, from = from.as_str(), "watch live"),
                _ => tracing::info!(watch = self.name, from = from.as_str(), to = to.as_str(), "watch state changed"),
            }
        }
        health
    }

    /// Sends followers ([`Watched::applied`]) what the store just applied: the object of an
    /// `Apply`, every object at the end of a list. Nothing is copied while nobody follows.
    fn tell_followers(&self, ev: &Event<K>)
    where
        K: Clone,
    {
        if self.applied.receiver_count() == 0 {
            return;
        }
        match ev {
            Event::Apply(obj) => {
                // The store's own copy: nothing is cloned.
                if let Some(held) = self.store.get(&kube::runtime::reflector::ObjectRef::from_obj(obj)) {
                    let _ = self.applied.send(held);
                }
            }
            Event::InitDone => {
                for obj in self.store.state() {
                    let _ = self.applied.send(obj);
                }
            }
            Event::Init | Event::InitApply(_) | Event::Delete(_) => {}
        }
    }
}
