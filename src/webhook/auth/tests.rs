use super::*;
use std::io::Write;

const A: &str = "first-secret-0123456789";
const B: &str = "second-secret-0123456789";

fn write(path: &Path, text: &str) {
    // Write a new file and rename it over the old one, as a Secret volume update does.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn verify_and_rotate_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    write(&path, &format!("{A}\n"));
    let s = SecretFile::load(&path).unwrap();
    assert!(s.verify(A));
    assert!(!s.verify(B));
    assert!(!s.verify(""));
    assert!(!s.verify(&A[..A.len() - 1]));
    // Rotation: both during the overlap, then only the new one.
    write(&path, &format!("{A}\n{B}\n"));
    assert!(s.verify(A) && s.verify(B));
    write(&path, &format!("{B}\n"));
    assert!(!s.verify(A) && s.verify(B));
    // A file with no valid secret revokes them all; a good one later restores access.
    write(&path, "short\n");
    assert!(!s.verify(B) && !s.verify(A));
    write(&path, "");
    assert!(!s.verify(B));
    write(&path, &format!("{B}\n"));
    assert!(s.verify(B));
    std::fs::remove_file(&path).unwrap();
    assert!(!s.verify(B), "a deleted file revokes too");
}

#[test]
fn bad_files_fail_clearly_without_echoing_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    assert!(matches!(SecretFile::load(&path), Err(SecretError::Read { .. })));
    write(&path, "\n  \n");
    assert!(matches!(SecretFile::load(&path), Err(SecretError::Empty(_))));
    write(&path, "tooshortsecret\n");
    let e = SecretFile::load(&path).err().unwrap().to_string();
    assert!(e.contains("line 1") && !e.contains("tooshortsecret"), "{e}");
}

#[test]
fn header_extraction() {
    let auth = HeaderScheme::new(header::AUTHORIZATION);
    let mut h = HeaderMap::new();
    assert_eq!(auth.extract(&h), None);
    h.insert(header::AUTHORIZATION, format!("Bearer {A}").parse().unwrap());
    assert_eq!(auth.extract(&h), Some(A));
    h.insert(header::AUTHORIZATION, format!("bearer  {A}").parse().unwrap());
    assert_eq!(auth.extract(&h), Some(A));
    h.insert(header::AUTHORIZATION, format!("Basic {A}").parse().unwrap());
    assert_eq!(auth.extract(&h), None);
    h.insert(header::AUTHORIZATION, A.parse().unwrap());
    assert_eq!(auth.extract(&h), None);
    let custom = HeaderScheme::new(HeaderName::from_static("x-lumos-key"));
    h.insert("x-lumos-key", A.parse().unwrap());
    assert_eq!(custom.extract(&h), Some(A));
}
