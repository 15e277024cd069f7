use super::*;
use crate::fixtures::{cluster_role_binding, group, role_binding, service_account, service_account_in, user};

fn protected() -> Protected {
    Protected { operator: Some(("deprovisioner".into(), "deprovisioner".into())), also: vec![] }
}

fn ids(grants: &[Grant]) -> Vec<String> {
    let mut out: Vec<String> = grants
        .iter()
        .map(|g| format!("{} {} {:?} {}", g.account, g.entitlement.role, g.entitlement.scope, g.binding))
        .collect();
    out.sort();
    out
}

#[test]
fn account_ids_round_trip() {
    for id in [
        "User:alice@example.com",
        "User:oidc:alice@example.com",
        "User:https://issuer#alice",
        "Group:ext-admins",
        "Group:a/b:c",
        "ServiceAccount:ci/builder",
    ] {
        let parsed: AccountId = id.parse().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(parsed.to_string(), id);
    }
    let sa: AccountId = "ServiceAccount:ci/builder".parse().expect("sa");
    assert_eq!(sa.0, Principal::ServiceAccount("ci".into(), "builder".into()));
}

#[test]
fn malformed_account_ids_are_refused() {
    for id in [
        "",
        "alice",
        "User:",
        "Role:x",
        "user:alice",
        "ServiceAccount:ci",
        "ServiceAccount:/b",
        "ServiceAccount:ci/",
        "ServiceAccount:ci/a/b",
        // Only the canonical id of a ServiceAccount is ours.
        "User:system:serviceaccount:ci:builder",
    ] {
        assert!(id.parse::<AccountId>().is_err(), "{id:?} was accepted");
    }
}

#[test]
fn grants_canonicalise_subjects_and_leave_out_protected_ones() {
    let rbs = vec![
        role_binding("team-a", "devs")
            .role("edit")
            .subjects([
                user("alice@example.com"),
                user("system:serviceaccount:team-a:deployer"),
                service_account("deployer"), // the same ServiceAccount, spelled differently
                user("System:Admin"),        // system: in any case
                group("system:authenticated"),
                group("devs"),
            ])
            .build(),
        role_binding("kube-system", "sa").role_ref("Role", "reader").subjects([service_account("coredns")]).build(),
        role_binding("team-b", "own")
            .role("view")
            .subjects([service_account_in("deprovisioner", "deprovisioner")])
            .build(),
    ];
    let crbs = vec![
        cluster_role_binding("admins").role("cluster-admin").subjects([user("bob"), group("system:masters")]).build(),
        // A ServiceAccount with no namespace in a ClusterRoleBinding means nothing to RBAC.
        cluster_role_binding("broken").role("view").subjects([service_account("nobody")]).build(),
        // A ClusterRoleBinding cannot grant a Role.
        cluster_role_binding("odd").role_ref("Role", "x").subjects([user("carol")]).build(),
    ];
    let g = grants(&rbs, &crbs, &protected());
    assert_eq!(
        ids(&g),
        vec![
            "Group:devs ClusterRole:edit Namespace(\"team-a\") RoleBinding team-a/devs",
            "ServiceAccount:team-a/deployer ClusterRole:edit Namespace(\"team-a\") RoleBinding team-a/devs",
            "User:alice@example.com ClusterRole:edit Namespace(\"team-a\") RoleBinding team-a/devs",
            "User:bob ClusterRole:cluster-admin Cluster ClusterRoleBinding admins",
        ]
    );
}

#[test]
fn associations_merge_bindings_and_entitlements_name_them() {
    let rbs = vec![
        role_binding("team-a", "one").role("edit").subjects([user("alice")]).build(),
        role_binding("team-a", "two").role("edit").subjects([user("alice"), user("bob")]).build(),
        role_binding("team-a", "three").role_ref("Role", "edit").subjects([user("alice")]).build(),
    ];
    let g = grants(&rbs, &[], &protected());
    let assoc = associations(&g);
    let keys: Vec<_> = assoc.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![
            ("User:alice".into(), "team-a".into(), "ClusterRole:edit".into()),
            ("User:alice".into(), "team-a".into(), "Role:edit".into()),
            ("User:bob".into(), "team-a".into(), "ClusterRole:edit".into()),
        ]
    );
    let first = &assoc[&("User:alice".to_string(), "team-a".to_string(), "ClusterRole:edit".to_string())];
    assert_eq!(
        first.bindings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["RoleBinding team-a/one", "RoleBinding team-a/two"]
    );
    let ents = entitlements(&g);
    assert_eq!(ents.len(), 2);
    assert_eq!(ents[&("team-a".to_string(), "ClusterRole:edit".to_string())].bindings.len(), 2);
    let accs = accounts(&g);
    assert_eq!(accs.keys().collect::<Vec<_>>(), vec!["User:alice", "User:bob"]);
    assert_eq!(accs["User:alice"].bindings.len(), 3);
}

