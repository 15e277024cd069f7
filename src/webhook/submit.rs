//! Records the request (or attaches to the identical unfinished one) and waits, bounded by the
//! deadline, until it is terminal.

use std::time::Instant;

use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, ResourceExt};

use super::answer::LumosAnswer;
use super::{naming, short_error};
use crate::crd::{DeprovisionRequest, DeprovisionRequestSpec};

/// Records the request, then waits until it is terminal or the deadline passes.
pub(super) async fn submit_and_wait(client: &Client, spec: DeprovisionRequestSpec, deadline: Instant) -> LumosAnswer {
    let api: Api<DeprovisionRequest> = Api::all(client.clone());
    let deadline = tokio::time::Instant::from_std(deadline);
    let (name, attached) = match tokio::time::timeout_at(deadline, submit(&api, spec)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not record the request");
            return LumosAnswer::failure(format!(
                "Could not record the request: the Kubernetes API server refused or is unavailable ({}); nothing was changed",
                short_error(&e)
            ));
        }
        Err(_) => {
            return LumosAnswer::failure(
                "The Kubernetes API server did not answer in time; the request may not have been recorded. Check `kubectl get dpr` before retrying",
            );
        }
    };
    tracing::info!(request = %name, attached, "request recorded; waiting for the result");
    let terminal =
        |o: Option<&DeprovisionRequest>| o.and_then(|o| o.status.as_ref()).is_some_and(|s| s.phase.is_terminal());
    match tokio::time::timeout_at(deadline, await_condition(api, &name, terminal)).await {
        Ok(Ok(Some(obj))) => LumosAnswer::for_record(&name, obj.status.as_ref()),
        Ok(Ok(None)) => LumosAnswer::failure(format!("deprovisionrequest/{name} was deleted before it finished")),
        Ok(Err(e)) => {
            tracing::warn!(request = %name, error = %e, "lost the watch on the request");
            LumosAnswer::for_record(&name, None)
        }
        // Recorded but unfinished: the controller finishes it; the record tells the outcome.
        Err(_) => LumosAnswer::for_record(&name, None),
    }
}

/// Creates the request, or returns the name of an unfinished identical one (`attached = true`).
/// Names are `lumos-<fingerprint>-<seq>`: two concurrent identical calls race for the same name
/// and the API server lets exactly one create it.
async fn submit(api: &Api<DeprovisionRequest>, spec: DeprovisionRequestSpec) -> Result<(String, bool), kube::Error> {
    let fp = naming::fingerprint(&spec);
    let lp = ListParams::default().labels(&format!("{}={fp}", naming::LABEL_FINGERPRINT));
    let existing = api.list(&lp).await?.items;
    if let Some(active) = existing.iter().find(|r| !r.status.as_ref().is_some_and(|s| s.phase.is_terminal())) {
        return Ok((active.name_any(), true));
    }
    let seq = existing.iter().filter_map(|r| naming::seq_of(&r.name_any())).max().map_or(1, |m| m + 1);
    let name = naming::request_name(&fp, seq);
    let obj = DeprovisionRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(naming::labels(&spec, &fp)),
            ..Default::default()
        },
        spec,
        status: None,
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok((name, false)),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok((name, true)),
        Err(e) => Err(e),
    }
}
