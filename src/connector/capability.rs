//! The capabilities: parses a request, reads what it needs from the cluster, and answers with
//! the pure functions of [`super::answer`]. Every failure is an `ErrorResponse`, never a panic
//! or a non-JSON answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use super::capabilities::Capability;
use super::model::{self, AccountId, Snapshot};
use super::wire::{ConnectorError, Envelope, ErrorCode};
use super::{answer, read};
use crate::activity::read::{ReadError, Store};
use crate::plan::subject::Protected;
use crate::view::{Need, Reader, Since, View};
use crate::webhook::WebhookState;
use crate::webhook::submit::{self, NotRecorded};

/// Paged reads (and `get_account`) answered at once; the others wait their turn, in order. A
/// page of up to 2,000 items is built as JSON while its turn lasts, so this bounds that memory
/// however many calls arrive.
pub const READS_AT_ONCE: usize = 4;

/// How long a read waits for its turn before it is answered `rate_limit`.
pub const READ_WAIT: Duration = Duration::from_secs(30);

/// What the capabilities run with.
pub struct Connector {
    /// The cluster, as the connector's identity.
    pub client: kube::Client,
    /// Principals never listed (and never removed).
    pub protected: Protected,
    /// How the global resource (the cluster) is labelled.
    pub cluster_label: String,
    /// The operator's view, when this process keeps one: reads come from it (kept current by
    /// watches, proven current by its barrier) instead of listing every binding for every page.
    pub view: Option<Arc<View>>,
    /// How `unassign_entitlement` records its request.
    pub writer: Writer,
    /// Where the activity store's shards are: (namespace, name prefix).
    pub activity: (String, String),
    /// On a fleet hub: every member's access map too, from the inventories its agents report.
    pub fleet: bool,
    /// The access map shared by the calls reading the same bindings, and the reads' turns.
    shared: Shared,
}

impl Connector {
    /// A connector reading the cluster through `client` (and `view`, when this process keeps
    /// one).
    pub fn new(
        client: kube::Client,
        protected: Protected,
        cluster_label: String,
        view: Option<Arc<View>>,
        writer: Writer,
    ) -> Connector {
        let activity = (DEFAULT_NAMESPACE.to_string(), crate::activity::read::DEFAULT_PREFIX.to_string());
        Connector { client, protected, cluster_label, view, writer, activity, fleet: false, shared: Shared::new() }
    }

    /// On a fleet hub (`fleet`): lists every member's accounts, resources, entitlements and
    /// associations as well, and sends an `unassign_entitlement` on a member's resource to
    /// that member only.
    pub fn with_fleet(mut self, fleet: bool) -> Connector {
        self.fleet = fleet;
        self
    }

    /// Reads last activity from the shards `<prefix>-NN` in `namespace` (default: the chart's
    /// `deprovisioner` and `deprovisioner-activity`).
    pub fn with_activity(mut self, namespace: &str, prefix: &str) -> Connector {
        self.activity = (namespace.to_string(), prefix.to_string());
        self
    }

    fn store(&self) -> Store {
        Store { client: self.client.clone(), namespace: self.activity.0.clone(), prefix: self.activity.1.clone() }
    }
}

/// The chart's default namespace, where the activity store is unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "deprovisioner";

/// Account ids one `get_last_activity` or `list_activity_records` call may name at most.
pub const MAX_ACCOUNT_IDS: usize = 2_000;

/// The last access map computed, and the turns of the reads.
struct Shared {
    current: tokio::sync::Mutex<Option<(Source, Arc<Snapshot>)>>,
    turns: tokio::sync::Semaphore,
}

impl Shared {
    fn new() -> Shared {
        Shared { current: tokio::sync::Mutex::new(None), turns: tokio::sync::Semaphore::new(READS_AT_ONCE) }
    }
}

/// What an access map was computed from, or what a call needs it computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The view's bindings at this version ([`crate::view::Snapshot::version`]).
    Index(u64),
    /// A listing of the API server begun at this moment (for a call: when it arrived).
    Listed(Instant),
}

