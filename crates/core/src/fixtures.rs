//! Builders for the domain values tests keep writing by hand: request specs, RBAC subjects,
//! bindings, namespaces, policies and the seed payload. Pure (no I/O, no API calls), shared by
//! the unit tests, the integration tests in `tests/` and the bench.
//!
//! Compiled for this crate's own unit tests and with the `fixtures` feature (which the
//! `deprovisioner` crate's `fixtures` feature enables; its integration tests and the bench reach
//! these as `deprovisioner::fixtures`).
//!
//! ```ignore
//! use deprovisioner::fixtures::{self, group, user};
//! let rb = fixtures::role_binding("team-a", "developers")
//!     .role("edit")
//!     .subjects([user("peter@lumos.com"), group("auditors")])
//!     .uid("u1")
//!     .build();
//! let spec = fixtures::request_spec("demo_app", "peter@lumos.com").permissions(["Admin"]).build();
//! ```

use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::crd::{
    Application, DeprovisionPolicy, DeprovisionPolicySpec, DeprovisionRequest, DeprovisionRequestSpec, Permission,
    Person, RequestSource,
};

/// API group of RBAC objects, and of `User` and `Group` subjects.
pub const RBAC_API_GROUP: &str = "rbac.authorization.k8s.io";

/// The example payload from Lumos's documentation (`tests/fixtures/seed-payload.json`), verbatim.
pub const SEED_PAYLOAD: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/seed-payload.json"));

/// [`SEED_PAYLOAD`] as JSON.
pub fn seed_payload() -> Value {
    serde_json::from_str(SEED_PAYLOAD).expect("tests/fixtures/seed-payload.json is JSON")
}

// --- subjects -------------------------------------------------------------------------------

/// A subject of any kind, with the API group a real binding carries (`rbac.authorization.k8s.io`
/// for `User` and `Group`, none for `ServiceAccount`). For table-driven tests; prefer [`user`],
/// [`group`], [`service_account`] and [`service_account_in`].
pub fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    Subject {
        api_group: (kind != "ServiceAccount").then(|| RBAC_API_GROUP.to_string()),
        kind: kind.into(),
        name: name.into(),
        namespace: namespace.map(Into::into),
    }
}

/// A `User` subject.
pub fn user(name: &str) -> Subject {
    subject("User", name, None)
}

/// A `Group` subject.
pub fn group(name: &str) -> Subject {
    subject("Group", name, None)
}

/// A `ServiceAccount` subject without a namespace (it means the binding's namespace).
pub fn service_account(name: &str) -> Subject {
    subject("ServiceAccount", name, None)
}

/// A `ServiceAccount` subject in `namespace`.
pub fn service_account_in(namespace: &str, name: &str) -> Subject {
    subject("ServiceAccount", name, Some(namespace))
}

// --- bindings -------------------------------------------------------------------------------

/// Builds a [`RoleBinding`] or a [`ClusterRoleBinding`]; start with [`role_binding`] or
/// [`cluster_role_binding`], finish with `build()`. The role must be set.
#[derive(Clone, Debug)]
#[must_use]
pub struct BindingBuilder<K> {
    metadata: ObjectMeta,
    role_ref: Option<RoleRef>,
    subjects: Vec<Subject>,
    kind: PhantomData<K>,
}

/// A RoleBinding `namespace/name`: no role, no subjects, no labels, no uid yet.
pub fn role_binding(namespace: &str, name: &str) -> BindingBuilder<RoleBinding> {
    BindingBuilder::new(name, Some(namespace))
}

/// A ClusterRoleBinding `name`: no role, no subjects, no labels, no uid yet.
pub fn cluster_role_binding(name: &str) -> BindingBuilder<ClusterRoleBinding> {
    BindingBuilder::new(name, None)
}

impl<K> BindingBuilder<K> {
    fn new(name: &str, namespace: Option<&str>) -> Self {
        BindingBuilder {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: namespace.map(Into::into),
                ..Default::default()
            },
            role_ref: None,
            subjects: vec![],
            kind: PhantomData,
        }
    }

    /// Grants the ClusterRole `name` (what a RoleBinding usually references too).
    pub fn role(self, name: &str) -> Self {
        self.role_ref("ClusterRole", name)
    }

    /// Grants the role of `kind` (`ClusterRole` or `Role`) named `name`.
    pub fn role_ref(mut self, kind: &str, name: &str) -> Self {
        self.role_ref = Some(RoleRef { api_group: RBAC_API_GROUP.into(), kind: kind.into(), name: name.into() });
        self
    }

    /// Appends subjects, in order.
    pub fn subjects(mut self, subjects: impl IntoIterator<Item = Subject>) -> Self {
        self.subjects.extend(subjects);
        self
    }

    /// Adds labels.
    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.metadata.labels.get_or_insert_with(BTreeMap::new).extend(label_map(labels));
        self
    }

    /// Sets the UID (as the API server would; leave it unset for objects you create there).
    pub fn uid(mut self, uid: &str) -> Self {
        self.metadata.uid = Some(uid.into());
        self
    }

    /// Sets the resourceVersion (as the API server would).
    pub fn resource_version(mut self, rv: &str) -> Self {
        self.metadata.resource_version = Some(rv.into());
        self
    }

    fn parts(self) -> (ObjectMeta, RoleRef, Option<Vec<Subject>>) {
        let name = self.metadata.name.clone().unwrap_or_default();
        let role_ref = self.role_ref.unwrap_or_else(|| panic!("binding {name}: set .role(..) or .role_ref(..)"));
        (self.metadata, role_ref, Some(self.subjects))
    }
}

