//! The plan's actions and their results, as recorded in a request's status.
//!
//! In Rust an action is one exhaustive enum ([`Action`]); on the wire it is a Kubernetes-style
//! union (a `kind` plus exactly one member), the shape records have always had, guarded by a CEL
//! rule so the API server refuses any other combination. Adding a kind of action means adding a
//! variant here and following the compiler.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_derive::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{HttpCall, ScimDeprovision};

/// One step of the plan: what to do, which policy asked for it, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(try_from = "wire::PlannedAction", into = "wire::PlannedAction")]
pub struct PlannedAction {
    /// Position in the plan; results refer to it.
    pub id: i32,
    /// The policy that asked for it.
    pub policy: String,
    /// Why: which rule of the policy selected it.
    pub reason: String,
    /// What to do.
    pub action: Action,
}

/// What one planned step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Remove one subject from a RoleBinding or ClusterRoleBinding.
    RemoveBindingSubject(BindingAction),
    /// Record that a subject holds none of the selected bindings (nothing to remove).
    ConfirmAbsent(AbsentCheck),
    /// Deactivate or delete an account through SCIM 2.0; the policy's call rendered for this
    /// request (credentials stay references, never values).
    ScimDeprovision(ScimDeprovision),
    /// Call an HTTP endpoint; the policy's call rendered for this request.
    HttpCall(HttpCall),
}

impl Action {
    /// The action's kind, as recorded.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::RemoveBindingSubject(_) => ActionKind::RemoveBindingSubject,
            Action::ConfirmAbsent(_) => ActionKind::ConfirmAbsent,
            Action::ScimDeprovision(_) => ActionKind::ScimDeprovision,
            Action::HttpCall(_) => ActionKind::HttpCall,
        }
    }

    /// Whether sending it twice is harmless. Binding actions re-read before they write; the
    /// SCIM steps search before they change anything; an HTTP call only when it is a GET or the
    /// policy says so.
    pub fn is_idempotent(&self) -> bool {
        match self {
            Action::RemoveBindingSubject(_) | Action::ConfirmAbsent(_) | Action::ScimDeprovision(_) => true,
            Action::HttpCall(c) => c.is_idempotent(),
        }
    }

    /// Whether executing it changes anything (in the cluster or another system).
    pub fn changes_something(&self) -> bool {
        !matches!(self, Action::ConfirmAbsent(_))
    }
}

impl PlannedAction {
    /// The action's kind.
    pub fn kind(&self) -> ActionKind {
        self.action.kind()
    }
}

/// A type whose schema is that of its wire shape (the type serde converts it through).
macro_rules! schema_of_wire {
    ($t:ty => $wire:ty) => {
        impl JsonSchema for $t {
            fn schema_name() -> Cow<'static, str> {
                <$wire>::schema_name()
            }
            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                <$wire>::json_schema(generator)
            }
        }
    };
}

schema_of_wire!(PlannedAction => wire::PlannedAction);
schema_of_wire!(BindingRef => wire_binding::BindingRef);

/// The wire shape of a planned action: a union of a `kind` and one member.
mod wire {
    use super::*;

