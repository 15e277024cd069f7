//! The chart's last-activity option (`activity.*`, docs/activity.md): what it renders (the audit
//! endpoint's flags, port, token, Service and NetworkPolicy rule; the activity store's RBAC and
//! admission policy; the API server's audit policy and webhook kubeconfig), and, on a real
//! kube-apiserver, that it installs, that its identities may do exactly what the store needs, that
//! the admission policy holds the operator to the store's names, and that the install notes'
//! command extracts the API server's files, whose kubeconfig names the Service and carries the
//! token the operator checks.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};
use support::*;

const CHART: &str = "charts/deprovisioner";
const KUBE_VERSION: &str = "1.37.2";

/// `helm template` (release `x` in namespace `ops`) with `--set` of each given string.
fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut args = vec!["template", "x", CHART, "--namespace", "ops", "--kube-version", KUBE_VERSION, "--skip-tests"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = helm(None, &args);
    if !out.status.success() {
        return Err(text(&out.stderr));
    }
    Ok(docs(&text(&out.stdout)))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn object<'a>(objs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objs.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn container(objs: &[Value]) -> Value {
    object(objs, "Deployment", "x-deprovisioner").unwrap()["spec"]["template"]["spec"]["containers"][0].clone()
}

fn args(objs: &[Value]) -> Vec<String> {
    container(objs)["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

/// A Secret's value under `key`, from `data` (base64) or `stringData`.
fn secret_value(secret: &Value, key: &str) -> String {
    if let Some(s) = secret["stringData"][key].as_str() {
        return s.to_string();
    }
    let b64 = secret["data"][key].as_str().unwrap_or_else(|| panic!("no key {key} in {secret}"));
    String::from_utf8(base64_decode(b64)).unwrap()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// The API server's files rendered into `<full name>-audit-apiserver`: (policy, kubeconfig).
fn api_server_files(secret: &Value) -> (Value, Value) {
    let policy = serde_yaml::from_str(&secret_value(secret, "audit-policy.yaml")).unwrap();
    let kubeconfig = serde_yaml::from_str(&secret_value(secret, "audit-webhook.kubeconfig")).unwrap();
    (policy, kubeconfig)
}

/// The store's ConfigMaps for a full name: the operator's shard count and names
/// (`deprovisioner_core::activity`), which the chart must name exactly.
fn shard_names(full_name: &str) -> Vec<String> {
    let prefix = format!("{full_name}-activity");
    (0..deprovisioner_core::activity::SHARDS).map(|n| deprovisioner_core::activity::object_name(&prefix, n)).collect()
}

#[test]
fn activity_is_off_by_default_and_renders_nothing_of_it() {
    let objs = render(&[]).unwrap();
    assert!(
        args(&objs).iter().all(|a| !a.starts_with("--audit-") && !a.starts_with("--activity-")),
        "{:?}",
        args(&objs)
    );
    let ctr = container(&objs);
    let ports: Vec<&str> = ctr["ports"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(!ports.contains(&"audit"), "{ports:?}");
    let names: BTreeSet<&str> = objs.iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect();
    for name in [
        "x-deprovisioner-audit",
        "x-deprovisioner-audit-apiserver",
        "x-deprovisioner-activity",
        "x-deprovisioner-lumos-agent-activity",
        "x-deprovisioner-activity-names",
    ] {
        assert!(!names.contains(name), "{name} rendered with activity off");
    }
    for o in &objs {
        for rule in o["rules"].as_array().into_iter().flatten() {
            assert!(!rule["resources"].as_array().unwrap().contains(&json!("configmaps")), "{rule}");
        }
    }
}

/// Activity on: the operator gets its flags, port and token; the Service exposes the audit port
/// only; the token Secret and the API server's kubeconfig carry the same token; the audit policy
/// logs at Metadata at most, without RequestReceived, and drops only the traffic it says.
#[test]
fn activity_renders_the_endpoint_and_the_api_servers_files() {
    let objs = render(&["activity.enabled=true"]).unwrap();
    let a = args(&objs);
    let audit: Vec<&String> = a.iter().filter(|a| a.starts_with("--audit-") || a.starts_with("--activity-")).collect();
    assert_eq!(
        audit,
        [
            "--audit-listen=0.0.0.0:8444",
            "--audit-token-file=/var/run/secrets/deprovisioner/audit/token",
            "--audit-max-body=8388608",
            "--audit-max-events-per-second=5000",
            "--activity-prefix=x-deprovisioner-activity",
        ]
    );
    assert!(a.contains(&"--listen=0.0.0.0:8080".to_string()), "the webhook keeps its own listener");
    let ctr = container(&objs);
    let port = ctr["ports"].as_array().unwrap().iter().find(|p| p["name"] == "audit").expect("an audit port");
    assert_eq!(port["containerPort"], 8444);
    let mount = ctr["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "audit-token").unwrap();
    assert_eq!(mount["mountPath"], "/var/run/secrets/deprovisioner/audit");
    assert_eq!(mount["readOnly"], true);
    let pod = &object(&objs, "Deployment", "x-deprovisioner").unwrap()["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "audit-token").unwrap();
    assert_eq!(volume["secret"]["secretName"], "x-deprovisioner-audit");

    let svc = object(&objs, "Service", "x-deprovisioner-audit").expect("the audit Service");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "audit", "port": 8444, "targetPort": "audit", "protocol": "TCP"}])
    );
    // The main Service does not expose it.
    let main = object(&objs, "Service", "x-deprovisioner").unwrap();
    assert!(main["spec"]["ports"].as_array().unwrap().iter().all(|p| p["name"] != "audit"));

    let token = secret_value(object(&objs, "Secret", "x-deprovisioner-audit").unwrap(), "token");
    assert!(token.len() == 48 && token.chars().all(|c| c.is_ascii_alphanumeric()), "{} characters", token.len());
    let webhook = secret_value(object(&objs, "Secret", "x-deprovisioner-webhook").unwrap(), "secret");
    assert_ne!(token, webhook);

    let files = object(&objs, "Secret", "x-deprovisioner-audit-apiserver").expect("the API server's files");
    let (policy, kubeconfig) = api_server_files(files);
    assert_eq!(kubeconfig["users"][0]["user"]["token"], token.as_str());
    assert_eq!(kubeconfig["current-context"], "deprovisioner");
    // Offline (helm template) the Service has no address yet: the notes say what to do.
    assert_eq!(kubeconfig["clusters"][0]["cluster"]["server"], "PENDING-SEE-INSTALL-NOTES");
    assert!(kubeconfig["clusters"][0]["cluster"].get("certificate-authority-data").is_none());

    assert_eq!((&policy["apiVersion"], &policy["kind"]), (&json!("audit.k8s.io/v1"), &json!("Policy")));
    assert_eq!(policy["omitStages"], json!(["RequestReceived"]));
    let rules = policy["rules"].as_array().unwrap();
    for r in rules {
        assert!(r["level"] == "None" || r["level"] == "Metadata", "never a body: {r}");
        // Nothing about ordinary identities is dropped: only the named system ones.
        if r["level"] == "None" {
            let scoped =
                r.get("users").is_some() || r.get("userGroups").is_some() || r.get("nonResourceURLs").is_some();
            assert!(scoped, "a None rule for everyone: {r}");
        }
    }
    assert_eq!(rules.last().unwrap(), &json!({"level": "Metadata"}), "everything else at Metadata");
    let own = rules.iter().find(|r| r["users"] == json!(["system:serviceaccount:ops:x-deprovisioner"])).unwrap();
    assert_eq!(own["namespaces"], json!(["ops"]));
    assert_eq!(own["resources"][0]["resourceNames"], json!(shard_names("x-deprovisioner")));
    let reads_only = |who: &str| {
        rules.iter().any(|r| {
            (r["userGroups"] == json!([who]) || r["users"].as_array().is_some_and(|u| u.contains(&json!(who))))
                && r["verbs"] == json!(["get", "list", "watch"])
        })
    };
    assert!(reads_only("system:nodes") && reads_only("system:kube-controller-manager"));

    // RBAC: the store's names exactly; create by namespace only (held to the names by the
    // admission policy); Lumos's agent reads them.
    let names = json!(shard_names("x-deprovisioner"));
    let role = object(&objs, "Role", "x-deprovisioner-activity").expect("the operator's activity Role");
    assert_eq!(role["metadata"]["namespace"], "ops");
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update"], "resourceNames": names},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}
        ])
    );
    let binding = object(&objs, "RoleBinding", "x-deprovisioner-activity").unwrap();
    assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": "x-deprovisioner", "namespace": "ops"}]));
    let agent = object(&objs, "Role", "x-deprovisioner-lumos-agent-activity").expect("the agent's activity Role");
    assert_eq!(
        agent["rules"],
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"], "resourceNames": names}])
    );
    let agent_binding = object(&objs, "RoleBinding", "x-deprovisioner-lumos-agent-activity").unwrap();
    assert_eq!(
        agent_binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "x-deprovisioner-lumos-agent", "namespace": "ops"}])
    );
    let vap = object(&objs, "ValidatingAdmissionPolicy", "x-deprovisioner-activity-names").expect("the names policy");
    assert_eq!(
        vap["spec"]["matchConditions"][0]["expression"],
        "request.userInfo.username == 'system:serviceaccount:ops:x-deprovisioner'"
    );
    assert!(object(&objs, "ValidatingAdmissionPolicyBinding", "x-deprovisioner-activity-names").is_some());

    // Without Lumos's agent, no agent Role; another full name, other names.
    let objs = render(&["activity.enabled=true", "lumosAgent.enabled=false", "fullnameOverride=ops-dp"]).unwrap();
    assert!(object(&objs, "Role", "ops-dp-lumos-agent-activity").is_none());
    let role = object(&objs, "Role", "ops-dp-activity").unwrap();
    assert_eq!(role["rules"][0]["resourceNames"], json!(shard_names("ops-dp")));
    let dp = object(&objs, "Deployment", "ops-dp").unwrap();
    assert!(
        dp["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--activity-prefix=ops-dp-activity"))
    );
}

