//! `DeprovisionPolicy`: what a Lumos application (and each of its permissions) means in this
//! cluster, and how a Lumos user becomes Kubernetes subjects.

// kube-derive repeats `type_` across printcolumn(...) entries, which this lint misreads as duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EmptyBindingRule;

/// Which application a policy covers, who its users are here, and which access to remove.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "access.deprovisioner.dev",
    version = "v1alpha1",
    kind = "DeprovisionPolicy",
    shortname = "dpp",
    category = "deprovisioner",
    status = "DeprovisionPolicyStatus",
    doc = "Says what a Lumos application means in this cluster: which subjects and which access.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.application.appId"),
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.conditions[?(@.type==\"Valid\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DeprovisionPolicySpec {
    /// Which Lumos application this policy covers.
    pub application: ApplicationSelector,
    /// How the Lumos target user becomes Kubernetes subjects.
    #[schemars(length(min = 1, max = 16))]
    pub subjects: Vec<SubjectTemplate>,
    /// Which access to remove, per Lumos permission.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<AccessRule>,
    /// What happens to a binding whose last subject goes (default `Delete`).
    #[serde(default)]
    pub empty_bindings: EmptyBindingRule,
    /// What the answer is when, after the removals, the API server's authorizer still allows the
    /// target what a removed binding granted (default `Fail`).
    #[serde(default)]
    pub on_residual_access: ResidualAccessRule,
    /// What the answer is when the removals were made but could not be verified (the authorizer
    /// or a role could not be read, even after asking again for a few seconds): `Fail` (default)
    /// answers `FAILURE` "removed, but not verified: <why>"; `Report` opts out and answers
    /// `SUCCESS`, saying it was not verified.
    #[serde(default)]
    pub on_unverified: UnverifiedRule,
    /// What happens when a binding to edit is kept in sync by a tool (Argo CD, Flux, Helm, an
    /// owner, rbac-manager): `Remove` (default) removes and warns that it will come back unless
    /// the source changes; `Fail` changes nothing and names every such binding.
    #[serde(default)]
    pub managed_bindings: ManagedBindingRule,
    /// What happens when removed access comes back after a request finished (a binding the
    /// request removed the person from names them again): `Report` (default) records it on the
    /// request (condition `Regranted`, an Event, a metric); `Remove` also removes it again as
    /// this policy's first removal would (its rules' scope, its `managedBindings`), at most 3 times
    /// per binding per request. Access given elsewhere later is only reported.
    #[serde(default)]
    pub on_regrant: RegrantRule,
    /// Access that ends by itself: subjects never expired in the bindings this policy selects,
    /// and whether end times written on a binding (the `deprovisioner.dev/expires` annotation)
    /// are honoured. Rules say how long access may last (`maxAccess`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<ExpiryRule>,
}

/// Time-bound access in the bindings a policy selects.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryRule {
    /// Account ids never expired in the bindings this policy selects (by `maxAccess` or by an
    /// annotation), with `*` wildcards: `User:breakglass@example.com`, `Group:sre-*`,
    /// `ServiceAccount:ci/*`. Protected subjects (`system:`, the operator's own) are never
    /// touched anyway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub exempt: Vec<String>,
    /// Whether the end times the granting tool writes on a binding (annotation
    /// `deprovisioner.dev/expires`) end access in the bindings this policy selects: `Honour`
    /// (default) or `Ignore`.
    #[serde(default)]
    pub annotations: ExpiryAnnotations,
}

/// Whether a binding's own end times are honoured.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExpiryAnnotations {
    /// The earlier of the annotation's time and `maxAccess` ends the access.
    #[default]
    Honour,
    /// Only `maxAccess` ends access.
    Ignore,
}

/// What access that comes back does.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RegrantRule {
    /// Record it on the request and report it.
    #[default]
    Report,
    /// Record it, report it, and remove it again within the policy's scope (bounded).
    Remove,
}

/// What a binding kept in sync by another tool does to a request.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ManagedBindingRule {
    /// Remove the subject and warn (in the record and the Lumos message).
    #[default]
    Remove,
    /// Fail the request before changing anything, naming every managed binding.
    Fail,
}

/// What remaining access found by the verification does to the answer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResidualAccessRule {
    /// The answer is `FAILURE` (the removals stay done and recorded).
    #[default]
    Fail,
    /// The answer stays `SUCCESS`; the message and the record name what remains.
    Report,
}

