//! Pure: what each capability answers, from what was read. Every list is ordered by a sort key
//! and paged after the key of the last item sent ([`super::page`]).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::capabilities::Capability;

use super::model::{
    self, AccountId, Association, BindingName, CLUSTER_ROLE, Entitlement, Key, NAMESPACE, NAMESPACE_ROLE, Scope,
    Snapshot,
};
use super::page;
use super::wire::{self, APP_ID, ConnectorError, ErrorCode, PageIn};
use crate::activity::{Entry, Known};
use crate::crd::{
    Application, ConditionType, DeprovisionRequestSpec, Permission, Person, Phase, Reason, RequestSource,
};
use crate::plan::subject::Principal;
use crate::webhook::submit::Waited;

/// Bindings named per item at most (the count is always given).
const BINDINGS_SHOWN: usize = 20;

/// Where a paged read starts and how much it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// The key of the last item already sent; `None` for the first page.
    pub after: Option<Vec<String>>,
    /// Items per page.
    pub size: usize,
}

/// The paging a request asks for; a token another capability issued, or none issued, is refused.
pub fn paging(capability: Capability, page: Option<&PageIn>) -> Result<Paging, ConnectorError> {
    let size = page::size(page.and_then(|p| p.size));
    let after = match page.and_then(|p| p.token.as_deref()).filter(|t| !t.is_empty()) {
        Some(t) => Some(
            page::after(capability.name(), t)
                .map_err(|e| ConnectorError::new(ErrorCode::InvalidPageToken, e.to_string()))?,
        ),
        None => None,
    };
    Ok(Paging { after, size })
}

fn paged(capability: Capability, items: Vec<(Vec<String>, Value)>, p: &Paging) -> Value {
    let (items, next) = page::slice(items.iter().map(|(k, v)| (k.clone(), v)), p.after.as_deref(), p.size);
    let response = Value::Array(items.into_iter().cloned().collect());
    wire::ok(response, next.map(|k| (page::token(capability.name(), &k), p.size)))
}

/// One page of a snapshot's list: only the page's items are turned into JSON.
fn paged_range<V>(
    capability: Capability,
    items: &BTreeMap<Key, V>,
    p: &Paging,
    data: impl Fn(&Key, &V) -> Value,
) -> Value {
    let (page, next) = page::range(items, p.after.as_deref(), p.size);
    let response = Value::Array(page.into_iter().map(|(k, v)| data(k, v)).collect());
    wire::ok(response, next.map(|k| (page::token(capability.name(), &k), p.size)))
}

fn binding_names(bindings: &std::collections::BTreeSet<BindingName>) -> Value {
    json!(bindings.iter().take(BINDINGS_SHOWN).map(ToString::to_string).collect::<Vec<_>>())
}

/// One `FoundAccountData`.
fn account_data(id: &AccountId, bindings: &std::collections::BTreeSet<BindingName>) -> Value {
    let (kind, namespace, name) = match &id.0 {
        Principal::User(n) => ("User", None, n.as_str()),
        Principal::Group(n) => ("Group", None, n.as_str()),
        Principal::ServiceAccount(ns, n) => ("ServiceAccount", Some(ns.as_str()), n.as_str()),
    };
    let mut extra = json!({
        "kind": kind,
        "name": name,
        "binding_count": bindings.len(),
        "bindings": binding_names(bindings),
    });
    if let Some(ns) = namespace {
        extra["namespace"] = json!(ns);
    }
    let mut out = json!({
        "integration_specific_id": id.to_string(),
        "username": match namespace { Some(ns) => format!("system:serviceaccount:{ns}:{name}"), None => name.to_string() },
        "user_status": "ACTIVE",
        "extra_data": extra,
    });
    // Lumos knows two account types; a Group is neither, so it carries none (see the doc).
    match kind {
        "User" => out["account_type"] = json!("user"),
        "ServiceAccount" => out["account_type"] = json!("service"),
        _ => {}
    }
    if let Some(email) = model::email_of(&id.0) {
        out["email"] = json!(email);
    }
    out
}

/// `list_accounts`: every account holding a grant, by id.
pub fn list_accounts(map: &Snapshot, p: &Paging) -> Value {
    paged_range(Capability::ListAccounts, &map.accounts, p, |_, a| account_data(&a.id, &a.bindings))
}

