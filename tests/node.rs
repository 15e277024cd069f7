//! The chart on a real node: `scripts/control-plane up --node` (containerd, kubelet, the
//! controller manager, the scheduler, kube-proxy on this machine), the operator's image assembled
//! from what the Dockerfile ships (`scripts/oci-image`) and imported, `helm install`, and Lumos's
//! call through the Service and, over https, through the chart's Ingress (served by the node's
//! ingress controller, Traefik). Where this machine cannot run a node (not root, no containerd…) the
//! node tests say so on stderr, `SKIPPED …: <reason>`, and pass: nothing was proven there.
//!
//!     cargo test --test node -- --nocapture      # about N min warm; see docs/helm.md

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use deprovisioner::crd::Phase;
use deprovisioner::fixtures::user;
use serde_json::{Value, json};
use support::*;

const IMAGE_REPOSITORY: &str = "localhost/deprovisioner";
const IMAGE_TAG: &str = "node-test";
/// The helm test's client (hack/node/wget), imported by `up --node`.
const TEST_IMAGE: &str = "localhost/deprovisioner-node/wget:1";
const RELEASE: &str = "deprovisioner";
const NS: &str = "deprovisioner";
/// The chart's Ingress: its class (the IngressClass `up --node` creates for Traefik), its host
/// and the Secret holding the host's certificate (from a CA the test makes).
const INGRESS_CLASS: &str = "traefik";
const INGRESS_HOST: &str = "deprovisioner.test";
const INGRESS_TLS_SECRET: &str = "deprovisioner-ingress-tls";

/// The node shared by this binary's tests, or why it cannot run here (said once per test).
fn node(test: &str) -> Option<&'static Cluster> {
    static NODE: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match NODE.get_or_init(start_node) {
        Ok(c) => Some(c),
        Err(reason) => {
            eprint_uncaptured(&format!("SKIPPED tests/node.rs {test}: {reason}"));
            None
        }
    }
}

/// The cargo target directory this test was built in.
fn target_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_deprovisioner"));
    exe.parent().and_then(Path::parent).expect("target/debug/deprovisioner").to_path_buf()
}

/// Why the static binary cannot be built here, if it cannot.
fn static_build_missing() -> Option<String> {
    let targets = Command::new("rustup").args(["target", "list", "--installed"]).output().ok()?;
    if !text(&targets.stdout).lines().any(|l| l == "x86_64-unknown-linux-musl") {
        return Some(
            "the x86_64-unknown-linux-musl target is missing (rustup target add x86_64-unknown-linux-musl)".into(),
        );
    }
    if Command::new("musl-gcc").arg("--version").output().is_err() {
        return Some("musl-gcc is missing (apt-get install musl-tools)".into());
    }
    None
}

