//! The network phase of a discovery run: fetch every peer's public and private metadata
//! (docs/how-it-works.md, "Remote discovery") and hand the results to
//! [`crate::discovery::reconcile`] as one [`FetchReport`] per federation.
//!
//! Why it looks the way it does:
//!
//! * **A peer is untrusted input and may be down or hostile.** Every request is bounded by
//!   `FETCH_TIMEOUT`, the whole phase by `FETCH_DEADLINE`, every body by `FETCH_MAX_BYTES`
//!   (the body is read through a cap, never buffered whole), redirects stay on the origin the
//!   operator configured (so the signed token never leaves it) and TLS is always verified
//!   unless the operator explicitly asked for `enableInsecureConnection` without giving a CA.
//!   Nothing here panics on anything that comes from the network or the IstioFederation.
//! * **One slow peer must not delay the others.** Federations are fetched concurrently by at
//!   most `FETCH_CONCURRENCY` worker threads over blocking reqwest clients (the hook is a
//!   short-lived process; threads are simpler than an async runtime and cost nothing here).
//!   The caller gets its answer by the deadline even if a worker is stuck: workers are
//!   detached and record their progress in shared slots; whatever has not finished by then is
//!   reported as a deadline failure, keeping the results that did arrive (a fresh public
//!   document is still worth caching when only the private request was late).
//! * **Status must not churn.** Failure reasons and messages depend only on the configuration
//!   and on what the peer sent, never on timings, so a peer that stays broken produces the
//!   same condition every minute. Only [`Attempt::seconds`] carries measurements.
//! * **Trust roots.** Clients verify against the *system* trust store (via reqwest's
//!   rustls-platform-verifier, which on Linux loads `SSL_CERT_FILE`/`SSL_CERT_DIR` or the
//!   distribution bundle), plus `spec.metadata.clusterCA` when given — exactly Deckhouse's
//!   semantics (it appends the CA to Go's system pool). Corporate CAs baked into the image keep
//!   working, and an image without a system store still works for peers with a `clusterCA`.
//!   One client is built per distinct (CA, insecure) combination and shared by all
//!   federations using it, so the system store is loaded once per combination, not per
//!   request.
//! * **The peer's identity is pinned: two round trips.** The private request (whose JWT
//!   audience is the peer's UUID) waits for the fresh public document, and goes out only when
//!   that document's `clusterUUID` is the one pinned in the cached public metadata (or the
//!   operator re-pinned the federation to it): a token sent to whoever answers at the endpoint
//!   now is what an impostor would replay. It used to go out together with the public
//!   request, addressed to the cached UUID; the pin costs the second round trip
//!   (docs/how-it-works.md, "Remote discovery").

use crate::discovery::network::report::{Attempt, FetchReport};
use crate::hook::settings::Settings;
use crate::protocol::certs;
use crate::protocol::claims;
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::federation::Federation;
use crate::protocol::jwt::{self, Claims};
use crate::protocol::metadata::{self, Own, PrivateMetadata, PublicMetadata};
use crate::protocol::secret::KEYPAIR_SECRET;
use crate::protocol::text;
use reqwest::blocking::Client;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::redirect;
use reqwest::Url;
use ring::signature::Ed25519KeyPair;
use serde_json::Value;
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Redirects followed per request, all within the original origin.
pub(crate) const MAX_REDIRECTS: usize = 3;

/// How long after the deadline the caller waits for workers to record results they were
/// finishing right at the deadline (their requests are clipped to it).
const GRACE: Duration = Duration::from_millis(250);

/// `istio-federation-hook/<version>`: reqwest sends no User-Agent by default, and peers'
/// access logs should say who is asking.
pub(crate) fn user_agent() -> String {
    format!("istio-federation-hook/{}", env!("CARGO_PKG_VERSION"))
}

/// Fetches public and private metadata of every federation in `feds` (skipping those whose
/// trust domain is our own, in any case, and those whose spec has a problem — credentials in
/// the endpoint, an unusable trust domain: no request, no entry in the result) and validates it.
///
/// `private_key_pem` is `priv.pem` of the key-pair Secret; without a usable key only public
/// metadata is fetched. `own` identifies this cluster for validation; `now` (unix seconds) is
/// the JWT's `nbf`. Returns no later than `settings.fetch_deadline` (plus a fraction of a
/// second) after the call; deterministic apart from [`Attempt::seconds`].
pub fn fetch_all(
    settings: &Settings,
    feds: &[Federation],
    private_key_pem: Option<&str>,
    own: &Own,
    now: i64,
) -> BTreeMap<String, FetchReport> {
    fetch_all_with(settings, feds, private_key_pem, own, now, false)
}

