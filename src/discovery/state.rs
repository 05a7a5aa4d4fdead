//! The per-federation state a run builds up, stage by stage: what [`super::intake`] decided
//! the federation works from, the holds [`super::budget`] put on it, and what
//! [`super::trust::retention`] decided about its roots. It lives apart from every stage, and
//! imports none of them but the admission's UUID owners, so that each stage can read and fill
//! it without importing another.

use crate::discovery::intake::admission::UuidOwners;
use crate::hook::settings::PeerLimits;
use crate::protocol::certs::RootCert;
use crate::protocol::failure::Failure;
use crate::protocol::federation::{Federation, SpecProblem};
use crate::protocol::metadata::{Own, PrivateMetadata, PublicMetadata};
use serde_json::Value;
use std::collections::BTreeSet;

/// Per-federation state derived this run.
pub(crate) struct FedState<'f> {
    pub fed: &'f Federation,
    pub public: Option<PublicMetadata>,
    pub public_problem: Option<Failure>,
    pub private: Option<PrivateMetadata>,
    pub private_problem: Option<Failure>,
    /// `status.metadataCache.private` to write: the fresh document as validated, with what it
    /// carried over from the last good one; `None` without a successful fetch.
    pub private_cache: Option<Value>,
    /// Distinct hosts of `private` that `spec.import` left out (they are no longer in it).
    pub left_out_by_policy: usize,
    /// Set when the trust bundle would exceed the object budget with this federation's roots,
    /// or its public cache would make its status patch exceed it: its roots stay as installed
    /// and its public cache is not rewritten (docs/reference/conditions.md, `ObjectTooLarge`).
    pub trust_hold: Option<Failure>,
    /// Set when its roots exceed its share of the trust bundle: the newest of them are left out
    /// (docs/security.md, "Limits and shares").
    pub trust_excess: Option<TrustExcess>,
    /// Set when one of its ServiceEntries or its status patch would exceed the object budget:
    /// it works from its last-known-good private metadata, if that fits, and nothing of it is
    /// deleted.
    pub services_hold: Option<Failure>,
    /// Root rotation: retired roots still trusted, distrusted ones (filled by
    /// [`crate::discovery::trust::retention::apply`]).
    pub retention: Retention,
}

/// The roots of a federation left out of the trust bundle because they exceed its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrustExcess {
    /// The object the bundle is kept in, as messages name it (`ConfigMap d8-istio/istio`).
    pub object: String,
    /// Its share, in bytes of the object.
    pub share: usize,
    /// How many federations want roots in the bundle.
    pub federations: usize,
    /// How many of its roots are trusted.
    pub trusted: usize,
    /// The fingerprints of the roots left out, oldest first.
    pub left_out: Vec<String>,
}

/// What every federation's metadata is judged by this run.
pub(crate) struct Rules<'a> {
    pub own: &'a Own<'a>,
    pub own_domain: &'a str,
    pub limits: PeerLimits,
    pub uuid_owners: &'a UuidOwners,
}

impl FedState<'_> {
    /// Whether deletes of this federation's ServiceEntries are held back this run: its cached
    /// metadata is unusable, or its fresh private metadata had items we had to drop. A service
    /// that is now invalid may well be one we imported before, and a bad peer must not cost us
    /// it; new and changed objects are still written (docs/ARCHITECTURE.md, "Discovery").
    pub(crate) fn holds_back_deletes(&self) -> bool {
        self.refuses_trust_domain()
            || self.public_problem.is_some()
            || self.private_problem.is_some()
            || self.services_hold.is_some()
            || self.private.as_ref().is_some_and(|p| !p.dropped.is_empty())
            || self.fed.import.is_err()
    }

    /// Whether the trust entries installed for this federation stay as they are: its cached
    /// public metadata cannot be read, and odd input never removes trust.
    pub(crate) fn keeps_trust_entries(&self) -> bool {
        self.public_problem.is_some() || self.trust_hold.is_some()
    }

    /// Holds the federation's trust entries at what is installed, and its public cache at the
    /// last-known-good one.
    pub(crate) fn hold_trust(&mut self, why: Failure) {
        self.trust_hold = Some(why);
    }

    /// Whether `spec.trustDomain` cannot name a peer: nothing is fetched, imported or trusted
    /// for this federation, and its ServiceEntries stay (docs/reference/conditions.md,
    /// `InvalidSpec`).
    pub(crate) fn refuses_trust_domain(&self) -> bool {
        matches!(self.fed.spec_problem, Some(SpecProblem::TrustDomain(_)))
    }
}

impl<'f> FedState<'f> {
    /// A federation before (or without) any metadata: nothing fresh, nothing cached, no holds,
    /// no retained roots.
    pub(crate) fn without_metadata(fed: &'f Federation) -> FedState<'f> {
        FedState {
            fed,
            public: None,
            public_problem: None,
            private: None,
            private_problem: None,
            private_cache: None,
            left_out_by_policy: 0,
            trust_hold: None,
            trust_excess: None,
            services_hold: None,
            retention: Retention::default(),
        }
    }
}

/// A root the peer no longer publishes that is still trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetiredRoot {
    pub root: RootCert,
    /// The first run that saw it gone, unix seconds.
    pub retired_at: i64,
    /// When it leaves the trust bundle: `retired_at + ROOT_RETENTION`, never past notAfter.
    pub until: i64,
}

/// What rotation decided for one federation this run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Retention {
    /// Retired roots still trusted, in (retiredAt, fingerprint) order.
    pub retained: Vec<RetiredRoot>,
    /// Roots the peer publishes (acceptable otherwise) that the annotation distrusts.
    pub distrusted: Vec<RootCert>,
    /// The fingerprints the annotation names (lower-case hex).
    pub distrust: BTreeSet<String>,
    /// Entries of the annotation that are not SHA-256 fingerprints (ignored, and said so).
    pub bad_distrust_entries: usize,
    /// `status.retiredRoots` to write, `None` when it stays as stored: the retained roots.
    pub status: Option<Value>,
    /// The same when the cached public document does not advance this run (trust held, or no
    /// fresh document): the retained roots and the ended retentions of roots that document
    /// still lists, so they are not retired anew (docs/rotation.md).
    pub status_held: Option<Value>,
}

impl Retention {
    /// `status.retiredRoots` to write, `None` when it stays as stored; `cache_advances`: the
    /// cached public document is rewritten from a fresh one this run.
    pub(crate) fn status(&self, cache_advances: bool) -> Option<&Value> {
        if cache_advances {
            self.status.as_ref()
        } else {
            self.status_held.as_ref()
        }
    }
}
