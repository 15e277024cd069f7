//! deprovisioner: removes people's Kubernetes access when Lumos says so.
//!
//! A Lumos call reaches the [`webhook`], which records it as a `DeprovisionRequest` ([`crd`]).
//! The [`controller`] computes a [`plan`] with pure functions, records it, has the executors
//! ([`exec`]) carry it out, records each result, and [`verify`]s with the API server's authorizer
//! that the access is gone. See `docs/architecture.md`.
//!
//! The pure layers ([`crd`], [`plan`], verification's pure parts, the connector's model,
//! [`text`]) live in the `deprovisioner-core` crate, which has no kube client or runtime; they are
//! re-exported here under their old paths.
pub mod activity;
pub mod budget;
pub mod cli;
pub mod connector;
pub mod controller;
pub use deprovisioner_core::crd;
pub use deprovisioner_core::expiry;
pub mod egress;
pub mod evidence;
pub mod exec;
pub mod expiring;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod finished;
pub mod fleet;
pub mod inactive;
#[cfg(any(test, feature = "fixtures"))]
pub use deprovisioner_core::fixtures;
pub mod leader;
pub mod metrics;
pub use deprovisioner_core::plan;
pub use deprovisioner_core::text;
pub mod trace;
pub mod verify;
pub mod view;
pub mod webhook;
