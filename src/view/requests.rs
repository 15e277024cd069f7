//! The view's watch of unfinished requests, on every replica, through the one watch runner
//! ([`super::watch`]): it shows [`Finished`] what it delivers about the requests webhook calls
//! wait for, with the watch's [`Health`] (a call decides for itself when to read its record:
//! `webhook::wait`), and it is what the leader's controller reconciles
//! ([`Requests::watched`]`.applied()`): one watch of requests per process. Requests the webhook
//! here hands over ([`Requests::hand`]) enter its stream, so they are in the store, and reach the
//! controller, before the watch brings them. Only unfinished requests are listed (a field
//! selector), so the history of finished ones costs nothing.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_of};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::health::Health;
use super::watch::{self as runner, Hook, Watched};
use crate::crd::DeprovisionRequest;
use crate::finished::Finished;
use crate::metrics::Metrics;

/// How often requests nobody waits for any more are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// The watch's name in metrics and logs.
pub(super) const WATCH: &str = "requests";

/// Hand-offs queued at most before the webhook's `give` is refused (the watch brings those).
const HANDED_QUEUE: usize = 1024;

/// The watch of unfinished requests, and where hand-offs enter it.
pub struct Requests {
    /// The watch: its store, health, and what it applies (the controller's trigger).
    pub watched: Arc<Watched<DeprovisionRequest>>,
    handed: mpsc::Sender<DeprovisionRequest>,
}

impl Requests {
    /// Starts the watch of the requests `unfinished` selects (a field selector); it runs until
    /// `stop`.
    pub fn start(
        client: &Client,
        unfinished: &str,
        finished: Arc<Finished>,
        metrics: Option<Arc<Metrics>>,
        stop: &CancellationToken,
    ) -> Requests {
        let api: Api<DeprovisionRequest> = Api::all(client.clone());
        let events = watch_of(api, watcher::Config::default().fields(unfinished)).default_backoff();
        Requests::fed(events, finished, metrics, stop)
    }

    /// The watch of this stream of events (the watcher's, or a test's own).
    pub fn fed(
        events: impl Stream<Item = Result<Event<DeprovisionRequest>, watcher::Error>> + Send + 'static,
        finished: Arc<Finished>,
        metrics: Option<Arc<Metrics>>,
        stop: &CancellationToken,
    ) -> Requests {
        let (handed, rx) = mpsc::channel(HANDED_QUEUE);
        let handed_objects = futures::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        });
        let watched = runner::run_with(WATCH, events, handed_objects, |_| {}, Tell(finished.clone()), metrics, stop);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = prune.tick() => finished.prune(),
                }
            }
        });
        Requests { watched, handed }
    }

    /// Puts a request this process just created into the watch's stream (before the watch
    /// brings it); false when the queue is full (the watch brings it anyway).
    pub fn hand(&self, obj: DeprovisionRequest) -> bool {
        self.handed.try_send(obj).is_ok()
    }
}

/// Shows [`Finished`] each event and the watch's health after it.
struct Tell(Arc<Finished>);

impl Hook<DeprovisionRequest> for Tell {
    fn after(&mut self, ev: Event<DeprovisionRequest>, health: Health) {
        tell(&self.0, Ok(&ev), health, tokio::time::Instant::now().into_std());
    }

    fn failed(&mut self, health: Health) {
        tell(&self.0, Err(()), health, tokio::time::Instant::now().into_std());
    }
}

/// Shows `finished` one item of the watch, delivered at `now`, and the health after it.
pub(crate) fn tell(
    finished: &Finished,
    item: Result<&Event<DeprovisionRequest>, ()>,
    health: Health,
    now: std::time::Instant,
) {
    if let Ok(ev) = item {
        finished.observe(ev, now);
    }
    finished.set_health(health);
}

/// What the runner does with one item of this watch, delivered at `now` (tests feed items
/// one by one): the health machine moves, and `finished` is shown the item and the new health.
#[cfg(test)]
pub(crate) fn deliver(
    finished: &Finished,
    item: Result<&Event<DeprovisionRequest>, &watcher::Error>,
    now: std::time::Instant,
) -> Health {
    let input = match item {
        Ok(ev) => runner::input_of(ev),
        Err(e) => super::health::Input::Failed { lost_an_event: runner::lost_an_event(e) },
    };
    let health = finished.health().after(input, now);
    tell(finished, item.map_err(|_| ()), health, now);
    health
}

#[cfg(test)]
mod tests;
