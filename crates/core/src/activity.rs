//! Pure: who was last active, from the API server's audit events. [`event`] reads what the audit
//! webhook (or a log shipper) sends and turns each event into sightings of accounts; [`ledger`]
//! keeps, per account, the last sighting, in shards bounded in size, merged the same way by
//! every replica that writes them. No I/O here: the receiver and the store live in the main crate.

pub mod event;
pub mod ledger;

pub use event::{AuditEvent, BatchError, Sighting, parse_batch};
pub use ledger::{COMPONENT, DATA_KEY, Entry, LastSeen, SHARDS, Shard, object_name, shard_of};
