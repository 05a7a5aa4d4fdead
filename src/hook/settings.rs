//! Settings: built-in defaults, then the addon-operator values file (`VALUES_PATH`), then the
//! environment — later wins (docs/reference/settings.md). Parsed once, validated once; every error
//! names the setting so an operator knows what to fix.

use serde_json::Value;
use std::time::Duration;

/// Where remote roots go (docs/how-it-works.md, "Trust bundle modes").
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
    /// `MAX_ROOTS_PER_PEER`, `MAX_SERVICES_PER_PEER`, `MAX_GATEWAYS_PER_PEER`,
    /// `MAX_SERVICES_TOTAL` (docs/reference/settings.md).
    pub limits: PeerLimits,
    /// How long a root a peer stopped publishing stays trusted (`ROOT_RETENTION`, default 48h;
    /// zero drops it at once). docs/rotation.md.
    pub root_retention: Duration,
    /// `DATAPLANE_PROBE` (default off): probe every peer's health-check service through the
    /// mesh each run (docs/operating.md, "Data-plane probe"). Needs the hook's pod in the mesh.
    pub dataplane_probe: bool,
    /// `HOOK_SCHEDULE`: the crontab of both hooks' schedule binding (default `* * * * *`,
    /// every minute). shell-operator's cron (robfig/cron v2) also takes a seconds field first
    /// (`*/5 * * * * *`) and `@every 30s`-style descriptors (reference/settings.md).
    pub hook_schedule: String,
    /// `MASS_DELETION_GRACE` (default 5m): how long deletes that would remove all federations,
    /// or more than half of them, are held before they are carried out (docs/security.md, "Platform failures").
    /// Zero holds nothing.
    pub mass_deletion_grace: Duration,
    /// `AUTHORIZATION_POLICIES` (default on): bound what each peer's workloads reach to the
    /// services exported to it (docs/security.md, "Exported means reachable"); off removes
    /// the policies the hook wrote.
    pub authorization_policies: bool,
    /// `ISTIO_ROOT_NAMESPACE`: Istio's root namespace (`meshConfig.rootNamespace`), where a
    /// policy without selector applies mesh-wide; the Istio namespace by default.
    pub authz_root_namespace: String,
    /// `FEDERATION_GATEWAY` (`<namespace>/<name>`, off by default): the federation Gateway
    /// whose AUTO_PASSTHROUGH servers' `hosts` the hook keeps equal to the hosts exported to at
    /// least one peer (docs/security.md, "Exported means reachable").
    pub federation_gateway: Option<(String, String)>,
}

/// What one peer's metadata may carry. A document over a limit is refused as a whole, so a
/// peer cannot grow the objects every federation shares past what the API server accepts
/// (docs/security.md, "Limits and shares").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    pub roots: usize,
    pub services: usize,
    pub gateways: usize,
    /// `MAX_SERVICES_TOTAL`: the services one run imports from all federations together,
    /// shared fairly between them (README, "Security").
    pub services_total: usize,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            roots: 8,
            services: 2000,
            gateways: 64,
            services_total: 50_000,
        }
    }
}

/// `ROOT_RETENTION` when unset: two days, longer than an Istio workload certificate lives
/// (24 h by default), so every workload of a rotating peer is re-issued before its old root goes.
pub(crate) const DEFAULT_ROOT_RETENTION: Duration = Duration::from_secs(48 * 3600);

/// `MASS_DELETION_GRACE` when unset: five schedule runs, long enough for shell-operator to
/// restart a lost informer, short enough that a real mass deletion waits only minutes.
pub(crate) const DEFAULT_MASS_DELETION_GRACE: Duration = Duration::from_secs(5 * 60);

/// Name of the plug-in CA Secret istiod reads.
pub(crate) const CACERTS_SECRET: &str = "cacerts";
/// ConfigMap istiod publishes with the local root.
pub(crate) const LOCAL_ROOT_CONFIGMAP: &str = "istio-ca-root-cert";

