//! Chaos on the real control plane: two replicas with leader election, a burst of 200 distinct
//! removals (each also an HTTP POST that is not safe to repeat), and the leader killed with
//! SIGKILL mid-burst, twice (a fresh replica replaces each one killed). Afterwards every request
//! that was created is terminal, every `SUCCESS` is true in the cluster, nothing outside the
//! policy changed, and no external call was sent twice.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use deprovisioner::crd::{ActionKind, DeprovisionRequest};
use deprovisioner::fixtures::user;
use futures::StreamExt;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use support::*;

const CALLS: usize = 200;

/// Counts POSTs per idempotency key.
async fn recording_server() -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("none").to_string();
        *log.lock().unwrap().entry(key).or_default() += 1;
        async { "ok" }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/remove", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// The replicas: a call goes to any live one (as a Service would route it).
struct Replicas {
    cluster: &'static Cluster,
    live: Mutex<Vec<Arc<Operator>>>,
    started: Mutex<usize>,
}

impl Replicas {
    fn start_one(&self) {
        let op = Operator::start(OperatorOpts::on(self.cluster).args(&["--concurrency=16"]));
        self.live.lock().unwrap().push(Arc::new(op));
        *self.started.lock().unwrap() += 1;
    }

    /// Kills the replica holding the Lease (found from its log), if one does yet.
    fn kill_leader(&self) -> bool {
        let mut live = self.live.lock().unwrap();
        let Some(i) = live.iter().position(|o| o.log_text().contains("holding the leader Lease")) else {
            return false;
        };
        let op = live.remove(i);
        op.signal("KILL");
        true
    }

