//! What one controller keeps in memory while it leads: the requests as it last wrote them (so a
//! reconcile needs no fresh read of its own writes), one reconcile at a time per request, the
//! webhook's handoff, and Events published off the critical path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use kube::runtime::events::{Event, Recorder};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::crd::DeprovisionRequest;
use crate::webhook::RECORDING_AT_ONCE;

/// How long a finished request stays known (reconciles queued by its own last writes still come).
const KEEP_FINISHED: Duration = Duration::from_secs(30);

/// How long the arrival of a handed-over call is kept (a plan retried later uses its own start,
/// which is later, so only as precise).
const KEEP_ARRIVALS: Duration = Duration::from_secs(60);

/// Requests as this controller last wrote them, per-request locks, and the bound on requests
/// worked at once.
pub(super) struct Local {
    known: Mutex<HashMap<String, (DeprovisionRequest, Instant)>>,
    /// When the Lumos call behind each handed-over request arrived.
    arrivals: Mutex<HashMap<String, Instant>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    slots: Arc<Semaphore>,
    concurrency: usize,
}

/// Whether a controller is idle: no request is being worked, and no call here waits to be
/// recorded.
pub(super) struct Idle {
    slots: Arc<Semaphore>,
    all: usize,
    handoff: Arc<Handoff>,
}

impl Idle {
    fn now(&self) -> bool {
        self.slots.available_permits() >= self.all && self.handoff.unrecorded.load(Ordering::SeqCst) == 0
    }
}

/// A request held for one reconcile: no other reconcile in this process works it meanwhile.
pub(super) struct Held {
    name: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: OwnedMutexGuard<()>,
    _slot: OwnedSemaphorePermit,
}

impl Local {
    pub fn new(concurrency: u16) -> Local {
        Local {
            known: Mutex::default(),
            arrivals: Mutex::default(),
            locks: Mutex::default(),
            slots: Arc::new(Semaphore::new(usize::from(concurrency.max(1)))),
            concurrency: usize::from(concurrency.max(1)),
        }
    }

    /// Tells whether no request is being worked (every slot free) and no call to the webhook here
    /// waits to be recorded.
    pub fn idle(&self, handoff: Arc<Handoff>) -> Idle {
        Idle { slots: self.slots.clone(), all: self.concurrency, handoff }
    }

    /// Waits until no other reconcile here works on `name` and a slot is free.
    pub async fn hold(&self, name: &str) -> Held {
        let lock = self.locks.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        let slot = self.slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        Held { name: name.to_string(), lock, _guard: guard, _slot: slot }
    }

    /// Lets go of a held request (and forgets its lock when nobody else waits for it).
    pub fn release(&self, held: Held) {
        let Held { name, lock, _guard, _slot } = held;
        drop(_guard);
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Held by the map and by `lock` here only: nobody else has it or waits for it.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&name);
        }
    }

    /// The request as this controller last wrote (or was handed) it.
    pub fn known(&self, name: &str) -> Option<DeprovisionRequest> {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).get(name).map(|(o, _)| o.clone())
    }

    /// Remembers the request as just written (or created).
    pub fn remember(&self, obj: &DeprovisionRequest) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(obj.name_any(), (obj.clone(), Instant::now()));
    }

    /// When the call behind a request handed over here arrived (`None`: it came from the watch,
    /// or long ago). Its plan needs only the bindings written before that moment.
    pub fn arrival(&self, name: &str) -> Option<Instant> {
        self.arrivals.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied()
    }

    /// Forgets a request: someone else wrote it since (a conflict), so it must be read again.
    pub fn forget(&self, name: &str) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// Forgets finished requests written more than a little while ago.
    fn prune(&self) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let done = |o: &DeprovisionRequest| o.status.as_ref().is_some_and(|s| s.phase.is_terminal());
        known.retain(|_, (o, at)| !done(o) || at.elapsed() < KEEP_FINISHED);
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        arrivals.retain(|_, at| at.elapsed() < KEEP_ARRIVALS);
    }
}

/// Where the webhook hands requests it created to the controller in the same process, when one
/// runs here (this replica leads); and how many of its calls are not recorded yet, so the
/// controller can let their creates go first.
#[derive(Default)]
pub struct Handoff {
    tx: Mutex<Option<mpsc::Sender<(DeprovisionRequest, Instant)>>>,
    /// Calls here not recorded yet (waiting for their turn to create, or creating).
    unrecorded: AtomicUsize,
    /// Whether more calls wait than are recorded at once (changes only when that flips).
    backlogged: tokio::sync::watch::Sender<bool>,
}

/// One call being recorded (see [`Handoff::recording`]).
pub struct Recording<'a>(&'a Handoff);

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.0.unrecorded.fetch_sub(1, Ordering::SeqCst);
        self.0.update_backlogged();
    }
}

