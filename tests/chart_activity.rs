//! The chart's last-activity option (`activity.*`, docs/activity.md): what it renders (the audit
//! endpoint's flags, port, token, Service and NetworkPolicy rule; the activity store's RBAC and
//! admission policy; the API server's audit policy and webhook kubeconfig), and, on a real
//! kube-apiserver, that it installs, that its identities may do exactly what the store needs, that
//! the admission policy holds the operator to the store's names, and that the install notes'
//! command extracts the API server's files, whose kubeconfig names the Service over https, trusts
//! the CA of the endpoint's certificate and carries the token the operator checks; and, end to
//! end, that an API server started with exactly the chart's files sends a user's request to an
//! operator serving the chart's certificate, key and token.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use deprovisioner::activity::Shard;
use deprovisioner::activity::ledger::{COMPONENT, DATA_KEY};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::ListParams;
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
/// The activity store's names: its shards, then its status.
fn shard_names(full_name: &str) -> Vec<String> {
    let prefix = format!("{full_name}-activity");
    let shards =
        (0..deprovisioner_core::activity::SHARDS).map(|n| deprovisioner_core::activity::object_name(&prefix, n));
    shards.chain([deprovisioner_core::activity::status_name(&prefix)]).collect()
}

/// The PEM CA in a webhook kubeconfig's `certificate-authority-data`.
fn kubeconfig_ca(kubeconfig: &Value) -> String {
    let b64 = kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"].as_str().expect("a CA");
    String::from_utf8(base64_decode(b64)).unwrap()
}

