//! deprovisioner: removes people's Kubernetes access when Lumos says so.
pub mod auth;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod external;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod metrics;
pub mod naming;
pub mod payload;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod rbac;
pub mod report;
pub mod subject;
pub mod template;
pub mod webhook;
