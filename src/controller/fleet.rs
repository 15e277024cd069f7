//! On a fleet hub (`--fleet-hub`): a request whose application a `ClusterSet` names is handed to
//! the member clusters it selects instead of being planned here. The members are chosen once and
//! written to the record before anything is handed over (as a plan is); then one `MemberRequest`
//! per member is created in its mailbox namespace, named by the record's UID (a restart finds
//! it), and each member's answer is copied into the record until all have answered.

use std::time::Duration;

use kube::api::{ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::Error;
use super::record::{EventAction, Record, now};
use crate::crd::{
    ClusterSet, ConditionType, DeprovisionRequestStatus, MemberCluster, MemberPhase, MemberRecord, MemberReport,
    MemberRequest, MemberRequestSpec, Phase, Reason, set_condition,
};
use crate::exec::ExecError;
use crate::fleet::{self, Member, Set};

/// How often a record waiting for a member is looked at again without a change of its
/// `MemberRequest` (the hub's watch of them wakes it at once otherwise).
const RECHECK: Duration = Duration::from_secs(30);

/// Works a request as a fleet request if it is one: `None` when it is not (it is planned here).
pub(super) async fn reconcile(rec: &mut Record, mut st: DeprovisionRequestStatus) -> Result<Option<Action>, Error> {
    if st.phase.is_terminal() {
        return Ok(None);
    }
    if st.members.is_empty() {
        if st.phase != Phase::Pending {
            return Ok(None);
        }
        let selection = match select(rec).await {
            Ok(s) => s,
            Err(e) => return rec.transient(st, e).await.map(Some),
        };
        if selection.sets.is_empty() {
            return Ok(None);
        }
        return hand_over(rec, st, selection).await.map(Some);
    }
    let uid = rec.obj.uid().unwrap_or_default();
    let before = st.clone();
    let timeout = rec.ctx.settings.fleet_member_timeout;
    let called = rec.obj.metadata.creation_timestamp.as_ref().map_or_else(k8s_openapi::jiff::Timestamp::now, |t| t.0);
    let left = fleet::wait_left(called, k8s_openapi::jiff::Timestamp::now(), timeout);
    for m in st.members.iter_mut() {
        if m.reported.phase.is_terminal() {
            continue;
        }
        if left.is_none() {
            match withdraw(rec, m).await {
                Ok(()) => m.reported = fleet::withdrawn(&m.reported, &humantime::format_duration(timeout).to_string()),
                Err(e) => return rec.transient(st, e).await.map(Some),
            }
            continue;
        }
        match collect(rec, m, &uid).await {
            Ok(reported) => m.reported = reported,
            Err(e) => return rec.transient(st, e).await.map(Some),
        }
    }
    let (phase, msg) = fleet::hub_outcome(&st.members, rec.obj.spec.dry_run);
    st.message = Some(crate::text::clip(&msg));
    if phase.is_terminal() {
        st.phase = phase;
        st.completed_at = Some(now());
        let generation = rec.obj.metadata.generation;
        let reason = if phase == Phase::Failed { Reason::MembersFailed } else { Reason::Succeeded };
        set_condition(&mut st.conditions, ConditionType::Complete, true, reason, &msg, generation);
        rec.write(st).await?;
        let type_ = if phase == Phase::Failed { EventType::Warning } else { EventType::Normal };
        rec.event(type_, reason, EventAction::Complete, msg, None);
        return Ok(Some(Action::await_change()));
    }
    if st != before {
        rec.write(st).await?;
    }
    // Looked at again when a member answers (the watch), every RECHECK, and when the wait ends.
    Ok(Some(Action::requeue(left.map_or(RECHECK, |l| l.min(RECHECK) + Duration::from_millis(100)))))
}

/// Withdraws a member's `MemberRequest` from its mailbox (gone already is fine).
async fn withdraw(rec: &Record, m: &MemberRecord) -> Result<(), ExecError> {
    let api: Api<MemberRequest> = Api::namespaced(rec.ctx.client.clone(), &m.mailbox);
    match api.delete(&m.member_request, &Default::default()).await {
        Ok(_) => {
            tracing::warn!(cluster = %m.cluster, member_request = %m.member_request,
                "fleet hub: a member did not finish in time; its request was withdrawn");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(source) => Err(ExecError::Unavailable {
            context: format!(
                "withdrawing the request from cluster {} (MemberRequest {}/{})",
                m.cluster, m.mailbox, m.member_request
            ),
            source,
        }),
    }
}

/// A request the connector addressed to a member cluster reaching an operator that is not a
/// fleet hub: it ends Failed, nothing changed (planned here, it would name this cluster's
/// namespace of the same name).
pub(super) async fn refuse_addressed(rec: &mut Record, st: DeprovisionRequestStatus) -> Result<Option<Action>, Error> {
    let Some(cluster) = fleet::addressed_to(&rec.obj.spec) else { return Ok(None) };
    if st.phase != Phase::Pending {
        return Ok(None);
    }
    let msg = format!(
        "addressed to member cluster {cluster}, and this operator is not a fleet hub (--fleet-hub): nothing was changed"
    );
    no_member(rec, st, msg).await.map(Some)
}

/// Ends a request that reaches no member cluster: Failed, not planned, nothing changed.
async fn no_member(rec: &mut Record, mut st: DeprovisionRequestStatus, msg: String) -> Result<Action, Error> {
    let generation = rec.obj.metadata.generation;
    st.phase = Phase::Failed;
    st.message = Some(msg.clone());
    st.completed_at = Some(now());
    set_condition(&mut st.conditions, ConditionType::Planned, false, Reason::NoMember, &msg, generation);
    set_condition(&mut st.conditions, ConditionType::Complete, true, Reason::NoMember, &msg, generation);
    rec.write(st).await?;
    rec.event(EventType::Warning, Reason::NoMember, EventAction::Plan, msg, None);
    Ok(Action::await_change())
}

/// The `ClusterSet`s for the request's application and the members they select.
async fn select(rec: &Record) -> Result<fleet::Selection, ExecError> {
    if !fleet::reaches_members(&rec.obj.spec) {
        return Ok(fleet::Selection::default());
    }
    let client = rec.ctx.client.clone();
    let unavailable = |context: &str| {
        let context = context.to_string();
        move |source| ExecError::Unavailable { context, source }
    };
    let sets = Api::<ClusterSet>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(unavailable("listing ClusterSets"))?;
    let sets: Vec<Set> = sets
        .items
        .into_iter()
        .map(|s| Set { name: s.name_any(), application: s.spec.application, match_labels: s.spec.members.match_labels })
        .collect();
    let addressed = fleet::addressed_to(&rec.obj.spec);
    if addressed.is_none() && !sets.iter().any(|s| fleet::application_matches(&s.application, &rec.obj.spec)) {
        return Ok(fleet::Selection::default());
    }
    let members = Api::<MemberCluster>::all(client)
        .list(&ListParams::default())
        .await
        .map_err(unavailable("listing MemberClusters"))?;
    let members: Vec<Member> = members
        .items
        .into_iter()
        .map(|m| Member { name: m.name_any(), labels: m.labels().clone(), mailbox: m.spec.mailbox })
        .collect();
    match addressed {
        Some(cluster) => Ok(fleet::select_addressed(cluster, &members)),
        None => Ok(fleet::select(&rec.obj.spec, &sets, &members)),
    }
}

/// Records which members the request goes to (before any is handed it), then hands it over.
async fn hand_over(
    rec: &mut Record,
    mut st: DeprovisionRequestStatus,
    selection: fleet::Selection,
) -> Result<Action, Error> {
    let generation = rec.obj.metadata.generation;
    let sets = selection.sets.join(", ");
    if selection.members.is_empty() {
        let msg = format!("ClusterSet {sets} selects no member cluster: nothing was handed over or changed");
        return no_member(rec, st, msg).await;
    }
    let name = fleet::member_request_name(&rec.obj.uid().unwrap_or_default());
    st.members = selection
        .members
        .iter()
        .map(|m| MemberRecord {
            cluster: m.name.clone(),
            member_request: name.clone(),
            mailbox: m.mailbox.clone(),
            reported: MemberReport::default(),
        })
        .collect();
    let names: Vec<&str> = selection.members.iter().map(|m| m.name.as_str()).collect();
    let msg = format!("handed to {} cluster(s) by ClusterSet {sets}: {}", names.len(), names.join(", "));
    st.phase = Phase::InProgress;
    st.message = Some(crate::text::clip(&msg));
    set_condition(&mut st.conditions, ConditionType::Planned, true, Reason::HandedToMembers, &msg, generation);
    let waiting = "waiting for the member clusters' records";
    set_condition(&mut st.conditions, ConditionType::Complete, false, Reason::InProgress, waiting, generation);
    rec.write(st).await?;
    rec.event(EventType::Normal, Reason::HandedToMembers, EventAction::Plan, msg, None);
    // Handed over and collected at once, by the next reconcile of the record just written.
    Ok(Action::requeue(Duration::ZERO))
}

/// Makes sure the member's `MemberRequest` exists and returns what its agent reported.
async fn collect(rec: &Record, m: &MemberRecord, uid: &str) -> Result<MemberReport, ExecError> {
    let api: Api<MemberRequest> = Api::namespaced(rec.ctx.client.clone(), &m.mailbox);
    let context =
        format!("handing the request to cluster {} (MemberRequest {}/{})", m.cluster, m.mailbox, m.member_request);
    let found = api
        .get_opt(&m.member_request)
        .await
        .map_err(|source| ExecError::Unavailable { context: context.clone(), source })?;
    let found = match found {
        Some(found) => found,
        None => {
            let mut mr = MemberRequest::new(
                &m.member_request,
                MemberRequestSpec {
                    cluster: m.cluster.clone(),
                    hub_record: rec.obj.name_any(),
                    hub_uid: uid.to_string(),
                    request: rec.obj.spec.clone(),
                },
            );
            // Owned by the hub record: deleted with it when its retention ends (no blocking of
            // the owner's deletion, which would need more than `create`).
            mr.metadata.owner_references = rec.obj.controller_owner_ref(&()).map(|mut o| {
                o.block_owner_deletion = None;
                vec![o]
            });
            match api.create(&PostParams::default(), &mr).await {
                Ok(created) => created,
                Err(kube::Error::Api(s)) if s.is_already_exists() => {
                    return Ok(MemberReport::default());
                }
                // The mailbox is gone (the member was taken out of the fleet) or was never made:
                // nothing can reach that cluster, and waiting would leave the record open forever.
                Err(kube::Error::Api(s)) if s.is_not_found() => {
                    return Ok(MemberReport {
                        phase: MemberPhase::Failed,
                        message: Some(format!(
                            "its mailbox namespace {} does not exist on the hub (the cluster was taken out of the fleet, or was never set up): not handed over, nothing was changed there",
                            m.mailbox
                        )),
                        updated_at: Some(now()),
                        ..Default::default()
                    });
                }
                Err(source) => return Err(ExecError::Unavailable { context, source }),
            }
        }
    };
    if found.spec.hub_uid != uid {
        return Ok(MemberReport {
            phase: MemberPhase::Failed,
            message: Some(format!(
                "MemberRequest {}/{} belongs to another hub record ({}): not handed over",
                m.mailbox, m.member_request, found.spec.hub_record
            )),
            updated_at: Some(now()),
            ..Default::default()
        });
    }
    Ok(found.status.map(|s| s.report).unwrap_or_default())
}

/// The hub record a `MemberRequest` answers (what the hub's watch of them wakes).
pub(super) fn hub_record_of(mr: &MemberRequest) -> String {
    mr.spec.hub_record.clone()
}
