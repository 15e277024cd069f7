//! Reconciles DeprovisionRequests: plan (recorded before anything changes), execute action by
//! action (each result recorded as it completes), finish in a terminal phase. Only unfinished
//! requests are watched; a sweep deletes finished ones after their retention. Also keeps
//! DeprovisionPolicy status up to date.
//!
//! `reconcile` dispatches on the request's phase; `record` owns every write of the status;
//! `summary` words the messages; `retention` sweeps old records; `policy` validates policies.

pub mod activity;
mod clock;
pub mod expiry;
mod fleet;
mod local;
mod policy;
mod reconcile;
mod record;
mod regrant;
mod retention;
mod summary;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{Lookup, Store};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::crd::DeprovisionRequest;
use crate::exec;
use crate::finished::Finished;
use crate::metrics::Metrics;
use crate::plan::subject::Protected;

pub use local::Handoff;
pub use regrant::REGRANTED_LABEL;
pub use retention::unfinished_selector;

/// Controller settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long finished requests are kept before deletion.
    pub retention: Duration,
    /// How long after a controller first took a request that API errors are retried before the
    /// request is marked Failed.
    pub give_up_after: Duration,
    /// Subjects never removed.
    pub protected: Protected,
    /// Requests reconciled at once.
    pub concurrency: u16,
    /// SubjectAccessReviews a verification asks per removed binding and identity.
    pub reviews_per_binding: usize,
    /// Test-only fault injection (the `failpoints` feature).
    #[cfg(feature = "failpoints")]
    pub failpoints: crate::failpoints::Failpoints,
    /// The operator's own namespace: external actions read Secrets only from here.
    pub namespace: String,
    /// Where actions, finished requests and errors are counted.
    pub metrics: Arc<Metrics>,
    /// How long after a request finished access that comes back is noticed (zero: never).
    pub regrant_watch: Duration,
    /// The activity store's name prefix when each request records its target's last activity
    /// (`--record-last-activity`; the store is in `namespace`); `None`: not recorded.
    pub last_activity: Option<String>,
    /// Where the clocks of time-bound access are kept (`AccessClock` name prefix); `None`: no
    /// access ends by itself.
    pub expiry_clocks: Option<String>,
    /// A fleet hub (`--fleet-hub`): requests whose application a `ClusterSet` names are handed
    /// to member clusters instead of planned here.
    pub fleet_hub: bool,
    /// On a fleet hub: how long after the call a member that has not finished is waited for;
    /// then its request is withdrawn and the hub record ends (`--fleet-member-timeout`).
    pub fleet_member_timeout: Duration,
    /// A fleet member's agent (`--hub-kubeconfig`, `--member-name`): requests the hub hands to
    /// this cluster are recorded and worked here, and their end reported back.
    pub fleet_agent: Option<crate::fleet::AgentSettings>,
}

/// What the controller shares with the rest of the process, which outlives it (the controller
/// runs only while this replica leads).
#[derive(Clone, Default)]
pub struct Shared {
    /// The view of the cluster (kept warm on every replica); without it every read lists.
    pub view: Option<Arc<crate::view::View>>,
    /// Where finished requests are told to waiting webhook calls.
    pub finished: Arc<Finished>,
    /// Requests the webhook here hands straight to the controller here.
    pub handoff: Arc<Handoff>,
}

/// Shared state of the reconcilers, for one term of leadership.
pub struct Context {
    client: Client,
    settings: Settings,
    exec: exec::Env,
    shared: Shared,
    /// Requests as this controller last wrote them, and when handed-over calls arrived.
    local: Arc<local::Local>,
    events: local::Events,
    /// Recently removed subjects, watched for re-grants.
    regrants: regrant::Regrants,
    /// What the verifications share: roles read in the last second, the authorizer's lag.
    verifying: crate::verify::Memory,
    /// Cancelled when this term of leadership ends.
    stop: CancellationToken,
}

impl Context {
    /// The context the reconcilers share.
    pub fn new(client: Client, settings: Settings, shared: Shared, stop: CancellationToken) -> Arc<Context> {
        let reporter = Reporter { controller: "deprovisioner".into(), instance: std::env::var("POD_NAME").ok() };
        let exec =
            exec::Env { client: client.clone(), namespace: settings.namespace.clone(), view: shared.view.clone() };
        let local = Arc::default();
        let events = local::Events::start(Recorder::new(client.clone(), reporter), settings.metrics.clone());
        let regrants = regrant::Regrants::new(settings.regrant_watch);
        let verifying = crate::verify::Memory::default();
        Arc::new(Context { client, settings, exec, shared, local, events, regrants, verifying, stop })
    }
}

/// Errors that make the controller retry a reconcile with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the status failed.
    #[error("writing status of {name}: {source}")]
    Status {
        /// Request name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// The API server refused the status as invalid; a minimal Failed status was recorded instead.
    #[error("status of {name} could not be recorded ({message}); recorded Failed instead")]
    Unrecordable {
        /// Request name.
        name: String,
        /// The API server's reason.
        message: String,
    },
    /// Reading the request failed.
    #[error("reading {name}: {source}")]
    Read {
        /// Request name.
        name: String,
        /// API error.
        source: kube::Error,
    },
}

