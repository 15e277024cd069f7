//! The audit endpoint's serving certificate, read again when its files change: a certificate
//! renewed by cert-manager (a Secret volume swaps its files) or rotated by hand is served without
//! a restart. The files are looked at, at most once a second, on a TLS handshake; new files that
//! cannot be read (half written, key and certificate not matching) leave the previous pair served
//! and are logged.

use std::fmt;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, server::ClientHello, server::ResolvesServerCert, sign::CertifiedKey};

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A certificate and key that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TlsError {
    path: String,
    reason: String,
}

/// What identifies a version of the two files (modification time, size, inode of each).
type Stamp = [(Option<SystemTime>, u64, u64); 2];

struct Current {
    checked: Instant,
    stamp: Stamp,
    key: Arc<CertifiedKey>,
}

/// Serves the certificate in `cert` with the key in `key`, read again when either file changes.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<Current>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert").field("cert", &self.cert).field("key", &self.key).finish()
    }
}

impl ReloadingCert {
    /// Reads the pair once; an error names the file and what was wrong.
    pub fn load(cert: &Path, key: &Path, provider: Arc<rustls::crypto::CryptoProvider>) -> Result<Self, TlsError> {
        let stamp = stamp(cert, key);
        let pair = read_pair(cert, key, &provider)?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: Mutex::new(Current { checked: Instant::now(), stamp, key: Arc::new(pair) }),
        })
    }

    /// The pair to serve now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.checked.elapsed() >= CHECK_EVERY {
            cur.checked = Instant::now();
            let stamp = stamp(&self.cert, &self.key);
            if stamp != cur.stamp {
                match read_pair(&self.cert, &self.key, &self.provider) {
                    Ok(pair) => {
                        cur.key = Arc::new(pair);
                        cur.stamp = stamp;
                        tracing::info!(cert = %self.cert.display(), "the audit endpoint's certificate changed: serving the new one");
                    }
                    // Tried again when the files change again (a writer finishing them does).
                    Err(e) => {
                        cur.stamp = stamp;
                        tracing::warn!(error = %e, "the audit endpoint's new certificate files cannot be used; serving the previous ones");
                    }
                }
            }
        }
        cur.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len(), m.ino()),
        Err(_) => (None, 0, 0),
    };
    [one(cert), one(key)]
}

fn read_pair(cert: &Path, key: &Path, provider: &rustls::crypto::CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let bad = |p: &Path, reason: String| TlsError { path: p.display().to_string(), reason };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    CertifiedKey::from_der(chain, key_der, provider).map_err(|e| bad(key, format!("does not fit the certificate: {e}")))
}

/// A TLS acceptor serving `cert` and `key`, read again when they change.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = ReloadingCert::load(cert, key, provider.clone())?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError { path: cert.display().to_string(), reason: e.to_string() })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests;