/// [`fetch_all`]; with `error_bodies`, the failure of a refused request also quotes the start
/// of the peer's answer (a 401 names the claim it refused). Only `doctor` asks for that: a
/// condition message must not carry it, since it can change from run to run.
pub(crate) fn fetch_all_with(
    settings: &Settings,
    feds: &[Federation],
    private_key_pem: Option<&str>,
    own: &Own,
    now: i64,
    error_bodies: bool,
) -> BTreeMap<String, FetchReport> {
    let started = Instant::now();
    // Settings cap the deadline at an hour, so the addition cannot overflow; were it ever to,
    // an immediate deadline is a failure we report, not a panic.
    let deadline = started
        .checked_add(settings.fetch_deadline)
        .unwrap_or(started);
    // rustls needs a process-wide provider before any client is built (reqwest is built with
    // `rustls-no-provider`); installing twice is harmless and reports an error we ignore.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let jobs: Vec<Federation> = feds
        .iter()
        .filter(|f| {
            let own_domain = f.trust_domain.eq_ignore_ascii_case(&settings.cluster_domain);
            if own_domain {
                log::debug!(target: "fetch", "IstioFederation {}: trust domain {} is our own; not fetched", f.name, f.trust_domain);
            }
            // A spec problem is reported by the reconcile, in the federation's conditions.
            !own_domain && f.may_fetch()
        })
        .cloned()
        .collect();
    if jobs.is_empty() {
        return BTreeMap::new();
    }

    let key = signing_key(settings, private_key_pem);
    if let Err(f) = &key {
        log::warn!(target: "fetch", "private metadata is not requested from any peer: {}", f.message);
    }
    let ctx = Arc::new(Context {
        budget: Budget {
            deadline,
            timeout: settings.fetch_timeout,
            deadline_setting: settings.fetch_deadline,
        },
        max_bytes: settings.fetch_max_bytes,
        error_bodies,
        own_uuid: own.cluster_uuid.to_string(),
        own_fingerprints: own.root_fingerprints.to_vec(),
        own_now: own.now,
        now,
        key,
        clients: ClientCache::new(settings.fetch_timeout),
        slots: jobs
            .iter()
            .map(|_| Mutex::new(Progress::default()))
            .collect(),
        next: AtomicUsize::new(0),
        state: Mutex::new(RunState::default()),
        changed: Condvar::new(),
        feds: jobs,
    });

    start_workers(&ctx, settings.fetch_concurrency);
    wait_for_workers(&ctx, deadline.checked_add(GRACE).unwrap_or(deadline));

    let mut out = BTreeMap::new();
    for (fed, slot) in ctx.feds.iter().zip(&ctx.slots) {
        let progress = std::mem::take(&mut *lock(slot));
        out.insert(fed.name.clone(), settle(&ctx, fed, progress));
    }
    out
}

/// Starts up to `concurrency` detached workers (never more than there are federations). When
/// no thread can be started the work is done here, still bounded by the per-request timeouts
/// clipped to the deadline.
fn start_workers(ctx: &Arc<Context>, concurrency: usize) {
    let workers = concurrency.max(1).min(ctx.feds.len());
    let mut spawned = 0;
    for i in 0..workers {
        lock(&ctx.state).live_workers += 1;
        let worker_ctx = Arc::clone(ctx);
        let spawn = std::thread::Builder::new()
            .name(format!("fetch-{i}"))
            .spawn(move || worker(&worker_ctx));
        match spawn {
            Ok(_) => spawned += 1,
            Err(e) => {
                lock(&ctx.state).live_workers -= 1;
                log::warn!(target: "fetch", "cannot start fetch worker thread: {e}");
                break;
            }
        }
    }
    if spawned == 0 {
        lock(&ctx.state).live_workers += 1;
        worker(ctx);
    }
}