#[test]
fn entitlement_ids_parse_only_as_listed() {
    let ok = Entitlement::parse(CLUSTER_ROLE, "ClusterRole:cluster-admin", "", "").expect("cluster");
    assert_eq!(ok.scope, Scope::Cluster);
    let ok = Entitlement::parse(NAMESPACE_ROLE, "Role:system:x", NAMESPACE, "team-a").expect("role");
    assert_eq!((ok.scope, ok.role.to_string()), (Scope::Namespace("team-a".into()), "Role:system:x".into()));
    for (t, e, rt, r) in [
        (CLUSTER_ROLE, "Role:x", "", ""),
        (CLUSTER_ROLE, "ClusterRole:x", NAMESPACE, "team-a"),
        (NAMESPACE_ROLE, "ClusterRole:x", "", ""),
        (NAMESPACE_ROLE, "ClusterRole:x", NAMESPACE, ""),
        (NAMESPACE_ROLE, "Binding:x", NAMESPACE, "a"),
        (NAMESPACE_ROLE, "ClusterRole:", NAMESPACE, "a"),
        // Not a namespace name: it would change what the request's permission value says.
        (NAMESPACE_ROLE, "ClusterRole:x", NAMESPACE, "a/b"),
        (NAMESPACE_ROLE, "ClusterRole:x", NAMESPACE, "Team-A"),
        ("license", "ClusterRole:x", "", ""),
    ] {
        assert!(Entitlement::parse(t, e, rt, r).is_err(), "{t} {e} {rt} {r:?} was accepted");
    }
}

#[test]
fn emails_only_for_plain_addresses() {
    let email = |n: &str| email_of(&Principal::User(n.into())).map(str::to_string);
    assert_eq!(email("alice@example.com"), Some("alice@example.com".into()));
    assert_eq!(email("oidc:alice@example.com"), None);
    assert_eq!(email("alice"), None);
    assert_eq!(email("a@localhost"), None);
    assert_eq!(email_of(&Principal::Group("a@example.com".into())), None);
}

#[test]
fn a_member_resources_ids_read_back_to_the_member_and_its_own_entitlement() {
    let (m, e) = parse_placed(NAMESPACE_ROLE, "Role:dev", NAMESPACE, "b/team").unwrap();
    assert_eq!(m.as_deref(), Some("b"));
    assert_eq!(e.scope, Scope::Namespace("team".into()));
    assert_eq!(resource_id(m.as_deref(), &e.scope), "b/team");
    let (m, e) = parse_placed(MEMBER_CLUSTER_ROLE, "ClusterRole:view", MEMBER_CLUSTER, "a/").unwrap();
    assert_eq!((m.as_deref(), e.scope.clone()), (Some("a"), Scope::Cluster));
    assert_eq!(resource_id(m.as_deref(), &e.scope), "a/");
    // A member named like one of this cluster's namespaces never shares its id.
    assert_ne!(resource_id(Some("team"), &Scope::Cluster), resource_id(None, &Scope::Namespace("team".into())));
    assert!(parse_placed(MEMBER_CLUSTER_ROLE, "ClusterRole:view", MEMBER_CLUSTER, "a").is_err(), "no `/`");
    assert_eq!(
        (resource_type(m.as_deref(), &e.scope), entitlement_type(m.as_deref(), &e.scope)),
        (MEMBER_CLUSTER, MEMBER_CLUSTER_ROLE)
    );
    let (m, e) = parse_placed(NAMESPACE_ROLE, "Role:dev", NAMESPACE, "team").unwrap();
    assert_eq!((m, e.scope), (None, Scope::Namespace("team".into())), "the hub's own, as before");
    assert!(parse_placed(NAMESPACE_ROLE, "Role:dev", NAMESPACE, "B_/team").is_err());
    assert!(parse_placed(NAMESPACE_ROLE, "Role:dev", NAMESPACE, "b/").is_err());
    assert!(
        parse_placed(MEMBER_CLUSTER_ROLE, "Role:dev", MEMBER_CLUSTER, "a/").is_err(),
        "a Role is never cluster-wide"
    );
}
