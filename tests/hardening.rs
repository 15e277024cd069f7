//! Hostile input, floods and faults against the release-shaped binary on the real control plane:
//! a misspelt dry run, a forged record under a predicted name, an SSRF-shaped policy, a revoked
//! secret, a slowloris flood (with a real Lumos call inside it and SIGTERM during it), an API
//! server that is down when the operator starts, and a controller that dies.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use deprovisioner::crd::{DeprovisionPolicy, DeprovisionRequest, Phase, RequestSource};
use deprovisioner::fixtures::user;
use kube::api::Api;
use serde_json::json;
use support::*;

fn operator() -> &'static Operator {
    static OP: std::sync::OnceLock<Operator> = std::sync::OnceLock::new();
    // With leader election (the default), only one of this binary's operators runs a controller.
    OP.get_or_init(|| Operator::start(OperatorOpts::default()))
}

/// A namespace with a binding of `email` (and `keep@lumos.com`) and a policy for a new app, on
/// the shared control plane; returns (app, namespace).
async fn bound(prefix: &str, email: &str) -> (String, String) {
    bound_on(&admin().await, prefix, email).await
}

/// The same on the control plane `c` talks to.
async fn bound_on(c: &kube::Client, prefix: &str, email: &str) -> (String, String) {
    let ns = unique(prefix);
    namespace(c, &ns, &[]).await;
    role_binding(c, &ns, "edit", "edit", vec![user(email), user("keep@lumos.com")]).await;
    let app = namespace_policy(c, prefix, &ns).await;
    (app, ns)
}

#[tokio::test]
async fn a_misspelt_dry_run_is_refused_and_changes_nothing() {
    let (app, ns) = bound("misspelt", "m@lumos.com").await;
    let (status, answer, _) =
        operator().lumos_to("/webhooks/lumos/deprovision?dry_run=true", &payload(&app, "m@lumos.com", &[])).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["msg"].as_str().unwrap().contains("only dryRun=true|false is accepted"), "{answer}");
    let c = admin().await;
    assert_eq!(
        names(&get_rb(&c, &ns, "edit").await.unwrap().subjects),
        vec!["User:m@lumos.com", "User:keep@lumos.com"]
    );
    assert!(requests_for(&c, "m@lumos.com").await.is_empty(), "nothing was recorded");
}

#[tokio::test]
async fn an_object_pre_created_under_the_predicted_name_never_answers_for_a_real_call() {
    let (app, ns) = bound("forged", "f@lumos.com").await;
    let c = admin().await;
    // The name the webhook would take first, created beforehand as a dry run with no labels.
    let body = payload(&app, "f@lumos.com", &[]);
    let spec = deprovisioner::webhook::payload::parse(&serde_json::to_vec(&body).unwrap(), false).unwrap();
    let predicted =
        deprovisioner::webhook::naming::request_name(&deprovisioner::webhook::naming::fingerprint(&spec), 1);
    let mut decoy_spec = spec.clone();
    decoy_spec.dry_run = true;
    decoy_spec.source = RequestSource::Manual;
    create_request(&c, &predicted, decoy_spec).await;
    let decoy = wait_terminal(&c, &predicted, Duration::from_secs(20)).await;
    assert_eq!(phase(&decoy), Phase::DryRun);

    let (status, answer, _) = operator().lumos(&body).await;
    assert_eq!((status, answer["response"].as_str()), (200, Some("SUCCESS")), "{answer}");
    let record = request_name(&answer);
    assert_ne!(record, predicted, "the call got a record of its own");
    assert_eq!(
        names(&get_rb(&c, &ns, "edit").await.unwrap().subjects),
        vec!["User:keep@lumos.com"],
        "and the removal happened"
    );
    let decoy = get_request(&c, &predicted).await;
    assert!(decoy.spec.dry_run && phase(&decoy) == Phase::DryRun, "the decoy is untouched");
}

