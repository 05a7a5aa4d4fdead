//! Optional HTTPS from PEM files, with the certificate re-read when the files change.
//!
//! In a cluster TLS is normally terminated by the Ingress, so this is for direct exposure.
//! Certificates mounted from a cert-manager Secret rotate in place, so the chain and key are
//! re-read (and checked to match) when either file's identity changes; a failed reload keeps
//! the previous pair and logs why. The check is two `stat`s per handshake, negligible next to
//! the handshake itself. rustls with the ring provider, TLS 1.2 and 1.3, HTTP/1.1 only.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A TLS acceptor serving the chain in `cert` with the key in `key`. Errors when either file
/// cannot be read or parsed, or when they do not belong together.
pub(super) fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = Reloading::new(cert.to_path_buf(), key.to_path_buf(), provider.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("serve: TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// (dev, inode, size, mtime) of both files: changes when either is replaced or rewritten.
type Stamp = [Option<(u64, u64, u64, i64, i64)>; 2];

fn stamp(paths: [&Path; 2]) -> Stamp {
    paths.map(|p| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
    })
}

fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no CERTIFICATE block",
            cert.display()
        ));
    }
    let key_pem = std::fs::read(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, key_der, provider).map_err(|e| {
        format!(
            "--tls-cert {} / --tls-key {}: {e}",
            cert.display(),
            key.display()
        )
    })
}

#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

impl Reloading {
    fn new(cert: PathBuf, key: PathBuf, provider: Arc<CryptoProvider>) -> Result<Self, String> {
        let stamped = stamp([&cert, &key]);
        let loaded = load(&cert, &key, &provider).map_err(|e| format!("serve: {e}"))?;
        Ok(Reloading {
            cert,
            key,
            provider,
            current: Mutex::new((stamped, Arc::new(loaded))),
        })
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let now = stamp([&self.cert, &self.key]);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 != now {
            // Record the stamp even on failure so a broken pair is reported once, not per
            // handshake; a later change triggers another attempt.
            current.0 = now;
            match load(&self.cert, &self.key, &self.provider) {
                Ok(pair) => {
                    log::info!(target: "serve", "TLS certificate reloaded from {}", self.cert.display());
                    current.1 = Arc::new(pair);
                }
                Err(e) => {
                    log::error!(target: "serve", "TLS certificate reload failed, keeping the previous one: {e}")
                }
            }
        }
        Some(current.1.clone())
    }
}