/// `get_account`: one account, or `not_found` when no binding grants it anything reviewable.
pub fn get_account(map: &Snapshot, id: &AccountId) -> Result<Value, ConnectorError> {
    let key = id.to_string();
    match map.accounts.get([key.clone()].as_slice()) {
        Some(a) => Ok(wire::ok(account_data(&a.id, &a.bindings), None)),
        None => Err(ConnectorError::new(
            ErrorCode::NotFound,
            format!(
                "no binding grants anything to account {key:?} (or it is protected: system:, kube-system, the operator)"
            ),
        )),
    }
}

/// `list_resources`: the cluster (the global resource) first, then each namespace by name.
pub fn list_resources(cluster_label: &str, namespaces: &[String], p: &Paging) -> Value {
    list_fleet_resources(cluster_label, namespaces, &[], p)
}

/// A member cluster as the hub's connector lists it: its namespaces from its last inventory,
/// and how fresh that is.
#[derive(Debug, Clone, Default)]
pub struct MemberResources {
    /// Its name.
    pub name: String,
    /// Its namespaces as last reported.
    pub namespaces: Vec<String>,
    /// When its agent last computed a changed inventory (`None`: none reported yet).
    pub reported_at: Option<String>,
    /// When its agent last found that inventory still true (when the hub's API server saw the
    /// header written: the hub's clock).
    pub checked_at: Option<String>,
    /// Its last check is more than three of its agent's periods old: listed as last reported,
    /// which may no longer hold.
    pub stale: bool,
    /// Its agent's last heartbeat.
    pub heartbeat: Option<String>,
    /// Grants its inventory left out (past the bound).
    pub left_out: usize,
}

