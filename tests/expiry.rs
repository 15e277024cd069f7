//! Access that ends by itself, on a real kube-apiserver, with durations of seconds: a policy
//! rule's `maxAccess` and a binding's `deprovisioner.dev/expires` annotation each remove exactly
//! the subject whose time is up, as an `Expiry` request (plan, actions, verification, record,
//! evidence, an Event on the binding); exempt and protected subjects stay; a later Lumos call for
//! the same removal finds it done; a subject added again gets a new clock (and one given back
//! after its expiry is reported on the expiry's record as a re-grant, not removed by it); the clocks survive a
//! restart between grant and expiry, and a leader killed at the moment of expiry leaves nothing
//! removed twice and nothing left.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deprovisioner::crd::{AccessClock, DeprovisionRequest, EndedBy, Outcome, Phase, RequestSource, StartEvidence};
use deprovisioner::fixtures::user;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::*;

fn shared() -> &'static Operator {
    static OP: OnceLock<Operator> = OnceLock::new();
    OP.get_or_init(|| Operator::start(OperatorOpts::default()))
}

/// A policy for app `app` over the RoleBindings of `ns`, with `rule` and `spec` merged in.
async fn expiry_policy(c: &Client, ns: &str, app: &str, rule: serde_json::Value, spec: serde_json::Value) {
    let mut r = json!({"roleBindings": {"namespaces": [ns]}});
    r.as_object_mut().unwrap().extend(rule.as_object().unwrap().clone());
    let mut all = json!({
        "application": {"appId": app},
        "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
        "rules": [r]
    });
    all.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    policy(c, &unique("exp-policy"), all).await;
}

fn sa(ns: &str, name: &str) -> Subject {
    Subject { kind: "ServiceAccount".into(), name: name.into(), namespace: Some(ns.into()), ..Default::default() }
}

