//! The certificate extensions as Go's parser reads them: one function per extension Go's
//! `processExtensions` understands, each refusing what Go refuses. [`super::go_view`] reads the
//! extensions block and calls them; they are apart because they are half of Go's rules and
//! follow Go's releases on their own.

use super::der::{
    ctx, ctx_constructed, go_bit_string, go_bool, go_policy_oid, is_ascii, malformed, Der,
    TAG_BIT_STRING, TAG_BOOLEAN, TAG_INTEGER, TAG_OCTET_STRING, TAG_OID, TAG_SEQUENCE,
};
use super::rejection::{shorten, CertRejection};

pub(super) const OID_AUTHORITY_INFO_ACCESS: &[u32] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];

/// subjectAltName as Go's `parseSANExtension`; returns how many names Go keeps (zero makes a
/// critical SAN unhandled). URIs must be `scheme://host[/path]` in a plain form Go's URL parser
/// surely reads (see [`plain_uri`]).
pub(super) fn go_subject_alt_name(value: &[u8]) -> Result<usize, CertRejection> {
    const FIELD: &str = "subjectAltName";
    let mut names = Der(value)
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed(FIELD, "not a DER SEQUENCE"))?;
    let mut count = 0;
    while !names.is_empty() {
        let name = names
            .any()
            .ok_or_else(|| malformed(FIELD, "malformed GeneralName"))?;
        // Go compares `tag ^ 0x80` with the GeneralName numbers: primitive [1], [2], [6], [7].
        let kind = match name.tag ^ 0x80 {
            1 => "rfc822Name",
            2 => "dNSName",
            6 => "uniformResourceIdentifier",
            7 => {
                if name.body.len() != 4 && name.body.len() != 16 {
                    return Err(malformed(
                        FIELD,
                        format!("IP address of {} bytes (4 or 16 expected)", name.body.len()),
                    ));
                }
                count += 1;
                continue;
            }
            _ => continue,
        };
        if !is_ascii(name.body) {
            return Err(malformed(FIELD, format!("{kind} is not ASCII")));
        }
        if kind == "uniformResourceIdentifier" && !plain_uri(name.body) {
            return Err(malformed(
                FIELD,
                format!(
                    "URI {:?} is not of the form scheme://host/path",
                    shorten(&String::from_utf8_lossy(name.body))
                ),
            ));
        }
        count += 1;
    }
    Ok(count)
}

/// `scheme://host[/path]` with an RFC 3986 scheme, a host of dot-separated letter-digit-hyphen
/// labels and a path of unreserved characters and slashes: what Go's `url.Parse` and its host
/// check read without question. (SPIFFE IDs have this form.)
pub(super) fn plain_uri(uri: &[u8]) -> bool {
    let Ok(uri) = std::str::from_utf8(uri) else {
        return false;
    };
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let scheme_ok = scheme.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_alphabetic() || (i > 0 && (b.is_ascii_digit() || b"+-.".contains(&b)))
    }) && !scheme.is_empty();
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
    scheme_ok && host_ok && path_ok
}

/// Go's `domainToReverseLabels` succeeds: no empty label (so no trailing dot), printable ASCII.
pub(super) fn go_domain(domain: &[u8]) -> bool {
    domain.is_empty()
        || domain
            .split(|&b| b == b'.')
            .all(|label| !label.is_empty() && label.iter().all(|b| (33..=126).contains(b)))
}

/// Go's `isValidIPMask`: ones, then zeros.
pub(super) fn go_ip_mask(mask: &[u8]) -> bool {
    let mut seen_zero = false;
    mask.iter().all(|&b| {
        if seen_zero {
            return b == 0;
        }
        match b {
            0xff => true,
            0x00 | 0x80 | 0xc0 | 0xe0 | 0xf0 | 0xf8 | 0xfc | 0xfe => {
                seen_zero = true;
                true
            }
            _ => false,
        }
    })
}

