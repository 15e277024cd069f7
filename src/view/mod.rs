//! The operator's one view of the cluster: every watch it keeps (RoleBindings,
//! ClusterRoleBindings, policies, namespaces; the unfinished requests join through the same
//! [`watch`] runner; the Lease aside), each with one [`health`] state machine, and one
//! consistent-read question that every reader asks: [`View::read`]`(since, need, reader)`. The
//! answer is a [`Snapshot`] to read from, or a [`Fallback`] saying why the reader must ask the
//! API server. No reader looks at a watch's health itself.
//!
//! - Bindings pass a **barrier** ([`barrier`]): a write to a sentinel binding the view's own
//!   watch must deliver before the read is answered; one write serves every read that began
//!   before it was sent, so concurrent readers (a burst of plans, the webhook's early barrier and
//!   its call's plan) share it, and only the kinds asked for are written.
//! - Policies and namespaces have no sentinel: they are answered while their watch is live.

mod barrier;
mod bindings;
mod by_subject;
pub mod health;
pub mod namespaces;
mod policies;
pub mod requests;
pub mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use barrier::{BARRIER_ANNOTATION, BarrierError};
use bindings::BindingWatches;
pub use bindings::{Bindings, Change, strip};
use watch::Watched;

use crate::crd::DeprovisionPolicy;
use crate::metrics::{FallbackLabels, Metrics, ReadLabels, WatchLabels};
use crate::plan::subject::SubjectKey;

/// How long a read waits for a barrier (and, before it, for a watch that cannot pass one yet)
/// before it falls back to the API server.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(3);

/// Which kinds a read needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// RoleBindings.
    pub role_bindings: bool,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: bool,
    /// DeprovisionPolicies.
    pub policies: bool,
    /// Namespaces.
    pub namespaces: bool,
}

impl Need {
    /// Both kinds of binding.
    pub const BINDINGS: Need =
        Need { role_bindings: true, cluster_role_bindings: true, policies: false, namespaces: false };
    /// The policies only.
    pub const POLICIES: Need =
        Need { role_bindings: false, cluster_role_bindings: false, policies: true, namespaces: false };
    /// The namespaces only.
    pub const NAMESPACES: Need =
        Need { role_bindings: false, cluster_role_bindings: false, policies: false, namespaces: true };

    /// The kinds of binding a plan's scope needs.
    pub fn bindings(role_bindings: bool, cluster_role_bindings: bool) -> Need {
        Need { role_bindings, cluster_role_bindings, ..Need::default() }
    }

    /// Whether any kind of binding is needed.
    fn any_binding(&self) -> bool {
        self.role_bindings || self.cluster_role_bindings
    }
}

/// How current a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Every binding written before this moment (when the Lumos call arrived; at the latest,
    /// now): a barrier. Any barrier write sent after it serves.
    Arrived(Instant),
    /// As current as a live watch (milliseconds behind); a binding watch that is not live but can
    /// pass a barrier (it failed and resumes) passes one from now.
    Live,
    /// What a live watch holds now: never a barrier write.
    Held,
}

/// Who reads (the `reader` label of `deprovisioner_reads_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The planner.
    Plan,
    /// The verification.
    Verify,
    /// The Lumos connector.
    Connector,
    /// The re-grant watch.
    Regrant,
    /// The binding executor (writes from the view's copy).
    Exec,
    /// The webhook (its early barrier).
    Webhook,
    /// The leader's expiry of time-bound access.
    Expiry,
}

impl Reader {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reader::Plan => "plan",
            Reader::Verify => "verify",
            Reader::Connector => "connector",
            Reader::Regrant => "regrant",
            Reader::Exec => "exec",
            Reader::Webhook => "webhook",
            Reader::Expiry => "expiry",
        }
    }
}

/// Why a read must go to the API server instead.
#[derive(Debug, thiserror::Error)]
pub enum Fallback {
    /// This process keeps no such watch (`--binding-index=false`).
    #[error("this process keeps no {watch} watch")]
    NotKept {
        /// The watch.
        watch: &'static str,
    },
    /// The watch is not live (listing, or it dropped an event; for `Since::Held`, also resuming
    /// after an error) and could not pass a barrier in time.
    #[error("the {watch} watch is not live")]
    NotLive {
        /// The watch.
        watch: &'static str,
    },
    /// The sentinel could not be written (missing, forbidden, API server unavailable).
    #[error("the {watch} barrier could not be written: {source}")]
    WriteFailed {
        /// The watch.
        watch: &'static str,
        /// The write's error.
        source: BarrierError,
    },
    /// The watch did not deliver the barrier in time.
    #[error("the {watch} watch did not deliver its barrier within {after:?}")]
    Slow {
        /// The watch.
        watch: &'static str,
        /// How long the read waited.
        after: Duration,
    },
}

