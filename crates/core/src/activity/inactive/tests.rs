use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::activity::{Coverage, Entry};
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
    let now = ts("2025-03-20T00:00:00Z");
    let covered = Coverage {
        covered_from: ts("2025-03-01T00:00:00Z"),
        heard_at: ts("2025-03-19T23:59:00Z"),
        resolution_seconds: 60,
        gap_seconds: 300,
    };
    let rows = rows(&grants, known, from, Some(&covered), now);
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
    assert!(rows[0].reason.as_deref().unwrap().contains("2025-03-11T00:00:00Z, inside the window"), "{:?}", rows[0]);
    assert_eq!(rows[2].reason, None);
    // The same store, but batches stopped arriving on the 12th: bob is no longer proven inactive.
    let stopped = Coverage { heard_at: ts("2025-03-12T00:00:00Z"), ..covered };
    let rows = super::rows(&grants, known, from, Some(&stopped), now);
    assert_eq!(
        (rows[2].judged, rows[2].reason.as_deref()),
        (Inactivity::Unproven, Some("no audit events received since 2025-03-12T00:00:00Z"))
    );
}
