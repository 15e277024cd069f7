//! `deprovisioner evidence` against a real control plane: the operator removes two people's
//! access on two Lumos calls, then the built binary reads the records and writes CSV, JSON and
//! HTML; the HTML is opened in headless Chromium (when installed) and screenshotted. The
//! binary also runs as a kubectl plugin (`kubectl deprovisioner evidence`).

mod support;

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use deprovisioner::crd::DeprovisionRequest;
use deprovisioner::fixtures::{group, user};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs `deprovisioner evidence` with the admin kubeconfig and these flags.
fn evidence(c: &Cluster, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .arg("evidence")
        .args(["--kubeconfig", c.kubeconfig.to_str().unwrap()])
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("running deprovisioner evidence");
    assert!(out.status.success(), "evidence {args:?} failed: {}", text(&out.stderr));
    out
}

/// Replaces the `Verified` condition the operator wrote with a hostile one (the report must
/// escape every recorded text).
async fn mark_verified(client: &kube::Client, name: &str, status: &str, message: &str) {
    let api: Api<DeprovisionRequest> = Api::all(client.clone());
    let mut r = api.get(name).await.unwrap();
    let conditions = &mut r.status.as_mut().unwrap().conditions;
    conditions.retain(|c| c.type_ != "Verified");
    conditions.push(Condition {
        type_: "Verified".into(),
        status: status.into(),
        reason: "Checked".into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    });
    api.replace_status(name, &PostParams::default(), &r).await.unwrap();
}

/// The JSON report's rows for `person`.
fn rows_of<'a>(report: &'a Value, person: &str) -> Vec<&'a Value> {
    report["rows"].as_array().unwrap().iter().filter(|r| r["person"] == person).collect()
}

