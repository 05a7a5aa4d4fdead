//! The root rules: what a root must be beyond "Go parses it" — version 3, a serial that is not
//! zero and fits 20 octets, non-empty names, an RSA, ECDSA or Ed25519 key of an accepted size
//! or curve (an EC point checked on its curve with ring), no critical extension Go leaves
//! unhandled. Apart from the parser ([`super::go_view`]) because they are this product's policy
//! rather than Go's, judged on Go's view and x509-parser's side by side.

use super::der::{malformed, oid_text};
use super::go_view::{Curve, GoKey, GoView};
use super::rejection::CertRejection;
use ring::agreement;
use ring::rand::SystemRandom;
use x509_parser::prelude::X509Certificate;
use x509_parser::public_key::PublicKey;

/// At most this many content octets in a serial number (RFC 5280, 4.1.2.2).
pub(super) const MAX_SERIAL_BYTES: usize = 20;
/// RSA modulus sizes a root may have: 2048 is today's floor; 8192 is ring's ceiling.
pub(super) const MIN_RSA_BITS: usize = 2048;
pub(super) const MAX_RSA_BITS: usize = 8192;
/// The largest public exponent Go's crypto/rsa verifies with.
pub(super) const MAX_RSA_EXPONENT: u64 = (1 << 31) - 1;

/// Points checked so far in this process, and whether each is on its curve. Discovery checks
/// every federation's cached roots on every run, often the same ones; an ECDH computation costs
/// tens of microseconds on P-256 and several times that on P-384.
pub(super) type PointCache = std::sync::Mutex<std::collections::HashMap<(Curve, Vec<u8>), bool>>;
/// At most this many points are remembered (a few hundred kilobytes).
pub(super) const MAX_CACHED_POINTS: usize = 4096;

/// Whether ring accepts `point` as a peer's public key on `curve` — its ECDH validation decodes
/// the uncompressed point and checks that it lies on the curve.
pub(super) fn ec_point_on_curve(curve: Curve, point: &[u8]) -> Result<bool, CertRejection> {
    static CHECKED: std::sync::OnceLock<PointCache> = std::sync::OnceLock::new();
    let cache = CHECKED.get_or_init(Default::default);
    let key = (curve, point.to_vec());
    if let Some(&known) = cache.lock().ok().as_ref().and_then(|c| c.get(&key)) {
        return Ok(known);
    }
    let algorithm = match curve {
        Curve::P256 => &agreement::ECDH_P256,
        Curve::P384 => &agreement::ECDH_P384,
        // ring has no P-521; RustCrypto's p521 decodes the SEC1 point and checks the curve
        // equation (and that it is not the identity), as Go's crypto/ecdh does.
        Curve::P521 => return Ok(p521::PublicKey::from_sec1_bytes(point).is_ok()),
        Curve::P224 => {
            return Err(CertRejection::PublicKey(format!(
                "curve {} (P-256, P-384 and P-521 are accepted)",
                curve.name()
            )))
        }
    };
    let ours = agreement::EphemeralPrivateKey::generate(algorithm, &SystemRandom::new()).map_err(
        |_| CertRejection::PublicKey("cannot be checked: the system random source failed".into()),
    )?;
    let peer = agreement::UnparsedPublicKey::new(algorithm, point);
    let on_curve = agreement::agree_ephemeral(ours, &peer, |_| ()).is_ok();
    if let Ok(mut c) = cache.lock() {
        if c.len() < MAX_CACHED_POINTS {
            c.insert(key, on_curve);
        }
    }
    Ok(on_curve)
}

/// The rules for a root beyond "Go parses it": version 3; a serial number of 1 to 20 octets that
/// is not zero; non-empty issuer and subject; an RSA key of 2048 to 8192 bits with an odd
/// modulus and an odd exponent from 3 to 2^31-1 (x509-parser's key parsing), an ECDSA key on
/// P-256 or P-384 whose point ring accepts, or Ed25519; no critical extension Go leaves
/// unhandled; no negative path length. (Whether it is a CA is checked by the caller.)
pub(super) fn root_rules(go: &GoView<'_>, cert: &X509Certificate<'_>) -> Result<(), CertRejection> {
    if go.version != 3 {
        return Err(CertRejection::Version {
            version: go.version,
        });
    }
    if go.serial.iter().all(|&b| b == 0) {
        return Err(CertRejection::Serial("is zero"));
    }
    if go.serial.len() > MAX_SERIAL_BYTES {
        return Err(CertRejection::Serial("is longer than 20 bytes"));
    }
    if go.issuer_attributes == 0 {
        return Err(malformed("issuer", "empty name"));
    }
    if go.subject_attributes == 0 {
        return Err(malformed("subject", "empty name"));
    }
    match &go.key {
        GoKey::Rsa => {
            let rsa = match cert.public_key().parsed() {
                Ok(PublicKey::RSA(rsa)) => rsa,
                _ => return Err(CertRejection::PublicKey("unreadable RSA key".into())),
            };
            let modulus = rsa
                .modulus
                .iter()
                .position(|&b| b != 0)
                .map_or(&[][..], |i| &rsa.modulus[i..]);
            let bits = modulus.first().map_or(0, |&top| {
                8 * modulus.len() - usize::try_from(top.leading_zeros()).unwrap_or(0)
            });
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(CertRejection::PublicKey(format!(
                    "RSA modulus of {bits} bits ({MIN_RSA_BITS} to {MAX_RSA_BITS} accepted)"
                )));
            }
            if modulus.last().is_some_and(|b| b & 1 == 0) {
                return Err(CertRejection::PublicKey("RSA modulus is even".into()));
            }
            let exponent = rsa.try_exponent().unwrap_or(0);
            if exponent.is_multiple_of(2) || !(3..=MAX_RSA_EXPONENT).contains(&exponent) {
                return Err(CertRejection::PublicKey(
                    "RSA public exponent is not an odd number from 3 to 2^31-1".into(),
                ));
            }
        }
        GoKey::Ec { curve, point } => {
            if !ec_point_on_curve(*curve, point)? {
                return Err(CertRejection::PublicKey(format!(
                    "point is not on curve {}",
                    curve.name()
                )));
            }
        }
        GoKey::Ed25519 => {}
        GoKey::Other(oid) => {
            return Err(CertRejection::PublicKey(format!(
                "algorithm {} (RSA, ECDSA and Ed25519 are accepted)",
                oid_text(oid)
            )))
        }
    }
    if let Some(oid) = go.unhandled_critical.first() {
        return Err(CertRejection::CriticalExtension { oid: oid_text(oid) });
    }
    if let Some((_, Some(path_len))) = go.basic_constraints {
        if path_len < 0 {
            return Err(malformed("basicConstraints", "negative pathLenConstraint"));
        }
    }
    Ok(())
}
