//! The IstioFederation object (`deckhouse.io/v1alpha1`, cluster-scoped; reference §1) as the
//! hook reads it: spec fields, and the status it (or Deckhouse) cached earlier.

use crate::hook::k8s;
use crate::protocol::labels::DISTRUST_ROOTS_ANNOTATION;
use crate::protocol::names;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

pub const API_VERSION: &str = "deckhouse.io/v1alpha1";
pub const KIND: &str = "IstioFederation";

#[derive(Debug, Clone)]
pub struct Federation {
    pub name: String,
    pub trust_domain: String,
    pub metadata_endpoint: String,
    /// Extra CA for the peer's metadata endpoint (`spec.metadata.clusterCA`, also `ca`).
    pub cluster_ca: Option<String>,
    pub insecure: bool,
    /// `status.metadataCache.public`, if any.
    pub cached_public: Option<Value>,
    pub public_fetched_at: Option<String>,
    /// `status.metadataCache.private`, if any, as its JSON text: it is the bulk of a
    /// federation (every exported service) and is read once, by validation, so it is not held
    /// as a JSON tree for the whole run.
    pub cached_private: Option<Box<RawValue>>,
    pub private_fetched_at: Option<String>,
    /// `status.conditions` as stored (objects only).
    pub conditions: Vec<Value>,
    /// `status.retiredRoots` as stored, unvalidated (see `discovery::retention`).
    pub retired_roots: Option<Value>,
    /// The `federation.istio.deckhouse.io/distrust-roots` annotation, unparsed.
    pub distrust_roots: Option<String>,
}

/// The parts of an IstioFederation object the hook reads, however it was given.
struct Parts<'v> {
    name: Option<&'v str>,
    spec: Option<&'v Value>,
    cache_public: Option<&'v Value>,
    cache_private: Option<Box<RawValue>>,
    public_ts: Option<&'v Value>,
    private_ts: Option<&'v Value>,
    conditions: Option<&'v Value>,
    retired_roots: Option<&'v Value>,
    distrust_roots: Option<&'v str>,
}

/// The typed shape of a well-formed object: only what the hook reads is parsed, and the
/// private metadata cache stays text. Anything that does not fit this shape is read through
/// [`Federation::parse`] instead, so both paths agree on odd input. Every level is checked to
/// be a JSON object first (serde would also read a struct from an array).
#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    spec: Option<Value>,
    #[serde(default, borrow)]
    status: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MetaDoc {
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    annotations: Option<Value>,
}

#[derive(Deserialize)]
struct StatusDoc<'a> {
    #[serde(default, rename = "metadataCache", borrow)]
    cache: Option<&'a RawValue>,
    #[serde(default)]
    conditions: Option<Value>,
    #[serde(default, rename = "retiredRoots")]
    retired_roots: Option<Value>,
}

#[derive(Deserialize)]
struct CacheDoc<'a> {
    #[serde(default)]
    public: Option<Value>,
    #[serde(default, borrow)]
    private: Option<&'a RawValue>,
    #[serde(default, rename = "publicLastFetchTimestamp")]
    public_ts: Option<Value>,
    #[serde(default, rename = "privateLastFetchTimestamp")]
    private_ts: Option<Value>,
}

/// `text` as `T` if it is a JSON object of that shape.
fn object<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// An optional nested object: absent or null is `Some(None)`, a misfit is `None`.
fn nested<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<Option<T>> {
    match raw {
        None => Some(None),
        Some(r) => object(r.get()).map(Some),
    }
}

/// The typed read of one object's text, or `None` when it does not fit the shape.
struct Typed<'a> {
    doc: Doc<'a>,
    meta: Option<MetaDoc>,
    status: Option<StatusDoc<'a>>,
    cache: Option<CacheDoc<'a>>,
}

