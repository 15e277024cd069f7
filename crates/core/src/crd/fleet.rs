//! Fleet: one hub cluster that Lumos calls, and member clusters whose agents dial out to it.
//! `MemberCluster` and `ClusterSet` live on the hub (cluster-scoped); a `MemberRequest` is one
//! request handed to one member, in that member's mailbox namespace on the hub.

// kube-derive repeats `type_` across printcolumn(...) entries, which this lint misreads as duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApplicationSelector, DeprovisionRequestSpec};

/// A member cluster known to the hub: its labels (on the object) select it, its mailbox is the
/// hub namespace its agent reads.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "access.deprovisioner.dev",
    version = "v1alpha1",
    kind = "MemberCluster",
    shortname = "dpmember",
    category = "deprovisioner",
    status = "MemberClusterStatus",
    doc = "A member cluster of the fleet, on the hub: its mailbox namespace, and its agent's last heartbeat.",
    printcolumn(name = "Mailbox", type_ = "string", json_path = ".spec.mailbox"),
    printcolumn(name = "Heartbeat", type_ = "date", json_path = ".status.lastHeartbeat")
)]
#[serde(rename_all = "camelCase")]
pub struct MemberClusterSpec {
    /// The hub namespace holding the requests addressed to this member (its agent may read only
    /// there), by convention `deprovisioner-member-<name>`.
    #[schemars(length(min = 1, max = 63))]
    pub mailbox: String,
}

/// What the member's agent last said.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemberClusterStatus {
    /// When the agent last reported (every 30 s while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    /// The agent's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// Which member clusters a Lumos application's removals reach.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "access.deprovisioner.dev",
    version = "v1alpha1",
    kind = "ClusterSet",
    shortname = "dpcs",
    category = "deprovisioner",
    doc = "On the hub: the member clusters (by label) a Lumos application's removals are handed to."
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSetSpec {
    /// The Lumos application (appId and/or instanceId; both must match when both are given).
    pub application: ApplicationSelector,
    /// The members it reaches, by their labels. Never empty: it does not mean "every member".
    pub members: MemberSelector,
}

/// Members by label.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("size(self.matchLabels) > 0").message("members.matchLabels must name at least one label"))]
#[serde(rename_all = "camelCase")]
pub struct MemberSelector {
    /// Every label must match.
    pub match_labels: BTreeMap<String, String>,
}

/// One hub request handed to one member: in the member's mailbox namespace on the hub, named by
/// the hub record's UID (a hub restart never hands it twice). The hub writes the spec; the
/// member's agent writes the status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "access.deprovisioner.dev",
    version = "v1alpha1",
    kind = "MemberRequest",
    namespaced,
    shortname = "dpmr",
    category = "deprovisioner",
    status = "MemberRequestStatus",
    doc = "A request the hub handed to one member cluster, and (in status) the member's record of it.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Hub record", type_ = "string", json_path = ".spec.hubRecord"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.report.phase"),
    printcolumn(name = "Record", type_ = "string", json_path = ".status.report.record"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct MemberRequestSpec {
    /// The member it is addressed to; an agent refuses one naming another cluster.
    pub cluster: String,
    /// The hub record's name.
    pub hub_record: String,
    /// The hub record's UID.
    pub hub_uid: String,
    /// The request as the hub recorded it.
    pub request: DeprovisionRequestSpec,
}

/// Where a member is with a request handed to it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MemberPhase {
    /// Handed over; the member's agent has not answered yet.
    #[default]
    Pending,
    /// The member recorded it and is working on it.
    InProgress,
    /// The member's record succeeded.
    Succeeded,
    /// The member's record failed.
    Failed,
    /// The member's record is a dry run: planned, nothing changed.
    DryRun,
    /// The agent refused it (addressed to another cluster); nothing was changed there.
    Refused,
}

impl MemberPhase {
    /// True once the member will not change its answer.
    pub fn is_terminal(self) -> bool {
        matches!(self, MemberPhase::Succeeded | MemberPhase::Failed | MemberPhase::DryRun | MemberPhase::Refused)
    }

    /// True when the member's record is a success (a dry run counts, as for one cluster).
    pub fn is_success(self) -> bool {
        matches!(self, MemberPhase::Succeeded | MemberPhase::DryRun)
    }

    /// The phase as written.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberPhase::Pending => "Pending",
            MemberPhase::InProgress => "InProgress",
            MemberPhase::Succeeded => "Succeeded",
            MemberPhase::Failed => "Failed",
            MemberPhase::DryRun => "DryRun",
            MemberPhase::Refused => "Refused",
        }
    }
}

/// What the member's agent reports about its record of a request.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemberReport {
    /// Where the member is with it.
    #[serde(default)]
    pub phase: MemberPhase,
    /// The member's record (a `DeprovisionRequest` there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Its UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_uid: Option<String>,
    /// Its `Verified` condition: `True`, `False` or `Unknown` (absent before it is verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    /// Its message (or why the agent refused it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the member's own policies refused the plan: its `Planned` condition's reason (e.g.
    /// `EntitlementNotAllowed`), so the hub answers a refusal as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// When the agent wrote this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

/// The member's answer: its report, and once its record is finished, that record's status
/// (what `deprovisioner evidence` on the hub shows for the member).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemberRequestStatus {
    /// The member's report.
    #[serde(default)]
    pub report: MemberReport,
    /// The member's finished record's status, as recorded there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_status: Option<Box<super::DeprovisionRequestStatus>>,
}

/// On the hub's record: one member the request was handed to, and that member's record.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemberRecord {
    /// The member cluster.
    pub cluster: String,
    /// The `MemberRequest` on the hub (in `mailbox`).
    pub member_request: String,
    /// The member's mailbox namespace on the hub.
    pub mailbox: String,
    /// What the member's agent reported (its record's name, UID, phase, verification, message).
    #[serde(default)]
    pub reported: MemberReport,
}
