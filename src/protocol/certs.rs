//! PEM handling, checks of peer root certificates and Ed25519 key (de)serialisation.
//!
//! Everything here works on text received from other clusters, so no function panics on its
//! input: every failure is a value (`Err`, or a [`CertRejection`]) with a short
//! operator-facing text.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use x509_parser::oid_registry::OID_SIG_ED25519;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Base64 decoder for PEM bodies. As lenient as Go's `encoding/pem` (padding optional,
/// non-zero trailing bits accepted), because peers' PEM comes from Go and OpenSSL alike.
const PEM_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Longest PEM label quoted back in an error or [`CertRejection`] text, so that a hostile
/// bundle cannot blow up logs or status fields.
const MAX_LABEL_IN_MESSAGE: usize = 64;

/// One PEM block found in a text. `start..end` is the byte span in the input covering the
/// `-----BEGIN …-----` line through the end of the `-----END …-----` line INCLUDING the line
/// terminator that follows it (if any), so removing that span removes the block cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label between `BEGIN ` and the closing dashes, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
    /// Byte offset of the start of the BEGIN line (including any leading whitespace on it).
    pub start: usize,
    /// Byte offset just past the END line and its line terminator.
    pub end: usize,
}

/// Splits a text into PEM blocks. Text outside blocks is ignored (comments, blank lines).
/// Tolerates CRLF, leading/trailing whitespace on lines, base64 bodies with arbitrary line length.
/// Errors: BEGIN without matching END, mismatched labels, invalid base64 — with a message that
/// says which block (1-based index) and what is wrong.
pub fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    scan_pem(text, true)
}

/// A BEGIN line seen and not yet closed.
struct OpenBlock {
    index: usize,
    line: usize,
    label: String,
    start: usize,
    body: String,
}

/// Shared scanner. In strict mode the first malformed block is an error; in lenient mode
/// malformed blocks are skipped (like Go's `pem.Decode` does), which suits our own bundles.
fn scan_pem(text: &str, strict: bool) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<OpenBlock> = None;
    let mut count = 0usize;
    let mut pos = 0usize;

    for (line_no, raw_line) in text.split_inclusive('\n').enumerate() {
        let line_start = pos;
        pos += raw_line.len();
        let content = raw_line.trim();

        if let Some(label) = armor_label(content, "-----BEGIN ") {
            if let Some(unclosed) = open.take() {
                if strict {
                    return Err(unclosed_message(&unclosed));
                }
            }
            count += 1;
            open = Some(OpenBlock {
                index: count,
                line: line_no + 1,
                label: label.to_string(),
                start: line_start,
                body: String::new(),
            });
            continue;
        }

        if let Some(end_label) = armor_label(content, "-----END ") {
            let Some(block) = open.take() else {
                // A stray END outside any block is ignored like any other outside text.
                continue;
            };
            if end_label != block.label {
                if strict {
                    return Err(format!(
                        "PEM block {} (line {}): BEGIN {} is closed by END {}",
                        block.index,
                        block.line,
                        shorten(&block.label),
                        shorten(end_label)
                    ));
                }
                continue;
            }
            match PEM_BASE64.decode(block.body.as_bytes()) {
                Ok(der) => blocks.push(PemBlock {
                    label: block.label,
                    der,
                    start: block.start,
                    end: pos,
                }),
                Err(e) => {
                    if strict {
                        return Err(format!(
                            "PEM block {} (line {}, {}): invalid base64: {}",
                            block.index,
                            block.line,
                            shorten(&block.label),
                            e
                        ));
                    }
                }
            }
            continue;
        }

        // Body line (text outside blocks is ignored). Go's encoding/pem drops all spaces and
        // tabs inside the body; so do we.
        if let Some(block) = open.as_mut() {
            block
                .body
                .extend(content.chars().filter(|c| !c.is_whitespace()));
        }
    }

    if let Some(unclosed) = open {
        if strict {
            return Err(unclosed_message(&unclosed));
        }
    }
    Ok(blocks)
}

/// Returns the label of an armor line such as `-----BEGIN X-----` for `prefix` `-----BEGIN `.
fn armor_label<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

fn unclosed_message(block: &OpenBlock) -> String {
    format!(
        "PEM block {} (line {}): BEGIN {} has no matching END",
        block.index,
        block.line,
        shorten(&block.label)
    )
}

