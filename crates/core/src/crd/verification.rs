//! The record of a verification: what the API server's authorizer answered about the target
//! after the removals, and which bindings still name them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BindingKind, ResidualAccessRule, UnverifiedRule};

/// The most bytes a recorded verification takes: at most `verify::reviews::MAX_REVIEWS` reviews
/// and `verify::residual::MAX_RESIDUAL` residual bindings with their clipped texts, identities
/// and notes. Planning keeps this room in the record.
pub const MAX_VERIFICATION_BYTES: usize = 128 * 1024;

/// What the operator checked once the actions were done: does the target still hold the access
/// the removed bindings granted?
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// When the checks were made.
    pub checked_at: Time,
    /// What the matching policies say remaining access does to the answer (`Fail` when any of
    /// them says so).
    pub on_residual_access: ResidualAccessRule,
    /// What the matching policies say a verification that could not be made does to the answer
    /// (`Fail` when any of them says so; records from before this field read as `Fail`).
    #[serde(default)]
    pub on_unverified: UnverifiedRule,
    /// The identities asked about, as the authorizer sees them (`User ann@x.com (groups: g)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    /// The SubjectAccessReviews asked, with the authorizer's answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub reviews: Vec<Review>,
    /// Bindings anywhere in the cluster that still name one of the target's subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub residual: Vec<ResidualBinding>,
    /// What was not checked, and why (reviews beyond the bound, a role that no longer exists,
    /// residual bindings beyond the bound).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub notes: Vec<String>,
    /// Set when the checks could not be made (the condition `Verified` is then `Unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One question to the authorizer: may this identity do this?
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    /// Which identity (an entry of `identities`, by index).
    pub identity: i32,
    /// The verb, e.g. `update`.
    pub verb: String,
    /// API group (`""` is the core group); absent for a non-resource URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Resource, e.g. `deployments`; absent for a non-resource URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Subresource, e.g. `log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// Namespace; absent: cluster-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name, when the removed rule named objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Non-resource URL, e.g. `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The removed binding whose role granted this (`RoleBinding ns/name`).
    pub granted_by: String,
    /// The authorizer's answer: still allowed.
    pub allowed: bool,
    /// The authorizer's reason (names the binding that allows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A binding that still names one of the target's subjects after the removals.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ResidualBinding {
    /// `RoleBinding` or `ClusterRoleBinding`.
    pub kind: BindingKind,
    /// Namespace (RoleBindings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// `Kind/name` of the role it grants.
    pub role_ref: String,
    /// The subject it names, e.g. `User ann@x.com`.
    pub subject: String,
    /// Why this request did not remove it.
    pub why: String,
}

impl ResidualBinding {
    /// `RoleBinding ns/name` or `ClusterRoleBinding name`.
    pub fn object(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind.as_str(), self.name),
            None => format!("{} {}", self.kind.as_str(), self.name),
        }
    }
}

impl Review {
    /// What was asked, in words: `update deployments in team-a`, `get /metrics`.
    pub fn describe(&self) -> String {
        if let Some(path) = &self.path {
            return format!("{} {path}", self.verb);
        }
        let mut what = self.resource.clone().unwrap_or_default();
        if let Some(g) = self.group.as_deref().filter(|g| !g.is_empty() && *g != "*") {
            what = format!("{what}.{g}");
        }
        if let Some(s) = &self.subresource {
            what = format!("{what}/{s}");
        }
        if let Some(n) = &self.name {
            what = format!("{what} {n:?}");
        }
        match &self.namespace {
            Some(ns) => format!("{} {what} in {ns}", self.verb),
            None => format!("{} {what} cluster-wide", self.verb),
        }
    }
}
