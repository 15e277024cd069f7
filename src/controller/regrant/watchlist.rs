//! The re-grant watchlist (pure): for each recently finished request, the subjects it removed,
//! and which bindings naming them again have been reported. Small: it holds principals and
//! binding names, never bindings.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{Action, BindingKind, DeprovisionRequest, Phase};
use crate::plan::BindingView;
use crate::plan::subject::{Principal, PrincipalRef};

/// A binding by kind, namespace and name.
pub type BindingKey = (BindingKind, Option<String>, String);

/// The most times a subject is removed again from one binding for one request: then the
/// operator stops and reports, so two controllers never fight forever.
pub const MAX_REMOVALS_AGAIN: usize = 3;

/// What one finished request removed, and what has come back since.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    /// The request's app id (for the metric).
    pub app: String,
    /// Its policies (their `onRegrant` says what to do).
    pub policies: Vec<String>,
    /// The principals it removed.
    pub principals: BTreeSet<Principal>,
    /// Bindings that still named them when the request was verified: not re-grants.
    pub excluded: BTreeSet<BindingKey>,
    /// Bindings reported as naming them again and not known to have stopped.
    pub present: BTreeSet<BindingKey>,
    /// How many times the subject was removed again from each binding.
    pub removed_again: BTreeMap<BindingKey, usize>,
    /// When the request finished.
    pub finished: Time,
}

/// A binding that names a removed subject again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The request that removed it.
    pub request: String,
    /// The binding.
    pub binding: BindingKey,
    /// The subject as written in the binding.
    pub subject: crate::crd::SubjectRef,
}

/// Every request finished within the window, by name, and which of them removed each
/// principal (so a binding event costs one lookup per subject, however many are watched).
#[derive(Debug, Default)]
pub struct Watchlist {
    requests: BTreeMap<String, Watched>,
    by_principal: BTreeMap<Principal, BTreeSet<String>>,
}

/// The key of a binding view.
pub fn key_of(view: &BindingView<'_>) -> BindingKey {
    let kind = if view.namespace.is_some() { BindingKind::RoleBinding } else { BindingKind::ClusterRoleBinding };
    (kind, view.namespace.map(str::to_string), view.meta.name.clone().unwrap_or_default())
}

/// `RoleBinding ns/name` or `ClusterRoleBinding name`.
pub fn describe(key: &BindingKey) -> String {
    match &key.1 {
        Some(ns) => format!("{} {ns}/{}", key.0.as_str(), key.2),
        None => format!("{} {}", key.0.as_str(), key.2),
    }
}

/// What to watch for a request, if it finished at or after `since` and removed someone.
pub fn watched(r: &DeprovisionRequest, since: &Time) -> Option<Watched> {
    let st = r.status.as_ref()?;
    if !matches!(st.phase, Phase::Succeeded | Phase::Failed) || st.completed_at.as_ref().is_none_or(|t| t.0 < since.0) {
        return None;
    }
    let mut principals = BTreeSet::new();
    for a in &st.plan {
        let Action::RemoveBindingSubject(b) = &a.action else { continue };
        if !st.results.iter().any(|x| x.id == a.id && x.outcome.is_removal()) {
            continue;
        }
        let s = k8s_openapi::api::rbac::v1::Subject {
            kind: b.subject.kind.clone(),
            name: b.subject.name.clone(),
            namespace: b.subject.namespace.clone(),
            ..Default::default()
        };
        if let Some(p) = PrincipalRef::of_subject(&s, b.binding.namespace()) {
            principals.insert(p.to_owned());
        }
    }
    if principals.is_empty() {
        return None;
    }
    let excluded = st
        .verification
        .iter()
        .flat_map(|v| &v.residual)
        .map(|r| (r.kind, r.namespace.clone(), r.name.clone()))
        .collect();
    let mut present = BTreeSet::new();
    let mut removed_again: BTreeMap<BindingKey, usize> = BTreeMap::new();
    for g in &st.regrants {
        let Some(key) = parse_object(&g.object) else { continue };
        if g.removed_again {
            *removed_again.entry(key.clone()).or_default() += 1;
            present.remove(&key);
        } else {
            present.insert(key);
        }
    }
    Some(Watched {
        app: r.spec.application.app_id.clone().unwrap_or_default(),
        policies: st.policies.clone(),
        principals,
        excluded,
        present,
        removed_again,
        finished: st.completed_at.clone()?,
    })
}

