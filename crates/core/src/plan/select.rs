//! Which policies cover a request, and which bindings and external calls their rules select.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube_core::ResourceExt;
use kube_core::{Selector, SelectorExt};

use super::validate::{glob_match, is_dns_label, validate_policy};
use super::{Observed, PlanError, Scope, app_label};
use crate::crd::{
    AccessRule, BindingRef, BindingScope, DeprovisionPolicy, DeprovisionRequestSpec, EntitlementAccess, HttpCall,
    RoleRefFilter, ScimDeprovision,
};
use crate::entitlement::{Entitlement, Scope as EntitlementScope};

/// Bindings a rule selects, before looking at subjects.
#[derive(Debug, Clone)]
pub(super) enum BindingSelection<'p> {
    RoleBindings {
        namespaces: BTreeSet<String>,
        names: &'p [String],
        selector: Option<&'p LabelSelector>,
        role_ref: Option<Cow<'p, RoleRefFilter>>,
    },
    ClusterRoleBindings {
        names: &'p [String],
        selector: Option<&'p LabelSelector>,
        role_ref: Option<Cow<'p, RoleRefFilter>>,
    },
}

/// An external call a rule names, still holding its templates.
#[derive(Debug, Clone, Copy)]
pub(super) enum ExternalCall<'p> {
    Scim(&'p ScimDeprovision),
    Http(&'p HttpCall),
}

/// What one policy selects for a request, each with the reason recorded in the plan.
pub(super) struct Selection<'p> {
    pub policy: &'p DeprovisionPolicy,
    pub bindings: Vec<(BindingSelection<'p>, String)>,
    pub external: Vec<(ExternalCall<'p>, String)>,
}

/// Policies covering the request's application, sorted by name.
pub fn matching_policies<'p>(
    spec: &DeprovisionRequestSpec,
    policies: &'p [DeprovisionPolicy],
) -> Vec<&'p DeprovisionPolicy> {
    let mut out: Vec<_> = policies
        .iter()
        .filter(|p| {
            let sel = &p.spec.application;
            (sel.app_id.is_some() || sel.instance_id.is_some())
                && sel.app_id.as_ref().is_none_or(|a| spec.application.app_id.as_ref() == Some(a))
                && sel.instance_id.as_ref().is_none_or(|i| spec.application.instance_id.as_ref() == Some(i))
        })
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// Whether any of these policies selects namespaces by label (planning then needs the
/// namespaces and their labels).
pub fn selects_namespaces_by_label(policies: &[&DeprovisionPolicy]) -> bool {
    policies.iter().flat_map(|p| &p.spec.rules).any(|r| {
        r.role_bindings.as_ref().is_some_and(|rb| rb.namespace_selector.is_some())
            || r.entitlements.as_ref().is_some_and(|e| e.namespace_selector.is_some())
    })
}

/// For each rule, the permission values it applies to (`None`: the whole application).
fn applicable<'a>(rule: &AccessRule, spec: &'a DeprovisionRequestSpec) -> Vec<Option<&'a str>> {
    if spec.permissions.is_empty() {
        return vec![None];
    }
    if rule.permissions.is_empty() {
        return spec.permissions.iter().map(|p| Some(p.value.as_str())).collect();
    }
    spec.permissions
        .iter()
        .filter(|p| rule.permissions.iter().any(|pat| glob_match(pat, &p.value)))
        .map(|p| Some(p.value.as_str()))
        .collect()
}

/// Refuses a request no policy covers, an invalid policy, or a permission no rule maps.
fn check_coverage(spec: &DeprovisionRequestSpec, policies: &[&DeprovisionPolicy]) -> Result<(), PlanError> {
    if policies.is_empty() {
        return Err(PlanError::NoPolicy(app_label(spec)));
    }
    for p in policies {
        validate_policy(&p.spec).map_err(|reason| PlanError::InvalidPolicy { policy: p.name_any(), reason })?;
    }
    for perm in &spec.permissions {
        let covered = policies
            .iter()
            .flat_map(|p| &p.spec.rules)
            .any(|r| r.permissions.is_empty() || r.permissions.iter().any(|pat| glob_match(pat, &perm.value)));
        if !covered {
            let names: Vec<_> = policies.iter().map(|p| p.name_any()).collect();
            return Err(PlanError::UnmappedPermission { policies: names.join(", "), permission: perm.value.clone() });
        }
    }
    Ok(())
}

/// What the `entitlements` rules said of each permission value, across every matching policy:
/// a value is refused only when some rule applies to it and none allows it.
#[derive(Default)]
struct EntitlementVerdicts {
    allowed: BTreeSet<String>,
    /// Each refusing rule's reason, by value.
    refused: BTreeMap<String, Vec<String>>,
}

