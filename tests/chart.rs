//! The Helm chart (charts/deprovisioner) and the plain manifests rendered from it (deploy/),
//! proven with the real helm and a real kube-apiserver: lint and schema, server-side validation
//! (including the restricted Pod Security profile, enforced by the API server's PodSecurity
//! admission), install / upgrade / uninstall, and a full deprovisioning run by the operator with
//! nothing but the chart's RBAC. (No kubelet or scheduler runs here, so no pod starts: the
//! operator runs as a local process with the chart's ServiceAccount identity.)

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use deprovisioner::crd::{Outcome, Phase};
use deprovisioner::fixtures::{group, service_account_in, user};
use serde_json::{Value, json};
use support::*;

const CHART: &str = "charts/deprovisioner";
const KUBE_VERSION: &str = "1.37.2";

/// `helm template` with the given extra arguments.
fn template(release: &str, ns: &str, extra: &[&str]) -> String {
    let mut args = vec!["template", release, CHART, "--namespace", ns, "--kube-version", KUBE_VERSION];
    args.extend_from_slice(extra);
    helm_ok(None, &args)
}

/// The objects of a multi-document YAML stream, as JSON.
fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objs.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

fn kinds(objs: &[Value]) -> BTreeSet<String> {
    objs.iter().map(|o| o["kind"].as_str().unwrap().to_string()).collect()
}

fn write(c: &Cluster, name: &str, contents: &str) -> PathBuf {
    let path = c.dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A namespace where the API server enforces (and warns about) the restricted Pod Security
/// profile.
fn restricted_namespace(c: &Cluster, name: &str) {
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/warn: restricted\n"
    );
    let f = write(c, &format!("ns-{name}.yaml"), &yaml);
    kubectl_ok(c, &["apply", "-f", f.to_str().unwrap()]);
}

