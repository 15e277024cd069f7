//! Access that ends by itself (pure): which bindings' access is time-bound, when each subject
//! started holding each such binding (and how that is known), and when its access is due to end:
//! the earlier of a policy rule's `maxAccess` after that start and the time the binding's
//! `deprovisioner.dev/expires` annotation gives the subject. The leading operator acts on what is
//! due (`src/controller/expiry.rs`); `deprovisioner expiring` lists what will be.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube_core::ResourceExt;

use crate::connector::model::AccountId;
use crate::crd::{
    Application, ApplicationSelector, BindingClocks, BindingRef, BindingScope, Clock, DeprovisionPolicy,
    DeprovisionRequestSpec, EndedBy, Expiry, ExpiryAnnotations, Person, RequestSource, StartEvidence, SubjectRef,
};
use crate::plan::subject::{Principal, PrincipalRef, Protected, subject_ref};
use crate::plan::{BindingView, glob_match, validate_policy};

/// How many `AccessClock` objects hold the clocks (the chart grants `get` and `update` on exactly
/// their names, and tests/chart.rs holds it to this number). At about 100 bytes a subject, 10,000
/// subjects take about 125 KiB each.
pub const CLOCK_SHARDS: usize = 8;

/// Which clock object a binding's clocks live in (FNV-1a of its UID: the same in every version).
pub fn clock_shard_of(uid: &str) -> usize {
    (crate::hash::fnv1a(uid.as_bytes()) % CLOCK_SHARDS as u64) as usize
}

/// The name of clock object `i` (`<prefix>-<i>`).
pub fn clock_shard_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}")
}

/// The end times a binding's annotation gives, by account id, and what in it could not be read
/// (each said once; nothing unreadable is guessed at).
pub fn parse_annotation(value: &str) -> (BTreeMap<String, Timestamp>, Vec<String>) {
    let mut ends = BTreeMap::new();
    let parsed: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(value) {
        Ok(m) => m,
        Err(e) => {
            let why = format!("{ANNOTATION} is not a JSON object of account ids to RFC 3339 times: {e}");
            return (ends, vec![why]);
        }
    };
    let mut errors = vec![];
    for (account, at) in parsed {
        if Principal::from_account_id(&account).is_none() {
            errors.push(format!(
                "{ANNOTATION}: {account:?} is not an account id (User:<name>, Group:<name> or ServiceAccount:<namespace>/<name>)"
            ));
            continue;
        }
        match at.as_str().map(str::parse::<Timestamp>) {
            Some(Ok(t)) => {
                ends.insert(account, t);
            }
            _ => errors.push(format!(
                "{ANNOTATION}: the time for {account:?} is not an RFC 3339 time such as 2025-07-01T00:00:00Z: {at}"
            )),
        }
    }
    (ends, errors)
}

/// What the policies say of one binding's time-bound access.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Terms {
    /// The shortest `maxAccess` of the rules that select it: (duration, policy, rule index, as written).
    pub max_access: Option<(SignedDuration, String, usize, String)>,
    /// The first policy (by name) selecting it that honours the annotation.
    pub annotation_policy: Option<String>,
    /// The first policy (by name) selecting it: the request's when nothing else says.
    pub policy: String,
    /// Account-id patterns exempt by the policies selecting it.
    pub exempt: Vec<String>,
}

impl Terms {
    /// Whether an account is exempt.
    pub fn exempts(&self, account: &str) -> bool {
        self.exempt.iter().any(|p| glob_match(p, account))
    }
}