    /// One step of the plan.
    #[derive(KubeSchema, Serialize, Deserialize, Clone, Debug)]
    #[x_kube(crates(kube_core = "::kube_core"))]
    #[x_kube(validation = Rule::new(
        "(self.kind == 'RemoveBindingSubject') == has(self.binding) && (self.kind == 'ConfirmAbsent') == has(self.absent) && (self.kind == 'ScimDeprovision') == has(self.scim) && (self.kind == 'HttpCall') == has(self.http)"
    ).message("a planned action carries exactly the member its kind names"))]
    #[serde(rename_all = "camelCase")]
    pub struct PlannedAction {
        /// Position in the plan; results refer to it.
        pub id: i32,
        /// What kind of action this is.
        pub kind: ActionKind,
        /// The policy that asked for it.
        pub policy: String,
        /// Why: which rule of the policy selected the binding.
        pub reason: String,
        /// For `RemoveBindingSubject`: the binding and the subject.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub binding: Option<BindingAction>,
        /// For `ConfirmAbsent`: the subject that no selected binding holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub absent: Option<AbsentCheck>,
        /// For `ScimDeprovision`: the policy's SCIM call with its templates rendered for this
        /// request (credentials stay references, never values).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub scim: Option<ScimDeprovision>,
        /// For `HttpCall`: the policy's HTTP call with its templates rendered for this request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub http: Option<HttpCall>,
    }

    impl From<super::PlannedAction> for PlannedAction {
        fn from(p: super::PlannedAction) -> Self {
            let mut w = PlannedAction {
                id: p.id,
                kind: p.action.kind(),
                policy: p.policy,
                reason: p.reason,
                binding: None,
                absent: None,
                scim: None,
                http: None,
            };
            match p.action {
                Action::RemoveBindingSubject(b) => w.binding = Some(b),
                Action::ConfirmAbsent(a) => w.absent = Some(a),
                Action::ScimDeprovision(s) => w.scim = Some(s),
                Action::HttpCall(h) => w.http = Some(h),
            }
            w
        }
    }

    impl TryFrom<PlannedAction> for super::PlannedAction {
        type Error = String;

        fn try_from(w: PlannedAction) -> Result<Self, String> {
            let action = match (w.kind, w.binding, w.absent, w.scim, w.http) {
                (ActionKind::RemoveBindingSubject, Some(b), None, None, None) => Action::RemoveBindingSubject(b),
                (ActionKind::ConfirmAbsent, None, Some(a), None, None) => Action::ConfirmAbsent(a),
                (ActionKind::ScimDeprovision, None, None, Some(s), None) => Action::ScimDeprovision(s),
                (ActionKind::HttpCall, None, None, None, Some(h)) => Action::HttpCall(h),
                (kind, ..) => {
                    return Err(format!("planned action {} of kind {kind:?} must carry exactly its own member", w.id));
                }
            };
            Ok(super::PlannedAction { id: w.id, policy: w.policy, reason: w.reason, action })
        }
    }
}

/// A subject the policy resolves to that none of the selected bindings holds (already removed).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AbsentCheck {
    /// The subject looked for, e.g. `User alice@example.com`.
    pub subject: String,
    /// How many bindings the policy selected and were checked.
    pub bindings_checked: i32,
}

/// Kinds of action.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    /// Remove one subject from a RoleBinding or ClusterRoleBinding.
    RemoveBindingSubject,
    /// Record that a subject holds none of the selected bindings (nothing to remove).
    ConfirmAbsent,
    /// Deactivate or delete an account through SCIM 2.0.
    ScimDeprovision,
    /// Call an HTTP endpoint.
    HttpCall,
}

impl ActionKind {
    /// The kind as recorded (and as used in metric labels and Events).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::RemoveBindingSubject => "RemoveBindingSubject",
            ActionKind::ConfirmAbsent => "ConfirmAbsent",
            ActionKind::ScimDeprovision => "ScimDeprovision",
            ActionKind::HttpCall => "HttpCall",
        }
    }
}

/// Remove `subject` from `binding`; what to do if that empties it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct BindingAction {
    /// The binding.
    // Recorded as `target`, the field's name since the first records.
    #[serde(rename = "target")]
    pub binding: BindingRef,
    /// The subject exactly as it stands in the binding.
    pub subject: SubjectRef,
    /// What happens to the binding when this was its last subject.
    pub when_empty: EmptyBindingRule,
    /// Who manages the binding, when recognisable when the plan was made: a tool that keeps it in
    /// sync with a source elsewhere puts a removed subject back unless the source changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<ManagedBy>,
}

/// Who manages a binding.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ManagedBy {
    /// What kind of manager.
    pub kind: ManagerKind,
    /// Its name: the Argo CD application, the Flux object, the Helm release, the owner, the
    /// rbac-manager definition, or the field manager.
    pub name: String,
    /// More about it, e.g. `Kustomization flux-system/apps` or `release team-a/web`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Kinds of binding manager.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ManagerKind {
    /// Argo CD (tracking annotation or instance label).
    ArgoCd,
    /// Flux (kustomize-controller or helm-controller labels).
    Flux,
    /// Helm (`app.kubernetes.io/managed-by: Helm`, release annotations).
    Helm,
    /// Another object owns it (an owner reference).
    Owner,
    /// FairwindsOps rbac-manager.
    RbacManager,
    /// Only known as the field manager that last wrote its subjects.
    FieldManager,
}

