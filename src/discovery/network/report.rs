//! What the network phase hands the core: one [`FetchReport`] per federation, with the
//! data-plane probe's [`ProbeResult`] when the probe ran (docs/operating.md, "Data-plane probe").
//! The types live here, between [`crate::discovery::network::fetch`] and
//! [`crate::discovery::reconcile`], so the core never depends on the client and the client never on
//! the core.

use crate::protocol::failure::Failure;
use crate::protocol::metadata::{PrivateMetadata, PublicMetadata};

/// One request of the network phase.
#[derive(Debug, Clone)]
pub struct Attempt<T> {
    pub url: String,
    pub result: Result<T, Failure>,
    pub seconds: f64,
}

/// What the network phase learned about one federation in this run.
#[derive(Debug, Clone, Default)]
pub struct FetchReport {
    pub public: Option<Attempt<PublicMetadata>>,
    pub private: Option<Attempt<PrivateMetadata>>,
    /// Set when the private request was not made (no key pair, public failed, …).
    pub private_skipped: Option<Failure>,
    /// What the data-plane probe found this run; `None` when it did not probe this peer
    /// (`DATAPLANE_PROBE` off, or no health-check service to probe).
    pub probe: Option<ProbeResult>,
}

/// What one data-plane probe found. Messages carry no timings, so a peer that stays
/// unreachable yields the same condition every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// 200 from the peer's health-check workload.
    Healthy,
    /// The request failed or answered other than 200, in Deckhouse's words
    /// (`request failed: …`, `unexpected status code: N`).
    Failed(String),
}
