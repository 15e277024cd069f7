//! Records the request (or attaches to the identical unfinished one), hands it to the controller
//! when one runs in this process, and waits, bounded by the deadline, until it is terminal.

use std::time::Instant;

use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use super::answer::LumosAnswer;
use super::guard::PerMinute;
use super::wait::{self, Answer, Read};
use super::{WebhookState, naming, short_error};
use crate::crd::{DeprovisionRequest, DeprovisionRequestSpec, DeprovisionRequestStatus, RequestSource};
use crate::view::Need;

/// Records the request, then waits until it is terminal or the deadline passes; the Lumos answer.
pub(super) async fn submit_and_wait(s: &WebhookState, spec: DeprovisionRequestSpec, arrived: Instant) -> LumosAnswer {
    match record_and_wait(s, spec, arrived).await {
        Ok(Waited::Record { name, status }) => LumosAnswer::for_record(&name, status.as_deref()),
        Ok(Waited::Deleted(name)) => {
            LumosAnswer::failure(format!("deprovisionrequest/{name} was deleted before it finished"))
        }
        Err(e) => LumosAnswer::failure(e.to_string()),
    }
}

/// How waiting for a record ended.
#[derive(Debug)]
pub enum Waited {
    /// The record as last seen: terminal, or still running when the deadline passed.
    Record {
        /// Its name.
        name: String,
        /// Its status (`None`: not started).
        status: Option<Box<DeprovisionRequestStatus>>,
    },
    /// The record was deleted before it finished.
    Deleted(String),
}

/// Why a call got no record.
#[derive(Debug, thiserror::Error)]
pub enum NotRecorded {
    /// The per-minute cap on recorded requests is reached.
    #[error(
        "Refused: more than {0} requests were recorded in the last minute (--max-requests-per-minute); nothing was recorded"
    )]
    RateLimited(u32),
    /// The API server refused or is unreachable.
    #[error(
        "Could not record the request: the Kubernetes API server refused or is unavailable ({0}); nothing was changed"
    )]
    Refused(String),
    /// The API server did not answer in time.
    #[error(
        "The Kubernetes API server did not answer in time; the request may not have been recorded. Check `kubectl get dpr` before retrying"
    )]
    TimedOut,
}

/// Records the request (or attaches to the identical unfinished one of the same source), hands it
/// to this process's controller, and waits until it is terminal, at most until the deadline
/// counted from when the call `arrived`.
pub async fn record_and_wait(
    s: &WebhookState,
    spec: DeprovisionRequestSpec,
    arrived: Instant,
) -> Result<Waited, NotRecorded> {
    let api: Api<DeprovisionRequest> = Api::all(s.client.clone());
    let deadline = tokio::time::Instant::from_std(arrived + s.deadline);
    start_barrier(s, &spec, arrived);
    // The create waits for its turn in the client's API budget, first among its priorities.
    let submitted = recorded(tokio::time::timeout_at(deadline, submit(&api, &s.recorded, spec)).await)?;
    let (name, uid) = (submitted.name().to_string(), submitted.uid().to_string());
    tracing::Span::current().record("request", name.as_str()).record("uid", uid.as_str());
    let awaited = s.finished.wait(&uid);
    let handed = match submitted {
        Submitted::Created(obj) => s.handoff.give(*obj, arrived),
        Submitted::Attached { .. } => false,
    };
    if handed {
        s.finished.worked_here(&uid);
    }
    tracing::info!(request = %name, handed, "request recorded; waiting for the result");
    let read = || wait::read(&api, &name, &uid, deadline);
    Ok(match wait::wait(&s.finished, &uid, awaited, deadline, read).await {
        Answer::Ended(Some(status)) => Waited::Record { name, status: Some(status) },
        Answer::Ended(None) => Waited::Deleted(name),
        Answer::InProgress(status) => {
            s.metrics.webhook_deadline_reached.inc();
            Waited::Record { name, status }
        }
    })
}

