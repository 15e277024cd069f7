//! From records to evidence: which requests a report covers ([`Filter`]), what each says
//! ([`RequestEvidence`]), and one row per action ([`Row`]). Pure: no I/O.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::time::rfc3339;
use crate::crd::{Action, ActionResult, DeprovisionRequest, Outcome, Phase, RecordedActivity};

/// The condition type a verification writes on a request.
pub const VERIFIED_CONDITION: &str = "Verified";

/// Which requests a report covers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Lumos calls at or after this (the request's creation time).
    pub since: Option<Timestamp>,
    /// Lumos calls before this.
    pub until: Option<Timestamp>,
    /// Only this Lumos app: its `appId`, `instanceId` or label, exactly.
    pub app: Option<String>,
    /// Only this person: the target user's email, ignoring case.
    pub person: Option<String>,
}

impl Filter {
    /// Whether the report covers this request. A request without a creation time (never true
    /// of a stored one) is covered only when no range is given.
    pub fn matches(&self, r: &DeprovisionRequest) -> bool {
        let created = r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let in_range = match created {
            Some(t) => self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u),
            None => self.since.is_none() && self.until.is_none(),
        };
        let a = &r.spec.application;
        let app_ok = self.app.as_deref().is_none_or(|want| {
            [&a.app_id, &a.instance_id, &a.user_friendly_label].iter().any(|v| v.as_deref() == Some(want))
        });
        let person_ok =
            self.person.as_deref().is_none_or(|p| r.spec.target_user.email.trim().eq_ignore_ascii_case(p.trim()));
        in_range && app_ok && person_ok
    }
}

/// What a request's verification found, from its `Verified` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `Verified=True`: no access remains.
    Verified,
    /// `Verified=False`: the condition's message.
    Failed(String),
    /// No `Verified` condition (or an `Unknown` one).
    NotVerified,
}

impl Verdict {
    /// The request's verdict.
    pub fn of(r: &DeprovisionRequest) -> Verdict {
        let cond = r.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == VERIFIED_CONDITION));
        match cond {
            Some(c) if c.status == "True" => Verdict::Verified,
            Some(c) if c.status == "False" => Verdict::Failed(if c.message.trim().is_empty() {
                "verification failed (no message)".into()
            } else {
                c.message.clone()
            }),
            _ => Verdict::NotVerified,
        }
    }

    /// The verdict as the reports write it.
    pub fn text(&self) -> &str {
        match self {
            Verdict::Verified => "verified: no remaining access",
            Verdict::Failed(m) => m,
            Verdict::NotVerified => "not verified",
        }
    }
}

/// One request, as a report shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestEvidence {
    /// The request's name.
    pub name: String,
    /// The target user's email.
    pub person: String,
    /// The target user's name, when Lumos sent it.
    pub person_name: Option<String>,
    /// The Lumos app (`appId`, else `instanceId`), with its label when that differs.
    pub app: String,
    /// The permissions removed, joined (empty: the whole application).
    pub permissions: String,
    /// When Lumos called (the request's creation).
    pub called_at: Option<Timestamp>,
    /// When the request finished.
    pub completed_at: Option<Timestamp>,
    /// Its phase.
    pub phase: Phase,
    /// Its message (what Lumos was told).
    pub message: String,
    /// Whether a verification found no remaining access.
    pub verdict: Verdict,
    /// Its results, in the order they finished, with the role each binding granted.
    pub actions: Vec<(ActionResult, Option<String>)>,
    /// The target's last activity when it was planned, when the operator recorded it.
    pub last_activity: Option<RecordedActivity>,
    /// An expiry's: when the access started (RFC 3339) and how that is known.
    pub access_started: String,
    /// An expiry's: what ended the access (the rule or the annotation).
    pub ended_by: String,
}

impl RequestEvidence {
    /// What a report shows of a request.
    pub fn of(r: &DeprovisionRequest) -> RequestEvidence {
        let spec = &r.spec;
        let st = r.status.clone().unwrap_or_default();
        let a = &spec.application;
        let id = a.app_id.clone().or_else(|| a.instance_id.clone()).unwrap_or_default();
        let app = match &a.user_friendly_label {
            Some(l) if *l != id && !l.is_empty() => format!("{l} ({id})"),
            _ => id,
        };
        let person_name = [&spec.target_user.given_name, &spec.target_user.family_name]
            .iter()
            .filter_map(|n| n.as_deref().filter(|n| !n.is_empty()))
            .collect::<Vec<_>>()
            .join(" ");
        let role_of = |id: i32| {
            st.plan.iter().find(|p| p.id == id).and_then(|p| match &p.action {
                Action::RemoveBindingSubject(b) => Some(b.binding.role_ref.clone()),
                _ => None,
            })
        };
        RequestEvidence {
            name: r.metadata.name.clone().unwrap_or_default(),
            person: spec.target_user.email.clone(),
            person_name: (!person_name.is_empty()).then_some(person_name),
            app,
            permissions: spec.permissions.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join("; "),
            called_at: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            completed_at: st.completed_at.as_ref().map(|t| t.0),
            phase: st.phase,
            message: st.message.clone().unwrap_or_default(),
            verdict: Verdict::of(r),
            actions: st.results.iter().map(|res| (res.clone(), role_of(res.id))).collect(),
            last_activity: st.last_activity.clone(),
            access_started: (spec.expiry.as_ref())
                .map(|e| format!("{} ({:?})", rfc3339(e.started_at.0), e.started_from))
                .unwrap_or_default(),
            ended_by: spec.expiry.as_ref().map(|e| e.reason.clone()).unwrap_or_default(),
        }
    }

