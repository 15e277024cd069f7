//! SIGTERM at any moment of start-up ends `deprovisioner run` promptly, with exit status 0 and the
//! leader Lease released: the release binary started and stopped many times on the real control
//! plane, the signal sent at random points of each phase of its start-up.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// How long a stopped operator may take to exit. Nothing is in flight in these starts, so the
/// drain is immediate; what remains is the controllers' stop and the Lease's release (two or
/// three API calls). The pod's grace period is 30 s and `--shutdown-drain` 12 s.
const EXIT_BOUND: Duration = Duration::from_secs(5);

/// Exits slower than this are shown (with their log), though within the bound.
const SLOW: Duration = Duration::from_secs(1);

/// Starts (and SIGTERMs) in all, each phase an equal share; `SHUTDOWN_ITERATIONS` runs more.
const ITERATIONS: usize = 60;

/// RoleBindings in the cluster, so that the binding index's first list takes long enough to be
/// caught in the middle.
const BINDINGS: usize = 2000;

/// Who holds the Lease while the operator under test follows.
const OTHER: &str = "another-replica";

/// Where in its start-up the operator is stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// After it says it handles signals, before it listens (the client, the CRD check, the
    /// watches of the binding index and the policies starting).
    Starting,
    /// From the moment it listens: the binding index's first list, the Lease being taken.
    Listening,
    /// From the moment it holds the Lease: the controllers starting (their watches' first lists).
    Leading,
    /// As soon as `/readyz` answers 200 (how a new user tried it).
    Ready,
    /// While another replica holds the Lease and this one follows.
    Following,
}

const PHASES: [Phase; 5] = [Phase::Starting, Phase::Listening, Phase::Leading, Phase::Ready, Phase::Following];

/// A small xorshift generator: the delays differ per run, and a run is replayed with the seed it
/// printed (`SHUTDOWN_SEED`).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
async fn sigterm_at_any_moment_of_start_up_exits_zero_promptly_with_the_lease_released() {
    let c = admin().await;
    many_bindings(&c, BINDINGS).await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), "deprovisioner");
    let seed = std::env::var("SHUTDOWN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("SHUTDOWN_SEED={seed}");
    let mut rng = Rng(seed);
    let iterations = std::env::var("SHUTDOWN_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(ITERATIONS);
    let mut failures: Vec<String> = vec![];
    let mut slowest = Duration::ZERO;
    let mut slow = vec![];
    let mut index_listing = 0;
    let started = Instant::now();
    for i in 0..iterations {
        let phase = PHASES[i % PHASES.len()];
        if phase == Phase::Following {
            hold(&leases, OTHER).await;
        }
        let mut op = Operator::spawn(OperatorOpts::default());
        let delay = Duration::from_millis(rng.below(match phase {
            Phase::Starting => 150,
            // The index's first list takes a few hundred ms here: most stops land inside it.
            Phase::Listening => 100,
            Phase::Leading => 100,
            Phase::Ready => 1,
            Phase::Following => 500,
        }));
        let marker = match phase {
            Phase::Starting => "SIGTERM and SIGINT stop the process",
            Phase::Listening | Phase::Following | Phase::Ready => "webhook listening",
            Phase::Leading => "holding the leader Lease",
        };
        if let Err(e) = wait_log(&mut op, marker) {
            failures.push(format!("#{i} {phase:?}: {e}"));
            continue;
        }
        if phase == Phase::Ready {
            let url = format!("http://{}/readyz", op.listening().unwrap());
            if let Err(e) = wait_ready(&url).await {
                failures.push(format!("#{i} {phase:?}: {e}\n{}", tail(&op)));
                continue;
            }
        }
        tokio::time::sleep(delay).await;
        if phase == Phase::Listening && still_listing(&op).await {
            index_listing += 1;
        }
        let t = Instant::now();
        op.signal("TERM");
        let status = op.wait_exit(EXIT_BOUND);
        let took = t.elapsed();
        slowest = slowest.max(took);
        let mut wrong = vec![];
        if took > SLOW {
            slow.push(format!("#{i} {phase:?} +{delay:?}: exited after {took:?}\n{}", tail(&op)));
        }
        match status {
            None => {
                wrong.push(format!("still running {EXIT_BOUND:?} after SIGTERM"));
                op.kill();
            }
            Some(st) if !st.success() => wrong.push(format!("exited {st}")),
            Some(_) => {}
        }
        // Read at once: a Lease left held would expire in 4 s (`--lease-duration`) and look free.
        let lease = leases.get_opt("deprovisioner").await.unwrap();
        let expected_holder = (phase == Phase::Following).then_some(OTHER);
        if let Err(e) = check_lease(lease.as_ref(), expected_holder) {
            wrong.push(e);
        }
        if !wrong.is_empty() {
            failures.push(format!("#{i} {phase:?} +{delay:?}: {}\n{}", wrong.join("; "), tail(&op)));
        }
        if lease.as_ref().and_then(holder).is_some() {
            release(&leases).await; // the next start begins with a free Lease
        }
    }
    println!(
        "{iterations} starts stopped with SIGTERM in {:?}: {} failed; slowest exit {slowest:?} (bound {EXIT_BOUND:?}); \
         {index_listing} stopped while the binding index was still listing",
        started.elapsed(),
        failures.len()
    );
    if !slow.is_empty() {
        println!("exits slower than {SLOW:?} (within the bound):\n{}", slow.join("\n\n"));
    }
    assert!(failures.is_empty(), "{} of {iterations} starts failed:\n{}", failures.len(), failures.join("\n\n"));
    assert!(index_listing > 0, "no stop landed during the binding index's first list: the test missed that phase");
}

/// The Lease as released: no holder, and none of the holder's times (kube-lease-manager's release
/// clears `holderIdentity`, `acquireTime`, `renewTime` and `leaseDurationSeconds`), or no Lease at
/// all (stopped before it was set up). With `held_by`, exactly that other holder's Lease, untouched.
fn check_lease(lease: Option<&Lease>, held_by: Option<&str>) -> Result<(), String> {
    let spec = lease.and_then(|l| l.spec.clone()).unwrap_or_default();
    match held_by {
        Some(other) if spec.holder_identity.as_deref() != Some(other) => {
            Err(format!("the Lease of {other} was changed: {spec:?}"))
        }
        Some(_) => Ok(()),
        None if spec.holder_identity.is_some()
            || spec.acquire_time.is_some()
            || spec.renew_time.is_some()
            || spec.lease_duration_seconds.is_some() =>
        {
            Err(format!("the Lease was not released: {spec:?}"))
        }
        None => Ok(()),
    }
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

/// Another replica holds the Lease (for a minute: longer than any one start here).
async fn hold(leases: &Api<Lease>, who: &str) {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "deprovisioner", "namespace": "deprovisioner"},
        "spec": {"holderIdentity": who, "acquireTime": now, "renewTime": now, "leaseDurationSeconds": 60},
    });
    let pp = PatchParams::apply("shutdown-test").force();
    leases.patch("deprovisioner", &pp, &Patch::Apply(&lease)).await.unwrap();
}

