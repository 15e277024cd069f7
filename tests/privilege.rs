//! Least privilege, proven: the operator runs with an identity holding only the shipped rules
//! (or fewer), on a control plane of its own so no other operator handles its requests.

mod support;

use std::time::{Duration, Instant};

use deprovisioner::crd::{DeprovisionRequest, Outcome, RequestSource};
use deprovisioner::fixtures::{self, user};
use kube::Api;
use kube::api::PostParams;
use support::*;

#[tokio::test]
async fn least_privilege_shows_which_verbs_are_needed() {
    // An identity with the shipped rules but `bind` narrowed to one role: deleting a binding still
    // works (needs only `delete`), but editing one that references a role it may not bind (and
    // whose permissions it lacks) is refused by the API server's escalation check, and the record
    // says so. (The built-in edit/view roles are empty here: no controller-manager aggregates
    // them, so the test uses roles with real rules.)
    let c = admin().await;
    let sa = "deprovisioner-nobind";
    for (role, resource) in [("lp-guarded", "secrets"), ("lp-bindable", "configmaps")] {
        let yaml = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\nrules:\n- apiGroups: [\"\"]\n  resources: [{resource}]\n  verbs: [get]\n"
        );
        let file = cluster().dir.join(format!("{role}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let out = cluster().kubectl(&["apply", "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let rbac = std::fs::read_to_string(repo().join("deploy/rbac.yaml")).unwrap();
    let narrowed = rbac
        .replace("name: deprovisioner\n", &format!("name: {sa}\n"))
        .replace("name: deprovisioner-leader-election\n", &format!("name: {sa}-leader-election\n"))
        .replace("name: deprovisioner-events\n", &format!("name: {sa}-events\n"))
        // The admission policy names the webhook's identity: on this control plane that is the
        // narrowed operator (the policy keeps its name, so this replaces it).
        .replace(
            "system:serviceaccount:deprovisioner:deprovisioner",
            &format!("system:serviceaccount:deprovisioner:{sa}"),
        )
        .replace("  verbs: [bind]\n", "  verbs: [bind]\n  resourceNames: [lp-bindable]\n");
    let file = cluster().dir.join(format!("{sa}.yaml"));
    std::fs::write(&file, narrowed).unwrap();
    let out = cluster().kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The API server enforces the replaced admission policy a moment later: wait until this
    // identity may record a webhook request (a server-side dry run goes through admission).
    let as_sa = client_for(&cluster().kubeconfig_as(sa)).await;
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
    let mut op = Operator::start(OperatorOpts {
        kubeconfig: cluster().kubeconfig_as(sa),
        args: vec!["--lease-name".into(), sa.into()],
        ..Default::default()
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

#[tokio::test]
async fn the_shipped_identity_may_verify_and_nothing_more() {
    // Asked of the real authorizer about the operator's identity with the shipped RBAC
    // (deploy/rbac.yaml): what verification needs is allowed, and the powers a removal tool must
    // not have are not. Any broader grant added to the chart fails here.
    use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
    let c = admin().await;
    let may = |verb: &str, group: &str, resource: &str, ns: Option<&str>| {
        let c = c.clone();
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some("system:serviceaccount:deprovisioner:deprovisioner".into()),
                groups: Some(vec!["system:serviceaccounts".into(), "system:serviceaccounts:deprovisioner".into()]),
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
        async move {
            let done = Api::<SubjectAccessReview>::all(c).create(&PostParams::default(), &sar).await.unwrap();
            done.status.unwrap().allowed
        }
    };
    let rbac = "rbac.authorization.k8s.io";
    for (verb, group, resource) in [
        ("create", "authorization.k8s.io", "subjectaccessreviews"),
        ("get", rbac, "clusterroles"),
        ("get", rbac, "roles"),
        ("list", rbac, "rolebindings"),
        ("list", rbac, "clusterrolebindings"),
    ] {
        assert!(may(verb, group, resource, None).await, "the operator needs to {verb} {resource}");
    }
    for (verb, group, resource, ns) in [
        ("list", rbac, "clusterroles", None),
        ("create", rbac, "clusterrolebindings", None),
        ("create", rbac, "rolebindings", Some("team-a")),
        ("escalate", rbac, "clusterroles", None),
        ("update", rbac, "clusterroles", None),
        ("impersonate", "", "users", None),
        ("impersonate", "", "serviceaccounts", Some("kube-system")),
        ("get", "", "secrets", Some("kube-system")),
        ("get", "", "secrets", Some("deprovisioner")),
        ("create", "", "pods", Some("team-a")),
        ("create", "authorization.k8s.io", "localsubjectaccessreviews", Some("team-a")),
        ("create", "authentication.k8s.io", "tokenreviews", None),
        ("create", "", "serviceaccounts/token", Some("deprovisioner")),
    ] {
        assert!(!may(verb, group, resource, ns).await, "the operator must not {verb} {resource} in {ns:?}");
    }
}
