//! Access that comes back: for `--regrant-watch` after a request finished, the leading
//! controller notices any RoleBinding or ClusterRoleBinding that names a subject the request
//! removed (an edit of the old binding or a new one), records it on the request, and with
//! `onRegrant: Remove` removes it again (at most [`MAX_REMOVALS_AGAIN`] times per binding).
//!
//! It keeps no bindings of its own: it follows the binding index (one pass over what it holds,
//! then every change it sees; two watches of its own when there is no index) past a small
//! [`Watchlist`] of recently removed principals, rebuilt from the records when leadership starts.
//! The first pass finds a re-grant made while no operator ran.

mod watchlist;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::record::now;
use crate::crd::{
    BindingAction, BindingKind, BindingRef, BindingScope, ConditionType, DeprovisionPolicy, DeprovisionRequest,
    EmptyBindingRule, Reason, Regrant, RegrantRule, set_condition,
};
use crate::index::{BindingIndex, Change};
use crate::plan::BindingView;
use crate::plan::manager::{self, OWN_FIELD_MANAGER};
use crate::text;
use watchlist::{BindingKey, Hit, describe, key_of};
pub use watchlist::{MAX_REMOVALS_AGAIN, Watchlist};

/// The label a request gets once access it removed came back.
pub const REGRANTED_LABEL: &str = "access.deprovisioner.dev/regranted";

/// The most re-grants one record lists.
const MAX_RECORDED: usize = 64;

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
        match ctx.shared.index.clone() {
            Some(index) => follow_index(&ctx, &index, &stop).await,
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

/// Follows the binding index (kept on every replica): one pass over every binding it holds, then
/// every change it sees; a pass again whenever this falls behind, and when a relist ends. No
/// watch of its own.
async fn follow_index(ctx: &Context, index: &BindingIndex, stop: &CancellationToken) {
    let mut changes = index.subscribe();
    let mut rescan = true;
    loop {
        if rescan {
            // Once the index holds every binding written before now (its barrier), a reported
            // binding it does not hold was deleted unseen (during a relist, while this fell
            // behind, or while no operator ran): it names no one, so one created again under its
            // name is reported again.
            // A stop interrupts the barrier: the index's watches stop too, so it could only time out.
            let synced = index.is_watching()
                && tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    synced = index.sync(std::time::Instant::now(), true, true) => synced.is_ok(),
                };
            if synced {
                let forgot = ctx.regrants.lock().forget_absent(|(kind, ns, name)| match (kind, ns) {
                    (BindingKind::RoleBinding, Some(ns)) => index.role_binding(ns, name).is_some(),
                    (BindingKind::ClusterRoleBinding, None) => index.cluster_role_binding(name).is_some(),
                    _ => false,
                });
                tracing::debug!(forgot, "re-grant watch: forgot the reported bindings that are gone");
            }
            let all = index.all();
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
            // The index holds a new list: a pass over it, since a relist sends every binding at
            // once and this may have fallen behind (and read the old list) while it came.
            Ok(Change::Relisted) => rescan = true,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "re-grant watch fell behind the binding index; reading it whole");
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
        if let Err(e) = act(ctx, &hit, view.meta, view.role_ref).await {
            tracing::warn!(request = %hit.request, binding = %describe(&hit.binding), error = %e, "re-grant could not be recorded");
        }
    }
}

/// Streams every binding of one kind past the watchlist (nothing is stored); used when there is
/// no binding index.
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

/// What the policies of a request say about re-grants (`Remove` only when every one says so),
/// and what a binding emptied by a removal becomes (`Delete` only when every one says so).
async fn rule_of(ctx: &Context, policies: &[String]) -> (RegrantRule, EmptyBindingRule) {
    let all = match ctx.shared.policies.as_ref().and_then(|p| p.get()) {
        Some(p) => p,
        None => match Api::<DeprovisionPolicy>::all(ctx.client.clone()).list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(_) => return (RegrantRule::Report, EmptyBindingRule::Keep),
        },
    };
    let mine: Vec<&DeprovisionPolicy> = all.iter().filter(|p| policies.contains(&p.name_any())).collect();
    let every = |f: &dyn Fn(&DeprovisionPolicy) -> bool| !mine.is_empty() && mine.iter().all(|p| f(p));
    let rule = match every(&|p| p.spec.on_regrant == RegrantRule::Remove) {
        true => RegrantRule::Remove,
        false => RegrantRule::Report,
    };
    let empty = match every(&|p| p.spec.empty_bindings == EmptyBindingRule::Delete) {
        true => EmptyBindingRule::Delete,
        false => EmptyBindingRule::Keep,
    };
    (rule, empty)
}