#[tokio::test]
async fn an_ssrf_shaped_policy_is_marked_invalid_and_refused() {
    let c = admin().await;
    let name = unique("ssrf");
    let app = unique("ssrf-app");
    policy(
        &c,
        &name,
        json!({"application": {"appId": app}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"http": {"system": "meta", "url": "http://localhost:80@169.254.169.254/latest/meta-data/"}}]}),
    )
    .await;
    let api: Api<DeprovisionPolicy> = Api::all(c.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let valid = loop {
        let p = api.get(&name).await.unwrap();
        if let Some(cond) = p.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Valid")) {
            break cond;
        }
        assert!(Instant::now() < deadline, "the policy never got a Valid condition");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(valid.status, "False");
    assert!(valid.message.contains("userinfo"), "{}", valid.message);
    let (_, answer, _) = operator().lumos(&payload(&app, "s@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    assert!(
        answer["msg"].as_str().unwrap().contains("InvalidPolicy")
            || answer["msg"].as_str().unwrap().contains("is invalid"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_emptied_secret_file_revokes_every_secret() {
    let op = Operator::start(OperatorOpts::default().args(&["--leader-election=false", "--controller=false"]));
    let bad_payload = json!({"application": {"app_id": "x"}});
    let call = || op.lumos(&bad_payload);
    assert_eq!(call().await.0, 400, "the secret works (the payload is what is wrong)");
    std::fs::write(&op.secret_file, "").unwrap();
    assert_eq!(call().await.0, 401, "an empty file revokes it");
    assert_eq!(call().await.0, 401);
    let warnings = op.log_text().matches("every secret is revoked").count();
    assert_eq!(warnings, 1, "said once, not per call:\n{}", op.log_text());
    std::fs::write(&op.secret_file, format!("{SECRET}\n")).unwrap();
    assert_eq!(call().await.0, 400, "a valid file restores it");
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Opens `n` connections that each send a request line and then one header byte at a time.
fn trickle(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"POST /webhooks/lumos/deprovision HTTP/1.1\r\nHost: x\r\nX-Slow: ").ok()?;
            s.set_read_timeout(Some(Duration::from_millis(1))).ok()?;
            Some(s)
        })
        .collect()
}

/// Sends one more header byte on each connection; returns how many the server still holds open.
fn trickle_step(conns: &mut [TcpStream]) -> usize {
    let mut open = 0;
    for s in conns.iter_mut() {
        let mut buf = [0u8; 64];
        let closed = matches!(s.read(&mut buf), Ok(0)) || s.write_all(b"a").is_err();
        open += usize::from(!closed);
    }
    open
}

#[tokio::test]
async fn a_slowloris_flood_neither_starves_a_real_call_nor_holds_the_process_on_sigterm() {
    let (app, ns) = bound("slowloris", "s@lumos.com").await;
    let mut op =
        Operator::start(OperatorOpts::default().args(&["--leader-election=false", "--header-read-timeout=3s"]));
    let addr = op.url.trim_start_matches("http://").to_string();
    let before = rss_kib(op.pid());
    let mut conns = trickle(&addr, 1000);
    let opened = conns.len();
    let started = Instant::now();
    let mut peak = before;
    while started.elapsed() < Duration::from_secs(1) {
        trickle_step(&mut conns);
        peak = peak.max(rss_kib(op.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    // A real Lumos call inside the flood.
    let (status, answer, took) = op.lumos(&payload(&app, "s@lumos.com", &[])).await;
    assert_eq!((status, answer["response"].as_str()), (200, Some("SUCCESS")), "{answer}");
    assert!(took < Duration::from_secs(10), "answered in {took:?}");
    assert_eq!(names(&get_rb(&admin().await, &ns, "edit").await.unwrap().subjects), vec!["User:keep@lumos.com"]);
    // Past the header-read timeout every trickling connection is closed.
    let mut held = opened;
    while started.elapsed() < Duration::from_secs(6) {
        held = trickle_step(&mut conns);
        peak = peak.max(rss_kib(op.pid()));
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "slowloris: {opened} trickling connections; real call answered SUCCESS in {took:?}; RSS {} MiB before, {} MiB peak; {held} still open after 6 s",
        before / 1024,
        peak / 1024
    );
    assert_eq!(held, 0, "the header-read timeout closed them all");
    assert!(peak < 128 * 1024, "RSS peaked at {} MiB, half the chart's 256 MiB limit is the bound", peak / 1024);

    // SIGTERM with a fresh flood open: the process stops well within the grace period.
    let _flood = trickle(&addr, 500);
    let t = Instant::now();
    op.signal("TERM");
    let status = op.wait_exit(Duration::from_secs(20)).expect("the process exits on SIGTERM");
    println!("SIGTERM with 500 trickling connections: exited in {:?} ({status})", t.elapsed());
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(15), "exited in {:?}", t.elapsed());
}

#[tokio::test]
async fn started_while_the_api_server_is_down_it_elects_itself_and_finishes_requests_when_it_returns() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let (app, ns) = bound_on(&c, "late", "late@lumos.com").await;
    let pid = cl.apiserver_pid();
    let frozen = Frozen::freeze(pid);
    let op = Operator::start(OperatorOpts::on(cl));
    std::thread::sleep(Duration::from_secs(3));
    let (healthz, _) = get(&format!("{}/healthz", op.url)).await;
    assert_eq!(healthz, 200, "the process waits for the API server rather than dying");
    drop(frozen);
    let (status, answer, took) = op.lumos(&payload(&app, "late@lumos.com", &[])).await;
    assert_eq!(
        (status, answer["response"].as_str()),
        (200, Some("SUCCESS")),
        "{answer} after {took:?}\n{}",
        op.log_text()
    );
    assert_eq!(names(&get_rb(&c, &ns, "edit").await.unwrap().subjects), vec!["User:keep@lumos.com"]);
}

#[tokio::test]
async fn a_controller_that_dies_fails_healthz_and_exits_non_zero() {
    let mut op =
        Operator::start(OperatorOpts::default().env(&[("DEPROVISIONER_FAILPOINT_CONTROLLER_STOPS_AFTER", "2s")]));
    let (healthz, _) = get(&format!("{}/healthz", op.url)).await;
    assert_eq!(healthz, 200);
    let status = op.wait_exit(Duration::from_secs(30)).expect("the process exits when its controller dies");
    assert!(!status.success(), "{status}");
    assert!(op.log_text().contains("the controller stopped"), "{}", op.log_text());
}

async fn get(url: &str) -> (u16, String) {
    let r = http_client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn past_the_per_minute_cap_calls_are_answered_failure_and_nothing_is_recorded() {
    // A control plane with no controller at all: recorded requests stay unfinished.
    let cl = own_cluster();
    let args = ["--controller=false", "--max-requests-per-minute=2", "--response-deadline=3s"];
    let op = Operator::start(OperatorOpts::on(cl).args(&args));
    let c = cl.admin().await;
    let mut answers = vec![];
    for i in 0..3 {
        let (status, answer, _) = op.lumos(&payload("capped-app", &format!("cap{i}@lumos.com"), &[])).await;
        answers.push((status, answer));
    }
    // The first two are recorded (and wait for a controller this replica does not run).
    assert!(
        answers[..2].iter().all(|(s, a)| *s == 200 && a["msg"].as_str().unwrap().contains("Still in progress")),
        "{answers:?}"
    );
    let (status, refused) = &answers[2];
    assert_eq!(*status, 200);
    assert_eq!(refused["response"], "FAILURE");
    assert!(
        refused["msg"].as_str().unwrap().contains("more than 2 requests were recorded in the last minute"),
        "{refused}"
    );
    assert!(requests_for(&c, "cap2@lumos.com").await.is_empty(), "nothing was recorded for the third");
}

#[tokio::test]
async fn sigterm_answers_the_call_in_flight_before_the_process_exits() {
    // A control plane with no controller at all: the call waits for its record until the deadline.
    let cl = own_cluster();
    let mut op = Operator::start(OperatorOpts::on(cl).args(&["--controller=false", "--response-deadline=3s"]));
    let body = payload("inflight-app", "inflight@lumos.com", &[]);
    let url = format!("{}/webhooks/lumos/deprovision", op.url);
    let call = tokio::spawn(async move {
        let r = http_client().post(url).bearer_auth(SECRET).json(&body).send().await.expect("answered, not reset");
        (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(1000)).await; // the call is waiting for its record
    op.signal("TERM");
    let (status, answer) = call.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["msg"].as_str().unwrap().contains("Still in progress"), "{answer}");
    assert!(op.wait_exit(Duration::from_secs(15)).is_some_and(|s| s.success()));
}

#[tokio::test]
async fn repeats_of_a_finished_call_each_get_a_record_of_their_own() {
    let (app, _) = bound("repeats", "r@lumos.com").await;
    let body = payload(&app, "r@lumos.com", &[]);
    let mut names = vec![];
    for _ in 0..5 {
        let (_, answer, _) = operator().lumos(&body).await;
        assert_eq!(answer["response"], "SUCCESS", "{answer}");
        names.push(request_name(&answer));
    }
    // The first three names are tried directly; past them the call's records are listed once.
    let seqs: Vec<&str> = names.iter().map(|n| n.rsplit('-').next().unwrap()).collect();
    assert_eq!(seqs, vec!["1", "2", "3", "4", "5"], "{names:?}");
}

/// A record deleted and the same call sent again: the new record takes the old one's name, and
/// the answer is the new request's own (the webhook's memory of finished requests is keyed by
/// UID). Between the calls the person is given access in a second binding, so the two answers
/// differ: the old one named the first binding, the new one must name the second.
#[tokio::test]
async fn a_deleted_records_name_reused_by_the_same_call_is_answered_from_the_new_record() {
    use kube::api::DeleteParams;
    let c = admin().await;
    let (app, ns) = bound("reused", "reuse@lumos.com").await;
    let body = payload(&app, "reuse@lumos.com", &[]);
    let (_, first, _) = operator().lumos(&body).await;
    assert_eq!(first["response"], "SUCCESS", "{first}");
    let name = request_name(&first);
    let old_uid = get_request(&c, &name).await.metadata.uid.unwrap();
    Api::<DeprovisionRequest>::all(c.clone()).delete(&name, &DeleteParams::default()).await.unwrap();
    while Api::<DeprovisionRequest>::all(c.clone()).get_opt(&name).await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    role_binding(&c, &ns, "second", "edit", vec![user("reuse@lumos.com")]).await;
    let (_, again, _) = operator().lumos(&body).await;
    assert_eq!(request_name(&again), name, "the freed name is taken again: {again}");
    let record = get_request(&c, &name).await;
    assert_ne!(record.metadata.uid.unwrap(), old_uid);
    assert_eq!(again["response"], "SUCCESS", "{again}");
    let msg = again["msg"].as_str().unwrap();
    assert!(msg.contains(&format!("RoleBinding {ns}/second")), "answered from the deleted record: {msg}");
    assert_eq!(record.status.unwrap().phase, Phase::Succeeded, "the answer names a finished record");
}
