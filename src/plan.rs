//! The plan: a pure function of (request, policies, observed cluster) to the list of actions.
//! Nothing here talks to the API server, so every rule is unit-tested on plain values.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::crd::{
    AbsentCheck, AccessRule, ActionKind, BindingAction, BindingKind, BindingRef, DeprovisionPolicy,
    DeprovisionPolicySpec, DeprovisionRequestSpec, HttpTarget, PlannedAction, RoleRefFilter, ScimTarget,
};
use crate::subject::{Principal, Protected, Wanted, subject_ref};
use crate::template::{self, TemplateError};

/// Why no plan could be made. Nothing is changed when planning fails.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// No policy covers the application.
    #[error("no DeprovisionPolicy covers application {0}")]
    NoPolicy(String),
    /// A matching policy is unusable.
    #[error("DeprovisionPolicy {policy} is invalid: {reason}")]
    InvalidPolicy {
        /// Policy name.
        policy: String,
        /// What is wrong.
        reason: String,
    },
    /// A requested permission that no rule maps to cluster access.
    #[error("no rule in DeprovisionPolicy {policies} covers permission {permission:?}")]
    UnmappedPermission {
        /// Matching policy names.
        policies: String,
        /// The permission value.
        permission: String,
    },
    /// A subject template could not be rendered for this request.
    #[error("DeprovisionPolicy {policy}: {source}")]
    Template {
        /// Policy name.
        policy: String,
        /// The template error.
        source: TemplateError,
    },
    /// A permission value taken as a namespace is not a namespace name.
    #[error("permission value {0:?} is not a valid namespace name")]
    BadNamespace(String),
    /// The plan would touch a protected subject.
    #[error("refused: {0}; nothing was changed")]
    Protected(String),
    /// A rule takes its namespace from the permission value, but the request names none.
    #[error(
        "DeprovisionPolicy {policy} rules[{rule}] takes the namespace from the Lumos permission value, but the request names no permission (whole application); nothing was changed"
    )]
    NeedsPermission {
        /// Policy name.
        policy: String,
        /// Rule index.
        rule: usize,
    },
    /// A rendered subject name is not allowed by the policy.
    #[error(
        "DeprovisionPolicy {policy}: subject {name:?} is not allowed by subjects[{index}].allowedNames; nothing was changed"
    )]
    NotAllowed {
        /// Policy name.
        policy: String,
        /// Subject index.
        index: usize,
        /// The rendered name.
        name: String,
    },
    /// The plan is too large to record.
    #[error("the plan has {0} actions, more than the {MAX_ACTIONS} one request may record; narrow the policy")]
    TooLarge(usize),
}

/// Most actions one request records (a status must fit in one etcd object).
pub const MAX_ACTIONS: usize = 2000;

impl PlanError {
    /// Short CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            PlanError::NoPolicy(_) => "NoPolicy",
            PlanError::InvalidPolicy { .. } => "InvalidPolicy",
            PlanError::UnmappedPermission { .. } => "UnmappedPermission",
            PlanError::Template { .. } => "TemplateUnresolved",
            PlanError::BadNamespace(_) => "BadNamespace",
            PlanError::Protected(_) => "ProtectedSubject",
            PlanError::NeedsPermission { .. } => "NeedsPermission",
            PlanError::NotAllowed { .. } => "SubjectNotAllowed",
            PlanError::TooLarge(_) => "PlanTooLarge",
        }
    }
}

/// What the controller observed in the cluster (a consistent, fresh read).
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Every namespace (for selectors and existence).
    pub namespaces: Vec<Namespace>,
    /// RoleBindings in the namespaces the scope names.
    pub role_bindings: Vec<RoleBinding>,
    /// ClusterRoleBindings (when the scope needs them).
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// What must be read from the cluster to plan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Namespaces whose RoleBindings are needed.
    pub namespaces: BTreeSet<String>,
    /// Whether ClusterRoleBindings are needed.
    pub cluster_role_bindings: bool,
}

/// The outcome of planning.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Names of the policies that matched.
    pub policies: Vec<String>,
    /// Actions in execution order.
    pub actions: Vec<PlannedAction>,
}

/// Bindings a rule selects, before looking at subjects.
#[derive(Debug, Clone)]
enum Target<'p> {
    RoleBindings {
        namespaces: BTreeSet<String>,
        names: &'p [String],
        selector: Option<&'p LabelSelector>,
        role_ref: Option<&'p RoleRefFilter>,
    },
    ClusterRoleBindings {
        names: &'p [String],
        selector: Option<&'p LabelSelector>,
        role_ref: Option<&'p RoleRefFilter>,
    },
}

