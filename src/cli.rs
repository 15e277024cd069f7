//! Command line: `deprovisioner run`, `deprovisioner crd`, `deprovisioner evidence` and
//! `deprovisioner connector`. Every flag
//! of `run` has an env var.
//!
//! The binary does not look at its own name, so a copy or symlink named `kubectl-deprovisioner` on
//! the PATH works as a kubectl plugin: `kubectl deprovisioner evidence …`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderName;
use clap::{Parser, Subcommand, ValueEnum};

use crate::evidence::time::{When, parse_when};

/// Lumos may wait at most this long; the response deadline must stay under it.
pub const LUMOS_TIMEOUT: Duration = Duration::from_secs(15);

/// Removes people's Kubernetes access when Lumos (access governance) says so.
#[derive(Parser, Debug)]
#[command(name = "deprovisioner", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the Lumos webhook and run the controller (while holding the leader Lease).
    Run(Box<RunArgs>),
    /// Print every CustomResourceDefinition as YAML.
    Crd,
    /// Write evidence for auditors from the records: CSV, JSON or a self-contained HTML report of
    /// what was removed, for a time range and optionally one app or one person.
    Evidence(EvidenceArgs),
    /// List the time-bound access that will end within a while: when, which subject of which
    /// binding, since when it was held and what ends it.
    Expiring(ExpiringArgs),
    /// Answer one Lumos Connector API call about this cluster's access, as Lumos's agent runs
    /// custom connectors: `deprovisioner connector list_accounts --json '{"request":{}}'`. The
    /// answer (or an `ErrorResponse`) is printed as JSON on standard output.
    Connector(ConnectorArgs),
    /// List the users and ServiceAccounts that hold bindings but have not made a request to the
    /// API server within a window (`--for 30d`), from the activity store: each with its bindings
    /// and what the store says. Those it cannot prove inactive (recording began inside the
    /// window, or never) are listed apart.
    Inactive(InactiveArgs),
}

mod inactive;
pub use inactive::{ActivityStoreArgs, InactiveArgs, InactiveFormat};

/// Flags of `connector`.
#[derive(clap::Args, Debug)]
pub struct ConnectorArgs {
    /// The capability, e.g. `info`, `list_accounts`, `find_entitlement_associations`.
    pub capability: String,
    /// The request JSON (`{"request": {...}, "page": {...}}`). Without --json or --json-file it
    /// is read from standard input (except for `info`, which needs none).
    #[arg(long, conflicts_with = "json_file")]
    pub json: Option<String>,
    /// A file holding the request JSON.
    #[arg(long, value_name = "FILE")]
    pub json_file: Option<PathBuf>,
    /// Kubeconfig file. Default: $KUBECONFIG or ~/.kube/config if present, else in-cluster config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, env = "DEPROVISIONER_CONTEXT")]
    pub context: Option<String>,
    /// Write the answer gzip-compressed to this file instead of standard output, as the SDK's
    /// CLI does for large answers (the name must end in `.gz`).
    #[arg(long, value_name = "FILE.gz", value_parser = parse_gz)]
    pub result_file_path: Option<PathBuf>,
    /// The operator's own ServiceAccount as NAMESPACE/NAME: never listed (default: the chart's
    /// `deprovisioner/deprovisioner`).
    #[arg(long, env = "DEPROVISIONER_SERVICE_ACCOUNT", value_parser = parse_sa, default_value = "deprovisioner/deprovisioner")]
    pub service_account: (String, String),
    /// The deployment's other identities as NAMESPACE/NAME (comma-separated in the environment):
    /// never listed (default: the chart's Lumos agent, `deprovisioner/deprovisioner-lumos-agent`).
    #[arg(long, env = "DEPROVISIONER_PROTECT_SERVICE_ACCOUNTS", value_parser = parse_sa, value_delimiter = ',',
          default_value = "deprovisioner/deprovisioner-lumos-agent")]
    pub protect_service_account: Vec<(String, String)>,
    /// How long `unassign_entitlement` waits for the operator to finish the request it recorded
    /// before answering `request_timeout` (the record stays and finishes).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub deadline: Duration,
    /// On a fleet hub: list every member cluster's access too (from the inventories their
    /// agents report), and send an `unassign_entitlement` on a member's resource to that member.
    #[arg(long, env = "DEPROVISIONER_FLEET_HUB")]
    pub fleet_hub: bool,
    /// Where `get_last_activity` and `list_activity_records` read the activity store.
    #[command(flatten)]
    pub activity: ActivityStoreArgs,
}