/// A RoleBinding or ClusterRoleBinding, as seen when the plan was made. Which of the two it is
/// and where it lives are one field, so a namespaced ClusterRoleBinding cannot be written down.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(try_from = "wire_binding::BindingRef", into = "wire_binding::BindingRef")]
pub struct BindingRef {
    /// Kind and (for RoleBindings) namespace.
    pub scope: BindingScope,
    /// Name.
    pub name: String,
    /// UID when planned: a binding recreated under the same name is not touched.
    pub uid: String,
    /// `Kind/name` of the role it grants.
    pub role_ref: String,
}

/// Where a binding lives, which also says its kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BindingScope {
    /// A RoleBinding in this namespace.
    Namespaced(String),
    /// A ClusterRoleBinding.
    Cluster,
}

impl BindingRef {
    /// `RoleBinding` or `ClusterRoleBinding`.
    pub fn kind(&self) -> BindingKind {
        match self.scope {
            BindingScope::Namespaced(_) => BindingKind::RoleBinding,
            BindingScope::Cluster => BindingKind::ClusterRoleBinding,
        }
    }

    /// The namespace of a RoleBinding.
    pub fn namespace(&self) -> Option<&str> {
        match &self.scope {
            BindingScope::Namespaced(ns) => Some(ns),
            BindingScope::Cluster => None,
        }
    }
}

/// The wire shape of a binding reference: `kind` plus an optional `namespace`.
mod wire_binding {
    use super::*;

    /// A RoleBinding or ClusterRoleBinding, as seen when the plan was made.
    #[derive(KubeSchema, Serialize, Deserialize, Clone, Debug)]
    #[x_kube(crates(kube_core = "::kube_core"))]
    #[x_kube(validation = Rule::new("(self.kind == 'RoleBinding') == has(self.__namespace__)").message("a RoleBinding has a namespace and a ClusterRoleBinding none"))]
    #[serde(rename_all = "camelCase")]
    pub struct BindingRef {
        /// `RoleBinding` or `ClusterRoleBinding`.
        pub kind: BindingKind,
        /// Namespace (RoleBindings only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub namespace: Option<String>,
        /// Name.
        pub name: String,
        /// UID when planned: a binding recreated under the same name is not touched.
        pub uid: String,
        /// `Kind/name` of the role it grants.
        pub role_ref: String,
    }

    impl From<super::BindingRef> for BindingRef {
        fn from(b: super::BindingRef) -> Self {
            BindingRef {
                kind: b.kind(),
                namespace: b.namespace().map(str::to_string),
                name: b.name,
                uid: b.uid,
                role_ref: b.role_ref,
            }
        }
    }

    impl TryFrom<BindingRef> for super::BindingRef {
        type Error = String;

        fn try_from(w: BindingRef) -> Result<Self, String> {
            let scope = match (w.kind, w.namespace) {
                (BindingKind::RoleBinding, Some(ns)) if !ns.is_empty() => BindingScope::Namespaced(ns),
                (BindingKind::ClusterRoleBinding, None) => BindingScope::Cluster,
                (kind, _) => return Err(format!("{kind:?} {} has a namespace that does not fit its kind", w.name)),
            };
            Ok(super::BindingRef { scope, name: w.name, uid: w.uid, role_ref: w.role_ref })
        }
    }
}

/// The two kinds of RBAC binding.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BindingKind {
    /// Namespaced.
    RoleBinding,
    /// Cluster-wide.
    ClusterRoleBinding,
}

impl BindingKind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::RoleBinding => "RoleBinding",
            BindingKind::ClusterRoleBinding => "ClusterRoleBinding",
        }
    }
}

/// An RBAC subject.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct SubjectRef {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// Name, exactly as in the binding.
    pub name: String,
    /// ServiceAccount namespace, exactly as in the binding (may be empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What happens to a binding whose last subject is removed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum EmptyBindingRule {
    /// Delete the binding (default).
    #[default]
    Delete,
    /// Keep the binding with no subjects.
    Keep,
}