impl Fallback {
    /// The `reason` label of `deprovisioner_barrier_fallbacks_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Fallback::NotKept { .. } => "not_kept",
            Fallback::NotLive { .. } => "not_live",
            Fallback::WriteFailed { .. } => "write_failed",
            Fallback::Slow { .. } => "slow",
        }
    }

    /// The watch that could not answer.
    pub fn watch(&self) -> &'static str {
        match self {
            Fallback::NotKept { watch }
            | Fallback::NotLive { watch }
            | Fallback::WriteFailed { watch, .. }
            | Fallback::Slow { watch, .. } => watch,
        }
    }

    fn of(watch: &'static str, e: BarrierError) -> Fallback {
        match e {
            BarrierError::NotWatching { .. } => Fallback::NotLive { watch },
            BarrierError::Slow { after, .. } => Fallback::Slow { watch, after },
            e @ BarrierError::Write { .. } => Fallback::WriteFailed { watch, source: e },
        }
    }
}

/// Every watch the operator keeps, and the one question readers ask of them.
pub struct View {
    /// The unfinished requests (every replica: webhook calls wait on them; the leader's
    /// controller reconciles them).
    pub requests: requests::Requests,
    bindings: Option<BindingWatches>,
    policies: Arc<Watched<DeprovisionPolicy>>,
    namespaces: Arc<Watched<Namespace>>,
    metrics: Option<Arc<Metrics>>,
}

/// What [`View::start`] needs to know.
pub struct Settings<'a> {
    /// The operator's namespace: the sentinel RoleBinding is there.
    pub namespace: &'a str,
    /// The sentinels' name (a RoleBinding in `namespace`, a ClusterRoleBinding; the chart
    /// creates both).
    pub sentinel: &'a str,
    /// Whether the bindings are kept (`--binding-index`; without, every binding read lists).
    pub bindings: bool,
    /// The field selector of unfinished requests (the only ones watched).
    pub unfinished: &'a str,
}

impl View {
    /// Starts every watch (they run until `stop`).
    pub fn start(
        client: &Client,
        settings: Settings<'_>,
        finished: Arc<crate::finished::Finished>,
        metrics: Arc<Metrics>,
        stop: &CancellationToken,
    ) -> Arc<View> {
        fn events<K>(client: &Client) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + use<K>
        where
            K: kube::Resource<DynamicType = ()>
                + Clone
                + std::fmt::Debug
                + serde::de::DeserializeOwned
                + Send
                + 'static,
        {
            watcher(Api::all(client.clone()), watcher::Config::default()).default_backoff()
        }
        let metrics = Some(metrics);
        let bindings = settings.bindings.then(|| {
            let (rb, crb) = (events::<RoleBinding>(client), events::<ClusterRoleBinding>(client));
            BindingWatches::fed(client, settings.namespace, settings.sentinel, rb, crb, metrics.clone(), stop)
        });
        let policies = policies::fed(events::<DeprovisionPolicy>(client), metrics.clone(), stop);
        let namespaces = namespaces::fed(events::<Namespace>(client), metrics.clone(), stop);
        let requests = requests::Requests::start(client, settings.unfinished, finished, metrics.clone(), stop);
        Arc::new(View { requests, bindings, policies, namespaces, metrics })
    }

