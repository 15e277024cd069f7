//! Last activity from the API server's own audit webhook (issue 26), on a control plane of its
//! own whose API server sends its audit batches to the operator's `--audit-listen`: a user with a
//! client certificate, a ServiceAccount with a token and an impersonated user act; the stored
//! shards show them with the events' times and credential ids; a batch acknowledged just before
//! a kill -9 is there after the restart; the API server reports no events dropped; bad calls are
//! refused saying why.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use deprovisioner::activity::ledger::{COMPONENT, DATA_KEY};
use deprovisioner::activity::{Entry, Shard};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use support::*;

/// Every stored account's last activity (the shards' ConfigMaps, read as the admin).
async fn stored(admin: &Client) -> BTreeMap<String, Entry> {
    let api: Api<ConfigMap> = Api::namespaced(admin.clone(), "deprovisioner");
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/component={COMPONENT}"));
    let mut all = BTreeMap::new();
    for cm in api.list(&lp).await.unwrap() {
        if cm.metadata.name.as_deref() == Some("deprovisioner-activity-status") {
            continue; // the store's status, not a shard
        }
        let text = cm.data.as_ref().and_then(|d| d.get(DATA_KEY)).expect("a shard's data");
        let shard: Shard = serde_json::from_str(text).unwrap();
        all.extend(shard.accounts);
    }
    all
}

/// Waits until every account in `who` is stored with a sighting at or after `since`.
async fn wait_stored(admin: &Client, who: &[&str], since: Timestamp) -> BTreeMap<String, Entry> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = stored(admin).await;
        if who.iter().all(|a| all.get(*a).is_some_and(|e| e.at >= since)) {
            return all;
        }
        assert!(Instant::now() < deadline, "{who:?} not all stored since {since} within 20 s; stored: {all:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn config_of(path: &std::path::Path) -> Config {
    let kc = Kubeconfig::read_from(path).unwrap();
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap()
}

/// One request as `client` (its answer does not matter: a refused request is audited too),
/// between the two times returned.
async fn act(client: &Client, ns: &str) -> (Timestamp, Timestamp) {
    let before = Timestamp::now();
    let _ = Api::<ConfigMap>::namespaced(client.clone(), ns).list(&ListParams::default().limit(1)).await;
    (before, Timestamp::now())
}

/// `at` lies within the request's times (the API server's stamp has microseconds).
fn within(at: Timestamp, (before, after): (Timestamp, Timestamp)) -> bool {
    let us = SignedDuration::from_micros(1);
    at >= before.checked_sub(us).unwrap() && at <= after
}