/// The policies whose terms count: valid ones, by name.
pub fn usable(policies: &[DeprovisionPolicy]) -> Vec<&DeprovisionPolicy> {
    let mut out: Vec<_> = policies.iter().filter(|p| validate_policy(&p.spec).is_ok()).collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// Whether rule `rule` selects the binding for expiry: `roleBindings` (by namespace name or
/// label), `clusterRoleBindings`, or `namespaceAccess` of named namespaces. `labels`: the
/// binding's namespace's labels, when known.
fn selects(rule: &crate::crd::AccessRule, b: &BindingView<'_>, labels: Option<&BTreeMap<String, String>>) -> bool {
    use crate::plan::{labels_match, role_ref_matches};
    let name = b.meta.name.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let own = b.meta.labels.as_ref().unwrap_or(&empty);
    let picks = |names: &[String], sel, role| {
        (names.is_empty() || names.iter().any(|n| n == name))
            && labels_match(sel, own)
            && role_ref_matches(role, b.role_ref)
    };
    let Some(ns) = b.namespace else {
        return (rule.cluster_role_bindings.as_ref())
            .is_some_and(|c| picks(&c.names, c.selector.as_ref(), c.role_ref.as_ref()));
    };
    if let Some(rb) = &rule.role_bindings {
        let by_name = rb.namespaces.iter().any(|n| n == ns);
        let by_label = rb.namespace_selector.as_ref().is_some_and(|s| labels.is_some_and(|l| labels_match(Some(s), l)));
        if (by_name || by_label) && picks(&rb.names, rb.selector.as_ref(), rb.role_ref.as_ref()) {
            return true;
        }
    }
    rule.namespace_access.as_ref().is_some_and(|na| na.namespaces.iter().any(|n| n == ns))
}

/// What `policies` (from [`usable`]) say of the binding; `None` when none selects it.
pub fn terms(
    b: &BindingView<'_>,
    policies: &[&DeprovisionPolicy],
    labels: Option<&BTreeMap<String, String>>,
) -> Option<Terms> {
    let mut t: Option<Terms> = None;
    for p in policies {
        let name = p.name_any();
        for (i, rule) in p.spec.rules.iter().enumerate().filter(|(_, r)| selects(r, b, labels)) {
            let t = t.get_or_insert_with(|| Terms { policy: name.clone(), ..Terms::default() });
            if let Some((d, text)) = rule.max_access.as_ref().and_then(|m| Some((parse_max_access(m).ok()?, m)))
                && t.max_access.as_ref().is_none_or(|(shortest, ..)| d < *shortest)
            {
                t.max_access = Some((d, name.clone(), i, text.clone()));
            }
            let expiry = p.spec.expiry.as_ref();
            if t.annotation_policy.is_none() && expiry.is_none_or(|e| e.annotations == ExpiryAnnotations::Honour) {
                t.annotation_policy = Some(name.clone());
            }
            for pattern in expiry.map(|e| e.exempt.as_slice()).unwrap_or_default() {
                if !t.exempt.contains(pattern) {
                    t.exempt.push(pattern.clone());
                }
            }
        }
    }
    t
}

/// The time of the last write of the binding's `subjects` its managedFields record.
fn last_subjects_write(meta: &ObjectMeta) -> Option<Timestamp> {
    (meta.managed_fields.as_deref().unwrap_or_default().iter())
        .filter(|f| f.fields_v1.as_ref().is_none_or(|v| v.0.get("f:subjects").is_some()))
        .filter_map(|f| f.time.as_ref().map(|t| t.0))
        .max()
}

/// When a subject with no clock yet started holding the binding, from the earliest evidence:
/// - seen appear by this leader (the binding was in its previous scan without it): now;
/// - the binding had clocks before (so it was seen without the subject), and its managedFields
///   record a later write of `subjects` than its creation: that write;
/// - otherwise the binding's creation (it may have held it since).
pub fn start(known: bool, seen_this_term: bool, meta: &ObjectMeta, now: Timestamp) -> Clock {
    let clock = |at: Timestamp, from| Clock { since: Time(at), from };
    if seen_this_term {
        return clock(now, StartEvidence::Observed);
    }
    let created = meta.creation_timestamp.as_ref().map(|t| t.0);
    if known && let Some(w) = last_subjects_write(meta).filter(|w| created.is_none_or(|c| *w > c)) {
        return clock(w, StartEvidence::SubjectsWritten);
    }
    match created {
        Some(c) => clock(c, StartEvidence::Created),
        None => clock(now, StartEvidence::Observed),
    }
}

/// A binding as one scan reads it.
pub struct Scanned<'a> {
    /// The binding.
    pub view: BindingView<'a>,
    /// What the policies say of it now (`None`: no valid policy selects it, or none gives it an
    /// end): its clocks are kept all the same, so terms that come back find them.
    pub terms: Option<Terms>,
}