/// An external account a rule names.
#[derive(Debug, Clone, Copy)]
enum External<'p> {
    Scim(&'p ScimTarget),
    Http(&'p HttpTarget),
}

struct Selection<'p> {
    policy: &'p DeprovisionPolicy,
    targets: Vec<(Target<'p>, String)>,
    external: Vec<(External<'p>, String)>,
}

/// The label `app_id/instance_id` used in messages.
pub fn app_label(spec: &DeprovisionRequestSpec) -> String {
    match (&spec.application.app_id, &spec.application.instance_id) {
        (Some(a), Some(i)) => format!("{a:?} (instance {i:?})"),
        (Some(a), None) => format!("{a:?}"),
        (None, Some(i)) => format!("instance {i:?}"),
        (None, None) => "(none)".into(),
    }
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

/// Checks what the API server's schema cannot: templates, selectors, names, patterns.
pub fn validate_policy(spec: &DeprovisionPolicySpec) -> Result<(), String> {
    for (i, s) in spec.subjects.iter().enumerate() {
        template::validate(&s.name).map_err(|e| format!("subjects[{i}].name: {e}"))?;
        if let Some(ns) = &s.namespace {
            template::validate(ns).map_err(|e| format!("subjects[{i}].namespace: {e}"))?;
        }
    }
    let sel_ok = |s: Option<&LabelSelector>, at: &str| -> Result<(), String> {
        if let Some(s) = s {
            if s.match_labels.as_ref().is_none_or(|l| l.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
            {
                return Err(format!("{at} is empty, which would select everything"));
            }
            Selector::try_from(s.clone()).map_err(|e| format!("{at}: {e}"))?;
        }
        Ok(())
    };
    for (i, r) in spec.rules.iter().enumerate() {
        if r.permissions.iter().any(|p| p.is_empty()) {
            return Err(format!("rules[{i}].permissions has an empty pattern"));
        }
        if let Some(rb) = &r.role_bindings {
            check_namespaces(&rb.namespaces).map_err(|e| format!("rules[{i}].roleBindings.namespaces: {e}"))?;
            sel_ok(rb.namespace_selector.as_ref(), &format!("rules[{i}].roleBindings.namespaceSelector"))?;
            sel_ok(rb.selector.as_ref(), &format!("rules[{i}].roleBindings.selector"))?;
        }
        if let Some(crb) = &r.cluster_role_bindings {
            sel_ok(crb.selector.as_ref(), &format!("rules[{i}].clusterRoleBindings.selector"))?;
        }
        if let Some(t) = &r.scim {
            check_url(&t.base_url).map_err(|e| format!("rules[{i}].scim.baseUrl: {e}"))?;
            template::validate(&t.match_value).map_err(|e| format!("rules[{i}].scim.matchValue: {e}"))?;
        }
        if let Some(t) = &r.http {
            check_url(&t.url).map_err(|e| format!("rules[{i}].http.url: {e}"))?;
            template::validate(&t.url).map_err(|e| format!("rules[{i}].http.url: {e}"))?;
            if let Some(b) = &t.body {
                template::validate(b).map_err(|e| format!("rules[{i}].http.body: {e}"))?;
                check_body(b).map_err(|e| format!("rules[{i}].http.body: {e}"))?;
            }
            if !matches!(t.method.to_ascii_uppercase().as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                return Err(format!("rules[{i}].http.method {:?} is not GET, POST, PUT, PATCH or DELETE", t.method));
            }
            for h in &t.headers {
                if h.value.is_some() && is_credential_header(&h.name) {
                    return Err(format!(
                        "rules[{i}].http.headers: {} looks like a credential; use valueFrom (a Secret) so it is never recorded",
                        h.name
                    ));
                }
            }
        }
        if let Some(na) = &r.namespace_access {
            check_namespaces(&na.namespaces).map_err(|e| format!("rules[{i}].namespaceAccess.namespaces: {e}"))?;
        }
    }
    Ok(())
}

/// `https://` with a literal host; `http://` only to loopback (credentials never travel in clear).
fn check_url(url: &str) -> Result<(), String> {
    let (rest, tls) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (r, true),
        (None, Some(r)) => (r, false),
        _ => return Err(format!("{url:?} must start with https://")),
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains("{{") {
        return Err(format!("{url:?} must name its host literally"));
    }
    let hostname = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    if !tls && !matches!(hostname, "localhost" | "127.0.0.1" | "::1") {
        return Err(format!("{url:?}: plain http:// is only allowed to loopback; use https://"));
    }
    Ok(())
}

/// Every `{{field}}` of a JSON body template must sit inside a string literal, so a payload value
/// can never add JSON structure.
fn check_body(body: &str) -> Result<(), String> {
    let mut marked = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("{{") {
        marked.push_str(&rest[..i]);
        marked.push_str("__deprovisioner_field__");
        rest = rest[i..].find("}}").map_or("", |j| &rest[i + j + 2..]);
    }
    marked.push_str(rest);
    serde_json::from_str::<serde_json::Value>(&marked)
        .map(|_| ())
        .map_err(|e| format!("must be JSON with every {{{{field}}}} inside a string: {e}"))
}

/// Header names whose literal values would be credentials.
fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "cookie" || ["auth", "token", "key", "secret", "password", "credential"].iter().any(|w| n.contains(w))
}

fn check_namespaces(names: &[String]) -> Result<(), String> {
    match names.iter().find(|n| !is_dns_label(n)) {
        Some(n) => Err(format!("{n:?} is not a namespace name")),
        None => Ok(()),
    }
}

/// RFC 1123 label: what a namespace name must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last) {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
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

fn select<'p>(
    spec: &DeprovisionRequestSpec,
    policies: &[&'p DeprovisionPolicy],
    namespaces: &[Namespace],
) -> Result<Vec<Selection<'p>>, PlanError> {
    if policies.is_empty() {
        return Err(PlanError::NoPolicy(app_label(spec)));
    }
    for p in policies {
        validate_policy(&p.spec).map_err(|reason| PlanError::InvalidPolicy { policy: p.name_any(), reason })?;
    }
    // Every requested permission must be covered by some rule of some matching policy.
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
    let by_labels = |sel: &LabelSelector| -> BTreeSet<String> {
        let sel = Selector::try_from(sel.clone()).expect("validated above");
        namespaces.iter().filter(|ns| sel.matches(ns.labels())).map(|ns| ns.name_any()).collect()
    };
    let mut out = Vec::new();
    for policy in policies {
        let mut targets = Vec::new();
        let mut external = Vec::new();
        for (i, rule) in policy.spec.rules.iter().enumerate() {
            for perm in applicable(rule, spec) {
                let why = match perm {
                    Some(v) => format!("rules[{i}] for permission {v:?}"),
                    None => format!("rules[{i}] for the whole application"),
                };
                if let Some(rb) = &rule.role_bindings {
                    let mut nss: BTreeSet<String> = rb.namespaces.iter().cloned().collect();
                    if let Some(sel) = &rb.namespace_selector {
                        nss.extend(by_labels(sel));
                    }
                    let t = Target::RoleBindings {
                        namespaces: nss,
                        names: &rb.names,
                        selector: rb.selector.as_ref(),
                        role_ref: rb.role_ref.as_ref(),
                    };
                    targets.push((t, format!("{why}: roleBindings")));
                }
                if let Some(crb) = &rule.cluster_role_bindings {
                    let t = Target::ClusterRoleBindings {
                        names: &crb.names,
                        selector: crb.selector.as_ref(),
                        role_ref: crb.role_ref.as_ref(),
                    };
                    targets.push((t, format!("{why}: clusterRoleBindings")));
                }
                if let Some(na) = &rule.namespace_access {
                    let mut nss: BTreeSet<String> = na.namespaces.iter().cloned().collect();
                    match (na.from_permission_value, perm) {
                        (true, Some(v)) if !is_dns_label(v) => return Err(PlanError::BadNamespace(v.into())),
                        (true, Some(v)) => {
                            nss.insert(v.into());
                        }
                        // A whole-application request names no permission, so no namespace: refuse
                        // rather than report success while that access stays.
                        (true, None) => {
                            return Err(PlanError::NeedsPermission { policy: policy.name_any(), rule: i });
                        }
                        (false, _) => {}
                    }
                    if !nss.is_empty() {
                        let t = Target::RoleBindings { namespaces: nss, names: &[], selector: None, role_ref: None };
                        targets.push((t, format!("{why}: namespaceAccess")));
                    }
                }
                if let Some(t) = &rule.scim {
                    external.push((External::Scim(t), format!("{why}: scim {}", t.system)));
                }
                if let Some(t) = &rule.http {
                    external.push((External::Http(t), format!("{why}: http {}", t.system)));
                }
            }
        }
        out.push(Selection { policy, targets, external });
    }
    Ok(out)
}

/// What must be read from the cluster to plan this request (after namespaces are known).
pub fn scope(
    spec: &DeprovisionRequestSpec,
    policies: &[&DeprovisionPolicy],
    namespaces: &[Namespace],
) -> Result<Scope, PlanError> {
    let mut scope = Scope::default();
    for sel in select(spec, policies, namespaces)? {
        for (t, _) in sel.targets {
            match t {
                Target::RoleBindings { namespaces, .. } => scope.namespaces.extend(namespaces),
                Target::ClusterRoleBindings { .. } => scope.cluster_role_bindings = true,
            }
        }
    }
    Ok(scope)
}

fn resolve_subjects(policy: &DeprovisionPolicy, spec: &DeprovisionRequestSpec) -> Result<Vec<Wanted>, PlanError> {
    let err = |source| PlanError::Template { policy: policy.name_any(), source };
    policy
        .spec
        .subjects
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let rendered = template::render(&s.name, spec).map_err(err)?;
            if !s.allowed_names.is_empty() && !s.allowed_names.iter().any(|p| glob_match(p, &rendered)) {
                return Err(PlanError::NotAllowed { policy: policy.name_any(), index, name: rendered });
            }
            let name = format!("{}{rendered}", s.prefix.as_deref().unwrap_or(""));
            // Checked on the raw name: a User template must not reach `system:` identities, not
            // even ServiceAccounts in their `system:serviceaccount:` form (use kind ServiceAccount).
            if name.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("system:")) {
                return Err(PlanError::Protected(format!(
                    "DeprovisionPolicy {} subjects[{index}] renders to {name:?}, a system: name",
                    policy.name_any()
                )));
            }
            let namespace = s.namespace.as_deref().map(|ns| template::render(ns, spec)).transpose().map_err(err)?;
            Ok(Wanted::new(s.kind, name, namespace, s.case_insensitive))
        })
        .collect()
}

