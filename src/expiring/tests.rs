use super::*;
use crate::crd::Phase;

fn status(phase: Phase, message: &str) -> Option<DeprovisionRequestStatus> {
    Some(DeprovisionRequestStatus { phase, message: Some(message.into()), ..Default::default() })
}

#[test]
fn the_last_attempt_is_shown_with_a_failures_message() {
    let mut requests = BTreeMap::new();
    assert_eq!(last_attempt("expiry-a", &requests), None);
    requests.insert("expiry-a".to_string(), status(Phase::Failed, "Could not plan: gave up after 15m"));
    assert_eq!(
        last_attempt("expiry-a", &requests).unwrap(),
        "expiry-a (attempt 1 of 5) Failed: Could not plan: gave up after 15m"
    );
    requests.insert("expiry-a-2".to_string(), status(Phase::InProgress, "ignored"));
    assert_eq!(last_attempt("expiry-a", &requests).unwrap(), "expiry-a-2 (attempt 2 of 5) InProgress");
    requests.insert("expiry-a-3".to_string(), None);
    assert_eq!(last_attempt("expiry-a", &requests).unwrap(), "expiry-a-3 (attempt 3 of 5) Pending");
}