impl EntitlementVerdicts {
    /// The first permission of the request that no applying rule allows.
    fn check(mut self, spec: &DeprovisionRequestSpec) -> Result<(), PlanError> {
        for perm in &spec.permissions {
            if self.allowed.contains(&perm.value) {
                continue;
            }
            if let Some(why) = self.refused.remove(&perm.value) {
                return Err(PlanError::Entitlement { permission: perm.value.clone(), why: why.join("; ") });
            }
        }
        Ok(())
    }
}

/// What every matching policy selects for this request.
pub(super) fn select<'p>(
    spec: &DeprovisionRequestSpec,
    policies: &[&'p DeprovisionPolicy],
    namespaces: &[Namespace],
) -> Result<Vec<Selection<'p>>, PlanError> {
    check_coverage(spec, policies)?;
    let mut verdicts = EntitlementVerdicts::default();
    let mut out = Vec::new();
    for policy in policies {
        let mut sel = Selection { policy, bindings: Vec::new(), external: Vec::new() };
        for (i, rule) in policy.spec.rules.iter().enumerate() {
            for perm in applicable(rule, spec) {
                select_rule(&mut sel, i, rule, perm, namespaces, &mut verdicts)?;
            }
        }
        out.push(sel);
    }
    verdicts.check(spec)?;
    Ok(out)
}

/// Adds what rule `i` selects for one permission (`None`: the whole application).
fn select_rule<'p>(
    sel: &mut Selection<'p>,
    i: usize,
    rule: &'p AccessRule,
    perm: Option<&str>,
    namespaces: &[Namespace],
    verdicts: &mut EntitlementVerdicts,
) -> Result<(), PlanError> {
    let why = match perm {
        Some(v) => format!("rules[{i}] for permission {v:?}"),
        None => format!("rules[{i}] for the whole application"),
    };
    if let Some(rb) = &rule.role_bindings {
        let mut nss: BTreeSet<String> = rb.namespaces.iter().cloned().collect();
        if let Some(s) = &rb.namespace_selector {
            nss.extend(namespaces_labelled(s, namespaces));
        }
        let b = BindingSelection::RoleBindings {
            namespaces: nss,
            names: &rb.names,
            selector: rb.selector.as_ref(),
            role_ref: rb.role_ref.as_ref().map(Cow::Borrowed),
        };
        sel.bindings.push((b, format!("{why}: roleBindings")));
    }
    if let Some(crb) = &rule.cluster_role_bindings {
        let b = BindingSelection::ClusterRoleBindings {
            names: &crb.names,
            selector: crb.selector.as_ref(),
            role_ref: crb.role_ref.as_ref().map(Cow::Borrowed),
        };
        sel.bindings.push((b, format!("{why}: clusterRoleBindings")));
    }
    if let Some(na) = &rule.namespace_access {
        let mut nss: BTreeSet<String> = na.namespaces.iter().cloned().collect();
        match (na.from_permission_value, perm) {
            (true, Some(v)) if !is_dns_label(v) => return Err(PlanError::BadNamespace(v.into())),
            (true, Some(v)) => {
                nss.insert(v.into());
            }
            // A whole-application request names no permission, so no namespace: refuse rather
            // than report success while that access stays.
            (true, None) => return Err(PlanError::NeedsPermission { policy: sel.policy.name_any(), rule: i }),
            (false, _) => {}
        }
        if !nss.is_empty() {
            let b = BindingSelection::RoleBindings { namespaces: nss, names: &[], selector: None, role_ref: None };
            sel.bindings.push((b, format!("{why}: namespaceAccess")));
        }
    }
    if let Some(e) = &rule.entitlements {
        let Some(value) = perm else {
            return Err(PlanError::NeedsPermission { policy: sel.policy.name_any(), rule: i });
        };
        // Outside this rule's bounds it selects nothing; the request fails when no rule allows the
        // value (`EntitlementVerdicts::check`).
        match select_entitlement(e, value, namespaces) {
            Ok(b) => {
                verdicts.allowed.insert(value.to_string());
                sel.bindings.push((b, format!("{why}: entitlements")));
            }
            Err(refused) => {
                let said = format!("DeprovisionPolicy {} rules[{i}]: {refused}", sel.policy.name_any());
                verdicts.refused.entry(value.to_string()).or_default().push(said);
            }
        }
    }
    if let Some(t) = &rule.scim {
        sel.external.push((ExternalCall::Scim(t), format!("{why}: scim {}", t.system)));
    }
    if let Some(t) = &rule.http {
        sel.external.push((ExternalCall::Http(t), format!("{why}: http {}", t.system)));
    }
    Ok(())
}