/// A name a serving certificate must be valid for.
enum San<'a> {
    Ip(&'a str),
    Dns(&'a str),
}

/// `openssl verify`: `cert` (PEM) chains to `ca` (PEM), is for TLS servers and valid for `san`.
fn verifies(ca: &str, cert: &str, san: &San) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, cert_file) = (dir.path().join("ca.crt"), dir.path().join("tls.crt"));
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&cert_file, cert).unwrap();
    let (flag, name) = match san {
        San::Ip(ip) => ("-verify_ip", *ip),
        San::Dns(host) => ("-verify_hostname", *host),
    };
    let out = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(&ca_file)
        .args([flag, name])
        .arg(&cert_file)
        .output()
        .expect("running openssl");
    if out.status.success() { Ok(()) } else { Err(format!("{}{}", text(&out.stdout), text(&out.stderr))) }
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
        "x-deprovisioner-audit-tls",
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
            "--audit-max-body=1048576",
            "--audit-max-events-per-second=5000",
            "--activity-prefix=x-deprovisioner-activity",
            "--audit-tls-cert-file=/var/run/secrets/deprovisioner/audit-tls/tls.crt",
            "--audit-tls-key-file=/var/run/secrets/deprovisioner/audit-tls/tls.key",
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
    // The serving certificate and key, read-only; never the CA's key.
    let mount = ctr["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "audit-tls").unwrap();
    assert_eq!(
        (&mount["mountPath"], &mount["readOnly"]),
        (&json!("/var/run/secrets/deprovisioner/audit-tls"), &json!(true))
    );
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "audit-tls").unwrap();
    assert_eq!(
        volume["secret"],
        json!({"secretName": "x-deprovisioner-audit-tls", "defaultMode": 288,
               "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]})
    );

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
    // It trusts the CA of the chart's serving certificate.
    let tls = object(&objs, "Secret", "x-deprovisioner-audit-tls").expect("the serving certificate");
    assert_eq!(tls["type"], "kubernetes.io/tls");
    assert_eq!(kubeconfig_ca(&kubeconfig), secret_value(tls, "ca.crt"));

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
    // kubeadm's controllers read as kube-system ServiceAccounts (--use-service-account-credentials).
    assert!(reads_only("system:serviceaccounts:kube-system"), "kube-system's ServiceAccounts' reads are dropped");

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
    assert_eq!(server(&node)["server"], "https://127.0.0.1:30844/audit");
    let svc = object(&node, "Service", "x-deprovisioner-audit").unwrap();
    assert_eq!((&svc["spec"]["type"], &svc["spec"]["ports"][0]["nodePort"]), (&json!("NodePort"), &json!(30844)));

    let ip =
        render(&["activity.enabled=true,activity.service.clusterIP=10.0.0.44,activity.service.port=9444"]).unwrap();
    assert_eq!(server(&ip)["server"], "https://10.0.0.44:9444/audit");
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
            "activity.enabled=true,activity.tls.terminatedElsewhere=true,activity.apiServer.caBundle=PEM",
            "activity.apiServer.caBundle is set but activity.apiServer.url is not https://",
        ),
        (
            "activity.enabled=true,activity.apiServer.caBundle=PEM",
            "activity.apiServer.caBundle is set but the chart generates the audit endpoint's certificate",
        ),
        (
            "activity.enabled=true,activity.apiServer.url=http://10.0.0.1:8444/audit",
            "activity.apiServer.url is http:// but the audit port serves https",
        ),
        (
            "activity.enabled=true,activity.tls.existingSecret=mine",
            "activity.tls.existingSecret is set but activity.apiServer.caBundle is empty",
        ),
        (
            "activity.enabled=true,activity.tls.existingSecret=mine,activity.tls.terminatedElsewhere=true",
            "activity.tls.existingSecret is set but activity.tls.terminatedElsewhere is true",
        ),
        (
            "activity.enabled=true,rbac.credentials.secretNames={x-deprovisioner-audit-tls}",
            "it holds the audit endpoint's private key",
        ),
        ("activity.tls.extraSANs[0]=has space", "at '/activity/tls/extraSANs/0'"),
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
    let deadline = Instant::now() + Duration::from_secs(20);
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
        assert!(Instant::now() < deadline, "the admission policy never refused the operator");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = create(&as_operator, "deprovisioner-activity-02");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = create(&as_operator, "sh.helm.release.v1.deprovisioner.v9");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("the deprovisioner creates only its activity store"), "{}", text(&out.stderr));
    assert!(create(&kc, "an-admins-configmap").status.success());

    // Nobody else writes the store, not even an admin or someone with `edit` here: no forged
    // or erased activity. The status object is held the same way.
    let vap = kubectl_json(c, &["get", "validatingadmissionpolicy", "deprovisioner-activity-store"]);
    let warnings = &vap["status"]["typeChecking"]["expressionWarnings"];
    assert!(warnings.is_null() || warnings.as_array().unwrap().is_empty(), "{vap}");
    // What `edit` grants on ConfigMaps (this control plane runs no controller manager to
    // aggregate `edit` itself).
    let verbs = "--verb=get,list,create,update,patch,delete";
    kubectl_ok(c, &["-n", ns, "create", "role", "forger-edit", verbs, "--resource=configmaps"]);
    let binding = ["-n", ns, "create", "rolebinding", "forger-edit", "--role=forger-edit"];
    kubectl_ok(c, &[&binding[..], &["--serviceaccount=deprovisioner:forger"]].concat());
    let forger = c.kubeconfig_as("forger");
    let kubectl_as = |kubeconfig: &std::path::Path, args: &[&str]| {
        Command::new(c.bin_dir.join("kubectl"))
            .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "-n", ns])
            .args(args)
            .output()
            .unwrap()
    };
    let refused = |out: std::process::Output, what: &str| {
        assert!(!out.status.success(), "{what} was allowed");
        let e = text(&out.stderr);
        assert!(
            e.contains(
                "only the deprovisioner (system:serviceaccount:deprovisioner:deprovisioner) writes its activity store"
            ),
            "{what}: {e}"
        );
    };
    let forged = r#"{"data":{"ledger.json":"{\"since\":\"2020-01-01T00:00:00Z\",\"accounts\":{}}"}}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = kubectl_as(&kc, &["patch", "configmap", "deprovisioner-activity-02", "--type=merge", "-p", forged]);
        if !out.status.success() {
            refused(out, "an admin's patch");
            break;
        }
        assert!(Instant::now() < deadline, "the store's admission policy never refused an admin");
        std::thread::sleep(Duration::from_millis(200));
    }
    refused(
        kubectl_as(&forger, &["patch", "configmap", "deprovisioner-activity-02", "--type=merge", "-p", forged]),
        "an editor's patch",
    );
    refused(kubectl_as(&forger, &["delete", "configmap", "deprovisioner-activity-02"]), "an editor's delete");
    refused(kubectl_as(&kc, &["delete", "configmap", "deprovisioner-activity-02"]), "an admin's delete");
    refused(
        kubectl_as(&forger, &["create", "configmap", "deprovisioner-activity-status"]),
        "an editor's create of the status",
    );
    refused(kubectl_as(&kc, &["create", "configmap", "deprovisioner-activity-07"]), "an admin's create of a shard");
    assert!(
        kubectl_as(&forger, &["create", "configmap", "an-editors-configmap"]).status.success(),
        "other ConfigMaps are not matched"
    );
    assert!(kubectl_as(&kc, &["get", "configmap", "deprovisioner-activity-02"]).status.success(), "it is still there");

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
    assert_eq!(second["clusters"][0]["cluster"]["server"], format!("https://{ip}:8444/audit"));
    assert_eq!(second["users"][0]["user"]["token"], token.as_str());
    let notes = helm_ok(Some(&kc), &["get", "notes", release, "--namespace", ns]);
    assert!(notes.contains(&format!("The API server sends to https://{ip}:8444/audit")), "{notes}");
    assert!(!notes.contains("WARNING: the kubeconfig's server"), "{notes}");

    // The certificate: the same CA throughout (the admins' kubeconfig stays right); the upgrade
    // that learnt the cluster IP re-signed it for that address; later upgrades keep it as it is.
    let serving = || {
        let s = kubectl_json(c, &["-n", ns, "get", "secret", "deprovisioner-audit-tls"]);
        let get = |k: &str| String::from_utf8(base64_decode(s["data"][k].as_str().unwrap())).unwrap();
        (get("ca.crt"), get("tls.crt"), get("tls.key"))
    };
    let (ca, cert, key) = serving();
    assert_eq!(kubeconfig_ca(&first), ca);
    assert_eq!(kubeconfig_ca(&second), ca, "the CA is kept across upgrades");
    verifies(&ca, &cert, &San::Ip(&ip)).expect("re-signed for the cluster IP");
    helm_ok(Some(&kc), &["upgrade", release, CHART, "--namespace", ns, "--reuse-values"]);
    assert_eq!(serving(), (ca, cert, key), "the certificate is the same after helm upgrade");
    let (_, third) = extract(&c.dir.join("admin-files-3"));
    assert_eq!(third, second, "the API server's files are the same after helm upgrade");
}

