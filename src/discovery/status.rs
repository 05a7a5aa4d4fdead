//! Conditions on IstioFederation status (SPEC §4.2 step 7), Kubernetes style.
//!
//! `lastTransitionTime` is kept while status, reason and message stay the same, and messages
//! never carry run-to-run detail, so a peer that stays down does not rewrite status every
//! minute. Condition types this hook does not manage (e.g. Deckhouse's
//! `DataplaneConnectionReady`) are kept, after ours.

use super::diff::Operation;
use super::effective::FedState;
use super::report::{Attempt, FetchReport};
use crate::hook::timefmt;
use crate::protocol::failure::Reason;
use crate::protocol::federation;
use serde_json::{json, Map, Value};

/// A successful fetch rewrites unchanged metadata only when the stored timestamp is older.
const TIMESTAMP_REFRESH: i64 = 10 * 60;

/// The condition types this hook manages, in the order they are written. Other types on the
/// object (e.g. Deckhouse's `DataplaneConnectionReady`) are read and kept as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    PublicMetadataExchangeReady,
    PrivateMetadataExchangeReady,
    TrustBundleReady,
    ServicesImported,
}

impl ConditionType {
    /// Managed types, in the order they are written.
    pub const MANAGED: [ConditionType; 4] = [
        ConditionType::PublicMetadataExchangeReady,
        ConditionType::PrivateMetadataExchangeReady,
        ConditionType::TrustBundleReady,
        ConditionType::ServicesImported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::PublicMetadataExchangeReady => "PublicMetadataExchangeReady",
            ConditionType::PrivateMetadataExchangeReady => "PrivateMetadataExchangeReady",
            ConditionType::TrustBundleReady => "TrustBundleReady",
            ConditionType::ServicesImported => "ServicesImported",
        }
    }

    /// The managed type a prior condition's `type` names, `None` for a foreign one.
    pub fn from_wire(s: &str) -> Option<ConditionType> {
        ConditionType::MANAGED.into_iter().find(|t| t.as_str() == s)
    }
}

/// A Kubernetes condition status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: ConditionType,
    pub status: ConditionStatus,
    pub reason: Reason,
    pub message: String,
}

impl Condition {
    pub fn new(
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

/// The new condition list: managed types in fixed order (computed now, or kept verbatim from
/// `prior` when this run did not compute them), then every other prior condition in order.
pub fn merge(prior: &[Value], computed: &[Condition], now: i64) -> Vec<Value> {
    let mut out = Vec::with_capacity(prior.len() + computed.len());
    for kind in ConditionType::MANAGED {
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
            None => {
                if let Some(o) = old {
                    out.push(o.clone());
                }
            }
        }
    }
    for c in prior {
        let kind = c.get("type").and_then(Value::as_str).unwrap_or("");
        if ConditionType::from_wire(kind).is_none() {
            out.push(c.clone());
        }
    }
    out
}

/// The status merge patch, or `None` when nothing would change.
pub fn status_patch(
    st: &FedState,
    report: Option<&FetchReport>,
    conditions: &[Condition],
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
    if let Some(v) = &st.retention.status {
        status.insert("retiredRoots".into(), v.clone());
    }
    let merged = merge(&fed.conditions, conditions, now);
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
        let out = merge(&prior, &computed, 1_780_272_000);
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
}