fn render_external(
    ext: External<'_>,
    spec: &DeprovisionRequestSpec,
    policy: &DeprovisionPolicy,
    why: &str,
) -> Result<PlannedAction, PlanError> {
    let err = |source| PlanError::Template { policy: policy.name_any(), source };
    let mut a = PlannedAction {
        id: 0,
        kind: ActionKind::ScimDeprovision,
        policy: policy.name_any(),
        reason: why.to_string(),
        binding: None,
        absent: None,
        scim: None,
        http: None,
    };
    match ext {
        External::Scim(t) => {
            let value = template::render(&t.match_value, spec).map_err(err)?;
            a.scim = Some(ScimTarget {
                base_url: t.base_url.trim_end_matches('/').to_string(),
                match_value: value,
                ..t.clone()
            });
        }
        External::Http(t) => {
            a.kind = ActionKind::HttpCall;
            let url = template::render_escaped(&t.url, spec, template::url_escape).map_err(err)?;
            let body = t
                .body
                .as_deref()
                .map(|b| template::render_escaped(b, spec, template::json_escape))
                .transpose()
                .map_err(err)?;
            if let Some(b) = &body
                && let Err(e) = serde_json::from_str::<serde_json::Value>(b)
            {
                return Err(PlanError::InvalidPolicy {
                    policy: policy.name_any(),
                    reason: format!("http {} body is not JSON once rendered: {e}", t.system),
                });
            }
            a.http = Some(HttpTarget { method: t.method.to_ascii_uppercase(), url, body, ..t.clone() });
        }
    }
    Ok(a)
}

