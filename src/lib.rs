//! deprovisioner: removes people's Kubernetes access when Lumos says so.
pub mod crd;
pub mod payload;
pub mod plan;
pub mod subject;
pub mod template;
#[cfg(test)]
mod plan_tests;
