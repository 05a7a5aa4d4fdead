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

/// Why a binding context cannot be read. Every one means the platform handed us something
/// broken: the run fails (non-zero exit) so shell-operator retries, and nothing is written.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("binding context is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("binding context must be a JSON array of contexts, got {0}")]
    NotArray(&'static str),
    #[error("binding context item {0} is not a JSON object")]
    ContextNotObject(usize),
    /// A context, or a snapshot in it, is not of the expected shape.
    #[error("binding context item {index}: {problem}")]
    Context { index: usize, problem: String },
    /// A snapshot object is not JSON a value can hold.
    #[error("snapshot {binding:?}: {source}")]
    SnapshotObject {
        binding: String,
        source: serde_json::Error,
    },
}

/// [`parse_with`] with every snapshot parsed into values.
pub fn parse(input: &[u8]) -> Result<BindingInput<'_>, BindingError> {
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
fn string_field(ctx: &BTreeMap<String, &RawValue>, key: &str) -> Result<String, String> {
    match ctx.get(key) {
        None => Ok(String::new()),
        Some(raw) if lead(raw) == b'n' => Ok(String::new()),
        Some(raw) if lead(raw) == b'"' => {
            serde_json::from_str(raw.get()).map_err(|e| format!("{key}: {e}"))
        }
        Some(raw) => Err(format!("\"{key}\" must be a string, got {}", type_of(raw))),
    }
}

/// One snapshot item as shell-operator writes it: the full object and/or the jq filter's result.
#[derive(Debug, Clone, Copy, Default)]
struct Item<'a> {
    object: Option<&'a RawValue>,
    filter_result: Option<&'a RawValue>,
}

impl<'a> Item<'a> {
    /// The full object; without one (keepFullObjectsInMemory: false), a `filterResult` that is
    /// itself an object; `None` (with a warning) when the item has neither.
    fn object(self, binding: &str, j: usize) -> Option<&'a RawValue> {
        match (self.object, self.filter_result) {
            (Some(o), _) if lead(o) == b'{' => Some(o),
            (_, Some(f)) if lead(f) == b'{' => Some(f),
            _ => {
                log::warn!(
                    target: "binding",
                    "snapshot {binding:?} item {j} has neither an object nor an object filterResult; ignored"
                );
                None
            }
        }
    }
}

/// One binding context, structurally checked; objects not yet chosen from the items.
#[derive(Debug)]
struct Context<'a> {
    binding: String,
    ty: String,
    /// `snapshots`, by binding name.
    snapshots: BTreeMap<String, Vec<Item<'a>>>,
    /// `objects` of a Synchronization context.
    sync_objects: Option<Vec<Item<'a>>>,
}

/// Parses the binding-context file. Accepts an empty input, the JSON string `""` (Deckhouse's
/// test framework) and an empty array as "no contexts". Anything that is not a JSON array of
/// contexts is an error: the platform handed us something broken and should retry.
///
/// Snapshots of the bindings in `raw_bindings` are kept as slices of `input` — the caller
/// parses them into its own types, which for large snapshots is far cheaper than a generic
/// JSON tree.
pub fn parse_with<'a>(
    input: &'a [u8],
    raw_bindings: &[&str],
) -> Result<BindingInput<'a>, BindingError> {
    if input.iter().all(u8::is_ascii_whitespace) {
        return Ok(BindingInput::default());
    }
    // A well-formed input is read in one pass; anything else goes through the checked reading,
    // which says what is wrong and where (and decides every odd case the same way).
    let contexts = match fast::contexts(input) {
        Some(c) => c,
        None => match checked_contexts(input)? {
            Some(c) => c,
            None => return Ok(BindingInput::default()),
        },
    };
    let mut out = BindingInput {
        contexts: contexts.len(),
        ..Default::default()
    };
    let mut snapshots: BTreeMap<String, Vec<&RawValue>> = BTreeMap::new();
    // Synchronization `objects` stand in for a snapshot only when no context has one.
    let mut sync_objects: BTreeMap<String, Vec<&RawValue>> = BTreeMap::new();
    let choose = |binding: &str, items: Vec<Item<'a>>| -> Vec<&'a RawValue> {
        items
            .into_iter()
            .enumerate()
            .filter_map(|(j, item)| item.object(binding, j))
            .collect()
    };
    for ctx in contexts {
        for (name, items) in ctx.snapshots {
            let objects = choose(&name, items);
            snapshots.insert(name, objects);
        }
        if let Some(items) = ctx.sync_objects {
            sync_objects.insert(ctx.binding.clone(), choose(&ctx.binding, items));
        }
        out.triggers.push(ctx.binding);
        out.types.push(ctx.ty);
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
                    serde_json::from_str(o.get()).map_err(|source| BindingError::SnapshotObject {
                        binding: name.clone(),
                        source,
                    })
                })
                .collect::<Result<Vec<Value>, BindingError>>()?;
            out.snapshots.insert(name, values);
        }
    }
    Ok(out)
}

