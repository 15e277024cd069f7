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