impl BindingBuilder<RoleBinding> {
    /// The RoleBinding.
    pub fn build(self) -> RoleBinding {
        let (metadata, role_ref, subjects) = self.parts();
        RoleBinding { metadata, role_ref, subjects }
    }
}

impl BindingBuilder<ClusterRoleBinding> {
    /// The ClusterRoleBinding.
    pub fn build(self) -> ClusterRoleBinding {
        let (metadata, role_ref, subjects) = self.parts();
        ClusterRoleBinding { metadata, role_ref, subjects }
    }
}

// --- namespaces and policies ----------------------------------------------------------------

/// A Namespace with the given labels.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta { name: Some(name.into()), labels: Some(label_map(labels)), ..Default::default() },
        ..Default::default()
    }
}

/// A DeprovisionPolicy from its spec written as JSON, exactly as in YAML (`{"application":
/// {"appId": "x"}, "subjects": [..], "rules": [..]}`). Panics, naming the policy, when the spec
/// does not deserialize. No uid: set `metadata.uid` where a test needs one.
pub fn policy(name: &str, spec: Value) -> DeprovisionPolicy {
    let spec: DeprovisionPolicySpec =
        serde_json::from_value(spec).unwrap_or_else(|e| panic!("policy {name}: not a DeprovisionPolicySpec: {e}"));
    DeprovisionPolicy::new(name, spec)
}

// --- requests -------------------------------------------------------------------------------

/// Builds a [`DeprovisionRequestSpec`]; start with [`request_spec`], finish with `build()`.
#[derive(Clone, Debug)]
#[must_use]
pub struct RequestSpecBuilder(DeprovisionRequestSpec);

/// A request to remove `target_email`'s access to Lumos app `app_id`: every permission (none
/// listed), no instance, no names, no requester, no comment, no custom fields, source `Manual`
/// (as `kubectl apply` would create it), not a dry run.
pub fn request_spec(app_id: &str, target_email: &str) -> RequestSpecBuilder {
    RequestSpecBuilder(DeprovisionRequestSpec {
        application: Application { app_id: Some(app_id.into()), instance_id: None, user_friendly_label: None },
        permissions: vec![],
        user: None,
        target_user: Person { email: target_email.into(), given_name: None, family_name: None },
        request_comment: None,
        custom_fields: BTreeMap::new(),
        source: RequestSource::Manual,
        dry_run: false,
        expiry: None,
        hub_source: None,
    })
}

impl RequestSpecBuilder {
    /// The Lumos `instance_id`.
    pub fn instance(mut self, instance_id: &str) -> Self {
        self.0.application.instance_id = Some(instance_id.into());
        self
    }

    /// The Lumos `user_friendly_label` of the application.
    pub fn app_label(mut self, label: &str) -> Self {
        self.0.application.user_friendly_label = Some(label.into());
        self
    }

    /// Appends permissions by value (no label, type or source).
    pub fn permissions<'a>(mut self, values: impl IntoIterator<Item = &'a str>) -> Self {
        self.0.permissions.extend(values.into_iter().map(|v| Permission {
            value: v.into(),
            label: None,
            type_: None,
            source: None,
        }));
        self
    }

    /// The target user's given name.
    pub fn given_name(mut self, given: &str) -> Self {
        self.0.target_user.given_name = Some(given.into());
        self
    }

    /// The target user's family name.
    pub fn family_name(mut self, family: &str) -> Self {
        self.0.target_user.family_name = Some(family.into());
        self
    }

    /// Who asked, in Lumos (`user`).
    pub fn requested_by(mut self, email: &str) -> Self {
        self.0.user = Some(Person { email: email.into(), given_name: None, family_name: None });
        self
    }

    /// The requester's comment.
    pub fn comment(mut self, comment: &str) -> Self {
        self.0.request_comment = Some(comment.into());
        self
    }

    /// Sets one Lumos custom field.
    pub fn custom_field(mut self, name: &str, value: &str) -> Self {
        self.0.custom_fields.insert(name.into(), value.into());
        self
    }

    /// Where the request came from (default `Manual`).
    pub fn source(mut self, source: RequestSource) -> Self {
        self.0.source = source;
        self
    }

    /// Plan and record only.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.0.dry_run = dry_run;
        self
    }

    /// The spec.
    pub fn build(self) -> DeprovisionRequestSpec {
        self.0
    }
}

/// A DeprovisionRequest object named `name` with `spec` and no status, as a person would create
/// it with `kubectl apply`.
pub fn request(name: &str, spec: DeprovisionRequestSpec) -> DeprovisionRequest {
    DeprovisionRequest { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, spec, status: None }
}

/// Labels as the map Kubernetes objects carry.
pub fn label_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[cfg(test)]
mod tests;
