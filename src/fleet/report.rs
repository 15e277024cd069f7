//! A member's agent reports this cluster's access map to the hub: every `inventory_every` it
//! computes the grants the connector's model finds in this cluster's bindings. When they (or the
//! namespaces) changed since its last report, it writes them as chunked ConfigMaps into its
//! mailbox on the hub (`deprovisioner_core::fleet::inventory`): into the slot the header does not
//! name, then the header naming the new generation and slot, then it deletes that slot's chunks
//! past the new count. When nothing changed it only writes the header's `checkedAt`. So the hub's
//! connector lists a member as of at most `inventory_every` (plus a write) ago while the agent
//! runs, and calls it stale when its last check is three periods old.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::AgentSettings;
use super::inventory::{self, Header, Inventory, Slot};
use crate::connector::{model, read};

/// Label on the inventory ConfigMaps: the member they describe.
pub const LABEL_INVENTORY_OF: &str = "access.deprovisioner.dev/inventory-of";

/// Why a report was not written (tried again next time).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading this cluster.
    #[error("reading this cluster's access map: {0}")]
    Local(String),
    /// Writing on the hub.
    #[error("writing configmap {name} on the hub: {source}")]
    Hub {
        /// The ConfigMap.
        name: String,
        /// The client's error.
        source: kube::Error,
    },
}

/// What this process last wrote: the map, its header, and how many chunks each slot may hold
/// (`None`: not known since this process started).
struct Written {
    inventory: Inventory,
    header: Header,
    slot_chunks: [Option<usize>; 2],
    /// Checks since this generation was written whole.
    checks: u32,
}

/// A generation is written whole again after this many checks found it unchanged, so chunks
/// changed or lost on the hub behind the agent's back (an admin, a restore) heal on their own.
const REWRITE_AFTER_CHECKS: u32 = 10;

/// Reports every `settings.inventory_every` until `stop`.
pub async fn run(settings: AgentSettings, local: Client, stop: CancellationToken) {
    let mut tick = tokio::time::interval(settings.inventory_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Written> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match once(&settings, &local, last.take()).await {
            Ok(written) => last = Some(written),
            Err((e, kept)) => {
                last = kept;
                tracing::warn!(member = %settings.member, error = %e, "fleet agent: reporting the access map failed")
            }
        }
    }
}

fn slot_index(slot: Slot) -> usize {
    match slot {
        Slot::A => 0,
        Slot::B => 1,
    }
}

/// Computes the access map; writes a new generation when it differs from `last`, or else the
/// header's `checkedAt`. On failure, what is known of the hub's state is handed back.
async fn once(
    settings: &AgentSettings,
    local: &Client,
    last: Option<Written>,
) -> Result<Written, (ReportError, Option<Written>)> {
    let (bindings, namespaces) = match tokio::try_join!(read::bindings(local), read::namespace_names(local)) {
        Ok(read) => read,
        Err(e) => return Err((ReportError::Local(e.message.clone()), last)),
    };
    let grants = model::grants(&bindings.role_bindings, &bindings.cluster_role_bindings, &settings.protected);
    let inventory = Inventory { namespaces, grants };
    let api: Api<ConfigMap> = Api::namespaced(settings.hub.clone(), &settings.mailbox);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let every = Some(settings.inventory_every.as_secs().max(1));
    // The header as the hub holds it: its slot is the one a new generation must not touch, and
    // its resourceVersion guards the header's next write (someone else's write in between is a
    // conflict, and the next check starts over).
    let (on_hub, version) = match api.get_opt(inventory::HEADER).await {
        Ok(Some(cm)) => {
            let version = cm.metadata.resource_version.clone();
            let header = cm.data.and_then(|mut d| d.remove(inventory::DATA_KEY));
            (header.and_then(|t| serde_json::from_str::<Header>(&t).ok()), version)
        }
        Ok(None) => (None, None),
        Err(source) => return Err((ReportError::Hub { name: inventory::HEADER.into(), source }, last)),
    };
    let current = on_hub.as_ref().map_or(Slot::B, |h| h.slot);
    if let Some(mut was) = last {
        let same = |h: &Header| {
            (&h.generation, h.slot, h.chunks) == (&was.header.generation, was.header.slot, was.header.chunks)
        };
        if was.inventory == inventory && on_hub.as_ref().is_some_and(same) && was.checks < REWRITE_AFTER_CHECKS {
            was.header.checked_at = Some(now);
            was.header.every_seconds = every;
            was.checks += 1;
            let text = serde_json::to_string(&was.header).unwrap_or_default();
            return match put(&api, &settings.member, inventory::HEADER, text, version).await {
                Ok(()) => Ok(was),
                Err(e) => Err((e, Some(was))),
            };
        }
        let at = Current { slot: current, version };
        return publish(settings, &api, inventory, at, was.slot_chunks, now, every).await;
    }
    publish(settings, &api, inventory, Current { slot: current, version }, [None, None], now, every).await
}

