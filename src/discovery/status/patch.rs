//! Conditions on IstioFederation status (docs/reference/conditions.md), Kubernetes style.
//!
//! `lastTransitionTime` is kept while status, reason and message stay the same, and messages
//! never carry run-to-run detail, so a peer that stays down does not rewrite status every
//! minute. Condition types this hook does not manage are kept, after ours; Deckhouse's
//! `DataplaneConnectionReady` is ours only while `DATAPLANE_PROBE` is on (docs/operating.md,
//! "Data-plane probe").

use crate::discovery::diff::Operation;
use crate::discovery::network::report::{Attempt, FetchReport};
use crate::discovery::state::FedState;
use crate::hook::timefmt;
use crate::protocol::failure::Reason;
use crate::protocol::federation;
use serde_json::{json, Map, Value};

/// A successful fetch rewrites unchanged metadata only when the stored timestamp is older.
const TIMESTAMP_REFRESH: i64 = 10 * 60;

enum_with_all! {
/// The condition types this hook writes, in the order they are written. Other types on the
/// object are read and kept as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConditionType {
    PublicMetadataExchangeReady,
    PrivateMetadataExchangeReady,
    TrustBundleReady,
    ServicesImported,
    /// The data-plane probe's verdict (Deckhouse's type); managed only with `DATAPLANE_PROBE`.
    DataplaneConnectionReady,
    /// What the peer's workloads may reach (docs/security.md, "Exported means reachable");
    /// managed while the run carries the AuthorizationPolicy snapshot.
    ExportBoundaryReady,
    /// A warning about the peer's trust domain: `cluster.local`, accepted by annotation
    /// (docs/security.md, "A peer on cluster.local"). Present only while it applies.
    TrustDomainWarning,
    /// The mesh config's `serviceEntryVisibility` hides the ServiceEntries the hook writes
    /// (docs/compatibility.md, "Ambient mode"). Present only while it applies.
    ServiceEntriesHidden,
}
}

impl ConditionType {
    /// Types managed whatever the settings, in the order they are written.
    pub(crate) const MANAGED: [ConditionType; 4] = [
        ConditionType::PublicMetadataExchangeReady,
        ConditionType::PrivateMetadataExchangeReady,
        ConditionType::TrustBundleReady,
        ConditionType::ServicesImported,
    ];

    /// [`Self::MANAGED`] and, last, `DataplaneConnectionReady`.
    const WITH_PROBE: [ConditionType; 5] = [
        ConditionType::PublicMetadataExchangeReady,
        ConditionType::PrivateMetadataExchangeReady,
        ConditionType::TrustBundleReady,
        ConditionType::ServicesImported,
        ConditionType::DataplaneConnectionReady,
    ];

    /// The managed types of a run: with the data-plane probe off, `DataplaneConnectionReady`
    /// is someone else's (a Deckhouse controller's, say) and is kept as it is.
    pub(crate) fn managed(dataplane_probe: bool) -> &'static [ConditionType] {
        if dataplane_probe {
            &ConditionType::WITH_PROBE
        } else {
            &ConditionType::MANAGED
        }
    }

    /// [`Self::managed`], then `ExportBoundaryReady` while the boundary is managed, then the
    /// warnings, which are written only while they apply ([`Self::only_while_it_applies`]).
    pub(crate) fn managed_with(dataplane_probe: bool, boundary: bool) -> Vec<ConditionType> {
        let mut out = Self::managed(dataplane_probe).to_vec();
        if boundary {
            out.push(ConditionType::ExportBoundaryReady);
        }
        out.extend([
            ConditionType::TrustDomainWarning,
            ConditionType::ServiceEntriesHidden,
        ]);
        out
    }

    /// A warning: removed from the status as soon as a run no longer computes it.
    fn only_while_it_applies(self) -> bool {
        matches!(
            self,
            ConditionType::TrustDomainWarning | ConditionType::ServiceEntriesHidden
        )
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConditionType::PublicMetadataExchangeReady => "PublicMetadataExchangeReady",
            ConditionType::PrivateMetadataExchangeReady => "PrivateMetadataExchangeReady",
            ConditionType::TrustBundleReady => "TrustBundleReady",
            ConditionType::ServicesImported => "ServicesImported",
            ConditionType::DataplaneConnectionReady => "DataplaneConnectionReady",
            ConditionType::ExportBoundaryReady => "ExportBoundaryReady",
            ConditionType::TrustDomainWarning => "TrustDomainWarning",
            ConditionType::ServiceEntriesHidden => "ServiceEntriesHidden",
        }
    }

    /// The type a prior condition's `type` names among `managed`, `None` for a foreign one.
    pub(crate) fn from_wire(s: &str, managed: &[ConditionType]) -> Option<ConditionType> {
        managed.iter().copied().find(|t| t.as_str() == s)
    }
}

