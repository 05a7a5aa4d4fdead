//! The IstioFederation object (`deckhouse.io/v1alpha1`, cluster-scoped; reference §1) as the
//! hook reads it: spec fields, and the status it (or Deckhouse) cached earlier.

use crate::k8s;
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
    /// `status.metadataCache.private`, if any.
    pub cached_private: Option<Value>,
    pub private_fetched_at: Option<String>,
    /// `status.conditions` as stored (objects only).
    pub conditions: Vec<Value>,
}

impl Federation {
    /// Parses one snapshot object. `Err` names the object and the field that is wrong.
    pub fn parse(obj: &Value) -> Result<Federation, String> {
        let name = k8s::name(obj)
            .filter(|n| !n.is_empty())
            .ok_or("IstioFederation without metadata.name")?
            .to_string();
        let field = |path: &str| obj.pointer(path);
        let trust_domain = match field("/spec/trustDomain") {
            Some(Value::String(s)) if k8s::is_trust_domain(s) => s.clone(),
            Some(Value::String(s)) => {
                return Err(format!("IstioFederation {name}: spec.trustDomain {s:?} does not match ^[0-9a-zA-Z._-]+$"));
            }
            _ => {
                return Err(format!(
                    "IstioFederation {name}: spec.trustDomain must be a non-empty string"
                ))
            }
        };
        let metadata_endpoint = match field("/spec/metadataEndpoint") {
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
                    "IstioFederation {name}: {} must be a string",
                    &path[1..].replace('/', ".")
                )),
            }
        };
        let cluster_ca = match string_opt("/spec/metadata/clusterCA")? {
            Some(ca) => Some(ca),
            None => string_opt("/spec/metadata/ca")?,
        };
        let insecure = match field("/spec/metadata/enableInsecureConnection") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(format!("IstioFederation {name}: spec.metadata.enableInsecureConnection must be a boolean"));
            }
        };
        let cache = field("/status/metadataCache");
        // Anything present is kept, even if it is not an object: validation then reports it as
        // unusable (and the federation's objects are kept), instead of it reading as "absent".
        let obj_at = |key: &str| {
            cache
                .and_then(|c| c.get(key))
                .filter(|v| !v.is_null())
                .cloned()
        };
        let str_at = |key: &str| {
            cache
                .and_then(|c| c.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let conditions = field("/status/conditions")
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
            cached_public: obj_at("public"),
            public_fetched_at: str_at("publicLastFetchTimestamp"),
            cached_private: obj_at("private"),
            private_fetched_at: str_at("privateLastFetchTimestamp"),
            conditions,
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
