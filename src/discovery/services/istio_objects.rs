//! The Istio objects the hook owns — ServiceEntries and DestinationRules — as typed values,
//! both as it writes them and as it reads them back from snapshots.
//!
//! Why typed and not `serde_json::Value`: a large federation holds tens of thousands of these
//! objects; as generic JSON trees they dominated both time and memory of a run (every key a
//! hashed, allocated map entry). Typed, they parse straight from the snapshot bytes, compare
//! field by field, and serialise without an intermediate tree. Specs are parsed strictly
//! (`deny_unknown_fields`): an object carrying anything we do not write is "different" and gets
//! rewritten, which is exactly the diff we want.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A string-keyed map that keeps insertion order when written and compares as a set (the API
/// server stores maps with sorted keys, we write ours in a deliberate order).
#[derive(Debug, Clone, Default)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> OrderedMap<V> {
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

impl<V: PartialEq> PartialEq for OrderedMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                // Small maps (all real ones) are searched in place; past SMALL keys an index
                // keeps a map with very many keys linear instead of quadratic.
                const SMALL: usize = 16;
                let mut out: Vec<(String, V)> = Vec::with_capacity(a.size_hint().unwrap_or(0));
                let mut index: Option<HashMap<String, usize>> = None;
                while let Some((k, v)) = a.next_entry::<String, V>()? {
                    let at = match &index {
                        Some(ix) => ix.get(&k).copied(),
                        None => out.iter().position(|(kk, _)| *kk == k),
                    };
                    match at {
                        Some(i) => out[i].1 = v, // duplicate key: last wins, as in Go
                        None => {
                            if let Some(ix) = &mut index {
                                ix.insert(k.clone(), out.len());
                            }
                            out.push((k, v));
                            if index.is_none() && out.len() > SMALL {
                                index = Some(
                                    out.iter()
                                        .enumerate()
                                        .map(|(i, (k, _))| (k.clone(), i))
                                        .collect(),
                                );
                            }
                        }
                    }
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SePort {
    pub name: String,
    pub number: u32,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeEndpoint {
    pub address: String,
    pub ports: OrderedMap<u32>,
    pub labels: OrderedMap<String>,
}

/// `spec` of a ServiceEntry exactly as this hook writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeSpec {
    pub hosts: Vec<String>,
    pub location: String,
    pub ports: Vec<SePort>,
    pub resolution: String,
    pub endpoints: Vec<SeEndpoint>,
    /// From the federations' `spec.import.exportTo`; unset unless one sets it.
    #[serde(default, rename = "exportTo", skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrTls {
    pub mode: String,
}

/// Passive health checking of the endpoints (here: remote gateways), as the hook writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DrOutlierDetection {
    pub consecutive_gateway_errors: u32,
    #[serde(rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: u32,
    pub interval: String,
    pub base_ejection_time: String,
    pub max_ejection_percent: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DrPolicy {
    pub tls: DrTls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<DrOutlierDetection>,
}

/// `spec` of a DestinationRule exactly as this hook writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DrSpec {
    pub host: String,
    pub traffic_policy: DrPolicy,
    /// As on the ServiceEntry of the same record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Spec {
    ServiceEntry(SeSpec),
    DestinationRule(DrSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    pub labels: OrderedMap<String>,
    pub annotations: OrderedMap<String>,
}

/// An object to write (the whole manifest of a `CreateOrUpdate`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    pub api_version: String,
    pub kind: &'static str,
    pub metadata: Meta,
    pub spec: Spec,
}

/// An observed object of one of our kinds, read leniently: identity and metadata always,
/// the spec only if it has exactly our shape (`None` otherwise, meaning "rewrite it").
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub labels: OrderedMap<String>,
    pub annotations: OrderedMap<String>,
    pub spec: Option<Spec>,
}

#[derive(Deserialize)]
struct RawMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<OrderedMap<String>>,
    #[serde(default)]
    annotations: Option<OrderedMap<String>>,
}

#[derive(Deserialize)]
struct RawObject<'a> {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<RawMeta>,
    #[serde(borrow, default)]
    spec: Option<&'a RawValue>,
}

impl Observed {
    /// Parses one snapshot object. `None` when it is not even an object with a name: such an
    /// item can be neither compared nor safely deleted.
    pub(crate) fn parse(raw: &str) -> Option<Observed> {
        let o: RawObject = match serde_json::from_str(raw) {
            Ok(o) => o,
            Err(e) => {
                log::warn!(target: "diff", "snapshot object ignored: {e}");
                return None;
            }
        };
        let meta = o.metadata?;
        let kind = o.kind.unwrap_or_default();
        let spec = o.spec.and_then(|s| match kind.as_str() {
            "ServiceEntry" => serde_json::from_str::<SeSpec>(s.get())
                .ok()
                .map(Spec::ServiceEntry),
            "DestinationRule" => serde_json::from_str::<DrSpec>(s.get())
                .ok()
                .map(Spec::DestinationRule),
            _ => None,
        });
        Some(Observed {
            api_version: o.api_version.unwrap_or_default(),
            kind,
            name: meta.name?,
            namespace: meta.namespace.unwrap_or_default(),
            labels: meta.labels.unwrap_or_default(),
            annotations: meta.annotations.unwrap_or_default(),
            spec,
        })
    }