/// Whether the one-pass reading, where it accepts `input`, reads it exactly as the checked
/// reading does (for the fuzzer's differential check).
#[doc(hidden)]
pub fn readings_agree(input: &[u8]) -> bool {
    match fast::contexts(input) {
        None => true,
        Some(fast) => {
            format!("{:?}", Ok::<_, BindingError>(Some(fast)))
                == format!("{:?}", checked_contexts(input))
        }
    }
}

/// The checked reading of the contexts: every level is looked at on its own, so an error names
/// the context, the binding and the item. `None` for the JSON string `""`.
fn checked_contexts(input: &[u8]) -> Result<Option<Vec<Context<'_>>>, BindingError> {
    let doc: &RawValue = serde_json::from_slice(input).map_err(BindingError::NotJson)?;
    let contexts: Vec<&RawValue> = match lead(doc) {
        b'[' => serde_json::from_str(doc.get()).map_err(BindingError::NotJson)?,
        b'"' if doc.get().trim() == "\"\"" => return Ok(None),
        _ => return Err(BindingError::NotArray(type_of(doc))),
    };
    let mut out = Vec::with_capacity(contexts.len());
    for (i, ctx) in contexts.into_iter().enumerate() {
        if lead(ctx) != b'{' {
            return Err(BindingError::ContextNotObject(i));
        }
        out.push(
            checked_context(ctx).map_err(|problem| BindingError::Context { index: i, problem })?,
        );
    }
    Ok(Some(out))
}

/// One context, checked; the error is what is wrong inside it.
fn checked_context(ctx: &RawValue) -> Result<Context<'_>, String> {
    let ctx: BTreeMap<String, &RawValue> =
        serde_json::from_str(ctx.get()).map_err(|e| e.to_string())?;
    let binding = string_field(&ctx, "binding")?;
    let ty = string_field(&ctx, "type")?;
    let mut snapshots = BTreeMap::new();
    match ctx.get("snapshots") {
        None => {}
        Some(raw) if lead(raw) == b'n' => {}
        Some(raw) if lead(raw) == b'{' => {
            let snaps: BTreeMap<String, &RawValue> =
                serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
            for (name, items) in snaps {
                let items = checked_items(&name, items)?;
                snapshots.insert(name, items);
            }
        }
        Some(raw) => {
            return Err(format!(
                "\"snapshots\" must be an object, got {}",
                type_of(raw)
            ));
        }
    }
    let mut sync_objects = None;
    if ty == "Synchronization" {
        if let Some(raw) = ctx.get("objects").filter(|r| lead(r) != b'n') {
            sync_objects = Some(checked_items(&binding, raw)?);
        }
    }
    Ok(Context {
        binding,
        ty,
        snapshots,
        sync_objects,
    })
}

/// `[{object?, filterResult?}, …]`, checked item by item.
fn checked_items<'a>(binding: &str, items: &'a RawValue) -> Result<Vec<Item<'a>>, String> {
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
        out.push(Item {
            object: fields.get("object").copied(),
            filter_result: fields.get("filterResult").copied(),
        });
    }
    Ok(out)
}

/// The one-pass reading of a well-formed binding context. It accepts a subset of what
/// [`checked_contexts`] accepts and reads it the same way (objects only where objects are
/// expected, the last of a repeated key); anything else is `None`, for the checked reading.
/// On large snapshots this is most of a run's parsing: the checked reading scans each object
/// once per level it descends.
mod fast {
    use super::{Context, Item};
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde::Deserialize;
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;
    use std::fmt;