/// Whether a map computed from `have` answers a call that needs `want`: the index at that
/// version or a later one, or a listing begun after the call arrived (which holds every binding
/// written before it, as a barrier does).
fn serves(have: Source, want: Source) -> bool {
    match (have, want) {
        (Source::Index(have), Source::Index(want)) => have >= want,
        (Source::Listed(began), Source::Listed(arrived)) => began >= arrived,
        _ => false,
    }
}

/// How `unassign_entitlement` records its request and learns the outcome.
pub enum Writer {
    /// Inside `deprovisioner run`: through the webhook's path (duplicates attach to one record,
    /// this process's controller is handed the request, the same deadline).
    Operator(Arc<WebhookState>),
    /// The CLI: creates the record with its own identity (which the admission policy allows only
    /// to the operator's ServiceAccount) and reads it until the operator finishes it.
    Client {
        /// How long to wait for the record to finish.
        deadline: Duration,
    },
}

/// The answer to one call: a response or an `ErrorResponse`, always JSON.
pub async fn answer(conn: &Connector, capability: &str, body: &[u8]) -> Value {
    match run(conn, capability, body).await {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(capability, error = %e, "connector call answered with an error");
            e.to_response(capability)
        }
    }
}

/// The answer when it needs no cluster (`info`, or a capability not implemented), else `None`.
pub fn answer_offline(name: &str) -> Option<Value> {
    match Capability::parse(name) {
        Some(Capability::Info) => Some(answer::info(&Capability::ALL)),
        Some(_) => None,
        None => Some(not_implemented(name).to_response(name)),
    }
}

fn not_implemented(name: &str) -> ConnectorError {
    ConnectorError::new(ErrorCode::UnsupportedOperation, format!("Capability '{name}' is not implemented."))
}

async fn run(conn: &Connector, name: &str, body: &[u8]) -> Result<Value, ConnectorError> {
    let arrived = Instant::now();
    let Some(capability) = Capability::parse(name) else {
        return Err(not_implemented(name));
    };
    if capability == Capability::Info {
        return Ok(answer::info(&Capability::ALL));
    }
    let envelope = envelope(body)?;
    match capability {
        Capability::Info => Ok(answer::info(&Capability::ALL)),
        Capability::ValidateCredentials => validate(conn).await,
        Capability::ListAccounts => {
            let p = answer::paging(capability, envelope.page.as_ref())?;
            let _turn = turn(conn).await?;
            let map = access_map(conn, arrived).await?;
            Ok(answer::list_accounts(&map, &p))
        }
        Capability::ListResources => {
            let p = answer::paging(capability, envelope.page.as_ref())?;
            let _turn = turn(conn).await?;
            let namespaces = read::namespace_names(&conn.client).await?;
            let members = match conn.fleet {
                true => super::fleet::members(&conn.client).await?.resources,
                false => Vec::new(),
            };
            Ok(answer::list_fleet_resources(&conn.cluster_label, &namespaces, &members, &p))
        }
        Capability::ListEntitlements => {
            let p = answer::paging(capability, envelope.page.as_ref())?;
            let _turn = turn(conn).await?;
            let map = access_map(conn, arrived).await?;
            Ok(answer::list_entitlements(&map, &p))
        }
        Capability::FindEntitlementAssociations => {
            let p = answer::paging(capability, envelope.page.as_ref())?;
            let _turn = turn(conn).await?;
            let map = access_map(conn, arrived).await?;
            Ok(answer::find_entitlement_associations(&map, &p))
        }
        Capability::GetAccount => {
            let req: GetAccount = argument(&envelope)?;
            let id: AccountId = req
                .account_id
                .parse()
                .map_err(|e: model::IdError| ConnectorError::new(ErrorCode::InvalidValue, e.to_string()))?;
            let _turn = turn(conn).await?;
            let map = access_map(conn, arrived).await?;
            answer::get_account(&map, &id)
        }
        Capability::UnassignEntitlement => unassign(conn, argument(&envelope)?).await,
        Capability::GetLastActivity => {
            let req: GetLastActivity = argument(&envelope)?;
            let ids = account_ids(req.account_ids.iter().map(String::as_str))?;
            let _turn = turn(conn).await?;
            let asked: Vec<String> =
                ids.iter().filter(|id| !never_answered(conn, id)).map(ToString::to_string).collect();
            let shards = conn.store().for_accounts(asked.iter().map(String::as_str)).await.map_err(read_error)?;
            Ok(answer::last_activity(&ids, |a| shards.known(a), |id| never_answered(conn, id)))
        }
        Capability::ListActivityRecords => {
            let req: ListActivityRecords = argument(&envelope)?;
            let since = answer::since_date(&req.since_date)?;
            let ids = account_ids(req.actors.iter().map(|a| a.account_id.as_str()))?;
            let p = answer::paging(capability, envelope.page.as_ref())?;
            let _turn = turn(conn).await?;
            let wanted: Vec<String> =
                ids.iter().filter(|id| !never_answered(conn, id)).map(ToString::to_string).collect();
            let shards = match ids.is_empty() {
                true => conn.store().all().await,
                false => conn.store().for_accounts(wanted.iter().map(String::as_str)).await,
            }
            .map_err(read_error)?;
            let all = shards.accounts();
            let entries: Vec<(&str, &crate::activity::Entry)> = match ids.is_empty() {
                true => all
                    .into_iter()
                    .filter(|(a, _)| a.parse::<AccountId>().is_ok_and(|id| !never_answered(conn, &id)))
                    .collect(),
                false => {
                    let wanted: std::collections::BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
                    all.into_iter().filter(|(a, _)| wanted.contains(a)).collect()
                }
            };
            Ok(answer::activity_records(entries, since, &p))
        }
    }
}

