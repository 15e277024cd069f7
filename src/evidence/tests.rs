//! The pure parts of `evidence`: flags, time parsing, filtering, rows, CSV quoting, HTML escaping.

use std::time::Duration;

use clap::Parser;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::row::{Filter, RequestEvidence, Totals, Verdict, select};
use super::time::{When, parse_when};
use super::*;
use crate::cli::{Cli, Command};
use crate::crd::{
    Action, ActionKind, ActionResult, BindingAction, BindingRef, BindingScope, DeprovisionRequest,
    DeprovisionRequestStatus, EmptyBindingRule, Outcome, Phase, PlannedAction, SubjectRef,
};
use crate::fixtures;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn binding_result(id: i32, outcome: Outcome, before: &[&str], after: &[&str]) -> ActionResult {
    ActionResult {
        id,
        kind: ActionKind::RemoveBindingSubject,
        object: format!("RoleBinding team-a/b{id}"),
        subject: "User ann@x.com".into(),
        outcome,
        message: format!("removed User ann@x.com from RoleBinding team-a/b{id}"),
        at: Time(ts("2025-03-01T10:00:02Z")),
        external: None,
        subjects_before: Some(before.iter().map(|s| s.to_string()).collect()),
        subjects_after: Some(after.iter().map(|s| s.to_string()).collect()),
    }
}

fn planned(id: i32, role: &str) -> PlannedAction {
    PlannedAction {
        id,
        policy: "p".into(),
        reason: "r".into(),
        action: Action::RemoveBindingSubject(BindingAction {
            binding: BindingRef {
                scope: BindingScope::Namespaced("team-a".into()),
                name: format!("b{id}"),
                uid: "u".into(),
                role_ref: role.into(),
            },
            subject: SubjectRef { kind: "User".into(), name: "ann@x.com".into(), namespace: None },
            when_empty: EmptyBindingRule::Delete,
            managed_by: None,
        }),
    }
}

/// A finished request for `email` and `app`, called at `at`.
fn request(name: &str, app: &str, email: &str, at: &str, results: Vec<ActionResult>) -> DeprovisionRequest {
    let spec = fixtures::request_spec(app, email).given_name("Ann").family_name("Lee").permissions(["admin"]).build();
    let mut r = fixtures::request(name, spec);
    r.metadata.creation_timestamp = Some(Time(ts(at)));
    r.status = Some(DeprovisionRequestStatus {
        phase: Phase::Succeeded,
        plan: results.iter().map(|x| planned(x.id, "ClusterRole/edit")).collect(),
        results,
        completed_at: Some(Time(ts("2025-03-01T10:00:03Z"))),
        message: Some("Removed ann@x.com from RoleBinding team-a/b0".into()),
        ..Default::default()
    });
    r
}

fn verified(mut r: DeprovisionRequest, status: &str, message: &str) -> DeprovisionRequest {
    r.status.as_mut().unwrap().conditions.push(Condition {
        type_: "Verified".into(),
        status: status.into(),
        reason: "Checked".into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(ts("2025-03-01T10:00:04Z")),
    });
    r
}

#[test]
fn times_are_rfc3339_dates_or_durations_back_from_now() {
    let now = ts("2025-03-31T12:00:00Z");
    assert_eq!(parse_when("2025-03-01T09:30:00Z"), Ok(When::At(ts("2025-03-01T09:30:00Z"))));
    assert_eq!(parse_when("2025-03-01T10:30:00+01:00"), Ok(When::At(ts("2025-03-01T09:30:00Z"))));
    assert_eq!(parse_when("2025-03-01"), Ok(When::At(ts("2025-03-01T00:00:00Z"))));
    assert_eq!(parse_when("30d").unwrap().resolve(now), Ok(ts("2025-03-01T12:00:00Z")));
    assert_eq!(parse_when("12h").unwrap().resolve(now), Ok(ts("2025-03-31T00:00:00Z")));
    assert_eq!(parse_when(" 1week ").unwrap(), When::Ago(Duration::from_secs(7 * 86_400)));
    let e = parse_when("last tuesday").unwrap_err();
    assert!(e.contains("RFC 3339") && e.contains("30d"), "{e}");
    assert!(When::Ago(Duration::from_secs(u64::MAX)).resolve(now).is_err());
}

fn evidence(args: &[&str]) -> Result<EvidenceArgs, String> {
    let mut all = vec!["deprovisioner", "evidence"];
    all.extend_from_slice(args);
    match Cli::try_parse_from(all).map_err(|e| e.to_string())?.command {
        Command::Evidence(a) => Ok(a),
        other => panic!("{other:?}"),
    }
}

