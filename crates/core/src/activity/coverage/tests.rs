use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const MIN: Duration = Duration::from_secs(60);
const GAP: Duration = Duration::from_secs(300);

fn cov(from: &str, heard: &str) -> Coverage {
    Coverage { covered_from: ts(from), heard_at: ts(heard), resolution_seconds: 60, gap_seconds: 300 }
}

#[test]
fn the_first_batch_begins_the_stream_at_its_own_time() {
    assert_eq!(
        Coverage::next(None, ts("2026-01-01T10:00:00Z"), MIN, GAP),
        Next::Begin(cov("2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z"))
    );
}

#[test]
fn heard_at_moves_at_most_once_per_resolution() {
    let c = cov("2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z");
    assert_eq!(Coverage::next(Some(&c), ts("2026-01-01T10:00:59Z"), MIN, GAP), Next::Same);
    assert_eq!(Coverage::next(Some(&c), ts("2026-01-01T09:00:00Z"), MIN, GAP), Next::Same, "an older batch");
    assert_eq!(
        Coverage::next(Some(&c), ts("2026-01-01T10:01:00Z"), MIN, GAP),
        Next::Extend(cov("2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z"))
    );
}

#[test]
fn a_silence_longer_than_the_gap_begins_a_new_stream() {
    let c = cov("2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z");
    // Gap 5 min + resolution 1 min: 6 min of silence still continues, a second more does not.
    assert!(matches!(Coverage::next(Some(&c), ts("2026-01-01T10:06:00Z"), MIN, GAP), Next::Extend(_)));
    assert_eq!(
        Coverage::next(Some(&c), ts("2026-01-01T10:06:01Z"), MIN, GAP),
        Next::Begin(cov("2026-01-01T10:06:01Z", "2026-01-01T10:06:01Z"))
    );
}

#[test]
fn coverage_proves_a_window_only_when_it_spans_it_and_is_live() {
    let now = ts("2026-01-31T00:00:00Z");
    let c = cov("2026-01-01T00:00:00Z", "2026-01-30T23:59:00Z");
    assert_eq!(covers(Some(&c), ts("2026-01-02T00:00:00Z"), now), Ok(()));
    let e = covers(Some(&c), ts("2025-12-31T00:00:00Z"), now).unwrap_err();
    assert!(e.contains("only since 2026-01-01T00:00:00Z"), "{e}");
    let stale = cov("2026-01-01T00:00:00Z", "2026-01-20T00:00:00Z");
    let e = covers(Some(&stale), ts("2026-01-02T00:00:00Z"), now).unwrap_err();
    assert_eq!(e, "no audit events received since 2026-01-20T00:00:00Z");
    assert!(covers(None, ts("2026-01-02T00:00:00Z"), now).unwrap_err().contains("ever stored"));
}

#[test]
fn the_status_round_trips_through_json_in_camel_case() {
    let c = cov("2026-01-01T00:00:00Z", "2026-01-30T23:59:00Z");
    let text = serde_json::to_string(&c).unwrap();
    assert!(text.contains("\"coveredFrom\":\"2026-01-01T00:00:00Z\"") && text.contains("\"heardAt\""), "{text}");
    assert_eq!(serde_json::from_str::<Coverage>(&text).unwrap(), c);
}