impl<'a> Typed<'a> {
    fn read(text: &'a str) -> Option<Typed<'a>> {
        let doc: Doc = object(text)?;
        let meta = nested(doc.metadata)?;
        let status: Option<StatusDoc> = nested(doc.status)?;
        let cache = nested(status.as_ref().and_then(|s| s.cache))?;
        Some(Typed {
            doc,
            meta,
            status,
            cache,
        })
    }
}

impl Federation {
    /// Parses one snapshot object. `Err` names the object and the field that is wrong.
    pub fn parse(obj: &Value) -> Result<Federation, String> {
        let cache = obj.pointer("/status/metadataCache");
        let at = |key: &str| cache.and_then(|c| c.get(key));
        Federation::from_parts(Parts {
            name: k8s::name(obj),
            spec: obj.get("spec"),
            cache_public: at("public"),
            cache_private: at("private")
                .filter(|v| !v.is_null())
                .and_then(|v| serde_json::value::to_raw_value(v).ok()),
            public_ts: at("publicLastFetchTimestamp"),
            private_ts: at("privateLastFetchTimestamp"),
            conditions: obj.pointer("/status/conditions"),
            retired_roots: obj.pointer("/status/retiredRoots"),
            distrust_roots: k8s::annotation(obj, DISTRUST_ROOTS_ANNOTATION),
        })
    }

    /// Parses one snapshot object from its JSON text: the same result as [`Federation::parse`]
    /// of the parsed text, without building the object's JSON tree. `Err` carries the object's
    /// name ("" when it has none or the text is not JSON) and what is wrong.
    pub fn parse_json(text: &str) -> Result<Federation, (String, String)> {
        let Some(t) = Typed::read(text) else {
            let v: Value = serde_json::from_str(text).map_err(|e| {
                (
                    String::new(),
                    format!("IstioFederation snapshot object unreadable ({e})"),
                )
            })?;
            return Federation::parse(&v).map_err(|e| (k8s::name(&v).unwrap_or("").to_string(), e));
        };
        let cache = t.cache.as_ref();
        let name = t
            .meta
            .as_ref()
            .and_then(|m| m.name.as_ref())
            .and_then(Value::as_str);
        Federation::from_parts(Parts {
            name,
            spec: t.doc.spec.as_ref(),
            cache_public: cache.and_then(|c| c.public.as_ref()),
            cache_private: cache.and_then(|c| c.private).map(|r| r.to_owned()),
            public_ts: cache.and_then(|c| c.public_ts.as_ref()),
            private_ts: cache.and_then(|c| c.private_ts.as_ref()),
            conditions: t.status.as_ref().and_then(|s| s.conditions.as_ref()),
            retired_roots: t.status.as_ref().and_then(|s| s.retired_roots.as_ref()),
            distrust_roots: t
                .meta
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(DISTRUST_ROOTS_ANNOTATION))
                .and_then(Value::as_str),
        })
        .map_err(|e| (name.unwrap_or("").to_string(), e))
    }

