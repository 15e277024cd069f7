//! The operator's one view of the cluster: every watch it keeps (bindings, policies,
//! namespaces, unfinished requests; the Lease aside), each with one [`health`] state machine,
//! and one consistent-read barrier. Readers ask the view; none reads a watch's flags.

pub mod health;
pub mod requests;
