//! The DeprovisionPolicies the view keeps, from a watch on every replica. A plan reads them from
//! here instead of listing them for every request: the API server answers a consistent list only
//! once its cache has caught up with etcd, 10–70 ms under load, on every plan's critical path.
//!
//! A watch lags the API server by milliseconds. So when the policies in memory match no policy
//! for a request (a policy created just before the call, say), the plan lists them from the API
//! server before it concludes there is none; and while the watch is not live (not listed yet,
//! listing again, failed and not delivered since, or it dropped an event) the view answers
//! [`super::Fallback`] and every plan lists them.

use std::sync::Arc;

use futures::Stream;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use super::watch::{self as runner, Watched};
use crate::crd::DeprovisionPolicy;
use crate::metrics::Metrics;

/// The policies watch's name in metrics and logs.
pub(super) const WATCH: &str = "policies";

/// The policies kept by this stream of watch events (the watch, or a test's own).
pub(super) fn fed(
    events: impl Stream<Item = Result<Event<DeprovisionPolicy>, watcher::Error>> + Send + 'static,
    metrics: Option<Arc<Metrics>>,
    stop: &CancellationToken,
) -> Arc<Watched<DeprovisionPolicy>> {
    runner::run(WATCH, events, |_| {}, (), metrics, stop)
}
