//! The shared secrets callers send: read from a file (a mounted Secret), re-read when it changes,
//! one secret per line (two during a rotation), compared in constant time; a source that keeps
//! sending wrong ones is refused for the rest of the minute ([`check`]). The webhook and the
//! connector's HTTP endpoints each have their own files.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderName, header};

use super::Refused;
use super::guard::PerSource;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest secret accepted: guessing must be hopeless.
pub const MIN_SECRET_LEN: usize = 16;

/// Why the secret file cannot be used. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("cannot read secret file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No usable secret in the file.
    #[error("secret file {0} holds no secret (one per line, at least {MIN_SECRET_LEN} characters each)")]
    Empty(PathBuf),
    /// A line is too short.
    #[error("secret file {path}: line {line} is shorter than {MIN_SECRET_LEN} characters")]
    TooShort {
        /// File path.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

#[derive(Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    ino: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        ino: std::os::unix::fs::MetadataExt::ino(&m),
    })
}

struct Loaded {
    /// The file as last seen; `None` when it could not be read.
    stamp: Option<Stamp>,
    /// Accepted secrets; empty once the file holds none (every call is refused).
    digests: Vec<[u8; 32]>,
}

/// The accepted secrets, reloaded from their file when it changes.
pub struct SecretFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

fn read(path: &Path) -> Result<Loaded, SecretError> {
    let err = |source| SecretError::Read { path: path.into(), source };
    let stamp = stamp(path).map_err(err)?;
    let text = std::fs::read_to_string(path).map_err(err)?;
    let mut digests = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let s = line.trim();
        if s.is_empty() {
            continue;
        }
        if s.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort { path: path.into(), line: i + 1 });
        }
        digests.push(digest(s.as_bytes()));
    }
    if digests.is_empty() {
        return Err(SecretError::Empty(path.into()));
    }
    Ok(Loaded { stamp: Some(stamp), digests })
}

impl SecretFile {
    /// Loads the file; fails when it is unreadable or holds no valid secret.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, SecretError> {
        let path = path.into();
        let loaded = read(&path)?;
        Ok(SecretFile { path, loaded: Mutex::new(loaded) })
    }

    /// Re-reads the file if it changed. A file that is gone, unreadable or holds no valid secret
    /// revokes every secret (all calls get 401); that is logged once per change of the file.
    fn refresh(&self) {
        let now = stamp(&self.path).ok();
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.stamp == now {
            return;
        }
        match read(&self.path) {
            Ok(new) => {
                tracing::info!(path = %self.path.display(), secrets = new.digests.len(), "secret file reloaded");
                *loaded = new;
            }
            Err(e) => {
                tracing::error!(error = %e, "secret file is unusable: every secret is revoked (of this file) and calls needing one refused until it holds a valid one");
                *loaded = Loaded { stamp: now, digests: Vec::new() };
            }
        }
    }

    /// Whether `presented` is one of the secrets. Constant time in the secret's content: both
    /// sides are hashed to a fixed length and every secret is compared.
    pub fn verify(&self, presented: &str) -> bool {
        self.refresh();
        let p = digest(presented.as_bytes());
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut ok = subtle::Choice::from(0u8);
        for d in &loaded.digests {
            ok |= d.ct_eq(&p);
        }
        bool::from(ok)
    }

    /// Whether the two files hold a secret in common (as loaded last).
    pub fn shares_a_secret_with(&self, other: &SecretFile) -> bool {
        self.refresh();
        other.refresh();
        let mine = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).digests.clone();
        let theirs = other.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut shared = subtle::Choice::from(0u8);
        for (a, b) in mine.iter().flat_map(|a| theirs.digests.iter().map(move |b| (a, b))) {
            shared |= a.ct_eq(b);
        }
        bool::from(shared)
    }
}

/// Checks a call's credentials: the secret in `header`, accepted by `accept` (which says what it
/// opens). A call without an accepted secret counts against its source address in `failures`;
/// past that source's budget it is refused [`Refused::TooMany`] for the rest of the minute. An
/// accepted secret always passes.
pub fn check<T>(
    header: &HeaderScheme,
    failures: &PerSource,
    peer: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    accept: impl FnOnce(&str) -> Option<T>,
) -> Result<T, Refused> {
    let refused = match header.extract(headers) {
        Some(presented) => match accept(presented) {
            Some(opened) => return Ok(opened),
            None => Refused::Wrong,
        },
        None => Refused::Missing,
    };
    if let Some(ip) = peer
        && !failures.take(ip)
    {
        return Err(Refused::TooMany);
    }
    Err(refused)
}

/// Where the secret is in the request: `Authorization: Bearer <secret>`, or the raw value of
/// another header.
#[derive(Clone, Debug)]
pub struct HeaderScheme {
    name: HeaderName,
}

impl HeaderScheme {
    /// The header to read; `Authorization` expects the `Bearer` scheme.
    pub fn new(name: HeaderName) -> Self {
        HeaderScheme { name }
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The presented secret, if the header is there and well-formed.
    pub fn extract<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let v = headers.get(&self.name)?.to_str().ok()?.trim();
        if self.name == header::AUTHORIZATION {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        } else {
            Some(v)
        }
    }
}

#[cfg(test)]
mod tests;