/// The bindings granting the entitlement a permission value names, when the rule allows it:
/// exactly the roleRef named, in exactly the namespace named (or cluster-wide).
fn select_entitlement(
    e: &EntitlementAccess,
    value: &str,
    namespaces: &[Namespace],
) -> Result<BindingSelection<'static>, String> {
    let ent = Entitlement::from_permission_value(value).map_err(|e| e.to_string())?;
    if !e.roles.is_empty() && !e.roles.iter().any(|p| glob_match(p, &ent.role.name)) {
        return Err(format!("role {:?} is not in roles ({})", ent.role.name, e.roles.join(", ")));
    }
    let role_ref = Some(Cow::Owned(RoleRefFilter { name: ent.role.name.clone(), kind: Some(ent.role.kind.clone()) }));
    match &ent.scope {
        EntitlementScope::Cluster if e.cluster_wide => {
            Ok(BindingSelection::ClusterRoleBindings { names: &[], selector: None, role_ref })
        }
        EntitlementScope::Cluster => Err("cluster-wide entitlements are not removable (clusterWide is false)".into()),
        EntitlementScope::Namespace(ns) => {
            let by_label =
                e.namespace_selector.as_ref().is_some_and(|s| namespaces_labelled(s, namespaces).contains(ns));
            if !e.namespaces.contains(ns) && !by_label {
                return Err(format!("namespace {ns:?} is not in namespaces or namespaceSelector"));
            }
            let namespaces = BTreeSet::from([ns.clone()]);
            Ok(BindingSelection::RoleBindings { namespaces, names: &[], selector: None, role_ref })
        }
    }
}

/// Whether an `entitlements` rule's bounds include this binding (not looking at permissions).
fn entitlement_bounds_cover(e: &EntitlementAccess, b: &BindingView<'_>) -> bool {
    let role_ok = e.roles.is_empty() || e.roles.iter().any(|p| glob_match(p, &b.role_ref.name));
    role_ok
        && match b.namespace {
            Some(ns) => e.namespaces.iter().any(|n| n == ns),
            None => e.cluster_wide,
        }
}

/// Names of the namespaces a (validated) label selector matches.
fn namespaces_labelled(sel: &LabelSelector, namespaces: &[Namespace]) -> BTreeSet<String> {
    let Ok(sel) = Selector::try_from(sel.clone()) else {
        return BTreeSet::new(); // unreachable: policies are validated before selection
    };
    namespaces.iter().filter(|ns| sel.matches(ns.labels())).map(|ns| ns.name_any()).collect()
}

/// What must be read from the cluster to plan this request (after namespaces are known).
pub fn scope(
    spec: &DeprovisionRequestSpec,
    policies: &[&DeprovisionPolicy],
    namespaces: &[Namespace],
) -> Result<Scope, PlanError> {
    let mut scope = Scope::default();
    for sel in select(spec, policies, namespaces)? {
        for (b, _) in sel.bindings {
            match b {
                BindingSelection::RoleBindings { namespaces, .. } => scope.namespaces.extend(namespaces),
                BindingSelection::ClusterRoleBindings { .. } => scope.cluster_role_bindings = true,
            }
        }
    }
    Ok(scope)
}

pub(crate) fn role_ref_matches(filter: Option<&RoleRefFilter>, r: &RoleRef) -> bool {
    filter.is_none_or(|f| f.name == r.name && f.kind.as_ref().is_none_or(|k| *k == r.kind))
}

pub(crate) fn labels_match(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    sel.is_none_or(|s| Selector::try_from(s.clone()).is_ok_and(|s| s.matches(labels)))
}

/// A selected binding and its subjects.
pub(super) struct Candidate<'a> {
    /// The binding's namespace (`None` for a ClusterRoleBinding).
    pub namespace: Option<&'a str>,
    pub meta: &'a ObjectMeta,
    pub role_ref: &'a RoleRef,
    pub subjects: &'a [Subject],
}

impl Candidate<'_> {
    /// The binding as the plan names it (built only for bindings that hold a wanted subject).
    pub fn binding(&self) -> BindingRef {
        let scope = match self.namespace {
            Some(ns) => BindingScope::Namespaced(ns.to_string()),
            None => BindingScope::Cluster,
        };
        binding_ref(scope, self.meta, self.role_ref)
    }
}

