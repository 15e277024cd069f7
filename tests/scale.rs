//! Figures at scale, not run by default (they take minutes):
//!
//!   cargo test --release --test scale -- --ignored --nocapture
//!
//! `RECORDS=20000` (the default) finished DeprovisionRequests stored, then the operator started:
//! its resident memory must not grow with the history, because it watches only unfinished
//! requests.

mod support;

use std::time::{Duration, Instant};

use deprovisioner::fixtures;
use support::*;

fn rss_mib(pid: u32) -> f64 {
    proc_status_mib(pid, "VmRSS:")
}

#[tokio::test]
#[ignore = "a measurement: minutes of API calls"]
async fn memory_does_not_grow_with_finished_records() {
    let n: usize = std::env::var("RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let cl = own_cluster();
    let c = cl.admin().await;
    let empty = Operator::start(OperatorOpts::on(cl).args(&["--leader-election=false"]));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_empty = rss_mib(empty.pid());
    drop(empty);

    let started = Instant::now();
    store_finished_records(&c, 0..n).await;
    println!("stored {n} finished records in {:?}", started.elapsed());

    let op = Operator::start(OperatorOpts::on(cl).args(&["--leader-election=false"]));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_history = rss_mib(op.pid());
    // It still works: one more request finishes.
    let ns = unique("scale");
    namespace(&c, &ns, &[]).await;
    role_binding(&c, &ns, "edit", "edit", vec![fixtures::user("p@lumos.com"), fixtures::user("k@lumos.com")]).await;
    let app = namespace_policy(&c, "scale", &ns).await;
    let (_, answer, took) = op.lumos(&payload(&app, "p@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    println!(
        "RSS: {rss_empty:.1} MiB with no records, {rss_history:.1} MiB with {n} finished records; a call answered SUCCESS in {took:?}"
    );
    assert!(rss_history < rss_empty + 16.0, "memory grew with the history: {rss_empty:.1} -> {rss_history:.1} MiB");
}

#[tokio::test]
#[ignore = "a measurement"]
async fn sequential_one_binding_removals() {
    let n: usize = std::env::var("CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let cl = own_cluster();
    let c = cl.admin().await;
    let ns = unique("seq");
    namespace(&c, &ns, &[]).await;
    let app = namespace_policy(&c, "seq", &ns).await;
    for i in 0..n {
        let subjects = vec![fixtures::user(&format!("s{i}@lumos.com")), fixtures::user("k@lumos.com")];
        role_binding(&c, &ns, &format!("rb-{i}"), "edit", subjects).await;
    }
    let op = Operator::start(OperatorOpts::on(cl).args(&["--leader-election=false"]));
    let _ = op.lumos(&payload(&app, "warm-up@lumos.com", &[])).await;
    let mut took = vec![];
    for i in 0..n {
        let (_, answer, t) = op.lumos(&payload(&app, &format!("s{i}@lumos.com"), &[])).await;
        assert_eq!(answer["response"], "SUCCESS", "{answer}");
        took.push(t);
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!("{n} sequential one-binding removals: p50 {:?}, p90 {:?}, p99 {:?}", at(0.5), at(0.9), at(0.99));
}
