//! The plan: a pure function of (request, policies, observed cluster) to the list of actions.
//! Nothing here talks to the API server, so every rule is unit-tested on plain values.
//!
//! `select` finds the policies and what their rules select, `subject` says who a binding's
//! subject is (and whether it is protected), `template` renders policy templates for a request,
//! `validate` checks policies; this module puts them together into a [`Plan`].

mod again;
mod expire;
pub mod manager;
mod select;
pub mod subject;
pub mod template;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube_core::ResourceExt;

pub use again::again;
pub use select::{BindingView, matching_policies, rule_covers, selects_namespaces_by_label};
pub(crate) use select::{labels_match, role_ref_matches};
pub use validate::{glob_match, is_dns_label, validate_policy};

use crate::crd::{
    AbsentCheck, Action, BindingAction, BindingRef, DeprovisionPolicy, DeprovisionRequestSpec, EmptyBindingRule,
    HttpCall, ManagedBindingRule, ManagedBy, PlannedAction, Reason, RequestSource, ScimDeprovision, SubjectKind,
    SubjectRef,
};
use select::{ExternalCall, Selection, candidates};
use subject::{PrincipalRef, Protected, Wanted, subject_ref};
use template::TemplateError;

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
    /// A rendered subject name or namespace is not allowed by the policy.
    #[error("DeprovisionPolicy {policy}: {name:?} is not allowed by subjects[{index}].{field}; nothing was changed")]
    NotAllowed {
        /// Policy name.
        policy: String,
        /// Subject index.
        index: usize,
        /// `allowedNames` or `allowedNamespaces`.
        field: &'static str,
        /// The rendered name.
        name: String,
    },
    /// Two matching policies select one binding but disagree about what an emptied binding
    /// becomes.
    #[error(
        "DeprovisionPolicy {first} and {second} both select {binding} but disagree on emptyBindings ({first_rule:?} vs {second_rule:?}); make them agree; nothing was changed"
    )]
    ConflictingPolicies {
        /// The binding both select.
        binding: String,
        /// The first policy (by name).
        first: String,
        /// Its rule.
        first_rule: EmptyBindingRule,
        /// The other policy.
        second: String,
        /// Its rule.
        second_rule: EmptyBindingRule,
    },
    /// A `LumosAccount` subject in a request that did not come from the Lumos connector.
    #[error(
        "DeprovisionPolicy {policy} subjects[{index}] is a LumosAccount, which only requests from the Lumos connector name (this one's source is {from:?}{}); nothing was changed",
        hub.map(|h| format!(", handed over by a fleet hub whose record's source is {h:?}")).unwrap_or_default()
    )]
    ConnectorOnly {
        /// Policy name.
        policy: String,
        /// Subject index.
        index: usize,
        /// The request's source.
        from: RequestSource,
        /// For source `Fleet`: the hub's record's source.
        hub: Option<RequestSource>,
    },
    /// A `LumosAccount` subject rendered to something that is not an account id.
    #[error(
        "DeprovisionPolicy {policy} subjects[{index}] renders to {name:?}, not a Lumos connector account id (User:<name>, Group:<name> or ServiceAccount:<namespace>/<name>); nothing was changed"
    )]
    BadAccountId {
        /// Policy name.
        policy: String,
        /// Subject index.
        index: usize,
        /// The rendered name.
        name: String,
    },
    /// No `entitlements` rule allows the entitlement the permission names.
    #[error("no entitlements rule allows {permission:?}: {why}; nothing was changed")]
    Entitlement {
        /// The permission value.
        permission: String,
        /// Why.
        why: String,
    },
    /// A binding to edit is kept in sync by another tool and the policy says `managedBindings: Fail`.
    #[error(
        "refused: a tool keeps these bindings in sync and would put the subject back: {0} (the policy says managedBindings: Fail); remove the subject at the source instead; nothing was changed"
    )]
    Managed(String),
    /// The plan is too large to record.
    #[error("the plan has {0} actions, more than the {MAX_ACTIONS} one request may record; narrow the policy")]
    TooLarge(usize),
    /// The record (plan and the results it will hold) would not fit in one object.
    #[error(
        "the plan's record would take about {needed} bytes with its results, more than the {budget} one request may hold; narrow the policy; nothing was changed"
    )]
    RecordTooLarge {
        /// Estimated size of the finished status.
        needed: usize,
        /// What the status may take.
        budget: usize,
    },
}

