//! Writes the ledger's shards to ConfigMaps, and says when a batch's sightings are stored: the
//! receiver answers the API server only then, so an acknowledged event is never lost to a crash.
//!
//! One writer task per process takes every batch waiting when it starts a write (group commit:
//! batches arriving during a write join the next one). It keeps each shard as last stored, with
//! its resourceVersion, and writes only the shards whose content changed under
//! [`Shard::record`]'s resolution, so an account busy all day changes its shard once per
//! resolution (the operator's own writes, themselves audited, included). A write replaces the
//! stored copy at its resourceVersion (creates a missing one); a conflict (another replica wrote
//! it) reads the stored copy, [`Shard::absorb`]s it and writes again: every replica may write.
//!
//! A batch the audit endpoint received ([`Flusher::received`]) also says that events were
//! arriving: once its sightings are stored, the status object `<prefix>-status` records it
//! ([`Coverage`]: the current unbroken stream of batches, `heardAt` moved at most once per
//! resolution, read again and decided again on a conflict), and at the first such batch every
//! shard not stored yet is stored, dated then. Nothing is dated from the process's start.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{mpsc, oneshot};

use super::Shard;
use super::event::Sighting;
use super::ledger::{COMPONENT, DATA_KEY, SHARDS, object_name, shard_of};
use crate::metrics::{Metrics, WriteLabels};
use deprovisioner_core::activity::coverage::{Coverage, Next, STATUS_KEY, status_name};

/// Largest stored size of one shard (about; a ConfigMap holds at most 1 MiB with its metadata).
pub const MAX_SHARD_BYTES: usize = 900 * 1024;

/// Tries of one shard's write when other replicas keep writing it first.
const MAX_TRIES: usize = 5;

/// Shards written at once.
const WRITES_AT_ONCE: usize = 4;

/// Batches waiting for the writer; more wait for room (the receiver bounds its calls anyway).
const QUEUE: usize = 256;

/// Where and how the shards are kept.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// The namespace of the ConfigMaps (the operator's).
    pub namespace: String,
    /// Their names' prefix: `<prefix>-NN` ([`object_name`]).
    pub prefix: String,
    /// A stored sighting is replaced only by one at least this much later.
    pub resolution: Duration,
    /// Accounts kept in all (each shard keeps its share, the least recently seen forgotten).
    pub max_accounts: usize,
    /// A silence (no batch at all) longer than this, plus the resolution, ends the stream of
    /// batches the store claims to have observed.
    pub gap: Duration,
}

/// Where the writer reads the time: when a shard is created, when a batch was stored.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system's clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

impl StoreSettings {
    /// Accounts one shard keeps.
    pub fn per_shard(&self) -> usize {
        self.max_accounts.div_ceil(usize::from(SHARDS)).max(1)
    }
}

/// Why a batch could not be stored (the receiver answers 503; the sender sends it again).
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The API server refused or failed a read or write of a shard.
    #[error("storing activity shard {name}: {source}")]
    Api {
        /// The ConfigMap.
        name: String,
        /// What the API server said.
        #[source]
        source: kube::Error,
    },
    /// Other writers kept writing the shard first.
    #[error("storing activity shard {name}: other writers won {MAX_TRIES} times in a row")]
    Contended {
        /// The ConfigMap.
        name: String,
    },
    /// The writer has stopped (the process is ending).
    #[error("the activity writer has stopped")]
    Stopped,
}

/// One batch's sightings and whom to tell once they are stored.
struct Batch {
    sightings: Vec<Sighting>,
    /// Also store every shard not stored yet ([`Flusher::store_every_shard`]).
    every_shard: bool,
    /// The audit endpoint received it: events are arriving ([`Flusher::received`]).
    heard: bool,
    done: oneshot::Sender<Result<(), Arc<FlushError>>>,
}

/// The handle batches are committed through; the writer ends once every handle is dropped (after
/// writing what was committed).
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Batch>,
}

