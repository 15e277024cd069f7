//! The DeprovisionPolicies, kept in memory by a watch on every replica. A plan reads them from
//! here instead of listing them for every request: the API server answers a consistent list only
//! once its cache has caught up with etcd, 10–70 ms under load, on every plan's critical path.
//!
//! A watch lags the API server by milliseconds. So when the policies in memory match no
//! policy for a request (a policy created just before the call, say), the plan lists them from
//! the API server before it concludes there is none; and until the watch has listed, while it
//! lists again, and after a watch error until it delivers again, every plan lists them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::crd::DeprovisionPolicy;

/// The policies as the watch last delivered them.
pub struct Policies {
    store: Store<DeprovisionPolicy>,
    /// True while the store holds what the watch delivered up to now (see [`Policies::get`]).
    current: Arc<AtomicBool>,
    /// True once the watch has listed.
    listed: Arc<AtomicBool>,
}

impl Policies {
    /// Starts the watch; it runs until `stop`.
    pub fn start(client: &Client, stop: &CancellationToken) -> Arc<Policies> {
        let api: Api<DeprovisionPolicy> = Api::all(client.clone());
        Policies::fed(watcher(api, watcher::Config::default()).default_backoff(), stop)
    }

    /// The policies kept by this stream of watch events (the watch, or a test's own).
    fn fed(
        events: impl Stream<Item = Result<Event<DeprovisionPolicy>, watcher::Error>> + Send + 'static,
        stop: &CancellationToken,
    ) -> Arc<Policies> {
        let (store, writer) = reflector::store();
        let (current, listed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let stream = events.reflect(writer);
        let (stop, now, once) = (stop.clone(), current.clone(), listed.clone());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // An event the client could not read was dropped: only a list makes the store whole.
            let mut lost = false;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = stream.next() => match ev {
                        Some(Ok(Event::InitDone)) => {
                            lost = false;
                            now.store(true, Ordering::SeqCst);
                            once.store(true, Ordering::SeqCst);
                        }
                        // A change delivered after an error: the watch resumed where it was,
                        // and every change since came before this one.
                        Some(Ok(Event::Apply(_) | Event::Delete(_))) => now.store(!lost, Ordering::SeqCst),
                        // A relist: the store takes the new list at its end.
                        Some(Ok(Event::Init)) => now.store(false, Ordering::SeqCst),
                        Some(Ok(Event::InitApply(_))) => {}
                        // The watcher resumes where it was (or lists again); what changed
                        // meanwhile is unknown until it delivers again.
                        Some(Err(e)) => {
                            lost |= matches!(e, watcher::Error::WatchFailed(kube::Error::SerdeError(_)));
                            now.store(false, Ordering::SeqCst);
                            tracing::warn!(error = %e, "DeprovisionPolicy watch failed; plans list policies until it delivers again");
                        }
                        None => return,
                    },
                }
            }
        });
        Arc::new(Policies { store, current, listed })
    }

    /// Whether the watch has listed once (a replica is not ready before).
    pub fn is_listed(&self) -> bool {
        self.listed.load(Ordering::SeqCst)
    }

    /// The policies, or `None` while the watch has not listed, lists again, or has not delivered
    /// since an error (a quiet watch that failed once stays so until the next policy change:
    /// plans then list the policies, as they do without a watch), or dropped an event it could
    /// not read (until it lists again).
    pub fn get(&self) -> Option<Vec<DeprovisionPolicy>> {
        self.current.load(Ordering::SeqCst).then(|| self.store.state().iter().map(|p| (**p).clone()).collect())
    }
}

#[cfg(test)]
mod tests;
