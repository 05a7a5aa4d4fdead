//! The discovery hook's metrics (group `federation_discovery`): Deckhouse's fetch-error gauge
//! and our own (docs/reference/metrics.md). Every run expires the group and sets the full set
//! again, so a deleted federation's series disappear with it.

use crate::discovery::network::report::FetchReport;
use crate::discovery::state::FedState;
use crate::discovery::status::patch::{Condition, ConditionStatus};
use crate::hook::metrics;
use crate::protocol::certs::{self, CertRejection};
use crate::protocol::metadata::PublicMetadata;
use serde_json::Value;

pub const GROUP: &str = "federation_discovery";

enum_with_all! {
/// Every metric the hook sets. [`set`] takes one of these, so a new metric is a new variant,
/// and `ALL` lists it for the test that holds docs/reference/metrics.md to the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    /// Deckhouse's gauge: 0/1 per URL tried this run.
    FetchErrors,
    FetchDuration,
    /// The earliest notAfter among the trusted roots.
    RootCaExpiry,
    /// notAfter of every root the peer publishes that is a CA certificate, trusted or not, with
    /// `state` `trusted`, `expired` or `distrusted`: an expired root still has a series, so
    /// `IstioFederationRemoteRootCAExpired` can fire.
    PublishedRootExpiry,
    /// When each retained root (published no more) leaves the trust bundle.
    RetainedRootUntil,
    ImportedServices,
    /// Deckhouse's data-plane gauge: 1 when the probe of the peer's health-check service
    /// succeeded this run, else 0 (docs/operating.md, "Data-plane probe").
    DataplaneHealth,
    /// How many of our services the peer's workloads may reach (docs/security.md, "Exported
    /// means reachable"), while the boundary is enforced.
    ReachableServices,
    /// 1 while the peer's fresh public metadata names another clusterUUID than the pinned one
    /// (docs/how-it-works.md, "Remote discovery").
    PeerClusterUuidMismatch,
    /// While the mass-deletion guard holds deletes: how many federations they would remove
    /// (docs/security.md, "Platform failures").
    MassDeletionHeld,
}
}

impl Metric {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Metric::FetchErrors => "d8_istio_federation_metadata_endpoints_fetch_error_count",
            Metric::FetchDuration => "d8_istio_federation_fetch_duration_seconds",
            Metric::RootCaExpiry => "d8_istio_federation_remote_root_ca_expiry_timestamp_seconds",
            Metric::PublishedRootExpiry => {
                "d8_istio_federation_published_root_ca_expiry_timestamp_seconds"
            }
            Metric::RetainedRootUntil => {
                "d8_istio_federation_retained_root_ca_until_timestamp_seconds"
            }
            Metric::ImportedServices => "d8_istio_federation_imported_services",
            Metric::DataplaneHealth => "d8_istio_alliance_dataplane_health_check",
            Metric::ReachableServices => "d8_istio_federation_reachable_services",
            Metric::PeerClusterUuidMismatch => "d8_istio_federation_peer_cluster_uuid_mismatch",
            Metric::MassDeletionHeld => "d8_istio_federation_mass_deletion_held_federations",
        }
    }

    /// The label names, in the order [`set`] takes their values.
    pub(crate) fn labels(self) -> &'static [&'static str] {
        match self {
            Metric::FetchErrors | Metric::FetchDuration => &["federation_name", "endpoint"],
            Metric::RootCaExpiry => &["federation_name", "trust_domain"],
            Metric::PublishedRootExpiry => {
                &["federation_name", "trust_domain", "fingerprint", "state"]
            }
            Metric::RetainedRootUntil => &["federation_name", "trust_domain", "fingerprint"],
            Metric::ImportedServices => &["federation_name"],
            Metric::DataplaneHealth => &["alliance_kind", "name", "remote_cluster_uuid"],
            Metric::ReachableServices => &["federation_name", "trust_domain"],
            Metric::PeerClusterUuidMismatch => &["federation_name", "pinned_uuid", "actual_uuid"],
            Metric::MassDeletionHeld => &[],
        }
    }
}

/// The group's `expire`, first of every run's metric operations.
pub fn expire() -> Value {
    metrics::expire(GROUP)
}

