//! Test key material, generated at test time: TLS CAs and server certificates (rcgen), peer
//! root certificates for public metadata, and Ed25519 request-signing key pairs (ring).
//! PEM is written here with base64 directly, independently of the code under test.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// `-----BEGIN {label}-----`, 64-column base64, `-----END {label}-----`.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A CA that issues TLS server certificates for test servers.
pub struct Ca {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate chain and key, as rustls and as PEM (for nginx).
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl ServerIdentity {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2045, 1, 1);
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca {
            cert_pem: pem("CERTIFICATE", cert.der()),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An Istio workload certificate issued by this CA (as istiod issues them): no subject,
    /// one URI SAN `spiffe_id`, client and server auth, valid 2020–2045. PEM of the leaf alone.
    pub fn workload_cert_pem(&self, spiffe_id: &str) -> String {
        let key = KeyPair::generate().expect("generate workload key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![rcgen::SanType::URI(spiffe_id.try_into().expect("a URI"))];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2045, 1, 1);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign workload cert");
        pem("CERTIFICATE", cert.der())
    }

    /// A server certificate for 127.0.0.1 and localhost, chain = [leaf, CA].
    pub fn server_identity(&self) -> ServerIdentity {
        self.server_identity_with(&["127.0.0.1", "localhost"], (2020, 1, 1), (2045, 1, 1))
    }

    /// A server certificate for `names`, valid between the dates (year, month, day).
    pub fn server_identity_with(
        &self,
        names: &[&str],
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> ServerIdentity {
        let key = KeyPair::generate().expect("generate server key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server params");
        params.distinguished_name = dn("metadata test server");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign server cert");
        let cert_pem = format!(
            "{}{}",
            pem("CERTIFICATE", cert.der()),
            pem("CERTIFICATE", &self.cert_der)
        );
        ServerIdentity {
            chain: vec![
                cert.der().clone(),
                CertificateDer::from(self.cert_der.clone()),
            ],
            key_der: key.serialize_der(),
            cert_pem,
            key_pem: pem("PRIVATE KEY", &key.serialize_der()),
        }
    }
}

/// A self-signed certificate for a peer's `rootCA` field (the peer's Istio root).
/// Dates are (year, month, day).
pub fn root_cert_pem(
    cn: &str,
    ca: bool,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> String {
    let key = KeyPair::generate().expect("generate root key");
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::NoCa
    };
    params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).expect("self-sign root");
    pem("CERTIFICATE", cert.der())
}

/// A valid Istio root for public metadata (CA, 2020–2045).
pub fn valid_root_pem(cn: &str) -> String {
    root_cert_pem(cn, true, (2020, 1, 1), (2045, 1, 1))
}

/// An Ed25519 request-signing key pair as Deckhouse stores it.
pub struct SigningKeys {
    /// PKCS#8 PEM (`priv.pem`).
    pub private_pem: String,
    /// SPKI PEM (`pub.pem`, `authnKeyPub`).
    pub public_pem: String,
    /// The raw 32-byte public key, what a verifier looks up by `sub`.
    pub public_raw: [u8; 32],
}

impl SigningKeys {
    pub fn generate() -> SigningKeys {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate Ed25519");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse Ed25519");
        let public_raw: [u8; 32] = pair.public_key().as_ref().try_into().expect("32 bytes");
        // SPKI: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING } (RFC 8410).
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(&public_raw);
        SigningKeys {
            private_pem: pem("ED25519 PRIVATE KEY", pkcs8.as_ref()),
            public_pem: pem("ED25519 PUBLIC KEY", &spki),
            public_raw,
        }
    }
}

/// A self-signed CA root (2020–2045) whose subjectAltName lists DNS names until the DER is
/// about `der_bytes` long: large, and still a CA Go parses.
pub fn large_root(cn: &str, der_bytes: usize) -> String {
    let mut names = Vec::new();
    let mut total = 400;
    let mut i = 0;
    while total < der_bytes {
        let name = format!("h{i:06}.{cn}.bulk.example");
        total += name.len() + 2;
        names.push(name);
        i += 1;
    }
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(names).expect("large root");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_string());
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    pem(
        "CERTIFICATE",
        params.self_signed(&key).expect("large root").der(),
    )
}