/// Waits until every federation is done, every worker has exited, or `hard_stop` passed: a
/// stuck worker never holds the run past its deadline.
fn wait_for_workers(ctx: &Context, hard_stop: Instant) {
    let mut state = lock(&ctx.state);
    while state.done < ctx.feds.len() && state.live_workers > 0 {
        let left = hard_stop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        state = ctx
            .changed
            .wait_timeout(state, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// The deadline of the phase and the per-request timeout.
struct Budget {
    deadline: Instant,
    timeout: Duration,
    deadline_setting: Duration,
}

impl Budget {
    /// The timeout for a request starting now, and whether the deadline (rather than
    /// `FETCH_TIMEOUT`) bounds it. `None` when the deadline has passed.
    fn request_timeout(&self) -> Option<(Duration, bool)> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            None
        } else if left < self.timeout {
            Some((left, true))
        } else {
            Some((self.timeout, false))
        }
    }
}

/// Everything the workers share.
struct Context {
    budget: Budget,
    max_bytes: u64,
    error_bodies: bool,
    own_uuid: String,
    own_fingerprints: Vec<String>,
    own_now: i64,
    now: i64,
    key: Result<Arc<Ed25519KeyPair>, Failure>,
    clients: ClientCache,
    feds: Vec<Federation>,
    slots: Vec<Mutex<Progress>>,
    next: AtomicUsize,
    state: Mutex<RunState>,
    changed: Condvar,
}

#[derive(Default)]
struct RunState {
    done: usize,
    live_workers: usize,
}

/// What is known about one federation so far. Results are recorded only once final (a
/// speculative private result is not).
#[derive(Default)]
struct Progress {
    public: Option<Attempt<PublicMetadata>>,
    private: Option<Attempt<PrivateMetadata>>,
    public_started: Option<Instant>,
    private_started: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Decrements the live-worker count however the worker ends, so the caller never waits for
/// a worker that is gone.
struct WorkerGuard<'a>(&'a Context);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).live_workers -= 1;
        self.0.changed.notify_all();
    }
}

fn worker(ctx: &Context) {
    let _guard = WorkerGuard(ctx);
    loop {
        let i = ctx.next.fetch_add(1, Ordering::SeqCst);
        let (Some(fed), Some(slot)) = (ctx.feds.get(i), ctx.slots.get(i)) else {
            return;
        };
        fetch_one(ctx, fed, slot);
        lock(&ctx.state).done += 1;
        ctx.changed.notify_all();
    }
}

/// The report of one federation from its recorded progress. Unfinished parts are deadline
/// failures; the private request is reported as skipped when it was never due.
fn settle(ctx: &Context, fed: &Federation, p: Progress) -> FetchReport {
    let public = match p.public {
        Some(a) => a,
        None => late(ctx, fed, fed.public_url(), Kind::Public, p.public_started),
    };
    let public_ok = public
        .result
        .as_ref()
        .is_ok_and(|p| claims::pin_problem(fed, p).is_none());
    let skipped = skip_reason(&ctx.key, public_ok);
    let private = match (p.private, &skipped) {
        (Some(a), _) => Some(a),
        (None, Some(_)) => None,
        (None, None) => Some(late(
            ctx,
            fed,
            fed.private_url(),
            Kind::Private,
            p.private_started,
        )),
    };
    FetchReport {
        public: Some(public),
        private_skipped: if private.is_some() { None } else { skipped },
        private,
        probe: None,
    }
}

/// A request that had not finished (or not started) by the deadline.
fn late<T>(
    ctx: &Context,
    fed: &Federation,
    url: String,
    kind: Kind,
    started: Option<Instant>,
) -> Attempt<T> {
    let failure = deadline_failure(kind, &url, ctx.budget.deadline_setting);
    warn_failure(fed, &url, &failure);
    Attempt {
        url,
        result: Err(failure),
        seconds: started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
    }
}

/// Why the private request is not made: a key problem first (it is local and needs fixing
/// whatever the peer does), else a failed public exchange.
fn skip_reason(key: &Result<Arc<Ed25519KeyPair>, Failure>, public_ok: bool) -> Option<Failure> {
    match key {
        Err(f) => Some(f.clone()),
        Ok(_) if !public_ok => Some(Failure::new(
            Reason::AwaitingPublic,
            "Public metadata exchange has not succeeded yet.",
        )),
        Ok(_) => None,
    }
}

