//! `serve`: the metadata HTTP server peers fetch from (replaces Deckhouse's metadata-exporter).
//!
//! It serves the files of the mounted `istio-federation-metadata` Secret, which the export hook
//! renders: `public.json` to anyone, the SPIFFE bundle derived from its root certificate, and
//! `federation.json` only to peers that present a JWT signed with a key listed in
//! `remote-public-metadata.json` (checks and 401 texts are Deckhouse's, see [`crate::protocol::jwt`]).
//!
//! Why it is built this way:
//! - **hyper 1 + tokio, one thread.** A metadata server answers a handful of peers once a
//!   minute each; one current-thread runtime serves tens of thousands of requests per second,
//!   keeps memory small and predictable, and needs no locking beyond trivial mutexes. hyper
//!   does the HTTP/1.1 parsing (a hand-written parser would be the riskiest code here), rustls
//!   (ring, as everywhere in the project) the optional TLS. Everything is already in the
//!   dependency graph through reqwest.
//! - **No restart on Secret updates.** kubelet swaps the `..data` symlink atomically; every
//!   request resolves it (one `readlink`) and re-reads the files only when it changed, so a new
//!   peer can read private metadata as soon as the kubelet has synced. See [`store`].
//! - **Untrusted clients.** Every limit an unauthenticated caller could abuse is bounded: the
//!   request head (16 KiB → 431), bodies (4 KiB → 413, slow → 408), the time to send a head
//!   (which is also the keep-alive idle time), stalled writes, TLS handshakes and the number of
//!   concurrent connections. No request data is ever unwrapped; the token is never logged.
//! - **Idle connections cannot lock peers out** (docs/security.md). A cap alone is not
//!   enough: one client holding the cap with idle sockets and reopening any that close kept
//!   every peer in the listen backlog (0 of 5 requests answered in 10 s at 1,600 sockets against
//!   512), because the backlog is first come, first served and, once full, the kernel drops new
//!   SYNs outright. So the accept loop never stops accepting: at the cap, the connection that
//!   has waited longest for its client — silent, trickling a head, reading a body or idle
//!   between keep-alive requests — is closed to make room ([`slots`] says why this and not a
//!   first-byte deadline or a per-source cap). A request being answered is never cut off; when
//!   every slot is answering, the newcomer waits for one. This holds while one client's
//!   sockets stay below the cap plus the listen backlog ([`LISTEN_BACKLOG`], which the kernel
//!   caps at `net.core.somaxconn`, 4096 by default): beyond that the kernel drops SYNs before
//!   `serve` sees them, and the limit belongs in front of it (load balancer, firewall).
//! - **Graceful shutdown.** SIGTERM/SIGINT stops accepting, lets in-flight requests finish for
//!   up to [`DRAIN_TIMEOUT`], then exits 0 so Kubernetes sees a clean stop.

#![forbid(unsafe_code)]

mod io;
mod routes;
mod slots;
mod spiffe;
mod store;
mod tls;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

/// Default listen address (Deckhouse's exporter listens on 8080 too).
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default mount point of the `istio-federation-metadata` Secret.
pub(crate) const DEFAULT_METADATA_DIR: &str = "/metadata";
/// Default cap on concurrent connections; at the cap the connection that has waited longest for
/// its client makes room for a new one.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Largest request head (request line + headers). hyper answers 431 beyond it.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in one request.
const MAX_HEADERS: usize = 64;
/// Time a client has to send a complete request head, counted from the connection's start or
/// the end of the previous response; so it is also the keep-alive idle timeout.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a write may make no progress before the connection is dropped (clients that do not
/// read their responses).
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after SIGTERM/SIGINT.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Listen backlog: connections the kernel has completed and `serve` not yet accepted. Large,
/// because a client that reopens every connection `serve` sheds keeps the backlog as full as
/// it can: a newcomer must find room here (the kernel drops SYNs to a full backlog) and waits
/// only for the connections ahead of it to be accepted. Linux caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;
/// At most one warning a minute that connections are being shed.
const SHED_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Help text of `istio-federation-hook serve --help`.
pub(crate) const USAGE: &str =
    "usage: istio-federation-hook serve [--listen ADDR] [--metadata-dir DIR] \
[--tls-cert FILE --tls-key FILE] [--max-connections N]

