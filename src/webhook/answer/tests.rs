use super::*;
use crate::text::MAX_MESSAGE;

#[test]
fn answers_map_phases() {
    let mut s =
        DeprovisionRequestStatus { phase: Phase::Succeeded, message: Some("Removed".into()), ..Default::default() };
    assert_eq!(LumosAnswer::for_record("n", Some(&s)).response, Verdict::Success);
    s.phase = Phase::Failed;
    assert_eq!(LumosAnswer::for_record("n", Some(&s)).response, Verdict::Failure);
    s.phase = Phase::DryRun;
    assert_eq!(LumosAnswer::for_record("n", Some(&s)).response, Verdict::Success);
    s.message = Some("x".repeat(2 * MAX_MESSAGE));
    let long = LumosAnswer::for_record("lumos-abc-1", Some(&s));
    assert_eq!(long.msg.chars().count(), MAX_MESSAGE);
    assert!(long.msg.ends_with("(record: deprovisionrequest/lumos-abc-1)"), "{}", long.msg);
    let pending = LumosAnswer::for_record("lumos-abc-1", None);
    assert_eq!(pending.response, Verdict::Failure);
    assert!(pending.msg.contains("in progress") && pending.msg.contains("lumos-abc-1"));
}

#[test]
fn the_verdict_is_spelled_as_lumos_expects() {
    let json = serde_json::to_value(LumosAnswer::success("ok")).unwrap();
    assert_eq!(json, serde_json::json!({"response": "SUCCESS", "msg": "ok"}));
}

#[test]
fn a_fleet_record_unfinished_at_the_deadline_names_who_has_not_answered() {
    let s = DeprovisionRequestStatus {
        phase: Phase::InProgress,
        message: Some(
            "1 of 2 clusters answered: a: Succeeded (record deprovisionrequest/fleet-x); b: no answer yet".into(),
        ),
        members: vec![crate::crd::MemberRecord::default()],
        ..Default::default()
    };
    let a = LumosAnswer::for_record("lumos-abc-1", Some(&s));
    assert_eq!(a.response, Verdict::Failure);
    assert!(a.msg.contains("b: no answer yet") && a.msg.contains("fleet-x"), "{}", a.msg);
    assert!(a.msg.ends_with("(record: deprovisionrequest/lumos-abc-1)"), "{}", a.msg);
    assert_eq!(a.msg.matches("lumos-abc-1").count(), 1, "{}", a.msg);
}
