//! The trust bundle: which peer roots are trusted for which trust domain. [`trust_bundle`]
//! decides the entries, [`retention`] keeps a rotated-out root for a while and applies the
//! distrust annotation, and [`mesh_yaml`] edits the MeshConfig text without re-serialising it.

pub(crate) mod mesh_yaml;
pub(crate) mod retention;
pub mod trust_bundle;