/// Format of `expiring`'s output.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiringFormat {
    /// Aligned columns.
    Table,
    /// One object per expiry (the `Expiry` a request would record).
    Json,
    /// One row per expiry.
    Csv,
}

/// Flags of `expiring`.
#[derive(clap::Args, Debug)]
pub struct ExpiringArgs {
    /// Kubeconfig file. Default: $KUBECONFIG or ~/.kube/config if present, else in-cluster config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, env = "DEPROVISIONER_CONTEXT")]
    pub context: Option<String>,
    /// Access ending within this from now (and any overdue), e.g. `7d`, `12h`.
    #[arg(long, value_parser = parse_duration, default_value = "7d")]
    pub within: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExpiringFormat::Table)]
    pub format: ExpiringFormat,
    /// The `AccessClock` objects' name prefix (the operator's `--expiry-clocks`).
    #[arg(long, env = "DEPROVISIONER_EXPIRY_CLOCKS", default_value = "deprovisioner-clocks")]
    pub clocks: String,
    /// The operator's own ServiceAccount as NAMESPACE/NAME (never expires).
    #[arg(long, env = "DEPROVISIONER_SERVICE_ACCOUNT", value_parser = parse_sa, default_value = "deprovisioner/deprovisioner")]
    pub service_account: (String, String),
    /// The deployment's other identities as NAMESPACE/NAME (never expire).
    #[arg(long, env = "DEPROVISIONER_PROTECT_SERVICE_ACCOUNTS", value_parser = parse_sa, value_delimiter = ',',
          default_value = "deprovisioner/deprovisioner-lumos-agent")]
    pub protect_service_account: Vec<(String, String)>,
}

/// Format of `evidence`'s output.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvidenceFormat {
    /// One row per action.
    Csv,
    /// `{generatedAt, cluster, since, until, app, person, rows: [...]}`, one row per action.
    Json,
    /// A self-contained page: summary, each request's actions, verification verdicts.
    Html,
}

