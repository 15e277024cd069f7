//! Pure: entitlements as the Lumos connector names them (a role within the cluster or a
//! namespace), and the ids that name them. Shared by the connector's model, which lists them,
//! and the planner, whose `entitlements` rules remove them; neither imports the other for it.

use std::fmt;

use k8s_openapi::api::rbac::v1::RoleRef;

use crate::names::is_dns_label;

/// Entitlement type of a ClusterRole granted cluster-wide by a ClusterRoleBinding.
pub const CLUSTER_ROLE: &str = "cluster_role";
/// Entitlement type of a Role or ClusterRole granted in a namespace by a RoleBinding.
pub const NAMESPACE_ROLE: &str = "namespace_role";
/// Resource type of a namespace. The cluster is the global resource (type and id `""`).
pub const NAMESPACE: &str = "namespace";

/// Why a text is not an id this connector gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not `User:<name>`, `Group:<name>` or `ServiceAccount:<namespace>/<name>`.
    #[error(
        "{0:?} is not an account id of this connector (User:<name>, Group:<name> or ServiceAccount:<namespace>/<name>)"
    )]
    Account(String),
    /// Not `ClusterRole:<name>` or `Role:<name>`, or a Role outside a namespace.
    #[error("{0:?} is not an entitlement id of this connector (ClusterRole:<name>, or Role:<name> in a namespace)")]
    Entitlement(String),
    /// Not `<entitlement_type>/<resource_id>/<entitlement_id>` with a type this connector lists.
    #[error(
        "{0:?} is not an entitlement of the Lumos connector (namespace_role/<namespace>/<Role|ClusterRole>:<name> or cluster_role//ClusterRole:<name>)"
    )]
    Permission(String),
    /// A namespace resource id that is not a namespace name.
    #[error("{0:?} is not a namespace name, so not a resource of this connector")]
    Namespace(String),
    /// The resource does not fit the entitlement type.
    #[error("resource {resource:?} of type {resource_type:?} does not fit entitlement type {entitlement_type:?}")]
    Resource {
        /// The resource id given.
        resource: String,
        /// The resource type given.
        resource_type: String,
        /// The entitlement type given.
        entitlement_type: String,
    },
}

/// Where an entitlement applies: the whole cluster or one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The global resource (ClusterRoleBindings).
    Cluster,
    /// A namespace (RoleBindings in it).
    Namespace(String),
}

impl Scope {
    /// The resource's `integration_specific_id`: `""` for the cluster, else the namespace.
    pub fn resource_id(&self) -> &str {
        match self {
            Scope::Cluster => "",
            Scope::Namespace(ns) => ns,
        }
    }

    /// The resource's type: `""` (global) or `namespace`.
    pub fn resource_type(&self) -> &'static str {
        match self {
            Scope::Cluster => "",
            Scope::Namespace(_) => NAMESPACE,
        }
    }

    /// The entitlement type of roles granted here.
    pub fn entitlement_type(&self) -> &'static str {
        match self {
            Scope::Cluster => CLUSTER_ROLE,
            Scope::Namespace(_) => NAMESPACE_ROLE,
        }
    }
}

/// A role as a binding's roleRef names it; its id is `ClusterRole:<name>` or `Role:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Role {
    /// `ClusterRole` or `Role`.
    pub kind: String,
    /// The role's name.
    pub name: String,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// An entitlement on a resource: a role within a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entitlement {
    /// The resource.
    pub scope: Scope,
    /// The role.
    pub role: Role,
}

impl Entitlement {
    /// Reads the ids Lumos sends back (`unassign_entitlement`), refusing any combination this
    /// connector never lists: a `Role` is only ever granted within a namespace.
    pub fn parse(
        entitlement_type: &str,
        entitlement_id: &str,
        resource_type: &str,
        resource_id: &str,
    ) -> Result<Entitlement, IdError> {
        let (kind, name) = entitlement_id
            .split_once(':')
            .filter(|(k, n)| matches!(*k, "ClusterRole" | "Role") && !n.is_empty())
            .ok_or_else(|| IdError::Entitlement(entitlement_id.to_string()))?;
        let scope = match (entitlement_type, resource_type, resource_id) {
            (CLUSTER_ROLE, "", "") if kind == "ClusterRole" => Scope::Cluster,
            (CLUSTER_ROLE, ..) if kind != "ClusterRole" => {
                return Err(IdError::Entitlement(entitlement_id.to_string()));
            }
            (NAMESPACE_ROLE, NAMESPACE, ns) if is_dns_label(ns) => Scope::Namespace(ns.to_string()),
            (NAMESPACE_ROLE, NAMESPACE, ns) if !ns.is_empty() => return Err(IdError::Namespace(ns.to_string())),
            _ => {
                return Err(IdError::Resource {
                    resource: resource_id.to_string(),
                    resource_type: resource_type.to_string(),
                    entitlement_type: entitlement_type.to_string(),
                });
            }
        };
        Ok(Entitlement { scope, role: Role { kind: kind.to_string(), name: name.to_string() } })
    }
}

impl Entitlement {
    /// The permission value a request from the connector carries:
    /// `<entitlement_type>/<resource_id>/<entitlement_id>`, e.g.
    /// `namespace_role/team-a/ClusterRole:edit` or `cluster_role//ClusterRole:admin`.
    pub fn permission_value(&self) -> String {
        format!("{}/{}/{}", self.scope.entitlement_type(), self.scope.resource_id(), self.role)
    }

    /// Reads a permission value made by [`Entitlement::permission_value`].
    pub fn from_permission_value(value: &str) -> Result<Entitlement, IdError> {
        let mut parts = value.splitn(3, '/');
        let (Some(ty), Some(resource), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(IdError::Permission(value.to_string()));
        };
        let resource_type = match ty {
            CLUSTER_ROLE => "",
            NAMESPACE_ROLE => NAMESPACE,
            _ => return Err(IdError::Permission(value.to_string())),
        };
        Entitlement::parse(ty, id, resource_type, resource)
    }

    /// Whether a binding in `namespace` (`None`: a ClusterRoleBinding) with this roleRef grants
    /// exactly this entitlement.
    pub fn is_granted_by(&self, namespace: Option<&str>, role_ref: &RoleRef) -> bool {
        let here = match (&self.scope, namespace) {
            (Scope::Cluster, None) => true,
            (Scope::Namespace(ns), Some(b)) => ns == b,
            _ => false,
        };
        here && self.role.kind == role_ref.kind && self.role.name == role_ref.name
    }
}