/// What removals that could not be verified do to the answer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnverifiedRule {
    /// The answer is `FAILURE` (the removals stay done and recorded).
    #[default]
    Fail,
    /// The answer stays `SUCCESS`; the message and the record say it was not verified.
    Report,
}

/// Matches a Lumos application by `app_id` and/or `instance_id` (both must match when both given).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("has(self.appId) || has(self.instanceId)").message("application needs appId or instanceId"))]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSelector {
    /// Lumos `app_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub app_id: Option<String>,
    /// Lumos `instance_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub instance_id: Option<String>,
}

/// One Kubernetes subject the target user is known as.
// `namespace` is a CEL reserved word: API servers before 1.32 accept only the escaped
// `__namespace__`, which later ones accept too.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("self.kind != 'ServiceAccount' || has(self.__namespace__)").message("a ServiceAccount subject needs a namespace"))]
#[x_kube(validation = Rule::new("self.kind != 'LumosAccount' || !has(self.caseInsensitive) || !self.caseInsensitive").message("a LumosAccount subject is matched exactly (the connector lists alice@x and Alice@X as two accounts): it cannot be caseInsensitive"))]
#[serde(rename_all = "camelCase")]
pub struct SubjectTemplate {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: SubjectKind,
    /// Name template, e.g. `{{target_user.email}}` or `{{custom_fields.username}}`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// ServiceAccount namespace (template allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Prepended to the rendered name, e.g. `oidc:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Match names ignoring ASCII case (IdP emails often differ in case). Not for a
    /// `LumosAccount`: the connector lists names differing in case as distinct accounts.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Patterns (`*` wildcards) the rendered name (before the prefix) must match; a request whose
    /// name matches none fails, changing nothing. Use it when the name comes from fields the
    /// requester types (`custom_fields`, `user`), e.g. `["*@example.com"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_names: Vec<String>,
    /// Patterns (`*` wildcards) the rendered ServiceAccount namespace must match. Required when
    /// the namespace comes from fields the requester types (`custom_fields`, `user`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_namespaces: Vec<String>,
}

/// RBAC subject kinds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKind {
    /// A user name.
    User,
    /// A group name (the operator can only remove direct bindings of the group).
    Group,
    /// A ServiceAccount.
    ServiceAccount,
    /// The Lumos connector's account id, rendered from the template (e.g.
    /// `{{custom_fields.accountId}}`): `User:<name>`, `Group:<name>` or
    /// `ServiceAccount:<namespace>/<name>`. Only requests from the Lumos connector may use it.
    LumosAccount,
}

/// Which access to remove when a permission matches.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("has(self.roleBindings) || has(self.clusterRoleBindings) || has(self.namespaceAccess) || has(self.entitlements) || has(self.scim) || has(self.http)").message("a rule needs roleBindings, clusterRoleBindings, namespaceAccess, entitlements, scim or http"))]
#[x_kube(validation = Rule::new("!has(self.maxAccess) || has(self.roleBindings) || has(self.clusterRoleBindings) || (has(self.namespaceAccess) && has(self.namespaceAccess.namespaces) && size(self.namespaceAccess.namespaces) > 0)").message("maxAccess needs roleBindings, clusterRoleBindings or namespaceAccess with namespaces: the bindings whose access it ends"))]
#[serde(rename_all = "camelCase")]
pub struct AccessRule {
    /// Lumos permission values this rule applies to: exact, or with `*` wildcards. Empty: the
    /// rule applies to every permission and to whole-application requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// RoleBindings to remove the subjects from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_bindings: Option<RoleBindingSelector>,
    /// ClusterRoleBindings to remove the subjects from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_role_bindings: Option<ClusterRoleBindingSelector>,
    /// Every RoleBinding in the named namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_access: Option<NamespaceAccess>,
    /// The bindings granting the entitlement the Lumos connector names in the permission
    /// (`<entitlement_type>/<resource_id>/<entitlement_id>`), within the bounds given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlements: Option<EntitlementAccess>,
    /// Deactivate or delete the user's account in a SCIM 2.0 service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim: Option<ScimDeprovision>,
    /// Call an HTTP endpoint that removes the user's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCall>,
    /// How long a subject may hold a binding this rule selects (`roleBindings`,
    /// `clusterRoleBindings`, `namespaceAccess.namespaces`), as a duration of hours, minutes and
    /// seconds (`720h`, `36h30m`, `90s`); then the operator removes it, as a request with source
    /// `Expiry`. Counted from when the subject started holding the binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]{1,7}h)?([0-9]{1,9}m)?([0-9]{1,11}s)?$"), length(min = 2, max = 30))]
    #[x_kube(validation = Rule::new("self.matches('[1-9]')").message("maxAccess must be more than zero: access would end at once"))]
    pub max_access: Option<String>,
}

