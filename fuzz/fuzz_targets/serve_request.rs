//! `cargo +nightly fuzz run serve_request`: see fuzz/README.md. The body (and its invariants) is in
//! fuzz/src/lib.rs, shared with tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| istio_federation_hook_fuzz::serve_request(data));