#[test]
fn evidence_flags_parse_and_resolve_against_now() {
    let a = evidence(&["--since", "30d", "--until", "2025-03-31", "--person", "Ann@X.com"]).unwrap();
    assert_eq!(a.format, EvidenceFormat::Html);
    let f = filter(&a, ts("2025-03-31T12:00:00Z")).unwrap();
    assert_eq!(f.since, Some(ts("2025-03-01T12:00:00Z")));
    assert_eq!(f.until, Some(ts("2025-03-31T00:00:00Z")));
    assert_eq!(f.person.as_deref(), Some("Ann@X.com"));
    let a = evidence(&["--since", "1d", "--until", "2d"]).unwrap();
    assert!(filter(&a, Timestamp::now()).unwrap_err().to_string().contains("must be before --until"));
    assert!(evidence(&["--out-dir", "d", "--format", "csv"]).unwrap_err().contains("cannot be used with"));
    assert!(evidence(&["--out-dir", "d", "-o", "f"]).is_err());
    assert!(evidence(&["--since", "soon"]).unwrap_err().contains("RFC 3339"));
    assert_eq!(evidence(&["--format", "csv", "-o", "x.csv"]).unwrap().format, EvidenceFormat::Csv);
    // The binary's own name is not checked: run as `kubectl-deprovisioner` it parses the same.
    let as_plugin = Cli::try_parse_from(["kubectl-deprovisioner", "evidence", "--format", "json"]).unwrap();
    assert!(matches!(as_plugin.command, Command::Evidence(a) if a.format == EvidenceFormat::Json));
}

#[test]
fn the_filter_takes_a_half_open_range_an_app_and_a_person_in_any_case() {
    let all = [
        request("r-feb", "app-a", "ann@x.com", "2025-02-28T23:59:59Z", vec![]),
        request("r-mar", "app-a", "Ann@X.com", "2025-03-01T00:00:00Z", vec![]),
        request("r-bob", "app-b", "bob@x.com", "2025-03-15T00:00:00Z", vec![]),
        request("r-apr", "app-a", "ann@x.com", "2025-04-01T00:00:00Z", vec![]),
    ];
    let names = |f: &Filter| select(&all, f).into_iter().map(|r| r.name).collect::<Vec<_>>();
    let march = Filter {
        since: Some(ts("2025-03-01T00:00:00Z")),
        until: Some(ts("2025-04-01T00:00:00Z")),
        ..Default::default()
    };
    assert_eq!(names(&march), ["r-mar", "r-bob"]);
    assert_eq!(names(&Filter { person: Some("ANN@x.com".into()), ..march.clone() }), ["r-mar"]);
    assert_eq!(names(&Filter { app: Some("app-b".into()), ..march.clone() }), ["r-bob"]);
    assert_eq!(names(&Filter::default()), ["r-feb", "r-mar", "r-bob", "r-apr"]);
    assert_eq!(names(&Filter { person: Some("nobody@x.com".into()), ..Default::default() }), Vec::<String>::new());
}

#[test]
fn one_row_per_action_with_the_request_the_role_and_the_subjects() {
    let r = request(
        "r1",
        "app-a",
        "ann@x.com",
        "2025-03-01T10:00:00Z",
        vec![
            binding_result(0, Outcome::Removed, &["User:ann@x.com", "Group:team-a"], &["Group:team-a"]),
            binding_result(1, Outcome::Deleted, &["User:ann@x.com"], &[]),
        ],
    );
    let rows = RequestEvidence::of(&r).rows();
    assert_eq!(rows.len(), 2);
    let row = &rows[0];
    assert_eq!(
        (row.request.as_str(), row.person.as_str(), row.app.as_str(), row.permissions.as_str()),
        ("r1", "ann@x.com", "app-a", "admin")
    );
    assert_eq!((row.called_at.as_str(), row.completed_at.as_str()), ("2025-03-01T10:00:00Z", "2025-03-01T10:00:03Z"));
    assert_eq!((row.action, row.role.as_str(), row.outcome.as_str()), (Some(0), "ClusterRole/edit", "Removed"));
    assert_eq!(row.subjects_before.as_deref().unwrap(), ["User:ann@x.com", "Group:team-a"]);
    assert_eq!(row.subjects_after.as_deref().unwrap(), ["Group:team-a"]);
    assert_eq!(row.verification, "not verified");
    assert_eq!(rows[1].subjects_after.as_deref(), Some(&[][..]));

    // A request with no results still gets a row, carrying its message.
    let mut unplanned = request("r2", "app-a", "ann@x.com", "2025-03-01T10:00:00Z", vec![]);
    unplanned.status.as_mut().unwrap().phase = Phase::Failed;
    unplanned.status.as_mut().unwrap().message = Some("No DeprovisionPolicy covers app-a".into());
    let rows = RequestEvidence::of(&unplanned).rows();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].action, rows[0].phase.as_str()), (None, "Failed"));
    assert!(rows[0].message.contains("No DeprovisionPolicy"));
}