/// Accounts whose activity is never answered: groups (requests are made by users and
/// ServiceAccounts; a group's members are not the group) and protected accounts (never listed).
fn never_answered(conn: &Connector, id: &AccountId) -> bool {
    matches!(id.0, crate::plan::subject::Principal::Group(_)) || conn.protected.why(&id.0).is_some()
}

/// The account ids of a request: each must be one this connector gives out (`invalid_value`
/// naming the first that is not); at most [`MAX_ACCOUNT_IDS`].
fn account_ids<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> Result<Vec<AccountId>, ConnectorError> {
    if ids.len() > MAX_ACCOUNT_IDS {
        let m = format!("at most {MAX_ACCOUNT_IDS} account ids per call, got {}", ids.len());
        return Err(ConnectorError::new(ErrorCode::BadRequest, m));
    }
    ids.map(|id| id.parse().map_err(|e: model::IdError| ConnectorError::new(ErrorCode::InvalidValue, e.to_string())))
        .collect()
}

/// A failed read of the activity store as the spec's error: the API server's code, or
/// `service_error` for a shard that does not parse (named in the message).
fn read_error(e: ReadError) -> ConnectorError {
    match e.kube() {
        Some(k) => {
            let mut c = ConnectorError::from_kube("reading the activity store", k);
            c.message = crate::text::clip(e.to_string());
            c
        }
        None => ConnectorError::new(ErrorCode::ServiceError, e.to_string()),
    }
}

/// The arguments of `get_last_activity`.
#[derive(Deserialize)]
struct GetLastActivity {
    account_ids: Vec<String>,
}

/// The arguments of `list_activity_records`.
#[derive(Deserialize)]
struct ListActivityRecords {
    since_date: String,
    actors: Vec<Actor>,
}

/// One actor of `list_activity_records`.
#[derive(Deserialize)]
struct Actor {
    account_id: String,
}

/// Waits for a read's turn ([`READS_AT_ONCE`] at a time, in arrival order), at most
/// [`READ_WAIT`].
async fn turn(conn: &Connector) -> Result<tokio::sync::SemaphorePermit<'_>, ConnectorError> {
    match tokio::time::timeout(READ_WAIT, conn.shared.turns.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(ConnectorError::new(ErrorCode::InternalError, "the connector is shutting down")),
        Err(_) => Err(ConnectorError::new(
            ErrorCode::RateLimit,
            format!(
                "too many reads at once: {READS_AT_ONCE} are answered at a time and this one waited {}s for its turn; try again shortly",
                READ_WAIT.as_secs()
            ),
        )),
    }
}