/// The observed bindings a selection picks (bindings being deleted are skipped). Borrowed: with
/// thousands of bindings in scope, nothing is copied for the ones that hold no wanted subject.
pub(super) fn candidates<'a>(
    b: &'a BindingSelection<'_>,
    observed: &'a Observed,
) -> Box<dyn Iterator<Item = Candidate<'a>> + 'a> {
    let empty: &[Subject] = &[];
    match b {
        BindingSelection::RoleBindings { namespaces, names, selector, role_ref } => Box::new(
            observed
                .role_bindings
                .iter()
                .filter(|b| b.metadata.deletion_timestamp.is_none())
                .filter(|b| names.is_empty() || b.metadata.name.as_ref().is_some_and(|n| names.contains(n)))
                .filter(move |b| {
                    labels_match(*selector, b.labels()) && role_ref_matches(role_ref.as_deref(), &b.role_ref)
                })
                .filter_map(move |b| {
                    let ns = b.metadata.namespace.as_deref().filter(|ns| namespaces.contains(*ns))?;
                    Some(Candidate {
                        namespace: Some(ns),
                        meta: &b.metadata,
                        role_ref: &b.role_ref,
                        subjects: b.subjects.as_deref().unwrap_or(empty),
                    })
                }),
        ),
        BindingSelection::ClusterRoleBindings { names, selector, role_ref } => Box::new(
            observed
                .cluster_role_bindings
                .iter()
                .filter(|b| b.metadata.deletion_timestamp.is_none())
                .filter(|b| names.is_empty() || b.metadata.name.as_ref().is_some_and(|n| names.contains(n)))
                .filter(move |b| {
                    labels_match(*selector, b.labels()) && role_ref_matches(role_ref.as_deref(), &b.role_ref)
                })
                .map(|b| Candidate {
                    namespace: None,
                    meta: &b.metadata,
                    role_ref: &b.role_ref,
                    subjects: b.subjects.as_deref().unwrap_or(empty),
                }),
        ),
    }
}

fn binding_ref(scope: BindingScope, meta: &ObjectMeta, role_ref: &RoleRef) -> BindingRef {
    BindingRef {
        scope,
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        role_ref: format!("{}/{}", role_ref.kind, role_ref.name),
    }
}

/// A binding as the coverage check reads it.
pub struct BindingView<'a> {
    /// The namespace of a RoleBinding (`None`: a ClusterRoleBinding).
    pub namespace: Option<&'a str>,
    /// Its metadata (name, labels).
    pub meta: &'a ObjectMeta,
    /// The role it grants.
    pub role_ref: &'a RoleRef,
    /// Its subjects.
    pub subjects: &'a [Subject],
}

/// Whether `rule` selects this binding: for one of the permissions of `spec`, or (no `spec`) for
/// any permission. Namespace label selectors are not evaluated here (the namespaces' labels are
/// not at hand), so a binding selected only through one is not counted.
pub fn rule_covers(rule: &AccessRule, b: &BindingView<'_>, spec: Option<&DeprovisionRequestSpec>) -> bool {
    let perms = spec.map(|s| applicable(rule, s));
    if perms.as_ref().is_some_and(|p| p.is_empty()) {
        return false;
    }
    if let Some(e) = &rule.entitlements
        && entitlement_bounds_cover(e, b)
    {
        let named =
            |v: &str| Entitlement::from_permission_value(v).is_ok_and(|x| x.is_granted_by(b.namespace, b.role_ref));
        let covered = match &perms {
            Some(p) => p.iter().flatten().any(|v| named(v)),
            None => true,
        };
        if covered {
            return true;
        }
    }
    let name = b.meta.name.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = b.meta.labels.as_ref().unwrap_or(&empty);
    let picks = |names: &[String], sel: Option<&LabelSelector>, role: Option<&RoleRefFilter>| {
        (names.is_empty() || names.iter().any(|n| n == name))
            && labels_match(sel, labels)
            && role_ref_matches(role, b.role_ref)
    };
    let Some(ns) = b.namespace else {
        return rule
            .cluster_role_bindings
            .as_ref()
            .is_some_and(|c| picks(&c.names, c.selector.as_ref(), c.role_ref.as_ref()));
    };
    if let Some(rb) = &rule.role_bindings
        && rb.namespaces.iter().any(|n| n == ns)
        && picks(&rb.names, rb.selector.as_ref(), rb.role_ref.as_ref())
    {
        return true;
    }
    let Some(na) = &rule.namespace_access else {
        return false;
    };
    if na.namespaces.iter().any(|n| n == ns) {
        return true;
    }
    na.from_permission_value
        && match &perms {
            Some(p) => p.contains(&Some(ns)),
            None => rule.permissions.is_empty() || rule.permissions.iter().any(|pat| glob_match(pat, ns)),
        }
}
