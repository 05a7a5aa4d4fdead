//! What the network phase hands the core: one [`FetchReport`] per federation. The types live
//! here, between [`super::fetch`] and [`super::reconcile`], so the core never depends on the
//! client and the client never on the core.

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
}
