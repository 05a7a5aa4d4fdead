//! shell-operator object operations, the wire format of `$KUBERNETES_PATCH_PATH`
//! (docs/how-it-works.md, "The hook contract").
//!
//! Every operation is rendered as one JSON object per line; a JSON array is never written
//! (shell-operator cannot read one). The manifest type is a parameter: export writes plain
//! JSON, discovery its typed Istio objects (serialised straight from their fields, no JSON
//! tree in between). Nothing here knows what the objects are.

use serde::Serialize;
use serde_json::Value;
use std::io::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum Operation<O = Value> {
    CreateOrUpdate(O),
    CreateIfNotExists(O),
    Delete {
        api_version: String,
        kind: String,
        namespace: String,
        name: String,
    },
    JsonPatch {
        api_version: String,
        kind: String,
        namespace: String,
        name: String,
        patch: Vec<Value>,
    },
    /// Merge patch on the `status` subresource of a cluster-scoped object.
    StatusMergePatch {
        api_version: String,
        kind: String,
        name: String,
        patch: Value,
    },
}

impl<O: Serialize> Operation<O> {
    /// The operation as a JSON value (a copy; the writer serialises without one).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The wire form of an operation, borrowing the objects so writing them copies nothing.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a, O> {
    operation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<&'a O>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subresource: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json_patch: Option<&'a [Value]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    merge_patch: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignore_missing_object: Option<bool>,
}

impl<O: Serialize> Serialize for Operation<O> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let none = Wire {
            operation: "",
            object: None,
            api_version: None,
            kind: None,
            namespace: None,
            name: None,
            subresource: None,
            json_patch: None,
            merge_patch: None,
            ignore_missing_object: None,
        };
        let w = match self {
            Operation::CreateOrUpdate(o) => Wire {
                operation: "CreateOrUpdate",
                object: Some(o),
                ..none
            },
            Operation::CreateIfNotExists(o) => Wire {
                operation: "CreateIfNotExists",
                object: Some(o),
                ..none
            },
            Operation::Delete {
                api_version,
                kind,
                namespace,
                name,
            } => Wire {
                operation: "Delete",
                api_version: Some(api_version),
                kind: Some(kind),
                namespace: Some(namespace),
                name: Some(name),
                ..none
            },
            Operation::JsonPatch {
                api_version,
                kind,
                namespace,
                name,
                patch,
            } => Wire {
                operation: "JSONPatch",
                api_version: Some(api_version),
                kind: Some(kind),
                namespace: Some(namespace),
                name: Some(name),
                json_patch: Some(patch),
                ..none
            },
            Operation::StatusMergePatch {
                api_version,
                kind,
                name,
                patch,
            } => Wire {
                operation: "MergePatch",
                api_version: Some(api_version),
                kind: Some(kind),
                name: Some(name),
                subresource: Some("status"),
                merge_patch: Some(patch),
                ignore_missing_object: Some(true),
                ..none
            },
        };
        w.serialize(s)
    }
}

/// Writes one operation as one NDJSON line.
pub fn write_one<W: Write, O: Serialize>(out: &mut W, op: &Operation<O>) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, op)?;
    out.write_all(b"\n")
}

/// Writes operations as NDJSON.
pub fn write_ndjson<W: Write, O: Serialize>(
    mut out: W,
    ops: &[Operation<O>],
) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
