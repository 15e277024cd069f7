//! How long planning takes on a large cluster: `cargo bench --bench plan`.
//!
//! 10,000 RoleBindings in 200 namespaces (5 subjects each) and 2,000 ClusterRoleBindings; a policy
//! that selects every namespace by label and every ClusterRoleBinding granting `view`. Prints the
//! median and worst time of one `plan::compute` over repeated runs.

use std::time::{Duration, Instant};

use deprovisioner::fixtures::{self, user};
use deprovisioner::plan::subject::Protected;
use deprovisioner::plan::{self, Observed};
use k8s_openapi::api::rbac::v1::Subject;
use serde_json::json;

fn subject(i: usize) -> Subject {
    user(&format!("user{i}@example.com"))
}

fn world() -> Observed {
    let mut o = Observed::default();
    for n in 0..200 {
        let ns = format!("team-{n}");
        o.namespaces.push(fixtures::namespace(&ns, &[("tenant", "yes")]));
        for b in 0..50 {
            let mut subjects: Vec<Subject> = (0..5).map(|s| subject(n * 7 + b * 3 + s)).collect();
            if b == 7 {
                subjects.push(subject(0)); // the target holds a few bindings
            }
            o.role_bindings.push(
                fixtures::role_binding(&ns, &format!("rb-{b}"))
                    .role(if b % 2 == 0 { "edit" } else { "view" })
                    .subjects(subjects)
                    .uid(&format!("{n}-{b}"))
                    .build()
                    .into(),
            );
        }
    }
    for c in 0..2000 {
        o.cluster_role_bindings.push(
            fixtures::cluster_role_binding(&format!("crb-{c}"))
                .role("view")
                .subjects((0..5).map(|s| subject(c + s)))
                .uid(&format!("c{c}"))
                .build()
                .into(),
        );
    }
    o
}

fn main() {
    let observed = world();
    let policies = vec![fixtures::policy(
        "bench",
        json!({
            "application": {"appId": "bench"},
            "subjects": [{"kind": "User", "name": "{{target_user.email}}", "caseInsensitive": true}],
            "rules": [{"roleBindings": {"namespaceSelector": {"matchLabels": {"tenant": "yes"}}},
                       "clusterRoleBindings": {"roleRef": {"name": "view"}}}]
        }),
    )];
    let request = fixtures::request_spec("bench", "USER0@example.com").build();
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
