//! The Ed25519 keys of the federation protocol: the public key peers publish, the private key
//! the export hook keeps in its Secret, and generating a pair (randomness from ring). PEM in
//! and out, PKCS#8 v1 and v2, with errors that say which part of the PEM is wrong.

use super::pem::{pem_blocks, to_pem};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use x509_parser::oid_registry::OID_SIG_ED25519;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32 key bytes.
pub(super) const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The DER of the single PEM block of a key text (label ignored). More than one block is refused
/// so that a key field can never silently mean two different keys.
pub(super) fn single_block_der(pem: &str) -> Result<Vec<u8>, String> {
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
pub(super) const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
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
