//! Per-peer visibility of exported services: the `federation-visibility.json` file of the
//! metadata Secret, which export writes and `serve` reads (docs/sharing.md).
//!
//! `federation.json` stays the complete document (every labelled Service, Deckhouse's format).
//! Export always writes this file beside it (`restrictedServices` empty while no Service is
//! restricted with `federation.istio.deckhouse.io/export-to`), bound to that `federation.json`
//! by its digest:
//!
//! ```json
//! {
//!   "federationSHA256": "<hex SHA-256 of the federation.json it goes with>",
//!   "restrictedServices": {
//!     "db.prod.svc.a.local": ["<peer cluster UUID>", …]
//!   }
//! }
//! ```
//!
//! Only restricted services are listed, each with the UUIDs of the peers allowed to see it
//! (possibly none): the file grows with restrictions, not with peers × services. `serve`
//! answers each authenticated peer (JWT `sub`) with `federation.json` minus the restricted
//! services it is not listed for; a peer that may see everything gets `federation.json` byte
//! for byte.
//!
//! Failing closed: a visibility file that is unreadable, not of this shape, or written for
//! another `federation.json` (digest mismatch: a directory updated file by file, a hand-edited
//! Secret) makes [`PeerViews::new`] fail, and `serve` then withholds private metadata from every
//! peer (503, so peers keep their last-known-good imports) rather than guess. With federation
//! disabled export keeps the file, bound to no `federation.json` (an empty digest,
//! [`render_without_federation`]), so a `federation.json` that comes back before its own
//! visibility file is withheld too.
//!
//! Because the file is always there, no order of writing and deleting the Secret's files
//! between two versions export wrote shows a peer a service hidden from it: kubelet swaps all
//! keys at once, and any other writer leaves a `federation.json` and a visibility file that do
//! not match (withheld) or the old pair. An absent file means nothing is restricted — what a
//! Secret in Deckhouse's layout, or one written before this file was always written, says —
//! until `serve` has seen one in the directory: from then on its absence is a directory
//! mid-update and withholds too (docs/sharing.md).

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The file's name in the metadata Secret.
pub(crate) use super::secret::VISIBILITY_JSON;

/// Lower-case hex SHA-256 of `bytes` (ring).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Renders the visibility file for `federation_json` (the exact text export writes):
/// `restricted` maps each restricted hostname to the UUIDs allowed to see it. Sorted, pretty
/// printed like the other files of the Secret.
pub(crate) fn render(
    federation_json: &str,
    restricted: &BTreeMap<String, BTreeSet<String>>,
) -> String {
    let services: Map<String, Value> = restricted
        .iter()
        .map(|(host, uuids)| {
            (
                host.clone(),
                Value::Array(uuids.iter().cloned().map(Value::String).collect()),
            )
        })
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "federationSHA256".into(),
        Value::String(sha256_hex(federation_json.as_bytes())),
    );
    doc.insert("restrictedServices".into(), Value::Object(services));
    let mut s = serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default();
    s.push('\n');
    s
}

/// The visibility file export keeps while federation is disabled: bound to no
/// `federation.json` (an empty digest matches none), nothing restricted.
pub(crate) fn render_without_federation() -> String {
    let mut s = serde_json::to_string_pretty(&serde_json::json!({
        "federationSHA256": "",
        "restrictedServices": {},
    }))
    .unwrap_or_default();
    s.push('\n');
    s
}

/// What one peer is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum View {
    /// Nothing is hidden from this peer: serve `federation.json` as it is.
    Complete,
    /// The peer's own document: `federation.json` without the services hidden from it.
    Filtered(String),
}

