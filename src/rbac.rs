//! Executes one planned binding action against the API server: exact, idempotent, and safe
//! under concurrent edits (resourceVersion on every write, retried on 409 Conflict).

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{BindingAction, BindingKind, EmptyBindingRule, Outcome};
use crate::subject::is_exactly;

/// How many times a write is retried after a 409 Conflict before giving up for this attempt.
const CONFLICT_RETRIES: usize = 8;

/// The result of one action: outcome and a message fit for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// What happened.
    pub outcome: Outcome,
    /// Details.
    pub message: String,
}

/// An error worth retrying later (API server unreachable, 5xx, throttling, endless conflicts).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

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

fn done(outcome: Outcome, message: impl Into<String>) -> Result<Done, Transient> {
    Ok(Done { outcome, message: message.into() })
}

/// Classifies an API error: permanent ones become a Failed result, the rest are retried.
fn classify(what: &str, e: kube::Error) -> Result<Done, Transient> {
    match &e {
        kube::Error::Api(s) if s.is_forbidden() || s.is_invalid() || s.code == 400 || s.code == 405 => {
            done(Outcome::Failed, format!("{what}: {} ({})", s.message, s.reason))
        }
        _ => Err(Transient(format!("{what}: {e}"))),
    }
}

/// Removes the action's subject from its binding (and deletes the binding when that emptied it
/// and the rule says so).
pub async fn remove_subject(client: &Client, a: &BindingAction) -> Result<Done, Transient> {
    match (a.target.kind, a.target.namespace.as_deref()) {
        (BindingKind::RoleBinding, Some(ns)) => run(Api::<RoleBinding>::namespaced(client.clone(), ns), a).await,
        (BindingKind::ClusterRoleBinding, None) => run(Api::<ClusterRoleBinding>::all(client.clone()), a).await,
        _ => done(Outcome::Failed, format!("{}: malformed plan entry (namespace does not fit the kind)", a.target)),
    }
}

async fn run<K: Binding>(api: Api<K>, a: &BindingAction) -> Result<Done, Transient> {
    let t = &a.target;
    for _ in 0..CONFLICT_RETRIES {
        let mut obj = match api.get_opt(&t.name).await {
            Ok(Some(o)) => o,
            Ok(None) => return done(Outcome::AlreadyAbsent, format!("{t} no longer exists")),
            Err(e) => return classify(&format!("reading {t}"), e),
        };
        if obj.uid().as_deref() != Some(t.uid.as_str()) {
            return done(
                Outcome::Failed,
                format!(
                    "{t} was deleted and recreated after the plan was made; not touched (create a new request to plan again)"
                ),
            );
        }
        let rv = obj.resource_version();
        let subjects = obj.subjects_mut().get_or_insert_with(Vec::new);
        let before = subjects.len();
        subjects.retain(|s| !is_exactly(s, &a.subject));
        if subjects.len() == before {
            return done(Outcome::AlreadyAbsent, format!("{} was not in {t}", a.subject));
        }
        let now_empty = subjects.is_empty();
        let deleting = now_empty && a.when_empty == EmptyBindingRule::Delete;
        let result = if deleting {
            let dp = DeleteParams {
                preconditions: Some(Preconditions { uid: Some(t.uid.clone()), resource_version: rv }),
                ..DeleteParams::default()
            };
            api.delete(&t.name, &dp).await.map(|_| Done {
                outcome: Outcome::Deleted,
                message: format!("removed {} and deleted {t}, its last subject", a.subject),
            })
        } else {
            // `subjects` has no merge key: replace the whole object, guarded by resourceVersion.
            let note = if now_empty { "; binding kept with no subjects" } else { "" };
            api.replace(&t.name, &PostParams::default(), &obj)
                .await
                .map(|_| Done { outcome: Outcome::Removed, message: format!("removed {} from {t}{note}", a.subject) })
        };
        match result {
            Ok(d) => return Ok(d),
            Err(kube::Error::Api(s)) if s.is_conflict() => continue,
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                return done(Outcome::AlreadyAbsent, format!("{t} was deleted by someone else"));
            }
            Err(kube::Error::Api(s)) if s.is_forbidden() && !deleting => {
                // The API server's RBAC escalation check runs on every binding update.
                return done(
                    Outcome::Failed,
                    format!(
                        "writing {t}: {} (editing a binding needs the `bind` verb on {}, or every permission it grants)",
                        s.message, t.role_ref
                    ),
                );
            }
            Err(e) => return classify(&format!("writing {t}"), e),
        }
    }
    Err(Transient(format!("{t}: still conflicting after {CONFLICT_RETRIES} attempts")))
}