/// The arguments of `unassign_entitlement`.
#[derive(Deserialize)]
struct UnassignEntitlement {
    account_integration_specific_id: String,
    resource_type: String,
    resource_integration_specific_id: String,
    entitlement_type: String,
    entitlement_integration_specific_id: String,
}

async fn unassign(conn: &Connector, req: UnassignEntitlement) -> Result<Value, ConnectorError> {
    let invalid = |e: model::IdError| ConnectorError::new(ErrorCode::InvalidValue, e.to_string());
    let account: AccountId = req.account_integration_specific_id.parse().map_err(invalid)?;
    let (member, entitlement) = model::parse_placed(
        &req.entitlement_type,
        &req.entitlement_integration_specific_id,
        &req.resource_type,
        &req.resource_integration_specific_id,
    )
    .map_err(invalid)?;
    if member.is_some() && !conn.fleet {
        let m = format!(
            "resource {:?} is in a member cluster, and this connector is not a fleet hub's",
            req.resource_integration_specific_id
        );
        return Err(ConnectorError::new(ErrorCode::InvalidValue, m));
    }
    // Refused here too, so a protected account gets no record at all; the plan refuses it again.
    if let Some(why) = conn.protected.why(&account.0) {
        return Err(ConnectorError::new(ErrorCode::PermissionDenied, format!("refused: {why}; nothing was recorded")));
    }
    let mut spec = answer::unassign_request(&account, &entitlement);
    if let Some(m) = member {
        // The hub hands it to that member only; the member plans it with its own policies.
        crate::fleet::address_to(&mut spec, &m);
    }
    let waited = match &conn.writer {
        Writer::Operator(w) => submit::record_and_wait(w, spec, Instant::now()).await,
        Writer::Client { deadline } => submit::record_and_poll(&conn.client, spec, Instant::now() + *deadline).await,
    };
    let waited = waited.map_err(|e| {
        let code = match e {
            NotRecorded::RateLimited(_) => ErrorCode::RateLimit,
            NotRecorded::TimedOut => ErrorCode::RequestTimeout,
            NotRecorded::Refused(_) => ErrorCode::ServiceError,
        };
        ConnectorError::new(code, e.to_string())
    })?;
    answer::unassigned(&waited)
}

/// The arguments of `get_account`.
#[derive(Deserialize)]
struct GetAccount {
    account_id: String,
}

fn envelope(body: &[u8]) -> Result<Envelope, ConnectorError> {
    let bad = |m: String| ConnectorError::new(ErrorCode::BadRequest, m);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("Invalid request, expected JSON input.".into()));
    }
    let e: Envelope = serde_json::from_slice(body).map_err(|e| bad(format!("Invalid request: {e}")))?;
    match &e.request {
        Some(Value::Object(_)) => Ok(e),
        Some(_) => Err(bad("Invalid request: \"request\" must be an object".into())),
        None => Err(bad("Invalid request: missing \"request\" (send {\"request\": {}} for no arguments)".into())),
    }
}

fn argument<T: DeserializeOwned>(e: &Envelope) -> Result<T, ConnectorError> {
    let v = e.request.clone().unwrap_or(Value::Null);
    serde_json::from_value(v)
        .map_err(|err| ConnectorError::new(ErrorCode::BadRequest, format!("Invalid request: {err}")))
}