/// A Kubernetes condition status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    pub kind: ConditionType,
    pub status: ConditionStatus,
    pub reason: Reason,
    pub message: String,
}

impl Condition {
    pub(crate) fn new(
        kind: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: impl Into<String>,
    ) -> Condition {
        Condition {
            kind,
            status,
            reason,
            message: message.into(),
        }
    }
}

fn find<'a>(prior: &'a [Value], kind: &str) -> Option<&'a Value> {
    prior
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// The new condition list: `managed` types in fixed order (computed now, or kept verbatim from
/// `prior` when this run did not compute them), then every other prior condition in order.
pub(crate) fn merge(
    prior: &[Value],
    computed: &[Condition],
    managed: &[ConditionType],
    now: i64,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(prior.len() + computed.len());
    for &kind in managed {
        let old = find(prior, kind.as_str());
        match computed.iter().find(|c| c.kind == kind) {
            Some(c) => {
                let unchanged = old.is_some_and(|o| {
                    o.get("status").and_then(Value::as_str) == Some(c.status.as_str())
                        && o.get("reason").and_then(Value::as_str) == Some(c.reason.as_str())
                        && o.get("message").and_then(Value::as_str) == Some(c.message.as_str())
                });
                let since = match old
                    .and_then(|o| o.get("lastTransitionTime"))
                    .and_then(Value::as_str)
                {
                    Some(t) if unchanged => t.to_string(),
                    _ => timefmt::rfc3339(now),
                };
                out.push(json!({
                    "type": c.kind.as_str(),
                    "status": c.status.as_str(),
                    "reason": c.reason.as_str(),
                    "message": c.message,
                    "lastTransitionTime": since,
                }));
            }
            None if kind.only_while_it_applies() => {}
            None => {
                if let Some(o) = old {
                    out.push(o.clone());
                }
            }
        }
    }
    for c in prior {
        let kind = c.get("type").and_then(Value::as_str).unwrap_or("");
        if ConditionType::from_wire(kind, managed).is_none() {
            out.push(c.clone());
        }
    }
    out
}

