//! The deprovisioner's pure layers, kept pure by the compiler: this crate depends on no kube
//! client or runtime, so nothing here can call the API server.
//!
//! [`crd`] the wire types; [`plan`] the planner; [`verify`] verification's pure parts;
//! [`connector`] the connector's model and page tokens; [`egress`] where a policy's calls may go;
//! [`text`] clipping and lists. The `deprovisioner` crate re-exports each under the same path.
pub mod connector;
pub mod crd;
pub mod egress;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod plan;
pub mod text;
pub mod verify;