/// `federation.json` and its visibility file, checked against each other and ready to answer
/// any peer.
///
/// Answering is a concatenation of text prepared once per version: the document around its
/// `publicServices` list, and each service as it appears inside that list (pretty printed, as
/// export writes `federation.json`). A peer's view costs a copy of its bytes, not a JSON
/// serialization; tests check it equals serializing the filtered document.
#[derive(Debug)]
pub(crate) struct PeerViews {
    /// The document up to and after its `publicServices` list.
    before: String,
    after: String,
    /// Each service: hostname and its text inside the list (indented, no trailing comma).
    services: Vec<(String, String)>,
    /// Restricted hostname → UUIDs allowed to see it.
    restricted: HashMap<String, HashSet<String>>,
}

/// Stands in for the service list while the rest of the document is serialized.
const LIST_MARK: &str = "\u{0}publicServices\u{0}";

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

impl PeerViews {
    /// Checks the visibility file against `federation_json` and prepares the views. `Err` says
    /// why no peer can be answered (fail closed).
    pub(crate) fn new(federation_json: &[u8], visibility_json: &[u8]) -> Result<PeerViews, String> {
        let vis: Map<String, Value> = serde_json::from_slice(visibility_json)
            .map_err(|e| format!("{VISIBILITY_JSON} is not a JSON object: {e}"))?;
        let digest = vis
            .get("federationSHA256")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{VISIBILITY_JSON} has no federationSHA256"))?;
        if digest != sha256_hex(federation_json) {
            return Err(format!(
                "{VISIBILITY_JSON} was written for another federation.json (SHA-256 differs)"
            ));
        }
        let listed = vis
            .get("restrictedServices")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{VISIBILITY_JSON}: restrictedServices must be an object"))?;
        let mut restricted = HashMap::with_capacity(listed.len());
        for (host, uuids) in listed {
            let uuids = uuids
                .as_array()
                .and_then(|l| {
                    l.iter()
                        .map(|u| u.as_str().map(str::to_string))
                        .collect::<Option<HashSet<String>>>()
                })
                .ok_or_else(|| {
                    format!("{VISIBILITY_JSON}: restrictedServices[{host:?}] must be a list of cluster UUIDs")
                })?;
            restricted.insert(host.clone(), uuids);
        }
        // Nothing restricted (what export writes until a Service is): every peer gets
        // federation.json as it is, so there is nothing to prepare.
        if restricted.is_empty() {
            return Ok(PeerViews {
                before: String::new(),
                after: String::new(),
                services: Vec::new(),
                restricted,
            });
        }
        let mut doc: Map<String, Value> = serde_json::from_slice(federation_json).map_err(|e| {
            format!("federation.json is not a JSON object, so restricted services cannot be filtered: {e}")
        })?;
        let cannot_filter = || {
            "federation.json: publicServices must be a list of services with a hostname, so restricted services cannot be filtered"
                .to_string()
        };
        let list = match doc.get_mut("publicServices") {
            Some(Value::Array(list)) => std::mem::take(list),
            _ => return Err(cannot_filter()),
        };
        let mut services = Vec::with_capacity(list.len());
        for service in &list {
            let host = service
                .get("hostname")
                .and_then(Value::as_str)
                .ok_or_else(cannot_filter)?;
            // An item of a list that is a value of the top-level object sits two levels deep.
            let text = pretty(service).replace('\n', "\n    ");
            services.push((host.to_string(), format!("    {text}")));
        }
        doc.insert("publicServices".into(), Value::String(LIST_MARK.into()));
        let text = pretty(&Value::Object(doc));
        let mark = pretty(&Value::String(LIST_MARK.into()));
        let (before, after) = text.split_once(&mark).ok_or_else(cannot_filter)?;
        Ok(PeerViews {
            before: before.to_string(),
            after: format!("{after}\n"),
            services,
            restricted,
        })
    }

    /// Number of restricted services.
    pub(crate) fn restricted_count(&self) -> usize {
        self.restricted.len()
    }

    /// Whether the peer `uuid` may see the service `hostname`.
    pub(crate) fn visible(&self, uuid: &str, hostname: &str) -> bool {
        self.restricted
            .get(hostname)
            .is_none_or(|allowed| allowed.contains(uuid))
    }

