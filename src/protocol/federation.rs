//! The IstioFederation object (`deckhouse.io/v1alpha1`, cluster-scoped; docs/how-it-works.md,
//! "Remote discovery") as the hook reads it: spec fields, and the status it (or Deckhouse) cached
//! earlier.

use crate::hook::k8s;
use crate::protocol::names;
use crate::protocol::text;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

pub(crate) const API_VERSION: &str = "deckhouse.io/v1alpha1";
pub(crate) const KIND: &str = "IstioFederation";

/// A spec that can be read but must not be acted on as it stands (docs/reference/conditions.md,
/// `InvalidSpec`): the object is named, so the problem goes to its conditions instead of
/// freezing every federation as an unreadable spec does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecProblem {
    /// `spec.trustDomain` is not a trust domain a peer may have: nothing is fetched, imported
    /// or trusted for the federation; its ServiceEntries stay.
    TrustDomain(String),
    /// `spec.metadataEndpoint` carries user information: no request is made (the cached
    /// metadata is still used, as for a peer that is down).
    MetadataEndpoint(String),
}

impl SpecProblem {
    /// The operator-facing message; it names the field and never shows credentials.
    pub(crate) fn message(&self) -> &str {
        match self {
            SpecProblem::TrustDomain(m) | SpecProblem::MetadataEndpoint(m) => m,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Federation {
    pub name: String,
    pub trust_domain: String,
    /// `spec.metadataEndpoint`, with any user information replaced by `***` (it is refused,
    /// see [`SpecProblem::MetadataEndpoint`], and must never be printed or sent).
    pub metadata_endpoint: String,
    /// Why the spec, though readable, must not be acted on as it stands.
    pub spec_problem: Option<SpecProblem>,
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
    /// `spec.import`, or what is wrong with it (naming the field). A wrong import policy is
    /// not a wrong federation: the rest of the spec still works, and discovery keeps what
    /// this federation imported earlier until it is fixed (docs/sharing.md).
    pub import: Result<ImportSpec, String>,
    /// `status.retiredRoots` as stored, unvalidated (see `discovery::trust::retention`).
    pub retired_roots: Option<Value>,
    /// The `federation.istio.deckhouse.io/distrust-roots` annotation, unparsed.
    pub distrust_roots: Option<String>,
    /// The `federation.istio.deckhouse.io/repin-cluster-uuid` annotation: the peer UUID the
    /// operator re-pins this federation to (README, "Remote discovery").
    pub repin_uuid: Option<String>,
    /// The `federation.istio.deckhouse.io/accept-cluster-local-trust-domain` annotation is
    /// `"true"`: `spec.trustDomain: cluster.local` is accepted (README, "Security").
    pub accept_cluster_local: bool,
}

/// `spec.import`: which remote hosts are imported and for which namespaces (docs/sharing.md). Each
/// list is validated as a whole; matching is discovery's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSpec {
    /// `spec.import.hosts`: host globs, at least one of which a host must match; `None` (the
    /// field absent) imports every host.
    pub hosts: Option<Vec<String>>,
    /// `spec.import.excludeHosts`: host globs no imported host may match.
    pub exclude_hosts: Vec<String>,
    /// `spec.import.exportTo`: Istio `exportTo` entries for this federation's ServiceEntries
    /// and DestinationRules; `None` leaves the field unset (visible in every namespace).
    pub export_to: Option<Vec<String>>,
}

/// Whether `s` can be a host glob: what a remote host may contain (lower-case letters,
/// digits, `-`, `.`) and `*`. Remote hosts are lower case, so an upper-case letter could never
/// match and is refused rather than silently importing nothing.
pub(crate) fn is_host_glob(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.' | b'*')
        })
}

