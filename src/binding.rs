//! Binding-context parsing (shell-operator protocol §3, checklist items 15–20).
//!
//! The hook reconciles from *snapshots*, never from single events: a run may combine many
//! contexts (Synchronization, Event, Schedule, Group, none), and the latest snapshot of each
//! binding is the current cluster state. Contexts that carry no snapshots (onStartup, v0,
//! webhooks) tell us nothing about the cluster, so a run made only of them reconciles nothing.

use serde_json::Value;
use std::collections::BTreeMap;

/// What one run was given.
#[derive(Debug, Default)]
pub struct BindingInput {
    /// Number of contexts in the array.
    pub contexts: usize,
    /// Latest snapshot per binding name: the full objects, in the order shell-operator gave
    /// them (namespace, then name).
    pub snapshots: BTreeMap<String, Vec<Value>>,
    /// Binding names that triggered the run (`binding` of every context), in order.
    pub triggers: Vec<String>,
    /// The `type` of every context (`""` when absent), in order.
    pub types: Vec<String>,
}

impl BindingInput {
    /// The snapshot of `binding`, or `None` when no context of this run carried it (state unknown).
    pub fn snapshot(&self, binding: &str) -> Option<&[Value]> {
        self.snapshots.get(binding).map(Vec::as_slice)
    }
}

/// Parses the binding-context file. Accepts an empty input, the JSON string `""` (Deckhouse's
/// test framework) and an empty array as "no contexts". Anything that is not a JSON array of
/// contexts is an error: the platform handed us something broken and should retry.
pub fn parse(input: &[u8]) -> Result<BindingInput, String> {
    let trimmed = input.iter().position(|b| !b.is_ascii_whitespace());
    let Some(_) = trimmed else {
        return Ok(BindingInput::default());
    };
    let doc: Value = serde_json::from_slice(input)
        .map_err(|e| format!("binding context is not valid JSON: {e}"))?;
    let contexts = match doc {
        Value::Array(a) => a,
        Value::String(s) if s.is_empty() => return Ok(BindingInput::default()),
        other => {
            return Err(format!(
                "binding context must be a JSON array of contexts, got {}",
                json_type(&other)
            ));
        }
    };
    let mut out = BindingInput {
        contexts: contexts.len(),
        ..Default::default()
    };
    // Synchronization `objects` stand in for a snapshot only when no context has one.
    let mut sync_objects: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (i, ctx) in contexts.into_iter().enumerate() {
        let Value::Object(mut ctx) = ctx else {
            return Err(format!("binding context item {i} is not a JSON object"));
        };
        let binding = match ctx.get("binding") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => {
                return Err(format!(
                    "binding context item {i}: \"binding\" must be a string, got {}",
                    json_type(other)
                ))
            }
        };
        let ty = match ctx.get("type") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => {
                return Err(format!(
                    "binding context item {i}: \"type\" must be a string, got {}",
                    json_type(other)
                ))
            }
        };
        match ctx.remove("snapshots") {
            None | Some(Value::Null) => {}
            Some(Value::Object(snaps)) => {
                for (name, items) in snaps {
                    let objects = items_to_objects(&name, items)
                        .map_err(|e| format!("binding context item {i}: {e}"))?;
                    out.snapshots.insert(name, objects);
                }
            }
            Some(other) => {
                return Err(format!(
                    "binding context item {i}: \"snapshots\" must be an object, got {}",
                    json_type(&other)
                ));
            }
        }
        if ty == "Synchronization" {
            match ctx.remove("objects") {
                None | Some(Value::Null) => {}
                Some(items) => {
                    let objects = items_to_objects(&binding, items)
                        .map_err(|e| format!("binding context item {i}: {e}"))?;
                    sync_objects.insert(binding.clone(), objects);
                }
            }
        }
        out.triggers.push(binding);
        out.types.push(ty);
    }
    for (name, objects) in sync_objects {
        out.snapshots.entry(name).or_insert(objects);
    }
    Ok(out)
}

/// Turns `[{object?, filterResult?}, …]` into the full objects. Items without a full object
/// (keepFullObjectsInMemory: false) fall back to a `filterResult` that is itself an object;
/// items with neither are skipped with a warning.
fn items_to_objects(binding: &str, items: Value) -> Result<Vec<Value>, String> {
    let Value::Array(items) = items else {
        return Err(format!(
            "snapshot {binding:?} must be an array, got {}",
            json_type(&items)
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.into_iter().enumerate() {
        let Value::Object(mut item) = item else {
            return Err(format!("snapshot {binding:?} item {j} is not an object"));
        };
        match item.remove("object") {
            Some(obj @ Value::Object(_)) => out.push(obj),
            _ => match item.remove("filterResult") {
                Some(fr @ Value::Object(_)) => out.push(fr),
                _ => log::warn!(
                    target: "binding",
                    "snapshot {binding:?} item {j} has neither an object nor an object filterResult; ignored"
                ),
            },
        }
    }
    Ok(out)
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_forms_mean_nothing_to_do() {
        for input in ["", "  \n", "\"\"", "[]"] {
            let b = parse(input.as_bytes()).unwrap();
            assert!(b.snapshots.is_empty(), "{input:?}");
        }
    }

    #[test]
    fn rejects_non_arrays_and_truncation() {
        assert!(parse(b"{}").unwrap_err().contains("JSON array"));
        assert!(parse(b"[{\"binding\":")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(parse(b"[1]").unwrap_err().contains("item 0"));
        assert!(parse(br#"[{"binding":"x","snapshots":[]}]"#)
            .unwrap_err()
            .contains("snapshots"));
    }

    #[test]
    fn latest_snapshot_wins_and_sync_objects_fill_gaps() {
        let input = json!([
            {"binding": "a", "type": "Synchronization", "objects": [{"object": {"metadata": {"name": "sync"}}}]},
            {"binding": "b", "type": "Group", "snapshots": {"b": [{"object": {"metadata": {"name": "old"}}}]}},
            {"binding": "b", "type": "Group", "snapshots": {"b": [{"object": {"metadata": {"name": "new"}}, "filterResult": null}]}},
            {"binding": "c", "type": "Event", "watchEvent": "Added", "object": null},
            {"binding": "onStartup"}
        ]);
        let b = parse(input.to_string().as_bytes()).unwrap();
        assert_eq!(b.contexts, 5);
        assert_eq!(b.snapshot("a").unwrap()[0]["metadata"]["name"], "sync");
        assert_eq!(b.snapshot("b").unwrap().len(), 1);
        assert_eq!(b.snapshot("b").unwrap()[0]["metadata"]["name"], "new");
        assert!(b.snapshot("c").is_none());
        assert_eq!(b.triggers, ["a", "b", "b", "c", "onStartup"]);
    }

    #[test]
    fn filter_result_fallback() {
        let input = json!([{"binding": "a", "type": "Group", "snapshots": {"a": [
            {"filterResult": {"name": "x"}}, {"filterResult": null}, {}
        ]}}]);
        let b = parse(input.to_string().as_bytes()).unwrap();
        assert_eq!(b.snapshot("a").unwrap(), &[json!({"name": "x"})]);
    }
}