/// Most actions one request records (a status must fit in one etcd object).
pub const MAX_ACTIONS: usize = 2000;

/// Largest object the API server stores (etcd's default request limit is 1.5 MiB), less room
/// for metadata, conditions, messages and the re-grants found later (at most 96 KiB).
pub const MAX_RECORD_BYTES: usize = 1_400_000;

/// The most bytes one action's result can take once recorded: its object and subject (known
/// now), a clipped message and (binding actions) two clipped lists of subject names. A binding
/// action's message names the same binding and subject around API-server text (ASCII); another
/// system's reply may be anything (4 bytes a character).
fn result_bytes(a: &PlannedAction) -> usize {
    const OVERHEAD: usize = 256;
    let max_message = crate::text::MAX_MESSAGE;
    match &a.action {
        // Plus the binding's subject names before and after, each list clipped.
        Action::RemoveBindingSubject(b) => {
            2 * (b.binding.to_string().len() + b.subject.to_string().len())
                + max_message
                + 2 * crate::crd::MAX_SUBJECT_NAMES_BYTES
                + OVERHEAD
        }
        Action::ConfirmAbsent(c) => 2 * c.subject.len() + a.policy.len() + max_message + OVERHEAD,
        Action::ScimDeprovision(c) => {
            c.system.len() + c.base_url.len() + c.match_value.len() + 4 * max_message + OVERHEAD
        }
        Action::HttpCall(c) => c.system.len() + c.url.len() + 4 * max_message + OVERHEAD,
    }
}

/// Refuses a plan whose finished record would not fit next to the request's spec.
fn check_record_size(spec: &DeprovisionRequestSpec, actions: &[PlannedAction]) -> Result<(), PlanError> {
    let spec_bytes = serde_json::to_vec(spec).map_or(MAX_RECORD_BYTES, |v| v.len());
    let plan_bytes = serde_json::to_vec(actions).map_or(MAX_RECORD_BYTES, |v| v.len());
    let needed = plan_bytes + actions.iter().map(result_bytes).sum::<usize>();
    let budget = MAX_RECORD_BYTES.saturating_sub(spec_bytes).saturating_sub(crate::crd::MAX_VERIFICATION_BYTES);
    if needed > budget {
        return Err(PlanError::RecordTooLarge { needed, budget });
    }
    Ok(())
}

impl PlanError {
    /// The reason recorded in conditions and Events.
    pub fn reason(&self) -> Reason {
        match self {
            PlanError::NoPolicy(_) => Reason::NoPolicy,
            PlanError::InvalidPolicy { .. } => Reason::InvalidPolicy,
            PlanError::UnmappedPermission { .. } => Reason::UnmappedPermission,
            PlanError::Template { .. } => Reason::TemplateUnresolved,
            PlanError::BadNamespace(_) => Reason::BadNamespace,
            PlanError::Protected(_) => Reason::ProtectedSubject,
            PlanError::NeedsPermission { .. } => Reason::NeedsPermission,
            PlanError::NotAllowed { .. } | PlanError::ConnectorOnly { .. } | PlanError::BadAccountId { .. } => {
                Reason::SubjectNotAllowed
            }
            PlanError::Entitlement { .. } => Reason::EntitlementNotAllowed,
            PlanError::ConflictingPolicies { .. } => Reason::ConflictingPolicies,
            PlanError::TooLarge(_) | PlanError::RecordTooLarge { .. } => Reason::PlanTooLarge,
            PlanError::Managed(_) => Reason::ManagedBinding,
        }
    }
}

/// What the controller observed in the cluster (consistent: nothing written before the request
/// is missing). Bindings are shared with the index that holds them.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Namespaces (for namespace selectors; empty when no matching rule has one).
    pub namespaces: Vec<Namespace>,
    /// RoleBindings in the namespaces the scope names.
    pub role_bindings: Vec<Arc<RoleBinding>>,
    /// ClusterRoleBindings (when the scope needs them).
    pub cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
    /// An expiry's: the leader's stored clocks of its binding (see [`expiry_holding`]).
    pub clocks: Option<crate::crd::BindingClocks>,
}

