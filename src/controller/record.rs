//! The record: every write of a request's status goes through [`Record`], guarded by the
//! resourceVersion it last read, so two controllers can never interleave a record.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use super::{Context, Error, summary};
use crate::crd::{
    ActionKind, BindingRef, ConditionType, DeprovisionRequest, DeprovisionRequestStatus, Outcome, Phase, Reason,
    set_condition, set_condition_status,
};
use crate::exec::ExecError;
use crate::metrics::{PhaseLabels, VerdictLabels};
use crate::text;
use crate::verify::verdict::{self, Verdict};

/// The `verdict` label of `deprovisioner_verifications_total` (one of [`crate::metrics::VERDICTS`]).
fn verdict_label(v: &Verdict) -> &'static str {
    match v {
        Verdict::NoRemainingAccess => "verified",
        Verdict::AccessRemains => "access_remains",
        Verdict::NotVerified => "unverified",
    }
}

use super::clock::since;
// `reconcile` takes the clock from here.
pub(super) use super::clock::now;

/// A status write the API server will refuse again however often it is retried: invalid, or too
/// large for the API server (413) or for etcd (a 500 "request is too large").
fn unrecordable(s: &kube::core::Status) -> bool {
    s.is_invalid() || s.code == 413 || (s.code == 500 && s.message.to_ascii_lowercase().contains("too large"))
}

/// What the controller was doing when it published an Event.
#[derive(Clone, Copy, Debug)]
pub(super) enum EventAction {
    /// Planning the request.
    Plan,
    /// Executing one action of the plan.
    Execute(ActionKind),
    /// Finishing the request.
    Complete,
}

impl EventAction {
    fn as_str(self) -> &'static str {
        match self {
            EventAction::Plan => "Plan",
            EventAction::Execute(kind) => kind.as_str(),
            EventAction::Complete => "Complete",
        }
    }
}

/// The request being reconciled and how to write its record.
pub(super) struct Record {
    api: Api<DeprovisionRequest>,
    /// The request as last read or written.
    pub obj: DeprovisionRequest,
    /// The reconcilers' shared state.
    pub ctx: Arc<Context>,
}

impl Record {
    pub fn new(api: Api<DeprovisionRequest>, obj: DeprovisionRequest, ctx: Arc<Context>) -> Record {
        Record { api, obj, ctx }
    }

    /// The status as last read or written.
    pub fn status(&self) -> DeprovisionRequestStatus {
        self.obj.status.clone().unwrap_or_default()
    }

    /// The status message as last written.
    pub fn message(&self) -> String {
        self.obj.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default()
    }

    /// Replaces the status (guarded by resourceVersion) and keeps the returned object.
    #[tracing::instrument(name = "write", skip_all, fields(phase = st.phase.as_str()))]
    pub async fn write(&mut self, mut st: DeprovisionRequestStatus) -> Result<DeprovisionRequestStatus, Error> {
        st.removed = st.results.iter().filter(|r| r.outcome.is_removal()).count() as i32;
        let finishing = st.phase.is_terminal() && !self.obj.status.as_ref().is_some_and(|s| s.phase.is_terminal());
        let phase = st.phase;
        let mut next = self.obj.clone();
        next.status = Some(st);
        let name = self.obj.name_any();
        match self.api.replace_status(&name, &PostParams::default(), &next).await {
            Ok(o) => {
                self.obj = o;
                self.ctx.local.remember(&self.obj);
                if finishing {
                    self.log_finished();
                    self.ctx.regrants.finished(&self.obj);
                    self.count_finished(phase);
                    self.count_verdict();
                    let uid = self.obj.uid().unwrap_or_default();
                    self.ctx.shared.finished.done(&uid, self.obj.status.clone().map(Box::new));
                }
                Ok(self.status())
            }
            // Refused as invalid or too large: retrying cannot help. End Failed on top of the
            // status last stored (its plan and results stay: nothing recorded is erased) and say
            // which results could not be added, rather than loop.
            Err(kube::Error::Api(s)) if unrecordable(&s) => {
                let attempted = next.status.take().unwrap_or_default();
                let mut kept = self.status();
                let lost: Vec<String> = attempted
                    .results
                    .iter()
                    .filter(|r| !kept.results.iter().any(|k| k.id == r.id))
                    .map(|r| format!("{} ({})", r.id, r.outcome.as_str()))
                    .collect();
                let lost = match lost.is_empty() {
                    true => String::new(),
                    false => format!(
                        "; results of action(s) {} happened but are not in the record",
                        text::first_and_more(&lost)
                    ),
                };
                let message = text::clip(format!("Could not record the status: {}{lost}", s.message));
                kept.phase = Phase::Failed;
                kept.started_at = kept.started_at.or(attempted.started_at);
                kept.completed_at = Some(now());
                kept.attempting = None;
                kept.message = Some(message.clone());
                next.status = Some(kept);
                let stored = self.api.replace_status(&name, &PostParams::default(), &next).await;
                let stored = stored.map_err(|source| {
                    self.ctx.local.forget(&name);
                    Error::Status { name: name.clone(), source }
                })?;
                self.ctx.local.remember(&stored);
                self.count_finished(Phase::Failed);
                self.ctx.shared.finished.done(&stored.uid().unwrap_or_default(), stored.status.clone().map(Box::new));
                self.obj = stored;
                self.log_finished();
                Err(Error::Unrecordable { name, message })
            }
            // Whatever happened (a conflict: someone else wrote it), read it afresh next time.
            Err(source) => {
                self.ctx.local.forget(&name);
                Err(Error::Status { name, source })
            }
        }
    }