/// Renders DER as a canonical PEM block: `-----BEGIN {label}-----\n`, base64 (standard alphabet,
/// padded) wrapped at 64 columns, `-----END {label}-----\n`.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for (i, c) in body.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    if !body.is_empty() {
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Lower-case hex SHA-256 of the DER (ring::digest::SHA256).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// An accepted root certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCert {
    /// Canonical single CERTIFICATE block (via [`to_pem`]), so that equal certificates render
    /// byte-identically whatever formatting the peer used.
    pub pem: String,
    /// [`fingerprint`] of the DER.
    pub fingerprint: String,
    /// RFC 4514-ish subject as x509-parser displays it, for operators.
    pub subject: String,
    /// End of validity, unix seconds.
    pub not_after: i64,
}

/// Why a certificate was refused. `Display` gives a short, stable, operator-facing text with no
/// timestamps of "now" in it (the same input gives the same text in every run, so status
/// fields do not churn). Dates are YYYY-MM-DD UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRejection {
    /// The PEM block's label is not `CERTIFICATE`.
    NotCertificate {
        /// The label found.
        label: String,
    },
    /// x509-parser refused the DER (or there were bytes after the certificate).
    Unparsable(String),
    /// No BasicConstraints extension with CA:TRUE.
    NotCa,
    /// `now` is after the certificate's notAfter.
    Expired {
        /// notAfter, unix seconds.
        not_after: i64,
    },
    /// `now` is before the certificate's notBefore.
    NotYetValid {
        /// notBefore, unix seconds.
        not_before: i64,
    },
    /// The certificate is one of our own roots.
    OwnRoot,
}

impl std::fmt::Display for CertRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertRejection::NotCertificate { label } => {
                write!(f, "not a certificate (PEM label {})", shorten(label))
            }
            CertRejection::Unparsable(e) => write!(f, "cannot be parsed as X.509: {e}"),
            CertRejection::NotCa => {
                f.write_str("not a CA certificate (BasicConstraints CA:TRUE missing)")
            }
            CertRejection::Expired { not_after } => write!(f, "expired on {}", ymd(*not_after)),
            CertRejection::NotYetValid { not_before } => {
                write!(f, "not valid before {}", ymd(*not_before))
            }
            CertRejection::OwnRoot => f.write_str("is our own root certificate"),
        }
    }
}

impl std::error::Error for CertRejection {}

/// Caps an input-controlled string (a PEM label) quoted in a message.
fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_LABEL_IN_MESSAGE {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_LABEL_IN_MESSAGE).collect();
        out.push('…');
        out
    }
}

/// Formats unix seconds as YYYY-MM-DD (UTC); out-of-range values fall back to `@<seconds>`.
fn ymd(unix: i64) -> String {
    match ASN1Time::from_timestamp(unix) {
        Ok(t) => {
            let dt = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02}",
                dt.year(),
                u8::from(dt.month()),
                dt.day()
            )
        }
        Err(_) => format!("@{unix}"),
    }
}

/// Result of checking a PEM bundle that should contain one or more root CA certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootCheck {
    /// Accepted certificates, in bundle order, each once.
    pub accepted: Vec<RootCert>,
    /// Refused blocks: (1-based block index in the bundle, reason).
    pub rejected: Vec<(usize, CertRejection)>,
}

/// Checks every block of `pem_bundle`: each must be a CERTIFICATE that x509-parser parses, that
/// is a CA (BasicConstraints present with CA:TRUE — exactly what istiod's verifyTrustAnchor
/// requires), valid at `now` (not_before <= now <= not_after), and whose fingerprint is not in
/// `own_fingerprints` (our own root must never be imported as a peer's). Duplicate certificates
/// within the bundle are accepted once (later copies are dropped silently, not rejected).
///
/// Checks run in the order label, parse, own root, CA, not-yet-valid, expired; a block gets the
/// first reason that applies. Err(message) only when the text holds no PEM block at all or
/// [`pem_blocks`] fails.
pub fn check_roots(
    pem_bundle: &str,
    now: i64,
    own_fingerprints: &[String],
) -> Result<RootCheck, String> {
    let blocks = pem_blocks(pem_bundle)?;
    if blocks.is_empty() {
        return Err("no PEM block found (not PEM text)".to_string());
    }
    let mut check = RootCheck::default();
    for (i, block) in blocks.iter().enumerate() {
        match check_root(block, now, own_fingerprints) {
            Ok(root) => {
                if !check
                    .accepted
                    .iter()
                    .any(|r| r.fingerprint == root.fingerprint)
                {
                    check.accepted.push(root);
                }
            }
            Err(why) => check.rejected.push((i + 1, why)),
        }
    }
    Ok(check)
}

