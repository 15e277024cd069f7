//! Tests that kill the operator or freeze the API server, each on a control plane of its own.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deprovisioner::crd::{DeprovisionRequest, Outcome, Phase};
use deprovisioner::fixtures::{self, user};
use kube::Api;
use serde_json::json;
use support::*;
use tokio_util::sync::CancellationToken;

async fn setup(cl: &Cluster, prefix: &str, bindings: usize) -> (kube::Client, String, String) {
    let c = cl.admin().await;
    let ns = unique(prefix);
    namespace(&c, &ns, &[]).await;
    for i in 0..bindings {
        role_binding(&c, &ns, &format!("rb-{i}"), "view", vec![user("doc@lumos.com"), user("stays@lumos.com")]).await;
    }
    let app = namespace_policy(&c, prefix, &ns).await;
    (c, ns, app)
}

async fn manual_request(c: &kube::Client, app: &str) -> String {
    create_request(c, &unique("req"), fixtures::request_spec(app, "doc@lumos.com").build()).await
}

#[tokio::test]
async fn crash_after_part_of_the_plan_resumes_without_repeating_work() {
    let cl = own_cluster();
    let (c, ns, app) = setup(cl, "crash", 6).await;
    let mut first = Operator::start(OperatorOpts {
        env: vec![("DEPROVISIONER_FAILPOINT_EXIT_AFTER_RESULTS".into(), "2".into())],
        ..OperatorOpts::on(cl)
    });
    let name = manual_request(&c, &app).await;
    let exit = first.wait_exit(Duration::from_secs(30)).expect("operator should crash at the fault point");
    assert_eq!(exit.code(), Some(86), "{}", first.log_text());
    let mid = get_request(&c, &name).await.status.unwrap();
    assert_eq!(mid.phase, Phase::InProgress);
    assert_eq!(mid.plan.len(), 6, "the whole plan was written before acting");
    assert_eq!(mid.results.len(), 2);
    let mut edited = 0;
    for i in 0..6 {
        edited += usize::from(get_rb(&c, &ns, &format!("rb-{i}")).await.unwrap().subjects.unwrap().len() == 1);
    }
    assert_eq!(edited, 2, "exactly the recorded actions were done before the crash");

    let _second = Operator::start(OperatorOpts::on(cl));
    let done = wait_terminal(&c, &name, Duration::from_secs(30)).await.status.unwrap();
    assert_eq!(done.phase, Phase::Succeeded, "{:?}", done.message);
    let mut ids: Vec<i32> = done.results.iter().map(|r| r.id).collect();
    ids.sort();
    assert_eq!(ids, (0..6).collect::<Vec<_>>(), "one result per action, none repeated");
    assert_eq!(done.results[..2], mid.results[..], "results recorded before the crash are kept as they were");
    assert!(done.results.iter().all(|r| r.outcome == Outcome::Removed), "nothing removed twice: {:?}", done.results);
    assert_eq!(done.removed, 6);
    for i in 0..6 {
        assert_eq!(names(&get_rb(&c, &ns, &format!("rb-{i}")).await.unwrap().subjects), vec!["User:stays@lumos.com"]);
    }
}

