use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn at(s: &str) -> Entry {
    Entry { at: ts(s), credential: None, impersonated_by: None, what: None }
}

const MIN: Duration = Duration::from_secs(60);

#[test]
fn shards_are_stable_and_spread() {
    // Fixed values: a change here would move stored accounts between objects.
    assert_eq!(shard_of("User:alice"), shard_of("User:alice"));
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..2000 {
        let s = shard_of(&format!("User:user-{i}"));
        assert!(s < SHARDS);
        seen.insert(s);
    }
    assert_eq!(seen.len(), usize::from(SHARDS));
    assert_eq!(shard_of(""), (0xcbf2_9ce4_8422_2325u64 % 64) as u16);
}

#[test]
fn a_later_sighting_replaces_only_past_the_resolution() {
    let mut s = Shard::new(ts("2026-12-01T00:00:00Z"));
    assert!(s.record("User:a", at("2026-12-07T08:00:00Z"), MIN));
    assert!(!s.record("User:a", at("2026-12-07T08:00:59Z"), MIN), "within a minute: no write");
    assert!(!s.record("User:a", at("2026-12-07T07:00:00Z"), MIN), "older never replaces");
    assert!(s.record("User:a", at("2026-12-07T08:01:00Z"), MIN));
    assert_eq!(s.last_seen("User:a"), LastSeen::Active(at("2026-12-07T08:01:00Z")));
    assert!(s.record("User:a", at("2026-12-07T08:01:01Z"), Duration::ZERO));
}

#[test]
fn an_unseen_account_is_not_seen_since_recording_began_or_was_forgotten() {
    let mut s = Shard::new(ts("2026-12-01T00:00:00Z"));
    assert_eq!(s.last_seen("User:x"), LastSeen::NotSeenSince(ts("2026-12-01T00:00:00Z")));
    s.forgotten_before = Some(ts("2026-12-03T00:00:00Z"));
    assert_eq!(s.last_seen("User:x"), LastSeen::NotSeenSince(ts("2026-12-03T00:00:00Z")));
}

#[test]
fn absorbing_is_the_same_in_either_order() {
    let mut a = Shard::new(ts("2026-12-02T00:00:00Z"));
    a.record("User:x", at("2026-12-07T08:00:00Z"), MIN);
    a.record("User:y", at("2026-12-07T09:00:00Z"), MIN);
    let mut b = Shard::new(ts("2026-12-01T00:00:00Z"));
    b.record("User:x", at("2026-12-07T10:00:00Z"), MIN);
    b.record("User:z", at("2026-12-07T07:00:00Z"), MIN);
    let (mut ab, mut ba) = (a.clone(), b.clone());
    assert!(ab.absorb(b.clone(), MIN));
    assert!(ba.absorb(a.clone(), MIN));
    assert_eq!(ab, ba);
    assert_eq!(ab.since, ts("2026-12-01T00:00:00Z"));
    assert_eq!(ab.last_seen("User:x"), LastSeen::Active(at("2026-12-07T10:00:00Z")));
    assert_eq!(ab.accounts.len(), 3);
    assert!(!ab.clone().absorb(ab.clone(), MIN), "absorbing itself changes nothing");
}

#[test]
fn bounding_forgets_the_least_recent_and_says_so_truthfully() {
    let mut s = Shard::new(ts("2026-12-01T00:00:00Z"));
    for (i, t) in ["01", "02", "02", "03", "04"].iter().enumerate() {
        s.record(&format!("User:{i}"), at(&format!("2026-12-07T08:00:{t}Z")), MIN);
    }
    // Two are needed to get to 3; the two seen at :02 go together with :01.
    assert_eq!(s.bound(3, usize::MAX), 3);
    assert_eq!(s.accounts.keys().cloned().collect::<Vec<_>>(), ["User:3", "User:4"]);
    let LastSeen::NotSeenSince(f) = s.last_seen("User:0") else { panic!() };
    assert!(f > ts("2026-12-07T08:00:02Z") && f < ts("2026-12-07T08:00:03Z"));
    // A stale sighting older than what was forgotten is not recorded again, nor absorbed.
    assert!(!s.record("User:0", at("2026-12-07T08:00:01Z"), MIN));
    let mut stale = Shard::new(ts("2026-12-01T00:00:00Z"));
    stale.record("User:1", at("2026-12-07T08:00:02Z"), MIN);
    let mut t = s.clone();
    t.absorb(stale, MIN);
    assert_eq!(t.accounts.len(), 2);
    assert_eq!(s.bound(3, usize::MAX), 0);
}

#[test]
fn bounding_by_size_keeps_a_shard_under_its_bytes() {
    let mut s = Shard::new(ts("2026-12-01T00:00:00Z"));
    for i in 0..100 {
        let mut e = at("2026-12-07T08:00:00Z");
        e.at = e.at.checked_add(SignedDuration::from_secs(i)).unwrap();
        e.what = Some("x".repeat(500));
        s.record(&format!("User:{i:03}"), e, MIN);
    }
    s.bound(usize::MAX, 10_000);
    let bytes = serde_json::to_string(&s).unwrap().len();
    assert!(bytes <= 10_000, "{bytes}");
    assert!(s.accounts.contains_key("User:099"), "the most recent stays");
}

#[test]
fn long_texts_are_clipped_and_long_ids_refused() {
    let mut s = Shard::new(ts("2026-12-01T00:00:00Z"));
    let mut e = at("2026-12-07T08:00:00Z");
    e.what = Some("é".repeat(200));
    assert!(s.record("User:a", e, MIN));
    assert!(s.accounts["User:a"].what.as_ref().unwrap().len() <= MAX_TEXT);
    assert!(!s.record(&format!("User:{}", "a".repeat(MAX_ACCOUNT)), at("2026-12-07T08:00:00Z"), MIN));
}

#[test]
fn a_shard_round_trips_through_json() {
    let mut s = Shard::new(ts("2026-12-01T00:00:00Z"));
    s.record("ServiceAccount:ns/sa", Entry { credential: Some("JTI=1".into()), ..at("2026-12-07T08:00:00.5Z") }, MIN);
    let text = serde_json::to_string(&s).unwrap();
    assert!(text.contains("\"since\":\"2026-12-01T00:00:00Z\""), "{text}");
    assert_eq!(serde_json::from_str::<Shard>(&text).unwrap(), s);
}
