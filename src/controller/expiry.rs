//! Access that ends by itself, while this replica leads: follows the view's bindings and
//! policies, keeps the clocks of when each subject started holding each time-bound binding
//! (durably, in [`AccessClock`] objects: [`clocks`]), and when a subject's time is up records a
//! `DeprovisionRequest` with source `Expiry` under a name derived from the expiry itself, so a
//! leader killed at that moment and its successor record one request between them. The request
//! then goes the way of every request: plan (only that account in that binding), actions,
//! verification, evidence, re-grant watch.
//!
//! What is due when is decided by the pure [`crate::expiry`]; this module reads, writes and
//! wakes. It scans once a second when something changed (a binding, a policy), when an expiry
//! falls due, and every [`RESCAN`] anyway; it opens no watch of its own. A request that failed
//! (not refused) is followed by another attempt ([`expiry::attempt`]). A scan that cannot be
//! made (the view cannot answer) is logged, and past [`BOUND`] warned of; the time of the last
//! completed scan is a metric.

pub mod clocks;
mod outage;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::crd::{BindingClocks, BindingRef, DeprovisionPolicy, DeprovisionRequest, EndedBy, Expiry};
use crate::expiry::attempt::{self, MAX_ATTEMPTS, Next};
use crate::expiry::{self, Scan, Scanned};
use crate::metrics::EndedByLabels;
use crate::plan::subject::Protected;
use crate::view::{Need, Reader, Since, Snapshot};
use crate::webhook::naming;
use outage::Outage;

/// How often the loop looks whether something changed or fell due.
const TICK: Duration = Duration::from_secs(1);

/// A scan at least this often, changed or not.
const RESCAN: Duration = Duration::from_secs(30);

/// The bound this operator states for acting on an expiry once it is due: a subject still
/// holding a binding longer than this after its time counts in `expiries_overdue`.
pub const BOUND: Duration = Duration::from_secs(30);

/// How often an attempt not finished yet is looked at again (a failed one is followed by the
/// next).
const RECHECK: Duration = Duration::from_secs(10);

/// What this term knows of the requests of one due expiry.
struct Recorded {
    /// The attempt last recorded or found (from 1).
    attempt: u32,
    /// It finished for good (succeeded, refused, or the last attempt failed): nothing more to do.
    settled: bool,
    /// When it was last looked at.
    checked: Instant,
}

/// What one term of leadership remembers between scans.
#[derive(Default)]
struct Term {
    /// Bindings (by UID) the previous scan held: a subject new in one of them appeared now.
    seen: BTreeSet<String>,
    /// Requests recorded (or found recorded) this term, by the name of the first attempt.
    recorded: BTreeMap<String, Recorded>,
    /// Annotation errors already reported (binding UID, message).
    reported: BTreeSet<(String, String)>,
    /// By binding UID: the resourceVersion of the last change of it this loop took in (or, for a
    /// time-bound binding with none, the one its first scan read). The clocks are exact for a
    /// binding only at that version: one the view shows newer has a change not taken in yet.
    versions: BTreeMap<String, String>,
    /// The last scan met bindings whose clocks it could not vouch for: scan again.
    unvouched: bool,
}

impl Term {
    /// Takes in a change of the view (before the clocks it shows gone are forgotten).
    fn took_in(&mut self, change: &crate::view::Change) {
        use crate::view::Change;
        let meta = match change {
            Change::RoleBinding(b) => &b.metadata,
            Change::ClusterRoleBinding(b) => &b.metadata,
            Change::Deleted(..) | Change::Relisted => return,
        };
        if let (Some(uid), Some(v)) = (&meta.uid, &meta.resource_version) {
            self.versions.insert(uid.clone(), v.clone());
        }
    }