#[test]
fn the_verdict_comes_from_the_verified_condition() {
    let r = request("r", "a", "ann@x.com", "2025-03-01T10:00:00Z", vec![]);
    assert_eq!(Verdict::of(&r), Verdict::NotVerified);
    assert_eq!(Verdict::of(&verified(r.clone(), "True", "ok")).text(), "verified: no remaining access");
    let failed = verified(r.clone(), "False", "User ann@x.com still in RoleBinding team-a/x");
    assert_eq!(Verdict::of(&failed).text(), "User ann@x.com still in RoleBinding team-a/x");
    assert_eq!(Verdict::of(&verified(r, "Unknown", "")), Verdict::NotVerified);
}

#[test]
fn csv_quotes_commas_quotes_and_line_breaks_and_defuses_formulas() {
    assert_eq!(csv::field("plain"), "plain");
    assert_eq!(csv::field("a,b"), "\"a,b\"");
    assert_eq!(csv::field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv::field("two\nlines"), "\"two\nlines\"");
    assert_eq!(csv::field("cr\rlf"), "\"cr\rlf\"");
    assert_eq!(csv::field(" padded"), "\" padded\"");
    assert_eq!(csv::field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    assert_eq!(csv::field("@sum"), "'@sum");
    assert_eq!(csv::field(""), "");

    let mut r = request(
        "r1",
        "app, with comma",
        "ann@x.com",
        "2025-03-01T10:00:00Z",
        vec![binding_result(0, Outcome::Deleted, &["User:ann@x.com", "Group:a,b"], &[])],
    );
    r.status.as_mut().unwrap().results[0].message = "line one\n\"quoted\"".into();
    let text = csv::render(&RequestEvidence::of(&r).rows());
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next().unwrap(), csv::HEADER.join(","));
    let row = lines.next().unwrap();
    assert!(row.starts_with("r1,ann@x.com,\"app, with comma\",admin,2025-03-01T10:00:00Z,"), "{row}");
    assert!(row.contains(",\"line one\n\"\"quoted\"\"\","), "{row}");
    assert!(row.contains(",\"User:ann@x.com; Group:a,b\",(none),not verified"), "{row}");
    assert_eq!(lines.collect::<Vec<_>>(), [""], "one row, CRLF-terminated");
}

