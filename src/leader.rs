//! Leader election: the controllers run only while this replica holds the Lease (the webhook and
//! the binding index run on every replica). A leader that stops releases the Lease, and a
//! follower that sees it released (it watches the Lease) takes it at once, so a rolling upgrade
//! has no gap. A leader that dies holds it until it expires (`--lease-duration`).

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, Settings, Shared};

/// Where the Lease is and how long it holds.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The Lease's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Seconds it holds without renewal.
    pub duration: u64,
    /// The leader renews this long before it would expire.
    pub grace: u64,
}

/// How one round of following or leading ended.
enum Round {
    /// The process is stopping.
    Stopped,
    /// Another replica released the Lease: take it with a fresh view of it.
    Released,
}

/// Runs the controllers whenever this replica holds the Lease, until `stop`; releases it on the
/// way out. Returns early only when leader election itself fails for good.
pub async fn run(
    client: Client,
    settings: Settings,
    shared: Shared,
    lease: LeaseSettings,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let holder = watch_holder(client.clone(), &lease);
    loop {
        let Some(manager) = build(&client, &lease, &stop).await else {
            return Ok(()); // stopped before the Lease could be set up
        };
        let (leader, task) = manager.watch().await;
        let round = lead(&client, &settings, &shared, leader, holder.clone(), &stop).await;
        // Every receiver is gone: the manager releases the Lease if it holds it.
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => tracing::debug!("leader election round ended"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader Lease failed; it will expire"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the leader election task failed"),
            Err(_) => tracing::warn!("releasing the leader Lease timed out; it will expire"),
        }
        match round? {
            Round::Stopped => {
                tracing::info!("leader Lease released");
                return Ok(());
            }
            Round::Released => tracing::info!("the leader released the Lease: taking it"),
        }
    }
}

/// Runs the controllers while `leader` says so; while following, ends the round when the holder
/// releases the Lease.
async fn lead(
    client: &Client,
    settings: &Settings,
    shared: &Shared,
    mut leader: watch::Receiver<bool>,
    mut holder: watch::Receiver<Option<String>>,
    stop: &CancellationToken,
) -> anyhow::Result<Round> {
    holder.borrow_and_update();
    loop {
        // Checked first, every time: a stop never starts the controllers, whatever else is ready.
        if stop.is_cancelled() {
            return Ok(Round::Stopped);
        }
        if !*leader.borrow_and_update() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(Round::Stopped),
                r = leader.changed() => { r.context("leader election stopped")?; continue; }
                r = holder.changed() => {
                    r.context("the Lease watch stopped")?;
                    let released = holder.borrow_and_update().is_none();
                    if released && !*leader.borrow() {
                        return Ok(Round::Released);
                    }
                    continue;
                }
            }
        }
        tracing::info!("holding the leader Lease: starting the controllers");
        // The controllers stop when the Lease is lost or the process stops, whichever is first.
        let term = stop.child_token();
        let mut lost = leader.clone();
        let on_loss = term.clone();
        let watch_loss = tokio::spawn(async move {
            if lost.wait_for(|l| !*l).await.is_ok() {
                tracing::warn!("lost the leader Lease: stopping the controllers");
            }
            on_loss.cancel();
        });
        let leading = settings.metrics.leading();
        controller::run(client.clone(), settings.clone(), shared.clone(), term).await;
        drop(leading);
        watch_loss.abort();
        let _ = watch_loss.await; // its receiver clone must be gone before the Lease is released
    }
}

/// The Lease's holder as the API server has it, kept by a watch of that one Lease while anyone
/// reads it (it never ends under a reader because the process stops: a follower told of that
/// would take it for a failure).
fn watch_holder(client: Client, lease: &LeaseSettings) -> watch::Receiver<Option<String>> {
    let (tx, rx) = watch::channel(None);
    let api: Api<Lease> = Api::namespaced(client, &lease.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", lease.name));
    tokio::spawn(async move {
        let events = watcher(api, config).default_backoff().applied_objects();
        let mut events = std::pin::pin!(events);
        loop {
            let ev = tokio::select! {
                _ = tx.closed() => return,
                ev = events.next() => ev,
            };
            match ev {
                Some(Ok(l)) => {
                    let h = l.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty());
                    tx.send_if_modified(|old| std::mem::replace(old, h.clone()) != h);
                }
                Some(Err(e)) => tracing::debug!(error = %e, "Lease watch failed; retrying"),
                None => return,
            }
        }
    });
    rx
}

/// Sets up leader election, retrying with backoff while the API server is unreachable or refuses
/// (the webhook keeps recording requests meanwhile; the controller finishes them once elected).
async fn build(client: &Client, lease: &LeaseSettings, stop: &CancellationToken) -> Option<LeaseManager> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &lease.name)
            .with_namespace(&lease.namespace)
            .with_identity(identity())
            .with_duration(lease.duration)
            .with_grace(lease.grace.min(lease.duration - 1))
            .build();
        // Setting up only reads (or creates) the Lease, never takes it: a stop may drop it.
        let built = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            built = built => built,
        };
        match built {
            Ok(m) => return Some(m),
            Err(e) => tracing::warn!(
                lease = %format!("{}/{}", lease.namespace, lease.name), error = %e,
                "could not set up leader election; retrying in {backoff:?}"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// This process's identity in the Lease: the pod's name where there is one, made unique.
fn identity() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "deprovisioner".into());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("{pod}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
    })
    .clone()
}
