//! The bindings the view keeps: every RoleBinding and ClusterRoleBinding in the cluster, kept
//! current by two watches and stripped to what planning reads (no managedFields, no
//! annotations), so a plan reads memory instead of listing thousands of bindings per request.
//!
//! A watch is eventually consistent, and a plan must never miss a binding created just before
//! its request. So a consistent read ([`super::View::read`]) first passes a [`Barrier`]: it
//! patches a sentinel binding and waits until its own watch delivers that change. A watch
//! delivers events in order, so by then the store holds every binding written before the read
//! began. One barrier write serves every read waiting when it starts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::Stream;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::barrier::{BARRIER_ANNOTATION, Barrier, BarrierError};
use super::by_subject::{self, BySubject, Filed};
use super::watch::{self as runner, Hook, Watched};
use crate::metrics::Metrics;
use crate::plan::subject::SubjectKey;

/// A binding change the view saw (as stripped for the view), for whoever subscribed.
#[derive(Clone, Debug)]
pub enum Change {
    /// A RoleBinding created or changed.
    RoleBinding(Arc<RoleBinding>),
    /// A ClusterRoleBinding created or changed.
    ClusterRoleBinding(Arc<ClusterRoleBinding>),
    /// A binding deleted: its namespace (RoleBindings) and name.
    Deleted(Option<String>, String),
    /// A relist of one kind ended: the index now holds the new list (each binding in it was sent
    /// as a change while it came; those it no longer holds vanished during the watch's gap). A
    /// subscriber that fell behind meanwhile reads every binding again now.
    Relisted,
}

/// How many changes a slow subscriber may fall behind before it is told it lagged.
const CHANGES_BUFFER: usize = 4096;

/// How a binding kind becomes a [`Change`].
trait Changed: Sized {
    fn changed(self: Arc<Self>) -> Change;
}
impl Changed for RoleBinding {
    fn changed(self: Arc<Self>) -> Change {
        Change::RoleBinding(self)
    }
}
impl Changed for ClusterRoleBinding {
    fn changed(self: Arc<Self>) -> Change {
        Change::ClusterRoleBinding(self)
    }
}

/// Bindings read for one reader.
#[derive(Debug, Default)]
pub struct Bindings {
    /// RoleBindings of the namespaces asked for.
    pub role_bindings: Vec<Arc<RoleBinding>>,
    /// Every ClusterRoleBinding (when asked for).
    pub cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
}

/// The two binding watches, what they file by subject, their barriers and their changes.
pub(super) struct BindingWatches {
    pub rb: Arc<Watched<RoleBinding>>,
    pub crb: Arc<Watched<ClusterRoleBinding>>,
    rb_by_subject: Arc<BySubject>,
    crb_by_subject: Arc<BySubject>,
    rb_barrier: Arc<Barrier<RoleBinding>>,
    crb_barrier: Arc<Barrier<ClusterRoleBinding>>,
    changes: broadcast::Sender<Change>,
    /// Counts changes to what the bindings grant (see [`BindingWatches::version`]).
    version: Arc<AtomicU64>,
}

/// Names of the binding watches in metrics and logs.
pub(super) const RB_WATCH: &str = "rolebindings";
/// See [`RB_WATCH`].
pub(super) const CRB_WATCH: &str = "clusterrolebindings";

