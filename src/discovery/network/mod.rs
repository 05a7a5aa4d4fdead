//! The network phase of a discovery run: the only part besides [`super::run`] that leaves the
//! process. [`fetch`] gets every peer's public and private metadata, [`probe`] tries the data
//! plane, and [`report`] holds what they hand to the pure core, so the core never imports the
//! client and the client never imports the core.

pub mod fetch;
pub mod probe;
pub mod report;