fn check_root(
    block: &PemBlock,
    now: i64,
    own_fingerprints: &[String],
) -> Result<RootCert, CertRejection> {
    if block.label != "CERTIFICATE" {
        return Err(CertRejection::NotCertificate {
            label: block.label.clone(),
        });
    }
    let cert = parse_certificate(&block.der).map_err(CertRejection::Unparsable)?;
    let fp = fingerprint(&block.der);
    if own_fingerprints
        .iter()
        .any(|own| own.eq_ignore_ascii_case(&fp))
    {
        return Err(CertRejection::OwnRoot);
    }
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(_) => return Err(CertRejection::NotCa),
        // A duplicated BasicConstraints extension; Go's x509 refuses to parse such a cert.
        Err(e) => return Err(CertRejection::Unparsable(e.to_string())),
    }
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now < not_before {
        return Err(CertRejection::NotYetValid { not_before });
    }
    if now > not_after {
        return Err(CertRejection::Expired { not_after });
    }
    Ok(RootCert {
        pem: to_pem("CERTIFICATE", &block.der),
        fingerprint: fp,
        subject: cert.subject().to_string(),
        not_after,
    })
}

/// Parses a whole DER certificate; trailing bytes are an error, as in Go's x509.ParseCertificate.
fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after certificate".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Fingerprints of every CERTIFICATE block in a PEM text, skipping what does not parse (used for
/// our own root bundle, so it is lenient: malformed blocks and non-X.509 bodies are skipped
/// rather than failing the whole text). Order follows the text; duplicates are kept.
pub fn certificate_fingerprints(pem_text: &str) -> Vec<String> {
    scan_pem(pem_text, false)
        .unwrap_or_default()
        .iter()
        .filter(|b| b.label == "CERTIFICATE" && parse_certificate(&b.der).is_ok())
        .map(|b| fingerprint(&b.der))
        .collect()
}

/// The DER of the single PEM block of a key text (label ignored). More than one block is refused
/// so that a key field can never silently mean two different keys.
fn single_block_der(pem: &str) -> Result<Vec<u8>, String> {
    let mut blocks = pem_blocks(pem)?;
    match blocks.len() {
        0 => Err("no PEM block".to_string()),
        1 => Ok(blocks.remove(0).der),
        n => Err(format!("expected one PEM block, found {n}")),
    }
}

/// Parses an Ed25519 public key from a PEM SPKI block. The PEM label is IGNORED (Deckhouse writes
/// "ED25519 PUBLIC KEY", others "PUBLIC KEY"). Checks the SPKI algorithm OID is Ed25519
/// (1.3.101.112), without parameters as RFC 8410 demands, and the key is 32 bytes. Returns the
/// raw 32-byte key. The text must hold exactly one PEM block.
pub fn parse_ed25519_public_pem(pem: &str) -> Result<[u8; 32], String> {
    let der = single_block_der(pem)?;
    let spki = match SubjectPublicKeyInfo::from_der(&der) {
        Ok(([], spki)) => spki,
        Ok(_) => return Err("trailing data after public key".to_string()),
        Err(e) => return Err(format!("not a SubjectPublicKeyInfo: {e}")),
    };
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(format!(
            "not an Ed25519 key: algorithm OID {}",
            spki.algorithm.algorithm.to_id_string()
        ));
    }
    if spki.algorithm.parameters.is_some() {
        return Err("Ed25519 key encoded with illegal algorithm parameters".to_string());
    }
    let bits = &spki.subject_public_key;
    if bits.unused_bits != 0 {
        return Err("Ed25519 public key bit string is not whole bytes".to_string());
    }
    <[u8; 32]>::try_from(bits.data.as_ref())
        .map_err(|_| format!("Ed25519 public key is {} bytes, not 32", bits.data.len()))
}

/// Parses an Ed25519 private key from a PEM PKCS#8 block, label ignored ("ED25519 PRIVATE KEY"
/// or "PRIVATE KEY"). Accepts PKCS#8 v1 (what OpenSSL and Go's x509.MarshalPKCS8PrivateKey
/// produce; the public key is then derived, not checked) and v2 (public key checked against
/// the private key). The text must hold exactly one PEM block.
pub fn parse_ed25519_private_pem(pem: &str) -> Result<Ed25519KeyPair, String> {
    let der = single_block_der(pem)?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| format!("not an Ed25519 PKCS#8 private key: {e}"))
}

