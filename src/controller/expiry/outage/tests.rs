use std::time::Duration;

use tokio::time::Instant;

use super::*;

#[test]
fn scans_failing_longer_than_the_bound_are_warned_of_once() {
    let t0 = Instant::now();
    let mut o = Outage::default();
    assert_eq!(o.failed(t0), None);
    assert_eq!(o.failed(t0 + Duration::from_secs(29)), None);
    assert_eq!(o.failed(t0 + BOUND), Some(BOUND));
    assert_eq!(o.failed(t0 + Duration::from_secs(60)), None, "once");
    assert_eq!(o.answered(t0 + Duration::from_secs(61)), Some(Duration::from_secs(61)));
    // A short outage is not warned of, nor its end.
    assert_eq!(o.failed(t0 + Duration::from_secs(70)), None);
    assert_eq!(o.answered(t0 + Duration::from_secs(75)), None);
    assert_eq!(o.answered(t0 + Duration::from_secs(76)), None);
}