    fn from_parts(p: Parts) -> Result<Federation, String> {
        let name = p
            .name
            .filter(|n| !n.is_empty())
            .ok_or("IstioFederation without metadata.name")?
            .to_string();
        let field = |path: &str| p.spec.and_then(|s| s.pointer(path));
        let trust_domain = match field("/trustDomain") {
            Some(Value::String(s)) if names::is_trust_domain(s) => s.clone(),
            Some(Value::String(s)) => {
                return Err(format!("IstioFederation {name}: spec.trustDomain {s:?} does not match ^[0-9a-zA-Z._-]+$"));
            }
            _ => {
                return Err(format!(
                    "IstioFederation {name}: spec.trustDomain must be a non-empty string"
                ))
            }
        };
        let metadata_endpoint = match field("/metadataEndpoint") {
            Some(Value::String(s)) if s.starts_with("https://") && s.len() > "https://".len() => {
                s.clone()
            }
            Some(Value::String(s)) => {
                return Err(format!(
                    "IstioFederation {name}: spec.metadataEndpoint {s:?} must be an https:// URL"
                ));
            }
            _ => {
                return Err(format!(
                    "IstioFederation {name}: spec.metadataEndpoint must be a non-empty string"
                ))
            }
        };
        let string_opt = |path: &str| -> Result<Option<String>, String> {
            match field(path) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!(
                    "IstioFederation {name}: spec{} must be a string",
                    path.replace('/', ".")
                )),
            }
        };
        let cluster_ca = match string_opt("/metadata/clusterCA")? {
            Some(ca) => Some(ca),
            None => string_opt("/metadata/ca")?,
        };
        let insecure = match field("/metadata/enableInsecureConnection") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(format!("IstioFederation {name}: spec.metadata.enableInsecureConnection must be a boolean"));
            }
        };
        // Anything present in the cache is kept, even if it is not an object: validation then
        // reports it as unusable (and the federation's objects are kept), instead of it
        // reading as "absent".
        let timestamp = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let conditions = p
            .conditions
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|c| c.get("type").is_some_and(Value::is_string))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(Federation {
            name,
            trust_domain,
            metadata_endpoint,
            cluster_ca,
            insecure,
            cached_public: p.cache_public.filter(|v| !v.is_null()).cloned(),
            public_fetched_at: timestamp(p.public_ts),
            cached_private: p.cache_private,
            private_fetched_at: timestamp(p.private_ts),
            conditions,
            retired_roots: p.retired_roots.filter(|v| !v.is_null()).cloned(),
            distrust_roots: p.distrust_roots.map(str::to_string),
        })
    }

    fn base_url(&self) -> &str {
        self.metadata_endpoint.trim_end_matches('/')
    }

    /// `<endpoint without trailing slashes>/public/public.json`.
    pub fn public_url(&self) -> String {
        format!("{}/public/public.json", self.base_url())
    }

    /// `<endpoint without trailing slashes>/private/federation.json`.
    pub fn private_url(&self) -> String {
        format!("{}/private/federation.json", self.base_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fed(spec: Value) -> Result<Federation, String> {
        Federation::parse(&json!({"metadata": {"name": "b"}, "spec": spec}))
    }

    /// Everything a federation carries, comparable (the private cache as parsed JSON).
    fn summary(f: &Federation) -> Value {
        json!({
            "name": f.name, "trustDomain": f.trust_domain, "endpoint": f.metadata_endpoint,
            "ca": f.cluster_ca, "insecure": f.insecure, "public": f.cached_public,
            "publicAt": f.public_fetched_at,
            "private": f.cached_private.as_ref().map(|r| serde_json::from_str::<Value>(r.get()).unwrap()),
            "privateAt": f.private_fetched_at, "conditions": f.conditions,
            "retired": f.retired_roots, "distrust": f.distrust_roots,
        })
    }

    #[test]
    fn json_text_and_tree_read_alike() {
        let spec = r#""spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/m/", "metadata": {"clusterCA": "PEM", "enableInsecureConnection": false}}"#;
        let texts = [
            // Well-formed, with fields the hook ignores.
            format!(
                r#"{{"metadata": {{"name": "b", "managedFields": [{{"x": 1}}]}}, {spec}, "status": {{"metadataCache": {{"public": {{"clusterUUID": "u"}}, "publicLastFetchTimestamp": "2026-01-01T00:00:00Z", "private": {{"publicServices": [], "ingressGateways": [{{"address": "1.2.3.4", "port": 1}}]}}, "privateLastFetchTimestamp": "t"}}, "conditions": [{{"type": "A"}}, 5, {{"no": "type"}}]}}}}"#
            ),
            // Null and odd-typed parts: the typed shape does not fit, the tree path decides.
            format!(r#"{{"metadata": {{"name": "b"}}, {spec}, "status": null}}"#),
            format!(r#"{{"metadata": {{"name": "b"}}, {spec}, "status": "weird"}}"#),
            format!(
                r#"{{"metadata": {{"name": "b"}}, {spec}, "status": {{"metadataCache": {{"public": null, "private": null}}}}}}"#
            ),
            format!(
                r#"{{"metadata": {{"name": "b"}}, {spec}, "status": {{"metadataCache": {{"public": 5, "private": "text", "publicLastFetchTimestamp": 7}}, "conditions": {{}}}}}}"#
            ),
            format!(
                r#"{{"metadata": {{"name": "b"}}, {spec}, "status": {{"metadataCache": [1]}}}}"#
            ),
            format!(
                r#"{{"metadata": {{"name": "b"}}, {spec}, "status": [{{"metadataCache": {{"public": 1}}}}, [5]]}}"#
            ),
            format!(r#"{{"metadata": {{"name": "b", "name": "c"}}, {spec}}}"#),
            // Rotation state and the distrust annotation, well-formed and odd.
            format!(
                r#"{{"metadata": {{"name": "b", "annotations": {{"federation.istio.deckhouse.io/distrust-roots": "AB, cd"}}}}, {spec}, "status": {{"retiredRoots": [{{"fingerprint": "ab"}}]}}}}"#
            ),
            format!(
                r#"{{"metadata": {{"name": "b", "annotations": {{"federation.istio.deckhouse.io/distrust-roots": 5}}}}, {spec}, "status": {{"retiredRoots": "junk"}}}}"#
            ),
            format!(
                r#"{{"metadata": {{"name": "b", "annotations": []}}, {spec}, "status": {{"retiredRoots": null}}}}"#
            ),
        ];
        for text in &texts {
            let tree = Federation::parse(&serde_json::from_str(text).unwrap()).unwrap();
            let fast = Federation::parse_json(text).unwrap();
            assert_eq!(summary(&fast), summary(&tree), "{text}");
        }
        // Errors name the same object and say the same thing.
        for text in [
            r#"{"metadata": {"name": "b"}, "spec": {"trustDomain": 5}}"#,
            r#"{"metadata": "b", "spec": {}}"#,
            r#"[{"name": "b"}, {"trustDomain": "b", "metadataEndpoint": "https://h"}]"#,
            r#"{"spec": {"trustDomain": "b", "metadataEndpoint": "https://h"}}"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            let tree = Federation::parse(&v).unwrap_err();
            let (name, fast) = Federation::parse_json(text).unwrap_err();
            assert_eq!(fast, tree, "{text}");
            assert_eq!(name, k8s::name(&v).unwrap_or(""), "{text}");
        }
    }

    #[test]
    fn urls_trim_every_trailing_slash() {
        for ep in [
            "https://h/metadata/",
            "https://h/metadata",
            "https://h/metadata//",
        ] {
            let f = fed(json!({"trustDomain": "b.local", "metadataEndpoint": ep})).unwrap();
            assert_eq!(f.public_url(), "https://h/metadata/public/public.json");
            assert_eq!(
                f.private_url(),
                "https://h/metadata/private/federation.json"
            );
        }
    }

    #[test]
    fn spec_errors_name_object_and_field() {
        let e = fed(json!({"metadataEndpoint": "https://h/"})).unwrap_err();
        assert_eq!(
            e,
            "IstioFederation b: spec.trustDomain must be a non-empty string"
        );
        let e = fed(json!({"trustDomain": "b c", "metadataEndpoint": "https://h/"})).unwrap_err();
        assert!(e.contains("spec.trustDomain"));
        let e = fed(json!({"trustDomain": "b", "metadataEndpoint": "http://h/"})).unwrap_err();
        assert!(e.contains("spec.metadataEndpoint"));
        let e = fed(json!({"trustDomain": "b", "metadataEndpoint": "https://h/", "metadata": {"enableInsecureConnection": "yes"}}))
            .unwrap_err();
        assert!(e.contains("enableInsecureConnection"));
        let f = fed(json!({"trustDomain": "b", "metadataEndpoint": "https://h/", "metadata": {"ca": "PEM"}})).unwrap();
        assert_eq!(f.cluster_ca.as_deref(), Some("PEM"));
    }
}
