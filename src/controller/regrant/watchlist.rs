//! The re-grant watchlist (pure): for each recently finished request, the bindings it removed
//! subjects from, and which bindings naming them (again) have been reported. Small: it holds
//! principals, binding names and UIDs, never bindings.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;

use crate::crd::{Action, BindingKind, DeprovisionPolicy, DeprovisionRequest, Phase, RegrantOrigin, RegrantRule};
use crate::plan::BindingView;
use crate::plan::subject::{Principal, PrincipalRef};

/// A binding by kind, namespace and name.
pub type BindingKey = (BindingKind, Option<String>, String);

/// The most times a subject is removed again from one binding for one request: then the
/// operator stops and reports, so two controllers never fight forever.
pub const MAX_REMOVALS_AGAIN: usize = 3;

/// What one finished request removed from one binding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Removed {
    /// The principals removed from it.
    pub principals: BTreeSet<Principal>,
    /// The policies whose actions removed them (their `onRegrant` and rules decide a re-grant's
    /// removal).
    pub policies: BTreeSet<String>,
    /// Its UID then (one created again under the name since has another).
    pub uid: String,
}

/// What one finished request removed, and what has come back since.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    /// The request's UID: a request created later under its name is another one.
    pub uid: Option<String>,
    /// The request's app id (for the metric).
    pub app: String,
    /// The bindings it removed someone from (from its plan and results), by name.
    pub removed_from: BTreeMap<BindingKey, Removed>,
    /// Every principal it removed.
    pub principals: BTreeSet<Principal>,
    /// Bindings reported as naming them (again) and not known to have stopped, with the UID
    /// reported (`None`: an entry from a record written before UIDs were: any binding of the name).
    pub present: BTreeMap<BindingKey, Option<String>>,
    /// How many times the subject was removed again from each binding.
    pub removed_again: BTreeMap<BindingKey, usize>,
    /// When the request finished.
    pub finished: Time,
}

/// A binding that names a removed subject (again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The request that removed it.
    pub request: String,
    /// That request's UID (`None`: not known).
    pub request_uid: Option<String>,
    /// The binding.
    pub binding: BindingKey,
    /// Its UID now.
    pub uid: String,
    /// How it relates to the request.
    pub origin: RegrantOrigin,
    /// The subjects it names, as written in it.
    pub subjects: Vec<crate::crd::SubjectRef>,
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

/// The key of a planned binding.
fn key_of_ref(b: &crate::crd::BindingRef) -> BindingKey {
    (b.kind(), b.namespace().map(str::to_string), b.name.clone())
}

/// `RoleBinding ns/name` or `ClusterRoleBinding name`.
pub fn describe(key: &BindingKey) -> String {
    match &key.1 {
        Some(ns) => format!("{} {ns}/{}", key.0.as_str(), key.2),
        None => format!("{} {}", key.0.as_str(), key.2),
    }
}

/// What to watch for a request, if it finished at or after `since` and removed someone: the
/// bindings its results say it removed someone from (their plan actions name them, with their
/// UIDs, in every record). Nothing else it saw, such as access the verification found left, is
/// watched as its own.
pub fn watched(r: &DeprovisionRequest, since: &Time) -> Option<Watched> {
    let st = r.status.as_ref()?;
    if !matches!(st.phase, Phase::Succeeded | Phase::Failed) || st.completed_at.as_ref().is_none_or(|t| t.0 < since.0) {
        return None;
    }
    let mut removed_from: BTreeMap<BindingKey, Removed> = BTreeMap::new();
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
            let entry = removed_from.entry(key_of_ref(&b.binding)).or_default();
            entry.principals.insert(p.to_owned());
            entry.policies.insert(a.policy.clone());
            entry.uid.clone_from(&b.binding.uid);
        }
    }
    if removed_from.is_empty() {
        return None;
    }
    let principals = removed_from.values().flat_map(|r| r.principals.iter().cloned()).collect();
    let mut present = BTreeMap::new();
    let mut removed_again: BTreeMap<BindingKey, usize> = BTreeMap::new();
    for g in &st.regrants {
        let Some(key) = parse_object(&g.object) else { continue };
        if g.removed_again {
            *removed_again.entry(key.clone()).or_default() += 1;
            present.remove(&key);
        } else {
            present.insert(key, g.uid.clone());
        }
    }
    Some(Watched {
        uid: r.metadata.uid.clone(),
        app: r.spec.application.app_id.clone().unwrap_or_default(),
        removed_from,
        principals,
        present,
        removed_again,
        finished: st.completed_at.clone()?,
    })
}

