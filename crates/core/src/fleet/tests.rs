use super::*;
use crate::crd::{Application, MemberReport, Person};

fn spec(app: &str) -> DeprovisionRequestSpec {
    DeprovisionRequestSpec {
        application: Application { app_id: Some(app.into()), ..Default::default() },
        permissions: vec![],
        user: None,
        target_user: Person { email: "ann@x.com".into(), ..Default::default() },
        request_comment: None,
        custom_fields: Default::default(),
        source: Default::default(),
        dry_run: false,
        expiry: None,
        hub_source: None,
    }
}

fn member(name: &str, labels: &[(&str, &str)]) -> Member {
    Member {
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        mailbox: format!("deprovisioner-member-{name}"),
    }
}

fn set(name: &str, app: &str, labels: &[(&str, &str)]) -> Set {
    Set {
        name: name.into(),
        application: ApplicationSelector { app_id: Some(app.into()), instance_id: None },
        match_labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn answered(cluster: &str, phase: MemberPhase) -> MemberRecord {
    MemberRecord {
        cluster: cluster.into(),
        member_request: "uid".into(),
        mailbox: format!("deprovisioner-member-{cluster}"),
        reported: MemberReport {
            phase,
            record: (phase != MemberPhase::Pending).then(|| format!("fleet-{cluster}")),
            message: Some("boom".into()),
            ..Default::default()
        },
    }
}

#[test]
fn selects_members_by_every_label_of_the_sets_for_the_app() {
    let members = [
        member("prod", &[("env", "prod"), ("fleet", "all")]),
        member("dev", &[("env", "dev"), ("fleet", "all")]),
        member("other", &[]),
    ];
    let sets =
        [set("b", "demo", &[("env", "prod")]), set("a", "demo", &[("fleet", "all")]), set("c", "x", &[("env", "dev")])];
    let s = select(&spec("demo"), &sets, &members);
    assert_eq!(s.sets, ["a", "b"]);
    assert_eq!(s.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["dev", "prod"]);
    let only_prod = select(&spec("demo"), &sets[..1], &members);
    assert_eq!(only_prod.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["prod"]);
    assert_eq!(select(&spec("none"), &sets, &members), Selection::default());
}

#[test]
fn an_empty_selector_selects_no_member() {
    let s = select(&spec("demo"), &[set("a", "demo", &[])], &[member("prod", &[])]);
    assert_eq!(s.sets, ["a"]);
    assert!(s.members.is_empty());
}

#[test]
fn names_are_the_uids() {
    assert_eq!(member_request_name("AB-12"), "ab-12");
    assert_eq!(local_record_name("ab-12"), "fleet-ab-12");
}

#[test]
fn an_agent_refuses_a_request_for_another_cluster() {
    let mut mr =
        MemberRequestSpec { cluster: "a".into(), hub_record: "r".into(), hub_uid: "u".into(), request: spec("demo") };
    assert_eq!(admit("a", &mr), Admission::Take);
    mr.cluster = "b".into();
    match admit("a", &mr) {
        Admission::Refuse(why) => assert!(why.contains("cluster a") && why.contains("\"b\""), "{why}"),
        Admission::Take => panic!("took a request for b"),
    }
}

#[test]
fn succeeded_only_when_every_member_succeeded() {
    let (p, msg) = hub_outcome(&[answered("a", MemberPhase::Succeeded), answered("b", MemberPhase::Succeeded)], false);
    assert_eq!(p, Phase::Succeeded);
    assert!(msg.starts_with("Succeeded in all 2 clusters"), "{msg}");
    assert!(msg.contains("deprovisionrequest/fleet-a"), "{msg}");
}

#[test]
fn waits_for_a_member_that_has_not_answered_and_names_it() {
    let (p, msg) = hub_outcome(&[answered("a", MemberPhase::Succeeded), answered("b", MemberPhase::Pending)], false);
    assert_eq!(p, Phase::InProgress);
    assert!(msg.contains("b: no answer yet"), "{msg}");
    assert!(msg.contains("1 of 2 clusters answered"), "{msg}");
}

#[test]
fn failed_names_each_cluster_that_failed_with_its_record() {
    let (p, msg) = hub_outcome(
        &[
            answered("a", MemberPhase::Failed),
            answered("b", MemberPhase::Refused),
            answered("c", MemberPhase::Succeeded),
        ],
        false,
    );
    assert_eq!(p, Phase::Failed);
    assert!(msg.starts_with("Failed in 2 of 3 clusters"), "{msg}");
    assert!(msg.contains("a: Failed: boom (record deprovisionrequest/fleet-a)"), "{msg}");
    assert!(msg.contains("b: Refused"), "{msg}");
}

#[test]
fn no_member_fails() {
    assert_eq!(hub_outcome(&[], false).0, Phase::Failed);
}

#[test]
fn member_phases() {
    assert_eq!(member_phase(Phase::Pending), MemberPhase::InProgress);
    assert_eq!(member_phase(Phase::Failed), MemberPhase::Failed);
    assert!(MemberPhase::Refused.is_terminal() && !MemberPhase::Refused.is_success());
}

#[test]
fn a_member_is_waited_for_until_the_timeout_then_withdrawn_saying_only_what_it_reported() {
    let t = |s: &str| s.parse::<k8s_openapi::jiff::Timestamp>().unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let left = wait_left(t("2026-12-07T00:00:00Z"), t("2026-12-07T06:00:00Z"), day);
    assert_eq!(left, Some(std::time::Duration::from_secs(18 * 3600)));
    assert_eq!(wait_left(t("2026-12-07T00:00:00Z"), t("2026-12-08T00:00:00Z"), day), None);
    assert!(wait_left(t("2026-12-07T00:00:00Z"), t("2026-12-06T00:00:00Z"), day).is_some(), "a clock behind");
    let silent = withdrawn(&MemberReport::default(), "1day");
    assert_eq!(silent.phase, MemberPhase::Failed);
    assert!(silent.message.unwrap().contains("did not answer within 1day of the call: withdrawn"));
    let took = MemberReport { phase: MemberPhase::InProgress, record: Some("fleet-x".into()), ..Default::default() };
    let took = withdrawn(&took, "1day");
    assert_eq!(took.record.as_deref(), Some("fleet-x"));
    assert!(took.message.unwrap().contains("its own record there (deprovisionrequest/fleet-x)"));
    // The hub record then ends, naming it.
    let (p, msg) = hub_outcome(
        &[
            answered("a", MemberPhase::Succeeded),
            MemberRecord { reported: silent_report(), ..answered("b", MemberPhase::Pending) },
        ],
        false,
    );
    assert_eq!(p, Phase::Failed);
    assert!(msg.contains("b: Failed: did not answer"), "{msg}");
}

fn silent_report() -> MemberReport {
    withdrawn(&MemberReport::default(), "1day")
}

#[test]
fn a_members_dry_run_is_a_success_only_for_a_dry_run() {
    let both = [answered("a", MemberPhase::Succeeded), answered("b", MemberPhase::DryRun)];
    let (p, msg) = hub_outcome(&both, false);
    assert_eq!(p, Phase::Failed, "a removal that a member only planned did not succeed: {msg}");
    assert!(msg.starts_with("Failed in 1 of 2 clusters"), "{msg}");
    let dry = [answered("a", MemberPhase::DryRun), answered("b", MemberPhase::DryRun)];
    assert_eq!(hub_outcome(&dry, true).0, Phase::DryRun);
}

#[test]
fn only_lumos_calls_manual_requests_and_addressed_connector_requests_reach_members() {
    let mut s = spec("demo");
    for (source, reaches) in [
        (RequestSource::LumosWebhook, true),
        (RequestSource::Manual, true),
        (RequestSource::LumosConnector, false),
        (RequestSource::Expiry, false),
        (RequestSource::Fleet, false),
    ] {
        s.source = source;
        assert_eq!(reaches_members(&s), reaches, "{source:?}");
    }
    s.source = RequestSource::LumosConnector;
    address_to(&mut s, "b");
    assert!(reaches_members(&s), "a connector request addressed to member b");
}