impl Handoff {
    /// Counts a call as not recorded until the guard is dropped.
    pub fn recording(&self) -> Recording<'_> {
        self.unrecorded.fetch_add(1, Ordering::SeqCst);
        self.update_backlogged();
        Recording(self)
    }

    /// Sets the flag from the count, read under the flag's lock: updates from several threads
    /// cannot leave it stale.
    fn update_backlogged(&self) {
        self.backlogged.send_if_modified(|b| {
            let now = self.unrecorded.load(Ordering::SeqCst) > RECORDING_AT_ONCE;
            std::mem::replace(b, now) != now
        });
    }

    /// Waits (at most `at_most`) while calls queue to be recorded: a request not yet planned
    /// lets them go first. In a burst larger than the API server can finish in time, every call
    /// is then recorded, and so worked to the end, rather than some answered unrecorded because
    /// their create waited behind the work of the calls before them.
    pub async fn after_backlog(&self, at_most: Duration) {
        let mut backlogged = self.backlogged.subscribe();
        if !*backlogged.borrow_and_update() {
            return;
        }
        let _ = tokio::time::timeout(at_most, backlogged.wait_for(|b| !b)).await;
    }

    /// Hands a just-created request over, with when its call arrived; false when no controller
    /// runs here (or it is busy: its watch brings the request anyway).
    pub fn give(&self, obj: DeprovisionRequest, arrived: Instant) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.as_ref().is_some_and(|tx| tx.try_send((obj, arrived)).is_ok())
    }

    /// Whether a controller runs here to take requests (this replica leads).
    pub fn is_open(&self) -> bool {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn open(&self) -> mpsc::Receiver<(DeprovisionRequest, Instant)> {
        let (tx, rx) = mpsc::channel(1024);
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    fn close(&self) {
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Reconciles handed-over requests at once, until `stop`; then waits for those still running, as
/// the controller waits for its own, so the Lease is released only once no reconcile of this
/// term runs. A failed reconcile is only logged: the controller's watch brings the request too
/// and retries it with backoff.
pub(super) async fn take_handoffs(ctx: Arc<Context>, stop: CancellationToken) {
    let mut rx = ctx.shared.handoff.open();
    let mut prune = tokio::time::interval(Duration::from_secs(10));
    let mut running = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = prune.tick() => ctx.local.prune(),
            Some(_) = running.join_next(), if !running.is_empty() => {}
            Some((obj, arrived)) = rx.recv() => {
                ctx.local.remember(&obj);
                ctx.local.arrivals.lock().unwrap_or_else(|p| p.into_inner()).insert(obj.name_any(), arrived);
                let ctx = ctx.clone();
                running.spawn(async move {
                    let name = obj.name_any();
                    if let Err(e) = super::reconcile::reconcile(Arc::new(obj), ctx).await {
                        tracing::debug!(request = %name, error = %e, "handed-over reconcile failed; the watch retries it");
                    }
                });
            }
        }
    }
    ctx.shared.handoff.close();
    if !running.is_empty() {
        tracing::info!(running = running.len(), "waiting for handed-over reconciles to finish");
    }
    while running.join_next().await.is_some() {}
}

/// How late an Event may be published while requests are being worked.
const EVENT_AT_MOST_LATE: Duration = Duration::from_secs(10);

/// Events queued at most; past it an Event is dropped (logged).
const EVENT_QUEUE: usize = 4096;

/// The pause after each Event published while requests are being worked (at most 10 a second),
/// while the queue is less than half full.
const BUSY_EVENT_GAP: Duration = Duration::from_millis(100);

/// Publishes Events from a queue, so a reconcile never waits on them. Each Event is a write the
/// API server also spends on, so while requests are being worked an Event waits until the
/// controller is idle, at most [`EVENT_AT_MOST_LATE`], and Events published meanwhile are spaced
/// by [`BUSY_EVENT_GAP`] (so they may come later than that): in a burst, the writes that finish requests come first (a burst of
/// 1,000 had spent 1.4 Event writes per removal once its Events came due). A full queue drops
/// the Event (logged): the status is the record, Events only announce it.
pub(super) struct Events {
    tx: mpsc::Sender<(Event, ObjectReference, Instant)>,
}

impl Events {
    pub fn start(recorder: Recorder, idle: Idle) -> Events {
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference, Instant)>(EVENT_QUEUE);
        tokio::spawn(async move {
            while let Some((ev, on, queued)) = rx.recv().await {
                while !idle.now() && queued.elapsed() < EVENT_AT_MOST_LATE {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let busy = !idle.now();
                if let Err(e) = recorder.publish(&ev, &on).await {
                    tracing::warn!(object = ?on.name, error = %e, "could not publish event");
                }
                // Spaced only while the queue has room: under a steady load, Events that came
                // due are published as fast as they come rather than dropped.
                if busy && rx.len() < EVENT_QUEUE / 2 {
                    tokio::time::sleep(BUSY_EVENT_GAP).await;
                }
            }
        });
        Events { tx }
    }

    pub fn send(&self, ev: Event, on: ObjectReference) {
        if let Err(e) = self.tx.try_send((ev, on, Instant::now())) {
            tracing::warn!(error = %e, "event queue full; an Event was dropped");
        }
    }
}
