//! The clock of the record: timestamps as Kubernetes writes them (shared by `record` and
//! `summary`, which words results, so neither imports the other for it).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The current time as a Kubernetes timestamp.
pub(super) fn now() -> Time {
    Time(Timestamp::now())
}

/// How long ago `t` was (zero for a time in the future).
pub(super) fn since(t: &Time) -> Duration {
    Timestamp::now().duration_since(t.0).try_into().unwrap_or_default()
}