/// The operator's image, as the Dockerfile builds it: scripts/build-static (the script the
/// Dockerfile runs), then scripts/oci-image (which reads the Dockerfile's final stage), imported
/// into the node's containerd.
fn operator_image(c: &Cluster) -> String {
    let started = Instant::now();
    let bin = target_dir().join("static/deprovisioner");
    // Without the variables cargo sets for a test (ring's build script reads CARGO_MANIFEST_DIR,
    // so they would make this build differ from one run in a shell, and rebuild each time).
    let mut build = Command::new(repo().join("scripts/build-static"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if (k == "CARGO" || k.starts_with("CARGO_")) && !matches!(k.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR") {
            build.env_remove(k);
        }
    }
    let st = build.arg(&bin).status().expect("scripts/build-static");
    assert!(st.success(), "scripts/build-static failed");
    let built = started.elapsed();
    let name = format!("{IMAGE_REPOSITORY}:{IMAGE_TAG}");
    let tar = c.dir.join("operator-image.tar");
    let out = Command::new(repo().join("scripts/oci-image"))
        .current_dir(repo())
        .args(["operator", bin.to_str().unwrap(), &name, tar.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/oci-image: {}", text(&out.stderr));
    let out = Command::new(repo().join("scripts/control-plane"))
        .args(["import", c.dir.to_str().unwrap(), tar.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "importing the image: {}{}", text(&out.stdout), text(&out.stderr));
    eprint_uncaptured(&format!(
        "node: operator image {name}: static build {:.1} s, assembled and imported in {:.1} s",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    ));
    name
}

#[test]
fn the_image_is_assembled_from_the_dockerfile() {
    let plan = |dockerfile: &Path| {
        Command::new(repo().join("scripts/oci-image"))
            .current_dir(repo())
            .args(["plan", "--dockerfile", dockerfile.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = plan(&repo().join("Dockerfile"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["base"], "gcr.io/distroless/static-debian12:nonroot");
    assert_eq!(p["copies"], json!(["/deprovisioner"]));
    assert_eq!(p["user"], "65532:65532");
    assert_eq!(p["entrypoint"], json!(["/deprovisioner"]));
    assert_eq!(p["cmd"], json!(["run"]));
    // Anything the assembly does not reproduce makes it fail, rather than build another image.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (change, want) in [
        ("USER 65532:65532", "USER 65532:65532\nENV RUST_LOG=debug"),
        (
            "COPY --from=build /out/deprovisioner /deprovisioner",
            "COPY --from=build /out/deprovisioner /deprovisioner\nCOPY config.yaml /etc/",
        ),
        ("FROM gcr.io/distroless/static-debian12:nonroot", "FROM gcr.io/distroless/base-debian12:nonroot"),
    ] {
        assert!(dockerfile.contains(change), "the Dockerfile no longer has {change:?}");
        let f = dir.path().join("Dockerfile");
        std::fs::write(&f, dockerfile.replace(change, want)).unwrap();
        let out = plan(&f);
        assert!(!out.status.success(), "a Dockerfile with {want:?} was assembled");
        assert!(text(&out.stderr).contains("scripts/oci-image"), "{}", text(&out.stderr));
    }
}

/// The chart's pods on the node: `helm install` (defaults, 2 replicas, the local image, the
/// Ingress with TLS), Ready through their real probes, one leader, Lumos's call through the
/// Service's ClusterIP removes the binding, so does one over https through the Ingress, and
/// `helm test` passes.
#[tokio::test(flavor = "multi_thread")]
async fn the_chart_runs_on_a_real_node() {
    let Some(c) = node("the_chart_runs_on_a_real_node") else { return };
    if let Some(why) = static_build_missing() {
        eprint_uncaptured(&format!("SKIPPED tests/node.rs the_chart_runs_on_a_real_node: {why}"));
        return;
    }
    let admin = c.admin().await;
    operator_image(c);
    let ingress_ca = ingress_certificate(c);

    let started = Instant::now();
    helm_ok(
        Some(&c.kubeconfig),
        &[
            "install",
            RELEASE,
            "charts/deprovisioner",
            "--namespace",
            NS,
            "--set",
            &format!(
                "replicaCount=2,image.repository={IMAGE_REPOSITORY},image.tag={IMAGE_TAG},tests.image={TEST_IMAGE},\
                 ingress.enabled=true,ingress.className={INGRESS_CLASS},ingress.host={INGRESS_HOST},\
                 ingress.tls.secretName={INGRESS_TLS_SECRET}"
            ),
            "--wait",
            "--timeout",
            "5m",
        ],
    );
    let installed = started.elapsed();
    let pods = kubectl_json(c, &["-n", NS, "get", "pods", "-l", &format!("app.kubernetes.io/instance={RELEASE}")]);
    let pods = pods["items"].as_array().unwrap().clone();
    assert_eq!(pods.len(), 2, "{pods:?}");
    let pod_names: Vec<String> = pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    for p in &pods {
        let ready =
            p["status"]["conditions"].as_array().unwrap().iter().any(|k| k["type"] == "Ready" && k["status"] == "True");
        assert!(ready, "pod not Ready: {p}");
        assert_eq!(p["spec"]["nodeName"], "deprovisioner-node");
        assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0, "{p}");
    }
    eprint_uncaptured(&format!(
        "node: helm install --wait: 2 pods Ready through their probes in {:.1} s",
        installed.as_secs_f64()
    ));

    // Exactly one replica leads: the Lease names one of the pods, and only that pod's log says
    // it started the controllers.
    let leader = wait_leader(c, &pod_names).await;
    let leading: Vec<&String> = pod_names
        .iter()
        .filter(|n| text(&kubectl_ok(c, &["-n", NS, "logs", n]).stdout).contains("holding the leader Lease"))
        .collect();
    assert_eq!(leading, [&leader], "pods whose log says they lead");

    // Lumos's call through the Service's ClusterIP (kube-proxy's rules on this machine).
    let team = unique("node-team");
    namespace(&admin, &team, &[]).await;
    role_binding(&admin, &team, "pair", "view", vec![user("kraven@lumos.com"), user("stays@lumos.com")]).await;
    let app = namespace_policy(&admin, "node", &team).await;
    let secret = webhook_secret(c);
    let url = format!("http://{}:80", service_ip(c));
    let (status, answer) = lumos_call(&url, &secret, &payload(&app, "kraven@lumos.com", &[])).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let record = wait_terminal(&admin, &request_name(&answer), Duration::from_secs(30)).await;
    assert_eq!(phase(&record), Phase::Succeeded);
    assert_eq!(names(&get_rb(&admin, &team, "pair").await.unwrap().subjects), ["User:stays@lumos.com"]);

    lumos_through_the_ingress(c, &admin, &ingress_ca, &secret, &app, &team).await;

    // `helm test`: its pod calls /healthz by the Service's name (the node's resolver).
    let started = Instant::now();
    let out = helm_ok(Some(&c.kubeconfig), &["test", RELEASE, "--namespace", NS, "--timeout", "2m"]);
    assert!(out.contains("Phase:          Succeeded"), "{out}");
    eprint_uncaptured(&format!("node: helm test passed in {:.1} s", started.elapsed().as_secs_f64()));

    let secret = rotate_the_secret_without_a_restart(c, &secret, &pod_names).await;
    // People whose access the takeover stages remove, one per call.
    let crowd: Vec<String> = (0..300).map(|i| format!("p{i}@lumos.com")).collect();
    role_binding(&admin, &team, "crowd", "view", crowd.iter().map(|e| user(e)).collect()).await;
    let mut people = crowd.iter();
    let leader = takeover(c, &admin, &url, &secret, &app, &mut people, Takeover::DeleteThePod(leader)).await;
    takeover(c, &admin, &url, &secret, &app, &mut people, Takeover::KillTheProcess(leader)).await;
    upgrade_under_a_stream_of_calls(c, &admin, &url, &secret, &app, people.cloned().collect(), &team).await;
    uninstall_keeps_the_records(c, &admin).await;
}

/// A CA of the test's own and a certificate from it for the Ingress's host, in the Secret the
/// chart's Ingress names (made before `helm install`, as cert-manager or an admin would).
/// Returns the CA's certificate (PEM), the one root the test's https client trusts.
fn ingress_certificate(c: &Cluster) -> Vec<u8> {
    let dir = c.dir.join("ingress-pki");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.ext"), format!("subjectAltName=DNS:{INGRESS_HOST}\nextendedKeyUsage=serverAuth\n"))
        .unwrap();
    let cn_ca = "/CN=deprovisioner-ingress-test-ca";
    let cn = format!("/CN={INGRESS_HOST}");
    for args in [
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", cn_ca,
        ][..],
        &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", &cn],
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.crt",
            "-days",
            "2",
            "-extfile",
            "tls.ext",
        ],
    ] {
        let out = Command::new("openssl").current_dir(&dir).args(args).output().expect("running openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
    }
    // The namespace first: the Secret must be there when the Ingress is.
    let out = c.kubectl(&["create", "namespace", NS]);
    assert!(out.status.success() || text(&out.stderr).contains("AlreadyExists"), "{}", text(&out.stderr));
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    kubectl_ok(
        c,
        &[
            "-n",
            NS,
            "create",
            "secret",
            "tls",
            INGRESS_TLS_SECRET,
            "--cert",
            crt.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    std::fs::read(dir.join("ca.crt")).unwrap()
}

/// Lumos's real path: a POST to `https://deprovisioner.test:<port>/webhooks/lumos/deprovision`,
/// with the header the admin enters in Lumos (`Authorization: Bearer <secret>`, docs/helm.md),
/// to the node's ingress controller (Traefik, `up --node`), which serves the chart's Ingress:
/// TLS with the certificate of the Ingress's Secret, checked against the test's CA and nothing
/// else (the host name resolved to the controller's address, as DNS would), then routed to a
/// pod. The answer is `SUCCESS` and the person is gone from the binding.
async fn lumos_through_the_ingress(c: &Cluster, admin: &kube::Client, ca: &[u8], secret: &str, app: &str, team: &str) {
    let addr: std::net::SocketAddr =
        std::fs::read_to_string(c.dir.join("node/ingress.addr")).unwrap().trim().parse().unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .resolve(INGRESS_HOST, addr)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("https://{INGRESS_HOST}:{}", addr.port());
    role_binding(admin, team, "via-ingress", "view", vec![user("mysterio@lumos.com"), user("stays@lumos.com")]).await;

    // The controller picks the Ingress, its Secret and the Service's endpoints up from the API
    // server: until then the TLS handshake fails (its default certificate is not the test CA's)
    // or it answers 404. A dry run for nobody shows the route is there (it removes nothing).
    let started = Instant::now();
    loop {
        let last = match lumos_call_with(
            &client,
            &url,
            "?dryRun=true",
            secret,
            &payload("no-such-app", "nobody@lumos.com", &[]),
        )
        .await
        {
            Ok((200, _)) => break,
            Ok((status, answer)) => format!("{status} {answer}"),
            Err(e) => e,
        };
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the Ingress not served at {url} after 60 s: {last}; see {}/node/ingress.log",
            c.dir.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let routed = started.elapsed();

    let sent = Instant::now();
    let (status, answer) = lumos_call_with(&client, &url, "", secret, &payload(app, "mysterio@lumos.com", &[]))
        .await
        .expect("Lumos's call through the Ingress");
    let took = sent.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"], "SUCCESS", "{answer}");
    let record = wait_terminal(admin, &request_name(&answer), Duration::from_secs(30)).await;
    assert_eq!(phase(&record), Phase::Succeeded);
    assert_eq!(names(&get_rb(admin, team, "via-ingress").await.unwrap().subjects), ["User:stays@lumos.com"]);
    // The controller's access log has the call, routed by the Ingress's router.
    let log = std::fs::read_to_string(c.dir.join("node/ingress-access.log")).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("\"POST /webhooks/lumos/deprovision HTTP/") && l.contains(&format!("{NS}-{RELEASE}-"))),
        "the call is not in Traefik's access log:\n{log}"
    );
    eprint_uncaptured(&format!(
        "node: Lumos's call over https through the chart's Ingress (Traefik, TLS from the test CA for {INGRESS_HOST}): SUCCESS in {:.2} s, the binding changed; the route first answered {:.1} s into this stage",
        took.as_secs_f64(),
        routed.as_secs_f64()
    ));
}

/// `helm upgrade` that rolls both pods (a changed pod annotation) while a client sends one
/// distinct Lumos call after another through the Service: every call is answered `SUCCESS`
/// within Lumos's 15 s, no connection is refused or reset, and every `SUCCESS` is true in the
/// cluster (the record finished, the person is gone from the binding).
async fn upgrade_under_a_stream_of_calls(
    c: &'static Cluster,
    admin: &kube::Client,
    url: &str,
    secret: &str,
    app: &str,
    people: Vec<String>,
    team: &str,
) {
    let before: Vec<String> =
        kubectl_json(c, &["-n", NS, "get", "pods", "-l", &format!("app.kubernetes.io/instance={RELEASE}")])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = {
        let (url, secret, app, stop) = (url.to_string(), secret.to_string(), app.to_string(), stop.clone());
        tokio::spawn(async move {
            let mut answered = vec![];
            for email in people {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let sent = Instant::now();
                let result = lumos_call_to(&url, "", &secret, &payload(&app, &email, &[])).await;
                answered.push((email, sent.elapsed(), result.map_err(|e| short_error(&e))));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answered
        })
    };
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        helm(
            Some(&c.kubeconfig),
            &[
                "upgrade",
                RELEASE,
                "charts/deprovisioner",
                "--namespace",
                NS,
                "--reuse-values",
                "--set",
                &format!("podAnnotations.rolled={}", unique("roll")),
                "--wait",
                "--timeout",
                "5m",
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "helm upgrade: {}", text(&out.stderr));
    // The rollout is done when no pod of before is left (they stop after their preStop sleep).
    while kubectl_json(c, &["-n", NS, "get", "pods", "-l", &format!("app.kubernetes.io/instance={RELEASE}")])["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| before.iter().any(|b| p["metadata"]["name"] == b.as_str()))
    {
        assert!(started.elapsed() < Duration::from_secs(180), "the old pods are still there after 3 min");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rolled = started.elapsed();
    // A few more calls to the new pods, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = stream.await.unwrap();
    let bad: Vec<String> = answered
        .iter()
        .filter(|(_, took, r)| {
            !matches!(r, Ok((200, a)) if a["response"] == "SUCCESS") || *took > Duration::from_secs(15)
        })
        .map(|(email, took, r)| format!("{email} after {:.1} s: {r:?}", took.as_secs_f64()))
        .collect();
    assert!(bad.is_empty(), "calls not answered SUCCESS within 15 s during the upgrade: {bad:?}");
    for (_, _, r) in &answered {
        let Ok((_, answer)) = r else { unreachable!() };
        let record = wait_terminal(admin, &request_name(answer), Duration::from_secs(30)).await;
        assert_eq!(phase(&record), Phase::Succeeded);
    }
    let left = names(&get_rb(admin, team, "crowd").await.unwrap().subjects);
    for (email, _, _) in &answered {
        assert!(!left.contains(&format!("User:{email}")), "{email} was answered SUCCESS but is still bound");
    }
    let slowest = answered.iter().map(|(_, t, _)| *t).max().unwrap_or_default();
    eprint_uncaptured(&format!(
        "node: helm upgrade rolled both pods in {:.1} s under a stream of calls: {} calls, every one SUCCESS and true in the cluster, the slowest answered in {:.2} s",
        rolled.as_secs_f64(),
        answered.len(),
        slowest.as_secs_f64()
    ));
}

/// The Secret gets a second line (Lumos's new secret): each pod accepts it, through the mounted
/// volume, without a restart, and the old one too until its line goes. Returns the new secret.
async fn rotate_the_secret_without_a_restart(c: &Cluster, old: &str, pods: &[String]) -> String {
    let new = "rotated-0123456789abcdefghij".to_string();
    let ips: Vec<String> = pods
        .iter()
        .map(|p| kubectl_json(c, &["-n", NS, "get", "pod", p])["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    let set = |value: String| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        kubectl_ok(
            c,
            &[
                "-n",
                NS,
                "patch",
                "secret",
                "deprovisioner-webhook",
                "-p",
                &format!("{{\"data\":{{\"secret\":\"{b64}\"}}}}"),
            ],
        );
    };
    // A dry-run call: 200 when the secret is accepted, 401 when not; nothing is removed.
    let accepted = |ip: String, secret: String| async move {
        let (status, _) = lumos_call_to(
            &format!("http://{ip}:8080"),
            "?dryRun=true",
            &secret,
            &payload("no-such-app", "nobody@lumos.com", &[]),
        )
        .await
        .unwrap();
        // 429: this address sent more than 30 refused calls in a minute (polling); not accepted.
        assert!(matches!(status, 200 | 401 | 429), "answer {status}");
        status == 200
    };
    let started = Instant::now();
    set(format!("{old}\n{new}\n"));
    for ip in &ips {
        wait_until(Duration::from_secs(120), || accepted(ip.clone(), new.clone())).await;
        assert!(accepted(ip.clone(), old.to_string()).await, "the old secret stopped working during the rotation");
    }
    let both = started.elapsed();
    set(format!("{new}\n"));
    for ip in &ips {
        wait_until(Duration::from_secs(120), || async { !accepted(ip.clone(), old.to_string()).await }).await;
        assert!(accepted(ip.clone(), new.clone()).await);
    }
    for p in pods {
        let pod = kubectl_json(c, &["-n", NS, "get", "pod", p]);
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{p} restarted");
    }
    eprint_uncaptured(&format!(
        "node: secret rotation through the mounted Secret, no restart: new secret accepted by both pods {:.1} s after the Secret changed, old one refused {:.1} s after its line went",
        both.as_secs_f64(),
        (started.elapsed() - both).as_secs_f64()
    ));
    new
}

/// Polls `check` (once a second: a refused secret counts against the per-address limit) until
/// it holds.
async fn wait_until<F, Fut>(timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "not true after {timeout:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

enum Takeover {
    /// `kubectl delete pod` (graceful: the operator releases the Lease as it stops).
    DeleteThePod(String),
    /// SIGKILL to the operator's process in the pod (the Lease must expire).
    KillTheProcess(String),
}

/// The leader goes; Lumos calls through the Service (one person each) continue until one is
/// answered SUCCESS with its record finished: the time from the leader's end to that answer is
/// printed. Another pod then holds the Lease. Returns the new leader.
async fn takeover(
    c: &Cluster,
    admin: &kube::Client,
    url: &str,
    secret: &str,
    app: &str,
    people: &mut std::slice::Iter<'_, String>,
    how: Takeover,
) -> String {
    let (what, old) = match &how {
        Takeover::DeleteThePod(p) => ("leader pod deleted", p.clone()),
        Takeover::KillTheProcess(p) => ("leader process killed (SIGKILL)", p.clone()),
    };
    let started = Instant::now();
    match &how {
        Takeover::DeleteThePod(p) => {
            kubectl_ok(c, &["-n", NS, "delete", "pod", p, "--wait=false"]);
        }
        Takeover::KillTheProcess(p) => {
            let pod = kubectl_json(c, &["-n", NS, "get", "pod", p]);
            let id = pod["status"]["containerStatuses"][0]["containerID"]
                .as_str()
                .unwrap()
                .trim_start_matches("containerd://")
                .to_string();
            let out = Command::new(repo().join("scripts/control-plane"))
                .args(["kill", c.dir.to_str().unwrap(), &id])
                .output()
                .unwrap();
            assert!(out.status.success(), "killing the leader: {}", text(&out.stderr));
        }
    }
    let (mut calls, mut errors) = (0, Vec::new());
    let (answered, call) = loop {
        let email = people.next().expect("enough people for the takeover stages");
        calls += 1;
        let sent = Instant::now();
        match lumos_call_to(url, "", secret, &payload(app, email, &[])).await {
            Ok((200, answer)) if answer["response"] == "SUCCESS" => {
                let call = sent.elapsed();
                let record = wait_terminal(admin, &request_name(&answer), Duration::from_secs(30)).await;
                assert_eq!(phase(&record), Phase::Succeeded);
                break (started.elapsed(), call);
            }
            Ok((status, answer)) => errors.push(format!("{status} {answer}")),
            Err(e) => errors.push(short_error(&e)),
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no SUCCESS within 60 s of the {what}: {errors:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if matches!(how, Takeover::DeleteThePod(_)) {
        // A graceful stop refuses no call: the pod keeps serving (preStop sleep) while it is
        // taken out of the Service, then answers what it holds. Checked with a call after call
        // from the delete until the old pod is gone.
        assert!(errors.is_empty(), "calls not answered SUCCESS while the leader pod stopped gracefully: {errors:?}");
        let mut during = 0;
        while c.kubectl(&["-n", NS, "get", "pod", &old, "-o", "name"]).status.success() {
            assert!(started.elapsed() < Duration::from_secs(90), "the deleted pod is still there after 90 s");
            let email = people.next().expect("enough people for the graceful stop");
            match lumos_call_to(url, "", secret, &payload(app, email, &[])).await {
                Ok((200, answer)) if answer["response"] == "SUCCESS" => during += 1,
                Ok((status, answer)) => errors.push(format!("{status} {answer}")),
                Err(e) => errors.push(short_error(&e)),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(errors.is_empty(), "calls not answered SUCCESS while the leader pod stopped gracefully: {errors:?}");
        eprint_uncaptured(&format!(
            "node: leader pod deleted: {during} more calls while it stopped ({:.1} s until it was gone), every one SUCCESS",
            started.elapsed().as_secs_f64()
        ));
    }
    let pods = kubectl_json(c, &["-n", NS, "get", "pods", "-l", &format!("app.kubernetes.io/instance={RELEASE}")]);
    let names: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let leader = wait_leader(c, &names).await;
    if matches!(how, Takeover::DeleteThePod(_)) {
        assert_ne!(leader, old, "the deleted pod still leads");
    }
    eprint_uncaptured(&format!(
        "node: {what}: the next request answered SUCCESS {:.2} s later (that call took {:.2} s); {calls} calls, not SUCCESS: {errors:?}; {leader} leads",
        answered.as_secs_f64(),
        call.as_secs_f64(),
    ));
    leader
}

/// A client error in a few words (the kind of connection failure).
fn short_error(e: &str) -> String {
    for (needle, says) in [
        ("ConnectionRefused", "connection refused"),
        ("ConnectionReset", "connection reset"),
        ("IncompleteMessage", "connection closed before the answer"),
        ("TimedOut", "timed out"),
        ("kind: Timeout", "timed out"),
    ] {
        if e.contains(needle) {
            return says.into();
        }
    }
    e.chars().take(160).collect()
}

/// `helm uninstall`: no pod of the release remains; the records (the CRDs stay) do.
async fn uninstall_keeps_the_records(c: &Cluster, admin: &kube::Client) {
    use deprovisioner::crd::DeprovisionRequest;
    let records =
        kube::Api::<DeprovisionRequest>::all(admin.clone()).list(&Default::default()).await.unwrap().items.len();
    assert!(records > 0);
    helm_ok(Some(&c.kubeconfig), &["uninstall", RELEASE, "--namespace", NS, "--wait", "--timeout", "2m"]);
    wait_until(Duration::from_secs(60), || async {
        kubectl_json(c, &["-n", NS, "get", "pods"])["items"].as_array().unwrap().is_empty()
    })
    .await;
    let after =
        kube::Api::<DeprovisionRequest>::all(admin.clone()).list(&Default::default()).await.unwrap().items.len();
    assert_eq!(after, records, "records lost with the release");
    eprint_uncaptured(&format!("node: helm uninstall: no pods left, {after} records kept"));
}

fn webhook_secret(c: &Cluster) -> String {
    use base64::Engine;
    let s = kubectl_json(c, &["-n", NS, "get", "secret", "deprovisioner-webhook"]);
    let b = base64::engine::general_purpose::STANDARD.decode(s["data"]["secret"].as_str().unwrap()).unwrap();
    String::from_utf8(b).unwrap()
}

fn service_ip(c: &Cluster) -> String {
    let svc = kubectl_json(c, &["-n", NS, "get", "service", RELEASE]);
    svc["spec"]["clusterIP"].as_str().unwrap().to_string()
}

/// POSTs a Lumos payload to the webhook at `base` exactly as Lumos does.
async fn lumos_call(base: &str, secret: &str, payload: &Value) -> (u16, Value) {
    lumos_call_to(base, "", secret, payload).await.expect("calling the webhook through the Service")
}

/// The same, with a query (`?dryRun=true`); a connection error is returned, not a panic.
async fn lumos_call_to(base: &str, query: &str, secret: &str, payload: &Value) -> Result<(u16, Value), String> {
    lumos_call_with(&http_client(), base, query, secret, payload).await
}

/// The same, with `client` (the https one for the Ingress).
async fn lumos_call_with(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    secret: &str,
    payload: &Value,
) -> Result<(u16, Value), String> {
    let resp = client
        .post(format!("{base}/webhooks/lumos/deprovision{query}"))
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(payload).unwrap())
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| format!("{e:?}"))?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::String(body))))
}

/// The pod holding the Lease (its identity starts with the pod's name), once one does.
async fn wait_leader(c: &Cluster, pods: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lease = kubectl_json(c, &["-n", NS, "get", "lease", RELEASE]);
        let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or_default().to_string();
        let holders: Vec<&String> = pods.iter().filter(|p| holder.starts_with(&format!("{p}-"))).collect();
        if holders.len() == 1 {
            return holders[0].clone();
        }
        assert!(Instant::now() < deadline, "no pod holds the Lease: {lease}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