/// A key of a Secret in the operator's own namespace (there is no namespace field on purpose:
/// a policy cannot point the operator at another namespace's Secret).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key in the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// PEM CA certificates to trust, from a Secret or ConfigMap in the operator's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("has(self.secret) != has(self.configMap)").message("caBundle needs exactly one of secret or configMap"))]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    /// From a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretKeyRef>,
    /// From a ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<SecretKeyRef>,
}

/// How the operator authenticates to a SCIM service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("has(self.bearerToken) != (has(self.username) && has(self.password))").message("credentials need bearerToken, or username and password"))]
#[serde(rename_all = "camelCase")]
pub struct ScimCredentials {
    /// `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretKeyRef>,
    /// Basic auth user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretKeyRef>,
    /// Basic auth password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeyRef>,
}

/// Which SCIM attribute finds the user.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScimMatchAttribute {
    /// `userName eq "..."`.
    #[serde(rename = "userName")]
    UserName,
    /// `emails.value eq "..."`.
    #[serde(rename = "emails.value")]
    Email,
}

impl ScimMatchAttribute {
    /// The attribute path in SCIM filters.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimMatchAttribute::UserName => "userName",
            ScimMatchAttribute::Email => "emails.value",
        }
    }
}

/// What to do with the SCIM account.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ScimMode {
    /// `PATCH` with `active: false` (default: reversible, keeps history).
    #[default]
    Deactivate,
    /// `DELETE` the account.
    Delete,
}

/// A SCIM 2.0 (RFC 7644) service holding accounts of the application's users.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ScimDeprovision {
    /// Name of the system, shown in records and messages.
    #[schemars(length(min = 1, max = 63))]
    pub system: String,
    /// SCIM base URL (the one holding `/Users`), `https://` (or `http://` for loopback tests).
    #[schemars(length(min = 8))]
    pub base_url: String,
    /// Credentials, from Secrets in the operator's namespace.
    pub credentials: ScimCredentials,
    /// Extra CA certificates to trust for this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleRef>,
    /// The attribute that finds the user (default `emails.value`).
    #[serde(default = "default_match_attribute")]
    pub match_attribute: ScimMatchAttribute,
    /// The value to match, a template (default `{{target_user.email}}`). Escaped per the RFC 7644
    /// filter grammar.
    #[serde(default = "default_match_value")]
    pub match_value: String,
    /// Deactivate (default) or delete.
    #[serde(default)]
    pub action: ScimMode,
    /// Remove the user from these groups (by `displayName`) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_from_groups: Vec<String>,
    /// Per-call timeout in seconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: i32,
    /// Attempts per call on 429, 5xx and connection errors.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: i32,
    /// Allow link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10,
    /// fd00:ec2::254), refused by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_link_local_addresses: bool,
}

impl ScimDeprovision {
    /// The RFC 7644 filter that finds the user, e.g. `emails.value eq "a@b.c"` (escaped). Only
    /// meaningful once `match_value` is rendered.
    pub fn filter(&self) -> String {
        crate::plan::template::scim_filter(self.match_attribute.as_str(), &self.match_value)
    }
}

fn default_match_attribute() -> ScimMatchAttribute {
    ScimMatchAttribute::Email
}
fn default_match_value() -> String {
    "{{target_user.email}}".into()
}
fn default_timeout() -> i32 {
    10
}
fn default_attempts() -> i32 {
    4
}

/// A header of an HTTP action: a literal value or one from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("a header needs exactly one of value or valueFrom"))]
#[serde(rename_all = "camelCase")]
pub struct HeaderSpec {
    /// Header name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Literal value (recorded in the plan: never put credentials here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value from a Secret in the operator's namespace (never recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretKeyRef>,
}

