//! The view's watch of unfinished requests: it tracks its [`Health`] and shows
//! [`Finished`] what it delivers about the requests webhook calls wait for. It reads nothing
//! else: a call decides for itself when to read its record (`webhook::wait`). Only unfinished
//! requests are listed (a field selector), so the history of finished ones costs nothing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::health::{Health, Input, State};
use crate::crd::DeprovisionRequest;
use crate::finished::Finished;
use crate::metrics::{Metrics, WatchStateLabels};

/// How often requests nobody waits for any more are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// The watch's name in metrics.
const WATCH: &str = "requests";

/// Watches the requests `unfinished` selects until `stop`, feeding `finished` and exporting the
/// watch's state (`watch_state{watch="requests"}`).
pub async fn watch(
    client: Client,
    finished: Arc<Finished>,
    unfinished: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let api: Api<DeprovisionRequest> = Api::all(client);
    let events = watcher(api, watcher::Config::default().fields(&unfinished)).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    export(&metrics, finished.health().state);
    loop {
        let item = tokio::select! {
            _ = stop.cancelled() => return,
            _ = prune.tick() => { finished.prune(); continue; }
            item = events.next() => item,
        };
        let Some(item) = item else { return };
        if let Err(e) = &item {
            tracing::debug!(error = %e, "request watch failed; resuming");
        }
        let health = deliver(&finished, item.as_ref(), tokio::time::Instant::now().into_std());
        export(&metrics, health.state);
    }
}

/// Takes one item of the watch, delivered at `now`: the next health, and what it shows of the
/// awaited requests. The new health is returned.
pub(crate) fn deliver(
    finished: &Finished,
    item: Result<&watcher::Event<DeprovisionRequest>, &watcher::Error>,
    now: std::time::Instant,
) -> Health {
    let input = match item {
        Ok(ev) => input(ev),
        Err(e) => Input::Failed { lost_an_event: lost_an_event(e) },
    };
    let health = finished.health().after(input, now);
    if let Ok(ev) = item {
        finished.observe(ev, now);
    }
    finished.set_health(health);
    health
}

/// The health machine's input for an event.
fn input(ev: &watcher::Event<DeprovisionRequest>) -> Input {
    match ev {
        watcher::Event::Init => Input::ListBegins,
        watcher::Event::InitApply(_) => Input::Listed,
        watcher::Event::InitDone => Input::ListEnds,
        watcher::Event::Apply(_) | watcher::Event::Delete(_) => Input::Change,
    }
}

/// Whether a watch error dropped an event: a line the client could not read is skipped, and the
/// watch goes on after it.
fn lost_an_event(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchFailed(kube::Error::SerdeError(_)))
}

/// Sets `watch_state{watch="requests"}`: 1 for `state`, 0 for the others.
fn export(metrics: &Metrics, state: State) {
    for s in State::ALL {
        let labels = WatchStateLabels { watch: WATCH, state: s.as_str() };
        metrics.watch_state.get_or_create(&labels).set(i64::from(s == state));
    }
}

#[cfg(test)]
mod tests;