/// A setting that cannot be used. Every variant names the setting, so an operator knows what
/// to fix; the texts are what the hook prints before it exits (docs/reference/settings.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A value of the wrong form: `TRUST_BUNDLE_MODE: expected mesh-config or cacerts, got "x"`.
    #[error("{setting}: expected {expected}, got {got}")]
    Malformed {
        setting: &'static str,
        expected: &'static str,
        /// The value as given (quoted when it was a string).
        got: String,
    },
    /// A name that Kubernetes (or SPIFFE) would not accept.
    #[error("{setting}: {value:?} is not a valid {what}")]
    InvalidName {
        setting: &'static str,
        value: String,
        what: &'static str,
    },
    /// Federation is enabled but a setting it cannot work without is not set.
    #[error(
        "federation is enabled but the {what} is not set: set {value_path} in values or {env}"
    )]
    Missing {
        what: &'static str,
        value_path: &'static str,
        env: &'static str,
    },
}

/// Where settings come from: the values document (if any), looked up by key path, and the
/// environment, which wins. Both are lookups so that what the loader reads can be observed
/// (the docs tests hold docs/reference/settings.md to it).
struct Sources<'a> {
    values: &'a dyn Fn(&[&str]) -> Option<Value>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Sources<'_> {
    fn value(&self, path: &[&str]) -> Option<Value> {
        (self.values)(path)
    }

    /// An environment variable; set but blank counts as unset.
    fn env(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|s| !s.trim().is_empty())
    }

    /// `istio.federation.enabled` from values, overridden by `ISTIO_FEDERATION_ENABLED`.
    /// Absent means disabled: a hook that nobody configured must not touch the cluster.
    fn enabled(&self) -> Result<bool, SettingsError> {
        const SETTING: &str = "values istio.federation.enabled";
        let malformed = |got: String| SettingsError::Malformed {
            setting: SETTING,
            expected: "a boolean",
            got,
        };
        let mut enabled = match self.value(&["istio", "federation", "enabled"]) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(Value::String(s)) => parse_bool(&s).ok_or_else(|| malformed(format!("{s:?}")))?,
            Some(other) => return Err(malformed(other.to_string())),
        };
        if let Some(s) = self.env("ISTIO_FEDERATION_ENABLED") {
            enabled = parse_bool(&s).ok_or_else(|| SettingsError::Malformed {
                setting: "ISTIO_FEDERATION_ENABLED",
                expected: "true or false",
                got: format!("{s:?}"),
            })?;
        }
        Ok(enabled)
    }

    /// A string from the environment, else from values (a blank string counts as unset).
    fn env_or_value(
        &self,
        name: &str,
        path: &[&str],
        setting: &'static str,
    ) -> Result<String, SettingsError> {
        if let Some(s) = self.env(name) {
            return Ok(s.trim().to_string());
        }
        match self.value(path) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(other) => Err(SettingsError::Malformed {
                setting,
                expected: "a string",
                got: other.to_string(),
            }),
        }
    }

    /// A namespace from the environment, `d8-istio` (Deckhouse's) by default.
    fn namespace(&self, name: &'static str) -> Result<String, SettingsError> {
        let v = self.env(name).unwrap_or_else(|| "d8-istio".to_string());
        let v = v.trim().to_string();
        if crate::hook::k8s::is_dns1123_label(&v) {
            Ok(v)
        } else {
            Err(SettingsError::InvalidName {
                setting: name,
                value: v,
                what: "namespace name (DNS-1123 label)",
            })
        }
    }

    fn trust_bundle_mode(&self) -> Result<TrustBundleMode, SettingsError> {
        match self.env("TRUST_BUNDLE_MODE").as_deref().map(str::trim) {
            None | Some("mesh-config") => Ok(TrustBundleMode::MeshConfig),
            Some("cacerts") => Ok(TrustBundleMode::Cacerts),
            Some(other) => Err(SettingsError::Malformed {
                setting: "TRUST_BUNDLE_MODE",
                expected: "mesh-config or cacerts",
                got: format!("{other:?}"),
            }),
        }
    }

    fn mesh_config_name(&self) -> Result<String, SettingsError> {
        let name = self
            .env("MESH_CONFIG_NAME")
            .unwrap_or_else(|| "istio".to_string());
        let name = name.trim().to_string();
        if crate::hook::k8s::is_object_name(&name) {
            Ok(name)
        } else {
            Err(SettingsError::InvalidName {
                setting: "MESH_CONFIG_NAME",
                value: name,
                what: "ConfigMap name",
            })
        }
    }

    /// The networking.istio.io version objects are written in; only versions that serve
    /// ServiceEntry and DestinationRule with the fields we write.
    fn networking_api_version(&self) -> Result<String, SettingsError> {
        let v = self
            .env("ISTIO_NETWORKING_API_VERSION")
            .unwrap_or_else(|| "networking.istio.io/v1beta1".to_string());
        let v = v.trim().to_string();
        match v.split_once('/') {
            Some(("networking.istio.io", ver)) if ["v1", "v1beta1", "v1alpha3"].contains(&ver) => {
                Ok(v)
            }
            _ => Err(SettingsError::Malformed {
                setting: "ISTIO_NETWORKING_API_VERSION",
                expected: "networking.istio.io/v1, v1beta1 or v1alpha3",
                got: format!("{v:?}"),
            }),
        }
    }

    /// A duration between 1ms and 1h: longer would hold the hook's queue for too long.
    fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, SettingsError> {
        match self.env(name) {
            None => Ok(default),
            Some(s) => parse_duration(&s)
                .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
                .ok_or_else(|| SettingsError::Malformed {
                    setting: name,
                    expected: "a duration between 1ms and 1h like 10s or 500ms",
                    got: format!("{s:?}"),
                }),
        }
    }

    /// `ROOT_RETENTION`: any duration, zero included (`0s` = a retired root leaves at once).
    fn root_retention(&self) -> Result<Duration, SettingsError> {
        match self.env("ROOT_RETENTION") {
            None => Ok(DEFAULT_ROOT_RETENTION),
            Some(s) => parse_duration(&s).ok_or_else(|| SettingsError::Malformed {
                setting: "ROOT_RETENTION",
                expected: "a duration like 48h, 30m or 0s",
                got: format!("{s:?}"),
            }),
        }
    }

    /// `MASS_DELETION_GRACE`: any duration, zero included (`0s` = deletes are never held).
    fn mass_deletion_grace(&self) -> Result<Duration, SettingsError> {
        match self.env("MASS_DELETION_GRACE") {
            None => Ok(DEFAULT_MASS_DELETION_GRACE),
            Some(s) => parse_duration(&s).ok_or_else(|| SettingsError::Malformed {
                setting: "MASS_DELETION_GRACE",
                expected: "a duration like 5m, 30s or 0s",
                got: format!("{s:?}"),
            }),
        }
    }

    /// A boolean from the environment, `default` when unset.
    fn flag(&self, name: &'static str, default: bool) -> Result<bool, SettingsError> {
        match self.env(name) {
            None => Ok(default),
            Some(s) => parse_bool(&s).ok_or_else(|| SettingsError::Malformed {
                setting: name,
                expected: "true or false",
                got: format!("{s:?}"),
            }),
        }
    }

    /// `HOOK_SCHEDULE`: checked here as shell-operator's cron parser reads it, so a typo is
    /// this hook's one-line error instead of shell-operator refusing to start.
    fn hook_schedule(&self) -> Result<String, SettingsError> {
        let Some(s) = self.env("HOOK_SCHEDULE") else {
            return Ok(DEFAULT_HOOK_SCHEDULE.to_string());
        };
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if is_crontab(&s) {
            Ok(s)
        } else {
            Err(SettingsError::Malformed {
                setting: "HOOK_SCHEDULE",
                expected: "a crontab of 5 fields, or 6 with seconds first, or @every <duration>",
                got: format!("{s:?}"),
            })
        }
    }

    fn fetch_concurrency(&self) -> Result<usize, SettingsError> {
        let Some(s) = self.env("FETCH_CONCURRENCY") else {
            return Ok(64);
        };
        match s.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err(SettingsError::Malformed {
                setting: "FETCH_CONCURRENCY",
                expected: "an integer 1..1024",
                got: format!("{s:?}"),
            }),
        }
    }

    fn fetch_max_bytes(&self) -> Result<u64, SettingsError> {
        let Some(s) = self.env("FETCH_MAX_BYTES") else {
            return Ok(4 * 1024 * 1024);
        };
        parse_size(&s)
            .filter(|n| *n >= 1024)
            .ok_or_else(|| SettingsError::Malformed {
                setting: "FETCH_MAX_BYTES",
                expected: "a size of at least 1KiB like 4MiB",
                got: format!("{s:?}"),
            })
    }

    /// A per-peer limit: an integer 1..=100000 (past that no object fits the budget anyway).
    fn limit(&self, name: &'static str, default: usize) -> Result<usize, SettingsError> {
        let Some(s) = self.env(name) else {
            return Ok(default);
        };
        match s.trim().parse::<usize>() {
            Ok(n) if (1..=100_000).contains(&n) => Ok(n),
            _ => Err(SettingsError::Malformed {
                setting: name,
                expected: "an integer 1..100000",
                got: format!("{s:?}"),
            }),
        }
    }

    /// The fleet-wide cap: an integer 1..=1000000 (a run writing two million objects is
    /// what the cap is there to prevent).
    fn total_limit(&self, name: &'static str, default: usize) -> Result<usize, SettingsError> {
        let Some(s) = self.env(name) else {
            return Ok(default);
        };
        match s.trim().parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
            _ => Err(SettingsError::Malformed {
                setting: name,
                expected: "an integer 1..1000000",
                got: format!("{s:?}"),
            }),
        }
    }

    /// `FEDERATION_GATEWAY`: `<namespace>/<name>` of a Gateway; unset or `none`: not managed.
    fn federation_gateway(&self) -> Result<Option<(String, String)>, SettingsError> {
        let Some(v) = self.env("FEDERATION_GATEWAY") else {
            return Ok(None);
        };
        let v = v.trim();
        if v.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        match v.split_once('/') {
            Some((ns, name))
                if crate::hook::k8s::is_dns1123_label(ns)
                    && crate::hook::k8s::is_object_name(name) =>
            {
                Ok(Some((ns.to_string(), name.to_string())))
            }
            _ => Err(SettingsError::Malformed {
                setting: "FEDERATION_GATEWAY",
                expected: "<namespace>/<name> of a Gateway, or none",
                got: format!("{v:?}"),
            }),
        }
    }

    fn limits(&self) -> Result<PeerLimits, SettingsError> {
        let d = PeerLimits::default();
        Ok(PeerLimits {
            roots: self.limit("MAX_ROOTS_PER_PEER", d.roots)?,
            services: self.limit("MAX_SERVICES_PER_PEER", d.services)?,
            gateways: self.limit("MAX_GATEWAYS_PER_PEER", d.gateways)?,
            services_total: self.total_limit("MAX_SERVICES_TOTAL", d.services_total)?,
        })
    }
}