fn signing_key(
    settings: &Settings,
    private_key_pem: Option<&str>,
) -> Result<Arc<Ed25519KeyPair>, Failure> {
    let secret = format!("{}/{}", settings.federation_namespace, KEYPAIR_SECRET);
    let Some(pem) = private_key_pem.filter(|p| !p.trim().is_empty()) else {
        return Err(Failure::new(
            Reason::KeyPairMissing,
            format!("Secret {secret} has no key priv.pem, so the private metadata request cannot be signed; the export hook creates the key pair."),
        ));
    };
    certs::parse_ed25519_private_pem(pem)
        .map(Arc::new)
        .map_err(|e| {
            Failure::new(
                Reason::TokenGenerationFailed,
                format!("The key priv.pem of Secret {secret} cannot sign the private metadata request: {e}"),
            )
        })
}

fn warn_failure(fed: &Federation, url: &str, f: &Failure) {
    log::warn!(target: "fetch", "IstioFederation {}: {url}: {}: {}", fed.name, f.reason, f.message);
}

/// Which of the two documents a request is for.
#[derive(Clone, Copy)]
enum Kind {
    Public,
    Private,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Public => "public metadata",
            Kind::Private => "private metadata",
        }
    }
}

fn deadline_failure(kind: Kind, url: &str, deadline: Duration) -> Failure {
    Failure::new(
        Reason::FetchFailed,
        format!(
            "cannot fetch {} from {url}: fetch deadline of {} exceeded",
            kind.noun(),
            human_duration(deadline)
        ),
    )
}

/// `30s`, `1500ms`: how an operator writes the setting.
fn human_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// Fetches one federation and records each final result in its slot as soon as it is known.
fn fetch_one(ctx: &Context, fed: &Federation, slot: &Mutex<Progress>) {
    let public_url = fed.public_url();
    let private_url = fed.private_url();
    let client = match ctx.clients.get(fed) {
        Ok(c) => c,
        Err(failure) => {
            warn_failure(fed, &public_url, &failure);
            lock(slot).public = Some(Attempt {
                url: public_url,
                result: Err(failure),
                seconds: 0.0,
            });
            return;
        }
    };
    let own = Own {
        cluster_uuid: &ctx.own_uuid,
        root_fingerprints: &ctx.own_fingerprints,
        now: ctx.own_now,
    };
    let request = Request {
        ctx,
        client: &client,
    };
    let key = ctx.key.as_ref().ok();
    lock(slot).public_started = Some(Instant::now());
    let public = request.public(&public_url, &own);
    if let Err(f) = &public.result {
        warn_failure(fed, &public_url, f);
    }
    lock(slot).public = Some(public.clone());
    let (Ok(public_md), Some(key)) = (&public.result, key) else {
        return; // private not due: settle() reports why
    };
    if claims::pin_problem(fed, public_md).is_some() {
        return; // not the pinned peer: no token for it (admission says why)
    }
    lock(slot).private_started = Some(Instant::now());
    let private = request.private(
        &private_url,
        key,
        &public_md.cluster_uuid,
        &fed.trust_domain,
    );
    if let Err(f) = &private.result {
        warn_failure(fed, &private_url, f);
    }
    lock(slot).private = Some(private);
}

/// One client and the shared settings, for the two requests of a federation.
#[derive(Clone, Copy)]
struct Request<'a> {
    ctx: &'a Context,
    client: &'a Client,
}

