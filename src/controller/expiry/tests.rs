//! The loop's bookkeeping: which bindings' clocks it can vouch for.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Term;
use crate::crd::BindingClocks;
use crate::view::Change;

fn clocks(uid: &str, version: &str) -> BTreeMap<String, BindingClocks> {
    let c =
        BindingClocks { binding: "RoleBinding a/rb".into(), subjects: BTreeMap::new(), version: Some(version.into()) };
    [(uid.to_string(), c)].into()
}

fn change(uid: &str, version: &str) -> Change {
    let mut b = crate::fixtures::role_binding("a", "rb").role("view").uid(uid).build();
    b.metadata.resource_version = Some(version.into());
    Change::RoleBinding(Arc::new(b))
}

#[test]
fn clocks_are_vouched_for_only_at_the_version_of_the_last_change_taken_in() {
    let mut term = Term::default();
    // First met: the version read is all there is to go by.
    let mut c = clocks("u1", "5");
    assert!(term.vouch(&mut c).contains("u1"));
    assert_eq!(c["u1"].version.as_deref(), Some("5"));
    assert!(!term.unvouched);
    // The view shows version 7, but the last change taken in is 6: a change (perhaps a removal)
    // is not in the clocks yet. No version, and its expiries wait.
    term.took_in(&change("u1", "6"));
    let mut c = clocks("u1", "7");
    assert!(term.vouch(&mut c).is_empty());
    assert_eq!(c["u1"].version, None);
    assert!(term.unvouched, "scan again");
    // Once 7 is taken in: vouched for.
    term.took_in(&change("u1", "7"));
    let mut c = clocks("u1", "7");
    assert!(term.vouch(&mut c).contains("u1"));
    assert_eq!(c["u1"].version.as_deref(), Some("7"));
    assert!(!term.unvouched);
    // A binding no longer time-bound is forgotten (memory stays bounded); changes of others are
    // kept only until the next scan.
    term.took_in(&change("u2", "3"));
    term.vouch(&mut BTreeMap::new());
    assert!(term.versions.is_empty());
    // Relists and deletions carry no version.
    term.took_in(&Change::Relisted);
    term.took_in(&Change::Deleted(Some("a".into()), "rb".into()));
    assert!(term.versions.is_empty());
}