Serves the istio-federation-metadata Secret mounted at DIR to federated peers:
  GET /metadata/public/public.json              public metadata (verbatim)
  GET /metadata/public/spiffe-bundle-endpoint   SPIFFE bundle of the root certificate
  GET /metadata/private/federation.json         private metadata; needs a peer's JWT
  GET /healthz, /readyz, /metrics               probes and Prometheus metrics
Changes of the mounted Secret are picked up without a restart.

options:
  --listen ADDR          address to listen on (default 0.0.0.0:8080; ':8080' means all IPv4)
  --metadata-dir DIR     directory of the mounted Secret (default /metadata)
  --tls-cert FILE        serve HTTPS with this PEM certificate chain (needs --tls-key;
                         both files are re-read when they change)
  --tls-key FILE         PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert
  --max-connections N    concurrent connections (default 512); at the cap, the one that has
                         waited longest for its client (idle keep-alive, or a request not
                         yet sent in full) is closed to make room, so idle sockets cannot
                         lock peers out

SIGTERM/SIGINT stop accepting, let in-flight requests finish (5 s at most) and exit 0.";

/// Parsed `serve` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Address to listen on.
    pub listen: String,
    /// Directory of the mounted Secret.
    pub metadata_dir: PathBuf,
    /// PEM certificate chain and key; plain HTTP when `None`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Cap on concurrent connections.
    pub max_connections: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: DEFAULT_LISTEN.to_string(),
            metadata_dir: PathBuf::from(DEFAULT_METADATA_DIR),
            tls: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Print [`USAGE`].
    Help,
    /// Run the server.
    Serve(Options),
}

/// Parses the arguments after `serve`. Accepts `--flag VALUE` and `--flag=VALUE`.
pub(crate) fn parse_args(args: &[&str]) -> Result<Command, String> {
    let mut opts = Options::default();
    let mut cert = None;
    let mut key = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg, None),
        };
        if !matches!(
            flag,
            "--listen" | "--metadata-dir" | "--tls-cert" | "--tls-key" | "--max-connections"
        ) {
            return Err(format!("serve: unknown argument {arg:?}\n{USAGE}"));
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                *args
                    .get(i)
                    .ok_or_else(|| format!("serve: {flag} needs a value"))?
            }
        };
        if value.is_empty() {
            return Err(format!("serve: {flag} needs a non-empty value"));
        }
        match flag {
            "--listen" => opts.listen = value.to_string(),
            "--metadata-dir" => opts.metadata_dir = PathBuf::from(value),
            "--tls-cert" => cert = Some(PathBuf::from(value)),
            "--tls-key" => key = Some(PathBuf::from(value)),
            _ => {
                opts.max_connections = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=Semaphore::MAX_PERMITS).contains(n) && *n <= u32::MAX as usize)
                    .ok_or_else(|| {
                        format!("serve: --max-connections {value:?} is not a positive number")
                    })?
            }
        }
        i += 1;
    }
    opts.tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("serve: --tls-cert and --tls-key go together".to_string()),
    };
    Ok(Command::Serve(opts))
}

/// Entry point of `istio-federation-hook serve ARGS…`: parses, then runs until SIGTERM/SIGINT.
pub fn run(args: &[&str]) -> Result<(), String> {
    match parse_args(args)? {
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Command::Serve(opts) => serve(opts),
    }
}

