//! Replays the fuzzers' committed inputs — `fuzz/seeds/<target>/` and the minimized crashes in
//! `fuzz/regressions/<target>/` — through the same bodies and invariants the libFuzzer targets
//! run (fuzz/src/lib.rs, included here as a module), without libFuzzer and on stable Rust.
//! See fuzz/README.md.

#[path = "../fuzz/src/lib.rs"]
mod fuzz_bodies;

use std::path::{Path, PathBuf};

/// Every committed input of `target`, in a fixed order.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        paths.sort();
        for p in paths {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push((p, data));
        }
    }
    out
}

/// Runs `body` on every input of `target`, naming the input that fails.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let inputs = inputs(target);
    for (path, data) in &inputs {
        if let Err(e) = std::panic::catch_unwind(|| body(data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} fails: {msg}", path.display());
        }
    }
    inputs.len()
}

#[test]
fn binding_reconcile() {
    assert!(replay("binding_reconcile", fuzz_bodies::binding_reconcile) > 0);
}

#[test]
fn metadata() {
    assert!(replay("metadata", fuzz_bodies::metadata) > 0);
}

#[test]
fn jwt() {
    assert!(replay("jwt", fuzz_bodies::jwt) > 0);
}

#[test]
fn serve_request() {
    assert!(replay("serve_request", fuzz_bodies::serve_request) > 0);
}

/// The fixtures the targets rely on do what they are for: the seeded token verifies (so the
/// fuzzers reach signature checks and the private endpoint), and serve hands out the private
/// metadata for it and for nothing else.
#[test]
fn fixtures_reach_the_deep_paths() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let bearer = std::fs::read_to_string(fuzz.join("jwt/bearer-valid")).expect("seed");
    let claims = istio_federation_hook::protocol::jwt::verify_bearer(
        &bearer,
        fuzz_bodies::JWT_AUDIENCE,
        fuzz_bodies::JWT_SCOPE,
        fuzz_bodies::NOW,
        |sub| (sub == fuzz_bodies::JWT_SUBJECT).then(fuzz_bodies::peer_key),
    )
    .expect("the seeded token verifies");
    assert_eq!(claims.sub, fuzz_bodies::JWT_SUBJECT);

    // serve checks tokens against the wall clock and refuses one expiring more than an hour
    // later, so no fixed seed stays valid there: the seed's request, with a token signed now.
    let seed =
        std::fs::read_to_string(fuzz.join("serve_request/get-federation-valid")).expect("seed");
    let seeded = bearer
        .trim()
        .strip_prefix("Bearer ")
        .expect("a bearer seed");
    assert!(
        seed.contains(seeded),
        "the serve seed carries the jwt seed's token"
    );
    let key = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/certs/peer-b-authn-priv.pem"),
    )
    .expect("key");
    let key = istio_federation_hook::protocol::certs::parse_ed25519_private_pem(&key).expect("key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let fresh = istio_federation_hook::protocol::jwt::sign(
        &key,
        &istio_federation_hook::protocol::jwt::Claims::private_federation(
            fuzz_bodies::JWT_SUBJECT,
            fuzz_bodies::JWT_AUDIENCE,
            now,
        ),
    );
    let with_token = seed.replace(seeded, &fresh);
    let answer =
        String::from_utf8_lossy(&fuzz_bodies::exchange(with_token.as_bytes())).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains(fuzz_bodies::PRIVATE_MARKER), "{answer}");
    // The seed's own token lives 60 s from the targets' clock: serve's wall clock refuses it.
    let answer = String::from_utf8_lossy(&fuzz_bodies::exchange(seed.as_bytes())).into_owned();
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let without = b"GET /metadata/private/federation.json HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = String::from_utf8_lossy(&fuzz_bodies::exchange(without)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    assert!(!answer.contains(fuzz_bodies::PRIVATE_MARKER), "{answer}");
}

/// The structured seeds drive discovery through every kind of operation, and the zero-churn
/// model judges them (the invariants are exercised, not skipped).
#[test]
fn structured_seeds_reach_every_operation() {
    let mut seen = Vec::new();
    for (path, data) in inputs("binding_reconcile") {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with("structured-") {
            continue;
        }
        let (ops, judged) = fuzz_bodies::discovery_ops(&data).expect("the seed parses");
        assert!(judged, "the zero-churn model skipped {name}");
        seen.extend(
            ops.iter()
                .filter_map(|op| op["operation"].as_str().map(str::to_string)),
        );
    }
    for kind in ["CreateOrUpdate", "Delete", "JSONPatch", "MergePatch"] {
        assert!(seen.iter().any(|k| k == kind), "no {kind} among {seen:?}");
    }
}