    /// Its rows: one per action, or one row with no action when it has no results (it could
    /// not be planned, is unfinished, or was a dry run), so no request is left out.
    pub fn rows(&self) -> Vec<Row> {
        let base = Row {
            request: self.name.clone(),
            person: self.person.clone(),
            app: self.app.clone(),
            permissions: self.permissions.clone(),
            called_at: self.called_at.map(rfc3339).unwrap_or_default(),
            completed_at: self.completed_at.map(rfc3339).unwrap_or_default(),
            phase: self.phase.as_str().into(),
            action: None,
            kind: String::new(),
            object: String::new(),
            role: String::new(),
            subject: String::new(),
            outcome: String::new(),
            message: self.message.clone(),
            subjects_before: None,
            subjects_after: None,
            verification: self.verdict.text().into(),
            last_activity: self.last_activity.as_ref().map(RecordedActivity::describe).unwrap_or_default(),
            access_started: self.access_started.clone(),
            ended_by: self.ended_by.clone(),
        };
        if self.actions.is_empty() {
            return vec![base];
        }
        self.actions
            .iter()
            .map(|(res, role)| Row {
                action: Some(res.id),
                kind: res.kind.as_str().into(),
                object: res.object.clone(),
                role: role.clone().unwrap_or_default(),
                subject: res.subject.clone(),
                outcome: res.outcome.as_str().into(),
                message: res.message.clone(),
                subjects_before: res.subjects_before.clone(),
                subjects_after: res.subjects_after.clone(),
                ..base.clone()
            })
            .collect()
    }
}

/// One row of the CSV and JSON: one action of one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The request's name.
    pub request: String,
    /// The target user's email.
    pub person: String,
    /// The Lumos app.
    pub app: String,
    /// The permissions removed, `; `-joined (empty: the whole application).
    pub permissions: String,
    /// When Lumos called (RFC 3339).
    pub called_at: String,
    /// When the request finished (RFC 3339; empty while unfinished).
    pub completed_at: String,
    /// The request's phase.
    pub phase: String,
    /// The action's id in the plan (none: the request has no results).
    pub action: Option<i32>,
    /// The action's kind.
    pub kind: String,
    /// What it acted on, e.g. `RoleBinding team-a/edit`.
    pub object: String,
    /// The role the binding grants, e.g. `ClusterRole/edit`.
    pub role: String,
    /// The subject, e.g. `User ann@x.com`.
    pub subject: String,
    /// What happened (`Removed`, `Deleted`, `AlreadyAbsent`, `Failed`, …).
    pub outcome: String,
    /// The action's message (the request's, on a row with no action).
    pub message: String,
    /// The binding's subjects before (none: not recorded).
    pub subjects_before: Option<Vec<String>>,
    /// The binding's subjects after (empty when the binding was deleted).
    pub subjects_after: Option<Vec<String>>,
    /// The request's verification verdict.
    pub verification: String,
    /// The target's last activity the removal was based on (empty: not recorded).
    pub last_activity: String,
    /// An expiry's: when the access started, and how that is known (`Observed`,
    /// `SubjectsWritten`, `Created`); empty for other requests.
    pub access_started: String,
    /// An expiry's: the rule (`DeprovisionPolicy p rules[0] maxAccess 720h`) or annotation that
    /// ended the access; empty for other requests.
    pub ended_by: String,
}

/// Counts for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests covered.
    pub requests: usize,
    /// Actions recorded.
    pub actions: usize,
    /// Actions by outcome, in [`OUTCOMES`] order.
    pub by_outcome: [usize; 5],
    /// Requests verified to hold no remaining access.
    pub verified: usize,
    /// Requests whose verification found access remaining.
    pub verification_failed: usize,
    /// Requests with no verification.
    pub not_verified: usize,
}

/// Every outcome, in the order the summary lists them.
pub const OUTCOMES: [Outcome; 5] =
    [Outcome::Removed, Outcome::Deleted, Outcome::Deactivated, Outcome::AlreadyAbsent, Outcome::Failed];

impl Totals {
    /// Counts over the requests.
    pub fn of(requests: &[RequestEvidence]) -> Totals {
        let mut t = Totals { requests: requests.len(), ..Totals::default() };
        for r in requests {
            for (res, _) in &r.actions {
                t.actions += 1;
                if let Some(i) = OUTCOMES.iter().position(|o| *o == res.outcome) {
                    t.by_outcome[i] += 1;
                }
            }
            match r.verdict {
                Verdict::Verified => t.verified += 1,
                Verdict::Failed(_) => t.verification_failed += 1,
                Verdict::NotVerified => t.not_verified += 1,
            }
        }
        t
    }
}

/// The requests a report covers, oldest call first (then by name).
pub fn select(all: &[DeprovisionRequest], filter: &Filter) -> Vec<RequestEvidence> {
    let mut out: Vec<RequestEvidence> = all.iter().filter(|r| filter.matches(r)).map(RequestEvidence::of).collect();
    out.sort_by(|a, b| (a.called_at, &a.name).cmp(&(b.called_at, &b.name)));
    out
}
