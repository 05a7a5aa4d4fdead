//! A small HTTPS server for tests and benches: std `TcpListener` + rustls `ServerConnection`
//! in a thread per connection (so hundreds of concurrent clients are fine), HTTP/1.1 with
//! keep-alive, canned responses configurable per path. It records every request and can check
//! the bearer token of a path exactly as Deckhouse's metadata exporter does
//! (`jwt::verify_bearer`, 401 `Authentication error: …` otherwise).

use istio_federation_hook::protocol::jwt::{self, Claims};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::pki::ServerIdentity;

/// The scope Deckhouse's exporter demands on `/metadata/private/federation.json`.
pub const PRIVATE_FEDERATION_SCOPE: &str = "private-federation";

/// How the exporter checks tokens: its own UUID and the public keys of known peers by UUID.
#[derive(Clone, Debug, Default)]
pub struct JwtCheck {
    pub own_uuid: String,
    pub peers: BTreeMap<String, [u8; 32]>,
}

/// What to answer on one path.
#[derive(Clone, Debug)]
pub struct Route {
    pub status: u16,
    pub body: Vec<u8>,
    /// Sleep before answering.
    pub delay: Duration,
    /// `Location` header (use with a 3xx status).
    pub location: Option<String>,
    /// Read the request, then never answer (until the server is dropped).
    pub never_answer: bool,
    /// Send the body with chunked encoding (no Content-Length).
    pub chunked: bool,
    /// Stream an endless chunked body.
    pub endless: bool,
    /// Require a bearer token that passes this check.
    pub jwt: Option<JwtCheck>,
    /// Replace `{authorization}` in the body with the request's Authorization header (a
    /// hostile peer echoing our token back).
    pub echo_authorization: bool,
}

impl Route {
    pub fn ok(body: impl Into<Vec<u8>>) -> Route {
        Route::status(200, body)
    }

    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Route {
        Route {
            status,
            body: body.into(),
            delay: Duration::ZERO,
            location: None,
            never_answer: false,
            chunked: false,
            endless: false,
            jwt: None,
            echo_authorization: false,
        }
    }

    pub fn redirect(location: &str) -> Route {
        Route {
            location: Some(location.to_string()),
            ..Route::status(302, "")
        }
    }

    pub fn never_answer() -> Route {
        Route {
            never_answer: true,
            ..Route::status(200, "")
        }
    }

    pub fn with_delay(mut self, delay: Duration) -> Route {
        self.delay = delay;
        self
    }

    pub fn echoing_authorization(mut self) -> Route {
        self.echo_authorization = true;
        self
    }

    pub fn with_jwt(mut self, check: JwtCheck) -> Route {
        self.jwt = Some(check);
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    pub arrived: Instant,
    /// When the response was written (None: never answered).
    pub answered: Option<Instant>,
    /// Claims of a token that passed the route's check.
    pub claims: Option<Claims>,
    /// Why a token was refused (the 401 body without the prefix).
    pub auth_error: Option<String>,
}

/// Requests in flight across one or more servers, and the most seen at once.
#[derive(Debug, Default)]
pub struct Gauge {
    current: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.current.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

struct Shared {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<Vec<Recorded>>,
    stop: AtomicBool,
    gauge: Option<Arc<Gauge>>,
}

/// The running server; stopped when dropped.
pub struct TlsServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TlsServer {
    pub fn start(identity: &ServerIdentity) -> TlsServer {
        TlsServer::start_with_gauge(identity, None)
    }

