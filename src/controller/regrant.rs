//! Access that comes back: for `--regrant-watch` after a request finished, the leading
//! controller notices a binding the request removed someone from that names them again (edited,
//! or created again under its name) and records it on the request; with `onRegrant: Remove` it
//! removes it again, planned as a first removal by the policies that made it (their scope and
//! `managedBindings`), at most [`MAX_REMOVALS_AGAIN`] times per binding. A binding created after
//! the request finished that names a removed subject is new access elsewhere: reported only.
//! Access the request never removed (what the verification found left) is never reported.
//!
//! It keeps no bindings of its own: it follows the view's bindings (one pass over what it holds,
//! then every change it sees; two watches of its own when the view keeps none) past a small
//! [`Watchlist`] of recently removed principals, rebuilt from the records when leadership starts.
//! The first pass finds a re-grant made while no operator ran.

mod watchlist;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::clock::now;
use crate::crd::{
    BindingKind, ConditionType, DeprovisionPolicy, DeprovisionRequest, Outcome, PlannedAction, Reason, Regrant,
    RegrantOrigin, RegrantRemoval, SubjectRef, set_condition,
};
use crate::plan::manager::{self, OWN_FIELD_MANAGER};
use crate::plan::{self, BindingView, Observed};
use crate::text;
use crate::view::{Change, Need, Reader, Since, View};
use watchlist::{Hit, Removed, describe, key_of};
pub use watchlist::{MAX_REMOVALS_AGAIN, Watchlist};

/// The label a request gets once access it removed came back.
pub const REGRANTED_LABEL: &str = "access.deprovisioner.dev/regranted";

/// The most re-grants one record lists.
const MAX_RECORDED: usize = 64;

/// The most bytes the list of re-grants takes in a record (within the room
/// [`crate::plan::MAX_RECORD_BYTES`] leaves below the API server's limit).
const MAX_RECORDED_BYTES: usize = 96 * 1024;

/// The most bytes one recorded re-grant with its removal takes (its texts are clipped).
const MAX_ENTRY_BYTES: usize = 4 * 1024;

/// Whether the record's list of re-grants has room for `n` more.
fn has_room(regrants: &[Regrant], n: usize) -> bool {
    let bytes = serde_json::to_vec(regrants).map_or(MAX_RECORDED_BYTES, |v| v.len());
    regrants.len() + n <= MAX_RECORDED && bytes + n * MAX_ENTRY_BYTES <= MAX_RECORDED_BYTES
}

/// Records read per page when the watchlist is rebuilt.
const PAGE: u32 = 200;

/// The watchlist, shared by the controller (which adds each request as it finishes) and the
/// watches.
pub struct Regrants {
    list: Mutex<Watchlist>,
    window: Duration,
}

impl Regrants {
    /// An empty watchlist for requests finished within `window` (zero: nothing is watched).
    pub fn new(window: Duration) -> Regrants {
        Regrants { list: Mutex::new(Watchlist::default()), window }
    }

    /// The earliest finish time still watched.
    fn since(&self) -> Time {
        let window = k8s_openapi::jiff::SignedDuration::try_from(self.window).unwrap_or_default();
        Time(k8s_openapi::jiff::Timestamp::now().checked_sub(window).unwrap_or_default())
    }

