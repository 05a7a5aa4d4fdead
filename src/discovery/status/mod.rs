//! What a run says about each federation: [`conditions`] decides every condition from the
//! effective metadata and the fetch report, [`patch`] writes them (and the caches) as the
//! status patch, and [`metrics`] exports the same facts as metrics.

pub(crate) mod conditions;
pub mod metrics;
pub(crate) mod patch;
