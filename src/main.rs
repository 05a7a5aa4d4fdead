//! istio-federation-hook: the imperative shell. Reads the inputs, calls the pure core,
//! writes the outputs. See README.md for the pipeline.

use istio_federation_hook::{
    binding, certs, config, export, fetch, logging, metadata, metrics, patch, reconcile,
    settings::Settings, timefmt,
};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;

const USAGE: &str = "usage:
  istio-federation-hook [--config]           discovery hook (shell-operator): print config, or run once
  istio-federation-hook export [--config]    export hook: print config, or render our own metadata once
  istio-federation-hook serve [--listen ADDR] [--metadata-dir DIR] [--tls-cert FILE --tls-key FILE]
                                             metadata HTTP server for peers (serve --help for details)
  istio-federation-hook --help | --version

A run reads the binding context from $BINDING_CONTEXT_PATH (or stdin) and writes object patches
to $KUBERNETES_PATCH_PATH (or $D8_TEST_KUBERNETES_PATCH_SET_FILE, or stdout) and metrics to
$METRICS_PATH. Settings come from $VALUES_PATH and the environment; see README.md.";

fn main() -> ExitCode {
    logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => run_discovery(),
        ["--config"] => print_config(false),
        ["export"] => run_export(),
        ["export", "--config"] => print_config(true),
        ["serve", rest @ ..] => istio_federation_hook::serve::run(rest),
        ["--help"] | ["-h"] | ["help"] => {
            println!("{USAGE}");
            Ok(())
        }
        ["--version"] | ["-V"] => {
            println!("istio-federation-hook {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        // addon-operator probes extension-less hooks for the batch protocol: we are not one.
        ["hook", ..] => Err("not a batch hook: run with --config or without arguments".to_string()),
        _ => Err(format!("unknown arguments {:?}\n{USAGE}", args.join(" "))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr: shell-operator shows it as the run's error.
            log::error!(target: "main", "{}", e.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load_settings() -> Result<Settings, String> {
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
    Settings::load(values.as_ref(), &env)
}

fn print_config(export: bool) -> Result<(), String> {
    let settings = load_settings()?;
    let cfg = if export {
        export::config(&settings)
    } else {
        config::discovery_config(&settings)
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &cfg).map_err(|e| e.to_string())?;
    out.write_all(b"\n")
        .and_then(|_| out.flush())
        .map_err(|e| format!("writing config: {e}"))
}

/// The wall clock, in unix seconds.
fn wall_clock() -> Result<i64, String> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("system clock: {e}"))?;
    i64::try_from(d.as_secs()).map_err(|_| "system clock out of range".to_string())
}

/// The clock of the reconcile. `ISTIO_FEDERATION_HOOK_NOW` (RFC 3339) pins it for golden
/// tests and replays of a captured binding context; request tokens always use the wall clock.
fn now() -> Result<i64, String> {
    if let Some(s) = env("ISTIO_FEDERATION_HOOK_NOW").filter(|s| !s.is_empty()) {
        return timefmt::parse_rfc3339(&s)
            .ok_or_else(|| format!("ISTIO_FEDERATION_HOOK_NOW: {s:?} is not an RFC 3339 time"));
    }
    wall_clock()
}

/// `ISTIO_FEDERATION_HOOK_OFFLINE=true` reconciles from the cached metadata only, without
/// contacting peers (replays of a captured binding context, diagnosis without network).
fn offline() -> Result<bool, String> {
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

fn read_binding_context() -> Result<Vec<u8>, String> {
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
type Output = (String, std::io::BufWriter<Box<dyn Write>>);

/// Opens the output named by the first set variable (appending: shell-operator pre-creates
/// the file), or stdout when `to_stdout`; `None` when the output is not wanted.
fn open_output(vars: &[&str], to_stdout: bool) -> Result<Option<Output>, String> {
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

fn run_discovery() -> Result<(), String> {
    let settings = load_settings()?;
    if settings.enabled {
        settings.check_required()?;
    }
    let bytes = read_binding_context()?;
    let input = binding::parse_with(&bytes, &reconcile::RAW_BINDINGS)?;
    let now = now()?;
    let observed = reconcile::Observed::from_binding(&input);
    let fetched = if settings.enabled && observed.federations.is_some() && !offline()? {
        let feds = observed.federations.as_deref().unwrap_or(&[]);
        let own_fps = reconcile::own_root_fingerprints(&settings, &observed);
        let clock = wall_clock()?;
        let own = metadata::Own {
            cluster_uuid: &settings.cluster_uuid,
            root_fingerprints: &own_fps,
            now: clock,
        };
        fetch::fetch_all(
            &settings,
            feds,
            observed.private_key_pem().as_deref(),
            &own,
            clock,
        )
    } else {
        BTreeMap::new()
    };
    // Operations are streamed into the patch file as the reconcile decides them: the output
    // of a large first run is tens of MB and is never held in memory.
    let (what, mut out) = open_output(
        &["KUBERNETES_PATCH_PATH", "D8_TEST_KUBERNETES_PATCH_SET_FILE"],
        true,
    )?
    .unwrap_or_else(|| {
        (
            "stdout".to_string(),
            std::io::BufWriter::new(Box::new(std::io::sink())),
        )
    });
    let mut count = 0usize;
    let metric_ops = reconcile::reconcile_into(&settings, &observed, &fetched, now, &mut |op| {
        count += 1;
        patch::write_one(&mut out, &op).map_err(|e| format!("{what}: {e}"))
    })?;
    out.flush().map_err(|e| format!("{what}: {e}"))?;
    if let Some((what, out)) = open_output(&["METRICS_PATH"], false)? {
        metrics::write_ndjson(out, &metric_ops).map_err(|e| format!("{what}: {e}"))?;
    }
    log::debug!(target: "main", "{count} operations, {} metric operations", metric_ops.len());
    // The process ends here: freeing tens of thousands of small objects one by one costs more
    // than the reconcile itself on large clusters, and the OS reclaims them at once.
    std::mem::forget(observed);
    std::mem::forget(input);
    std::mem::forget(bytes);
    log_peak_rss();
    Ok(())
}

/// Logs the peak resident set size at debug level (what the scale bench reads).
fn log_peak_rss() {
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

fn run_export() -> Result<(), String> {
    let settings = load_settings()?;
    if settings.enabled {
        settings.check_required()?;
    }
    let bytes = read_binding_context()?;
    let input = binding::parse(&bytes)?;
    let new_key = if settings.enabled && export::needs_key_pair(&input) {
        let (private_pem, public_pem) = certs::generate_ed25519_pem()?;
        Some(export::NewKeyPair {
            private_pem,
            public_pem,
        })
    } else {
        None
    };
    let outcome = export::reconcile(&settings, &input, new_key.as_ref());
    if let Some((what, out)) = open_output(
        &["KUBERNETES_PATCH_PATH", "D8_TEST_KUBERNETES_PATCH_SET_FILE"],
        true,
    )? {
        patch::write_ndjson(out, &outcome.operations).map_err(|e| format!("{what}: {e}"))?;
    }
    if let Some((what, out)) = open_output(&["METRICS_PATH"], false)? {
        metrics::write_ndjson(out, &outcome.metrics).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(())
}
