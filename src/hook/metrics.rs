//! Metric operations for `$METRICS_PATH` (docs/how-it-works.md, "The hook contract"): one JSON
//! object per line, each naming its group so a run can expire everything it set before.

use serde_json::{json, Map, Value};
use std::io::Write;

/// Expires every metric of `group`.
pub(crate) fn expire(group: &str) -> Value {
    json!({"group": group, "action": "expire"})
}

/// A gauge `set` in `group`; labels are string-valued as shell-operator requires.
pub(crate) fn set(group: &str, name: &str, value: f64, labels: &[(&str, &str)]) -> Value {
    let labels: Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    json!({"name": name, "group": group, "action": "set", "value": value, "labels": labels})
}

pub fn write_ndjson<W: Write>(mut out: W, ops: &[Value]) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
