//! Which IstioFederation a peer's cluster UUID belongs to. Discovery (whether a peer's public
//! metadata is accepted) and export (which key may read our private metadata as that UUID)
//! decide it with the one function here, so the two can never disagree (docs/security.md).
//!
//! A UUID cached by a federation stays with it whatever the names: a newly added federation
//! that publishes the same UUID cannot take it over. Only when several federations claim a
//! UUID that none of them has cached yet does the first by name win.

use crate::protocol::failure::{Failure, Reason};
use crate::protocol::federation::Federation;
use crate::protocol::labels::REPIN_CLUSTER_UUID_ANNOTATION;
use crate::protocol::metadata;
use crate::protocol::metadata::PublicMetadata;
use serde_json::Value;
use std::collections::BTreeMap;

/// The UUID in a federation's `status.metadataCache.public`, when it is one at all.
pub(crate) fn cached_uuid(fed: &Federation) -> Option<&str> {
    fed.cached_public
        .as_ref()?
        .get("clusterUUID")
        .and_then(Value::as_str)
        .filter(|u| metadata::is_sane_uuid(u))
}

/// Why a fresh public document is refused as a whole: it names another `clusterUUID` than the
/// one pinned in the cached public metadata, and the operator has not re-pinned the federation
/// to it (docs/how-it-works.md, "Remote discovery"). A peer reinstalled, restored from another cluster's
/// backup, or an impostor at the same endpoint cannot take over the federation's trust and
/// imports this way.
pub(crate) fn pin_problem(fed: &Federation, p: &PublicMetadata) -> Option<Failure> {
    let pinned = cached_uuid(fed)?;
    if pinned == p.cluster_uuid || fed.repin_uuid.as_deref() == Some(p.cluster_uuid.as_str()) {
        return None;
    }
    let repin = match fed.repin_uuid.as_deref() {
        Some(other) => {
            format!(" (annotation {REPIN_CLUSTER_UUID_ANNOTATION} names {other:?}, not this UUID)")
        }
        None => String::new(),
    };
    Some(Failure::new(
        Reason::ClusterUuidMismatch,
        format!(
            "the peer now publishes clusterUUID {:?}, but this federation is pinned to {pinned:?}{repin}: the document is refused, no request is signed for the new UUID, and everything imported stays as it was. If the peer was reinstalled or restored, re-pin with annotation {REPIN_CLUSTER_UUID_ANNOTATION}={}",
            p.cluster_uuid, p.cluster_uuid
        ),
    ))
}

/// What one federation claims this run: the UUID in its `status.metadataCache.public`, and the
/// one its fresh public metadata carries (discovery only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UuidClaim<'a> {
    pub federation: &'a str,
    pub cached: Option<&'a str>,
    pub fresh: Option<&'a str>,
}

/// UUID → the federation it belongs to. Independent of the order of `claims`.
pub(crate) fn uuid_owners<'a>(claims: &[UuidClaim<'a>]) -> BTreeMap<&'a str, &'a str> {
    let mut by_name: Vec<&UuidClaim<'a>> = claims.iter().collect();
    by_name.sort_by(|a, b| {
        a.federation
            .cmp(b.federation)
            .then_with(|| a.cached.cmp(&b.cached))
            .then_with(|| a.fresh.cmp(&b.fresh))
    });
    let mut owners = BTreeMap::new();
    for c in &by_name {
        if let Some(u) = c.cached {
            owners.entry(u).or_insert(c.federation);
        }
    }
    for c in &by_name {
        if let Some(u) = c.fresh {
            owners.entry(u).or_insert(c.federation);
        }
    }
    owners
}

/// The federation other than `federation` that `uuid` belongs to, if any.
pub(crate) fn held_by_other<'a>(
    owners: &BTreeMap<&str, &'a str>,
    federation: &str,
    uuid: &str,
) -> Option<&'a str> {
    owners.get(uuid).copied().filter(|o| *o != federation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(f: &'a str, cached: Option<&'a str>, fresh: Option<&'a str>) -> UuidClaim<'a> {
        UuidClaim {
            federation: f,
            cached,
            fresh,
        }
    }

    #[test]
    fn a_cached_uuid_stays_whatever_the_names() {
        // "a-thief" sorts first, but "z-real" has the UUID cached.
        let claims = [
            claim("z-real", Some("u1"), Some("u1")),
            claim("a-thief", None, Some("u1")),
        ];
        let owners = uuid_owners(&claims);
        assert_eq!(owners["u1"], "z-real");
        assert_eq!(held_by_other(&owners, "a-thief", "u1"), Some("z-real"));
        assert_eq!(held_by_other(&owners, "z-real", "u1"), None);
        // Order of the input does not matter.
        let mut reversed = claims;
        reversed.reverse();
        assert_eq!(uuid_owners(&reversed), owners);
    }

    #[test]
    fn without_a_cache_the_first_by_name_wins() {
        let owners = uuid_owners(&[claim("b", None, Some("u")), claim("a", None, Some("u"))]);
        assert_eq!(owners["u"], "a");
        // Two caches of one UUID (written before this rule): the first by name keeps it.
        let owners = uuid_owners(&[claim("d", Some("u"), None), claim("c", Some("u"), None)]);
        assert_eq!(owners["u"], "c");
        // A federation's own change of UUID frees the old one only once its cache moves.
        let owners = uuid_owners(&[
            claim("a", Some("old"), Some("new")),
            claim("b", None, Some("old")),
        ]);
        assert_eq!((owners["old"], owners["new"]), ("a", "a"));
    }
}
