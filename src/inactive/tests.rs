use super::*;
use crate::activity::Entry;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn row(account: &str, known: Known, judged: Inactivity) -> Row {
    let reason = (judged == Inactivity::Unproven).then(|| "its shard was never stored".to_string());
    Row { account: account.into(), kind: "User", bindings: vec!["RoleBinding team/devs".into()], known, judged, reason }
}

fn report(all: bool) -> Report {
    let seen = Entry {
        at: ts("2025-03-12T00:00:00Z"),
        credential: Some("JTI=1".into()),
        impersonated_by: None,
        what: Some("get pods".into()),
    };
    Report {
        generated_at: ts("2025-03-20T00:00:00Z"),
        window: "10days".into(),
        from: ts("2025-03-10T00:00:00Z"),
        recording_since: Some(ts("2025-03-01T00:00:00Z")),
        coverage: Some(Coverage {
            covered_from: ts("2025-03-01T00:00:00Z"),
            heard_at: ts("2025-03-19T23:59:30Z"),
            resolution_seconds: 60,
            gap_seconds: 300,
        }),
        rows: vec![
            row("User:active", Known::Seen(seen), Inactivity::Active),
            row("User:gone", Known::NotSeenSince(ts("2025-03-01T00:00:00Z")), Inactivity::Inactive),
            row("User:new", Known::NotRecorded, Inactivity::Unproven),
        ],
        all,
    }
}

#[test]
fn inactive_come_first_unproven_apart_and_active_only_with_all() {
    let names = |r: &Report| r.shown().iter().map(|r| r.account.clone()).collect::<Vec<_>>();
    assert_eq!(names(&report(false)), ["User:gone", "User:new"]);
    assert_eq!(names(&report(true)), ["User:gone", "User:new", "User:active"]);
    let t = table(&report(false));
    let inactive = t.find("Inactive (recording covered").unwrap();
    let unproven = t.find("Not proven inactive").unwrap();
    assert!(inactive < t.find("User:gone").unwrap() && t.find("User:gone").unwrap() < unproven, "{t}");
    assert!(t.find("User:new").unwrap() > unproven, "{t}");
    assert!(!t.contains("User:active"), "{t}");
}

#[test]
fn csv_and_json_say_the_status_and_what_the_store_said() {
    let c = csv(&report(true));
    let lines: Vec<&str> = c.lines().collect();
    assert_eq!(lines[0], "account,kind,status,lastSeen,what,credential,bindingCount,bindings");
    assert_eq!(lines[1], "User:gone,User,inactive,not since 2025-03-01T00:00:00Z,,,1,RoleBinding team/devs");
    assert_eq!(lines[2], "User:new,User,unproven,not recorded,,,1,RoleBinding team/devs");
    assert_eq!(lines[3], "User:active,User,active,2025-03-12T00:00:00Z,get pods,JTI=1,1,RoleBinding team/devs");
    let j = report(false).json();
    assert_eq!(j["from"], "2025-03-10T00:00:00Z");
    assert_eq!(j["accounts"][0]["status"], "inactive");
    assert_eq!(j["accounts"][0]["notSeenSince"], "2025-03-01T00:00:00Z");
    assert_eq!(j["accounts"][1]["status"], "unproven");
    assert_eq!(j["accounts"][1]["recorded"], false);
    assert_eq!(j["accounts"].as_array().unwrap().len(), 2);
}

#[test]
fn the_report_says_what_stretch_the_store_observed_and_why_each_is_unproven() {
    let t = table(&report(false));
    assert!(
        t.contains("Audit events received without a break since 2025-03-01T00:00:00Z, last at 2025-03-19T23:59:30Z"),
        "{t}"
    );
    assert!(!t.contains("STOPPED"), "{t}");
    assert!(t.contains("  why: its shard was never stored"), "{t}");
    let j = report(false).json();
    assert_eq!((&j["coveredFrom"], &j["heardAt"]), (&json!("2025-03-01T00:00:00Z"), &json!("2025-03-19T23:59:30Z")));
    assert_eq!(j["accounts"][1]["reason"], "its shard was never stored");
    let mut r = report(false);
    r.coverage.as_mut().unwrap().heard_at = ts("2025-03-18T00:00:00Z");
    assert!(table(&r).contains("STOPPED arriving"), "{}", table(&r));
    r.coverage = None;
    assert!(table(&r).contains("No audit batch was ever stored"), "{}", table(&r));
}
