//! A read-only JSON view for validators, and a borrowed JSON tree that implements it.
//!
//! Validation of peer metadata reads a handful of fields from documents that can be large
//! (a peer's private metadata lists every exported service). A fresh response is parsed into
//! `serde_json::Value`; the cached copy of every federation is re-validated on every run, and
//! building an owned, order-preserving map per object for it cost more than the rest of the
//! reconcile. [`Node`] borrows strings from the input text and keeps objects as vectors, and
//! [`Json`] lets one validator read both, so a fresh and a cached document are judged by the
//! same code.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::fmt;

/// What a validator reads from a JSON document.
pub trait Json: Sized {
    /// The member `key` of an object (the last one when a key repeats, as `serde_json` reads
    /// it); `None` for other values.
    fn get(&self, key: &str) -> Option<&Self>;
    fn as_str(&self) -> Option<&str>;
    fn as_u64(&self) -> Option<u64>;
    fn as_array(&self) -> Option<&[Self]>;
    /// Compact JSON text, for messages.
    fn render(&self) -> String;
}

impl Json for Value {
    fn get(&self, key: &str) -> Option<&Value> {
        Value::get(self, key)
    }
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }
    fn as_u64(&self) -> Option<u64> {
        Value::as_u64(self)
    }
    fn as_array(&self) -> Option<&[Value]> {
        Value::as_array(self).map(Vec::as_slice)
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

/// A JSON value whose strings borrow from the parsed text where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Members in text order, repeats included.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Json for Node<'a> {
    fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_u64(&self) -> Option<u64> {
        match self {
            Node::Number(n) => n.as_u64(),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[Node<'a>]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }
    fn render(&self) -> String {
        self.to_value().to_string()
    }
}

impl Node<'_> {
    /// The same value as serde_json's tree: a repeated key once, at its first place, with its
    /// last value (linear: a hostile object with many repeated keys costs no more than its size).
    fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::Str(s) => Value::String(s.to_string()),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(members) => {
                let mut map = serde_json::Map::with_capacity(members.len());
                for (k, v) in members {
                    map.insert(k.to_string(), v.to_value());
                }
                Value::Object(map)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
        Ok(Number::from_f64(n).map_or(Node::Null, Node::Number))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key::<Node<'de>>()? {
            let Node::Str(key) = key else {
                return Err(serde::de::Error::custom("object key is not a string"));
            };
            members.push((key, map.next_value()?));
        }
        Ok(Node::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reading the validators use agrees with serde_json's own tree, on the same text.
    #[test]
    fn node_reads_like_value() {
        let texts = [
            r#"{"a": "x", "b": 5, "c": [1, "two", null, true, 2.5, -3], "d": {"e": "\u00e9\n"}}"#,
            r#"{"a": 1, "a": {"z": 1, "y": [2], "z": 3}, "b": "\"quoted\""}"#,
            r#"[{"port": 18446744073709551615}, {"port": 18446744073709551616}, {"port": -1}, {"port": 1e2}]"#,
            r#""plain""#,
            r#"null"#,
        ];
        fn same(n: &Node, v: &Value, path: &str) {
            assert_eq!(n.as_str(), Json::as_str(v), "{path}");
            assert_eq!(n.as_u64(), Json::as_u64(v), "{path}");
            assert_eq!(n.render(), v.render(), "{path}");
            match (n.as_array(), Json::as_array(v)) {
                (Some(a), Some(b)) => {
                    assert_eq!(a.len(), b.len(), "{path}");
                    for (i, (x, y)) in a.iter().zip(b).enumerate() {
                        same(x, y, &format!("{path}[{i}]"));
                    }
                }
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{path}"),
            }
            if let Value::Object(m) = v {
                for (k, y) in m {
                    same(n.get(k).expect("member"), y, &format!("{path}.{k}"));
                }
                assert!(n.get("absent").is_none());
            }
        }
        for text in texts {
            let n: Node = serde_json::from_str(text).unwrap();
            let v: Value = serde_json::from_str(text).unwrap();
            same(&n, &v, text);
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let n: Node = serde_json::from_str(r#"{"k": "plain", "e": "a\nb"}"#).unwrap();
        assert!(matches!(
            n.get("k"),
            Some(Node::Str(Cow::Borrowed("plain")))
        ));
        assert!(matches!(n.get("e"), Some(Node::Str(Cow::Owned(s))) if s == "a\nb"));
    }
}