/// Waits until `ns/name` no longer names `who` (or is gone); returns when that was seen.
async fn until_removed(c: &Client, ns: &str, name: &str, who: &str, within: Duration) -> Timestamp {
    let deadline = Instant::now() + within;
    loop {
        match get_rb(c, ns, name).await {
            Some(b) if names(&b.subjects).contains(&who.to_string()) => {}
            _ => return Timestamp::now(),
        }
        assert!(Instant::now() < deadline, "{who} still in {ns}/{name} after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Expiry requests for `account` (any app), oldest first.
async fn expiries_of(c: &Client, account: &str) -> Vec<DeprovisionRequest> {
    let api: Api<DeprovisionRequest> = Api::all(c.clone());
    let lp = ListParams::default().labels("access.deprovisioner.dev/source=expiry");
    let mut out: Vec<_> = (api.list(&lp).await.unwrap().items.into_iter())
        .filter(|r| r.spec.expiry.as_ref().is_some_and(|e| e.account == account))
        .collect();
    out.sort_by_key(|r| r.spec.expiry.as_ref().unwrap().started_at.0);
    out
}

async fn terminal(c: &Client, r: &DeprovisionRequest) -> DeprovisionRequest {
    wait_terminal(c, &name_of(r), Duration::from_secs(20)).await
}

fn seconds(d: SignedDuration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test]
async fn policy_and_annotation_end_exactly_what_is_due() {
    let op = shared();
    let c = admin().await;
    let ns = unique("exp");
    namespace(&c, &ns, &[]).await;
    let app = unique("exp-app");
    // maxAccess in `ns`; only the annotation in `ns2`.
    let ns2 = unique("exp-annotated");
    namespace(&c, &ns2, &[]).await;
    let rules =
        json!([{"roleBindings": {"namespaces": [ns]}, "maxAccess": "5s"}, {"roleBindings": {"namespaces": [ns2]}}]);
    expiry_policy(&c, &ns, &app, json!({}), json!({"rules": rules, "expiry": {"exempt": ["User:*@exempt.example"]}}))
        .await;
    // Policy-driven: ann's 5 s run out; the exempt and the protected (the operator's own
    // ServiceAccount, a system: group) stay.
    let team = role_binding(
        &c,
        &ns,
        "team",
        "view",
        vec![
            user("ann@lumos.com"),
            user("boss@exempt.example"),
            sa("deprovisioner", "deprovisioner"),
            Subject { kind: "Group".into(), name: "system:authenticated".into(), ..Default::default() },
        ],
    )
    .await;
    // Annotation-driven: bob's end is 3 s away, carol's an hour; one entry cannot be read.
    let soon = Timestamp::now() + SignedDuration::from_secs(3);
    let later = Timestamp::now() + SignedDuration::from_hours(1);
    let mut rb = fixtures_rb(&ns2, "granted", vec![user("bob@lumos.com"), user("carol@lumos.com")]);
    rb.metadata.annotations = Some(
        [(
            "deprovisioner.dev/expires".to_string(),
            json!({"User:bob@lumos.com": soon.to_string(), "User:carol@lumos.com": later.to_string(), "nobody": "soon"})
                .to_string(),
        )]
        .into(),
    );
    let granted = create_role_binding(&c, rb).await;
    let ann_due = team.metadata.creation_timestamp.clone().unwrap().0 + SignedDuration::from_secs(5);

    let bob_gone = until_removed(&c, &ns2, "granted", "User:bob@lumos.com", Duration::from_secs(40)).await;
    let ann_gone = until_removed(&c, &ns, "team", "User:ann@lumos.com", Duration::from_secs(40)).await;
    let (late_bob, late_ann) = (seconds(bob_gone.duration_since(soon)), seconds(ann_gone.duration_since(ann_due)));
    println!("removed after its time: annotation {late_bob:.2} s, maxAccess {late_ann:.2} s (bound 30 s)");
    assert!(late_bob < 30.0 && late_ann < 30.0);
    assert!(late_bob > -0.5, "bob removed before his time: {late_bob}");
    assert!(late_ann > -1.5, "ann removed before her time: {late_ann}");

    // Nothing else changed, then or a few seconds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let team_now = names(&get_rb(&c, &ns, "team").await.unwrap().subjects);
    assert_eq!(team_now, ["User:boss@exempt.example", "ServiceAccount:deprovisioner", "Group:system:authenticated"]);
    assert_eq!(names(&get_rb(&c, &ns2, "granted").await.unwrap().subjects), ["User:carol@lumos.com"]);
    assert!(expiries_of(&c, "User:boss@exempt.example").await.is_empty());
    assert!(expiries_of(&c, "User:carol@lumos.com").await.is_empty());

    // The records: one each, Succeeded, saying what ended the access and since when it was held.
    let [ann] = expiries_of(&c, "User:ann@lumos.com").await.try_into().unwrap();
    let ann = terminal(&c, &ann).await;
    let e = ann.spec.expiry.clone().unwrap();
    assert_eq!(ann.spec.source, RequestSource::Expiry);
    assert_eq!(ann.spec.application.app_id.as_deref(), Some(app.as_str()));
    assert_eq!(e.ended_by, EndedBy::MaxAccess);
    assert!(e.reason.contains("maxAccess 5s"), "{}", e.reason);
    assert_eq!(e.binding.uid, team.metadata.uid.clone().unwrap());
    assert_eq!(e.started_at, team.metadata.creation_timestamp.clone().unwrap(), "{:?}", e.started_from);
    let st = ann.status.clone().unwrap();
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    assert_eq!(st.removed, 1);
    assert_eq!(st.results.len(), 1);
    assert_eq!(st.results[0].outcome, Outcome::Removed);
    assert!(st.verification.is_some(), "an expiry is verified like any removal");
    let [bob] = expiries_of(&c, "User:bob@lumos.com").await.try_into().unwrap();
    let bob = terminal(&c, &bob).await;
    let e = bob.spec.expiry.clone().unwrap();
    assert_eq!(e.ended_by, EndedBy::Annotation);
    assert_eq!(e.due_at.0.as_second(), soon.as_second());
    assert_eq!(e.binding.uid, granted.metadata.uid.clone().unwrap());
    assert_eq!(bob.status.unwrap().phase, Phase::Succeeded);

    // `kubectl get dpr` shows them.
    let listed = cl_kubectl(&["get", "dpr", &name_of(&ann)]);
    assert!(listed.contains("User:ann@lumos.com") && listed.contains("Succeeded"), "{listed}");

    // An Event on each binding whose access ended, and one saying what could not be read.
    let events = events_regarding(&c, "team").await;
    assert!(events.iter().any(|(r, n)| r == "AccessExpired" && n.contains("ann@lumos.com")), "{events:?}");
    let events = events_regarding(&c, "granted").await;
    assert!(events.iter().any(|(r, _)| r == "AccessExpired"), "{events:?}");
    assert!(events.iter().any(|(r, n)| r == "InvalidExpiry" && n.contains("nobody")), "{events:?}");

    // Lumos's own call for the same removal, later: already done, SUCCESS.
    let (_, answer, _) = op.lumos(&payload(&app, "ann@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");

    // The evidence row says when the access started and what ended it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["evidence", "--format", "csv", "--kubeconfig", cluster().kubeconfig.to_str().unwrap()])
        .output()
        .unwrap();
    let csv = text(&out.stdout);
    let row = csv.lines().find(|l| l.starts_with(&name_of(&ann))).unwrap_or_else(|| panic!("{csv}"));
    assert!(row.contains(&e_started(&ann)) && row.contains("maxAccess 5s"), "{row}");
    // The HTML report says them too, in the request's facts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["evidence", "--format", "html", "--kubeconfig", cluster().kubeconfig.to_str().unwrap()])
        .output()
        .unwrap();
    let html = text(&out.stdout);
    let section = html.split("<section class=\"request\">").find(|s| s.contains(&name_of(&ann))).unwrap_or(&html);
    let started = format!("<dt>Access started</dt><dd>{} (Created)</dd>", e_started(&ann));
    assert!(section.contains(&started), "{section}");
    assert!(
        section.contains("<dt>Ended by</dt><dd>DeprovisionPolicy ") && section.contains("maxAccess 5s</dd>"),
        "{section}"
    );
    // And what will expire when: carol, in about an hour.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["expiring", "--within", "2h", "--kubeconfig", cluster().kubeconfig.to_str().unwrap()])
        .output()
        .unwrap();
    let table = text(&out.stdout);
    assert!(out.status.success(), "{table}{}", text(&out.stderr));
    assert!(table.lines().any(|l| l.contains("User:carol@lumos.com") && l.contains(&ns2)), "{table}");
    assert!(!table.contains("boss@exempt.example"), "{table}");
}

fn e_started(r: &DeprovisionRequest) -> String {
    r.spec.expiry.as_ref().unwrap().started_at.0.to_string()
}

fn cl_kubectl(args: &[&str]) -> String {
    text(&kubectl_ok(cluster(), args).stdout)
}

fn fixtures_rb(ns: &str, name: &str, subjects: Vec<Subject>) -> RoleBinding {
    deprovisioner::fixtures::role_binding(ns, name).role("view").subjects(subjects).build()
}

/// (reason, note) of the Events (in `default`) regarding a binding named `name`.
async fn events_regarding(c: &Client, name: &str) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let api: Api<Event> = Api::namespaced(c.clone(), "default");
        let found: Vec<(String, String)> = (api.list(&ListParams::default()).await.unwrap().items.into_iter())
            .filter(|e| e.regarding.as_ref().is_some_and(|r| r.name.as_deref() == Some(name)))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_subject_added_again_gets_a_fresh_clock() {
    shared();
    let c = admin().await;
    let ns = unique("exp-again");
    namespace(&c, &ns, &[]).await;
    expiry_policy(&c, &ns, &unique("exp-app"), json!({"maxAccess": "4s"}), json!({"emptyBindings": "Keep"})).await;
    role_binding(&c, &ns, "rb", "view", vec![user("dave@lumos.com")]).await;
    let first_gone = until_removed(&c, &ns, "rb", "User:dave@lumos.com", Duration::from_secs(40)).await;
    // Added again, as a person would with kubectl edit.
    let api: Api<RoleBinding> = Api::namespaced(c.clone(), &ns);
    let mut rb = api.get("rb").await.unwrap();
    rb.subjects.get_or_insert_with(Vec::new).push(user("dave@lumos.com"));
    api.replace("rb", &PostParams::default(), &rb).await.unwrap();
    let added = Timestamp::now();
    // Not at once: a new 4 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(names(&api.get("rb").await.unwrap().subjects).contains(&"User:dave@lumos.com".to_string()));
    let second_gone = until_removed(&c, &ns, "rb", "User:dave@lumos.com", Duration::from_secs(40)).await;
    let held = seconds(second_gone.duration_since(added));
    println!("added again: held {held:.2} s the second time (maxAccess 4s)");
    assert!(held > 3.0, "removed after {held} s: the old clock was used");
    let both = expiries_of(&c, "User:dave@lumos.com").await;
    assert_eq!(both.len(), 2, "one request per clock");
    assert_ne!(name_of(&both[0]), name_of(&both[1]));
    let again = both[1].spec.expiry.clone().unwrap();
    assert_eq!(again.started_from, StartEvidence::Observed);
    assert!(again.started_at.0 >= first_gone - SignedDuration::from_secs(1), "{again:?}");
    for r in &both {
        assert_eq!(terminal(&c, r).await.status.unwrap().phase, Phase::Succeeded);
    }
}

#[tokio::test]
async fn access_given_back_after_it_expired_is_reported_and_ends_on_a_new_clock() {
    shared();
    let c = admin().await;
    let ns = unique("exp-back");
    namespace(&c, &ns, &[]).await;
    // A policy that removes re-granted access again: not access given back after it expired.
    let spec = json!({"emptyBindings": "Keep", "onRegrant": "Remove"});
    expiry_policy(&c, &ns, &unique("exp-app"), json!({"maxAccess": "4s"}), spec).await;
    role_binding(&c, &ns, "rb", "view", vec![user("gina@lumos.com")]).await;
    until_removed(&c, &ns, "rb", "User:gina@lumos.com", Duration::from_secs(40)).await;
    let [first] = expiries_of(&c, "User:gina@lumos.com").await.try_into().unwrap();
    let first = terminal(&c, &first).await;
    assert_eq!(first.status.as_ref().unwrap().phase, Phase::Succeeded);
    // Given back (as `kubectl edit` would) once the removal is done and recorded.
    let done = first.status.as_ref().unwrap().completed_at.clone().unwrap().0;
    while Timestamp::now().as_second() <= done.as_second() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api: Api<RoleBinding> = Api::namespaced(c.clone(), &ns);
    let mut rb = api.get("rb").await.unwrap();
    rb.subjects.get_or_insert_with(Vec::new).push(user("gina@lumos.com"));
    let pp = PostParams { field_manager: Some("kubectl-edit".into()), ..Default::default() };
    api.replace("rb", &pp, &rb).await.unwrap();
    let added = Timestamp::now();

    // The re-grant watch reports it on the expiry's record, and removes nothing (though the policy
    // says `onRegrant: Remove`): it is a new grant.
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st = Api::<DeprovisionRequest>::all(c.clone()).get(&name_of(&first)).await.unwrap().status.unwrap();
        if !st.regrants.is_empty() {
            break st;
        }
        assert!(Instant::now() < deadline, "no re-grant recorded on {}", name_of(&first));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let g = &st.regrants[0];
    assert_eq!(g.object, format!("RoleBinding {ns}/rb"));
    assert_eq!(g.subject, "User gina@lumos.com");
    assert_eq!(g.field_manager.as_deref(), Some("kubectl-edit"));
    assert!(!g.removed_again, "{g:?}");
    assert!(
        g.message.contains("not removed again: the access had expired; given again, it is on a new clock"),
        "{}",
        g.message
    );
    assert!(g.removal.is_none(), "{g:?}");
    let cond = st.conditions.iter().find(|c| c.type_ == "Regranted").expect("a Regranted condition");
    assert_eq!(cond.status, "True");
    let labelled = Api::<DeprovisionRequest>::all(c.clone())
        .list(&ListParams::default().labels("access.deprovisioner.dev/regranted=true"))
        .await
        .unwrap();
    assert!(labelled.items.iter().any(|r| r.metadata.name == first.metadata.name), "labelled regranted");

    // Then its own clock ends it: a second request, not before a new 4 s.
    let gone = until_removed(&c, &ns, "rb", "User:gina@lumos.com", Duration::from_secs(40)).await;
    let held = seconds(gone.duration_since(added));
    println!(
        "given back after expiry: re-grant recorded, removed again by a new clock after {held:.2} s (maxAccess 4s)"
    );
    assert!(held > 3.0, "removed after {held} s: not on a new clock");
    let both = expiries_of(&c, "User:gina@lumos.com").await;
    assert_eq!(both.len(), 2, "{:?}", both.iter().map(name_of).collect::<Vec<_>>());
    assert_eq!(name_of(&both[0]), name_of(&first));
    let second = terminal(&c, &both[1]).await;
    assert!(second.spec.expiry.as_ref().unwrap().started_at.0 >= added - SignedDuration::from_secs(1));
    assert_eq!(second.status.unwrap().phase, Phase::Succeeded);
    // The first record still says the re-grant was only reported.
    let st = Api::<DeprovisionRequest>::all(c.clone()).get(&name_of(&first)).await.unwrap().status.unwrap();
    assert!(st.regrants.iter().all(|g| !g.removed_again), "{:?}", st.regrants);
}

/// The leading operator's log says it holds the Lease.
fn leads(op: &Operator) -> bool {
    op.log_text().contains("holding the leader Lease")
}

#[tokio::test]
async fn clocks_survive_a_restart_and_a_leader_killed_at_expiry_removes_once() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let ns = unique("exp-ha");
    namespace(&c, &ns, &[]).await;
    expiry_policy(
        &c,
        &ns,
        &unique("exp-app"),
        json!({"maxAccess": "14s"}),
        json!({"expiry": {"exempt": ["User:stays@lumos.com"]}}),
    )
    .await;
    let mut a = Operator::start(OperatorOpts::on(cl));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leads(&a) {
        assert!(Instant::now() < deadline, "{}", a.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut b = Operator::start(OperatorOpts::on(cl));
    let rb = role_binding(&c, &ns, "rb", "view", vec![user("erin@lumos.com"), user("stays@lumos.com")]).await;
    let uid = rb.metadata.uid.clone().unwrap();
    let due = rb.metadata.creation_timestamp.clone().unwrap().0 + SignedDuration::from_secs(14);
    // The leader writes erin's clock.
    let clocks: Api<AccessClock> = Api::all(c.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let clock = loop {
        let all = clocks.list(&ListParams::default()).await.unwrap().items;
        if let Some(c) =
            all.iter().find_map(|o| o.spec.bindings.get(&uid)?.subjects.get("User:erin@lumos.com").cloned())
        {
            break c;
        }
        assert!(Instant::now() < deadline, "no clock for erin: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A restart between grant and expiry: the leader is killed, a new process starts.
    a.kill();
    let mut c2 = Operator::start(OperatorOpts::on(cl));
    // At the moment of expiry, whoever leads then is killed too.
    let wait = due.duration_since(Timestamp::now());
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    let (killed, other) = if leads(&b) { (&mut b, "the restarted one") } else { (&mut c2, "the follower") };
    killed.kill();
    println!("leader killed at erin's time; {other} takes over");
    let gone = until_removed(&c, &ns, "rb", "User:erin@lumos.com", Duration::from_secs(60)).await;
    let late = seconds(gone.duration_since(due));
    println!("removed {late:.2} s after its time, across a restart and a leader killed at expiry (bound 30 s)");
    assert!(late < 30.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(names(&get_rb(&c, &ns, "rb").await.unwrap().subjects), ["User:stays@lumos.com"], "nothing left");
    let all = expiries_of(&c, "User:erin@lumos.com").await;
    assert_eq!(all.len(), 1, "one request: {:?}", all.iter().map(name_of).collect::<Vec<_>>());
    let r = terminal(&c, &all[0]).await;
    let e = r.spec.expiry.clone().unwrap();
    assert_eq!(e.started_at, clock.since, "the clock survived the restart");
    let st = r.status.unwrap();
    assert_eq!(st.phase, Phase::Succeeded, "{:?}", st.message);
    let removed: Vec<_> = st.results.iter().filter(|x| x.outcome == Outcome::Removed).collect();
    assert_eq!(removed.len(), 1, "removed once: {:?}", st.results);
    drop((b, c2));
}

/// A measurement (ignored by default: `cargo test --test expiry ten_thousand -- --ignored
/// --nocapture`): the operator's memory with 10,000 subjects on clocks (1,000 RoleBindings of 10
/// subjects each under a `maxAccess` of a day), and how long the leader took to keep them.
#[tokio::test]
#[ignore]
async fn memory_with_ten_thousand_subjects_on_clocks() {
    use futures::StreamExt;
    let cl = own_cluster();
    let c = cl.admin().await;
    let ns = unique("exp-mem");
    namespace(&c, &ns, &[]).await;
    let op = Operator::start(OperatorOpts::on(cl));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leads(&op) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let created = futures::stream::iter(0..1000)
        .map(|i| {
            let c = c.clone();
            let ns = ns.clone();
            async move {
                let subjects = (0..10).map(|j| user(&format!("person-{i}-{j}@lumos.com"))).collect();
                role_binding(&c, &ns, &format!("rb-{i}"), "view", subjects).await;
            }
        })
        .buffer_unordered(16)
        .count()
        .await;
    assert_eq!(created, 1000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = op.pid();
    let before = (proc_status_mib(pid, "VmRSS:"), proc_status_mib(pid, "VmHWM:"));
    expiry_policy(&c, &ns, &unique("exp-app"), json!({"maxAccess": "24h"}), json!({})).await;
    let started = Instant::now();
    let clocks: Api<AccessClock> = Api::all(c.clone());
    loop {
        let n: usize = (clocks.list(&ListParams::default()).await.unwrap().items.iter())
            .flat_map(|o| o.spec.bindings.values())
            .map(|b| b.subjects.len())
            .sum();
        if n >= 10_000 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{n} subjects on clocks");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = started.elapsed();
    // A minute of scans (one every 30 s at least, more on changes).
    tokio::time::sleep(Duration::from_secs(35)).await;
    let after = (proc_status_mib(pid, "VmRSS:"), proc_status_mib(pid, "VmHWM:"));
    println!(
        "10,000 subjects on clocks (1,000 RoleBindings): written {kept:?} after the policy; operator RSS {:.1} MiB before, {:.1} MiB after (peak {:.1} → {:.1} MiB)",
        before.0, after.0, before.1, after.1
    );
    assert!(after.1 < 256.0, "over the chart's limit");
}

/// The API server refuses a `maxAccess` of zero (`0s`, `0h0m`): the CRD's pattern alone lets it
/// through, and a policy the operator then refuses leaves its bindings without terms.
#[tokio::test]
async fn a_zero_max_access_is_refused_by_the_api_server() {
    let c = admin().await;
    let api: Api<deprovisioner::crd::DeprovisionPolicy> = Api::all(c.clone());
    for (max, ok) in [("0s", false), ("0h00m", false), ("00h0m0s", false), ("10s", true), ("0h1m", true)] {
        let spec = json!({
            "application": {"appId": "zero"},
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaces": ["zero"]}, "maxAccess": max}]
        });
        let made =
            api.create(&PostParams::default(), &deprovisioner::fixtures::policy(&unique("exp-zero"), spec)).await;
        match made {
            Ok(_) => assert!(ok, "maxAccess {max} accepted"),
            Err(e) => {
                assert!(!ok, "maxAccess {max} refused: {e}");
                assert!(e.to_string().contains("more than zero"), "{e}");
            }
        }
    }
}

/// A binding Argo CD keeps: under `managedBindings: Fail` the expiry request fails naming it and
/// nothing changes (and is not tried again: the policy refused it); under `Remove` the subject
/// is removed, with the warning.
#[tokio::test]
async fn an_expiry_of_a_binding_gitops_keeps_follows_managed_bindings() {
    shared();
    let c = admin().await;
    for rule in ["Fail", "Remove"] {
        let ns = unique("exp-argo");
        namespace(&c, &ns, &[]).await;
        let who = format!("{}@lumos.com", unique("gus"));
        let mut rb = fixtures_rb(&ns, "deployers", vec![user(&who), user("stays@lumos.com")]);
        rb.metadata.annotations = Some(
            [(
                "argocd.argoproj.io/tracking-id".to_string(),
                format!("team-rbac:rbac.authorization.k8s.io/RoleBinding:{ns}/deployers"),
            )]
            .into(),
        );
        let pp = PostParams { field_manager: Some("argocd-controller".into()), ..Default::default() };
        Api::<RoleBinding>::namespaced(c.clone(), &ns).create(&pp, &rb).await.unwrap();
        let exempt = json!({"managedBindings": rule, "expiry": {"exempt": ["User:stays@lumos.com"]}});
        expiry_policy(&c, &ns, &unique("exp-app"), json!({"maxAccess": "2s"}), exempt).await;
        let account = format!("User:{who}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = loop {
            if let [r] = &expiries_of(&c, &account).await[..] {
                break terminal(&c, r).await;
            }
            assert!(Instant::now() < deadline, "no expiry request for {account}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let st = r.status.clone().unwrap();
        let msg = st.message.clone().unwrap_or_default();
        let now = names(&get_rb(&c, &ns, "deployers").await.unwrap().subjects);
        if rule == "Fail" {
            assert_eq!(st.phase, Phase::Failed, "{msg}");
            assert!(msg.contains(&format!("RoleBinding {ns}/deployers (Argo CD application team-rbac)")), "{msg}");
            assert!(st.results.is_empty());
            assert_eq!(now, [account.clone(), "User:stays@lumos.com".to_string()], "nothing changed");
            // A refusal is the policy's answer: no second attempt, seconds later.
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(expiries_of(&c, &account).await.len(), 1, "a refused expiry is not tried again");
        } else {
            assert_eq!(st.phase, Phase::Succeeded, "{msg}");
            assert!(
                msg.contains(&format!("RoleBinding {ns}/deployers is managed by Argo CD application team-rbac")),
                "{msg}"
            );
            assert_eq!(now, ["User:stays@lumos.com"]);
        }
    }
}

/// An expiry whose request failed for a reason other than a refusal (here: one that gave up,
/// the API server unreachable for longer than `--give-up-after`) is tried again under the next
/// name, and the access ends.
#[tokio::test]
async fn a_failed_expiry_is_tried_again() {
    shared();
    let c = admin().await;
    let ns = unique("exp-retry");
    namespace(&c, &ns, &[]).await;
    let rb = role_binding(&c, &ns, "rb", "view", vec![user("hal@lumos.com")]).await;
    // The first attempt's name, as the leader derives it (the clock: the binding's creation).
    let e = deprovisioner::crd::Expiry {
        binding: deprovisioner::crd::BindingRef {
            scope: deprovisioner::crd::BindingScope::Namespaced(ns.clone()),
            name: "rb".into(),
            uid: rb.metadata.uid.clone().unwrap(),
            role_ref: "ClusterRole/view".into(),
        },
        subject: deprovisioner::crd::SubjectRef { kind: "User".into(), name: "hal@lumos.com".into(), namespace: None },
        account: "User:hal@lumos.com".into(),
        started_at: rb.metadata.creation_timestamp.clone().unwrap(),
        started_from: StartEvidence::Created,
        due_at: rb.metadata.creation_timestamp.clone().unwrap(),
        ended_by: EndedBy::MaxAccess,
        policy: "p".into(),
        reason: "r".into(),
        binding_version: None,
    };
    let first = deprovisioner::controller::expiry::request_name(&e);
    // That attempt, recorded and failed before the policy exists (no Planned condition: it gave up).
    let api: Api<DeprovisionRequest> = Api::all(c.clone());
    let spec = deprovisioner::fixtures::request_spec(&unique("no-such-app"), "hal@lumos.com").build();
    api.create(&PostParams::default(), &deprovisioner::fixtures::request(&first, spec)).await.unwrap();
    let failed = json!({"status": {"phase": "Failed", "conditions": [], "plan": [],
                                   "message": "Could not plan: gave up after 15m: the API server did not answer"}});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pp = kube::api::PatchParams::default();
        api.patch_status(&first, &pp, &kube::api::Patch::Merge(&failed)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let st = api.get(&first).await.unwrap().status.unwrap();
        if st.phase == Phase::Failed && st.conditions.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{st:?}");
    }
    expiry_policy(&c, &ns, &unique("exp-app"), json!({"maxAccess": "1s"}), json!({})).await;
    until_removed(&c, &ns, "rb", "User:hal@lumos.com", Duration::from_secs(30)).await;
    let second = wait_terminal(&c, &format!("{first}-2"), Duration::from_secs(20)).await;
    assert_eq!(second.status.unwrap().phase, Phase::Succeeded);
    assert_eq!(second.spec.expiry.unwrap().started_at, e.started_at);
    let log = shared().log_text();
    assert!(log.lines().any(|l| l.contains(&first) && l.contains("recording the next attempt")), "{log}");
}