impl Error {
    /// The label of `reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Status { source: kube::Error::Api(s), .. } if s.is_conflict() => "status_conflict",
            Error::Status { .. } => "status_write",
            Error::Unrecordable { .. } => "status_unrecordable",
            Error::Read { .. } => "read",
        }
    }
}

/// Runs the DeprovisionRequest and DeprovisionPolicy controllers until `stop` is cancelled.
/// Requests reach the one runner of requests by their watch and, faster, by the webhook's
/// hand-off: a handed request enters the watch's stream before the store, so the runner finds it
/// there, and one reconcile at a time per request and `concurrency` at once hold for both.
pub async fn run(client: Client, settings: Settings, shared: Shared, stop: CancellationToken) {
    let Some(view) = shared.view.clone() else {
        tracing::error!("no view of the cluster to follow: the controller does not run");
        return;
    };
    let ctx = Context::new(client.clone(), settings, shared, stop.clone());
    // The view's watch of unfinished requests (kept on every replica) is what the runner
    // reconciles: what it holds when this term begins, then what it applies, the webhook's
    // hand-offs included (they enter that watch's stream before its store).
    ctx.shared.handoff.open(ctx.local.clone(), view.clone());
    let watched = &view.requests.watched;
    // The controller polls every running reconcile each time it is woken: a small bound keeps
    // that cheap (in a burst of 300 unbounded, that polling took 8 % of the operator's CPU).
    let config = controller::Config::default().concurrency(ctx.settings.concurrency);
    let requests_listed = watched.store().clone();
    let requests = Controller::for_shared_stream(watched.applied(), requests_listed.clone());
    // On a hub, a member's answer (its MemberRequest's status) wakes the record it answers.
    let requests = match ctx.settings.fleet_hub {
        true => requests.watches(
            kube::Api::<crate::crd::MemberRequest>::all(client.clone()),
            kube::runtime::watcher::Config::default(),
            |mr| Some(kube::runtime::reflector::ObjectRef::new(&fleet::hub_record_of(&mr))),
        ),
        false => requests,
    };
    let requests = requests
        .with_config(config)
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reconcile::reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "request reconcile loop");
            }
        });
    let handoff_closed = async {
        let mut prune = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = prune.tick() => ctx.local.prune(),
            }
        }
        ctx.shared.handoff.close();
    };
    let sweep = retention::run(client.clone(), ctx.settings.retention, stop.clone());
    let regrants = regrant::run(ctx.clone(), stop.clone());
    let expiries = expiry::run(ctx.clone(), stop.clone());
    let agent = async {
        if let Some(agent) = ctx.settings.fleet_agent.clone() {
            crate::fleet::agent::run(agent, client.clone(), ctx.settings.metrics.clone(), stop.clone()).await;
        }
    };
    let policies_watch = view.policies_watch();
    let policies_listed = policies_watch.store().clone();
    let policies = Controller::for_shared_stream(policies_watch.applied(), policies_listed.clone())
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(policy::reconcile, policy::error_policy, ctx.clone())
        .for_each(|_| async {});
    futures::join!(
        until_stopped(requests, requests_listed, &stop),
        until_stopped(policies, policies_listed, &stop),
        sweep,
        handoff_closed,
        regrants,
        expiries,
        agent
    );
    ctx.shared.handoff.close();
}

/// Drives a kube-runtime controller (`run`: its stream to the end) until it ends, or until `stop`
/// if its watch has not listed by then. On `stop` the controller stops watching and ends once
/// the reconciles under way have; but its reconciles start only after the watch's first list,
/// and a stop during that list leaves kube-runtime 5.0 waiting forever for a list that can no
/// longer come. Nothing was reconciled then, so nothing is left to wait for.
async fn until_stopped<K>(run: impl Future<Output = ()>, store: Store<K>, stop: &CancellationToken)
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let unlisted_at_stop = async {
        stop.cancelled().await;
        // The store is the view's (its own task writes it). Once it has listed it stays ready, and
        // the runner, once stopped, ends when its reconciles under way have: wait for that. Not
        // ready at the stop: nothing was reconciled, so nothing is left to wait for.
        if matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        () = run => {}
        () = unlisted_at_stop => tracing::debug!("stopped before the controller's first list"),
    }
}

fn error_policy(obj: Arc<DeprovisionRequest>, err: &Error, ctx: Arc<Context>) -> Action {
    let labels = crate::metrics::ErrorLabels { kind: err.metric_label() };
    ctx.settings.metrics.reconcile_errors.get_or_create(&labels).inc();
    match err {
        // Our cached copy was older than the stored one: reconcile again with the fresh one.
        Error::Status { source: kube::Error::Api(s), .. } if s.is_conflict() => {
            tracing::debug!(request = %obj.name_any(), "status write conflicted; requeueing");
            Action::requeue(Duration::from_millis(200))
        }
        // Retrying would fail the same way; the request is terminal now.
        Error::Unrecordable { .. } => {
            tracing::error!(request = %obj.name_any(), error = %err, "status refused by the API server");
            Action::await_change()
        }
        _ => {
            tracing::warn!(request = %obj.name_any(), error = %err, "reconcile failed; retrying");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

#[cfg(test)]
mod tests;
