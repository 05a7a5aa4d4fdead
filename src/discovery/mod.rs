//! The discovery hook: for every IstioFederation, fetch the peer's metadata, decide what it
//! means for the trust bundle and the ServiceEntries, and emit only what changes
//! (docs/ARCHITECTURE.md, "Discovery").
//!
//! Data flows one way: [`observed`] reads the snapshots, [`fetch`] is the network phase and
//! hands one [`report::FetchReport`] per federation to [`reconcile`], the pure core, which
//! calls the decisions in [`effective`], [`retention`], [`import_policy`], [`trust_bundle`] (which
//! edits the mesh config text through [`mesh_yaml`]), [`service_entries`], [`diff`] and
//! [`conditions`]. [`run`] is the imperative shell around them.

pub(crate) mod admission;
pub mod budget;
pub(crate) mod conditions;
pub mod config;
pub(crate) mod diff;
pub(crate) mod effective;
pub mod fetch;
pub(crate) mod import_policy;
pub(crate) mod istio_objects;
pub(crate) mod mesh_yaml;
pub mod metrics;
pub mod observed;
pub mod plan;
pub mod probe;
pub mod reconcile;
pub mod report;
pub(crate) mod retention;
pub mod run;
pub(crate) mod service_entries;
pub(crate) mod shares;
pub(crate) mod status;
pub mod trust_bundle;
