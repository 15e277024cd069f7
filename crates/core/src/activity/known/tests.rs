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

fn live(from: &str, heard: &str) -> Coverage {
    Coverage { covered_from: ts(from), heard_at: ts(heard), resolution_seconds: 60, gap_seconds: 300 }
}

#[test]
fn inactive_only_when_the_stream_of_batches_covered_the_whole_window() {
    let (from, now) = (ts("2025-03-10T00:00:00Z"), ts("2025-03-20T00:00:00Z"));
    let idle = Known::NotSeenSince(ts("2025-03-01T00:00:00Z"));
    let covered = live("2025-03-01T00:00:00Z", "2025-03-19T23:59:30Z");
    assert_eq!(
        judge_covered(&idle, from, Some(&covered), now),
        Judged { inactivity: Inactivity::Inactive, reason: None }
    );
    // The shard is old, but the stream began inside the window (e.g. after a silence).
    let late = live("2025-03-15T00:00:00Z", "2025-03-19T23:59:30Z");
    let j = judge_covered(&idle, from, Some(&late), now);
    assert_eq!(j.inactivity, Inactivity::Unproven);
    assert!(j.reason.as_deref().unwrap().contains("only since 2025-03-15T00:00:00Z"), "{j:?}");
    // Batches stopped arriving.
    let stopped = live("2025-03-01T00:00:00Z", "2025-03-12T00:00:00Z");
    let j = judge_covered(&Known::Seen(entry("2025-03-05T00:00:00Z")), from, Some(&stopped), now);
    assert_eq!(j.reason.as_deref(), Some("no audit events received since 2025-03-12T00:00:00Z"));
    assert_eq!(judge_covered(&idle, from, None, now).inactivity, Inactivity::Unproven, "no status: nothing proven");
    // Seen within the window is a fact, coverage or not.
    assert_eq!(
        judge_covered(&Known::Seen(entry("2025-03-11T00:00:00Z")), from, None, now).inactivity,
        Inactivity::Active
    );
}

#[test]
fn a_sighting_within_the_resolution_of_the_windows_start_is_not_proof() {
    let (from, now) = (ts("2025-03-10T00:00:00Z"), ts("2025-03-20T00:00:00Z"));
    let c = live("2025-03-01T00:00:00Z", "2025-03-19T23:59:30Z");
    // Stored 30 s before the start: the true last request may have been up to 60 s later.
    let j = judge_covered(&Known::Seen(entry("2025-03-09T23:59:30Z")), from, Some(&c), now);
    assert_eq!(j.inactivity, Inactivity::Unproven);
    assert!(j.reason.as_deref().unwrap().contains("resolution (60 s)"), "{j:?}");
    let j = judge_covered(&Known::Seen(entry("2025-03-09T23:59:00Z")), from, Some(&c), now);
    assert_eq!(j.inactivity, Inactivity::Inactive, "a full resolution before the start");
}
