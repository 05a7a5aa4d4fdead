//! Routing, the endpoints' answers and the Prometheus counters.
//!
//! Paths, the 404 for private metadata when federation is off, and the 401 body
//! (`Authentication error: <reason>\n`, Go's `http.Error`) are Deckhouse's metadata-exporter's,
//! so a Deckhouse peer sees the same answers. Unlike Deckhouse only GET and HEAD are served
//! (others get 405), server-side problems (unreadable files) are 503 with a short reason, and
//! the metric labels are route names so their cardinality is bounded whatever paths clients
//! send.

use super::slots::Answering;
use super::store::{self, FileState, MetadataStore, Spiffe, Visibility};
use crate::hook::io;
use crate::protocol::jwt;
use crate::protocol::visibility::View;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::protocol::secret::SCOPE_PRIVATE_FEDERATION as SCOPE_FEDERATION;
/// Largest request body accepted (and discarded): requests here have none.
const MAX_BODY_BYTES: usize = 4 * 1024;
/// Time a client has to send its (small) body.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Shared by every connection.
pub(super) struct State {
    pub store: MetadataStore,
    metrics: Metrics,
}

impl State {
    pub(super) fn new(store: MetadataStore) -> Self {
        State {
            store,
            metrics: Metrics::new(),
        }
    }

    /// Counts a connection that hyper ended with an error: malformed or oversized requests
    /// (answered 400/431 by hyper itself, never reaching a route), header timeouts and clients
    /// that went away mid-request.
    pub(super) fn count_connection_error(&self, e: &hyper::Error) {
        self.metrics
            .count_connection_error(connection_error_reason(e));
    }

    /// Counts a connection closed to make room at the connection cap (see `super::slots`).
    pub(super) fn count_shed(&self) {
        self.metrics
            .connections_shed
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The label of a connection error (see [`State::count_connection_error`]).
fn connection_error_reason(e: &hyper::Error) -> &'static str {
    if e.is_parse_too_large() {
        "too_large"
    } else if e.is_parse() || e.is_parse_status() {
        "malformed"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_incomplete_message() {
        "incomplete"
    } else {
        "other"
    }
}

/// The counter of [`State::count_shed`].
const SHED: &str = "istio_federation_metadata_connections_shed_total";

const CONNECTION_ERROR_REASONS: [&str; 5] =
    ["incomplete", "malformed", "other", "timeout", "too_large"];

/// The routes; also the `endpoint` label of the request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Public,
    Spiffe,
    Federation,
    Healthz,
    Readyz,
    Metrics,
    Other,
}

impl Endpoint {
    fn route(path: &str) -> Endpoint {
        match path {
            "/metadata/public/public.json" => Endpoint::Public,
            "/metadata/public/spiffe-bundle-endpoint" => Endpoint::Spiffe,
            "/metadata/private/federation.json" => Endpoint::Federation,
            "/healthz" => Endpoint::Healthz,
            "/readyz" => Endpoint::Readyz,
            "/metrics" => Endpoint::Metrics,
            _ => Endpoint::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Endpoint::Public => "public",
            Endpoint::Spiffe => "spiffe_bundle",
            Endpoint::Federation => "federation",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Metrics => "metrics",
            Endpoint::Other => "other",
        }
    }
}

/// Request and authentication-failure counters. A mutex is plenty: the runtime has one
/// thread, and the critical sections are a map update.
struct Metrics {
    requests: Mutex<BTreeMap<(Endpoint, u16), u64>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    connection_errors: Mutex<BTreeMap<&'static str, u64>>,
    connections_shed: AtomicU64,
}

impl Metrics {
    fn new() -> Self {
        // Every failure reason starts at 0 so rate() and alerts work from the first scrape.
        let reasons = [
            jwt::AuthError::MissingBearer,
            jwt::AuthError::Malformed(String::new()),
            jwt::AuthError::WrongAlgorithm(String::new()),
            jwt::AuthError::WrongAudience {
                expected: String::new(),
                got: String::new(),
            },
            jwt::AuthError::WrongScope {
                expected: String::new(),
                got: String::new(),
            },
            jwt::AuthError::Expired,
            jwt::AuthError::UnknownSubject(String::new()),
            jwt::AuthError::BadSignature,
        ]
        .iter()
        .map(|e| (e.reason(), 0))
        .collect();
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            auth_failures: Mutex::new(reasons),
            connection_errors: Mutex::new(
                CONNECTION_ERROR_REASONS.iter().map(|r| (*r, 0)).collect(),
            ),
            connections_shed: AtomicU64::new(0),
        }
    }

    fn count_connection_error(&self, reason: &'static str) {
        let mut map = self
            .connection_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(reason).or_insert(0) += 1;
    }