/// Flags of `evidence`.
#[derive(clap::Args, Debug)]
pub struct EvidenceArgs {
    /// Kubeconfig file. Default: $KUBECONFIG or ~/.kube/config if present, else in-cluster config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, env = "DEPROVISIONER_CONTEXT")]
    pub context: Option<String>,
    /// Lumos calls from this time on: RFC 3339 (2025-01-31T09:00:00Z), a date (2025-01-31,
    /// midnight UTC) or a duration back from now (30d, 12h). Default: all recorded.
    #[arg(long, value_parser = parse_when)]
    pub since: Option<When>,
    /// Lumos calls before this time (same forms as --since). Default: now.
    #[arg(long, value_parser = parse_when)]
    pub until: Option<When>,
    /// Only this Lumos app (its app id, instance id or label).
    #[arg(long)]
    pub app: Option<String>,
    /// Only this person (the target user's email, any case).
    #[arg(long, value_name = "EMAIL")]
    pub person: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EvidenceFormat::Html, conflicts_with = "out_dir")]
    pub format: EvidenceFormat,
    /// Write to this file (default: standard output).
    #[arg(long, short = 'o', value_name = "FILE", conflicts_with = "out_dir")]
    pub output: Option<PathBuf>,
    /// Write all three formats into this directory: evidence.csv, evidence.json, evidence.html.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Log output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig file. Default: $KUBECONFIG or ~/.kube/config if present, else in-cluster config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, env = "DEPROVISIONER_CONTEXT")]
    pub context: Option<String>,
    /// Address the webhook, /healthz and /readyz listen on.
    #[arg(long, env = "DEPROVISIONER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// File holding the shared secret Lumos sends (one per line; two during a rotation).
    /// Re-read when it changes.
    #[arg(long, env = "DEPROVISIONER_SECRET_FILE")]
    pub secret_file: PathBuf,
    /// File holding the Lumos connector's read secret (one per line; two during a rotation):
    /// it opens `POST /connectors/kubernetes/<capability>` for every capability that reads
    /// (info, validate_credentials, list_*, find_*, get_*). Never the webhook's secret. Without
    /// this and --connector-unassign-secret-file the connector is not served over HTTP.
    #[arg(long, env = "DEPROVISIONER_CONNECTOR_SECRET_FILE")]
    pub connector_secret_file: Option<PathBuf>,
    /// File holding the Lumos connector's unassign secret: it opens every capability, including
    /// unassign_entitlement (which removes access).
    #[arg(long, env = "DEPROVISIONER_CONNECTOR_UNASSIGN_SECRET_FILE")]
    pub connector_unassign_secret_file: Option<PathBuf>,
    /// Header carrying the secret (the webhook's and the connector's). `Authorization` expects
    /// `Bearer <secret>`; any other header carries the secret as its whole value.
    #[arg(long, env = "DEPROVISIONER_SECRET_HEADER", default_value = "Authorization", value_parser = parse_header)]
    pub secret_header: HeaderName,
    /// Answer Lumos by this deadline even if the removal is unfinished (must be under 15s).
    #[arg(long, env = "DEPROVISIONER_RESPONSE_DEADLINE", default_value = "10s", value_parser = parse_deadline)]
    pub response_deadline: Duration,
    /// Address serving Prometheus metrics at /metrics (off when not given), e.g. 0.0.0.0:9090.
    #[arg(long, env = "DEPROVISIONER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Largest accepted webhook body in bytes.
    #[arg(long, env = "DEPROVISIONER_BODY_LIMIT", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(1024..=16 * 1024 * 1024))]
    pub body_limit: u32,
    /// Connections open at once on the webhook listener; more are closed when accepted.
    #[arg(long, env = "DEPROVISIONER_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=65_536))]
    pub max_connections: u32,
    /// Webhook calls handled at once; more are answered 503 at once.
    #[arg(long, env = "DEPROVISIONER_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_in_flight: u32,
    /// A request's headers must arrive within this (also the idle keep-alive timeout).
    #[arg(long, env = "DEPROVISIONER_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Calls with missing or wrong credentials accepted per minute from one address; more get 429.
    #[arg(long, env = "DEPROVISIONER_UNAUTHENTICATED_PER_MINUTE", default_value_t = 30)]
    pub unauthenticated_per_minute: u32,
    /// DeprovisionRequests the webhook records per minute; past it calls are answered FAILURE.
    #[arg(long, env = "DEPROVISIONER_MAX_REQUESTS_PER_MINUTE", default_value_t = 1200)]
    pub max_requests_per_minute: u32,
    /// On SIGTERM, how long in-flight calls get to finish (keep it under the pod's grace period).
    #[arg(long, env = "DEPROVISIONER_SHUTDOWN_DRAIN", default_value = "12s", value_parser = parse_duration)]
    pub shutdown_drain: Duration,
    /// How long finished DeprovisionRequests are kept before deletion.
    #[arg(long, env = "DEPROVISIONER_RETENTION", default_value = "400days", value_parser = parse_duration)]
    pub retention: Duration,
    /// How long after a request finished the operator notices access it removed coming back
    /// (a binding naming the subject again); `0s` turns it off.
    #[arg(long, env = "DEPROVISIONER_REGRANT_WATCH", default_value = "30days", value_parser = parse_duration)]
    pub regrant_watch: Duration,
    /// Time-bound access: the leader removes a subject once a policy rule's `maxAccess` or the
    /// binding's `deprovisioner.dev/expires` annotation says its time is up. `false`: never.
    /// It follows the binding index, so its default is `--binding-index`'s value, and `true`
    /// without the index is refused (see [`RunArgs::check`]).
    #[arg(long, env = "DEPROVISIONER_EXPIRY", default_value_t = true, action = clap::ArgAction::Set,
          default_value_if("binding_index", "false", "false"))]
    pub expiry: bool,
    /// The `AccessClock` objects keeping when each subject started holding each time-bound
    /// binding: `<NAME>-0` … `<NAME>-7` (the chart grants exactly those).
    #[arg(long, env = "DEPROVISIONER_EXPIRY_CLOCKS", default_value = "deprovisioner-clocks")]
    pub expiry_clocks: String,
    /// A request still meeting API errors this long after creation is marked Failed.
    #[arg(long, env = "DEPROVISIONER_GIVE_UP_AFTER", default_value = "15m", value_parser = parse_duration)]
    pub give_up_after: Duration,
    /// The operator's own ServiceAccount as NAMESPACE/NAME: never removed from anything.
    #[arg(long, env = "DEPROVISIONER_SERVICE_ACCOUNT", value_parser = parse_sa)]
    pub service_account: Option<(String, String)>,
    /// The deployment's other identities (Lumos's agent) as NAMESPACE/NAME, repeatable
    /// (comma-separated in the environment): never removed from anything, never listed.
    #[arg(long, env = "DEPROVISIONER_PROTECT_SERVICE_ACCOUNTS", value_parser = parse_sa, value_delimiter = ',')]
    pub protect_service_account: Vec<(String, String)>,
    /// SubjectAccessReviews a request's verification asks per removed binding and identity (at
    /// most 48 in all). Each is a question to the API server's authorizer, whose cost grows with
    /// the bindings in the namespace asked about: about 8 ms of its CPU per question with 10,000
    /// RoleBindings there, measured on 2 cores.
    #[arg(long, env = "DEPROVISIONER_REVIEWS_PER_BINDING", default_value_t = crate::verify::reviews::DEFAULT_PER_BINDING as u16,
          value_parser = clap::value_parser!(u16).range(1..=crate::verify::reviews::MAX_REVIEWS as i64))]
    pub reviews_per_binding: u16,
    /// Requests reconciled at once.
    #[arg(long, env = "DEPROVISIONER_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Run the controller in this process (false: serve only the webhook, e.g. extra replicas).
    #[arg(long, env = "DEPROVISIONER_RUN_CONTROLLER", default_value_t = true, action = clap::ArgAction::Set)]
    pub controller: bool,
    /// Plan from an index of bindings kept by watches (false: list the bindings in scope for
    /// every request, slower with many bindings; needs no sentinel bindings).
    #[arg(long, env = "DEPROVISIONER_BINDING_INDEX", default_value_t = true, action = clap::ArgAction::Set)]
    pub binding_index: bool,
    /// The binding index's sentinel RoleBinding (in `--namespace`) and ClusterRoleBinding.
    #[arg(long, env = "DEPROVISIONER_INDEX_BARRIER", default_value = "deprovisioner-index-barrier")]
    pub index_barrier: String,
    /// Run the controller only while holding a Lease (set false for a single local process).
    #[arg(long, env = "DEPROVISIONER_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// The operator's own namespace: where its leader Lease lives, the activity store is kept,
    /// and the only namespace external actions read Secrets (and CA ConfigMaps) from. The default
    /// is the one the other commands assume (`connector`'s and `inactive`'s
    /// `--activity-namespace`, the `deprovisioner/deprovisioner` ServiceAccount); the chart sets
    /// it to the release namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "deprovisioner")]
    pub namespace: String,
    /// Record in each request the last activity of the identities it removes, read from the
    /// activity store when it is planned (the store must be readable: the chart's activity.*).
    /// Always on with --audit-listen.
    #[arg(long, env = "DEPROVISIONER_RECORD_LAST_ACTIVITY", default_value_t = false, action = clap::ArgAction::Set)]
    pub record_last_activity: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "DEPROVISIONER_LEASE_NAME", default_value = "deprovisioner")]
    pub lease_name: String,
    /// How long the Lease holds without renewal: the longest a killed leader's work waits for
    /// another replica. A stopping leader releases it at once.
    #[arg(long, env = "DEPROVISIONER_LEASE_DURATION", default_value_t = 4, value_parser = clap::value_parser!(u64).range(2..=60))]
    pub lease_duration_seconds: u64,
    /// The leader renews this long before the Lease would expire.
    #[arg(long, env = "DEPROVISIONER_LEASE_GRACE", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=30))]
    pub lease_grace_seconds: u64,
    /// Fault injection for tests (only in builds with the `failpoints` feature).
    #[cfg(feature = "failpoints")]
    #[command(flatten)]
    pub failpoints: crate::failpoints::Failpoints,
    /// Requests sent to the API server at once (watches and the leader Lease aside); more wait,
    /// creates of requests first, then status writes, other work, access reviews, Events.
    #[arg(long, env = "DEPROVISIONER_API_IN_FLIGHT", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub api_in_flight: u16,
    /// Address of the audit endpoint (`POST /audit`, a listener of its own): the API server's
    /// audit webhook or a log shipper sends audit events there, and the last activity of each
    /// account is kept in ConfigMaps (issue 26). Off when not given.
    #[arg(long, env = "DEPROVISIONER_AUDIT_LISTEN", requires = "audit_token_file")]
    pub audit_listen: Option<SocketAddr>,
    /// File holding the bearer token the audit endpoint accepts (one per line; two during a
    /// rotation); re-read when it changes. Required with --audit-listen; never the webhook's.
    #[arg(long, env = "DEPROVISIONER_AUDIT_TOKEN_FILE")]
    pub audit_token_file: Option<PathBuf>,
    /// PEM certificate chain the audit endpoint serves https with (with --audit-tls-key-file).
    /// The API server's audit webhook sends its bearer token only to an https URL; without these
    /// the endpoint speaks plain http (for TLS ended in front of it, or a log shipper). Read
    /// again when the files change (a renewal needs no restart).
    #[arg(long, env = "DEPROVISIONER_AUDIT_TLS_CERT_FILE", requires = "audit_tls_key_file")]
    pub audit_tls_cert_file: Option<PathBuf>,
    /// PEM private key of --audit-tls-cert-file.
    #[arg(long, env = "DEPROVISIONER_AUDIT_TLS_KEY_FILE", requires = "audit_tls_cert_file")]
    pub audit_tls_key_file: Option<PathBuf>,
    /// Largest accepted audit body in bytes. With at most 16 batches in flight, each held once as
    /// bytes and once parsed (about 3x its size), 1 MiB bounds the endpoint's memory near
    /// 16 x 4 MiB = 64 MiB, well inside the chart's 256 MiB; the API server's batch of 400
    /// Metadata-level events is about 0.4 MiB.
    #[arg(long, env = "DEPROVISIONER_AUDIT_MAX_BODY", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(1024..=64 * 1024 * 1024))]
    pub audit_max_body: u32,
    /// Audit events accepted per second; past it batches are answered 429 with Retry-After.
    #[arg(long, env = "DEPROVISIONER_AUDIT_MAX_EVENTS_PER_SECOND", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_max_events_per_second: u32,
    /// Prefix of the ConfigMaps (in --namespace) keeping the last activity: `<prefix>-00` to
    /// `<prefix>-63`.
    #[arg(long, env = "DEPROVISIONER_ACTIVITY_PREFIX", default_value = "deprovisioner-activity")]
    pub activity_prefix: String,
    /// A stored last activity is replaced only by one at least this much later (it is never
    /// older than the latest by more than this; each account changes its ConfigMap at most once
    /// per this).
    #[arg(long, env = "DEPROVISIONER_ACTIVITY_RESOLUTION", default_value = "1m", value_parser = parse_duration)]
    pub activity_resolution: Duration,
    /// A silence this long (no audit batch at all; plus --activity-resolution) ends the stream
    /// of batches the store says it observed: the next batch begins a new one, and nobody is
    /// proven inactive over a window reaching before it. A live API server audits its own Lease
    /// renewals (and this operator's) every few seconds, so minutes of silence mean the events
    /// stopped (the API server not configured, a broken token or certificate, dropped batches).
    #[arg(long, env = "DEPROVISIONER_ACTIVITY_GAP", default_value = "5m", value_parser = parse_duration)]
    pub activity_gap: Duration,
    /// Accounts whose last activity is kept (the least recently seen are forgotten past it).
    #[arg(long, env = "DEPROVISIONER_ACTIVITY_MAX_ACCOUNTS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(64..=1_000_000))]
    pub activity_max_accounts: u32,
    /// Log format.
    #[arg(long, env = "DEPROVISIONER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `deprovisioner=debug,kube=info`.
    #[arg(long, env = "DEPROVISIONER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Fleet hub: a request whose Lumos application a `ClusterSet` names is handed to the member
    /// clusters it selects (each plans with its own policies), not planned here; the record lists
    /// each member's record, and succeeds only when all of them do.
    #[arg(long, env = "DEPROVISIONER_FLEET_HUB")]
    pub fleet_hub: bool,
    /// Fleet hub: how long after the call a member that has not finished a request is waited
    /// for (a member down comes back and catches up within it). Past it the request is withdrawn
    /// from the member's mailbox and the hub record ends Failed, naming the member.
    #[arg(long, env = "DEPROVISIONER_FLEET_MEMBER_TIMEOUT", default_value = "7days", value_parser = parse_duration)]
    pub fleet_member_timeout: Duration,
    /// Fleet member: a kubeconfig for the hub, with this member's agent identity there. The
    /// agent dials out to the hub (nothing dials in), takes the requests in its mailbox, records
    /// and works them here, and reports each record's end back. Needs --member-name.
    #[arg(long, env = "DEPROVISIONER_HUB_KUBECONFIG", requires = "member_name")]
    pub hub_kubeconfig: Option<PathBuf>,
    /// Fleet member: this cluster's name on the hub (its `MemberCluster`).
    #[arg(long, env = "DEPROVISIONER_MEMBER_NAME", requires = "hub_kubeconfig", value_parser = parse_member_name)]
    pub member_name: Option<String>,
    /// Fleet member: its mailbox namespace on the hub (default `deprovisioner-member-<name>`).
    #[arg(long, env = "DEPROVISIONER_HUB_MAILBOX")]
    pub hub_mailbox: Option<String>,
    /// Fleet member: how often the agent writes its heartbeat to its `MemberCluster`.
    #[arg(long, env = "DEPROVISIONER_FLEET_HEARTBEAT", default_value = "30s", value_parser = parse_duration)]
    pub fleet_heartbeat: Duration,
    /// Fleet member: how often the agent computes this cluster's access map and, when it
    /// changed, reports it into its mailbox on the hub (what the hub's connector lists).
    #[arg(long, env = "DEPROVISIONER_FLEET_INVENTORY_EVERY", default_value = "60s", value_parser = parse_duration)]
    pub fleet_inventory_every: Duration,
}

