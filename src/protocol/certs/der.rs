//! DER as Go reads it: a reader with the rules of Go's `cryptobyte` (low tag numbers, minimal
//! definite lengths) and the primitive types of `encoding/asn1` (minimal INTEGERs, OID arcs
//! below 2^31, DER BOOLEANs, BIT STRINGs with zero padding, the string types, names, times).
//! Apart from the certificate's structure so each rule can be read, and tested, on its own.

use super::rejection::{shorten, CertRejection};

pub(super) const TAG_BOOLEAN: u8 = 0x01;
pub(super) const TAG_INTEGER: u8 = 0x02;
pub(super) const TAG_BIT_STRING: u8 = 0x03;
pub(super) const TAG_OCTET_STRING: u8 = 0x04;
pub(super) const TAG_OID: u8 = 0x06;
pub(super) const TAG_UTF8_STRING: u8 = 0x0c;
pub(super) const TAG_NUMERIC_STRING: u8 = 0x12;
pub(super) const TAG_PRINTABLE_STRING: u8 = 0x13;
pub(super) const TAG_T61_STRING: u8 = 0x14;
pub(super) const TAG_IA5_STRING: u8 = 0x16;
pub(super) const TAG_UTC_TIME: u8 = 0x17;
pub(super) const TAG_GENERALIZED_TIME: u8 = 0x18;
pub(super) const TAG_BMP_STRING: u8 = 0x1e;
pub(super) const TAG_SEQUENCE: u8 = 0x30;
pub(super) const TAG_SET: u8 = 0x31;
/// Context-specific tags: `[n]` primitive is `0x80 | n`, constructed `0xa0 | n`.
pub(super) const fn ctx(n: u8) -> u8 {
    0x80 | n
}
pub(super) const fn ctx_constructed(n: u8) -> u8 {
    0xa0 | n
}

pub(super) fn malformed(field: &'static str, detail: impl Into<String>) -> CertRejection {
    CertRejection::Malformed {
        field,
        detail: detail.into(),
    }
}

/// Envoy's BoringSSL parses every field of a certificate with a template that allows nothing
/// after the last element it defines; Go's parser skips such trailing elements. A root Go
/// accepts but BoringSSL refuses makes Envoy reject the whole validation context (every
/// peer's mutual TLS), so a field with anything left in it is refused here.
pub(super) fn envoy_complete(
    rest: &Der<'_>,
    field: &'static str,
    what: &str,
) -> Result<(), CertRejection> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(malformed(
            field,
            format!(
                "an element after {what} (BoringSSL, which Envoy loads roots with, refuses it)"
            ),
        ))
    }
}

/// An AlgorithmIdentifier (its content octets) holds its OID and at most one parameters
/// element.
pub(super) fn envoy_algorithm(algorithm: &[u8], field: &'static str) -> Result<(), CertRejection> {
    let mut d = Der(algorithm);
    let _ = d.oid();
    if !d.is_empty() {
        let _ = d.any();
    }
    envoy_complete(&d, field, "the parameters of the algorithm identifier")
}

/// One DER element: tag, content octets, and the whole encoding.
pub(super) struct Element<'a> {
    pub(super) tag: u8,
    pub(super) body: &'a [u8],
    pub(super) whole: &'a [u8],
}

/// A reader over DER with the rules of Go's `cryptobyte`: low-tag-number identifiers only,
/// definite lengths in the fewest octets (at most four). Every read returns `None` on input
/// that does not follow them, and then leaves the reader where it was.
#[derive(Clone, Copy)]
pub(super) struct Der<'a>(pub(super) &'a [u8]);