/// Where the API server sends: a fixed node port through localhost, a fixed cluster IP, or a URL
/// of yours (with its CA); your own token Secret must exist (its token goes into the kubeconfig).
#[test]
fn the_kubeconfig_names_the_service_or_your_url_and_your_token() {
    let server = |objs: &[Value]| {
        let (_, kc) = api_server_files(object(objs, "Secret", "x-deprovisioner-audit-apiserver").unwrap());
        kc["clusters"][0]["cluster"].clone()
    };
    let node =
        render(&["activity.enabled=true,activity.service.type=NodePort,activity.service.nodePort=30844"]).unwrap();
    assert_eq!(server(&node)["server"], "http://127.0.0.1:30844/audit");
    let svc = object(&node, "Service", "x-deprovisioner-audit").unwrap();
    assert_eq!((&svc["spec"]["type"], &svc["spec"]["ports"][0]["nodePort"]), (&json!("NodePort"), &json!(30844)));

    let ip =
        render(&["activity.enabled=true,activity.service.clusterIP=10.0.0.44,activity.service.port=9444"]).unwrap();
    assert_eq!(server(&ip)["server"], "http://10.0.0.44:9444/audit");
    assert_eq!(object(&ip, "Service", "x-deprovisioner-audit").unwrap()["spec"]["clusterIP"], "10.0.0.44");

    let yours = render(&[
        "activity.enabled=true,activity.apiServer.url=https://audit.example.com/audit,activity.apiServer.caBundle=PEM",
        "activity.token.value=0123456789abcdefghij\nthe-old-token-0123456789",
    ])
    .unwrap();
    assert_eq!(server(&yours)["server"], "https://audit.example.com/audit");
    assert_eq!(server(&yours)["certificate-authority-data"], "UEVN");
    let (_, kc) = api_server_files(object(&yours, "Secret", "x-deprovisioner-audit-apiserver").unwrap());
    assert_eq!(kc["users"][0]["user"]["token"], "0123456789abcdefghij", "the first line during a rotation");

    let err = render(&["activity.enabled=true,activity.token.existingSecret=mine"]).unwrap_err();
    assert!(err.contains("activity.token.existingSecret: Secret ops/mine with key \"token\" was not found"), "{err}");
}