/// Resolves `--listen`: `:PORT` means every IPv4 address (Go's notation), otherwise
/// `HOST:PORT` (IPv6 in brackets), resolved to its first address.
fn listen_addr(listen: &str) -> Result<SocketAddr, String> {
    let spec = match listen.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => listen.to_string(),
    };
    spec.to_socket_addrs()
        .map_err(|e| format!("serve: --listen {listen:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("serve: --listen {listen:?} resolves to no address"))
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted server must be able to bind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Runs the server with `opts` until SIGTERM/SIGINT, then drains and returns `Ok`.
/// Errors only at start-up (bad address, port in use, unreadable TLS files).
pub fn serve(opts: Options) -> Result<(), String> {
    let addr = listen_addr(&opts.listen)?;
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("serve: cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = bind(addr).map_err(|e| format!("serve: cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().unwrap_or(addr);
        let state = Arc::new(routes::State::new(store::MetadataStore::new(
            opts.metadata_dir.clone(),
        )));
        // Load (and log) the metadata once up front, so problems show at start-up.
        let _ = state.store.current();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut signals = Signals::new()?;
        log::info!(
            target: "serve",
            "listening on {}://{local}, metadata from {}, at most {} connections",
            if tls.is_some() { "https" } else { "http" },
            opts.metadata_dir.display(),
            opts.max_connections
        );
        let permits = Arc::new(Semaphore::new(opts.max_connections));
        let slots = slots::Slots::new();
        tokio::select! {
            () = accept_loop(listener, tls, state, permits.clone(), slots, shutdown_rx) => {}
            sig = signals.recv() => {
                log::info!(target: "serve", "{sig}: shutting down, draining connections");
            }
        }
        // The listener is dropped (closed) with the accept loop above.
        shutdown_tx.send_replace(true);
        let all = u32::try_from(opts.max_connections).unwrap_or(u32::MAX);
        tokio::select! {
            r = tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(all)) => {
                if r.is_err() {
                    log::warn!(
                        target: "serve",
                        "{} connection(s) still open after {}s; closing them",
                        opts.max_connections.saturating_sub(permits.available_permits()),
                        DRAIN_TIMEOUT.as_secs()
                    );
                }
            }
            sig = signals.recv() => {
                log::warn!(target: "serve", "{sig} again: stopping without draining");
            }
        }
        log::info!(target: "serve", "stopped");
        Ok(())
    })
}

/// SIGTERM and SIGINT as one stream.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let err = |e: std::io::Error| format!("serve: cannot install signal handlers: {e}");
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(err)?,
            int: signal(SignalKind::interrupt()).map_err(err)?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Accepts every connection as soon as it arrives and gives it a slot (a permit), shedding the
/// longest-waiting connection at the cap (see [`make_room`]). Each connection holds its permit
/// until it ends, so `permits` also tells the shutdown code when every connection has finished.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<routes::State>,
    permits: Arc<Semaphore>,
    slots: Arc<slots::Slots>,
    shutdown: watch::Receiver<bool>,
) {
    let mut shed_log = ShedLog::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE/ENFILE/ECONNABORTED and the like: transient, never fatal.
                log::warn!(target: "serve", "accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(permit) = make_room(&permits, &slots, &state, &mut shed_log).await else {
            return; // the semaphore is never closed
        };
        let slot = slots.open(Instant::now());
        let _ = stream.set_nodelay(true);
        let io = io::WriteTimeout::new(stream, WRITE_STALL_TIMEOUT);
        let state = state.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // Dropped in reverse order: the slot's registration goes before the permit frees.
            let _permit = permit;
            let slot = slot;
            tokio::select! {
                // First, so a shed connection closes even if its client just sent something.
                biased;
                () = slot.shed() => {
                    log::debug!(target: "serve", "connection from {peer} shed to make room");
                }
                () = connection(io, peer, tls, state, shutdown, &slot) => {}
            }
        });
    }
}

/// A permit for a connection just accepted. At the cap, the connection that has waited
/// longest for its client is told to close and its permit taken as soon as it has; when every
/// connection is being answered, waits for one to finish or to start waiting again.
async fn make_room(
    permits: &Arc<Semaphore>,
    slots: &slots::Slots,
    state: &routes::State,
    shed_log: &mut ShedLog,
) -> Option<OwnedSemaphorePermit> {
    loop {
        match permits.clone().try_acquire_owned() {
            Ok(permit) => return Some(permit),
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => {}
        }
        if slots.shed_longest_waiting() {
            state.count_shed();
            shed_log.shed();
            return permits.clone().acquire_owned().await.ok();
        }
        tokio::select! {
            permit = permits.clone().acquire_owned() => return permit.ok(),
            () = slots.waiter_appeared() => {}
        }
    }
}

