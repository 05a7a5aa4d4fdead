//! PEM handling, checks of peer root certificates and Ed25519 key (de)serialisation.
//!
//! Everything here works on text received from other clusters, so no function panics on its
//! input: every failure is a value (`Err`, or a [`CertRejection`]) with a short
//! operator-facing text.
//!
//! The parts, in the order a peer's root passes through them: [`pem`] finds the blocks,
//! [`roots`] checks each one — through [`go_view`] (the certificate as istiod's Go parser reads
//! it, built on [`der`] and [`extensions`]) and [`rules`] (what a root must be beyond parsing) —
//! and [`rejection`] says why one was refused. [`keys`] holds the protocol's Ed25519 keys.

mod der;
mod extensions;
mod go_view;
mod keys;
mod pem;
mod rejection;
mod roots;
mod rules;
#[cfg(test)]
mod tests;

pub use keys::{generate_ed25519_pem, parse_ed25519_private_pem, parse_ed25519_public_pem};
pub use pem::{pem_blocks, to_pem, PemBlock};
pub use rejection::CertRejection;
pub use roots::{
    certificate_fingerprints, check_roots, fingerprint, without_certificates, RootCert, RootCheck,
    MAX_ROOT_DER_BYTES,
};
