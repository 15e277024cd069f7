//! deprovisioner: removes people's Kubernetes access when Lumos says so.
//!
//! A Lumos call reaches the [`webhook`], which records it as a `DeprovisionRequest` ([`crd`]).
//! The [`controller`] computes a [`plan`] with pure functions, records it, has the executors
//! ([`exec`]) carry it out, records each result, and [`verify`]s with the API server's authorizer
//! that the access is gone. See `docs/architecture.md`.
pub mod budget;
pub mod cli;
pub mod connector;
pub mod controller;
pub mod crd;
pub mod egress;
pub mod evidence;
pub mod exec;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod finished;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod text;
pub mod trace;
pub mod verify;
pub mod view;
pub mod webhook;
