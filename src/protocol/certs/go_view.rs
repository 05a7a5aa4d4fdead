//! Roots as istiod's Go parser reads them.
//!
//! istiod parses every trust anchor with Go's crypto/x509.ParseCertificate and refuses the whole
//! trust source when one of them does not parse — every federation, not only the peer that sent
//! it (docs/security.md). `go_view` reads a certificate as Go 1.23 does: the same DER rules
//! ([`super::der`]), the same fields in the same order and the same extension parsers
//! ([`super::extensions`]), and refuses what Go refuses. Where Go's rule is a large piece of its
//! standard library (URL syntax, RFC 2821 mailboxes, UTCTime with offsets or without seconds)
//! it refuses more: only the plain forms named below pass. `tests/go_oracle.rs` compares it
//! with Go itself over the corpus in testdata/go-oracle/ (docs/security.md).

use super::der::{
    ctx, ctx_constructed, envoy_algorithm, envoy_complete, go_bit_string, go_bool, go_name, go_oid,
    go_time, malformed, minimal_integer, oid_text, Der, Element, TAG_BIT_STRING, TAG_BOOLEAN,
    TAG_INTEGER, TAG_OCTET_STRING, TAG_OID, TAG_SEQUENCE,
};
use super::extensions::{
    go_authority_info_access, go_authority_key_identifier, go_basic_constraints,
    go_certificate_policies, go_crl_distribution_points, go_ext_key_usage, go_key_usage,
    go_name_constraints, go_subject_alt_name, go_subject_key_identifier, OID_AUTHORITY_INFO_ACCESS,
};
use super::rejection::CertRejection;
use std::collections::BTreeSet;

pub(super) const OID_RSA: &[u32] = &[1, 2, 840, 113549, 1, 1, 1];
pub(super) const OID_EC: &[u32] = &[1, 2, 840, 10045, 2, 1];
pub(super) const OID_ED25519: &[u32] = &[1, 3, 101, 112];
pub(super) const OID_P224: &[u32] = &[1, 3, 132, 0, 33];
pub(super) const OID_P256: &[u32] = &[1, 2, 840, 10045, 3, 1, 7];
pub(super) const OID_P384: &[u32] = &[1, 3, 132, 0, 34];
pub(super) const OID_P521: &[u32] = &[1, 3, 132, 0, 35];
pub(super) const OID_SECP256K1: &[u32] = &[1, 3, 132, 0, 10];
/// The elliptic curves Go's parser knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Curve {
    P224,
    P256,
    P384,
    P521,
}

