//! The capabilities this connector implements, by their names in the spec (pure: the answers
//! and the dispatch both name them, so it is a module of its own).

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
    /// When given accounts last made an API request (from the activity store).
    GetLastActivity,
    /// One record per account of its last API request since a date (from the activity store).
    ListActivityRecords,
}

impl Capability {
    /// Every implemented capability.
    pub const ALL: [Capability; 10] = [
        Capability::Info,
        Capability::ValidateCredentials,
        Capability::ListAccounts,
        Capability::ListResources,
        Capability::ListEntitlements,
        Capability::FindEntitlementAssociations,
        Capability::GetAccount,
        Capability::UnassignEntitlement,
        Capability::GetLastActivity,
        Capability::ListActivityRecords,
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
            Capability::GetLastActivity => "get_last_activity",
            Capability::ListActivityRecords => "list_activity_records",
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
            Capability::GetLastActivity => (
                "GetLastActivity",
                "LastActivityData",
                "When each user or ServiceAccount last made a request to the API server, from its audit events; accounts never seen acting since recording began are left out.",
            ),
            Capability::ListActivityRecords => (
                "ListActivityRecords",
                "ActivityRecord",
                "Each account's last API request at or after since_date (what it did, the credential id it used), one record per account; no actors: every account seen.",
            ),
        }
    }
}