/// A counter of the operator's metrics exposition.
async fn metric(port: u16, line_start: &str) -> f64 {
    let text =
        http_client().get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn post_audit(
    ac: &AuditCluster,
    token: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let resp = audit_client(ac)
        .post(format!("https://127.0.0.1:{}/audit", ac.port))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_events_become_last_activity_that_survives_a_restart() {
    let ac = audit_cluster();
    let c = ac.cluster;
    let admin = c.admin().await;
    let metrics_port = free_port();
    let opts = || {
        OperatorOpts::on(c).audit(&ac).args(&[
            "--activity-resolution",
            "1s",
            "--audit-max-body",
            "1048576",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ])
    };
    let mut op = Operator::start(opts());
    op.wait_audit_listening();

    // Refusals, straight to the endpoint.
    let event = |user: &str, at: Timestamp| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","verb":"get","user":{{"username":"{user}"}},"stageTimestamp":"{at}"}}"#
        )
    };
    let (code, body) =
        post_audit(&ac, "not-the-token-0123456789", "application/json", event("x", Timestamp::now())).await;
    assert_eq!((code, body.as_str()), (401, ""), "nothing said without the token");
    let (code, body) = post_audit(&ac, AUDIT_TOKEN, "text/plain", event("x", Timestamp::now())).await;
    assert_eq!(code, 415, "{body}");
    let (code, body) = post_audit(&ac, AUDIT_TOKEN, "application/json", vec![b' '; 1_100_000]).await;
    assert_eq!(code, 413, "{body}");
    let lines = format!("{}\n{{\"kind\":\"Event\",\"user\":", event("x", Timestamp::now()));
    let (code, body) = post_audit(&ac, AUDIT_TOKEN, "application/x-ndjson", lines).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("line 2"), "names the line: {body}");

    // Batches sent before the operator listened failed; from now on none may.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (events_before, errors_before) = audit_counters(c);

    // alice (client certificate, group dev), a ServiceAccount with a TokenRequest token, and the
    // admin impersonating bob.
    let alice_kc = c.client_cert("alice", &["dev"]);
    let alice = Client::try_from(config_of(&alice_kc).await).unwrap();
    kubectl_ok(c, &["create", "namespace", "team-a"]);
    kubectl_ok(c, &["create", "serviceaccount", "builder", "-n", "team-a"]);
    let token = text(&kubectl_ok(c, &["create", "token", "builder", "-n", "team-a"]).stdout).trim().to_string();
    let mut sa_config = config_of(&c.kubeconfig).await;
    sa_config.auth_info = kube::config::AuthInfo { token: Some(token.clone().into()), ..Default::default() };
    let builder = Client::try_from(sa_config).unwrap();
    let mut bob_config = config_of(&c.kubeconfig).await;
    bob_config.auth_info.impersonate = Some("bob".into());
    let bob = Client::try_from(bob_config).unwrap();

    let alice_at = act(&alice, "default").await;
    let builder_at = act(&builder, "team-a").await;
    let bob_at = act(&bob, "default").await;
    let seen = wait_stored(&admin, &["User:alice", "ServiceAccount:team-a/builder", "User:bob"], alice_at.0).await;

    let a = &seen["User:alice"];
    assert!(within(a.at, alice_at), "alice at {} not within {alice_at:?}", a.at);
    let der = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(c.dir.join("pki/users/alice.crt"))
        .output()
        .unwrap()
        .stdout;
    let fingerprint = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&der))
    };
    assert_eq!(a.credential.as_deref(), Some(format!("X509SHA256={fingerprint}").as_str()), "alice's certificate");
    assert_eq!(a.what.as_deref(), Some("list configmaps in default"));
    let b = &seen["ServiceAccount:team-a/builder"];
    assert!(within(b.at, builder_at), "builder at {} not within {builder_at:?}", b.at);
    assert!(b.credential.as_deref().is_some_and(|c| c.starts_with("JTI=")), "the token's id: {b:?}");
    let i = &seen["User:bob"];
    assert!(within(i.at, bob_at), "bob at {} not within {bob_at:?}", i.at);
    assert_eq!(i.impersonated_by.as_deref(), Some("admin"), "names the impersonator");
    assert_eq!(i.credential, None, "the credential was the admin's");
    assert!(seen.contains_key("User:admin"), "the impersonator acted too");
    let everything = format!("{seen:?}");
    assert!(!everything.contains(&token) && !everything.contains("BEGIN"), "no token or certificate stored");

    // The operator's own writes are audited too: the resolution bounds that loop. In a quiet
    // window each account active in it changes its shard at most once per resolution (1 s).
    let written = r#"deprovisioner_activity_writes_total{result="written"}"#;
    let window_start = Timestamp::now();
    let w0 = metric(metrics_port, written).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let w1 = metric(metrics_port, written).await;
    let active = stored(&admin).await.values().filter(|e| e.at >= window_start).count() as f64;
    assert!(w1 - w0 <= active * 6.0 + 1.0, "{} writes in 5 s for {active} active accounts", w1 - w0);

    // Nothing the API server sent was dropped or failed.
    let (events_after, errors_after) = audit_counters(c);
    assert!(events_after > events_before, "the API server audited the requests");
    assert_eq!(errors_after, errors_before, "audit events dropped or failed while the operator listened");

    // A batch acknowledged just before a kill -9 is kept.
    let carol_at = Timestamp::now();
    let (code, body) = post_audit(&ac, AUDIT_TOKEN, "application/json", event("carol", carol_at)).await;
    assert_eq!((code, body.as_str()), (200, r#"{"accepted":1,"ignored":0}"#));
    op.kill();
    let op = Operator::start(opts());
    op.wait_audit_listening();
    let after = stored(&admin).await;
    assert_eq!(after["User:carol"].at, carol_at, "acknowledged before the kill: stored");
    for who in ["User:alice", "ServiceAccount:team-a/builder", "User:bob"] {
        assert!(after[who].at >= seen[who].at, "{who} kept");
    }
    // The new process goes on from the stored shards.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = act(&alice, "team-a").await;
    let now = wait_stored(&admin, &["User:alice"], again.0).await;
    assert!(within(now["User:alice"].at, again), "alice's later request: {:?}", now["User:alice"]);
    assert_eq!(now["User:carol"].at, carol_at, "merged with what was stored");
    drop(op);
}

/// What Lumos and people read is what the API server audited, end to end: alice (a client
/// certificate), a ServiceAccount (a token) and bob (impersonated) act; the connector CLI, run as
/// Lumos's agent with the chart's identity, answers `get_last_activity` for them at their
/// requests' times (the SDK's models accept the answer); dave, who only holds a binding, is left
/// out, and `deprovisioner inactive` lists him as inactive once recording covers its window,
/// and none of those who acted.
#[tokio::test(flavor = "multi_thread")]
async fn lumos_and_inactive_read_what_the_api_server_audited() {
    let ac = audit_cluster();
    let c = ac.cluster;
    let admin = c.admin().await;
    let op = Operator::start(OperatorOpts::on(c).audit(&ac).args(&["--activity-resolution", "1s"]));
    op.wait_audit_listening();
    // Recording begins at the first stored batch (the API server audits the operator's own Lease
    // renewals within a few seconds), not when the operator started.
    let started = Timestamp::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    let covered_from = loop {
        if let Some(c) = support::activity_store::get_status(&admin, "deprovisioner-activity").await {
            break c.covered_from;
        }
        assert!(Instant::now() < deadline, "no status object within 20 s of the endpoint listening");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(covered_from >= started.checked_sub(SignedDuration::from_secs(2)).unwrap(), "{covered_from} {started}");
    // Room between the start of coverage and the first request, for a window that starts inside it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    kubectl_ok(c, &["create", "namespace", "team-b"]);
    kubectl_ok(c, &["create", "serviceaccount", "builder", "-n", "team-b"]);
    kubectl_ok(c, &["create", "rolebinding", "devs", "-n", "team-b", "--clusterrole", "view", "--user", "alice"]);
    kubectl_ok(c, &["create", "rolebinding", "more", "-n", "team-b", "--clusterrole", "view", "--user", "bob"]);
    kubectl_ok(c, &["create", "rolebinding", "idle", "-n", "team-b", "--clusterrole", "edit", "--user", "dave"]);
    kubectl_ok(
        c,
        &["create", "rolebinding", "ci", "-n", "team-b", "--clusterrole", "view", "--serviceaccount", "team-b:builder"],
    );
    let alice = Client::try_from(config_of(&c.client_cert("alice", &["dev"])).await).unwrap();
    let token = text(&kubectl_ok(c, &["create", "token", "builder", "-n", "team-b"]).stdout).trim().to_string();
    let mut sa_config = config_of(&c.kubeconfig).await;
    sa_config.auth_info = kube::config::AuthInfo { token: Some(token.into()), ..Default::default() };
    let builder = Client::try_from(sa_config).unwrap();
    let mut bob_config = config_of(&c.kubeconfig).await;
    bob_config.auth_info.impersonate = Some("bob".into());
    let bob = Client::try_from(bob_config).unwrap();

    let acted = [
        ("User:alice", act(&alice, "team-b").await),
        ("ServiceAccount:team-b/builder", act(&builder, "team-b").await),
        ("User:bob", act(&bob, "team-b").await),
    ];
    wait_stored(&admin, &acted.map(|(who, _)| who), acted[0].1.0).await;

    // Lumos's agent, with the identity and the store's read access the chart gives it.
    let agent = c.kubeconfig_as("deprovisioner-lumos-agent");
    let ask = serde_json::json!({"request": {"account_ids": ["User:alice", "ServiceAccount:team-b/builder", "User:bob", "User:dave"]}});
    let out = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["connector", "get_last_activity", "--json", &ask.to_string()])
        .args(["--kubeconfig", agent.to_str().unwrap()])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "get_last_activity: {}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    support::sdk::validate(&[("GetLastActivityResponse", &answer)]);
    let answered: BTreeMap<String, Timestamp> = answer["response"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|d| (d["account_id"].as_str().unwrap().to_string(), d["happened_at"].as_str().unwrap().parse().unwrap()))
        .collect();
    assert_eq!(
        answered.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ServiceAccount:team-b/builder", "User:alice", "User:bob"],
        "dave never acted: left out ({answer})"
    );
    for (who, window) in acted {
        assert!(within(answered[who], window), "{who} at {} not within {window:?}", answered[who]);
    }

    // `inactive` (as an admin would run it), over a window that starts between the start of
    // coverage and the first request: dave is proven inactive (coverage spans the window), and
    // none of those who acted is listed. Both always hold, whatever the timing.
    let window_start = covered_from.checked_add(covered_from.duration_until(acted[0].1.0) / 2).unwrap();
    let window_ms = Timestamp::now().duration_since(window_start).as_millis();
    assert!(window_start > covered_from && window_start < acted[0].1.0, "room on both sides");
    let out = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["inactive", "--for", &format!("{window_ms}ms"), "--format", "json"])
        .args(["--kubeconfig", c.kubeconfig.to_str().unwrap()])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "inactive: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status_of = |id: &str| {
        report["accounts"].as_array().unwrap().iter().find(|a| a["account"] == id).map(|a| a["status"].clone())
    };
    assert_eq!(status_of("User:dave"), Some(serde_json::json!("inactive")), "only holds a binding: {report:#}");
    for (who, _) in acted {
        assert_eq!(status_of(who), None, "{who} acted within the window: {report:#}");
    }
    assert_eq!(report["coveredFrom"], serde_json::json!(deprovisioner::text::rfc3339(covered_from)), "{report:#}");
    drop(op);
}