    /// Watches a request that just finished.
    pub fn finished(&self, r: &DeprovisionRequest) {
        if self.window.is_zero() {
            return;
        }
        let since = self.since();
        self.lock().insert(r, &since);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watchlist> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs while this replica leads: rebuilds the watchlist from the records, then watches every
/// binding until `stop`.
pub(super) async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let regrants = &ctx.regrants;
    if regrants.window.is_zero() {
        return;
    }
    loop {
        // A stop interrupts the rebuild (it reads every finished record): it must never hold up
        // a stopping leader's handover.
        let rebuilt = tokio::select! {
            r = rebuild(&ctx) => r,
            _ = stop.cancelled() => return,
        };
        match rebuilt {
            Ok(()) => break,
            Err(e) => tracing::warn!(error = %e, "re-grant watch: reading the records failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.cancelled() => return,
        }
    }
    let (requests, principals) = regrants.lock().counts();
    tracing::info!(requests, principals, "re-grant watch: watching recently removed subjects");
    let watching = async {
        let view = ctx.shared.view.clone();
        match view.as_deref().and_then(|v| Some((v, v.subscribe()?))) {
            Some((view, changes)) => follow_view(&ctx, view, changes, &stop).await,
            None => {
                let rb = watch::<RoleBinding>(ctx.clone(), stop.clone());
                let crb = watch::<ClusterRoleBinding>(ctx.clone(), stop.clone());
                futures::join!(rb, crb);
            }
        }
    };
    let expire = async {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(600)) => {
                    let since = regrants.since();
                    regrants.lock().expire(&since);
                }
                _ = stop.cancelled() => return,
            }
        }
    };
    futures::join!(watching, expire);
}

/// Adds every request finished within the window, a page at a time.
async fn rebuild(ctx: &Context) -> Result<(), kube::Error> {
    let api: Api<DeprovisionRequest> = Api::all(ctx.client.clone());
    let since = ctx.regrants.since();
    for phase in ["Succeeded", "Failed"] {
        let mut lp = ListParams::default().fields(&format!("status.phase={phase}")).limit(PAGE);
        loop {
            let page = api.list(&lp).await?;
            {
                let mut list = ctx.regrants.lock();
                page.items.iter().for_each(|r| list.insert(r, &since));
            }
            // Leave room for the requests this new leader is working on.
            tokio::task::yield_now().await;
            match page.metadata.continue_.filter(|t| !t.is_empty()) {
                Some(t) => lp = lp.continue_token(&t),
                None => break,
            }
        }
    }
    Ok(())
}

/// A binding kind as the watch sees it.
trait Watched: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static {
    fn view(&self) -> BindingView<'_>;
}
impl Watched for RoleBinding {
    fn view(&self) -> BindingView<'_> {
        crate::verify::residual::role_binding(self)
    }
}
impl Watched for ClusterRoleBinding {
    fn view(&self) -> BindingView<'_> {
        crate::verify::residual::cluster_role_binding(self)
    }
}

/// Follows the view's bindings (kept on every replica): one pass over every binding it holds,
/// then every change it sees; a pass again whenever this falls behind, and when a relist ends.
/// No watch of its own.
async fn follow_view(ctx: &Context, view: &View, mut changes: broadcast::Receiver<Change>, stop: &CancellationToken) {
    let mut rescan = true;
    loop {
        if rescan {
            // Once the view holds every binding written before now (its barrier), a reported
            // binding it does not hold was deleted unseen (during a relist, while this fell
            // behind, or while no operator ran): it names no one, so one created again under its
            // name is reported again.
            // A stop interrupts the barrier: the view's watches stop too, so it could only time out.
            let read = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                read = view.read(Since::Arrived(std::time::Instant::now()), Need::BINDINGS, Reader::Regrant) => read,
            };
            if let Ok(snapshot) = &read {
                let forgot = ctx.regrants.lock().forget_absent(|(kind, ns, name)| match (kind, ns) {
                    (BindingKind::RoleBinding, Some(ns)) => snapshot.role_binding(ns, name).is_some(),
                    (BindingKind::ClusterRoleBinding, None) => snapshot.cluster_role_binding(name).is_some(),
                    _ => false,
                });
                tracing::debug!(forgot, "re-grant watch: forgot the reported bindings that are gone");
            }
            // Not vouched for, the pass is still made: every change from here on follows.
            let Some(all) = read.ok().or_else(|| view.unvouched(Reader::Regrant)).map(|s| s.all()) else { return };
            for b in &all.role_bindings {
                seen(ctx, &b.view()).await;
            }
            for b in &all.cluster_role_bindings {
                seen(ctx, &b.view()).await;
            }
            rescan = false;
        }
        let change = tokio::select! {
            c = changes.recv() => c,
            _ = stop.cancelled() => return,
        };
        match change {
            Ok(Change::RoleBinding(b)) => seen(ctx, &b.view()).await,
            Ok(Change::ClusterRoleBinding(b)) => seen(ctx, &b.view()).await,
            Ok(Change::Deleted(ns, name)) => {
                let kind = if ns.is_some() { BindingKind::RoleBinding } else { BindingKind::ClusterRoleBinding };
                ctx.regrants.lock().deleted(&(kind, ns, name));
            }
            // The view holds a new list: a pass over it, since a relist sends every binding at
            // once and this may have fallen behind (and read the old list) while it came.
            Ok(Change::Relisted) => rescan = true,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "re-grant watch fell behind the view; reading it whole");
                rescan = true;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Checks one binding as it is now against the watchlist and records what came back.
async fn seen(ctx: &Context, view: &BindingView<'_>) {
    let hits = ctx.regrants.lock().check(view);
    for hit in hits {
        if let Err(e) = act(ctx, &hit, view.meta).await {
            tracing::warn!(request = %hit.request, binding = %describe(&hit.binding), error = %e, "re-grant could not be recorded");
        }
    }
}

/// Streams every binding of one kind past the watchlist (nothing is stored); used when the view
/// keeps no bindings.
async fn watch<K: Watched>(ctx: Arc<Context>, stop: CancellationToken) {
    let api: Api<K> = Api::all(ctx.client.clone());
    let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = stop.cancelled() => return,
        };
        match ev {
            Some(Ok(watcher::Event::Apply(b) | watcher::Event::InitApply(b))) => seen(&ctx, &b.view()).await,
            Some(Ok(watcher::Event::Delete(b))) => ctx.regrants.lock().deleted(&key_of(&b.view())),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "re-grant watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            None => return,
        }
    }
}

