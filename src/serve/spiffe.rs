//! The SPIFFE trust bundle of our root CAs: a JWK set, as the SPIFFE Trust Domain and Bundle
//! specification defines it.
//!
//! Deckhouse's exporter builds it from the first certificate of `rootCA` with a constant
//! sequence and a 28-day refresh hint; we serve every root of `rootCA` (so a consumer trusts
//! both roots while we rotate), with the sequence and hint export keeps in the metadata Secret
//! (docs/rotation.md). Deckhouse supports only RSA
//! keys, and hard-codes the exponent to `AQAB`. We build the same document for RSA roots but
//! with the certificate's real exponent, and also for EC roots (P-256/P-384/P-521, RFC 7518
//! §6.2) which Deckhouse answers with 500 — Istio's own CA defaults to RSA, but plugged-in CAs
//! are often EC. Layout and indentation follow Deckhouse (2-space `MarshalIndent`).

use crate::protocol::certs;
use crate::protocol::secret::DEFAULT_SPIFFE_REFRESH_HINT;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521};
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::public_key::PublicKey;

/// What the SPIFFE bundle says besides its keys, from the metadata Secret's
/// `spiffe-sequence` and `spiffe-refresh-hint` (written by export, docs/rotation.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleInfo {
    pub sequence: u64,
    pub refresh_hint: u64,
}

impl Default for BundleInfo {
    /// What the absence of both keys means: nothing rotated yet, the default retention.
    fn default() -> Self {
        BundleInfo {
            sequence: 1,
            refresh_hint: DEFAULT_SPIFFE_REFRESH_HINT,
        }
    }
}

/// The SPIFFE bundle JSON for every certificate of the PEM text `root_ca` — the current roots
/// and those retained while we rotate, each a JWK, in `rootCA` order. A certificate whose key
/// cannot be a JWK is left out with a log line; errors name what is wrong (no certificate, or
/// none usable: then the first certificate's problem).
pub fn bundle_from_pem(root_ca: &str, info: BundleInfo) -> Result<Vec<u8>, String> {
    let blocks = certs::pem_blocks(root_ca)?;
    let mut keys = Vec::new();
    let mut first_error = None;
    for (i, block) in blocks
        .iter()
        .filter(|b| b.label == "CERTIFICATE")
        .enumerate()
    {
        match jwk(&block.der, i == 0) {
            Ok(key) => keys.push(key),
            Err(e) => {
                if i > 0 {
                    log::warn!(target: "serve", "SPIFFE bundle: rootCA certificate {} left out: {e}", i + 1);
                }
                first_error.get_or_insert(e);
            }
        }
    }
    if keys.is_empty() {
        return Err(first_error.unwrap_or_else(|| "no CERTIFICATE PEM block".to_string()));
    }
    let bundle = json!({
        "spiffe_sequence": info.sequence,
        "spiffe_refresh_hint": info.refresh_hint,
        "keys": keys,
    });
    serde_json::to_vec_pretty(&bundle).map_err(|e| e.to_string())
}

/// One certificate as a JWK (`use: x509-svid`, the certificate in `x5c`).
fn jwk(der: &[u8], first: bool) -> Result<serde_json::Value, String> {
    let cert = match X509Certificate::from_der(der) {
        Ok((_, cert)) => cert,
        Err(e) if first => return Err(format!("first certificate does not parse: {e}")),
        Err(e) => return Err(format!("certificate does not parse: {e}")),
    };
    let spki = cert.public_key();
    let x5c = [STANDARD.encode(der)];
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let n = strip_leading_zeros(rsa.modulus);
            let e = strip_leading_zeros(rsa.exponent);
            if n.is_empty() || e.is_empty() {
                return Err("RSA key with a zero modulus or exponent".to_string());
            }
            Ok(json!({
                "kty": "RSA",
                "use": "x509-svid",
                "n": URL_SAFE_NO_PAD.encode(n),
                "e": URL_SAFE_NO_PAD.encode(e),
                "x5c": x5c,
            }))
        }
        Ok(PublicKey::EC(point)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            let (crv, size) = match curve {
                Some(oid) if oid == OID_EC_P256 => ("P-256", 32),
                Some(oid) if oid == OID_NIST_EC_P384 => ("P-384", 48),
                Some(oid) if oid == OID_NIST_EC_P521 => ("P-521", 66),
                Some(oid) => return Err(format!("unsupported EC curve {}", oid.to_id_string())),
                None => return Err("EC key without a named curve".to_string()),
            };
            // Uncompressed SEC1 point: 0x04 || X || Y, each coordinate `size` bytes.
            let (x, y) = match point.data() {
                [4, xy @ ..] if xy.len() == 2 * size => xy.split_at(size),
                _ => return Err(format!("{crv} key is not an uncompressed point")),
            };
            Ok(json!({
                "kty": "EC",
                "use": "x509-svid",
                "crv": crv,
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
                "x5c": x5c,
            }))
        }
        Ok(_) => Err(format!(
            "unsupported key algorithm {} (RSA or EC needed)",
            spki.algorithm.algorithm.to_id_string()
        )),
        Err(e) => Err(format!("public key does not parse: {e}")),
    }
}

