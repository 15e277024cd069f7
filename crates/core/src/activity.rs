//! Pure: who was last active, from the API server's audit events. [`event`] reads what the audit
//! webhook (or a log shipper) sends and turns each event into sightings of accounts; [`ledger`]
//! keeps, per account, the last sighting, in shards bounded in size, merged the same way by
//! every replica that writes them; [`coverage`] which stretch of time the store observed;
//! [`known`] what the stored shards say of one account and whether that, with the coverage,
//! proves it inactive over a window; [`inactive`] the rows of `deprovisioner inactive`. No I/O here: the receiver and the store live in the main crate.

pub mod coverage;
pub mod event;
pub mod inactive;
pub mod known;
pub mod ledger;

pub use coverage::{Coverage, STATUS_KEY, status_name};
pub use event::{AuditEvent, BatchError, Sighting, parse_batch};
pub use known::{Inactivity, Judged, Known, judge, judge_covered};
pub use ledger::{COMPONENT, DATA_KEY, Entry, LastSeen, SHARDS, Shard, object_name, shard_of};
