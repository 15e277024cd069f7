use serde_json::json;

use super::*;
use crate::connector::page::DEFAULT_SIZE;
use crate::fixtures::{cluster_role_binding, group, role_binding, service_account, user};
use crate::plan::subject::Protected;

fn grants() -> Snapshot {
    let rbs = vec![
        role_binding("team-a", "devs").role("edit").subjects([user("alice@example.com"), group("devs")]).build(),
        role_binding("team-b", "ci").role_ref("Role", "deployer").subjects([service_account("builder")]).build(),
    ];
    let crbs = vec![cluster_role_binding("admins").role("cluster-admin").subjects([user("bob")]).build()];
    Snapshot::of(&model::grants(&rbs, &crbs, &Protected::default()))
}

fn first(size: usize) -> Paging {
    Paging { after: None, size }
}

fn next(answer: &Value, capability: Capability) -> Option<Paging> {
    let token = answer.get("page")?.get("token")?.as_str()?;
    let size = answer["page"]["size"].as_u64()? as usize;
    Some(paging(capability, Some(&PageIn { token: Some(token.into()), size: Some(size as i64) })).expect("our token"))
}

fn all_pages(capability: Capability, size: usize, f: impl Fn(&Paging) -> Value) -> Vec<Value> {
    let mut out = vec![];
    let mut p = first(size);
    loop {
        let a = f(&p);
        out.extend(a["response"].as_array().expect("a list").iter().cloned());
        match next(&a, capability) {
            Some(n) => p = n,
            None => {
                assert!(a.get("page").is_none(), "the last page carries no token: {a}");
                return out;
            }
        }
    }
}

#[test]
fn accounts_say_who_they_are() {
    let a = list_accounts(&grants(), &first(DEFAULT_SIZE));
    assert_eq!(
        a,
        json!({"response": [
            {"integration_specific_id": "Group:devs", "username": "devs", "user_status": "ACTIVE",
             "extra_data": {"kind": "Group", "name": "devs", "binding_count": 1, "bindings": ["RoleBinding team-a/devs"]}},
            {"integration_specific_id": "ServiceAccount:team-b/builder", "username": "system:serviceaccount:team-b:builder",
             "user_status": "ACTIVE", "account_type": "service",
             "extra_data": {"kind": "ServiceAccount", "namespace": "team-b", "name": "builder", "binding_count": 1,
                            "bindings": ["RoleBinding team-b/ci"]}},
            {"integration_specific_id": "User:alice@example.com", "username": "alice@example.com", "email": "alice@example.com",
             "user_status": "ACTIVE", "account_type": "user",
             "extra_data": {"kind": "User", "name": "alice@example.com", "binding_count": 1, "bindings": ["RoleBinding team-a/devs"]}},
            {"integration_specific_id": "User:bob", "username": "bob", "user_status": "ACTIVE", "account_type": "user",
             "extra_data": {"kind": "User", "name": "bob", "binding_count": 1, "bindings": ["ClusterRoleBinding admins"]}},
        ]})
    );
}

#[test]
fn every_list_pages_to_the_end_without_repeats() {
    let g = grants();
    for size in [1, 2, 3, 100] {
        let accounts = all_pages(Capability::ListAccounts, size, |p| list_accounts(&g, p));
        assert_eq!(accounts.len(), 4, "size {size}");
        let assoc = all_pages(Capability::FindEntitlementAssociations, size, |p| find_entitlement_associations(&g, p));
        assert_eq!(assoc.len(), 4, "size {size}");
        let ents = all_pages(Capability::ListEntitlements, size, |p| list_entitlements(&g, p));
        assert_eq!(ents.len(), 3, "size {size}");
        let ns = vec!["default".to_string(), "team-a".into()];
        let res = all_pages(Capability::ListResources, size, |p| list_resources("c", &ns, p));
        assert_eq!(
            res.iter().map(|r| r["integration_specific_id"].clone()).collect::<Vec<_>>(),
            vec![json!(""), json!("default"), json!("team-a")]
        );
    }
}