    /// The document the peer `uuid` is answered with.
    pub(crate) fn view(&self, uuid: &str) -> View {
        if self.services.iter().all(|(h, _)| self.visible(uuid, h)) {
            return View::Complete;
        }
        let visible: Vec<&str> = self
            .services
            .iter()
            .filter(|(h, _)| self.visible(uuid, h))
            .map(|(_, text)| text.as_str())
            .collect();
        let size: usize = visible.iter().map(|t| t.len() + 2).sum();
        let mut out = String::with_capacity(self.before.len() + size + self.after.len() + 8);
        out.push_str(&self.before);
        if visible.is_empty() {
            out.push_str("[]");
        } else {
            out.push_str("[\n");
            out.push_str(&visible.join(",\n"));
            out.push_str("\n  ]");
        }
        out.push_str(&self.after);
        View::Filtered(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pretty(v: &Value) -> String {
        let mut s = serde_json::to_string_pretty(v).unwrap();
        s.push('\n');
        s
    }

    fn svc(host: &str) -> Value {
        json!({"hostname": host, "ports": [{"name": "http", "port": 8080}]})
    }

    fn restricted(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(h, u)| (h.to_string(), u.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn digest_is_sha256() {
        // sha256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn every_peer_sees_exactly_its_services() {
        let gw = json!([{"address": "192.0.2.1", "port": 15443}]);
        let all = ["a.ns.svc.x", "b.ns.svc.x", "c.ns.svc.x", "open.ns.svc.x"];
        let fed = pretty(&json!({"ingressGateways": gw,
            "publicServices": all.iter().map(|h| svc(h)).collect::<Vec<_>>()}));
        let rules = restricted(&[
            ("a.ns.svc.x", &["u1"]),
            ("b.ns.svc.x", &["u2", "u1"]),
            ("c.ns.svc.x", &[]),
        ]);
        let vis = render(&fed, &rules);
        let views = PeerViews::new(fed.as_bytes(), vis.as_bytes()).unwrap();
        assert_eq!(views.restricted_count(), 3);
        let expect = |uuid: &str, hosts: &[&str]| {
            let want = pretty(&json!({"ingressGateways": gw,
                "publicServices": hosts.iter().map(|h| svc(h)).collect::<Vec<_>>()}));
            match views.view(uuid) {
                View::Filtered(got) => assert_eq!(got, want, "{uuid}"),
                other => panic!("{uuid}: {other:?}"),
            }
        };
        expect("u1", &["a.ns.svc.x", "b.ns.svc.x", "open.ns.svc.x"]);
        expect("u2", &["b.ns.svc.x", "open.ns.svc.x"]);
        expect("u3", &["open.ns.svc.x"]);
        expect("", &["open.ns.svc.x"]);
        // Every peer × every restricted service.
        for uuid in ["u1", "u2", "u3"] {
            for (host, allowed) in &rules {
                assert_eq!(views.visible(uuid, host), allowed.contains(uuid));
            }
        }
    }

    #[test]
    fn view_equals_serializing_the_filtered_document() {
        // Every subset of four services, with an extra key after the list and odd values.
        let hosts = ["a.x", "b.x", "c.x", "d.x"];
        let service = |h: &str| json!({"hostname": h, "ports": [], "note": "line\nbreak \u{0}", "n": {"deep": [1, {"x": []}]}});
        let doc = json!({"ingressGateways": [{"address": "192.0.2.1", "port": 15443}],
            "publicServices": hosts.iter().map(|h| service(h)).collect::<Vec<_>>(), "zExtra": {}});
        let fed = pretty(&doc);
        for mask in 0u32..16 {
            // Peer "p" may see the hosts whose bit is set; every host is restricted.
            let rules: BTreeMap<String, BTreeSet<String>> = hosts
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let allowed = if mask & (1 << i) != 0 {
                        vec!["p".to_string()]
                    } else {
                        vec![]
                    };
                    (h.to_string(), allowed.into_iter().collect())
                })
                .collect();
            let views = PeerViews::new(fed.as_bytes(), render(&fed, &rules).as_bytes()).unwrap();
            let mut want = doc.clone();
            want["publicServices"] = Value::Array(
                hosts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, h)| service(h))
                    .collect(),
            );
            match views.view("p") {
                View::Complete => assert_eq!(mask, 15),
                View::Filtered(got) => assert_eq!(got, pretty(&want), "mask {mask:04b}"),
            }
        }
    }

