//! Verification's pure parts: `reviews` turns the removed bindings' roles into bounded questions;
//! `residual` says why a binding still naming the target was left alone; `verdict` words the
//! outcome. Asking the authorizer and searching the bindings live in the `deprovisioner` crate.

pub mod residual;
pub mod reviews;
pub mod verdict;

/// The most bytes a recorded verification takes ([`reviews::MAX_REVIEWS`] reviews and
/// [`residual::MAX_RESIDUAL`] residual bindings); planning keeps this room in the record.
pub use crate::crd::MAX_VERIFICATION_BYTES as MAX_BYTES;

#[cfg(test)]
mod tests;
