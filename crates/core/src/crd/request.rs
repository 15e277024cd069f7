//! `DeprovisionRequest`: one Lumos call (or a manual request) and, in its status, the record of
//! what was planned and done.

// kube-derive repeats `type_` across printcolumn(...) entries, which this lint misreads as duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::{ActionResult, BindingAction, BindingRef, Outcome, PlannedAction, SubjectRef, Verification};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to deprovision: the Lumos payload, where it came from, and whether to only plan.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "access.deprovisioner.dev",
    version = "v1alpha1",
    kind = "DeprovisionRequest",
    shortname = "dpr",
    category = "deprovisioner",
    status = "DeprovisionRequestStatus",
    doc = "A request to remove one person's access, and the audit record of what was removed.",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetUser.email"),
    printcolumn(name = "App", type_ = "string", json_path = ".spec.application.appId"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Removed", type_ = "integer", json_path = ".status.removed"),
    printcolumn(name = "Verified", type_ = "string", json_path = ".status.conditions[?(@.type==\"Verified\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message"),
    selectable = ".status.phase"
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: create a new DeprovisionRequest instead"))]
#[x_kube(validation = Rule::new("!has(self.hubSource) || self.source == 'Fleet'").message("hubSource is only for source Fleet (a member's record of a request the fleet's hub handed to it)"))]
#[serde(rename_all = "camelCase")]
pub struct DeprovisionRequestSpec {
    /// The Lumos application whose access goes.
    pub application: Application,
    /// The permissions to remove; empty means the whole application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
    /// Who triggered the request in Lumos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Person>,
    /// Whose access is removed.
    pub target_user: Person,
    /// The requester's comment, as Lumos sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_comment: Option<String>,
    /// Lumos intake fields (values that were not strings are kept as their JSON text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
    /// Where the request came from.
    #[serde(default)]
    pub source: RequestSource,
    /// Compute and record the plan, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// For source `Expiry`: the one subject of the one binding whose time is up, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<Expiry>,
    /// For source `Fleet`: the source of the hub's record this member's record came from. A
    /// `LumosAccount` subject applies only when it was `LumosConnector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_source: Option<RequestSource>,
}

impl DeprovisionRequestSpec {
    /// True when the Lumos connector recorded the request: here (`LumosConnector`), or on the
    /// fleet's hub that handed it to this member (`Fleet` with `hubSource: LumosConnector`).
    pub fn from_connector(&self) -> bool {
        self.source == RequestSource::LumosConnector
            || (self.source == RequestSource::Fleet && self.hub_source == Some(RequestSource::LumosConnector))
    }
}

/// Access whose time is up: which subject of which binding, since when it held it (and how that
/// is known), when it was due to end and what said so.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Expiry {
    /// The binding (with its UID: a binding created again under the name is another binding).
    pub binding: BindingRef,
    /// The subject exactly as written in it.
    pub subject: SubjectRef,
    /// Its Lumos connector account id, e.g. `User:ann@x.com`.
    pub account: String,
    /// When the subject started holding the binding.
    pub started_at: Time,
    /// How that start is known.
    pub started_from: StartEvidence,
    /// When its access was due to end.
    pub due_at: Time,
    /// What ended it: `maxAccess` of a policy's rule, or the binding's annotation.
    pub ended_by: EndedBy,
    /// The policy whose rules select the binding (its `managedBindings`, `emptyBindings` and
    /// verification rules apply).
    pub policy: String,
    /// What ended it, fit to show a person, e.g. `DeprovisionPolicy demo rules[0] maxAccess 720h`.
    pub reason: String,
    /// The binding's resourceVersion when the expiry was scheduled: unchanged at planning, the
    /// subject held it throughout; changed, the leader's clocks say whether it is still the
    /// same grant (see `expiry::holding`). None in requests recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_version: Option<String>,
}

/// How the operator knows when a subject started holding a binding.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StartEvidence {
    /// The leading operator saw the subject appear (within a second).
    Observed,
    /// The binding's `managedFields` time of the last write of `subjects`: the subject was added
    /// while no operator was leading, to a binding it had seen without it.
    SubjectsWritten,
    /// The binding's `creationTimestamp`: the earliest it can have held it (the binding was not
    /// known to the operator before).
    Created,
}

/// What ended an access.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndedBy {
    /// A policy rule's `maxAccess`.
    MaxAccess,
    /// The binding's `deprovisioner.dev/expires` annotation.
    Annotation,
}

/// The Lumos application.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("has(self.appId) || has(self.instanceId)").message("application needs appId or instanceId"))]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Lumos `app_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Lumos `instance_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Lumos `user_friendly_label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_friendly_label: Option<String>,
}

/// One Lumos permission.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// The permission's value: what policies match on.
    pub value: String,
    /// Human label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Lumos type, e.g. `PERMISSION`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Lumos source, e.g. `MANUAL`, `OKTA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A person as Lumos describes them.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// Email address.
    #[schemars(length(min = 3))]
    pub email: String,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
}