    fn count_request(&self, endpoint: Endpoint, code: StatusCode) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((endpoint, code.as_u16())).or_insert(0) += 1;
    }

    fn count_auth_failure(&self, reason: &'static str) {
        let mut map = self.auth_failures.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(reason).or_insert(0) += 1;
    }

    /// Prometheus text exposition format 0.0.4.
    fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP istio_federation_metadata_requests_total Requests answered by the metadata server, by route and HTTP status code.\n\
             # TYPE istio_federation_metadata_requests_total counter\n",
        );
        for ((endpoint, code), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "istio_federation_metadata_requests_total{{endpoint=\"{}\",code=\"{code}\"}} {n}",
                endpoint.label()
            );
        }
        let by_reason =
            |out: &mut String, name: &str, help: &str, map: &Mutex<BTreeMap<&'static str, u64>>| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (reason, n) in map.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
                }
            };
        by_reason(
            &mut out,
            "istio_federation_metadata_auth_failures_total",
            "Requests for private metadata refused with 401, by reason.",
            &self.auth_failures,
        );
        by_reason(
            &mut out,
            "istio_federation_metadata_connection_errors_total",
            "Connections ended by an error before a route answered (malformed or oversized requests, header timeouts, clients gone mid-request), by reason.",
            &self.connection_errors,
        );
        let _ = writeln!(
            out,
            "# HELP {SHED} Connections closed to make room for a new one at the connection cap: each the one that had waited longest for its client (idle keep-alive, or a request not sent in full).\n\
             # TYPE {SHED} counter\n\
             {SHED} {}",
            self.connections_shed.load(Ordering::Relaxed)
        );
        out
    }
}

/// hyper's service function: answers one request and counts it.
pub(super) async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
    answering: &Answering,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let endpoint = Endpoint::route(req.uri().path());
    let response = respond(&state, endpoint, peer, req, answering).await;
    state.metrics.count_request(endpoint, response.status());
    Ok(response)
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == TEXT {
        // As Go's http.Error does: never let a browser sniff an error text into HTML.
        response.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    response
}

/// A plain-text answer ending in a newline, like Go's `http.Error`.
fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(status, TEXT, format!("{message}\n"))
}

fn not_found() -> Response<Full<Bytes>> {
    text(StatusCode::NOT_FOUND, "404 page not found")
}

/// An error answer after which the connection is closed (the body was not consumed).
fn closing(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = text(status, message);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads and discards a request body of at most [`MAX_BODY_BYTES`] within [`BODY_TIMEOUT`];
/// `Some(answer)` when the body is refused. While it reads, the connection waits for its client
/// and may be shed at the connection cap (see `super::slots`).
async fn discard_body(body: Incoming, answering: &Answering) -> Option<Response<Full<Bytes>>> {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return None;
    }
    if body.size_hint().lower() > MAX_BODY_BYTES as u64 {
        return Some(closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let _waiting = answering.waiting_for_client();
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Some(closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )),
        Ok(Err(_)) => Some(closing(StatusCode::BAD_REQUEST, "malformed request body")),
        Err(_) => Some(closing(
            StatusCode::REQUEST_TIMEOUT,
            "request body timed out",
        )),
    }
}

