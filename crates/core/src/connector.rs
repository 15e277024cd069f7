//! The connector's pure parts: `model` turns bindings into grants, accounts, entitlements and
//! associations; `page` makes opaque tokens that continue after a sort key. The rest of the
//! connector (answers, reads, dispatch, HTTP) lives in the `deprovisioner` crate.

pub mod model;
pub mod page;
