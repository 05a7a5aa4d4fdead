//! Deckhouse's federation wire contract, shared by all three programs: the metadata documents
//! and their validation, request tokens, certificates and keys, the IstioFederation object, and
//! the names of the Secrets both sides agree on (docs/compatibility.md).

pub mod certs;
pub(crate) mod claims;
pub(crate) mod exports;
pub mod failure;
pub mod federation;
pub(crate) mod json;
pub mod jwt;
pub mod labels;
pub mod metadata;
pub mod names;
pub mod secret;
pub(crate) mod text;
pub(crate) mod visibility;
