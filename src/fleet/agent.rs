//! A member cluster's agent: it dials out to the hub (nothing dials in), watches the
//! `MemberRequest`s in its own mailbox namespace there, records each as a local
//! `DeprovisionRequest` (source `Fleet`, named by the `MemberRequest`'s UID, so a restart finds
//! it), which this cluster's controller plans with this cluster's own policies, and writes the
//! local record's end back into the `MemberRequest`'s status. It runs on the leading replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::{Admission, AgentSettings, LABEL_MEMBER_REQUEST, admit, local_record_name, member_phase};
use crate::crd::{
    DeprovisionRequest, MemberCluster, MemberPhase, MemberReport, MemberRequest, MemberRequestStatus, RequestSource,
};
use crate::metrics::{Metrics, PhaseLabels};

/// Annotation on a member's local record: the hub record it came from (`name uid`).
pub const ANNOTATION_HUB_RECORD: &str = "access.deprovisioner.dev/hub-record";
/// Annotation on a member's local record: the `MemberRequest`'s UID.
pub const ANNOTATION_MEMBER_REQUEST_UID: &str = "access.deprovisioner.dev/member-request-uid";

/// Why one `MemberRequest` could not be worked this time (retried).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The member's own API server.
    #[error("{context} in this cluster: {source}")]
    Local {
        /// What was being done.
        context: String,
        /// The client's error.
        source: kube::Error,
    },
    /// The hub's API server.
    #[error("{context} on the hub: {source}")]
    Hub {
        /// What was being done.
        context: String,
        /// The client's error.
        source: kube::Error,
    },
}

struct Agent {
    settings: AgentSettings,
    local: Client,
    metrics: Arc<Metrics>,
}

/// Runs the agent until `stop`: its mailbox's watch and its heartbeat.
pub async fn run(settings: AgentSettings, local: Client, metrics: Arc<Metrics>, stop: CancellationToken) {
    tracing::info!(member = %settings.member, mailbox = %settings.mailbox, "fleet agent: watching the hub's mailbox");
    let mailbox = settings.mailbox.clone();
    let requests: Api<MemberRequest> = Api::namespaced(settings.hub.clone(), &mailbox);
    let records: Api<DeprovisionRequest> = Api::all(local.clone());
    let heartbeat = heartbeat(settings.clone(), stop.clone());
    let inventory = super::report::run(settings.clone(), local.clone(), stop.clone());
    let agent = Arc::new(Agent { settings, local, metrics });
    let (reader, writer) = reflector::store();
    // Both watches back off while their API server is away (the hub down, or the link cut)
    // and resume from where they were: nothing addressed here is missed.
    let mailbox_watch =
        watcher(requests, watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
    let local_watch =
        watcher(records, watcher::Config::default().labels(LABEL_MEMBER_REQUEST)).default_backoff().touched_objects();
    let runner = Controller::for_stream(mailbox_watch, reader)
        .watches_stream(local_watch, move |r: DeprovisionRequest| {
            r.labels().get(LABEL_MEMBER_REQUEST).map(|n| ObjectRef::new(n).within(&mailbox))
        })
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reconcile, error_policy, agent)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "fleet agent loop");
            }
        });
    futures::join!(runner, heartbeat, inventory);
}