/// A list of host globs at `spec.import.<field>`; `Ok(None)` when absent or null.
fn host_globs(v: Option<&Value>, field: &str) -> Result<Option<Vec<String>>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(format!("spec.import.{field} must be a list of host globs")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if is_host_glob(s) => out.push(s.clone()),
            Value::String(s) => {
                return Err(format!(
                    "spec.import.{field}[{i}] {s:?} is not a host glob: only lower-case letters, digits, '-', '.' and '*' (remote hosts are lower case)"
                ))
            }
            _ => return Err(format!("spec.import.{field}[{i}] must be a string")),
        }
    }
    Ok(Some(out))
}

/// `spec.import.exportTo` checked as Istio's webhook checks `exportTo` of a DestinationRule
/// (which is stricter than a ServiceEntry's: no `~`), since both objects carry it: each entry
/// `.`, `*` or a namespace name (a DNS-1123 label), none twice, and `*` only on its own.
fn export_to(v: Option<&Value>) -> Result<Option<Vec<String>>, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err("spec.import.exportTo is empty: leave it out to make imported services visible in every namespace, or name namespaces".into())
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err("spec.import.exportTo must be a list of namespaces".into()),
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(format!("spec.import.exportTo[{i}] must be a string"));
        };
        if s == "~" {
            return Err(format!(
                "spec.import.exportTo[{i}] \"~\" is not allowed: Istio accepts it on ServiceEntries only, and the DestinationRules carry exportTo too (to import nothing, set spec.import.hosts: [])"
            ));
        }
        if s != "." && s != "*" && !k8s::is_dns1123_label(s) {
            return Err(format!(
                "spec.import.exportTo[{i}] {s:?} must be '.', '*' or a namespace name (a DNS-1123 label)"
            ));
        }
        if out.contains(s) {
            return Err(format!("spec.import.exportTo[{i}] {s:?} is listed twice"));
        }
        out.push(s.clone());
    }
    if out.len() > 1 && out.iter().any(|e| e == "*") {
        return Err(
            "spec.import.exportTo: '*' (every namespace) cannot be combined with other entries"
                .into(),
        );
    }
    Ok(Some(out))
}