impl Request<'_> {
    /// GET public.json without Authorization, validate it, and insist on at least one
    /// acceptable root (a peer whose roots we cannot trust is not federated with).
    fn public(&self, url: &str, own: &Own) -> Attempt<PublicMetadata> {
        let (body, seconds) = self.get_json(url, None, Kind::Public);
        let result = body
            .and_then(|v| metadata::validate_public(&v, own))
            .and_then(|p| {
                if p.roots.is_empty() {
                    Err(Failure::new(
                        Reason::CertificateRejected,
                        format!(
                            "No root certificate of the peer is acceptable: {}",
                            p.rejected_summary()
                        ),
                    ))
                } else {
                    Ok(p)
                }
            });
        Attempt {
            url: url.to_string(),
            result,
            seconds,
        }
    }

    /// GET federation.json with a fresh token addressed to `peer_uuid`, validated against
    /// the federation's trust domain.
    fn private(
        &self,
        url: &str,
        key: &Ed25519KeyPair,
        peer_uuid: &str,
        trust_domain: &str,
    ) -> Attempt<PrivateMetadata> {
        let claims = Claims::private_federation(&self.ctx.own_uuid, peer_uuid, self.ctx.now);
        let token = jwt::sign(key, &claims);
        let (body, seconds) = self.get_json(url, Some(&token), Kind::Private);
        Attempt {
            url: url.to_string(),
            result: body.and_then(|v| metadata::validate_private(&v, trust_domain)),
            seconds,
        }
    }

    /// GET `url`, require 200, read at most `max_bytes` and parse JSON. Returns the wall
    /// time spent.
    fn get_json(
        &self,
        url: &str,
        bearer: Option<&str>,
        kind: Kind,
    ) -> (Result<Value, Failure>, f64) {
        let budget = &self.ctx.budget;
        let Some((timeout, clipped)) = budget.request_timeout() else {
            return (
                Err(deadline_failure(kind, url, budget.deadline_setting)),
                0.0,
            );
        };
        let started = Instant::now();
        let result = self.get_json_inner(url, bearer, kind, timeout, clipped);
        (result, started.elapsed().as_secs_f64())
    }

    fn get_json_inner(
        &self,
        url: &str,
        bearer: Option<&str>,
        kind: Kind,
        timeout: Duration,
        clipped: bool,
    ) -> Result<Value, Failure> {
        let noun = kind.noun();
        let max = self.ctx.max_bytes;
        let mut req = self
            .client
            .get(url)
            .timeout(timeout)
            .header(ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let resp = req
            .send()
            .map_err(|e| self.transport_failure(&e, kind, url, clipped))?;
        let status = resp.status().as_u16();
        if status != 200 && self.ctx.error_bodies {
            let mut f = Failure::new(
                Reason::NonOkResponse,
                format!("HTTP status {status} when fetching {noun}"),
            );
            f.message.push_str(&error_body(resp));
            return Err(f);
        }
        if status != 200 {
            return Err(Failure::new(
                Reason::NonOkResponse,
                format!("HTTP status {status} when fetching {noun}"),
            ));
        }
        let too_large = || {
            Failure::new(
                Reason::ResponseTooLarge,
                format!("{noun} from {url} is larger than FETCH_MAX_BYTES ({max} bytes)"),
            )
        };
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        resp.take(max.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| self.transport_failure(&e, kind, url, clipped))?;
        if body.len() as u64 > max {
            return Err(too_large());
        }
        serde_json::from_slice(&body).map_err(|e| {
            Failure::new(
                Reason::InvalidJson,
                format!("{noun} from {url} is not valid JSON: {e}"),
            )
        })
    }

    /// Classifies a failed request (or body read) by its error chain.
    fn transport_failure(
        &self,
        err: &(dyn StdError + 'static),
        kind: Kind,
        url: &str,
        clipped: bool,
    ) -> Failure {
        let budget = &self.ctx.budget;
        let prefix = format!("cannot fetch {} from {url}", kind.noun());
        let chain = Chain::of(err);
        if let Some(policy) = chain.redirect {
            return Failure::new(Reason::FetchFailed, format!("{prefix}: {policy}"));
        }
        if let Some(tls) = chain.tls {
            let hint = if matches!(tls, rustls::Error::InvalidCertificate(_)) {
                " (if the endpoint's certificate is issued by a private CA, put that CA into spec.metadata.clusterCA)"
            } else {
                ""
            };
            return Failure::new(
                Reason::TlsError,
                format!("{prefix}: TLS handshake failed: {tls}{hint}"),
            );
        }
        if chain.timed_out {
            return if clipped {
                deadline_failure(kind, url, budget.deadline_setting)
            } else {
                Failure::new(
                    Reason::FetchFailed,
                    format!(
                        "{prefix}: no complete response within FETCH_TIMEOUT ({})",
                        human_duration(budget.timeout)
                    ),
                )
            };
        }
        Failure::new(Reason::FetchFailed, format!("{prefix}: {}", chain.cause))
    }
}

/// `: <first line of the body>` of a refused answer (at most 300 characters, control
/// characters dropped), or nothing when it has none.
fn error_body(resp: reqwest::blocking::Response) -> String {
    let mut body = Vec::new();
    if resp.take(1024).read_to_end(&mut body).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&body);
    let line: String = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

/// What an error chain says, found by walking `source()` and looking inside `io::Error`s
/// (whose `source()` skips the error they wrap, and which hyper and tokio-rustls nest).
struct Chain<'a> {
    tls: Option<&'a rustls::Error>,
    redirect: Option<&'a RedirectRefused>,
    timed_out: bool,
    cause: String,
}

