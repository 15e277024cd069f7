//! The words of the record: what each result says it acted on, and the one message that sums a
//! request up (shown in `kubectl get dpr` and sent to Lumos).

use crate::crd::{Action, ActionResult, ExternalDetails, Outcome, Phase, PlannedAction, Verification};
use crate::text::{self, first_and_more};
use crate::verify::verdict;

use super::clock::now;

/// What an action is about: (object, subject).
fn describe(a: &PlannedAction, email: &str) -> (String, String) {
    match &a.action {
        Action::RemoveBindingSubject(b) => (b.binding.to_string(), b.subject.to_string()),
        Action::ConfirmAbsent(c) => (format!("bindings selected by DeprovisionPolicy {}", a.policy), c.subject.clone()),
        Action::ScimDeprovision(c) => (format!("SCIM {} ({})", c.system, c.base_url), c.filter()),
        Action::HttpCall(c) => (format!("HTTP {} ({} {})", c.system, c.method, c.url), email.to_string()),
    }
}

/// The result of action `a` (`email`: the target user's).
pub(super) fn result(
    a: &PlannedAction,
    email: &str,
    outcome: Outcome,
    message: String,
    external: Option<ExternalDetails>,
) -> ActionResult {
    let (object, subject) = describe(a, email);
    let message = text::clip(message);
    ActionResult {
        id: a.id,
        kind: a.kind(),
        object,
        subject,
        outcome,
        message,
        at: now(),
        external,
        subjects_before: None,
        subjects_after: None,
    }
}

/// The message of an action whose call was sent but whose outcome was never recorded.
pub(super) fn outcome_unknown(a: &PlannedAction) -> String {
    let system = match &a.action {
        Action::HttpCall(c) => c.system.as_str(),
        Action::ScimDeprovision(c) => c.system.as_str(),
        _ => "the target system",
    };
    text::clip(format!(
        "outcome unknown: the call was sent but the operator stopped before recording its outcome; it was not sent again (it is not safe to repeat): check {system}"
    ))
}

/// The message of a dry run: where the target user would lose access.
pub(super) fn dry_run(email: &str, plan: &[PlannedAction]) -> String {
    let objects: Vec<String> =
        plan.iter().filter(|a| a.action.changes_something()).map(|a| describe(a, email).0).collect();
    let shown = first_and_more(&objects);
    let sep = if shown.is_empty() { "" } else { ": " };
    text::clip(format!(
        "Dry run: would remove {email} from {} place(s){sep}{shown}; nothing was changed",
        objects.len()
    ))
}

/// The terminal phase and message for a finished set of results (`email`: the target user's).
pub(super) fn summarize(email: &str, results: &[ActionResult]) -> (Phase, String) {
    let removed: Vec<&ActionResult> = results.iter().filter(|r| r.outcome.is_removal()).collect();
    let absent = results.iter().filter(|r| r.outcome == Outcome::AlreadyAbsent).count();
    let failed: Vec<&ActionResult> = results.iter().filter(|r| r.outcome == Outcome::Failed).collect();
    let removed_text = if removed.is_empty() {
        String::new()
    } else {
        format!("removed {email} from {}", first_and_more(removed.iter().map(|r| &r.object)))
    };
    if !failed.is_empty() {
        let what = first_and_more(failed.iter().map(|r| format!("{}: {}", r.object, r.message)));
        let mut msg = format!("Failed {} of {} action(s) for {email}: {what}", failed.len(), results.len());
        if !removed_text.is_empty() {
            msg.push_str(&format!(". Done: {removed_text}"));
        }
        return (Phase::Failed, text::clip(msg));
    }
    let msg = match (removed.is_empty(), absent) {
        (true, 0) => format!("No access of {email} matched the policy: nothing to remove"),
        (true, _) => format!("Nothing to remove: {email} holds none of the access the policy names"),
        (false, 0) => capitalize(&removed_text),
        (false, n) => format!("{}; {n} already absent", capitalize(&removed_text)),
    };
    (Phase::Succeeded, text::clip(msg))
}

/// The warning for removals from bindings another tool keeps in sync (they will come back unless
/// the source changes), added to the message: `; warning: RoleBinding a/b is managed by Argo CD
/// application web: change the source or it will come back`.
pub(super) fn with_managed_warning(msg: String, plan: &[PlannedAction], results: &[ActionResult]) -> String {
    let managed: Vec<String> = plan
        .iter()
        .filter(|a| results.iter().any(|r| r.id == a.id && r.outcome.is_removal()))
        .filter_map(|a| match &a.action {
            Action::RemoveBindingSubject(b) => {
                b.managed_by.as_ref().filter(|m| m.syncs()).map(|m| format!("{} is managed by {m}", b.binding))
            }
            _ => None,
        })
        .collect();
    if managed.is_empty() {
        return msg;
    }
    let warning = format!("; warning: {}: change the source or it will come back", first_and_more(&managed));
    text::clip_keeping(&msg, &text::clip_to(&warning, text::MAX_MESSAGE / 3))
}

/// The phase and message once the verification is known: its sentence is added to the message
/// (it always survives clipping), and remaining access the authorizer confirms fails the request
/// when the policies say `Fail` (the removals stay done and recorded).
pub(super) fn with_verification(phase: Phase, msg: String, v: Option<&Verification>) -> (Phase, String) {
    let Some(v) = v else {
        return (phase, msg);
    };
    let phase = if verdict::fails(v) { Phase::Failed } else { phase };
    let sentence = text::clip_to(&format!("; {}", verdict::sentence(v)), text::MAX_MESSAGE / 2);
    (phase, text::clip_keeping(&msg, &sentence))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
