use super::*;

#[test]
fn a_window_allows_its_limit_then_refuses_until_the_next_minute() {
    let start = Instant::now();
    let mut s = (start, 0);
    assert!((0..3).all(|_| take(&mut s, 3, start)));
    assert!(!take(&mut s, 3, start + Duration::from_secs(59)));
    assert!(take(&mut s, 3, start + WINDOW), "a new minute, a new budget");
}

#[test]
fn each_source_has_its_own_budget() {
    let p = PerSource::new(2);
    let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    assert!(p.take(a) && p.take(a));
    assert!(!p.take(a));
    assert!(p.take(b), "another source is not affected");
    let m = PerMinute::new(1);
    assert!(m.take() && !m.take());
}
