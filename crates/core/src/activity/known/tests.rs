use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn entry(at: &str) -> Entry {
    Entry { at: ts(at), credential: Some("JTI=abc".into()), impersonated_by: None, what: Some("list pods".into()) }
}

#[test]
fn a_missing_shard_is_not_recorded_and_an_empty_one_is_not_seen_since_it_began() {
    assert_eq!(Known::of(None, "User:ann"), Known::NotRecorded);
    let mut shard = Shard::new(ts("2025-03-01T00:00:00Z"));
    assert_eq!(Known::of(Some(&shard), "User:ann"), Known::NotSeenSince(ts("2025-03-01T00:00:00Z")));
    shard.record("User:ann", entry("2025-03-02T00:00:00Z"), Duration::from_secs(60));
    assert_eq!(Known::of(Some(&shard), "User:ann"), Known::Seen(entry("2025-03-02T00:00:00Z")));
}

#[test]
fn only_recording_that_covers_the_window_proves_inactivity() {
    let from = ts("2025-03-10T00:00:00Z");
    assert_eq!(judge(&Known::Seen(entry("2025-03-11T00:00:00Z")), from), Inactivity::Active);
    assert_eq!(judge(&Known::Seen(entry("2025-03-10T00:00:00Z")), from), Inactivity::Active, "at the edge");
    assert_eq!(judge(&Known::Seen(entry("2025-03-09T00:00:00Z")), from), Inactivity::Inactive);
    assert_eq!(judge(&Known::NotSeenSince(ts("2025-03-01T00:00:00Z")), from), Inactivity::Inactive);
    assert_eq!(judge(&Known::NotSeenSince(from), from), Inactivity::Inactive);
    assert_eq!(
        judge(&Known::NotSeenSince(ts("2025-03-12T00:00:00Z")), from),
        Inactivity::Unproven,
        "recording began inside the window"
    );
    assert_eq!(judge(&Known::NotRecorded, from), Inactivity::Unproven);
}

#[test]
fn descriptions_say_when_and_how() {
    let mut e = entry("2025-03-02T10:00:00Z");
    e.impersonated_by = Some("admin".into());
    assert_eq!(
        Known::Seen(e).describe(),
        "last active 2025-03-02T10:00:00Z (list pods, impersonated by admin, credential JTI=abc)"
    );
    assert!(
        Known::NotSeenSince(ts("2025-03-01T00:00:00Z")).describe().starts_with("not seen since 2025-03-01T00:00:00Z")
    );
    assert!(Known::NotRecorded.describe().starts_with("no activity recorded"));
}
