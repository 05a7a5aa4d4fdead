//! Why a certificate was refused, as operators read it in conditions and logs: short, stable
//! texts with no "now" in them, so the same input gives the same status in every run and
//! status fields do not churn.

use crate::protocol::text;
use x509_parser::time::ASN1Time;

/// Longest PEM label quoted back in an error or [`CertRejection`] text, so that a hostile
/// bundle cannot blow up logs or status fields.
pub(super) const MAX_LABEL_IN_MESSAGE: usize = 64;

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
    /// The DER is larger than [`super::MAX_ROOT_DER_BYTES`].
    TooLarge {
        /// Its length in bytes.
        bytes: usize,
    },
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
    /// Not X.509 version 3. Go refuses versions above 3 and reads no extensions (so no CA)
    /// below it. `version` is the number as written in texts (the field plus one).
    Version {
        /// The version, 1-based.
        version: i64,
    },
    /// The serial number: Go refuses a negative or non-minimal one; zero and more than 20
    /// bytes are ours (RFC 5280). The text completes "serial number …".
    Serial(&'static str),
    /// The same extension twice; Go refuses the certificate.
    DuplicateExtension {
        /// Dotted OID.
        oid: String,
    },
    /// A public key Go cannot parse, or one outside what roots may use: RSA 2048–8192 bits with
    /// an odd exponent 3..2^31-1, ECDSA on P-256/P-384 with the point on the curve, Ed25519.
    PublicKey(String),
    /// A critical extension Go's parser does not handle: every chain through it fails to verify.
    CriticalExtension {
        /// Dotted OID.
        oid: String,
    },
    /// Something else Go's X.509 parser refuses (an encoding it does not read, a malformed
    /// extension), or that the root checks refuse as unusable (an empty name, a negative path
    /// length). `field` names the certificate field or extension.
    Malformed {
        /// Field or extension name, e.g. `subjectAltName`.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl std::fmt::Display for CertRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertRejection::NotCertificate { label } => {
                write!(f, "not a certificate (PEM label {})", shorten(label))
            }
            CertRejection::Unparsable(e) => write!(f, "cannot be parsed as X.509: {e}"),
            CertRejection::TooLarge { bytes } => write!(
                f,
                "{bytes} bytes of DER, more than the {} bytes a root may have",
                super::MAX_ROOT_DER_BYTES
            ),
            CertRejection::NotCa => {
                f.write_str("not a CA certificate (BasicConstraints CA:TRUE missing)")
            }
            CertRejection::Expired { not_after } => write!(f, "expired on {}", ymd(*not_after)),
            CertRejection::NotYetValid { not_before } => {
                write!(f, "not valid before {}", ymd(*not_before))
            }
            CertRejection::OwnRoot => f.write_str("is our own root certificate"),
            CertRejection::Version { version } => {
                write!(f, "X.509 version {version}: a root must be version 3")
            }
            CertRejection::Serial(detail) => write!(f, "serial number {detail}"),
            CertRejection::DuplicateExtension { oid } => {
                write!(f, "extension {oid} appears more than once")
            }
            CertRejection::PublicKey(detail) => write!(f, "public key: {detail}"),
            CertRejection::CriticalExtension { oid } => write!(
                f,
                "critical extension {oid} is not one Go's X.509 verifier handles"
            ),
            CertRejection::Malformed { field, detail } => write!(f, "{field}: {detail}"),
        }
    }
}

impl std::error::Error for CertRejection {}

/// Caps an input-controlled string (a PEM label) quoted in a message.
pub(super) fn shorten(s: &str) -> String {
    text::shorten(s, text::Limit::chars(MAX_LABEL_IN_MESSAGE, "…"))
}

/// Formats unix seconds as YYYY-MM-DD (UTC); out-of-range values fall back to `@<seconds>`.
pub(super) fn ymd(unix: i64) -> String {
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
