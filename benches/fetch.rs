//! Wall time of the fetch phase against many local TLS peers that each answer after a fixed
//! delay, compared with the slowest single peer chain (what docs/contributing.md, "Performance",
//! promises: about the time of the slowest federation) and with N × the single-peer time (what a
//! sequential fetch, as Deckhouse's hook does it, would cost). No assertions: it prints a table.
//! With the peer's UUID cached (pinned) the private request waits for the public answer, so
//! those rows cost two round trips per peer, like the uncached ones (docs/how-it-works.md,
//! "Remote discovery").
//!
//! Run: `cargo bench --bench fetch` (add `--profile dev` to skip the release build; the
//! numbers are dominated by the peers' delays either way). Under `cargo test --all-targets`
//! the binary only prints that it was skipped.

#[path = "../tests/support/mod.rs"]
mod support;

use istio_federation_hook::discovery::network::fetch::fetch_all;
use istio_federation_hook::discovery::network::report::FetchReport;
use istio_federation_hook::hook::settings::Settings;
use istio_federation_hook::protocol::federation::Federation;
use istio_federation_hook::protocol::metadata::Own;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::pki::{Ca, SigningKeys};
use support::server::Route;
use support::{federation, settings, unix_now, Peer, OWN_UUID};

const DELAY: Duration = Duration::from_millis(200);

struct Bench {
    ca: Ca,
    own: SigningKeys,
}

impl Bench {
    /// `n` peers answering both documents after [`DELAY`].
    fn peers(&self, n: usize, offset: usize) -> Vec<Peer> {
        (0..n)
            .map(|i| {
                let i = i + offset;
                let peer = Peer::start(
                    &self.ca,
                    &format!("peer-{i}"),
                    &format!("p{i}.local"),
                    &self.own,
                );
                peer.serve_public(Route::ok(peer.public_body.clone()).with_delay(DELAY));
                peer.serve_private(
                    Route::ok(peer.private_body.clone()).with_delay(DELAY),
                    &self.own,
                );
                peer
            })
            .collect()
    }

    fn feds(&self, peers: &[Peer], cached_uuid: bool) -> Vec<Federation> {
        peers
            .iter()
            .map(|p| {
                let cached = cached_uuid.then(|| json!({"clusterUUID": p.uuid}));
                federation(
                    &format!("fed-{}", p.uuid),
                    &p.trust_domain,
                    &p.endpoint(),
                    Some(json!({"clusterCA": self.ca.cert_pem})),
                    cached,
                )
            })
            .collect()
    }

    fn run(
        &self,
        cfg: &Settings,
        feds: &[Federation],
    ) -> (Duration, BTreeMap<String, FetchReport>) {
        let now = unix_now();
        let own = Own {
            cluster_uuid: OWN_UUID,
            root_fingerprints: &[],
            now,
        };
        let started = Instant::now();
        let out = fetch_all(cfg, feds, Some(&self.own.private_pem), &own, now);
        (started.elapsed(), out)
    }
}

fn ok_count(out: &BTreeMap<String, FetchReport>) -> usize {
    out.values()
        .filter(|r| {
            r.public.as_ref().is_some_and(|a| a.result.is_ok())
                && r.private.as_ref().is_some_and(|a| a.result.is_ok())
        })
        .count()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` (make test) does not, and
    // should not spend ten seconds here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("fetch bench skipped: run it with `cargo bench --bench fetch`");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bench = Bench {
        ca: Ca::new("bench CA"),
        own: SigningKeys::generate(),
    };
    let defaults = settings(&[]);
    println!(
        "fetch bench: every peer answers each request after {} ms; FETCH_CONCURRENCY={}, FETCH_TIMEOUT={:?}, FETCH_DEADLINE={:?}",
        DELAY.as_millis(),
        defaults.fetch_concurrency,
        defaults.fetch_timeout,
        defaults.fetch_deadline
    );

    // The slowest single peer chain: public then private, best of 3 (cold clients each run).
    let single = bench.peers(1, 0);
    let single_feds = bench.feds(&single, false);
    let t1 = (0..3)
        .map(|_| bench.run(&defaults, &single_feds).0)
        .min()
        .unwrap_or_default();
    let s1 = t1.as_secs_f64();

    println!();
    println!("| scenario | peers | ok | wall (s) | / single chain | / N x single (sequential) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |name: &str, n: usize, ok: usize, wall: Duration| {
        let w = wall.as_secs_f64();
        println!(
            "| {name} | {n} | {ok} | {w:.3} | {:.2}x | {:.3}x |",
            w / s1,
            w / (s1 * n as f64)
        );
    };
    row("single peer chain (public, then private)", 1, 1, t1);
    let single_cached = bench.feds(&single, true);
    let t1c = (0..3)
        .map(|_| bench.run(&defaults, &single_cached).0)
        .min()
        .unwrap_or_default();
    row("single peer, UUID pinned (public, then private)", 1, 1, t1c);

    let mut all = single;
    for n in [50, 200] {
        let more = bench.peers(n - all.len().min(n), all.len());
        all.extend(more);
        let feds = bench.feds(&all[..n], false);
        let (wall, out) = bench.run(&defaults, &feds);
        row("sequential chain per peer", n, ok_count(&out), wall);
    }

    let cached = bench.feds(&all[..50], true);
    let (wall, out) = bench.run(&defaults, &cached);
    row(
        "UUID pinned: private waits for the public UUID",
        50,
        ok_count(&out),
        wall,
    );
    let cached = bench.feds(&all[..200], true);
    let (wall, out) = bench.run(&defaults, &cached);
    row(
        "UUID pinned: private waits for the public UUID",
        200,
        ok_count(&out),
        wall,
    );

    // 10 of 50 peers never answer; the deadline bounds the run.
    let deadline_cfg = settings(&[("FETCH_DEADLINE", "5s")]);
    for p in &all[..10] {
        p.serve_public(Route::never_answer());
    }
    let feds = bench.feds(&all[..50], false);
    let (wall, out) = bench.run(&deadline_cfg, &feds);
    row(
        "10 of 50 never answer (FETCH_DEADLINE=5s)",
        50,
        ok_count(&out),
        wall,
    );
    println!();
    println!(
        "never-answering run: wall {:.3} s = {:.3} x FETCH_DEADLINE ({:?})",
        wall.as_secs_f64(),
        wall.as_secs_f64() / deadline_cfg.fetch_deadline.as_secs_f64(),
        deadline_cfg.fetch_deadline
    );
}
