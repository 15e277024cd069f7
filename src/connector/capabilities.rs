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
