//! The binding index: every RoleBinding and ClusterRoleBinding in the cluster, kept current by
//! two watches and stripped to what planning reads (no managedFields, no annotations), so a plan
//! reads memory instead of listing thousands of bindings per request.
//!
//! A watch is eventually consistent, and a plan must never miss a binding created just before
//! its request. So [`BindingIndex::observe`] first passes a [`barrier`]: it patches a sentinel
//! binding and waits until its own watch delivers that change. A watch delivers events in order,
//! so by then the index holds every binding written before the plan started. One barrier write
//! serves every plan waiting when it starts. When the barrier cannot pass (the sentinel is
//! missing, or the watch is slow) the caller reads the API server directly instead.

mod barrier;
mod by_subject;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use barrier::Barrier;
pub use barrier::{BARRIER_ANNOTATION, BarrierError};
use by_subject::{BySubject, Filed};

use crate::plan::subject::SubjectKey;

/// How long a plan waits for the barrier before reading the API server directly.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(3);

/// Every binding in the cluster, as last seen by the watches.
pub struct BindingIndex {
    role_bindings: Store<RoleBinding>,
    cluster_role_bindings: Store<ClusterRoleBinding>,
    rb_by_subject: Arc<BySubject>,
    crb_by_subject: Arc<BySubject>,
    rb_barrier: Arc<Barrier<RoleBinding>>,
    crb_barrier: Arc<Barrier<ClusterRoleBinding>>,
    changes: broadcast::Sender<Change>,
    /// Counts changes to what the bindings grant (see [`BindingIndex::version`]).
    version: Arc<AtomicU64>,
}

/// A binding change the index saw (as stripped for the index), for whoever subscribed.
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
    /// subscriber that fell behind meanwhile reads [`BindingIndex::all`] again now.
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

/// Bindings read for one plan.
#[derive(Debug, Default)]
pub struct Bindings {
    /// RoleBindings of the namespaces asked for.
    pub role_bindings: Vec<Arc<RoleBinding>>,
    /// Every ClusterRoleBinding (when asked for).
    pub cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
}

impl BindingIndex {
    /// Starts the two watches (they run until `stop`). The sentinels are a RoleBinding in
    /// `namespace` and a ClusterRoleBinding, both named `sentinel`, binding an empty ClusterRole
    /// to no one (the chart creates them).
    pub fn start(client: &Client, namespace: &str, sentinel: &str, stop: &CancellationToken) -> Arc<BindingIndex> {
        let rb_events = watcher(Api::all(client.clone()), watcher::Config::default()).default_backoff();
        let crb_events = watcher(Api::all(client.clone()), watcher::Config::default()).default_backoff();
        BindingIndex::fed(client, namespace, sentinel, rb_events, crb_events, stop)
    }

    /// The index kept by these two streams of watch events (the watches, or a test's own), its
    /// barriers written through `client`.
    pub(crate) fn fed(
        client: &Client,
        namespace: &str,
        sentinel: &str,
        rb_events: impl Stream<Item = Result<watcher::Event<RoleBinding>, watcher::Error>> + Send + 'static,
        crb_events: impl Stream<Item = Result<watcher::Event<ClusterRoleBinding>, watcher::Error>> + Send + 'static,
        stop: &CancellationToken,
    ) -> Arc<BindingIndex> {
        let instance = barrier::instance_id();
        let rb_api = Api::namespaced(client.clone(), namespace);
        let rb_barrier = Arc::new(Barrier::new(rb_api, sentinel, instance.clone(), Some(namespace)));
        let crb_barrier = Arc::new(Barrier::new(Api::all(client.clone()), sentinel, instance, None));
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        let version = Arc::new(AtomicU64::new(0));
        let (role_bindings, rb_by_subject) =
            watch(rb_events, rb_barrier.clone(), changes.clone(), version.clone(), stop);
        let (cluster_role_bindings, crb_by_subject) =
            watch(crb_events, crb_barrier.clone(), changes.clone(), version.clone(), stop);
        Arc::new(BindingIndex {
            role_bindings,
            cluster_role_bindings,
            rb_by_subject,
            crb_by_subject,
            rb_barrier,
            crb_barrier,
            changes,
            version,
        })
    }

    /// Returns once the index holds every binding written before `since` (when the Lumos call
    /// arrived; at the latest, now), of the kinds asked for (RoleBindings, ClusterRoleBindings):
    /// only their barriers are written.
    pub async fn sync(
        &self,
        since: Instant,
        role_bindings: bool,
        cluster_role_bindings: bool,
    ) -> Result<(), BarrierError> {
        let rb = async {
            match role_bindings {
                true => self.rb_barrier.pass(since, BARRIER_TIMEOUT).await,
                false => Ok(()),
            }
        };
        let crb = async {
            match cluster_role_bindings {
                true => self.crb_barrier.pass(since, BARRIER_TIMEOUT).await,
                false => Ok(()),
            }
        };
        let (rb, crb) = futures::join!(rb, crb);
        rb.and(crb)
    }

    /// The RoleBindings of `namespaces`, and every ClusterRoleBinding when `cluster`, as the
    /// index holds them now (call [`BindingIndex::sync`] first for a consistent read).
    pub fn bindings(&self, namespaces: &BTreeSet<String>, cluster: bool) -> Bindings {
        let in_scope = |b: &RoleBinding| b.metadata.namespace.as_ref().is_some_and(|ns| namespaces.contains(ns));
        Bindings {
            role_bindings: match namespaces.is_empty() {
                true => vec![],
                false => self.role_bindings.state_filter(in_scope),
            },
            cluster_role_bindings: match cluster {
                true => self.cluster_role_bindings.state(),
                false => vec![],
            },
        }
    }