/// The status merge patch, or `None` when nothing would change. `managed` as for [`merge`].
pub(crate) fn status_patch(
    st: &FedState,
    report: Option<&FetchReport>,
    conditions: &[Condition],
    managed: &[ConditionType],
    now: i64,
) -> Option<Operation> {
    let fed = st.fed;
    let mut status = Map::new();
    let mut cache = Map::new();
    let stale = |ts: &Option<String>| {
        ts.as_deref()
            .and_then(timefmt::parse_rfc3339)
            .is_none_or(|t| now - t >= TIMESTAMP_REFRESH)
    };
    let public = report
        .and_then(|r| r.public.as_ref())
        .filter(|_| st.trust_hold.is_none());
    if let Some(Attempt { result: Ok(p), .. }) = public {
        let v = p.to_cache();
        if fed.cached_public.as_ref() != Some(&v) || stale(&fed.public_fetched_at) {
            cache.insert("public".into(), v);
            cache.insert(
                "publicLastFetchTimestamp".into(),
                timefmt::rfc3339(now).into(),
            );
        }
    }
    if let Some(v) = st.private_cache.clone() {
        let cached = fed
            .cached_private
            .as_ref()
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok());
        if cached.as_ref() != Some(&v) || stale(&fed.private_fetched_at) {
            cache.insert("private".into(), v);
            cache.insert(
                "privateLastFetchTimestamp".into(),
                timefmt::rfc3339(now).into(),
            );
        }
    }
    if !cache.is_empty() {
        status.insert("metadataCache".into(), Value::Object(cache));
    }
    let cache_advances = matches!(public, Some(Attempt { result: Ok(_), .. }));
    if let Some(v) = st.retention.status(cache_advances) {
        status.insert("retiredRoots".into(), v.clone());
    }
    let merged = merge(&fed.conditions, conditions, managed, now);
    if merged != fed.conditions {
        status.insert("conditions".into(), Value::Array(merged));
    }
    if status.is_empty() {
        return None;
    }
    Some(Operation::StatusMergePatch {
        api_version: federation::API_VERSION.into(),
        kind: federation::KIND.into(),
        name: fed.name.clone(),
        patch: json!({"status": status}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConditionStatus::{False, True};
    use ConditionType::{
        PublicMetadataExchangeReady as PUBLIC, ServicesImported as SERVICES,
        TrustBundleReady as TRUST,
    };

    #[test]
    fn transition_time_kept_only_while_unchanged_and_foreign_kept_last() {
        let prior = vec![
            json!({"type": "DataplaneConnectionReady", "status": "True", "reason": "Ok", "message": "m"}),
            json!({"type": TRUST.as_str(), "status": "True", "reason": "Succeeded", "message": "a", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
            json!({"type": SERVICES.as_str(), "status": "True", "reason": "Succeeded", "message": "b", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
            json!({"type": PUBLIC.as_str(), "status": "True", "reason": "Succeeded", "message": "p", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
        ];
        let computed = [
            Condition::new(TRUST, True, Reason::Succeeded, "a"),
            Condition::new(SERVICES, False, Reason::AwaitingPrivate, "c"),
        ];
        let out = merge(&prior, &computed, &ConditionType::MANAGED, 1_780_272_000);
        let types: Vec<&str> = out.iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "PublicMetadataExchangeReady",
                "TrustBundleReady",
                "ServicesImported",
                "DataplaneConnectionReady"
            ]
        );
        assert_eq!(out[0], prior[3]);
        assert_eq!(out[1]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(out[2]["lastTransitionTime"], "2026-06-01T00:00:00Z");
    }

    #[test]
    fn warnings_are_kept_only_while_a_run_computes_them() {
        let managed = ConditionType::managed_with(false, false);
        let warning = Condition::new(
            ConditionType::ServiceEntriesHidden,
            True,
            Reason::HiddenByServiceEntryVisibility,
            "m",
        );
        let with = merge(&[], std::slice::from_ref(&warning), &managed, 1_780_272_000);
        assert_eq!(with.len(), 1);
        assert_eq!(with[0]["type"], "ServiceEntriesHidden");
        // The mesh config no longer hides them: the warning goes, unlike the other types,
        // which a run that does not compute them keeps verbatim.
        let trust = json!({"type": "TrustBundleReady", "status": "True", "reason": "Succeeded", "message": "a", "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let prior = vec![with[0].clone(), trust.clone()];
        assert_eq!(merge(&prior, &[], &managed, 1_780_272_000), [trust]);
    }

    #[test]
    fn dataplane_condition_is_ours_only_with_the_probe_on() {
        let prior = vec![
            json!({"type": "Ready", "status": "True"}),
            json!({"type": "DataplaneConnectionReady", "status": "True", "reason": "Succeeded", "message": "d", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
            json!({"type": TRUST.as_str(), "status": "True", "reason": "Succeeded", "message": "a", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
        ];
        let types = |out: &[Value]| -> Vec<String> {
            out.iter()
                .map(|c| c["type"].as_str().unwrap().to_string())
                .collect()
        };
        // Off: kept where it was, among the foreign ones.
        let off = merge(&prior, &[], ConditionType::managed(false), 0);
        assert_eq!(
            types(&off),
            ["TrustBundleReady", "Ready", "DataplaneConnectionReady"]
        );
        // On but not probed this run: kept verbatim, in its managed place.
        let on = merge(&prior, &[], ConditionType::managed(true), 0);
        assert_eq!(
            types(&on),
            ["TrustBundleReady", "DataplaneConnectionReady", "Ready"]
        );
        assert_eq!(on[1], prior[1]);
        // On and probed: replaced.
        let c = Condition::new(
            ConditionType::DataplaneConnectionReady,
            False,
            Reason::ProbeFailed,
            "m",
        );
        let on = merge(&prior, &[c], ConditionType::managed(true), 1_780_272_000);
        assert_eq!(on[1]["reason"], "ProbeFailed");
        assert_eq!(on[1]["lastTransitionTime"], "2026-06-01T00:00:00Z");
    }
}
