//! `AccessClock`: when each subject started holding each binding whose access ends by itself
//! (a rule's `maxAccess`, or the binding's `deprovisioner.dev/expires` annotation). The leading
//! operator keeps them in a few objects (bindings spread over them by UID), written with
//! resourceVersion, so a clock survives restarts and leader changes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StartEvidence;

/// One shard of the clocks: the bindings whose UID falls in it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "access.deprovisioner.dev",
    version = "v1alpha1",
    kind = "AccessClock",
    shortname = "dpclock",
    category = "deprovisioner",
    doc = "When each subject started holding each binding whose access ends by itself (written by the leading deprovisioner only)."
)]
#[serde(rename_all = "camelCase")]
pub struct AccessClockSpec {
    /// Bindings by UID (a binding created again under its name is another binding).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bindings: BTreeMap<String, BindingClocks>,
}

/// The clocks of one binding.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BindingClocks {
    /// The binding, e.g. `RoleBinding team-a/deployers` (for people reading it).
    pub binding: String,
    /// By account id (`User:ann@x.com`, `Group:x`, `ServiceAccount:ns/name`): when the subject
    /// started holding the binding. A subject removed is dropped, so one added again starts anew.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subjects: BTreeMap<String, Clock>,
    /// The binding's resourceVersion these clocks are exact for: the leader saw every change of
    /// the binding up to it. None: not known (a change it saw later is not in them yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// When a subject started holding a binding, and how that is known.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Clock {
    /// The start.
    pub since: Time,
    /// How it is known.
    pub from: StartEvidence,
}
