//! The DeprovisionPolicies, kept in memory by a watch on every replica. A plan reads them from
//! here instead of listing them for every request: the API server answers a consistent list only
//! once its cache has caught up with etcd, 10–70 ms under load, on every plan's critical path.
//!
//! A watch lags the API server by milliseconds. So when the policies in memory match no
//! policy for a request (a policy created just before the call, say), the plan lists them from
//! the API server before it concludes there is none; and until the watch has listed, or while it
//! is failing, every plan lists them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::crd::DeprovisionPolicy;

/// The policies as the watch last delivered them.
pub struct Policies {
    store: Store<DeprovisionPolicy>,
    /// True once the watch has listed, false again while it fails.
    current: Arc<AtomicBool>,
}

impl Policies {
    /// Starts the watch; it runs until `stop`.
    pub fn start(client: &Client, stop: &CancellationToken) -> Arc<Policies> {
        let (store, writer) = reflector::store();
        let current = Arc::new(AtomicBool::new(false));
        let api: Api<DeprovisionPolicy> = Api::all(client.clone());
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        let (stop, flag) = (stop.clone(), current.clone());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = stream.next() => match ev {
                        Some(Ok(Event::InitDone)) => flag.store(true, Ordering::SeqCst),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            flag.store(false, Ordering::SeqCst);
                            tracing::warn!(error = %e, "DeprovisionPolicy watch failed; plans list policies meanwhile");
                        }
                        None => return,
                    },
                }
            }
        });
        Arc::new(Policies { store, current })
    }

    /// Whether the watch has listed and is delivering.
    pub fn is_current(&self) -> bool {
        self.current.load(Ordering::SeqCst)
    }

    /// The policies, or `None` while the watch has not listed (or is failing).
    pub fn get(&self) -> Option<Vec<DeprovisionPolicy>> {
        self.current.load(Ordering::SeqCst).then(|| self.store.state().iter().map(|p| (**p).clone()).collect())
    }
}