/// One gauge of `metric`, with `values` for its [`Metric::labels`] in order.
pub(crate) fn set(metric: Metric, value: f64, values: &[&str]) -> Value {
    debug_assert_eq!(metric.labels().len(), values.len(), "{metric:?}");
    let labels: Vec<(&str, &str)> = metric
        .labels()
        .iter()
        .copied()
        .zip(values.iter().copied())
        .collect();
    metrics::set(GROUP, metric.name(), value, &labels)
}

pub(crate) fn federation_metrics(
    st: &FedState,
    report: Option<&FetchReport>,
    out: &mut Vec<Value>,
) {
    let name = st.fed.name.as_str();
    if let Some(r) = report {
        let attempts = [
            r.public
                .as_ref()
                .map(|a| (&a.url, a.result.is_err(), a.seconds)),
            r.private
                .as_ref()
                .map(|a| (&a.url, a.result.is_err(), a.seconds)),
        ];
        for (url, failed, seconds) in attempts.into_iter().flatten() {
            let labels = [name, url.as_str()];
            out.push(set(
                Metric::FetchErrors,
                if failed { 1.0 } else { 0.0 },
                &labels,
            ));
            out.push(set(Metric::FetchDuration, seconds, &labels));
        }
    }
    if let Some(p) = &st.public {
        if let Some(min) = p.roots.iter().map(|r| r.not_after).min() {
            out.push(set(
                Metric::RootCaExpiry,
                min as f64,
                &[name, &st.fed.trust_domain],
            ));
        }
    }
    root_metrics(st, out);
    // Hosts `spec.import` leaves out are not counted; nothing is while it cannot be read.
    let imported = match (&st.public, &st.private) {
        (Some(_), Some(p)) if !p.ingress_gateways.is_empty() && st.fed.import.is_ok() => {
            p.service_count()
        }
        _ => 0,
    };
    out.push(set(Metric::ImportedServices, imported as f64, &[name]));
}

/// The data-plane gauge of one federation, from its `DataplaneConnectionReady` of this run,
/// with Deckhouse's labels.
pub(crate) fn dataplane_metric(st: &FedState, condition: &Condition, out: &mut Vec<Value>) {
    let uuid = st
        .public
        .as_ref()
        .map(|p| p.cluster_uuid.as_str())
        .filter(|u| !u.is_empty())
        .unwrap_or("unknown");
    let healthy = condition.status == ConditionStatus::True;
    out.push(set(
        Metric::DataplaneHealth,
        if healthy { 1.0 } else { 0.0 },
        &["IstioFederation", st.fed.name.as_str(), uuid],
    ));
}

/// The per-root gauges: every published CA root with its state, every retained root with its
/// end (docs/reference/metrics.md).
fn root_metrics(st: &FedState, out: &mut Vec<Value>) {
    let name = st.fed.name.as_str();
    let td = st.fed.trust_domain.as_str();
    if let Some(p) = &st.public {
        let trusted = p
            .roots
            .iter()
            .map(|r| (r.fingerprint.clone(), r.not_after, "trusted"));
        let distrusted = st
            .retention
            .distrusted
            .iter()
            .map(|r| (r.fingerprint.clone(), r.not_after, "distrusted"));
        let all: Vec<_> = trusted.chain(expired(p)).chain(distrusted).collect();
        for (fp, not_after, state) in all {
            out.push(set(
                Metric::PublishedRootExpiry,
                not_after as f64,
                &[name, td, &fp, state],
            ));
        }
    }
    for r in &st.retention.retained {
        out.push(set(
            Metric::RetainedRootUntil,
            r.until as f64,
            &[name, td, &r.root.fingerprint],
        ));
    }
}

/// The published roots refused because they expired, with their fingerprints (read from the
/// bundle only when there is one).
fn expired(p: &PublicMetadata) -> Vec<(String, i64, &'static str)> {
    let wanted: Vec<(usize, i64)> = p
        .rejected
        .iter()
        .filter_map(|(i, why)| match why {
            CertRejection::Expired { not_after } => Some((*i, *not_after)),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(blocks) = certs::pem_blocks(&p.root_ca) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(wanted.len());
    for (i, not_after) in wanted {
        if let Some(b) = i.checked_sub(1).and_then(|i| blocks.get(i)) {
            let fp = certs::fingerprint(&b.der);
            if !out.iter().any(|(f, _, _)| *f == fp) {
                out.push((fp, not_after, "expired"));
            }
        }
    }
    out
}