/// When this replica's controller will plan the request, starts the binding index's barrier
/// write now, alongside the record's create: the plan needs a barrier sent after the call
/// arrived, and finds this one in flight or passed instead of sending its own afterwards. Only
/// the kinds of binding the policies in memory select; a plan that needs more writes them.
fn start_barrier(s: &WebhookState, spec: &DeprovisionRequestSpec, arrived: Instant) {
    let Some(view) = &s.view else { return };
    if !s.handoff.is_open() {
        return;
    }
    let (view, spec) = (view.clone(), spec.clone());
    tokio::spawn(async move {
        // The kinds the policies in memory select (none when they are not live: a call never
        // lists them here).
        let need = |policies: &[crate::crd::DeprovisionPolicy]| {
            let matched = crate::plan::matching_policies(&spec, policies);
            let Ok(scope) = crate::plan::scope(&spec, &matched, &[]) else { return Need::default() };
            let role_bindings = !scope.namespaces.is_empty() || crate::plan::selects_namespaces_by_label(&matched);
            Need::bindings(role_bindings, scope.cluster_role_bindings)
        };
        if let Err(e) = view.prepare(arrived, need).await {
            tracing::debug!(error = %e, "the barrier started with the call did not pass; the plan sends its own");
        }
    });
}

/// How often [`record_and_poll`] reads the record.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Records the request as [`record_and_wait`] does, from a process that runs no controller (the
/// connector's CLI): the operator's controller does the work, and the record is read until it is
/// terminal or the deadline passes.
pub async fn record_and_poll(
    client: &kube::Client,
    spec: DeprovisionRequestSpec,
    deadline: Instant,
) -> Result<Waited, NotRecorded> {
    let api: Api<DeprovisionRequest> = Api::all(client.clone());
    let deadline = tokio::time::Instant::from_std(deadline);
    let unlimited = PerMinute::new(u32::MAX);
    let submitted = submit(&api, &unlimited, spec);
    let submitted = recorded(tokio::time::timeout_at(deadline, submitted).await)?;
    let (name, uid) = (submitted.name().to_string(), submitted.uid().to_string());
    tracing::info!(request = %name, "request recorded; waiting for the operator to finish it");
    let mut last = None;
    loop {
        match wait::read(&api, &name, &uid, deadline).await {
            Read::Ended(Some(status)) => return Ok(Waited::Record { name, status: Some(status) }),
            Read::Ended(None) => return Ok(Waited::Deleted(name)),
            Read::Unfinished(status) => last = status,
            Read::Failed => {}
        }
        if tokio::time::timeout_at(deadline, tokio::time::sleep(POLL_EVERY)).await.is_err() {
            return Ok(Waited::Record { name, status: last });
        }
    }
}

/// The outcome of recording, bounded by the deadline.
fn recorded(r: Result<Result<Submitted, SubmitError>, tokio::time::error::Elapsed>) -> Result<Submitted, NotRecorded> {
    match r {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(SubmitError::RateLimited(limit))) => {
            tracing::warn!(limit, "request rate cap reached; the call is answered FAILURE");
            Err(NotRecorded::RateLimited(limit))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not record the request");
            Err(NotRecorded::Refused(e.to_string()))
        }
        Err(_) => Err(NotRecorded::TimedOut),
    }
}

/// How a call got its record.
enum Submitted {
    /// Created now.
    Created(Box<DeprovisionRequest>),
    /// An identical unfinished call's record.
    Attached {
        /// Its name.
        name: String,
        /// Its UID: the request this call waits for, even if its name is later reused.
        uid: String,
    },
}

impl Submitted {
    fn attached(obj: &DeprovisionRequest) -> Submitted {
        Submitted::Attached { name: obj.name_any(), uid: obj.uid().unwrap_or_default() }
    }

    fn name(&self) -> &str {
        match self {
            Submitted::Created(obj) => obj.metadata.name.as_deref().unwrap_or_default(),
            Submitted::Attached { name, .. } => name,
        }
    }

    fn uid(&self) -> &str {
        match self {
            Submitted::Created(obj) => obj.metadata.uid.as_deref().unwrap_or_default(),
            Submitted::Attached { uid, .. } => uid,
        }
    }
}

/// How many names past the first free-looking one a call tries before giving up: each taken
/// name is an object someone else created with a name we predicted.
const NAME_ATTEMPTS: u32 = 8;

/// Names tried one by one before the call's earlier records are listed.
const DIRECT_TRIES: u32 = 3;

