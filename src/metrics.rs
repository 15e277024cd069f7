//! Prometheus metrics, served on their own listener (`--metrics-listen`) at `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a webhook answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabels {
    /// `SUCCESS` or `FAILURE`.
    pub response: &'static str,
    /// HTTP status code.
    pub code: u16,
}

/// Labels of an executed action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// Action kind, e.g. `RemoveBindingSubject`.
    pub kind: &'static str,
    /// Outcome, e.g. `Removed`.
    pub outcome: &'static str,
}

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Terminal phase.
    pub phase: &'static str,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// What failed, e.g. `status_conflict`.
    pub kind: &'static str,
}

/// Labels of a re-grant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    /// The Lumos app id of the request whose removal was undone.
    pub app: String,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Webhook answers by response and HTTP code.
    pub webhook_answers: Family<AnswerLabels, Counter>,
    /// Time from receiving a webhook call to answering it.
    pub webhook_seconds: Histogram,
    /// Executed actions by kind and outcome.
    pub actions: Family<ActionLabels, Counter>,
    /// Requests that reached a terminal phase.
    pub requests_finished: Family<PhaseLabels, Counter>,
    /// Reconciles that failed, by kind of error.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Removed access that came back, by app.
    pub regrants: Family<AppLabels, Counter>,
}

impl Metrics {
    /// Registers every metric under the `deprovisioner` prefix.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("deprovisioner");
        let webhook_answers = Family::<AnswerLabels, Counter>::default();
        registry.register("webhook_answers", "Webhook answers by response and HTTP code", webhook_answers.clone());
        let webhook_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        registry.register("webhook_seconds", "Time to answer a webhook call", webhook_seconds.clone());
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register("actions", "Executed actions by kind and outcome", actions.clone());
        let requests_finished = Family::<PhaseLabels, Counter>::default();
        registry.register("requests_finished", "Requests that reached a terminal phase", requests_finished.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register("reconcile_errors", "Reconciles that failed, by kind of error", reconcile_errors.clone());
        let regrants = Family::<AppLabels, Counter>::default();
        registry.register(
            "regrants",
            "Removed access that came back after a request finished, by app",
            regrants.clone(),
        );
        Arc::new(Metrics {
            registry,
            webhook_answers,
            webhook_seconds,
            actions,
            requests_finished,
            reconcile_errors,
            regrants,
        })
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// An axum router serving `GET /metrics`.
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = self.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
    }
}

#[cfg(test)]
mod tests;
