//! The cluster as a Lumos app: the Lumos Connector API (connector-py's OpenAPI spec) over the
//! cluster's bindings, served by `deprovisioner connector <capability> --json '<request>'` and by
//! `deprovisioner run` at [`http::PATH`]. See `docs/lumos-connector.md`.
//!
//! `model` (pure) turns bindings into grants, accounts, entitlements and associations; `page`
//! (pure) makes opaque tokens that continue after a sort key (both in `deprovisioner-core`);
//! `capabilities` names the capabilities; `answer` (pure) builds each capability's answer;
//! `wire` holds the envelopes and error codes; `read` lists the cluster a page at a time;
//! `capability` puts them together; `http` serves them behind the connector's own secrets
//! (`access`).

pub mod access;
pub mod answer;
pub mod capabilities;
pub mod capability;
pub mod fleet;
pub mod http;
pub use deprovisioner_core::connector::{model, page};
pub mod read;
pub mod wire;

pub use capability::{Capability, Connector, Writer, answer as call, answer_offline};