#[test]
fn associations_and_entitlements_point_at_resources() {
    let a = find_entitlement_associations(&grants(), &first(DEFAULT_SIZE));
    assert_eq!(
        a["response"],
        json!([
            {"account_id": "Group:devs", "integration_specific_entitlement_id": "ClusterRole:edit", "integration_specific_resource_id": "team-a"},
            {"account_id": "ServiceAccount:team-b/builder", "integration_specific_entitlement_id": "Role:deployer", "integration_specific_resource_id": "team-b"},
            {"account_id": "User:alice@example.com", "integration_specific_entitlement_id": "ClusterRole:edit", "integration_specific_resource_id": "team-a"},
            {"account_id": "User:bob", "integration_specific_entitlement_id": "ClusterRole:cluster-admin", "integration_specific_resource_id": ""},
        ])
    );
    let e = list_entitlements(&grants(), &first(DEFAULT_SIZE));
    assert_eq!(e["response"][0]["entitlement_type"], json!(CLUSTER_ROLE));
    assert_eq!(e["response"][0]["integration_specific_resource_id"], json!(""));
    assert_eq!(e["response"][1]["entitlement_type"], json!(NAMESPACE_ROLE));
    assert_eq!(e["response"][1]["label"], json!("ClusterRole edit in namespace team-a"));
    assert_eq!(e["response"][1]["is_assignable"], json!(false));
}

#[test]
fn tokens_from_another_capability_or_garbage_are_invalid_page_tokens() {
    let a = list_accounts(&grants(), &first(1));
    let token = a["page"]["token"].as_str().expect("token").to_string();
    let err = paging(Capability::FindEntitlementAssociations, Some(&PageIn { token: Some(token), size: None }))
        .expect_err("other capability");
    assert_eq!(err.code, ErrorCode::InvalidPageToken);
    let err =
        paging(Capability::ListAccounts, Some(&PageIn { token: Some("%%%".into()), size: None })).expect_err("garbage");
    assert_eq!(err.code, ErrorCode::InvalidPageToken);
    assert_eq!(err.to_response("list_accounts")["error"]["error_code"], json!("invalid_page_token"));
}

#[test]
fn get_account_finds_one_or_says_not_found() {
    let id: AccountId = "User:bob".parse().expect("id");
    let a = get_account(&grants(), &id).expect("bob");
    assert_eq!(a["response"]["integration_specific_id"], json!("User:bob"));
    let missing: AccountId = "User:carol".parse().expect("id");
    assert_eq!(get_account(&grants(), &missing).expect_err("carol").code, ErrorCode::NotFound);
}

#[test]
fn info_lists_the_implemented_capabilities() {
    let i = info(&Capability::ALL);
    let caps = i["response"]["capabilities"].as_array().expect("list");
    assert!(caps.contains(&json!("list_accounts")));
    assert_eq!(caps.len(), Capability::ALL.len());
    assert_eq!(
        i["response"]["capability_schema"]["list_accounts"]["output"]["$ref"],
        json!("#/components/schemas/FoundAccountData")
    );
}

#[test]
fn an_unassign_request_names_the_entitlement_and_the_account_and_round_trips() {
    let account: AccountId = "ServiceAccount:ci/builder".parse().unwrap();
    let ent = Entitlement::parse(NAMESPACE_ROLE, "Role:deployer", NAMESPACE, "team-b").unwrap();
    let spec = unassign_request(&account, &ent);
    assert_eq!(spec.source, RequestSource::LumosConnector);
    assert_eq!(spec.application.app_id.as_deref(), Some(APP_ID));
    assert_eq!(spec.permissions[0].value, "namespace_role/team-b/Role:deployer");
    assert_eq!(Entitlement::from_permission_value(&spec.permissions[0].value).unwrap(), ent);
    assert_eq!(spec.custom_fields[ACCOUNT_ID_FIELD], "ServiceAccount:ci/builder");
    let cluster = Entitlement::parse(CLUSTER_ROLE, "ClusterRole:admin", "", "").unwrap();
    assert_eq!(cluster.permission_value(), "cluster_role//ClusterRole:admin");
    assert_eq!(Entitlement::from_permission_value("cluster_role//ClusterRole:admin").unwrap(), cluster);
    for bad in ["namespace_role/team-b", "cluster_role/x/ClusterRole:admin", "other/a/Role:x", "cluster_role//Role:x"] {
        assert!(Entitlement::from_permission_value(bad).is_err(), "{bad}");
    }
}

