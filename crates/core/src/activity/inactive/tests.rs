use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::activity::Entry;
use crate::fixtures::{self, group, service_account, user};
use crate::plan::subject::Protected;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn users_and_service_accounts_holding_bindings_are_judged_groups_and_protected_ones_left_out() {
    let rb = fixtures::role_binding("team", "devs")
        .role("edit")
        .subjects([user("ann@x.com"), user("bob@x.com"), service_account("ci"), group("devs"), user("system:admin")])
        .build();
    let crb = fixtures::cluster_role_binding("admins").role("admin").subjects([user("ann@x.com")]).build();
    let grants = crate::connector::model::grants([&rb], [&crb], &Protected::default());
    let from = ts("2025-03-10T00:00:00Z");
    let known = |a: &str| match a {
        "User:ann@x.com" => {
            Known::Seen(Entry { at: ts("2025-03-12T00:00:00Z"), credential: None, impersonated_by: None, what: None })
        }
        "User:bob@x.com" => Known::NotSeenSince(ts("2025-03-01T00:00:00Z")),
        _ => Known::NotSeenSince(ts("2025-03-11T00:00:00Z")),
    };
    let rows = rows(&grants, known, from);
    let got: Vec<(&str, &str, Inactivity)> = rows.iter().map(|r| (r.account.as_str(), r.kind, r.judged)).collect();
    assert_eq!(
        got,
        [
            ("ServiceAccount:team/ci", "ServiceAccount", Inactivity::Unproven),
            ("User:ann@x.com", "User", Inactivity::Active),
            ("User:bob@x.com", "User", Inactivity::Inactive),
        ]
    );
    assert_eq!(rows[1].bindings, ["ClusterRoleBinding admins", "RoleBinding team/devs"]);
}