/// TLS by default: the kubeconfig's CA verifies the rendered serving certificate for every name
/// the API server or a shipper may use (the Service's DNS names, its cluster IP, 127.0.0.1, the
/// url's host, the extra SANs) and for nothing else; the pods roll when it changes. Your own
/// certificate Secret is mounted instead, with your CA; TLS terminated elsewhere serves http.
#[test]
fn the_kubeconfig_trusts_a_ca_that_verifies_the_serving_certificate() {
    let objs = render(&[
        "activity.enabled=true,activity.service.clusterIP=10.0.0.44",
        "activity.tls.extraSANs={audit.example.com,192.0.2.7}",
    ])
    .unwrap();
    let (_, kubeconfig) = api_server_files(object(&objs, "Secret", "x-deprovisioner-audit-apiserver").unwrap());
    assert_eq!(kubeconfig["clusters"][0]["cluster"]["server"], "https://10.0.0.44:8444/audit");
    let ca = kubeconfig_ca(&kubeconfig);
    let tls = object(&objs, "Secret", "x-deprovisioner-audit-tls").unwrap();
    let cert = secret_value(tls, "tls.crt");
    assert!(secret_value(tls, "tls.key").contains("PRIVATE KEY"));
    for san in [
        San::Ip("10.0.0.44"),
        San::Ip("127.0.0.1"),
        San::Ip("192.0.2.7"),
        San::Dns("x-deprovisioner-audit"),
        San::Dns("x-deprovisioner-audit.ops"),
        San::Dns("x-deprovisioner-audit.ops.svc"),
        San::Dns("x-deprovisioner-audit.ops.svc.cluster.local"),
        San::Dns("audit.example.com"),
    ] {
        verifies(&ca, &cert, &san).unwrap();
    }
    // A check that can fail: other names, and another render's CA.
    assert!(verifies(&ca, &cert, &San::Ip("10.0.0.45")).is_err());
    assert!(verifies(&ca, &cert, &San::Dns("other.ops.svc")).is_err());
    let again = render(&["activity.enabled=true,activity.service.clusterIP=10.0.0.44"]).unwrap();
    let other_ca = secret_value(object(&again, "Secret", "x-deprovisioner-audit-tls").unwrap(), "ca.crt");
    assert!(verifies(&other_ca, &cert, &San::Ip("10.0.0.44")).is_err());
    // The pod template names the certificate, so a re-signed one rolls the pods.
    let annotations =
        &object(&objs, "Deployment", "x-deprovisioner").unwrap()["spec"]["template"]["metadata"]["annotations"];
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(cert.as_bytes()))
    };
    assert_eq!(annotations["deprovisioner.dev/audit-tls"], digest[..16]);

    // A node port: 127.0.0.1, which the certificate covers; your url's host is covered too.
    let node =
        render(&["activity.enabled=true,activity.service.type=NodePort,activity.service.nodePort=30844"]).unwrap();
    let (_, kc) = api_server_files(object(&node, "Secret", "x-deprovisioner-audit-apiserver").unwrap());
    assert_eq!(kc["clusters"][0]["cluster"]["server"], "https://127.0.0.1:30844/audit");
    let cert = secret_value(object(&node, "Secret", "x-deprovisioner-audit-tls").unwrap(), "tls.crt");
    verifies(&kubeconfig_ca(&kc), &cert, &San::Ip("127.0.0.1")).unwrap();
    let url = render(&["activity.enabled=true,activity.apiServer.url=https://audit.internal:443/audit"]).unwrap();
    let (_, kc) = api_server_files(object(&url, "Secret", "x-deprovisioner-audit-apiserver").unwrap());
    let cert = secret_value(object(&url, "Secret", "x-deprovisioner-audit-tls").unwrap(), "tls.crt");
    verifies(&kubeconfig_ca(&kc), &cert, &San::Dns("audit.internal")).unwrap();

    // Your certificate: mounted from your Secret; the kubeconfig trusts your CA; nothing generated.
    let yours = render(&["activity.enabled=true,activity.tls.existingSecret=my-tls,activity.apiServer.caBundle=MY CA"])
        .unwrap();
    assert!(object(&yours, "Secret", "x-deprovisioner-audit-tls").is_none());
    let pod = &object(&yours, "Deployment", "x-deprovisioner").unwrap()["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "audit-tls").unwrap();
    assert_eq!(volume["secret"]["secretName"], "my-tls");
    assert!(args(&yours).contains(&"--audit-tls-cert-file=/var/run/secrets/deprovisioner/audit-tls/tls.crt".into()));
    let (_, kc) = api_server_files(object(&yours, "Secret", "x-deprovisioner-audit-apiserver").unwrap());
    assert_eq!(kubeconfig_ca(&kc), "MY CA");

    // TLS terminated elsewhere, said explicitly: plain http, no certificate.
    let plain =
        render(&["activity.enabled=true,activity.tls.terminatedElsewhere=true,activity.service.clusterIP=10.0.0.44"])
            .unwrap();
    assert!(object(&plain, "Secret", "x-deprovisioner-audit-tls").is_none());
    assert!(args(&plain).iter().all(|a| !a.starts_with("--audit-tls-")), "{:?}", args(&plain));
    assert!(container(&plain)["volumeMounts"].as_array().unwrap().iter().all(|m| m["name"] != "audit-tls"));
    let (_, kc) = api_server_files(object(&plain, "Secret", "x-deprovisioner-audit-apiserver").unwrap());
    assert_eq!(kc["clusters"][0]["cluster"]["server"], "http://10.0.0.44:8444/audit");
    assert!(kc["clusters"][0]["cluster"].get("certificate-authority-data").is_none());
}