/// Warns when shedding starts and then at most every [`SHED_LOG_INTERVAL`], with the count:
/// under a flood, one line a minute instead of one per connection.
#[derive(Default)]
struct ShedLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl ShedLog {
    fn shed(&mut self) {
        self.unlogged += 1;
        if self.last.is_some_and(|t| t.elapsed() < SHED_LOG_INTERVAL) {
            return;
        }
        log::warn!(
            target: "serve",
            "at the connection cap: closed {} connection(s) that waited longest for their \
             client to make room for new ones (istio_federation_metadata_connections_shed_total)",
            self.unlogged
        );
        self.last = Some(Instant::now());
        self.unlogged = 0;
    }
}

/// One accepted connection: the optional TLS handshake, then HTTP until it ends.
async fn connection(
    io: io::WriteTimeout<tokio::net::TcpStream>,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<routes::State>,
    mut shutdown: watch::Receiver<bool>,
    slot: &slots::Slot,
) {
    match tls {
        None => serve_connection(io, peer, state, shutdown, slot).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io));
            let stream = tokio::select! {
                r = handshake => r,
                () = stopping(&mut shutdown) => return,
            };
            match stream {
                Ok(Ok(stream)) => serve_connection(stream, peer, state, shutdown, slot).await,
                Ok(Err(e)) => {
                    log::debug!(target: "serve", "TLS handshake with {peer} failed: {e}")
                }
                Err(_) => {
                    log::debug!(target: "serve", "TLS handshake with {peer} timed out")
                }
            }
        }
    }
}

/// Completes when shutdown has been requested (or the sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The returned guard must not live across an await of the caller (it is not Send).
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves HTTP/1.1 on one connection until the client closes it, a limit ends it, or
/// shutdown asks it to finish its current request and close.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    state: Arc<routes::State>,
    mut shutdown: watch::Receiver<bool>,
    slot: &slots::Slot,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counter = state.clone();
    let service = service_fn(move |req| {
        // From a complete request head until hyper has taken the whole response.
        let answering = slot.answering();
        let state = state.clone();
        async move {
            let response = routes::handle(state, peer, req, &answering).await?;
            Ok::<_, Infallible>(response.map(|body| slots::AnsweredBody::new(body, answering)))
        }
    });
    let conn = http1::Builder::new()
        // A client may shut down its sending side once the request is out (scripted clients and
        // some proxies do). Without this, hyper drops such a connection unanswered whenever it
        // sees the end of input before the answer is ready.
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets, malformed requests: the client's problem, not an event to alert on,
        // but counted, since hyper answers some of them itself (400, 431) without a route.
        counter.count_connection_error(&e);
        log::debug!(target: "serve", "connection from {peer}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_opts(args: &[&str]) -> Options {
        match parse_args(args).unwrap() {
            Command::Serve(o) => o,
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn defaults() {
        let o = serve_opts(&[]);
        assert_eq!(o.listen, "0.0.0.0:8080");
        assert_eq!(o.metadata_dir, PathBuf::from("/metadata"));
        assert_eq!(o.tls, None);
        assert_eq!(o.max_connections, 512);
        assert!(USAGE.contains("default 0.0.0.0:8080") && USAGE.contains("default /metadata"));
    }

    #[test]
    fn flags_both_forms() {
        let o = serve_opts(&[
            "--listen=127.0.0.1:9000",
            "--metadata-dir",
            "/m",
            "--tls-cert",
            "c.pem",
            "--tls-key=k.pem",
            "--max-connections",
            "7",
        ]);
        assert_eq!(o.listen, "127.0.0.1:9000");
        assert_eq!(o.metadata_dir, PathBuf::from("/m"));
        assert_eq!(
            o.tls,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
        assert_eq!(o.max_connections, 7);
        assert_eq!(parse_args(&["--help"]), Ok(Command::Help));
        assert_eq!(parse_args(&["--listen", "x", "-h"]), Ok(Command::Help));
    }

    #[test]
    fn bad_arguments() {
        for args in [
            &["--listen"][..],
            &["--listen="],
            &["--bogus"],
            &["extra"],
            &["--tls-cert", "c.pem"],
            &["--tls-key", "k.pem"],
            &["--max-connections", "0"],
            &["--max-connections", "-1"],
            &["--max-connections", "many"],
        ] {
            assert!(parse_args(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            listen_addr(":8080").unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            listen_addr("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert!(listen_addr("nonsense").is_err());
        assert!(listen_addr("127.0.0.1:99999").is_err());
    }
}