/// Frees the Lease as kube-lease-manager does.
async fn release(leases: &Api<Lease>) {
    let free =
        json!({"spec": {"holderIdentity": null, "acquireTime": null, "renewTime": null, "leaseDurationSeconds": null}});
    leases.patch("deprovisioner", &PatchParams::default(), &Patch::Merge(&free)).await.unwrap();
}

/// Waits (at most 30 s) for `marker` in the operator's log.
fn wait_log(op: &mut Operator, marker: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if String::from_utf8_lossy(&std::fs::read(&op.log).unwrap_or_default()).contains(marker) {
            return Ok(());
        }
        if let Some(st) = op.wait_exit(Duration::ZERO) {
            return Err(format!("exited ({st}) before logging {marker:?}:\n{}", tail(op)));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!("never logged {marker:?}:\n{}", tail(op)))
}

async fn wait_ready(url: &str) -> Result<(), String> {
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client.get(url).send().await.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err("/readyz never answered 200 within 30 s".into())
}

/// Whether `/readyz` says the binding index is still listing.
async fn still_listing(op: &Operator) -> bool {
    let Some(addr) = op.listening() else { return false };
    match http_client().get(format!("http://{addr}/readyz")).send().await {
        Ok(r) => r.text().await.is_ok_and(|t| t.contains("the view of the cluster is still listing")),
        Err(_) => false,
    }
}

/// The end of the operator's log (read lossily: its standard error, appended, may cut into a
/// character its standard output wrote).
fn tail(op: &Operator) -> String {
    let log = strip_ansi(&String::from_utf8_lossy(&std::fs::read(&op.log).unwrap_or_default()));
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// `n` RoleBindings in a namespace of their own (32 writes at a time).
async fn many_bindings(c: &kube::Client, n: usize) {
    let ns = unique("shutdown-bulk");
    namespace(c, &ns, &[]).await;
    let api: Api<RoleBinding> = Api::namespaced(c.clone(), &ns);
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let rb = RoleBinding {
                    metadata: ObjectMeta { name: Some(format!("bulk-{i}")), ..Default::default() },
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".into(),
                        kind: "ClusterRole".into(),
                        name: "view".into(),
                    },
                    subjects: Some(vec![deprovisioner::fixtures::user(&format!("bulk{i}@lumos.com"))]),
                };
                api.create(&PostParams::default(), &rb).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    println!("{n} RoleBindings created in {:?}", t.elapsed());
}