fn role_ref_matches(filter: Option<&RoleRefFilter>, r: &RoleRef) -> bool {
    filter.is_none_or(|f| f.name == r.name && f.kind.as_ref().is_none_or(|k| *k == r.kind))
}

fn labels_match(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    sel.is_none_or(|s| Selector::try_from(s.clone()).is_ok_and(|s| s.matches(labels)))
}

struct Candidate<'a> {
    target: BindingRef,
    subjects: &'a [Subject],
}

fn candidates<'a>(t: &Target<'_>, observed: &'a Observed) -> Vec<Candidate<'a>> {
    let empty: &[Subject] = &[];
    match t {
        Target::RoleBindings { namespaces, names, selector, role_ref } => observed
            .role_bindings
            .iter()
            .filter(|b| b.metadata.deletion_timestamp.is_none())
            .filter(|b| b.namespace().is_some_and(|ns| namespaces.contains(&ns)))
            .filter(|b| names.is_empty() || names.contains(&b.name_any()))
            .filter(|b| labels_match(*selector, b.labels()))
            .filter(|b| role_ref_matches(*role_ref, &b.role_ref))
            .map(|b| Candidate {
                target: binding_ref(BindingKind::RoleBinding, b.namespace(), &b.metadata, &b.role_ref),
                subjects: b.subjects.as_deref().unwrap_or(empty),
            })
            .collect(),
        Target::ClusterRoleBindings { names, selector, role_ref } => observed
            .cluster_role_bindings
            .iter()
            .filter(|b| b.metadata.deletion_timestamp.is_none())
            .filter(|b| names.is_empty() || names.contains(&b.name_any()))
            .filter(|b| labels_match(*selector, b.labels()))
            .filter(|b| role_ref_matches(*role_ref, &b.role_ref))
            .map(|b| Candidate {
                target: binding_ref(BindingKind::ClusterRoleBinding, None, &b.metadata, &b.role_ref),
                subjects: b.subjects.as_deref().unwrap_or(empty),
            })
            .collect(),
    }
}