    /// The view kept by these streams of watch events (a test's own), its barriers written
    /// through `client`.
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fed(
        client: &Client,
        namespace: &str,
        sentinel: &str,
        rb: impl futures::Stream<Item = Result<watcher::Event<RoleBinding>, watcher::Error>> + Send + 'static,
        crb: impl futures::Stream<Item = Result<watcher::Event<ClusterRoleBinding>, watcher::Error>> + Send + 'static,
        policies: impl futures::Stream<Item = Result<watcher::Event<DeprovisionPolicy>, watcher::Error>> + Send + 'static,
        namespaces: impl futures::Stream<Item = Result<watcher::Event<Namespace>, watcher::Error>> + Send + 'static,
        metrics: Option<Arc<Metrics>>,
        stop: &CancellationToken,
    ) -> Arc<View> {
        let bindings = Some(BindingWatches::fed(client, namespace, sentinel, rb, crb, metrics.clone(), stop));
        let policies = policies::fed(policies, metrics.clone(), stop);
        let namespaces = namespaces::fed(namespaces, metrics.clone(), stop);
        // No request is unfinished in these tests' worlds.
        let listed: [Result<watcher::Event<crate::crd::DeprovisionRequest>, watcher::Error>; 2] =
            [Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)];
        let listed = futures::StreamExt::chain(futures::stream::iter(listed), futures::stream::pending());
        let requests = requests::Requests::fed(listed, crate::finished::Finished::new(), metrics.clone(), stop);
        Arc::new(View { requests, bindings, policies, namespaces, metrics })
    }

    /// The policies as their watch holds them now, vouched for by nothing: what the leader's
    /// policy controller reconciles (with [`Watched::applied`]) shares this watch.
    pub fn policies_watch(&self) -> &Arc<Watched<DeprovisionPolicy>> {
        &self.policies
    }

    /// Whether every watch has listed once: `/readyz` waits for it (in a rolling upgrade the old
    /// replica works until the new one can). After that, nothing about the watches makes a
    /// replica unready: readers fall back to the API server meanwhile.
    pub fn is_ready(&self) -> bool {
        let bindings = self.bindings.as_ref().is_none_or(|b| b.rb.health().listed_once && b.crb.health().listed_once);
        let requests = self.requests.watched.health().listed_once;
        bindings && requests && self.policies.health().listed_once && self.namespaces.health().listed_once
    }

    /// The one consistent-read question: a [`Snapshot`] holding what `need` asks for, as current
    /// as `since` asks, or why the reader must read the API server. Every read is counted in
    /// `reads{reader,source}`, every fallback in `barrier_fallbacks{watch,reason}`, every barrier
    /// wait in `barrier_seconds{watch}`.
    pub async fn read(&self, since: Since, need: Need, reader: Reader) -> Result<Snapshot<'_>, Fallback> {
        let checked = self.check(since, need).await;
        if let Err(f) = &checked {
            tracing::debug!(reader = reader.as_str(), watch = f.watch(), error = %f, "read from the API server instead of the view");
        }
        self.count(reader, checked.is_ok());
        checked.map(|()| Snapshot { view: self })
    }

    /// Counts a read the reader made from the API server for a reason of its own (none of the
    /// policies in memory matched, say).
    pub fn read_from_api(&self, reader: Reader) {
        self.count(reader, false);
    }

    /// The webhook's early barrier, for the plan of a call it hands to the controller here:
    /// passes the barriers of the kinds `need` says the policies in memory select, as
    /// [`View::read`] would, and shares their writes with it (the plan's read, with the same
    /// `since`, waits for this write instead of sending its own). Nothing is sent unless the
    /// policies are live and each binding watch can pass a barrier now; nothing is counted as a
    /// read (the plan's own read is).
    pub async fn prepare(
        &self,
        since: Instant,
        need: impl FnOnce(&[DeprovisionPolicy]) -> Need,
    ) -> Result<(), Fallback> {
        let b = self.bindings.as_ref().ok_or(Fallback::NotKept { watch: "bindings" })?;
        if !self.policies.health().is_live() {
            return Err(Fallback::NotLive { watch: policies::WATCH });
        }
        let need = need(&Snapshot { view: self }.policies());
        let can = |h: health::Health| h.can_barrier();
        if need.role_bindings && !can(b.rb.health()) {
            return Err(Fallback::NotLive { watch: bindings::RB_WATCH });
        }
        if need.cluster_role_bindings && !can(b.crb.health()) {
            return Err(Fallback::NotLive { watch: bindings::CRB_WATCH });
        }
        self.check(Since::Arrived(since), Need::bindings(need.role_bindings, need.cluster_role_bindings)).await
    }

    /// What the watches hold now, vouched for by nothing: for a reader that follows every change
    /// from here on anyway (the re-grant watch's pass when its barrier could not pass). `None`
    /// when the bindings are not kept.
    pub fn unvouched(&self, reader: Reader) -> Option<Snapshot<'_>> {
        self.bindings.as_ref()?;
        self.count(reader, true);
        Some(Snapshot { view: self })
    }

    /// Every binding change seen from now on (`None`: the bindings are not kept). A subscriber
    /// that falls more than a few thousand changes behind is told it lagged, and should read
    /// every binding again, and again at the next [`Change::Relisted`].
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        self.bindings.as_ref().map(BindingWatches::subscribe)
    }

    fn count(&self, reader: Reader, from_view: bool) {
        if let Some(m) = &self.metrics {
            let source = if from_view { "view" } else { "api" };
            m.reads.get_or_create(&ReadLabels { reader: reader.as_str(), source }).inc();
        }
    }

    async fn check(&self, since: Since, need: Need) -> Result<(), Fallback> {
        for (needed, health, watch) in [
            (need.policies, self.policies.health(), policies::WATCH),
            (need.namespaces, self.namespaces.health(), namespaces::WATCH),
        ] {
            if needed && !health.is_live() {
                return self.fell_back(Fallback::NotLive { watch });
            }
        }
        if !need.any_binding() {
            return Ok(());
        }
        let Some(b) = self.bindings.as_ref() else {
            return Err(Fallback::NotKept { watch: "bindings" });
        };
        let rb = async {
            match need.role_bindings {
                true => self.current(since, &b.rb, bindings::RB_WATCH, |at| b.pass_rb(at, BARRIER_TIMEOUT)).await,
                false => Ok(()),
            }
        };
        let crb = async {
            match need.cluster_role_bindings {
                true => self.current(since, &b.crb, bindings::CRB_WATCH, |at| b.pass_crb(at, BARRIER_TIMEOUT)).await,
                false => Ok(()),
            }
        };
        let (rb, crb) = futures::join!(rb, crb);
        rb.and(crb)
    }

    /// Whether one binding watch is as current as `since` asks (passing its barrier if needed).
    async fn current<K, F>(
        &self,
        since: Since,
        w: &Watched<K>,
        watch: &'static str,
        pass: impl FnOnce(Instant) -> F,
    ) -> Result<(), Fallback>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
        F: Future<Output = Result<(), BarrierError>>,
    {
        let health = w.health();
        let at = match since {
            Since::Held | Since::Live if health.is_live() => return Ok(()),
            Since::Held => return self.fell_back(Fallback::NotLive { watch }),
            Since::Live if !health.can_barrier() => return self.fell_back(Fallback::NotLive { watch }),
            Since::Live => Instant::now(),
            Since::Arrived(at) => at,
        };
        let began = Instant::now();
        let passed = pass(at).await;
        if let Some(m) = &self.metrics {
            m.barrier_seconds.get_or_create(&WatchLabels { watch }).observe(began.elapsed().as_secs_f64());
        }
        passed.or_else(|e| self.fell_back(Fallback::of(watch, e)))
    }

    fn fell_back(&self, f: Fallback) -> Result<(), Fallback> {
        if let Some(m) = &self.metrics {
            m.barrier_fallbacks.get_or_create(&FallbackLabels { watch: f.watch(), reason: f.reason() }).inc();
        }
        Err(f)
    }
}

