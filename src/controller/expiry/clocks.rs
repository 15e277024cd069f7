//! The clocks, kept in [`SHARDS`] `AccessClock` objects named `<prefix>-<n>` (a binding's shard
//! is a stable hash of its UID), read once when a term of leadership begins and written, each
//! with its resourceVersion, only when its content changed. Only the leader writes them; a
//! conflict (a former leader's late write) takes the stored version and writes again.

use std::collections::BTreeMap;

use kube::api::PostParams;
use kube::{Api, Client};

use crate::crd::{AccessClock, AccessClockSpec, BindingClocks};

pub use crate::expiry::{CLOCK_SHARDS as SHARDS, clock_shard_name as shard_name, clock_shard_of as shard_of};

struct Shard {
    /// The stored resourceVersion (`None`: not created yet).
    version: Option<String>,
    spec: AccessClockSpec,
    /// The last write failed: write again.
    dirty: bool,
}

/// Every shard, as stored.
pub struct Shards {
    api: Api<AccessClock>,
    prefix: String,
    shards: Vec<Shard>,
}

impl Shards {
    /// Reads every shard (a missing one is empty).
    pub async fn load(client: Client, prefix: &str) -> Result<Shards, kube::Error> {
        let api: Api<AccessClock> = Api::all(client);
        let mut shards = Vec::with_capacity(SHARDS);
        for i in 0..SHARDS {
            let stored = api.get_opt(&shard_name(prefix, i)).await?;
            shards.push(match stored {
                Some(o) => Shard { version: o.metadata.resource_version, spec: o.spec, dirty: false },
                None => Shard { version: None, spec: AccessClockSpec::default(), dirty: false },
            });
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

    /// Makes the stored clocks `clocks`: writes each shard whose content changed. The first
    /// error is returned after every shard was tried.
    pub async fn save(&mut self, clocks: BTreeMap<String, BindingClocks>) -> Result<(), kube::Error> {
        let mut split: Vec<BTreeMap<String, BindingClocks>> = vec![BTreeMap::new(); SHARDS];
        for (uid, c) in clocks {
            split[shard_of(&uid)].insert(uid, c);
        }
        let mut first_error = None;
        for (i, bindings) in split.into_iter().enumerate() {
            let shard = &mut self.shards[i];
            if shard.spec.bindings == bindings && !shard.dirty {
                continue;
            }
            let name = shard_name(&self.prefix, i);
            let mut obj = AccessClock::new(&name, AccessClockSpec { bindings });
            obj.metadata.resource_version.clone_from(&shard.version);
            let written = match &shard.version {
                None => self.api.create(&PostParams::default(), &obj).await,
                Some(_) => self.api.replace(&name, &PostParams::default(), &obj).await,
            };
            match written {
                Ok(stored) => {
                    shard.version = stored.metadata.resource_version;
                    shard.spec = obj.spec;
                    shard.dirty = false;
                }
                Err(e) => {
                    // Conflict or already there: take the stored version, write again next time.
                    if let kube::Error::Api(s) = &e
                        && (s.is_conflict() || s.is_already_exists())
                        && let Ok(Some(o)) = self.api.get_opt(&name).await
                    {
                        shard.version = o.metadata.resource_version;
                    }
                    shard.spec = obj.spec;
                    shard.dirty = true;
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
