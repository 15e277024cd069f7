//! The deprovisioner's pure layers, kept pure by the compiler: this crate depends on no kube
//! client or runtime, so nothing here can call the API server.
//!
//! [`activity`] who was last active, from audit events; [`crd`] the wire types; [`plan`] the
//! planner; [`verify`] verification's pure parts; [`expiry`] when access that ends by itself is
//! due; [`connector`] the connector's model and page tokens; [`entitlement`] entitlements as Lumos
//! names them (the planner's `entitlements` rules and the connector share them); [`egress`]
//! where a policy's calls may go; [`names`] Kubernetes name rules; [`text`] clipping and lists. The `deprovisioner` crate re-exports each under the same path.
pub mod activity;
pub mod connector;
pub mod crd;
pub mod egress;
pub mod entitlement;
pub mod expiry;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod fleet;
pub mod hash;
pub mod names;
pub mod plan;
pub mod text;
pub mod verify;