/// One entry to record: the subject, what happened, and the removal done again if any.
struct Entry {
    subject: SubjectRef,
    message: String,
    removal: Option<RegrantRemoval>,
}

/// Records what a binding naming a removed subject (again) means for its request: a re-grant in
/// a binding the request removed someone from is reported or (`onRegrant: Remove`) removed again
/// as a first removal would remove it; new access elsewhere is reported only.
async fn act(ctx: &Context, hit: &Hit, meta: &ObjectMeta) -> Result<(), kube::Error> {
    let (app, again, removed) = {
        let list = ctx.regrants.lock();
        let Some(w) = list.get(&hit.request) else { return Ok(()) };
        let again = w.removed_again.get(&hit.binding).copied().unwrap_or(0);
        (w.app.clone(), again, w.removed_from.get(&hit.binding).cloned())
    };
    let object = describe(&hit.binding);
    let field_manager = manager::last_writer(meta, OWN_FIELD_MANAGER).map(|(m, _)| m);
    let by = field_manager.as_deref().map(|m| format!(" (written by {m})")).unwrap_or_default();
    let entries = match (hit.origin, removed) {
        (RegrantOrigin::RemovedBinding, Some(removed)) => {
            let recreated = if removed.uid == hit.uid { "" } else { " (created again since the removal)" };
            regranted(ctx, hit, &removed, again, &format!("{object}{recreated}"), &by).await
        }
        _ => (hit.subjects.iter())
            .map(|s| Entry {
                subject: s.clone(),
                message: format!(
                    "{object}, created after the request finished, names {s}{by}: new access, not a binding this request removed it from; reported only, never removed"
                ),
                removal: None,
            })
            .collect(),
    };
    for e in entries {
        let removed_again = e.removal.as_ref().is_some_and(|r| r.outcome.is_removal());
        let message = text::clip(e.message);
        let regrant = Regrant {
            object: object.clone(),
            subject: e.subject.to_string(),
            at: now(),
            uid: Some(hit.uid.clone()),
            origin: Some(hit.origin),
            field_manager: field_manager.clone(),
            removed_again,
            removal: e.removal,
            message: message.clone(),
        };
        // The request may have been deleted (retention) meanwhile: then there is nothing to report on.
        let Some(recorded) = record(ctx, &hit.request, regrant).await? else { return Ok(()) };
        ctx.settings.metrics.regrants.get_or_create(&crate::metrics::AppLabels { app: app.clone() }).inc();
        let reason = if removed_again { Reason::RemovedAgain } else { Reason::AccessRegranted };
        let ev = Event {
            type_: EventType::Warning,
            reason: reason.as_str().into(),
            note: Some(message),
            action: "Regrant".into(),
            secondary: None,
        };
        ctx.events.send(ev, recorded.object_ref(&()));
        tracing::warn!(request = %hit.request, %reason, origin = ?hit.origin, "access came back after a removal");
    }
    Ok(())
}

