//! shell-operator object operations (`$KUBERNETES_PATCH_PATH`, protocol §4.1) and the diff of
//! desired objects against the observed ones.
//!
//! Every operation is rendered as one JSON object per line; a JSON array is never written
//! (shell-operator cannot read one). Objects to create never carry server-owned metadata.

use crate::k8s;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    CreateOrUpdate(Value),
    CreateIfNotExists(Value),
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

impl Operation {
    /// The operation as a JSON value (a copy; the writer serialises without one).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Whether this operation removes something (used by tests and the bad-input guard).
    pub fn is_delete(&self) -> bool {
        matches!(self, Operation::Delete { .. })
    }
}

/// The wire form of an operation, borrowing the objects so writing them copies nothing.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    operation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<&'a Value>,
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

impl serde::Serialize for Operation {
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

/// Writes operations as NDJSON.
pub fn write_ndjson<W: Write>(mut out: W, ops: &[Operation]) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Metadata fields the API server owns; copying them into a create makes the POST fail.
const SERVER_OWNED: [&str; 7] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
];

/// Whether `observed` already is `desired` as far as we care: same spec, and every label and
/// annotation we set present with our value (other writers' labels are fine).
fn matches(desired: &Value, observed: &Value) -> bool {
    if desired.get("spec") != observed.get("spec") {
        return false;
    }
    for field in ["labels", "annotations"] {
        let want = desired
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object);
        let have = observed
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object);
        if let Some(want) = want {
            for (k, v) in want {
                if have.and_then(|h| h.get(k)) != Some(v) {
                    return false;
                }
            }
        }
    }
    true
}

/// The object to PUT: desired, plus labels and annotations other writers put on the live
/// object (CreateOrUpdate is a full update and would otherwise drop them).
fn with_foreign_metadata(desired: Value, observed: &Value) -> Value {
    let mut out = desired;
    for field in ["labels", "annotations"] {
        let Some(have) = observed
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        let target = meta
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(target) = target.as_object_mut() {
            for (k, v) in have {
                if !target.contains_key(k) && !k.starts_with("kubectl.kubernetes.io/") {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in SERVER_OWNED {
            meta.remove(f);
        }
    }
    if let Some(o) = out.as_object_mut() {
        o.remove("status");
    }
    out
}

/// Diffs desired managed objects of one kind against the observed ones. `observed == None`
/// means the run has no snapshot of that kind: then everything desired is (idempotently)
/// written and nothing is deleted, because we cannot know what exists.
/// `keep` names observed objects that must survive even if not desired (objects of a
/// federation whose spec could not be read this run).
pub fn diff_managed(
    desired: Vec<Value>,
    observed: Option<&[Value]>,
    keep: &dyn Fn(&Value) -> bool,
) -> (Vec<Operation>, Vec<Operation>) {
    let mut by_name: BTreeMap<&str, &Value> = BTreeMap::new();
    for o in observed.unwrap_or(&[]) {
        if let Some(n) = k8s::name(o) {
            by_name.insert(n, o);
        }
    }
    let mut writes = Vec::new();
    let mut wanted: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for d in desired {
        let Some(name) = k8s::name(&d).map(str::to_string) else {
            continue;
        };
        match by_name.get(name.as_str()) {
            Some(o) if matches(&d, o) => {}
            Some(o) => writes.push(Operation::CreateOrUpdate(with_foreign_metadata(d, o))),
            None => writes.push(Operation::CreateOrUpdate(d)),
        }
        wanted.insert(name);
    }
    let mut deletes = Vec::new();
    for (name, o) in by_name {
        if wanted.contains(name) || !k8s::is_managed(o) || keep(o) {
            continue;
        }
        let (Some(api_version), Some(kind), Some(namespace)) = (
            o.get("apiVersion").and_then(Value::as_str),
            o.get("kind").and_then(Value::as_str),
            k8s::namespace(o),
        ) else {
            log::warn!(target: "diff", "managed object {name} lacks apiVersion, kind or namespace; not deleted");
            continue;
        };
        deletes.push(Operation::Delete {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        });
    }
    (writes, deletes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, managed: bool, spec: Value) -> Value {
        let mut labels = json!({"team": "x"});
        if managed {
            labels[k8s::MANAGED_BY_LABEL] = json!(k8s::MANAGED_BY_VALUE);
        }
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "d8-istio", "labels": labels, "resourceVersion": "5", "uid": "u"},
            "spec": spec, "status": {"addresses": []}})
    }

    #[test]
    fn unchanged_objects_produce_nothing_and_unmanaged_are_never_deleted() {
        let mut desired = obj("a", true, json!({"hosts": ["a"]}));
        desired["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("team");
        let observed = vec![
            obj("a", true, json!({"hosts": ["a"]})),
            obj("foreign", false, json!({})),
            obj("stale", true, json!({})),
        ];
        let (w, d) = diff_managed(vec![desired], Some(&observed), &|_| false);
        assert!(w.is_empty());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_json()["name"], "stale");
    }

    #[test]
    fn updates_strip_server_fields_and_keep_foreign_labels() {
        let desired = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
            "metadata": {"name": "a", "namespace": "d8-istio", "labels": {k8s::MANAGED_BY_LABEL: k8s::MANAGED_BY_VALUE}},
            "spec": {"hosts": ["new"]}});
        let observed = vec![obj("a", true, json!({"hosts": ["old"]}))];
        let (w, d) = diff_managed(vec![desired], Some(&observed), &|_| false);
        assert!(d.is_empty());
        let o = w[0].to_json();
        assert_eq!(o["object"]["metadata"]["labels"]["team"], "x");
        assert!(o["object"]["metadata"].get("resourceVersion").is_none());
        assert!(o["object"]["metadata"].get("uid").is_none());
        assert!(o["object"].get("status").is_none());
        assert_eq!(o["object"]["spec"]["hosts"][0], "new");
    }

    #[test]
    fn unknown_observed_state_never_deletes() {
        let (w, d) = diff_managed(vec![], None, &|_| false);
        assert!(w.is_empty() && d.is_empty());
    }
}
