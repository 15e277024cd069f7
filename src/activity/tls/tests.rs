//! The certificate files replaced under a running acceptor (as a Secret volume swaps them): the
//! new pair is served within a second; unusable new files leave the old pair served.

use std::process::Command;

use super::*;

/// A self-signed certificate and its key for `cn`, written to `dir/name.{crt,key}`.
fn mint(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"])
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (crt, key)
}

fn der(crt: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(crt).unwrap().next().unwrap().unwrap().as_ref().to_vec()
}

fn served(r: &ReloadingCert) -> Vec<u8> {
    r.current().cert[0].as_ref().to_vec()
}

#[test]
fn a_replaced_pair_is_served_and_an_unusable_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = mint(dir.path(), "live", "first");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let r = ReloadingCert::load(&crt, &key, provider).unwrap();
    let first = der(&crt);
    assert_eq!(served(&r), first);

    // Renewed: both files replaced (renamed over, as a Secret volume's swap does).
    let (crt2, key2) = mint(dir.path(), "next", "second");
    let second = der(&crt2);
    std::fs::rename(&crt2, &crt).unwrap();
    std::fs::rename(&key2, &key).unwrap();
    std::thread::sleep(CHECK_EVERY + Duration::from_millis(50));
    assert_eq!(served(&r), second, "the renewed certificate is served");

    // A certificate whose key does not fit, then a half-written file: the last good pair stays.
    let (crt3, _) = mint(dir.path(), "other", "third");
    std::fs::rename(&crt3, &crt).unwrap();
    std::thread::sleep(CHECK_EVERY + Duration::from_millis(50));
    assert_eq!(served(&r), second, "a key that does not fit is not served");
    std::fs::write(&crt, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    std::thread::sleep(CHECK_EVERY + Duration::from_millis(50));
    assert_eq!(served(&r), second, "a half-written certificate is not served");
}

#[test]
fn unusable_files_at_start_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, _) = mint(dir.path(), "a", "a");
    let (_, key) = mint(dir.path(), "b", "b");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let e = ReloadingCert::load(&crt, &key, provider.clone()).unwrap_err().to_string();
    assert!(e.contains("b.key") && e.contains("does not fit"), "{e}");
    let e = ReloadingCert::load(&dir.path().join("missing.crt"), &key, provider).unwrap_err().to_string();
    assert!(e.contains("missing.crt"), "{e}");
}