/// An action whose call was sent and whose outcome is not recorded yet.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attempting {
    /// The `PlannedAction.id`.
    pub id: i32,
    /// When the call was about to be sent.
    pub since: Time,
}

/// A binding that named a removed subject again after the request finished.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Regrant {
    /// The binding, e.g. `RoleBinding team-a/deployers`.
    pub object: String,
    /// The subject as written in it, e.g. `User ann@x.com`.
    pub subject: String,
    /// When the operator saw it.
    pub at: Time,
    /// The binding's UID when seen. Absent in records written before this field: such an entry
    /// stands for whichever binding has that name (it is not reported again while one does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// How the binding relates to the request. Absent in records written before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<RegrantOrigin>,
    /// The field manager that last wrote the binding's subjects, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_manager: Option<String>,
    /// Whether the operator removed the subject again (`onRegrant: Remove`).
    #[serde(default)]
    pub removed_again: bool,
    /// With `onRegrant: Remove`, the removal planned and done again, recorded as a first
    /// removal's action and result are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal: Option<RegrantRemoval>,
    /// What happened, fit to show a person.
    pub message: String,
}

/// How a binding naming a removed subject relates to the request.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegrantOrigin {
    /// A binding this request removed the person from (same kind, namespace and name, also when
    /// it was deleted and created again since): the request's re-grant. `onRegrant: Remove`
    /// removes it again when the policies that removed it still select it.
    RemovedBinding,
    /// A binding created after the request finished that the request never touched: new access
    /// elsewhere, reported only, never removed.
    NewBinding,
}

/// A re-grant removed again: the action as a first removal's plan records it, and its result.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegrantRemoval {
    /// The policy whose rules selected the binding (one that made the original removal).
    pub policy: String,
    /// Which rule selected it, as in the plan.
    pub reason: String,
    /// The binding (its UID when planned again), the subject, `whenEmpty` and who manages it.
    pub action: BindingAction,
    /// What happened.
    pub outcome: Outcome,
    /// The binding's subjects just before, as in a result's `subjectsBefore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects_before: Option<Vec<String>>,
    /// The binding's subjects after, as in a result's `subjectsAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects_after: Option<Vec<String>>,
}

/// Where a request came from.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RequestSource {
    /// Created by the webhook endpoint from a Lumos call.
    LumosWebhook,
    /// Created by the Lumos connector's `unassign_entitlement`.
    LumosConnector,
    /// Created by the leading operator when a subject's time in a binding was up (`maxAccess`, or
    /// the binding's `deprovisioner.dev/expires` annotation).
    Expiry,
    /// Created by a person or another tool (`kubectl apply`).
    #[default]
    Manual,
    /// Created by this member cluster's fleet agent from a request the hub handed to it.
    Fleet,
}

/// Lifecycle phase of a request.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    /// Accepted, not yet planned.
    #[default]
    Pending,
    /// Plan recorded, actions being executed.
    InProgress,
    /// Every action succeeded (or the access was already gone).
    Succeeded,
    /// At least one action failed, or the request could not be planned.
    Failed,
    /// `dryRun`: the plan is recorded and nothing was changed.
    DryRun,
}

impl Phase {
    /// True once the request will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::DryRun)
    }

    /// The phase as recorded (and as used in metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::InProgress => "InProgress",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::DryRun => "DryRun",
        }
    }
}

/// The record: plan, results, and the outcome given to Lumos.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeprovisionRequestStatus {
    /// Where the request is in its lifecycle.
    #[serde(default)]
    pub phase: Phase,
    /// metav1-style conditions (`Planned`, `Complete`, `Verified`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Policies that matched the application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Every action the operator will take, written before any is taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2000))]
    pub plan: Vec<PlannedAction>,
    /// One result per finished action, in the order they finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2000))]
    pub results: Vec<ActionResult>,
    /// Number of subjects removed (bindings edited or deleted).
    #[serde(default)]
    pub removed: i32,
    /// What the API server's authorizer says remains once the actions are done (requests with
    /// binding actions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Access that came back after the request finished: a binding naming a removed subject
    /// again (noticed for `--regrant-watch` after the request finished).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub regrants: Vec<Regrant>,
    /// When the controller first picked the request up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the request reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// The message given (or to give) to Lumos: short and fit to show a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A call that is not safe to repeat, recorded just before it was sent. Still here on
    /// resume (the operator stopped, or could not record the outcome): the action ends
    /// `Failed` with its outcome unknown, and is never sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempting: Option<Attempting>,
    /// Transient errors met so far while executing.
    #[serde(default)]
    pub retries: i32,
    /// The last transient error, if the controller is retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The target's last activity when the request was planned, from the activity store (when
    /// the operator reads it): what an inactivity removal was based on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<super::RecordedActivity>,
    /// On a fleet hub: the member clusters this request was handed to (chosen once, when first
    /// planned), and each member's record as its agent reported it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub members: Vec<super::MemberRecord>,
}