/// A re-grant in a binding the request removed someone from: reported, or, when every policy
/// that made that removal still says `onRegrant: Remove`, removed again as those policies would
/// remove it first (the same pure planner: their rules, subjects and `managedBindings`), each
/// action recorded with its result. `object` names the binding.
async fn regranted(ctx: &Context, hit: &Hit, removed: &Removed, again: usize, object: &str, by: &str) -> Vec<Entry> {
    let report = |why: &str| -> Vec<Entry> {
        (hit.subjects.iter())
            .map(|s| Entry { subject: s.clone(), message: format!("{object} names {s} again{by}{why}"), removal: None })
            .collect()
    };
    let held = match ctx.shared.view.as_deref() {
        Some(view) => view.read(Since::Held, Need::POLICIES, Reader::Regrant).await.ok().map(|s| s.policies()),
        None => None,
    };
    let all = match held {
        Some(p) => p,
        None => match Api::<DeprovisionPolicy>::all(ctx.client.clone()).list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => return report(&format!("; not removed again: listing the policies failed: {e}")),
        },
    };
    let Some(policies) = watchlist::removing_again(&removed.policies, &all) else { return report("") };
    if again >= MAX_REMOVALS_AGAIN {
        return report(&format!(
            "; not removed again: it was removed {MAX_REMOVALS_AGAIN} times already (another controller puts it back: change its source)"
        ));
    }
    let (planned, planned_regrants) = match plan_again(ctx, hit, &policies).await {
        Ok(p) => p,
        Err(why) => return report(&format!("; not removed again: {why}")),
    };
    // Nothing is removed that could not be recorded.
    if !planned.is_empty() && !has_room(&planned_regrants, planned.len()) {
        return report("; not removed again: the request's record holds as many re-grants as it may");
    }
    if planned.is_empty() {
        let names = policies.iter().map(|p| p.name_any()).collect::<Vec<_>>().join(", ");
        return report(&format!(
            "; not removed again: outside the scope of DeprovisionPolicy {names}, which made the removal (its rules do not select this binding for the request now)"
        ));
    }
    let mut out = vec![];
    for a in planned {
        let crate::crd::Action::RemoveBindingSubject(b) = &a.action else { continue };
        let done = crate::exec::rbac::remove_subject(&ctx.client, ctx.shared.view.as_deref(), b).await;
        let (outcome, said, subjects) = match done {
            Ok(d) => (d.outcome.into(), d.message, d.subjects),
            Err(e) => (Outcome::Failed, format!("failed: {e}"), None),
        };
        let warning = match b.managed_by.as_ref().filter(|m| m.syncs()) {
            Some(m) if outcome.is_removal() => {
                format!("; warning: it is managed by {m}: change the source or it will come back")
            }
            _ => String::new(),
        };
        let verb = if outcome.is_removal() { "removed again" } else { "removing it again" };
        let message =
            format!("{object} named {} again{by}; {verb} (DeprovisionPolicy {}): {said}{warning}", b.subject, a.policy);
        let (before, after) = subjects.map(|s| (s.before, s.after)).unzip();
        let removal = RegrantRemoval {
            policy: a.policy.clone(),
            reason: a.reason.clone(),
            action: b.clone(),
            outcome,
            subjects_before: before,
            subjects_after: after,
        };
        out.push(Entry { subject: b.subject.clone(), message, removal: Some(removal) });
    }
    if out.iter().any(|e| e.removal.as_ref().is_some_and(|r| r.outcome.is_removal())) {
        ctx.regrants.lock().removed_again(&hit.request, &hit.binding);
    }
    out
}

