use super::*;

const WEBHOOK: &str = "webhook-secret-0123456789";
const READ: &str = "connector-read-0123456789";
const UNASSIGN: &str = "connector-unassign-0123456789";

fn file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    // A new file renamed over the old one, as a Secret volume update does.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

#[test]
fn unassign_needs_the_unassign_secret_and_everything_else_a_read_one() {
    assert_eq!(needed("unassign_entitlement"), Access::Unassign);
    assert_eq!(needed("unassign-entitlement"), Access::Unassign, "the SDK's route spelling");
    for name in ["info", "validate_credentials", "list_accounts", "list_resources", "list_entitlements"] {
        assert_eq!(needed(name), Access::Read, "{name}");
    }
    for name in ["find_entitlement_associations", "get_account", "create_account", "no_such_thing"] {
        assert_eq!(needed(name), Access::Read, "{name}");
    }
    // Every implemented capability but unassign_entitlement only reads.
    for c in Capability::ALL {
        let want = if c == Capability::UnassignEntitlement { Access::Unassign } else { Access::Read };
        assert_eq!(needed(c.name()), want, "{}", c.name());
    }
}

#[test]
fn the_decision_for_each_secret_and_capability() {
    use Decision::{Forbidden, NotServed, Serve};
    // Nothing configured: not served, whatever is presented.
    for opened in [Ok(Access::Read), Ok(Access::Unassign), Err(Refused::Missing), Err(Refused::TooMany)] {
        for needs in [Access::Read, Access::Unassign] {
            assert_eq!(decide(false, opened, needs), NotServed);
        }
    }
    assert_eq!(decide(true, Ok(Access::Read), Access::Read), Serve);
    assert_eq!(decide(true, Ok(Access::Unassign), Access::Read), Serve, "unassign includes read");
    assert_eq!(decide(true, Ok(Access::Unassign), Access::Unassign), Serve);
    assert_eq!(decide(true, Ok(Access::Read), Access::Unassign), Forbidden { needs: Access::Unassign });
    for refused in [Refused::Missing, Refused::Wrong, Refused::TooMany] {
        assert_eq!(decide(true, Err(refused), Access::Read), Decision::Refused(refused));
        assert_eq!(decide(true, Err(refused), Access::Unassign), Decision::Refused(refused));
    }
}

#[test]
fn the_webhooks_secret_never_opens_the_connector() {
    assert_eq!(opened(false, false, true), None);
    assert_eq!(opened(true, false, true), None, "even when a connector file holds it too");
    assert_eq!(opened(false, true, true), None);
    assert_eq!(opened(true, true, false), Some(Access::Unassign));
    assert_eq!(opened(false, true, false), Some(Access::Unassign));
    assert_eq!(opened(true, false, false), Some(Access::Read));
    assert_eq!(opened(false, false, false), None);
}

#[test]
fn secrets_open_what_their_file_allows_and_follow_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = SecretFile::load(file(dir.path(), "webhook", &format!("{WEBHOOK}\n"))).unwrap();
    let read = file(dir.path(), "read", &format!("{READ}\n"));
    let unassign = file(dir.path(), "unassign", &format!("{UNASSIGN}\n"));
    let s = Secrets::load(Some(&read), Some(&unassign), &webhook).unwrap();
    assert!(s.configured());
    assert_eq!(s.access(READ, &webhook), Some(Access::Read));
    assert_eq!(s.access(UNASSIGN, &webhook), Some(Access::Unassign));
    assert_eq!(s.access(WEBHOOK, &webhook), None);
    assert_eq!(s.access("", &webhook), None);
    // A rotation of the read secret: both during the overlap, then only the new one.
    let next = "connector-read-next-0123456789";
    file(dir.path(), "read", &format!("{READ}\n{next}\n"));
    assert_eq!((s.access(READ, &webhook), s.access(next, &webhook)), (Some(Access::Read), Some(Access::Read)));
    file(dir.path(), "read", &format!("{next}\n"));
    assert_eq!((s.access(READ, &webhook), s.access(next, &webhook)), (None, Some(Access::Read)));
    // The webhook's secret written into a connector file later still opens nothing there.
    file(dir.path(), "read", &format!("{next}\n{WEBHOOK}\n"));
    assert_eq!(s.access(WEBHOOK, &webhook), None);
    assert_eq!(s.access(next, &webhook), Some(Access::Read));
    // Only a read secret: unassign is opened by nothing.
    file(dir.path(), "read", &format!("{READ}\n"));
    let only_read = Secrets::load(Some(&read), None, &webhook).unwrap();
    assert_eq!(only_read.access(UNASSIGN, &webhook), None);
    assert!(!Secrets::default().configured());
}

#[test]
fn a_connector_file_holding_the_webhooks_secret_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = SecretFile::load(file(dir.path(), "webhook", &format!("{WEBHOOK}\n"))).unwrap();
    let shared = file(dir.path(), "shared", &format!("{UNASSIGN}\n{WEBHOOK}\n"));
    let own = file(dir.path(), "own", &format!("{READ}\n"));
    let e = Secrets::load(Some(&own), Some(&shared), &webhook).err().expect("refused").to_string();
    assert!(e.contains("--connector-unassign-secret-file") && e.contains("also the webhook's"), "{e}");
    assert!(!e.contains(WEBHOOK), "the secret is not shown: {e}");
    let e = Secrets::load(Some(&shared), None, &webhook).err().expect("refused").to_string();
    assert!(e.contains("--connector-secret-file"), "{e}");
    let short = file(dir.path(), "short", "short\n");
    let e = Secrets::load(Some(&short), None, &webhook).err().expect("refused").to_string();
    assert!(e.contains("--connector-secret-file") && e.contains("line 1"), "{e}");
}
