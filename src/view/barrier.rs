//! The consistent-read barrier: a write to a sentinel object, then a wait until the view's own
//! watch has delivered it. Events of one watch arrive in order, so once the write is seen, every
//! write that finished before it began is in the index too.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::runtime::watcher::Event;
use kube::{Api, Resource, ResourceExt};
use tokio::sync::watch;

/// The sentinel's annotation: `<instance>/<generation>` of the last barrier written.
pub const BARRIER_ANNOTATION: &str = "deprovisioner.dev/index-barrier";

/// Why a barrier did not pass.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// The sentinel could not be written (missing, forbidden, API server unavailable).
    #[error("could not write the index barrier {kind}/{name}: {source}")]
    Write {
        /// The sentinel's kind.
        kind: &'static str,
        /// The sentinel's name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The watch is not running (starting, relisting, or it dropped an event it could not
    /// read): nothing it holds can be vouched for.
    #[error("the {kind} watch is not running")]
    NotWatching {
        /// The sentinel's kind.
        kind: &'static str,
    },
    /// The watch did not deliver the write in time.
    #[error("the {kind} watch did not deliver the index barrier within {after:?}")]
    Slow {
        /// The sentinel's kind.
        kind: &'static str,
        /// How long it waited.
        after: Duration,
    },
}

/// A name for this process's barrier writes, unique among replicas and restarts.
pub(super) fn instance_id() -> String {
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{pid}-{nanos:x}")
}

/// One kind's barrier.
pub(super) struct Barrier<K> {
    api: Api<K>,
    /// The sentinel's name.
    name: String,
    instance: String,
    namespace: Option<String>,
    /// Generations of barrier writes begun.
    started: AtomicU64,
    /// The last write begun: its generation, and when it was sent.
    last_begun: Mutex<Option<(u64, Instant)>>,
    /// The highest generation the watch has delivered (and the store applied).
    seen: watch::Sender<u64>,
    /// The last generation whose write failed: readers sharing it give up at once.
    failed: watch::Sender<u64>,
    /// Generations seen during a relist, applied to the store only at its end.
    relisted: Mutex<Option<u64>>,
    /// One write at a time: a plan waiting behind a write that began after it arrived is served
    /// by that write.
    writing: tokio::sync::Mutex<()>,
}

impl<K> Barrier<K>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    pub fn new(api: Api<K>, name: &str, instance: String, namespace: Option<&str>) -> Barrier<K> {
        Barrier {
            api,
            name: name.to_string(),
            instance,
            namespace: namespace.map(str::to_string),
            started: AtomicU64::new(0),
            last_begun: Mutex::new(None),
            seen: watch::channel(0).0,
            failed: watch::channel(0).0,
            relisted: Mutex::new(None),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn kind() -> &'static str {
        match K::kind(&()).as_ref() {
            "RoleBinding" => "RoleBinding",
            _ => "ClusterRoleBinding",
        }
    }

