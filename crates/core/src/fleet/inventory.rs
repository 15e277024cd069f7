//! Pure: a member's access map as it reports it to the hub, in its mailbox namespace there: the
//! grants the connector's model computes from the member's bindings, and its namespaces, in
//! ConfigMaps of at most [`CHUNK_BYTES`] each (at most [`MAX_CHUNKS`]), under a header naming the
//! generation every chunk must carry. The chunks are double-buffered: a new generation is
//! written into the [`Slot`] the header does not name, and the header is switched last, so a
//! reader always finds one whole generation, even when a writer died in the middle (a chunk of
//! another generation means two rewrites during one read: read again).

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::connector::model::{AccountId, BindingName, Grant};
use crate::entitlement::{IdError, Role, Scope};

/// The header ConfigMap in a mailbox namespace.
pub const HEADER: &str = "deprovisioner-inventory";
/// The key holding the JSON in each ConfigMap.
pub const DATA_KEY: &str = "inventory.json";
/// The most bytes of JSON in one chunk (a ConfigMap holds at most 1 MiB).
pub const CHUNK_BYTES: usize = 900_000;
/// The most chunks a member writes: past them its inventory is reported truncated.
pub const MAX_CHUNKS: usize = 16;

/// One of the two sets of chunk names a member writes in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// `deprovisioner-inventory-a00` …
    #[default]
    A,
    /// `deprovisioner-inventory-b00` …
    B,
}

impl Slot {
    /// The other slot: where the next generation is written.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// Both slots.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    fn letter(self) -> char {
        match self {
            Slot::A => 'a',
            Slot::B => 'b',
        }
    }
}

/// Chunk `i`'s ConfigMap in `slot` (`deprovisioner-inventory-a00` …).
pub fn chunk_name(slot: Slot, i: usize) -> String {
    format!("{HEADER}-{}{i:02}", slot.letter())
}

/// Every name a member may write: the header and each slot's chunks (what RBAC and the
/// admission policy name).
pub fn names() -> Vec<String> {
    let chunks = Slot::ALL.into_iter().flat_map(|s| (0..MAX_CHUNKS).map(move |i| chunk_name(s, i)));
    std::iter::once(HEADER.to_string()).chain(chunks).collect()
}

/// The header: which generation is complete and where, how many chunks it has, when it was
/// computed, and when the agent last checked that it still holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// The generation every chunk must carry (the time it was computed, RFC 3339).
    pub generation: String,
    /// The slot holding its chunks.
    #[serde(default)]
    pub slot: Slot,
    /// How many chunks it has.
    pub chunks: usize,
    /// Grants left out because [`MAX_CHUNKS`] were full.
    #[serde(default)]
    pub left_out: usize,
    /// When the agent last computed the map and found this generation still true (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// How often the agent checks, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_seconds: Option<u64>,
}

/// Whether a member's listing is stale: its header was last written (`written`, by the hub's API
/// server's clock, never the member's) more than three of its agent's periods before `now` (a
/// missed write or two is no outage), at least ten seconds; or never, or in the future by more
/// than that (clocks that disagree are not trusted either way).
pub fn is_stale(header: Option<&Header>, written: Option<Timestamp>, now: Timestamp) -> bool {
    let (Some(header), Some(written)) = (header, written) else { return true };
    let every = header.every_seconds.unwrap_or(60);
    let allowed = i64::try_from(every.saturating_mul(3).max(10)).unwrap_or(i64::MAX);
    (now.as_second() - written.as_second()).abs() > allowed
}

/// One chunk: namespaces and grants, each grant `[account, namespace ("" for cluster-wide),
/// role id, binding name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Chunk {
    /// The generation it belongs to.
    pub generation: String,
    /// Namespace names.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Grants.
    #[serde(default)]
    pub grants: Vec<[String; 4]>,
}

/// A member's access map as written: its namespaces and its grants (in it: `cluster` `None`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// Namespace names.
    pub namespaces: Vec<String>,
    /// Grants.
    pub grants: Vec<Grant>,
}

fn row(g: &Grant) -> [String; 4] {
    [
        g.account.to_string(),
        g.entitlement.scope.resource_id().to_string(),
        g.entitlement.role.to_string(),
        g.binding.name.clone(),
    ]
}