/// The policies that made a removal, when every one of them still exists and says
/// `onRegrant: Remove`: a re-grant there is then removed again, planned by them only. `None`:
/// it is reported only.
pub fn removing_again(removed_by: &BTreeSet<String>, all: &[DeprovisionPolicy]) -> Option<Vec<DeprovisionPolicy>> {
    let mine: Vec<DeprovisionPolicy> = all.iter().filter(|p| removed_by.contains(&p.name_any())).cloned().collect();
    let every = !removed_by.is_empty()
        && mine.len() == removed_by.len()
        && mine.iter().all(|p| p.spec.on_regrant == RegrantRule::Remove);
    every.then_some(mine)
}

/// Whether a binding was created after `finished` (in a later second: creation times have
/// seconds only, so one created in the second the request finished is not counted as new).
fn created_after(meta: &ObjectMeta, finished: &Time) -> bool {
    let second = |t: &Time| t.0.as_second();
    meta.creation_timestamp.as_ref().is_some_and(|c| second(c) > second(finished))
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

    /// What a binding (as it is now) shows, per watched request: a binding the request removed
    /// someone from that names one of those principals again (a re-grant, also when the binding
    /// was created again under the name), or a binding created after the request finished that
    /// names a principal it removed (new access). Any other binding naming them is not reported:
    /// it may hold access the request left (the verification reports that). Each is reported once
    /// while it names them; one that stops, or is a new binding (another UID), is reported again.
    pub fn check(&mut self, view: &BindingView<'_>) -> Vec<Hit> {
        let key = key_of(view);
        let uid = view.meta.uid.clone().unwrap_or_default();
        // The watched requests this binding names a removed principal of, with the subjects.
        let mut named: BTreeMap<&str, Vec<(&k8s_openapi::api::rbac::v1::Subject, Principal)>> = BTreeMap::new();
        if view.meta.deletion_timestamp.is_none() {
            for s in view.subjects {
                let Some(p) = PrincipalRef::of_subject(s, view.namespace) else { continue };
                let p = p.to_owned();
                for request in self.by_principal.get(&p).into_iter().flatten() {
                    named.entry(request.as_str()).or_default().push((s, p.clone()));
                }
            }
        }
        let mut hits = vec![];
        for (request, w) in &mut self.requests {
            let named = named.get(request.as_str()).map(Vec::as_slice).unwrap_or_default();
            let (origin, subjects): (_, Vec<_>) = match w.removed_from.get(&key) {
                Some(r) => {
                    (RegrantOrigin::RemovedBinding, named.iter().filter(|(_, p)| r.principals.contains(p)).collect())
                }
                None if created_after(view.meta, &w.finished) => (RegrantOrigin::NewBinding, named.iter().collect()),
                None => (RegrantOrigin::NewBinding, vec![]),
            };
            if subjects.is_empty() {
                // It names none of them (any more): a later re-grant here is reported again.
                w.present.remove(&key);
                continue;
            }
            match w.present.get(&key) {
                // Reported: this binding, or (an entry without a UID) any of the name.
                Some(None) => continue,
                Some(Some(reported)) if *reported == uid => continue,
                _ => {}
            }
            w.present.insert(key.clone(), Some(uid.clone()));
            hits.push(Hit {
                request: request.clone(),
                request_uid: w.uid.clone(),
                binding: key.clone(),
                uid: uid.clone(),
                origin,
                subjects: subjects.iter().map(|(s, _)| crate::plan::subject::subject_ref(s)).collect(),
            });
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
            w.present.retain(|k, _| exists(k));
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
