//! The discovery hook: for every IstioFederation, fetch the peer's metadata, decide what it
//! means for the trust bundle and the ServiceEntries, and emit only what changes
//! (docs/ARCHITECTURE.md, "Discovery").
//!
//! Data flows one way, and the folders are its stages: [`observed`] reads the snapshots,
//! [`network`] fetches and probes and hands one [`network::report::FetchReport`] per
//! federation to [`reconcile`], the pure core, which runs the stages in order: [`intake`]
//! (which metadata counts), [`trust`] (the trust bundle and root rotation), [`authz`] (what a
//! peer may reach: its AuthorizationPolicy, always ahead of its trust), [`services`]
//! (import policy, ServiceEntries), [`diff`] and [`budget`] (what is written, within the object
//! budget, and never most federations' deletes at once: [`mass_deletion`]) and [`status`] (conditions, the status patch, metrics). [`run`] is the imperative
//! shell around them; [`plan`] runs the same core offline.

pub(crate) mod authz;
pub mod budget;
pub mod config;
pub(crate) mod diff;
pub(crate) mod intake;
pub(crate) mod mass_deletion;
pub mod network;
pub mod observed;
pub mod plan;
pub mod reconcile;
pub mod run;
pub(crate) mod services;
pub(crate) mod shares;
pub(crate) mod state;
pub mod status;
pub mod trust;