impl Curve {
    pub(super) fn name(self) -> &'static str {
        match self {
            Curve::P224 => "P-224",
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Bytes of one coordinate.
    pub(super) fn coordinate_len(self) -> usize {
        match self {
            Curve::P224 => 28,
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// A public key as Go's parser left it.
#[derive(Debug)]
pub(super) enum GoKey<'a> {
    /// Go's RSA checks passed (NULL parameters, positive modulus, exponent that fits 64 bits).
    Rsa,
    /// A named curve Go knows and an uncompressed point of the right length; whether the point
    /// is on the curve is left to [`root_rules`] (ring).
    Ec {
        curve: Curve,
        point: &'a [u8],
    },
    Ed25519,
    /// An algorithm the root rules refuse whatever Go makes of it (DSA, X25519, unknown).
    Other(Vec<u32>),
}

/// What Go's `x509.ParseCertificate` reads from a certificate, as far as the root checks need it.
#[derive(Debug)]
pub(super) struct GoView<'a> {
    /// 1 to 3, as Go numbers versions.
    pub(super) version: i64,
    /// Content octets of the serial INTEGER (minimal, not negative).
    pub(super) serial: &'a [u8],
    pub(super) issuer_attributes: usize,
    pub(super) subject_attributes: usize,
    pub(super) key: GoKey<'a>,
    /// Go's `IsCA` and `MaxPathLen` (`None` when absent); `None` without basicConstraints.
    pub(super) basic_constraints: Option<(bool, Option<i64>)>,
    /// Critical extensions Go records as unhandled (verification through them fails).
    pub(super) unhandled_critical: Vec<Vec<u32>>,
}

/// An AlgorithmIdentifier as Go's `parseAI` reads it: an OID, then optionally one element.
/// Returns the OID and the parameters element.
pub(super) fn go_algorithm(body: &[u8]) -> Option<(Vec<u32>, Option<Element<'_>>)> {
    let mut d = Der(body);
    let oid = d.oid()?;
    if d.is_empty() {
        return Some((oid, None));
    }
    Some((oid, Some(d.any()?)))
}

/// The SubjectPublicKeyInfo (content octets), with Go's checks per algorithm. Go right-aligns
/// a key BIT STRING with padding; a key here must be whole bytes.
pub(super) fn go_public_key(spki: &[u8]) -> Result<GoKey<'_>, CertRejection> {
    let key_error = |detail: &str| CertRejection::PublicKey(detail.to_string());
    let mut d = Der(spki);
    let (oid, params) = d
        .read(TAG_SEQUENCE)
        .and_then(go_algorithm)
        .ok_or_else(|| malformed("subjectPublicKeyInfo", "malformed algorithm identifier"))?;
    let (padding, key) = d
        .read(TAG_BIT_STRING)
        .and_then(go_bit_string)
        .ok_or_else(|| malformed("subjectPublicKeyInfo", "malformed subjectPublicKey"))?;
    envoy_complete(&d, "subjectPublicKeyInfo", "the key")?;
    if let Some(algorithm) = Der(spki).read(TAG_SEQUENCE) {
        envoy_algorithm(algorithm, "subjectPublicKeyInfo")?;
    }
    let whole_bytes = padding == 0;
    match oid.as_slice() {
        OID_RSA => {
            if params.map(|p| p.whole) != Some(&[0x05, 0x00][..]) {
                return Err(key_error("RSA key without NULL parameters"));
            }
            if !whole_bytes {
                return Err(key_error("RSA key is not whole bytes"));
            }
            let mut rsa = Der(key)
                .read(TAG_SEQUENCE)
                .map(Der)
                .ok_or_else(|| key_error("RSA key is not a DER SEQUENCE"))?;
            let modulus = rsa
                .read(TAG_INTEGER)
                .filter(|n| minimal_integer(n))
                .ok_or_else(|| key_error("RSA modulus is not a minimal DER INTEGER"))?;
            let exponent = rsa.small_int().ok_or_else(|| {
                key_error("RSA public exponent is not a minimal DER INTEGER of at most 64 bits")
            })?;
            envoy_complete(&rsa, "subjectPublicKeyInfo", "the RSA public exponent")?;
            if modulus[0] & 0x80 != 0 || modulus.iter().all(|&b| b == 0) {
                return Err(key_error("RSA modulus is not a positive number"));
            }
            if exponent <= 0 {
                return Err(key_error("RSA public exponent is not a positive number"));
            }
            Ok(GoKey::Rsa)
        }
        OID_EC => {
            let named = params
                .filter(|p| p.tag == TAG_OID)
                .and_then(|p| go_oid(p.body))
                .ok_or_else(|| key_error("EC parameters are not a named curve"))?;
            let curve = match named.as_slice() {
                OID_P224 => Curve::P224,
                OID_P256 => Curve::P256,
                OID_P384 => Curve::P384,
                OID_P521 => Curve::P521,
                OID_SECP256K1 => return Err(key_error("unsupported elliptic curve secp256k1")),
                other => {
                    return Err(CertRejection::PublicKey(format!(
                        "unsupported elliptic curve {}",
                        oid_text(other)
                    )))
                }
            };
            if !whole_bytes
                || key.len() != 1 + 2 * curve.coordinate_len()
                || key.first() != Some(&0x04)
            {
                return Err(CertRejection::PublicKey(format!(
                    "not an uncompressed point on {}",
                    curve.name()
                )));
            }
            Ok(GoKey::Ec { curve, point: key })
        }
        OID_ED25519 => {
            if params.is_some() {
                return Err(key_error("Ed25519 key with algorithm parameters"));
            }
            if !whole_bytes || key.len() != 32 {
                return Err(CertRejection::PublicKey(format!(
                    "Ed25519 key of {} bytes, not 32",
                    key.len()
                )));
            }
            Ok(GoKey::Ed25519)
        }
        _ => Ok(GoKey::Other(oid)),
    }
}

/// Reads a certificate as Go's `x509.ParseCertificate` does (see the section comment), field by
/// field in Go's order, so the first problem named is the one Go stops at.
pub(super) fn go_view(der: &[u8]) -> Result<GoView<'_>, CertRejection> {
    let (mut outer, mut tbs) = go_envelope(der)?;
    let version = go_version(&mut tbs)?;
    let serial = go_serial(&mut tbs)?;
    go_signature_algorithm(&mut tbs, &mut outer)?;
    let issuer_attributes = go_name_field(&mut tbs, "issuer")?;
    let mut validity = tbs
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed("validity", "not a DER SEQUENCE"))?;
    go_time(&mut validity, "notBefore")?;
    go_time(&mut validity, "notAfter")?;
    envoy_complete(&validity, "validity", "notAfter")?;
    let subject_attributes = go_name_field(&mut tbs, "subject")?;
    let spki = tbs
        .read(TAG_SEQUENCE)
        .ok_or_else(|| malformed("subjectPublicKeyInfo", "not a DER SEQUENCE"))?;
    let key = go_public_key(spki)?;

    let mut view = GoView {
        version,
        serial,
        issuer_attributes,
        subject_attributes,
        key,
        basic_constraints: None,
        unhandled_critical: Vec::new(),
    };
    go_versioned_fields(&mut tbs, &mut view)?;
    go_signature(outer)?;
    Ok(view)
}