#[tokio::test]
async fn evidence_shows_who_lost_what_with_the_subjects_before_and_after() {
    let cl = cluster();
    let c = admin().await;
    let op = Operator::start(OperatorOpts::on(cl));
    let ns = unique("evidence");
    namespace(&c, &ns, &[]).await;
    let (ann, bob) = ("ann.lee@example.com", "bob@example.com");
    role_binding(&c, &ns, "developers", "edit", vec![user(ann), user("mj@example.com"), group("team-a")]).await;
    role_binding(&c, &ns, "ann-only", "view", vec![user(ann)]).await;
    role_binding(&c, &ns, "on-call", "view", vec![user(bob), group("sre")]).await;
    let app = namespace_policy(&c, "evidence", &ns).await;

    let mut bob_payload = payload(&app, bob, &["admin"]);
    bob_payload["target_user"]["given_name"] = json!("<script>alert('bob')</script>");
    let mut names = vec![];
    for p in [payload(&app, ann, &[]), bob_payload] {
        let (status, answer, _) = op.lumos(&p).await;
        assert_eq!((status, answer["response"].as_str()), (200, Some("SUCCESS")), "{answer}");
        names.push(request_name(&answer));
    }
    // The first request keeps the operator's own verification (`Verified=True`).
    mark_verified(&c, &names[1], "False", "User bob still bound <img src=x onerror=alert(1)>").await;

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("evidence");
    evidence(cl, &["--since", "1h", "--app", &app, "--out-dir", out_dir.to_str().unwrap()]);

    // JSON: one row per action, with the binding's subjects before and after.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("evidence.json")).unwrap()).unwrap();
    let ann_rows = rows_of(&report, ann);
    assert_eq!(ann_rows.len(), 2, "{report:#}");
    let devs = ann_rows.iter().find(|r| r["object"] == format!("RoleBinding {ns}/developers")).unwrap();
    assert_eq!(devs["outcome"], "Removed");
    assert_eq!(devs["subjectsBefore"], json!([format!("User:{ann}"), "User:mj@example.com", "Group:team-a"]));
    assert_eq!(devs["subjectsAfter"], json!(["User:mj@example.com", "Group:team-a"]));
    assert_eq!(devs["role"], "ClusterRole/edit");
    assert_eq!(devs["request"], names[0].as_str());
    assert_eq!(devs["verification"], "verified: no remaining access");
    assert!(devs["calledAt"].as_str().unwrap().ends_with('Z') && devs["completedAt"].as_str().unwrap().ends_with('Z'));
    let only = ann_rows.iter().find(|r| r["object"] == format!("RoleBinding {ns}/ann-only")).unwrap();
    assert_eq!(only["outcome"], "Deleted");
    assert_eq!(
        (only["subjectsBefore"].clone(), only["subjectsAfter"].clone()),
        (json!([format!("User:{ann}")]), json!([]))
    );
    let bob_rows = rows_of(&report, bob);
    assert_eq!(bob_rows.len(), 1);
    assert_eq!(bob_rows[0]["subjectsAfter"], json!(["Group:sre"]));
    assert_eq!(bob_rows[0]["permissions"], "admin");
    assert_eq!(bob_rows[0]["verification"], "User bob still bound <img src=x onerror=alert(1)>");

    // CSV: the same rows.
    let csv = std::fs::read_to_string(out_dir.join("evidence.csv")).unwrap();
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert!(lines[0].starts_with("request,person,app,permissions,calledAt,completedAt,"), "{}", lines[0]);
    assert_eq!(lines.len(), 4, "header and three actions:\n{csv}");
    assert!(
        csv.contains(&format!(",User:{ann}; User:mj@example.com; Group:team-a,User:mj@example.com; Group:team-a,"))
    );
    let deleted = format!(",Deleted,\"removed User {ann} and deleted RoleBinding {ns}/ann-only, its last subject\",");
    assert!(csv.contains(&deleted), "a message with a comma is quoted:\n{csv}");
    assert!(csv.contains(&format!(",User:{ann},(none),verified: no remaining access")), "{csv}");

    // --person: only that person's rows, in any case.
    let out = evidence(cl, &["--app", &app, "--person", "ANN.LEE@example.com", "--format", "json"]);
    let only_ann: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(only_ann["rows"].as_array().unwrap().len(), 2);
    assert!(only_ann["rows"].as_array().unwrap().iter().all(|r| r["person"] == ann));
    let out = evidence(cl, &["--app", &app, "--until", "1h", "--format", "csv"]);
    assert_eq!(text(&out.stdout).trim_end().split("\r\n").count(), 1, "nothing before an hour ago: the header only");

    // HTML: the summary, each request, escaped text.
    let html_path = out_dir.join("evidence.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<h1>Access removal evidence</h1>"));
    for name in &names {
        assert!(html.contains(name.as_str()), "{name} in the report");
    }
    assert!(html.contains(&format!("<li class=\"gone\">User:{ann}</li>")), "the removed name is struck through");
    assert!(html.contains("none: binding deleted"));
    assert!(html.contains("verified: no remaining access"));
    assert!(html.contains("&lt;script&gt;alert(&#39;bob&#39;)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("<script") && !html.contains("<img"), "recorded text is escaped");

    kubectl_plugin(cl, dir.path(), &app, bob);
    screenshot(&html_path, &dir.path().join("evidence.png"));
}

/// `deprovisioner evidence | head`: a reader that stops before the report is written ends the
/// command quietly (exit 0, or killed by SIGPIPE as `cat` would be), with no error, panic or
/// backtrace on standard error.
#[test]
fn a_reader_that_stops_early_ends_the_report_quietly() {
    let cl = cluster();
    let mut child = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["evidence", "--kubeconfig", cl.kubeconfig.to_str().unwrap()])
        .env_remove("KUBECONFIG")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running deprovisioner evidence");
    // The reader goes away at once: the command is still reading the records then.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success() || out.status.signal() == Some(13), "{:?}: {stderr}", out.status);
    for noise in ["Error", "panicked", "backtrace", "Broken pipe"] {
        assert!(!stderr.contains(noise), "{noise:?} on standard error: {stderr}");
    }
}

/// `kubectl deprovisioner evidence …` runs the binary found on the PATH as
/// `kubectl-deprovisioner`, with the flags after the plugin's name.
fn kubectl_plugin(cl: &Cluster, dir: &Path, app: &str, person: &str) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_deprovisioner"), plugins.join("kubectl-deprovisioner")).unwrap();
    let path = format!("{}:{}:{}", plugins.display(), cl.bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(cl.bin_dir.join("kubectl"))
        .args(["deprovisioner", "evidence", "--app", app, "--person", person, "--format", "json"])
        .env("PATH", path)
        .env("KUBECONFIG", &cl.kubeconfig)
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl deprovisioner evidence: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 1);
    assert_eq!(report["rows"][0]["person"], person);
}