    /// Marks each binding's clocks exact for the version the scan read (`version`) only when
    /// every change of it up to that version was taken in; the rest get none, and their due
    /// expiries wait for the next scan (their clocks may miss a removal). Returns the UIDs of
    /// the bindings vouched for.
    fn vouch(&mut self, clocks: &mut BTreeMap<String, crate::crd::BindingClocks>) -> BTreeSet<String> {
        let mut vouched = BTreeSet::new();
        self.unvouched = false;
        for (uid, c) in clocks.iter_mut() {
            let read = c.version.clone().unwrap_or_default();
            let known = self.versions.entry(uid.clone()).or_insert_with(|| read.clone());
            if !read.is_empty() && *known == read {
                vouched.insert(uid.clone());
            } else {
                c.version = None;
                self.unvouched = true;
            }
        }
        self.versions.retain(|uid, _| clocks.contains_key(uid));
        vouched
    }
}

/// The name of the request ending one expiry: the same whoever records it (see
/// [`expiry::identity`]).
pub fn request_name(e: &Expiry) -> String {
    format!("expiry-{}", naming::sha_hex(expiry::identity(e).as_bytes(), 24))
}

/// Runs until `stop` when `--expiry-clocks` names where clocks are kept.
pub(super) async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let Some(prefix) = ctx.settings.expiry_clocks.clone() else { return };
    let Some(view) = ctx.shared.view.clone() else { return };
    let mut store = loop {
        let loaded = tokio::select! {
            r = clocks::Shards::load(ctx.client.clone(), &prefix) => r,
            _ = stop.cancelled() => return,
        };
        match loaded {
            Ok(s) => break s,
            Err(e) => tracing::warn!(error = %e, "expiry: reading the clocks failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.cancelled() => return,
        }
    };
    tracing::info!(clocks = store.subjects(), "expiry: clocks read; following time-bound access");
    let mut changes = view.subscribe();
    let mut term = Term::default();
    let mut last_scan: Option<Instant> = None;
    let mut outage = Outage::default();
    let mut next_due: Option<Timestamp> = None;
    let mut policies_seen = String::new();
    let mut dirty = true;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(rx) = changes.as_mut() {
            loop {
                match rx.try_recv() {
                    // A subject on a clock that a change shows gone lost the access, even when
                    // it is back before the next scan: its clock starts anew.
                    Ok(change) => {
                        term.took_in(&change);
                        store.forget_absent(&change);
                        dirty = true;
                    }
                    // Changes were lost: what the view holds now is all there is to go by.
                    Err(TryRecvError::Lagged(_)) => {
                        term.versions.clear();
                        dirty = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => {
                        changes = None;
                        break;
                    }
                }
            }
        }
        let need = Need { role_bindings: true, cluster_role_bindings: true, policies: true, namespaces: true };
        let snapshot = match view.read(Since::Held, need, Reader::Expiry).await {
            Ok(s) => s,
            Err(e) => {
                if let Some(failing_for) = outage.failed(Instant::now()) {
                    tracing::warn!(error = %e, ?failing_for, "expiry: no scan for longer than the stated bound: the view cannot answer; nothing expires until it does");
                } else {
                    tracing::debug!(error = %e, "expiry: the view cannot answer; scanning again in a second");
                }
                continue;
            }
        };
        if let Some(after) = outage.answered(Instant::now()) {
            tracing::warn!(?after, "expiry: the view answers again; scanning");
        }
        let policies = snapshot.policies();
        let fingerprint: String = policies.iter().map(|p| p.resource_version().unwrap_or_default() + ",").collect();
        let now = Timestamp::now();
        let due = next_due.is_some_and(|t| t <= now);
        let stale = last_scan.is_none_or(|t| t.elapsed() >= RESCAN);
        if !(dirty || due || stale || fingerprint != policies_seen) {
            continue;
        }
        dirty = false;
        policies_seen = fingerprint;
        last_scan = Some(Instant::now());
        next_due = scan_and_act(&ctx, &snapshot, &policies, &mut store, &mut term, now).await;
        ctx.settings.metrics.expiry_last_scan_timestamp_seconds.set(Timestamp::now().as_second());
        if store.dirty() || term.unvouched {
            dirty = true;
        }
    }
}

