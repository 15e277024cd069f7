//! Pure: what the cluster's bindings mean in the Lumos connector model. Accounts are the
//! principals bound by any binding, resources are the cluster and its namespaces, entitlements
//! are roles within a resource, and a grant is one account holding one entitlement through one
//! binding. See `docs/lumos-connector.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};

pub use crate::entitlement::{CLUSTER_ROLE, Entitlement, IdError, NAMESPACE, NAMESPACE_ROLE, Role, Scope};
use crate::plan::subject::{Principal, PrincipalRef, Protected};

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

impl FromStr for AccountId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Principal::from_account_id(s).map(AccountId).ok_or_else(|| IdError::Account(s.to_string()))
    }
}

/// A binding, by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingName {
    /// The member cluster it is in, on a fleet hub (`None`: this cluster).
    pub cluster: Option<String>,
    /// `None` for a ClusterRoleBinding.
    pub namespace: Option<String>,
    /// The binding's name.
    pub name: String,
}

impl fmt::Display for BindingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.cluster {
            write!(f, "{c}: ")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, "RoleBinding {ns}/{}", self.name),
            None => write!(f, "ClusterRoleBinding {}", self.name),
        }
    }
}

/// One account holding one entitlement through one binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    /// The member cluster it is in, on a fleet hub (`None`: this cluster).
    pub cluster: Option<String>,
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
        let binding = BindingName {
            cluster: None,
            namespace: Some(ns.to_string()),
            name: rb.metadata.name.clone().unwrap_or_default(),
        };
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
        let binding =
            BindingName { cluster: None, namespace: None, name: crb.metadata.name.clone().unwrap_or_default() };
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
            cluster: None,
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

/// An entitlement as listed: where, what, and the bindings granting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The member cluster it is in, on a fleet hub (`None`: this cluster).
    pub cluster: Option<String>,
    /// What, where.
    pub entitlement: Entitlement,
    /// Through which bindings.
    pub bindings: BTreeSet<BindingName>,
}

/// The entitlements held by any account, with the bindings granting each, ordered by
/// (resource id, entitlement id).
pub fn entitlements(grants: &[Grant]) -> BTreeMap<(String, String), Held> {
    let mut out: BTreeMap<(String, String), Held> = BTreeMap::new();
    for g in grants {
        let key = (resource_id(g.cluster.as_deref(), &g.entitlement.scope), g.entitlement.role.to_string());
        out.entry(key)
            .or_insert_with(|| Held {
                cluster: g.cluster.clone(),
                entitlement: g.entitlement.clone(),
                bindings: BTreeSet::new(),
            })
            .bindings
            .insert(g.binding.clone());
    }
    out
}

/// One association (account, entitlement, resource), with the bindings that make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// The member cluster it is in, on a fleet hub (`None`: this cluster).
    pub cluster: Option<String>,
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
        let key = (
            g.account.to_string(),
            resource_id(g.cluster.as_deref(), &g.entitlement.scope),
            g.entitlement.role.to_string(),
        );
        out.entry(key)
            .or_insert_with(|| Association {
                cluster: g.cluster.clone(),
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
    pub entitlements: BTreeMap<Key, Held>,
    /// Associations by `[account id, resource id, entitlement id]`.
    pub associations: BTreeMap<Key, Association>,
    /// On a fleet hub: the member clusters whose grants are listed as last reported, their agent
    /// silent for too long (see `fleet::inventory::is_stale`).
    pub stale_members: BTreeSet<String>,
}

impl Snapshot {
    /// The access map the grants make.
    pub fn of(grants: &[Grant]) -> Snapshot {
        Snapshot {
            accounts: accounts(grants).into_iter().map(|(k, v)| (vec![k], v)).collect(),
            entitlements: entitlements(grants).into_iter().map(|((r, e), v)| (vec![r, e], v)).collect(),
            associations: associations(grants).into_iter().map(|((a, r, e), v)| (vec![a, r, e], v)).collect(),
            stale_members: BTreeSet::new(),
        }
    }
}

/// Resource type of a member cluster, on a fleet hub (the hub itself is the global resource).
pub const MEMBER_CLUSTER: &str = "cluster";
/// Entitlement type of a ClusterRole granted cluster-wide in a member cluster.
pub const MEMBER_CLUSTER_ROLE: &str = "member_cluster_role";

/// A resource's id: this cluster's as [`Scope::resource_id`] says (`""`, `<namespace>`); in
/// member `m`, the same behind `m/`: `m/` for the member cluster and `m/<namespace>` for its
/// namespaces. A namespace name has no `/`, so no member's id is ever one of this cluster's (a
/// member named like one of its namespaces included).
pub fn resource_id(cluster: Option<&str>, scope: &Scope) -> String {
    match cluster {
        None => scope.resource_id().to_string(),
        Some(m) => format!("{m}/{}", scope.resource_id()),
    }
}

/// A resource's type: a member cluster is [`MEMBER_CLUSTER`], a namespace anywhere `namespace`.
pub fn resource_type(cluster: Option<&str>, scope: &Scope) -> &'static str {
    match (cluster, scope) {
        (Some(_), Scope::Cluster) => MEMBER_CLUSTER,
        (_, s) => s.resource_type(),
    }
}

/// An entitlement's type: a member's ClusterRoleBindings grant [`MEMBER_CLUSTER_ROLE`].
pub fn entitlement_type(cluster: Option<&str>, scope: &Scope) -> &'static str {
    match (cluster, scope) {
        (Some(_), Scope::Cluster) => MEMBER_CLUSTER_ROLE,
        (_, s) => s.entitlement_type(),
    }
}

/// Reads the ids Lumos sends back, on a fleet hub too: the member cluster they are in (`None`:
/// this cluster) and the entitlement as that cluster names it.
pub fn parse_placed(
    entitlement_type: &str,
    entitlement_id: &str,
    resource_type: &str,
    resource_id: &str,
) -> Result<(Option<String>, Entitlement), IdError> {
    let member = |m: &str| {
        if crate::names::is_dns_label(m) { Ok(m.to_string()) } else { Err(IdError::Namespace(resource_id.to_string())) }
    };
    match (entitlement_type, resource_type) {
        (MEMBER_CLUSTER_ROLE, MEMBER_CLUSTER) => {
            let m = resource_id.strip_suffix('/').ok_or_else(|| IdError::Namespace(resource_id.to_string()))?;
            let e = Entitlement::parse(CLUSTER_ROLE, entitlement_id, "", "")?;
            Ok((Some(member(m)?), e))
        }
        (NAMESPACE_ROLE, NAMESPACE) if resource_id.contains('/') => {
            let (m, ns) = resource_id.split_once('/').unwrap_or_default();
            let e = Entitlement::parse(entitlement_type, entitlement_id, resource_type, ns)?;
            Ok((Some(member(m)?), e))
        }
        _ => Ok((None, Entitlement::parse(entitlement_type, entitlement_id, resource_type, resource_id)?)),
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
