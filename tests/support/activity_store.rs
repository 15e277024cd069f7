//! The activity store as the audit receiver writes it (issue 26): shard ConfigMaps
//! `<prefix>-NN` in the operator's namespace, labelled `app.kubernetes.io/component=activity`,
//! each holding core's `Shard` as JSON under `ledger.json`; and read access to them for a
//! ServiceAccount, by name, as the chart grants it (`activity.*`); the status `<prefix>-status`
//! (the stretch of time the store observed).

use std::time::Duration;

use deprovisioner::activity::ledger::{COMPONENT, DATA_KEY, SHARDS, object_name, shard_of};
use deprovisioner::activity::{Coverage, Entry, Shard};
use deprovisioner_core::activity::{STATUS_KEY, status_name};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

/// The namespace the tests' operators run in (`--namespace deprovisioner`).
pub const NAMESPACE: &str = "deprovisioner";

/// A sighting at `at` (what was done, the credential id).
pub fn entry(at: Timestamp, what: &str, credential: Option<&str>) -> Entry {
    Entry { at, credential: credential.map(Into::into), impersonated_by: None, what: Some(what.into()) }
}

/// Writes (replaces) the shard of `account`'s number holding `shard`, as the receiver would.
pub async fn put_shard(c: &Client, prefix: &str, n: u16, shard: &Shard) {
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), NAMESPACE);
    let cm = serde_json::from_value::<ConfigMap>(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": object_name(prefix, n), "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/component": COMPONENT}},
        "data": {DATA_KEY: serde_json::to_string(shard).unwrap()},
    }))
    .unwrap();
    let pp = PatchParams::apply("tests").force();
    api.patch(&object_name(prefix, n), &pp, &Patch::Apply(&cm)).await.unwrap();
}

/// Writes shards holding these sightings (grouped by shard), each shard recording since `since`.
pub async fn put_sightings(c: &Client, prefix: &str, since: Timestamp, sightings: &[(&str, Entry)]) {
    let mut shards: std::collections::BTreeMap<u16, Shard> = Default::default();
    for (account, e) in sightings {
        let shard = shards.entry(shard_of(account)).or_insert_with(|| Shard::new(since));
        assert!(shard.record(account, e.clone(), Duration::from_secs(1)));
    }
    for (n, shard) in shards {
        put_shard(c, prefix, n, &shard).await;
    }
}

/// An account id named `<base>-<i>` for the first `i` whose shard is not among `taken`.
pub fn account_outside(base: &str, taken: &[&str]) -> String {
    let used: Vec<u16> = taken.iter().map(|a| shard_of(a)).collect();
    (0..1000).map(|i| format!("{base}-{i}")).find(|a| !used.contains(&shard_of(a))).unwrap()
}

/// Writes the store's status `<prefix>-status`: audit batches arrived without a break from
/// `covered_from` until `heard_at` (resolution 1 s, gap 5 min), as the receiver would.
pub async fn put_status(c: &Client, prefix: &str, covered_from: Timestamp, heard_at: Timestamp) {
    let coverage = Coverage { covered_from, heard_at, resolution_seconds: 1, gap_seconds: 300 };
    let cm = serde_json::from_value::<ConfigMap>(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": status_name(prefix), "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/component": COMPONENT}},
        "data": {STATUS_KEY: serde_json::to_string(&coverage).unwrap()},
    }))
    .unwrap();
    let pp = PatchParams::apply("tests").force();
    Api::<ConfigMap>::namespaced(c.clone(), NAMESPACE)
        .patch(&status_name(prefix), &pp, &Patch::Apply(&cm))
        .await
        .unwrap();
}

/// The store's status, when stored.
pub async fn get_status(c: &Client, prefix: &str) -> Option<Coverage> {
    let cm = Api::<ConfigMap>::namespaced(c.clone(), NAMESPACE).get_opt(&status_name(prefix)).await.unwrap()?;
    Some(serde_json::from_str(&cm.data?[STATUS_KEY]).unwrap())
}

/// Lets ServiceAccount `deprovisioner/<sa>` get and list the shards `<prefix>-NN` and the status, by name only
/// (as the chart's activity RBAC does; a LIST by label is then refused).
pub async fn grant_shard_reads(c: &Client, sa: &str, prefix: &str) {
    let name = format!("{sa}-reads-{prefix}");
    let role = Role {
        metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            resource_names: Some((0..SHARDS).map(|n| object_name(prefix, n)).chain([status_name(prefix)]).collect()),
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: name.clone() },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa.into(),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        }]),
    };
    let pp = PatchParams::apply("tests").force();
    Api::<Role>::namespaced(c.clone(), NAMESPACE).patch(&name, &pp, &Patch::Apply(&role)).await.unwrap();
    Api::<RoleBinding>::namespaced(c.clone(), NAMESPACE).patch(&name, &pp, &Patch::Apply(&binding)).await.unwrap();
}