/// The chart's files, end to end on a real API server: render the chart for an API server that
/// reaches the operator at `https://127.0.0.1:<port>/audit`, start kube-apiserver with exactly
/// the audit policy and webhook kubeconfig of `<full name>-audit-apiserver` (the bytes the notes'
/// command writes), run the operator with the chart's serving certificate, key and token (as its
/// pod mounts them) and the chart's RBAC; a user's request then shows up in the activity store,
/// and the API server reports nothing dropped or failed once the operator listens.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_with_the_charts_files_sends_to_the_operator_over_https() {
    let port = free_port();
    let out = helm(
        None,
        &[
            "template",
            "deprovisioner",
            CHART,
            "--namespace",
            "deprovisioner",
            "--kube-version",
            KUBE_VERSION,
            "--skip-tests",
            "--set",
            &format!("activity.enabled=true,activity.apiServer.url=https://127.0.0.1:{port}/audit"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let objs = docs(&text(&out.stdout));
    let dir = tempfile::Builder::new().prefix("deprovisioner-chart-audit-").tempdir().unwrap().keep();
    let write = |name: &str, secret: &str, key: &str| {
        let path = dir.join(name);
        let value = secret_value(object(&objs, "Secret", secret).unwrap(), key);
        std::fs::write(&path, value).unwrap();
        path
    };
    let policy = write("audit-policy.yaml", "deprovisioner-audit-apiserver", "audit-policy.yaml");
    let kubeconfig = write("audit-webhook.kubeconfig", "deprovisioner-audit-apiserver", "audit-webhook.kubeconfig");
    let token_file = write("token", "deprovisioner-audit", "token");
    let cert = write("tls.crt", "deprovisioner-audit-tls", "tls.crt");
    let key = write("tls.key", "deprovisioner-audit-tls", "tls.key");
    let ca = write("ca.crt", "deprovisioner-audit-tls", "ca.crt");
    let kc: Value = serde_yaml::from_str(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap();
    assert_eq!(kc["clusters"][0]["cluster"]["server"], format!("https://127.0.0.1:{port}/audit"));

    let ac = audit_cluster_with(AuditFiles { policy, kubeconfig, port, token_file, cert, key, ca });
    let c = ac.cluster;
    let op = Operator::start(OperatorOpts::on(c).audit(&ac).args(&["--activity-resolution", "1s"]));
    op.wait_audit_listening();
    // Batches sent before the operator listened failed; from now on none may.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (events_before, errors_before) = audit_counters(c);

    let alice = client_for(&c.client_cert("alice", &["dev"])).await;
    let since = Timestamp::now().checked_sub(SignedDuration::from_secs(1)).unwrap();
    let _ = Api::<ConfigMap>::namespaced(alice, "default").list(&ListParams::default().limit(1)).await;
    let shards = Api::<ConfigMap>::namespaced(c.admin().await, "deprovisioner");
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/component={COMPONENT}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = shards.list(&lp).await.unwrap().items.into_iter().any(|cm| {
            let Some(text) = cm.data.as_ref().and_then(|d| d.get(DATA_KEY)) else { return false };
            let shard: Shard = serde_json::from_str(text).unwrap();
            shard.accounts.get("User:alice").is_some_and(|e| e.at >= since)
        });
        if stored {
            break;
        }
        assert!(Instant::now() < deadline, "alice's request not stored within 20 s; operator log:\n{}", op.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (events_after, errors_after) = audit_counters(c);
    assert!(events_after > events_before, "the API server audited the request");
    assert_eq!(errors_after, errors_before, "audit events dropped or failed while the operator listened");
    drop(op);
}