impl<'a> Der<'a> {
    pub(super) fn is_empty(self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn peek(self) -> Option<u8> {
        self.0.first().copied()
    }

    pub(super) fn any(&mut self) -> Option<Element<'a>> {
        let input = self.0;
        let (&tag, rest) = input.split_first()?;
        let (&len_byte, rest) = rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (len, header) = if len_byte & 0x80 == 0 {
            (usize::from(len_byte), 2)
        } else {
            let n = usize::from(len_byte & 0x7f);
            let octets = rest.get(..n).filter(|o| (1..=4).contains(&o.len()))?;
            if octets[0] == 0 {
                return None;
            }
            let len = octets
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return None;
            }
            (len, 2 + n)
        };
        let total = header.checked_add(len)?;
        let whole = input.get(..total)?;
        self.0 = &input[total..];
        Some(Element {
            tag,
            body: &whole[header..],
            whole,
        })
    }

    pub(super) fn element(&mut self, tag: u8) -> Option<Element<'a>> {
        let mut next = *self;
        let e = next.any()?;
        if e.tag != tag {
            return None;
        }
        *self = next;
        Some(e)
    }

    pub(super) fn read(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.element(tag).map(|e| e.body)
    }

    /// `Some(None)` when the next element does not carry `tag`; `None` when it does but is
    /// malformed.
    pub(super) fn optional(&mut self, tag: u8) -> Option<Option<&'a [u8]>> {
        if self.peek() == Some(tag) {
            self.read(tag).map(Some)
        } else {
            Some(None)
        }
    }

    /// An INTEGER that fits 64 bits (Go reads versions, exponents and path lengths into `int`).
    pub(super) fn small_int(&mut self) -> Option<i64> {
        let mut next = *self;
        let body = next.read(TAG_INTEGER)?;
        if !minimal_integer(body) || body.len() > 8 {
            return None;
        }
        let first = if body[0] & 0x80 != 0 { -1i64 } else { 0 };
        let value = body.iter().fold(first, |acc, &b| (acc << 8) | i64::from(b));
        *self = next;
        Some(value)
    }

    /// An OBJECT IDENTIFIER as Go's `ReadASN1ObjectIdentifier` reads it.
    pub(super) fn oid(&mut self) -> Option<Vec<u32>> {
        let mut next = *self;
        let oid = go_oid(next.read(TAG_OID)?)?;
        *self = next;
        Some(oid)
    }
}

/// Go's `checkASN1Integer`: at least one octet, no redundant leading 0x00 or 0xff.
pub(super) fn minimal_integer(body: &[u8]) -> bool {
    match body {
        [] => false,
        [0, second, ..] => second & 0x80 != 0,
        [0xff, second, ..] => second & 0x80 == 0,
        _ => true,
    }
}

/// Go's OID reading: base-128 arcs in the fewest octets, each below 2^31; the first octet group
/// holds the first two arcs.
pub(super) fn go_oid(body: &[u8]) -> Option<Vec<u32>> {
    fn arc(bytes: &mut &[u8]) -> Option<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let (&b, rest) = bytes.split_first()?;
            if value >= 1 << (31 - 7) || (i == 0 && b == 0x80) {
                return None;
            }
            *bytes = rest;
            value = (value << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut bytes = body;
    let first = arc(&mut bytes)?;
    let mut oid = if first < 80 {
        vec![first / 40, first % 40]
    } else {
        vec![2, first - 80]
    };
    while !bytes.is_empty() {
        oid.push(arc(&mut bytes)?);
    }
    Some(oid)
}

/// Go's `newOIDFromDER` (certificate policies): base-128 arcs in the fewest octets, any size.
pub(super) fn go_policy_oid(body: &[u8]) -> bool {
    let Some(last) = body.last() else {
        return false;
    };
    if last & 0x80 != 0 {
        return false;
    }
    let mut start = true;
    for &b in body {
        if start && b == 0x80 {
            return false;
        }
        start = b & 0x80 == 0;
    }
    true
}

/// A dotted OID for a message, capped like other input-controlled text.
pub(super) fn oid_text(oid: &[u32]) -> String {
    let text = oid.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
    shorten(&text)
}

/// Go's `ReadASN1Boolean`: one octet, 0x00 or 0xff.
pub(super) fn go_bool(body: &[u8]) -> Option<bool> {
    match body {
        [0x00] => Some(false),
        [0xff] => Some(true),
        _ => None,
    }
}

/// Go's `ReadASN1BitString`: a padding count of at most 7, whose bits are zero. Returns the
/// padding and the bytes.
pub(super) fn go_bit_string(body: &[u8]) -> Option<(u8, &[u8])> {
    let (&padding, bytes) = body.split_first()?;
    let ok = match bytes.last() {
        _ if padding > 7 => false,
        None => padding == 0,
        Some(last) => last & ((1u8 << padding) - 1) == 0,
    };
    ok.then_some((padding, bytes))
}

pub(super) fn is_ascii(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| b.is_ascii())
}

/// Go's PrintableString set, with the `*` and `&` it tolerates.
pub(super) fn go_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?*&".contains(&b)
}