#[test]
fn html_escapes_every_recorded_text() {
    assert_eq!(
        html::escape("<script>alert('x')</script> & \"q\""),
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
    );

    let evil = "<script>alert(1)</script>";
    let spec = fixtures::request_spec("<b>app</b>", "ann@x.com").given_name(evil).app_label("<i>label</i>").build();
    let mut r = fixtures::request("r-<x>", spec);
    r.metadata.creation_timestamp = Some(Time(ts("2025-03-01T10:00:00Z")));
    let mut res = binding_result(0, Outcome::Failed, &["User:<img src=x onerror=alert(1)>"], &["User:<img>"]);
    res.message = evil.into();
    r.status = Some(DeprovisionRequestStatus {
        phase: Phase::Failed,
        results: vec![res],
        message: Some(evil.into()),
        ..Default::default()
    });
    let r = verified(r, "False", evil);
    let report = Report {
        generated_at: ts("2025-03-31T12:00:00Z"),
        cluster: "https://<cluster>".into(),
        filter: Filter { person: Some(evil.into()), app: Some(evil.into()), ..Default::default() },
        requests: select(&[r], &Filter::default()),
    };
    let page = html::render(&report);
    assert!(!page.contains("<script"), "unescaped script in:\n{page}");
    assert!(!page.contains("<img"), "unescaped img");
    assert!(!page.contains("<b>app") && !page.contains("<i>label"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("r-&lt;x&gt;") && page.contains("https://&lt;cluster&gt;"));
    // Self-contained: no scripts, links or remote assets.
    // (An escaped `src=` inside text is harmless: it is not in a tag.)
    for banned in ["<script", "<link", "<img", "<iframe", "href=", "@import", "url("] {
        assert!(!page.contains(banned), "{banned} in the page");
    }
}

#[test]
fn html_summarizes_outcomes_and_verdicts_and_shows_what_was_removed() {
    let ok = verified(
        request(
            "r-ok",
            "app-a",
            "ann@x.com",
            "2025-03-01T10:00:00Z",
            vec![
                binding_result(0, Outcome::Removed, &["User:ann@x.com", "Group:team-a"], &["Group:team-a"]),
                binding_result(1, Outcome::Deleted, &["User:ann@x.com"], &[]),
                binding_result(2, Outcome::AlreadyAbsent, &["Group:x"], &["Group:x"]),
            ],
        ),
        "True",
        "",
    );
    let bad = verified(request("r-bad", "app-a", "bob@x.com", "2025-03-02T10:00:00Z", vec![]), "False", "still bound");
    let none = request("r-none", "app-a", "cy@x.com", "2025-03-03T10:00:00Z", vec![]);
    let requests = select(&[bad, none, ok], &Filter::default());
    assert_eq!(
        requests.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["r-ok", "r-bad", "r-none"],
        "oldest call first"
    );
    let t = Totals::of(&requests);
    assert_eq!((t.requests, t.actions, t.by_outcome), (3, 3, [1, 1, 0, 1, 0]));
    assert_eq!((t.verified, t.verification_failed, t.not_verified), (1, 1, 1));
    let report =
        Report { generated_at: ts("2025-03-31T12:00:00Z"), cluster: "c".into(), filter: Filter::default(), requests };
    let page = html::render(&report);
    assert!(page.contains("<li class=\"gone\">User:ann@x.com</li><li>Group:team-a</li>"), "removed name struck");
    assert!(page.contains("none: binding deleted"));
    assert!(
        page.contains("verified: no remaining access") && page.contains("still bound") && page.contains("not verified")
    );
    assert!(page.contains("Ann Lee &lt;ann@x.com&gt;"));
    assert!(page.contains("ClusterRole/edit"));

    let json: serde_json::Value = serde_json::from_str(&report.render(EvidenceFormat::Json).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "three actions, and one row for each request without results");
    assert_eq!(rows[1]["subjectsAfter"], serde_json::json!([]));
    assert_eq!(rows[0]["subjectsBefore"], serde_json::json!(["User:ann@x.com", "Group:team-a"]));
    assert_eq!(json["generatedAt"], "2025-03-31T12:00:00Z");
}

/// A writer whose reader has gone (`evidence | head` once head exits), or that fails otherwise.
struct Closed(std::io::ErrorKind);

impl std::io::Write for Closed {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(self.0.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_closed_pipe_ends_the_report_quietly_and_other_write_errors_fail() {
    let mut out = Vec::new();
    to_stdout(&mut out, "a,b\n").unwrap();
    assert_eq!(out, b"a,b\n");
    assert!(to_stdout(Closed(std::io::ErrorKind::BrokenPipe), "a,b\n").is_ok(), "the reader stopped: no error");
    let err = to_stdout(Closed(std::io::ErrorKind::StorageFull), "a,b\n").unwrap_err();
    assert!(format!("{err:#}").starts_with("writing to stdout"), "{err:#}");
}

#[test]
fn the_last_activity_a_removal_was_based_on_is_in_every_format() {
    use crate::activity::{Entry, Known};
    use crate::crd::{AccountActivity, RecordedActivity};
    let mut r = request(
        "r1",
        "kubernetes",
        "ann@x.com",
        "2025-03-01T10:00:00Z",
        vec![binding_result(0, Outcome::Removed, &["User:ann@x.com"], &[])],
    );
    let seen = Known::Seen(Entry {
        at: ts("2025-01-02T03:04:05Z"),
        credential: Some("X509SHA256=ab".into()),
        impersonated_by: None,
        what: Some("get <pods>".into()),
    });
    r.status.as_mut().unwrap().last_activity = Some(RecordedActivity {
        read_at: Some(Time(ts("2025-03-01T10:00:01Z"))),
        accounts: vec![
            AccountActivity::of("User:ann@x.com", &seen),
            AccountActivity::of("ServiceAccount:ci/bot", &Known::NotRecorded),
        ],
        error: None,
        covered_from: None,
        heard_at: None,
    });
    let e = RequestEvidence::of(&r);
    let rows = e.rows();
    assert_eq!(
        rows[0].last_activity,
        "User:ann@x.com: last active 2025-01-02T03:04:05Z (get <pods>, credential X509SHA256=ab); ServiceAccount:ci/bot: no activity recorded (recording never began for it)"
    );
    let csv = csv::render(&rows);
    assert!(csv.lines().next().unwrap().ends_with(",endedBy,lastActivity"), "{csv}");
    assert!(csv.contains("User:ann@x.com: last active 2025-01-02T03:04:05Z"), "{csv}");
    let report = Report {
        generated_at: ts("2025-03-02T00:00:00Z"),
        cluster: "c".into(),
        filter: Filter::default(),
        requests: vec![e],
    };
    let html = html::render(&report);
    assert!(html.contains("<dt>Last activity</dt>"), "{html}");
    assert!(html.contains("last active 2025-01-02T03:04:05Z (get &lt;pods&gt;"), "escaped: {html}");
    let json: serde_json::Value = serde_json::from_str(&report.render(EvidenceFormat::Json).unwrap()).unwrap();
    assert!(json["rows"][0]["lastActivity"].as_str().unwrap().starts_with("User:ann@x.com: last active"));

    // With the store's coverage when it was read: what stretch of time it had observed.
    let la = r.status.as_mut().unwrap().last_activity.as_mut().unwrap();
    la.covered_from = Some(Time(ts("2025-01-01T00:00:00Z")));
    la.heard_at = Some(Time(ts("2025-03-01T10:00:00Z")));
    assert!(
        RequestEvidence::of(&r).rows()[0]
            .last_activity
            .ends_with("(audit events received without a break from 2025-01-01T00:00:00Z to 2025-03-01T10:00:00Z)"),
        "{}",
        RequestEvidence::of(&r).rows()[0].last_activity
    );

    // A failed read says so; a request without one shows nothing.
    r.status.as_mut().unwrap().last_activity = Some(crate::controller::activity::failed("403 Forbidden"));
    assert_eq!(RequestEvidence::of(&r).rows()[0].last_activity, "not read: 403 Forbidden");
    r.status.as_mut().unwrap().last_activity = None;
    assert_eq!(RequestEvidence::of(&r).rows()[0].last_activity, "");
}

#[test]
fn an_expiry_says_when_the_access_started_and_what_ended_it_in_every_format() {
    use crate::crd::{EndedBy, Expiry, RequestSource, StartEvidence};
    let mut r = request(
        "expiry-1",
        "kubernetes",
        "User:ann@x.com",
        "2025-03-01T10:00:00Z",
        vec![binding_result(0, Outcome::Removed, &["User:ann@x.com"], &[])],
    );
    r.spec.source = RequestSource::Expiry;
    r.spec.expiry = Some(Expiry {
        binding: BindingRef {
            scope: BindingScope::Namespaced("team-a".into()),
            name: "b0".into(),
            uid: "u".into(),
            role_ref: "ClusterRole/edit".into(),
        },
        subject: SubjectRef { kind: "User".into(), name: "ann@x.com".into(), namespace: None },
        account: "User:ann@x.com".into(),
        started_at: Time(ts("2025-01-30T09:00:00Z")),
        started_from: StartEvidence::Created,
        due_at: Time(ts("2025-03-01T09:00:00Z")),
        ended_by: EndedBy::MaxAccess,
        policy: "p".into(),
        reason: "DeprovisionPolicy <p> rules[0] maxAccess 720h".into(),
        binding_version: Some("10".into()),
    });
    let e = RequestEvidence::of(&r);
    let rows = e.rows();
    assert_eq!(rows[0].access_started, "2025-01-30T09:00:00Z (Created)");
    assert_eq!(rows[0].ended_by, "DeprovisionPolicy <p> rules[0] maxAccess 720h");
    let csv = csv::render(&rows);
    assert!(csv.contains(",2025-01-30T09:00:00Z (Created),DeprovisionPolicy <p> rules[0] maxAccess 720h,"), "{csv}");
    let report = Report {
        generated_at: ts("2025-03-02T00:00:00Z"),
        cluster: "c".into(),
        filter: Filter::default(),
        requests: vec![e],
    };
    let page = html::render(&report);
    assert!(page.contains("<dt>Access started</dt><dd>2025-01-30T09:00:00Z (Created)</dd>"), "{page}");
    assert!(page.contains("<dt>Ended by</dt><dd>DeprovisionPolicy &lt;p&gt; rules[0] maxAccess 720h</dd>"), "{page}");
    assert!(!page.contains("<p>"), "escaped");
    assert!(page.contains("<dt>Expiry recorded</dt>") && !page.contains("<dt>Lumos call</dt>"), "{page}");
    let json: serde_json::Value = serde_json::from_str(&report.render(EvidenceFormat::Json).unwrap()).unwrap();
    assert_eq!(json["rows"][0]["accessStarted"], "2025-01-30T09:00:00Z (Created)");

    // A request that is no expiry shows neither.
    r.spec.expiry = None;
    let report = Report { requests: vec![RequestEvidence::of(&r)], ..report };
    let page = html::render(&report);
    assert!(!page.contains("Access started") && page.contains("<dt>Lumos call</dt>"));
}
