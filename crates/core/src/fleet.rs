//! The fleet's decisions, pure: which members a request reaches, the names that make every step
//! repeatable, what the hub's record says once members answer, and whether an agent takes a
//! request addressed to it.

pub mod inventory;

use std::collections::BTreeMap;

use crate::crd::{
    ApplicationSelector, DeprovisionRequestSpec, MemberPhase, MemberRecord, MemberReport, MemberRequestSpec, Phase,
    RequestSource,
};

/// Label on a member's local record naming the `MemberRequest` it answers.
pub const LABEL_MEMBER_REQUEST: &str = "access.deprovisioner.dev/member-request";

/// The custom field of a request from the connector addressing one member cluster (an
/// entitlement on that member's resource).
pub const CLUSTER_FIELD: &str = "fleetCluster";

/// Addresses a connector's request to member `cluster` only.
pub fn address_to(spec: &mut DeprovisionRequestSpec, cluster: &str) {
    spec.custom_fields.insert(CLUSTER_FIELD.to_string(), cluster.to_string());
    for p in &mut spec.permissions {
        if let Some(l) = &mut p.label {
            l.push_str(&format!(" of cluster {cluster}"));
        }
    }
}

/// The member a request is addressed to: only the connector's requests are (its entitlement is
/// on that member's resource); others reach the members their application's `ClusterSet`s select.
pub fn addressed_to(spec: &DeprovisionRequestSpec) -> Option<&str> {
    match spec.source {
        RequestSource::LumosConnector => spec.custom_fields.get(CLUSTER_FIELD).map(String::as_str),
        _ => None,
    }
}

/// Whether a request may reach member clusters at all: Lumos's calls and people's requests do
/// (by `ClusterSet`), and a connector request addressed to a member does (to that one). An
/// expiry, and a connector request on the hub's own resource, name this cluster's bindings: they
/// are planned here, whatever `ClusterSet`s name their application.
pub fn reaches_members(spec: &DeprovisionRequestSpec) -> bool {
    match spec.source {
        RequestSource::LumosWebhook | RequestSource::Manual => true,
        RequestSource::LumosConnector => addressed_to(spec).is_some(),
        RequestSource::Expiry | RequestSource::Fleet => false,
    }
}

/// The selection of a request addressed to one member: that member (if the hub knows it).
pub fn select_addressed(cluster: &str, members: &[Member]) -> Selection {
    Selection {
        sets: vec![format!("(none: the connector addressed cluster {cluster})")],
        members: members.iter().filter(|m| m.name == cluster).cloned().collect(),
    }
}

/// A member cluster as the hub knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name (the `MemberCluster`'s).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its mailbox namespace on the hub.
    pub mailbox: String,
}

/// A `ClusterSet`: an application and the member labels it reaches.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    /// Its name.
    pub name: String,
    /// The application it is for.
    pub application: ApplicationSelector,
    /// Every label a member must carry (never empty).
    pub match_labels: BTreeMap<String, String>,
}

/// The members a request reaches, and the sets that chose them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selection {
    /// Sets for the request's application, sorted by name (empty: not a fleet request).
    pub sets: Vec<String>,
    /// Members any of them selects, sorted by name, each once.
    pub members: Vec<Member>,
}

/// True when `sel` names the request's application (as a policy's `application` does).
pub fn application_matches(sel: &ApplicationSelector, spec: &DeprovisionRequestSpec) -> bool {
    (sel.app_id.is_some() || sel.instance_id.is_some())
        && sel.app_id.as_ref().is_none_or(|a| spec.application.app_id.as_ref() == Some(a))
        && sel.instance_id.as_ref().is_none_or(|i| spec.application.instance_id.as_ref() == Some(i))
}

/// The members the sets for the request's application select. An empty label selector selects
/// nothing (the API server refuses one anyway).
pub fn select(spec: &DeprovisionRequestSpec, sets: &[Set], members: &[Member]) -> Selection {
    let mut matching: Vec<&Set> = sets.iter().filter(|s| application_matches(&s.application, spec)).collect();
    matching.sort_by(|a, b| a.name.cmp(&b.name));
    let mut chosen: BTreeMap<&str, &Member> = BTreeMap::new();
    for set in &matching {
        if set.match_labels.is_empty() {
            continue;
        }
        for m in members {
            if set.match_labels.iter().all(|(k, v)| m.labels.get(k) == Some(v)) {
                chosen.insert(&m.name, m);
            }
        }
    }
    Selection {
        sets: matching.iter().map(|s| s.name.clone()).collect(),
        members: chosen.into_values().cloned().collect(),
    }
}

/// The `MemberRequest` handing a hub record to a member: named by the hub record's UID, so a hub
/// that restarts after creating it finds it instead of making another.
pub fn member_request_name(hub_uid: &str) -> String {
    hub_uid.to_ascii_lowercase()
}

/// The member's own record of a `MemberRequest`: named by its UID, so an agent that restarts
/// after creating it finds it instead of making another.
pub fn local_record_name(member_request_uid: &str) -> String {
    format!("fleet-{}", member_request_uid.to_ascii_lowercase())
}

