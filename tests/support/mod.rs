//! Test harness: a real etcd + kube-apiserver started by `scripts/control-plane`, the operator
//! binary run as a process with the ServiceAccount identity `deploy/rbac.yaml` grants, and
//! helpers that talk to both exactly as Lumos and an admin would.
#![allow(dead_code)]

pub mod activity_store;
pub mod fleet;
pub mod sdk;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use deprovisioner::crd::{DeprovisionPolicy, DeprovisionRequest, DeprovisionRequestSpec, Phase};
use deprovisioner::fixtures;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running control plane, shared by every test of one test binary.
pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub operator_kubeconfig: PathBuf,
    pub bin_dir: PathBuf,
}

impl Cluster {
    /// Runs a binary of the control plane (kubectl) against it.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.bin_dir.join("kubectl"))
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// A kubeconfig acting as another ServiceAccount of the `deprovisioner` namespace.
    pub fn kubeconfig_as(&self, sa: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.operator_kubeconfig).unwrap();
        let path = self.dir.join(format!("{sa}.kubeconfig"));
        let text = text.replace(
            "system:serviceaccount:deprovisioner:deprovisioner",
            &format!("system:serviceaccount:deprovisioner:{sa}"),
        );
        // Written whole under another name, then renamed: tests running at once ask for the same
        // identity's kubeconfig, and a reader must never see it half written.
        let partial = self.dir.join(format!("{}.kubeconfig.partial", unique(sa)));
        std::fs::write(&partial, text).unwrap();
        std::fs::rename(&partial, &path).unwrap();
        path
    }

    pub fn apiserver_pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.join("apiserver.pid")).unwrap().trim().parse().unwrap()
    }
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The control plane shared by the tests of this binary, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

/// A control plane of the caller's own (for tests that stop processes), alive until the test
/// process exits.
pub fn own_cluster() -> &'static Cluster {
    Box::leak(Box::new(Cluster::start()))
}

impl Cluster {
    /// Starts etcd and kube-apiserver (torn down when the test process exits, however it exits),
    /// installs the CRDs from `crds/` and the operator's RBAC from `deploy/rbac.yaml`. The
    /// Kubernetes version is the one `DEPROVISIONER_K8S` selects (`oldest`, or the newest when
    /// unset), read by `scripts/control-plane` from this process's environment.
    pub fn start() -> Cluster {
        let dir = tempfile::Builder::new().prefix("deprovisioner-test-").tempdir().unwrap().keep();
        Cluster::start_in(dir, &[])
    }

