//! The clocks, kept in [`SHARDS`] `AccessClock` objects named `<prefix>-<n>` (a binding's shard
//! is a stable hash of its UID), read once when a term of leadership begins and written, each
//! with its resourceVersion, only when its content changed. Only the leader writes them; a
//! conflict (a former leader's late write) takes the stored version and writes again. An object
//! is never written larger than [`MAX_BYTES`]: past it, its clocks are kept in memory only (said
//! in the log and `deprovisioner_expiry_clocks_unsaved`), so writes do not fail forever.

use std::collections::BTreeMap;

use kube::api::PostParams;
use kube::{Api, Client};

use crate::crd::{AccessClock, AccessClockSpec, BindingClocks};
use crate::metrics::{Metrics, WriteLabels};

/// The most one clock object may hold, as JSON: etcd refuses a request over 1.5 MiB, and the
/// object's metadata and the request need the rest. At about 100 bytes a subject, about 10,000
/// subjects each, 80,000 in all (fewer with long names).
pub const MAX_BYTES: usize = 1024 * 1024;

/// Reading or writing a clock object failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading it.
    #[error("reading AccessClock {name}: {source}")]
    Read {
        /// The object.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// Writing it.
    #[error("writing AccessClock {name}: {source}")]
    Write {
        /// The object.
        name: String,
        /// Why.
        source: kube::Error,
    },
}

/// The size of a clock object's content as stored (JSON).
pub fn size(spec: &AccessClockSpec) -> usize {
    serde_json::to_vec(spec).map_or(usize::MAX, |v| v.len())
}

pub use crate::expiry::{CLOCK_SHARDS as SHARDS, clock_shard_name as shard_name, clock_shard_of as shard_of};

struct Shard {
    /// The stored resourceVersion (`None`: not created yet).
    version: Option<String>,
    spec: AccessClockSpec,
    /// The last write failed: write again.
    dirty: bool,
    /// Its content is over [`MAX_BYTES`]: held here only.
    too_large: bool,
}

/// Every shard, as stored.
pub struct Shards {
    api: Api<AccessClock>,
    prefix: String,
    shards: Vec<Shard>,
}

impl Shards {
    /// Reads every shard (a missing one is empty).
    pub async fn load(client: Client, prefix: &str) -> Result<Shards, Error> {
        let api: Api<AccessClock> = Api::all(client);
        let mut shards = Vec::with_capacity(SHARDS);
        for i in 0..SHARDS {
            let name = shard_name(prefix, i);
            let stored = api.get_opt(&name).await.map_err(|source| Error::Read { name, source })?;
            let (version, spec) = match stored {
                Some(o) => (o.metadata.resource_version, o.spec),
                None => (None, AccessClockSpec::default()),
            };
            shards.push(Shard { version, spec, dirty: false, too_large: false });
        }
        Ok(Shards { api, prefix: prefix.to_string(), shards })
    }

    /// The stored clocks of a binding.
    pub fn get(&self, uid: &str) -> Option<&BindingClocks> {
        self.shards[shard_of(uid)].spec.bindings.get(uid)
    }

    /// How many subjects are on clocks.
    pub fn subjects(&self) -> usize {
        self.shards.iter().flat_map(|s| s.spec.bindings.values()).map(|b| b.subjects.len()).sum()
    }

    /// Drops the clocks of the subjects a binding change shows gone (the binding deleted: all),
    /// so a subject removed and added back between two scans starts a new clock.
    pub fn forget_absent(&mut self, change: &crate::view::Change) {
        use crate::view::Change;
        let (meta, subjects, ns) = match change {
            Change::RoleBinding(b) => (&b.metadata, b.subjects.as_deref(), b.metadata.namespace.as_deref()),
            Change::ClusterRoleBinding(b) => (&b.metadata, b.subjects.as_deref(), None),
            Change::Deleted(..) | Change::Relisted => return,
        };
        let Some(uid) = meta.uid.as_deref() else { return };
        let shard = &mut self.shards[shard_of(uid)];
        let Some(clocks) = shard.spec.bindings.get_mut(uid) else { return };
        let present =
            |account: &str| subjects.unwrap_or_default().iter().any(|s| crate::expiry::is_account(s, ns, account));
        let before = clocks.subjects.len();
        clocks.subjects.retain(|account, _| present(account));
        if clocks.subjects.len() != before {
            shard.dirty = true;
        }
    }

    /// Whether a write failed and is to be made again.
    pub fn dirty(&self) -> bool {
        self.shards.iter().any(|s| s.dirty)
    }

    /// Makes the stored clocks `clocks`: writes each shard whose content changed and fits in
    /// [`MAX_BYTES`] (one that does not is kept here only, said once in the log). The first
    /// error is returned after every shard was tried.
    pub async fn save(&mut self, clocks: BTreeMap<String, BindingClocks>, metrics: &Metrics) -> Result<(), Error> {
        let mut split: Vec<BTreeMap<String, BindingClocks>> = vec![BTreeMap::new(); SHARDS];
        for (uid, c) in clocks {
            split[shard_of(&uid)].insert(uid, c);
        }
        let count = |r: &'static str| metrics.expiry_clock_writes.get_or_create(&WriteLabels { result: r }).inc();
        let mut first_error = None;
        for (i, bindings) in split.into_iter().enumerate() {
            let shard = &mut self.shards[i];
            if shard.spec.bindings == bindings && !shard.dirty {
                continue;
            }
            let name = shard_name(&self.prefix, i);
            let mut obj = AccessClock::new(&name, AccessClockSpec { bindings });
            let bytes = size(&obj.spec);
            if bytes > MAX_BYTES {
                if !shard.too_large {
                    tracing::error!(clocks = %name, bytes, bound = MAX_BYTES, "expiry: the clocks of this object would pass the size bound; kept in memory only (a new leader starts them from the earliest evidence)");
                }
                count("too_large");
                shard.too_large = true;
                shard.spec = obj.spec;
                shard.dirty = false;
                continue;
            }
            if shard.too_large {
                tracing::info!(clocks = %name, bytes, "expiry: the clocks of this object fit again; written");
            }
            shard.too_large = false;
            obj.metadata.resource_version.clone_from(&shard.version);
            let written = match &shard.version {
                None => self.api.create(&PostParams::default(), &obj).await,
                Some(_) => self.api.replace(&name, &PostParams::default(), &obj).await,
            };
            match written {
                Ok(stored) => {
                    count("written");
                    shard.version = stored.metadata.resource_version;
                    shard.spec = obj.spec;
                    shard.dirty = false;
                }
                Err(e) => {
                    // Conflict or already there: take the stored version, write again next time.
                    let taken = matches!(&e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists());
                    count(if taken { "conflict" } else { "failed" });
                    if taken && let Ok(Some(o)) = self.api.get_opt(&name).await {
                        shard.version = o.metadata.resource_version;
                    }
                    shard.spec = obj.spec;
                    shard.dirty = true;
                    first_error.get_or_insert(Error::Write { name, source: e });
                }
            }
        }
        let unsaved: usize = (self.shards.iter().filter(|s| s.too_large))
            .flat_map(|s| s.spec.bindings.values())
            .map(|b| b.subjects.len())
            .sum();
        metrics.expiry_clocks_unsaved.set(unsaved as i64);
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests;
