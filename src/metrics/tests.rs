use super::*;

#[test]
fn exposition_names_every_metric() {
    let m = Metrics::new();
    m.webhook_answers.get_or_create(&AnswerLabels { response: "SUCCESS", code: 200 }).inc();
    m.actions.get_or_create(&ActionLabels { kind: "RemoveBindingSubject", outcome: "Removed" }).inc();
    m.reconcile_errors.get_or_create(&ErrorLabels { kind: "status_conflict" }).inc();
    let text = m.encode();
    assert!(text.contains(r#"deprovisioner_webhook_answers_total{response="SUCCESS",code="200"} 1"#), "{text}");
    assert!(text.contains(r#"deprovisioner_actions_total{kind="RemoveBindingSubject",outcome="Removed"} 1"#), "{text}");
    assert!(text.contains("deprovisioner_webhook_seconds_bucket"));
    assert!(text.contains(r#"deprovisioner_reconcile_errors_total{kind="status_conflict"} 1"#), "{text}");
}

#[test]
fn the_series_alerts_watch_exist_from_the_start_at_zero() {
    let text = Metrics::new().encode();
    for line in [
        r#"deprovisioner_requests_finished_total{phase="Failed"} 0"#,
        r#"deprovisioner_requests_finished_total{phase="Succeeded"} 0"#,
        r#"deprovisioner_verifications_total{verdict="unverified"} 0"#,
        r#"deprovisioner_verifications_total{verdict="access_remains"} 0"#,
        r#"deprovisioner_verifications_total{verdict="verified"} 0"#,
        "deprovisioner_webhook_deadline_reached_total 0",
        "deprovisioner_leader 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
    }
}

#[test]
fn leader_is_one_while_leading() {
    let m = Metrics::new();
    let leading = m.leading();
    assert!(m.encode().lines().any(|l| l == "deprovisioner_leader 1"));
    drop(leading);
    assert!(m.encode().lines().any(|l| l == "deprovisioner_leader 0"));
}
