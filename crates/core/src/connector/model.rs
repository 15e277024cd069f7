//! Pure: what the cluster's bindings mean in the Lumos connector model. Accounts are the
//! principals bound by any binding, resources are the cluster and its namespaces, entitlements
//! are roles within a resource, and a grant is one account holding one entitlement through one
//! binding. See `docs/lumos-connector.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};

use crate::plan::subject::{Principal, PrincipalRef, Protected};

/// Entitlement type of a ClusterRole granted cluster-wide by a ClusterRoleBinding.
pub const CLUSTER_ROLE: &str = "cluster_role";
/// Entitlement type of a Role or ClusterRole granted in a namespace by a RoleBinding.
pub const NAMESPACE_ROLE: &str = "namespace_role";
/// Resource type of a namespace. The cluster is the global resource (type and id `""`).
pub const NAMESPACE: &str = "namespace";

/// A Lumos account id: the principal, written `User:<name>`, `Group:<name>` or
/// `ServiceAccount:<namespace>/<name>`. Stable and reversible: the text is the identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub Principal);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Principal::User(n) => write!(f, "User:{n}"),
            Principal::Group(n) => write!(f, "Group:{n}"),
            Principal::ServiceAccount(ns, n) => write!(f, "ServiceAccount:{ns}/{n}"),
        }
    }
}

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

impl FromStr for AccountId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Principal::from_account_id(s).map(AccountId).ok_or_else(|| IdError::Account(s.to_string()))
    }
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
            (NAMESPACE_ROLE, NAMESPACE, ns) if crate::plan::is_dns_label(ns) => Scope::Namespace(ns.to_string()),
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

/// A binding, by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingName {
    /// `None` for a ClusterRoleBinding.
    pub namespace: Option<String>,
    /// The binding's name.
    pub name: String,
}

impl fmt::Display for BindingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "RoleBinding {ns}/{}", self.name),
            None => write!(f, "ClusterRoleBinding {}", self.name),
        }
    }
}

/// One account holding one entitlement through one binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    /// Who.
    pub account: AccountId,
    /// What, where.
    pub entitlement: Entitlement,
    /// Through which binding.
    pub binding: BindingName,
}

/// Every grant the bindings make to accounts that may be reviewed: protected principals
/// (`system:` names, kube-system ServiceAccounts, the operator's own) and subjects RBAC ignores
/// are left out, so Lumos never sees them as removable.
pub fn grants<'a>(
    role_bindings: impl IntoIterator<Item = &'a RoleBinding>,
    cluster_role_bindings: impl IntoIterator<Item = &'a ClusterRoleBinding>,
    protected: &Protected,
) -> Vec<Grant> {
    let mut out = Vec::new();
    for rb in role_bindings {
        let Some(ns) = rb.metadata.namespace.as_deref() else { continue };
        let binding =
            BindingName { namespace: Some(ns.to_string()), name: rb.metadata.name.clone().unwrap_or_default() };
        push_grants(
            &mut out,
            &rb.role_ref,
            rb.subjects.as_deref(),
            Scope::Namespace(ns.to_string()),
            binding,
            protected,
        );
    }
    for crb in cluster_role_bindings {
        let binding = BindingName { namespace: None, name: crb.metadata.name.clone().unwrap_or_default() };
        push_grants(&mut out, &crb.role_ref, crb.subjects.as_deref(), Scope::Cluster, binding, protected);
    }
    out.sort();
    out.dedup();
    out
}

fn push_grants(
    out: &mut Vec<Grant>,
    role_ref: &RoleRef,
    subjects: Option<&[Subject]>,
    scope: Scope,
    binding: BindingName,
    protected: &Protected,
) {
    // A ClusterRoleBinding can only grant a ClusterRole; anything else grants nothing.
    if !matches!(role_ref.kind.as_str(), "ClusterRole" | "Role")
        || (scope == Scope::Cluster && role_ref.kind != "ClusterRole")
    {
        return;
    }
    let role = Role { kind: role_ref.kind.clone(), name: role_ref.name.clone() };
    let namespace = match &scope {
        Scope::Namespace(ns) => Some(ns.as_str()),
        Scope::Cluster => None,
    };
    for s in subjects.unwrap_or_default() {
        let Some(p) = PrincipalRef::of_subject(s, namespace) else { continue };
        let p = p.to_owned();
        if protected.why(&p).is_some() {
            continue;
        }
        out.push(Grant {
            account: AccountId(p),
            entitlement: Entitlement { scope: scope.clone(), role: role.clone() },
            binding: binding.clone(),
        });
    }
}