#[test]
fn activity_values_are_checked_with_clear_messages() {
    let cases: &[(&str, &str)] = &[
        ("activity.enabled=true,networkPolicy.enabled=true", "activity.networkPolicyFrom is empty"),
        ("activity.enabled=true,activity.port=8080", "activity.port must differ from webhook.port"),
        ("activity.enabled=true,activity.port=9090", "activity.port must differ from metrics.port"),
        ("activity.token.value=short", "activity.token.value: line 1 must be at least 16 printable characters"),
        (
            "activity.token.value=0123456789abcdefgh,activity.token.existingSecret=t",
            "activity.token: set either value or existingSecret",
        ),
        (
            "activity.enabled=true,activity.token.existingSecret=x-deprovisioner-webhook,activity.token.key=secret",
            "activity.token must not be the webhook's or the connector's secret",
        ),
        (
            "activity.enabled=true,activity.token.value=0123456789abcdefgh,webhook.secret.value=0123456789abcdefgh",
            "activity.token.value must differ from the webhook's and the connector's secrets",
        ),
        (
            "activity.enabled=true,rbac.credentials.secretNames={x-deprovisioner-audit-apiserver}",
            "it holds the audit token",
        ),
        (
            "activity.enabled=true,activity.service.nodePort=30844",
            "activity.service.nodePort is set but activity.service.type is not NodePort",
        ),
        (
            "activity.enabled=true,activity.apiServer.caBundle=PEM",
            "activity.apiServer.caBundle is set but activity.apiServer.url is not https://",
        ),
        ("activity.service.type=LoadBalancer", "at '/activity/service/type'"),
        ("activity.shards=3", "additional properties 'shards' not allowed"),
        ("activity.apiServer.url=ftp://x", "at '/activity/apiServer/url'"),
    ];
    for (set, want) in cases {
        let err = render(&[set]).expect_err(set);
        assert!(err.contains(want), "--set {set}: {err}");
    }
    // A bad token is never echoed back.
    let err = render(&["activity.token.value=has a space in it!"]).unwrap_err();
    assert!(!err.contains("has a space"), "{err}");
    // With a NetworkPolicy, the audit port admits exactly the peers listed.
    let objs = render(&[
        "activity.enabled=true,networkPolicy.enabled=true,activity.networkPolicyFrom[0].ipBlock.cidr=172.18.0.0/16",
    ])
    .unwrap();
    let np = object(&objs, "NetworkPolicy", "x-deprovisioner").unwrap();
    let audit: Vec<&Value> = np["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ports"].as_array().unwrap().iter().any(|p| p["port"] == "audit"))
        .collect();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["from"], json!([{"ipBlock": {"cidr": "172.18.0.0/16"}}]));
    assert_eq!(audit[0]["ports"], json!([{"port": "audit", "protocol": "TCP"}]));
}

