//! Which questions to ask the authorizer (pure): who the target is to the API server, and what
//! the removed bindings' roles granted, expanded and bounded.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::crd::{BindingRef, Review};
use crate::plan::subject::{Principal, Wanted};

/// The most SubjectAccessReviews one request may be set to ask (`--reviews-per-binding`); the record
/// keeps room for this many.
pub const MAX_REVIEWS: usize = 48;

/// How many reviews a request asks per removed binding and identity unless set otherwise: the
/// first grant of the binding's role. Each review costs the API server a pass over the bindings
/// of the namespace asked about (a denial reads them all; measured on 2 cores: 1.2 ms of its CPU
/// with 100 RoleBindings there, 8 ms with 10,000). With 8 per binding, a burst of removals in a
/// namespace of 10,000 bindings spent 100 ms of API-server CPU per removal (5 times the rest of
/// the removal) and the webhook's record creates timed out; with 1, 28 ms.
pub const DEFAULT_PER_BINDING: usize = 1;

/// Verbs asked for a rule that grants every verb (`*`): one read, one list, one of each write.
const VERB_SAMPLES: [&str; 5] = ["get", "list", "create", "update", "delete"];

/// Resources asked for a rule that grants every resource (`*`) of a group: the ones whose loss
/// matters most. A group with none here is asked as `*` (only a wildcard rule allows that).
const RESOURCE_SAMPLES: [(&str, &str); 6] = [
    ("", "pods"),
    ("", "secrets"),
    ("", "configmaps"),
    ("apps", "deployments"),
    ("batch", "jobs"),
    ("rbac.authorization.k8s.io", "rolebindings"),
];

/// One identity as the authorizer sees it: a user name and its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name (empty: groups only).
    pub user: String,
    /// Group names.
    pub groups: Vec<String>,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.user.is_empty(), self.groups.is_empty()) {
            (false, true) => write!(f, "User {}", self.user),
            (false, false) => write!(f, "User {} (groups: {})", self.user, self.groups.join(", ")),
            (true, _) => write!(f, "groups: {}", self.groups.join(", ")),
        }
    }
}

/// The identities the target has, from the subjects the policies resolve them to: each User
/// with every Group the policies name, each ServiceAccount with the groups Kubernetes gives it,
/// and the Groups alone when no User is named.
pub fn identities(wanted: &[Wanted]) -> Vec<Identity> {
    let mut groups: Vec<String> = vec![];
    for w in wanted {
        if let Principal::Group(g) = &w.principal
            && !groups.contains(g)
        {
            groups.push(g.clone());
        }
    }
    let mut out: Vec<Identity> = vec![];
    for w in wanted {
        let id = match &w.principal {
            Principal::User(u) => Identity { user: u.clone(), groups: groups.clone() },
            Principal::ServiceAccount(ns, n) => Identity {
                user: format!("system:serviceaccount:{ns}:{n}"),
                groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")],
            },
            Principal::Group(_) => continue,
        };
        if !out.contains(&id) {
            out.push(id);
        }
    }
    let has_user = wanted.iter().any(|w| matches!(w.principal, Principal::User(_)));
    if !has_user && !groups.is_empty() {
        out.push(Identity { user: String::new(), groups });
    }
    out
}

/// What one removed binding granted: the binding and its role's rules.
pub struct Grant<'a> {
    /// The binding the subject was removed from.
    pub binding: &'a BindingRef,
    /// Its role's rules.
    pub rules: &'a [PolicyRule],
}

/// One thing to ask about, before it is asked of each identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Attributes<'a> {
    namespace: Option<&'a str>,
    verb: &'a str,
    group: Option<&'a str>,
    resource: Option<&'a str>,
    subresource: Option<&'a str>,
    name: Option<&'a str>,
    path: Option<&'a str>,
}