#[tokio::test]
async fn api_server_outage_answers_in_time_and_loses_nothing() {
    let cl = own_cluster();
    let (c, ns, app) = setup(cl, "outage", 3).await;
    // A webhook-only replica: the request is recorded but not worked on yet.
    let webhook = Operator::start(OperatorOpts::on(cl).args(&["--controller=false", "--response-deadline", "2s"]));
    let (status, answer, took) = webhook.lumos(&payload(&app, "doc@lumos.com", &[])).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"], "FAILURE");
    assert!(answer["msg"].as_str().unwrap().contains("Still in progress"), "{answer}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let accepted = request_name(&answer);

    // The API server stops answering: calls fail inside the deadline with a clear message.
    let frozen = Frozen::freeze(cl.apiserver_pid());
    let (status, answer, took) = webhook.lumos(&payload(&unique("during-outage"), "doc@lumos.com", &[])).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"], "FAILURE");
    assert!(answer["msg"].as_str().unwrap().contains("API server did not answer in time"), "{answer}");
    assert!(took < Duration::from_secs(3), "answered in {took:?}");

    // A controller starts during the outage; once the API server is back, the accepted request completes.
    let _controller = Operator::start(OperatorOpts::on(cl));
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(frozen);
    // Within 60 s of the thaw: wait_terminal fails the test otherwise.
    let done = wait_terminal(&c, &accepted, Duration::from_secs(60)).await;
    assert_eq!(phase(&done), Phase::Succeeded, "{:?}", done.status);
    for i in 0..3 {
        assert_eq!(names(&get_rb(&c, &ns, &format!("rb-{i}")).await.unwrap().subjects), vec!["User:stays@lumos.com"]);
    }
}

#[tokio::test]
async fn finished_requests_are_deleted_after_retention() {
    let cl = own_cluster();
    let (c, _ns, app) = setup(cl, "retention", 1).await;
    let _op = Operator::start(OperatorOpts::on(cl).args(&["--retention", "3s"]));
    let name = manual_request(&c, &app).await;
    let done = wait_terminal(&c, &name, Duration::from_secs(30)).await;
    assert_eq!(phase(&done), Phase::Succeeded);
    let api: Api<DeprovisionRequest> = Api::all(c.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get_opt(&name).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "request still there long after its retention");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn duplicates_attach_to_the_unfinished_request_and_repeats_confirm_absence() {
    // No controller at first, so the first request is certainly unfinished when the others come.
    let cl = own_cluster();
    let (c, ns, app) = setup(cl, "dup", 5).await;
    let webhook = Operator::start(OperatorOpts::on(cl).args(&["--controller=false", "--response-deadline", "2s"]));
    let body = payload(&app, "doc@lumos.com", &["p1", "p2"]);
    let mut reordered = body.clone();
    reordered["permissions"].as_array_mut().unwrap().reverse();
    reordered["request_comment"] = json!("pressed the button twice");
    let (_, first, _) = webhook.lumos(&body).await;
    assert!(first["msg"].as_str().unwrap().contains("Still in progress"), "{first}");
    let name = request_name(&first);
    let (a, b, d) = tokio::join!(webhook.lumos(&reordered), webhook.lumos(&body), webhook.lumos(&body));
    for x in [&a, &b, &d] {
        assert_eq!(request_name(&x.1), name, "identical calls attach to the unfinished request: {:?}", x.1);
    }
    assert_eq!(requests_for(&c, "doc@lumos.com").await.len(), 1);

    // The controller finishes it once; a repeat afterwards is a new request that finds nothing left.
    let _controller = Operator::start(OperatorOpts::on(cl));
    let done = wait_terminal(&c, &name, Duration::from_secs(30)).await.status.unwrap();
    assert_eq!((done.phase, done.removed), (Phase::Succeeded, 5));
    let (_, again, _) = _controller.lumos(&body).await;
    assert_eq!(again["response"], "SUCCESS", "{again}");
    let second = request_name(&again);
    assert_ne!(second, name);
    let st = get_request(&c, &second).await.status.unwrap();
    assert_eq!(st.removed, 0);
    assert!(!st.results.is_empty());
    assert!(st.results.iter().all(|r| r.outcome == Outcome::AlreadyAbsent), "{:?}", st.results);
    for i in 0..5 {
        assert_eq!(names(&get_rb(&c, &ns, &format!("rb-{i}")).await.unwrap().subjects), vec!["User:stays@lumos.com"]);
    }
}

/// Waits until `op`'s log says it leads (its controllers run).
fn wait_leading(op: &Operator) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !op.log_text().contains("holding the leader Lease") {
        assert!(Instant::now() < deadline, "never became leader; log:\n{}", op.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two replicas; the leader stops (SIGTERM, as in a rolling upgrade) or dies (SIGKILL); a call
/// sent to the other one right away still gets SUCCESS, true in the cluster.
async fn failover(signal: &str) -> String {
    let cl = own_cluster();
    let (c, ns, app) = setup(cl, &format!("failover-{}", signal.to_lowercase()), 0).await;
    role_binding(&c, &ns, "rb", "view", vec![user("doc@lumos.com"), user("stays@lumos.com")]).await;
    let leader = Operator::start(OperatorOpts::on(cl));
    wait_leading(&leader);
    let follower = Operator::start(OperatorOpts::on(cl));
    // The follower is up and following (its webhook answers, the Lease is held by the leader).
    let (_, warm, _) = follower.lumos(&payload(&app, "nobody@lumos.com", &[])).await;
    assert_eq!(warm["response"], "SUCCESS", "{warm}");
    leader.signal(signal);
    let (status, answer, took) = follower.lumos(&payload(&app, "doc@lumos.com", &[])).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"], "SUCCESS", "after {signal} of the leader: {answer} in {took:?}");
    assert_eq!(names(&get_rb(&c, &ns, "rb").await.unwrap().subjects), vec!["User:stays@lumos.com"]);
    println!("leader {signal}ed: a call to the other replica answered SUCCESS in {took:?}");
    follower.log_text()
}

#[tokio::test]
async fn a_rolling_upgrade_hands_over_at_once() {
    let log = failover("TERM").await;
    // The stopping leader released the Lease and the follower, watching it, took it then, not
    // when it would have expired.
    assert!(log.contains("the leader released the Lease: taking it"), "{log}");
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_the_deadline() {
    failover("KILL").await;
}

/// A TCP relay in front of the API server whose connections can be cut, as a network blip cuts
/// them: the API server stays up, so the operator's watches fail and resume from the version
/// they had (no relist).
struct Relay {
    addr: std::net::SocketAddr,
    /// Cancelled to cut the connections open now (replaced by a fresh one then).
    cut: Arc<Mutex<CancellationToken>>,
    /// New connections are dropped at once until then.
    refuse_until: Arc<Mutex<Instant>>,
}

impl Relay {
    async fn to(upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let refuse_until = Arc::new(Mutex::new(Instant::now()));
        let (current, refusing) = (cut.clone(), refuse_until.clone());
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if Instant::now() < *refusing.lock().unwrap() {
                    continue; // dropped: the connection is reset
                }
                let token = current.lock().unwrap().clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = token.cancelled() => {} // both sockets dropped: the connection is cut
                    }
                });
            }
        });
        Relay { addr, cut, refuse_until }
    }

    /// Cuts every connection open now and refuses new ones for `down`.
    fn cut_for(&self, down: Duration) {
        *self.refuse_until.lock().unwrap() = Instant::now() + down;
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }
}