/// JSON bytes of one item in a chunk, with its separator.
fn size_of<T: Serialize>(item: &T) -> usize {
    serde_json::to_vec(item).map(|v| v.len() + 1).unwrap_or(0)
}

/// The chunks of an inventory, each under [`CHUNK_BYTES`], at most [`MAX_CHUNKS`], and the
/// header; the grants that did not fit are counted in `left_out`.
pub fn encode(inv: &Inventory, generation: &str, slot: Slot) -> (Header, Vec<String>) {
    let fresh = || Chunk { generation: generation.to_string(), ..Default::default() };
    let overhead = size_of(&fresh()) + 64;
    let mut chunks = vec![fresh()];
    let mut used = overhead;
    let mut left_out = 0;
    let items = inv.namespaces.iter().map(|n| (Some(n), None)).chain(inv.grants.iter().map(|g| (None, Some(row(g)))));
    for (ns, grant) in items {
        let size = match (&ns, &grant) {
            (Some(n), _) => size_of(n),
            (_, Some(g)) => size_of(g),
            _ => 0,
        };
        if used + size > CHUNK_BYTES {
            if chunks.len() == MAX_CHUNKS {
                left_out += usize::from(grant.is_some());
                continue;
            }
            chunks.push(fresh());
            used = overhead;
        }
        used += size;
        let last = chunks.last_mut().expect("one chunk at least");
        match (ns, grant) {
            (Some(n), _) => last.namespaces.push(n.clone()),
            (_, Some(g)) => last.grants.push(g),
            _ => {}
        }
    }
    let header = Header {
        generation: generation.to_string(),
        slot,
        chunks: chunks.len(),
        left_out,
        checked_at: None,
        every_seconds: None,
    };
    let texts = chunks.iter().map(|c| serde_json::to_string(c).unwrap_or_default()).collect();
    (header, texts)
}

/// Why a member's inventory cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// A chunk does not parse.
    #[error("chunk {index} of the inventory does not parse: {reason}")]
    Unreadable {
        /// Which chunk.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A chunk of another generation (a rewrite in the middle), or missing.
    #[error("chunk {index} of the inventory is not of generation {generation} (being rewritten)")]
    Torn {
        /// Which chunk.
        index: usize,
        /// The header's generation.
        generation: String,
    },
    /// A grant this connector cannot read.
    #[error("a grant in chunk {index} of the inventory: {source}")]
    Grant {
        /// Which chunk.
        index: usize,
        /// Why.
        source: IdError,
    },
}

/// The inventory from the header's chunks (`None` for a chunk not found), its grants placed in
/// `member`.
pub fn decode(member: &str, header: &Header, chunks: &[Option<String>]) -> Result<Inventory, InventoryError> {
    let mut inv = Inventory::default();
    for index in 0..header.chunks {
        let torn = || InventoryError::Torn { index, generation: header.generation.clone() };
        let text = chunks.get(index).and_then(Option::as_deref).ok_or_else(torn)?;
        let chunk: Chunk =
            serde_json::from_str(text).map_err(|e| InventoryError::Unreadable { index, reason: e.to_string() })?;
        if chunk.generation != header.generation {
            return Err(torn());
        }
        inv.namespaces.extend(chunk.namespaces);
        for [account, ns, role, binding] in chunk.grants {
            let bad = |source| InventoryError::Grant { index, source };
            let account: AccountId = account.parse().map_err(bad)?;
            let (kind, name) = role.split_once(':').ok_or_else(|| bad(IdError::Entitlement(role.clone())))?;
            let scope = if ns.is_empty() { Scope::Cluster } else { Scope::Namespace(ns.clone()) };
            let role = Role { kind: kind.to_string(), name: name.to_string() };
            inv.grants.push(Grant {
                cluster: Some(member.to_string()),
                account,
                entitlement: crate::entitlement::Entitlement { scope, role },
                binding: BindingName {
                    cluster: Some(member.to_string()),
                    namespace: (!ns.is_empty()).then_some(ns),
                    name: binding,
                },
            });
        }
    }
    Ok(inv)
}

#[cfg(test)]
mod tests;