/// A binding annotation that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The binding.
    pub binding: BindingRef,
    /// What is wrong.
    pub message: String,
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The clocks to keep, by binding UID: every binding with time-bound access, each subject it
    /// holds that may expire, and every binding with clocks before that still exists (its terms
    /// gone for a while: a policy failing validation, deleted and created again, a namespace
    /// label flapping), each clock of a subject it still holds.
    pub clocks: BTreeMap<String, BindingClocks>,
    /// When each such subject's access ends.
    pub scheduled: Vec<Expiry>,
    /// Annotations that could not be read.
    pub invalid: Vec<Invalid>,
}

/// The binding as a plan names it.
pub fn binding_ref(b: &BindingView<'_>) -> BindingRef {
    BindingRef {
        scope: match b.namespace {
            Some(ns) => BindingScope::Namespaced(ns.to_string()),
            None => BindingScope::Cluster,
        },
        name: b.meta.name.clone().unwrap_or_default(),
        uid: b.meta.uid.clone().unwrap_or_default(),
        role_ref: format!("{}/{}", b.role_ref.kind, b.role_ref.name),
    }
}

/// Scans the bindings: keeps each clock `old` has for a subject still there (also while the
/// binding has no terms, and for a subject exempt for now), starts one (see [`start`]) for each
/// new subject of a time-bound binding or of one already on clocks, drops the rest (a subject
/// removed and added again starts anew; a binding deleted is forgotten), and says when each
/// subject's access ends. Protected and exempt subjects never end; protected ones get no clock.
/// `seen_this_term`: whether this leader's previous scan held the binding (by UID).
pub fn scan<'a>(
    bindings: impl IntoIterator<Item = Scanned<'a>>,
    old: &dyn Fn(&str) -> Option<&'a BindingClocks>,
    seen_this_term: &dyn Fn(&str) -> bool,
    protected: &Protected,
    now: Timestamp,
) -> Scan {
    let mut out = Scan::default();
    for Scanned { view: b, terms } in bindings {
        let Some(uid) = b.meta.uid.as_deref().filter(|u| !u.is_empty()) else { continue };
        if b.meta.deletion_timestamp.is_some() {
            continue;
        }
        let before = old(uid);
        let binding = binding_ref(&b);
        let annotation = (terms.as_ref().and_then(|t| t.annotation_policy.as_ref()))
            .and_then(|_| b.meta.annotations.as_ref()?.get(ANNOTATION));
        let ends = match annotation {
            Some(v) => {
                let (ends, errors) = parse_annotation(v);
                let invalid = errors.into_iter().map(|message| Invalid { binding: binding.clone(), message });
                out.invalid.extend(invalid);
                Some(ends)
            }
            None => None,
        };
        // The terms that give an end, if any.
        let terms = terms.filter(|t| t.max_access.is_some() || ends.is_some());
        if terms.is_none() && before.is_none() {
            continue;
        }
        let seen = seen_this_term(uid);
        let mut kept = BindingClocks {
            binding: binding.to_string(),
            subjects: BTreeMap::new(),
            version: b.meta.resource_version.clone(),
        };
        let mut done = BTreeSet::new();
        for s in b.subjects {
            let Some(p) = PrincipalRef::of_subject(s, b.namespace) else { continue };
            let account = AccountId(p.to_owned()).to_string();
            if protected.why(&p.to_owned()).is_some() || !done.insert(account.clone()) {
                continue;
            }
            let exempt = terms.as_ref().is_some_and(|t| t.exempts(&account));
            let clock = match before.and_then(|c| c.subjects.get(&account)) {
                Some(c) => c.clone(),
                None if exempt => continue,
                None => start(before.is_some(), seen, b.meta, now),
            };
            let Some(terms) = terms.as_ref().filter(|_| !exempt) else {
                kept.subjects.insert(account, clock);
                continue;
            };
            let by_rule = terms.max_access.as_ref().and_then(|(d, policy, i, text)| {
                let at = clock.since.0.checked_add(*d).ok()?;
                Some((
                    at,
                    EndedBy::MaxAccess,
                    policy.clone(),
                    format!("DeprovisionPolicy {policy} rules[{i}] maxAccess {text}"),
                ))
            });
            let by_annotation = ends.as_ref().and_then(|e| e.get(&account)).map(|at| {
                let policy = terms.annotation_policy.clone().unwrap_or_else(|| terms.policy.clone());
                (*at, EndedBy::Annotation, policy, format!("annotation {ANNOTATION} of {binding}: {at}"))
            });
            let first = match (by_rule, by_annotation) {
                (Some(r), Some(a)) => Some(if a.0 < r.0 { a } else { r }),
                (r, a) => r.or(a),
            };
            if let Some((due, ended_by, policy, reason)) = first {
                out.scheduled.push(Expiry {
                    binding: binding.clone(),
                    subject: subject_ref(s),
                    account: account.clone(),
                    started_at: clock.since.clone(),
                    started_from: clock.from,
                    due_at: Time(due),
                    ended_by,
                    policy,
                    reason,
                    binding_version: b.meta.resource_version.clone(),
                });
            }
            kept.subjects.insert(account, clock);
        }
        out.clocks.insert(uid.to_string(), kept);
    }
    out.scheduled.sort_by(|a, b| a.due_at.0.cmp(&b.due_at.0).then_with(|| a.account.cmp(&b.account)));
    out
}

