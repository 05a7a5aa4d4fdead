//! One export run, the imperative shell: read the inputs, generate a key pair when none exists
//! (randomness is I/O), call the pure [`super::reconcile`] and write what it decided.

use crate::hook::io::{self, METRICS_OUTPUT, PATCH_OUTPUT};
use crate::hook::{binding, metrics, operations};
use crate::protocol::certs;

/// `export --config`: the export hook's bindings.
pub fn print_config() -> Result<(), String> {
    io::print_config(&super::config(&io::load_settings()?))
}

/// One run of the export hook.
pub fn run() -> Result<(), String> {
    let settings = io::load_settings()?;
    if settings.enabled {
        settings.check_required().map_err(|e| e.to_string())?;
    }
    let bytes = io::read_binding_context()?;
    let input = binding::parse(&bytes).map_err(|e| e.to_string())?;
    let new_key = if settings.enabled && super::needs_key_pair(&input) {
        let (private_pem, public_pem) = certs::generate_ed25519_pem()?;
        Some(super::NewKeyPair {
            private_pem,
            public_pem,
        })
    } else {
        None
    };
    // The reconcile clock, pinned by ISTIO_FEDERATION_HOOK_NOW as discovery's is: retention
    // ends by it (docs/rotation.md).
    let now = io::now()?;
    let outcome = super::reconcile(&settings, &input, new_key.as_ref(), now);
    if let Some((what, out)) = io::open_output(&PATCH_OUTPUT, true)? {
        operations::write_ndjson(out, &outcome.operations).map_err(|e| format!("{what}: {e}"))?;
    }
    if let Some((what, out)) = io::open_output(&METRICS_OUTPUT, false)? {
        metrics::write_ndjson(out, &outcome.metrics).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(())
}
