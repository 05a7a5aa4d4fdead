//! The shell-operator hook contract, nothing Istio-specific: reading the binding context and
//! the settings, writing object operations and metrics as NDJSON, logging to stderr, and the
//! I/O edge every hook run shares (docs/how-it-works.md, "The hook contract").

pub mod binding;
pub(crate) mod io;
pub(crate) mod k8s;
pub mod logging;
pub mod metrics;
pub mod operations;
pub mod settings;
pub(crate) mod timefmt;