/// The request that ends an access: the policy's application, the account as the target, no
/// permissions, source `Expiry`, and the expiry itself.
pub fn request_spec(e: &Expiry, app: &ApplicationSelector) -> DeprovisionRequestSpec {
    DeprovisionRequestSpec {
        application: Application {
            app_id: app.app_id.clone(),
            instance_id: app.instance_id.clone(),
            user_friendly_label: None,
        },
        permissions: vec![],
        user: None,
        target_user: Person { email: e.account.clone(), given_name: None, family_name: None },
        request_comment: Some(format!("access ended by {}", e.reason)),
        custom_fields: BTreeMap::new(),
        source: RequestSource::Expiry,
        dry_run: false,
        expiry: Some(e.clone()),
        hub_source: None,
    }
}

/// What identifies one expiry, whoever computes it: the binding's UID, the account and the start
/// of its clock (a subject added again has a new start, so a new expiry).
pub fn identity(e: &Expiry) -> String {
    format!("{}\n{}\n{}", e.binding.uid, e.account, e.started_at.0)
}

/// The subject reference of an account (for records naming it).
pub fn subject_of(account: &str) -> Option<SubjectRef> {
    Some(match Principal::from_account_id(account)? {
        Principal::User(n) => SubjectRef { kind: "User".into(), name: n, namespace: None },
        Principal::Group(n) => SubjectRef { kind: "Group".into(), name: n, namespace: None },
        Principal::ServiceAccount(ns, n) => SubjectRef { kind: "ServiceAccount".into(), name: n, namespace: Some(ns) },
    })
}

pub mod attempt;
pub mod grant;

pub use grant::{ANNOTATION, Holding, holding, is_account, parse_max_access};

#[cfg(test)]
mod tests;