/// What a read may use: the watches' stores, as current as the read asked (at the moment it was
/// answered; they move on as the watches deliver). Reads of a kind the read did not ask for are
/// not vouched for.
pub struct Snapshot<'a> {
    view: &'a View,
}

impl Snapshot<'_> {
    fn bindings_kept(&self) -> Option<&BindingWatches> {
        self.view.bindings.as_ref()
    }

    /// The policies.
    pub fn policies(&self) -> Vec<DeprovisionPolicy> {
        self.view.policies.store().state().iter().map(|p| (**p).clone()).collect()
    }

    /// The namespaces (name, uid, labels).
    pub fn namespaces(&self) -> Vec<Namespace> {
        self.view.namespaces.store().state().iter().map(|n| (**n).clone()).collect()
    }

    /// The RoleBindings of `namespaces`, and every ClusterRoleBinding when `cluster`.
    pub fn bindings(&self, namespaces: &BTreeSet<String>, cluster: bool) -> Bindings {
        self.bindings_kept().map(|b| b.bindings(namespaces, cluster)).unwrap_or_default()
    }

    /// The bindings that may name one of `keys` (a subject filed under one of them; the caller
    /// still matches exactly): the RoleBindings of `namespaces` (every namespace when `None`),
    /// and the ClusterRoleBindings when `cluster`. Costs what the matches cost, however many
    /// bindings there are.
    pub fn naming(
        &self,
        keys: &BTreeSet<SubjectKey>,
        namespaces: Option<&BTreeSet<String>>,
        cluster: bool,
    ) -> Bindings {
        self.bindings_kept().map(|b| b.naming(keys, namespaces, cluster)).unwrap_or_default()
    }

    /// One RoleBinding (stripped: see [`strip`]).
    pub fn role_binding(&self, namespace: &str, name: &str) -> Option<Arc<RoleBinding>> {
        self.bindings_kept()?.role_binding(namespace, name)
    }

    /// One ClusterRoleBinding (stripped: see [`strip`]).
    pub fn cluster_role_binding(&self, name: &str) -> Option<Arc<ClusterRoleBinding>> {
        self.bindings_kept()?.cluster_role_binding(name)
    }

    /// Every binding.
    pub fn all(&self) -> Bindings {
        self.bindings_kept().map(BindingWatches::all).unwrap_or_default()
    }

    /// Every binding change seen from now on (see [`View::subscribe`]).
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        self.view.subscribe()
    }

    /// A number that changes whenever what the bindings grant changes (a binding created,
    /// deleted, or changed in its roleRef or subjects; a relist), and only then: a barrier's
    /// write does not change it. It is raised after the store applied the change, so two equal
    /// values read after a consistent read mean the same grants, and what was computed from
    /// [`Snapshot::all`] read after the first still holds.
    pub fn version(&self) -> u64 {
        self.bindings_kept().map_or(0, BindingWatches::version)
    }

    /// How many bindings are held (RoleBindings, ClusterRoleBindings).
    pub fn len(&self) -> (usize, usize) {
        let all = self.all();
        (all.role_bindings.len(), all.cluster_role_bindings.len())
    }
}

#[cfg(test)]
mod tests;
