//! Executes one planned binding action against the API server: exact, idempotent, and safe
//! under concurrent edits (resourceVersion on every write, retried on 409 Conflict).
//!
//! When the view holds the binding (its watch live), the first attempt writes from its copy with
//! no GET: a JSON patch whose first operations test the binding's uid and resourceVersion, so it
//! applies only to exactly the copy the view holds; when that copy is stale the patch is
//! refused as a whole and the binding is read and written as usual.

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use std::sync::Arc;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Done, Effect, ExecError};
use crate::crd::{BindingAction, BindingRef, BindingScope, EmptyBindingRule, subject_names};
use crate::plan::manager::OWN_FIELD_MANAGER;
use crate::plan::subject::is_exactly;
use crate::view::{Need, Reader, Since, View};

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
/// and the rule says so), first from the view's copy when it holds one (no barrier: the write
/// is refused unless that copy is still the stored binding).
pub async fn remove_subject(client: &Client, view: Option<&View>, a: &BindingAction) -> Result<Done, ExecError> {
    let cluster = matches!(a.binding.scope, BindingScope::Cluster);
    let held = match view {
        Some(v) => v.read(Since::Held, Need::bindings(!cluster, cluster), Reader::Exec).await.ok(),
        None => None,
    };
    match &a.binding.scope {
        BindingScope::Namespaced(ns) => {
            let known = held.and_then(|s| s.role_binding(ns, &a.binding.name));
            run(Api::<RoleBinding>::namespaced(client.clone(), ns), a, known).await
        }
        BindingScope::Cluster => {
            let known = held.and_then(|s| s.cluster_role_binding(&a.binding.name));
            run(Api::<ClusterRoleBinding>::all(client.clone()), a, known).await
        }
    }
}

async fn run<K: Binding>(api: Api<K>, a: &BindingAction, known: Option<Arc<K>>) -> Result<Done, ExecError> {
    let b = &a.binding;
    if let Some(known) = known
        && let Some(done) = write_from_index(&api, a, (*known).clone()).await?
    {
        return Ok(done);
    }
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

/// What dropping the action's subject from a binding's subjects does to them.
struct Edit {
    names_before: Vec<String>,
    names_after: Vec<String>,
    /// The binding goes (it is emptied and the rule says `Delete`).
    deleting: bool,
    /// What the result says when the write succeeds.
    message: String,
}

/// Drops the subject from `subjects`; `None` when it is not there.
fn edit(a: &BindingAction, subjects: &mut Vec<Subject>) -> Option<Edit> {
    let b = &a.binding;
    let before = subjects.len();
    let names_before = names(subjects);
    subjects.retain(|s| !is_exactly(s, &a.subject));
    if subjects.len() == before {
        return None;
    }
    let now_empty = subjects.is_empty();
    let deleting = now_empty && a.when_empty == EmptyBindingRule::Delete;
    let message = match (deleting, now_empty) {
        (true, _) => format!("removed {} and deleted {b}, its last subject", a.subject),
        (false, true) => format!("removed {} from {b}; binding kept with no subjects", a.subject),
        (false, false) => format!("removed {} from {b}", a.subject),
    };
    // A deleted binding has no subjects after.
    let names_after = if now_empty { vec![] } else { names(subjects) };
    Some(Edit { names_before, names_after, deleting, message })
}

/// The deletion of an emptied binding, only if it is still exactly the copy read.
fn guarded_delete(uid: &str, resource_version: Option<String>) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version }),
        ..DeleteParams::default()
    }
}

/// The first attempt, from the index's copy (no GET): a JSON patch testing uid and
/// resourceVersion before replacing `subjects` (or a delete with those preconditions). `None`
/// when the copy is not the stored binding (changed, deleted, recreated) or does not name the
/// subject: the caller reads the binding and decides from what it reads.
async fn write_from_index<K: Binding>(
    api: &Api<K>,
    a: &BindingAction,
    mut known: K,
) -> Result<Option<Done>, ExecError> {
    let b = &a.binding;
    let Some(rv) = known.resource_version().filter(|_| known.uid().as_deref() == Some(b.uid.as_str())) else {
        return Ok(None);
    };
    let subjects = known.subjects_mut().get_or_insert_with(Vec::new);
    let Some(e) = edit(a, subjects) else { return Ok(None) };
    let written = if e.deleting {
        api.delete(&b.name, &guarded_delete(&b.uid, Some(rv))).await.map(|_| Effect::Deleted)
    } else {
        let ops = serde_json::json!([
            {"op": "test", "path": "/metadata/uid", "value": b.uid},
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "replace", "path": "/subjects", "value": subjects},
        ]);
        let patch: json_patch::Patch = serde_json::from_value(ops).map_err(|e| ExecError::Stale(e.to_string()))?;
        let pp = PatchParams { field_manager: Some(OWN_FIELD_MANAGER.into()), ..Default::default() };
        api.patch(&b.name, &pp, &Patch::<()>::Json(patch)).await.map(|_| Effect::Removed)
    };
    match written {
        Ok(effect) => Ok(Some(Done::new(effect, e.message).with_subjects(e.names_before, e.names_after))),
        // A failed test (422), a changed resourceVersion (409) or a binding gone: read it instead.
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() || s.code == 422 => {
            tracing::debug!(binding = %b, "the index's copy is not the stored binding; reading it");
            Ok(None)
        }
        // Refused (RBAC without `patch`, from an older install, or the escalation check): the
        // usual read and write says exactly what is missing.
        Err(kube::Error::Api(s)) if s.is_forbidden() => Ok(None),
        Err(err) => Err(write_error(b, e.deleting, err)),
    }
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
    let Some(e) = edit(a, subjects) else {
        let names_before = names(subjects);
        let done = Done::new(Effect::AlreadyAbsent, format!("{} was not in {b}", a.subject));
        return Ok(done.with_subjects(names_before.clone(), names_before));
    };
    let Edit { names_before, names_after, deleting, message: msg } = e;
    let written = if deleting {
        api.delete(&b.name, &guarded_delete(&b.uid, rv)).await.map(|_| Done::new(Effect::Deleted, msg))
    } else {
        // `subjects` has no merge key: replace the whole object, guarded by resourceVersion.
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
        Err(err) => Err(write_error(b, deleting, err)),
    }
}

/// What a refused write means; the API server's RBAC escalation check runs on every binding
/// update, so a refusal names the `bind` permission.
fn write_error(b: &BindingRef, deleting: bool, e: kube::Error) -> ExecError {
    match e {
        source @ kube::Error::Api(_) if !deleting && is_forbidden(&source) => ExecError::Refused {
            context: format!("writing {b}"),
            hint: format!(
                " (editing a binding needs the `bind` verb on {}, or every permission it grants)",
                b.role_ref
            ),
            source,
        },
        e => ExecError::api(format!("writing {b}"), e),
    }
}

/// The subjects' names as results record them (`Kind:name`, `ServiceAccount:ns/name`).
fn names(subjects: &[Subject]) -> Vec<String> {
    subject_names(subjects.iter().map(|s| (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref())))
}

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_forbidden())
}