    pub(super) fn contexts(input: &[u8]) -> Option<Vec<Context<'_>>> {
        // The checked reading refuses invalid UTF-8 anywhere; serde skips ignored bytes unread.
        let text = std::str::from_utf8(input).ok()?;
        let contexts: Vec<Ctx> = serde_json::from_str(text).ok()?;
        contexts
            .into_iter()
            .map(|c| {
                let ty = c.ty.unwrap_or_default();
                let sync_objects = match c.objects {
                    Some(raw) if ty == "Synchronization" && raw.get() != "null" => {
                        Some(serde_json::from_str::<Vec<Item>>(raw.get()).ok()?)
                    }
                    _ => None,
                };
                Some(Context {
                    binding: c.binding.unwrap_or_default(),
                    ty,
                    snapshots: c.snapshots.unwrap_or_default(),
                    sync_objects,
                })
            })
            .collect()
    }

    struct Ctx<'a> {
        binding: Option<String>,
        ty: Option<String>,
        snapshots: Option<BTreeMap<String, Vec<Item<'a>>>>,
        objects: Option<&'a RawValue>,
    }

    /// The member names read; every other member is skipped.
    enum Key {
        Binding,
        Type,
        Snapshots,
        Objects,
        Object,
        FilterResult,
        Other,
    }

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                    Ok(match s {
                        "binding" => Key::Binding,
                        "type" => Key::Type,
                        "snapshots" => Key::Snapshots,
                        "objects" => Key::Objects,
                        "object" => Key::Object,
                        "filterResult" => Key::FilterResult,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_str(V)
        }
    }

    /// Objects only: a visitor without `visit_seq` refuses arrays (serde's derived structs
    /// would read an array positionally).
    impl<'de> Deserialize<'de> for Ctx<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ctx<'de>, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Ctx<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a binding context object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ctx<'de>, A::Error> {
                    let mut c = Ctx {
                        binding: None,
                        ty: None,
                        snapshots: None,
                        objects: None,
                    };
                    while let Some(key) = map.next_key::<Key>()? {
                        match key {
                            Key::Binding => c.binding = map.next_value()?,
                            Key::Type => c.ty = map.next_value()?,
                            Key::Snapshots => c.snapshots = map.next_value()?,
                            Key::Objects => c.objects = Some(map.next_value()?),
                            _ => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    Ok(c)
                }
            }
            d.deserialize_map(V)
        }
    }

    impl<'de> Deserialize<'de> for Item<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item<'de>, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Item<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a snapshot item object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<'de>, A::Error> {
                    let mut item = Item::default();
                    while let Some(key) = map.next_key::<Key>()? {
                        match key {
                            Key::Object => item.object = Some(map.next_value()?),
                            Key::FilterResult => item.filter_result = Some(map.next_value()?),
                            _ => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    Ok(item)
                }
            }
            d.deserialize_map(V)
        }
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
        let err = |input: &[u8]| parse(input).unwrap_err();
        assert!(matches!(err(b"{}"), BindingError::NotArray("an object")));
        assert_eq!(
            err(b"{}").to_string(),
            "binding context must be a JSON array of contexts, got an object"
        );
        assert!(matches!(err(b"[{\"binding\":"), BindingError::NotJson(_)));
        assert!(err(b"[{\"binding\":")
            .to_string()
            .starts_with("binding context is not valid JSON: "));
        assert_eq!(
            err(b"[1]").to_string(),
            "binding context item 0 is not a JSON object"
        );
        assert_eq!(
            err(br#"[{},{"binding":"x","snapshots":[]}]"#).to_string(),
            "binding context item 1: \"snapshots\" must be an object, got an array"
        );
        assert_eq!(
            err(br#"[{"binding":5}]"#).to_string(),
            "binding context item 0: \"binding\" must be a string, got a number"
        );
        assert_eq!(
            err(br#"[{"binding":"x","snapshots":{"s":[1]}}]"#).to_string(),
            "binding context item 0: snapshot \"s\" item 0 is not an object"
        );
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

    /// The one-pass reading agrees with the checked reading wherever it accepts an input, and
    /// accepts every real binding context we have.
    #[test]
    fn fast_reading_agrees_with_checked_reading() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/binding-contexts");
        let mut inputs: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert!(inputs.len() >= 14);
        let real = inputs.len();
        for odd in [
            r#"[{"binding": "a", "binding": "b", "type": null, "snapshots": null}]"#,
            r#"[{"binding": "a", "snapshots": {"s": [{"object": null, "filterResult": {"x": 1}}, {"object": [1]}, {"object": {"a": 1}, "object": "x"}, {"filterResult": "y", "other": {}}]}}]"#,
            r#"[{"binding": "a", "snapshots": {"s": [], "s": [{"object": {"n": 1}}]}}]"#,
            r#"[{"binding": "a", "type": "Synchronization", "objects": null}, {"binding": "b", "type": "Event", "objects": 5}]"#,
            r#"[{"binding": "a", "type": "Synchronization", "objects": [{"object": {"n": 1}}]}]"#,
            r#"[{"bind\u0069ng": "esc", "snapshots": {"s": [{"obj\u0065ct": {"n": "\u00e9"}}]}}]"#,
            // Refused by the one-pass reading; the checked one decides.
            r#"[["binding", "a"]]"#,
            r#"[{"binding": 5}]"#,
            r#"[{"binding": "a", "snapshots": {"s": [["object", {}]]}}]"#,
            r#"[{"binding": "a", "snapshots": {"s": {}}}]"#,
            r#"[{"binding": "a", "type": "Synchronization", "objects": [1]}]"#,
            "\"\"",
            "[] x",
        ] {
            inputs.push(odd.to_string());
        }
        for (n, input) in inputs.iter().enumerate() {
            let fast = fast::contexts(input.as_bytes());
            if n < real {
                assert!(
                    fast.is_some(),
                    "real binding context {n} not read in one pass"
                );
            }
            if let Some(fast) = fast {
                let checked = checked_contexts(input.as_bytes());
                assert_eq!(
                    format!("{:?}", Ok::<_, BindingError>(Some(fast))),
                    format!("{checked:?}"),
                    "{input}"
                );
            }
        }
        // The odd inputs the one-pass reading accepts are at least the first six.
        assert!(inputs[real..real + 6]
            .iter()
            .all(|i| fast::contexts(i.as_bytes()).is_some()));
        assert!(inputs[real + 6..]
            .iter()
            .all(|i| fast::contexts(i.as_bytes()).is_none()));
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