impl BindingWatches {
    /// The watches kept by these two streams of watch events (the watches, or a test's own),
    /// their barriers written through `client` on the sentinels: a RoleBinding in `namespace`
    /// and a ClusterRoleBinding, both named `sentinel`, binding an empty ClusterRole to no one
    /// (the chart creates them).
    pub fn fed(
        client: &Client,
        namespace: &str,
        sentinel: &str,
        rb_events: impl Stream<Item = Result<Event<RoleBinding>, watcher::Error>> + Send + 'static,
        crb_events: impl Stream<Item = Result<Event<ClusterRoleBinding>, watcher::Error>> + Send + 'static,
        metrics: Option<Arc<Metrics>>,
        stop: &CancellationToken,
    ) -> BindingWatches {
        let instance = super::barrier::instance_id();
        let rb_api = Api::namespaced(client.clone(), namespace);
        let rb_barrier = Arc::new(Barrier::new(rb_api, sentinel, instance.clone(), Some(namespace)));
        let crb_barrier = Arc::new(Barrier::new(Api::all(client.clone()), sentinel, instance, None));
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        let version = Arc::new(AtomicU64::new(0));
        let (rb_by_subject, crb_by_subject) = (Arc::new(BySubject::default()), Arc::new(BySubject::default()));
        let hook = |by: &Arc<BySubject>| BindingHook {
            by_subject: by.clone(),
            changes: changes.clone(),
            version: version.clone(),
            changed: false,
        };
        let rb_hook = (hook(&rb_by_subject), rb_barrier.clone());
        let crb_hook = (hook(&crb_by_subject), crb_barrier.clone());
        let rb = runner::run(RB_WATCH, rb_events, strip::<RoleBinding>, rb_hook, metrics.clone(), stop);
        let crb = runner::run(CRB_WATCH, crb_events, strip::<ClusterRoleBinding>, crb_hook, metrics, stop);
        BindingWatches { rb, crb, rb_by_subject, crb_by_subject, rb_barrier, crb_barrier, changes, version }
    }

    /// Returns once the RoleBindings' store holds every RoleBinding written before `since`:
    /// waits (at most `timeout`) until a barrier can pass, then passes one.
    pub async fn pass_rb(&self, since: Instant, timeout: Duration) -> Result<(), BarrierError> {
        pass(&self.rb, &self.rb_barrier, since, timeout).await
    }

    /// As [`BindingWatches::pass_rb`], for ClusterRoleBindings.
    pub async fn pass_crb(&self, since: Instant, timeout: Duration) -> Result<(), BarrierError> {
        pass(&self.crb, &self.crb_barrier, since, timeout).await
    }

    /// The RoleBindings of `namespaces`, and every ClusterRoleBinding when `cluster`, as held now.
    pub fn bindings(&self, namespaces: &BTreeSet<String>, cluster: bool) -> Bindings {
        let in_scope = |b: &RoleBinding| b.metadata.namespace.as_ref().is_some_and(|ns| namespaces.contains(ns));
        Bindings {
            role_bindings: match namespaces.is_empty() {
                true => vec![],
                false => self.rb.store().state_filter(in_scope),
            },
            cluster_role_bindings: match cluster {
                true => self.crb.store().state(),
                false => vec![],
            },
        }
    }

    /// The bindings that may name one of `keys` (a subject filed under one of them; the caller
    /// still matches exactly): the RoleBindings of `namespaces` (of every namespace when `None`),
    /// and the ClusterRoleBindings when `cluster`. Costs what the matches cost, however many
    /// bindings there are.
    pub fn naming(
        &self,
        keys: &BTreeSet<SubjectKey>,
        namespaces: Option<&BTreeSet<String>>,
        cluster: bool,
    ) -> Bindings {
        let in_scope = |ns: &str| namespaces.is_none_or(|n| n.contains(ns));
        let role_bindings = match namespaces.is_some_and(BTreeSet::is_empty) {
            true => vec![],
            false => (self.rb_by_subject.ids(keys).into_iter())
                .filter_map(|(ns, name)| Some((ns?, name)))
                .filter(|(ns, _)| in_scope(ns))
                .filter_map(|(ns, name)| self.role_binding(&ns, &name))
                .collect(),
        };
        let cluster_role_bindings = match cluster {
            true => (self.crb_by_subject.ids(keys).into_iter())
                .filter_map(|(_, name)| self.cluster_role_binding(&name))
                .collect(),
            false => vec![],
        };
        Bindings { role_bindings, cluster_role_bindings }
    }

    /// One RoleBinding as held now (stripped: see [`strip`]).
    pub fn role_binding(&self, namespace: &str, name: &str) -> Option<Arc<RoleBinding>> {
        self.rb.store().get(&ObjectRef::new(name).within(namespace))
    }

    /// One ClusterRoleBinding as held now (stripped: see [`strip`]).
    pub fn cluster_role_binding(&self, name: &str) -> Option<Arc<ClusterRoleBinding>> {
        self.crb.store().get(&ObjectRef::new(name))
    }

