//! How long planning takes on a large cluster: `cargo bench --bench plan`.
//!
//! 10,000 RoleBindings in 200 namespaces (5 subjects each) and 2,000 ClusterRoleBindings; a policy
//! that selects every namespace by label and every ClusterRoleBinding granting `view`. Prints the
//! median and worst time of one `plan::compute` over repeated runs.

use std::time::{Duration, Instant};

use deprovisioner::crd::{DeprovisionPolicy, DeprovisionPolicySpec, DeprovisionRequestSpec};
use deprovisioner::plan::subject::Protected;
use deprovisioner::plan::{self, Observed};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

fn subject(i: usize) -> Subject {
    Subject { kind: "User".into(), name: format!("user{i}@example.com"), namespace: None, api_group: None }
}

fn role_ref(name: &str) -> RoleRef {
    RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "ClusterRole".into(), name: name.into() }
}

fn world() -> Observed {
    let mut o = Observed::default();
    for n in 0..200 {
        let ns = format!("team-{n}");
        o.namespaces.push(Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                labels: Some([("tenant".to_string(), "yes".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        });
        for b in 0..50 {
            let mut subjects: Vec<Subject> = (0..5).map(|s| subject(n * 7 + b * 3 + s)).collect();
            if b == 7 {
                subjects.push(subject(0)); // the target holds a few bindings
            }
            o.role_bindings.push(RoleBinding {
                metadata: ObjectMeta {
                    name: Some(format!("rb-{b}")),
                    namespace: Some(ns.clone()),
                    uid: Some(format!("{n}-{b}")),
                    ..Default::default()
                },
                role_ref: role_ref(if b % 2 == 0 { "edit" } else { "view" }),
                subjects: Some(subjects),
            });
        }
    }
    for c in 0..2000 {
        o.cluster_role_bindings.push(ClusterRoleBinding {
            metadata: ObjectMeta { name: Some(format!("crb-{c}")), uid: Some(format!("c{c}")), ..Default::default() },
            role_ref: role_ref("view"),
            subjects: Some((0..5).map(|s| subject(c + s)).collect()),
        });
    }
    o
}

fn main() {
    let observed = world();
    let spec: DeprovisionPolicySpec = serde_json::from_value(json!({
        "application": {"appId": "bench"},
        "subjects": [{"kind": "User", "name": "{{target_user.email}}", "caseInsensitive": true}],
        "rules": [{"roleBindings": {"namespaceSelector": {"matchLabels": {"tenant": "yes"}}},
                   "clusterRoleBindings": {"roleRef": {"name": "view"}}}]
    }))
    .unwrap();
    let policies = vec![DeprovisionPolicy::new("bench", spec)];
    let request: DeprovisionRequestSpec = serde_json::from_value(json!({
        "application": {"appId": "bench"}, "targetUser": {"email": "USER0@example.com"}
    }))
    .unwrap();
    let protected = Protected::default();
    let runs = 50;
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut actions = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let p = plan::compute(&request, &policies, &observed, &protected).unwrap();
        times.push(t.elapsed());
        actions = p.actions.len();
    }
    times.sort();
    println!(
        "plan::compute over {} RoleBindings + {} ClusterRoleBindings: median {:?}, worst {:?} ({runs} runs, {actions} actions)",
        observed.role_bindings.len(),
        observed.cluster_role_bindings.len(),
        times[runs / 2],
        times[runs - 1]
    );
}
