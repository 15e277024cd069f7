//! The Namespaces the view keeps (their labels), so a rule selecting namespaces by label is
//! answered from memory instead of a LIST of every namespace per call.
//!
//! A watch lags by milliseconds. A plan stays exact for the bindings it acts on: a RoleBinding
//! that names the target (seen after the bindings' barrier) in a namespace this watch does not
//! hold yet is judged by a GET of that namespace (`controller/reconcile.rs`). What remains: a
//! namespace relabelled within the watch's lag before the call is judged by its old labels.

use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use super::watch::{self as runner, Watched};
use crate::metrics::Metrics;

/// The namespaces watch's name in metrics and logs.
pub(super) const WATCH: &str = "namespaces";

/// What the view keeps of a namespace: its name, uid and labels (a selector reads nothing else).
pub fn strip(ns: &mut Namespace) {
    let meta = ns.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    ns.spec = None;
    ns.status = None;
}

/// The namespaces kept by this stream of watch events (the watch, or a test's own).
pub(super) fn fed(
    events: impl Stream<Item = Result<Event<Namespace>, watcher::Error>> + Send + 'static,
    metrics: Option<Arc<Metrics>>,
    stop: &CancellationToken,
) -> Arc<Watched<Namespace>> {
    runner::run(WATCH, events, strip, (), metrics, stop)
}
