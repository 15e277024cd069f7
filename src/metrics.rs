//! Prometheus metrics, served on their own listener (`--metrics-listen`) at `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// Labels of a watch of the view (`bindings`, `clusterbindings`, `policies`, `namespaces`,
/// `requests`) in one of its states.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchStateLabels {
    /// Which watch.
    pub watch: &'static str,
    /// `listing`, `live`, `resuming` or `lost` (see `view::health`).
    pub state: &'static str,
}

/// Labels of a watch of the view.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// Which watch.
    pub watch: &'static str,
}

/// Labels of a barrier that did not pass.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// Which watch.
    pub watch: &'static str,
    /// `not_live` (listing or lost), `write` (the sentinel could not be written), `slow`.
    pub reason: &'static str,
}

/// Labels of a read of bindings, policies or namespaces.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    /// Who read: `plan`, `verify`, `connector`, `regrant`, `exec`.
    pub reader: &'static str,
    /// `view` (served from memory) or `api` (listed from the API server).
    pub source: &'static str,
}

/// Labels of a hand-off from the webhook to the controller in the same process.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandoffLabels {
    /// `taken`, or `refused` (no controller here, or its queue was full: the watch brings it).
    pub outcome: &'static str,
}

/// Labels of the API budget.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    /// `create`, `status`, `review`, `event`, `other`.
    pub priority: &'static str,
}

/// Labels of a verification's verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// `verified`, `access_remains`, or `unverified` (the checks could not be made).
    pub verdict: &'static str,
}

/// Labels of audit events received (`activity_events`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `accepted` (stored), `ignored` (naming no one), `refused` (their batch was refused: rate,
    /// malformed) or `unstored` (the store failed; the sender sends them again).
    pub outcome: &'static str,
}

/// Labels of audit batches by the HTTP code they were answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// HTTP status code.
    pub code: u16,
}

/// Labels of writes of the activity store's shards.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `written`, `unchanged` (nothing new under the resolution: no write), `conflict` (another
    /// replica wrote first; read, merged, written again) or `failed`.
    pub result: &'static str,
}

/// The labels of [`Metrics::verifications`], one per verdict.
pub const VERDICTS: [&str; 3] = ["verified", "access_remains", "unverified"];

/// Labels of an expiry: what ended the access.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndedByLabels {
    /// `max_access` (a policy rule) or `annotation` (the binding's own end time).
    pub by: &'static str,
}

/// While held, this replica leads: [`Metrics::leader`] is 1 (0 again once it is dropped).
#[derive(Debug)]
pub struct Leading(Gauge);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.set(0);
    }
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
    /// Calls answered without a finished record because their deadline came (`Still in progress`).
    pub webhook_deadline_reached: Counter,
    /// Time of one reconcile of a request.
    pub reconcile_seconds: Histogram,
    /// 1 for each watch's current state, 0 for the others.
    pub watch_state: Family<WatchStateLabels, Gauge>,
    /// Time a consistent read waited for its barrier, by watch.
    pub barrier_seconds: Family<WatchLabels, Histogram>,
    /// Barriers that did not pass (the reader then listed from the API server), by watch and why.
    pub barrier_fallbacks: Family<FallbackLabels, Counter>,
    /// Reads of bindings, policies or namespaces, by reader and where they were served from.
    pub reads: Family<ReadLabels, Counter>,
    /// Hand-offs from the webhook to the controller in the same process.
    pub handoffs: Family<HandoffLabels, Counter>,
    /// Events dropped because their queue was full (the status is the record; Events announce it).
    pub events_dropped: Counter,
    /// The authorizer's learned cache lag: how long a verification waits before its first
    /// question while others ask.
    pub authorizer_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// API requests waiting for the budget, by priority.
    pub budget_queued: Family<PriorityLabels, Gauge>,
    /// Time an API request waited for the budget, by priority.
    pub budget_wait_seconds: Family<PriorityLabels, Histogram>,
    /// Verifications by verdict.
    pub verifications: Family<VerdictLabels, Counter>,
    /// 1 while this replica holds the Lease (runs the controllers), else 0.
    pub leader: Gauge,
    /// Expiry requests created, by what ended the access (`max_access`, `annotation`).
    pub expiries: Family<EndedByLabels, Counter>,
    /// Subjects still holding a binding more than the stated bound (30 s) after their access was
    /// due to end (the leader's last scan).
    pub expiries_overdue: Gauge,
    /// Subjects on clocks (the leader's last scan).
    pub expiry_clocks: Gauge,
    /// Audit events received, by outcome.
    pub activity_events: Family<EventLabels, Counter>,
    /// Audit batches (`POST /audit`) by the HTTP code they were answered.
    pub activity_batches: Family<CodeLabels, Counter>,
    /// Time of one group commit of audit batches to the activity store.
    pub activity_flush_seconds: Histogram,
    /// Accounts held in the activity shards this replica has read or written.
    pub activity_accounts: Gauge,
    /// Accounts forgotten (least recently seen) to keep the activity shards bounded.
    pub activity_accounts_forgotten: Counter,
    /// Writes of the activity store's shards, by result.
    pub activity_writes: Family<WriteLabels, Counter>,
    /// Requests this member's fleet agent refused (found in its mailbox addressed to another
    /// cluster).
    pub fleet_refused: Counter,
    /// Answers this member's fleet agent wrote back to the hub, by the phase reported.
    pub fleet_reports: Family<PhaseLabels, Counter>,
    /// When this replica last stored an audit batch (Unix seconds; 0: never since it started).
    pub activity_last_batch_stored: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Expiry requests recorded again because the previous attempt failed (not refused).
    pub expiry_retries: Counter,
    /// When the leader last completed a scan of time-bound access (Unix seconds; 0: never here).
    pub expiry_last_scan_timestamp_seconds: Gauge,
    /// Writes of the `AccessClock` objects, by result (`written`, `conflict`, `failed`,
    /// `too_large`: refused here, over the size bound).
    pub expiry_clock_writes: Family<WriteLabels, Counter>,
    /// Subjects whose clocks are kept in memory only: their object would pass the size bound.
    pub expiry_clocks_unsaved: Gauge,
}

