//! Load test of `serve`: the release binary on a loopback port, pinned to one core when
//! `taskset` exists, driven by 64 concurrent keep-alive HTTP/1.1 connections from this process
//! (pinned to another core). Reports requests/s, p50/p99 latency and the server's CPU use
//! for public.json and for JWT-verified federation.json, and the server's peak RSS.
//!
//! Then the idle flood (docs/security.md): one client holds 1,600 idle sockets against the
//! default cap of 512 — silent, one head byte a second, idle keep-alive — and reopens any the
//! server closes, while a few legitimate peers fetch public.json on fresh connections. Reports
//! their latency from `connect` to the complete answer (p50/p99/max), those not answered within
//! 10 s, and how many connections the server shed meanwhile.
//!
//! `cargo bench --bench serve` (or `make bench`). `SERVE_BENCH_SECS` sets the seconds per
//! scenario (default 5). Under `cargo test --all-targets` (no `--bench` argument) it only
//! says how to run it: timing on a shared CI machine proves nothing.

use istio_federation_hook::protocol::{certs, jwt};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[path = "../tests/support/idle_flood.rs"]
mod idle_flood;

const CONNECTIONS: usize = 64;
/// Sockets of the idle flood, and the legitimate clients measured under it.
const FLOOD_SOCKETS: usize = 1600;
const FLOOD_PEERS: usize = 4;
const WARMUP: Duration = Duration::from_millis(500);
const OWN: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const PEER: &str = "bbbbbbbb-0000-4000-8000-000000000002";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("serve bench: skipped (run `cargo bench --bench serve`)");
        return;
    }
    let secs: u64 = std::env::var("SERVE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let taskset = Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let dir = tempfile::tempdir().expect("tempdir");
    let (priv_pem, pub_pem) = certs::generate_ed25519_pem().expect("key");
    let peer_key = certs::parse_ed25519_private_pem(&priv_pem).expect("key");
    write_metadata(dir.path(), &pub_pem);

    let mut server = start_server(dir.path(), taskset);
    let pid = server.child.id();
    if taskset && cores > 1 {
        // The load generator on the other core(s), so it does not compete with the server.
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", &format!("1-{}", cores - 1)])
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .status();
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Valid for the whole run: exp well past its end.
    let mut claims = jwt::Claims::private_federation(PEER, OWN, now);
    claims.exp = now + 3600;
    let token = jwt::sign(&peer_key, &claims);
    let public_req =
        "GET /metadata/public/public.json HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n"
            .to_string();
    let private_req = format!(
        "GET /metadata/private/federation.json HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
    );

    println!(
        "serve bench: {CONNECTIONS} keep-alive connections, {secs} s per scenario, server {}",
        if taskset {
            "pinned to core 0 (taskset)"
        } else {
            "unpinned (no taskset)"
        }
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    for (name, req) in [
        ("public.json", &public_req),
        ("federation.json (JWT verified)", &private_req),
    ] {
        let cpu_before = cpu_seconds(pid);
        let wall = Instant::now();
        let result = rt.block_on(drive(
            server.port,
            req.as_bytes(),
            Duration::from_secs(secs),
        ));
        // Share of one core over the whole drive (warm-up included).
        let cpu = (cpu_seconds(pid) - cpu_before) / wall.elapsed().as_secs_f64();
        rows.push((name, result, cpu));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or("?".to_string(), |v| v.trim().to_string())
    };

    println!();
    println!("| scenario | requests/s | p50 | p99 | max | errors | server CPU |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r, cpu) in &rows {
        println!(
            "| {name} | {:.0} | {} | {} | {} | {} | {:.0}% |",
            r.ok as f64 / r.elapsed.as_secs_f64(),
            fmt_us(r.percentile(0.50)),
            fmt_us(r.percentile(0.99)),
            fmt_us(r.percentile(1.0)),
            r.errors,
            100.0 * cpu
        );
    }
    println!();
    println!(
        "server peak RSS (VmHWM): {}; RSS now: {}",
        field("VmHWM:"),
        field("VmRSS:")
    );
    println!("targets: >= 20000 public/s, >= 5000 private/s on one core, p99 < 10 ms");

    idle_flood(&rt, &server, &public_req, Duration::from_secs(secs));
    server.stop();
}

/// The idle-flood scenario (see the module docs), on the running server (default cap 512).
fn idle_flood(rt: &tokio::runtime::Runtime, server: &Server, req: &str, duration: Duration) {
    let limit = idle_flood::allow_open_files(FLOOD_SOCKETS as u64 + 256);
    if limit < FLOOD_SOCKETS as u64 + 256 {
        println!(
            "\nidle flood: skipped, open-files limit {limit} < {}",
            FLOOD_SOCKETS + 256
        );
        return;
    }
    let shed = || {
        rt.block_on(scrape(server.port))
            .lines()
            .find_map(|l| l.strip_prefix("istio_federation_metadata_connections_shed_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let flood = idle_flood::IdleFlood::start(server.port, FLOOD_SOCKETS);
    let start = Instant::now();
    while flood.opened() < FLOOD_SOCKETS && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (opened, shed_before, cpu_before) =
        (flood.opened(), shed(), cpu_seconds(server.child.id()));
    let wall = Instant::now();
    let r = rt.block_on(drive_fresh(server.port, req.as_bytes(), duration));
    let cpu = (cpu_seconds(server.child.id()) - cpu_before) / wall.elapsed().as_secs_f64();
    let (reopened, shed_during) = (flood.opened() - opened, shed() - shed_before);
    drop(flood);
    println!();
    println!(
        "idle flood: {FLOOD_SOCKETS} idle sockets (silent, 1 head byte/s, idle keep-alive; \
         reopened when closed) against --max-connections 512; {FLOOD_PEERS} peers fetch \
         public.json on fresh connections for {} s",
        duration.as_secs()
    );
    println!();
    println!("| requests answered | p50 | p99 | max | not answered in 10 s | shed | flood reopened | server CPU |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {} | {shed_during} | {reopened} | {:.0}% |",
        r.ok,
        fmt_us(r.percentile(0.50)),
        fmt_us(r.percentile(0.99)),
        fmt_us(r.percentile(1.0)),
        r.errors,
        100.0 * cpu
    );
    println!("target: p99 < 2 s");
}

/// GET /metrics on a fresh connection; empty on any failure.
async fn scrape(port: u16) -> String {
    let mut out = Vec::new();
    if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        let req = b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
        if s.write_all(req).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `FLOOD_PEERS` tasks, each sending `req` on a fresh connection (the server closes it after
/// the answer: `Connection: close` is added) and timing connect-to-answer, for `duration`. An
/// answer that takes over 10 s counts as an error.
async fn drive_fresh(port: u16, req: &[u8], duration: Duration) -> RunResult {
    let head = String::from_utf8_lossy(req);
    let req = head
        .replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
        .into_bytes();
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..FLOOD_PEERS {
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            let mut buf = Vec::with_capacity(8192);
            while Instant::now() < end {
                let sent = Instant::now();
                let answered = tokio::time::timeout(Duration::from_secs(10), async {
                    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .ok()?;
                    exchange(&mut s, &req, &mut buf).await.then_some(())
                })
                .await;
                match answered {
                    Ok(Some(())) => {
                        let us = sent.elapsed().as_micros();
                        latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    all.sort_unstable();
    RunResult {
        ok: all.len() as u64,
        errors,
        elapsed: duration,
        latencies: all,
    }
}

/// public.json (EC root), federation.json and the peer list, kubelet-style.
fn write_metadata(dir: &Path, peer_pub: &str) {
    let key = rcgen::KeyPair::generate().expect("key");
    let root = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .self_signed(&key)
        .expect("cert")
        .pem();
    let (_, own_pub) = certs::generate_ed25519_pem().expect("key");
    let public = serde_json::json!({"clusterUUID": OWN, "authnKeyPub": own_pub, "rootCA": root});
    let federation = serde_json::json!({
        "ingressGateways": [{"address": "203.0.113.10", "port": 15443}],
        "publicServices": (0..20).map(|i| serde_json::json!({
            "hostname": format!("svc-{i}.prod.svc.cluster-a.local"),
            "ports": [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}],
        })).collect::<Vec<_>>(),
    });
    let remotes =
        serde_json::json!({PEER: {"clusterUUID": PEER, "authnKeyPub": peer_pub, "rootCA": root}});
    let version = dir.join("..2026_01_01_00_00_00.000000001");
    std::fs::create_dir(&version).expect("mkdir");
    for (name, doc) in [
        ("public.json", &public),
        ("federation.json", &federation),
        ("remote-public-metadata.json", &remotes),
    ] {
        std::fs::write(
            version.join(name),
            serde_json::to_vec_pretty(doc).expect("json"),
        )
        .expect("write");
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).expect("symlink");
    }
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.000000001", dir.join("..data"))
        .expect("symlink");
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(dir: &Path, taskset: bool) -> Server {
    let bin = env!("CARGO_BIN_EXE_istio-federation-hook");
    let mut cmd = if taskset {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    };
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--metadata-dir"])
        .arg(dir)
        .env("LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let port = rest
                    .split(':')
                    .nth(1)
                    .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|p| p.parse::<u16>().ok());
                let _ = tx.send(port);
            } else if !line.contains("\"info\"") {
                eprintln!("server: {line}");
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Some(port)) => Server { child, port },
        other => {
            let _ = child.kill();
            panic!("serve did not start: {other:?}");
        }
    }
}

/// User + system CPU seconds of a process, from /proc/<pid>/stat (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct RunResult {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    /// Sorted latencies in microseconds.
    latencies: Vec<u32>,
}

impl RunResult {
    fn percentile(&self, p: f64) -> u32 {
        if self.latencies.is_empty() {
            return 0;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }
}

fn fmt_us(us: u32) -> String {
    if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// `CONNECTIONS` tasks, each sending `req` on its own keep-alive connection and waiting for
/// the answer, for WARMUP (not measured) and then `duration`.
async fn drive(port: u16, req: &[u8], duration: Duration) -> RunResult {
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let req = req.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut conn = None;
            let mut buf = Vec::with_capacity(8192);
            while Instant::now() < end {
                if conn.is_none() {
                    match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            conn = Some(s);
                        }
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(stream) = conn.as_mut() else {
                    continue;
                };
                let sent = Instant::now();
                let ok = exchange(stream, &req, &mut buf).await;
                let done = Instant::now();
                if sent >= measure_from {
                    if ok {
                        let us = done.duration_since(sent).as_micros();
                        latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
                if !ok {
                    conn = None;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    all.sort_unstable();
    RunResult {
        ok: all.len() as u64,
        errors,
        elapsed: duration,
        latencies: all,
    }
}

/// One request/response on a keep-alive connection; true on a 200 with a complete body.
async fn exchange(stream: &mut tokio::net::TcpStream, req: &[u8], buf: &mut Vec<u8>) -> bool {
    if stream.write_all(req).await.is_err() {
        return false;
    }
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return false;
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + 4 + len {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return true;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
