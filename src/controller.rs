//! Reconciles DeprovisionRequests: plan (recorded before anything changes), execute action by
//! action (each result recorded as it completes), finish in a terminal phase. Also keeps
//! DeprovisionPolicy status up to date and deletes finished requests after their retention.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use crate::crd::{
    ActionKind, ActionResult, DeprovisionPolicy, DeprovisionPolicyStatus, DeprovisionRequest, DeprovisionRequestStatus,
    ExternalDetails, Outcome, Phase, PlannedAction,
};
use crate::external;
use crate::metrics::{ActionLabels, Metrics, PhaseLabels};
use crate::plan::{self, Observed, PlanError};
use crate::rbac::{self, Transient};
use crate::report::{self, set_condition};
use crate::subject::Protected;

/// Controller settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long finished requests are kept before deletion.
    pub retention: Duration,
    /// How long after creation a request that keeps meeting API errors is marked Failed.
    pub give_up_after: Duration,
    /// Subjects never removed.
    pub protected: Protected,
    /// Requests reconciled at once.
    pub concurrency: u16,
    /// Test-only fault injection: exit the process right after recording this many results.
    pub exit_after_results: Option<usize>,
    /// The operator's own namespace: external actions read Secrets only from here.
    pub namespace: String,
    /// Where actions, finished requests and errors are counted.
    pub metrics: Arc<Metrics>,
}

/// Shared state of the reconcilers.
pub struct Context {
    client: Client,
    recorder: Recorder,
    settings: Settings,
    external: external::Env,
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

/// Runs the DeprovisionRequest and DeprovisionPolicy controllers until `shutdown` resolves.
pub async fn run(client: Client, settings: Settings, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let reporter = Reporter { controller: "deprovisioner".into(), instance: std::env::var("POD_NAME").ok() };
    let external = external::Env { client: client.clone(), namespace: settings.namespace.clone() };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        settings,
        external,
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    let shutdown_rx = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let requests = Controller::new(Api::<DeprovisionRequest>::all(client.clone()), watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency))
        .graceful_shutdown_on(shutdown_rx(rx.clone()))
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "request reconcile loop");
            }
        });
    let policies = Controller::new(Api::<DeprovisionPolicy>::all(client), watcher::Config::default())
        .graceful_shutdown_on(shutdown_rx(rx))
        .run(reconcile_policy, policy_error_policy, ctx)
        .for_each(|_| async {});
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    futures::join!(requests, policies);
}