/// Records one re-grant on its request (and, per the policy, removes the subject again).
async fn act(
    ctx: &Context,
    hit: &Hit,
    meta: &ObjectMeta,
    role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
) -> Result<(), kube::Error> {
    let (app, policies, again) = {
        let list = ctx.regrants.lock();
        let Some(w) = list.get(&hit.request) else { return Ok(()) };
        (w.app.clone(), w.policies.clone(), w.removed_again.get(&hit.binding).copied().unwrap_or(0))
    };
    let object = describe(&hit.binding);
    let field_manager = manager::last_writer(meta, OWN_FIELD_MANAGER).map(|(m, _)| m);
    let by = field_manager.as_deref().map(|m| format!(" (written by {m})")).unwrap_or_default();
    let mut removed_again = false;
    let (rule, when_empty) = rule_of(ctx, &policies).await;
    let message = match rule {
        RegrantRule::Remove if again < MAX_REMOVALS_AGAIN => {
            let action = BindingAction {
                binding: binding_ref(&hit.binding, meta, role_ref),
                subject: hit.subject.clone(),
                when_empty,
                managed_by: None,
            };
            match crate::exec::rbac::remove_subject(&ctx.client, ctx.shared.index.as_deref(), &action).await {
                Ok(done) => {
                    removed_again = true;
                    ctx.regrants.lock().removed_again(&hit.request, &hit.binding);
                    format!("{} named {} again{by}; removed again: {}", object, hit.subject, done.message)
                }
                Err(e) => format!("{object} named {} again{by}; removing it again failed: {e}", hit.subject),
            }
        }
        RegrantRule::Remove => format!(
            "{object} named {} again{by}; not removed again: it was removed {MAX_REMOVALS_AGAIN} times already (another controller puts it back: change its source)",
            hit.subject
        ),
        RegrantRule::Report => format!("{object} names {} again{by}", hit.subject),
    };
    let message = text::clip(message);
    let regrant = Regrant {
        object,
        subject: hit.subject.to_string(),
        at: now(),
        field_manager,
        removed_again,
        message: message.clone(),
    };
    // The request may have been deleted (retention) meanwhile: then there is nothing to report on.
    let Some(recorded) = record(ctx, &hit.request, regrant).await? else { return Ok(()) };
    ctx.settings.metrics.regrants.get_or_create(&crate::metrics::AppLabels { app }).inc();
    let reason = if removed_again { Reason::RemovedAgain } else { Reason::AccessRegranted };
    let ev = Event {
        type_: EventType::Warning,
        reason: reason.as_str().into(),
        note: Some(message),
        action: "Regrant".into(),
        secondary: None,
    };
    ctx.events.send(ev, recorded.object_ref(&()));
    tracing::warn!(request = %hit.request, %reason, "access came back after a removal");
    Ok(())
}

/// The binding as an action names it (its UID now: the re-granting binding may be a new one).
fn binding_ref(key: &BindingKey, meta: &ObjectMeta, role_ref: &k8s_openapi::api::rbac::v1::RoleRef) -> BindingRef {
    let scope = match (&key.0, &key.1) {
        (BindingKind::RoleBinding, Some(ns)) => BindingScope::Namespaced(ns.clone()),
        _ => BindingScope::Cluster,
    };
    BindingRef {
        scope,
        name: key.2.clone(),
        uid: meta.uid.clone().unwrap_or_default(),
        role_ref: format!("{}/{}", role_ref.kind, role_ref.name),
    }
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
        if st.regrants.len() < MAX_RECORDED {
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
