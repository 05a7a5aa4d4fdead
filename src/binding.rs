//! Binding-context parsing (shell-operator protocol §3, checklist items 15–20).
//!
//! The hook reconciles from *snapshots*, never from single events: a run may combine many
//! contexts (Synchronization, Event, Schedule, Group, none), and the latest snapshot of each
//! binding is the current cluster state. Contexts that carry no snapshots (onStartup, v0,
//! webhooks) tell us nothing about the cluster, so a run made only of them reconciles nothing.

use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

/// What one run was given. Snapshot objects of the bindings named "raw" at parse time stay
/// unparsed slices of the input (see [`parse_with`]); all others are parsed into values.
#[derive(Debug, Default)]
pub struct BindingInput<'a> {
    /// Number of contexts in the array.
    pub contexts: usize,
    /// Latest snapshot per binding name: the full objects, in the order shell-operator gave
    /// them (namespace, then name).
    pub snapshots: BTreeMap<String, Vec<Value>>,
    /// Latest snapshot of the raw bindings, as slices of the input.
    pub raw: BTreeMap<String, Vec<&'a RawValue>>,
    /// Binding names that triggered the run (`binding` of every context), in order.
    pub triggers: Vec<String>,
    /// The `type` of every context (`""` when absent), in order.
    pub types: Vec<String>,
}

impl<'a> BindingInput<'a> {
    /// The snapshot of `binding`, or `None` when no context of this run carried it (state unknown).
    pub fn snapshot(&self, binding: &str) -> Option<&[Value]> {
        self.snapshots.get(binding).map(Vec::as_slice)
    }

    /// The snapshot of a raw binding as JSON texts.
    pub fn raw_snapshot(&self, binding: &str) -> Option<&[&'a RawValue]> {
        self.raw.get(binding).map(Vec::as_slice)
    }
}

/// [`parse_with`] with every snapshot parsed into values.
pub fn parse(input: &[u8]) -> Result<BindingInput<'_>, String> {
    parse_with(input, &[])
}

/// The first non-blank byte of a JSON text: enough to tell its type.
fn lead(raw: &RawValue) -> u8 {
    raw.get()
        .bytes()
        .find(|b| !b.is_ascii_whitespace())
        .unwrap_or(b' ')
}