/// Whether an agent takes a request found in its mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Addressed to this member: record and work it here.
    Take,
    /// Not addressed here: refused, recorded, nothing changed.
    Refuse(String),
}

/// An agent takes only requests addressed to its own member (a request in its mailbox naming
/// another cluster is a mistake or a forgery).
pub fn admit(me: &str, spec: &MemberRequestSpec) -> Admission {
    if spec.cluster == me {
        Admission::Take
    } else {
        Admission::Refuse(format!(
            "refused by cluster {me}: this request is addressed to cluster {:?}; nothing was changed here",
            spec.cluster
        ))
    }
}

/// How long the hub still waits for a member that has not finished a request handed over at
/// `handed_at`: `None` once `timeout` has passed (then the request is withdrawn).
pub fn wait_left(
    handed_at: k8s_openapi::jiff::Timestamp,
    now: k8s_openapi::jiff::Timestamp,
    timeout: std::time::Duration,
) -> Option<std::time::Duration> {
    let waited = u64::try_from(now.as_millisecond().saturating_sub(handed_at.as_millisecond())).unwrap_or(0);
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    (waited < timeout_ms).then(|| std::time::Duration::from_millis(timeout_ms - waited))
}

/// What the hub records for a member that did not finish within `timeout` (written as
/// `timeout_text`): `Failed`, its request withdrawn from the mailbox. Whether the agent took it
/// first is said as the member reported it, and nothing more is claimed.
pub fn withdrawn(reported: &MemberReport, timeout_text: &str) -> MemberReport {
    let message = match &reported.record {
        Some(record) => format!(
            "did not finish within {timeout_text} of the call: withdrawn from its mailbox; its agent had taken it, and its own record there (deprovisionrequest/{record}) shows what it did"
        ),
        None => format!(
            "did not answer within {timeout_text} of the call: withdrawn from its mailbox before its agent reported taking it"
        ),
    };
    MemberReport {
        phase: MemberPhase::Failed,
        message: Some(message),
        refused: None,
        updated_at: None,
        ..reported.clone()
    }
}

/// The hub record's phase and message from its members' answers: `Succeeded` only when every
/// member's record succeeded; `Failed` once every member answered and one did not succeed;
/// otherwise `InProgress`, the message naming who has not answered yet. A member's `DryRun`
/// counts as success only for a dry run (`dry_run`): for a removal it is not one.
pub fn hub_outcome(members: &[MemberRecord], dry_run: bool) -> (Phase, String) {
    if members.is_empty() {
        return (Phase::Failed, "no member cluster is selected for this application".into());
    }
    let ok = |m: &MemberRecord| match m.reported.phase {
        MemberPhase::DryRun => dry_run,
        p => p.is_success(),
    };
    let all_answered = members.iter().all(|m| m.reported.phase.is_terminal());
    let all_ok = members.iter().all(ok);
    let phase = match (all_answered, all_ok) {
        (true, true) if members.iter().all(|m| m.reported.phase == MemberPhase::DryRun) => Phase::DryRun,
        (true, true) => Phase::Succeeded,
        (true, false) => Phase::Failed,
        (false, _) => Phase::InProgress,
    };
    let ok = members.iter().filter(|m| ok(m)).count();
    let head = match phase {
        Phase::Succeeded | Phase::DryRun => format!("Succeeded in all {} clusters", members.len()),
        Phase::Failed => format!("Failed in {} of {} clusters", members.len() - ok, members.len()),
        _ => format!(
            "{} of {} clusters answered",
            members.iter().filter(|m| m.reported.phase.is_terminal()).count(),
            members.len()
        ),
    };
    let parts: Vec<String> = members.iter().map(describe).collect();
    (phase, format!("{head}: {}", parts.join("; ")))
}

/// One member's part of the hub's message, e.g. `prod: Failed (record deprovisionrequest/fleet-…): …`.
fn describe(m: &MemberRecord) -> String {
    let r = &m.reported;
    let record = r.record.as_deref().map(|n| format!(" (record deprovisionrequest/{n})")).unwrap_or_default();
    let said = match r.phase {
        MemberPhase::Pending => "no answer yet".to_string(),
        MemberPhase::Succeeded | MemberPhase::DryRun => r.phase.as_str().to_string(),
        _ => match r.message.as_deref() {
            Some(msg) if !msg.is_empty() => format!("{}: {}", r.phase.as_str(), crate::text::clip_to(msg, 160)),
            _ => r.phase.as_str().to_string(),
        },
    };
    let said = if r.phase == MemberPhase::Pending { said } else { format!("{said}{record}") };
    format!("{}: {said}", m.cluster)
}

/// What the member reports for its local record's phase.
pub fn member_phase(phase: Phase) -> MemberPhase {
    match phase {
        Phase::Pending | Phase::InProgress => MemberPhase::InProgress,
        Phase::Succeeded => MemberPhase::Succeeded,
        Phase::Failed => MemberPhase::Failed,
        Phase::DryRun => MemberPhase::DryRun,
    }
}

#[cfg(test)]
mod tests;