/// `list_resources` on a fleet hub: the hub's own as [`list_resources`], then each member
/// (`<member>/`, type `cluster`) and its namespaces (`<member>/<namespace>`), ordered by id.
pub fn list_fleet_resources(
    cluster_label: &str,
    namespaces: &[String],
    members: &[MemberResources],
    p: &Paging,
) -> Value {
    let mut items = vec![(
        vec![String::new()],
        json!({"integration_specific_id": "", "resource_type": "", "label": cluster_label,
               "description": "The whole cluster: ClusterRoles granted by ClusterRoleBindings"}),
    )];
    items.extend(namespaces.iter().map(|ns| {
        (
            vec![ns.clone()],
            json!({"integration_specific_id": ns, "resource_type": NAMESPACE, "label": ns,
                   "description": format!("Namespace {ns}: Roles and ClusterRoles granted by RoleBindings in it")}),
        )
    }));
    for m in members {
        let fresh = json!({
            "inventory_reported_at": m.reported_at.as_deref().unwrap_or("not reported yet"),
            "inventory_checked_at": m.checked_at.as_deref().unwrap_or("not reported yet"),
            "inventory_stale": m.stale.to_string(),
            "agent_heartbeat": m.heartbeat.as_deref().unwrap_or("none yet"),
            "grants_left_out": m.left_out.to_string(),
        });
        let mut cluster = fresh.clone();
        cluster["cluster"] = json!(m.name);
        let id = model::resource_id(Some(&m.name), &Scope::Cluster);
        items.push((
            vec![id.clone()],
            json!({"integration_specific_id": id, "resource_type": model::MEMBER_CLUSTER, "label": format!("cluster {}", m.name),
                   "description": format!("Member cluster {}: ClusterRoles granted by its ClusterRoleBindings", m.name),
                   "extra_data": cluster}),
        ));
        for ns in &m.namespaces {
            let id = model::resource_id(Some(&m.name), &Scope::Namespace(ns.clone()));
            let mut extra = fresh.clone();
            extra["cluster"] = json!(m.name);
            extra["namespace"] = json!(ns);
            items.push((
                vec![id.clone()],
                json!({"integration_specific_id": id, "resource_type": NAMESPACE, "label": format!("{ns} in cluster {}", m.name),
                       "description": format!("Namespace {ns} of member cluster {}: Roles and ClusterRoles granted by RoleBindings in it", m.name),
                       "extra_data": extra}),
            ));
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    paged(Capability::ListResources, items, p)
}

fn entitlement_label(e: &Entitlement) -> String {
    match &e.scope {
        Scope::Cluster => format!("{} {} (cluster-wide)", e.role.kind, e.role.name),
        Scope::Namespace(ns) => format!("{} {} in namespace {ns}", e.role.kind, e.role.name),
    }
}

/// `list_entitlements`: every role held by an account, per resource, ordered by (resource id,
/// entitlement id). None is assignable: the connector only removes.
pub fn list_entitlements(map: &Snapshot, p: &Paging) -> Value {
    paged_range(Capability::ListEntitlements, &map.entitlements, p, |_, held| {
        let (c, e, bindings) = (held.cluster.as_deref(), &held.entitlement, &held.bindings);
        let label = match c {
            Some(m) => format!("{} in cluster {m}", entitlement_label(e)),
            None => entitlement_label(e),
        };
        let mut item = json!({
            "entitlement_type": model::entitlement_type(c, &e.scope),
            "integration_specific_id": e.role.to_string(),
            "integration_specific_resource_id": model::resource_id(c, &e.scope),
            "label": label,
            "is_assignable": false,
            "extra_data": {
                "role_kind": e.role.kind,
                "role_name": e.role.name,
                "binding_count": bindings.len(),
                "bindings": binding_names(bindings),
            },
        });
        // A member's, as last reported: whether that report is stale.
        if let Some(m) = c {
            item["extra_data"]["cluster"] = json!(m);
            item["extra_data"]["inventory_stale"] = json!(map.stale_members.contains(m).to_string());
        }
        item
    })
}

fn association_data(a: &Association) -> Value {
    json!({
        "account_id": a.account.to_string(),
        "integration_specific_entitlement_id": a.entitlement.role.to_string(),
        "integration_specific_resource_id": model::resource_id(a.cluster.as_deref(), &a.entitlement.scope),
    })
}

/// `find_entitlement_associations`: who holds what where, ordered by (account id, resource id,
/// entitlement id).
pub fn find_entitlement_associations(map: &Snapshot, p: &Paging) -> Value {
    paged_range(Capability::FindEntitlementAssociations, &map.associations, p, |_, a| association_data(a))
}

/// The request `unassign_entitlement` records: the entitlement as the permission, the account id
/// as the target and as `customFields.accountId` (what a `LumosAccount` subject renders).
pub fn unassign_request(account: &AccountId, entitlement: &Entitlement) -> DeprovisionRequestSpec {
    let id = account.to_string();
    DeprovisionRequestSpec {
        application: Application { app_id: Some(APP_ID.into()), instance_id: None, user_friendly_label: None },
        permissions: vec![Permission {
            value: entitlement.permission_value(),
            label: Some(format!("{} in {}", entitlement.role, scope_label(&entitlement.scope))),
            type_: Some("PERMISSION".into()),
            source: Some("LUMOS_CONNECTOR".into()),
        }],
        user: None,
        target_user: Person { email: id.clone(), given_name: None, family_name: None },
        request_comment: Some("unassign_entitlement from the Lumos connector".into()),
        custom_fields: [(ACCOUNT_ID_FIELD.to_string(), id)].into(),
        source: RequestSource::LumosConnector,
        dry_run: false,
        expiry: None,
        hub_source: None,
    }
}

/// The custom field holding the account id in a request from the connector (policies render it
/// with `{{custom_fields.accountId}}` in a `LumosAccount` subject).
pub const ACCOUNT_ID_FIELD: &str = "accountId";

fn scope_label(scope: &Scope) -> String {
    match scope {
        Scope::Cluster => "the cluster".into(),
        Scope::Namespace(ns) => format!("namespace {ns}"),
    }
}

/// `unassign_entitlement`'s answer, from the request's record: `unassigned: true` once it
/// succeeded (removed, or already absent); otherwise an error naming the record, with
/// `permission_denied` when the plan was refused (no policy allows it, a protected subject) and
/// `request_timeout` while it still runs.
pub fn unassigned(waited: &Waited) -> Result<Value, ConnectorError> {
    let (name, status) = match waited {
        Waited::Deleted(name) => {
            let m = format!("deprovisionrequest/{name} was deleted before it finished");
            return Err(ConnectorError::new(ErrorCode::ServiceError, m));
        }
        Waited::Record { name, status } => (name, status.as_deref()),
    };
    let record = format!(" (record: deprovisionrequest/{name})");
    let message = status.and_then(|s| s.message.as_deref()).unwrap_or_default();
    let message = crate::text::clip_keeping(message, &record);
    match status.map(|s| s.phase).unwrap_or_default() {
        Phase::Succeeded => Ok(wire::ok(json!({"unassigned": true}), None)),
        Phase::Failed => {
            let code = if status.is_some_and(refused) { ErrorCode::PermissionDenied } else { ErrorCode::ServiceError };
            Err(ConnectorError::new(code, message))
        }
        Phase::DryRun => Err(ConnectorError::new(ErrorCode::InternalError, message)),
        Phase::Pending | Phase::InProgress => Err(ConnectorError::new(
            ErrorCode::RequestTimeout,
            format!("Still in progress: the operator will finish it; see deprovisionrequest/{name} for the result"),
        )),
    }
}

/// True when a failed record was refused rather than broken: its plan was refused here, or (on a
/// fleet hub) every member that did not succeed refused it with its own policies (a member's
/// `DryRun` is no success: the connector never asks for one).
fn refused(status: &crate::crd::DeprovisionRequestStatus) -> bool {
    use crate::crd::MemberPhase;
    let is_refusal = |reason: &str| REFUSALS.iter().any(|r| r.as_str() == reason);
    let here = status.conditions.iter().find(|c| c.type_ == ConditionType::Planned.as_str());
    if here.is_some_and(|c| c.status == "False" && is_refusal(&c.reason)) {
        return true;
    }
    let failed: Vec<_> = status.members.iter().filter(|m| m.reported.phase != MemberPhase::Succeeded).collect();
    !failed.is_empty() && failed.iter().all(|m| m.reported.refused.as_deref().is_some_and(is_refusal))
}

/// Planning refusals that mean "not allowed", answered `permission_denied`.
const REFUSALS: [Reason; 7] = [
    Reason::NoPolicy,
    Reason::UnmappedPermission,
    Reason::ProtectedSubject,
    Reason::SubjectNotAllowed,
    Reason::EntitlementNotAllowed,
    Reason::NeedsPermission,
    Reason::ManagedBinding,
];

/// `event_type` of every `get_last_activity` item: any API request counts (the scaffold's
/// `last_activity`; the cluster sees no logins, only requests).
pub const LAST_ACTIVITY: &str = "last_activity";

/// `activity_type` of every `list_activity_records` item (the spec's free-text form: no
/// standard type fits a request to the API server).
pub const API_REQUEST: &str = "KubernetesAPIRequest";

/// `get_last_activity`: for each account asked about (in the order asked, once), its last
/// request. Accounts the store never saw acting (not seen since recording began, or recording
/// never began for them) are left out: `happened_at` is required, and a made-up time would read
/// as activity. `skip` leaves out accounts never answered about (groups, protected ones).
pub fn last_activity(ids: &[AccountId], known: impl Fn(&str) -> Known, skip: impl Fn(&AccountId) -> bool) -> Value {
    let mut seen = std::collections::BTreeSet::new();
    let items: Vec<Value> = ids
        .iter()
        .filter(|id| !skip(id))
        .map(ToString::to_string)
        .filter(|id| seen.insert(id.clone()))
        .filter_map(|id| match known(&id) {
            Known::Seen(e) => {
                Some(json!({"account_id": id, "event_type": LAST_ACTIVITY, "happened_at": e.at.to_string()}))
            }
            Known::NotSeenSince(_) | Known::NotRecorded => None,
        })
        .collect();
    wire::ok(Value::Array(items), None)
}

/// `list_activity_records`: one record per account (ordered by account id, paged) whose last
/// request was at or after `since`: what it did and the credential id in `metadata`.
pub fn activity_records<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Entry)>,
    since: Timestamp,
    p: &Paging,
) -> Value {
    activity_records_with(entries, since, p, activity_record)
}