/// PKCS#8 v1 encoding of an Ed25519 private key (RFC 8410 §7): this fixed prefix followed by
/// the 32-byte seed. Exactly what OpenSSL and Go's `x509.MarshalPKCS8PrivateKey` write.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Generates a new Ed25519 key pair and returns (private PKCS#8 PEM, public SPKI PEM) with labels
/// "PRIVATE KEY" / "PUBLIC KEY" (standard labels; Deckhouse parsers ignore labels). The private
/// key is PKCS#8 v1 — the seed from the system RNG in RFC 8410's fixed encoding — because every
/// reader (Go, OpenSSL, ring) accepts v1, while v2 (ring's own output) is not universally read.
/// Errs only if the system RNG fails.
pub fn generate_ed25519_pem() -> Result<(String, String), String> {
    let rng = SystemRandom::new();
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&rng, &mut seed)
        .map_err(|_| "cannot generate Ed25519 key: system random source failed".to_string())?;
    let mut pkcs8 = Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + 32);
    pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
    pkcs8.extend_from_slice(&seed);
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
        .map_err(|e| format!("generated Ed25519 key rejected: {e}"))?;
    let mut spki = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
    spki.extend_from_slice(&ED25519_SPKI_PREFIX);
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok((to_pem("PRIVATE KEY", &pkcs8), to_pem("PUBLIC KEY", &spki)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa,
        KeyPair, PublicKeyData,
    };
    use ring::signature::{UnparsedPublicKey, ED25519};

    /// 2025-06-01T00:00:00Z.
    const NOW: i64 = 1_748_736_000;
    /// 2024-01-02T00:00:00Z.
    const JAN_2_2024: i64 = 1_704_153_600;
    /// 2030-01-01T00:00:00Z.
    const JAN_1_2030: i64 = 1_893_456_000;
    /// 2040-01-01T00:00:00Z.
    const JAN_1_2040: i64 = 2_208_988_800;
    /// 2020-01-01T00:00:00Z.
    const JAN_1_2020: i64 = 1_577_836_800;

    /// Deckhouse test fixture key pair.
    const FIXTURE_PRIV_B64: &str =
        "MC4CAQAwBQYDK2VwBCIEIMgNk3rr2AmIIlkKTAM9fG6+hMKvwF+pMAT3ID3M0OFK";
    const FIXTURE_PUB_B64: &str = "MCowBQYDK2VwAyEAKWjdKDeIIT4xESCMhbol662vNMpq4DxFct8GvJ500Xs=";

    struct TestCert {
        der: Vec<u8>,
        /// Canonical PEM built here, independently of `to_pem`.
        pem: String,
    }

    fn make_cert(
        cn: &str,
        is_ca: IsCa,
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> TestCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = is_ca;
        params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        let pem = independent_pem("CERTIFICATE", &der);
        TestCert { der, pem }
    }

    fn ca(cn: &str) -> TestCert {
        make_cert(
            cn,
            IsCa::Ca(BasicConstraints::Unconstrained),
            (2020, 1, 1),
            (2040, 1, 1),
        )
    }

    /// PEM written without the module's code: 64-column lines, LF endings.
    fn independent_pem(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn sha256_hex(der: &[u8]) -> String {
        ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn fixture_private_der() -> Vec<u8> {
        STANDARD.decode(FIXTURE_PRIV_B64).unwrap()
    }

    fn fixture_public_raw() -> [u8; 32] {
        let spki = STANDARD.decode(FIXTURE_PUB_B64).unwrap();
        assert_eq!(spki.len(), 44);
        spki[12..].try_into().unwrap()
    }

    fn wrap(label: &str, b64: &str) -> String {
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    // ---------- fingerprint / to_pem ----------

    #[test]
    fn fingerprint_known_vector() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn to_pem_is_canonical() {
        let der: Vec<u8> = (0u8..=255).collect();
        assert_eq!(
            to_pem("CERTIFICATE", &der),
            independent_pem("CERTIFICATE", &der)
        );
        // 48 bytes encode to exactly 64 columns: no empty line before END.
        let der48 = [7u8; 48];
        let pem = to_pem("X", &der48);
        assert_eq!(pem.lines().count(), 3);
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        assert_eq!(to_pem("X", &[]), "-----BEGIN X-----\n-----END X-----\n");
    }

    // ---------- pem_blocks ----------

    #[test]
    fn pem_blocks_spans_remove_cleanly() {
        let a = ca("Span A");
        let b = ca("Span B");
        let b_crlf = b.pem.replace('\n', "\r\n");
        let head = "# comment line\n\n";
        let mid = "between blocks\r\n";
        let tail = "  trailing text without newline";
        let text = format!("{head}{}{mid}{b_crlf}{tail}", a.pem);

        let blocks = pem_blocks(&text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, a.der);
        assert_eq!(blocks[1].der, b.der);
        assert_eq!(blocks[0].start, head.len());
        assert_eq!(blocks[0].end, head.len() + a.pem.len());
        assert_eq!(&text[blocks[0].start..blocks[0].end], a.pem);
        assert_eq!(&text[blocks[1].start..blocks[1].end], b_crlf);

        let mut without_first = text.clone();
        without_first.replace_range(blocks[0].start..blocks[0].end, "");
        assert_eq!(without_first, format!("{head}{mid}{b_crlf}{tail}"));

        let mut without_second = text.clone();
        without_second.replace_range(blocks[1].start..blocks[1].end, "");
        assert_eq!(without_second, format!("{head}{}{mid}{tail}", a.pem));
    }

    #[test]
    fn pem_blocks_last_block_without_newline() {
        let a = ca("No newline");
        let text = format!("x\n{}", a.pem.trim_end());
        let blocks = pem_blocks(&text).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].start, 2);
        assert_eq!(blocks[0].end, text.len());
        assert_eq!(blocks[0].der, a.der);
    }

    #[test]
    fn pem_blocks_tolerates_whitespace_crlf_and_long_lines() {
        let a = ca("Whitespace");
        let b64 = STANDARD.encode(&a.der);
        // One long body line, indented armor, trailing spaces, CRLF.
        let text = format!(
            "   -----BEGIN CERTIFICATE-----  \r\n\t{b64}   \r\n  -----END CERTIFICATE-----\t\r\n"
        );
        let blocks = pem_blocks(&text).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].der, a.der);
        assert_eq!((blocks[0].start, blocks[0].end), (0, text.len()));

        // Odd line lengths (17 columns).
        let odd: Vec<String> = b64
            .as_bytes()
            .chunks(17)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let text = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----",
            odd.join("\n")
        );
        assert_eq!(pem_blocks(&text).unwrap()[0].der, a.der);
    }

    #[test]
    fn pem_blocks_no_blocks_is_empty() {
        assert!(pem_blocks("").unwrap().is_empty());
        assert!(pem_blocks("just some text\nno pem here\n")
            .unwrap()
            .is_empty());
        // A stray END outside any block is ignored text.
        assert!(pem_blocks("-----END CERTIFICATE-----\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn pem_blocks_errors_name_the_block() {
        let a = ca("Err");
        let unterminated = format!("{}-----BEGIN CERTIFICATE-----\nMIIB\n", a.pem);
        let e = pem_blocks(&unterminated).unwrap_err();
        assert!(e.contains("block 2"), "{e}");
        assert!(e.contains("no matching END"), "{e}");

        let nested = format!("-----BEGIN CERTIFICATE-----\nMIIB\n{}", a.pem);
        let e = pem_blocks(&nested).unwrap_err();
        assert!(
            e.contains("block 1") && e.contains("no matching END"),
            "{e}"
        );

        let mismatched = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = pem_blocks(mismatched).unwrap_err();
        assert!(e.contains("block 1"), "{e}");
        assert!(e.contains("END PRIVATE KEY"), "{e}");

        let bad_b64 = format!("{}{}", a.pem, wrap("CERTIFICATE", "not*base64!"));
        let e = pem_blocks(&bad_b64).unwrap_err();
        assert!(e.contains("block 2") && e.contains("invalid base64"), "{e}");
    }

    // ---------- check_roots ----------

    #[test]
    fn accepts_a_ca_with_canonical_fields() {
        let a = ca("Root A");
        let check = check_roots(&a.pem, NOW, &[]).unwrap();
        assert!(check.rejected.is_empty(), "{:?}", check.rejected);
        assert_eq!(
            check.accepted,
            vec![RootCert {
                pem: a.pem.clone(),
                fingerprint: sha256_hex(&a.der),
                subject: "CN=Root A".to_string(),
                not_after: JAN_1_2040,
            }]
        );
    }

    #[test]
    fn two_cas_accepted_in_order_with_canonical_pem() {
        let a = ca("Root A");
        let b = ca("Root B");
        // Peer formatting: CRLF, blank lines, comments.
        let bundle = format!(
            "# bundle\r\n{}\r\n\r\n{}",
            a.pem.replace('\n', "\r\n"),
            b.pem
        );
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert!(check.rejected.is_empty());
        assert_eq!(check.accepted.len(), 2);
        assert_eq!(check.accepted[0].pem, a.pem);
        assert_eq!(check.accepted[1].pem, b.pem);
        assert_eq!(check.accepted[0].fingerprint, sha256_hex(&a.der));
        assert_eq!(check.accepted[1].fingerprint, sha256_hex(&b.der));
        assert_eq!(check.accepted[1].subject, "CN=Root B");
    }

    #[test]
    fn duplicates_are_accepted_once() {
        let a = ca("Dup");
        let b = ca("Other");
        let bundle = format!("{}{}{}", a.pem, b.pem, a.pem.replace('\n', "\r\n"));
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert!(check.rejected.is_empty());
        let fps: Vec<&str> = check
            .accepted
            .iter()
            .map(|r| r.fingerprint.as_str())
            .collect();
        assert_eq!(fps, vec![sha256_hex(&a.der), sha256_hex(&b.der)]);
    }

    #[test]
    fn leaf_is_not_ca() {
        let no_ext = make_cert("Leaf", IsCa::NoCa, (2020, 1, 1), (2040, 1, 1));
        let explicit = make_cert("Leaf2", IsCa::ExplicitNoCa, (2020, 1, 1), (2040, 1, 1));
        let bundle = format!("{}{}", no_ext.pem, explicit.pem);
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert!(check.accepted.is_empty());
        assert_eq!(
            check.rejected,
            vec![(1, CertRejection::NotCa), (2, CertRejection::NotCa)]
        );
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let ca_bc = IsCa::Ca(BasicConstraints::Unconstrained);
        let expired = make_cert("Old", ca_bc, (2020, 1, 1), (2024, 1, 2));
        let future = make_cert("Future", ca_bc, (2030, 1, 1), (2040, 1, 1));
        let good = ca("Good");
        let bundle = format!("{}{}{}", expired.pem, good.pem, future.pem);
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert_eq!(check.accepted.len(), 1);
        assert_eq!(check.accepted[0].fingerprint, sha256_hex(&good.der));
        assert_eq!(
            check.rejected,
            vec![
                (
                    1,
                    CertRejection::Expired {
                        not_after: JAN_2_2024
                    }
                ),
                (
                    3,
                    CertRejection::NotYetValid {
                        not_before: JAN_1_2030
                    }
                ),
            ]
        );
        assert_eq!(check.rejected[0].1.to_string(), "expired on 2024-01-02");
        assert_eq!(
            check.rejected[1].1.to_string(),
            "not valid before 2030-01-01"
        );
    }

    #[test]
    fn validity_bounds_are_inclusive() {
        let a = ca("Bounds");
        assert_eq!(
            check_roots(&a.pem, JAN_1_2020, &[]).unwrap().accepted.len(),
            1
        );
        assert_eq!(
            check_roots(&a.pem, JAN_1_2040, &[]).unwrap().accepted.len(),
            1
        );
        assert_eq!(
            check_roots(&a.pem, JAN_1_2040 + 1, &[]).unwrap().rejected,
            vec![(
                1,
                CertRejection::Expired {
                    not_after: JAN_1_2040
                }
            )]
        );
        assert_eq!(
            check_roots(&a.pem, JAN_1_2020 - 1, &[]).unwrap().rejected,
            vec![(
                1,
                CertRejection::NotYetValid {
                    not_before: JAN_1_2020
                }
            )]
        );
    }

    #[test]
    fn own_root_is_rejected() {
        let own = ca("Own");
        let peer = ca("Peer");
        let bundle = format!("{}{}", peer.pem, own.pem);
        let own_fp = sha256_hex(&own.der);
        let check = check_roots(&bundle, NOW, std::slice::from_ref(&own_fp)).unwrap();
        assert_eq!(check.accepted.len(), 1);
        assert_eq!(check.accepted[0].fingerprint, sha256_hex(&peer.der));
        assert_eq!(check.rejected, vec![(2, CertRejection::OwnRoot)]);
        // Upper-case fingerprints from elsewhere match too.
        let check = check_roots(&bundle, NOW, &[own_fp.to_uppercase()]).unwrap();
        assert_eq!(check.rejected, vec![(2, CertRejection::OwnRoot)]);
    }

    #[test]
    fn non_certificates_and_garbage_der() {
        let a = ca("Fine");
        let key = wrap("PRIVATE KEY", FIXTURE_PRIV_B64);
        let garbage = wrap("CERTIFICATE", &STANDARD.encode(b"hello world"));
        let mut trailing_der = a.der.clone();
        trailing_der.push(0);
        let trailing = independent_pem("CERTIFICATE", &trailing_der);
        let bundle = format!("{key}{garbage}{trailing}{}", a.pem);
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert_eq!(check.accepted.len(), 1);
        assert_eq!(check.rejected.len(), 3);
        assert_eq!(
            check.rejected[0],
            (
                1,
                CertRejection::NotCertificate {
                    label: "PRIVATE KEY".to_string()
                }
            )
        );
        assert_eq!(
            check.rejected[0].1.to_string(),
            "not a certificate (PEM label PRIVATE KEY)"
        );
        assert_eq!(check.rejected[1].0, 2);
        assert!(matches!(check.rejected[1].1, CertRejection::Unparsable(_)));
        assert!(check.rejected[1]
            .1
            .to_string()
            .starts_with("cannot be parsed as X.509: "));
        assert_eq!(
            check.rejected[2],
            (
                3,
                CertRejection::Unparsable("trailing data after certificate".to_string())
            )
        );
    }

    #[test]
    fn garbage_text_is_an_error() {
        assert!(check_roots("", NOW, &[]).is_err());
        assert!(check_roots("hello, I am not PEM", NOW, &[]).is_err());
        assert!(check_roots("-----BEGIN CERTIFICATE-----\nMIIB\n", NOW, &[])
            .unwrap_err()
            .contains("block 1"));
        assert!(check_roots(&wrap("CERTIFICATE", "%%%%"), NOW, &[]).is_err());
    }

    #[test]
    fn display_texts_are_stable_and_hold_no_current_time() {
        let cases = [
            (
                CertRejection::NotCertificate {
                    label: "PRIVATE KEY".into(),
                },
                "not a certificate (PEM label PRIVATE KEY)",
            ),
            (
                CertRejection::Unparsable("boom".into()),
                "cannot be parsed as X.509: boom",
            ),
            (
                CertRejection::NotCa,
                "not a CA certificate (BasicConstraints CA:TRUE missing)",
            ),
            (
                CertRejection::Expired {
                    not_after: JAN_2_2024,
                },
                "expired on 2024-01-02",
            ),
            (
                CertRejection::Expired {
                    not_after: JAN_2_2024 + 86_399,
                },
                "expired on 2024-01-02",
            ),
            (
                CertRejection::NotYetValid {
                    not_before: JAN_1_2030,
                },
                "not valid before 2030-01-01",
            ),
            (CertRejection::OwnRoot, "is our own root certificate"),
        ];
        for (rejection, text) in cases {
            assert_eq!(rejection.to_string(), text);
        }
        // The same certificate checked at different times gives the same text.
        let expired = make_cert(
            "Old",
            IsCa::Ca(BasicConstraints::Unconstrained),
            (2020, 1, 1),
            (2024, 1, 2),
        );
        let t1 = check_roots(&expired.pem, NOW, &[]).unwrap().rejected[0]
            .1
            .to_string();
        let t2 = check_roots(&expired.pem, NOW + 10 * 365 * 86_400, &[])
            .unwrap()
            .rejected[0]
            .1
            .to_string();
        assert_eq!(t1, t2);
        // Long hostile labels are cut in the text.
        let long = "A".repeat(1000);
        let text = CertRejection::NotCertificate { label: long }.to_string();
        assert!(text.len() < 120, "{text}");
    }

    // ---------- certificate_fingerprints ----------

    #[test]
    fn certificate_fingerprints_is_lenient() {
        let a = ca("Own A");
        let b = ca("Own B");
        let text = format!(
            "{}{}{}{}{}-----BEGIN CERTIFICATE-----\nMIIB\n",
            a.pem,
            wrap("CERTIFICATE", "!!!!"),
            wrap("PRIVATE KEY", FIXTURE_PRIV_B64),
            wrap("CERTIFICATE", &STANDARD.encode(b"not x509")),
            b.pem
        );
        assert_eq!(
            certificate_fingerprints(&text),
            vec![sha256_hex(&a.der), sha256_hex(&b.der)]
        );
        assert!(certificate_fingerprints("").is_empty());
        assert!(certificate_fingerprints("garbage").is_empty());
    }

    // ---------- Ed25519 ----------

    #[test]
    fn fixture_public_key_in_both_labels() {
        for label in ["ED25519 PUBLIC KEY", "PUBLIC KEY"] {
            let key = parse_ed25519_public_pem(&wrap(label, FIXTURE_PUB_B64)).unwrap();
            assert_eq!(key, fixture_public_raw(), "{label}");
        }
    }

    #[test]
    fn fixture_private_key_in_both_labels_matches_public() {
        for label in ["ED25519 PRIVATE KEY", "PRIVATE KEY"] {
            let pair = parse_ed25519_private_pem(&wrap(label, FIXTURE_PRIV_B64)).unwrap();
            assert_eq!(pair.public_key().as_ref(), fixture_public_raw(), "{label}");
            let sig = pair.sign(b"message");
            UnparsedPublicKey::new(&ED25519, fixture_public_raw())
                .verify(b"message", sig.as_ref())
                .unwrap();
        }
        // Independently: ring reads the same v1 document to the same key.
        let direct = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&fixture_private_der()).unwrap();
        assert_eq!(direct.public_key().as_ref(), fixture_public_raw());
    }

    #[test]
    fn private_key_pkcs8_v2_accepted() {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let expected = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let pem = independent_pem("PRIVATE KEY", doc.as_ref());
        let pair = parse_ed25519_private_pem(&pem).unwrap();
        assert_eq!(pair.public_key().as_ref(), expected.public_key().as_ref());
    }

    #[test]
    fn public_key_errors() {
        assert_eq!(parse_ed25519_public_pem("").unwrap_err(), "no PEM block");
        assert_eq!(
            parse_ed25519_public_pem("nothing").unwrap_err(),
            "no PEM block"
        );

        let ec = KeyPair::generate().unwrap();
        let ec_pem = independent_pem("PUBLIC KEY", &ec.subject_public_key_info());
        let e = parse_ed25519_public_pem(&ec_pem).unwrap_err();
        assert_eq!(e, "not an Ed25519 key: algorithm OID 1.2.840.10045.2.1");

        let mut short = vec![
            0x30, 0x29, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x20, 0x00,
        ];
        short.extend_from_slice(&[1u8; 31]);
        let e = parse_ed25519_public_pem(&independent_pem("PUBLIC KEY", &short)).unwrap_err();
        assert!(e.contains("31 bytes"), "{e}");

        let mut with_params = vec![
            0x30, 0x2c, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00, 0x03, 0x21, 0x00,
        ];
        with_params.extend_from_slice(&fixture_public_raw());
        let e = parse_ed25519_public_pem(&independent_pem("PUBLIC KEY", &with_params)).unwrap_err();
        assert!(e.contains("parameters"), "{e}");

        let mut trailing = STANDARD.decode(FIXTURE_PUB_B64).unwrap();
        trailing.push(0);
        assert!(parse_ed25519_public_pem(&independent_pem("PUBLIC KEY", &trailing)).is_err());

        let garbage = independent_pem("PUBLIC KEY", b"garbage");
        assert!(parse_ed25519_public_pem(&garbage).is_err());

        let two = format!(
            "{}{}",
            wrap("PUBLIC KEY", FIXTURE_PUB_B64),
            wrap("PUBLIC KEY", FIXTURE_PUB_B64)
        );
        assert!(parse_ed25519_public_pem(&two)
            .unwrap_err()
            .contains("one PEM block"));
    }

    #[test]
    fn private_key_errors() {
        assert_eq!(parse_ed25519_private_pem("").unwrap_err(), "no PEM block");
        let e = parse_ed25519_private_pem(&wrap("PRIVATE KEY", FIXTURE_PUB_B64)).unwrap_err();
        assert!(e.starts_with("not an Ed25519 PKCS#8 private key"), "{e}");
        let ec = KeyPair::generate().unwrap();
        let ec_pem = independent_pem("PRIVATE KEY", ec.serialized_der());
        assert!(parse_ed25519_private_pem(&ec_pem).is_err());
        assert!(parse_ed25519_private_pem("-----BEGIN PRIVATE KEY-----\nabc").is_err());
    }

    #[test]
    fn generated_keys_round_trip() {
        let (private_pem, public_pem) = generate_ed25519_pem().unwrap();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(private_pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(public_pem.ends_with("-----END PUBLIC KEY-----\n"));

        // The SPKI is the RFC 8410 encoding: fixed prefix + 32 key bytes.
        let spki_b64: String = public_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let spki = STANDARD.decode(spki_b64).unwrap();
        assert_eq!(spki.len(), 44);
        assert_eq!(
            spki[..12],
            [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]
        );

        let pair = parse_ed25519_private_pem(&private_pem).unwrap();
        let public = parse_ed25519_public_pem(&public_pem).unwrap();
        assert_eq!(pair.public_key().as_ref(), public);
        assert_eq!(spki[12..], public);
        let sig = pair.sign(b"hello");
        UnparsedPublicKey::new(&ED25519, public)
            .verify(b"hello", sig.as_ref())
            .unwrap();

        // PKCS#8 v1 (RFC 8410 §7), the form Go and OpenSSL write; OpenSSL must read it back.
        let pkcs8_b64: String = private_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let pkcs8 = STANDARD.decode(pkcs8_b64).unwrap();
        assert_eq!(pkcs8.len(), 48);
        assert_eq!(
            pkcs8[..16],
            [
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20
            ]
        );

        let (other, _) = generate_ed25519_pem().unwrap();
        assert_ne!(other, private_pem);
    }
}