/// The key of `RoleBinding ns/name` or `ClusterRoleBinding name` (as [`describe`] writes it).
fn parse_object(s: &str) -> Option<BindingKey> {
    let (kind, rest) = s.split_once(' ')?;
    match kind {
        "RoleBinding" => {
            let (ns, name) = rest.split_once('/')?;
            Some((BindingKind::RoleBinding, Some(ns.into()), name.into()))
        }
        "ClusterRoleBinding" => Some((BindingKind::ClusterRoleBinding, None, rest.into())),
        _ => None,
    }
}

impl Watchlist {
    /// Adds (or replaces) what a finished request is watched for.
    pub fn insert(&mut self, request: &DeprovisionRequest, since: &Time) {
        let name = request.name_any();
        self.forget(&name);
        if let Some(w) = watched(request, since) {
            for p in &w.principals {
                self.by_principal.entry(p.clone()).or_default().insert(name.clone());
            }
            self.requests.insert(name, w);
        }
    }

    fn forget(&mut self, name: &str) {
        let Some(old) = self.requests.remove(name) else { return };
        for p in &old.principals {
            if let Some(names) = self.by_principal.get_mut(p) {
                names.remove(name);
                if names.is_empty() {
                    self.by_principal.remove(p);
                }
            }
        }
    }

    /// How many requests and principals are watched.
    pub fn counts(&self) -> (usize, usize) {
        (self.requests.len(), self.requests.values().map(|w| w.principals.len()).sum())
    }

    /// What is watched for one request.
    pub fn get(&self, request: &str) -> Option<&Watched> {
        self.requests.get(request)
    }

    /// The re-grants a binding (as it is now) shows: a watched principal it names that was not
    /// already named there when the request was verified, nor already reported. Bindings that
    /// no longer name a reported principal are forgotten, so a later re-grant is reported again.
    pub fn check(&mut self, view: &BindingView<'_>) -> Vec<Hit> {
        let key = key_of(view);
        // The watched requests this binding names a removed principal of, with the subjects.
        let mut named: BTreeMap<&str, Vec<&k8s_openapi::api::rbac::v1::Subject>> = BTreeMap::new();
        if view.meta.deletion_timestamp.is_none() {
            for s in view.subjects {
                let Some(p) = PrincipalRef::of_subject(s, view.namespace) else { continue };
                for request in self.by_principal.get(&p.to_owned()).into_iter().flatten() {
                    named.entry(request.as_str()).or_default().push(s);
                }
            }
        }
        let mut hits = vec![];
        for (request, w) in &mut self.requests {
            let Some(subjects) = named.get(request.as_str()) else {
                // It names none of them (any more): a later re-grant here is reported again.
                if !w.present.is_empty() {
                    w.present.remove(&key);
                }
                continue;
            };
            if w.excluded.contains(&key) || !w.present.insert(key.clone()) {
                continue;
            }
            hits.extend(subjects.iter().map(|s| Hit {
                request: request.clone(),
                binding: key.clone(),
                subject: crate::plan::subject::subject_ref(s),
            }));
        }
        hits
    }

    /// A binding was deleted: it names no one any more.
    pub fn deleted(&mut self, key: &BindingKey) {
        self.requests.values_mut().for_each(|w| {
            w.present.remove(key);
        });
    }

    /// Forgets, as [`Watchlist::deleted`] does, every reported binding for which `exists` says no;
    /// says how many.
    pub fn forget_absent(&mut self, exists: impl Fn(&BindingKey) -> bool) -> usize {
        let mut forgot = 0;
        for w in self.requests.values_mut() {
            let before = w.present.len();
            w.present.retain(|k| exists(k));
            forgot += before - w.present.len();
        }
        forgot
    }

    /// The subject was removed again from `key` for `request`: counted, and no longer present.
    pub fn removed_again(&mut self, request: &str, key: &BindingKey) {
        if let Some(w) = self.requests.get_mut(request) {
            *w.removed_again.entry(key.clone()).or_default() += 1;
            w.present.remove(key);
        }
    }

    /// Forgets requests that finished before `since`.
    pub fn expire(&mut self, since: &Time) {
        let old: Vec<String> =
            self.requests.iter().filter(|(_, w)| w.finished.0 < since.0).map(|(n, _)| n.clone()).collect();
        old.iter().for_each(|n| self.forget(n));
    }
}

#[cfg(test)]
mod tests;