/// [`activity_records`] with the item built by `record`: the entries are ordered and sliced by
/// key first, and only the page's are built.
fn activity_records_with<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Entry)>,
    since: Timestamp,
    p: &Paging,
    record: impl Fn(&str, &Entry) -> Value,
) -> Value {
    let by_key: BTreeMap<Key, &Entry> =
        entries.into_iter().filter(|(_, e)| e.at >= since).map(|(a, e)| (vec![a.to_string()], e)).collect();
    paged_range(Capability::ListActivityRecords, &by_key, p, |k, e| record(&k[0], e))
}

/// One `ActivityRecord`: the account's last request.
fn activity_record(account: &str, e: &Entry) -> Value {
    let mut metadata = serde_json::Map::new();
    metadata.insert("event_type".into(), json!(LAST_ACTIVITY));
    for (k, v) in [("what", &e.what), ("credential_id", &e.credential), ("impersonated_by", &e.impersonated_by)] {
        if let Some(v) = v {
            metadata.insert(k.into(), json!(v));
        }
    }
    let at = e.at.to_string();
    json!({
        "id": format!("{account}@{at}"),
        "activity_type": API_REQUEST,
        "timestamp": at,
        "actor": {"account_id": account},
        "targets": [],
        "metadata": metadata,
    })
}

