//! Least privilege, proven: the operator runs with an identity holding only the shipped rules
//! (or fewer), on a control plane of its own so no other operator handles its requests.

mod support;

use std::time::{Duration, Instant};

use deprovisioner::crd::{DeprovisionRequest, Outcome, RequestSource};
use deprovisioner::fixtures::{self, user};
use kube::Api;
use kube::api::PostParams;
use support::*;

/// The shipped RBAC and admission policies (deploy/rbac.yaml) for another ServiceAccount `sa`,
/// changed by `edit`, on a control plane of the test's own: the policies keep their names, so
/// they name `sa` instead (on the shared control plane that would change what other tests run
/// with). Waits until the replaced policy lets `sa` record a webhook request.
async fn shipped_rbac_as(cl: &'static Cluster, sa: &str, edit: impl Fn(String) -> String) {
    let rbac = std::fs::read_to_string(repo().join("deploy/rbac.yaml")).unwrap();
    let renamed = rbac
        .replace("name: deprovisioner\n", &format!("name: {sa}\n"))
        .replace("name: deprovisioner-leader-election\n", &format!("name: {sa}-leader-election\n"))
        .replace("name: deprovisioner-events\n", &format!("name: {sa}-events\n"))
        .replace(
            "system:serviceaccount:deprovisioner:deprovisioner",
            &format!("system:serviceaccount:deprovisioner:{sa}"),
        );
    let file = cl.dir.join(format!("{sa}.yaml"));
    std::fs::write(&file, edit(renamed)).unwrap();
    let out = cl.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The API server enforces the replaced admission policy a moment later: wait until this
    // identity may record a webhook request (a server-side dry run goes through admission).
    let as_sa = client_for(&cl.kubeconfig_as(sa)).await;
    let probe = fixtures::request(
        &unique("probe"),
        fixtures::request_spec("lp-probe", "probe@lumos.com").source(RequestSource::LumosWebhook).build(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = Api::<DeprovisionRequest>::all(as_sa.clone())
        .create(&PostParams { dry_run: true, ..Default::default() }, &probe)
        .await
    {
        assert!(Instant::now() < deadline, "the replaced admission policy is not enforced: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn least_privilege_shows_which_verbs_are_needed() {
    // An identity with the shipped rules but `bind` narrowed to one role: deleting a binding still
    // works (needs only `delete`), but editing one that references a role it may not bind (and
    // whose permissions it lacks) is refused by the API server's escalation check, and the record
    // says so. (The built-in edit/view roles are empty here: no controller-manager aggregates
    // them, so the test uses roles with real rules.)
    let cl = own_cluster();
    let c = cl.admin().await;
    let sa = "deprovisioner-nobind";
    for (role, resource) in [("lp-guarded", "secrets"), ("lp-bindable", "configmaps")] {
        let yaml = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\nrules:\n- apiGroups: [\"\"]\n  resources: [{resource}]\n  verbs: [get]\n"
        );
        let file = cl.dir.join(format!("{role}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let out = cl.kubectl(&["apply", "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    shipped_rbac_as(cl, sa, |rbac| {
        rbac.replace("  verbs: [bind]\n", "  verbs: [bind]\n  resourceNames: [lp-bindable]\n")
    })
    .await;
    let mut op = Operator::start(OperatorOpts {
        kubeconfig: cl.kubeconfig_as(sa),
        args: vec!["--lease-name".into(), sa.into()],
        ..OperatorOpts::on(cl)
    });
    let ns = unique("lp");
    namespace(&c, &ns, &[]).await;
    role_binding(&c, &ns, "edit-pair", "lp-guarded", vec![user("kraven@lumos.com"), user("stays@lumos.com")]).await;
    role_binding(&c, &ns, "edit-solo", "lp-guarded", vec![user("kraven@lumos.com")]).await;
    role_binding(&c, &ns, "view-pair", "lp-bindable", vec![user("kraven@lumos.com"), user("stays@lumos.com")]).await;
    let app = namespace_policy(&c, "lp", &ns).await;
    let (_, answer, _) = op.lumos(&payload(&app, "kraven@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(msg.contains("Failed 1 of 3") && msg.contains("edit-pair"), "{msg}");
    let r = get_request(&c, &request_name(&answer)).await.status.unwrap();
    let by_object = |suffix: &str| r.results.iter().find(|x| x.object.ends_with(suffix)).unwrap().clone();
    let failed = by_object("/edit-pair");
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(
        failed.message.contains("forbidden")
            && failed.message.contains("needs the `bind` verb on ClusterRole/lp-guarded"),
        "{}",
        failed.message
    );
    assert_eq!(by_object("/edit-solo").outcome, Outcome::Deleted);
    assert_eq!(by_object("/view-pair").outcome, Outcome::Removed);
    assert_eq!(names(&get_rb(&c, &ns, "edit-pair").await.unwrap().subjects).len(), 2);
    op.kill();
}

/// The chart's identities as the API server names them.
const OPERATOR: &str = "system:serviceaccount:deprovisioner:deprovisioner";
const AGENT: &str = "system:serviceaccount:deprovisioner:deprovisioner-lumos-agent";
const AGENT_SA: &str = "deprovisioner-lumos-agent";

/// Whether the real authorizer lets `user` (a ServiceAccount, with its groups) do this.
async fn allowed(c: &kube::Client, user: &str, verb: &str, group: &str, resource: &str, ns: Option<&str>) -> bool {
    use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
    let sa_ns = user.split(':').nth(2).unwrap_or_default();
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{sa_ns}")]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: ns.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let done = Api::<SubjectAccessReview>::all(c.clone()).create(&PostParams::default(), &sar).await.unwrap();
    done.status.unwrap().allowed
}

/// (verb, API group, resource, namespace, the operator may, Lumos's agent may).
type Row = (&'static str, &'static str, &'static str, Option<&'static str>, bool, bool);

/// What the authorizer answers for each of the chart's identities (the README's table): the
/// operator may read and edit bindings and ask reviews, Lumos's agent may only read bindings and
/// namespaces and record requests, and neither may touch Secrets, admission policies, roles or
/// anyone's tokens. Any broader grant in the chart fails here. Printed as a Markdown table.
#[tokio::test]
async fn the_authorizer_says_what_each_identity_may_do() {
    let c = admin().await;
    let (rbac, ours, adm) = ("rbac.authorization.k8s.io", "access.deprovisioner.dev", "admissionregistration.k8s.io");
    let table: &[Row] = &[
        ("list", rbac, "rolebindings", None, true, true),
        ("list", rbac, "clusterrolebindings", None, true, true),
        ("watch", rbac, "rolebindings", None, true, false),
        ("update", rbac, "rolebindings", Some("team-a"), true, false),
        ("patch", rbac, "clusterrolebindings", None, true, false),
        ("delete", rbac, "rolebindings", Some("team-a"), true, false),
        ("create", rbac, "rolebindings", Some("team-a"), false, false),
        ("create", rbac, "clusterrolebindings", None, false, false),
        ("bind", rbac, "clusterroles", None, true, false),
        ("escalate", rbac, "clusterroles", None, false, false),
        ("get", rbac, "clusterroles", None, true, false),
        ("get", rbac, "roles", Some("team-a"), true, false),
        ("list", rbac, "clusterroles", None, false, false),
        ("update", rbac, "clusterroles", None, false, false),
        ("create", "authorization.k8s.io", "subjectaccessreviews", None, true, false),
        ("create", "authorization.k8s.io", "localsubjectaccessreviews", Some("team-a"), false, false),
        ("create", "authentication.k8s.io", "tokenreviews", None, false, false),
        ("list", "", "namespaces", None, true, true),
        ("watch", "", "namespaces", None, true, false),
        ("get", "", "namespaces", None, true, false),
        ("create", ours, "deprovisionrequests", None, true, true),
        ("get", ours, "deprovisionrequests", None, true, true),
        ("list", ours, "deprovisionrequests", None, true, true),
        ("delete", ours, "deprovisionrequests", None, true, false),
        ("update", ours, "deprovisionrequests/status", None, true, false),
        ("update", ours, "deprovisionpolicies", None, false, false),
        ("delete", adm, "validatingadmissionpolicies", None, false, false),
        ("update", adm, "validatingadmissionpolicybindings", None, false, false),
        ("get", "", "secrets", Some("deprovisioner"), false, false),
        ("get", "", "secrets", Some("kube-system"), false, false),
        ("create", "", "serviceaccounts/token", Some("deprovisioner"), false, false),
        ("impersonate", "", "users", None, false, false),
        ("impersonate", "", "serviceaccounts", Some("kube-system"), false, false),
        ("create", "", "pods", Some("team-a"), false, false),
    ];
    let mut rows = vec!["| verb | resource | operator | Lumos agent |".to_string(), "|---|---|---|---|".into()];
    for &(verb, group, resource, ns, operator_may, agent_may) in table {
        let op = allowed(&c, OPERATOR, verb, group, resource, ns).await;
        let agent = allowed(&c, AGENT, verb, group, resource, ns).await;
        let what = match (group, ns) {
            ("", Some(ns)) => format!("{resource} in {ns}"),
            ("", None) => resource.to_string(),
            (g, Some(ns)) => format!("{resource}.{g} in {ns}"),
            (g, None) => format!("{resource}.{g}"),
        };
        let yes = |b: bool| if b { "allowed" } else { "denied" };
        rows.push(format!("| {verb} | {what} | {} | {} |", yes(op), yes(agent)));
        assert_eq!(op, operator_may, "the operator: {verb} {what}");
        assert_eq!(agent, agent_may, "Lumos's agent: {verb} {what}");
    }
    eprint_uncaptured(&format!("what the authorizer answers for each identity:\n{}\n", rows.join("\n")));
}

/// Refused by the API server (403 from RBAC, or the admission policy's message), with the
/// policy's words when `by_policy`.
fn refused(what: &str, r: Result<impl std::fmt::Debug, kube::Error>, by_policy: bool) {
    match r {
        Err(kube::Error::Api(s)) => {
            assert!(s.code == 403 || s.code == 422, "{what}: {s:?}");
            if by_policy {
                assert!(s.message.contains("the deprovisioner only takes access away"), "{what}: {}", s.message);
            }
        }
        other => panic!("{what}: not refused: {other:?}"),
    }
}

/// The admission policy holds every identity the chart creates to taking access away, whatever
/// RBAC grants them: as the operator (with the shipped RBAC) and as Lumos's agent (given the
/// operator's binding verbs and `create` on top, as a careless edit of the chart might), adding a
/// subject to `cluster-admin`, creating a binding to it, replacing a subject by another, patching
/// subjects in with a JSON patch, and changing labels or annotations are refused; removing a
/// subject, deleting an emptied binding and the index's barrier annotation still work.
#[tokio::test]
async fn the_deprovisioners_identities_can_only_take_access_away() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef};
    use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};
    // A control plane of its own: Lumos's agent is given more than the chart grants it here.
    let cl = own_cluster();
    let c = cl.admin().await;
    // Lumos's agent, given more than the chart grants it: the policy alone must stop it.
    let extra = unique("agent-extra");
    let role = ClusterRole {
        metadata: ObjectMeta { name: Some(extra.clone()), ..Default::default() },
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["rbac.authorization.k8s.io".into()]),
                resources: Some(vec!["rolebindings".into(), "clusterrolebindings".into()]),
                verbs: ["get", "create", "update", "patch", "delete"].map(String::from).to_vec(),
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec!["rbac.authorization.k8s.io".into()]),
                resources: Some(vec!["roles".into(), "clusterroles".into()]),
                verbs: vec!["bind".into()],
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(c.clone()).create(&PostParams::default(), &role).await.unwrap();
    let grant = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(extra.clone()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: extra.clone(),
        },
        subjects: Some(vec![fixtures::service_account_in("deprovisioner", AGENT_SA)]),
    };
    Api::<ClusterRoleBinding>::all(c.clone()).create(&PostParams::default(), &grant).await.unwrap();

    let ns = unique("only-removes");
    namespace(&c, &ns, &[]).await;
    for (who, kubeconfig, has_create) in
        [("operator", cl.operator_kubeconfig.clone(), false), ("agent", cl.kubeconfig_as(AGENT_SA), true)]
    {
        let me = client_for(&kubeconfig).await;
        let rbs = Api::<RoleBinding>::namespaced(me.clone(), &ns);
        let crbs = Api::<ClusterRoleBinding>::all(me.clone());
        let pair =
            role_binding(&c, &ns, &format!("{who}-pair"), "view", vec![user("ann@x.io"), user("bob@x.io")]).await;
        let solo = role_binding(&c, &ns, &format!("{who}-solo"), "view", vec![user("ann@x.io")]).await;
        let pair_name = name_of(&pair);

        // The policy is in force once a grant is refused (RBAC for the agent needs a moment too).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut more = rbs.get(&pair_name).await;
            if let Ok(rb) = &mut more {
                rb.subjects.get_or_insert_with(Vec::new).push(user("mallory@x.io"));
                let dry = PostParams { dry_run: true, ..Default::default() };
                match rbs.replace(&pair_name, &dry, rb).await {
                    Err(kube::Error::Api(s)) if s.message.contains("only takes access away") => break,
                    other => assert!(Instant::now() < deadline, "{who}: the policy is not enforced: {other:?}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Adding a subject to cluster-admin.
        let mut admin_binding = crbs.get("cluster-admin").await.unwrap();
        admin_binding
            .subjects
            .get_or_insert_with(Vec::new)
            .push(fixtures::service_account_in("deprovisioner", AGENT_SA));
        refused(
            &format!("{who}: adding a subject to cluster-admin"),
            crbs.replace("cluster-admin", &PostParams::default(), &admin_binding).await,
            true,
        );
        // Creating a binding to cluster-admin (RBAC refuses the operator first: it may not create).
        let mine = ClusterRoleBinding {
            metadata: ObjectMeta { name: Some(unique("mine")), ..Default::default() },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "cluster-admin".into(),
            },
            subjects: Some(vec![user("mallory@x.io")]),
        };
        refused(
            &format!("{who}: creating a binding to cluster-admin"),
            crbs.create(&PostParams::default(), &mine).await,
            has_create,
        );
        // Replacing a subject by another (same count).
        let mut swapped = rbs.get(&pair_name).await.unwrap();
        swapped.subjects = Some(vec![user("ann@x.io"), user("mallory@x.io")]);
        refused(
            &format!("{who}: replacing a subject"),
            rbs.replace(&pair_name, &PostParams::default(), &swapped).await,
            true,
        );
        // A JSON patch adding a subject.
        let add: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "add", "path": "/subjects/-", "value": {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "mallory@x.io"}}
        ]))
        .unwrap();
        refused(
            &format!("{who}: a JSON patch adding a subject"),
            rbs.patch(&pair_name, &PatchParams::default(), &Patch::<()>::Json(add)).await,
            true,
        );
        // Labels and annotations that are not the barrier's.
        let label = serde_json::json!({"metadata": {"labels": {"team": "red"}}});
        refused(
            &format!("{who}: a label"),
            rbs.patch(&pair_name, &PatchParams::default(), &Patch::Merge(&label)).await,
            true,
        );
        let note = serde_json::json!({"metadata": {"annotations": {"note": "x"}}});
        refused(
            &format!("{who}: an annotation"),
            rbs.patch(&pair_name, &PatchParams::default(), &Patch::Merge(&note)).await,
            true,
        );

        // What a removal does still works: the barrier's annotation, removing a subject, deleting
        // an emptied binding.
        let barrier = serde_json::json!({"metadata": {"annotations": {"deprovisioner.dev/index-barrier": format!("test/{who}")}}});
        rbs.patch(&pair_name, &PatchParams::default(), &Patch::Merge(&barrier)).await.unwrap();
        let mut fewer = rbs.get(&pair_name).await.unwrap();
        fewer.subjects = Some(vec![user("bob@x.io")]);
        rbs.replace(&pair_name, &PostParams::default(), &fewer).await.unwrap();
        let drop_ann: json_patch::Patch =
            serde_json::from_value(serde_json::json!([{"op": "remove", "path": "/subjects/0"}])).unwrap();
        let emptied = rbs.patch(&pair_name, &PatchParams::default(), &Patch::<()>::Json(drop_ann)).await.unwrap();
        assert!(emptied.subjects.unwrap_or_default().is_empty(), "{who}: removing the last subject");
        rbs.delete(&name_of(&solo), &DeleteParams::default()).await.unwrap();
        assert_eq!(names(&get_crb(&c, "cluster-admin").await.unwrap().subjects), ["Group:system:masters"]);
    }
}

/// An operator that may not ask the authorizer (the shipped rules less `create
/// subjectaccessreviews`) still removes, but never claims the removal was proven: after asking
/// again for a few seconds, the answer is `FAILURE` "removed, but not verified: … forbidden"
/// (the record's `Verified` condition is `Unknown`), unless the policy opts out with
/// `onUnverified: Report`, which answers `SUCCESS` saying so.
#[tokio::test]
async fn a_removal_that_could_not_be_verified_is_never_answered_success_by_default() {
    let cl = own_cluster();
    let c = cl.admin().await;
    let sa = "deprovisioner-noreview";
    let review_rule = "- apiGroups: [authorization.k8s.io]\n  resources: [subjectaccessreviews]\n  verbs: [create]\n";
    shipped_rbac_as(cl, sa, |rbac| {
        assert!(rbac.contains(review_rule), "the shipped rule for reviews moved: update this test");
        rbac.replace(review_rule, "")
    })
    .await;
    let mut op = Operator::start(OperatorOpts {
        kubeconfig: cl.kubeconfig_as(sa),
        args: vec!["--lease-name".into(), sa.into()],
        ..OperatorOpts::on(cl)
    });
    // A role with a rule to ask about (the built-in ones are empty here: no controller-manager
    // aggregates them, and a role granting nothing leaves nothing to ask).
    let yaml = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: unverified-reader\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n";
    let file = cl.dir.join("unverified-reader.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = cl.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ns = unique("unverified");
    namespace(&c, &ns, &[]).await;
    let pair = vec![user("kraven@lumos.com"), user("stays@lumos.com")];
    role_binding(&c, &ns, "pair", "unverified-reader", pair).await;
    let app = namespace_policy(&c, "unverified", &ns).await;
    let (_, answer, took) = op.lumos(&payload(&app, "kraven@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(msg.contains("Removed kraven@lumos.com from RoleBinding"), "{msg}");
    assert!(msg.contains("removed, but not verified: asking the authorizer") && msg.contains("forbidden"), "{msg}");
    assert!(took >= Duration::from_secs(3), "asked again for a few seconds before giving up: {took:?}");
    assert_eq!(names(&get_rb(&c, &ns, "pair").await.unwrap().subjects), ["User:stays@lumos.com"]);
    let r = get_request(&c, &request_name(&answer)).await.status.unwrap();
    let verified = r.conditions.iter().find(|c| c.type_ == "Verified").unwrap();
    assert_eq!(verified.status, "Unknown", "{verified:?}");
    let complete = r.conditions.iter().find(|c| c.type_ == "Complete").unwrap();
    assert_eq!(complete.reason, "NotVerified", "{complete:?}");
    assert!(r.verification.as_ref().unwrap().error.as_deref().unwrap().contains("attempts in"), "{r:?}");

    // A policy that opts out answers SUCCESS, and still says it was not proven.
    role_binding(&c, &ns, "solo", "unverified-reader", vec![user("kraven@lumos.com")]).await;
    let lenient = unique("lenient");
    policy(
        &c,
        &lenient,
        serde_json::json!({"application": {"appId": lenient}, "onUnverified": "Report",
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaces": [ns]}}]}),
    )
    .await;
    let (_, answer, _) = op.lumos(&payload(&lenient, "kraven@lumos.com", &[])).await;
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    assert!(answer["msg"].as_str().unwrap().contains("removed, but not verified"), "{answer}");
    op.kill();
}

/// The clocks of time-bound access cannot be forged: the admission policy lets only the
/// operator's identity create, update or delete an AccessClock; a cluster admin (whom RBAC lets
/// do anything) is refused each, and may still read them.
#[tokio::test]
async fn only_the_operator_writes_the_clocks() {
    use deprovisioner::crd::{AccessClock, AccessClockSpec};
    use kube::api::DeleteParams;
    let cl = cluster();
    let admin = cl.admin().await;
    let operator = client_for(&cl.operator_kubeconfig).await;
    let name = unique("forged-clocks");
    let clock = AccessClock::new(&name, AccessClockSpec::default());
    let as_admin = Api::<AccessClock>::all(admin.clone());
    let dry = PostParams { dry_run: true, ..Default::default() };
    let forbidden = |what: &str, r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{what}: {s:?}");
            assert!(s.message.contains("only the deprovisioner"), "{what}: {}", s.message);
        }
        other => panic!("{what}: not refused: {other:?}"),
    };
    // In force a moment after the policy is applied.
    let deadline = Instant::now() + Duration::from_secs(20);
    while as_admin.create(&dry, &clock).await.is_ok() {
        assert!(Instant::now() < deadline, "the clocks' admission policy is not enforced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    forbidden("an admin creating", as_admin.create(&dry, &clock).await.map(|_| ()));
    // The operator may.
    let mine = Api::<AccessClock>::all(operator).create(&PostParams::default(), &clock).await.unwrap();
    // An admin may read it, not move a start nor delete it.
    let mut moved = as_admin.get(&name).await.unwrap();
    assert_eq!(moved.spec, mine.spec);
    moved.spec.bindings.insert("uid".into(), Default::default());
    forbidden("an admin updating", as_admin.replace(&name, &PostParams::default(), &moved).await.map(|_| ()));
    forbidden("an admin deleting", as_admin.delete(&name, &DeleteParams::default()).await.map(|_| ()));
    assert!(as_admin.get_opt(&name).await.unwrap().is_some());
}
