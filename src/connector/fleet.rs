//! On a fleet hub: every member's access map, from the inventory its agent reports into its
//! mailbox namespace here (`deprovisioner_core::fleet::inventory`). The connector reads the
//! `MemberCluster`s and each mailbox's inventory ConfigMaps by name; it holds no credential to
//! any member. A member's map is as fresh as its agent's last report (see `list_resources`).

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::answer::MemberResources;
use super::model::Grant;
use super::wire::{ConnectorError, ErrorCode};
use crate::crd::MemberCluster;
use crate::fleet::inventory::{self, Header, Inventory};

/// Reads of a member's inventory before a rewrite seen in the middle is an error.
const TRIES: usize = 3;
/// The pause before reading a torn inventory again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// What the members reported: their resources (for `list_resources`) and their grants.
#[derive(Debug, Default)]
pub struct Members {
    /// Each member, by name.
    pub resources: Vec<MemberResources>,
    /// Every member's grants, placed in their member.
    pub grants: Vec<Grant>,
}

/// Every member's last inventory.
pub async fn members(client: &Client) -> Result<Members, ConnectorError> {
    let api: Api<MemberCluster> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| ConnectorError::from_kube("listing MemberClusters (fleet hub)", &e))?;
    let mut out = Members::default();
    let mut items = list.items;
    items.sort_by_key(|m| m.name_any());
    // Every member's inventory read at once (a few small GETs each).
    let read =
        futures::future::try_join_all(items.iter().map(|m| member(client, m.name_any(), &m.spec.mailbox))).await?;
    let now = Timestamp::now();
    for (m, (header, written, inv)) in items.into_iter().zip(read) {
        let name = m.name_any();
        let heartbeat = m.status.as_ref().and_then(|s| s.last_heartbeat.as_ref()).map(|t| t.0.to_string());
        let mut res = MemberResources { name, heartbeat, ..Default::default() };
        res.stale = inventory::is_stale(header.as_ref(), written, now);
        if res.stale && header.is_some() {
            tracing::warn!(member = %res.name, written = ?written,
                "fleet connector: a member's inventory is stale (its agent has not checked it for three periods)");
        }
        if let Some(h) = header {
            res.reported_at = Some(h.generation);
            res.checked_at = written.map(|t| t.to_string());
            res.left_out = h.left_out;
        }
        res.namespaces = inv.namespaces;
        res.namespaces.sort();
        out.grants.extend(inv.grants);
        out.resources.push(res);
    }
    Ok(out)
}

/// One member's inventory: nothing while its agent has reported none.
/// One member's inventory as read: its header, when the hub's API server last saw it written
/// (the latest time in its `managedFields`), and its grants.
type Reported = (Option<Header>, Option<Timestamp>, Inventory);

async fn member(client: &Client, name: String, mailbox: &str) -> Result<Reported, ConnectorError> {
    let name = name.as_str();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), mailbox);
    let read = |what: String| move |e: kube::Error| ConnectorError::from_kube(&what, &e);
    let mut last = None;
    for _ in 0..TRIES {
        let what = format!("reading cluster {name}'s inventory (configmap {mailbox}/{})", inventory::HEADER);
        let Some(cm) = api.get_opt(inventory::HEADER).await.map_err(read(what))? else {
            return Ok((None, None, Inventory::default()));
        };
        let written = cm.metadata.managed_fields.iter().flatten().filter_map(|f| f.time.as_ref().map(|t| t.0)).max();
        let header: Header = match data(&cm).map(serde_json::from_str) {
            Some(Ok(h)) => h,
            _ => return Err(broken(name, mailbox, "its header does not parse")),
        };
        let mut chunks = Vec::with_capacity(header.chunks);
        for i in 0..header.chunks.min(inventory::MAX_CHUNKS) {
            let chunk = inventory::chunk_name(header.slot, i);
            let what = format!("reading cluster {name}'s inventory (configmap {mailbox}/{chunk})");
            let cm = api.get_opt(&chunk).await.map_err(read(what))?;
            chunks.push(cm.as_ref().and_then(data).map(str::to_string));
        }
        match inventory::decode(name, &header, &chunks) {
            Ok(inv) => return Ok((Some(header), written, inv)),
            // Two rewrites during this read (each goes to the slot not being read): a moment later.
            Err(e @ inventory::InventoryError::Torn { .. }) => {
                last = Some(e);
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(e) => return Err(broken(name, mailbox, &e.to_string())),
        }
    }
    let why = last.map(|e| e.to_string()).unwrap_or_default();
    Err(broken(name, mailbox, &format!("{why}, {TRIES} times; try again shortly")))
}

fn data(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref().and_then(|d| d.get(inventory::DATA_KEY)).map(String::as_str)
}

fn broken(name: &str, mailbox: &str, why: &str) -> ConnectorError {
    ConnectorError::new(ErrorCode::ServiceError, format!("cluster {name}'s inventory in namespace {mailbox}: {why}"))
}
