//! istio-federation-hook: a shell-operator hook that federates Istio meshes across clusters,
//! wire-compatible with Deckhouse's `IstioFederation`.
//!
//! The crate is a pipeline (see `README.md`): `settings` and `binding` read the inputs,
//! `reconcile` turns observed snapshots (plus, later, fetched metadata) into the desired state,
//! and `patch`/`metrics` render what must change. Only `main.rs` touches files and the process.

pub mod binding;
pub mod certs;
pub mod config;
pub mod export;
pub mod federation;
pub mod fetch;
pub mod istio_objects;
pub mod json;
pub mod jwt;
pub mod k8s;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod patch;
pub mod reconcile;
pub mod serve;
pub mod service_entries;
pub mod settings;
pub mod status;
pub mod timefmt;
pub mod trust_bundle;
