//! Executes one planned binding action against the API server: exact, idempotent, and safe
//! under concurrent edits (resourceVersion on every write, retried on 409 Conflict).

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Done, Effect, ExecError};
use crate::crd::{BindingAction, BindingScope, EmptyBindingRule, subject_names};
use crate::plan::manager::OWN_FIELD_MANAGER;
use crate::plan::subject::is_exactly;

/// How many times a write is retried after a 409 Conflict before giving up for this attempt.
const CONFLICT_RETRIES: usize = 8;

/// The two binding types, seen through what this module needs.
trait Binding: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug {
    fn subjects_mut(&mut self) -> &mut Option<Vec<Subject>>;
}
impl Binding for RoleBinding {
    fn subjects_mut(&mut self) -> &mut Option<Vec<Subject>> {
        &mut self.subjects
    }
}
impl Binding for ClusterRoleBinding {
    fn subjects_mut(&mut self) -> &mut Option<Vec<Subject>> {
        &mut self.subjects
    }
}

/// Removes the action's subject from its binding (and deletes the binding when that emptied it
/// and the rule says so).
pub async fn remove_subject(client: &Client, a: &BindingAction) -> Result<Done, ExecError> {
    match &a.binding.scope {
        BindingScope::Namespaced(ns) => run(Api::<RoleBinding>::namespaced(client.clone(), ns), a).await,
        BindingScope::Cluster => run(Api::<ClusterRoleBinding>::all(client.clone()), a).await,
    }
}

async fn run<K: Binding>(api: Api<K>, a: &BindingAction) -> Result<Done, ExecError> {
    let b = &a.binding;
    for _ in 0..CONFLICT_RETRIES {
        let obj = match api.get_opt(&b.name).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                let done = Done::new(Effect::AlreadyAbsent, format!("{b} no longer exists"));
                return Ok(done.with_subjects(vec![], vec![]));
            }
            Err(e) => return Err(ExecError::api(format!("reading {b}"), e)),
        };
        match write_without_subject(&api, a, obj).await {
            Err(ExecError::Unavailable { source: kube::Error::Api(s), .. }) if s.is_conflict() => continue,
            other => return other,
        }
    }
    Err(ExecError::Conflicting { context: b.to_string(), attempts: CONFLICT_RETRIES })
}

/// One attempt: drop the subject from the binding as read, then replace it (guarded by its
/// resourceVersion) or delete it (guarded by UID and resourceVersion) when that emptied it.
async fn write_without_subject<K: Binding>(api: &Api<K>, a: &BindingAction, mut obj: K) -> Result<Done, ExecError> {
    let b = &a.binding;
    if obj.uid().as_deref() != Some(b.uid.as_str()) {
        return Err(ExecError::Stale(format!(
            "{b} was deleted and recreated after the plan was made; not touched (create a new request to plan again)"
        )));
    }
    let rv = obj.resource_version();
    let subjects = obj.subjects_mut().get_or_insert_with(Vec::new);
    let before = subjects.len();
    let names_before = names(subjects);
    subjects.retain(|s| !is_exactly(s, &a.subject));
    if subjects.len() == before {
        let done = Done::new(Effect::AlreadyAbsent, format!("{} was not in {b}", a.subject));
        return Ok(done.with_subjects(names_before.clone(), names_before));
    }
    let now_empty = subjects.is_empty();
    // A deleted binding has no subjects after.
    let names_after = if now_empty { vec![] } else { names(subjects) };
    let deleting = now_empty && a.when_empty == EmptyBindingRule::Delete;
    let written = if deleting {
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(b.uid.clone()), resource_version: rv }),
            ..DeleteParams::default()
        };
        let msg = format!("removed {} and deleted {b}, its last subject", a.subject);
        api.delete(&b.name, &dp).await.map(|_| Done::new(Effect::Deleted, msg))
    } else {
        // `subjects` has no merge key: replace the whole object, guarded by resourceVersion.
        let note = if now_empty { "; binding kept with no subjects" } else { "" };
        let msg = format!("removed {} from {b}{note}", a.subject);
        let pp = PostParams { field_manager: Some(OWN_FIELD_MANAGER.into()), ..Default::default() };
        api.replace(&b.name, &pp, &obj).await.map(|_| Done::new(Effect::Removed, msg))
    };
    match written {
        Ok(d) => Ok(d.with_subjects(names_before, names_after)),
        // Nothing changed by us, and the binding has no subjects now.
        Err(kube::Error::Api(s)) if s.is_not_found() => {
            Ok(Done::new(Effect::AlreadyAbsent, format!("{b} was deleted by someone else"))
                .with_subjects(vec![], vec![]))
        }
        // The API server's RBAC escalation check runs on every binding update.
        Err(source @ kube::Error::Api(_)) if !deleting && is_forbidden(&source) => Err(ExecError::Refused {
            context: format!("writing {b}"),
            hint: format!(
                " (editing a binding needs the `bind` verb on {}, or every permission it grants)",
                b.role_ref
            ),
            source,
        }),
        Err(e) => Err(ExecError::api(format!("writing {b}"), e)),
    }
}

/// The subjects' names as results record them (`Kind:name`, `ServiceAccount:ns/name`).
fn names(subjects: &[Subject]) -> Vec<String> {
    subject_names(subjects.iter().map(|s| (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref())))
}

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_forbidden())
}