/// An account as listed: who, and how many grants it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// The bindings naming it.
    pub bindings: BTreeSet<BindingName>,
}

/// The accounts holding any grant, by id.
pub fn accounts(grants: &[Grant]) -> BTreeMap<String, Account> {
    let mut out: BTreeMap<String, Account> = BTreeMap::new();
    for g in grants {
        out.entry(g.account.to_string())
            .or_insert_with(|| Account { id: g.account.clone(), bindings: BTreeSet::new() })
            .bindings
            .insert(g.binding.clone());
    }
    out
}

/// The entitlements held by any account, with the bindings granting each, ordered by
/// (resource id, entitlement id).
pub fn entitlements(grants: &[Grant]) -> BTreeMap<(String, String), (Entitlement, BTreeSet<BindingName>)> {
    let mut out: BTreeMap<(String, String), (Entitlement, BTreeSet<BindingName>)> = BTreeMap::new();
    for g in grants {
        let key = (g.entitlement.scope.resource_id().to_string(), g.entitlement.role.to_string());
        out.entry(key).or_insert_with(|| (g.entitlement.clone(), BTreeSet::new())).1.insert(g.binding.clone());
    }
    out
}

/// One association (account, entitlement, resource), with the bindings that make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// Who.
    pub account: AccountId,
    /// What, where.
    pub entitlement: Entitlement,
    /// Through which bindings.
    pub bindings: BTreeSet<BindingName>,
}

/// The associations, one per (account id, resource id, entitlement id), in that order.
pub fn associations(grants: &[Grant]) -> BTreeMap<(String, String, String), Association> {
    let mut out: BTreeMap<(String, String, String), Association> = BTreeMap::new();
    for g in grants {
        let key =
            (g.account.to_string(), g.entitlement.scope.resource_id().to_string(), g.entitlement.role.to_string());
        out.entry(key)
            .or_insert_with(|| Association {
                account: g.account.clone(),
                entitlement: g.entitlement.clone(),
                bindings: BTreeSet::new(),
            })
            .bindings
            .insert(g.binding.clone());
    }
    out
}

/// A sort key: what a page token continues after.
pub type Key = Vec<String>;

/// The cluster's access map at one moment, ordered for paging: every list a capability serves,
/// by its sort key. Built once per change of the bindings and shared by every call that reads
/// the same bindings; a page is then a range of it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Accounts by `[account id]`.
    pub accounts: BTreeMap<Key, Account>,
    /// Entitlements and the bindings granting each, by `[resource id, entitlement id]`.
    pub entitlements: BTreeMap<Key, (Entitlement, BTreeSet<BindingName>)>,
    /// Associations by `[account id, resource id, entitlement id]`.
    pub associations: BTreeMap<Key, Association>,
}

impl Snapshot {
    /// The access map the grants make.
    pub fn of(grants: &[Grant]) -> Snapshot {
        Snapshot {
            accounts: accounts(grants).into_iter().map(|(k, v)| (vec![k], v)).collect(),
            entitlements: entitlements(grants).into_iter().map(|((r, e), v)| (vec![r, e], v)).collect(),
            associations: associations(grants).into_iter().map(|((a, r, e), v)| (vec![a, r, e], v)).collect(),
        }
    }
}

/// The email a User name is, when it is one (`alice@example.com`, not `oidc:alice@…`).
pub fn email_of(p: &Principal) -> Option<&str> {
    let Principal::User(name) = p else { return None };
    let (local, domain) = name.split_once('@')?;
    let plain = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || matches!(c, '@' | ':' | '/' | '#'));
    (plain(local) && plain(domain) && domain.contains('.')).then_some(name.as_str())
}

#[cfg(test)]
mod tests;