/// A `since_date`: an RFC 3339 time, or a date (its midnight UTC).
pub fn since_date(s: &str) -> Result<Timestamp, ConnectorError> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    s.parse::<k8s_openapi::jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            ConnectorError::new(
                ErrorCode::InvalidValue,
                format!("since_date {s:?} is neither an ISO 8601 time with offset (2025-01-31T09:00:00Z) nor a date (2025-01-31)"),
            )
        })
}

/// `validate_credentials`: valid, with the cluster's id as the tenant id.
pub fn validated(tenant: &str) -> Value {
    wire::ok(json!({"valid": true, "unique_tenant_id": tenant}), None)
}

/// `info`: what this connector is and does.
pub fn info(capabilities: &[Capability]) -> Value {
    let mut names: Vec<&str> = capabilities.iter().map(|c| c.name()).collect();
    names.sort_unstable();
    let schema: serde_json::Map<String, Value> = capabilities
        .iter()
        .map(|c| {
            let (argument, output, description) = c.schema();
            let mut s = json!({
                "argument": {"$ref": format!("#/components/schemas/{argument}")},
                "output": {"$ref": format!("#/components/schemas/{output}")},
            });
            if !description.is_empty() {
                s["description"] = json!(description);
            }
            (c.name().to_string(), s)
        })
        .collect();
    wire::ok(
        json!({
            "app_id": APP_ID,
            "app_vendor_domain": "kubernetes.io",
            "version": env!("CARGO_PKG_VERSION"),
            "user_friendly_name": "Kubernetes (deprovisioner)",
            "description": "Who holds which RBAC role in a Kubernetes cluster, from its RoleBindings and ClusterRoleBindings; removals go through a recorded DeprovisionRequest.",
            "categories": ["DEVELOPERS", "IT_AND_SECURITY"],
            "capabilities": names,
            "capability_schema": schema,
            // The connector authenticates to the cluster itself (kubeconfig or in-cluster
            // ServiceAccount); over HTTP the shared secret is checked before any capability runs.
            "authentication_schema": {"type": "object", "title": "NoAuthentication", "properties": {}},
            "credentials_schema": [],
            "entitlement_types": [
                {"type_id": CLUSTER_ROLE, "type_label": "ClusterRole (cluster-wide)", "resource_type_id": "", "min": 0},
                {"type_id": NAMESPACE_ROLE, "type_label": "Role in a namespace", "resource_type_id": NAMESPACE, "min": 0},
                {"type_id": model::MEMBER_CLUSTER_ROLE, "type_label": "ClusterRole in a member cluster (fleet hub)", "resource_type_id": model::MEMBER_CLUSTER, "min": 0},
            ],
            "resource_types": [
                {"type_id": "", "type_label": "Cluster"},
                {"type_id": NAMESPACE, "type_label": "Namespace"},
                {"type_id": model::MEMBER_CLUSTER, "type_label": "Member cluster (fleet hub)"},
            ],
            "request_settings_schema": {"type": "object", "title": "NoSettings", "properties": {}},
        }),
        None,
    )
}

#[cfg(test)]
mod tests;