/// The header as this check found it on the hub: the slot it names and its resourceVersion
/// (`None`: there is none).
struct Current {
    slot: Slot,
    version: Option<String>,
}

/// Writes `inventory` as a new generation into the slot other than `current`'s, then the header
/// (guarded by `current`'s resourceVersion), then deletes that slot's chunks past the new count.
async fn publish(
    settings: &AgentSettings,
    api: &Api<ConfigMap>,
    inventory: Inventory,
    current: Current,
    mut slot_chunks: [Option<usize>; 2],
    now: String,
    every: Option<u64>,
) -> Result<Written, (ReportError, Option<Written>)> {
    let slot = current.slot.other();
    let (mut header, chunks) = inventory::encode(&inventory, &now, slot);
    header.checked_at = Some(now);
    header.every_seconds = every;
    let count = header.chunks;
    // Until the header is switched, the hub holds what it held: the next try starts over.
    for (i, text) in chunks.into_iter().enumerate() {
        write(api, &settings.member, &inventory::chunk_name(slot, i), text).await.map_err(|e| (e, None))?;
    }
    let text = serde_json::to_string(&header).unwrap_or_default();
    put(api, &settings.member, inventory::HEADER, text, current.version).await.map_err(|e| (e, None))?;
    tracing::info!(member = %settings.member, grants = inventory.grants.len(), chunks = count, left_out = header.left_out,
        slot = ?slot, "fleet agent: reported this cluster's access map to the hub");
    // Chunks of this slot past the new count belong to no generation the header names: deleted,
    // so a shrinking map frees its space (when not known, every name past the count is tried).
    let stale = slot_chunks[slot_index(slot)].unwrap_or(inventory::MAX_CHUNKS).max(count);
    slot_chunks[slot_index(slot)] = Some(count);
    let written = Written { inventory, header, slot_chunks, checks: 0 };
    for i in count..stale {
        let name = inventory::chunk_name(slot, i);
        match api.delete(&name, &Default::default()).await {
            Ok(_) => tracing::debug!(member = %settings.member, chunk = %name, "fleet agent: deleted a stale chunk"),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(source) => {
                // Still there: tried again after the next change.
                let mut kept = written;
                kept.slot_chunks[slot_index(slot)] = None;
                return Err((ReportError::Hub { name, source }, Some(kept)));
            }
        }
    }
    Ok(written)
}

/// Replaces (or creates) one ConfigMap in the mailbox.
async fn write(api: &Api<ConfigMap>, member: &str, name: &str, text: String) -> Result<(), ReportError> {
    let found = api.get_opt(name).await.map_err(|source| ReportError::Hub { name: name.to_string(), source })?;
    put(api, member, name, text, found.and_then(|f| f.metadata.resource_version)).await
}

/// Replaces one ConfigMap at `version` (a conflict if it changed since), or creates it (`None`).
async fn put(
    api: &Api<ConfigMap>,
    member: &str,
    name: &str,
    text: String,
    version: Option<String>,
) -> Result<(), ReportError> {
    let hub = |source| ReportError::Hub { name: name.to_string(), source };
    let mut cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(LABEL_INVENTORY_OF.to_string(), member.to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(inventory::DATA_KEY.to_string(), text)])),
        ..Default::default()
    };
    match version {
        Some(v) => {
            cm.metadata.resource_version = Some(v);
            api.replace(name, &PostParams::default(), &cm).await.map_err(hub)?;
        }
        None => {
            api.create(&PostParams::default(), &cm).await.map_err(hub)?;
        }
    }
    Ok(())
}
