//! What one controller keeps in memory while it leads: the requests as it last wrote them (so a
//! reconcile needs no fresh read of its own writes), when the calls handed over by the webhook
//! arrived, the hand-off itself, and Events published off the critical path. One reconcile at a
//! time per request and the bound on requests worked at once are the controller's runner's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use kube::runtime::events::{Event, Recorder};
use tokio::sync::mpsc;

use crate::crd::DeprovisionRequest;
use crate::metrics::{HandoffLabels, Metrics};

/// How long a finished request stays known (reconciles queued by its own last writes still come).
const KEEP_FINISHED: Duration = Duration::from_secs(30);

/// How long the arrival of a handed-over call is kept (a plan retried later uses its own start,
/// which is later, so only as precise).
const KEEP_ARRIVALS: Duration = Duration::from_secs(60);

/// Requests as this controller last wrote them, and when the calls handed over here arrived.
#[derive(Default)]
pub(super) struct Local {
    known: Mutex<HashMap<String, (DeprovisionRequest, Instant)>>,
    /// When the Lumos call behind each handed-over request arrived.
    arrivals: Mutex<HashMap<String, Instant>>,
}

impl Local {
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

    /// Takes a handed-over request: remembered as created (unless this controller already wrote
    /// that same request since: a late hand-off never replaces a newer copy), with when its call
    /// arrived.
    pub(super) fn take(&self, obj: &DeprovisionRequest, arrived: Instant) {
        {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let written_since = known.get(&obj.name_any()).is_some_and(|(o, _)| o.uid() == obj.uid());
            if !written_since {
                known.insert(obj.name_any(), (obj.clone(), Instant::now()));
            }
        }
        self.arrivals.lock().unwrap_or_else(|p| p.into_inner()).insert(obj.name_any(), arrived);
    }

    /// Forgets a request: someone else wrote it since (a conflict), so it must be read again.
    pub fn forget(&self, name: &str) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// Forgets finished requests written more than a little while ago.
    pub fn prune(&self) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let done = |o: &DeprovisionRequest| o.status.as_ref().is_some_and(|s| s.phase.is_terminal());
        known.retain(|_, (o, at)| !done(o) || at.elapsed() < KEEP_FINISHED);
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        arrivals.retain(|_, at| at.elapsed() < KEEP_ARRIVALS);
    }
}

/// Where the webhook hands requests it created to the controller in the same process, when one
/// runs here (this replica leads): they enter the view's watch of unfinished requests
/// ([`crate::view::requests::Requests::hand`]), which the controller's runner follows, so they are
/// reconciled as watched requests are, without waiting for the watch.
pub struct Handoff {
    open: Mutex<Option<Open>>,
    metrics: Arc<Metrics>,
}

/// A hand-off open for one term of leadership.
struct Open {
    local: Arc<Local>,
    view: Arc<crate::view::View>,
}

impl Default for Handoff {
    /// A hand-off counted in metrics of its own (tests).
    fn default() -> Handoff {
        Handoff::new(Metrics::new())
    }
}

impl Handoff {
    /// A hand-off, closed until a controller runs here; counted in `handoffs`.
    pub fn new(metrics: Arc<Metrics>) -> Handoff {
        Handoff { open: Mutex::default(), metrics }
    }

    fn open_now(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a just-created request over, with when its call arrived; false (`refused`) when no
    /// controller runs here, or the watch's queue is full: the watch brings the request anyway.
    pub fn give(&self, obj: DeprovisionRequest, arrived: Instant) -> bool {
        let taken = match self.open_now().as_ref() {
            Some(open) => {
                open.local.take(&obj, arrived);
                open.view.requests.hand(obj)
            }
            None => false,
        };
        let outcome = if taken { "taken" } else { "refused" };
        self.metrics.handoffs.get_or_create(&HandoffLabels { outcome }).inc();
        taken
    }

    /// Whether a controller runs here to take requests (this replica leads).
    pub fn is_open(&self) -> bool {
        self.open_now().is_some()
    }

    /// Opens the hand-off for one term of leadership: requests handed over are remembered in
    /// `local` with their arrival, and enter `view`'s watch of unfinished requests.
    pub(super) fn open(&self, local: Arc<Local>, view: Arc<crate::view::View>) {
        *self.open_now() = Some(Open { local, view });
    }

    /// Closes the hand-off (the term ends): requests are no longer taken.
    pub(super) fn close(&self) {
        *self.open_now() = None;
    }
}

/// Events queued at most; past it an Event is dropped (counted in `events_dropped`).
const EVENT_QUEUE: usize = 4096;

/// Publishes Events from a queue, so a reconcile never waits on them. Each is an API write of
/// the lowest priority in the API budget (`crate::budget`): in a burst, the writes that record
/// and finish requests go first. A full queue drops the Event (counted): the status is the
/// record, Events only announce it.
pub(super) struct Events {
    tx: mpsc::Sender<(Event, ObjectReference)>,
    metrics: Arc<Metrics>,
}

impl Events {
    pub fn start(recorder: Recorder, metrics: Arc<Metrics>) -> Events {
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(EVENT_QUEUE);
        tokio::spawn(async move {
            while let Some((ev, on)) = rx.recv().await {
                if let Err(e) = recorder.publish(&ev, &on).await {
                    tracing::warn!(object = ?on.name, error = %e, "could not publish event");
                }
            }
        });
        Events { tx, metrics }
    }

    pub fn send(&self, ev: Event, on: ObjectReference) {
        if let Err(e) = self.tx.try_send((ev, on)) {
            self.metrics.events_dropped.inc();
            tracing::warn!(error = %e, "event queue full; an Event was dropped");
        }
    }
}
