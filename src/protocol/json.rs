//! The read-only view of a JSON document that metadata validators use.
//!
//! A fresh response and the cached copy in `status.metadataCache` are both read into
//! `serde_json::Value` and judged by the same code. (A borrowed JSON tree for the cached copy
//! used to sit beside `Value`, kept equal by a differential test; measured on the scale bench,
//! reading the cache into `Value` instead costs about 15–20 ms of CPU per run at 1,000
//! federations × 20 services, well within the bench's targets, so one reader remains.)

use serde_json::Value;

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
