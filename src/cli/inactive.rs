//! Flags of `deprovisioner inactive`, and where the activity store is (shared with `connector`).

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

/// Where the activity store's ConfigMaps are, for the commands that read it.
#[derive(clap::Args, Debug, Clone)]
pub struct ActivityStoreArgs {
    /// The namespace holding the activity store (the operator's; the chart's default).
    #[arg(long, env = "DEPROVISIONER_ACTIVITY_NAMESPACE", default_value = "deprovisioner")]
    pub activity_namespace: String,
    /// The store's ConfigMaps are `<prefix>-00` … (the chart's `<release>-activity`).
    #[arg(long, env = "DEPROVISIONER_ACTIVITY_PREFIX", default_value = crate::activity::read::DEFAULT_PREFIX)]
    pub activity_prefix: String,
}

/// Format of `inactive`'s output.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InactiveFormat {
    /// Aligned columns for a terminal.
    Table,
    /// One row per account (RFC 4180).
    Csv,
    /// `{generatedAt, window, from, accounts: [...]}`.
    Json,
}

/// Flags of `inactive`.
#[derive(clap::Args, Debug)]
pub struct InactiveArgs {
    /// The window: accounts that made no request within this long before now (30d, 12h, 2weeks).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_window)]
    pub window: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = InactiveFormat::Table)]
    pub format: InactiveFormat,
    /// Also list accounts active within the window.
    #[arg(long)]
    pub all: bool,
    /// Kubeconfig file. Default: $KUBECONFIG or ~/.kube/config if present, else in-cluster config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, env = "DEPROVISIONER_CONTEXT")]
    pub context: Option<String>,
    /// The operator's own ServiceAccount as NAMESPACE/NAME: never listed.
    #[arg(long, env = "DEPROVISIONER_SERVICE_ACCOUNT", value_parser = super::parse_sa, default_value = "deprovisioner/deprovisioner")]
    pub service_account: (String, String),
    /// The deployment's other identities as NAMESPACE/NAME: never listed.
    #[arg(long, env = "DEPROVISIONER_PROTECT_SERVICE_ACCOUNTS", value_parser = super::parse_sa, value_delimiter = ',',
          default_value = "deprovisioner/deprovisioner-lumos-agent")]
    pub protect_service_account: Vec<(String, String)>,
    /// Where the activity store is.
    #[command(flatten)]
    pub activity: ActivityStoreArgs,
}

fn parse_window(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30d, 12h, 2weeks)"))?;
    if d.is_zero() {
        return Err("the window must be longer than 0s".into());
    }
    Ok(d)
}
