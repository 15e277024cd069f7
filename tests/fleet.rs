//! Many clusters behind one Lumos endpoint (issue 28), on this machine: a hub and two member
//! control planes, each its own etcd and kube-apiserver. Lumos calls the hub; each member's agent
//! dials out to the hub with a token of its own mailbox's ServiceAccount and removes with its own
//! policies. One test, in steps: the steps stop and start agents, which every other step would
//! see.

mod support;

use std::time::{Duration, Instant};

use deprovisioner::crd::{DeprovisionRequest, MemberCluster, MemberPhase, MemberRequest, Phase};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::fleet::{Fleet, mailbox};
use support::*;

const EMAIL: &str = "ann@x.com";

/// On a member: a namespace with a RoleBinding naming `email` (and bob, who keeps it), and a
/// policy of the member's own for `app` removing `email` from the RoleBindings there.
async fn member_access(c: &Client, app: &str, email: &str) -> String {
    let ns = unique("team");
    namespace(c, &ns, &[]).await;
    role_binding(
        c,
        &ns,
        "devs",
        "view",
        vec![deprovisioner::fixtures::user(email), deprovisioner::fixtures::user("bob@x.com")],
    )
    .await;
    let exists = Api::<deprovisioner::crd::DeprovisionPolicy>::all(c.clone()).get_opt(app).await.unwrap();
    if exists.is_none() {
        policy(
            c,
            app,
            json!({
                "application": {"appId": app},
                "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
                "rules": [{"roleBindings": {"namespaceSelector": {"matchLabels": {"fleet-test": app}}}}]
            }),
        )
        .await;
    }
    let patch = json!({"metadata": {"labels": {"fleet-test": app}}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
        .patch(&ns, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    ns
}

/// On the hub: a ClusterSet sending `app`'s removals to the members labelled env=prod.
async fn cluster_set(hub: &Client, app: &str) {
    let set: deprovisioner::crd::ClusterSet = serde_json::from_value(json!({
        "apiVersion": "access.deprovisioner.dev/v1alpha1",
        "kind": "ClusterSet",
        "metadata": {"name": app},
        "spec": {"application": {"appId": app}, "members": {"matchLabels": {"env": "prod"}}}
    }))
    .unwrap();
    Api::<deprovisioner::crd::ClusterSet>::all(hub.clone()).create(&PostParams::default(), &set).await.unwrap();
}

async fn names_in(c: &Client, ns: &str) -> Vec<String> {
    names(&get_rb(c, ns, "devs").await.unwrap().subjects)
}

/// The hub's record named in an answer (`(record: deprovisionrequest/NAME)`; the members'
/// records are named before it).
fn hub_record(answer: &serde_json::Value) -> String {
    let msg = answer["msg"].as_str().unwrap_or_default();
    let i = msg.rfind("(record: deprovisionrequest/").unwrap_or_else(|| panic!("no hub record in {msg:?}"));
    msg[i + "(record: deprovisionrequest/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// Waits until `check` holds for the hub record `name`.
async fn wait_hub(
    hub: &Client,
    name: &str,
    timeout: Duration,
    check: impl Fn(&DeprovisionRequest) -> bool,
) -> DeprovisionRequest {
    let deadline = Instant::now() + timeout;
    loop {
        let r = get_request(hub, name).await;
        if check(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "hub record {name} did not get there: {:#?}", r.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The member's local records of one `MemberRequest`.
async fn local_records(c: &Client, member_request: &str) -> Vec<DeprovisionRequest> {
    let lp = ListParams::default().labels(&format!("access.deprovisioner.dev/member-request={member_request}"));
    Api::<DeprovisionRequest>::all(c.clone()).list(&lp).await.unwrap().items
}

/// `kubectl auth can-i` on `c` as `who`: the real authorizer's answer.
fn can_i(c: &Cluster, who: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    all.extend(["--as", who]);
    let out = c.kubectl(&all);
    text(&out.stdout).trim() == "yes"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_call_reaches_every_member() {
    let fleet = Fleet::start(&[("a", &[("env", "prod")]), ("b", &[("env", "prod")])]);
    let hub = fleet.hub.admin().await;
    let (ca, cb) = (fleet.members[0].cluster.admin().await, fleet.members[1].cluster.admin().await);
    let hub_op = fleet.hub_operator(&["--response-deadline", "6s"]);
    let mut agent_a = Some(fleet.agent(0));
    let mut agent_b = Some(fleet.agent(1));

    // --- a removal in every member, one call ---
    let app = unique("fleet-app");
    cluster_set(&hub, &app).await;
    let (ns_a, ns_b) = (member_access(&ca, &app, EMAIL).await, member_access(&cb, &app, EMAIL).await);
    let (code, answer, took) = hub_op.lumos(&payload(&app, EMAIL, &[])).await;
    assert_eq!(code, 200);
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(msg.contains("Succeeded in all 2 clusters"), "{msg}");
    println!("a call to 2 members answered in {took:?}");
    assert_eq!(names_in(&ca, &ns_a).await, ["User:bob@x.com"]);
    assert_eq!(names_in(&cb, &ns_b).await, ["User:bob@x.com"]);
    let record = get_request(&hub, &hub_record(&answer)).await;
    let st = record.status.clone().unwrap();
    assert_eq!(st.phase, Phase::Succeeded);
    assert!(st.plan.is_empty(), "the hub changes nothing itself: {:?}", st.plan);
    assert_eq!(st.members.iter().map(|m| m.cluster.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    for (m, c) in st.members.iter().zip([&ca, &cb]) {
        assert_eq!(m.member_request, record.uid().unwrap());
        assert_eq!(m.reported.phase, MemberPhase::Succeeded, "{m:?}");
        assert_eq!(m.reported.verified.as_deref(), Some("True"), "{m:?}");
        let local = get_request(c, m.reported.record.as_deref().unwrap()).await;
        assert_eq!(local.uid(), m.reported.record_uid, "the hub names the member's record by UID");
        assert_eq!(local.spec.source, deprovisioner::crd::RequestSource::Fleet);
        assert_eq!(phase(&local), Phase::Succeeded);
        assert!(msg.contains(&local.name_any()), "the answer names {} : {msg}", local.name_any());
    }
    // Each MemberRequest is owned by the hub record (deleted with it at the end of its retention).
    let mr = Api::<MemberRequest>::namespaced(hub.clone(), &mailbox("a")).get(&record.uid().unwrap()).await.unwrap();
    assert_eq!(mr.owner_references().first().map(|o| o.uid.clone()), record.uid());
    // `deprovisioner evidence` on the hub: the hub's row and every member's rows.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["evidence", "--kubeconfig", fleet.hub.kubeconfig.to_str().unwrap(), "--format", "json"])
        .args(["--app", &app])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let evidence: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = evidence["rows"].as_array().unwrap();
    for (m, ns) in st.members.iter().zip([&ns_a, &ns_b]) {
        let name = format!("{}/{}", m.cluster, m.reported.record.as_deref().unwrap());
        let row =
            rows.iter().find(|r| r["request"] == name.as_str()).unwrap_or_else(|| panic!("no row {name}: {rows:#?}"));
        assert_eq!(row["outcome"], "Removed", "{row}");
        assert_eq!(row["object"], format!("RoleBinding {ns}/devs"), "{row}");
        assert_eq!(row["verification"].as_str().map(|v| v.is_empty()), Some(false), "{row}");
    }
    assert!(rows.iter().any(|r| r["request"] == record.name_any().as_str()), "the hub's own row: {rows:#?}");
    // The agents' heartbeats reach their MemberClusters.
    for name in ["a", "b"] {
        let mc = Api::<MemberCluster>::all(hub.clone()).get(name).await.unwrap();
        assert!(mc.status.and_then(|s| s.last_heartbeat).is_some(), "no heartbeat from {name}");
    }

    // --- a forged request: in a's mailbox, addressed to b ---
    let forged: MemberRequest = serde_json::from_value(json!({
        "apiVersion": "access.deprovisioner.dev/v1alpha1", "kind": "MemberRequest",
        "metadata": {"name": "forged", "namespace": mailbox("a")},
        "spec": {"cluster": "b", "hubRecord": "nobody", "hubUid": "0",
                 "request": record.spec.clone()}
    }))
    .unwrap();
    let forged = Api::<MemberRequest>::namespaced(hub.clone(), &mailbox("a"))
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let got = Api::<MemberRequest>::namespaced(hub.clone(), &mailbox("a")).get("forged").await.unwrap();
        if let Some(s) = got.status.filter(|s| s.report.phase.is_terminal()) {
            break s.report;
        }
        assert!(Instant::now() < deadline, "agent a did not answer the forged request");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refused.phase, MemberPhase::Refused);
    assert!(refused.message.as_deref().unwrap().contains("addressed to cluster \"b\""), "{refused:?}");
    assert!(local_records(&ca, "forged").await.is_empty(), "a recorded a request addressed to b");
    assert!(local_records(&cb, "forged").await.is_empty(), "b saw a request in a's mailbox");
    let a_log = agent_a.as_ref().unwrap().log_text();
    assert!(a_log.contains("refused a request addressed to another cluster"), "not in a's log");
    let _ = forged;

    // --- a member down during the call, then back ---
    agent_b.take(); // killed
    let app2 = unique("fleet-down");
    cluster_set(&hub, &app2).await;
    let (ns_a2, ns_b2) = (member_access(&ca, &app2, EMAIL).await, member_access(&cb, &app2, EMAIL).await);
    let (_, answer, took) = hub_op.lumos(&payload(&app2, EMAIL, &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(msg.contains("b: no answer yet"), "the answer names the cluster that did not answer: {msg}");
    assert!(msg.contains("a: Succeeded (record deprovisionrequest/fleet-"), "and a's record: {msg}");
    assert!(took < Duration::from_secs(8), "answered within the deadline: {took:?}");
    assert_eq!(names_in(&ca, &ns_a2).await, ["User:bob@x.com"]);
    assert_eq!(names_in(&cb, &ns_b2).await.len(), 2, "b removed nothing while down");
    let hub_name = hub_record(&answer);
    assert_eq!(phase(&get_request(&hub, &hub_name).await), Phase::InProgress);
    agent_b = Some(fleet.agent(1));
    let done = wait_hub(&hub, &hub_name, Duration::from_secs(30), |r| phase(r) == Phase::Succeeded).await;
    assert_eq!(names_in(&cb, &ns_b2).await, ["User:bob@x.com"], "b removed it once back");
    let b = &done.status.unwrap().members[1];
    assert_eq!((b.cluster.as_str(), b.reported.phase), ("b", MemberPhase::Succeeded));
    let b_local = get_request(&cb, b.reported.record.as_deref().unwrap()).await;
    assert_eq!(phase(&b_local), Phase::Succeeded, "both records show it");

    // --- a member's agent restarted mid-request ---
    agent_a.take();
    let app3 = unique("fleet-restart");
    cluster_set(&hub, &app3).await;
    let (ns_a3, _) = (member_access(&ca, &app3, EMAIL).await, member_access(&cb, &app3, EMAIL).await);
    let hub_call = {
        let url = hub_op.url.clone();
        let p = payload(&app3, EMAIL, &[]);
        tokio::spawn(async move {
            http_client()
                .post(format!("{url}/webhooks/lumos/deprovision"))
                .header("authorization", format!("Bearer {SECRET}"))
                .json(&p)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    // Wait for the MemberRequest in a's mailbox, start a's agent, and kill it as soon as it
    // has recorded the request locally.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mr_name = loop {
        assert!(Instant::now() < deadline, "the hub did not hand the request to a");
        let lp = ListParams::default();
        let items = Api::<MemberRequest>::namespaced(hub.clone(), &mailbox("a")).list(&lp).await.unwrap().items;
        if let Some(mr) = items.into_iter().find(|m| m.spec.request.application.app_id.as_deref() == Some(&app3)) {
            break mr.name_any();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut restarted = fleet.agent(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while local_records(&ca, &mr_name).await.is_empty() {
        assert!(Instant::now() < deadline, "agent a did not record the request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    restarted.kill();
    let answer = hub_call.await.unwrap();
    // Usually FAILURE (a's agent was killed before it reported); SUCCESS only if it reported
    // within the moment before the kill. Either way the hub record ends Succeeded below.
    println!("answer with a's agent killed mid-request: {answer}");
    agent_a = Some(fleet.agent(0));
    let hub_name = hub_record(&answer);
    wait_hub(&hub, &hub_name, Duration::from_secs(30), |r| phase(r) == Phase::Succeeded).await;
    let locals = local_records(&ca, &mr_name).await;
    assert_eq!(locals.len(), 1, "one local record however often the agent restarts");
    assert_eq!(phase(&locals[0]), Phase::Succeeded);
    assert_eq!(names_in(&ca, &ns_a3).await, ["User:bob@x.com"]);

    // --- least privilege, by each real authorizer ---
    let agent_a_sa = format!("system:serviceaccount:{}:agent", mailbox("a"));
    let h = fleet.hub;
    assert!(can_i(h, &agent_a_sa, &["watch", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("a")]));
    assert!(can_i(
        h,
        &agent_a_sa,
        &["patch", "memberrequests.access.deprovisioner.dev", "--subresource", "status", "-n", &mailbox("a")]
    ));
    assert!(can_i(h, &agent_a_sa, &["patch", "memberclusters.access.deprovisioner.dev/a", "--subresource", "status"]));
    for args in [
        &["list", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("b")][..],
        &["get", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("b")],
        &["create", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("a")],
        &["update", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("a")],
        &["delete", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("a")],
        &["patch", "memberclusters.access.deprovisioner.dev/b", "--subresource", "status"],
        &["list", "memberclusters.access.deprovisioner.dev"],
        &["list", "deprovisionrequests.access.deprovisioner.dev"],
        &["get", "secrets", "-n", &mailbox("a")],
        &["update", "rolebindings", "-A"],
    ] {
        assert!(!can_i(h, &agent_a_sa, args), "agent a may {args:?} on the hub");
    }
    // The agent's real token is refused another member's mailbox by the hub's API server.
    let token_kc = fleet.members[0].hub_kubeconfig.to_str().unwrap().to_string();
    let out =
        h.kubectl(&["--kubeconfig", &token_kc, "get", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("b")]);
    assert!(!out.status.success() && text(&out.stderr).contains("forbidden"), "{}", text(&out.stderr));
    let out =
        h.kubectl(&["--kubeconfig", &token_kc, "get", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("a")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The hub's operator hands requests over but reads nothing else of the fleet's mailboxes.
    let hub_sa = "system:serviceaccount:deprovisioner:deprovisioner";
    assert!(can_i(h, hub_sa, &["create", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("b")]));
    assert!(!can_i(
        h,
        hub_sa,
        &["patch", "memberrequests.access.deprovisioner.dev", "--subresource", "status", "-n", &mailbox("b")]
    ));
    assert!(!can_i(h, hub_sa, &["get", "secrets", "-n", &mailbox("b")]));
    // The hub holds no credential to a member: a token the hub mints for its own operator is not
    // accepted by a member's API server (each has its own issuer), so it cannot edit bindings
    // there; and nothing of the hub's is known to a member's authorizer.
    let hub_token =
        text(&kubectl_ok(h, &["create", "token", "deprovisioner", "-n", "deprovisioner"]).stdout).trim().to_string();
    let member = fleet.members[0].cluster;
    let hub_kc = support::fleet::token_kubeconfig(member, &hub_token, "hub-operator-on-a", "default");
    let out =
        member.kubectl(&["--kubeconfig", hub_kc.to_str().unwrap(), "auth", "can-i", "update", "rolebindings", "-A"]);
    assert!(!out.status.success(), "a member accepted the hub's token: {}", text(&out.stdout));
    let out_text = text(&out.stderr) + &text(&out.stdout);
    assert!(out_text.contains("nauthorized") || out_text.trim() == "no", "{out_text}");
    drop(agent_a);
    drop(agent_b);
}

/// A member that never comes back: past `--fleet-member-timeout` its request is withdrawn from its
/// mailbox and the hub record ends Failed, naming it; when its agent does come back, it finds
/// nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_never_answers_is_withdrawn_and_the_hub_record_ends() {
    let fleet = Fleet::start(&[("a", &[("env", "prod")])]);
    let hub = fleet.hub.admin().await;
    let ca = fleet.members[0].cluster.admin().await;
    let hub_op = fleet.hub_operator(&["--response-deadline", "2s", "--fleet-member-timeout", "5s"]);
    let app = unique("fleet-app");
    cluster_set(&hub, &app).await;
    let ns = member_access(&ca, &app, EMAIL).await;
    let (_, answer, _) = hub_op.lumos(&payload(&app, EMAIL, &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    assert!(answer["msg"].as_str().unwrap().contains("a: no answer yet"), "{answer}");
    let name = hub_record(&answer);
    let ended = wait_hub(&hub, &name, Duration::from_secs(30), |r| phase(r).is_terminal()).await;
    assert_eq!(phase(&ended), Phase::Failed);
    let msg = ended.status.clone().unwrap().message.unwrap();
    assert!(msg.contains("a: Failed: did not answer within 5s of the call: withdrawn from its mailbox"), "{msg}");
    let mr = Api::<MemberRequest>::namespaced(hub.clone(), &mailbox("a")).get_opt(&ended.uid().unwrap()).await;
    assert!(mr.unwrap().is_none(), "the request was withdrawn");
    // The agent back: nothing addressed to it any more, nothing changed there.
    let _agent = fleet.agent(0);
    wait_for_heartbeat(&hub, "a").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(local_records(&ca, &ended.uid().unwrap()).await.is_empty());
    assert_eq!(names_in(&ca, &ns).await, ["User:ann@x.com", "User:bob@x.com"]);
}

/// Waits until member `name`'s agent has written a heartbeat to the hub.
async fn wait_for_heartbeat(hub: &Client, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = Api::<MemberCluster>::all(hub.clone()).get(name).await.unwrap();
        if m.status.and_then(|s| s.last_heartbeat).is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "member {name}'s agent never wrote a heartbeat");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `deprovisioner connector <capability> --fleet-hub` on the hub as Lumos's agent (the chart's
/// identity for it); the answer is validated by connector-py's model `model`.
fn hub_connector(fleet: &Fleet, capability: &str, model: &str, request: &serde_json::Value) -> serde_json::Value {
    let (answer, _) = connector_cli(fleet, capability, request, true);
    assert!(answer.get("error").is_none(), "{capability} answered an error: {answer}");
    support::sdk::validate(&[(model, &answer)]);
    answer
}

/// `deprovisioner connector <capability>` on the hub as Lumos's agent (with `--fleet-hub` when
/// `fleet`): its answer, and how long the process took.
fn connector_cli(fleet: &Fleet, capability: &str, request: &serde_json::Value, fleet_hub: bool) -> (Value, Duration) {
    let kc = fleet.hub.kubeconfig_as("deprovisioner-lumos-agent");
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
        .args(["connector", capability, "--kubeconfig", kc.to_str().unwrap()])
        .args(fleet_hub.then_some("--fleet-hub"))
        .args(["--json", &request.to_string()])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{capability}: {}", text(&out.stderr));
    (serde_json::from_slice(&out.stdout).unwrap(), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_connector_lists_the_fleet_and_unassigns_in_one_member() {
    let fleet = Fleet::start(&[("a", &[("env", "prod")]), ("b", &[("env", "prod")])]);
    let hub = fleet.hub.admin().await;
    let (ca, cb) = (fleet.members[0].cluster.admin().await, fleet.members[1].cluster.admin().await);
    // The connector served over HTTP too, as the operator's own identity.
    let read_secret = fleet.hub.dir.join("connector-read.secret");
    std::fs::write(&read_secret, "fleet-connector-read-secret\n").unwrap();
    let hub_op =
        fleet.hub_operator(&["--response-deadline", "6s", "--connector-secret-file", read_secret.to_str().unwrap()]);
    // The same namespace name in both members: only the resource id tells them apart.
    let ns = unique("team");
    let (ann, bob) = ("User:ann@x.com", "User:bob@x.com");
    for (c, who) in [(&ca, "ann@x.com"), (&cb, "bob@x.com")] {
        namespace(c, &ns, &[]).await;
        role_binding(
            c,
            &ns,
            "devs",
            "edit",
            vec![deprovisioner::fixtures::user(who), deprovisioner::fixtures::user("carol@x.com")],
        )
        .await;
        // Each member's own policy bounds what the connector may remove there.
        policy(
            c,
            "lumos-connector",
            json!({"application": {"appId": "kubernetes"},
                   "subjects": [{"kind": "LumosAccount", "name": "{{custom_fields.accountId}}"}],
                   "rules": [{"entitlements": {"namespaces": [ns], "roles": ["edit"]}}]}),
        )
        .await;
    }
    // A chunk left by an earlier, larger map: the agent's first report deletes it.
    let mailbox_a: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(hub.clone(), &mailbox("a"));
    let stale = serde_json::from_value(json!({"metadata": {"name": "deprovisioner-inventory-a09"},
        "data": {"inventory.json": "{\"generation\": \"old\"}"}}))
    .unwrap();
    mailbox_a.create(&PostParams::default(), &stale).await.unwrap();
    // The hub's own namespace named like member a, and a cluster-wide grant in member a: two
    // resources and two entitlements, never one.
    namespace(&hub, "a", &[]).await;
    role_binding(&hub, "a", "hub-devs", "edit", vec![deprovisioner::fixtures::user("dave@x.com")]).await;
    cluster_role_binding(&ca, &unique("erin"), "edit", &[], vec![deprovisioner::fixtures::user("erin@x.com")]).await;
    let (_agent_a, agent_b) = (fleet.agent(0), fleet.agent(1));
    let page = json!({"request": {}, "page": {"size": 2000}});
    let held = |assocs: &serde_json::Value, account: &str, resource: &str| {
        assocs["response"].as_array().unwrap().iter().any(|a| {
            a["account_id"] == account
                && a["integration_specific_resource_id"] == resource
                && a["integration_specific_entitlement_id"] == "ClusterRole:edit"
        })
    };
    let (a_ns, b_ns) = (format!("a/{ns}"), format!("b/{ns}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let assocs = loop {
        let assocs =
            hub_connector(&fleet, "find_entitlement_associations", "FindEntitlementAssociationsResponse", &page);
        if held(&assocs, ann, &a_ns) && held(&assocs, bob, &b_ns) {
            break assocs;
        }
        assert!(Instant::now() < deadline, "the members' inventories never reached the hub's connector: {assocs}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(!held(&assocs, ann, &b_ns) && !held(&assocs, bob, &a_ns), "each grant in its own cluster: {assocs}");
    let one = |account: &str| -> Vec<(String, String)> {
        let all = assocs["response"].as_array().unwrap().iter().filter(|a| a["account_id"] == account);
        all.map(|a| {
            let res = a["integration_specific_resource_id"].as_str().unwrap().to_string();
            (res, a["integration_specific_entitlement_id"].as_str().unwrap().to_string())
        })
        .collect()
    };
    // erin's binding was made before a's agent started: its first report holds it.
    assert_eq!(one("User:dave@x.com"), [("a".to_string(), "ClusterRole:edit".to_string())], "the hub's namespace a");
    assert_eq!(one("User:erin@x.com"), [("a/".to_string(), "ClusterRole:edit".to_string())], "member a, cluster-wide");
    // Deleted right after the header that made the inventory visible is written.
    let deadline = Instant::now() + Duration::from_secs(10);
    while mailbox_a.get_opt("deprovisioner-inventory-a09").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the stale chunk was never deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Over HTTP, as the operator's identity: the same fleet.
    let headers = [("content-type", "application/json"), ("authorization", "Bearer fleet-connector-read-secret")];
    let (status, over_http, _) = hub_op
        .post_raw("/connectors/kubernetes/find_entitlement_associations", &headers, page.to_string().into_bytes())
        .await;
    assert_eq!(status, 200, "{over_http}");
    support::sdk::validate(&[("FindEntitlementAssociationsResponse", &over_http)]);
    assert!(held(&over_http, ann, &a_ns) && held(&over_http, bob, &b_ns), "over HTTP: {over_http}");
    let accounts = hub_connector(&fleet, "list_accounts", "ListAccountsResponse", &page);
    let resources = hub_connector(&fleet, "list_resources", "ListResourcesResponse", &page);
    let ents = hub_connector(&fleet, "list_entitlements", "ListEntitlementsResponse", &page);
    let info = hub_connector(&fleet, "info", "InfoResponse", &json!({"request": {}}));
    let ids = |v: &serde_json::Value, f: &str| -> Vec<String> {
        v["response"].as_array().unwrap().iter().map(|i| i[f].as_str().unwrap().to_string()).collect()
    };
    let account_ids = ids(&accounts, "integration_specific_id");
    assert!(account_ids.contains(&ann.to_string()) && account_ids.contains(&bob.to_string()), "{account_ids:?}");
    let resource_ids = ids(&resources, "integration_specific_id");
    for r in ["", "a/", "b/", &a_ns, &b_ns] {
        assert!(resource_ids.contains(&r.to_string()), "resource {r:?} listed: {resource_ids:?}");
    }
    let list = resources["response"].as_array().unwrap();
    let a = list.iter().find(|r| r["integration_specific_id"] == "a/").unwrap();
    assert_eq!(a["resource_type"], "cluster", "{a}");
    for at in ["inventory_reported_at", "inventory_checked_at"] {
        assert!(a["extra_data"][at].as_str().unwrap().parse::<k8s_openapi::jiff::Timestamp>().is_ok(), "{a}");
    }
    assert_eq!(a["extra_data"]["inventory_stale"], "false", "{a}");
    // Every association points at a listed account, resource and entitlement, whose types fit.
    let ent_list = ents["response"].as_array().unwrap();
    let types = info["response"]["entitlement_types"].as_array().unwrap();
    for x in assocs["response"].as_array().unwrap() {
        let (acc, res, ent) = (
            x["account_id"].as_str().unwrap(),
            x["integration_specific_resource_id"].as_str().unwrap(),
            x["integration_specific_entitlement_id"].as_str().unwrap(),
        );
        assert!(account_ids.iter().any(|i| i == acc), "unlisted account {acc}");
        assert!(resource_ids.iter().any(|i| i == res), "unlisted resource {res}");
        let e = ent_list
            .iter()
            .find(|e| e["integration_specific_resource_id"] == res && e["integration_specific_id"] == ent)
            .unwrap_or_else(|| panic!("unlisted entitlement {ent} on {res}"));
        let t = types.iter().find(|t| t["type_id"] == e["entitlement_type"]).expect("a declared type");
        let r = list.iter().find(|r| r["integration_specific_id"] == res).unwrap();
        assert_eq!(r["resource_type"], t["resource_type_id"], "{e}");
    }

    // unassign_entitlement on b's namespace: only b's grant goes, a's same-named one stays.
    let unassign = json!({"request": {
        "account_integration_specific_id": "User:carol@x.com", "resource_type": "namespace",
        "resource_integration_specific_id": b_ns, "entitlement_type": "namespace_role",
        "entitlement_integration_specific_id": "ClusterRole:edit"}});
    // Recorded by Lumos's agent itself, as the chart's admission policy lets it (one entitlement,
    // the account, and the member it is addressed to).
    support::fleet::apply_chart_template(fleet.hub, "templates/admission.yaml", &["fleet.hub.enabled=true".into()]);
    let kc = fleet.hub.kubeconfig_as("deprovisioner-lumos-agent");
    // deploy/rbac.yaml's policy (no fleet) was in force: the fleet's is once it admits a request
    // addressed to one member, and it still refuses the agent anything wider (one more field).
    let spec = json!({"application": {"appId": "kubernetes"}, "source": "LumosConnector",
        "targetUser": {"email": "User:carol@x.com"}, "permissions": [{"value": format!("namespace_role/{ns}/ClusterRole:edit")}],
        "customFields": {"accountId": "User:carol@x.com", "fleetCluster": "b"}});
    let dry_run = |spec: &serde_json::Value| {
        let file = fleet.hub.dir.join(format!("{}.json", unique("request")));
        let request = json!({"apiVersion": "access.deprovisioner.dev/v1alpha1", "kind": "DeprovisionRequest",
            "metadata": {"generateName": "dry-"}, "spec": spec});
        std::fs::write(&file, request.to_string()).unwrap();
        // A server-side dry run: admitted or refused, nothing is stored.
        let args = ["--kubeconfig", kc.to_str().unwrap(), "create", "--dry-run=server", "-f", file.to_str().unwrap()];
        let out = fleet.hub.kubectl(&args);
        (out.status.success(), text(&out.stderr))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while let (false, why) = dry_run(&spec) {
        assert!(why.contains("may only record what unassign_entitlement records"), "refused otherwise: {why}");
        assert!(Instant::now() < deadline, "the fleet hub's admission policy never came into force: {why}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut wider = spec.clone();
    wider["customFields"]["more"] = json!("x");
    let (admitted, why) = dry_run(&wider);
    assert!(!admitted && why.contains("(and fleetCluster, naming a member)"), "{why}");
    // The mailboxes' policy: not even the hub's admin may hand a member a request (a MemberRequest
    // carries the source a member's LumosAccount policy trusts), and an agent writes only its
    // inventory's names.
    let forged = json!({"apiVersion": "access.deprovisioner.dev/v1alpha1", "kind": "MemberRequest",
        "metadata": {"name": "by-an-admin", "namespace": mailbox("b")},
        "spec": {"cluster": "b", "hubRecord": "none", "hubUid": "0", "request": spec}});
    let forged_file = fleet.hub.dir.join("forged-by-admin.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    // (A new policy comes into force within seconds: a dry run until it does.)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = fleet.hub.kubectl(&["create", "--dry-run=server", "-f", forged_file.to_str().unwrap()]);
        if !out.status.success() && text(&out.stderr).contains("only the operator of the fleet hub") {
            break;
        }
        assert!(out.status.success(), "refused otherwise: {}", text(&out.stderr));
        assert!(Instant::now() < deadline, "the hub's admin handed a member a request");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let agent_kc = fleet.members[0].hub_kubeconfig.to_str().unwrap().to_string();
    for name in ["anything", "deprovisioner-inventory-a16"] {
        let args = ["--kubeconfig", &agent_kc, "create", "configmap", name, "-n", &mailbox("a"), "--from-literal=k=v"];
        let out = fleet.hub.kubectl(&args);
        assert!(
            !out.status.success() && text(&out.stderr).contains("the agent of a member writes only its inventory"),
            "{name}: {}",
            text(&out.stderr)
        );
    }
    // `unassign_entitlement` of `account`'s `entitlement` on `resource`, run by Lumos's agent; the
    // answer is validated by the SDK's model for what it is.
    let unassign_as_agent = |account: &str, resource: &str, entitlement: &str| {
        let mut unassign = unassign.clone();
        unassign["request"]["account_integration_specific_id"] = json!(account);
        unassign["request"]["resource_integration_specific_id"] = json!(resource);
        unassign["request"]["entitlement_integration_specific_id"] = json!(entitlement);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
            .args(["connector", "unassign_entitlement", "--fleet-hub", "--deadline", "30s"])
            .args(["--kubeconfig", kc.to_str().unwrap(), "--json", &unassign.to_string()])
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let done: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out.stderr)));
        let model = if done.get("error").is_some() { "ErrorResponse" } else { "UnassignEntitlementResponse" };
        support::sdk::validate(&[(model, &done)]);
        done
    };
    assert_eq!(
        unassign_as_agent("User:carol@x.com", &b_ns, "ClusterRole:edit"),
        json!({"response": {"unassigned": true}})
    );
    // What b's own policy does not allow (only `edit` there) is b's refusal: `permission_denied`.
    let refused = unassign_as_agent("User:carol@x.com", &b_ns, "ClusterRole:view");
    assert_eq!(refused["error"]["error_code"], "permission_denied", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("b: Failed"), "{refused}");
    assert_eq!(names_in(&cb, &ns).await, [bob]);
    assert_eq!(names_in(&ca, &ns).await, [ann, "User:carol@x.com"], "nothing changed in a");
    // The hub's record went to b alone, and b's record did it.
    let recs = Api::<DeprovisionRequest>::all(hub.clone()).list(&ListParams::default()).await.unwrap().items;
    let rec = recs
        .iter()
        .find(|r| {
            r.spec.source == deprovisioner::crd::RequestSource::LumosConnector
                && r.spec.permissions[0].value.ends_with("ClusterRole:edit")
        })
        .unwrap();
    let st = rec.status.clone().unwrap();
    assert_eq!(st.members.iter().map(|m| m.cluster.as_str()).collect::<Vec<_>>(), ["b"]);
    assert!(st.plan.is_empty(), "nothing planned on the hub");
    assert_eq!(local_records(&ca, &rec.uid().unwrap()).await.len(), 0);
    assert_eq!(local_records(&cb, &rec.uid().unwrap()).await.len(), 1);
    // Its report is the agent's alone: the hub's admin cannot write a member's answer.
    let forged_report = json!({"status": {"report": {"phase": "Succeeded", "verified": "True"}}}).to_string();
    let mr = rec.uid().unwrap().to_ascii_lowercase();
    let args = ["patch", "memberrequest", &mr, "-n", &mailbox("b"), "--subresource=status", "--type=merge"];
    let out = fleet.hub.kubectl(&[&args[..], &["-p", &forged_report, "--dry-run=server"]].concat());
    assert!(!out.status.success() && text(&out.stderr).contains("only the agent of mailbox"), "{}", text(&out.stderr));
    let member_record = &local_records(&cb, &rec.uid().unwrap()).await[0];
    assert_eq!(member_record.spec.hub_source, Some(deprovisioner::crd::RequestSource::LumosConnector));
    // Nobody can claim the hub's connector on a request of their own: the API server refuses
    // a hubSource on anything but a member's fleet record.
    let mut claimed = rec.spec.clone();
    (claimed.source, claimed.hub_source) =
        (deprovisioner::crd::RequestSource::Manual, Some(deprovisioner::crd::RequestSource::LumosConnector));
    let err = Api::<DeprovisionRequest>::all(cb.clone())
        .create(&PostParams::default(), &DeprovisionRequest::new(&unique("claimed"), claimed))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hubSource is only for source Fleet"), "{err}");

    // A member whose mailbox is gone (taken out of the fleet while Lumos still lists it): the hub
    // record ends Failed at once, naming why, instead of waiting for ever.
    let gone: MemberCluster =
        serde_json::from_value(json!({"metadata": {"name": "gone"}, "spec": {"mailbox": mailbox("gone")}})).unwrap();
    Api::<MemberCluster>::all(hub.clone()).create(&PostParams::default(), &gone).await.unwrap();
    let done = unassign_as_agent("User:carol@x.com", &format!("gone/{ns}"), "ClusterRole:edit");
    let msg = done["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(&format!("gone: Failed: its mailbox namespace {} does not exist", mailbox("gone"))), "{done}");
    let recs = Api::<DeprovisionRequest>::all(hub.clone()).list(&ListParams::default()).await.unwrap().items;
    let rec = recs.iter().find(|r| r.status.as_ref().is_some_and(|s| s.members.iter().any(|m| m.cluster == "gone")));
    assert_eq!(rec.map(phase), Some(Phase::Failed), "the hub record ended");
    // (Taken out of the fleet for good: the hub's listing fails while a member's inventory
    // cannot be read, rather than leave its access out.)
    Api::<MemberCluster>::all(hub.clone()).delete("gone", &Default::default()).await.unwrap();

    // A connector request on the hub's own resource is planned on the hub, even when a ClusterSet
    // names the connector's application: it names the hub's bindings, not the members'.
    cluster_set(&hub, "kubernetes").await;
    policy(
        &hub,
        "lumos-connector",
        json!({"application": {"appId": "kubernetes"},
               "subjects": [{"kind": "LumosAccount", "name": "{{custom_fields.accountId}}"}],
               "rules": [{"entitlements": {"namespaces": ["a"], "roles": ["edit"]}}]}),
    )
    .await;
    let done = unassign_as_agent("User:dave@x.com", "a", "ClusterRole:edit");
    assert_eq!(done, json!({"response": {"unassigned": true}}));
    assert!(
        get_rb(&hub, "a", "hub-devs").await.is_none_or(|b| b.subjects.is_none_or(|s| s.is_empty())),
        "dave's grant on the hub is gone"
    );
    let recs = Api::<DeprovisionRequest>::all(hub.clone()).list(&ListParams::default()).await.unwrap().items;
    let rec = recs.iter().find(|r| r.spec.target_user.email == "User:dave@x.com").unwrap();
    let st = rec.status.clone().unwrap();
    assert!(st.members.is_empty() && !st.plan.is_empty(), "planned on the hub, handed to no member: {st:?}");
    for m in ["a", "b"] {
        let handed = Api::<MemberRequest>::namespaced(hub.clone(), &mailbox(m)).get_opt(&rec.uid().unwrap()).await;
        assert!(handed.unwrap().is_none(), "handed to member {m}");
    }

    // --- the inventories' privileges, by the hub's real authorizer ---
    let h = fleet.hub;
    let agent_a = format!("system:serviceaccount:{}:agent", mailbox("a"));
    let lumos = "system:serviceaccount:deprovisioner:deprovisioner-lumos-agent";
    let (inv, chunk) = ("configmaps/deprovisioner-inventory", "configmaps/deprovisioner-inventory-b15");
    for args in [&["update", inv, "-n", &mailbox("a")][..], &["update", chunk, "-n", &mailbox("a")]] {
        assert!(can_i(h, &agent_a, args), "agent a may not {args:?}");
    }
    for args in [
        &["update", inv, "-n", &mailbox("b")][..],
        &["get", inv, "-n", &mailbox("b")],
        &["update", "configmaps/deprovisioner-inventory-a16", "-n", &mailbox("a")],
        &["update", "configmaps/kube-root-ca.crt", "-n", &mailbox("a")],
        &["list", "configmaps", "-n", &mailbox("a")],
    ] {
        assert!(!can_i(h, &agent_a, args), "agent a may {args:?}");
    }
    for args in
        [&["get", inv, "-n", &mailbox("b")][..], &["get", chunk, "-n", &mailbox("a")], &["list", "memberclusters"]]
    {
        assert!(can_i(h, lumos, args), "Lumos's agent may not {args:?}");
    }
    // The operator serves the connector over HTTP: it reads the inventories by name, no more.
    let operator = "system:serviceaccount:deprovisioner:deprovisioner";
    assert!(can_i(h, operator, &["get", inv, "-n", &mailbox("b")]));
    assert!(!can_i(h, operator, &["get", "configmaps/other", "-n", &mailbox("b")]));
    assert!(!can_i(h, operator, &["update", inv, "-n", &mailbox("b")]));

    // An agent that died in the middle of a rewrite: a chunk of a newer generation in the slot
    // the header does not name. The listing still reads the whole generation the header names.
    let header = mailbox_a.get("deprovisioner-inventory").await.unwrap();
    let header: serde_json::Value = serde_json::from_str(&header.data.unwrap()["inventory.json"]).unwrap();
    let unnamed = if header["slot"] == "a" { "deprovisioner-inventory-b00" } else { "deprovisioner-inventory-a00" };
    let half: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({"metadata": {"name": unnamed},
        "data": {"inventory.json": "{\"generation\": \"2099-01-01T00:00:00Z\", \"grants\": []}"}}))
    .unwrap();
    if mailbox_a.get_opt(unnamed).await.unwrap().is_some() {
        mailbox_a.delete(unnamed, &Default::default()).await.unwrap();
    }
    mailbox_a.create(&PostParams::default(), &half).await.unwrap();
    let assocs = hub_connector(&fleet, "find_entitlement_associations", "FindEntitlementAssociationsResponse", &page);
    assert!(held(&assocs, ann, &a_ns), "a's listing survives a torn rewrite: {assocs}");

    // A new generation goes into the other slot; the slot the header named is not touched until
    // the header has moved to the new one, so a reader in the middle of it is never torn.
    let header_of = |cm: k8s_openapi::api::core::v1::ConfigMap| -> Value {
        serde_json::from_str(&cm.data.unwrap()["inventory.json"]).unwrap()
    };
    let before = header_of(mailbox_a.get("deprovisioner-inventory").await.unwrap());
    let named = format!("deprovisioner-inventory-{}00", before["slot"].as_str().unwrap());
    let version = mailbox_a.get(&named).await.unwrap().metadata.resource_version;
    role_binding(&ca, &ns, "more", "view", vec![deprovisioner::fixtures::user("frank@x.com")]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let h = header_of(mailbox_a.get("deprovisioner-inventory").await.unwrap());
        if h["generation"] != before["generation"] {
            break h;
        }
        assert!(Instant::now() < deadline, "a's agent never wrote a new generation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(after["slot"], before["slot"], "{before} then {after}");
    assert_eq!(mailbox_a.get(&named).await.unwrap().metadata.resource_version, version, "{named} was rewritten");

    // A member whose agent stopped: still listed as last reported, and marked stale once its last
    // check is three periods old (at least ten seconds); the other member is not.
    drop(agent_b);
    let deadline = Instant::now() + Duration::from_secs(60);
    let stale_of = |resources: &Value, id: &str| {
        let list = resources["response"].as_array().unwrap();
        list.iter().find(|r| r["integration_specific_id"] == id).unwrap()["extra_data"]["inventory_stale"].clone()
    };
    loop {
        let resources = hub_connector(&fleet, "list_resources", "ListResourcesResponse", &page);
        if stale_of(&resources, "b/") == "true" {
            assert_eq!(stale_of(&resources, "a/"), "false", "{resources}");
            assert_eq!(stale_of(&resources, &b_ns), "true", "its namespaces too: {resources}");
            break;
        }
        assert!(Instant::now() < deadline, "b was never marked stale: {resources}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let assocs = hub_connector(&fleet, "find_entitlement_associations", "FindEntitlementAssociationsResponse", &page);
    assert!(held(&assocs, bob, &b_ns), "b listed as last reported: {assocs}");
    let ents = hub_connector(&fleet, "list_entitlements", "ListEntitlementsResponse", &page);
    let stale_on = |resource: &str| {
        let list = ents["response"].as_array().unwrap();
        let e = list.iter().find(|e| e["integration_specific_resource_id"] == resource).unwrap();
        e["extra_data"]["inventory_stale"].clone()
    };
    assert_eq!((stale_on(&b_ns), stale_on(&a_ns)), (json!("true"), json!("false")), "{ents}");
    for args in [
        &["list", "configmaps", "-n", &mailbox("a")][..],
        &["update", inv, "-n", &mailbox("a")],
        &["get", "configmaps/other", "-n", &mailbox("a")],
        &["get", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("a")],
        &["create", "memberrequests.access.deprovisioner.dev", "-n", &mailbox("a")],
        &["patch", "memberclusters.access.deprovisioner.dev/a", "--subresource", "status"],
    ] {
        assert!(!can_i(h, lumos, args), "Lumos's agent may {args:?}");
    }
}

/// The median of some durations.
fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// Figures for the README (ignored by default; `FLEET_MEMBERS=8 cargo test --test fleet figures
/// -- --ignored --nocapture`): the latency of a call to every member against a call to one, the
/// hub's memory, and how long a member that was down takes to catch up on 100 queued requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn figures() {
    let n: usize = std::env::var("FLEET_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let specs: Vec<(&str, &[(&str, &str)])> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (name.as_str(), if i == 0 { &[("env", "prod"), ("one", "yes")][..] } else { &[("env", "prod")][..] })
        })
        .collect();
    let started = Instant::now();
    let fleet = Fleet::start(&specs);
    println!("{n} members: hub and members started and set up in {:?}", started.elapsed());
    let hub = fleet.hub.admin().await;
    let hub_op = fleet.hub_operator(&["--response-deadline", "10s"]);
    let mut agents: Vec<Option<Operator>> = (0..n).map(|i| Some(fleet.agent(i))).collect();
    let mut members = Vec::new();
    for m in &fleet.members {
        members.push(m.cluster.admin().await);
    }
    let all_app = unique("fig-all");
    let one_app = unique("fig-one");
    cluster_set(&hub, &all_app).await;
    let one: deprovisioner::crd::ClusterSet = serde_json::from_value(json!({
        "apiVersion": "access.deprovisioner.dev/v1alpha1", "kind": "ClusterSet", "metadata": {"name": one_app},
        "spec": {"application": {"appId": one_app}, "members": {"matchLabels": {"one": "yes"}}}
    }))
    .unwrap();
    Api::<deprovisioner::crd::ClusterSet>::all(hub.clone()).create(&PostParams::default(), &one).await.unwrap();
    let rounds = 10;
    let (mut to_all, mut to_one) = (vec![], vec![]);
    for r in 0..rounds {
        let email = format!("user{r}@x.com");
        for c in &members {
            member_access(c, &all_app, &email).await;
        }
        member_access(&members[0], &one_app, &email).await;
        let (_, a, took) = hub_op.lumos(&payload(&all_app, &email, &[])).await;
        assert_eq!(a["response"], "SUCCESS", "{a}");
        to_all.push(took);
        let (_, a, took) = hub_op.lumos(&payload(&one_app, &email, &[])).await;
        assert_eq!(a["response"], "SUCCESS", "{a}");
        to_one.push(took);
    }
    println!(
        "{n} members: a call to all answered in {:?} (median of {rounds}; max {:?}), a call to one in {:?} (max {:?})",
        median(to_all.clone()),
        to_all.iter().max().unwrap(),
        median(to_one.clone()),
        to_one.iter().max().unwrap()
    );
    // The hub's connector listing the fleet (as Lumos's agent, the CLI: its process start
    // included), once every member's inventory has reached the hub.
    let page = json!({"request": {}, "page": {"size": 2000}});
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let resources = hub_connector(&fleet, "list_resources", "ListResourcesResponse", &page);
        let reported = resources["response"].as_array().unwrap().iter().filter(|r| r["resource_type"] == "cluster");
        if reported.filter(|r| r["extra_data"]["inventory_reported_at"] != "not reported yet").count() == n {
            break;
        }
        assert!(Instant::now() < deadline, "not every member's inventory reached the hub: {resources}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let listed = hub_connector(&fleet, "find_entitlement_associations", "FindEntitlementAssociationsResponse", &page);
    let associations = listed["response"].as_array().unwrap().len();
    let (mut fleet_wide, mut hub_only) = (vec![], vec![]);
    for _ in 0..5 {
        fleet_wide.push(connector_cli(&fleet, "find_entitlement_associations", &page, true).1);
        hub_only.push(connector_cli(&fleet, "find_entitlement_associations", &page, false).1);
    }
    println!(
        "{n} members: the hub's connector listed {associations} associations across the fleet in {:?} (median of 5, the CLI process as Lumos's agent; max {:?}); the hub's own alone in {:?}",
        median(fleet_wide.clone()),
        fleet_wide.iter().max().unwrap(),
        median(hub_only)
    );
    // A member down while 100 requests are made, then back.
    agents[0].take();
    let queued = 100;
    let calls: Vec<_> = (0..queued)
        .map(|i| {
            let url = hub_op.url.clone();
            let p = payload(&one_app, &format!("queued{i}@x.com"), &[]);
            tokio::spawn(async move {
                let a = http_client()
                    .post(format!("{url}/webhooks/lumos/deprovision"))
                    .header("authorization", format!("Bearer {SECRET}"))
                    .json(&p)
                    .send()
                    .await
                    .unwrap()
                    .json::<serde_json::Value>()
                    .await
                    .unwrap();
                hub_record(&a)
            })
        })
        .collect();
    let mut hub_names = vec![];
    for c in calls {
        hub_names.push(c.await.unwrap());
    }
    let rss_hub = proc_status_mib(hub_op.pid(), "VmHWM");
    let back = Instant::now();
    agents[0] = Some(fleet.agent(0));
    for name in &hub_names {
        wait_hub(&hub, name, Duration::from_secs(300), |r| phase(r) == Phase::Succeeded).await;
    }
    println!(
        "{n} members: a member back after {queued} requests were queued for it caught up (every hub record Succeeded) in {:?} from its start",
        back.elapsed()
    );
    println!(
        "{n} members: the hub operator's peak RSS {rss_hub:.1} MiB (VmHWM), now {:.1} MiB",
        proc_status_mib(hub_op.pid(), "VmRSS")
    );
}

/// `helm template` of the chart as a hub and as an agent: what each release would install.
#[test]
fn the_chart_sets_up_a_hub_or_an_agent() {
    let base = ["template", "deprovisioner", "charts/deprovisioner", "-n", "deprovisioner", "--kube-version", "1.37.2"];
    let mut agent = base.to_vec();
    agent.extend(["--set", "fleet.agent.memberName=prod-eu", "--set", "fleet.agent.hubKubeconfigSecret=hub-kc"]);
    let out = helm_ok(None, &agent);
    assert!(out.contains("- --member-name=prod-eu"), "{out}");
    assert!(out.contains("- --hub-kubeconfig=/etc/deprovisioner/hub/kubeconfig"), "{out}");
    assert!(out.contains("- --hub-mailbox=deprovisioner-member-prod-eu"), "{out}");
    assert!(out.contains("- --fleet-inventory-every=60s"), "{out}");
    assert!(out.contains("secretName: hub-kc"), "{out}");
    assert!(!out.contains("--fleet-hub") && !out.contains("kind: MemberCluster"), "an agent is no hub");
    // The agent needs the Secret named.
    let mut missing = base.to_vec();
    missing.extend(["--set", "fleet.agent.memberName=prod-eu"]);
    let failed = helm(None, &missing);
    assert!(
        !failed.status.success() && text(&failed.stderr).contains("hubKubeconfigSecret"),
        "{}",
        text(&failed.stderr)
    );
    let mut hub = base.to_vec();
    hub.extend([
        "--set",
        "fleet.hub.enabled=true",
        "--set",
        "fleet.hub.members[0].name=prod-eu",
        "--set",
        "fleet.hub.members[0].labels.env=prod",
        "--set",
        "fleet.hub.clusterSets[0].name=demo",
        "--set",
        "fleet.hub.clusterSets[0].application.appId=demo_app",
        "--set",
        "fleet.hub.clusterSets[0].matchLabels.env=prod",
    ]);
    let out = helm_ok(None, &hub);
    assert!(out.contains("- --fleet-hub"), "{out}");
    assert!(out.contains("- --fleet-member-timeout=168h"), "{out}");
    for want in [
        "kind: MemberCluster",
        "mailbox: deprovisioner-member-prod-eu",
        "kind: ClusterSet",
        "appId: demo_app",
        "type: kubernetes.io/service-account-token",
    ] {
        assert!(out.contains(want), "no {want:?} in\n{out}");
    }
    assert!(!out.contains("--member-name"), "a hub is no agent");
    // The agent's and the readers' RBAC name exactly the inventory's ConfigMaps.
    let names = deprovisioner::fleet::inventory::names().join(", ");
    assert_eq!(out.matches(&format!("resourceNames: [{names}]")).count(), 2, "{names}\n{out}");
    // Without fleet values, nothing of the fleet.
    let plain = helm_ok(None, &base);
    assert!(!plain.contains("memberrequests") && !plain.contains("--fleet-hub") && !plain.contains("--member-name"));
    // A member's name is a DNS label.
    let mut bad = base.to_vec();
    bad.extend(["--set", "fleet.hub.members[0].name=Prod_EU"]);
    assert!(!helm(None, &bad).status.success(), "a bad member name passed the schema");
}