/// A member's name: a DNS label (it names a namespace on the hub).
fn parse_member_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 41
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    match ok {
        true => Ok(s.to_string()),
        false => {
            Err("a member name is 1-41 lower-case letters, digits and '-' (it names a namespace on the hub)".into())
        }
    }
}

impl RunArgs {
    /// Refuses what the flags cannot do together: `--expiry` follows the bindings the binding
    /// index keeps, so it needs `--binding-index` (with the controller).
    pub fn check(&self) -> Result<(), String> {
        if self.expiry && self.controller && !self.binding_index {
            return Err("--expiry=true needs --binding-index=true (expiry follows the bindings it keeps); \
                        set --expiry=false to run without the index"
                .into());
        }
        Ok(())
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 15m, 400days)"))
}

fn parse_deadline(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() || d >= LUMOS_TIMEOUT {
        return Err(format!("must be more than 0s and less than Lumos's 15s timeout, got {s}"));
    }
    Ok(d)
}

fn parse_header(s: &str) -> Result<HeaderName, String> {
    HeaderName::try_from(s).map_err(|_| format!("{s:?} is not a valid HTTP header name"))
}

fn parse_gz(s: &str) -> Result<PathBuf, String> {
    let s = s.trim_matches(|c| c == '"' || c == '\'');
    match s.ends_with(".gz") {
        true => Ok(PathBuf::from(s)),
        false => Err(format!("the result file name must end in .gz, got {s:?}")),
    }
}

fn parse_sa(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok((ns.into(), name.into())),
        _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
    }
}

#[cfg(test)]
mod tests;