fn binding_ref(
    kind: BindingKind,
    namespace: Option<String>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    role_ref: &RoleRef,
) -> BindingRef {
    BindingRef {
        kind,
        namespace,
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        role_ref: format!("{}/{}", role_ref.kind, role_ref.name),
    }
}

/// Computes the plan. Fails (changing nothing) when no policy covers the request, a policy is
/// invalid, a permission is unmapped, a subject cannot be resolved, or a protected subject would
/// be touched. An empty plan is a success: the access is already gone.
pub fn compute(
    spec: &DeprovisionRequestSpec,
    all_policies: &[DeprovisionPolicy],
    observed: &Observed,
    protected: &Protected,
) -> Result<Plan, PlanError> {
    let policies = matching_policies(spec, all_policies);
    let selections = select(spec, &policies, &observed.namespaces)?;
    let mut seen: BTreeSet<(BindingRef, crate::crd::SubjectRef)> = BTreeSet::new();
    let mut actions = Vec::new();
    let mut absent = Vec::new();
    let mut external: Vec<PlannedAction> = Vec::new();
    for sel in &selections {
        let wanted = resolve_subjects(sel.policy, spec)?;
        for w in &wanted {
            if let Some(why) = protected.why(&w.principal) {
                return Err(PlanError::Protected(format!(
                    "DeprovisionPolicy {} resolves to {why}",
                    sel.policy.name_any()
                )));
            }
        }
        let when_empty = sel.policy.spec.empty_bindings;
        let mut found = vec![false; wanted.len()];
        let mut checked = BTreeSet::new();
        for (target, why) in &sel.targets {
            for c in candidates(target, observed) {
                checked.insert(c.target.clone());
                for s in c.subjects {
                    let ns = c.target.namespace.as_deref();
                    let Some(p) = Principal::of_subject(s, ns) else {
                        continue;
                    };
                    let hits: Vec<usize> = (0..wanted.len()).filter(|&i| wanted[i].matches(&p)).collect();
                    if hits.is_empty() {
                        continue;
                    }
                    hits.iter().for_each(|&i| found[i] = true);
                    if let Some(why) = protected.why(&p) {
                        return Err(PlanError::Protected(format!("{} in {} matches: {why}", s.name, c.target)));
                    }
                    let key = (c.target.clone(), subject_ref(s));
                    if seen.insert(key.clone()) {
                        actions.push((key, sel.policy.name_any(), why.clone(), when_empty));
                    }
                }
            }
        }
        for (ext, why) in &sel.external {
            let a = render_external(*ext, spec, sel.policy, why)?;
            if !external.iter().any(|e: &PlannedAction| e.scim == a.scim && e.http == a.http) {
                external.push(a);
            }
        }
        if sel.targets.is_empty() {
            continue;
        }
        for (w, _) in wanted.iter().zip(&found).filter(|(_, f)| !**f) {
            absent.push(PlannedAction {
                id: 0,
                kind: ActionKind::ConfirmAbsent,
                policy: sel.policy.name_any(),
                reason: format!("no binding selected by the policy holds {}", w.principal),
                binding: None,
                absent: Some(AbsentCheck { subject: w.principal.to_string(), bindings_checked: checked.len() as i32 }),
                scim: None,
                http: None,
            });
        }
    }
    actions.sort_by(|a, b| a.0.cmp(&b.0));
    let actions: Vec<PlannedAction> = actions
        .into_iter()
        .map(|((target, subject), policy, reason, when_empty)| PlannedAction {
            id: 0,
            kind: ActionKind::RemoveBindingSubject,
            policy,
            reason,
            binding: Some(BindingAction { target, subject, when_empty }),
            absent: None,
            scim: None,
            http: None,
        })
        .chain(external)
        .chain(absent)
        .enumerate()
        .map(|(i, a)| PlannedAction { id: i as i32, ..a })
        .collect();
    if actions.len() > MAX_ACTIONS {
        return Err(PlanError::TooLarge(actions.len()));
    }
    Ok(Plan { policies: policies.iter().map(|p| p.name_any()).collect(), actions })
}