/// The certificate SEQUENCE with nothing after it, opened; then its tbsCertificate, opened.
/// Returns the rest of the certificate (signature algorithm and value) and the tbsCertificate.
pub(super) fn go_envelope(der: &[u8]) -> Result<(Der<'_>, Der<'_>), CertRejection> {
    let mut input = Der(der);
    let mut outer = input
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed("certificate", "not a DER SEQUENCE"))?;
    if !input.is_empty() {
        return Err(malformed("certificate", "trailing data"));
    }
    let tbs = outer
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed("tbsCertificate", "not a DER SEQUENCE"))?;
    Ok((outer, tbs))
}

/// The version, numbered as Go numbers it (1 to 3): absent means v1; the encoded value must be
/// a non-negative INTEGER, and Go refuses anything after v3.
pub(super) fn go_version(tbs: &mut Der<'_>) -> Result<i64, CertRejection> {
    let version = match tbs
        .optional(ctx_constructed(0))
        .ok_or_else(|| malformed("version", "malformed"))?
    {
        None => 0,
        Some(body) => {
            let mut v = Der(body);
            match v.small_int() {
                Some(n) if v.is_empty() && n >= 0 => n,
                _ => return Err(malformed("version", "not a non-negative DER INTEGER")),
            }
        }
    };
    if version > 2 {
        return Err(CertRejection::Version {
            version: version.saturating_add(1),
        });
    }
    Ok(version + 1)
}

/// The serial number's content octets: Go requires a minimally encoded, non-negative INTEGER.
pub(super) fn go_serial<'a>(tbs: &mut Der<'a>) -> Result<&'a [u8], CertRejection> {
    let serial = tbs
        .read(TAG_INTEGER)
        .ok_or(CertRejection::Serial("is not a DER INTEGER"))?;
    if !minimal_integer(serial) {
        return Err(CertRejection::Serial("is not minimally encoded"));
    }
    if serial[0] & 0x80 != 0 {
        return Err(CertRejection::Serial("is negative"));
    }
    Ok(serial)
}

/// The signature algorithm, named twice — inside tbsCertificate and after it: Go requires the
/// two encodings to be identical, and the identifier to parse.
pub(super) fn go_signature_algorithm(
    tbs: &mut Der<'_>,
    outer: &mut Der<'_>,
) -> Result<(), CertRejection> {
    let inner_algorithm = tbs
        .read(TAG_SEQUENCE)
        .ok_or_else(|| malformed("signature", "malformed algorithm identifier"))?;
    let outer_algorithm = outer
        .read(TAG_SEQUENCE)
        .ok_or_else(|| malformed("signatureAlgorithm", "malformed algorithm identifier"))?;
    if inner_algorithm != outer_algorithm {
        return Err(malformed(
            "signatureAlgorithm",
            "differs from the signature algorithm in tbsCertificate",
        ));
    }
    go_algorithm(inner_algorithm)
        .ok_or_else(|| malformed("signatureAlgorithm", "malformed algorithm identifier"))?;
    envoy_algorithm(inner_algorithm, "signatureAlgorithm")
}

/// The issuer or subject Name, read whole so [`go_name`] sees its encoding: its count of
/// attributes.
pub(super) fn go_name_field(
    tbs: &mut Der<'_>,
    field: &'static str,
) -> Result<usize, CertRejection> {
    let name = tbs
        .element(TAG_SEQUENCE)
        .ok_or_else(|| malformed(field, "not a DER SEQUENCE"))?;
    go_name(name.whole, field)
}

