//! One reconcile of one request, dispatched on its phase: plan a `Pending` request, execute an
//! `InProgress` one, leave a terminal one to the retention sweep.

use std::sync::Arc;

use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};

use super::record::{EventAction, Record, now};
use super::{Context, Error, activity, summary};
use crate::crd::{
    Action as PlanAction, Attempting, ConditionType, DeprovisionPolicy, DeprovisionRequest, DeprovisionRequestStatus,
    Outcome, Phase, PlannedAction, Reason, set_condition,
};
use crate::exec::{self, ExecError};
use crate::metrics::ActionLabels;
use crate::plan::subject::Wanted;
use crate::plan::{self, Observed, PlanError};
use crate::view::{Need, Reader, Since, Snapshot};

/// Reconciles a request from the freshest copy: as this controller last wrote it, or else read
/// afresh, never the watch's cache (one status write behind, it would run actions whose results
/// are already recorded). Every status write is a replace guarded by resourceVersion, so two
/// controllers can never interleave their records; a conflict makes the next reconcile read
/// afresh. The controller's runner starts it (for a watched or a handed-over request alike), one
/// at a time per request. Its span (`reconcile`) carries the request's name, UID and trace id,
/// the same for a request handed over by the webhook and one the watch brought.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(request = %obj.name_any(), uid = %obj.uid().unwrap_or_default(), trace_id = %crate::trace::of_request(&obj))
)]
pub(super) async fn reconcile(obj: Arc<DeprovisionRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A reconcile whose turn came only as the term ended leaves the request to the next leader
    // (a stopping leader must not hold up its handover, nor plan after it); one under way
    // finishes (the Lease is released once none runs).
    if ctx.stop.is_cancelled() {
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    let done = reconcile_fresh(&obj.name_any(), obj.uid().as_deref(), ctx.clone()).await;
    ctx.settings.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    done
}

/// `uid`: the request this reconcile is for. A copy kept for another request of the same name (a
/// record deleted and created again, e.g. the same call sent again) is forgotten, not worked.
async fn reconcile_fresh(name: &str, uid: Option<&str>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<DeprovisionRequest> = Api::all(ctx.client.clone());
    let known = ctx.local.known(name);
    if known.as_ref().is_some_and(|o| o.uid().as_deref() != uid) {
        ctx.local.forget(name);
    }
    let fresh = match known.filter(|o| o.uid().as_deref() == uid) {
        Some(o) => o,
        None => match api.get_opt(name).await {
            Ok(Some(o)) => o,
            Ok(None) => return Ok(Action::await_change()),
            Err(source) => return Err(Error::Read { name: name.to_string(), source }),
        },
    };
    let mut rec = Record::new(api, fresh, ctx);
    let mut st = rec.status();
    if st.started_at.is_none() {
        st.started_at = Some(now());
    }
    if rec.ctx.settings.fleet_hub
        && let Some(done) = super::fleet::reconcile(&mut rec, st.clone()).await?
    {
        return Ok(done);
    }
    if !rec.ctx.settings.fleet_hub
        && let Some(done) = super::fleet::refuse_addressed(&mut rec, st.clone()).await?
    {
        return Ok(done);
    }
    match st.phase {
        // Finished: the retention sweep deletes it in time.
        Phase::Succeeded | Phase::Failed | Phase::DryRun => Ok(Action::await_change()),
        Phase::Pending => plan_request(&mut rec, st).await,
        Phase::InProgress => execute_plan(&mut rec, st).await,
    }
}

/// Why planning did not produce a plan.
enum PlanFailure {
    /// The request cannot be planned as it stands: it ends Failed, nothing changed.
    Refused(PlanError),
    /// Reading the cluster failed: retry later.
    Unavailable(ExecError),
}

/// Plans a `Pending` request and records the plan before anything changes; then executes it
/// (or, for a dry run, finishes).
#[tracing::instrument(name = "plan", skip_all)]
async fn plan_request(rec: &mut Record, mut st: DeprovisionRequestStatus) -> Result<Action, Error> {
    let generation = rec.obj.metadata.generation;
    let mut activity = activity::Pending::default();
    let plan = match observe_and_plan(rec, &mut activity).await {
        Ok(p) => p,
        Err(PlanFailure::Refused(e)) => return refuse(rec, st, e).await,
        Err(PlanFailure::Unavailable(e)) => return rec.transient(st, e).await,
    };
    st.last_activity = activity.finish().await;
    let n = plan.actions.len();
    st.policies = plan.policies;
    st.plan = plan.actions;
    let msg = format!("{n} action(s) from policy {}", st.policies.join(", "));
    set_condition(&mut st.conditions, ConditionType::Planned, true, Reason::Planned, &msg, generation);
    st.observed_generation = generation;
    st.last_error = None;
    if rec.obj.spec.dry_run {
        st.phase = Phase::DryRun;
        st.message = Some(summary::dry_run(&rec.obj.spec.target_user.email, &st.plan));
        st.completed_at = Some(now());
        let done = "dry run: nothing was changed";
        set_condition(&mut st.conditions, ConditionType::Complete, true, Reason::DryRun, done, generation);
        rec.write(st).await?;
        rec.event(EventType::Normal, Reason::DryRun, EventAction::Plan, rec.message(), None);
        return Ok(Action::await_change());
    }
    st.phase = Phase::InProgress;
    let running = "executing the plan";
    set_condition(&mut st.conditions, ConditionType::Complete, false, Reason::InProgress, running, generation);
    // A plan that changes nothing (it only confirms absences, or has no action) is recorded with
    // its finish, in one write: a crash before it leaves the request Pending, planned again, and
    // nothing was changed. A plan that changes anything is recorded before the first change.
    if st.plan.iter().all(|a| !a.action.changes_something()) {
        return execute_plan(rec, st).await;
    }
    let st = rec.write(st).await?;
    execute_plan(rec, st).await
}

/// Ends a request that cannot be planned: Failed, nothing changed.
async fn refuse(rec: &mut Record, mut st: DeprovisionRequestStatus, e: PlanError) -> Result<Action, Error> {
    let generation = rec.obj.metadata.generation;
    let msg = crate::text::clip(e.to_string());
    st.phase = Phase::Failed;
    st.message = Some(msg.clone());
    st.completed_at = Some(now());
    set_condition(&mut st.conditions, ConditionType::Planned, false, e.reason(), &msg, generation);
    set_condition(&mut st.conditions, ConditionType::Complete, true, e.reason(), &msg, generation);
    rec.write(st).await?;
    rec.event(EventType::Warning, e.reason(), EventAction::Plan, msg, None);
    Ok(Action::await_change())
}

/// Reads what the plan needs, consistently (no binding written before the request can be
/// missed), and computes it. Everything comes from the view when it can answer (bindings once
/// their barrier passed); otherwise from the API server.
/// The target's last activity is read meanwhile (into `activity`), when the operator records it.
async fn observe_and_plan(rec: &Record, activity: &mut activity::Pending) -> Result<plan::Plan, PlanFailure> {
    let c = &rec.ctx.client;
    let spec = &rec.obj.spec;
    let policies = policies(rec, Reader::Plan).await.map_err(PlanFailure::Unavailable)?;
    let matched = plan::matching_policies(spec, &policies);
    *activity = activity::Pending::start(activity_store(rec), spec, &matched);
    let by_label = plan::selects_namespaces_by_label(&matched);
    let (mut namespaces, watched) = match by_label {
        true => namespaces(rec).await?,
        false => (vec![], false),
    };
    let mut scope = plan::scope(spec, &matched, &namespaces).map_err(PlanFailure::Refused)?;
    // Only the kinds in scope need their barrier; RoleBindings too when a rule selects namespaces
    // by label (a namespace the view does not hold yet may have some).
    let need = Need::bindings(!scope.namespaces.is_empty() || by_label, scope.cluster_role_bindings);
    let read = match rec.ctx.shared.view.as_deref() {
        Some(view) => {
            // Bindings written before the call arrived must be seen (before this plan began,
            // for a request the watch brought).
            let since = rec.ctx.local.arrival(&rec.obj.name_any()).unwrap_or_else(std::time::Instant::now);
            Some(view.read(Since::Arrived(since), need, Reader::Plan).await)
        }
        None => None,
    };
    let clocks = expiry_clocks(rec).await?;
    let mut observed = Observed { clocks: clocks.clone(), ..Observed::default() };
    match read {
        Some(Ok(snapshot)) => {
            if watched && added_unwatched_namespaces(rec, &snapshot, &matched, &mut namespaces).await? {
                scope = plan::scope(spec, &matched, &namespaces).map_err(PlanFailure::Refused)?;
            }
            if let Some(plan) = plan_from_named(rec, &snapshot, &policies, &scope, &namespaces, &clocks) {
                return plan;
            }
            let b = snapshot.bindings(&scope.namespaces, scope.cluster_role_bindings);
            observed.role_bindings = b.role_bindings;
            observed.cluster_role_bindings = b.cluster_role_bindings;
        }
        read => {
            if let Some(Err(e)) = read {
                tracing::warn!(request = %rec.obj.name_any(), error = %e, "the view cannot vouch for the bindings; listing them instead");
            }
            list_bindings(c, &scope, &mut observed).await?;
        }
    }
    observed.namespaces = namespaces;
    compute(rec, &policies, &observed)
}

/// The plan, unless the request is an expiry whose binding changed since it was scheduled and
/// the leader's clocks do not cover that change yet: then it is planned again shortly (a subject
/// removed and given the binding again meanwhile keeps the new grant: see
/// [`crate::expiry::holding`]).
fn compute(rec: &Record, policies: &[DeprovisionPolicy], observed: &Observed) -> Result<plan::Plan, PlanFailure> {
    let spec = &rec.obj.spec;
    if let Some(crate::expiry::Holding::Unknown(why)) = plan::expiry_holding(spec, observed) {
        let why = format!("waiting to plan the expiry: {why}");
        return Err(PlanFailure::Unavailable(ExecError::Stale(why)));
    }
    plan::compute(spec, policies, observed, &rec.ctx.settings.protected).map_err(PlanFailure::Refused)
}

/// An expiry's binding's clocks as the leader stored them (in the `AccessClock` object its UID
/// falls in); `None` for other requests, when no clocks are kept (`--expiry=false`), or when the
/// object does not hold the binding.
async fn expiry_clocks(rec: &Record) -> Result<Option<crate::crd::BindingClocks>, PlanFailure> {
    let Some(e) = plan::expiry_of(&rec.obj.spec) else { return Ok(None) };
    let Some(prefix) = rec.ctx.settings.expiry_clocks.as_deref() else { return Ok(None) };
    let uid = &e.binding.uid;
    let name = crate::expiry::clock_shard_name(prefix, crate::expiry::clock_shard_of(uid));
    let api = Api::<crate::crd::AccessClock>::all(rec.ctx.client.clone());
    let stored = api.get_opt(&name).await.map_err(unavailable("reading the expiry clocks"))?;
    Ok(stored.and_then(|mut o| o.spec.bindings.remove(uid)))
}

/// Where the target's last activity is read from, when the operator records it.
fn activity_store(rec: &Record) -> Option<crate::activity::read::Store> {
    let prefix = rec.ctx.settings.last_activity.clone()?;
    Some(crate::activity::read::Store {
        client: rec.ctx.client.clone(),
        namespace: rec.ctx.settings.namespace.clone(),
        prefix,
    })
}

/// The namespaces, for rules that select them by label: from the view's watch while it is live
/// (`true`), else listed.
async fn namespaces(rec: &Record) -> Result<(Vec<Namespace>, bool), PlanFailure> {
    if let Some(view) = rec.ctx.shared.view.as_deref()
        && let Ok(snapshot) = view.read(Since::Held, Need::NAMESPACES, Reader::Plan).await
    {
        return Ok((snapshot.namespaces(), true));
    }
    let listed = Api::<Namespace>::all(rec.ctx.client.clone()).list(&ListParams::default()).await;
    Ok((listed.map_err(unavailable("listing namespaces"))?.items, false))
}

/// Adds to `namespaces` (from the view's watch) each namespace the watch does not hold yet that
/// holds a binding naming the target (the bindings passed their barrier: created before the call),
/// read with a GET, so a namespace created and labelled a moment before the call is judged by its
/// labels. Says whether one was added.
async fn added_unwatched_namespaces(
    rec: &Record,
    snapshot: &Snapshot<'_>,
    matched: &[&DeprovisionPolicy],
    namespaces: &mut Vec<Namespace>,
) -> Result<bool, PlanFailure> {
    let Ok(wanted) = plan::principals(&rec.obj.spec, matched) else { return Ok(false) };
    let keys = wanted.iter().map(Wanted::key).collect();
    let known: std::collections::BTreeSet<String> = namespaces.iter().map(|n| n.name_any()).collect();
    let unwatched: std::collections::BTreeSet<String> = (snapshot.naming(&keys, None, false).role_bindings.iter())
        .filter_map(|b| b.metadata.namespace.clone())
        .filter(|ns| !known.contains(ns))
        .collect();
    let api = Api::<Namespace>::all(rec.ctx.client.clone());
    let mut added = false;
    for ns in unwatched {
        if let Some(mut n) = api.get_opt(&ns).await.map_err(unavailable("reading a namespace"))? {
            crate::view::namespaces::strip(&mut n);
            namespaces.push(n);
            added = true;
        }
    }
    Ok(added)
}

/// The plan from only the bindings that name the target, looked up by subject in the view (no
/// other binding can yield an action or a refusal: see [`Observed::naming`]). `None` when the
/// target's subjects cannot be resolved (planning from everything says why) or the plan confirms
/// an absence, whose record counts every binding checked: then the caller plans from every
/// binding in scope.
fn plan_from_named(
    rec: &Record,
    snapshot: &Snapshot<'_>,
    policies: &[DeprovisionPolicy],
    scope: &plan::Scope,
    namespaces: &[Namespace],
    clocks: &Option<crate::crd::BindingClocks>,
) -> Option<Result<plan::Plan, PlanFailure>> {
    let spec = &rec.obj.spec;
    let wanted = plan::principals(spec, &plan::matching_policies(spec, policies)).ok()?;
    let keys = wanted.iter().map(Wanted::key).collect();
    let named = snapshot.naming(&keys, Some(&scope.namespaces), scope.cluster_role_bindings);
    let observed = Observed {
        namespaces: namespaces.to_vec(),
        role_bindings: named.role_bindings,
        cluster_role_bindings: named.cluster_role_bindings,
        clocks: clocks.clone(),
    };
    match compute(rec, policies, &observed) {
        Ok(p) if p.checks_absence() => None,
        done => Some(done),
    }
}

/// The policies from the view when its watch is live and one of them is for this request;
/// otherwise (none matches: perhaps one created a moment ago) listed from the API server.
async fn policies(rec: &Record, reader: Reader) -> Result<Vec<DeprovisionPolicy>, ExecError> {
    if let Some(view) = rec.ctx.shared.view.as_deref()
        && let Ok(snapshot) = view.read(Since::Held, Need::POLICIES, reader).await
    {
        let policies = snapshot.policies();
        if !plan::matching_policies(&rec.obj.spec, &policies).is_empty() {
            return Ok(policies);
        }
        view.read_from_api(reader);
    }
    let api = Api::<DeprovisionPolicy>::all(rec.ctx.client.clone());
    let listed = api.list(&ListParams::default()).await;
    let source = |source| ExecError::Unavailable { context: "listing DeprovisionPolicies".into(), source };
    Ok(listed.map_err(source)?.items)
}

fn unavailable(what: &'static str) -> impl Fn(kube::Error) -> PlanFailure {
    move |source| PlanFailure::Unavailable(ExecError::Unavailable { context: what.into(), source })
}

/// Lists the bindings in scope from the API server (consistent reads), a page at a time, keeping
/// only what planning reads of each.
async fn list_bindings(c: &kube::Client, scope: &plan::Scope, observed: &mut Observed) -> Result<(), PlanFailure> {
    for ns in &scope.namespaces {
        let api = Api::<RoleBinding>::namespaced(c.clone(), ns);
        let items = list_stripped(api).await.map_err(unavailable("listing RoleBindings"))?;
        observed.role_bindings.extend(items);
    }
    if scope.cluster_role_bindings {
        let api = Api::<ClusterRoleBinding>::all(c.clone());
        observed.cluster_role_bindings =
            list_stripped(api).await.map_err(unavailable("listing ClusterRoleBindings"))?;
    }
    Ok(())
}

/// Every object of a list, paged (one snapshot: continue tokens keep its resourceVersion), each
/// stripped as the view strips it.
async fn list_stripped<K>(api: Api<K>) -> Result<Vec<Arc<K>>, kube::Error>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut lp = ListParams::default().limit(500);
    let mut out = vec![];
    loop {
        let page = api.list(&lp).await?;
        out.extend(page.items.into_iter().map(|mut o| {
            crate::view::strip(&mut o);
            Arc::new(o)
        }));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// A call marked `attempting` whose outcome was never recorded ends `Failed`, outcome unknown:
/// it is not safe to send again.
async fn record_interrupted(
    rec: &mut Record,
    mut st: DeprovisionRequestStatus,
) -> Result<DeprovisionRequestStatus, Error> {
    let Some(interrupted) = st.attempting.take() else {
        return Ok(st);
    };
    let unfinished = st.plan.iter().find(|a| a.id == interrupted.id && !st.results.iter().any(|r| r.id == a.id));
    let Some(action) = unfinished.cloned() else {
        return Ok(st);
    };
    let email = &rec.obj.spec.target_user.email;
    let result = summary::result(&action, email, Outcome::Failed, summary::outcome_unknown(&action), None);
    st.results.push(result.clone());
    let st = rec.write(st).await?;
    let action_kind = EventAction::Execute(action.kind());
    rec.event(EventType::Warning, Reason::ActionFailed, action_kind, result.message, None);
    Ok(st)
}

/// How often results are written while a plan runs (and at its end, with the terminal phase). A
/// crash between an action and its write is safe: the action runs again and finds its work done
/// (`AlreadyAbsent`), or, for a call not safe to repeat, finds its `attempting` marker.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs every action that has no result yet, then finishes. Results are written in batches (see
/// [`FLUSH_EVERY`]). A call that is not safe to repeat is marked `attempting` in the record before
/// it is sent; a marker found here means its outcome was never recorded, and it is not sent again.
#[tracing::instrument(name = "execute", skip_all)]
async fn execute_plan(rec: &mut Record, mut st: DeprovisionRequestStatus) -> Result<Action, Error> {
    let email = rec.obj.spec.target_user.email.clone();
    st = record_interrupted(rec, st).await?;
    let pending: Vec<PlannedAction> =
        st.plan.iter().filter(|a| !st.results.iter().any(|r| r.id == a.id)).cloned().collect();
    let uid = rec.obj.metadata.uid.clone().unwrap_or_default();
    let mut written = std::time::Instant::now();
    for action in pending {
        if !action.action.is_idempotent() {
            st.attempting = Some(Attempting { id: action.id, since: now() });
            st = rec.write(st).await?;
            written = std::time::Instant::now();
        }
        let key = format!("{uid}-{}", action.id);
        let executed = exec::execute(&rec.ctx.exec, &action.action, &key).await;
        #[cfg(feature = "failpoints")]
        rec.ctx.settings.failpoints.after_call(action.id as usize + 1);
        st.attempting = None;
        let result = match executed {
            Ok(done) => {
                let (before, after) = done.subjects.map(|s| (s.before, s.after)).unzip();
                summary::result(&action, &email, done.outcome.into(), done.message, done.external)
                    .with_subjects(before, after)
            }
            Err(e) if e.is_transient() => return rec.transient(st, e).await,
            Err(e) => {
                let details = e.external_details().cloned();
                summary::result(&action, &email, Outcome::Failed, e.to_string(), details)
            }
        };
        let labels = ActionLabels { kind: action.kind().as_str(), outcome: result.outcome.as_str() };
        rec.ctx.settings.metrics.actions.get_or_create(&labels).inc();
        st.results.push(result.clone());
        st.last_error = None;
        #[cfg(feature = "failpoints")]
        if rec.ctx.settings.failpoints.exits_after_results(st.results.len()) {
            rec.write(st).await?;
            rec.ctx.settings.failpoints.exit_recorded(rec.status().results.len());
        }
        if written.elapsed() >= FLUSH_EVERY {
            st = rec.write(st).await?;
            written = std::time::Instant::now();
        }
        if !action.action.changes_something() {
            continue;
        }
        let (type_, reason) = match result.outcome {
            Outcome::Failed => (EventType::Warning, Reason::ActionFailed),
            Outcome::AlreadyAbsent => (EventType::Normal, Reason::AlreadyAbsent),
            Outcome::Deactivated => (EventType::Normal, Reason::Deactivated),
            Outcome::Removed | Outcome::Deleted => (EventType::Normal, Reason::Removed),
        };
        let related = match &action.action {
            PlanAction::RemoveBindingSubject(b) => Some(&b.binding),
            _ => None,
        };
        if let (Some(e), PlanAction::RemoveBindingSubject(b), true) =
            (plan::expiry_of(&rec.obj.spec), &action.action, result.outcome.is_removal())
        {
            let note = format!("{} ({}); record: deprovisionrequest/{}", result.message, e.reason, rec.obj.name_any());
            super::expiry::event_on_binding(&rec.ctx, &b.binding, "Normal", "AccessExpired", &note);
        }
        rec.event(type_, reason, EventAction::Execute(action.kind()), result.message, related);
    }
    if crate::verify::applies(&st.plan) {
        match verify(rec, &st).await {
            Ok(v) => st.verification = Some(v),
            Err(e) => return rec.transient(st, e).await,
        }
    }
    rec.finish(st).await
}

/// Asks the authorizer what remains of the target's access once the actions are done. Only
/// reading the policies can fail (retried like any transient error); what the checks could not
/// establish is recorded in the verification.
#[tracing::instrument(name = "verify", skip_all)]
async fn verify(rec: &Record, st: &DeprovisionRequestStatus) -> Result<crate::crd::Verification, ExecError> {
    let policies = policies(rec, Reader::Verify).await?;
    let req = crate::verify::Request {
        spec: &rec.obj.spec,
        policy_names: &st.policies,
        policies: &policies,
        plan: &st.plan,
        results: &st.results,
        reviews_per_binding: rec.ctx.settings.reviews_per_binding,
    };
    let (client, view) = (&rec.ctx.client, rec.ctx.shared.view.as_deref());
    let verified = crate::verify::verify(client, view, &rec.ctx.verifying, &req).await;
    let lag = rec.ctx.verifying.lag.learned().as_secs_f64();
    rec.ctx.settings.metrics.authorizer_lag_seconds.set(lag);
    Ok(verified)
}