/// `kubectl apply --dry-run=server`: every object passes the real API server's validation and
/// admission (PodSecurity included). Returns stdout; fails on any PodSecurity warning.
fn dry_run(c: &Cluster, file: &Path) -> String {
    let out = kubectl_ok(c, &["apply", "--dry-run=server", "-f", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("PodSecurity"), "{} violates the restricted profile:\n{stderr}", file.display());
    text(&out.stdout)
}

#[test]
fn chart_lints_and_rejects_bad_values_with_clear_messages() {
    for extra in [
        vec![],
        vec![
            "--set",
            "ingress.enabled=true,ingress.host=deprovisioner.example.com,ingress.tls.secretName=tls,networkPolicy.enabled=true,rbac.bindRoles.clusterRoles={edit,view},webhook.secret.existingSecret=mine",
        ],
    ] {
        let mut args = vec!["lint", "--strict", CHART, "--kube-version", KUBE_VERSION];
        args.extend_from_slice(&extra);
        let out = helm_ok(None, &args);
        assert!(out.contains("1 chart(s) linted, 0 chart(s) failed"), "{out}");
    }
    let cases: &[(&str, &str)] = &[
        ("replicaCount=0", "at '/replicaCount': minimum: got 0, want 1"),
        ("log.format=xml", "value must be one of 'json', 'text'"),
        ("nosuchvalue=1", "additional properties 'nosuchvalue' not allowed"),
        ("rbac.bindRoles.clusterRoles=edit", "at '/rbac/bindRoles/clusterRoles': got string, want array"),
        (
            "webhook.responseDeadline=15s",
            "webhook.responseDeadline must be more than 0s and less than Lumos's 15s timeout",
        ),
        ("webhook.secret.value=short", "line 1 must be at least 16 printable characters"),
        (
            "webhook.secret.value=0123456789abcdefgh,webhook.secret.existingSecret=mine",
            "set either value or existingSecret, not both",
        ),
        ("ingress.enabled=true", "ingress.enabled is true but ingress.host is empty"),
        (
            "controller.retention=forever",
            "controller.retention must be a duration such as 90s, 15m, 12h or 400days, got \"forever\"",
        ),
        ("webhook.header=bad header", "webhook.header must be an HTTP header name"),
        ("metrics.port=80", "at '/metrics/port': minimum: got 80, want 1,024"),
        // Credentials never granted: the webhook Secret (release "x": x-deprovisioner-webhook,
        // or the existingSecret) and Helm's release storage.
        (
            "rbac.credentials.secretNames={acme-scim,x-deprovisioner-webhook}",
            "rbac.credentials.secretNames must not list \"x-deprovisioner-webhook\": it is the webhook Secret",
        ),
        (
            "webhook.secret.existingSecret=mine,rbac.credentials.secretNames={mine}",
            "rbac.credentials.secretNames must not list \"mine\": it is the webhook Secret",
        ),
        (
            "rbac.credentials.secretNames={sh.helm.release.v1.x}",
            "rbac.credentials.secretNames must not list \"sh.helm.release.v1.x\": it is Helm's release storage",
        ),
        (
            "rbac.credentials.configMapNames={sh.helm.release.v1.x.v1}",
            "rbac.credentials.configMapNames must not list \"sh.helm.release.v1.x.v1\": it is Helm's release storage",
        ),
        // The connector: its secrets are its own, given one way, asked for with it on.
        ("ingress.connector.enabled=true", "ingress.connector.enabled is true but connector.enabled is false"),
        (
            "connector.unassignSecret.enabled=true",
            "connector.unassignSecret.enabled is true but connector.enabled is false",
        ),
        (
            "connector.enabled=true,connector.secret.existingSecret=x-deprovisioner-webhook",
            "connector.secret must not be the webhook's secret",
        ),
        (
            "connector.enabled=true,webhook.secret.existingSecret=mine,connector.unassignSecret.enabled=true,connector.unassignSecret.existingSecret=mine",
            "connector.unassignSecret must not be the webhook's secret",
        ),
        (
            "connector.enabled=true,connector.unassignSecret.enabled=true,connector.secret.existingSecret=c,connector.unassignSecret.existingSecret=c",
            "connector.unassignSecret must not be connector.secret",
        ),
        (
            "connector.enabled=true,connector.secret.value=0123456789abcdefgh,webhook.secret.value=0123456789abcdefgh",
            "connector.secret.value must not be the webhook's secret",
        ),
        ("connector.secret.value=short", "connector.secret.value: line 1 must be at least 16 printable characters"),
        (
            "connector.unassignSecret.value=0123456789abcdefgh,connector.unassignSecret.existingSecret=c",
            "connector.unassignSecret: set either value or existingSecret, not both",
        ),
        ("connector.unassign=true", "at '/connector': additional properties 'unassign' not allowed"),
        (
            "connector.enabled=true,rbac.credentials.secretNames={x-deprovisioner-connector}",
            "rbac.credentials.secretNames must not list \"x-deprovisioner-connector\": it is a connector Secret",
        ),
        // Refused even with the switch off: the list itself is wrong.
        (
            "rbac.credentials.enabled=false,rbac.credentials.secretNames={x-deprovisioner-webhook}",
            "it is the webhook Secret",
        ),
    ];
    for (set, want) in cases {
        let out = helm(None, &["template", "x", CHART, "--kube-version", KUBE_VERSION, "--set", set]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(stderr.contains(want), "--set {set}: {stderr}");
    }
    // A bad secret is never echoed back.
    let out = helm(
        None,
        &["template", "x", CHART, "--kube-version", KUBE_VERSION, "--set", "webhook.secret.value=has a space in it!"],
    );
    assert!(!out.status.success());
    assert!(!text(&out.stderr).contains("has a space"));
    // The ServiceMonitor, when asked for, scrapes the Service's metrics port.
    let sm = helm_ok(
        None,
        &[
            "template",
            "x",
            CHART,
            "--kube-version",
            KUBE_VERSION,
            "--set",
            "webhook.secret.existingSecret=mine",
            "--set",
            "metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.labels.release=prom",
            "--show-only",
            "templates/servicemonitor.yaml",
        ],
    );
    let sm: Value = serde_yaml::from_str(sm.trim_start_matches("---\n").split("\n---").next().unwrap()).unwrap();
    assert_eq!(sm["kind"], "ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
}

/// The chart's kubeVersion admits exactly the Kubernetes versions tested: the oldest
/// `scripts/control-plane` builds (`DEPROVISIONER_K8S=oldest`, `make test-oldest`) and its minor's
/// first release, not the minor before it (no CRD selectableFields).
#[test]
fn chart_kube_version_starts_at_the_oldest_tested() {
    let script = std::fs::read_to_string(repo().join("scripts/control-plane")).unwrap();
    let oldest = script.lines().find_map(|l| l.strip_prefix("OLDEST_K8S_VERSION=v")).expect("OLDEST_K8S_VERSION");
    let minor: u32 = oldest.split('.').nth(1).and_then(|m| m.parse().ok()).expect("a 1.N.P version");
    let cases = [(oldest.to_string(), true), (format!("1.{minor}.0"), true), (format!("1.{}.99", minor - 1), false)];
    for (version, ok) in cases {
        let out = helm(
            None,
            &["template", "x", CHART, "--kube-version", &version, "--set", "webhook.secret.existingSecret=mine"],
        );
        assert_eq!(out.status.success(), ok, "--kube-version {version}: {}", text(&out.stderr));
        assert!(ok || text(&out.stderr).contains("incompatible with Kubernetes"), "{}", text(&out.stderr));
    }
}

/// The connector's secrets are Secrets of their own, generated (distinct from each other and
/// from the webhook's) or yours, mounted and passed to the operator only when the connector is
/// enabled; the unassign secret only when asked for.
#[test]
fn connector_secrets_are_mounted_only_when_the_connector_is_enabled() {
    let render = |set: &str| {
        let mut extra = vec!["--skip-tests"];
        if !set.is_empty() {
            extra.extend(["--set", set]);
        }
        docs(&template("x", "ops", &extra))
    };
    let container = |objs: &[Value]| find(objs, "Deployment")["spec"]["template"]["spec"].clone();
    let args = |spec: &Value| -> Vec<String> {
        spec["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
    };
    let connector_args =
        |spec: &Value| -> Vec<String> { args(spec).into_iter().filter(|a| a.starts_with("--connector-")).collect() };
    let volumes = |spec: &Value| -> Vec<(String, String)> {
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().into(), v["secret"]["secretName"].as_str().unwrap().into()))
            .collect()
    };
    let mounts = |spec: &Value| -> Vec<String> {
        spec["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap().into())
            .collect()
    };
    let secrets = |objs: &[Value]| -> Vec<(String, String)> {
        objs.iter()
            .filter(|o| o["kind"] == "Secret")
            .map(|o| (o["metadata"]["name"].as_str().unwrap().into(), o["data"]["secret"].as_str().unwrap().into()))
            .collect()
    };

    // Off (the default): nothing of the connector.
    let off = render("");
    let spec = container(&off);
    assert!(connector_args(&spec).is_empty(), "{:?}", args(&spec));
    assert_eq!(volumes(&spec), [("webhook-secret".to_string(), "x-deprovisioner-webhook".to_string())]);
    assert_eq!(mounts(&spec), ["/var/run/secrets/deprovisioner/webhook"]);
    assert_eq!(secrets(&off).len(), 1, "the webhook's only");

    // On: the read secret, generated.
    let on = render("connector.enabled=true");
    let spec = container(&on);
    assert_eq!(connector_args(&spec), ["--connector-secret-file=/var/run/secrets/deprovisioner/connector/secret"]);
    assert_eq!(volumes(&spec)[1], ("connector-secret".to_string(), "x-deprovisioner-connector".to_string()));
    assert_eq!(mounts(&spec)[1], "/var/run/secrets/deprovisioner/connector");
    assert_eq!(secrets(&on).len(), 2);

    // With the unassign secret: both, three distinct generated secrets.
    let both = render("connector.enabled=true,connector.unassignSecret.enabled=true");
    let spec = container(&both);
    assert_eq!(
        connector_args(&spec),
        [
            "--connector-secret-file=/var/run/secrets/deprovisioner/connector/secret",
            "--connector-unassign-secret-file=/var/run/secrets/deprovisioner/connector-unassign/secret",
        ]
    );
    assert_eq!(
        volumes(&spec)[2],
        ("connector-unassign-secret".to_string(), "x-deprovisioner-connector-unassign".to_string())
    );
    let generated = secrets(&both);
    let names: BTreeSet<&str> = generated.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["x-deprovisioner-connector", "x-deprovisioner-connector-unassign", "x-deprovisioner-webhook"].into()
    );
    let values: BTreeSet<&str> = generated.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values.len(), 3, "each secret is its own");

    // Your own Secrets: none rendered, yours mounted under the key you name.
    let yours = render(
        "connector.enabled=true,connector.unassignSecret.enabled=true,connector.secret.existingSecret=lumos-read,connector.unassignSecret.existingSecret=lumos-rw,connector.unassignSecret.key=token",
    );
    let spec = container(&yours);
    assert_eq!(secrets(&yours).len(), 1, "the webhook's only");
    assert_eq!(volumes(&spec)[1].1, "lumos-read");
    assert_eq!(volumes(&spec)[2].1, "lumos-rw");
    assert!(
        connector_args(&spec).contains(
            &"--connector-unassign-secret-file=/var/run/secrets/deprovisioner/connector-unassign/token".into()
        )
    );
}

#[test]
fn shipped_manifests_grant_least_privilege_and_run_restricted() {
    // That deploy/ is the rendered chart, and the chart's CRDs are crds/, is `make check`'s
    // drift check (`make generate`, then `git diff`); this test checks what they contain.
    // deploy/rbac.yaml (what the other suites run the operator with) holds the very objects of
    // the full chart, with names the suites rely on.
    let rbac = docs(&std::fs::read_to_string(repo().join("deploy/rbac.yaml")).unwrap());
    let full = docs(&template("deprovisioner", "deprovisioner", &[]));
    let ids = |objs: &[Value]| -> Vec<String> {
        objs.iter()
            .map(|o| {
                format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap_or("-"),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        ids(&rbac),
        [
            "ServiceAccount/deprovisioner/deprovisioner",
            "ServiceAccount/deprovisioner/deprovisioner-lumos-agent",
            "ClusterRole/-/deprovisioner",
            "ClusterRole/-/deprovisioner-index-barrier",
            "ClusterRole/-/deprovisioner-lumos-agent",
            "ClusterRoleBinding/-/deprovisioner",
            "ClusterRoleBinding/-/deprovisioner-index-barrier",
            "ClusterRoleBinding/-/deprovisioner-lumos-agent",
            "Role/default/deprovisioner-events",
            "Role/deprovisioner/deprovisioner-leader-election",
            "RoleBinding/default/deprovisioner-events",
            "RoleBinding/deprovisioner/deprovisioner-leader-election",
            "RoleBinding/deprovisioner/deprovisioner-index-barrier",
            "ValidatingAdmissionPolicy/-/deprovisioner-lumos-source",
            "ValidatingAdmissionPolicy/-/deprovisioner-only-removes",
            "ValidatingAdmissionPolicy/-/deprovisioner-clocks",
            "ValidatingAdmissionPolicyBinding/-/deprovisioner-lumos-source",
            "ValidatingAdmissionPolicyBinding/-/deprovisioner-only-removes",
            "ValidatingAdmissionPolicyBinding/-/deprovisioner-clocks",
        ]
    );
    // Every identity the chart creates, now or later, is held to taking access away: each
    // ServiceAccount it renders (with every optional part on or off) is matched by the policy.
    for sets in [
        &[][..],
        &["--set", "lumosAgent.enabled=false"][..],
        &["--set", "serviceAccount.name=ops", "--set", "lumosAgent.serviceAccount.name=agent"][..],
    ] {
        let objs = docs(&template("deprovisioner", "deprovisioner", sets));
        let only_removes = objs
            .iter()
            .find(|o| o["kind"] == "ValidatingAdmissionPolicy" && o["metadata"]["name"] == "deprovisioner-only-removes")
            .unwrap();
        let matched = only_removes["spec"]["matchConditions"][0]["expression"].as_str().unwrap();
        let accounts: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "ServiceAccount").collect();
        assert!(!accounts.is_empty());
        for sa in accounts {
            let who = format!(
                "\"system:serviceaccount:{}:{}\"",
                sa["metadata"]["namespace"].as_str().unwrap(),
                sa["metadata"]["name"].as_str().unwrap()
            );
            assert!(matched.contains(&who), "{sets:?}: {who} is not held by the policy: {matched}");
        }
    }
    for o in &rbac {
        let same =
            full.iter().find(|f| f["kind"] == o["kind"] && f["metadata"]["name"] == o["metadata"]["name"]).unwrap();
        assert_eq!(same, o);
    }
    // Least privilege: no wildcard anywhere, `bind` only on roles, and the lease verbs exactly.
    let cr = rbac.iter().find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "deprovisioner").unwrap();
    for rule in cr["rules"].as_array().unwrap() {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(!rule[field].as_array().unwrap().contains(&json!("*")), "{rule}");
        }
    }
    let role = |name: &str| {
        rbac.iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Role {name}"))["rules"]
            .clone()
    };
    // The Lease (watched by name only).
    assert_eq!(
        role("deprovisioner-leader-election"),
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "watch"], "resourceNames": ["deprovisioner"]}
        ])
    );
    // The binding index's sentinels grant nothing: an empty role, bound to no one.
    let sentinel = "deprovisioner-index-barrier";
    let empty = rbac.iter().find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == sentinel).unwrap();
    assert_eq!(empty["rules"], json!([]));
    for b in
        rbac.iter().filter(|o| o["metadata"]["name"] == sentinel && o["kind"].as_str().unwrap().ends_with("Binding"))
    {
        assert_eq!((&b["roleRef"]["kind"], &b["roleRef"]["name"]), (&json!("ClusterRole"), &json!(sentinel)), "{b}");
        assert!(b.get("subjects").is_none_or(|s| s.is_null()), "{b}");
    }
    // Bindings are patched exactly where they are updated (the same power: a JSON patch of the
    // index's copy, the barrier on the sentinels); the only other patch is the re-grant label on
    // the operator's own requests.
    let patching: Vec<&Value> = cr["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verbs"].as_array().unwrap().contains(&json!("patch")))
        .collect();
    assert_eq!(patching.len(), 2, "{patching:?}");
    for rule in patching {
        if rule["apiGroups"] == json!(["access.deprovisioner.dev"]) {
            assert_eq!(rule["resources"], json!(["deprovisionrequests"]), "{rule}");
        } else {
            assert_eq!(
                rule,
                &json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "clusterrolebindings"],
                        "verbs": ["get", "list", "watch", "update", "patch", "delete"]})
            );
        }
    }
    // Events only where the operator writes them: its requests are cluster-scoped, so their
    // Events go to `default` (kube-runtime's Recorder creates them, and patches a repeat).
    assert_eq!(
        role("deprovisioner-events"),
        json!([{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}])
    );
    // No Secret or ConfigMap by default, anywhere, and no Event outside that Role.
    for o in &rbac {
        let events_role = o["kind"] == "Role" && o["metadata"]["name"] == "deprovisioner-events";
        for rule in o["rules"].as_array().into_iter().flatten() {
            for resource in ["secrets", "configmaps", "events"] {
                assert!(
                    !rule["resources"].as_array().unwrap().contains(&json!(resource)) || events_role,
                    "{} grants {resource}: {rule}",
                    o["metadata"]["name"]
                );
            }
        }
    }
    // Each binding but the sentinels names the object of its own name and one ServiceAccount:
    // Lumos's agent's binding the agent, every other one the operator.
    let binds = |o: &&Value| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding";
    for b in rbac.iter().filter(binds).filter(|o| o["metadata"]["name"] != sentinel) {
        assert_eq!(b["roleRef"]["name"], b["metadata"]["name"], "{b}");
        let sa = match b["metadata"]["name"].as_str() {
            Some("deprovisioner-lumos-agent") => "deprovisioner-lumos-agent",
            _ => "deprovisioner",
        };
        assert_eq!(b["subjects"], json!([{"kind": "ServiceAccount", "name": sa, "namespace": "deprovisioner"}]), "{b}");
    }
    // Listed credentials: `get` on exactly those names, in the release namespace only; the
    // master switch off grants nothing even with names listed.
    let names = "rbac.credentials.secretNames={acme-scim,internal-tool},rbac.credentials.configMapNames={acme-ca}";
    let listed = docs(&template("deprovisioner", "deprovisioner", &["--set", names]));
    let cred = listed
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "deprovisioner-credentials")
        .expect("a credentials Role");
    assert_eq!(cred["metadata"]["namespace"], "deprovisioner");
    assert_eq!(
        cred["rules"],
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["acme-scim", "internal-tool"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["acme-ca"]}
        ])
    );
    let cred_binding = listed
        .iter()
        .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == "deprovisioner-credentials")
        .expect("a credentials RoleBinding");
    assert_eq!(cred_binding["metadata"]["namespace"], "deprovisioner");
    assert_eq!(
        cred_binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deprovisioner-credentials"})
    );
    let only_secrets =
        docs(&template("deprovisioner", "deprovisioner", &["--set", "rbac.credentials.secretNames={acme-scim}"]));
    let cred = only_secrets.iter().find(|o| o["metadata"]["name"] == "deprovisioner-credentials").unwrap();
    assert_eq!(
        cred["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["acme-scim"]}])
    );
    let switched_off = docs(&template(
        "deprovisioner",
        "deprovisioner",
        &["--set", &format!("{names},rbac.credentials.enabled=false")],
    ));
    assert!(!switched_off.iter().any(|o| o["metadata"]["name"] == "deprovisioner-credentials"));

    // The Deployment: probes, limits, restricted security context, the secret as a file, the
    // downward API, the ServiceAccount to protect.
    let dep = find(&full, "Deployment");
    assert_eq!(dep["spec"]["replicas"], 2);
    let pod = &dep["spec"]["template"]["spec"];
    let ctr = &pod["containers"][0];
    assert_eq!(ctr["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(ctr["readinessProbe"]["httpGet"]["path"], "/readyz");
    for k in ["requests", "limits"] {
        assert!(ctr["resources"][k]["cpu"].is_string() && ctr["resources"][k]["memory"].is_string());
    }
    let sc = &ctr["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    let args: Vec<&str> = ctr["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let secret_arg = args.iter().find_map(|a| a.strip_prefix("--secret-file=")).expect("--secret-file");
    let mount = ctr["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert_eq!(secret_arg, format!("{mount}/secret"));
    let env = |name: &str| {
        ctr["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("env {name}"))
            .clone()
    };
    assert_eq!(env("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    assert_eq!(env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    assert_eq!(env("DEPROVISIONER_SERVICE_ACCOUNT")["value"], "deprovisioner/deprovisioner");
    assert_eq!(pod["serviceAccountName"], "deprovisioner");
    // The plain manifests carry no generated secret and no test pod.
    let plain = docs(&std::fs::read_to_string(repo().join("deploy/deprovisioner.yaml")).unwrap());
    assert!(!kinds(&plain).contains("Secret") && !kinds(&plain).contains("Pod"));
}

#[test]
fn rendered_chart_and_examples_pass_the_api_server() {
    let c = cluster();
    restricted_namespace(c, "chart-dry");
    // Every optional object on, the helm test pod included.
    let all = template(
        "dry",
        "chart-dry",
        &[
            "--set",
            "ingress.enabled=true,ingress.connector.enabled=true,connector.enabled=true,connector.unassignSecret.enabled=true,ingress.className=nginx,ingress.host=deprovisioner.example.com,ingress.tls.secretName=deprovisioner-tls,networkPolicy.enabled=true,rbac.bindRoles.clusterRoles={edit,view},rbac.bindRoles.roles={deployer}",
        ],
    );
    let objs = docs(&all);
    // The Ingress routes the webhook path exactly and the connector's capabilities by prefix.
    let paths: Vec<(String, String)> = find(&objs, "Ingress")["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .expect("ingress paths")
        .iter()
        .map(|p| (p["path"].as_str().unwrap_or_default().into(), p["pathType"].as_str().unwrap_or_default().into()))
        .collect();
    assert_eq!(
        paths,
        [
            ("/webhooks/lumos/deprovision".to_string(), "Exact".to_string()),
            ("/connectors/kubernetes/".to_string(), "Prefix".to_string())
        ]
    );
    assert_eq!(
        kinds(&objs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Ingress",
            "Lease",
            "NetworkPolicy",
            "Pod",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    let test_pod = find(&objs, "Pod");
    assert_eq!(test_pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    // The test pod must not be picked up by the operator's Service.
    let svc = find(&objs, "Service");
    let selected =
        svc["spec"]["selector"].as_object().unwrap().iter().all(|(k, v)| test_pod["metadata"]["labels"][k] == *v);
    assert!(!selected, "the Service selects the helm test pod");
    let f = write(c, "chart-all.yaml", &all);
    let out = dry_run(c, &f);
    assert_eq!(out.matches("created (server dry run)").count(), objs.len(), "{out}");
    assert!(out.contains("pod/dry-deprovisioner-test-healthz created"), "{out}");

    // The plain manifests, into the namespace they name (made restricted too).
    let label = c.kubectl(&[
        "label",
        "--overwrite",
        "namespace",
        "deprovisioner",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ]);
    assert!(label.status.success(), "{}", text(&label.stderr));
    let out = dry_run(c, &repo().join("deploy/deprovisioner.yaml"));
    assert!(out.contains("deployment.apps/deprovisioner"), "{out}");

    // Restricted really is enforced here: a root pod is refused.
    let root = write(
        c,
        "root-pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: root, namespace: chart-dry}\nspec:\n  containers: [{name: c, image: busybox}]\n",
    );
    let out = c.kubectl(&["apply", "--dry-run=server", "-f", root.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out.stderr).contains("violates PodSecurity"), "{}", text(&out.stderr));

    // The example policies are valid DeprovisionPolicies.
    let examples: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(examples.len() >= 3, "{examples:?}");
    for ex in &examples {
        let out = dry_run(c, ex);
        assert!(out.contains("deprovisionpolicy.access.deprovisioner.dev/"), "{}: {out}", ex.display());
    }
    // ...and the validation they pass is real: the same kind of object, broken, is refused.
    let broken = write(
        c,
        "broken-policy.yaml",
        "apiVersion: access.deprovisioner.dev/v1alpha1\nkind: DeprovisionPolicy\nmetadata: {name: broken}\nspec:\n  application: {appId: x}\n  subjects: [{kind: User, name: \"{{target_user.email}}\"}]\n  rules: [{namespaceAccess: {}}]\n",
    );
    let out = c.kubectl(&["apply", "--dry-run=server", "-f", broken.to_str().unwrap()]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("namespaceAccess needs namespaces or fromPermissionValue"),
        "{}",
        text(&out.stderr)
    );
}

/// A kubeconfig acting as a ServiceAccount (the admin certificate impersonating it, exactly as
/// scripts/control-plane writes operator.kubeconfig).
fn kubeconfig_for_sa(c: &Cluster, ns: &str, sa: &str) -> PathBuf {
    let admin = std::fs::read_to_string(&c.kubeconfig).unwrap();
    assert!(admin.contains("\n  user:\n"), "{admin}");
    let text = admin.replacen(
        "\n  user:\n",
        &format!(
            "\n  user:\n    as: system:serviceaccount:{ns}:{sa}\n    as-groups: [system:serviceaccounts, system:serviceaccounts:{ns}, system:authenticated]\n"
        ),
        1,
    );
    let path = c.dir.join(format!("chart-{ns}-{sa}.kubeconfig"));
    std::fs::write(&path, text).unwrap();
    path
}

fn cluster_role(c: &Cluster, name: &str, resource: &str) {
    let yaml = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\nrules:\n- apiGroups: [\"\"]\n  resources: [{resource}]\n  verbs: [get]\n"
    );
    let f = write(c, &format!("{name}.yaml"), &yaml);
    kubectl_ok(c, &["apply", "-f", f.to_str().unwrap()]);
}

/// `kind/namespace/name` of every object in a manifest, for `kubectl get`.
fn refs(objs: &[Value]) -> Vec<(String, Option<String>, String)> {
    objs.iter()
        .map(|o| {
            let api = o["apiVersion"].as_str().unwrap();
            let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            let kind = o["kind"].as_str().unwrap().to_lowercase();
            let resource = if group.is_empty() { kind } else { format!("{kind}.{group}") };
            (
                resource,
                o["metadata"]["namespace"].as_str().map(String::from),
                o["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn get(c: &Cluster, (resource, ns, name): &(String, Option<String>, String)) -> Output {
    let mut args = vec!["get", resource.as_str(), name.as_str(), "-o", "json"];
    if let Some(ns) = ns {
        args.extend(["-n", ns.as_str()]);
    }
    c.kubectl(&args)
}

/// The operator binary run exactly with the chart Deployment's container args and env (only
/// the listen address and the secret file's path made local), until dropped.
struct ChartProcess {
    child: std::process::Child,
    pid_file: PathBuf,
}

impl Drop for ChartProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Starts the binary as the Deployment would; returns the process, the webhook URL and the
/// metrics URL (both moved to free loopback ports).
fn start_like_the_deployment(c: &Cluster, deployment: &Value, kubeconfig: &Path) -> (ChartProcess, String, String) {
    let ctr = &deployment["spec"]["template"]["spec"]["containers"][0];
    let ns = deployment["metadata"]["namespace"].as_str().unwrap();
    let port = free_port();
    let metrics_port = free_port();
    let secret = c.dir.join("chart-process.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let args: Vec<String> = ctr["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            if a.starts_with("--secret-file=") {
                format!("--secret-file={}", secret.display())
            } else if a.starts_with("--listen=") {
                format!("--listen=127.0.0.1:{port}")
            } else if a.starts_with("--metrics-listen=") {
                format!("--metrics-listen=127.0.0.1:{metrics_port}")
            } else {
                a.to_string()
            }
        })
        .collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deprovisioner"));
    cmd.args(&args).env_clear().env("KUBECONFIG", kubeconfig);
    for e in ctr["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let value = match (&e["value"], e["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
            (Value::String(v), _) => v.clone(),
            (_, Some("metadata.namespace")) => ns.to_string(),
            (_, Some("metadata.name")) => "deprovisioner-0".to_string(),
            other => panic!("env {name}: unexpected source {other:?}"),
        };
        cmd.env(name, value);
    }
    let log = c.dir.join("chart-process.log");
    let child = cmd
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let pid_file = c.dir.join("chart-process.pid");
    std::fs::write(&pid_file, child.id().to_string()).unwrap();
    (
        ChartProcess { child, pid_file },
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{metrics_port}/metrics"),
    )
}

async fn wait_http_ok(url: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http_client().get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not OK within 30s; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn install_deprovision_upgrade_narrow_bind_and_uninstall() {
    let c = own_cluster();
    let release = Release { c, admin: c.admin().await, name: "deprovisioner", ns: "deprovisioner" };

    // Only the chart grants anything: remove what the harness applied from deploy/rbac.yaml.
    kubectl_ok(c, &["delete", "-f", repo().join("deploy/rbac.yaml").to_str().unwrap()]);
    // Roles with real rules (the built-in edit/view are empty here: nothing aggregates them).
    cluster_role(c, "chart-guarded", "secrets");
    cluster_role(c, "chart-bindable", "configmaps");

    let installed = install_with_every_optional_object(&release);
    the_chart_service_account_may_do_exactly_what_it_needs(&release);
    let op = deprovision_as_the_chart_service_account(&release, &installed).await;
    upgrade_narrowing_bind(&release, &installed, op).await;
    run_with_the_deployments_args_and_env(&release, &installed).await;
    uninstall_leaves_no_orphans(&release, &installed);
}

/// The Helm release the stages of the install test work on, on a control plane of its own.
struct Release {
    c: &'static Cluster,
    admin: kube::Client,
    name: &'static str,
    ns: &'static str,
}

impl Release {
    fn kubeconfig(&self) -> &Path {
        &self.c.kubeconfig
    }
}

/// What the install created, for the later stages.
struct Installed {
    /// Every object of the release's manifest.
    objects: Vec<(String, Option<String>, String)>,
    deployment: Value,
    /// The webhook secret the chart generated.
    secret: String,
    /// A kubeconfig acting as the chart's ServiceAccount.
    sa_kubeconfig: PathBuf,
    sa: String,
}

/// The operator run as the chart's ServiceAccount, and the Lease it holds.
struct ChartOperator {
    op: Operator,
    lease: Value,
}

/// The webhook secret the chart generated.
fn webhook_secret(r: &Release) -> String {
    let s = kubectl_json(r.c, &["-n", r.ns, "get", "secret", "deprovisioner-webhook"]);
    s["data"]["secret"].as_str().unwrap().to_string()
}

/// `helm install` with every optional object on: every object the manifest names exists, the
/// NOTES say how to call it, and the generated webhook secret is a strong one.
fn install_with_every_optional_object(r: &Release) -> Installed {
    let (c, kc, release, ns) = (r.c, r.kubeconfig(), r.name, r.ns);
    helm_ok(
        Some(kc),
        &[
            "install",
            release,
            CHART,
            "--namespace",
            ns,
            "--set",
            "ingress.enabled=true,ingress.className=nginx,ingress.host=deprovisioner.example.com,ingress.tls.secretName=deprovisioner-tls,networkPolicy.enabled=true",
        ],
    );
    let manifest = docs(&helm_ok(Some(kc), &["get", "manifest", release, "--namespace", ns]));
    let want: BTreeSet<String> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Ingress",
        "Lease",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(kinds(&manifest), want);
    let objects = refs(&manifest);
    for o in &objects {
        let out = get(c, o);
        assert!(out.status.success(), "{o:?} missing: {}", text(&out.stderr));
    }
    let notes = helm_ok(Some(kc), &["get", "notes", release, "--namespace", ns]);
    for want in [
        "https://deprovisioner.example.com/webhooks/lumos/deprovision",
        "kubectl -n deprovisioner get secret deprovisioner-webhook -o jsonpath='{.data.secret}' | base64 -d",
        "Header name:   Authorization",
        "Header value:  Bearer <the secret from step 2>",
        "kubectl get dpr",
        // `bind` is left unrestricted: the notes warn, and say how to narrow it.
        "WARNING: rbac.bindRoles is empty, so the operator may `bind` any Role and ClusterRole",
        "--set 'rbac.bindRoles.clusterRoles={edit,view}'",
        "needs the\n`bind` verb on ClusterRole/<name>",
        // And no credential is readable.
        "the operator may not read Secret deprovisioner/<name>",
    ] {
        assert!(notes.contains(want), "NOTES lack {want:?}:\n{notes}");
    }
    let generated = webhook_secret(r);
    let decoded = text(
        &kubectl_ok(
            c,
            &["-n", ns, "get", "secret", "deprovisioner-webhook", "-o", "go-template={{.data.secret | base64decode}}"],
        )
        .stdout,
    );
    assert!(
        decoded.len() == 48 && decoded.chars().all(|ch| ch.is_ascii_alphanumeric()),
        "generated secret has {} characters",
        decoded.len()
    );
    let deployment = find(&manifest, "Deployment").clone();
    let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap().to_string();
    // The harness passes --service-account deprovisioner/deprovisioner and its namespace as
    // the Lease namespace; the chart (release "deprovisioner") must agree.
    assert_eq!((ns, sa.as_str()), ("deprovisioner", "deprovisioner"));
    let sa_kubeconfig = kubeconfig_for_sa(c, ns, &sa);
    Installed { objects, deployment, secret: generated, sa_kubeconfig, sa }
}

/// What the chart's ServiceAccount may do, asked of the API server's own authorizer.
fn the_chart_service_account_may_do_exactly_what_it_needs(r: &Release) {
    let ns = r.ns;
    can_i(
        r.c,
        &[
            ("create", "deprovisionrequests.access.deprovisioner.dev", None, true),
            ("update", "deprovisionrequests.access.deprovisioner.dev --subresource=status", None, true),
            ("update", "deprovisionrequests.access.deprovisioner.dev", None, false),
            ("watch", "deprovisionpolicies.access.deprovisioner.dev", None, true),
            ("create", "deprovisionpolicies.access.deprovisioner.dev", None, false),
            ("update", "rolebindings.rbac.authorization.k8s.io", Some("any-ns"), true),
            ("create", "rolebindings.rbac.authorization.k8s.io", Some("any-ns"), false),
            ("delete", "clusterrolebindings.rbac.authorization.k8s.io", None, true),
            // The binding index: watches every binding; bindings are patched where they are
            // updated (the index's copy, and the barrier on its own sentinels).
            ("watch", "rolebindings.rbac.authorization.k8s.io", None, true),
            ("watch", "clusterrolebindings.rbac.authorization.k8s.io", None, true),
            ("patch", "rolebindings.rbac.authorization.k8s.io/deprovisioner-index-barrier", Some(ns), true),
            ("patch", "rolebindings.rbac.authorization.k8s.io", Some("any-ns"), true),
            ("patch", "clusterrolebindings.rbac.authorization.k8s.io", None, true),
            ("patch", "roles.rbac.authorization.k8s.io", Some("any-ns"), false),
            ("patch", "clusterroles.rbac.authorization.k8s.io", None, false),
            ("bind", "clusterroles.rbac.authorization.k8s.io", None, true),
            ("escalate", "clusterroles.rbac.authorization.k8s.io", None, false),
            ("list", "namespaces", None, true),
            // No Secret and no ConfigMap by default (rbac.credentials lists none): not the
            // webhook Secret, not Helm's release Secret, not one a policy might name.
            ("get", "secrets", Some(ns), false),
            ("get", "secrets/deprovisioner-webhook", Some(ns), false),
            ("get", "secrets/sh.helm.release.v1.deprovisioner.v1", Some(ns), false),
            ("get", "secrets/acme-scim", Some(ns), false),
            ("list", "secrets", Some(ns), false),
            ("get", "secrets", Some("any-ns"), false),
            ("get", "configmaps", Some(ns), false),
            ("patch", "leases.coordination.k8s.io", Some(ns), true),
            ("update", "leases.coordination.k8s.io", Some(ns), false),
            ("patch", "leases.coordination.k8s.io", Some("any-ns"), false),
            // Events only where the operator writes them: `default`, for its cluster-scoped
            // requests (create, and patch for a repeated Event).
            ("create", "events.events.k8s.io", Some("default"), true),
            ("patch", "events.events.k8s.io", Some("default"), true),
            ("delete", "events.events.k8s.io", Some("default"), false),
            ("create", "events.events.k8s.io", Some(ns), false),
            ("create", "events.events.k8s.io", Some("any-ns"), false),
            ("create", "events", Some("default"), false),
            ("get", "pods", Some(ns), false),
        ],
    );
}

/// Asks the API server's authorizer, row by row, whether the chart's ServiceAccount may do
/// `verb` on `resource` (written as for `kubectl auth can-i`: TYPE, TYPE/NAME, and flags) in a
/// namespace (`None`: in every namespace).
fn can_i(c: &Cluster, rows: &[(&str, &str, Option<&str>, bool)]) {
    let who = "system:serviceaccount:deprovisioner:deprovisioner";
    for &(verb, resource, namespace, allowed) in rows {
        let mut args = vec!["auth", "can-i", verb];
        args.extend(resource.split_whitespace());
        args.extend(["--as", who]);
        match namespace {
            Some(n) => args.extend(["-n", n]),
            None => args.push("--all-namespaces"),
        }
        let out = c.kubectl(&args);
        let answer = text(&out.stdout).trim().to_string();
        assert_eq!(answer, if allowed { "yes" } else { "no" }, "can-i {verb} {resource} in {namespace:?}");
    }
}

/// The operator, with the identity of the chart's ServiceAccount and nothing but the chart's
/// RBAC, removes a user from a RoleBinding and a ClusterRoleBinding and deletes the binding left
/// empty, holding the chart's Lease. Returns the operator (still running) and that Lease.
async fn deprovision_as_the_chart_service_account(r: &Release, installed: &Installed) -> ChartOperator {
    let (c, admin, ns) = (r.c, &r.admin, r.ns);
    let op = Operator::start(OperatorOpts { kubeconfig: installed.sa_kubeconfig.clone(), ..OperatorOpts::on(c) });

    let team = unique("chart-team");
    namespace(admin, &team, &[]).await;
    role_binding(admin, &team, "pair", "chart-guarded", vec![user("kraven@lumos.com"), user("stays@lumos.com")]).await;
    role_binding(admin, &team, "solo", "chart-bindable", vec![user("kraven@lumos.com")]).await;
    let crb = unique("chart-crb");
    cluster_role_binding(admin, &crb, "chart-guarded", &[], vec![user("kraven@lumos.com"), group("auditors")]).await;
    let app = unique("chart-app");
    policy(
        admin,
        &unique("chart-policy"),
        json!({
            "application": {"appId": app},
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaces": [team]}, "clusterRoleBindings": {"names": [crb]}}]
        }),
    )
    .await;
    let (status, answer, _) = op.lumos(&payload(&app, "kraven@lumos.com", &[])).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let record = wait_terminal(admin, &request_name(&answer), Duration::from_secs(30)).await;
    assert_eq!(phase(&record), Phase::Succeeded);
    assert_eq!(names(&get_rb(admin, &team, "pair").await.unwrap().subjects), ["User:stays@lumos.com"]);
    assert!(get_rb(admin, &team, "solo").await.is_none());
    assert_eq!(names(&get_crb(admin, &crb).await.unwrap().subjects), ["Group:auditors"]);
    // The controller ran while holding the chart's Lease (it existed: no `create` needed).
    let lease = kubectl_json(c, &["-n", ns, "get", "lease", "deprovisioner"]);
    assert!(
        lease["spec"]["holderIdentity"].is_string() && lease["spec"]["acquireTime"].is_string(),
        "lease not held: {lease}"
    );
    ChartOperator { op, lease }
}

/// `helm upgrade` narrowing `bind` to one ClusterRole: the generated secret and the operator's
/// hold on the Lease stay; a removal from a binding of another role now fails, the record naming
/// the missing permission, while the bindable role still works. Stops the operator.
async fn upgrade_narrowing_bind(r: &Release, installed: &Installed, running: ChartOperator) {
    let (c, admin, kc, release, ns) = (r.c, &r.admin, r.kubeconfig(), r.name, r.ns);
    let ChartOperator { mut op, lease } = running;
    helm_ok(
        Some(kc),
        &[
            "upgrade",
            release,
            CHART,
            "--namespace",
            ns,
            "--reuse-values",
            "--set",
            "rbac.bindRoles.clusterRoles={chart-bindable}",
            "--set",
            "rbac.credentials.secretNames={acme-scim},rbac.credentials.configMapNames={acme-ca}",
        ],
    );
    let status = helm_ok(Some(kc), &["status", release, "--namespace", ns]);
    assert!(status.contains("REVISION: 2") && status.contains("STATUS: deployed"), "{status}");
    // ClusterRoles narrowed and credentials listed: the notes no longer warn, only note that any
    // (namespaced) Role may still be bound.
    let notes = helm_ok(Some(kc), &["get", "notes", release, "--namespace", ns]);
    assert!(!notes.contains("WARNING") && !notes.contains("may not read"), "{notes}");
    assert!(
        notes.contains("rbac.bindRoles.roles is empty, so the operator may still `bind` any (namespaced) Role"),
        "{notes}"
    );
    // Exactly the listed credentials are readable now, still never the webhook Secret.
    can_i(
        c,
        &[
            ("get", "secrets/acme-scim", Some(ns), true),
            ("get", "configmaps/acme-ca", Some(ns), true),
            ("get", "secrets/deprovisioner-webhook", Some(ns), false),
            ("get", "secrets/other", Some(ns), false),
            ("get", "secrets", Some(ns), false),
            ("list", "secrets", Some(ns), false),
            ("get", "secrets/acme-scim", Some("any-ns"), false),
            ("get", "configmaps/other", Some(ns), false),
        ],
    );
    assert_eq!(webhook_secret(r), installed.secret, "the upgrade changed the webhook secret");
    // The upgrade left the operator's hold on the chart's Lease alone (a cleared spec would
    // make it acquire the Lease again, with a new acquireTime).
    let after = kubectl_json(c, &["-n", ns, "get", "lease", "deprovisioner"]);
    assert_eq!(
        (&after["spec"]["holderIdentity"], &after["spec"]["acquireTime"]),
        (&lease["spec"]["holderIdentity"], &lease["spec"]["acquireTime"]),
        "{after}"
    );
    let cr = kubectl_json(c, &["get", "clusterrole", "deprovisioner"]);
    let bind_rule = cr["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"] == json!(["clusterroles"]))
        .unwrap_or_else(|| panic!("no clusterroles rule: {cr}"));
    assert_eq!(bind_rule["verbs"], json!(["bind"]));
    assert_eq!(bind_rule["resourceNames"], json!(["chart-bindable"]));

    // A policy reaching beyond the grant: editing a binding of chart-guarded now fails, and
    // the record names the missing permission; the bindable role still works.
    let team2 = unique("chart-narrow");
    namespace(admin, &team2, &[]).await;
    for (name, role) in [("guarded-pair", "chart-guarded"), ("bindable-pair", "chart-bindable")] {
        role_binding(admin, &team2, name, role, vec![user("kraven@lumos.com"), user("stays@lumos.com")]).await;
    }
    let app2 = unique("chart-app");
    policy(
        admin,
        &unique("chart-policy"),
        json!({
            "application": {"appId": app2},
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaces": [team2]}}]
        }),
    )
    .await;
    let (_, answer, _) = op.lumos(&payload(&app2, "kraven@lumos.com", &[])).await;
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    let record = wait_terminal(admin, &request_name(&answer), Duration::from_secs(30)).await;
    let results = record.status.unwrap().results;
    let by = |suffix: &str| {
        results.iter().find(|r| r.object.ends_with(suffix)).unwrap_or_else(|| panic!("no result for {suffix}")).clone()
    };
    let failed = by("/guarded-pair");
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(failed.message.contains("needs the `bind` verb on ClusterRole/chart-guarded"), "{}", failed.message);
    assert_eq!(by("/bindable-pair").outcome, Outcome::Removed);
    assert_eq!(get_rb(admin, &team2, "guarded-pair").await.unwrap().subjects.unwrap().len(), 2);
    op.kill();
}

/// The binary started with the chart Deployment's own container args and env: it serves
/// /healthz and /readyz, takes the chart's Lease, protects the chart's ServiceAccount (a policy
/// that would remove it is refused and nothing changes), and its metrics port counts that.
async fn run_with_the_deployments_args_and_env(r: &Release, installed: &Installed) {
    let (c, admin, ns, sa) = (r.c, &r.admin, r.ns, installed.sa.as_str());
    let (chart_proc, url, metrics_url) = start_like_the_deployment(c, &installed.deployment, &installed.sa_kubeconfig);
    let log = c.dir.join("chart-process.log");
    wait_http_ok(&format!("{url}/healthz"), &log).await;
    // /readyz lists DeprovisionRequests with the chart's identity.
    wait_http_ok(&format!("{url}/readyz"), &log).await;
    // Free the Lease the killed operator held, so this process leads without waiting it out.
    let old_holder = kubectl_json(c, &["-n", ns, "get", "lease", "deprovisioner"])["spec"]["holderIdentity"].clone();
    kubectl_ok(
        c,
        &[
            "-n",
            ns,
            "patch",
            "lease",
            "deprovisioner",
            "--type=merge",
            "-p",
            r#"{"spec":{"holderIdentity":null,"acquireTime":null,"renewTime":null}}"#,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let holder = kubectl_json(c, &["-n", ns, "get", "lease", "deprovisioner"])["spec"]["holderIdentity"].clone();
        if holder.is_string() && holder != old_holder {
            break;
        }
        assert!(Instant::now() < deadline, "the chart-configured process did not take the Lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The chart's DEPROVISIONER_SERVICE_ACCOUNT names the chart's ServiceAccount: a policy that
    // would remove it from a binding is refused, and nothing changes.
    let team3 = unique("chart-protected");
    namespace(admin, &team3, &[]).await;
    role_binding(
        admin,
        &team3,
        "operator",
        "chart-bindable",
        vec![service_account_in(ns, sa), user("stays@lumos.com")],
    )
    .await;
    let app3 = unique("chart-app");
    policy(
        admin,
        &unique("chart-policy"),
        json!({
            "application": {"appId": app3},
            "subjects": [{"kind": "ServiceAccount", "namespace": ns, "name": sa}],
            "rules": [{"roleBindings": {"namespaces": [team3]}}]
        }),
    )
    .await;
    let resp = http_client()
        .post(format!("{url}/webhooks/lumos/deprovision"))
        .header("authorization", format!("Bearer {SECRET}"))
        .header("content-type", "application/json")
        .json(&payload(&app3, "kraven@lumos.com", &[]))
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["response"], "FAILURE", "{answer}");
    assert!(
        answer["msg"]
            .as_str()
            .unwrap()
            .contains("ServiceAccount deprovisioner/deprovisioner is the operator's own identity"),
        "{answer}"
    );
    assert_eq!(get_rb(admin, &team3, "operator").await.unwrap().subjects.unwrap().len(), 2);
    // The chart's metrics port serves what happened.
    // Whole lines (`contains("… 1")` would also pass for 10). The controller counts a finished
    // request just after the status write the webhook answers from: allow it a moment.
    let want = [
        r#"deprovisioner_webhook_answers_total{response="FAILURE",code="200"} 1"#,
        r#"deprovisioner_requests_finished_total{phase="Failed"} 1"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = http_client().get(&metrics_url).send().await.unwrap().text().await.unwrap();
        let missing: Vec<&str> = want.into_iter().filter(|w| !metrics.lines().any(|l| l == *w)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no line {missing:?} in:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(chart_proc);
}

/// `helm uninstall`: every chart object goes and nothing else is left in the release namespace;
/// the CRDs stay, and so do the records of the three requests the stages before made.
fn uninstall_leaves_no_orphans(r: &Release, installed: &Installed) {
    let (c, kc, release, ns) = (r.c, r.kubeconfig(), r.name, r.ns);
    helm_ok(Some(kc), &["uninstall", release, "--namespace", ns, "--wait"]);
    for o in &installed.objects {
        let out = get(c, o);
        assert!(!out.status.success() && text(&out.stderr).contains("NotFound"), "{o:?} left behind after uninstall");
    }
    for scope in [
        vec![
            "get",
            "all,serviceaccounts,secrets,roles,rolebindings,leases,ingresses,networkpolicies,poddisruptionbudgets",
            "-A",
        ],
        vec!["get", "clusterroles,clusterrolebindings"],
    ] {
        let mut args = scope.clone();
        args.extend(["-l", "app.kubernetes.io/instance=deprovisioner", "-o", "name"]);
        let out = kubectl_ok(c, &args);
        assert_eq!(text(&out.stdout).trim(), "", "left behind: {:?}", scope);
    }
    // Nothing else is left in the release namespace either (no controller-manager runs here,
    // so not even a default ServiceAccount): the Lease the operator used was the chart's.
    let rest = kubectl_ok(
        c,
        &[
            "get",
            "all,serviceaccounts,secrets,configmaps,roles,rolebindings,leases,ingresses,networkpolicies,poddisruptionbudgets",
            "-n",
            ns,
            "-o",
            "name",
        ],
    );
    assert_eq!(text(&rest.stdout).trim(), "", "left in namespace {ns}");
    for crd in ["deprovisionrequests.access.deprovisioner.dev", "deprovisionpolicies.access.deprovisioner.dev"] {
        kubectl_ok(c, &["get", "crd", crd]);
    }
    let records = kubectl_json(c, &["get", "dpr"]);
    assert_eq!(records["items"].as_array().unwrap().len(), 3);
}

/// The operator's arguments in a rendering.
fn deployment_args(objs: &[Value]) -> Vec<String> {
    let ctr = &find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    ctr["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

/// The ClusterRole's rules on AccessClocks.
fn clock_rules(objs: &[Value]) -> Vec<Value> {
    let role = objs.iter().find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "x-deprovisioner").unwrap();
    let rules = role["rules"].as_array().unwrap().iter();
    rules.filter(|r| r["resources"].as_array().unwrap().iter().any(|x| x == "accessclocks")).cloned().collect()
}

#[test]
fn expiry_is_on_by_default_with_rbac_on_exactly_the_operators_clock_objects_and_off_with_none() {
    // On (the binary's default): the operator is told where the clocks are, and may `get` and
    // `update` exactly the objects it keeps them in: as many as CLOCK_SHARDS, named as it names them.
    let objs = docs(&template("x", "ops", &[]));
    let args = deployment_args(&objs);
    assert!(args.contains(&"--expiry-clocks=x-deprovisioner-clocks".to_string()), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--expiry=")), "{args:?}");
    let rules = clock_rules(&objs);
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(rules[0]["verbs"], json!(["create"]));
    assert!(rules[0].get("resourceNames").is_none());
    assert_eq!(rules[1]["verbs"], json!(["get", "update"]));
    let shards = deprovisioner::expiry::CLOCK_SHARDS;
    let names: Vec<String> =
        (0..shards).map(|i| deprovisioner::expiry::clock_shard_name("x-deprovisioner-clocks", i)).collect();
    assert_eq!(rules[1]["resourceNames"], json!(names), "the chart and CLOCK_SHARDS ({shards}) disagree");
    // What the shipped manifests grant (deploy/, rendered from the chart) is the same.
    let shipped = std::fs::read_to_string(repo().join("deploy/rbac.yaml")).unwrap();
    let names = (0..shards).map(|i| deprovisioner::expiry::clock_shard_name("deprovisioner-clocks", i));
    for name in names {
        assert!(shipped.contains(&format!("  - {name}\n")), "deploy/rbac.yaml does not name {name}");
    }
    assert!(!shipped.contains(&format!("deprovisioner-clocks-{shards}\n")));

    // Off: the operator is told so, and nothing is granted on AccessClocks.
    let objs = docs(&template("x", "ops", &["--set", "expiry.enabled=false"]));
    let args = deployment_args(&objs);
    assert!(args.contains(&"--expiry=false".to_string()), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--expiry-clocks")), "{args:?}");
    assert!(clock_rules(&objs).is_empty());
    assert!(!template("x", "ops", &["--set", "expiry.enabled=false"]).contains("accessclocks"));

    // Anything else is refused by the schema.
    let out = helm(None, &["template", "x", CHART, "--kube-version", KUBE_VERSION, "--set", "expiry.enabled=maybe"]);
    assert!(!out.status.success());
    let out = helm(None, &["template", "x", CHART, "--kube-version", KUBE_VERSION, "--set", "expiry.shards=9"]);
    assert!(!out.status.success() && text(&out.stderr).contains("shards"), "{}", text(&out.stderr));
}

// ---- What the chart ships for on-call people: alerts and a dashboard (off by default) ----

const ALERTS: &str = "charts/deprovisioner/files/alerts.yaml";
const ALERT_TESTS: &str = "charts/deprovisioner/tests/alerts_test.yaml";
const DASHBOARD: &str = "charts/deprovisioner/files/dashboard.json";
const PROMETHEUS_RULE_API: [&str; 2] = ["--api-versions", "monitoring.coreos.com/v1/PrometheusRule"];

/// The alerts the chart ships, by name.
const ALERT_NAMES: [&str; 9] = [
    "DeprovisionerRequestsFailing",
    "DeprovisionerAnswersMissDeadline",
    "DeprovisionerAccessRegranted",
    "DeprovisionerVerificationUnverified",
    "DeprovisionerNoLeader",
    "DeprovisionerAbsent",
    "DeprovisionerWatchStuckListing",
    "DeprovisionerExpiriesOverdue",
    "DeprovisionerAuditEventsStopped",
];

fn repo_yaml(path: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo().join(path)).unwrap()).unwrap()
}

/// The rules of the alerts file (or a PrometheusRule's spec).
fn alert_rules(spec: &Value) -> Vec<Value> {
    spec["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect()
}

/// Every `deprovisioner_*` metric name a PromQL expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("deprovisioner_") {
        let preceded = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        if !preceded {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Every series name the operator exposes: each metric src/metrics.rs registers, with the
/// suffixes of its type (`_total` of a counter; `_bucket`, `_sum`, `_count` of a histogram).
/// Read from the source (a labelled family with no series yet is not in the exposition), and
/// checked against what the registry does expose.
fn registered_series() -> BTreeSet<String> {
    let src = std::fs::read_to_string(repo().join("src/metrics.rs")).unwrap();
    let types: std::collections::HashMap<&str, &str> =
        src.lines().filter_map(|l| l.trim().strip_prefix("pub ")?.strip_suffix(',')?.split_once(": ")).collect();
    let mut out = BTreeSet::new();
    for call in src.split("registry.register(").skip(1) {
        let name = call.split('"').nth(1).unwrap();
        let field = call[..call.find(".clone()").unwrap()].rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next();
        let ty = types[field.unwrap()];
        let suffixes: &[&str] = match ty {
            t if t.contains("Histogram") => &["_bucket", "_sum", "_count"],
            t if t.contains("Counter") => &["_total"],
            _ => &[""],
        };
        out.extend(suffixes.iter().map(|s| format!("deprovisioner_{name}{s}")));
    }
    // What the registry exposes (every metric that has a series) was read the same way.
    let exposed = deprovisioner::metrics::Metrics::new().encode();
    for series in exposed.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split([' ', '{']).next()) {
        assert!(out.contains(series), "{series} exposed but not read from src/metrics.rs: {out:?}");
    }
    assert!(out.contains("deprovisioner_budget_wait_seconds_bucket") && out.contains("deprovisioner_watch_state"));
    out
}

#[test]
fn alerts_render_only_when_enabled_and_the_prometheus_operator_is_there() {
    let has_rule = |extra: &[&str]| kinds(&docs(&template("mon", "ops", extra))).contains("PrometheusRule");
    assert!(!has_rule(&PROMETHEUS_RULE_API), "off by default, even where the API is served");
    assert!(!has_rule(&["--set", "metrics.prometheusRule.enabled=true"]), "rendered without the Prometheus Operator");
    let mut off = PROMETHEUS_RULE_API.to_vec();
    off.extend(["--set", "metrics.prometheusRule.enabled=true,metrics.enabled=false"]);
    assert!(!has_rule(&off), "rendered without metrics");

    let mut on = PROMETHEUS_RULE_API.to_vec();
    on.extend(["--set", "metrics.prometheusRule.enabled=true,metrics.prometheusRule.labels.release=kube-prometheus"]);
    let objs = docs(&template("mon", "ops", &on));
    let rule = find(&objs, "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "ops");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
    // What ships is exactly the file promtool checks.
    assert_eq!(rule["spec"], repo_yaml(ALERTS));
    let names: Vec<String> =
        alert_rules(&rule["spec"]).iter().map(|r| r["alert"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ALERT_NAMES);
}

#[test]
fn alerts_read_only_registered_metrics_and_each_has_its_runbook() {
    let registered = registered_series();
    let runbook = std::fs::read_to_string(repo().join("docs/alerts.md")).unwrap();
    for rule in alert_rules(&repo_yaml(ALERTS)) {
        let name = rule["alert"].as_str().unwrap();
        let read = metric_names(rule["expr"].as_str().unwrap());
        assert!(!read.is_empty() && read.is_subset(&registered), "{name} reads {read:?}; registered: {registered:?}");
        for key in ["summary", "description", "runbook"] {
            assert!(rule["annotations"][key].as_str().is_some_and(|s| !s.is_empty()), "{name} has no {key}");
        }
        assert!(["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap_or_default()), "{name}");
        let anchor = format!("docs/alerts.md#{}", name.to_ascii_lowercase());
        assert_eq!(rule["annotations"]["runbook"], anchor.as_str(), "{name}");
        assert!(runbook.contains(&format!("\n## {name}\n")), "docs/alerts.md has no section for {name}");
    }
}

#[test]
fn dashboard_renders_when_enabled_and_reads_only_registered_metrics() {
    let objs = docs(&template("mon", "ops", &[]));
    assert!(!objs.iter().any(|o| o["kind"] == "ConfigMap"), "a dashboard rendered by default");
    let rendered = template("mon", "ops", &["--set", "metrics.dashboard.enabled=true"]);
    let objs = docs(&rendered);
    let cm = find(&objs, "ConfigMap");
    // The API server takes it (a ConfigMap's size and keys are checked there).
    let c = cluster();
    restricted_namespace(c, "ops");
    let out = dry_run(c, &write(c, "chart-dashboard.yaml", &rendered));
    assert!(out.contains("configmap/mon-deprovisioner-dashboard created (server dry run)"), "{out}");
    assert_eq!(cm["metadata"]["name"], "mon-deprovisioner-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value = serde_json::from_str(cm["data"]["deprovisioner.json"].as_str().unwrap()).unwrap();
    let file: Value = serde_json::from_str(&std::fs::read_to_string(repo().join(DASHBOARD)).unwrap()).unwrap();
    assert_eq!(shipped, file);
    let exprs: Vec<&str> = file["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    let read: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let registered = registered_series();
    let unknown: Vec<&String> = read.difference(&registered).collect();
    assert!(unknown.is_empty(), "the dashboard reads metrics src/metrics.rs does not register: {unknown:?}");
    // The alerts' figures, the webhook's latency and the budget and barrier metrics are on it.
    for want in [
        "deprovisioner_requests_finished_total",
        "deprovisioner_webhook_deadline_reached_total",
        "deprovisioner_regrants_total",
        "deprovisioner_verifications_total",
        "deprovisioner_leader",
        "deprovisioner_watch_state",
        "deprovisioner_webhook_seconds_bucket",
        "deprovisioner_budget_queued",
        "deprovisioner_budget_wait_seconds_bucket",
        "deprovisioner_barrier_seconds_bucket",
        "deprovisioner_barrier_fallbacks_total",
        "deprovisioner_expiries_total",
        "deprovisioner_expiries_overdue",
    ] {
        assert!(read.contains(want), "the dashboard does not show {want}");
    }
    // Only this chart's data source variable: no data source of someone's own Grafana.
    for p in file["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
}

/// promtool, from scripts/control-plane's cache, built if missing (from the Go module proxy);
/// `None`, said as SKIPPED with the reason, when it cannot be built here.
fn promtool() -> Option<PathBuf> {
    let script = repo().join("scripts/control-plane");
    let dir = Command::new(&script).arg("promtool-bin").output().expect("running scripts/control-plane");
    let bin = PathBuf::from(text(&dir.stdout).trim()).join("promtool");
    if !bin.exists() {
        let out = Command::new(&script).args(["build", "--promtool"]).output().expect("running scripts/control-plane");
        if !out.status.success() || !bin.exists() {
            let why = text(&out.stderr);
            eprint_uncaptured(&format!(
                "SKIPPED tests/chart.rs the alert rules' promtool checks: promtool could not be built (scripts/control-plane build --promtool):\n{why}"
            ));
            return None;
        }
    }
    Some(bin)
}

#[test]
fn alert_rules_pass_promtool_and_its_unit_tests_fire_each_alert() {
    // Every alert is tested both ways: firing from sample series, and silent while healthy.
    let tests = repo_yaml(ALERT_TESTS);
    assert_eq!(tests["rule_files"], json!(["../files/alerts.yaml"]));
    let cases: Vec<&Value> =
        tests["tests"].as_array().unwrap().iter().flat_map(|t| t["alert_rule_test"].as_array().unwrap()).collect();
    for name in ALERT_NAMES {
        let of = |firing: bool| {
            cases.iter().any(|c| c["alertname"] == name && c["exp_alerts"].as_array().unwrap().is_empty() != firing)
        };
        assert!(of(true), "{ALERT_TESTS} never fires {name}");
        assert!(of(false), "{ALERT_TESTS} never shows {name} silent");
    }

    let Some(promtool) = promtool() else { return };
    let out = Command::new(&promtool).args(["check", "rules", ALERTS]).current_dir(repo()).output().unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "promtool check rules:\n{said}");
    assert!(said.contains(&format!("SUCCESS: {} rules found", ALERT_NAMES.len())), "{said}");
    let out = Command::new(&promtool).args(["test", "rules", ALERT_TESTS]).current_dir(repo()).output().unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "promtool test rules:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}