/// The access map as of the call's arrival (or later): the one already computed when it still
/// holds, else computed once for every call waiting for it. The index's barrier proves it holds
/// every binding written before the call arrived (one write shared by concurrent calls), and its
/// version says whether the bindings' grants changed since the map was computed; when the barrier
/// cannot pass, the API server is listed instead, and that listing serves every call that
/// arrived before it began. One map is computed at a time; the previous one is freed as soon as
/// the calls reading it are done.
async fn access_map(conn: &Connector, arrived: Instant) -> Result<Arc<Snapshot>, ConnectorError> {
    if conn.fleet {
        return fleet_map(conn, arrived).await;
    }
    let index = match conn.view.as_deref() {
        Some(view) => view.read(Since::Arrived(arrived), Need::BINDINGS, Reader::Connector).await.ok(),
        None => None,
    };
    // Read before the bindings are: a map is never labelled newer than what it holds.
    let want = match &index {
        Some(index) => Source::Index(index.version()),
        None => Source::Listed(arrived),
    };
    let mut current = conn.shared.current.lock().await;
    if let Some((_, map)) = current.as_ref().filter(|(have, _)| serves(*have, want)) {
        return Ok(map.clone());
    }
    *current = None;
    let protected = conn.protected.clone();
    let (source, map) = match index {
        Some(index) => {
            let b = index.all();
            let map = compute(move || {
                let rbs = b.role_bindings.iter().map(AsRef::as_ref);
                model::grants(rbs, b.cluster_role_bindings.iter().map(AsRef::as_ref), &protected)
            })
            .await?;
            (want, map)
        }
        None => {
            let began = Instant::now();
            let b = read::bindings(&conn.client).await?;
            let map = compute(move || model::grants(&b.role_bindings, &b.cluster_role_bindings, &protected)).await?;
            (Source::Listed(began), map)
        }
    };
    let map = Arc::new(map);
    *current = Some((source, map.clone()));
    Ok(map)
}

/// On a fleet hub: this cluster's grants as of the call's arrival and every member's last
/// reported ones, computed for each call (the members' reports change without this process
/// seeing it).
async fn fleet_map(conn: &Connector, arrived: Instant) -> Result<Arc<Snapshot>, ConnectorError> {
    let index = match conn.view.as_deref() {
        Some(view) => view.read(Since::Arrived(arrived), Need::BINDINGS, Reader::Connector).await.ok(),
        None => None,
    };
    let protected = conn.protected.clone();
    let mut grants = match index {
        Some(index) => {
            let b = index.all();
            let rbs = b.role_bindings.iter().map(AsRef::as_ref);
            model::grants(rbs, b.cluster_role_bindings.iter().map(AsRef::as_ref), &protected)
        }
        None => {
            let b = read::bindings(&conn.client).await?;
            model::grants(&b.role_bindings, &b.cluster_role_bindings, &protected)
        }
    };
    let members = super::fleet::members(&conn.client).await?;
    let stale = members.resources.iter().filter(|m| m.stale).map(|m| m.name.clone()).collect();
    grants.extend(members.grants.into_iter().filter(|g| protected.why(&g.account.0).is_none()));
    let mut map = compute(move || grants).await?;
    map.stale_members = stale;
    Ok(Arc::new(map))
}

/// Computes a map off the async threads (tens of milliseconds over 10,000 bindings).
async fn compute(grants: impl FnOnce() -> Vec<model::Grant> + Send + 'static) -> Result<Snapshot, ConnectorError> {
    tokio::task::spawn_blocking(move || Snapshot::of(&grants()))
        .await
        .map_err(|e| ConnectorError::new(ErrorCode::InternalError, format!("computing the access map: {e}")))
}

async fn validate(conn: &Connector) -> Result<Value, ConnectorError> {
    let missing = read::missing(&conn.client, read::NEEDS).await?;
    if !missing.is_empty() {
        return Err(ConnectorError::new(
            ErrorCode::PermissionDenied,
            format!(
                "the connector's identity may not {}: grant it the chart's RBAC (deploy/rbac.yaml)",
                missing.join(", ")
            ),
        ));
    }
    let tenant = match read::cluster_id(&conn.client).await? {
        Some(uid) => uid,
        None => conn.cluster_label.clone(),
    };
    Ok(answer::validated(&tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_serves_calls_that_need_what_it_holds() {
        let (earlier, later) = (Instant::now(), Instant::now() + Duration::from_millis(5));
        assert!(serves(Source::Index(7), Source::Index(7)));
        assert!(serves(Source::Index(8), Source::Index(7)), "a later version holds every earlier change");
        assert!(!serves(Source::Index(7), Source::Index(8)), "a change since: computed again");
        assert!(serves(Source::Listed(later), Source::Listed(earlier)), "listed after the call arrived");
        assert!(serves(Source::Listed(earlier), Source::Listed(earlier)));
        assert!(!serves(Source::Listed(earlier), Source::Listed(later)), "listed before the call arrived");
        assert!(!serves(Source::Index(7), Source::Listed(earlier)));
        assert!(!serves(Source::Listed(later), Source::Index(7)));
    }
}
