//! Executors: carry out one planned action. Every executor has the same contract: it returns
//! [`Done`] (what happened) or an [`ExecError`] that says whether retrying later can help.
//!
//! `rbac` edits or deletes bindings; `external` deactivates or deletes accounts in other systems
//! (`scim`, `http`). Each is idempotent: access already gone is `AlreadyAbsent`, a success.

pub mod external;
pub mod rbac;

use kube::Client;

use crate::crd::{Action, ExternalDetails, Outcome};

/// What executing an action needs.
#[derive(Clone)]
pub struct Env {
    /// Kubernetes client.
    pub client: Client,
    /// The operator's own namespace: the only one external credentials are read from.
    pub namespace: String,
    /// The view, when this process keeps one: a binding it holds is written without reading it
    /// first.
    pub view: Option<std::sync::Arc<crate::view::View>>,
}

/// What a completed action did: the successful [`Outcome`]s (a failure is an [`ExecError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The subject was removed from the binding.
    Removed,
    /// The binding (emptied) or the external account was deleted.
    Deleted,
    /// The external account was deactivated.
    Deactivated,
    /// The access was already gone.
    AlreadyAbsent,
}

impl From<Effect> for Outcome {
    fn from(e: Effect) -> Outcome {
        match e {
            Effect::Removed => Outcome::Removed,
            Effect::Deleted => Outcome::Deleted,
            Effect::Deactivated => Outcome::Deactivated,
            Effect::AlreadyAbsent => Outcome::AlreadyAbsent,
        }
    }
}

/// What an executed action did.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// What happened.
    pub outcome: Effect,
    /// Details fit to show a person.
    pub message: String,
    /// For external actions: what the other system replied.
    pub external: Option<ExternalDetails>,
    /// For binding actions: the binding's subject names before and after (see
    /// `ActionResult::subjects_before`).
    pub subjects: Option<SubjectsChange>,
}

/// A binding's subject names (`Kind:name`) before and after an action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubjectsChange {
    /// As read before the action.
    pub before: Vec<String>,
    /// Once the action was done (empty when the binding was deleted or did not exist).
    pub after: Vec<String>,
}

impl Done {
    /// A result with no external details.
    pub fn new(outcome: Effect, message: impl Into<String>) -> Done {
        Done { outcome, message: message.into(), external: None, subjects: None }
    }

    /// The result with the binding's subject names before and after.
    pub fn with_subjects(mut self, before: Vec<String>, after: Vec<String>) -> Done {
        self.subjects = Some(SubjectsChange { before, after });
        self
    }
}

/// Why an action did not complete. [`ExecError::is_transient`] says whether retrying later can
/// help (the controller retries until `--give-up-after`); every other error is recorded as a
/// `Failed` result with [`ExecError`]'s message.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The API server is unreachable, throttling or failing: retry later.
    #[error("{context}: {source}")]
    Unavailable {
        /// What was being done.
        context: String,
        /// The client's error.
        source: kube::Error,
    },
    /// A write kept conflicting with other writers: retry later.
    #[error("{context}: still conflicting after {attempts} attempts")]
    Conflicting {
        /// What was being written.
        context: String,
        /// Attempts made.
        attempts: usize,
    },
    /// The API server refused the action (forbidden, invalid).
    #[error("{context}: {}{hint}", api_message(source))]
    Refused {
        /// What was being done.
        context: String,
        /// What would let it pass, e.g. the `bind` verb; may be empty.
        hint: String,
        /// The API server's reply.
        source: kube::Error,
    },
    /// The cluster no longer matches the plan (e.g. the binding was deleted and recreated).
    #[error("{0}")]
    Stale(String),
    /// An external system did not do what was asked. The message names the system and is
    /// already free of credentials.
    #[error("{message}")]
    External {
        /// What went wrong, credentials redacted.
        message: String,
        /// What the system replied so far.
        details: ExternalDetails,
        /// The underlying error, when there is one.
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// `message (Reason)` of an API error, or the error itself.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.reason),
        other => other.to_string(),
    }
}

impl ExecError {
    /// Classifies an API error: forbidden, invalid and bad requests are refusals (retrying
    /// cannot help); everything else may pass later.
    pub fn api(context: impl Into<String>, source: kube::Error) -> ExecError {
        let context = context.into();
        match &source {
            kube::Error::Api(s) if s.is_forbidden() || s.is_invalid() || s.code == 400 || s.code == 405 => {
                ExecError::Refused { context, hint: String::new(), source }
            }
            _ => ExecError::Unavailable { context, source },
        }
    }

    /// Whether retrying later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, ExecError::Unavailable { .. } | ExecError::Conflicting { .. })
    }

    /// What an external system replied before it failed.
    pub fn external_details(&self) -> Option<&ExternalDetails> {
        match self {
            ExecError::External { details, .. } => Some(details),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ExecError::Unavailable { .. } => "unavailable",
            ExecError::Conflicting { .. } => "conflicting",
            ExecError::Refused { .. } => "refused",
            ExecError::Stale(_) => "stale",
            ExecError::External { .. } => "external",
        }
    }
}

/// Executes one action. `key` identifies this action of this request (`<request uid>-<id>`):
/// external calls send it as `Idempotency-Key`. Runs in an `action` span (its kind and key).
#[tracing::instrument(name = "action", skip_all, fields(kind = action.kind().as_str(), key = %key))]
pub async fn execute(env: &Env, action: &Action, key: &str) -> Result<Done, ExecError> {
    match action {
        Action::RemoveBindingSubject(b) => rbac::remove_subject(&env.client, env.view.as_deref(), b).await,
        Action::ConfirmAbsent(c) => Ok(Done::new(
            Effect::AlreadyAbsent,
            format!("{} holds none of the {} binding(s) the policy selects", c.subject, c.bindings_checked),
        )),
        Action::ScimDeprovision(call) => external::scim::deprovision(env, call, key).await,
        Action::HttpCall(call) => external::http::call(env, call, key).await,
    }
}