    #[test]
    fn nothing_hidden_means_the_document_as_it_is() {
        let fed = pretty(&json!({"ingressGateways": [], "publicServices": [svc("a.x")]}));
        let vis = render(&fed, &restricted(&[("a.x", &["u1"]), ("gone.x", &[])]));
        let views = PeerViews::new(fed.as_bytes(), vis.as_bytes()).unwrap();
        assert_eq!(views.view("u1"), View::Complete);
        assert!(matches!(views.view("u2"), View::Filtered(_)));
    }

    #[test]
    fn render_is_sorted_and_stable() {
        let fed = "{}\n";
        let a = render(fed, &restricted(&[("z.x", &["u2", "u1"]), ("a.x", &[])]));
        assert_eq!(
            a,
            format!(
                "{{\n  \"federationSHA256\": \"{}\",\n  \"restrictedServices\": {{\n    \"a.x\": [],\n    \"z.x\": [\n      \"u1\",\n      \"u2\"\n    ]\n  }}\n}}\n",
                sha256_hex(fed.as_bytes())
            )
        );
    }

    #[test]
    fn fails_closed() {
        let fed = pretty(&json!({"ingressGateways": [], "publicServices": [svc("a.x")]}));
        let good = render(&fed, &restricted(&[("a.x", &["u1"])]));
        assert!(PeerViews::new(fed.as_bytes(), good.as_bytes()).is_ok());
        let digest = sha256_hex(fed.as_bytes());
        let other_fed = pretty(&json!({"ingressGateways": [], "publicServices": []}));
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (fed.clone().into(), b"".to_vec()),
            (fed.clone().into(), b"[]".to_vec()),
            (fed.clone().into(), b"{\"restrictedServices\": {}}".to_vec()),
            (other_fed.into(), good.clone().into()),
            (
                fed.clone().into(),
                json!({"federationSHA256": digest, "restrictedServices": []})
                    .to_string()
                    .into(),
            ),
            (
                fed.clone().into(),
                json!({"federationSHA256": digest, "restrictedServices": {"a.x": "u1"}})
                    .to_string()
                    .into(),
            ),
            (
                fed.clone().into(),
                json!({"federationSHA256": digest, "restrictedServices": {"a.x": [1]}})
                    .to_string()
                    .into(),
            ),
        ];
        for (f, v) in cases {
            assert!(
                PeerViews::new(&f, &v).is_err(),
                "{}",
                String::from_utf8_lossy(&v)
            );
        }
        // federation.json that cannot be filtered.
        for bad in [
            "[]".to_string(),
            json!({"publicServices": {}}).to_string(),
            json!({"publicServices": [{"ports": []}]}).to_string(),
        ] {
            let vis = render(&bad, &restricted(&[("a.x", &[])]));
            assert!(
                PeerViews::new(bad.as_bytes(), vis.as_bytes()).is_err(),
                "{bad}"
            );
            // With nothing restricted there is nothing to filter: served as it is.
            let none = render(&bad, &restricted(&[]));
            let views = PeerViews::new(bad.as_bytes(), none.as_bytes()).unwrap();
            assert_eq!(views.view("u1"), View::Complete, "{bad}");
        }
    }
}