/// DER INTEGERs carry a leading zero when the top bit is set; JWK wants the bare magnitude.
fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};

    fn ec_root(alg: &'static rcgen::SignatureAlgorithm) -> (String, Vec<u8>, Vec<u8>) {
        let key = KeyPair::generate_for(alg).unwrap();
        let cert = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (
            cert.pem(),
            key.public_key_raw().to_vec(),
            cert.der().to_vec(),
        )
    }

    #[test]
    fn ec_keys() {
        for (alg, crv, size) in [
            (&PKCS_ECDSA_P256_SHA256, "P-256", 32),
            (&PKCS_ECDSA_P384_SHA384, "P-384", 48),
        ] {
            let (pem, raw, der) = ec_root(alg);
            let (other, other_raw, other_der) = ec_root(alg);
            let info = BundleInfo {
                sequence: 7,
                refresh_hint: 900,
            };
            let json: serde_json::Value =
                serde_json::from_slice(&bundle_from_pem(&format!("{pem}{other}"), info).unwrap())
                    .unwrap();
            assert_eq!(json["spiffe_sequence"], 7);
            assert_eq!(json["spiffe_refresh_hint"], 900);
            // Every root, in rootCA order.
            assert_eq!(json["keys"].as_array().unwrap().len(), 2);
            for (key, raw, der) in [
                (&json["keys"][0], raw, der),
                (&json["keys"][1], other_raw, other_der),
            ] {
                assert_eq!(key["kty"], "EC");
                assert_eq!(key["use"], "x509-svid");
                assert_eq!(key["crv"], crv);
                assert_eq!(key["x"], URL_SAFE_NO_PAD.encode(&raw[1..1 + size]));
                assert_eq!(key["y"], URL_SAFE_NO_PAD.encode(&raw[1 + size..]));
                assert_eq!(key["x5c"], json!([STANDARD.encode(der)]));
            }
        }
    }

    #[test]
    fn absent_keys_mean_sequence_one_and_the_default_hint() {
        let (pem, _, _) = ec_root(&PKCS_ECDSA_P256_SHA256);
        let json: serde_json::Value =
            serde_json::from_slice(&bundle_from_pem(&pem, BundleInfo::default()).unwrap()).unwrap();
        assert_eq!(json["spiffe_sequence"], 1);
        assert_eq!(json["spiffe_refresh_hint"], 43_200);
    }

    #[test]
    fn unsupported_and_broken() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let d = BundleInfo::default();
        let err = bundle_from_pem(&cert.pem(), d).unwrap_err();
        assert!(
            err.contains("unsupported key algorithm 1.3.101.112"),
            "{err}"
        );
        // An unusable root next to a usable one is left out; the usable one is served.
        let (ec, _, _) = ec_root(&PKCS_ECDSA_P256_SHA256);
        let json: serde_json::Value =
            serde_json::from_slice(&bundle_from_pem(&format!("{}{ec}", cert.pem()), d).unwrap())
                .unwrap();
        assert_eq!(json["keys"].as_array().unwrap().len(), 1);
        assert_eq!(json["keys"][0]["kty"], "EC");
        assert!(bundle_from_pem("", d)
            .unwrap_err()
            .contains("no CERTIFICATE"));
        assert!(bundle_from_pem(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            d
        )
        .unwrap_err()
        .contains("does not parse"));
        assert!(bundle_from_pem("-----BEGIN CERTIFICATE-----\n!!\n", d).is_err());
    }

    #[test]
    fn zeros() {
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 0]), &[1, 0]);
        assert_eq!(strip_leading_zeros(&[0]), &[] as &[u8]);
        assert_eq!(strip_leading_zeros(&[]), &[] as &[u8]);
    }
}