/// An HTTP call that removes the user's account in another system. Every call carries an
/// `Idempotency-Key` header (`<request uid>-<action id>`) the target may use.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct HttpCall {
    /// Name of the system, shown in records and messages.
    #[schemars(length(min = 1, max = 63))]
    pub system: String,
    /// HTTP method (default `POST`).
    #[serde(default = "default_method")]
    pub method: String,
    /// URL template; inserted payload values are percent-encoded.
    #[schemars(length(min = 8))]
    pub url: String,
    /// Headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderSpec>,
    /// JSON body template; inserted payload values are JSON-escaped (write `"{{target_user.email}}"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Status codes meaning success (default: any 2xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_codes: Vec<i32>,
    /// Status codes meaning the account is already gone (e.g. 404).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent_codes: Vec<i32>,
    /// Extra CA certificates to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleRef>,
    /// The call may be sent twice without harm (e.g. a DELETE of one account). Only then (or
    /// for GET) are timeouts and 5xx retried, and an interrupted call sent again; otherwise the
    /// call is sent at most once and an unknown outcome is recorded as such.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// Per-call timeout in seconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: i32,
    /// Attempts on 429, 5xx and connection errors.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: i32,
    /// Allow link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10,
    /// fd00:ec2::254), refused by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_link_local_addresses: bool,
}

impl HttpCall {
    /// Whether sending the call twice is harmless: a GET, or the policy says so.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent || self.method.eq_ignore_ascii_case("GET")
    }
}

fn default_method() -> String {
    "POST".into()
}

/// RoleBindings chosen by namespace (list and/or label selector), optional names and roleRef.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("(has(self.namespaces) && size(self.namespaces) > 0) || has(self.namespaceSelector)").message("roleBindings needs namespaces or namespaceSelector"))]
#[x_kube(validation = Rule::new("(!has(self.namespaceSelector) || has(self.namespaceSelector.matchLabels) || has(self.namespaceSelector.matchExpressions)) && (!has(self.selector) || has(self.selector.matchLabels) || has(self.selector.matchExpressions))").message("an empty selector would select everything: give matchLabels or matchExpressions"))]
#[serde(rename_all = "camelCase")]
pub struct RoleBindingSelector {
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only bindings with these names (empty: any name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Only bindings with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Only bindings granting this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_ref: Option<RoleRefFilter>,
}

/// ClusterRoleBindings chosen by name, label and/or roleRef (at least one).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("(has(self.names) && size(self.names) > 0) || has(self.selector) || has(self.roleRef)").message("clusterRoleBindings needs names, selector or roleRef: all ClusterRoleBindings is never implied"))]
#[x_kube(validation = Rule::new("(!has(self.selector) || has(self.selector.matchLabels) || has(self.selector.matchExpressions))").message("an empty selector would select everything: give matchLabels or matchExpressions"))]
#[serde(rename_all = "camelCase")]
pub struct ClusterRoleBindingSelector {
    /// Bindings by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Bindings by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Only bindings granting this ClusterRole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_ref: Option<RoleRefFilter>,
}

/// Matches a binding's roleRef.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoleRefFilter {
    /// `Role` or `ClusterRole` (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Role name.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Every RoleBinding of the subjects in a namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("(has(self.namespaces) && size(self.namespaces) > 0) || (has(self.fromPermissionValue) && self.fromPermissionValue)").message("namespaceAccess needs namespaces or fromPermissionValue: true"))]
#[serde(rename_all = "camelCase")]
pub struct NamespaceAccess {
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The Lumos permission value names the namespace.
    #[serde(default)]
    pub from_permission_value: bool,
}

/// Where the Lumos connector's `unassign_entitlement` may remove access: the entitlement is
/// named by the request's permission, and must fall inside these bounds (else the request fails,
/// changing nothing).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[x_kube(validation = Rule::new("(has(self.namespaces) && size(self.namespaces) > 0) || has(self.namespaceSelector) || (has(self.clusterWide) && self.clusterWide)").message("entitlements needs namespaces, namespaceSelector or clusterWide: true"))]
#[serde(rename_all = "camelCase")]
pub struct EntitlementAccess {
    /// Namespaces whose `namespace_role` entitlements (RoleBindings) may be removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces, by label, whose `namespace_role` entitlements may be removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Whether `cluster_role` entitlements (ClusterRoleBindings) may be removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_wide: bool,
    /// Role names (`*` wildcards) that may be removed; empty: any role in those bounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// Whether the policy is usable.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeprovisionPolicyStatus {
    /// `Valid`: True, or False with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