    /// As [`Cluster::start`], in `dir`, with options of `scripts/control-plane up` (`--audit …`).
    fn start_in(dir: PathBuf, up_options: &[&str]) -> Cluster {
        let out = Command::new(repo().join("scripts/control-plane"))
            .arg("up")
            .args(up_options)
            .arg(dir.to_str().unwrap())
            .env("DEPROVISIONER_OWNER_PID", std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/control-plane up");
        assert!(out.status.success(), "control plane did not start");
        let c = Cluster::from_env(dir, &out.stdout);
        let ns = c.kubectl(&["create", "namespace", "deprovisioner"]);
        assert!(ns.status.success(), "{}", String::from_utf8_lossy(&ns.stderr));
        for f in ["crds/crds.yaml", "deploy/rbac.yaml"] {
            let out = c.kubectl(&["apply", "-f", repo().join(f).to_str().unwrap()]);
            assert!(out.status.success(), "applying {f}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let out = c.kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        c
    }

    /// The control plane `scripts/control-plane up` started in `dir`, from the environment lines
    /// it printed (`export PATH=<its binaries>:…`).
    fn from_env(dir: PathBuf, printed: &[u8]) -> Cluster {
        let bin_dir = String::from_utf8_lossy(printed)
            .lines()
            .find_map(|l| l.strip_prefix("export PATH=").and_then(|p| p.split(':').next()))
            .map(PathBuf::from)
            .expect("PATH line");
        Cluster {
            kubeconfig: dir.join("kubeconfig"),
            operator_kubeconfig: dir.join("operator.kubeconfig"),
            dir,
            bin_dir,
        }
    }

    /// An admin client (system:masters) for this control plane.
    pub async fn admin(&self) -> Client {
        client_for(&self.kubeconfig).await
    }
}

/// An admin client (system:masters) for setting up and checking the cluster.
pub async fn admin() -> Client {
    client_for(&cluster().kubeconfig).await
}

pub async fn client_for(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// The helm that scripts/control-plane installs (building it if missing).
pub fn helm_bin() -> PathBuf {
    let out = Command::new(repo().join("scripts/control-plane")).arg("helm-bin").output().unwrap();
    let helm = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("helm");
    if !helm.exists() {
        let st = Command::new(repo().join("scripts/control-plane")).arg("build").status().unwrap();
        assert!(st.success(), "scripts/control-plane build failed");
    }
    helm
}

/// A helm command run from the repository, with its caches and configuration in the temporary
/// directory (never the user's).
pub fn helm_command() -> Command {
    let mut cmd = Command::new(helm_bin());
    cmd.current_dir(repo())
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("deprovisioner-helm/cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("deprovisioner-helm/config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("deprovisioner-helm/data"));
    cmd
}

// --- helm and kubectl (tests/chart.rs, tests/node.rs) ----------------------------------------

/// Bytes a command printed, as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs helm (against `kubeconfig` when given, else against no cluster); returns the whole output.
pub fn helm(kubeconfig: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = helm_command();
    cmd.args(args);
    match kubeconfig {
        Some(k) => cmd.env("KUBECONFIG", k),
        None => cmd.env_remove("KUBECONFIG"),
    };
    cmd.output().expect("running helm")
}

/// Runs helm and asserts it succeeded; returns stdout.
pub fn helm_ok(kubeconfig: Option<&Path>, args: &[&str]) -> String {
    let out = helm(kubeconfig, args);
    assert!(out.status.success(), "helm {args:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Runs kubectl against `c` and asserts it succeeded; returns the whole output.
pub fn kubectl_ok(c: &Cluster, args: &[&str]) -> std::process::Output {
    let out = c.kubectl(args);
    assert!(out.status.success(), "kubectl {args:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    out
}

/// `kubectl <args> -o json`, asserted to succeed, as JSON.
pub fn kubectl_json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_slice(&kubectl_ok(c, &all).stdout).unwrap()
}

/// Applies the chart's RBAC (templates/rbac.yaml, release "deprovisioner" in namespace
/// "deprovisioner", as deploy/rbac.yaml) rendered with `--set` values, as a user installing the
/// chart with them would get it.
pub fn apply_chart_rbac(c: &Cluster, sets: &[&str]) {
    apply_chart(c, "templates/rbac.yaml", sets);
}

/// Renders one template of the chart (release "deprovisioner" in namespace "deprovisioner") with
/// `--set` values and applies it to `c`.
pub fn apply_chart(c: &Cluster, template: &str, sets: &[&str]) {
    let mut cmd = helm_command();
    cmd.env_remove("KUBECONFIG").args([
        "template",
        "deprovisioner",
        "charts/deprovisioner",
        "--namespace",
        "deprovisioner",
        "--kube-version",
        "1.37.2",
        "--set",
        "webhook.secret.existingSecret=deprovisioner-webhook",
        "--show-only",
        template,
    ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("running helm");
    assert!(out.status.success(), "helm template failed: {}", String::from_utf8_lossy(&out.stderr));
    let file = c.dir.join(format!("{}.yaml", unique("chart")));
    std::fs::write(&file, &out.stdout).unwrap();
    let out = c.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "applying the chart's {template}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{n}", t % 100_000)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The operator, run as a process.
pub struct Operator {
    child: Option<Child>,
    pub url: String,
    pub secret_file: PathBuf,
    pub log: PathBuf,
    pid_file: PathBuf,
}

/// How to start an operator.
pub struct OperatorOpts {
    pub cluster: &'static Cluster,
    pub kubeconfig: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl OperatorOpts {
    /// Defaults on a given control plane.
    pub fn on(cluster: &'static Cluster) -> Self {
        OperatorOpts { cluster, kubeconfig: cluster.operator_kubeconfig.clone(), args: vec![], env: vec![] }
    }

    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Adds environment variables.
    pub fn env(mut self, vars: &[(&str, &str)]) -> Self {
        self.env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }
}

impl Default for OperatorOpts {
    fn default() -> Self {
        OperatorOpts::on(cluster())
    }
}

pub const SECRET: &str = "test-secret-0123456789abcdef";

impl Operator {
    pub fn start(opts: OperatorOpts) -> Operator {
        let c = opts.cluster;
        let id = unique("op");
        let secret_file = c.dir.join(format!("{id}.secret"));
        if !secret_file.exists() {
            std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        }
        Self::start_with_secret(opts, id, secret_file)
    }

    fn start_with_secret(opts: OperatorOpts, id: String, secret_file: PathBuf) -> Operator {
        let mut op = Self::spawn_with_secret(opts, id, secret_file);
        op.url = format!("http://{}", op.wait_listening());
        op
    }

    /// Starts the operator without waiting for it to listen (`url` is empty; [`Operator::listening`]
    /// tells the address once it is logged).
    pub fn spawn(opts: OperatorOpts) -> Operator {
        let id = unique("op");
        let secret_file = opts.cluster.dir.join(format!("{id}.secret"));
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        Self::spawn_with_secret(opts, id, secret_file)
    }

    fn spawn_with_secret(opts: OperatorOpts, id: String, secret_file: PathBuf) -> Operator {
        let c = opts.cluster;
        let log = c.dir.join(format!("{id}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_deprovisioner"))
            .arg("run")
            .args(["--kubeconfig", opts.kubeconfig.to_str().unwrap()])
            // Port 0: the operator binds a free port itself and logs it (a port picked here and
            // bound there could be taken in between by another test's operator).
            .args(["--listen", "127.0.0.1:0"])
            .args(["--secret-file", secret_file.to_str().unwrap()])
            .args(["--service-account", "deprovisioner/deprovisioner"])
            .args(["--protect-service-account", "deprovisioner/deprovisioner-lumos-agent"])
            .args(["--namespace", "deprovisioner"])
            .args(if opts.args.iter().any(|a| a == "--log-level") {
                &[][..]
            } else {
                &["--log-level", "info,deprovisioner=debug"][..]
            })
            .args(&opts.args)
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("KUBECONFIG")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("starting the operator");
        let pid_file = c.dir.join(format!("{id}.pid"));
        std::fs::write(&pid_file, child.id().to_string()).unwrap();
        Operator { child: Some(child), url: String::new(), secret_file, log, pid_file }
    }

    /// The address the operator logged it listens on, if it has yet (text or `--log-format json`).
    pub fn listening(&self) -> Option<String> {
        let line = strip_ansi(&self.log_text()).lines().find(|l| l.contains("webhook listening"))?.to_string();
        if let Ok(json) = serde_json::from_str::<Value>(&line) {
            return json["fields"]["addr"].as_str().map(str::to_string);
        }
        line.split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|a| a.trim_matches('"').to_string())
    }

    /// The address the operator logged it listens on, once it does.
    fn wait_listening(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(addr) = self.listening() {
                return addr;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("operator exited ({st}) before listening; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("operator did not listen within 30s; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the operator is running").id()
    }

    /// Sends a signal by name (`TERM`, `STOP`, …).
    pub fn signal(&self, name: &str) {
        let st = Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().unwrap();
        assert!(st.success(), "kill -{name}");
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// POSTs a body to the Lumos endpoint with the given headers.
    pub async fn post_raw(&self, path_query: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value, Duration) {
        // The client is built first: building one reads the system's TLS roots (tens of ms).
        let client = http_client();
        let started = Instant::now();
        let mut req = client.post(format!("{}{path_query}", self.url)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("HTTP call to the operator");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json, started.elapsed())
    }

    /// POSTs a Lumos payload exactly as Lumos does.
    pub async fn lumos(&self, payload: &Value) -> (u16, Value, Duration) {
        self.lumos_to("/webhooks/lumos/deprovision", payload).await
    }

    pub async fn lumos_to(&self, path_query: &str, payload: &Value) -> (u16, Value, Duration) {
        let auth = format!("Bearer {SECRET}");
        self.post_raw(
            path_query,
            &[("authorization", &auth), ("content-type", "application/json")],
            serde_json::to_vec(payload).unwrap(),
        )
        .await
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A Lumos payload for `app` and `email` with the given permission values.
pub fn payload(app: &str, email: &str, perms: &[&str]) -> Value {
    serde_json::json!({
        "application": {"app_id": app, "instance_id": "inst-1", "user_friendly_label": app},
        "permissions": perms.iter().map(|p| serde_json::json!({"label": p, "value": p, "type": "PERMISSION", "source": "MANUAL"})).collect::<Vec<_>>(),
        "user": {"email": "admin@lumos.com", "given_name": "Ad", "family_name": "Min"},
        "target_user": {"email": email, "given_name": "Target", "family_name": "User"},
        "request_comment": "access review closed",
        "custom_fields": {"username": email.split('@').next().unwrap()}
    })
}

/// Creates a Namespace with these labels.
pub async fn namespace(client: &Client, name: &str, labels: &[(&str, &str)]) -> Namespace {
    let ns = fixtures::namespace(name, labels);
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap()
}

/// Creates a RoleBinding of the ClusterRole `role` (built with [`fixtures::role_binding`] for
/// anything more).
pub async fn role_binding(client: &Client, ns: &str, name: &str, role: &str, subjects: Vec<Subject>) -> RoleBinding {
    create_role_binding(client, fixtures::role_binding(ns, name).role(role).subjects(subjects).build()).await
}

/// Creates a RoleBinding in its namespace; returns it as stored.
pub async fn create_role_binding(client: &Client, rb: RoleBinding) -> RoleBinding {
    let ns = rb.metadata.namespace.clone().expect("a RoleBinding needs a namespace");
    Api::<RoleBinding>::namespaced(client.clone(), &ns).create(&PostParams::default(), &rb).await.unwrap()
}

/// Creates a ClusterRoleBinding of the ClusterRole `role` with these labels.
pub async fn cluster_role_binding(
    client: &Client,
    name: &str,
    role: &str,
    labels: &[(&str, &str)],
    subjects: Vec<Subject>,
) -> ClusterRoleBinding {
    let crb = fixtures::cluster_role_binding(name).role(role).labels(labels).subjects(subjects).build();
    Api::<ClusterRoleBinding>::all(client.clone()).create(&PostParams::default(), &crb).await.unwrap()
}

/// Creates a DeprovisionPolicy from its spec written as JSON.
pub async fn policy(client: &Client, name: &str, spec: Value) -> DeprovisionPolicy {
    Api::<DeprovisionPolicy>::all(client.clone())
        .create(&PostParams::default(), &fixtures::policy(name, spec))
        .await
        .unwrap()
}

/// Creates a DeprovisionRequest as a person would (`kubectl apply`); returns its name.
pub async fn create_request(client: &Client, name: &str, spec: DeprovisionRequestSpec) -> String {
    Api::<DeprovisionRequest>::all(client.clone())
        .create(&PostParams::default(), &fixtures::request(name, spec))
        .await
        .unwrap();
    name.to_string()
}

/// A policy for a new Lumos app: the target user (by email) is removed from every RoleBinding in
/// `ns`. Returns the app id.
pub async fn namespace_policy(client: &Client, prefix: &str, ns: &str) -> String {
    let app = unique(&format!("{prefix}-app"));
    policy(
        client,
        &unique(&format!("{prefix}-policy")),
        serde_json::json!({
            "application": {"appId": app},
            "subjects": [{"kind": "User", "name": "{{target_user.email}}"}],
            "rules": [{"roleBindings": {"namespaces": [ns]}}]
        }),
    )
    .await;
    app
}

pub async fn get_rb(client: &Client, ns: &str, name: &str) -> Option<RoleBinding> {
    Api::<RoleBinding>::namespaced(client.clone(), ns).get_opt(name).await.unwrap()
}

pub async fn get_crb(client: &Client, name: &str) -> Option<ClusterRoleBinding> {
    Api::<ClusterRoleBinding>::all(client.clone()).get_opt(name).await.unwrap()
}

/// Subject names of a binding, in order.
pub fn names(subjects: &Option<Vec<Subject>>) -> Vec<String> {
    subjects.iter().flatten().map(|s| format!("{}:{}", s.kind, s.name)).collect()
}

/// The request named in a Lumos answer's message (`deprovisionrequest/<name>`).
pub fn request_name(answer: &Value) -> String {
    let msg = answer["msg"].as_str().unwrap_or_default();
    let i = msg.find("deprovisionrequest/").unwrap_or_else(|| panic!("no request named in {msg:?}"));
    msg[i + "deprovisionrequest/".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect()
}

pub async fn get_request(client: &Client, name: &str) -> DeprovisionRequest {
    Api::<DeprovisionRequest>::all(client.clone()).get(name).await.unwrap()
}

/// Waits until the request reaches a terminal phase.
pub async fn wait_terminal(client: &Client, name: &str, timeout: Duration) -> DeprovisionRequest {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(r)) = Api::<DeprovisionRequest>::all(client.clone()).get_opt(name).await
            && r.status.as_ref().is_some_and(|s| s.phase.is_terminal())
        {
            return r;
        }
        assert!(Instant::now() < deadline, "{name} not terminal after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests whose labels say they are for this target email.
pub async fn requests_for(client: &Client, email: &str) -> Vec<DeprovisionRequest> {
    let lp = ListParams::default().labels(&format!(
        "{}={}",
        deprovisioner::webhook::naming::LABEL_TARGET,
        deprovisioner::webhook::naming::email_hash(email)
    ));
    Api::<DeprovisionRequest>::all(client.clone()).list(&lp).await.unwrap().items
}

/// Event notes about a request (events of cluster-scoped objects land in `default`).
pub async fn events_for(client: &Client, request: &str) -> Vec<(String, String)> {
    // Events are published off the request's path (after it, once the controller is idle): wait
    // until some are there and no more come for a moment.
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let read = || async {
        let mut events: Vec<(String, String)> = (api.list(&ListParams::default()).await.unwrap().items.into_iter())
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(request))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect();
        events.sort();
        events
    };
    let until = std::time::Instant::now() + Duration::from_secs(15);
    let mut last = read().await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = read().await;
        if (!now.is_empty() && now == last) || std::time::Instant::now() > until {
            return now;
        }
        last = now;
    }
}

pub fn phase(r: &DeprovisionRequest) -> Phase {
    r.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

pub fn name_of<K: ResourceExt>(k: &K) -> String {
    k.name_any()
}

/// Text without ANSI colour sequences (the operator's text log colours its fields).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A process stopped (SIGSTOP) until dropped (SIGCONT), e.g. the API server during an outage.
pub struct Frozen(i32);

impl Frozen {
    pub fn freeze(pid: i32) -> Frozen {
        assert!(Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap().success());
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

/// Stores finished records `history-{i}` for `i` in `range` (32 writes at a time): a history the
/// operator must not pay for in memory.
pub async fn store_finished_records(client: &Client, range: std::ops::Range<usize>) {
    use deprovisioner::crd::DeprovisionRequestStatus;
    use futures::StreamExt;
    let api: Api<DeprovisionRequest> = Api::all(client.clone());
    futures::stream::iter(range)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("history-{i}");
                let spec =
                    fixtures::request_spec("history", &format!("person{i}@lumos.com")).permissions(["view"]).build();
                let mut obj = api.create(&PostParams::default(), &fixtures::request(&name, spec)).await.unwrap();
                obj.status = Some(DeprovisionRequestStatus {
                    phase: Phase::Succeeded,
                    completed_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::now(),
                    )),
                    message: Some("Removed person from RoleBinding team/view".into()),
                    ..Default::default()
                });
                api.replace_status(&name, &PostParams::default(), &obj).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// A field of `/proc/PID/status` in MiB (`VmRSS:`, `VmHWM:`).
pub fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib / 1024.0
}

/// A control plane with one real node (`scripts/control-plane up --node`: containerd, kubelet,
/// the controller manager, the scheduler, kube-proxy), torn down when the test process exits.
/// Nothing is installed in it. `Err(reason)` when this machine cannot run a node (the script's
/// exit status 3); any other failure to start panics.
pub fn start_node() -> Result<Cluster, String> {
    let dir = tempfile::Builder::new().prefix("deprovisioner-node-").tempdir().unwrap().keep();
    let out = Command::new(repo().join("scripts/control-plane"))
        .args(["up", "--node", dir.to_str().unwrap()])
        .env("DEPROVISIONER_OWNER_PID", std::process::id().to_string())
        .stderr(Stdio::piped())
        .output()
        .expect("running scripts/control-plane up --node");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() == Some(3) {
        let _ = std::fs::remove_dir_all(&dir);
        let reason = stderr.lines().rev().find(|l| l.contains("cannot run a node here")).unwrap_or("no reason given");
        return Err(reason.trim_start_matches("control-plane: ").to_string());
    }
    assert!(out.status.success(), "the node did not start (scripts/control-plane up --node):\n{stderr}");
    for line in stderr.lines().filter(|l| l.contains("Ready after") || l.contains("ready at")) {
        eprint_uncaptured(line);
    }
    Ok(Cluster::from_env(dir, &out.stdout))
}

/// Writes to the test process's stderr past libtest's capture (which takes `print!` and
/// `eprint!` only), so `make test` shows it: skip reasons, timings.
pub fn eprint_uncaptured(text: &str) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = e.write_all(b"\n");
    }
}

/// The API server's request counters (`apiserver_request_total`) by verb and resource.
pub fn api_requests(cl: &Cluster) -> std::collections::BTreeMap<String, f64> {
    let out = cl.kubectl(&["get", "--raw", "/metrics"]);
    let mut counts = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let label = |k: &str| {
            line.split(&format!("{k}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_string()
        };
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let sub = label("subresource");
        let key =
            format!("{} {}{}", label("verb"), label("resource"), if sub.is_empty() { sub } else { format!("/{sub}") });
        *counts.entry(key).or_default() += value;
    }
    counts
}

// --- the API server's audit webhook (tests/activity.rs, tests/bench.rs) ---------------------

/// The audit endpoint's bearer token in tests (never the webhook's [`SECRET`]).
pub const AUDIT_TOKEN: &str = "audit-token-0123456789abcdef";

/// A control plane whose API server sends its audit events to an operator's audit endpoint.
pub struct AuditCluster {
    pub cluster: &'static Cluster,
    /// The port on 127.0.0.1 the API server sends its batches to (`POST /audit`).
    pub port: u16,
    /// The file holding the audit token ([`AUDIT_TOKEN`] unless given).
    pub token_file: PathBuf,
    /// The endpoint's serving certificate and key (PEM) and the CA that signed the certificate.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The API server's audit files and the receiver's side, given by a test (e.g. rendered by the
/// chart) for [`audit_cluster_with`].
pub struct AuditFiles {
    /// `--audit-policy-file`.
    pub policy: PathBuf,
    /// `--audit-webhook-config-file`: it must send to `https://127.0.0.1:<port>/audit`.
    pub kubeconfig: PathBuf,
    pub port: u16,
    pub token_file: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A control plane of the caller's own (not the shared one, which it would slow) whose API
/// server audits every request at Metadata level and sends batches at least every second to
/// `https://127.0.0.1:<port>/audit` with [`AUDIT_TOKEN`] (`scripts/control-plane up --audit`); the
/// operator's identity has the chart's RBAC with `activity.enabled` (the activity store's Role).
pub fn audit_cluster() -> AuditCluster {
    let dir = tempfile::Builder::new().prefix("deprovisioner-audit-").tempdir().unwrap().keep();
    let token_file = dir.join("audit.token");
    std::fs::write(&token_file, format!("{AUDIT_TOKEN}\n")).unwrap();
    let port = free_port();
    // https: the API server sends its token only over TLS (the script mints the receiver's
    // certificate from the control plane's CA).
    let url = format!("https://127.0.0.1:{port}/audit");
    let cluster: &'static Cluster =
        Box::leak(Box::new(Cluster::start_in(dir, &["--audit", &url, token_file.to_str().unwrap()])));
    apply_chart_rbac(cluster, &["activity.enabled=true"]);
    let pki = cluster.dir.join("pki");
    AuditCluster {
        cluster,
        port,
        token_file,
        cert: pki.join("audit-receiver.crt"),
        key: pki.join("audit-receiver.key"),
        ca: pki.join("ca.crt"),
    }
}

/// As [`audit_cluster`], with the API server's audit policy and webhook kubeconfig exactly as
/// given (`scripts/control-plane up --audit-files`), and the receiver's token, certificate and
/// key from `files`.
pub fn audit_cluster_with(files: AuditFiles) -> AuditCluster {
    let dir = tempfile::Builder::new().prefix("deprovisioner-audit-").tempdir().unwrap().keep();
    let cluster: &'static Cluster = Box::leak(Box::new(Cluster::start_in(
        dir,
        &["--audit-files", files.policy.to_str().unwrap(), files.kubeconfig.to_str().unwrap()],
    )));
    apply_chart_rbac(cluster, &["activity.enabled=true"]);
    let AuditFiles { port, token_file, cert, key, ca, .. } = files;
    AuditCluster { cluster, port, token_file, cert, key, ca }
}

impl OperatorOpts {
    /// Serves the audit endpoint (https) on the port `ac`'s API server sends its batches to.
    pub fn audit(self, ac: &AuditCluster) -> Self {
        let listen = format!("127.0.0.1:{}", ac.port);
        self.args(&["--audit-listen", &listen, "--audit-token-file", ac.token_file.to_str().unwrap()]).args(&[
            "--audit-tls-cert-file",
            ac.cert.to_str().unwrap(),
            "--audit-tls-key-file",
            ac.key.to_str().unwrap(),
        ])
    }
}

impl Operator {
    /// Waits until the operator logs that its audit endpoint listens.
    pub fn wait_audit_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !strip_ansi(&self.log_text()).contains("audit endpoint listening") {
            assert!(Instant::now() < deadline, "no audit endpoint within 30s; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Cluster {
    /// A kubeconfig authenticating as `user` (in `groups`) with a client certificate of this
    /// control plane's CA (`scripts/control-plane client-cert`).
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> PathBuf {
        let out = Command::new(repo().join("scripts/control-plane"))
            .args(["client-cert", self.dir.to_str().unwrap(), user])
            .args(groups)
            .output()
            .expect("running scripts/control-plane client-cert");
        assert!(out.status.success(), "client-cert: {}", text(&out.stderr));
        PathBuf::from(text(&out.stdout).trim())
    }
}

/// An https client trusting the CA of `ac`'s audit endpoint certificate.
pub fn audit_client(ac: &AuditCluster) -> reqwest::Client {
    let ca = std::fs::read(&ac.ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The API server's audit counters: events it generated (`apiserver_audit_event_total`) and
/// events its backends failed to send or dropped (`apiserver_audit_error_total`, every plugin).
pub fn audit_counters(cl: &Cluster) -> (f64, f64) {
    let out = cl.kubectl(&["get", "--raw", "/metrics"]);
    let (mut events, mut errors) = (0.0, 0.0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let value = || line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        if line.starts_with("apiserver_audit_event_total") {
            events += value();
        } else if line.starts_with("apiserver_audit_error_total") {
            errors += value();
        }
    }
    (events, errors)
}
