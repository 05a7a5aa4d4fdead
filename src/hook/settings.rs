//! Settings: built-in defaults, then the addon-operator values file (`VALUES_PATH`), then the
//! environment — later wins (SPEC §3). Parsed once, validated once; every error names the
//! setting so an operator knows what to fix.

use serde_json::Value;
use std::time::Duration;

/// Where remote roots go (SPEC §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustBundleMode {
    /// `caCertificates` of the MeshConfig YAML in a ConfigMap (recommended).
    MeshConfig,
    /// Appended to `root-cert.pem` of the plug-in CA Secret `cacerts`.
    Cacerts,
}

impl TrustBundleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustBundleMode::MeshConfig => "mesh-config",
            TrustBundleMode::Cacerts => "cacerts",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub enabled: bool,
    /// Own trust domain (`global.discovery.clusterDomain`); empty only when disabled.
    pub cluster_domain: String,
    /// Own cluster UUID (`global.discovery.clusterUUID`); empty only when disabled.
    pub cluster_uuid: String,
    pub federation_namespace: String,
    pub istio_namespace: String,
    pub trust_bundle_mode: TrustBundleMode,
    pub mesh_config_name: String,
    pub networking_api_version: String,
    pub fetch_timeout: Duration,
    pub fetch_deadline: Duration,
    pub fetch_concurrency: usize,
    pub fetch_max_bytes: u64,
}

/// Name of the plug-in CA Secret istiod reads.
pub const CACERTS_SECRET: &str = "cacerts";
/// ConfigMap istiod publishes with the local root.
pub const LOCAL_ROOT_CONFIGMAP: &str = "istio-ca-root-cert";

impl Settings {
    /// Reads settings from `values` (the parsed `VALUES_PATH` document, if any) and the
    /// environment lookup `env`. Malformed values are errors here; missing required ones are
    /// checked by [`Settings::check_required`].
    pub fn load(
        values: Option<&Value>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let get_value = |path: &[&str]| -> Option<&Value> {
            let mut v = values?;
            for p in path {
                v = v.get(p)?;
            }
            Some(v)
        };
        let env_nonempty = |name: &str| env(name).filter(|s| !s.trim().is_empty());

        let mut enabled = match get_value(&["istio", "federation", "enabled"]) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => parse_bool(s).ok_or_else(|| {
                format!("values istio.federation.enabled: expected a boolean, got {s:?}")
            })?,
            Some(other) => {
                return Err(format!(
                    "values istio.federation.enabled: expected a boolean, got {other}"
                ));
            }
        };
        if let Some(s) = env_nonempty("ISTIO_FEDERATION_ENABLED") {
            enabled = parse_bool(&s).ok_or_else(|| {
                format!("ISTIO_FEDERATION_ENABLED: expected true or false, got {s:?}")
            })?;
        }

