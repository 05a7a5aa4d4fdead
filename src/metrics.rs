//! Metric operations for `$METRICS_PATH` (protocol §4.2), group `federation_discovery`.
//!
//! Every run first expires the group and then sets the full set again, so metrics of a
//! deleted federation disappear with it.

use serde_json::{json, Map, Value};
use std::io::Write;

pub const GROUP: &str = "federation_discovery";
pub const FETCH_ERRORS: &str = "d8_istio_federation_metadata_endpoints_fetch_error_count";
pub const ROOT_CA_EXPIRY: &str = "d8_istio_federation_remote_root_ca_expiry_timestamp_seconds";
pub const IMPORTED_SERVICES: &str = "d8_istio_federation_imported_services";
pub const FETCH_DURATION: &str = "d8_istio_federation_fetch_duration_seconds";

pub fn expire() -> Value {
    json!({"group": GROUP, "action": "expire"})
}

/// A gauge `set` in our group; labels are string-valued as shell-operator requires.
pub fn set(name: &str, value: f64, labels: &[(&str, &str)]) -> Value {
    let labels: Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    json!({"name": name, "group": GROUP, "action": "set", "value": value, "labels": labels})
}

pub fn write_ndjson<W: Write>(mut out: W, ops: &[Value]) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