/// Buckets of a short wait or call: 1 ms to about 16 s.
fn short_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
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
        let webhook_deadline_reached = Counter::default();
        registry.register(
            "webhook_deadline_reached",
            "Calls answered before their record finished because the deadline came",
            webhook_deadline_reached.clone(),
        );
        let reconcile_seconds = short_buckets();
        registry.register("reconcile_seconds", "Time of one reconcile of a request", reconcile_seconds.clone());
        let watch_state = Family::<WatchStateLabels, Gauge>::default();
        registry.register("watch_state", "1 for each watch's current state", watch_state.clone());
        let barrier_seconds =
            Family::<WatchLabels, Histogram>::new_with_constructor(short_buckets as fn() -> Histogram);
        registry.register("barrier_seconds", "Time a consistent read waited for its barrier", barrier_seconds.clone());
        let barrier_fallbacks = Family::<FallbackLabels, Counter>::default();
        registry.register(
            "barrier_fallbacks",
            "Barriers that did not pass; the reader listed from the API server",
            barrier_fallbacks.clone(),
        );
        let reads = Family::<ReadLabels, Counter>::default();
        registry.register("reads", "Reads of bindings, policies or namespaces, by reader and source", reads.clone());
        let handoffs = Family::<HandoffLabels, Counter>::default();
        registry.register("handoffs", "Hand-offs from the webhook to the controller here", handoffs.clone());
        let events_dropped = Counter::default();
        registry.register("events_dropped", "Events dropped because their queue was full", events_dropped.clone());
        let authorizer_lag_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "authorizer_lag_seconds",
            "The authorizer's learned cache lag (first wait of a verification under load)",
            authorizer_lag_seconds.clone(),
        );
        let budget_queued = Family::<PriorityLabels, Gauge>::default();
        registry.register("budget_queued", "API requests waiting for the budget, by priority", budget_queued.clone());
        let budget_wait_seconds =
            Family::<PriorityLabels, Histogram>::new_with_constructor(short_buckets as fn() -> Histogram);
        registry.register(
            "budget_wait_seconds",
            "Time an API request waited for the budget, by priority",
            budget_wait_seconds.clone(),
        );
        let verifications = Family::<VerdictLabels, Counter>::default();
        registry.register("verifications", "Verifications by verdict", verifications.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the Lease", leader.clone());
        let expiries = Family::<EndedByLabels, Counter>::default();
        registry.register("expiries", "Expiry requests created, by what ended the access", expiries.clone());
        for by in ["max_access", "annotation"] {
            let _ = expiries.get_or_create(&EndedByLabels { by });
        }
        let expiries_overdue = Gauge::default();
        registry.register(
            "expiries_overdue",
            "Subjects holding a binding more than 30 s after their access was due to end",
            expiries_overdue.clone(),
        );
        let expiry_clocks = Gauge::default();
        registry.register("expiry_clocks", "Subjects on clocks of time-bound access", expiry_clocks.clone());
        let activity_events = Family::<EventLabels, Counter>::default();
        registry.register("activity_events", "Audit events received, by outcome", activity_events.clone());
        let activity_batches = Family::<CodeLabels, Counter>::default();
        registry.register(
            "activity_batches",
            "Audit batches by the HTTP code they were answered",
            activity_batches.clone(),
        );
        let activity_flush_seconds = short_buckets();
        registry.register(
            "activity_flush_seconds",
            "Time of one group commit of audit batches to the activity store",
            activity_flush_seconds.clone(),
        );
        let activity_accounts = Gauge::default();
        registry.register(
            "activity_accounts",
            "Accounts held in the activity shards known here",
            activity_accounts.clone(),
        );
        let activity_accounts_forgotten = Counter::default();
        registry.register(
            "activity_accounts_forgotten",
            "Accounts forgotten to keep the activity shards bounded",
            activity_accounts_forgotten.clone(),
        );
        let activity_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "activity_writes",
            "Writes of the activity store's shards, by result",
            activity_writes.clone(),
        );
        let fleet_refused = Counter::default();
        registry.register(
            "fleet_refused",
            "Requests the fleet agent refused: addressed to another cluster",
            fleet_refused.clone(),
        );
        let fleet_reports = Family::<PhaseLabels, Counter>::default();
        registry.register("fleet_reports", "Answers the fleet agent wrote back to the hub", fleet_reports.clone());
        let activity_last_batch_stored = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "activity_last_batch_stored_timestamp_seconds",
            "When this replica last stored an audit batch (Unix time in seconds; 0: none since it started)",
            activity_last_batch_stored.clone(),
        );
        let expiry_retries = Counter::default();
        registry.register(
            "expiry_retries",
            "Expiry requests recorded again because the previous attempt failed",
            expiry_retries.clone(),
        );
        let expiry_last_scan_timestamp_seconds = Gauge::default();
        registry.register(
            "expiry_last_scan_timestamp_seconds",
            "When the leader last completed a scan of time-bound access",
            expiry_last_scan_timestamp_seconds.clone(),
        );
        let expiry_clock_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "expiry_clock_writes",
            "Writes of the AccessClock objects, by result",
            expiry_clock_writes.clone(),
        );
        for result in ["written", "conflict", "failed", "too_large"] {
            let _ = expiry_clock_writes.get_or_create(&WriteLabels { result });
        }
        let expiry_clocks_unsaved = Gauge::default();
        registry.register(
            "expiry_clocks_unsaved",
            "Subjects on clocks kept in memory only (their object would pass the size bound)",
            expiry_clocks_unsaved.clone(),
        );
        // The series alerts compare over time exist from the start, at 0: a counter first seen at
        // 1 shows no increase, and its first failure would go unnoticed.
        for phase in ["Succeeded", "Failed", "DryRun"] {
            let _ = requests_finished.get_or_create(&PhaseLabels { phase });
        }
        for verdict in VERDICTS {
            let _ = verifications.get_or_create(&VerdictLabels { verdict });
        }
        Arc::new(Metrics {
            registry,
            webhook_answers,
            webhook_seconds,
            actions,
            requests_finished,
            reconcile_errors,
            regrants,
            webhook_deadline_reached,
            reconcile_seconds,
            watch_state,
            barrier_seconds,
            barrier_fallbacks,
            reads,
            handoffs,
            events_dropped,
            authorizer_lag_seconds,
            budget_queued,
            budget_wait_seconds,
            verifications,
            leader,
            expiries,
            expiries_overdue,
            expiry_clocks,
            activity_events,
            activity_batches,
            activity_flush_seconds,
            activity_accounts,
            activity_accounts_forgotten,
            activity_writes,
            fleet_refused,
            fleet_reports,
            activity_last_batch_stored,
            expiry_retries,
            expiry_last_scan_timestamp_seconds,
            expiry_clock_writes,
            expiry_clocks_unsaved,
        })
    }

    /// Marks this replica the leader (runs the controllers) until the guard is dropped.
    pub fn leading(&self) -> Leading {
        self.leader.set(1);
        Leading(self.leader.clone())
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
