//! Reads the ledger's shards back from their ConfigMaps (`<prefix>-NN` in the operator's
//! namespace, the shard as JSON under [`DATA_KEY`]): for given accounts only their shards, each
//! GET once; for everything one LIST by label (or, when the identity may only read the shards by
//! name, a GET of each). A shard whose ConfigMap does not exist was never written (recording
//! never began for its accounts: [`Known::NotRecorded`]); one that does not parse is an error
//! naming the ConfigMap, never taken as "nobody was active". The status object `<prefix>-status`
//! is read with them: the stretch of time the store observed ([`Coverage`]), without which
//! nobody is proven inactive.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, Client};

use deprovisioner_core::activity::{
    COMPONENT, Coverage, DATA_KEY, Known, SHARDS, STATUS_KEY, Shard, object_name, shard_of, status_name,
};

/// The shards' default name prefix (`--activity-prefix`; the chart's `<release>-activity`).
pub const DEFAULT_PREFIX: &str = "deprovisioner-activity";

/// Shards read at once when reading by name.
const GETS_AT_ONCE: usize = 8;

/// More distinct shards than this are read with one LIST instead of a GET each.
pub const GETS_BEFORE_LIST: usize = 8;

/// Where the shards are stored.
#[derive(Clone)]
pub struct Store {
    /// A client allowed to get (and, for reading everything at once, list) the shards.
    pub client: Client,
    /// The namespace holding them (the operator's).
    pub namespace: String,
    /// Their names' prefix (`--activity-prefix`, default `deprovisioner-activity`).
    pub prefix: String,
}

/// Why the shards could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The API server refused or failed a read.
    #[error("reading the activity ConfigMap {namespace}/{name}: {source}")]
    Get {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Listing the shards failed.
    #[error("listing the activity ConfigMaps in {namespace} (label {label}): {source}")]
    List {
        namespace: String,
        label: String,
        #[source]
        source: kube::Error,
    },
    /// A shard's ConfigMap exists but holds no readable shard.
    #[error("the activity ConfigMap {namespace}/{name} does not hold a readable shard: {reason}")]
    Parse { namespace: String, name: String, reason: String },
}

impl ReadError {
    /// The API server's error, when the read reached it.
    pub fn kube(&self) -> Option<&kube::Error> {
        match self {
            ReadError::Get { source, .. } | ReadError::List { source, .. } => Some(source),
            ReadError::Parse { .. } => None,
        }
    }
}

/// Shards as read: by number, `None` for one whose ConfigMap does not exist; and the store's
/// coverage (its status object `<prefix>-status`; `None` when it does not exist).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shards {
    /// By shard number.
    pub by_number: BTreeMap<u16, Option<Shard>>,
    /// The stretch of time the store observed, from its status object.
    pub coverage: Option<Coverage>,
}

impl Shards {
    /// What the shards say about `account` (an account whose shard was not read is
    /// [`Known::NotRecorded`]; read it first).
    pub fn known(&self, account: &str) -> Known {
        Known::of(self.by_number.get(&shard_of(account)).and_then(Option::as_ref), account)
    }

    /// Every account any shard holds, with its last sighting, by account id.
    pub fn accounts(&self) -> BTreeMap<&str, &deprovisioner_core::activity::Entry> {
        self.by_number.values().flatten().flat_map(|s| s.accounts.iter().map(|(a, e)| (a.as_str(), e))).collect()
    }

    /// When the earliest existing shard began recording (none exists: `None`).
    pub fn recording_since(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        self.by_number.values().flatten().map(|s| s.since).min()
    }
}

/// The shard number a ConfigMap's name is for (`<prefix>-NN`, NN below [`SHARDS`]).
pub fn shard_number(prefix: &str, name: &str) -> Option<u16> {
    let n = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let v: u16 = n.parse().ok()?;
    (v < SHARDS && object_name(prefix, v) == name).then_some(v)
}

/// The shard a ConfigMap holds.
pub fn parse(namespace: &str, cm: &ConfigMap) -> Result<Shard, ReadError> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let err = |reason: String| ReadError::Parse { namespace: namespace.to_string(), name: name.clone(), reason };
    let text = cm.data.as_ref().and_then(|d| d.get(DATA_KEY)).ok_or_else(|| err(format!("no data key {DATA_KEY}")))?;
    serde_json::from_str(text).map_err(|e| err(e.to_string()))
}

