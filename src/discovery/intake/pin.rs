//! A peer's clusterUUID is pinned on first use (docs/how-it-works.md, "Remote discovery"): the UUID in the
//! cached public metadata. A fresh public document naming another one is refused
//! ([`crate::protocol::claims::pin_problem`]); here are what the run reports about it — the
//! gauge with both UUIDs — and the operator's re-pin, which is honoured once, recorded on the
//! IstioFederation and cleared.

use crate::discovery::diff::Operation;
use crate::discovery::network::report::{Attempt, FetchReport};
use crate::hook::k8s;
use crate::hook::timefmt;
use crate::protocol::claims;
use crate::protocol::federation::Federation;
use crate::protocol::labels::{CLUSTER_UUID_REPINNED_ANNOTATION, REPIN_CLUSTER_UUID_ANNOTATION};
use serde_json::{json, Value};

/// (pinned, actual) when the fresh public document of `fed` names another UUID than the one
/// pinned and the operator has not re-pinned to it. `report` is the network phase's, before
/// admission turns the refusal into a failure.
pub(crate) fn mismatch(fed: &Federation, report: Option<&FetchReport>) -> Option<(String, String)> {
    let Some(Attempt { result: Ok(p), .. }) = report?.public.as_ref() else {
        return None;
    };
    claims::pin_problem(fed, p)?;
    Some((
        claims::cached_uuid(fed)?.to_string(),
        p.cluster_uuid.clone(),
    ))
}

/// The gauge of one mismatch.
pub(crate) fn mismatch_metric(fed: &str, pinned: &str, actual: &str) -> Value {
    use crate::discovery::status::metrics::{set, Metric};
    set(Metric::PeerClusterUuidMismatch, 1.0, &[fed, pinned, actual])
}

/// The write that clears an honoured re-pin annotation: the admitted fresh public document of
/// this run carries the UUID it names. The re-pin is recorded in
/// [`CLUSTER_UUID_REPINNED_ANNOTATION`] (`<old> -> <new> at <time>`) when it changed the pin.
/// Written after the status patch that caches the new document, so a lost write leaves an
/// annotation the next run clears, never a pin without its document.
pub(crate) fn repin_done(
    fed: &Federation,
    admitted: Option<&FetchReport>,
    now: i64,
) -> Option<Operation> {
    let wanted = fed.repin_uuid.as_deref()?;
    let Some(Attempt { result: Ok(p), .. }) = admitted?.public.as_ref() else {
        return None;
    };
    if p.cluster_uuid != wanted {
        return None;
    }
    let path = |key: &str| format!("/metadata/annotations/{}", k8s::pointer_token(key));
    let repin = path(REPIN_CLUSTER_UUID_ANNOTATION);
    let mut patch = vec![
        json!({"op": "test", "path": repin, "value": wanted}),
        json!({"op": "remove", "path": repin}),
    ];
    let old = claims::cached_uuid(fed).unwrap_or("none");
    if old != wanted {
        log::warn!(target: "reconcile", "IstioFederation {}: re-pinned from clusterUUID {old} to {wanted} as annotation {REPIN_CLUSTER_UUID_ANNOTATION} asked", fed.name);
        let record = format!("{old} -> {wanted} at {}", timefmt::rfc3339(now));
        patch.push(
            json!({"op": "add", "path": path(CLUSTER_UUID_REPINNED_ANNOTATION), "value": record}),
        );
    }
    Some(Operation::JsonPatch {
        api_version: "deckhouse.io/v1alpha1".into(),
        kind: "IstioFederation".into(),
        namespace: String::new(),
        name: fed.name.clone(),
        patch,
    })
}
