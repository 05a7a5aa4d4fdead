//! Binding-context parsing: the contexts shell-operator hands a hook run (docs/security.md, "Bad
//! input", for what is refused and how).
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
    pub(crate) fn snapshot(&self, binding: &str) -> Option<&[Value]> {
        self.snapshots.get(binding).map(Vec::as_slice)
    }

    /// The snapshot of a raw binding as JSON texts.
    pub(crate) fn raw_snapshot(&self, binding: &str) -> Option<&[&'a RawValue]> {
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
fn string_field(raw: Option<&RawValue>, key: &str) -> Result<String, String> {
    match raw {
        None => Ok(String::new()),
        Some(raw) if lead(raw) == b'n' => Ok(String::new()),
        Some(raw) if lead(raw) == b'"' => {
            serde_json::from_str(raw.get()).map_err(|e| format!("{key}: {e}"))
        }
        Some(raw) => Err(format!("\"{key}\" must be a string, got {}", type_of(raw))),
    }
}

/// A part of the input as read: what was expected, or the JSON type it was instead ("an
/// array", "null", …, for the message).
#[derive(Debug)]
enum Shaped<T> {
    Fit(T),
    Misfit(&'static str),
}

/// One context as read: the members the hook looks at, each the last of its key.
#[derive(Debug, Default)]
struct Ctx<'a> {
    binding: Option<&'a RawValue>,
    ty: Option<&'a RawValue>,
    snapshots: Option<Shaped<BTreeMap<String, Shaped<Items<'a>>>>>,
    /// Judged only once the context's type is known to be Synchronization.
    objects: Option<&'a RawValue>,
}

/// The items of one snapshot as read.
#[derive(Debug)]
struct Items<'a>(Vec<Shaped<Item<'a>>>);

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
    let Some(contexts) = read_contexts(input)? else {
        return Ok(BindingInput::default());
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

/// The contexts of `input`, read in one pass and then judged context by context, so an error
/// names the context, the binding and the item. `None` for the JSON string `""`.
///
/// The pass records what each part was instead of failing on the first misfit: JSON syntax is
/// judged first (anywhere in the document), then every context in order as the rules below
/// say. Where a key repeats, the last one counts, as in `serde_json`'s own maps.
fn read_contexts(input: &[u8]) -> Result<Option<Vec<Context<'_>>>, BindingError> {
    let text = match std::str::from_utf8(input) {
        Ok(text) => text,
        // serde_json says where the bytes stop being UTF-8.
        Err(e) => {
            return Err(BindingError::NotJson(
                serde_json::from_slice::<&RawValue>(input)
                    .err()
                    .unwrap_or_else(|| serde::de::Error::custom(e)),
            ))
        }
    };
    if text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first()
        != Some(&b'[')
    {
        let doc: &RawValue = serde_json::from_str(text).map_err(BindingError::NotJson)?;
        if doc.get().trim() == "\"\"" {
            return Ok(None);
        }
        return Err(BindingError::NotArray(type_of(doc)));
    }
    let contexts: Vec<Shaped<Ctx>> = serde_json::from_str(text).map_err(|e| {
        // A document that is not JSON is described as JSON's grammar sees it, whatever the
        // reading was looking for where it stopped (this only runs on the way out).
        BindingError::NotJson(serde_json::from_str::<&RawValue>(text).err().unwrap_or(e))
    })?;
    contexts
        .into_iter()
        .enumerate()
        .map(|(i, ctx)| match ctx {
            Shaped::Fit(ctx) => {
                judge(ctx).map_err(|problem| BindingError::Context { index: i, problem })
            }
            Shaped::Misfit(_) => Err(BindingError::ContextNotObject(i)),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// One context as read, judged; the error is what is wrong inside it.
fn judge(ctx: Ctx<'_>) -> Result<Context<'_>, String> {
    let binding = string_field(ctx.binding, "binding")?;
    let ty = string_field(ctx.ty, "type")?;
    let mut snapshots = BTreeMap::new();
    match ctx.snapshots {
        None | Some(Shaped::Misfit("null")) => {}
        Some(Shaped::Fit(snaps)) => {
            for (name, items) in snaps {
                let items = items_of(&name, items)?;
                snapshots.insert(name, items);
            }
        }
        Some(Shaped::Misfit(got)) => {
            return Err(format!("\"snapshots\" must be an object, got {got}"));
        }
    }
    let mut sync_objects = None;
    if ty == "Synchronization" {
        if let Some(raw) = ctx.objects.filter(|r| lead(r) != b'n') {
            // Read only now that the type is known: other contexts' `objects` are not looked at.
            let items = serde_json::from_str(raw.get())
                .map_err(|e| format!("snapshot {binding:?}: {e}"))?;
            sync_objects = Some(items_of(&binding, items)?);
        }
    }
    Ok(Context {
        binding,
        ty,
        snapshots,
        sync_objects,
    })
}

/// A snapshot (`[{object?, filterResult?}, …]`) as read, checked item by item.
fn items_of<'a>(binding: &str, items: Shaped<Items<'a>>) -> Result<Vec<Item<'a>>, String> {
    let items = match items {
        Shaped::Fit(items) => items,
        Shaped::Misfit(got) => {
            return Err(format!("snapshot {binding:?} must be an array, got {got}"));
        }
    };
    items
        .0
        .into_iter()
        .enumerate()
        .map(|(j, item)| match item {
            Shaped::Fit(item) => Ok(item),
            Shaped::Misfit(_) => Err(format!("snapshot {binding:?} item {j} is not an object")),
        })
        .collect()
}

/// The typed one-pass reading: only the members the hook reads are looked at (objects stay
/// slices of the input), and a part that is not of the expected JSON type is recorded as what
/// it was, to be judged afterwards.
mod read {
    use super::{Ctx, Item, Items, Shaped};
    use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    /// A part read from the one JSON type it fits; any other value is skipped.
    pub(super) trait Fit<'de>: Sized {
        fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }

    impl<'de, T: Fit<'de>> Deserialize<'de> for Shaped<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shaped<T>, D::Error> {
            d.deserialize_any(ShapeVisitor(PhantomData))
        }
    }

    struct ShapeVisitor<T>(PhantomData<T>);

    impl<'de, T: Fit<'de>> Visitor<'de> for ShapeVisitor<T> {
        type Value = Shaped<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shaped<T>, A::Error> {
            Ok(T::from_map(map)?.map_or(Shaped::Misfit("an object"), Shaped::Fit))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Shaped<T>, A::Error> {
            Ok(T::from_seq(seq)?.map_or(Shaped::Misfit("an array"), Shaped::Fit))
        }
        fn visit_str<E>(self, _: &str) -> Result<Shaped<T>, E> {
            Ok(Shaped::Misfit("a string"))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Shaped<T>, E> {
            Ok(Shaped::Misfit("a boolean"))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Shaped<T>, E> {
            Ok(Shaped::Misfit("a number"))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Shaped<T>, E> {
            Ok(Shaped::Misfit("a number"))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Shaped<T>, E> {
            Ok(Shaped::Misfit("a number"))
        }
        fn visit_unit<E>(self) -> Result<Shaped<T>, E> {
            Ok(Shaped::Misfit("null"))
        }
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

    impl<'de> Fit<'de> for Ctx<'de> {
        fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Ctx<'de>>, A::Error> {
            let mut c = Ctx::default();
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Binding => c.binding = Some(map.next_value()?),
                    Key::Type => c.ty = Some(map.next_value()?),
                    Key::Snapshots => c.snapshots = Some(map.next_value()?),
                    Key::Objects => c.objects = Some(map.next_value()?),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Some(c))
        }
    }

    impl<'de> Fit<'de> for BTreeMap<String, Shaped<Items<'de>>> {
        fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
            let mut snapshots = BTreeMap::new();
            while let Some((name, items)) = map.next_entry()? {
                snapshots.insert(name, items);
            }
            Ok(Some(snapshots))
        }
    }

    impl<'de> Fit<'de> for Items<'de> {
        fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Items<'de>>, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(Some(Items(items)))
        }
    }

    impl<'de> Fit<'de> for Item<'de> {
        fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Item<'de>>, A::Error> {
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
            Ok(Some(item))
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

    /// Every real binding context we have is read, and odd ones are read or refused as the
    /// rules say: the last of a repeated key counts, objects only where objects are expected.
    #[test]
    fn real_and_odd_contexts() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/binding-contexts");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(parse(text.as_bytes()).is_ok(), "{}", path.display());
            n += 1;
        }
        assert!(n >= 14);
        let names = |b: &BindingInput, s: &str| -> Vec<String> {
            b.snapshot(s)
                .unwrap()
                .iter()
                .map(|o| o.to_string())
                .collect()
        };
        let b = parse(br#"[{"binding": "a", "binding": "b", "type": null, "snapshots": null}]"#)
            .unwrap();
        assert_eq!(
            (b.triggers, b.types),
            (vec!["b".to_string()], vec![String::new()])
        );
        let b = parse(br#"[{"binding": "a", "snapshots": {"s": [{"object": null, "filterResult": {"x": 1}}, {"object": [1]}, {"object": {"a": 1}, "object": "x"}, {"filterResult": "y", "other": {}}]}}]"#).unwrap();
        assert_eq!(names(&b, "s"), [r#"{"x":1}"#]);
        let b = parse(br#"[{"binding": "a", "snapshots": {"s": [{"object": {"n": 0}}], "s": [{"object": {"n": 1}}]}}]"#).unwrap();
        assert_eq!(names(&b, "s"), [r#"{"n":1}"#]);
        // `objects` counts only in a Synchronization context, and is not looked at elsewhere.
        let b = parse(br#"[{"binding": "a", "type": "Synchronization", "objects": null}, {"binding": "b", "type": "Event", "objects": 5}, {"binding": "c", "type": "Synchronization", "objects": [{"object": {"n": 1}}]}]"#).unwrap();
        assert!(b.snapshot("a").is_none() && b.snapshot("b").is_none());
        assert_eq!(names(&b, "c"), [r#"{"n":1}"#]);
        let b = parse(
            br#"[{"bind\u0069ng": "esc", "snapshots": {"s": [{"obj\u0065ct": {"n": "\u00e9"}}]}}]"#,
        )
        .unwrap();
        assert_eq!(
            (b.triggers[0].as_str(), names(&b, "s")),
            ("esc", vec![r#"{"n":"é"}"#.to_string()])
        );
        // A misfit is judged only where it is the last of its key.
        let b =
            parse(br#"[{"binding": 5, "binding": "a", "snapshots": {"s": {}, "s": []}}]"#).unwrap();
        assert_eq!(names(&b, "s"), Vec::<String>::new());
        let cases: [(&[u8], &str); 12] = [
            (
                br#"[["binding", "a"]]"#,
                "binding context item 0 is not a JSON object",
            ),
            (
                br#"[{}, {"binding": 5}]"#,
                "binding context item 1: \"binding\" must be a string, got a number",
            ),
            (
                br#"[{"type": {}}]"#,
                "binding context item 0: \"type\" must be a string, got an object",
            ),
            (
                br#"[{"binding": "a", "snapshots": {"s": [{}, ["object", {}]]}}]"#,
                "binding context item 0: snapshot \"s\" item 1 is not an object",
            ),
            (
                br#"[{"binding": "a", "snapshots": {"t": 1, "s": {}}}]"#,
                "binding context item 0: snapshot \"s\" must be an array, got an object",
            ),
            (
                br#"[{"binding": "a", "snapshots": "s"}]"#,
                "binding context item 0: \"snapshots\" must be an object, got a string",
            ),
            (
                br#"[{"binding": "a", "type": "Synchronization", "objects": [1]}]"#,
                "binding context item 0: snapshot \"a\" item 0 is not an object",
            ),
            (
                br#"[{"binding": "a", "type": "Synchronization", "objects": true}]"#,
                "binding context item 0: snapshot \"a\" must be an array, got a boolean",
            ),
            // Syntax comes first, wherever it is.
            (
                br#"[{"binding": 5}, {"binding": "b"] "#,
                "binding context is not valid JSON: expected `,` or `}` at line 1 column 33",
            ),
            (
                b"[] x",
                "binding context is not valid JSON: trailing characters at line 1 column 4",
            ),
            (
                b"[\"\xff\"]",
                "binding context is not valid JSON: invalid unicode code point at line 1 column 3",
            ),
            (
                b"null",
                "binding context must be a JSON array of contexts, got null",
            ),
        ];
        for (input, error) in cases {
            let shown = String::from_utf8_lossy(input);
            assert_eq!(parse(input).unwrap_err().to_string(), error, "{shown}");
        }
        assert!(parse(b"\"\"").unwrap().triggers.is_empty());
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