/// The coverage the status ConfigMap holds.
pub fn parse_status(namespace: &str, cm: &ConfigMap) -> Result<Coverage, ReadError> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let err = |reason: String| ReadError::Parse { namespace: namespace.to_string(), name: name.clone(), reason };
    let text =
        cm.data.as_ref().and_then(|d| d.get(STATUS_KEY)).ok_or_else(|| err(format!("no data key {STATUS_KEY}")))?;
    serde_json::from_str(text).map_err(|e| err(e.to_string()))
}

/// The label selector every shard carries.
pub fn label() -> String {
    format!("app.kubernetes.io/component={COMPONENT}")
}

impl Store {
    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The shards of `accounts` (without the coverage: [`Store::for_accounts_covered`]): each
    /// distinct shard GET once (more than [`GETS_BEFORE_LIST`]:
    /// everything, as [`Store::all`]).
    pub async fn for_accounts<'a>(&self, accounts: impl IntoIterator<Item = &'a str>) -> Result<Shards, ReadError> {
        let numbers: BTreeSet<u16> = accounts.into_iter().map(shard_of).collect();
        if numbers.len() > GETS_BEFORE_LIST {
            return self.all().await;
        }
        self.by_name(numbers).await
    }

    /// Every shard (without the coverage: [`Store::all_covered`]): one LIST by label. An identity that may read the shards only by name (RBAC
    /// `resourceNames`, which a label LIST does not satisfy) is answered 403: then each shard
    /// is read by name.
    pub async fn all(&self) -> Result<Shards, ReadError> {
        let label = label();
        match self.api().list(&ListParams::default().labels(&label)).await {
            Ok(list) => {
                let mut out = Shards { by_number: (0..SHARDS).map(|n| (n, None)).collect(), coverage: None };
                for cm in &list.items {
                    let Some(n) = cm.metadata.name.as_deref().and_then(|name| shard_number(&self.prefix, name)) else {
                        continue; // another object with the same label
                    };
                    out.by_number.insert(n, Some(parse(&self.namespace, cm)?));
                }
                Ok(out)
            }
            Err(kube::Error::Api(s)) if s.code == 403 => self.by_name(0..SHARDS).await,
            Err(source) => Err(ReadError::List { namespace: self.namespace.clone(), label, source }),
        }
    }

    async fn by_name(&self, numbers: impl IntoIterator<Item = u16>) -> Result<Shards, ReadError> {
        let api = self.api();
        let read = |n: u16| {
            let api = api.clone();
            let name = object_name(&self.prefix, n);
            async move {
                match api.get_opt(&name).await {
                    Ok(Some(cm)) => Ok((n, Some(parse(&self.namespace, &cm)?))),
                    Ok(None) => Ok((n, None)),
                    Err(source) => Err(ReadError::Get { namespace: self.namespace.clone(), name, source }),
                }
            }
        };
        let by_number = futures::stream::iter(numbers.into_iter().map(read))
            .buffer_unordered(GETS_AT_ONCE)
            .try_collect::<BTreeMap<_, _>>()
            .await?;
        Ok(Shards { by_number, coverage: None })
    }

    /// [`Store::for_accounts`] with the store's coverage, read at the same time.
    pub async fn for_accounts_covered<'a>(
        &self,
        accounts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Shards, ReadError> {
        let (mut shards, coverage) = futures::future::try_join(self.for_accounts(accounts), self.coverage()).await?;
        shards.coverage = coverage;
        Ok(shards)
    }

    /// [`Store::all`] with the store's coverage, read at the same time.
    pub async fn all_covered(&self) -> Result<Shards, ReadError> {
        let (mut shards, coverage) = futures::future::try_join(self.all(), self.coverage()).await?;
        shards.coverage = coverage;
        Ok(shards)
    }

    /// The store's coverage: its status object (`None` when it does not exist: no batch was
    /// ever stored).
    pub async fn coverage(&self) -> Result<Option<Coverage>, ReadError> {
        let name = status_name(&self.prefix);
        match self.api().get_opt(&name).await {
            Ok(Some(cm)) => parse_status(&self.namespace, &cm).map(Some),
            Ok(None) => Ok(None),
            Err(source) => Err(ReadError::Get { namespace: self.namespace.clone(), name, source }),
        }
    }
}

#[cfg(test)]
mod tests;