/// On a real API server: install with activity on; what the operator and Lumos's agent may do
/// with ConfigMaps; the admission policy refuses the operator any other name; the notes' command
/// extracts the files; an upgrade fills in the Service's cluster IP and keeps the token.
#[test]
fn activity_installs_and_holds_its_identities_to_the_store() {
    let c = own_cluster();
    let kc = c.kubeconfig.clone();
    let (release, ns) = ("deprovisioner", "deprovisioner");
    // Only the chart grants anything: remove what the harness applied from deploy/rbac.yaml.
    kubectl_ok(c, &["delete", "-f", repo().join("deploy/rbac.yaml").to_str().unwrap()]);
    helm_ok(Some(&kc), &["install", release, CHART, "--namespace", ns, "--set", "activity.enabled=true"]);

    // The admission policy compiled cleanly against the API server's own type checking.
    let vap = kubectl_json(c, &["get", "validatingadmissionpolicy", "deprovisioner-activity-names"]);
    let warnings = &vap["status"]["typeChecking"]["expressionWarnings"];
    assert!(warnings.is_null() || warnings.as_array().unwrap().is_empty(), "{vap}");

    let op = "system:serviceaccount:deprovisioner:deprovisioner";
    let agent = "system:serviceaccount:deprovisioner:deprovisioner-lumos-agent";
    let can = |who: &str, verb: &str, what: &str, namespace: &str| {
        let out = c.kubectl(&["auth", "can-i", verb, what, "--as", who, "-n", namespace]);
        text(&out.stdout).trim() == "yes"
    };
    for (who, verb, what, namespace, allowed) in [
        (op, "get", "configmaps/deprovisioner-activity-00", ns, true),
        (op, "update", "configmaps/deprovisioner-activity-63", ns, true),
        (op, "get", "configmaps/deprovisioner-activity-64", ns, false),
        (op, "watch", "configmaps/deprovisioner-activity-03", ns, false),
        (op, "get", "configmaps/kube-root-ca.crt", ns, false),
        (op, "list", "configmaps", ns, false),
        (op, "delete", "configmaps/deprovisioner-activity-00", ns, false),
        (op, "patch", "configmaps/deprovisioner-activity-00", ns, false),
        (op, "create", "configmaps", ns, true),
        (op, "create", "configmaps", "default", false),
        (op, "get", "secrets/deprovisioner-audit", ns, false),
        (op, "get", "secrets/deprovisioner-audit-apiserver", ns, false),
        (agent, "get", "configmaps/deprovisioner-activity-01", ns, true),
        (agent, "list", "configmaps/deprovisioner-activity-01", ns, true),
        (agent, "update", "configmaps/deprovisioner-activity-01", ns, false),
        (agent, "get", "configmaps/other", ns, false),
        (agent, "get", "secrets/deprovisioner-audit-apiserver", ns, false),
    ] {
        assert_eq!(can(who, verb, what, namespace), allowed, "{who} {verb} {what} in {namespace}");
    }

    // The operator may create a shard, and no other ConfigMap; an admin may (not matched).
    let as_operator = c.kubeconfig_as("deprovisioner");
    let create = |kubeconfig: &std::path::Path, name: &str| {
        Command::new(c.bin_dir.join("kubectl"))
            .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "-n", ns, "create", "configmap", name])
            .output()
            .unwrap()
    };
    // The API server loads a new policy within a moment: until then RBAC alone would let it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut i = 0;
    loop {
        i += 1;
        let out = create(&as_operator, &format!("not-a-shard-{i}"));
        if !out.status.success() {
            assert!(
                text(&out.stderr).contains("the deprovisioner creates only its activity store"),
                "{}",
                text(&out.stderr)
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the admission policy never refused the operator");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = create(&as_operator, "deprovisioner-activity-02");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = create(&as_operator, "sh.helm.release.v1.deprovisioner.v9");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("the deprovisioner creates only its activity store"), "{}", text(&out.stderr));
    assert!(create(&kc, "an-admins-configmap").status.success());

    // The notes: the one command that extracts the files, the flags, and (no cluster IP at the
    // first render) the warning. Run the command as written.
    let notes = helm_ok(Some(&kc), &["get", "notes", release, "--namespace", ns]);
    for want in [
        "--audit-policy-file=/etc/kubernetes/deprovisioner/audit-policy.yaml",
        "--audit-webhook-config-file=/etc/kubernetes/deprovisioner/audit-webhook.kubeconfig",
        "--audit-webhook-mode=batch",
        "--audit-webhook-batch-max-size=",
        "--audit-webhook-batch-max-wait=",
        "WARNING: the kubeconfig's server is not known yet",
    ] {
        assert!(notes.contains(want), "NOTES lack {want:?}:\n{notes}");
    }
    let extract = |dir: &std::path::Path| -> (Value, Value) {
        let line = notes.lines().find(|l| l.trim_start().starts_with("for f in audit-policy.yaml")).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("bash")
            .args(["-c", line.trim()])
            .current_dir(dir)
            .env("KUBECONFIG", &kc)
            .env("PATH", format!("{}:{}", c.bin_dir.display(), std::env::var("PATH").unwrap()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {}", text(&out.stderr));
        let read = |f: &str| serde_yaml::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
        (read("audit-policy.yaml"), read("audit-webhook.kubeconfig"))
    };
    let (policy, first) = extract(&c.dir.join("admin-files-1"));
    assert_eq!(policy["kind"], "Policy");
    assert_eq!(first["clusters"][0]["cluster"]["server"], "PENDING-SEE-INSTALL-NOTES");
    let token_secret = kubectl_json(c, &["-n", ns, "get", "secret", "deprovisioner-audit"]);
    let token = String::from_utf8(base64_decode(token_secret["data"]["token"].as_str().unwrap())).unwrap();
    assert_eq!(first["users"][0]["user"]["token"], token.as_str());

    // An upgrade fills in the Service's cluster IP; the token stays.
    helm_ok(Some(&kc), &["upgrade", release, CHART, "--namespace", ns, "--reuse-values"]);
    let ip = kubectl_json(c, &["-n", ns, "get", "service", "deprovisioner-audit"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, second) = extract(&c.dir.join("admin-files-2"));
    assert_eq!(second["clusters"][0]["cluster"]["server"], format!("http://{ip}:8444/audit"));
    assert_eq!(second["users"][0]["user"]["token"], token.as_str());
    let notes = helm_ok(Some(&kc), &["get", "notes", release, "--namespace", ns]);
    assert!(notes.contains(&format!("The API server sends to http://{ip}:8444/audit")), "{notes}");
    assert!(!notes.contains("WARNING: the kubeconfig's server"), "{notes}");
}