fn error_policy(obj: Arc<DeprovisionRequest>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.settings.metrics.reconcile_errors.inc();
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

fn since(t: &Time) -> Duration {
    Timestamp::now().duration_since(t.0).try_into().unwrap_or_default()
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// One reconcile of one request. Every status write is a replace guarded by resourceVersion,
/// so two controllers can never interleave their records.
async fn reconcile(obj: Arc<DeprovisionRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Work from a fresh read, never the cache: a cache one status write behind would run actions
    // whose results are already recorded.
    let api: Api<DeprovisionRequest> = Api::all(ctx.client.clone());
    let name = obj.name_any();
    let fresh = match api.get_opt(&name).await {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(Action::await_change()),
        Err(source) => return Err(Error::Read { name, source }),
    };
    let mut rec = Record { api, obj: fresh, ctx: ctx.clone() };
    let mut st = rec.obj.status.clone().unwrap_or_default();
    if st.phase.is_terminal() {
        return rec.retention(&st).await;
    }
    if st.started_at.is_none() {
        st.started_at = Some(now());
    }
    if st.phase == Phase::Pending {
        match rec.plan().await {
            Ok(p) => {
                let n = p.actions.len();
                st.policies = p.policies;
                st.plan = p.actions;
                let gen_ = rec.obj.metadata.generation;
                let msg = format!("{n} action(s) from policy {}", st.policies.join(", "));
                set_condition(&mut st.conditions, "Planned", true, "Planned", &msg, gen_);
                st.observed_generation = gen_;
                st.last_error = None;
                if rec.obj.spec.dry_run {
                    st.phase = Phase::DryRun;
                    st.message = Some(dry_run_message(&rec.obj, &st.plan));
                    st.completed_at = Some(now());
                    set_condition(&mut st.conditions, "Complete", true, "DryRun", "dry run: nothing was changed", gen_);
                    rec.write(st).await?;
                    rec.event(EventType::Normal, "DryRun", "Plan", rec.message(), None).await;
                    return Ok(Action::await_change());
                }
                st.phase = Phase::InProgress;
                set_condition(&mut st.conditions, "Complete", false, "InProgress", "executing the plan", gen_);
                st = rec.write(st).await?;
            }
            Err(Failure::Refused(e)) => {
                st.phase = Phase::Failed;
                st.message = Some(report::clip(e.to_string()));
                st.completed_at = Some(now());
                let gen_ = rec.obj.metadata.generation;
                set_condition(&mut st.conditions, "Planned", false, e.reason(), &e.to_string(), gen_);
                set_condition(&mut st.conditions, "Complete", true, e.reason(), &e.to_string(), gen_);
                rec.write(st).await?;
                rec.event(EventType::Warning, e.reason(), "Plan", e.to_string(), None).await;
                return Ok(Action::await_change());
            }
            Err(Failure::Transient(t)) => return rec.transient(st, t).await,
        }
    }
    // InProgress: run every action that has no result yet, recording each as it completes.
    let pending: Vec<PlannedAction> =
        st.plan.iter().filter(|a| !st.results.iter().any(|r| r.id == a.id)).cloned().collect();
    let email = rec.obj.spec.target_user.email.clone();
    for action in pending {
        let result = match execute(&ctx, &action, &email).await {
            Ok(r) => r,
            Err(t) => return rec.transient(st, t).await,
        };
        let labels = ActionLabels { kind: format!("{:?}", action.kind), outcome: format!("{:?}", result.outcome) };
        ctx.settings.metrics.actions.get_or_create(&labels).inc();
        st.results.push(result.clone());
        st.last_error = None;
        if action.kind == ActionKind::ConfirmAbsent {
            continue; // nothing changed in the cluster: recorded with the next write
        }
        st = rec.write(st).await?;
        if ctx.settings.exit_after_results == Some(st.results.len()) {
            tracing::error!("fault injection: exiting after {} recorded result(s)", st.results.len());
            std::process::exit(86);
        }
        let (type_, reason) = match result.outcome {
            Outcome::Failed => (EventType::Warning, "ActionFailed"),
            Outcome::AlreadyAbsent => (EventType::Normal, "AlreadyAbsent"),
            Outcome::Deactivated => (EventType::Normal, "Deactivated"),
            _ => (EventType::Normal, "Removed"),
        };
        let related = action.binding.as_ref().map(|b| &b.target);
        rec.event(type_, reason, &format!("{:?}", action.kind), result.message, related).await;
    }
    rec.finish(st).await
}

/// What an action is about, for its result: (object, subject).
fn describe(a: &PlannedAction, email: &str) -> (String, String) {
    if let Some(b) = &a.binding {
        (b.target.to_string(), b.subject.to_string())
    } else if let Some(c) = &a.absent {
        (format!("bindings selected by DeprovisionPolicy {}", a.policy), c.subject.clone())
    } else if let Some(c) = &a.scim {
        (format!("SCIM {} ({})", c.system, c.base_url), c.filter())
    } else if let Some(c) = &a.http {
        (format!("HTTP {} ({} {})", c.system, c.method, c.url), email.to_string())
    } else {
        ("(unknown)".into(), String::new())
    }
}

fn result_of(
    a: &PlannedAction,
    email: &str,
    outcome: Outcome,
    message: String,
    external: Option<ExternalDetails>,
) -> ActionResult {
    let (object, subject) = describe(a, email);
    ActionResult { id: a.id, kind: a.kind, object, subject, outcome, message, at: now(), external }
}

/// Executes one planned action. `Err` means "retry later" (API server trouble); every other
/// outcome, failures included, is a result.
async fn execute(ctx: &Context, a: &PlannedAction, email: &str) -> Result<ActionResult, Transient> {
    let (outcome, message, external) = if let Some(c) = &a.absent {
        let msg = format!("{} holds none of the {} binding(s) the policy selects", c.subject, c.bindings_checked);
        (Outcome::AlreadyAbsent, msg, None)
    } else if let Some(b) = &a.binding {
        let d = rbac::remove_subject(&ctx.client, b).await?;
        (d.outcome, d.message, None)
    } else if let Some(c) = &a.scim {
        let d = external::scim(&ctx.external, c).await?;
        (d.outcome, d.message, Some(d.details))
    } else if let Some(c) = &a.http {
        let d = external::http(&ctx.external, c).await?;
        (d.outcome, d.message, Some(d.details))
    } else {
        (Outcome::Failed, "malformed plan entry: nothing to do".to_string(), None)
    };
    Ok(result_of(a, email, outcome, message, external))
}

fn dry_run_message(obj: &DeprovisionRequest, plan: &[PlannedAction]) -> String {
    let email = &obj.spec.target_user.email;
    let targets: Vec<String> =
        plan.iter().filter(|a| a.kind != ActionKind::ConfirmAbsent).map(|a| describe(a, email).0).collect();
    let mut shown: Vec<String> = targets.iter().take(3).cloned().collect();
    if targets.len() > 3 {
        shown.push(format!("and {} more", targets.len() - 3));
    }
    report::clip(format!(
        "Dry run: would remove {email} from {} place(s){}{}; nothing was changed",
        targets.len(),
        if shown.is_empty() { "" } else { ": " },
        shown.join("; ")
    ))
}

enum Failure {
    Refused(PlanError),
    Transient(Transient),
}

/// The request being reconciled and how to write its record.
struct Record {
    api: Api<DeprovisionRequest>,
    obj: DeprovisionRequest,
    ctx: Arc<Context>,
}

impl Record {
    fn message(&self) -> String {
        self.obj.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default()
    }

    /// Replaces the status (guarded by resourceVersion) and keeps the returned object.
    async fn write(&mut self, mut st: DeprovisionRequestStatus) -> Result<DeprovisionRequestStatus, Error> {
        st.removed = st
            .results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Removed | Outcome::Deleted | Outcome::Deactivated))
            .count() as i32;
        let finishing = st.phase.is_terminal() && !self.obj.status.as_ref().is_some_and(|s| s.phase.is_terminal());
        let phase = st.phase;
        let mut next = self.obj.clone();
        next.status = Some(st);
        let name = self.obj.name_any();
        match self.api.replace_status(&name, &PostParams::default(), &next).await {
            Ok(o) => {
                self.obj = o;
                if finishing {
                    let labels = PhaseLabels { phase: format!("{phase:?}") };
                    self.ctx.settings.metrics.requests_finished.get_or_create(&labels).inc();
                }
            }
            // Refused as invalid or too large: retrying cannot help, so record a minimal Failed
            // status that says why, rather than leave the request non-terminal forever.
            Err(kube::Error::Api(s)) if s.is_invalid() || s.code == 413 => {
                let old = next.status.take().unwrap_or_default();
                let message = report::clip(format!("Could not record the status: {}", s.message));
                next.status = Some(DeprovisionRequestStatus {
                    phase: Phase::Failed,
                    started_at: old.started_at,
                    completed_at: Some(now()),
                    message: Some(message.clone()),
                    ..Default::default()
                });
                self.api
                    .replace_status(&name, &PostParams::default(), &next)
                    .await
                    .map_err(|source| Error::Status { name: name.clone(), source })?;
                let labels = PhaseLabels { phase: "Failed".into() };
                self.ctx.settings.metrics.requests_finished.get_or_create(&labels).inc();
                return Err(Error::Unrecordable { name, message });
            }
            Err(source) => return Err(Error::Status { name, source }),
        }
        Ok(self.obj.status.clone().unwrap_or_default())
    }

    /// Reads what the plan needs (fresh, consistent reads) and computes it.
    async fn plan(&self) -> Result<plan::Plan, Failure> {
        let c = &self.ctx.client;
        let t = |what: &str| {
            let what = what.to_string();
            move |e: kube::Error| Failure::Transient(Transient(format!("listing {what}: {e}")))
        };
        let lp = ListParams::default();
        let policies =
            Api::<DeprovisionPolicy>::all(c.clone()).list(&lp).await.map_err(t("DeprovisionPolicies"))?.items;
        let matched = plan::matching_policies(&self.obj.spec, &policies);
        let namespaces = Api::<Namespace>::all(c.clone()).list(&lp).await.map_err(t("namespaces"))?.items;
        let scope = plan::scope(&self.obj.spec, &matched, &namespaces).map_err(Failure::Refused)?;
        let mut observed = Observed { namespaces, ..Default::default() };
        for ns in &scope.namespaces {
            let items = Api::<RoleBinding>::namespaced(c.clone(), ns).list(&lp).await.map_err(t("RoleBindings"))?.items;
            observed.role_bindings.extend(items);
        }
        if scope.cluster_role_bindings {
            observed.cluster_role_bindings =
                Api::<ClusterRoleBinding>::all(c.clone()).list(&lp).await.map_err(t("ClusterRoleBindings"))?.items;
        }
        plan::compute(&self.obj.spec, &policies, &observed, &self.ctx.settings.protected).map_err(Failure::Refused)
    }

    /// Records a transient error and retries with backoff, or gives up after the bounded time.
    async fn transient(&mut self, mut st: DeprovisionRequestStatus, t: Transient) -> Result<Action, Error> {
        // The clock starts when a controller first took the request, not at creation: a request
        // accepted while no controller ran still gets its full time.
        let created = st.started_at.clone().or_else(|| self.obj.meta().creation_timestamp.clone()).unwrap_or_else(now);
        st.retries += 1;
        st.last_error = Some(report::clip(t.0.clone()));
        if since(&created) >= self.ctx.settings.give_up_after {
            let give_up =
                format!("gave up after {}: {}", humantime::format_duration(self.ctx.settings.give_up_after), t.0);
            let email = self.obj.spec.target_user.email.clone();
            for a in st.plan.clone() {
                if !st.results.iter().any(|r| r.id == a.id) {
                    st.results.push(result_of(&a, &email, Outcome::Failed, report::clip(give_up.clone()), None));
                }
            }
            if st.plan.is_empty() {
                st.phase = Phase::Failed;
                st.message = Some(report::clip(format!("Could not plan: {give_up}")));
                st.completed_at = Some(now());
                let g = self.obj.metadata.generation;
                set_condition(&mut st.conditions, "Complete", true, "GaveUp", &give_up, g);
                self.write(st).await?;
                self.event(EventType::Warning, "GaveUp", "Plan", give_up, None).await;
                return Ok(Action::await_change());
            }
            return self.finish(st).await;
        }
        let backoff = Duration::from_secs((1u64 << st.retries.min(6)).min(60));
        tracing::warn!(request = %self.obj.name_any(), retries = st.retries, error = %t.0, "transient error; retrying in {backoff:?}");
        // Best effort: the API server may be the thing that is down.
        if let Err(e) = self.write(st).await {
            tracing::debug!(error = %e, "could not record the transient error");
        }
        Ok(Action::requeue(backoff))
    }

    async fn finish(&mut self, mut st: DeprovisionRequestStatus) -> Result<Action, Error> {
        let (phase, msg) = report::summarize(&self.obj.spec.target_user.email, &st.results);
        st.phase = phase;
        st.message = Some(msg.clone());
        st.completed_at = Some(now());
        let g = self.obj.metadata.generation;
        let reason = if phase == Phase::Succeeded { "Succeeded" } else { "ActionsFailed" };
        set_condition(&mut st.conditions, "Complete", true, reason, &msg, g);
        self.write(st).await?;
        let type_ = if phase == Phase::Succeeded { EventType::Normal } else { EventType::Warning };
        self.event(type_, reason, "Complete", msg, None).await;
        Ok(Action::requeue(self.ctx.settings.retention.min(Duration::from_secs(86_400))))
    }

    /// Deletes a finished request once its retention has passed.
    async fn retention(&self, st: &DeprovisionRequestStatus) -> Result<Action, Error> {
        let Some(done) = &st.completed_at else {
            return Ok(Action::await_change());
        };
        let age = since(done);
        let keep = self.ctx.settings.retention;
        if age >= keep {
            tracing::info!(request = %self.obj.name_any(), "retention passed; deleting the record");
            let name = self.obj.name_any();
            match self.api.delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(source) => return Err(Error::Status { name, source }),
            }
            return Ok(Action::await_change());
        }
        Ok(Action::requeue((keep - age).min(Duration::from_secs(86_400))))
    }

    /// Publishes an Event on the request (failures to publish are logged, never fatal).
    async fn event(
        &self,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        related: Option<&crate::crd::BindingRef>,
    ) {
        let secondary = related.map(|b| ObjectReference {
            api_version: Some("rbac.authorization.k8s.io/v1".into()),
            kind: Some(format!("{:?}", b.kind)),
            namespace: b.namespace.clone(),
            name: Some(b.name.clone()),
            uid: Some(b.uid.clone()),
            ..Default::default()
        });
        let ev =
            Event { type_, reason: reason.into(), note: Some(report::clip(note)), action: action.into(), secondary };
        if let Err(e) = self.ctx.recorder.publish(&ev, &self.obj.object_ref(&())).await {
            tracing::warn!(request = %self.obj.name_any(), error = %e, "could not publish event");
        }
    }
}

async fn reconcile_policy(p: Arc<DeprovisionPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let g = p.metadata.generation;
    let mut st = p.status.clone().unwrap_or_default();
    let (ok, reason, msg) = match plan::validate_policy(&p.spec) {
        Ok(()) => (true, "Valid", "policy is usable".to_string()),
        Err(e) => (false, "Invalid", e),
    };
    let before = st.clone();
    set_condition(&mut st.conditions, "Valid", ok, reason, &msg, g);
    st.observed_generation = g;
    if strip_times(&before) == strip_times(&st) {
        return Ok(Action::await_change());
    }
    let mut next = (*p).clone();
    next.status = Some(st);
    let name = p.name_any();
    Api::<DeprovisionPolicy>::all(ctx.client.clone())
        .replace_status(&name, &PostParams::default(), &next)
        .await
        .map_err(|source| Error::Status { name, source })?;
    Ok(Action::await_change())
}

fn strip_times(s: &DeprovisionPolicyStatus) -> DeprovisionPolicyStatus {
    let mut s = s.clone();
    for c in &mut s.conditions {
        c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
    }
    s
}

fn policy_error_policy(p: Arc<DeprovisionPolicy>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(policy = %p.name_any(), error = %err, "policy status update failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