/// CPU time (user + system) of a process so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0 // USER_HZ
}

/// Figures for the README: `BENCH_ACTIVITY_IDS` (100,000) distinct users' events posted to the
/// audit endpoint in EventLists of 400, four at once, as the API server's batches come: events
/// per second handled, the operator's CPU per 1,000 events, its memory, and the bytes stored.
/// Every event names a new account, so every batch changes shards: the costliest case.
///   cargo test --release --test activity activity_figures -- --ignored --nocapture
#[tokio::test(flavor = "multi_thread")]
#[ignore = "figures for the README, a few minutes"]
async fn activity_figures() {
    let ids: usize = std::env::var("BENCH_ACTIVITY_IDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let ac = audit_cluster();
    let admin = ac.cluster.admin().await;
    let op = Operator::start(OperatorOpts::on(ac.cluster).audit(&ac).args(&[
        "--audit-max-events-per-second",
        "1000000",
        "--log-level",
        "info",
    ]));
    op.wait_audit_listening();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = proc_status_mib(op.pid(), "VmRSS:");
    let cpu_before = cpu_seconds(op.pid());
    let started = Instant::now();
    let at = Timestamp::now();
    let batches: Vec<String> = (0..ids)
        .collect::<Vec<_>>()
        .chunks(400)
        .map(|chunk| {
            let items: Vec<String> = chunk
                .iter()
                .map(|i| {
                    // Distinct times, as real events have (accounts forgotten for the bound go
                    // with every account seen at the same instant).
                    let at = at.checked_add(SignedDuration::from_micros(*i as i64)).unwrap();
                    format!(
                        r#"{{"level":"Metadata","auditID":"id-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/team-{t}/pods","verb":"list","user":{{"username":"person-{i}@example.com","groups":["dev","system:authenticated"],"extra":{{"authentication.kubernetes.io/credential-id":["X509SHA256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]}}}},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.37.2","objectRef":{{"resource":"pods","namespace":"team-{t}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{at}","stageTimestamp":"{at}"}}"#,
                        t = i % 50
                    )
                })
                .collect();
            format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#, items.join(","))
        })
        .collect();
    let client = audit_client(&ac);
    let url = format!("https://127.0.0.1:{}/audit", ac.port);
    let results: Vec<u16> = futures::stream::iter(batches)
        .map(|body| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                loop {
                    let resp = client
                        .post(&url)
                        .header("authorization", format!("Bearer {AUDIT_TOKEN}"))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    match resp.status().as_u16() {
                        429 | 503 => tokio::time::sleep(Duration::from_millis(500)).await,
                        code => return code,
                    }
                }
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let took = started.elapsed();
    assert!(results.iter().all(|c| *c == 200), "{results:?}");
    let cpu = cpu_seconds(op.pid()) - cpu_before;
    let (rss, hwm) = (proc_status_mib(op.pid(), "VmRSS:"), proc_status_mib(op.pid(), "VmHWM:"));
    let api: Api<ConfigMap> = Api::namespaced(admin.clone(), "deprovisioner");
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/component={COMPONENT}"));
    let shards = api.list(&lp).await.unwrap().items;
    let bytes: usize = shards.iter().filter_map(|c| c.data.as_ref()?.get(DATA_KEY)).map(String::len).sum();
    let largest = shards.iter().filter_map(|c| c.data.as_ref()?.get(DATA_KEY)).map(String::len).max().unwrap_or(0);
    let held = stored(&admin).await.keys().filter(|k| k.starts_with("User:person-")).count();
    let line = format!(
        "{ids} distinct users' events in {:.1} s ({:.0} events/s); operator CPU {:.2} s per 1,000 events; RSS {rss_before:.1} MiB before, {rss:.1} MiB after (peak {hwm:.1} MiB); stored {held} accounts in {} ConfigMaps, {:.1} MiB (largest {:.0} KiB)",
        took.as_secs_f64(),
        ids as f64 / took.as_secs_f64(),
        cpu * 1000.0 / ids as f64,
        shards.len(),
        bytes as f64 / (1024.0 * 1024.0),
        largest as f64 / 1024.0,
    );
    eprint_uncaptured(&line);
    // Each shard keeps max/64: the fuller shards forget their least recently seen.
    assert!(held > ids * 9 / 10, "kept most: {held}");
}
