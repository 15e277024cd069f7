//! Last activity (issue 26): who acted when, from the API server's audit events.
//!
//! The pure parts (reading events, the ledger's shards) are `deprovisioner-core`'s
//! [`event`] and [`ledger`]. Here: [`receiver`] the audit endpoint, [`flush`] writing the
//! shards to ConfigMaps, [`read`] reading them back (the connector, `inactive`, the record); [`tls`] the endpoint's
//! certificate, read again when its files change.

pub use deprovisioner_core::activity::{Coverage, Entry, Inactivity, Known, LastSeen, Shard};
pub use deprovisioner_core::activity::{event, ledger};

pub mod flush;
pub mod read;
pub mod receiver;
pub mod tls;