/// What only later versions carry: the unique IDs from v2, the extensions from v3. Go reads
/// no further in tbsCertificate; anything after the extensions is refused here.
pub(super) fn go_versioned_fields<'a>(
    tbs: &mut Der<'a>,
    view: &mut GoView<'a>,
) -> Result<(), CertRejection> {
    if view.version > 1 {
        for (tag, field) in [(ctx(1), "issuerUniqueID"), (ctx(2), "subjectUniqueID")] {
            tbs.optional(tag)
                .ok_or_else(|| malformed(field, "malformed"))?;
        }
        if view.version == 3 {
            if let Some(body) = tbs
                .optional(ctx_constructed(3))
                .ok_or_else(|| malformed("extensions", "malformed"))?
            {
                go_extensions(body, view)?;
            }
            // Go skips what follows; stricter DER readers (BoringSSL in Envoy) refuse it.
            if !tbs.is_empty() {
                return Err(malformed("tbsCertificate", "data after the extensions"));
            }
        }
    }
    Ok(())
}

/// The signature value, a BIT STRING Go accepts, and nothing after it.
pub(super) fn go_signature(mut outer: Der<'_>) -> Result<(), CertRejection> {
    outer
        .read(TAG_BIT_STRING)
        .and_then(go_bit_string)
        .ok_or_else(|| malformed("signature", "malformed BIT STRING"))?;
    // Go skips what follows; stricter DER readers (BoringSSL in Envoy) refuse it.
    if !outer.is_empty() {
        return Err(malformed("certificate", "data after the signature"));
    }
    Ok(())
}

/// The extensions block (content octets of `[3]`), as Go reads it: each extension once, then
/// each through [`go_extension`].
pub(super) fn go_extensions<'a>(
    body: &'a [u8],
    view: &mut GoView<'a>,
) -> Result<(), CertRejection> {
    const FIELD: &str = "extensions";
    let mut block = Der(body);
    let mut list = block
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed(FIELD, "not a DER SEQUENCE"))?;
    envoy_complete(&block, FIELD, "the list of extensions")?;
    let mut seen = BTreeSet::new();
    let mut extensions = Vec::new();
    while !list.is_empty() {
        let mut e = list
            .read(TAG_SEQUENCE)
            .map(Der)
            .ok_or_else(|| malformed(FIELD, "malformed extension"))?;
        let oid = e
            .oid()
            .ok_or_else(|| malformed(FIELD, "malformed extension OID"))?;
        let critical = match e.peek() {
            Some(TAG_BOOLEAN) => e.read(TAG_BOOLEAN).and_then(go_bool).ok_or_else(|| {
                malformed(
                    FIELD,
                    format!(
                        "extension {}: critical is not a DER BOOLEAN",
                        oid_text(&oid)
                    ),
                )
            })?,
            _ => false,
        };
        let value = e.read(TAG_OCTET_STRING).ok_or_else(|| {
            malformed(
                FIELD,
                format!("extension {}: malformed value", oid_text(&oid)),
            )
        })?;
        envoy_complete(
            &e,
            FIELD,
            &format!("the value of extension {}", oid_text(&oid)),
        )?;
        if !seen.insert(oid.clone()) {
            return Err(CertRejection::DuplicateExtension {
                oid: oid_text(&oid),
            });
        }
        extensions.push((oid, critical, value));
    }
    for (oid, critical, value) in extensions {
        if go_extension(&oid, critical, value, view)? && critical {
            view.unhandled_critical.push(oid);
        }
    }
    Ok(())
}

/// The extensions Go's `processExtensions` parses, each with its checks. Returns whether Go
/// leaves the extension unhandled.
pub(super) fn go_extension(
    oid: &[u32],
    critical: bool,
    value: &[u8],
    view: &mut GoView<'_>,
) -> Result<bool, CertRejection> {
    match oid {
        [2, 5, 29, 15] => go_key_usage(value)?,
        [2, 5, 29, 19] => view.basic_constraints = Some(go_basic_constraints(value)?),
        [2, 5, 29, 17] => return Ok(go_subject_alt_name(value)? == 0),
        [2, 5, 29, 30] => return go_name_constraints(value),
        [2, 5, 29, 31] => go_crl_distribution_points(value)?,
        [2, 5, 29, 35] => go_authority_key_identifier(critical, value)?,
        [2, 5, 29, 37] => go_ext_key_usage(value)?,
        [2, 5, 29, 14] => go_subject_key_identifier(critical, value)?,
        [2, 5, 29, 32] => go_certificate_policies(value)?,
        [2, 5, 29, _] => return Ok(true),
        OID_AUTHORITY_INFO_ACCESS => go_authority_info_access(critical, value)?,
        _ => return Ok(true),
    }
    Ok(false)
}