/// Opens the report in headless Chromium and checks it rendered to a real PNG.
fn screenshot(html: &Path, png: &PathBuf) {
    if !Path::new(CHROMIUM).exists() {
        println!("SKIPPED the browser check: {CHROMIUM} is not installed (apt-get install chromium)");
        return;
    }
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1600"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium exited {status}");
    let bytes = std::fs::read(png).expect("the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(bytes.len() > 20_000, "a rendered page, not a blank one: {} bytes", bytes.len());
    if let Ok(keep) = std::env::var("EVIDENCE_SCREENSHOT") {
        std::fs::copy(png, &keep).unwrap();
        println!("screenshot saved to {keep}");
    }
}

/// Last activity (issue 26), from shards written as the audit receiver writes them:
/// `deprovisioner inactive --for 30d` lists an identity that only holds a binding and one last
/// seen 40 days ago, not one active an hour ago, and one whose recording began 3 days ago apart
/// (unproven); a removal then records the last activity it was based on, and the evidence shows
/// it; a shard that cannot be read is recorded as a failed read and does not hold up the removal.
/// On a control plane of its own: its operator must be the one that plans (other tests here run
/// operators of their own, and whichever holds the Lease plans every request).
#[tokio::test]
async fn inactive_lists_idle_bindings_and_a_removal_records_the_last_activity() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use support::activity_store::*;
    let cl = own_cluster();
    let c = cl.admin().await;
    let prefix = unique("act");
    grant_shard_reads(&c, "deprovisioner", &prefix).await;
    let ns = unique("inactive");
    namespace(&c, &ns, &[]).await;
    let now = Timestamp::now();
    let ago = |days: i64| now.checked_sub(SignedDuration::from_hours(24 * days)).unwrap();
    let (stale, busy) = (format!("stale@{ns}.example.com"), format!("busy@{ns}.example.com"));
    let (stale_id, busy_id, bot_id) =
        (format!("User:{stale}"), format!("User:{busy}"), format!("ServiceAccount:{ns}/bot"));
    put_sightings(
        &c,
        &prefix,
        ago(60),
        &[
            (&stale_id, entry(ago(40), &format!("list pods in {ns}"), Some("X509SHA256=5t4le"))),
            (&busy_id, entry(now.checked_sub(SignedDuration::from_hours(1)).unwrap(), "get pods", None)),
            (&bot_id, entry(ago(45), "watch configmaps", Some("JTI=b0t"))),
        ],
    )
    .await;
    // Audit batches have kept arriving for 60 days (without it, nobody is proven inactive).
    put_status(&c, &prefix, ago(60), now).await;
    let taken = [stale_id.as_str(), busy_id.as_str(), bot_id.as_str()];
    // Only holds a binding: its shard records from 60 days ago and never saw it.
    let never_id = account_outside(&format!("User:never@{ns}.example.com"), &[]);
    let never_shard = deprovisioner::activity::ledger::shard_of(&never_id);
    if !taken.iter().any(|a| deprovisioner::activity::ledger::shard_of(a) == never_shard) {
        put_shard(&c, &prefix, never_shard, &deprovisioner::activity::Shard::new(ago(60))).await;
    }
    // Its shard began recording 3 days ago: not proven inactive for 30 days.
    let fresh_id =
        account_outside(&format!("User:fresh@{ns}.example.com"), &[&taken[..], &[never_id.as_str()]].concat());
    put_shard(
        &c,
        &prefix,
        deprovisioner::activity::ledger::shard_of(&fresh_id),
        &deprovisioner::activity::Shard::new(ago(3)),
    )
    .await;
    let name_of_id = |id: &str| id.strip_prefix("User:").unwrap().to_string();
    role_binding(
        &c,
        &ns,
        "devs",
        "edit",
        vec![user(&stale), user(&busy), user(&name_of_id(&never_id)), user(&name_of_id(&fresh_id)), group("devs")],
    )
    .await;
    role_binding(&c, &ns, "bots", "view", vec![deprovisioner::fixtures::service_account("bot")]).await;

    let inactive = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
            .args(["inactive", "--for", "30d", "--format", format, "--activity-prefix", &prefix])
            .args(["--kubeconfig", cl.kubeconfig.to_str().unwrap()])
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "inactive --format {format}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let report: Value = serde_json::from_str(&inactive("json")).unwrap();
    let status_of = |id: &str| {
        report["accounts"].as_array().unwrap().iter().find(|a| a["account"] == id).map(|a| a["status"].clone())
    };
    assert_eq!(status_of(&stale_id), Some(json!("inactive")), "{report:#}");
    assert_eq!(status_of(&bot_id), Some(json!("inactive")));
    assert_eq!(status_of(&never_id), Some(json!("inactive")), "only holds a binding");
    assert_eq!(status_of(&fresh_id), Some(json!("unproven")), "recording began 3 days ago");
    assert_eq!(status_of(&busy_id), None, "active an hour ago");
    assert_eq!(status_of("Group:devs"), None, "groups are not accounts that act");
    let stale_row = report["accounts"].as_array().unwrap().iter().find(|a| a["account"] == stale_id).unwrap();
    assert_eq!(stale_row["bindings"], json!([format!("RoleBinding {ns}/devs")]));
    assert_eq!(stale_row["credential"], "X509SHA256=5t4le");
    let table = inactive("table");
    let (proven, unproven) =
        (table.find("Inactive (recording covered").unwrap(), table.find("Not proven inactive").unwrap());
    let at = |id: &str| table.find(&format!("{id} ")).unwrap_or_else(|| panic!("{id} missing:\n{table}"));
    assert!(proven < at(&never_id) && at(&never_id) < unproven && at(&fresh_id) > unproven, "{table}");
    let csv = inactive("csv");
    assert!(csv.contains(&format!("{never_id},User,inactive,not since ")), "{csv}");

    // A removal records the last activity it was based on; the evidence shows it.
    let op = Operator::start(OperatorOpts::on(cl).args(&["--record-last-activity=true", "--activity-prefix", &prefix]));
    let app = namespace_policy(&c, "inactive", &ns).await;
    let (status, answer, _) = op.lumos(&payload(&app, &stale, &[])).await;
    assert_eq!((status, answer["response"].as_str()), (200, Some("SUCCESS")), "{answer}");
    let name = request_name(&answer);
    let record = get_request(&c, &name).await;
    let last = record.status.unwrap().last_activity.expect("the last activity is recorded");
    assert_eq!(last.error, None);
    assert!(last.covered_from.is_some() && last.heard_at.is_some(), "the store's coverage is recorded: {last:?}");
    assert_eq!(last.accounts.len(), 1, "{last:?}");
    assert_eq!(last.accounts[0].account, stale_id);
    assert_eq!(last.accounts[0].state, deprovisioner::crd::ActivityState::Seen);
    assert_eq!(last.accounts[0].at.as_ref().map(|t| t.0.as_second()), Some(ago(40).as_second()));
    assert_eq!(last.accounts[0].credential.as_deref(), Some("X509SHA256=5t4le"));
    let out = evidence(cl, &["--app", &app, "--format", "json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = rows["rows"][0]["lastActivity"].as_str().unwrap();
    assert!(
        shown.starts_with(&format!("{stale_id}: last active {}", &ago(40).strftime("%Y-%m-%dT%H:%M:%SZ"))),
        "{shown}"
    );
    let out = evidence(cl, &["--app", &app, "--format", "html"]);
    assert!(text(&out.stdout).contains("<dt>Last activity</dt>"));

    // A shard that does not parse: the read fails, the record says so, the removal goes on.
    let broken_id = account_outside(
        &format!("User:broken@{ns}.example.com"),
        &[&taken[..], &[never_id.as_str(), fresh_id.as_str()]].concat(),
    );
    let broken_cm =
        deprovisioner::activity::ledger::object_name(&prefix, deprovisioner::activity::ledger::shard_of(&broken_id));
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.clone(), NAMESPACE);
    let cm =
        serde_json::from_value(json!({"metadata": {"name": broken_cm}, "data": {"ledger.json": "not json"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    let broken = name_of_id(&broken_id);
    role_binding(&c, &ns, "broken", "view", vec![user(&broken)]).await;
    let (status, answer, _) = op.lumos(&payload(&app, &broken, &[])).await;
    assert_eq!((status, answer["response"].as_str()), (200, Some("SUCCESS")), "{answer}");
    let st = get_request(&c, &request_name(&answer)).await.status.unwrap();
    assert_eq!(st.removed, 1);
    let error = st.last_activity.and_then(|a| a.error).expect("the failed read is recorded");
    assert!(error.contains(&format!("{NAMESPACE}/{broken_cm}")), "{error}");
}
