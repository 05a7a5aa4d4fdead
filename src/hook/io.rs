//! The I/O edge every hook run shares: the environment, the clock, the binding context in and
//! the operation and metric files out. Everything else a run does is a pure function of what
//! these return.

use super::settings::Settings;
use super::timefmt;
use std::io::{Read, Write};

pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub(crate) fn load_settings() -> Result<Settings, String> {
    let values = match env("VALUES_PATH").filter(|p| !p.is_empty()) {
        None => None,
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("VALUES_PATH {path}: {e}"))?;
            if text.trim().is_empty() {
                None
            } else {
                let v = serde_json::from_str(&text)
                    .or_else(|_| serde_saphyr::from_str(&text))
                    .map_err(|e: serde_saphyr::Error| {
                        format!(
                            "VALUES_PATH {path}: neither JSON nor YAML: {}",
                            e.to_string().lines().next().unwrap_or("")
                        )
                    })?;
                Some(v)
            }
        }
    };
    Settings::load(values.as_ref(), &env).map_err(|e| e.to_string())
}

/// Prints a hook's shell-operator configuration on stdout.
pub(crate) fn print_config(cfg: &serde_json::Value) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, cfg).map_err(|e| e.to_string())?;
    out.write_all(b"\n")
        .and_then(|_| out.flush())
        .map_err(|e| format!("writing config: {e}"))
}

/// The wall clock, in unix seconds: the only place the product reads it (the hooks' shells and
/// `serve`'s token checks call this; everything else is handed `now`).
pub(crate) fn wall_clock() -> Result<i64, String> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("system clock: {e}"))?;
    i64::try_from(d.as_secs()).map_err(|_| "system clock out of range".to_string())
}

/// The clock of the reconcile. `ISTIO_FEDERATION_HOOK_NOW` (RFC 3339) pins it for golden
/// tests and replays of a captured binding context; request tokens always use the wall clock.
pub(crate) fn now() -> Result<i64, String> {
    if let Some(s) = env("ISTIO_FEDERATION_HOOK_NOW").filter(|s| !s.is_empty()) {
        return timefmt::parse_rfc3339(&s)
            .ok_or_else(|| format!("ISTIO_FEDERATION_HOOK_NOW: {s:?} is not an RFC 3339 time"));
    }
    wall_clock()
}

/// `ISTIO_FEDERATION_HOOK_OFFLINE=true` reconciles from the cached metadata only, without
/// contacting peers (replays of a captured binding context, diagnosis without network).
pub(crate) fn offline() -> Result<bool, String> {
    match env("ISTIO_FEDERATION_HOOK_OFFLINE")
        .as_deref()
        .map(str::trim)
    {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(format!(
            "ISTIO_FEDERATION_HOOK_OFFLINE: expected true or false, got {other:?}"
        )),
    }
}

pub(crate) fn read_binding_context() -> Result<Vec<u8>, String> {
    match env("BINDING_CONTEXT_PATH").filter(|p| !p.is_empty()) {
        Some(path) => std::fs::read(&path).map_err(|e| format!("BINDING_CONTEXT_PATH {path}: {e}")),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading binding context from stdin: {e}"))?;
            Ok(buf)
        }
    }
}

/// An opened output: what it is (for error messages) and the writer. The buffer is outermost
/// so that the many small writes of JSON serialisation are inlined copies, not dynamic calls.
pub(crate) type Output = (String, std::io::BufWriter<Box<dyn Write>>);

/// Opens the output named by the first set variable (appending: shell-operator pre-creates
/// the file), or stdout when `to_stdout`; `None` when the output is not wanted.
pub(crate) fn open_output(vars: &[&str], to_stdout: bool) -> Result<Option<Output>, String> {
    match vars
        .iter()
        .find_map(|v| env(v).filter(|p| !p.is_empty()).map(|p| (*v, p)))
    {
        Some((var, path)) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{var} {path}: {e}"))?;
            Ok(Some((
                format!("{var} {path}"),
                std::io::BufWriter::with_capacity(1 << 16, Box::new(f)),
            )))
        }
        None if to_stdout => Ok(Some((
            "stdout".to_string(),
            std::io::BufWriter::with_capacity(1 << 16, Box::new(std::io::stdout().lock())),
        ))),
        None => Ok(None),
    }
}

/// The variables naming the operations file, in the order they are tried.
pub(crate) const PATCH_OUTPUT: [&str; 2] =
    ["KUBERNETES_PATCH_PATH", "D8_TEST_KUBERNETES_PATCH_SET_FILE"];
/// The variable naming the metrics file.
pub(crate) const METRICS_OUTPUT: [&str; 1] = ["METRICS_PATH"];

/// Logs the peak resident set size at debug level (what the scale bench reads).
pub(crate) fn log_peak_rss() {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(kb) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().trim_end_matches(" kB").trim())
    {
        log::debug!(target: "main", "peak_rss_kb={kb}");
    }
}