/// `spec.import` as a whole; the default when absent or null.
fn import_spec(v: Option<&Value>) -> Result<ImportSpec, String> {
    let m = match v {
        None | Some(Value::Null) => return Ok(ImportSpec::default()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("spec.import must be an object".into()),
    };
    Ok(ImportSpec {
        hosts: host_globs(m.get("hosts"), "hosts")?,
        exclude_hosts: host_globs(m.get("excludeHosts"), "excludeHosts")?.unwrap_or_default(),
        export_to: export_to(m.get("exportTo"))?,
    })
}

/// The parts of an IstioFederation object the hook reads, as one typed reading takes them
/// from the object's JSON text or from its JSON tree alike: each member the last of its key,
/// the private metadata cache kept as text (it is read once, by validation), everything else
/// skipped unread. A part that is not a JSON object where one is expected reads as empty, as a
/// lookup in a JSON tree finds nothing in it (serde's derived structs would also read a struct
/// from an array, and refuse a repeated key).
struct Parts {
    name: Option<Value>,
    spec: Option<Value>,
    cache_public: Option<Value>,
    cache_private: Option<Box<RawValue>>,
    public_ts: Option<Value>,
    private_ts: Option<Value>,
    conditions: Option<Value>,
    retired_roots: Option<Value>,
    /// The distrust annotation, when it is a string.
    distrust_roots: Option<String>,
    /// The re-pin annotation, when it is a string.
    repin_uuid: Option<String>,
    /// The cluster.local opt-in annotation, when it is a string.
    accept_cluster_local: Option<String>,
}

impl Federation {
    /// Parses one snapshot object. `Err` names the object and the field that is wrong.
    pub fn parse(obj: &Value) -> Result<Federation, String> {
        let parts = Parts::deserialize(obj).map_err(|e| e.to_string())?;
        Federation::from_parts(parts)
    }

    /// Parses one snapshot object from its JSON text: the same result as [`Federation::parse`]
    /// of the parsed text, without building the object's JSON tree. `Err` carries the object's
    /// name ("" when it has none or the text is not JSON) and what is wrong.
    pub(crate) fn parse_json(text: &str) -> Result<Federation, (String, String)> {
        let parts: Parts = serde_json::from_str(text).map_err(|e| {
            (
                String::new(),
                format!("IstioFederation snapshot object unreadable ({e})"),
            )
        })?;
        let name = parts
            .name
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Federation::from_parts(parts).map_err(|e| (name, e))
    }

    fn from_parts(p: Parts) -> Result<Federation, String> {
        let name = p
            .name
            .as_ref()
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("IstioFederation without metadata.name")?
            .to_string();
        let field = |path: &str| p.spec.as_ref().and_then(|s| s.pointer(path));
        // A readable but unusable trust domain is a problem of this federation only (its
        // conditions say so); a missing one leaves the object unreadable.
        let trust_domain = match field("/trustDomain") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(format!(
                    "IstioFederation {name}: spec.trustDomain must be a non-empty string"
                ))
            }
        };
        let metadata_endpoint = match field("/metadataEndpoint") {
            Some(Value::String(s)) if s.starts_with("https://") && s.len() > "https://".len() => {
                names::redact_url(s)
            }
            Some(Value::String(s)) => {
                return Err(format!(
                    "IstioFederation {name}: spec.metadataEndpoint {:?} must be an https:// URL",
                    shorten(&names::redact_url(s))
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
        let import = import_spec(field("/import"));
        // Anything present in the cache is kept, even if it is not an object: validation then
        // reports it as unusable (and the federation's objects are kept), instead of it
        // reading as "absent".
        let timestamp = |v: Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_string);
        let conditions = p
            .conditions
            .as_ref()
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|c| c.get("type").is_some_and(Value::is_string))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        // `cluster.local` only with the operator's opt-in (at most one federation: decided
        // across federations by [`limit_cluster_local`]).
        let opted_in = trust_domain == names::LOCAL_TRUST_DOMAIN_ALIAS
            && p.accept_cluster_local.as_deref().map(str::trim) == Some("true");
        let spec_problem = names::peer_trust_domain_problem(&trust_domain)
            .filter(|_| !opted_in)
            .map(SpecProblem::TrustDomain)
            .or_else(|| {
                names::has_userinfo(&metadata_endpoint).then(|| {
                    SpecProblem::MetadataEndpoint(format!(
                        "spec.metadataEndpoint {:?} carries user information (user:password@), which would be sent to the peer: remove it, the hook authenticates with its own signed token",
                        shorten(&metadata_endpoint)
                    ))
                })
            });
        Ok(Federation {
            name,
            trust_domain,
            metadata_endpoint,
            spec_problem,
            cluster_ca,
            insecure,
            cached_public: p.cache_public.filter(|v| !v.is_null()),
            public_fetched_at: timestamp(p.public_ts),
            cached_private: p.cache_private,
            private_fetched_at: timestamp(p.private_ts),
            conditions,
            import,
            retired_roots: p.retired_roots.filter(|v| !v.is_null()),
            distrust_roots: p.distrust_roots,
            repin_uuid: p.repin_uuid,
            accept_cluster_local: opted_in,
        })
    }

    /// Whether this federation is a peer on Istio's default trust domain `cluster.local`,
    /// accepted by the operator's annotation (docs/security.md, "A peer on cluster.local").
    pub(crate) fn is_accepted_cluster_local(&self) -> bool {
        self.accept_cluster_local && self.spec_problem.is_none()
    }

    /// Whether this federation's metadata endpoint may be asked: its spec has no problem.
    pub(crate) fn may_fetch(&self) -> bool {
        self.spec_problem.is_none()
    }

    fn base_url(&self) -> &str {
        self.metadata_endpoint.trim_end_matches('/')
    }

    /// `<endpoint without trailing slashes>/public/public.json`.
    pub(crate) fn public_url(&self) -> String {
        format!("{}/public/public.json", self.base_url())
    }

    /// `<endpoint without trailing slashes>/private/federation.json`.
    pub(crate) fn private_url(&self) -> String {
        format!("{}/private/federation.json", self.base_url())
    }
}

/// At most one IstioFederation may name `cluster.local`, even with the opt-in annotation: the
/// first by name keeps it, every other one is refused (`InvalidSpec`) naming it. `feds` in name
/// order.
pub(crate) fn limit_cluster_local(feds: &mut [Federation]) {
    let mut first: Option<String> = None;
    for fed in feds.iter_mut().filter(|f| f.is_accepted_cluster_local()) {
        match &first {
            None => first = Some(fed.name.clone()),
            Some(owner) => {
                fed.spec_problem = Some(SpecProblem::TrustDomain(format!(
                    "spec.trustDomain \"cluster.local\" is already accepted for IstioFederation {owner}, and at most one IstioFederation may name it"
                )));
            }
        }
    }
}

/// At most 100 characters of `s` in messages.
fn shorten(s: &str) -> String {
    text::shorten(s, text::Limit::bytes(100, 97, "..."))
}

/// The one typed reading of an IstioFederation object (see [`Parts`]).
mod read {
    use super::Parts;
    use crate::protocol::labels::{
        ACCEPT_CLUSTER_LOCAL_ANNOTATION, DISTRUST_ROOTS_ANNOTATION, REPIN_CLUSTER_UUID_ANNOTATION,
    };
    use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;
    use serde_json::Value;
    use std::borrow::Cow;
    use std::fmt;
    use std::marker::PhantomData;

    impl<'de> Deserialize<'de> for Parts {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Parts, D::Error> {
            let Obj(doc) = Obj::<Doc>::deserialize(d)?;
            let Obj(meta) = doc.metadata;
            let Obj(status) = doc.status;
            let Obj(cache) = status.cache;
            Ok(Parts {
                name: meta.name,
                spec: doc.spec,
                cache_public: cache.public,
                cache_private: cache.private,
                public_ts: cache.public_ts,
                private_ts: cache.private_ts,
                conditions: status.conditions,
                retired_roots: status.retired_roots,
                distrust_roots: annotation(&meta.annotations, DISTRUST_ROOTS_ANNOTATION),
                repin_uuid: annotation(&meta.annotations, REPIN_CLUSTER_UUID_ANNOTATION)
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty()),
                accept_cluster_local: annotation(
                    &meta.annotations,
                    ACCEPT_CLUSTER_LOCAL_ANNOTATION,
                ),
            })
        }
    }

    /// One annotation, when it is a string.
    fn annotation(annotations: &Option<Value>, key: &str) -> Option<String> {
        annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    #[derive(Default)]
    struct Doc {
        metadata: Obj<Meta>,
        spec: Option<Value>,
        status: Obj<Status>,
    }

    #[derive(Default)]
    struct Meta {
        name: Option<Value>,
        annotations: Option<Value>,
    }

    #[derive(Default)]
    struct Status {
        cache: Obj<Cache>,
        conditions: Option<Value>,
        retired_roots: Option<Value>,
    }

    #[derive(Default)]
    struct Cache {
        public: Option<Value>,
        private: Option<Box<RawValue>>,
        public_ts: Option<Value>,
        private_ts: Option<Value>,
    }

    /// How an object's members are taken; members not named are skipped.
    trait Members: Default {
        fn member<'de, A: MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<(), A::Error>;
    }

    fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
        map.next_value::<IgnoredAny>().map(|_| ())
    }

    impl Members for Doc {
        fn member<'de, A: MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<(), A::Error> {
            match key {
                "metadata" => self.metadata = map.next_value()?,
                "spec" => self.spec = map.next_value()?,
                "status" => self.status = map.next_value()?,
                _ => skip(map)?,
            }
            Ok(())
        }
    }

    impl Members for Meta {
        fn member<'de, A: MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<(), A::Error> {
            match key {
                "name" => self.name = map.next_value()?,
                "annotations" => self.annotations = map.next_value()?,
                _ => skip(map)?,
            }
            Ok(())
        }
    }

    impl Members for Status {
        fn member<'de, A: MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<(), A::Error> {
            match key {
                "metadataCache" => self.cache = map.next_value()?,
                "conditions" => self.conditions = map.next_value()?,
                "retiredRoots" => self.retired_roots = map.next_value()?,
                _ => skip(map)?,
            }
            Ok(())
        }
    }

    impl Members for Cache {
        fn member<'de, A: MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<(), A::Error> {
            match key {
                "public" => self.public = map.next_value()?,
                "private" => self.private = map.next_value()?,
                "publicLastFetchTimestamp" => self.public_ts = map.next_value()?,
                "privateLastFetchTimestamp" => self.private_ts = map.next_value()?,
                _ => skip(map)?,
            }
            Ok(())
        }
    }

    /// `T` read from a JSON object; any other value is skipped and reads as `T::default()`.
    #[derive(Default)]
    struct Obj<T>(T);

    impl<'de, T: Members> Deserialize<'de> for Obj<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Obj<T>, D::Error> {
            d.deserialize_any(ObjVisitor(PhantomData))
        }
    }

    struct ObjVisitor<T>(PhantomData<T>);

    impl<'de, T: Members> Visitor<'de> for ObjVisitor<T> {
        type Value = Obj<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Obj<T>, A::Error> {
            let mut t = T::default();
            while let Some(Key(key)) = map.next_key()? {
                t.member(&key, &mut map)?;
            }
            Ok(Obj(t))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Obj<T>, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Obj::default())
        }
        fn visit_str<E>(self, _: &str) -> Result<Obj<T>, E> {
            Ok(Obj::default())
        }
        fn visit_bool<E>(self, _: bool) -> Result<Obj<T>, E> {
            Ok(Obj::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Obj<T>, E> {
            Ok(Obj::default())
        }
        fn visit_u64<E>(self, _: u64) -> Result<Obj<T>, E> {
            Ok(Obj::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Obj<T>, E> {
            Ok(Obj::default())
        }
        fn visit_unit<E>(self) -> Result<Obj<T>, E> {
            Ok(Obj::default())
        }
    }

    /// A member name, borrowed from the text where it has no escapes.
    struct Key<'de>(Cow<'de, str>);

    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(s)))
                }
                fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(s.to_string())))
                }
                fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(s)))
                }
            }
            d.deserialize_str(V)
        }
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
            "import": match &f.import {
                Ok(i) => json!({"hosts": i.hosts, "excludeHosts": i.exclude_hosts, "exportTo": i.export_to}),
                Err(e) => json!({"error": e}),
            },
            "retired": f.retired_roots, "distrust": f.distrust_roots,
        })
    }

    /// Reads `text` both ways (JSON text and JSON tree), which must agree, and summarises it.
    fn read(text: &str) -> Value {
        let fast = Federation::parse_json(text).unwrap();
        let tree = Federation::parse(&serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(summary(&fast), summary(&tree), "{text}");
        summary(&fast)
    }

    #[test]
    fn odd_parts_read_as_a_tree_lookup_would() {
        let spec = r#""spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/m/", "metadata": {"clusterCA": "PEM", "enableInsecureConnection": false}}"#;
        let well_formed = read(&format!(
            r#"{{"metadata": {{"name": "b", "managedFields": [{{"x": 1}}]}}, {spec}, "status": {{"metadataCache": {{"public": {{"clusterUUID": "u"}}, "publicLastFetchTimestamp": "2026-01-01T00:00:00Z", "private": {{"publicServices": [], "ingressGateways": [{{"address": "1.2.3.4", "port": 1}}]}}, "privateLastFetchTimestamp": "t"}}, "conditions": [{{"type": "A"}}, 5, {{"no": "type"}}]}}}}"#
        ));
        assert_eq!(
            well_formed,
            json!({"name": "b", "trustDomain": "b.local", "endpoint": "https://h/m/", "ca": "PEM",
                "insecure": false, "public": {"clusterUUID": "u"}, "publicAt": "2026-01-01T00:00:00Z",
                "private": {"publicServices": [], "ingressGateways": [{"address": "1.2.3.4", "port": 1}]},
                "privateAt": "t", "conditions": [{"type": "A"}],
                "import": {"hosts": null, "excludeHosts": [], "exportTo": null},
                "retired": null, "distrust": null})
        );
        let bare = read(&format!(r#"{{"metadata": {{"name": "b"}}, {spec}}}"#));
        // Parts that are not objects hold nothing; a repeated key counts once, its last value.
        for status in [
            r#""status": null"#,
            r#""status": "weird""#,
            r#""status": {"metadataCache": {"public": null, "private": null}}"#,
            r#""status": {"metadataCache": [1]}"#,
            r#""status": [{"metadataCache": {"public": 1}}, [5]]"#,
            r#""status": {"metadataCache": {"public": 1}, "conditions": [{"type": "A"}]}, "status": {}"#,
        ] {
            let text = format!(r#"{{"metadata": {{"name": "b"}}, {spec}, {status}}}"#);
            assert_eq!(read(&text), bare, "{text}");
        }
        // Anything present in the cache is kept for validation to judge.
        let odd = read(&format!(
            r#"{{"metadata": {{"name": "b"}}, {spec}, "status": {{"metadataCache": {{"public": 5, "private": "text", "publicLastFetchTimestamp": 7}}, "conditions": {{}}}}}}"#
        ));
        assert_eq!(
            (
                &odd["public"],
                &odd["private"],
                &odd["publicAt"],
                &odd["conditions"]
            ),
            (&json!(5), &json!("text"), &Value::Null, &json!([]))
        );
        let renamed = read(&format!(
            r#"{{"metadata": {{"name": "b", "name": "c"}}, {spec}}}"#
        ));
        assert_eq!(renamed["name"], "c");
        // Errors name the object and say what is wrong, both ways.
        for (text, name, error) in [
            (
                r#"{"metadata": {"name": "b"}, "spec": {"trustDomain": 5}}"#,
                "b",
                "IstioFederation b: spec.trustDomain must be a non-empty string",
            ),
            (
                r#"{"metadata": "b", "spec": {}}"#,
                "",
                "IstioFederation without metadata.name",
            ),
            (
                r#"[{"name": "b"}, {"trustDomain": "b", "metadataEndpoint": "https://h"}]"#,
                "",
                "IstioFederation without metadata.name",
            ),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(Federation::parse(&v).unwrap_err(), error, "{text}");
            assert_eq!(
                Federation::parse_json(text).unwrap_err(),
                (name.to_string(), error.to_string()),
                "{text}"
            );
        }
        let deep = format!(
            r#"{{"metadata": {{"name": "b"}}, "spec": {}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let (name, error) = Federation::parse_json(&deep).unwrap_err();
        assert_eq!(name, "");
        assert!(
            error.starts_with(
                "IstioFederation snapshot object unreadable (recursion limit exceeded"
            ),
            "{error}"
        );
    }

    #[test]
    fn readable_but_unusable_specs_are_problems_of_their_own() {
        let problem = |spec: Value| fed(spec).unwrap().spec_problem;
        let ok = json!({"trustDomain": "b.local", "metadataEndpoint": "https://h/m/"});
        assert_eq!(problem(ok), None);
        for td in ["b c", "B.Local", "cluster.local", "b_c.local", "b..local"] {
            let p = problem(json!({"trustDomain": td, "metadataEndpoint": "https://h/m/"}));
            assert!(
                matches!(&p, Some(SpecProblem::TrustDomain(m)) if m.starts_with("spec.trustDomain ")),
                "{td}: {p:?}"
            );
        }
        let f =
            fed(json!({"trustDomain": "b.local", "metadataEndpoint": "https://user:secret@h/m/"}))
                .unwrap();
        let Some(SpecProblem::MetadataEndpoint(m)) = &f.spec_problem else {
            panic!("{:?}", f.spec_problem)
        };
        assert!(
            m.starts_with("spec.metadataEndpoint \"https://***@h/m/\" carries user information")
        );
        assert!(!format!("{f:?}").contains("secret"));
        assert!(!f.may_fetch());
        assert_eq!(f.public_url(), "https://***@h/m/public/public.json");
    }

    /// Import policies and rotation state read alike from text and tree.
    #[test]
    fn import_and_rotation_parts_read_alike() {
        let spec = r#""spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/m/"}"#;
        let texts = [
            // Import policies, valid and not: both readers see the same policy or error.
            r#"{"metadata": {"name": "b"}, "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/", "import": {"hosts": ["db.*", "*.prod.svc.b.local"], "excludeHosts": ["db.admin.*"], "exportTo": [".", "prod"]}}}"#.to_string(),
            r#"{"metadata": {"name": "b"}, "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/", "import": {"hosts": [], "excludeHosts": null, "exportTo": null, "other": 1}}}"#.to_string(),
            r#"{"metadata": {"name": "b"}, "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/", "import": {"hosts": ["DB.*"]}}}"#.to_string(),
            r#"{"metadata": {"name": "b"}, "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/", "import": {"exportTo": ["~"]}}}"#.to_string(),
            r#"{"metadata": {"name": "b"}, "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/", "import": "all"}}"#.to_string(),
            r#"{"metadata": {"name": "b"}, "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/", "import": null}, "status": "weird"}"#.to_string(),
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
            read(text);
        }
        let rotated = read(&texts[6]);
        assert_eq!(
            (&rotated["retired"], &rotated["distrust"]),
            (&json!([{"fingerprint": "ab"}]), &json!("AB, cd"))
        );
        let odd = read(&texts[7]);
        assert_eq!(
            (&odd["retired"], &odd["distrust"]),
            (&json!("junk"), &Value::Null)
        );
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
        let e = fed(json!({"trustDomain": "", "metadataEndpoint": "https://h/"})).unwrap_err();
        assert!(e.contains("spec.trustDomain"));
        let e = fed(json!({"trustDomain": "b", "metadataEndpoint": "http://h/"})).unwrap_err();
        assert!(e.contains("spec.metadataEndpoint"));
        let e =
            fed(json!({"trustDomain": "b", "metadataEndpoint": "http://u:secret@h/"})).unwrap_err();
        assert_eq!(
            e,
            "IstioFederation b: spec.metadataEndpoint \"http://***@h/\" must be an https:// URL"
        );
        let e = fed(json!({"trustDomain": "b", "metadataEndpoint": "https://h/", "metadata": {"enableInsecureConnection": "yes"}}))
            .unwrap_err();
        assert!(e.contains("enableInsecureConnection"));
        let f = fed(json!({"trustDomain": "b", "metadataEndpoint": "https://h/", "metadata": {"ca": "PEM"}})).unwrap();
        assert_eq!(f.cluster_ca.as_deref(), Some("PEM"));
    }

    fn import(policy: Value) -> Result<ImportSpec, String> {
        fed(json!({"trustDomain": "b.local", "metadataEndpoint": "https://h/", "import": policy}))
            .expect("a wrong import policy leaves the federation readable")
            .import
    }

    #[test]
    fn import_policy_is_read_with_its_defaults() {
        assert_eq!(import(Value::Null), Ok(ImportSpec::default()));
        assert_eq!(import(json!({})), Ok(ImportSpec::default()));
        let f = fed(json!({"trustDomain": "b.local", "metadataEndpoint": "https://h/"})).unwrap();
        assert_eq!(f.import, Ok(ImportSpec::default()));
        let p = import(
            json!({"hosts": ["db.*", "*.prod.svc.b.local"], "excludeHosts": ["db.admin.b.local"],
            "exportTo": ["prod", ".", "istio-system"]}),
        )
        .unwrap();
        assert_eq!(p.hosts.unwrap(), ["db.*", "*.prod.svc.b.local"]);
        assert_eq!(p.exclude_hosts, ["db.admin.b.local"]);
        assert_eq!(p.export_to.unwrap(), ["prod", ".", "istio-system"]);
        // An empty hosts list is kept as such: it imports nothing.
        assert_eq!(import(json!({"hosts": []})).unwrap().hosts, Some(vec![]));
        assert_eq!(
            import(json!({"exportTo": ["*"]}))
                .unwrap()
                .export_to
                .unwrap(),
            ["*"]
        );
    }

    #[test]
    fn import_policy_errors_name_the_field() {
        let cases = [
            (json!("all"), "spec.import must be an object"),
            (
                json!({"hosts": "db.*"}),
                "spec.import.hosts must be a list of host globs",
            ),
            (
                json!({"hosts": ["db.*", 5]}),
                "spec.import.hosts[1] must be a string",
            ),
            (
                json!({"hosts": ["DB.*"]}),
                "spec.import.hosts[0] \"DB.*\" is not a host glob",
            ),
            (
                json!({"excludeHosts": ["db.*", "a b"]}),
                "spec.import.excludeHosts[1] \"a b\" is not a host glob",
            ),
            (
                json!({"excludeHosts": [""]}),
                "spec.import.excludeHosts[0] \"\" is not a host glob",
            ),
            (json!({"hosts": ["db?.b.local"]}), "spec.import.hosts[0]"),
            (
                json!({"exportTo": "prod"}),
                "spec.import.exportTo must be a list of namespaces",
            ),
            (json!({"exportTo": []}), "spec.import.exportTo is empty"),
            (
                json!({"exportTo": [7]}),
                "spec.import.exportTo[0] must be a string",
            ),
            (
                json!({"exportTo": ["~"]}),
                "spec.import.exportTo[0] \"~\" is not allowed",
            ),
            (
                json!({"exportTo": ["Prod"]}),
                "spec.import.exportTo[0] \"Prod\" must be '.', '*' or a namespace name",
            ),
            (
                json!({"exportTo": ["prod.x"]}),
                "spec.import.exportTo[0] \"prod.x\" must be",
            ),
            (
                json!({"exportTo": ["-prod"]}),
                "spec.import.exportTo[0] \"-prod\" must be",
            ),
            (
                json!({"exportTo": [&"a".repeat(64)]}),
                "spec.import.exportTo[0]",
            ),
            (
                json!({"exportTo": ["prod", "dev", "prod"]}),
                "spec.import.exportTo[2] \"prod\" is listed twice",
            ),
            (
                json!({"exportTo": [".", "."]}),
                "spec.import.exportTo[1] \".\" is listed twice",
            ),
            (
                json!({"exportTo": ["*", "prod"]}),
                "spec.import.exportTo: '*' (every namespace) cannot be combined",
            ),
            (json!({"exportTo": [".", "*"]}), "spec.import.exportTo: '*'"),
        ];
        for (policy, expected) in cases {
            let e = import(policy.clone()).unwrap_err();
            assert!(e.starts_with(expected), "{policy}: {e}");
        }
        // A 63-character namespace is a label; the first error wins in a list.
        assert!(import(json!({"exportTo": [&"a".repeat(63)]})).is_ok());
        let e = import(json!({"hosts": ["ok.*"], "excludeHosts": ["BAD"], "exportTo": ["~"]}))
            .unwrap_err();
        assert!(e.starts_with("spec.import.excludeHosts[0]"), "{e}");
    }
}