        let value_string = |path: &[&str], label: &str| -> Result<Option<String>, String> {
            match get_value(path) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(other) => Err(format!("values {label}: expected a string, got {other}")),
            }
        };
        let cluster_domain = match env_nonempty("CLUSTER_DOMAIN") {
            Some(s) => Some(s.trim().to_string()),
            None => value_string(
                &["global", "discovery", "clusterDomain"],
                "global.discovery.clusterDomain",
            )?,
        };
        let cluster_uuid = match env_nonempty("CLUSTER_UUID") {
            Some(s) => Some(s.trim().to_string()),
            None => value_string(
                &["global", "discovery", "clusterUUID"],
                "global.discovery.clusterUUID",
            )?,
        };

        let namespace = |name: &str| -> Result<String, String> {
            let v = env_nonempty(name).unwrap_or_else(|| "d8-istio".to_string());
            let v = v.trim().to_string();
            if crate::hook::k8s::is_dns1123_label(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "{name}: {v:?} is not a valid namespace name (DNS-1123 label)"
                ))
            }
        };
        let federation_namespace = namespace("FEDERATION_NAMESPACE")?;
        let istio_namespace = namespace("ISTIO_NAMESPACE")?;

        let trust_bundle_mode = match env_nonempty("TRUST_BUNDLE_MODE").as_deref().map(str::trim) {
            None | Some("mesh-config") => TrustBundleMode::MeshConfig,
            Some("cacerts") => TrustBundleMode::Cacerts,
            Some(other) => {
                return Err(format!(
                    "TRUST_BUNDLE_MODE: expected mesh-config or cacerts, got {other:?}"
                ));
            }
        };
        let mesh_config_name =
            env_nonempty("MESH_CONFIG_NAME").unwrap_or_else(|| "istio".to_string());
        let mesh_config_name = mesh_config_name.trim().to_string();
        if !crate::hook::k8s::is_object_name(&mesh_config_name) {
            return Err(format!(
                "MESH_CONFIG_NAME: {mesh_config_name:?} is not a valid ConfigMap name"
            ));
        }
        let networking_api_version = env_nonempty("ISTIO_NETWORKING_API_VERSION")
            .unwrap_or_else(|| "networking.istio.io/v1beta1".to_string());
        let networking_api_version = networking_api_version.trim().to_string();
        match networking_api_version.split_once('/') {
            Some(("networking.istio.io", v)) if ["v1", "v1beta1", "v1alpha3"].contains(&v) => {}
            _ => {
                return Err(format!(
                    "ISTIO_NETWORKING_API_VERSION: expected networking.istio.io/v1, v1beta1 or v1alpha3, got {networking_api_version:?}"
                ));
            }
        }

        let fetch_timeout = duration_setting(env, "FETCH_TIMEOUT", Duration::from_secs(10))?;
        let fetch_deadline = duration_setting(env, "FETCH_DEADLINE", Duration::from_secs(30))?;
        let fetch_concurrency = match env_nonempty("FETCH_CONCURRENCY") {
            None => 64,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "FETCH_CONCURRENCY: expected an integer 1..1024, got {s:?}"
                    ))
                }
            },
        };
        let fetch_max_bytes = match env_nonempty("FETCH_MAX_BYTES") {
            None => 4 * 1024 * 1024,
            Some(s) => parse_size(&s).filter(|n| *n >= 1024).ok_or_else(|| {
                format!("FETCH_MAX_BYTES: expected a size of at least 1KiB like 4MiB, got {s:?}")
            })?,
        };

        let settings = Settings {
            enabled,
            cluster_domain: cluster_domain.unwrap_or_default(),
            cluster_uuid: cluster_uuid.unwrap_or_default(),
            federation_namespace,
            istio_namespace,
            trust_bundle_mode,
            mesh_config_name,
            networking_api_version,
            fetch_timeout,
            fetch_deadline,
            fetch_concurrency,
            fetch_max_bytes,
        };
        Ok(settings)
    }

    /// The settings a run needs when federation is enabled. A missing one is an error, never a
    /// silent no-op: with no own trust domain we could not tell our services from a peer's.
    /// Not checked at `--config` time, where addon-operator passes no values yet.
    pub fn check_required(&self) -> Result<(), String> {
        if self.cluster_domain.is_empty() {
            return Err(
                "federation is enabled but the own trust domain is not set: set global.discovery.clusterDomain in values or CLUSTER_DOMAIN".into(),
            );
        }
        if !crate::protocol::names::is_trust_domain(&self.cluster_domain) {
            return Err(format!(
                "CLUSTER_DOMAIN / global.discovery.clusterDomain: {:?} is not a valid trust domain",
                self.cluster_domain
            ));
        }
        if self.cluster_uuid.is_empty() {
            return Err(
                "federation is enabled but the own cluster UUID is not set: set global.discovery.clusterUUID in values or CLUSTER_UUID".into(),
            );
        }
        Ok(())
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn duration_setting(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: Duration,
) -> Result<Duration, String> {
    match env(name).filter(|s| !s.trim().is_empty()) {
        None => Ok(default),
        Some(s) => parse_duration(&s)
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                format!(
                    "{name}: expected a duration between 1ms and 1h like 10s or 500ms, got {s:?}"
                )
            }),
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses `4MiB`, `512KiB`, `1MB`, `4096`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "k" | "kB" => 1000,
        "Ki" | "KiB" => 1024,
        "M" | "MB" => 1_000_000,
        "Mi" | "MiB" => 1024 * 1024,
        "G" | "GB" => 1_000_000_000,
        "Gi" | "GiB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn load(values: Option<Value>, env: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let s = Settings::load(values.as_ref(), &|k| map.get(k).cloned())?;
        if s.enabled {
            s.check_required()?;
        }
        Ok(s)
    }

    #[test]
    fn defaults_when_disabled() {
        let s = load(None, &[]).unwrap();
        assert!(!s.enabled);
        assert_eq!(s.federation_namespace, "d8-istio");
        assert_eq!(s.trust_bundle_mode, TrustBundleMode::MeshConfig);
        assert_eq!(s.networking_api_version, "networking.istio.io/v1beta1");
        assert_eq!(s.fetch_timeout, Duration::from_secs(10));
        assert_eq!(s.fetch_deadline, Duration::from_secs(30));
        assert_eq!(s.fetch_concurrency, 64);
        assert_eq!(s.fetch_max_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn values_then_env() {
        let values = json!({"istio": {"federation": {"enabled": true}},
            "global": {"discovery": {"clusterDomain": "a.local", "clusterUUID": "uuid-a"}}});
        let s = load(Some(values.clone()), &[]).unwrap();
        assert!(s.enabled);
        assert_eq!(s.cluster_domain, "a.local");
        let s = load(
            Some(values),
            &[
                ("CLUSTER_DOMAIN", "b.local"),
                ("ISTIO_FEDERATION_ENABLED", "false"),
            ],
        )
        .unwrap();
        assert!(!s.enabled);
        assert_eq!(s.cluster_domain, "b.local");
    }

    #[test]
    fn missing_required_names_the_setting() {
        let err = load(
            None,
            &[("ISTIO_FEDERATION_ENABLED", "true"), ("CLUSTER_UUID", "u")],
        )
        .unwrap_err();
        assert!(
            err.contains("global.discovery.clusterDomain") && err.contains("CLUSTER_DOMAIN"),
            "{err}"
        );
        let err = load(
            None,
            &[
                ("ISTIO_FEDERATION_ENABLED", "true"),
                ("CLUSTER_DOMAIN", "a.local"),
            ],
        )
        .unwrap_err();
        assert!(err.contains("CLUSTER_UUID"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(load(None, &[("TRUST_BUNDLE_MODE", "spiffe")])
            .unwrap_err()
            .starts_with("TRUST_BUNDLE_MODE"));
        assert!(load(None, &[("FETCH_TIMEOUT", "soon")])
            .unwrap_err()
            .starts_with("FETCH_TIMEOUT"));
        assert!(load(None, &[("FETCH_CONCURRENCY", "0")])
            .unwrap_err()
            .starts_with("FETCH_CONCURRENCY"));
        assert!(load(None, &[("FETCH_MAX_BYTES", "lots")])
            .unwrap_err()
            .starts_with("FETCH_MAX_BYTES"));
        assert!(load(None, &[("FEDERATION_NAMESPACE", "Bad_NS")])
            .unwrap_err()
            .starts_with("FEDERATION_NAMESPACE"));
        let v = json!({"istio": {"federation": {"enabled": "maybe"}}});
        assert!(load(Some(v), &[])
            .unwrap_err()
            .contains("istio.federation.enabled"));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_size("4MiB"), Some(4194304));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("1TB"), None);
    }
}