impl Settings {
    /// Reads settings from `values` (the parsed `VALUES_PATH` document, if any) and the
    /// environment lookup `env`. Malformed values are errors here, in field order; missing
    /// required ones are checked by [`Settings::check_required`].
    pub fn load(
        values: Option<&Value>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let lookup = |path: &[&str]| {
            let mut v = values?;
            for p in path {
                v = v.get(p)?;
            }
            Some(v.clone())
        };
        Settings::load_from(&lookup, env)
    }

    /// [`Settings::load`] with the values document as a lookup by key path.
    pub(crate) fn load_from(
        values: &dyn Fn(&[&str]) -> Option<Value>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let src = Sources { values, env };
        Ok(Settings {
            enabled: src.enabled()?,
            cluster_domain: src.env_or_value(
                "CLUSTER_DOMAIN",
                &["global", "discovery", "clusterDomain"],
                "values global.discovery.clusterDomain",
            )?,
            cluster_uuid: src.env_or_value(
                "CLUSTER_UUID",
                &["global", "discovery", "clusterUUID"],
                "values global.discovery.clusterUUID",
            )?,
            federation_namespace: src.namespace("FEDERATION_NAMESPACE")?,
            istio_namespace: src.namespace("ISTIO_NAMESPACE")?,
            trust_bundle_mode: src.trust_bundle_mode()?,
            mesh_config_name: src.mesh_config_name()?,
            networking_api_version: src.networking_api_version()?,
            fetch_timeout: src.duration("FETCH_TIMEOUT", Duration::from_secs(10))?,
            fetch_deadline: src.duration("FETCH_DEADLINE", Duration::from_secs(30))?,
            fetch_concurrency: src.fetch_concurrency()?,
            fetch_max_bytes: src.fetch_max_bytes()?,
            limits: src.limits()?,
            root_retention: src.root_retention()?,
            dataplane_probe: src.flag("DATAPLANE_PROBE", false)?,
            hook_schedule: src.hook_schedule()?,
            mass_deletion_grace: src.mass_deletion_grace()?,
            authorization_policies: src.flag("AUTHORIZATION_POLICIES", true)?,
            authz_root_namespace: match src.env("ISTIO_ROOT_NAMESPACE") {
                Some(_) => src.namespace("ISTIO_ROOT_NAMESPACE")?,
                None => src.namespace("ISTIO_NAMESPACE")?,
            },
            federation_gateway: src.federation_gateway()?,
        })
    }