    pub(crate) fn is_managed(&self) -> bool {
        self.labels
            .get(crate::protocol::labels::MANAGED_BY_LABEL)
            .map(String::as_str)
            == Some(crate::protocol::labels::MANAGED_BY_VALUE)
    }
}

#[derive(Deserialize)]
struct NameOnly {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    metadata: Option<NameOnly>,
}

/// A snapshot of our objects, kept as their JSON texts indexed by name and parsed one at a time
/// when compared: tens of thousands of parsed objects held at once would dominate a run's memory.
#[derive(Debug, Default)]
pub struct Snapshot<'a> {
    by_name: BTreeMap<String, Cow<'a, str>>,
}

impl<'a> Snapshot<'a> {
    fn insert(&mut self, text: Cow<'a, str>) {
        match serde_json::from_str::<Named>(&text) {
            Ok(Named {
                metadata: Some(NameOnly { name: Some(name) }),
            }) => {
                self.by_name.insert(name, text);
            }
            _ => log::warn!(target: "diff", "snapshot object without metadata.name ignored"),
        }
    }

    /// From raw slices of the binding context.
    pub(crate) fn from_raw(items: &[&'a RawValue]) -> Snapshot<'a> {
        let mut s = Snapshot::default();
        for r in items {
            s.insert(Cow::Borrowed(r.get()));
        }
        s
    }

    /// From parsed values (callers that hold `Value`s).
    pub(crate) fn from_values(items: &[serde_json::Value]) -> Snapshot<'static> {
        let mut s = Snapshot::default();
        for v in items {
            s.insert(Cow::Owned(v.to_string()));
        }
        s
    }

    /// Whether one of these objects is a ServiceEntry we manage for `host`. Only texts that
    /// spell the host are parsed.
    pub(crate) fn has_service_entry_for(&self, host: &str) -> bool {
        let quoted = format!("\"{host}\"");
        self.by_name
            .values()
            .filter(|t| t.contains(&quoted))
            .filter_map(|t| Observed::parse(t))
            .any(|o| {
                o.is_managed()
                    && matches!(&o.spec, Some(Spec::ServiceEntry(se)) if se.hosts.iter().any(|h| h == host))
            })
    }

    /// The object named `name`, parsed.
    pub(crate) fn get(&self, name: &str) -> Option<Observed> {
        Observed::parse(self.by_name.get(name)?)
    }

    /// Every object whose name is not in `skip`, parsed, in name order (objects we keep are
    /// not even parsed: on a steady run that is all of them).
    pub(crate) fn objects_except<'s>(
        &'s self,
        skip: &'s std::collections::BTreeSet<String>,
    ) -> impl Iterator<Item = Observed> + 's {
        self.by_name
            .iter()
            .filter(|(name, _)| !skip.contains(*name))
            .filter_map(|(_, t)| Observed::parse(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_maps_write_in_order_and_compare_as_sets() {
        let a = OrderedMap(vec![("b".to_string(), 1u32), ("a".to_string(), 2)]);
        let b: OrderedMap<u32> = serde_json::from_str(r#"{"a": 2, "b": 1}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"b":1,"a":2}"#);
        let c: OrderedMap<u32> = serde_json::from_str(r#"{"a": 2, "b": 1, "c": 3}"#).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn repeated_keys_keep_their_first_place_and_last_value_in_maps_of_any_size() {
        for n in [3usize, 16, 17, 5000] {
            let mut text = String::from("{");
            for i in 0..n {
                text.push_str(&format!("\"k{i}\": {i},"));
            }
            // Every key again, with new values, then a new key.
            for i in 0..n {
                text.push_str(&format!("\"k{i}\": {},", i + n));
            }
            text.push_str("\"last\": 0}");
            let m: OrderedMap<usize> = serde_json::from_str(&text).unwrap();
            assert_eq!(m.0.len(), n + 1, "{n}");
            for (i, (k, v)) in m.0.iter().take(n).enumerate() {
                assert_eq!((k.as_str(), *v), (format!("k{i}").as_str(), i + n));
            }
            assert_eq!(m.0[n], ("last".to_string(), 0));
        }
    }

    #[test]
    fn foreign_spec_fields_make_the_spec_unrecognised() {
        let raw = r#"{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "x", "namespace": "n", "labels": {"app.kubernetes.io/managed-by": "istio-federation-hook"}},
            "spec": {"host": "a.b", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}, "status": {}}"#;
        let o = Observed::parse(raw).unwrap();
        assert!(o.is_managed());
        assert!(matches!(o.spec, Some(Spec::DestinationRule(_))));
        let foreign = raw.replace(r#""host": "a.b""#, r#""host": "a.b", "subsets": []"#);
        assert!(Observed::parse(&foreign).unwrap().spec.is_none());
        // exportTo is ours (spec.import.exportTo): read, and compared like any other field.
        let visible = raw.replace(r#""host": "a.b""#, r#""host": "a.b", "exportTo": ["."]"#);
        match Observed::parse(&visible).unwrap().spec {
            Some(Spec::DestinationRule(dr)) => assert_eq!(dr.export_to.unwrap(), ["."]),
            other => panic!("{other:?}"),
        }
        assert!(Observed::parse(r#"{"kind": "ServiceEntry"}"#).is_none());
        assert!(Observed::parse(r#"{"metadata": {"name": 5}}"#).is_none());
    }
}