/// nameConstraints as Go's `parseNameConstraintsExtension`; returns whether Go leaves it
/// unhandled. A mailbox constraint (`user@host`) is refused here (Go's RFC 2821 parser is not
/// reproduced); a URI constraint must be a domain that cannot read as an IP address.
pub(super) fn go_name_constraints(value: &[u8]) -> Result<bool, CertRejection> {
    const FIELD: &str = "nameConstraints";
    let bad = || malformed(FIELD, "malformed");
    let mut outer = Der(value);
    let mut top = outer.read(TAG_SEQUENCE).map(Der).ok_or_else(bad)?;
    if !outer.is_empty() {
        return Err(bad());
    }
    let permitted = top.optional(ctx_constructed(0)).ok_or_else(bad)?;
    let excluded = top.optional(ctx_constructed(1)).ok_or_else(bad)?;
    if !top.is_empty() {
        return Err(bad());
    }
    if permitted.unwrap_or_default().is_empty() && excluded.unwrap_or_default().is_empty() {
        return Err(malformed(FIELD, "neither permitted nor excluded subtrees"));
    }
    let mut unhandled = false;
    for subtrees in [permitted, excluded].into_iter().flatten() {
        let mut subtrees = Der(subtrees);
        while !subtrees.is_empty() {
            let base = subtrees
                .read(TAG_SEQUENCE)
                .and_then(|s| Der(s).any())
                .ok_or_else(bad)?;
            let text = base.body;
            let domain_part = |t: &'_ [u8]| t.strip_prefix(b".").map_or(t, |d| d).to_vec();
            match base.tag {
                t if t == ctx(2) || t == ctx(1) || t == ctx(6) => {
                    let kind = match t {
                        0x82 => "dNSName",
                        0x81 => "rfc822Name",
                        _ => "URI",
                    };
                    if !is_ascii(text) {
                        return Err(malformed(FIELD, format!("{kind} constraint is not ASCII")));
                    }
                    if t == ctx(1) && text.contains(&b'@') {
                        return Err(malformed(
                            FIELD,
                            "rfc822Name constraint naming a mailbox is not accepted",
                        ));
                    }
                    if t == ctx(6)
                        && !(text
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(b))
                            && text.iter().any(u8::is_ascii_alphabetic))
                    {
                        return Err(malformed(
                            FIELD,
                            "URI constraint is not a domain of letters, digits and hyphens",
                        ));
                    }
                    if !go_domain(&domain_part(text)) {
                        return Err(malformed(
                            FIELD,
                            format!(
                                "{kind} constraint {:?} is not a domain",
                                shorten(&String::from_utf8_lossy(text))
                            ),
                        ));
                    }
                }
                t if t == ctx(7) => {
                    let mask = match text.len() {
                        8 => &text[4..],
                        32 => &text[16..],
                        n => {
                            return Err(malformed(
                                FIELD,
                                format!("IP constraint of {n} bytes (8 or 32 expected)"),
                            ))
                        }
                    };
                    if !go_ip_mask(mask) {
                        return Err(malformed(FIELD, "IP constraint mask is not a prefix"));
                    }
                }
                _ => unhandled = true,
            }
        }
    }
    Ok(unhandled)
}

/// Go refuses some extensions outright when they are marked critical (RFC 5280 says they
/// must not be), before it reads their value.
pub(super) fn go_not_critical(field: &'static str, critical: bool) -> Result<(), CertRejection> {
    if critical {
        Err(malformed(field, "marked critical"))
    } else {
        Ok(())
    }
}

/// An extension value that must be one DER SEQUENCE, opened for reading its elements.
pub(super) fn go_sequence<'a>(
    field: &'static str,
    value: &'a [u8],
) -> Result<Der<'a>, CertRejection> {
    Der(value)
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed(field, "not a DER SEQUENCE"))
}

/// keyUsage: only that it is a BIT STRING Go accepts; the bits themselves are not checked here.
pub(super) fn go_key_usage(value: &[u8]) -> Result<(), CertRejection> {
    Der(value)
        .read(TAG_BIT_STRING)
        .and_then(go_bit_string)
        .ok_or_else(|| malformed("keyUsage", "malformed BIT STRING"))?;
    Ok(())
}