/// The result of one action.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActionResult {
    /// The `PlannedAction.id` this is the result of.
    pub id: i32,
    /// What kind of action it was.
    pub kind: ActionKind,
    /// The object acted on, e.g. `RoleBinding team-a/edit`.
    pub object: String,
    /// The subject, e.g. `User alice@example.com`.
    pub subject: String,
    /// What happened.
    pub outcome: Outcome,
    /// Details fit to show a person.
    pub message: String,
    /// When it finished.
    pub at: Time,
    /// For external actions: what the other system replied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDetails>,
    /// For binding actions: the binding's subjects as read just before the change, as
    /// `Kind:name` (`User:ann@x.com`, `Group:team-a`, `ServiceAccount:ns/name`) in the binding's
    /// order. Empty when the binding no longer existed. Absent in records written before this
    /// field and for other kinds of action. See [`MAX_SUBJECT_NAMES_BYTES`] for long lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects_before: Option<Vec<String>>,
    /// For binding actions: the binding's subjects once the action was done, in the same form.
    /// Empty when the binding was deleted (outcome `Deleted`), kept with no subjects, or no longer
    /// existed; equal to `subjectsBefore` when nothing changed (`AlreadyAbsent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects_after: Option<Vec<String>>,
}

/// The most bytes of names one `subjectsBefore` or `subjectsAfter` list records (a status must
/// fit in one object). A longer list keeps its first names and ends with `… and N more`.
pub const MAX_SUBJECT_NAMES_BYTES: usize = 320;

impl ActionResult {
    /// The result with the binding's subjects before and after the action (see the fields).
    pub fn with_subjects(mut self, before: Option<Vec<String>>, after: Option<Vec<String>>) -> ActionResult {
        self.subjects_before = before;
        self.subjects_after = after;
        self
    }
}

/// A binding's subjects as recorded in a result: `Kind:name`, or `ServiceAccount:ns/name`, in
/// order, clipped to [`MAX_SUBJECT_NAMES_BYTES`] (the last entry then says how many were left out).
pub fn subject_names<'a>(subjects: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a str>)>) -> Vec<String> {
    let all: Vec<String> = subjects
        .into_iter()
        .map(|(kind, name, ns)| match ns {
            Some(ns) if !ns.is_empty() => format!("{kind}:{ns}/{name}"),
            _ => format!("{kind}:{name}"),
        })
        .collect();
    let mut kept = Vec::new();
    let mut used = 0;
    for (i, n) in all.iter().enumerate() {
        // Room for the closing `… and N more` entry too, unless this is the last name.
        let reserve = if i + 1 == all.len() { 0 } else { 32 };
        // As recorded: a JSON string and its separator.
        let bytes = serde_json::to_string(n).map_or(n.len() + 3, |j| j.len() + 1);
        if used + bytes + reserve > MAX_SUBJECT_NAMES_BYTES {
            kept.push(format!("… and {} more", all.len() - i));
            return kept;
        }
        used += bytes;
        kept.push(n.clone());
    }
    kept
}

/// What an external system replied.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDetails {
    /// System name.
    pub system: String,
    /// The account id found (SCIM `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// HTTP status of the last call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// Calls made, retries included.
    pub attempts: i32,
}

/// What one action did.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The subject was removed from the binding.
    Removed,
    /// The subject was removed and the now-empty binding deleted (or the account deleted).
    Deleted,
    /// The external account was deactivated.
    Deactivated,
    /// The subject (or the binding) was already gone: a success.
    AlreadyAbsent,
    /// The action failed; see the message.
    Failed,
}

impl Outcome {
    /// True for outcomes where this request itself took access away.
    pub fn is_removal(self) -> bool {
        matches!(self, Outcome::Removed | Outcome::Deleted | Outcome::Deactivated)
    }

    /// The outcome as recorded (and as used in metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Removed => "Removed",
            Outcome::Deleted => "Deleted",
            Outcome::Deactivated => "Deactivated",
            Outcome::AlreadyAbsent => "AlreadyAbsent",
            Outcome::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for BindingRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.scope {
            BindingScope::Namespaced(ns) => write!(f, "RoleBinding {ns}/{}", self.name),
            BindingScope::Cluster => write!(f, "ClusterRoleBinding {}", self.name),
        }
    }
}

impl std::fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => write!(f, "{} {ns}/{}", self.kind, self.name),
            _ => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

#[cfg(test)]
mod tests;