#[test]
fn unassign_answers_from_the_record() {
    use crate::crd::{ConditionType, DeprovisionRequestStatus, Phase, Reason, set_condition};
    let record = |phase: Phase, planned: Option<Reason>| {
        let mut st = DeprovisionRequestStatus { phase, message: Some("what happened".into()), ..Default::default() };
        if let Some(r) = planned {
            set_condition(&mut st.conditions, ConditionType::Planned, false, r, "refused", None);
        }
        Waited::Record { name: "lumos-abc-1".into(), status: Some(Box::new(st)) }
    };
    assert_eq!(unassigned(&record(Phase::Succeeded, None)).unwrap(), json!({"response": {"unassigned": true}}));
    let code = |w: &Waited| unassigned(w).unwrap_err().code;
    assert_eq!(code(&record(Phase::Failed, Some(Reason::ProtectedSubject))), ErrorCode::PermissionDenied);
    assert_eq!(code(&record(Phase::Failed, Some(Reason::EntitlementNotAllowed))), ErrorCode::PermissionDenied);
    assert_eq!(code(&record(Phase::Failed, Some(Reason::NoPolicy))), ErrorCode::PermissionDenied);
    assert_eq!(code(&record(Phase::Failed, None)), ErrorCode::ServiceError);
    let running = unassigned(&record(Phase::InProgress, None)).unwrap_err();
    assert_eq!(running.code, ErrorCode::RequestTimeout);
    assert!(running.message.contains("deprovisionrequest/lumos-abc-1"), "{}", running.message);
    let failed = unassigned(&record(Phase::Failed, None)).unwrap_err();
    assert!(failed.message.ends_with("(record: deprovisionrequest/lumos-abc-1)"), "{}", failed.message);
    assert_eq!(code(&Waited::Deleted("x".into())), ErrorCode::ServiceError);
}

/// On a fleet hub the record is not planned here: a refusal is the members' own.
#[test]
fn a_fleet_record_is_a_refusal_only_when_every_failed_member_refused_it() {
    use crate::crd::{DeprovisionRequestStatus, MemberPhase, MemberRecord, MemberReport, Phase};
    let member = |phase: MemberPhase, refused: Option<&str>| MemberRecord {
        cluster: "b".into(),
        member_request: "x".into(),
        mailbox: "deprovisioner-member-b".into(),
        reported: MemberReport { phase, refused: refused.map(str::to_string), ..Default::default() },
    };
    let hub = |members: Vec<MemberRecord>| {
        let st = DeprovisionRequestStatus { phase: Phase::Failed, members, ..Default::default() };
        unassigned(&Waited::Record { name: "lumos-abc-1".into(), status: Some(Box::new(st)) }).unwrap_err().code
    };
    let refused = member(MemberPhase::Failed, Some("EntitlementNotAllowed"));
    assert_eq!(hub(vec![refused.clone(), member(MemberPhase::Succeeded, None)]), ErrorCode::PermissionDenied);
    assert_eq!(hub(vec![refused.clone(), member(MemberPhase::Failed, None)]), ErrorCode::ServiceError);
    assert_eq!(hub(vec![member(MemberPhase::Failed, Some("ActionFailed"))]), ErrorCode::ServiceError);
    assert_eq!(hub(vec![refused.clone(), member(MemberPhase::Pending, None)]), ErrorCode::ServiceError);
    assert_eq!(
        hub(vec![refused, member(MemberPhase::DryRun, None)]),
        ErrorCode::ServiceError,
        "a dry run removed nothing"
    );
}