    /// Every binding held now.
    pub fn all(&self) -> Bindings {
        Bindings { role_bindings: self.rb.store().state(), cluster_role_bindings: self.crb.store().state() }
    }

    /// Every change seen from now on (see [`super::View::subscribe`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// A number that changes whenever what the bindings grant changes (see
    /// [`super::Snapshot::version`]).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
}

/// Waits (at most `timeout`) until `watch` can pass a barrier, then passes `barrier`.
async fn pass<K>(
    watch: &Watched<K>,
    barrier: &Barrier<K>,
    since: Instant,
    timeout: Duration,
) -> Result<(), BarrierError>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + 'static,
{
    // A watch still listing (a replica starting, or relisting after an error) is waited for
    // within the same time: a reader that fell back to listing would read every binding in
    // scope in full, thousands at once after a restart.
    if !watch.until_barrier_can_pass(timeout).await {
        return Err(BarrierError::NotWatching { kind: Barrier::<K>::kind() });
    }
    barrier.pass(since, timeout).await?;
    // An event the watch could not read while the barrier was on its way is missing from the
    // store although the barrier's own event came: the read is not vouched for.
    match watch.health().can_barrier() {
        true => Ok(()),
        false => Err(BarrierError::NotWatching { kind: Barrier::<K>::kind() }),
    }
}

/// What the view keeps of a binding: everything planning reads, nothing else (annotations and
/// managedFields can be most of an object's size). The barrier's annotation stays on sentinels;
/// what tells who manages a binding stays too: Argo CD's and Helm's annotations, and of
/// managedFields only the entries that wrote `subjects`, without their field sets.
pub fn strip<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    if let Some(fields) = meta.managed_fields.as_mut() {
        fields.retain(|f| f.fields_v1.as_ref().is_some_and(|v| v.0.get("f:subjects").is_some()));
        fields.iter_mut().for_each(|f| f.fields_v1 = None);
    }
    if meta.managed_fields.as_ref().is_some_and(Vec::is_empty) {
        meta.managed_fields = None;
    }
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k == BARRIER_ANNOTATION || crate::plan::manager::KEPT_ANNOTATIONS.contains(&k.as_str()));
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// What a binding watch does besides keeping its store: files each binding by subject (before
/// the store applies an event, so the map can take out what the store held), raises the version
/// when an event changed what the bindings grant (after the store applied it, so nobody reads a
/// new version with the old bindings), then tells subscribers what changed.
struct BindingHook {
    by_subject: Arc<BySubject>,
    changes: broadcast::Sender<Change>,
    version: Arc<AtomicU64>,
    /// Whether the event being applied changes what the bindings grant.
    changed: bool,
}

impl<K> Hook<K> for (BindingHook, Arc<Barrier<K>>)
where
    K: Resource<DynamicType = ()>
        + Changed
        + Filed
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    fn before(&mut self, store: &Store<K>, ev: &Event<K>) {
        self.0.by_subject.apply(store, ev);
        self.0.changed = by_subject::changes_grants(store, ev);
    }

    fn after(&mut self, ev: Event<K>, _health: super::health::Health) {
        let (hook, barrier) = self;
        if std::mem::take(&mut hook.changed) {
            hook.version.fetch_add(1, Ordering::SeqCst);
        }
        barrier.saw(&ev);
        // Copied only while someone listens (the leader's re-grant watch, a verification waiting
        // for its removals to show).
        if hook.changes.receiver_count() > 0 {
            publish(&hook.changes, ev);
        }
    }
}

fn publish<K: Resource + Changed>(changes: &broadcast::Sender<Change>, ev: Event<K>) {
    let change = match ev {
        Event::Apply(o) | Event::InitApply(o) => Arc::new(o).changed(),
        Event::Delete(o) => Change::Deleted(o.meta().namespace.clone(), o.meta().name.clone().unwrap_or_default()),
        // A waiter looks again once the store holds the new list (it swaps at the list's end).
        Event::InitDone => Change::Relisted,
        Event::Init => return,
    };
    // No subscriber left: nothing to do.
    let _ = changes.send(change);
}