    /// Returns once the store holds every binding written before `since` (at the latest, the
    /// moment of this call). Any barrier write sent after `since` proves it, so a plan whose
    /// Lumos call arrived before a write already in flight began waits for that write instead
    /// of sending its own: a burst of calls is served by a few writes. The caller has checked
    /// that the watch can pass a barrier ([`super::health::Health::can_barrier`]).
    ///
    /// `timeout` bounds the whole of it: waiting for another reader's write, writing, and waiting
    /// for the watch. One write at a time is sent; the next may be sent as soon as it returns.
    pub async fn pass(&self, since: Instant, timeout: Duration) -> Result<(), BarrierError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let slow = || BarrierError::Slow { kind: Self::kind(), after: timeout };
        if let Some(generation) = self.begun_after(since) {
            return self.seen_by(generation, deadline, timeout).await;
        }
        let generation = {
            let _writing = tokio::time::timeout_at(deadline, self.writing.lock()).await.map_err(|_| slow())?;
            // The write this call waited behind may have begun after `since`.
            if let Some(generation) = self.begun_after(since) {
                drop(_writing);
                return self.seen_by(generation, deadline, timeout).await;
            }
            let generation = self.started.fetch_add(1, Ordering::SeqCst) + 1;
            *self.last_begun.lock().unwrap_or_else(|p| p.into_inner()) = Some((generation, Instant::now()));
            let value = format!("{}/{generation}", self.instance);
            let patch = serde_json::json!({ "metadata": { "annotations": { BARRIER_ANNOTATION: value } } });
            let pp = PatchParams::default();
            let patch = Patch::Merge(&patch);
            let write = self.api.patch(&self.name, &pp, &patch);
            let written = match tokio::time::timeout_at(deadline, write).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(source)) => Err(BarrierError::Write { kind: Self::kind(), name: self.name.clone(), source }),
                Err(_) => Err(slow()),
            };
            if let Err(e) = written {
                // Nobody waits for a write that failed: readers sharing it give up now, and the
                // next reader sends its own.
                let mut last = self.last_begun.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_some_and(|(g, _)| g == generation) {
                    *last = None;
                }
                self.failed.send_replace(generation);
                return Err(e);
            }
            generation
        };
        self.seen_by(generation, deadline, timeout).await
    }

    /// The last write begun, when it was sent at or after `since`.
    fn begun_after(&self, since: Instant) -> Option<u64> {
        let last = *self.last_begun.lock().unwrap_or_else(|p| p.into_inner());
        last.filter(|(_, at)| *at >= since).map(|(generation, _)| generation)
    }

    /// Waits until the watch has delivered the write of `generation`, at most until `deadline`;
    /// gives up at once when that write failed (it is never seen).
    async fn seen_by(
        &self,
        generation: u64,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(), BarrierError> {
        let (mut seen, mut failed) = (self.seen.subscribe(), self.failed.subscribe());
        let delivered = seen.wait_for(|s| *s >= generation);
        let lost = failed.wait_for(|f| *f == generation);
        let outcome = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                biased;
                d = delivered => d.is_ok(),
                _ = lost => false,
            }
        });
        match outcome.await {
            Ok(true) => Ok(()),
            _ => Err(BarrierError::Slow { kind: Self::kind(), after: timeout }),
        }
    }

    /// The highest generation seen.
    #[cfg(test)]
    pub fn seen(&self) -> u64 {
        *self.seen.borrow()
    }

    /// The generation of this instance's barrier on `obj`, if it is the sentinel.
    fn generation_on(&self, obj: &K) -> Option<u64> {
        if obj.name_any() != self.name || obj.namespace() != self.namespace {
            return None;
        }
        let value = obj.annotations().get(BARRIER_ANNOTATION)?;
        let (instance, generation) = value.rsplit_once('/')?;
        (instance == self.instance).then(|| generation.parse().ok())?
    }

    fn mark_seen(&self, generation: u64) {
        self.seen.send_if_modified(|s| {
            let newer = generation > *s;
            *s = (*s).max(generation);
            newer
        });
    }

    /// Called with every event after the store has applied it.
    pub fn saw(&self, ev: &Event<K>) {
        let mut relisted = self.relisted.lock().unwrap_or_else(|p| p.into_inner());
        match ev {
            Event::Apply(obj) => {
                if let Some(g) = self.generation_on(obj) {
                    self.mark_seen(g);
                }
            }
            // A list begins: the store is whole again at its end.
            Event::Init => *relisted = None,
            Event::InitApply(obj) => {
                if let Some(g) = self.generation_on(obj) {
                    *relisted = Some(g);
                }
            }
            // The store now holds the whole relist.
            Event::InitDone => {
                if let Some(g) = relisted.take() {
                    self.mark_seen(g);
                }
            }
            Event::Delete(_) => {}
        }
    }
}