    pub fn start_with_gauge(identity: &ServerIdentity, gauge: Option<Arc<Gauge>>) -> TlsServer {
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(identity.chain.clone(), identity.key())
                .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            gauge,
        });
        let accept_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("tls-server-{}", addr.port()))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (config, shared) = (Arc::clone(&config), Arc::clone(&accept_shared));
                    let _ = std::thread::Builder::new()
                        .name("tls-conn".into())
                        .spawn(move || serve_connection(stream, config, &shared));
                }
            })
            .expect("spawn accept thread");
        TlsServer { addr, shared }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:<port>/metadata/`: a metadataEndpoint.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/metadata/", self.port())
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port())
    }

    pub fn route(&self, path: &str, route: Route) {
        self.shared
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), route);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// A TCP listener that accepts connections and never speaks (no TLS handshake at all).
pub struct SilentListener {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl SilentListener {
    pub fn start() -> SilentListener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = stream {
                    held.push(s);
                }
            }
        });
        SilentListener { addr, stop }
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/metadata/", self.addr.port())
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

struct Request {
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// Reads one request head; `buf` keeps bytes that belong to the next request.
fn read_request(stream: &mut impl Read, buf: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    let _method = parts.next()?;
    let target = parts.next()?;
    let path = target.split('?').next().unwrap_or(target).to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Request { path, headers })
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn serve_connection(tcp: TcpStream, config: Arc<ServerConfig>, shared: &Shared) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = tcp.set_nodelay(true);
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut tls, &mut buf) {
        if let Some(g) = &shared.gauge {
            g.enter();
        }
        let keep_going = answer(&mut tls, &req, shared);
        if let Some(g) = &shared.gauge {
            g.leave();
        }
        if !keep_going || shared.stop.load(Ordering::SeqCst) {
            break;
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// Answers one request; false when the connection must not be reused.
fn answer(out: &mut impl Write, req: &Request, shared: &Shared) -> bool {
    let route = shared.routes.lock().unwrap().get(&req.path).cloned();
    let index = {
        let mut log = shared.log.lock().unwrap();
        log.push(Recorded {
            path: req.path.clone(),
            authorization: req.header("authorization"),
            user_agent: req.header("user-agent"),
            arrived: Instant::now(),
            answered: None,
            claims: None,
            auth_error: None,
        });
        log.len() - 1
    };
    let Some(route) = route else {
        write_response(out, 404, &[], b"404 page not found\n");
        mark_answered(shared, index);
        return true;
    };
    if route.never_answer {
        let until = Instant::now() + Duration::from_secs(120);
        while !shared.stop.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        return false;
    }
    if !route.delay.is_zero() {
        std::thread::sleep(route.delay);
    }
    if let Some(check) = &route.jwt {
        let header = req.header("authorization").unwrap_or_default();
        let verdict = jwt::verify_bearer(
            &header,
            &check.own_uuid,
            PRIVATE_FEDERATION_SCOPE,
            unix_now(),
            |sub| check.peers.get(sub).copied(),
        );
        match verdict {
            Ok(claims) => shared.log.lock().unwrap()[index].claims = Some(claims),
            Err(e) => {
                shared.log.lock().unwrap()[index].auth_error = Some(e.to_string());
                let body = format!("Authentication error: {e}\n");
                write_response(out, 401, &[], body.as_bytes());
                mark_answered(shared, index);
                return true;
            }
        }
    }
    let mut extra: Vec<(&str, String)> = Vec::new();
    if let Some(loc) = &route.location {
        extra.push(("Location", loc.clone()));
    }
    if route.endless {
        let ok = write_endless(out, route.status, shared);
        mark_answered(shared, index);
        return ok;
    }
    let body = if route.echo_authorization {
        let header = req.header("authorization").unwrap_or_default();
        String::from_utf8_lossy(&route.body)
            .replace("{authorization}", &header)
            .into_bytes()
    } else {
        route.body.clone()
    };
    if route.chunked {
        write_chunked(out, route.status, &body);
    } else {
        write_response(out, route.status, &extra, &body);
    }
    mark_answered(shared, index);
    true
}

fn mark_answered(shared: &Shared, index: usize) {
    if let Some(r) = shared.log.lock().unwrap().get_mut(index) {
        r.answered = Some(Instant::now());
    }
}

fn write_response(out: &mut impl Write, status: u16, extra: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        reason_phrase(status),
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body);
    let _ = out.flush();
}

fn write_chunked(out: &mut impl Write, status: u16, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n",
        reason_phrase(status)
    );
    let _ = out.write_all(head.as_bytes());
    for chunk in body.chunks(1000) {
        let _ = out.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = out.write_all(chunk);
        let _ = out.write_all(b"\r\n");
    }
    let _ = out.write_all(b"0\r\n\r\n");
    let _ = out.flush();
}

/// Streams `[` followed by spaces forever (well: up to 1 GiB), until the client goes away.
fn write_endless(out: &mut impl Write, status: u16, shared: &Shared) -> bool {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n",
        reason_phrase(status)
    );
    if out.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let mut chunk = vec![b' '; 16 * 1024];
    chunk[0] = b'[';
    for _ in 0..(64 * 1024) {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if out.write_all(&framed).and_then(|_| out.flush()).is_err() {
            return false;
        }
        chunk[0] = b' ';
    }
    false
}
