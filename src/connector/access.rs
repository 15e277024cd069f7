//! Who may call the connector over HTTP. It has secrets of its own, never the webhook's: a read
//! secret (`--connector-secret-file`) opens every capability that only reads the cluster's access
//! map, an unassign secret (`--connector-unassign-secret-file`) opens `unassign_entitlement` as
//! well. The files are the webhook's kind ([`SecretFile`]: constant time, reloaded on change,
//! several secrets per file during a rotation) and failed attempts count against the same
//! per-source budget. [`decide`] is the whole decision, pure.

use std::path::Path;

use super::capabilities::Capability;
use crate::webhook::Refused;
use crate::webhook::auth::{SecretError, SecretFile};

/// What a connector secret allows. `Unassign` includes `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// `info`, `validate_credentials`, `list_*`, `find_*`, `get_*`.
    Read,
    /// Also `unassign_entitlement`.
    Unassign,
}

impl Access {
    /// The flag of `deprovisioner run` that configures this secret.
    pub fn flag(self) -> &'static str {
        match self {
            Access::Read => "--connector-secret-file",
            Access::Unassign => "--connector-unassign-secret-file",
        }
    }

    /// The chart's value for this secret.
    pub fn chart_value(self) -> &'static str {
        match self {
            Access::Read => "connector.secret",
            Access::Unassign => "connector.unassignSecret",
        }
    }
}

/// What calling `capability` needs: `unassign_entitlement` the unassign secret, anything else
/// (a name not implemented too, which is then answered `unsupported_operation`) a read secret.
pub fn needed(capability: &str) -> Access {
    match Capability::parse(capability) {
        Some(Capability::UnassignEntitlement) => Access::Unassign,
        _ => Access::Read,
    }
}

/// Why the connector's secrets cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A file cannot be used.
    #[error("{flag}: {source}")]
    File {
        /// The flag naming it.
        flag: &'static str,
        /// Why.
        source: SecretError,
    },
    /// A connector secret is also the webhook's: whoever holds the webhook's would read the
    /// cluster's access map (or remove access) with it.
    #[error("{flag}: a secret in it is also the webhook's (--secret-file); the connector's secrets must be its own")]
    SharedWithWebhook {
        /// The flag naming the file.
        flag: &'static str,
    },
}

/// The connector's secrets; none configured means the endpoint is not served.
#[derive(Default)]
pub struct Secrets {
    /// Opens the reading capabilities.
    pub read: Option<SecretFile>,
    /// Opens every capability.
    pub unassign: Option<SecretFile>,
}

impl Secrets {
    /// Loads the files given; refuses a file that holds one of the webhook's secrets.
    pub fn load(read: Option<&Path>, unassign: Option<&Path>, webhook: &SecretFile) -> Result<Secrets, SecretsError> {
        let load = |access: Access, path: Option<&Path>| -> Result<Option<SecretFile>, SecretsError> {
            let Some(path) = path else { return Ok(None) };
            let file = SecretFile::load(path).map_err(|source| SecretsError::File { flag: access.flag(), source })?;
            if file.shares_a_secret_with(webhook) {
                return Err(SecretsError::SharedWithWebhook { flag: access.flag() });
            }
            Ok(Some(file))
        };
        Ok(Secrets { read: load(Access::Read, read)?, unassign: load(Access::Unassign, unassign)? })
    }

    /// Whether any secret is configured (else the endpoint is not served).
    pub fn configured(&self) -> bool {
        self.read.is_some() || self.unassign.is_some()
    }

    /// What `presented` opens, or `None` when it is none of the connector's secrets. A secret
    /// that is also the webhook's opens nothing, even if a file was changed to hold it after
    /// start-up. Every file is checked, whichever matches.
    pub fn access(&self, presented: &str, webhook: &SecretFile) -> Option<Access> {
        let matches = |f: &Option<SecretFile>| f.as_ref().is_some_and(|f| f.verify(presented));
        let (read, unassign, webhook) = (matches(&self.read), matches(&self.unassign), webhook.verify(presented));
        if webhook && (read || unassign) {
            tracing::error!(
                "a connector secret file holds the webhook's secret: it is refused on the connector (give the connector its own)"
            );
        }
        opened(read, unassign, webhook)
    }
}

/// What a secret opens from which files hold it: the webhook's never opens the connector.
fn opened(in_read: bool, in_unassign: bool, in_webhook: bool) -> Option<Access> {
    match (in_read, in_unassign, in_webhook) {
        (_, _, true) => None,
        (_, true, false) => Some(Access::Unassign),
        (true, false, false) => Some(Access::Read),
        (false, false, false) => None,
    }
}

/// The answer to a call's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Served.
    Serve,
    /// No connector secret is configured: the endpoint is not served (404).
    NotServed,
    /// No connector secret, or a wrong one (401), or too many wrong ones from this source (429).
    Refused(Refused),
    /// A secret that does not open this capability (403): it needs `needs`.
    Forbidden {
        /// What the capability needs.
        needs: Access,
    },
}

/// The decision for one call: whether any connector secret is configured, what the presented
/// secret opens (or why it was refused), and what the capability needs.
pub fn decide(configured: bool, opened: Result<Access, Refused>, needs: Access) -> Decision {
    if !configured {
        return Decision::NotServed;
    }
    match opened {
        Err(refused) => Decision::Refused(refused),
        Ok(has) if has >= needs => Decision::Serve,
        Ok(_) => Decision::Forbidden { needs },
    }
}

#[cfg(test)]
mod tests;