    /// Logs the whole finished record (spec and status) as one JSON line, so a log shipper keeps
    /// the evidence beyond the retention period. Records hold no secrets: external messages are
    /// redacted before they are recorded.
    fn log_finished(&self) {
        let record = serde_json::json!({
            "name": self.obj.name_any(),
            "uid": self.obj.metadata.uid,
            "createdAt": self.obj.metadata.creation_timestamp,
            "spec": self.obj.spec,
            "status": self.obj.status,
        });
        tracing::info!(event = "deprovision.finished", request = %self.obj.name_any(), record = %record, "request finished");
    }

    /// Counts the verdict of the verification of a request just finished, if it was verified.
    fn count_verdict(&self) {
        let Some(v) = self.obj.status.as_ref().and_then(|s| s.verification.as_ref()) else { return };
        let labels = VerdictLabels { verdict: verdict_label(&Verdict::of(v)) };
        self.ctx.settings.metrics.verifications.get_or_create(&labels).inc();
    }

    fn count_finished(&self, phase: Phase) {
        let labels = PhaseLabels { phase: phase.as_str() };
        self.ctx.settings.metrics.requests_finished.get_or_create(&labels).inc();
    }

    /// Records a transient error and retries with backoff, or gives up after the bounded time.
    pub async fn transient(&mut self, mut st: DeprovisionRequestStatus, e: ExecError) -> Result<Action, Error> {
        // The clock starts when a controller first took the request, not at creation: a request
        // accepted while no controller ran still gets its full time.
        let started = st.started_at.clone().or_else(|| self.obj.meta().creation_timestamp.clone()).unwrap_or_else(now);
        st.retries += 1;
        st.last_error = Some(text::clip(e.to_string()));
        if since(&started) >= self.ctx.settings.give_up_after {
            return self.give_up(st, e).await;
        }
        let backoff = Duration::from_secs((1u64 << st.retries.min(6)).min(60));
        tracing::warn!(request = %self.obj.name_any(), retries = st.retries, error = %e, "transient error; retrying in {backoff:?}");
        // Best effort: the API server may be the thing that is down.
        if let Err(e) = self.write(st).await {
            tracing::debug!(error = %e, "could not record the transient error");
        }
        Ok(Action::requeue(backoff))
    }