mod activity {
    use super::super::*;
    use crate::activity::{Entry, Known};
    use k8s_openapi::jiff::Timestamp;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn entry(at: &str) -> Entry {
        Entry {
            at: ts(at),
            credential: Some("JTI=7".into()),
            impersonated_by: None,
            what: Some("get pods in a".into()),
        }
    }

    #[test]
    fn last_activity_answers_accounts_seen_once_each_in_the_order_asked() {
        let ids: Vec<AccountId> = ["User:b", "User:a", "User:b", "User:never", "User:unrecorded", "Group:g"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let known = |a: &str| match a {
            "User:a" => Known::Seen(entry("2025-03-01T10:00:00.5Z")),
            "User:b" => Known::Seen(entry("2025-03-02T10:00:00Z")),
            "User:never" => Known::NotSeenSince(ts("2025-02-01T00:00:00Z")),
            _ => Known::NotRecorded,
        };
        let v = last_activity(&ids, known, |id| id.to_string().starts_with("Group:"));
        assert_eq!(
            v,
            json!({"response": [
                {"account_id": "User:b", "event_type": "last_activity", "happened_at": "2025-03-02T10:00:00Z"},
                {"account_id": "User:a", "event_type": "last_activity", "happened_at": "2025-03-01T10:00:00.5Z"},
            ]}),
            "the event's own time, its fraction kept"
        );
    }

    #[test]
    fn activity_records_are_the_last_sighting_since_the_date_paged_by_account() {
        let (a, b, c) = (entry("2025-03-01T00:00:00Z"), entry("2025-03-05T00:00:00Z"), entry("2025-03-06T00:00:00Z"));
        let entries = [("User:a", &a), ("User:b", &b), ("User:c", &c)];
        let p = Paging { after: None, size: 1 };
        let v = activity_records(entries, ts("2025-03-02T00:00:00Z"), &p);
        let items = v["response"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{v}");
        assert_eq!(items[0]["actor"]["account_id"], "User:b", "User:a acted before since_date");
        assert_eq!(items[0]["timestamp"], "2025-03-05T00:00:00Z");
        assert_eq!(items[0]["activity_type"], API_REQUEST);
        assert_eq!(
            items[0]["metadata"],
            json!({"event_type": "last_activity", "what": "get pods in a", "credential_id": "JTI=7"})
        );
        let token = v["page"]["token"].as_str().unwrap().to_string();
        let p = paging(Capability::ListActivityRecords, Some(&PageIn { token: Some(token), size: Some(1) })).unwrap();
        let v = activity_records(entries, ts("2025-03-02T00:00:00Z"), &p);
        assert_eq!(v["response"][0]["actor"]["account_id"], "User:c");
        assert!(v.get("page").is_none(), "the last page: {v}");
    }

    #[test]
    fn activity_records_build_only_the_page() {
        let e = entry("2025-03-05T00:00:00Z");
        let names: Vec<String> = (0..1000).map(|i| format!("User:u{i:04}")).collect();
        let entries: Vec<(&str, &Entry)> = names.iter().rev().map(|n| (n.as_str(), &e)).collect();
        let built = std::cell::Cell::new(0);
        let p = Paging { after: Some(vec!["User:u0100".into()]), size: 10 };
        let v = activity_records_with(entries, ts("2025-03-02T00:00:00Z"), &p, |a, e| {
            built.set(built.get() + 1);
            activity_record(a, e)
        });
        assert_eq!(built.get(), 10, "only the page's items are built");
        assert_eq!(v["response"][0]["actor"]["account_id"], "User:u0101", "ordered by key, after the token");
        assert!(v["page"]["token"].is_string(), "more remain: {v}");
    }

    #[test]
    fn since_date_is_a_time_or_a_date() {
        assert_eq!(since_date("2025-03-01T09:00:00+01:00").unwrap(), ts("2025-03-01T08:00:00Z"));
        assert_eq!(since_date("2025-03-01").unwrap(), ts("2025-03-01T00:00:00Z"));
        assert_eq!(since_date("yesterday").unwrap_err().code, ErrorCode::InvalidValue);
    }
}