fn error_policy(mr: Arc<MemberRequest>, err: &AgentError, _: Arc<Agent>) -> Action {
    tracing::warn!(member_request = %mr.name_any(), error = %err, "fleet agent: retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Works one `MemberRequest`: refuse it, record it here, or report its local record's end.
async fn reconcile(mr: Arc<MemberRequest>, agent: Arc<Agent>) -> Result<Action, AgentError> {
    let st = mr.status.clone().unwrap_or_default();
    if st.report.phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let name = mr.name_any();
    let reported = match admit(&agent.settings.member, &mr.spec) {
        Admission::Refuse(why) => {
            tracing::warn!(
                member_request = %name, addressed_to = %mr.spec.cluster, hub_record = %mr.spec.hub_record,
                "fleet agent: refused a request addressed to another cluster"
            );
            agent.metrics.fleet_refused.inc();
            let report = MemberReport { phase: MemberPhase::Refused, message: Some(why), ..Default::default() };
            MemberRequestStatus { report, record_status: None }
        }
        Admission::Take => {
            let record = local_record(&mr, &agent).await?;
            let rst = record.status.clone().unwrap_or_default();
            let verified = rst
                .conditions
                .iter()
                .find(|c| c.type_ == crate::crd::ConditionType::Verified.as_str())
                .map(|c| c.status.clone());
            let refused = rst
                .conditions
                .iter()
                .find(|c| c.type_ == crate::crd::ConditionType::Planned.as_str() && c.status == "False")
                .map(|c| c.reason.clone());
            let report = MemberReport {
                phase: member_phase(rst.phase),
                record: Some(record.name_any()),
                record_uid: record.uid(),
                verified,
                message: rst.message.clone(),
                refused,
                updated_at: None,
            };
            // The whole record once it is finished: what evidence on the hub shows.
            let finished = rst.phase.is_terminal().then(|| Box::new(rst));
            MemberRequestStatus { report, record_status: finished }
        }
    };
    let mut was = st.clone();
    was.report.updated_at = None;
    if was != reported {
        report(&agent, &name, reported).await?;
    }
    Ok(Action::await_change())
}

/// The local record of a `MemberRequest`: found, or created (with this cluster's controller
/// planning it from this cluster's policies).
async fn local_record(mr: &MemberRequest, agent: &Agent) -> Result<DeprovisionRequest, AgentError> {
    let uid = mr.uid().unwrap_or_default();
    let name = local_record_name(&uid);
    let api: Api<DeprovisionRequest> = Api::all(agent.local.clone());
    let local = |context: &str| {
        let context = format!("{context} deprovisionrequest/{name}");
        move |source| AgentError::Local { context, source }
    };
    if let Some(found) = api.get_opt(&name).await.map_err(local("reading"))? {
        return Ok(found);
    }
    let mut spec = mr.spec.request.clone();
    spec.hub_source = Some(spec.source);
    spec.source = RequestSource::Fleet;
    let fingerprint = crate::webhook::naming::fingerprint(&spec);
    let mut labels = crate::webhook::naming::labels(&spec, &fingerprint);
    labels.insert(LABEL_MEMBER_REQUEST.into(), mr.name_any());
    let annotations = BTreeMap::from([
        (ANNOTATION_HUB_RECORD.to_string(), format!("{} {}", mr.spec.hub_record, mr.spec.hub_uid)),
        (ANNOTATION_MEMBER_REQUEST_UID.to_string(), uid.clone()),
    ]);
    let mut record = DeprovisionRequest::new(&name, spec);
    record.metadata.labels = Some(labels);
    record.metadata.annotations = Some(annotations);
    match api.create(&PostParams::default(), &record).await {
        Ok(created) => {
            tracing::info!(record = %name, hub_record = %mr.spec.hub_record, "fleet agent: recorded a request from the hub");
            Ok(created)
        }
        Err(kube::Error::Api(s)) if s.is_already_exists() => api.get(&name).await.map_err(local("reading")),
        Err(source) => Err(local("creating")(source)),
    }
}

/// Writes what this member reports into the `MemberRequest`'s status on the hub.
async fn report(agent: &Agent, name: &str, mut reported: MemberRequestStatus) -> Result<(), AgentError> {
    reported.report.updated_at =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let phase = reported.report.phase;
    let api: Api<MemberRequest> = Api::namespaced(agent.settings.hub.clone(), &agent.settings.mailbox);
    let patch = serde_json::json!({ "status": reported });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| AgentError::Hub { context: format!("reporting to memberrequest/{name}"), source })?;
    agent.metrics.fleet_reports.get_or_create(&PhaseLabels { phase: phase.as_str() }).inc();
    tracing::debug!(member_request = %name, phase = phase.as_str(), "fleet agent: reported to the hub");
    Ok(())
}

/// Writes the agent's heartbeat into its `MemberCluster`'s status every `settings.heartbeat`
/// (a failure is logged and tried again next time).
async fn heartbeat(settings: AgentSettings, stop: CancellationToken) {
    let api: Api<MemberCluster> = Api::all(settings.hub.clone());
    let mut tick = tokio::time::interval(settings.heartbeat);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let patch = serde_json::json!({ "status": {
            "lastHeartbeat": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
            "agentVersion": env!("CARGO_PKG_VERSION"),
        }});
        if let Err(e) = api.patch_status(&settings.member, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(member = %settings.member, error = %e, "fleet agent: heartbeat to the hub failed");
        }
    }
}