impl<'a> Chain<'a> {
    fn of(err: &'a (dyn StdError + 'static)) -> Chain<'a> {
        let mut chain = Chain {
            tls: None,
            redirect: None,
            timed_out: false,
            cause: String::new(),
        };
        let mut parts: Vec<String> = Vec::new();
        let mut current: Option<&'a (dyn StdError + 'static)> = Some(err);
        // Bounded: a chain is a handful of links; a cycle must not hang us.
        for _ in 0..32 {
            let Some(e) = current else { break };
            if chain.tls.is_none() {
                chain.tls = e.downcast_ref::<rustls::Error>();
            }
            if chain.redirect.is_none() {
                chain.redirect = e.downcast_ref::<RedirectRefused>();
            }
            let mut next = e.source();
            let mut wrapper = false;
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                chain.timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
                if let Some(inner) = io.get_ref() {
                    // The io::Error displays as its inner error: descend instead of repeating.
                    next = Some(inner);
                    wrapper = true;
                }
            }
            if let Some(r) = e.downcast_ref::<reqwest::Error>() {
                chain.timed_out |= r.is_timeout();
                // reqwest's own wrapper repeats the URL; its sources say what happened.
                wrapper |= next.is_some();
            }
            if !wrapper {
                let text = e.to_string();
                if parts.last() != Some(&text) {
                    parts.push(text);
                }
            }
            current = next;
        }
        chain.cause = if parts.is_empty() {
            err.to_string()
        } else {
            parts.join(": ")
        };
        chain
    }
}

/// Why our redirect policy stopped a request.
#[derive(Debug)]
enum RedirectRefused {
    CrossOrigin {
        to: String,
    },
    /// A `Location` with user information: never followed, and never shown (docs/security.md).
    Credentials,
    TooMany,
}

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedirectRefused::CrossOrigin { to } => write!(
                f,
                "redirect to another origin ({to}) refused; set spec.metadataEndpoint to the final location"
            ),
            RedirectRefused::Credentials => {
                write!(f, "redirect to a URL with user information refused")
            }
            RedirectRefused::TooMany => write!(f, "more than {MAX_REDIRECTS} redirects"),
        }
    }
}

impl StdError for RedirectRefused {}

/// `scheme://host:port` with the port made explicit, the unit of "same origin".
fn origin(u: &Url) -> String {
    format!(
        "{}://{}:{}",
        u.scheme(),
        u.host_str().unwrap_or(""),
        u.port_or_known_default().unwrap_or(0)
    )
}

/// Follow at most [`MAX_REDIRECTS`] redirects, never to another origin: the operator chose the
/// endpoint (and its CA), and the private request carries a token meant for that peer only.
/// Never to a URL with user information either: it would be sent, and could be printed.
fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let previous = attempt.previous();
        if previous.len() > MAX_REDIRECTS {
            return attempt.error(RedirectRefused::TooMany);
        }
        if !attempt.url().username().is_empty() || attempt.url().password().is_some() {
            return attempt.error(RedirectRefused::Credentials);
        }
        let target = origin(attempt.url());
        match previous.first() {
            Some(first) if origin(first) == target => attempt.follow(),
            _ => attempt.error(RedirectRefused::CrossOrigin { to: target }),
        }
    })
}

/// How a federation's endpoint certificate is verified. Also the key of the client cache.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TlsMode {
    /// System trust store.
    System,
    /// System trust store plus these CA certificates (DER), from `spec.metadata.clusterCA`.
    WithCa(Vec<Vec<u8>>),
    /// No verification (`enableInsecureConnection` without a CA).
    Insecure,
}

fn tls_mode(fed: &Federation) -> Result<TlsMode, Failure> {
    match &fed.cluster_ca {
        Some(pem) => ca_certificates(pem).map(TlsMode::WithCa).map_err(|e| {
            Failure::new(
                Reason::TlsError,
                format!("spec.metadata.clusterCA is not a PEM certificate: {e}"),
            )
        }),
        None if fed.insecure => Ok(TlsMode::Insecure),
        None => Ok(TlsMode::System),
    }
}