impl Observed {
    /// Only the bindings that may name one of `keys` (a binding with a subject filed under one of
    /// them): what an index of bindings by subject returns. Planning from these gives the plan
    /// planning from everything gives, except the number of bindings an absence check counts
    /// (see [`Plan::checks_absence`]): no other binding can yield an action or an error.
    pub fn naming(&self, keys: &BTreeSet<subject::SubjectKey>) -> Observed {
        let names = |subjects: &Option<Vec<_>>, ns: Option<&str>| {
            subject::keys_of(subjects.as_deref().unwrap_or_default(), ns).any(|k| keys.contains(&k))
        };
        Observed {
            namespaces: self.namespaces.clone(),
            role_bindings: (self.role_bindings.iter())
                .filter(|b| names(&b.subjects, b.metadata.namespace.as_deref()))
                .cloned()
                .collect(),
            cluster_role_bindings: (self.cluster_role_bindings.iter())
                .filter(|b| names(&b.subjects, None))
                .cloned()
                .collect(),
            clocks: self.clocks.clone(),
        }
    }
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

impl Plan {
    /// Whether the plan confirms an absence, whose record counts the bindings checked: planned
    /// from only the bindings naming the target ([`Observed::naming`]), that count is too low, so
    /// such a plan is computed again from every binding in scope.
    pub fn checks_absence(&self) -> bool {
        self.actions.iter().any(|a| matches!(a.action, Action::ConfirmAbsent(_)))
    }
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

/// The subjects a policy says the target user is known as, rendered for this request.
fn resolve_subjects(policy: &DeprovisionPolicy, spec: &DeprovisionRequestSpec) -> Result<Vec<Wanted>, PlanError> {
    let err = |source| PlanError::Template { policy: policy.name_any(), source };
    policy
        .spec
        .subjects
        .iter()
        .enumerate()
        .map(|(index, s)| {
            if s.kind == SubjectKind::LumosAccount && !spec.from_connector() {
                return Err(PlanError::ConnectorOnly {
                    policy: policy.name_any(),
                    index,
                    from: spec.source,
                    hub: spec.hub_source,
                });
            }
            let rendered = template::render(&s.name, spec).map_err(err)?;
            if !s.allowed_names.is_empty() && !s.allowed_names.iter().any(|p| glob_match(p, &rendered)) {
                let name = rendered;
                return Err(PlanError::NotAllowed { policy: policy.name_any(), index, field: "allowedNames", name });
            }
            let name = format!("{}{rendered}", s.prefix.as_deref().unwrap_or(""));
            // Checked on the raw name: a User template must not reach `system:` identities, not
            // even ServiceAccounts in their `system:serviceaccount:` form (use kind ServiceAccount).
            if subject::is_system_name(&name) {
                return Err(PlanError::Protected(format!(
                    "DeprovisionPolicy {} subjects[{index}] renders to {name:?}, a system: name",
                    policy.name_any()
                )));
            }
            let namespace = s.namespace.as_deref().map(|ns| template::render(ns, spec)).transpose().map_err(err)?;
            if let Some(ns) = &namespace
                && !s.allowed_namespaces.is_empty()
                && !s.allowed_namespaces.iter().any(|p| glob_match(p, ns))
            {
                let name = ns.clone();
                return Err(PlanError::NotAllowed {
                    policy: policy.name_any(),
                    index,
                    field: "allowedNamespaces",
                    name,
                });
            }
            Wanted::new(s.kind, name.clone(), namespace, s.case_insensitive).ok_or_else(|| PlanError::BadAccountId {
                policy: policy.name_any(),
                index,
                name,
            })
        })
        .collect()
}

/// The subjects the given policies resolve the target user to (what removal matches),
/// without duplicates. An expiry's is its account, exactly.
pub fn principals(spec: &DeprovisionRequestSpec, policies: &[&DeprovisionPolicy]) -> Result<Vec<Wanted>, PlanError> {
    if let Some(e) = expiry_of(spec) {
        let principal = subject::Principal::from_account_id(&e.account).ok_or_else(|| PlanError::BadAccountId {
            policy: e.policy.clone(),
            index: 0,
            name: e.account.clone(),
        })?;
        return Ok(vec![Wanted { principal, case_insensitive: false }]);
    }
    let mut out: Vec<Wanted> = vec![];
    for p in policies {
        for w in resolve_subjects(p, spec)? {
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    Ok(out)
}

/// The policy's external call rendered for this request (values escaped for where they go).
fn render_external(
    call: ExternalCall<'_>,
    spec: &DeprovisionRequestSpec,
    policy: &DeprovisionPolicy,
) -> Result<Action, PlanError> {
    let err = |source| PlanError::Template { policy: policy.name_any(), source };
    match call {
        ExternalCall::Scim(t) => {
            let value = template::render(&t.match_value, spec).map_err(err)?;
            Ok(Action::ScimDeprovision(ScimDeprovision {
                base_url: t.base_url.trim_end_matches('/').to_string(),
                match_value: value,
                ..t.clone()
            }))
        }
        ExternalCall::Http(t) => {
            let url = template::render_url(&t.url, spec).map_err(err)?;
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
            Ok(Action::HttpCall(HttpCall { method: t.method.to_ascii_uppercase(), url, body, ..t.clone() }))
        }
    }
}

/// One subject to remove from one binding, before ids are given: (binding, subject), policy,
/// reason, what an emptied binding becomes, who manages the binding.
type Removal = ((BindingRef, SubjectRef), String, String, EmptyBindingRule, Option<ManagedBy>);

/// The plan under construction: binding removals (kept sorted), external calls, absence checks.
#[derive(Default)]
struct Draft {
    seen: BTreeSet<(BindingRef, SubjectRef)>,
    /// Which policy first selected each binding, and its `emptyBindings` rule.
    rule_of: BTreeMap<BindingRef, (String, EmptyBindingRule)>,
    removals: Vec<Removal>,
    external: Vec<PlannedAction>,
    absent: Vec<PlannedAction>,
}

impl Draft {
    /// Adds what one policy's selection yields for the wanted subjects.
    fn add(
        &mut self,
        sel: &Selection<'_>,
        wanted: &[Wanted],
        spec: &DeprovisionRequestSpec,
        observed: &Observed,
        protected: &Protected,
    ) -> Result<(), PlanError> {
        let policy = sel.policy.name_any();
        let mut found = vec![false; wanted.len()];
        // Bindings looked at, for the absence checks' count: rules may select a binding twice, so
        // they are told apart by identity (each observed binding is its own allocation).
        let mut checked = BTreeSet::new();
        for (selection, why) in &sel.bindings {
            for c in candidates(selection, observed) {
                checked.insert(std::ptr::from_ref(c.meta));
                let mut binding: Option<BindingRef> = None;
                for s in c.subjects {
                    let Some(p) = PrincipalRef::of_subject(s, c.namespace) else {
                        continue;
                    };
                    let hits: Vec<usize> = (0..wanted.len()).filter(|&i| wanted[i].matches_ref(p)).collect();
                    if hits.is_empty() {
                        continue;
                    }
                    hits.iter().for_each(|&i| found[i] = true);
                    let binding = binding.get_or_insert_with(|| c.binding());
                    if let Some(why) = protected.why(&p.to_owned()) {
                        return Err(PlanError::Protected(format!("{} in {} matches: {why}", s.name, binding)));
                    }
                    self.agree(binding, &policy, sel.policy.spec.empty_bindings)?;
                    let key = (binding.clone(), subject_ref(s));
                    if self.seen.insert(key.clone()) {
                        let managed = manager::of(c.meta, manager::OWN_FIELD_MANAGER);
                        let rule = sel.policy.spec.empty_bindings;
                        self.removals.push((key, policy.clone(), why.clone(), rule, managed));
                    }
                }
            }
        }
        for (call, why) in &sel.external {
            let action = render_external(*call, spec, sel.policy)?;
            if !self.external.iter().any(|e| e.action == action) {
                self.external.push(PlannedAction { id: 0, policy: policy.clone(), reason: why.clone(), action });
            }
        }
        if !sel.bindings.is_empty() {
            for (w, _) in wanted.iter().zip(&found).filter(|(_, f)| !**f) {
                let check = AbsentCheck { subject: w.principal.to_string(), bindings_checked: checked.len() as i32 };
                self.absent.push(PlannedAction {
                    id: 0,
                    policy: policy.clone(),
                    reason: format!("no binding selected by the policy holds {}", w.principal),
                    action: Action::ConfirmAbsent(check),
                });
            }
        }
        Ok(())
    }

    /// Fails when another policy already selected `binding` with a different `emptyBindings`.
    fn agree(&mut self, binding: &BindingRef, policy: &str, rule: EmptyBindingRule) -> Result<(), PlanError> {
        let (first, first_rule) = self.rule_of.entry(binding.clone()).or_insert_with(|| (policy.to_string(), rule));
        if *first_rule == rule {
            return Ok(());
        }
        Err(PlanError::ConflictingPolicies {
            binding: binding.to_string(),
            first: first.clone(),
            first_rule: *first_rule,
            second: policy.to_string(),
            second_rule: rule,
        })
    }

    /// Binding removals in a stable order, then external calls, then absence checks; numbered.
    fn finish(mut self) -> Vec<PlannedAction> {
        self.removals.sort_by(|a, b| a.0.cmp(&b.0));
        self.removals
            .into_iter()
            .map(|((binding, subject), policy, reason, when_empty, managed_by)| PlannedAction {
                id: 0,
                policy,
                reason,
                action: Action::RemoveBindingSubject(BindingAction { binding, subject, when_empty, managed_by }),
            })
            .chain(self.external)
            .chain(self.absent)
            .enumerate()
            .map(|(i, a)| PlannedAction { id: i as i32, ..a })
            .collect()
    }
}

/// Refuses a plan that edits a binding kept in sync by another tool when the policy that selected
/// it says `managedBindings: Fail`, naming every such binding.
fn refuse_managed(policies: &[&DeprovisionPolicy], actions: &[PlannedAction]) -> Result<(), PlanError> {
    let failing = |name: &str| {
        policies.iter().any(|p| p.name_any() == name && p.spec.managed_bindings == ManagedBindingRule::Fail)
    };
    let managed: BTreeSet<String> = actions
        .iter()
        .filter(|a| failing(&a.policy))
        .filter_map(|a| match &a.action {
            Action::RemoveBindingSubject(b) => {
                b.managed_by.as_ref().filter(|m| m.syncs()).map(|m| format!("{} ({m})", b.binding))
            }
            _ => None,
        })
        .collect();
    if managed.is_empty() {
        return Ok(());
    }
    Err(PlanError::Managed(crate::text::first_and_more(&managed)))
}

/// The expiry a request carries (source `Expiry`).
pub fn expiry_of(spec: &DeprovisionRequestSpec) -> Option<&crate::crd::Expiry> {
    spec.expiry.as_ref().filter(|_| spec.source == RequestSource::Expiry)
}

/// For an expiry whose binding still names its account: whether the grant it was recorded for
/// still holds there (see [`crate::expiry::grant::holding`]); `None` for other requests, and when the
/// binding (that UID) no longer names the account (planning confirms it gone). A planner meeting
/// [`crate::expiry::grant::Holding::Unknown`] asks again shortly rather than plan.
pub fn expiry_holding(spec: &DeprovisionRequestSpec, observed: &Observed) -> Option<crate::expiry::grant::Holding> {
    let e = expiry_of(spec)?;
    let (meta, _) = expire::binding_naming(e, observed)?;
    Some(crate::expiry::grant::holding(e, meta.resource_version.as_deref(), observed.clocks.as_ref()))
}

/// What must be read from the cluster to plan this request (after namespaces are known): for an
/// expiry, only its binding's kind and namespace.
pub fn scope(
    spec: &DeprovisionRequestSpec,
    policies: &[&DeprovisionPolicy],
    namespaces: &[Namespace],
) -> Result<Scope, PlanError> {
    match expiry_of(spec) {
        Some(e) => Ok(Scope {
            namespaces: e.binding.namespace().map(str::to_string).into_iter().collect(),
            cluster_role_bindings: e.binding.namespace().is_none(),
        }),
        None => select::scope(spec, policies, namespaces),
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
    if let Some(e) = expiry_of(spec) {
        return expire::compute(e, all_policies, observed, protected);
    }
    let policies = matching_policies(spec, all_policies);
    let mut draft = Draft::default();
    for sel in select::select(spec, &policies, &observed.namespaces)? {
        let wanted = resolve_subjects(sel.policy, spec)?;
        if let Some(why) = wanted.iter().find_map(|w| protected.why(&w.principal)) {
            return Err(PlanError::Protected(format!("DeprovisionPolicy {} resolves to {why}", sel.policy.name_any())));
        }
        draft.add(&sel, &wanted, spec, observed, protected)?;
    }
    let actions = draft.finish();
    refuse_managed(&policies, &actions)?;
    if actions.len() > MAX_ACTIONS {
        return Err(PlanError::TooLarge(actions.len()));
    }
    check_record_size(spec, &actions)?;
    Ok(Plan { policies: policies.iter().map(|p| p.name_any()).collect(), actions })
}

#[cfg(test)]
mod tests;
