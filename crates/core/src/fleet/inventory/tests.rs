use super::*;
use crate::connector::model::{self, Grant};
use crate::entitlement::Entitlement;

fn grant(account: &str, ns: &str, role: &str, binding: &str) -> Grant {
    let scope = if ns.is_empty() { Scope::Cluster } else { Scope::Namespace(ns.into()) };
    let (kind, name) = role.split_once(':').unwrap();
    Grant {
        cluster: None,
        account: account.parse().unwrap(),
        entitlement: Entitlement { scope, role: Role { kind: kind.into(), name: name.into() } },
        binding: BindingName {
            cluster: None,
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            name: binding.into(),
        },
    }
}

fn texts(t: &[String]) -> Vec<Option<String>> {
    t.iter().cloned().map(Some).collect()
}

#[test]
fn an_inventory_reads_back_placed_in_its_member() {
    let inv = Inventory {
        namespaces: vec!["team".into()],
        grants: vec![
            grant("User:alice@x.io", "team", "Role:dev", "rb"),
            grant("Group:ops", "", "ClusterRole:view", "crb"),
        ],
    };
    let (header, chunks) = encode(&inv, "g1", Slot::A);
    assert_eq!(header.chunks, 1);
    let back = decode("b", &header, &texts(&chunks)).unwrap();
    assert_eq!(back.namespaces, inv.namespaces);
    assert_eq!(back.grants.len(), 2);
    assert!(back.grants.iter().all(|g| g.cluster.as_deref() == Some("b") && g.binding.cluster.as_deref() == Some("b")));
    let ids: Vec<String> =
        back.grants.iter().map(|g| model::resource_id(g.cluster.as_deref(), &g.entitlement.scope)).collect();
    assert_eq!(ids, ["b/team", "b/"]);
    assert_eq!(back.grants[0].binding.to_string(), "b: RoleBinding team/rb");
}

#[test]
fn a_large_inventory_is_chunked_under_the_bound_and_a_torn_one_is_refused() {
    let grants: Vec<Grant> = (0..30_000)
        .map(|i| grant(&format!("User:user-{i:06}@example.com"), "team", "ClusterRole:edit", &format!("b-{i}")))
        .collect();
    let inv = Inventory { namespaces: vec!["team".into()], grants };
    let (header, chunks) = encode(&inv, "g2", Slot::B);
    assert!(header.chunks > 1, "{} chunks", header.chunks);
    assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES), "every chunk under the bound");
    assert_eq!(header.left_out, 0);
    assert_eq!(decode("a", &header, &texts(&chunks)).unwrap().grants.len(), 30_000);
    // A chunk of an older generation: caught in a rewrite.
    let (_, old) = encode(&inv, "g1", Slot::A);
    let mut mixed = texts(&chunks);
    mixed[1] = Some(old[1].clone());
    assert!(matches!(decode("a", &header, &mixed), Err(InventoryError::Torn { index: 1, .. })));
    mixed.truncate(1);
    assert!(matches!(decode("a", &header, &mixed), Err(InventoryError::Torn { index: 1, .. })));
}

#[test]
fn past_the_last_chunk_grants_are_counted_left_out() {
    let grants: Vec<Grant> = (0..300_000)
        .map(|i| {
            grant(
                &format!("User:someone-with-a-long-name-{i:08}@example.com"),
                "team",
                "ClusterRole:edit",
                &format!("binding-{i:08}"),
            )
        })
        .collect();
    let (header, chunks) = encode(&Inventory { namespaces: vec![], grants }, "g", Slot::A);
    assert_eq!(header.chunks, MAX_CHUNKS);
    assert!(header.left_out > 0);
    assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
}

#[test]
fn the_slots_alternate_and_every_name_is_known() {
    assert_eq!(Slot::A.other(), Slot::B);
    assert_eq!(Slot::B.other(), Slot::A);
    assert_eq!(chunk_name(Slot::B, 7), "deprovisioner-inventory-b07");
    let names = names();
    assert_eq!(names.len(), 1 + 2 * MAX_CHUNKS);
    assert!(names.contains(&HEADER.to_string()) && names.contains(&"deprovisioner-inventory-a15".to_string()));
    // A header written before slots existed reads as slot A.
    let old: Header = serde_json::from_str(r#"{"generation": "g", "chunks": 1}"#).unwrap();
    assert_eq!((old.slot, old.checked_at), (Slot::A, None));
}

#[test]
fn a_member_is_stale_three_periods_after_its_last_check() {
    let now: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
    let at = |checked: Option<&str>, every: Option<u64>| Header {
        generation: "g".into(),
        slot: Slot::A,
        chunks: 1,
        left_out: 0,
        checked_at: checked.map(str::to_string),
        every_seconds: every,
    };
    // Judged by when the hub's API server wrote the header, whatever the member's clock says.
    let stale = |written: &str, every: Option<u64>| {
        is_stale(Some(&at(Some("2099-01-01T00:00:00Z"), every)), Some(written.parse().unwrap()), now)
    };
    assert!(!stale("2026-12-07T11:57:30Z", Some(60)), "150 s after, period 60 s");
    assert!(stale("2026-12-07T11:56:59Z", Some(60)), "181 s after");
    assert!(!stale("2026-12-07T11:59:52Z", Some(1)), "at least ten seconds");
    assert!(stale("2026-12-07T11:59:49Z", Some(1)), "11 s after, period 1 s");
    assert!(stale("2026-12-07T12:05:00Z", Some(60)), "written in the future: not trusted");
    assert!(!stale("2026-12-07T11:59:00Z", Some(u64::MAX)), "a huge period does not overflow");
    assert!(is_stale(None, None, now), "never reported");
    assert!(is_stale(Some(&at(None, None)), None, now), "no time of writing");
}