/// The removals the policies that made the original removal plan for the request from the
/// re-granting binding as stored now (read again; with its namespace when a rule selects
/// namespaces by label). `Err` says why nothing could be planned.
/// Also returns the re-grants the request records already.
async fn plan_again(
    ctx: &Context,
    hit: &Hit,
    policies: &[DeprovisionPolicy],
) -> Result<(Vec<PlannedAction>, Vec<Regrant>), String> {
    let c = &ctx.client;
    let requests = Api::<DeprovisionRequest>::all(c.clone());
    let read = |what: String| move |e: kube::Error| format!("reading {what} failed: {e}");
    let Some(request) = requests.get_opt(&hit.request).await.map_err(read("the request".into()))? else {
        return Ok((vec![], vec![]));
    };
    // Only for the request that made the removal: one deleted and created again under its name
    // (another person, a dry run) plans nothing here.
    if hit.request_uid.is_some() && request.metadata.uid != hit.request_uid {
        return Err(format!("deprovisionrequest/{} is another request now (deleted and created again)", hit.request));
    }
    if request.spec.dry_run {
        return Err("the request is a dry run, which changes nothing".into());
    }
    // Access given again after it expired is a new grant: its own clock ends it.
    if plan::expiry_of(&request.spec).is_some() {
        return Err("the access had expired; given again, it is on a new clock".into());
    }
    let (kind, ns, name) = &hit.binding;
    let mut observed = Observed::default();
    match (kind, ns) {
        (BindingKind::RoleBinding, Some(ns)) => {
            let api = Api::<RoleBinding>::namespaced(c.clone(), ns);
            if let Some(mut b) = api.get_opt(name).await.map_err(read(describe(&hit.binding)))? {
                crate::view::strip(&mut b);
                observed.role_bindings.push(Arc::new(b));
            }
            if plan::selects_namespaces_by_label(&policies.iter().collect::<Vec<_>>()) {
                let namespace =
                    Api::<Namespace>::all(c.clone()).get(ns).await.map_err(read(format!("namespace {ns}")))?;
                observed.namespaces.push(namespace);
            }
        }
        _ => {
            let api = Api::<ClusterRoleBinding>::all(c.clone());
            if let Some(mut b) = api.get_opt(name).await.map_err(read(describe(&hit.binding)))? {
                crate::view::strip(&mut b);
                observed.cluster_role_bindings.push(Arc::new(b));
            }
        }
    }
    let planned =
        plan::again(&request.spec, policies, &observed, &ctx.settings.protected).map_err(|e| e.to_string())?;
    Ok((planned, request.status.map(|s| s.regrants).unwrap_or_default()))
}

/// Adds the re-grant to the request's record (condition `Regranted`, bounded list) and labels
/// the request; a conflicting write is retried. Returns the request as stored, or `None` when it
/// no longer exists.
async fn record(ctx: &Context, name: &str, regrant: Regrant) -> Result<Option<DeprovisionRequest>, kube::Error> {
    let api: Api<DeprovisionRequest> = Api::all(ctx.client.clone());
    let mut attempts = 0;
    loop {
        attempts += 1;
        let Some(mut r) = api.get_opt(name).await? else { return Ok(None) };
        let generation = r.metadata.generation;
        let st = r.status.get_or_insert_with(Default::default);
        if has_room(&st.regrants, 1) {
            st.regrants.push(regrant.clone());
        }
        let n = st.regrants.len();
        let msg = format!("{} (re-grants recorded: {n})", regrant.message);
        set_condition(&mut st.conditions, ConditionType::Regranted, true, Reason::AccessRegranted, &msg, generation);
        match api.replace_status(name, &PostParams::default(), &r).await {
            Ok(_) => {
                let label = serde_json::json!({"metadata": {"labels": {REGRANTED_LABEL: "true"}}});
                return api.patch(name, &PatchParams::default(), &Patch::Merge(&label)).await.map(Some);
            }
            // Someone else wrote it meanwhile: read it again (the last conflict is the error).
            Err(kube::Error::Api(s)) if s.is_conflict() && attempts < 5 => continue,
            Err(e) => return Err(e),
        }
    }
}