/// basicConstraints as Go's `IsCA` and `MaxPathLen`: both optional, cA a DER BOOLEAN and
/// pathLenConstraint a minimal INTEGER that fits 64 bits, or Go refuses the certificate.
pub(super) fn go_basic_constraints(value: &[u8]) -> Result<(bool, Option<i64>), CertRejection> {
    const FIELD: &str = "basicConstraints";
    let mut bc = go_sequence(FIELD, value)?;
    let ca = match bc.peek() {
        Some(TAG_BOOLEAN) => bc
            .read(TAG_BOOLEAN)
            .and_then(go_bool)
            .ok_or_else(|| malformed(FIELD, "cA is not a DER BOOLEAN"))?,
        _ => false,
    };
    let path_len = match bc.peek() {
        Some(TAG_INTEGER) => Some(bc.small_int().ok_or_else(|| {
            malformed(FIELD, "pathLenConstraint is not a minimal 64-bit INTEGER")
        })?),
        _ => None,
    };
    Ok((ca, path_len))
}

/// cRLDistributionPoints: Go reads each point's fullName and, within it, the leading URIs;
/// a point without a distributionPoint name is skipped, as Go skips it.
pub(super) fn go_crl_distribution_points(value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "cRLDistributionPoints";
    let bad = || malformed(FIELD, "malformed distribution point");
    let mut points = go_sequence(FIELD, value)?;
    while !points.is_empty() {
        let mut point = points.read(TAG_SEQUENCE).map(Der).ok_or_else(bad)?;
        let Some(name) = point.optional(ctx_constructed(0)).ok_or_else(bad)? else {
            continue;
        };
        let mut full = Der(name)
            .read(ctx_constructed(0))
            .map(Der)
            .ok_or_else(bad)?;
        while full.peek() == Some(ctx(6)) {
            full.read(ctx(6)).ok_or_else(bad)?;
        }
    }
    Ok(())
}

/// authorityKeyIdentifier: never critical; Go reads only the optional keyIdentifier.
pub(super) fn go_authority_key_identifier(
    critical: bool,
    value: &[u8],
) -> Result<(), CertRejection> {
    const FIELD: &str = "authorityKeyIdentifier";
    go_not_critical(FIELD, critical)?;
    let mut akid = go_sequence(FIELD, value)?;
    if akid.peek() == Some(ctx(0)) {
        akid.read(ctx(0))
            .ok_or_else(|| malformed(FIELD, "malformed keyIdentifier"))?;
    }
    Ok(())
}

/// extKeyUsage: a SEQUENCE of OIDs, each of which must parse.
pub(super) fn go_ext_key_usage(value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "extKeyUsage";
    let mut usages = go_sequence(FIELD, value)?;
    while !usages.is_empty() {
        usages
            .oid()
            .ok_or_else(|| malformed(FIELD, "malformed key purpose OID"))?;
    }
    Ok(())
}

/// subjectKeyIdentifier: never critical, and an OCTET STRING.
pub(super) fn go_subject_key_identifier(critical: bool, value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "subjectKeyIdentifier";
    go_not_critical(FIELD, critical)?;
    Der(value)
        .read(TAG_OCTET_STRING)
        .ok_or_else(|| malformed(FIELD, "not a DER OCTET STRING"))?;
    Ok(())
}

/// certificatePolicies: every policy's identifier must be an OID Go's `asn1` accepts.
pub(super) fn go_certificate_policies(value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "certificatePolicies";
    let mut policies = go_sequence(FIELD, value)?;
    while !policies.is_empty() {
        let ok = policies
            .read(TAG_SEQUENCE)
            .and_then(|p| Der(p).read(TAG_OID))
            .is_some_and(go_policy_oid);
        if !ok {
            return Err(malformed(FIELD, "malformed policy"));
        }
    }
    Ok(())
}

/// authorityInfoAccess: never critical; each access description an OID and, when it is a
/// URI, the URI.
pub(super) fn go_authority_info_access(critical: bool, value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "authorityInfoAccess";
    go_not_critical(FIELD, critical)?;
    let bad = || malformed(FIELD, "malformed access description");
    let mut descriptions = go_sequence(FIELD, value)?;
    while !descriptions.is_empty() {
        let mut d = descriptions.read(TAG_SEQUENCE).map(Der).ok_or_else(bad)?;
        d.oid().ok_or_else(bad)?;
        if d.peek() == Some(ctx(6)) {
            d.read(ctx(6)).ok_or_else(bad)?;
        }
    }
    Ok(())
}
