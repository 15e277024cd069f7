//! The fleet: a hub cluster Lumos calls, and member clusters whose agents dial out to it. The
//! hub's part is in `controller` (`--fleet-hub`); a member's agent is [`agent`]. The decisions
//! (selection, names, admission, the hub's outcome) are pure, in `deprovisioner_core::fleet`.

pub mod agent;
pub mod report;

pub use deprovisioner_core::fleet::*;

use std::time::Duration;

use kube::Client;

/// How a member's agent reaches the hub, and who it is there.
#[derive(Clone)]
pub struct AgentSettings {
    /// A client for the hub, with the agent's own identity there (it may read only its mailbox).
    pub hub: Client,
    /// This member's name (its `MemberCluster` on the hub).
    pub member: String,
    /// Its mailbox namespace on the hub.
    pub mailbox: String,
    /// How often it writes its heartbeat to its `MemberCluster`.
    pub heartbeat: Duration,
    /// How often it computes this cluster's access map and reports it when it changed.
    pub inventory_every: Duration,
    /// Principals never reported (as the connector never lists them).
    pub protected: crate::plan::subject::Protected,
}

impl std::fmt::Debug for AgentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSettings")
            .field("member", &self.member)
            .field("mailbox", &self.mailbox)
            .field("heartbeat", &self.heartbeat)
            .field("inventory_every", &self.inventory_every)
            .finish_non_exhaustive()
    }
}

/// The mailbox namespace of a member by convention: `deprovisioner-member-<name>`.
pub fn default_mailbox(member: &str) -> String {
    format!("deprovisioner-member-{member}")
}