/// One scan: the clocks kept (written when they changed), the due expiries recorded as
/// requests, invalid annotations reported, the metrics set. Returns when the next one falls due.
async fn scan_and_act(
    ctx: &Context,
    snapshot: &Snapshot<'_>,
    policies: &[DeprovisionPolicy],
    store: &mut clocks::Shards,
    term: &mut Term,
    now: Timestamp,
) -> Option<Timestamp> {
    let all = snapshot.all();
    let mut scan = {
        let seen = &term.seen;
        let (rbs, crbs) = (all.role_bindings.iter().map(|b| &**b), all.cluster_role_bindings.iter().map(|b| &**b));
        let old = |uid: &str| store.get(uid);
        scan_all(
            rbs,
            crbs,
            policies,
            snapshot.namespaces(),
            &old,
            &|uid| seen.contains(uid),
            &ctx.settings.protected,
            now,
        )
    };
    let vouched = term.vouch(&mut scan.clocks);
    term.seen = scan.clocks.keys().cloned().collect();
    let subjects: usize = scan.clocks.values().map(|b| b.subjects.len()).sum();
    ctx.settings.metrics.expiry_clocks.set(subjects as i64);
    // Clocks first: a start is durable before anything depends on it.
    if let Err(e) = store.save(scan.clocks, &ctx.settings.metrics).await {
        tracing::warn!(error = %e, "expiry: writing the clocks failed; writing them again at the next scan");
    }
    for bad in &scan.invalid {
        if term.reported.insert((bad.binding.uid.clone(), bad.message.clone())) {
            tracing::warn!(binding = %bad.binding, error = %bad.message, "expiry: an end time on a binding cannot be read; ignored");
            event_on_binding(ctx, &bad.binding, "Warning", "InvalidExpiry", &bad.message);
        }
    }
    let bound = SignedDuration::try_from(BOUND).unwrap_or_default();
    let overdue = scan.scheduled.iter().filter(|e| e.due_at.0.checked_add(bound).is_ok_and(|t| t < now)).count();
    ctx.settings.metrics.expiries_overdue.set(overdue as i64);
    let mut wanted = BTreeSet::new();
    for e in scan.scheduled.iter().filter(|e| e.due_at.0 <= now) {
        let name = request_name(e);
        wanted.insert(name.clone());
        // Not before its clocks are vouched for (the next scan, a second later).
        if !vouched.contains(&e.binding.uid) {
            continue;
        }
        let known = term.recorded.get(&name);
        if known.is_some_and(|r| r.settled || r.checked.elapsed() < RECHECK) {
            continue;
        }
        if let Some(r) = record(ctx, e, &name, known.map_or(1, |r| r.attempt), policies).await {
            term.recorded.insert(name, r);
        }
    }
    // Forget what is no longer due (the subject went): memory stays bounded.
    term.recorded.retain(|n, _| wanted.contains(n));
    scan.scheduled.iter().map(|e| e.due_at.0).find(|t| *t > now)
}

/// Every binding, with what the policies say of it, scanned against the clocks (`old`): the
/// leader's scan and `deprovisioner expiring`'s.
#[allow(clippy::too_many_arguments)]
pub fn scan_all<'a>(
    role_bindings: impl Iterator<Item = &'a RoleBinding>,
    cluster_role_bindings: impl Iterator<Item = &'a ClusterRoleBinding>,
    policies: &[DeprovisionPolicy],
    namespaces: Vec<Namespace>,
    old: &dyn Fn(&str) -> Option<&'a BindingClocks>,
    seen_this_term: &dyn Fn(&str) -> bool,
    protected: &Protected,
    now: Timestamp,
) -> Scan {
    let usable = expiry::usable(policies);
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        namespaces.into_iter().map(|n| (n.name_any(), n.metadata.labels.unwrap_or_default())).collect();
    let scanned = (role_bindings.map(crate::verify::residual::role_binding))
        .chain(cluster_role_bindings.map(crate::verify::residual::cluster_role_binding))
        .map(|view| {
            let terms = expiry::terms(&view, &usable, view.namespace.and_then(|ns| labels.get(ns)));
            Scanned { view, terms }
        });
    expiry::scan(scanned, old, seen_this_term, protected, now)
}