    /// The settings a run needs when federation is enabled. A missing one is an error, never a
    /// silent no-op: with no own trust domain we could not tell our services from a peer's.
    /// Not checked at `--config` time, where addon-operator passes no values yet.
    pub fn check_required(&self) -> Result<(), SettingsError> {
        if self.cluster_domain.is_empty() {
            return Err(SettingsError::Missing {
                what: "own trust domain",
                value_path: "global.discovery.clusterDomain",
                env: "CLUSTER_DOMAIN",
            });
        }
        if !crate::hook::k8s::is_trust_domain(&self.cluster_domain) {
            return Err(SettingsError::InvalidName {
                setting: "CLUSTER_DOMAIN / global.discovery.clusterDomain",
                value: self.cluster_domain.clone(),
                what: "trust domain",
            });
        }
        if self.cluster_uuid.is_empty() {
            return Err(SettingsError::Missing {
                what: "own cluster UUID",
                value_path: "global.discovery.clusterUUID",
                env: "CLUSTER_UUID",
            });
        }
        Ok(())
    }
}

/// `HOOK_SCHEDULE` when unset: every minute.
pub(crate) const DEFAULT_HOOK_SCHEDULE: &str = "* * * * *";

/// A crontab robfig/cron v2 (shell-operator's parser) accepts: 5 fields (minute first) or 6
/// (seconds first), each a list of `*`, `?`, numbers, ranges, steps or month/day names; or a
/// descriptor (`@hourly`, `@every 30s`, ...). Field ranges are left to the parser.
fn is_crontab(s: &str) -> bool {
    if let Some(every) = s.strip_prefix("@every ") {
        return every.len() > 1
            && every.ends_with(['s', 'm', 'h'])
            && every.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    }
    if s.starts_with('@') {
        return [
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ]
        .contains(&s);
    }
    let fields: Vec<&str> = s.split(' ').collect();
    (5..=6).contains(&fields.len())
        && fields.iter().all(|f| {
            !f.is_empty()
                && f.split(',').all(|part| {
                    !part.is_empty()
                        && part.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '/' | '-')
                        })
                })
        })
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
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
pub(crate) fn parse_size(s: &str) -> Option<u64> {
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

    fn load(values: Option<Value>, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
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
    fn hook_schedule_is_every_minute_unless_set_and_must_parse_as_a_crontab() {
        assert_eq!(load(None, &[]).unwrap().hook_schedule, "* * * * *");
        for ok in [
            "*/5 * * * * *",
            "0 */2 * * *",
            "  */10   * * * * * ",
            "@every 30s",
            "@hourly",
            "0 0 * * MON-FRI",
            "0,30 * * ? * *",
        ] {
            let s = load(None, &[("HOOK_SCHEDULE", ok)]).unwrap();
            assert_eq!(
                s.hook_schedule,
                ok.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        for bad in [
            "* * * *",
            "* * * * * * *",
            "every minute",
            "@every",
            "@sometimes",
            "*/5 * * * $ *",
            "1,,2 * * * *",
        ] {
            let err = load(None, &[("HOOK_SCHEDULE", bad)])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("HOOK_SCHEDULE: expected a crontab"),
                "{bad}: {err}"
            );
        }
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
        assert_eq!(
            s.limits,
            PeerLimits {
                roots: 8,
                services: 2000,
                gateways: 64,
                services_total: 50_000,
            }
        );
    }

    #[test]
    fn peer_limits_are_validated_and_named() {
        let s = load(
            None,
            &[("MAX_SERVICES_PER_PEER", "10"), ("MAX_ROOTS_PER_PEER", "2")],
        )
        .unwrap();
        assert_eq!(
            (s.limits.roots, s.limits.services, s.limits.gateways),
            (2, 10, 64)
        );
        let s = load(None, &[("MAX_SERVICES_TOTAL", "1000000")]).unwrap();
        assert_eq!(s.limits.services_total, 1_000_000);
        for bad in ["0", "1000001", "lots"] {
            assert_eq!(
                load(None, &[("MAX_SERVICES_TOTAL", bad)])
                    .unwrap_err()
                    .to_string(),
                format!("MAX_SERVICES_TOTAL: expected an integer 1..1000000, got {bad:?}")
            );
        }
        for name in [
            "MAX_ROOTS_PER_PEER",
            "MAX_SERVICES_PER_PEER",
            "MAX_GATEWAYS_PER_PEER",
        ] {
            for bad in ["0", "-1", "many", "100001"] {
                assert_eq!(
                    load(None, &[(name, bad)]).unwrap_err().to_string(),
                    format!("{name}: expected an integer 1..100000, got {bad:?}")
                );
            }
        }
    }

    #[test]
    fn dataplane_probe_is_off_unless_asked_for() {
        assert!(!load(None, &[]).unwrap().dataplane_probe);
        assert!(
            load(None, &[("DATAPLANE_PROBE", "true")])
                .unwrap()
                .dataplane_probe
        );
        assert!(
            !load(None, &[("DATAPLANE_PROBE", "off")])
                .unwrap()
                .dataplane_probe
        );
        assert_eq!(
            load(None, &[("DATAPLANE_PROBE", "sometimes")])
                .unwrap_err()
                .to_string(),
            "DATAPLANE_PROBE: expected true or false, got \"sometimes\""
        );
    }

    #[test]
    fn mass_deletion_grace_defaults_to_5m_and_names_itself() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s.mass_deletion_grace, Duration::from_secs(300));
        let s = load(None, &[("MASS_DELETION_GRACE", "20s")]).unwrap();
        assert_eq!(s.mass_deletion_grace, Duration::from_secs(20));
        let s = load(None, &[("MASS_DELETION_GRACE", "0s")]).unwrap();
        assert_eq!(s.mass_deletion_grace, Duration::ZERO);
        let e = load(None, &[("MASS_DELETION_GRACE", "a while")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MASS_DELETION_GRACE"), "{e}");
    }

    #[test]
    fn root_retention_defaults_to_48h() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s.root_retention, Duration::from_secs(48 * 3600));
    }

    #[test]
    fn root_retention_takes_zero_and_names_itself() {
        let s = load(None, &[("ROOT_RETENTION", "0s")]).unwrap();
        assert_eq!(s.root_retention, Duration::ZERO);
        let s = load(None, &[("ROOT_RETENTION", "90m")]).unwrap();
        assert_eq!(s.root_retention, Duration::from_secs(5400));
        assert_eq!(
            load(None, &[("ROOT_RETENTION", "two days")])
                .unwrap_err()
                .to_string(),
            "ROOT_RETENTION: expected a duration like 48h, 30m or 0s, got \"two days\""
        );
        assert!(load(None, &[("ROOT_RETENTION", "-1h")]).is_err());
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
        .unwrap_err()
        .to_string();
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
        .unwrap_err()
        .to_string();
        assert!(err.contains("CLUSTER_UUID"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(load(None, &[("TRUST_BUNDLE_MODE", "spiffe")])
            .unwrap_err()
            .to_string()
            .starts_with("TRUST_BUNDLE_MODE"));
        assert!(load(None, &[("FETCH_TIMEOUT", "soon")])
            .unwrap_err()
            .to_string()
            .starts_with("FETCH_TIMEOUT"));
        assert!(load(None, &[("FETCH_CONCURRENCY", "0")])
            .unwrap_err()
            .to_string()
            .starts_with("FETCH_CONCURRENCY"));
        assert!(load(None, &[("FETCH_MAX_BYTES", "lots")])
            .unwrap_err()
            .to_string()
            .starts_with("FETCH_MAX_BYTES"));
        assert!(load(None, &[("FEDERATION_NAMESPACE", "Bad_NS")])
            .unwrap_err()
            .to_string()
            .starts_with("FEDERATION_NAMESPACE"));
        let v = json!({"istio": {"federation": {"enabled": "maybe"}}});
        assert_eq!(
            load(Some(v), &[]).unwrap_err(),
            SettingsError::Malformed {
                setting: "values istio.federation.enabled",
                expected: "a boolean",
                got: "\"maybe\"".into()
            }
        );
    }

    /// The texts an operator sees (and the CLI tests match) stay as they were.
    #[test]
    fn error_texts_are_unchanged() {
        let text = |env: &[(&str, &str)]| load(None, env).unwrap_err().to_string();
        assert_eq!(
            text(&[("TRUST_BUNDLE_MODE", "spiffe")]),
            "TRUST_BUNDLE_MODE: expected mesh-config or cacerts, got \"spiffe\""
        );
        assert_eq!(
            text(&[("MESH_CONFIG_NAME", "Bad Name")]),
            "MESH_CONFIG_NAME: \"Bad Name\" is not a valid ConfigMap name"
        );
        assert_eq!(
            text(&[("ISTIO_FEDERATION_ENABLED", "true"), ("CLUSTER_UUID", "u")]),
            "federation is enabled but the own trust domain is not set: set global.discovery.clusterDomain in values or CLUSTER_DOMAIN"
        );
        assert_eq!(
            text(&[
                ("ISTIO_FEDERATION_ENABLED", "true"),
                ("CLUSTER_UUID", "u"),
                ("CLUSTER_DOMAIN", "a b")
            ]),
            "CLUSTER_DOMAIN / global.discovery.clusterDomain: \"a b\" is not a valid trust domain"
        );
        assert_eq!(
            text(&[("FETCH_DEADLINE", "2h")]),
            "FETCH_DEADLINE: expected a duration between 1ms and 1h like 10s or 500ms, got \"2h\""
        );
        let v = json!({"global": {"discovery": {"clusterUUID": 5}}});
        assert_eq!(
            load(Some(v), &[]).unwrap_err().to_string(),
            "values global.discovery.clusterUUID: expected a string, got 5"
        );
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