    /// The bindings that may name one of `keys` (a subject filed under one of them; the caller
    /// still matches exactly): the RoleBindings of `namespaces` (of every namespace when `None`),
    /// and the ClusterRoleBindings when `cluster`. Costs what the matches cost, however many
    /// bindings there are (call [`BindingIndex::sync`] first for a consistent read).
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

    /// One RoleBinding as the index holds it now (stripped: see [`strip`]).
    pub fn role_binding(&self, namespace: &str, name: &str) -> Option<Arc<RoleBinding>> {
        self.role_bindings.get(&ObjectRef::new(name).within(namespace))
    }

    /// One ClusterRoleBinding as the index holds it now (stripped: see [`strip`]).
    pub fn cluster_role_binding(&self, name: &str) -> Option<Arc<ClusterRoleBinding>> {
        self.cluster_role_bindings.get(&ObjectRef::new(name))
    }

    /// Every binding the index holds now (call [`BindingIndex::sync`] first for a consistent
    /// read).
    pub fn all(&self) -> Bindings {
        Bindings {
            role_bindings: self.role_bindings.state(),
            cluster_role_bindings: self.cluster_role_bindings.state(),
        }
    }

    /// Whether both watches have listed once: `/readyz` waits for it (in a rolling upgrade the old
    /// replica works until the new one can). A relist, or an event the client could not read,
    /// does not make a replica unready: its plans list from the API server meanwhile.
    pub fn is_listed(&self) -> bool {
        self.rb_barrier.is_listed() && self.crb_barrier.is_listed()
    }

    /// Whether both watches have listed and are not listing again: until then every plan reads
    /// the API server instead. A watch error that the watcher resumes from (it loses nothing)
    /// does not end it.
    pub fn is_watching(&self) -> bool {
        self.rb_barrier.is_watching() && self.crb_barrier.is_watching()
    }

    /// Whether both watches are watching and have delivered since their last error: a reader
    /// without a barrier (the verification) may then trust the index as it trusts a watch; a
    /// watch cut off from the API server (still watching: it will resume) is not current.
    pub fn is_current(&self) -> bool {
        self.rb_barrier.is_current() && self.crb_barrier.is_current()
    }

    /// Every change the index sees from now on (a subscriber that falls more than a few thousand
    /// changes behind is told it lagged, and should read [`BindingIndex::all`] again, and again
    /// at the next [`Change::Relisted`]: while a relist comes, the index still holds the old list).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// A number that changes whenever what the index's bindings grant changes (a binding
    /// created, deleted, or changed in its roleRef or subjects; a relist), and only then: a
    /// barrier's write does not change it. It is raised after the store applied the change, so
    /// two equal values read after [`BindingIndex::sync`] mean the same grants, and what was
    /// computed from [`BindingIndex::all`] read after the first still holds.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// How many bindings the index holds (RoleBindings, ClusterRoleBindings).
    pub fn len(&self) -> (usize, usize) {
        (self.role_bindings.state().len(), self.cluster_role_bindings.state().len())
    }
}

/// What the index keeps of a binding: everything planning reads, nothing else (annotations and
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

/// Runs one watch's events into a store and its [`BySubject`] map (filed before the store
/// applies an event, so the map can take out what the store held), raising `version` when an
/// event changed what the bindings grant, then telling the barrier what it sees (once both hold
/// it, and the version is raised) and subscribers what changed.
fn watch<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    barrier: Arc<Barrier<K>>,
    changes: broadcast::Sender<Change>,
    version: Arc<AtomicU64>,
    stop: &CancellationToken,
) -> (Store<K>, Arc<BySubject>)
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
    let (store, writer) = reflector::store();
    let by_subject = Arc::new(BySubject::default());
    let (reader, filing) = (store.clone(), by_subject.clone());
    // Judged before the store applies the event (it compares with what the store held); the
    // version is raised after, so nobody reads a new version with the old bindings.
    let changed = Arc::new(AtomicBool::new(false));
    let marking = changed.clone();
    let stream = (events.modify(strip::<K>))
        .map_ok(move |ev| {
            filing.apply(&reader, &ev);
            if by_subject::changes_grants(&reader, &ev) {
                marking.store(true, Ordering::SeqCst);
            }
            ev
        })
        .reflect(writer);
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => {
                        if changed.swap(false, Ordering::SeqCst) {
                            version.fetch_add(1, Ordering::SeqCst);
                        }
                        barrier.saw(&ev);
                        // Copied only while someone listens (the leader's re-grant watch, a
                        // verification waiting for its removals to show).
                        if changes.receiver_count() > 0 {
                            publish(&changes, ev);
                        }
                    }
                    // The watcher resumes where it was, or lists again (and says so with `Init`).
                    Some(Err(e)) => {
                        barrier.watch_failed(lost_an_event(&e));
                        tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "binding watch failed; retrying");
                    }
                    None => return,
                },
            }
        }
    });
    (store, by_subject)
}

/// Whether a watch error dropped an event: a line the client could not read is skipped, and the
/// watch goes on after it.
fn lost_an_event(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchFailed(kube::Error::SerdeError(_)))
}

fn publish<K: Resource + Changed>(changes: &broadcast::Sender<Change>, ev: watcher::Event<K>) {
    let change = match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => Arc::new(o).changed(),
        watcher::Event::Delete(o) => {
            Change::Deleted(o.meta().namespace.clone(), o.meta().name.clone().unwrap_or_default())
        }
        // A waiter looks again once the store holds the new list (it swaps at the list's end).
        watcher::Event::InitDone => Change::Relisted,
        watcher::Event::Init => return,
    };
    // No subscriber left: nothing to do.
    let _ = changes.send(change);
}

#[cfg(test)]
mod tests;