/// What one rule of a role bound in `namespace` (`None`: cluster-wide) grants, as questions.
/// Non-resource URLs count only cluster-wide (RBAC ignores them in a RoleBinding).
/// Borrowed from the rule (nothing is copied until a question is chosen: a role like `edit`
/// expands to hundreds).
fn expand<'a>(rule: &'a PolicyRule, namespace: Option<&'a str>) -> Vec<Attributes<'a>> {
    let verbs: Vec<&str> = match rule.verbs.iter().any(|v| v == "*") {
        true => VERB_SAMPLES.to_vec(),
        false => rule.verbs.iter().map(String::as_str).collect(),
    };
    let mut out = vec![];
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    let names: Vec<Option<&str>> = match rule.resource_names.as_deref() {
        Some(n) if !n.is_empty() => n.iter().map(|n| Some(n.as_str())).collect(),
        _ => vec![None],
    };
    for group in groups {
        for resource in rule.resources.as_deref().unwrap_or_default() {
            let targets: Vec<(&str, &str)> = match resource.as_str() {
                "*" => {
                    let samples: Vec<(&str, &str)> =
                        RESOURCE_SAMPLES.iter().copied().filter(|(g, _)| group == "*" || g == group).collect();
                    if samples.is_empty() { vec![(group.as_str(), "*")] } else { samples }
                }
                r => vec![(group.as_str(), r)],
            };
            for (g, r) in targets {
                let (resource, subresource) = match r.split_once('/') {
                    Some((r, s)) => (r, Some(s)),
                    None => (r, None),
                };
                for verb in &verbs {
                    for name in &names {
                        out.push(Attributes {
                            namespace,
                            verb,
                            group: Some(g),
                            resource: Some(resource),
                            subresource,
                            name: *name,
                            path: None,
                        });
                    }
                }
            }
        }
    }
    if namespace.is_none() {
        for path in rule.non_resource_urls.as_deref().unwrap_or_default() {
            let verbs: Vec<&str> = if verbs.len() == VERB_SAMPLES.len() { vec!["get"] } else { verbs.clone() };
            for verb in verbs {
                out.push(Attributes { verb, path: Some(path), ..Default::default() });
            }
        }
    }
    out
}

/// The reviews to ask (answers not filled in), at most `max`, and how many were left out.
/// Deduplicated; taken from every binding in turn, and within a binding from every rule in
/// turn, so a bound cuts the long roles and the long rules, not the short ones.
pub fn questions(identities: &[Identity], grants: &[Grant<'_>], max: usize) -> (Vec<Review>, usize) {
    let per_binding: Vec<(String, Vec<Attributes>)> = grants
        .iter()
        .map(|g| {
            let per_rule: Vec<Vec<Attributes>> = g.rules.iter().map(|r| expand(r, g.binding.namespace())).collect();
            (g.binding.to_string(), interleave(per_rule))
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut ordered: Vec<(&str, &Attributes)> = vec![];
    let longest = per_binding.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
    for i in 0..longest {
        for (binding, attrs) in &per_binding {
            if let Some(a) = attrs.get(i)
                && seen.insert(a)
            {
                ordered.push((binding, a));
            }
        }
    }
    let mut out = vec![];
    let mut skipped = 0;
    for (binding, a) in ordered {
        for identity in 0..identities.len() {
            if out.len() == max {
                skipped += 1;
                continue;
            }
            let owned = |v: Option<&str>| v.map(str::to_string);
            out.push(Review {
                identity: identity as i32,
                verb: a.verb.to_string(),
                group: owned(a.group),
                resource: owned(a.resource),
                subresource: owned(a.subresource),
                namespace: owned(a.namespace),
                name: owned(a.name),
                path: owned(a.path),
                granted_by: binding.to_string(),
                allowed: false,
                reason: None,
            });
        }
    }
    (out, skipped)
}

/// The first item of every list, then the second of every list, and so on.
fn interleave<T>(lists: Vec<Vec<T>>) -> Vec<T> {
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let mut out = vec![];
    loop {
        let before = out.len();
        out.extend(iters.iter_mut().filter_map(Iterator::next));
        if out.len() == before {
            return out;
        }
    }
}