async fn respond(
    state: &State,
    endpoint: Endpoint,
    peer: SocketAddr,
    req: Request<Incoming>,
    answering: &Answering,
) -> Response<Full<Bytes>> {
    if endpoint == Endpoint::Other {
        return not_found();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // Like Go's Header.Get: the first Authorization field; bytes that are not UTF-8 cannot be
    // a valid token, and the lossy text still fails verification with the right reason.
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(refused) = discard_body(req.into_body(), answering).await {
        return refused;
    }
    match endpoint {
        Endpoint::Healthz => reply(StatusCode::OK, TEXT, "Ok."),
        Endpoint::Readyz => match &state.store.current().own_uuid {
            Ok(_) => reply(StatusCode::OK, TEXT, "Ok."),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
        },
        Endpoint::Metrics => reply(StatusCode::OK, PROMETHEUS, state.metrics.render()),
        Endpoint::Public => match &state.store.current().public {
            Ok(bytes) => reply(StatusCode::OK, JSON, bytes.clone()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
        },
        Endpoint::Spiffe => match &state.store.current().spiffe {
            Spiffe::Ready(bytes) => reply(StatusCode::OK, JSON, bytes.clone()),
            Spiffe::Unavailable(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
            Spiffe::Invalid(why) => text(StatusCode::INTERNAL_SERVER_ERROR, why),
        },
        Endpoint::Federation => federation(state, peer, authorization.as_deref()),
        Endpoint::Other => not_found(),
    }
}

fn federation(
    state: &State,
    peer: SocketAddr,
    authorization: Option<&str>,
) -> Response<Full<Bytes>> {
    let snapshot = state.store.current();
    let body = match &snapshot.federation {
        // Federation disabled: Deckhouse does not register the route at all.
        FileState::Absent => return not_found(),
        FileState::Unreadable(why) => return text(StatusCode::SERVICE_UNAVAILABLE, why),
        FileState::Present(bytes) => bytes,
    };
    let own_uuid = match &snapshot.own_uuid {
        Ok(uuid) => uuid,
        Err(why) => return text(StatusCode::SERVICE_UNAVAILABLE, why),
    };
    let peers = match &snapshot.peers {
        Ok(peers) => peers,
        Err(why) => return text(StatusCode::SERVICE_UNAVAILABLE, why),
    };
    let verified = jwt::verify_bearer(
        authorization.unwrap_or(""),
        own_uuid,
        SCOPE_FEDERATION,
        // A clock before 1970 verifies nothing: every token has expired.
        io::wall_clock().unwrap_or(0),
        |sub| peers.get(sub).copied(),
    );
    match verified {
        Ok(claims) => {
            // The peer's own view (docs/sharing.md); never a guess when the
            // visibility file is unusable.
            let body = match &snapshot.visibility {
                Visibility::Unrestricted => body.clone(),
                Visibility::Restricted(views) => match views.view(&claims.sub) {
                    View::Complete => body.clone(),
                    View::Filtered(doc) => Bytes::from(doc),
                },
                Visibility::Invalid(why) => {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("private metadata withheld: {}", store::shorten(why)),
                    )
                }
            };
            log::debug!(
                target: "serve",
                "private federation metadata served to cluster {} ({peer})",
                store::shorten(&claims.sub)
            );
            let mut response = reply(StatusCode::OK, JSON, body);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            state.metrics.count_auth_failure(e.reason());
            let message = format!("Authentication error: {e}");
            // The token itself is never logged; the reason text quotes at most its claims.
            log::warn!(
                target: "serve",
                "private federation metadata refused to {peer}: reason={}: {}",
                e.reason(),
                store::shorten(&e.to_string())
            );
            let mut response = text(StatusCode::UNAUTHORIZED, &message);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_labels() {
        assert_eq!(
            Endpoint::route("/metadata/public/public.json"),
            Endpoint::Public
        );
        assert_eq!(
            Endpoint::route("/metadata/private/federation.json"),
            Endpoint::Federation
        );
        for path in [
            "/",
            "/metadata/public/public.json/",
            "/METRICS",
            "//healthz",
            "",
        ] {
            assert_eq!(Endpoint::route(path), Endpoint::Other, "{path}");
        }
        assert_eq!(Endpoint::Spiffe.label(), "spiffe_bundle");
    }

    /// docs/reference/metrics.md lists what `/metrics` renders (src/docs_tests.rs): every metric
    /// with the labels of its series, after one request so the request counter has one.
    #[test]
    fn metrics_reference_lists_every_serve_metric_with_its_labels() {
        let m = Metrics::new();
        m.count_request(Endpoint::Public, StatusCode::OK);
        let exported = crate::docs_tests::exposition_metrics(&m.render());
        crate::docs_tests::assert_metrics_documented("serve", &exported);
    }

    #[test]
    fn metrics_text() {
        let m = Metrics::new();
        m.count_request(Endpoint::Public, StatusCode::OK);
        m.count_request(Endpoint::Public, StatusCode::OK);
        m.count_request(Endpoint::Other, StatusCode::NOT_FOUND);
        m.count_auth_failure("expired");
        m.count_connection_error("too_large");
        m.connections_shed.fetch_add(3, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains(
            "istio_federation_metadata_requests_total{endpoint=\"public\",code=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "istio_federation_metadata_requests_total{endpoint=\"other\",code=\"404\"} 1\n"
        ));
        assert!(
            text.contains("istio_federation_metadata_auth_failures_total{reason=\"expired\"} 1\n")
        );
        assert!(text.contains(
            "istio_federation_metadata_auth_failures_total{reason=\"bad_signature\"} 0\n"
        ));
        assert!(text.contains(
            "istio_federation_metadata_connection_errors_total{reason=\"too_large\"} 1\n"
        ));
        for reason in CONNECTION_ERROR_REASONS {
            assert!(text.contains(&format!(
                "istio_federation_metadata_connection_errors_total{{reason=\"{reason}\"}} "
            )));
        }
        assert!(text.contains(
            "# TYPE istio_federation_metadata_connections_shed_total counter\n\
             istio_federation_metadata_connections_shed_total 3\n"
        ));
        assert_eq!(text.matches("# TYPE").count(), 4);
    }
}