/// An attribute value of a Name: the string types Go reads, each with Go's content rule.
pub(super) fn go_string(tag: u8, body: &[u8]) -> Result<(), String> {
    let ok = match tag {
        TAG_T61_STRING => true,
        TAG_PRINTABLE_STRING => body.iter().all(|&b| go_printable(b)),
        TAG_UTF8_STRING => std::str::from_utf8(body).is_ok(),
        TAG_BMP_STRING => body.len().is_multiple_of(2),
        TAG_IA5_STRING => is_ascii(body),
        TAG_NUMERIC_STRING => body.iter().all(|&b| b.is_ascii_digit() || b == b' '),
        other => return Err(format!("string type with tag {other} is not one Go reads")),
    };
    if ok {
        Ok(())
    } else {
        let kind = match tag {
            TAG_PRINTABLE_STRING => "PrintableString with characters outside its set",
            TAG_UTF8_STRING => "UTF8String that is not UTF-8",
            TAG_BMP_STRING => "BMPString of odd length",
            TAG_IA5_STRING => "IA5String that is not ASCII",
            _ => "NumericString with characters other than digits and spaces",
        };
        Err(kind.to_string())
    }
}

/// Counts the attributes of a Name (`whole` is its complete SEQUENCE), checking each as Go does.
pub(super) fn go_name(whole: &[u8], field: &'static str) -> Result<usize, CertRejection> {
    let body = Der(whole)
        .read(TAG_SEQUENCE)
        .ok_or_else(|| malformed(field, "not a DER SEQUENCE"))?;
    let mut rdns = Der(body);
    let mut count = 0;
    while !rdns.is_empty() {
        let set = rdns
            .read(TAG_SET)
            .ok_or_else(|| malformed(field, "malformed relative distinguished name"))?;
        let mut set = Der(set);
        while !set.is_empty() {
            let mut attribute = set
                .read(TAG_SEQUENCE)
                .map(Der)
                .ok_or_else(|| malformed(field, "malformed attribute"))?;
            let oid = attribute
                .oid()
                .ok_or_else(|| malformed(field, "malformed attribute type"))?;
            let value = attribute
                .any()
                .ok_or_else(|| malformed(field, "malformed attribute value"))?;
            go_string(value.tag, value.body)
                .map_err(|why| malformed(field, format!("attribute {}: {why}", oid_text(&oid))))?;
            envoy_complete(&attribute, field, "the value of an attribute")?;
            count += 1;
        }
    }
    Ok(count)
}

/// A validity time in the forms RFC 5280 prescribes — UTCTime `YYMMDDHHMMSSZ`, GeneralizedTime
/// `YYYYMMDDHHMMSSZ` — with a real date and time. Go also reads a UTCTime without seconds and
/// with an offset; those are refused here.
pub(super) fn go_time(validity: &mut Der<'_>, field: &'static str) -> Result<(), CertRejection> {
    let (body, year_digits) = match validity.peek() {
        Some(TAG_UTC_TIME) => (validity.read(TAG_UTC_TIME), 2),
        Some(TAG_GENERALIZED_TIME) => (validity.read(TAG_GENERALIZED_TIME), 4),
        _ => return Err(malformed(field, "neither UTCTime nor GeneralizedTime")),
    };
    let form = if year_digits == 2 {
        "UTCTime YYMMDDHHMMSSZ"
    } else {
        "GeneralizedTime YYYYMMDDHHMMSSZ"
    };
    let bad = || malformed(field, format!("not a {form} with a valid date and time"));
    let body = body.ok_or_else(bad)?;
    let digits = body
        .strip_suffix(b"Z")
        .filter(|d| d.len() == year_digits + 10 && d.iter().all(u8::is_ascii_digit))
        .ok_or_else(bad)?;
    let number = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'))
    };
    let year = match year_digits {
        2 if number(0..2) >= 50 => 1900 + number(0..2),
        2 => 2000 + number(0..2),
        _ => number(0..4),
    };
    let rest = |i: usize| number(year_digits + 2 * i..year_digits + 2 * i + 2);
    let month = u8::try_from(rest(0))
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = u8::try_from(rest(1)).map_err(|_| bad())?;
    time::Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    if rest(2) > 23 || rest(3) > 59 || rest(4) > 59 {
        return Err(bad());
    }
    Ok(())
}
