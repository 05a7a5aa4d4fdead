//! Which of each peer's metadata a run works from: [`admission`] admits a fresh document as a
//! whole (per-peer limits, one owner per cluster UUID), [`effective`] picks the fresh document
//! or the last-known-good copy in `status.metadataCache`, judged by the same rules, and
//! [`pin`] reports a peer whose clusterUUID is not the pinned one and honours a re-pin.

pub(crate) mod admission;
pub(crate) mod effective;
pub(crate) mod pin;
