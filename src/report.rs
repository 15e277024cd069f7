//! Turns a request's record into what people read: the status message (also sent to Lumos),
//! conditions, and the webhook's answer.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;

use crate::crd::{ActionResult, DeprovisionRequestStatus, Outcome, Phase};

/// Longest message shown in Lumos and in `kubectl get dpr`.
pub const MAX_MESSAGE: usize = 480;

/// What the webhook answers (HTTP 200 with this JSON body).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LumosAnswer {
    /// `SUCCESS` or `FAILURE`.
    pub response: &'static str,
    /// Shown to the requester in Lumos.
    pub msg: String,
}

impl LumosAnswer {
    /// A success.
    pub fn success(msg: impl Into<String>) -> Self {
        LumosAnswer { response: "SUCCESS", msg: clip(msg.into()) }
    }
    /// A failure.
    pub fn failure(msg: impl Into<String>) -> Self {
        LumosAnswer { response: "FAILURE", msg: clip(msg.into()) }
    }
}

/// Cuts a message to [`MAX_MESSAGE`] characters on a character boundary.
pub fn clip(mut s: String) -> String {
    if s.chars().count() > MAX_MESSAGE {
        s = s.chars().take(MAX_MESSAGE - 1).collect();
        s.push('…');
    }
    s
}

fn list(items: &[&ActionResult], f: impl Fn(&ActionResult) -> String) -> String {
    const SHOWN: usize = 3;
    let mut parts: Vec<String> = items.iter().take(SHOWN).map(|r| f(r)).collect();
    if items.len() > SHOWN {
        parts.push(format!("and {} more", items.len() - SHOWN));
    }
    parts.join("; ")
}

/// The final message for a finished set of results.
pub fn summarize(target: &str, results: &[ActionResult]) -> (Phase, String) {
    let removed: Vec<_> = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Removed | Outcome::Deleted | Outcome::Deactivated))
        .collect();
    let absent = results.iter().filter(|r| r.outcome == Outcome::AlreadyAbsent).count();
    let failed: Vec<_> = results.iter().filter(|r| r.outcome == Outcome::Failed).collect();
    let removed_text = if removed.is_empty() {
        String::new()
    } else {
        format!("removed {target} from {}", list(&removed, |r| r.object.clone()))
    };
    if !failed.is_empty() {
        let mut msg = format!(
            "Failed {} of {} action(s) for {target}: {}",
            failed.len(),
            results.len(),
            list(&failed, |r| format!("{}: {}", r.object, r.message))
        );
        if !removed_text.is_empty() {
            msg.push_str(&format!(". Done: {removed_text}"));
        }
        return (Phase::Failed, clip(msg));
    }
    let msg = match (removed.is_empty(), absent) {
        (true, 0) => format!("No access of {target} matched the policy: nothing to remove"),
        (true, _) => format!("Nothing to remove: {target} holds none of the access the policy names"),
        (false, 0) => capitalize(&removed_text),
        (false, n) => format!("{}; {n} already absent", capitalize(&removed_text)),
    };
    (Phase::Succeeded, clip(msg))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The webhook's answer for a request in its current state.
pub fn answer(name: &str, status: Option<&DeprovisionRequestStatus>) -> LumosAnswer {
    let phase = status.map(|s| s.phase).unwrap_or_default();
    // The record's name always survives clipping: it is how a person finds the details.
    let record = format!(" (record: deprovisionrequest/{name})");
    let room = MAX_MESSAGE.saturating_sub(record.chars().count());
    let msg = status.and_then(|s| s.message.clone()).unwrap_or_default();
    let msg = if msg.chars().count() > room {
        format!("{}…{record}", msg.chars().take(room.saturating_sub(1)).collect::<String>())
    } else {
        format!("{msg}{record}")
    };
    match phase {
        Phase::Succeeded | Phase::DryRun => LumosAnswer::success(msg),
        Phase::Failed => LumosAnswer::failure(msg),
        Phase::Pending | Phase::InProgress => LumosAnswer::failure(format!(
            "Still in progress: the operator will finish it; see deprovisionrequest/{name} for the result"
        )),
    }
}