    /// Sends the call to a live replica, moving on to another when the one it reached dies under
    /// it. Returns the answer and how many times it was sent again after such a death (each such
    /// resend may find the first record finished already, and is then a repeat with a record of
    /// its own, which must change nothing).
    async fn call(&self, payload: &Value) -> (Option<Value>, usize) {
        let mut resent = 0;
        for attempt in 0..20 {
            let live: Vec<Arc<Operator>> = self.live.lock().unwrap().clone();
            let op = live[attempt % live.len()].clone();
            let auth = format!("Bearer {SECRET}");
            let sent = http_client()
                .post(format!("{}/webhooks/lumos/deprovision", op.url))
                .header("authorization", auth)
                .json(payload)
                .send()
                .await;
            match sent {
                Ok(r) => return (r.json().await.ok(), resent),
                // The replica died under the call: the record may exist; the client moves on.
                Err(_) => {
                    resent += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        (None, resent)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_mid_burst_loses_nothing_and_repeats_nothing() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let (inside, outside) = (unique("chaos"), unique("outside"));
    namespace(&c, &inside, &[]).await;
    namespace(&c, &outside, &[]).await;
    futures::stream::iter(0..CALLS)
        .for_each_concurrent(16, |i| {
            let c = c.clone();
            let (inside, outside) = (inside.clone(), outside.clone());
            async move {
                let who = format!("user{i}@lumos.com");
                role_binding(&c, &inside, &format!("rb-{i}"), "edit", vec![user(&who), user("keep@lumos.com")]).await;
                role_binding(&c, &outside, &format!("rb-{i}"), "edit", vec![user(&who)]).await;
            }
        })
        .await;
    let (url, posts) = recording_server().await;
    let app = unique("chaos-app");
    policy(
        &c,
        &unique("chaos"),
        json!({"application": {"appId": app}, "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaces": [inside]}},
                      {"http": {"system": "crm", "method": "POST", "url": url, "body": r#"{"email": "{{target_user.email}}"}"#}}]}),
    )
    .await;

    let replicas = Arc::new(Replicas { cluster: cl, live: Mutex::new(vec![]), started: Mutex::new(0) });
    replicas.start_one();
    replicas.start_one();
    let started = Instant::now();
    let chaos = {
        let replicas = replicas.clone();
        tokio::spawn(async move {
            let mut kills = 0;
            while kills < 2 && started.elapsed() < Duration::from_secs(90) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if tokio::task::block_in_place(|| replicas.kill_leader()) {
                    kills += 1;
                    println!("chaos: killed the leader at {:?}", started.elapsed());
                    tokio::task::block_in_place(|| replicas.start_one());
                    // Let the survivor take the Lease before the next kill.
                    tokio::time::sleep(Duration::from_secs(20)).await;
                }
            }
            kills
        })
    };
    let sent: Vec<(usize, (Option<Value>, usize))> = futures::stream::iter(0..CALLS)
        .map(|i| {
            let replicas = replicas.clone();
            let app = app.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(150 * i as u64)).await; // spread over ~30 s
                (i, replicas.call(&payload(&app, &format!("user{i}@lumos.com"), &[])).await)
            }
        })
        .buffer_unordered(CALLS)
        .collect()
        .await;
    let resent: usize = sent.iter().map(|(_, (_, r))| r).sum();
    let answers: Vec<(usize, Option<Value>)> = sent.into_iter().map(|(i, (a, _))| (i, a)).collect();
    let kills = chaos.await.unwrap();
    assert_eq!(kills, 2, "the leader was killed twice");

    // Every request that was created ends terminal.
    let api: Api<DeprovisionRequest> = Api::all(c.clone());
    let lp = ListParams::default().labels(&format!("access.deprovisioner.dev/app={app}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let records = loop {
        let all = api.list(&lp).await.unwrap().items;
        if all.iter().all(|r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal())) {
            break all;
        }
        assert!(Instant::now() < deadline, "requests left unfinished after the chaos");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let success = answers.iter().filter(|(_, a)| a.as_ref().is_some_and(|a| a["response"] == "SUCCESS")).count();
    let answered = answers.iter().filter(|(_, a)| a.is_some()).count();
    println!(
        "chaos: {CALLS} calls ({resent} resent after a replica died), {answered} answered, {success} SUCCESS in time, {} records, all terminal after {:?}",
        records.len(),
        started.elapsed()
    );
    // One record per call, plus at most one per resend after a replica died under it; and only
    // one record per person removed them from the binding (a resend that found its record
    // finished is a repeat: a request of its own, which finds the binding access already gone,
    // though its HTTP call is sent again under its own idempotency key, as for any new request).
    assert!(
        records.len() >= answered.min(CALLS) && records.len() <= CALLS + resent,
        "one record per call ({resent} resent): {}",
        records.len()
    );
    let mut removing: HashMap<String, usize> = HashMap::new();
    for r in &records {
        let results = r.status.as_ref().map(|s| s.results.as_slice()).unwrap_or_default();
        if results.iter().any(|x| x.kind == ActionKind::RemoveBindingSubject && x.outcome.is_removal()) {
            *removing.entry(r.spec.target_user.email.clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = removing.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "a person removed from the binding by two records: {twice:?}");

    // Every SUCCESS is true in the cluster; nothing outside the policy changed.
    for (i, answer) in &answers {
        let who = format!("User:user{i}@lumos.com");
        if answer.as_ref().is_some_and(|a| a["response"] == "SUCCESS") {
            let rb = get_rb(&c, &inside, &format!("rb-{i}")).await.unwrap();
            assert_eq!(
                names(&rb.subjects),
                vec!["User:keep@lumos.com"],
                "SUCCESS for user{i} but the binding still has them"
            );
        }
        let kept = get_rb(&c, &outside, &format!("rb-{i}")).await.unwrap();
        assert_eq!(names(&kept.subjects), vec![who], "a binding outside the policy changed");
    }
    // No external call was sent twice.
    let posts = posts.lock().unwrap().clone();
    let twice: Vec<_> = posts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "external calls sent more than once: {twice:?}");
    assert!(posts.len() <= records.len());
}