impl Flusher {
    /// Starts the writer; `clock` dates the shards it creates and the batches it stores.
    pub fn start(
        client: Client,
        settings: StoreSettings,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> (Flusher, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let api = Api::namespaced(client, &settings.namespace);
        let writer =
            Writer { api, settings, metrics, clock, cache: HashMap::new(), status: None, every_shard_stored: false };
        (Flusher { tx }, tokio::spawn(writer.run(rx)))
    }

    /// Returns once `sightings` are stored (or could not be).
    pub async fn commit(&self, sightings: Vec<Sighting>) -> Result<(), Arc<FlushError>> {
        self.send(sightings, false, false).await
    }

    /// Returns once the sightings of a batch the audit endpoint received are stored (or could
    /// not be); then also records in the status object that a batch arrived (a failure there is
    /// logged, not the batch's: its sightings are stored).
    pub async fn received(&self, sightings: Vec<Sighting>) -> Result<(), Arc<FlushError>> {
        self.send(sightings, false, true).await
    }

    async fn send(&self, sightings: Vec<Sighting>, every_shard: bool, heard: bool) -> Result<(), Arc<FlushError>> {
        let (done, stored) = oneshot::channel();
        let batch = Batch { sightings, every_shard, heard, done };
        self.tx.send(batch).await.map_err(|_| Arc::new(FlushError::Stopped))?;
        stored.await.unwrap_or_else(|_| Err(Arc::new(FlushError::Stopped)))
    }

    /// Stores every shard not stored yet, empty and recording from when it is written, so that
    /// an account never seen acting reads "not seen since recording began" (provably idle once
    /// that is long enough ago) rather than "not recorded". Returns once they are stored.
    pub async fn store_every_shard(&self) -> Result<(), Arc<FlushError>> {
        self.send(Vec::new(), true, false).await
    }
}

/// A shard as this replica last stored or read it.
#[derive(Debug, Clone)]
struct Cached {
    shard: Shard,
    /// Its resourceVersion; `None` when it is not stored (create it).
    version: Option<String>,
}

/// The status object as this replica last stored or read it.
#[derive(Debug, Clone)]
struct CachedStatus {
    coverage: Option<Coverage>,
    /// Its resourceVersion; `None` when it is not stored (create it).
    version: Option<String>,
}

struct Writer {
    api: Api<ConfigMap>,
    settings: StoreSettings,
    metrics: Arc<Metrics>,
    clock: Clock,
    cache: HashMap<u16, Cached>,
    /// `None`: read it before deciding.
    status: Option<CachedStatus>,
    /// Every shard is stored (or was found stored).
    every_shard_stored: bool,
}

/// What one shard's write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrote {
    /// Stored: nothing in the batch changed it under the resolution.
    Unchanged,
    /// Written (after `conflicts` conflicts with other writers).
    Written { conflicts: usize },
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Batch>) {
        while let Some(first) = rx.recv().await {
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
            let started = Instant::now();
            let every_shard = group.iter().any(|b| b.every_shard);
            let heard = group.iter().any(|b| b.heard);
            let (sightings, waiters): (Vec<_>, Vec<_>) = group.into_iter().map(|b| (b.sightings, b.done)).unzip();
            let mut result = self.flush(sightings.into_iter().flatten()).await.map_err(Arc::new);
            if every_shard && result.is_ok() {
                result = self.store_every_shard().await.map_err(Arc::new);
            }
            if heard && result.is_ok() {
                self.heard().await;
            }
            self.metrics.activity_flush_seconds.observe(started.elapsed().as_secs_f64());
            if let Err(e) = &result {
                tracing::warn!(error = %e, batches = waiters.len(), "audit events not stored; the sender is told to send them again");
            }
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
        tracing::debug!("activity writer stopped");
    }

    /// Stores every sighting: the shards they change, [`WRITES_AT_ONCE`] at a time.
    async fn flush(&mut self, sightings: impl Iterator<Item = Sighting>) -> Result<(), FlushError> {
        let mut by_shard: BTreeMap<u16, Vec<Sighting>> = BTreeMap::new();
        for s in sightings {
            by_shard.entry(shard_of(&s.account.to_string())).or_default().push(s);
        }
        let jobs: Vec<_> = by_shard.into_iter().map(|(n, s)| (n, self.cache.remove(&n), s)).collect();
        let this = &*self;
        let done: Vec<_> = futures::stream::iter(jobs)
            .map(|(n, cached, sightings)| async move { (n, this.write_shard(n, cached, sightings).await) })
            .buffer_unordered(WRITES_AT_ONCE)
            .collect()
            .await;
        let mut first_error = None;
        for (n, (cached, result)) in done {
            if let Some(c) = cached {
                self.cache.insert(n, c);
            }
            let result = match result {
                Ok(Wrote::Unchanged) => "unchanged",
                Ok(Wrote::Written { conflicts }) => {
                    self.metrics
                        .activity_writes
                        .get_or_create(&WriteLabels { result: "conflict" })
                        .inc_by(conflicts as u64);
                    "written"
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    "failed"
                }
            };
            self.metrics.activity_writes.get_or_create(&WriteLabels { result }).inc();
        }
        let held: usize = self.cache.values().map(|c| c.shard.accounts.len()).sum();
        self.metrics.activity_accounts.set(held as i64);
        first_error.map_or(Ok(()), Err)
    }

    /// Records `sightings` into shard `n` and stores it if that changed it. Returns the shard as
    /// now stored (`None` after an error: it is read again next time).
    async fn write_shard(
        &self,
        n: u16,
        cached: Option<Cached>,
        sightings: Vec<Sighting>,
    ) -> (Option<Cached>, Result<Wrote, FlushError>) {
        let name = object_name(&self.settings.prefix, n);
        let mut cur = match cached {
            Some(c) => c,
            None => match self.read(&name).await {
                Ok(c) => c,
                Err(e) => return (None, Err(e)),
            },
        };
        let mut changed = false;
        for s in sightings {
            changed |= cur.shard.record(&s.account.to_string(), s.entry, self.settings.resolution);
        }
        if !changed {
            return (Some(cur), Ok(Wrote::Unchanged));
        }
        self.bound(&mut cur.shard);
        for conflicts in 0..MAX_TRIES {
            match self.store(&name, &cur).await {
                Ok(version) => {
                    cur.version = Some(version);
                    return (Some(cur), Ok(Wrote::Written { conflicts }));
                }
                Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() || s.is_not_found() => {
                    // Another replica wrote it first (or it was deleted): take the stored copy,
                    // with what this one adds.
                    let mut stored = match self.read(&name).await {
                        Ok(c) => c,
                        Err(e) => return (None, Err(e)),
                    };
                    stored.shard.absorb(cur.shard, self.settings.resolution);
                    self.bound(&mut stored.shard);
                    cur = stored;
                }
                Err(source) => return (None, Err(FlushError::Api { name, source })),
            }
        }
        (None, Err(FlushError::Contended { name }))
    }

    /// A received batch's sightings are stored: the gauge, every shard at the first one, and the
    /// status object. Failures are logged (readers then prove less, never more).
    async fn heard(&mut self) {
        let at = (self.clock)();
        self.metrics.activity_last_batch_stored.set(at.as_millisecond() as f64 / 1000.0);
        if !self.every_shard_stored
            && let Err(e) = self.store_every_shard().await
        {
            tracing::warn!(error = %e, "not every activity shard could be stored yet; trying again at the next batch");
        }
        if let Err(e) = self.store_status(at).await {
            self.metrics.activity_writes.get_or_create(&WriteLabels { result: "failed" }).inc();
            tracing::warn!(error = %e, "the activity store's status could not be stored: nobody is proven inactive past its heardAt");
        }
    }

    /// Records in the status object that a batch was stored `at` ([`Coverage::next`]); a
    /// stream is only ended after reading the stored status again (another replica may have
    /// stored batches meanwhile); a conflict reads it again and decides again.
    async fn store_status(&mut self, at: Timestamp) -> Result<(), FlushError> {
        let name = status_name(&self.settings.prefix);
        for _ in 0..MAX_TRIES {
            let fresh = self.status.is_none();
            let cur = match self.status.take() {
                Some(c) => c,
                None => self.read_status(&name).await?,
            };
            let coverage = match Coverage::next(cur.coverage.as_ref(), at, self.settings.resolution, self.settings.gap)
            {
                Next::Same => {
                    self.status = Some(cur);
                    return Ok(());
                }
                Next::Begin(_) if !fresh && cur.coverage.is_some() => continue,
                Next::Begin(c) | Next::Extend(c) => c,
            };
            let json = serde_json::to_string(&coverage)
                .map_err(|e| FlushError::Api { name: name.clone(), source: kube::Error::SerdeError(e) })?;
            let cm = store_object(&name, &self.settings.namespace, cur.version.clone(), STATUS_KEY, json);
            let pp = PostParams::default();
            let written = match &cur.version {
                None => self.api.create(&pp, &cm).await,
                Some(_) => self.api.replace(&name, &pp, &cm).await,
            };
            match written {
                Ok(w) => {
                    let version = w.metadata.resource_version;
                    self.status = Some(CachedStatus { coverage: Some(coverage), version });
                    self.metrics.activity_writes.get_or_create(&WriteLabels { result: "written" }).inc();
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() || s.is_not_found() => {
                    self.metrics.activity_writes.get_or_create(&WriteLabels { result: "conflict" }).inc();
                }
                Err(source) => return Err(FlushError::Api { name, source }),
            }
        }
        Err(FlushError::Contended { name })
    }

    /// The stored status (an unreadable one is replaced: the stream begins anew).
    async fn read_status(&self, name: &str) -> Result<CachedStatus, FlushError> {
        let api_error = |source| FlushError::Api { name: name.to_string(), source };
        let Some(cm) = self.api.get_opt(name).await.map_err(api_error)? else {
            return Ok(CachedStatus { coverage: None, version: None });
        };
        let text = cm.data.as_ref().and_then(|d| d.get(STATUS_KEY));
        let coverage = match text.map(|t| serde_json::from_str::<Coverage>(t)) {
            Some(Ok(c)) => Some(c),
            _ => {
                tracing::warn!(configmap = name, "the activity store's status is unreadable; writing it anew");
                None
            }
        };
        Ok(CachedStatus { coverage, version: cm.metadata.resource_version })
    }

    /// Stores, one by one, each shard neither cached here nor stored yet (empty, `since` when it
    /// is written); a shard another replica created meanwhile is read instead.
    async fn store_every_shard(&mut self) -> Result<(), FlushError> {
        for n in 0..SHARDS {
            if self.cache.contains_key(&n) {
                continue;
            }
            let name = object_name(&self.settings.prefix, n);
            let mut cur = self.read(&name).await?;
            if cur.version.is_none() {
                match self.store(&name, &cur).await {
                    Ok(version) => {
                        cur.version = Some(version);
                        self.metrics.activity_writes.get_or_create(&WriteLabels { result: "written" }).inc();
                    }
                    Err(kube::Error::Api(s)) if s.is_already_exists() => cur = self.read(&name).await?,
                    Err(source) => return Err(FlushError::Api { name, source }),
                }
            }
            self.cache.insert(n, cur);
        }
        self.every_shard_stored = true;
        Ok(())
    }

    fn bound(&self, shard: &mut Shard) {
        let forgotten = shard.bound(self.settings.per_shard(), MAX_SHARD_BYTES);
        if forgotten > 0 {
            self.metrics.activity_accounts_forgotten.inc_by(forgotten as u64);
        }
    }

    /// The stored copy of a shard; a missing one is empty, recording from now (when it is about
    /// to be written).
    async fn read(&self, name: &str) -> Result<Cached, FlushError> {
        let api_error = |source| FlushError::Api { name: name.to_string(), source };
        let Some(cm) = self.api.get_opt(name).await.map_err(api_error)? else {
            return Ok(Cached { shard: Shard::new((self.clock)()), version: None });
        };
        let text = cm.data.as_ref().and_then(|d| d.get(DATA_KEY));
        let shard = match text.map(|t| serde_json::from_str::<Shard>(t)) {
            Some(Ok(shard)) => shard,
            // Unreadable: replaced (its accounts are lost, and it says so: recording starts when
            // it is written).
            other => {
                let error =
                    other.and_then(Result::err).map(|e| e.to_string()).unwrap_or_else(|| format!("no {DATA_KEY}"));
                tracing::warn!(configmap = name, error, "an activity shard is unreadable; writing it anew");
                Shard::new((self.clock)())
            }
        };
        Ok(Cached { shard, version: cm.metadata.resource_version })
    }

    /// Writes `cur` (create when it has no version, else replace at that version); returns the
    /// new resourceVersion.
    async fn store(&self, name: &str, cur: &Cached) -> Result<String, kube::Error> {
        let json = serde_json::to_string(&cur.shard).map_err(kube::Error::SerdeError)?;
        let cm = store_object(name, &self.settings.namespace, cur.version.clone(), DATA_KEY, json);
        let pp = PostParams::default();
        let written = match &cur.version {
            None => self.api.create(&pp, &cm).await?,
            Some(_) => self.api.replace(name, &pp, &cm).await?,
        };
        Ok(written.metadata.resource_version.unwrap_or_default())
    }
}

/// The ConfigMap holding one shard (pure).
pub fn shard_object(name: &str, namespace: &str, version: Option<String>, json: String) -> ConfigMap {
    store_object(name, namespace, version, DATA_KEY, json)
}

/// A ConfigMap of the activity store (a shard, or the status), `json` under `key` (pure).
pub fn store_object(name: &str, namespace: &str, version: Option<String>, key: &str, json: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            resource_version: version,
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/component".to_string(), COMPONENT.to_string()),
                ("app.kubernetes.io/managed-by".to_string(), "deprovisioner".to_string()),
            ])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(key.to_string(), json)])),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests;
