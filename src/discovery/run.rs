//! One discovery run, the imperative shell: read the settings and the binding context, fetch
//! (unless offline), probe the data plane (with `DATAPLANE_PROBE`), hand everything to the
//! pure [`crate::discovery::reconcile`], stream its operations into the patch file and write its metrics.

use crate::discovery::network::{fetch, probe};
use crate::discovery::{config, observed, reconcile};
use crate::hook::io::{self, METRICS_OUTPUT, PATCH_OUTPUT};
use crate::hook::settings::Settings;
use crate::hook::{binding, metrics, operations};
use crate::protocol::metadata;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Instant;

/// `--config`: the discovery hook's bindings.
pub fn print_config() -> Result<(), String> {
    io::print_config(&config::discovery_config(&io::load_settings()?))
}

/// The settings (checked when federation is enabled) and the binding context's bytes, read
/// as every discovery run and `plan` read them.
pub(crate) fn settings_and_context() -> Result<(Settings, Vec<u8>), String> {
    let settings = io::load_settings()?;
    if settings.enabled {
        settings.check_required().map_err(|e| e.to_string())?;
    }
    Ok((settings, io::read_binding_context()?))
}

/// The binding context's snapshots, the large ones kept raw (see [`observed::RAW_BINDINGS`]).
pub(crate) fn read_snapshots(bytes: &[u8]) -> Result<binding::BindingInput<'_>, String> {
    binding::parse_with(bytes, &observed::RAW_BINDINGS).map_err(|e| e.to_string())
}

/// One run of the discovery hook.
pub fn run() -> Result<(), String> {
    // FETCH_DEADLINE bounds the whole network phase, fetches and probes, from here.
    let started = Instant::now();
    let (settings, bytes) = settings_and_context()?;
    let input = read_snapshots(&bytes)?;
    let now = io::now()?;
    let observed = observed::Observed::from_binding(&input);
    let mut fetched = if settings.enabled && observed.federations.is_some() && !io::offline()? {
        let feds = observed.federations.as_deref().unwrap_or(&[]);
        let own_fps = observed::own_root_fingerprints(&settings, &observed);
        let clock = io::wall_clock()?;
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
    // The data-plane probe, in what is left of the deadline: only federations the network
    // phase worked on (so never offline, never in `plan`), targets as the core decides them.
    let jobs = reconcile::probe_jobs(&settings, &observed, &fetched, now);
    if !jobs.is_empty() {
        let deadline = started
            .checked_add(settings.fetch_deadline)
            .unwrap_or(started);
        let results = probe::probe_all(&jobs, &settings.cluster_uuid, deadline);
        for (name, url) in &jobs {
            if let Some(probe::ProbeResult::Failed(why)) = results.get(name) {
                log::warn!(target: "probe", "IstioFederation {name}: data-plane probe GET {url}: {why}");
            }
        }
        for (name, result) in results {
            if let Some(report) = fetched.get_mut(&name) {
                report.probe = Some(result);
            }
        }
    }
    // Operations are streamed into the patch file as the reconcile decides them: the output
    // of a large first run is tens of MB and is never held in memory.
    let (what, mut out) = io::open_output(&PATCH_OUTPUT, true)?.unwrap_or_else(|| {
        (
            "stdout".to_string(),
            std::io::BufWriter::new(Box::new(std::io::sink())),
        )
    });
    let mut count = 0usize;
    let metric_ops = reconcile::reconcile_into(&settings, &observed, &fetched, now, &mut |op| {
        count += 1;
        operations::write_one(&mut out, &op).map_err(|e| format!("{what}: {e}"))
    })?;
    out.flush().map_err(|e| format!("{what}: {e}"))?;
    if let Some((what, out)) = io::open_output(&METRICS_OUTPUT, false)? {
        metrics::write_ndjson(out, &metric_ops).map_err(|e| format!("{what}: {e}"))?;
    }
    log::debug!(target: "main", "{count} operations, {} metric operations", metric_ops.len());
    // The process ends here: freeing tens of thousands of small objects one by one costs more
    // than the reconcile itself on large clusters, and the OS reclaims them at once.
    std::mem::forget(observed);
    std::mem::forget(input);
    std::mem::forget(bytes);
    io::log_peak_rss();
    Ok(())
}
