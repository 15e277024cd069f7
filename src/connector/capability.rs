//! The capabilities: parses a request, reads what it needs from the cluster, and answers with
//! the pure functions of [`super::answer`]. Every failure is an `ErrorResponse`, never a panic
//! or a non-JSON answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::model::{self, AccountId};
use super::wire::{ConnectorError, Envelope, ErrorCode};
use super::{answer, read};
use crate::index::BindingIndex;
use crate::plan::subject::Protected;
use crate::webhook::WebhookState;
use crate::webhook::submit::{self, NotRecorded};

/// The capabilities this connector implements; any other answers `unsupported_operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// What the connector is.
    Info,
    /// Whether the connector can reach the cluster and may read what it needs.
    ValidateCredentials,
    /// Accounts holding any grant.
    ListAccounts,
    /// The cluster and its namespaces.
    ListResources,
    /// Roles held, per resource.
    ListEntitlements,
    /// Who holds what where.
    FindEntitlementAssociations,
    /// One account.
    GetAccount,
    /// Removes one account's entitlement, through a recorded `DeprovisionRequest`.
    UnassignEntitlement,
}

impl Capability {
    /// Every implemented capability.
    pub const ALL: [Capability; 8] = [
        Capability::Info,
        Capability::ValidateCredentials,
        Capability::ListAccounts,
        Capability::ListResources,
        Capability::ListEntitlements,
        Capability::FindEntitlementAssociations,
        Capability::GetAccount,
        Capability::UnassignEntitlement,
    ];

    /// The capability's name in the spec (`StandardCapabilityName`).
    pub fn name(self) -> &'static str {
        match self {
            Capability::Info => "info",
            Capability::ValidateCredentials => "validate_credentials",
            Capability::ListAccounts => "list_accounts",
            Capability::ListResources => "list_resources",
            Capability::ListEntitlements => "list_entitlements",
            Capability::FindEntitlementAssociations => "find_entitlement_associations",
            Capability::GetAccount => "get_account",
            Capability::UnassignEntitlement => "unassign_entitlement",
        }
    }

    /// The implemented capability of this name (`-` and `_` alike, as the SDK's routes).
    pub fn parse(name: &str) -> Option<Capability> {
        let name = name.replace('-', "_");
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The spec's schema names of its argument and its answer, and a note for the person
    /// configuring it.
    pub fn schema(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Capability::Info => ("EmptyButCreateAnyway", "Info", ""),
            Capability::ValidateCredentials => (
                "ValidateCredentials",
                "ValidatedCredentials",
                "Checks the connection and that the connector's identity may list bindings and namespaces.",
            ),
            Capability::ListAccounts => (
                "ListAccounts",
                "FoundAccountData",
                "Users, Groups and ServiceAccounts bound by any binding, except protected ones.",
            ),
            Capability::ListResources => ("ListResources", "FoundResourceData", ""),
            Capability::ListEntitlements => ("ListEntitlements", "FoundEntitlementData", ""),
            Capability::FindEntitlementAssociations => {
                ("FindEntitlementAssociations", "FoundEntitlementAssociation", "")
            }
            Capability::GetAccount => ("GetAccount", "FoundAccountData", ""),
            Capability::UnassignEntitlement => (
                "UnassignEntitlement",
                "UnassignedEntitlement",
                "Records a DeprovisionRequest that removes the account from the bindings granting the role there, within what the cluster's DeprovisionPolicy for app kubernetes allows; answers from its record.",
            ),
        }
    }
}

/// What the capabilities run with.
pub struct Connector {
    /// The cluster, as the connector's identity.
    pub client: kube::Client,
    /// Principals never listed (and never removed).
    pub protected: Protected,
    /// How the global resource (the cluster) is labelled.
    pub cluster_label: String,
    /// The operator's binding index, when this process keeps one: reads come from it (kept
    /// current by watches, proven current by its barrier) instead of listing every binding for
    /// every page.
    pub index: Option<Arc<BindingIndex>>,
    /// How `unassign_entitlement` records its request.
    pub writer: Writer,
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
            Ok(answer::list_accounts(&grants(conn).await?, &p))
        }
        Capability::ListResources => {
            let p = answer::paging(capability, envelope.page.as_ref())?;
            let namespaces = read::namespace_names(&conn.client).await?;
            Ok(answer::list_resources(&conn.cluster_label, &namespaces, &p))
        }
        Capability::ListEntitlements => {
            let p = answer::paging(capability, envelope.page.as_ref())?;
            Ok(answer::list_entitlements(&grants(conn).await?, &p))
        }
        Capability::FindEntitlementAssociations => {
            let p = answer::paging(capability, envelope.page.as_ref())?;
            Ok(answer::find_entitlement_associations(&grants(conn).await?, &p))
        }
        Capability::GetAccount => {
            let req: GetAccount = argument(&envelope)?;
            let id: AccountId = req
                .account_id
                .parse()
                .map_err(|e: model::IdError| ConnectorError::new(ErrorCode::InvalidValue, e.to_string()))?;
            answer::get_account(&grants(conn).await?, &id)
        }
        Capability::UnassignEntitlement => unassign(conn, argument(&envelope)?).await,
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
    let entitlement = model::Entitlement::parse(
        &req.entitlement_type,
        &req.entitlement_integration_specific_id,
        &req.resource_type,
        &req.resource_integration_specific_id,
    )
    .map_err(invalid)?;
    // Refused here too, so a protected account gets no record at all; the plan refuses it again.
    if let Some(why) = conn.protected.why(&account.0) {
        return Err(ConnectorError::new(ErrorCode::PermissionDenied, format!("refused: {why}; nothing was recorded")));
    }
    let spec = answer::unassign_request(&account, &entitlement);
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

async fn grants(conn: &Connector) -> Result<Vec<model::Grant>, ConnectorError> {
    // The index's barrier proves it holds every binding written before this call (one write
    // shared by concurrent calls); when it cannot pass, the API server is listed instead.
    if let Some(index) = conn.index.as_ref().filter(|ix| ix.is_watching())
        && index.sync(std::time::Instant::now(), true, true).await.is_ok()
    {
        let b = index.all();
        let rbs = b.role_bindings.iter().map(AsRef::as_ref);
        return Ok(model::grants(rbs, b.cluster_role_bindings.iter().map(AsRef::as_ref), &conn.protected));
    }
    let b = read::bindings(&conn.client).await?;
    Ok(model::grants(&b.role_bindings, &b.cluster_role_bindings, &conn.protected))
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
