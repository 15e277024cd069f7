//! A member's agent reports this cluster's access map to the hub: every `inventory_every` it
//! computes the grants the connector's model finds in this cluster's bindings, and when they
//! (or the namespaces) changed since its last report, writes them as chunked ConfigMaps into its
//! mailbox on the hub (`deprovisioner_core::fleet::inventory`): the chunks first, the header
//! naming their generation last. So the hub's connector lists a member as of at most
//! `inventory_every` (plus a write) ago while the agent runs; the header's generation is when.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::AgentSettings;
use super::inventory::{self, Inventory};
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

/// Reports every `settings.inventory_every` until `stop`.
pub async fn run(settings: AgentSettings, local: Client, stop: CancellationToken) {
    let mut tick = tokio::time::interval(settings.inventory_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(Inventory, usize)> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match once(&settings, &local, last.as_ref()).await {
            Ok(Some(written)) => last = Some(written),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(member = %settings.member, error = %e, "fleet agent: reporting the access map failed")
            }
        }
    }
}

/// Computes the access map and writes it when it differs from `last` (the one this process
/// wrote, and its chunks): the new one and its chunks, or `None`.
async fn once(
    settings: &AgentSettings,
    local: &Client,
    last: Option<&(Inventory, usize)>,
) -> Result<Option<(Inventory, usize)>, ReportError> {
    let (bindings, namespaces) = tokio::try_join!(read::bindings(local), read::namespace_names(local))
        .map_err(|e| ReportError::Local(e.message.clone()))?;
    let grants = model::grants(&bindings.role_bindings, &bindings.cluster_role_bindings, &settings.protected);
    let inv = Inventory { namespaces, grants };
    if last.is_some_and(|(l, _)| l == &inv) {
        return Ok(None);
    }
    let generation = k8s_openapi::jiff::Timestamp::now().to_string();
    let (header, chunks) = inventory::encode(&inv, &generation);
    let api: Api<ConfigMap> = Api::namespaced(settings.hub.clone(), &settings.mailbox);
    for (i, text) in chunks.into_iter().enumerate() {
        write(&api, &settings.member, &inventory::chunk_name(i), text).await?;
    }
    let text = serde_json::to_string(&header).unwrap_or_default();
    write(&api, &settings.member, inventory::HEADER, text).await?;
    // Chunks past the new count belong to no generation the header names: deleted, so a
    // shrinking map frees its space (after a restart, every name past the count is tried).
    let stale = last.map_or(inventory::MAX_CHUNKS, |(_, n)| (*n).max(header.chunks));
    for i in header.chunks..stale {
        let name = inventory::chunk_name(i);
        match api.delete(&name, &Default::default()).await {
            Ok(_) => tracing::debug!(member = %settings.member, chunk = %name, "fleet agent: deleted a stale chunk"),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(source) => return Err(ReportError::Hub { name, source }),
        }
    }
    tracing::info!(member = %settings.member, grants = inv.grants.len(), chunks = header.chunks, left_out = header.left_out,
        "fleet agent: reported this cluster's access map to the hub");
    Ok(Some((inv, header.chunks)))
}

/// Replaces (or creates) one ConfigMap in the mailbox.
async fn write(api: &Api<ConfigMap>, member: &str, name: &str, text: String) -> Result<(), ReportError> {
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
    match api.get_opt(name).await.map_err(hub)? {
        Some(found) => {
            cm.metadata.resource_version = found.metadata.resource_version;
            api.replace(name, &PostParams::default(), &cm).await.map_err(hub)?;
        }
        None => {
            api.create(&PostParams::default(), &cm).await.map_err(hub)?;
        }
    }
    Ok(())
}