/// Sets a condition, moving `lastTransitionTime` only when the status changes.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conds.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ActionKind;

    fn r(id: i32, outcome: Outcome, object: &str) -> ActionResult {
        ActionResult {
            id,
            kind: ActionKind::RemoveBindingSubject,
            object: object.into(),
            subject: "User p@x.io".into(),
            outcome,
            message: format!("{outcome:?} detail"),
            at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            external: None,
        }
    }

    #[test]
    fn summaries() {
        let (p, m) = summarize(
            "p@x.io",
            &[r(0, Outcome::Removed, "RoleBinding a/edit"), r(1, Outcome::Deleted, "ClusterRoleBinding x")],
        );
        assert_eq!(p, Phase::Succeeded);
        assert_eq!(m, "Removed p@x.io from RoleBinding a/edit; ClusterRoleBinding x");
        let (p, m) = summarize("p@x.io", &[r(0, Outcome::AlreadyAbsent, "RoleBinding a/edit")]);
        assert_eq!(p, Phase::Succeeded);
        assert!(m.starts_with("Nothing to remove: p@x.io holds none"), "{m}");
        let (p, m) = summarize("p@x.io", &[]);
        assert_eq!(p, Phase::Succeeded);
        assert!(m.contains("nothing to remove"));
        let (p, m) = summarize(
            "p@x.io",
            &[r(0, Outcome::Removed, "RoleBinding a/edit"), r(1, Outcome::Failed, "RoleBinding b/edit")],
        );
        assert_eq!(p, Phase::Failed);
        assert!(
            m.starts_with("Failed 1 of 2 action(s)")
                && m.contains("RoleBinding b/edit: Failed detail")
                && m.contains("Done: removed"),
            "{m}"
        );
        let many: Vec<_> = (0..10).map(|i| r(i, Outcome::Removed, &format!("RoleBinding n{i}/edit"))).collect();
        assert!(summarize("p@x.io", &many).1.ends_with("and 7 more"));
    }

    #[test]
    fn answers_map_phases() {
        let mut s =
            DeprovisionRequestStatus { phase: Phase::Succeeded, message: Some("Removed".into()), ..Default::default() };
        assert_eq!(answer("n", Some(&s)).response, "SUCCESS");
        s.phase = Phase::Failed;
        assert_eq!(answer("n", Some(&s)).response, "FAILURE");
        s.phase = Phase::DryRun;
        assert_eq!(answer("n", Some(&s)).response, "SUCCESS");
        s.message = Some("x".repeat(2 * MAX_MESSAGE));
        let long = answer("lumos-abc-1", Some(&s));
        assert_eq!(long.msg.chars().count(), MAX_MESSAGE);
        assert!(long.msg.ends_with("(record: deprovisionrequest/lumos-abc-1)"), "{}", long.msg);
        let pending = answer("lumos-abc-1", None);
        assert_eq!(pending.response, "FAILURE");
        assert!(pending.msg.contains("in progress") && pending.msg.contains("lumos-abc-1"));
    }

    #[test]
    fn clip_is_char_safe() {
        let long = "é".repeat(1000);
        let c = clip(long);
        assert_eq!(c.chars().count(), MAX_MESSAGE);
    }

    #[test]
    fn condition_transition_time_moves_only_on_change() {
        let mut conds = vec![];
        set_condition(&mut conds, "Complete", false, "InProgress", "", Some(1));
        let t0 = conds[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(2));
        set_condition(&mut conds, "Complete", false, "StillGoing", "x", Some(1));
        assert_eq!(conds[0].last_transition_time, t0);
        assert_eq!(conds[0].reason, "StillGoing");
        set_condition(&mut conds, "Complete", true, "Succeeded", "", Some(1));
        assert_ne!(conds[0].last_transition_time, t0);
        assert_eq!(conds.len(), 1);
    }
}