/// `/readyz` answers 200 within `within`.
async fn ready_within(op: &Operator, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let r = http_client().get(format!("{}/readyz", op.url)).send().await;
        let last = match r {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A watch error the watcher resumes from (the connection to the API server cut, the API server
/// up) does not take the replica out of its Service or off its binding index: it stays ready,
/// and the next call is planned and answered as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // the relay runs while the test blocks
async fn cut_connections_to_the_api_server_leave_the_replica_ready() {
    let cl = own_cluster();
    let (c, ns, app) = setup(cl, "cut", 1).await;
    let kubeconfig = std::fs::read_to_string(&cl.operator_kubeconfig).unwrap();
    let server = kubeconfig.lines().find_map(|l| l.trim().strip_prefix("server: https://")).unwrap().to_string();
    let relay = Relay::to(server.clone()).await;
    let relayed = cl.dir.join("relayed.kubeconfig");
    std::fs::write(&relayed, kubeconfig.replace(&server, &relay.addr.to_string())).unwrap();
    let op = Operator::start(OperatorOpts { kubeconfig: relayed, ..OperatorOpts::on(cl) });
    wait_leading(&op);
    ready_within(&op, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("not ready: {e}"));
    // Cut off for 2 s: the watches' streams end, starting them again fails, then they resume
    // from their versions. A binding written meanwhile is still planned from (the barrier).
    relay.cut_for(Duration::from_secs(2));
    role_binding(&c, &ns, "rb-late", "view", vec![user("doc@lumos.com")]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = op.log_text();
    assert!(log.contains("bindings watch failed"), "the cut reached the watches; log:\n{log}");
    ready_within(&op, Duration::from_secs(10)).await.unwrap_or_else(|e| panic!("not ready after the cut: {e}"));
    let (status, answer, took) = op.lumos(&payload(&app, "doc@lumos.com", &[])).await;
    assert_eq!((status, &answer["response"]), (200, &json!("SUCCESS")), "{answer}");
    // Planned from the index (its barrier passed), not from a list of every binding.
    let log = op.log_text();
    assert!(!log.contains("the view cannot vouch for the bindings"), "the plan listed bindings:\n{log}");
    for rb in ["rb-0", "rb-late"] {
        let left = names(&get_rb(&c, &ns, rb).await.map(|b| b.subjects).unwrap_or_default());
        assert!(!left.contains(&"User:doc@lumos.com".to_string()), "{rb}: {left:?}");
    }
    println!("connections to the API server cut for 2 s: still ready; the next call answered SUCCESS in {took:?}");
}

/// GETs of single DeprovisionRequests the API server has answered so far (every client).
fn record_reads(cl: &Cluster) -> f64 {
    let out = cl.kubectl(&["get", "--raw", "/metrics"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            l.contains("verb=\"GET\"")
                && l.contains("resource=\"deprovisionrequests\"")
                && l.contains("subresource=\"\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A call whose request is still under way at its deadline: while the watch of unfinished
/// requests is live (other requests change meanwhile), it is answered "still in progress" from
/// what the watch showed, without reading the record (in a burst those reads came all at once);
/// while the watch is quiet, the record is read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_its_deadline_a_call_reads_its_record_only_when_the_watch_is_quiet() {
    let cl = own_cluster();
    let (c, _ns, app) = setup(cl, "last-look", 0).await;
    // No controller: every request stays unfinished.
    let webhook = Operator::start(OperatorOpts::on(cl).args(&["--controller=false", "--response-deadline", "2s"]));
    let (_, warm, _) = webhook.lumos(&payload(&app, "warm@lumos.com", &[])).await;
    assert!(warm["msg"].as_str().unwrap().contains("Still in progress"), "{warm}");

    for live in [false, true] {
        let churn = live.then(|| {
            let (c, app) = (c.clone(), app.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let spec = fixtures::request_spec(&app, &format!("other-{i}@lumos.com")).build();
                    create_request(&c, &unique("other"), spec).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        let before = record_reads(cl);
        let (status, answer, took) = webhook.lumos(&payload(&app, &format!("doc-{live}@lumos.com"), &[])).await;
        let reads = record_reads(cl) - before;
        churn.inspect(|c| c.abort());
        assert_eq!(status, 200);
        assert_eq!(answer["response"], "FAILURE", "{answer}");
        assert!(answer["msg"].as_str().unwrap().contains("Still in progress"), "{answer}");
        assert!(took < Duration::from_millis(2500), "answered in {took:?}");
        assert_eq!(reads, if live { 0.0 } else { 1.0 }, "reads of the record, watch live: {live}");
    }
}
