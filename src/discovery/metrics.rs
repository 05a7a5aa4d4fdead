//! The discovery hook's metrics (group `federation_discovery`): Deckhouse's fetch-error gauge
//! and our own (README, "Metrics"). Every run expires the group and sets the full set again,
//! so a deleted federation's series disappear with it.

use super::effective::FedState;
use super::report::FetchReport;
use crate::hook::metrics;
use serde_json::Value;

pub const GROUP: &str = "federation_discovery";
pub const FETCH_ERRORS: &str = "d8_istio_federation_metadata_endpoints_fetch_error_count";
pub const ROOT_CA_EXPIRY: &str = "d8_istio_federation_remote_root_ca_expiry_timestamp_seconds";
pub const IMPORTED_SERVICES: &str = "d8_istio_federation_imported_services";
pub const FETCH_DURATION: &str = "d8_istio_federation_fetch_duration_seconds";

/// The group's `expire`, first of every run's metric operations.
pub fn expire() -> Value {
    metrics::expire(GROUP)
}

fn set(name: &str, value: f64, labels: &[(&str, &str)]) -> Value {
    metrics::set(GROUP, name, value, labels)
}

pub fn federation_metrics(st: &FedState, report: Option<&FetchReport>, out: &mut Vec<Value>) {
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
            let labels = [("federation_name", name), ("endpoint", url.as_str())];
            out.push(set(FETCH_ERRORS, if failed { 1.0 } else { 0.0 }, &labels));
            out.push(set(FETCH_DURATION, seconds, &labels));
        }
    }
    if let Some(p) = &st.public {
        if let Some(min) = p.roots.iter().map(|r| r.not_after).min() {
            out.push(set(
                ROOT_CA_EXPIRY,
                min as f64,
                &[
                    ("federation_name", name),
                    ("trust_domain", &st.fed.trust_domain),
                ],
            ));
        }
    }
    // Hosts `spec.import` leaves out are not counted; nothing is while it cannot be read.
    let imported = match (&st.public, &st.private) {
        (Some(_), Some(p)) if !p.ingress_gateways.is_empty() && st.fed.import.is_ok() => {
            p.service_count()
        }
        _ => 0,
    };
    out.push(set(
        IMPORTED_SERVICES,
        imported as f64,
        &[("federation_name", name)],
    ));
}