/// Every block of `pem` must be a CERTIFICATE that parses as X.509: a typo in the CA should
/// be reported, not silently leave the peer unverifiable.
pub(crate) fn ca_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = certs::pem_blocks(pem)?;
    if blocks.is_empty() {
        return Err("no PEM block found".to_string());
    }
    let mut ders = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.into_iter().enumerate() {
        if b.label != "CERTIFICATE" {
            let label = text::shorten(&b.label, text::Limit::chars(64, ""));
            return Err(format!("PEM block {} is {label}, not CERTIFICATE", i + 1));
        }
        match x509_parser::parse_x509_certificate(&b.der) {
            Ok(([], _)) => ders.push(b.der),
            Ok(_) => {
                return Err(format!(
                    "PEM block {}: trailing data after the certificate",
                    i + 1
                ))
            }
            Err(e) => return Err(format!("PEM block {}: {e}", i + 1)),
        }
    }
    Ok(ders)
}

/// A client built on first use, or why it could not be built.
type ClientCell = OnceLock<Result<Client, Failure>>;

/// One client per distinct [`TlsMode`], built on first use by whichever worker needs it
/// (building loads the system trust store, so it is done at most once per mode and in
/// parallel with other work).
struct ClientCache {
    timeout: Duration,
    clients: Mutex<BTreeMap<TlsMode, Arc<ClientCell>>>,
}

impl ClientCache {
    fn new(timeout: Duration) -> ClientCache {
        ClientCache {
            timeout,
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    fn get(&self, fed: &Federation) -> Result<Client, Failure> {
        let mode = tls_mode(fed)?;
        let cell = Arc::clone(lock(&self.clients).entry(mode.clone()).or_default());
        cell.get_or_init(|| build_client(&mode, self.timeout))
            .clone()
    }
}

fn build_client(mode: &TlsMode, timeout: Duration) -> Result<Client, Failure> {
    let mut builder = Client::builder()
        .user_agent(user_agent())
        .redirect(redirect_policy())
        .timeout(timeout)
        .tls_backend_rustls();
    match mode {
        TlsMode::System => {}
        TlsMode::Insecure => builder = builder.tls_danger_accept_invalid_certs(true),
        TlsMode::WithCa(ders) => {
            let mut roots = Vec::with_capacity(ders.len());
            for der in ders {
                roots.push(reqwest::Certificate::from_der(der).map_err(|e| {
                    Failure::new(
                        Reason::TlsError,
                        format!("spec.metadata.clusterCA is not a PEM certificate: {e}"),
                    )
                })?);
            }
            builder = builder.tls_certs_merge(roots);
        }
    }
    builder.build().map_err(|e| {
        let cause = Chain::of(&e).cause;
        let hint = if matches!(mode, TlsMode::System) {
            " (does the image have a system CA bundle? install ca-certificates, set SSL_CERT_FILE, or set spec.metadata.clusterCA)"
        } else {
            ""
        };
        Failure::new(
            Reason::TlsError,
            format!("cannot set up the HTTPS client: {cause}{hint}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_settings() {
        assert_eq!(human_duration(Duration::from_secs(30)), "30s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human_duration(Duration::from_micros(1500)), "0.002s");
    }

    #[test]
    fn origins_make_ports_explicit() {
        let a = Url::parse("https://h.example/metadata/").unwrap();
        let b = Url::parse("https://h.example:443/other").unwrap();
        let c = Url::parse("https://h.example:8443/metadata/").unwrap();
        let d = Url::parse("http://h.example/metadata/").unwrap();
        assert_eq!(origin(&a), origin(&b));
        assert_ne!(origin(&a), origin(&c));
        assert_ne!(origin(&a), origin(&d));
    }

    #[test]
    fn cluster_ca_must_be_certificates() {
        assert!(ca_certificates("not pem").is_err());
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(ca_certificates(key)
            .unwrap_err()
            .contains("PRIVATE KEY, not CERTIFICATE"));
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(ca_certificates(junk)
            .unwrap_err()
            .starts_with("PEM block 1"));
    }
}