/// Records the request ending `e`, attempt `from` first (see [`expiry::attempt`]): an attempt
/// already there that failed, not refused, is followed by the next, up to [`MAX_ATTEMPTS`].
/// Returns what was recorded or found; `None` when the API server could not say (tried again at
/// the next scan).
async fn record(ctx: &Context, e: &Expiry, base: &str, from: u32, policies: &[DeprovisionPolicy]) -> Option<Recorded> {
    let policy = policies.iter().find(|p| p.name_any() == e.policy)?;
    let spec = expiry::request_spec(e, &policy.spec.application);
    let api: Api<DeprovisionRequest> = Api::all(ctx.client.clone());
    let found = |attempt, settled| Some(Recorded { attempt, settled, checked: Instant::now() });
    for n in from.max(1)..=MAX_ATTEMPTS {
        let name = attempt::name(base, n);
        let mut obj = DeprovisionRequest::new(&name, spec.clone());
        obj.metadata.labels = Some(naming::labels(&obj.spec, &naming::sha_hex(name.as_bytes(), 20)));
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                let by = match e.ended_by {
                    EndedBy::MaxAccess => "max_access",
                    EndedBy::Annotation => "annotation",
                };
                if n == 1 {
                    ctx.settings.metrics.expiries.get_or_create(&EndedByLabels { by }).inc();
                } else {
                    ctx.settings.metrics.expiry_retries.inc();
                }
                let late = Timestamp::now().duration_since(e.due_at.0).as_secs_f64();
                tracing::info!(request = name, attempt = n, binding = %e.binding, account = %e.account, late_seconds = late, reason = %e.reason, "expiry: access is due to end; recorded");
                return found(n, false);
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(err) => {
                tracing::warn!(request = name, error = %err, "expiry: recording the request failed; trying again");
                return None;
            }
        }
        let there = match api.get_opt(&name).await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(err) => {
                tracing::warn!(request = name, error = %err, "expiry: reading the request failed; trying again");
                return None;
            }
        };
        match attempt::next(there.status.as_ref()) {
            Next::Wait => return found(n, false),
            Next::Settled => return found(n, true),
            Next::Again if n == MAX_ATTEMPTS => {
                let why = there.status.and_then(|s| s.message).unwrap_or_default();
                tracing::error!(request = name, attempts = n, binding = %e.binding, account = %e.account, error = %why, "expiry: every attempt failed; the access stays (see the requests, and deprovisioner expiring)");
                return found(n, true);
            }
            Next::Again => {
                let why = there.status.and_then(|s| s.message).unwrap_or_default();
                tracing::warn!(request = name, attempt = n, error = %why, "expiry: the request failed; recording the next attempt");
            }
        }
    }
    None
}

/// Writes an Event about a binding (in namespace `default`, where the operator may write Events;
/// `regarding` names the binding, its namespace included). Off the caller's path; a failure is
/// logged.
pub(super) fn event_on_binding(ctx: &Context, b: &BindingRef, type_: &str, reason: &str, note: &str) {
    let client = ctx.client.clone();
    let regarding = super::record::binding_reference(b);
    let ev = K8sEvent {
        metadata: ObjectMeta { generate_name: Some("expiry-".into()), ..Default::default() },
        event_time: Some(MicroTime(Timestamp::now())),
        action: Some("Expire".into()),
        reason: Some(reason.into()),
        note: Some(crate::text::clip(note)),
        type_: Some(type_.into()),
        regarding: Some(regarding),
        reporting_controller: Some("deprovisioner".into()),
        reporting_instance: Some(std::env::var("POD_NAME").unwrap_or_else(|_| "deprovisioner".into())),
        ..Default::default()
    };
    tokio::spawn(async move {
        let api: Api<K8sEvent> = Api::namespaced(client, "default");
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::warn!(error = %e, "expiry: writing an Event on a binding failed");
        }
    });
}

#[cfg(test)]
mod tests;