    /// Ends a request whose API errors lasted past `--give-up-after`: every action without a
    /// result is recorded Failed.
    async fn give_up(&mut self, mut st: DeprovisionRequestStatus, e: ExecError) -> Result<Action, Error> {
        let give_up = format!("gave up after {}: {e}", humantime::format_duration(self.ctx.settings.give_up_after));
        let email = self.obj.spec.target_user.email.clone();
        for a in st.plan.clone() {
            if !st.results.iter().any(|r| r.id == a.id) {
                st.results.push(summary::result(&a, &email, Outcome::Failed, give_up.clone(), None));
            }
        }
        if !st.plan.is_empty() {
            return self.finish(st).await;
        }
        st.phase = Phase::Failed;
        st.message = Some(text::clip(format!("Could not plan: {give_up}")));
        st.completed_at = Some(now());
        let generation = self.obj.metadata.generation;
        set_condition(&mut st.conditions, ConditionType::Complete, true, Reason::GaveUp, &give_up, generation);
        self.write(st).await?;
        self.event(EventType::Warning, Reason::GaveUp, EventAction::Plan, give_up, None);
        Ok(Action::await_change())
    }

    /// Records the terminal phase and the message for Lumos from the results.
    #[tracing::instrument(name = "finish", skip_all)]
    pub async fn finish(&mut self, mut st: DeprovisionRequestStatus) -> Result<Action, Error> {
        let (phase, msg) = summary::summarize(&self.obj.spec.target_user.email, &st.results);
        let msg = summary::with_managed_warning(msg, &st.plan, &st.results);
        let (phase, msg) = summary::with_verification(phase, msg, st.verification.as_ref());
        st.phase = phase;
        st.message = Some(msg.clone());
        st.completed_at = Some(now());
        let generation = self.obj.metadata.generation;
        let mut warning = None;
        if let Some(v) = &st.verification {
            let verdict = Verdict::of(v);
            let reason = match verdict {
                Verdict::NoRemainingAccess => Reason::NoRemainingAccess,
                Verdict::AccessRemains => Reason::AccessRemains,
                Verdict::NotVerified => Reason::NotVerified,
            };
            let says = verdict::condition_message(v);
            set_condition_status(
                &mut st.conditions,
                ConditionType::Verified,
                verdict.status(),
                reason,
                &says,
                generation,
            );
            warning = (verdict != Verdict::NoRemainingAccess).then_some((reason, says));
        }
        let all_done = st.results.iter().all(|r| r.outcome != Outcome::Failed);
        // Every action done, yet Failed: the verification failed it (access remains, or it could
        // not be made), and the condition says which.
        let unverified = st.verification.as_ref().is_some_and(|v| Verdict::of(v) == Verdict::NotVerified);
        let (type_, reason) = match phase {
            Phase::Succeeded => (EventType::Normal, Reason::Succeeded),
            _ if all_done && unverified => (EventType::Warning, Reason::NotVerified),
            _ if all_done => (EventType::Warning, Reason::AccessRemains),
            _ => (EventType::Warning, Reason::ActionsFailed),
        };
        set_condition(&mut st.conditions, ConditionType::Complete, true, reason, &msg, generation);
        self.write(st).await?;
        // One Event per finding: a request failed for remaining access already says so.
        if let Some((verdict_reason, says)) = warning.filter(|(r, _)| *r != reason) {
            self.event(EventType::Warning, verdict_reason, EventAction::Complete, says, None);
        }
        self.event(type_, reason, EventAction::Complete, msg, None);
        Ok(Action::await_change())
    }

    /// Queues an Event on the request, published off the critical path (failures to publish are
    /// logged, never fatal).
    pub fn event(
        &self,
        type_: EventType,
        reason: Reason,
        action: EventAction,
        note: String,
        related: Option<&BindingRef>,
    ) {
        let secondary = related.map(binding_reference);
        let ev = Event {
            type_,
            reason: reason.as_str().into(),
            note: Some(text::clip(note)),
            action: action.as_str().into(),
            secondary,
        };
        self.ctx.events.send(ev, self.obj.object_ref(&()));
    }
}

/// A binding as an Event names it (`regarding` or `related`).
pub(super) fn binding_reference(b: &BindingRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("rbac.authorization.k8s.io/v1".into()),
        kind: Some(b.kind().as_str().into()),
        namespace: b.namespace().map(str::to_string),
        name: Some(b.name.clone()),
        uid: Some(b.uid.clone()),
        ..Default::default()
    }
}