/// Whether `obj` is this same Lumos call recorded by the webhook (or the connector): what it
/// would remove is the same (its own spec fingerprints the same, the label agrees) and it came
/// from the same source. An object someone else created under a predicted name (other spec, no
/// label, a dry run, a manual request) is never taken for ours.
fn is_same_call(obj: &DeprovisionRequest, fingerprint: &str, source: RequestSource) -> bool {
    obj.spec.source == source
        && matches!(source, RequestSource::LumosWebhook | RequestSource::LumosConnector)
        && naming::fingerprint(&obj.spec) == fingerprint
        && obj.labels().get(naming::LABEL_FINGERPRINT).map(String::as_str) == Some(fingerprint)
}

fn is_terminal(obj: &DeprovisionRequest) -> bool {
    obj.status.as_ref().is_some_and(|s| s.phase.is_terminal())
}

/// Creates the request, or returns the name of an unfinished identical one.
/// Names are `lumos-<fingerprint>-<seq>`: two concurrent identical calls race for the same name
/// and the API server lets exactly one create it; the other reads it and attaches. A repeat of a
/// finished call takes the next free number. A record created here carries the call's trace id
/// ([`crate::trace::ANNOTATION`]).
#[tracing::instrument(name = "record", skip_all)]
async fn submit(
    api: &Api<DeprovisionRequest>,
    recorded: &PerMinute,
    spec: DeprovisionRequestSpec,
) -> Result<Submitted, SubmitError> {
    let fp = naming::fingerprint(&spec);
    let source = spec.source;
    if !recorded.take() {
        return Err(SubmitError::RateLimited(recorded.limit()));
    }
    let labels = naming::labels(&spec, &fp);
    let annotations =
        std::collections::BTreeMap::from([(crate::trace::ANNOTATION.to_string(), crate::trace::current())]);
    // The first name is tried directly: no list on the hot path (a list's cost grows with the
    // records stored). Only a call repeated many times lists its earlier records, once.
    let mut seq = 1;
    for attempt in 0..NAME_ATTEMPTS {
        if attempt == DIRECT_TRIES {
            let lp = ListParams::default().labels(&format!("{}={fp}", naming::LABEL_FINGERPRINT));
            let existing = api.list(&lp).await?.items;
            if let Some(active) = existing.iter().find(|r| is_same_call(r, &fp, source) && !is_terminal(r)) {
                recorded.give_back();
                return Ok(Submitted::attached(active));
            }
            let last = existing.iter().filter_map(|r| naming::seq_of(&r.name_any())).max().unwrap_or(0);
            seq = seq.max(last + 1);
        }
        let name = naming::request_name(&fp, seq);
        let obj = DeprovisionRequest {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels.clone()),
                annotations: Some(annotations.clone()),
                ..Default::default()
            },
            spec: spec.clone(),
            status: None,
        };
        match api.create(&PostParams::default(), &obj).await {
            Ok(created) => return Ok(Submitted::Created(Box::new(created))),
            Err(kube::Error::Api(s)) if s.is_already_exists() => match api.get_opt(&name).await? {
                Some(taken) if is_same_call(&taken, &fp, source) && !is_terminal(&taken) => {
                    recorded.give_back();
                    return Ok(Submitted::attached(&taken));
                }
                // A finished record of this same call: this call is a repeat, with the next name.
                Some(taken) if is_same_call(&taken, &fp, source) => seq += 1,
                Some(_) => {
                    tracing::warn!(request = %name, "the predicted name is taken by another object; trying the next");
                    seq += 1;
                }
                // Deleted in between: try the same name again.
                None => {}
            },
            Err(e) => return Err(e.into()),
        }
    }
    Err(SubmitError::NamesTaken)
}

/// Why a call could not be recorded.
#[derive(Debug, thiserror::Error)]
enum SubmitError {
    /// The API server refused or is unreachable.
    #[error("{}", short_error(.0))]
    Api(#[from] kube::Error),
    /// The per-minute cap on recorded requests is reached.
    #[error("more than {0} requests a minute")]
    RateLimited(u32),
    /// Every name this call could take is held by another object.
    #[error("{NAME_ATTEMPTS} names for this call are taken by objects that are not this call")]
    NamesTaken,
}
