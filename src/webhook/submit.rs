//! Records the request (or attaches to the identical unfinished one), hands it to the controller
//! when one runs in this process, and waits, bounded by the deadline, until it is terminal.

use std::time::Instant;

use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use super::answer::LumosAnswer;
use super::guard::PerMinute;
use super::{WebhookState, naming, short_error};
use crate::crd::{DeprovisionRequest, DeprovisionRequestSpec, RequestSource};

/// How long before the deadline a call still waiting reads its record once more, so its answer
/// is true even if a wake-up was missed.
const LAST_LOOK: std::time::Duration = std::time::Duration::from_millis(300);

/// Records the request, then waits until it is terminal or the deadline passes.
pub(super) async fn submit_and_wait(s: &WebhookState, spec: DeprovisionRequestSpec, deadline: Instant) -> LumosAnswer {
    let api: Api<DeprovisionRequest> = Api::all(s.client.clone());
    let deadline = tokio::time::Instant::from_std(deadline);
    let submitted = match tokio::time::timeout_at(deadline, submit(&api, &s.recorded, spec)).await {
        Ok(Err(SubmitError::RateLimited(limit))) => {
            tracing::warn!(limit, "request rate cap reached; the call is answered FAILURE");
            return LumosAnswer::failure(format!(
                "Refused: more than {limit} requests were recorded in the last minute (--max-requests-per-minute); nothing was recorded"
            ));
        }
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not record the request");
            return LumosAnswer::failure(format!(
                "Could not record the request: the Kubernetes API server refused or is unavailable ({e}); nothing was changed"
            ));
        }
        Err(_) => {
            return LumosAnswer::failure(
                "The Kubernetes API server did not answer in time; the request may not have been recorded. Check `kubectl get dpr` before retrying",
            );
        }
    };
    let name = submitted.name().to_string();
    let finished = s.finished.wait(&name);
    let handed = match submitted {
        Submitted::Created(obj) => s.handoff.give(*obj),
        Submitted::Attached(_) => false,
    };
    tracing::info!(request = %name, handed, "request recorded; waiting for the result");
    match tokio::time::timeout_at(deadline - LAST_LOOK, finished).await {
        Ok(Ok(Some(status))) => LumosAnswer::for_record(&name, Some(&status)),
        Ok(Ok(None)) => LumosAnswer::failure(format!("deprovisionrequest/{name} was deleted before it finished")),
        // Not told in time: the record itself says how far it got.
        Ok(Err(_)) | Err(_) => match tokio::time::timeout_at(deadline, api.get_opt(&name)).await {
            Ok(Ok(Some(obj))) => LumosAnswer::for_record(&name, obj.status.as_ref()),
            Ok(Ok(None)) => LumosAnswer::failure(format!("deprovisionrequest/{name} was deleted before it finished")),
            _ => LumosAnswer::for_record(&name, None),
        },
    }
}

/// How a call got its record.
enum Submitted {
    /// Created now.
    Created(Box<DeprovisionRequest>),
    /// An identical unfinished call's record, by name.
    Attached(String),
}

impl Submitted {
    fn name(&self) -> &str {
        match self {
            Submitted::Created(obj) => obj.metadata.name.as_deref().unwrap_or_default(),
            Submitted::Attached(name) => name,
        }
    }
}

/// How many names past the first free-looking one a call tries before giving up: each taken
/// name is an object someone else created with a name we predicted.
const NAME_ATTEMPTS: u32 = 8;

/// Names tried one by one before the call's earlier records are listed.
const DIRECT_TRIES: u32 = 3;

/// Whether `obj` is this same Lumos call recorded by the webhook: what it would remove is the
/// same (its own spec fingerprints the same, the label agrees) and it came from the webhook.
/// An object someone else created under a predicted name (other spec, no label, a dry run) is
/// never taken for ours.
fn is_same_call(obj: &DeprovisionRequest, fingerprint: &str) -> bool {
    obj.spec.source == RequestSource::LumosWebhook
        && naming::fingerprint(&obj.spec) == fingerprint
        && obj.labels().get(naming::LABEL_FINGERPRINT).map(String::as_str) == Some(fingerprint)
}

fn is_terminal(obj: &DeprovisionRequest) -> bool {
    obj.status.as_ref().is_some_and(|s| s.phase.is_terminal())
}

/// Creates the request, or returns the name of an unfinished identical one.
/// Names are `lumos-<fingerprint>-<seq>`: two concurrent identical calls race for the same name
/// and the API server lets exactly one create it; the other reads it and attaches. A repeat of a
/// finished call takes the next free number.
async fn submit(
    api: &Api<DeprovisionRequest>,
    recorded: &PerMinute,
    spec: DeprovisionRequestSpec,
) -> Result<Submitted, SubmitError> {
    let fp = naming::fingerprint(&spec);
    if !recorded.take() {
        return Err(SubmitError::RateLimited(recorded.limit()));
    }
    let labels = naming::labels(&spec, &fp);
    // The first name is tried directly: no list on the hot path (a list's cost grows with the
    // records stored). Only a call repeated many times lists its earlier records, once.
    let mut seq = 1;
    for attempt in 0..NAME_ATTEMPTS {
        if attempt == DIRECT_TRIES {
            let lp = ListParams::default().labels(&format!("{}={fp}", naming::LABEL_FINGERPRINT));
            let existing = api.list(&lp).await?.items;
            if let Some(active) = existing.iter().find(|r| is_same_call(r, &fp) && !is_terminal(r)) {
                recorded.give_back();
                return Ok(Submitted::Attached(active.name_any()));
            }
            let last = existing.iter().filter_map(|r| naming::seq_of(&r.name_any())).max().unwrap_or(0);
            seq = seq.max(last + 1);
        }
        let name = naming::request_name(&fp, seq);
        let obj = DeprovisionRequest {
            metadata: ObjectMeta { name: Some(name.clone()), labels: Some(labels.clone()), ..Default::default() },
            spec: spec.clone(),
            status: None,
        };
        match api.create(&PostParams::default(), &obj).await {
            Ok(created) => return Ok(Submitted::Created(Box::new(created))),
            Err(kube::Error::Api(s)) if s.is_already_exists() => match api.get_opt(&name).await? {
                Some(taken) if is_same_call(&taken, &fp) && !is_terminal(&taken) => {
                    recorded.give_back();
                    return Ok(Submitted::Attached(name));
                }
                // A finished record of this same call: this call is a repeat, with the next name.
                Some(taken) if is_same_call(&taken, &fp) => seq += 1,
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