fn type_of(raw: &RawValue) -> &'static str {
    match lead(raw) {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

/// An optional string field of a context: absent or null reads as "".
fn string_field(ctx: &BTreeMap<String, &RawValue>, key: &str, i: usize) -> Result<String, String> {
    match ctx.get(key) {
        None => Ok(String::new()),
        Some(raw) if lead(raw) == b'n' => Ok(String::new()),
        Some(raw) if lead(raw) == b'"' => serde_json::from_str(raw.get())
            .map_err(|e| format!("binding context item {i}: {key}: {e}")),
        Some(raw) => Err(format!(
            "binding context item {i}: \"{key}\" must be a string, got {}",
            type_of(raw)
        )),
    }
}

/// Parses the binding-context file. Accepts an empty input, the JSON string `""` (Deckhouse's
/// test framework) and an empty array as "no contexts". Anything that is not a JSON array of
/// contexts is an error: the platform handed us something broken and should retry.
///
/// Snapshots of the bindings in `raw_bindings` are kept as slices of `input` — the caller
/// parses them into its own types, which for large snapshots is far cheaper than a generic
/// JSON tree.
pub fn parse_with<'a>(input: &'a [u8], raw_bindings: &[&str]) -> Result<BindingInput<'a>, String> {
    if input.iter().all(u8::is_ascii_whitespace) {
        return Ok(BindingInput::default());
    }
    let doc: &RawValue = serde_json::from_slice(input)
        .map_err(|e| format!("binding context is not valid JSON: {e}"))?;
    let contexts: Vec<&RawValue> = match lead(doc) {
        b'[' => serde_json::from_str(doc.get())
            .map_err(|e| format!("binding context is not valid JSON: {e}"))?,
        b'"' if doc.get().trim() == "\"\"" => return Ok(BindingInput::default()),
        _ => {
            return Err(format!(
                "binding context must be a JSON array of contexts, got {}",
                type_of(doc)
            ))
        }
    };
    let mut out = BindingInput {
        contexts: contexts.len(),
        ..Default::default()
    };
    let mut snapshots: BTreeMap<String, Vec<&RawValue>> = BTreeMap::new();
    // Synchronization `objects` stand in for a snapshot only when no context has one.
    let mut sync_objects: BTreeMap<String, Vec<&RawValue>> = BTreeMap::new();
    for (i, ctx) in contexts.into_iter().enumerate() {
        if lead(ctx) != b'{' {
            return Err(format!("binding context item {i} is not a JSON object"));
        }
        let ctx: BTreeMap<String, &RawValue> = serde_json::from_str(ctx.get())
            .map_err(|e| format!("binding context item {i}: {e}"))?;
        let binding = string_field(&ctx, "binding", i)?;
        let ty = string_field(&ctx, "type", i)?;
        match ctx.get("snapshots") {
            None => {}
            Some(raw) if lead(raw) == b'n' => {}
            Some(raw) if lead(raw) == b'{' => {
                let snaps: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get())
                    .map_err(|e| format!("binding context item {i}: {e}"))?;
                for (name, items) in snaps {
                    let objects = items_to_objects(&name, items)
                        .map_err(|e| format!("binding context item {i}: {e}"))?;
                    snapshots.insert(name, objects);
                }
            }
            Some(raw) => {
                return Err(format!(
                    "binding context item {i}: \"snapshots\" must be an object, got {}",
                    type_of(raw)
                ));
            }
        }
        if ty == "Synchronization" {
            if let Some(raw) = ctx.get("objects").filter(|r| lead(r) != b'n') {
                let objects = items_to_objects(&binding, raw)
                    .map_err(|e| format!("binding context item {i}: {e}"))?;
                sync_objects.insert(binding.clone(), objects);
            }
        }
        out.triggers.push(binding);
        out.types.push(ty);
    }
    for (name, objects) in sync_objects {
        snapshots.entry(name).or_insert(objects);
    }
    for (name, objects) in snapshots {
        if raw_bindings.contains(&name.as_str()) {
            out.raw.insert(name, objects);
        } else {
            let values = objects
                .into_iter()
                .map(|o| {
                    serde_json::from_str(o.get()).map_err(|e| format!("snapshot {name:?}: {e}"))
                })
                .collect::<Result<Vec<Value>, String>>()?;
            out.snapshots.insert(name, values);
        }
    }
    Ok(out)
}

/// Turns `[{object?, filterResult?}, …]` into the full objects. Items without a full object
/// (keepFullObjectsInMemory: false) fall back to a `filterResult` that is itself an object;
/// items with neither are skipped with a warning.
fn items_to_objects<'a>(binding: &str, items: &'a RawValue) -> Result<Vec<&'a RawValue>, String> {
    if lead(items) != b'[' {
        return Err(format!(
            "snapshot {binding:?} must be an array, got {}",
            type_of(items)
        ));
    }
    let items: Vec<&RawValue> =
        serde_json::from_str(items.get()).map_err(|e| format!("snapshot {binding:?}: {e}"))?;
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.into_iter().enumerate() {
        if lead(item) != b'{' {
            return Err(format!("snapshot {binding:?} item {j} is not an object"));
        }
        let fields: BTreeMap<String, &RawValue> = serde_json::from_str(item.get())
            .map_err(|e| format!("snapshot {binding:?} item {j}: {e}"))?;
        match (fields.get("object"), fields.get("filterResult")) {
            (Some(o), _) if lead(o) == b'{' => out.push(*o),
            (_, Some(f)) if lead(f) == b'{' => out.push(*f),
            _ => log::warn!(
                target: "binding",
                "snapshot {binding:?} item {j} has neither an object nor an object filterResult; ignored"
            ),
        }
    }
    Ok(out)
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
        let text = input.to_string();
        let b = parse(text.as_bytes()).unwrap();
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
        let text = input.to_string();
        let b = parse(text.as_bytes()).unwrap();
        assert_eq!(b.snapshot("a").unwrap(), &[json!({"name": "x"})]);
        // Raw bindings stay unparsed slices of the input.
        let b = parse_with(text.as_bytes(), &["a"]).unwrap();
        assert!(b.snapshot("a").is_none());
        assert_eq!(b.raw_snapshot("a").unwrap()[0].get(), r#"{"name":"x"}"#);
    }
}
