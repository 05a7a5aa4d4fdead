//! What the peer's endpoint presents in its TLS handshake: the certificate chain, names and
//! validity, read so `doctor` can say *why* verification failed (expired, wrong name, unknown
//! CA). This is inspection only: the verdict is always the one of the discovery hook's own
//! HTTPS client ([`crate::discovery::network::fetch`]). The capturing verifier below therefore accepts
//! any chain, but still has rustls check the handshake signatures with the same ring provider
//! the hook uses; no cryptography is written here.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use x509_parser::extensions::GeneralName;

/// The presented leaf certificate, as far as a diagnosis needs it.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses of subjectAltName.
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub not_before: i64,
    pub not_after: i64,
}

/// What one handshake showed.
#[derive(Debug, Clone)]
pub(crate) struct Presented {
    pub protocol: String,
    /// Number of certificates the server sent (leaf first).
    pub chain_len: usize,
    /// `None` when the leaf cannot be parsed.
    pub leaf: Option<Leaf>,
}

/// Why the handshake itself could not be completed.
#[derive(Debug, Clone)]
pub(crate) enum HandshakeError {
    TimedOut,
    Failed(String),
}

#[derive(Debug)]
struct Capture {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<Vec<u8>>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
        chain.push(end_entity.to_vec());
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Handshakes with `addr`, naming `host` (SNI), within `timeout`, and returns what the server
/// presented. The connection is closed right after the handshake.
pub(crate) fn inspect(
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<Presented, HandshakeError> {
    let started = Instant::now();
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            HandshakeError::TimedOut
        } else {
            HandshakeError::Failed(format!("cannot connect to {addr}: {e}"))
        }
    })?;
    let left = timeout.saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err(HandshakeError::TimedOut);
    }
    // The socket timeouts bound each read; the channel bounds the whole handshake (a peer
    // that drips one byte at a time), and shutting the socket down ends the thread.
    let _ = tcp.set_read_timeout(Some(left));
    let _ = tcp.set_write_timeout(Some(left));
    let closer = tcp.try_clone().ok();
    let host = host.to_string();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("doctor-tls".into())
        .spawn(move || {
            let _ = tx.send(handshake(tcp, &host));
        });
    if let Err(e) = spawned {
        return Err(HandshakeError::Failed(format!(
            "cannot start a thread: {e}"
        )));
    }
    match rx.recv_timeout(left) {
        Ok(r) => r,
        Err(_) => {
            if let Some(c) = closer {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
            Err(HandshakeError::TimedOut)
        }
    }
}

fn handshake(mut tcp: TcpStream, host: &str) -> Result<Presented, HandshakeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture {
        provider: Arc::clone(&provider),
        chain: Mutex::new(Vec::new()),
    });
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| HandshakeError::Failed(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| HandshakeError::Failed(format!("{host} is not a server name: {e}")))?;
    let mut conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| HandshakeError::Failed(e.to_string()))?;
    while conn.is_handshaking() {
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(HandshakeError::Failed(
                    "the server closed the connection during the TLS handshake".into(),
                ))
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HandshakeError::TimedOut)
            }
            Err(e) => return Err(HandshakeError::Failed(e.to_string())),
        }
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    let chain = capture
        .chain
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Ok(Presented {
        protocol: conn
            .protocol_version()
            .map(|v| format!("{v:?}").replace("TLSv1_", "TLS 1."))
            .unwrap_or_default(),
        chain_len: chain.len(),
        leaf: chain.first().and_then(|der| parse_leaf(der)),
    })
}

fn parse_leaf(der: &[u8]) -> Option<Leaf> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    Some(Leaf {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        dns_names,
        ip_addresses,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

impl Leaf {
    /// Whether the certificate names `host` (for the hint only; rustls decides).
    pub(crate) fn covers(&self, host: &str) -> bool {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return self.ip_addresses.contains(&ip);
        }
        let host = host.to_ascii_lowercase();
        self.dns_names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            match n.strip_prefix("*.") {
                Some(rest) => host
                    .split_once('.')
                    .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
                None => n == host,
            }
        })
    }

    /// `DNS:a, IP:1.2.3.4` for messages.
    pub(crate) fn names(&self) -> String {
        let mut v: Vec<String> = self.dns_names.iter().map(|d| format!("DNS:{d}")).collect();
        v.extend(self.ip_addresses.iter().map(|i| format!("IP:{i}")));
        if v.is_empty() {
            "no subjectAltName".into()
        } else {
            v.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_hosts_like_certificates_do() {
        let leaf = Leaf {
            subject: String::new(),
            issuer: String::new(),
            dns_names: vec!["*.b.example".into(), "m.c.example".into()],
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            not_before: 0,
            not_after: 0,
        };
        assert!(leaf.covers("istio.b.example"));
        assert!(!leaf.covers("a.istio.b.example"));
        assert!(!leaf.covers("b.example"));
        assert!(leaf.covers("M.C.example"));
        assert!(leaf.covers("127.0.0.1"));
        assert!(!leaf.covers("127.0.0.2"));
        assert_eq!(
            leaf.names(),
            "DNS:*.b.example, DNS:m.c.example, IP:127.0.0.1"
        );
    }
}
