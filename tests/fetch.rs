//! The network phase against real HTTPS servers on 127.0.0.1 (tests/support): TLS modes,
//! status codes, bodies, redirects, deadlines, token contents as Deckhouse's exporter checks
//! them, and the validation of what the peer sends. Expected values come from each test's
//! own setup.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use istio_federation_hook::discovery::network::fetch::fetch_all;
use istio_federation_hook::discovery::network::report::FetchReport;
use istio_federation_hook::hook::settings::Settings;
use istio_federation_hook::protocol::failure::{Failure, Reason};
use istio_federation_hook::protocol::federation::Federation;
use istio_federation_hook::protocol::metadata::{Gateway, Own, PrivateMetadata, PublicMetadata};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::pki::{self, Ca, SigningKeys};
use support::server::{Gauge, Route, SilentListener, TlsServer};
use support::{
    federation, public_json, settings, unix_now, Peer, OWN_UUID, PRIVATE_PATH, PUBLIC_PATH,
};

/// Runs the fetch phase as the hook does, with our key (when given) and a fresh clock.
fn fetch(
    settings: &Settings,
    feds: &[Federation],
    key: Option<&SigningKeys>,
    now: i64,
) -> BTreeMap<String, FetchReport> {
    let own = Own {
        cluster_uuid: OWN_UUID,
        root_fingerprints: &[],
        now,
    };
    fetch_all(
        settings,
        feds,
        key.map(|k| k.private_pem.as_str()),
        &own,
        now,
    )
}

fn public_ok(r: &FetchReport) -> &PublicMetadata {
    let a = r.public.as_ref().expect("public attempted");
    match &a.result {
        Ok(p) => p,
        Err(f) => panic!("public failed: {} {}", f.reason, f.message),
    }
}

fn public_err(r: &FetchReport) -> &Failure {
    let a = r.public.as_ref().expect("public attempted");
    a.result.as_ref().expect_err("public should fail")
}

fn private_ok(r: &FetchReport) -> &PrivateMetadata {
    let a = r.private.as_ref().expect("private attempted");
    match &a.result {
        Ok(p) => p,
        Err(f) => panic!("private failed: {} {}", f.reason, f.message),
    }
}

fn private_err(r: &FetchReport) -> &Failure {
    let a = r.private.as_ref().expect("private attempted");
    a.result.as_ref().expect_err("private should fail")
}

fn assert_awaiting_public(r: &FetchReport) {
    assert!(r.private.is_none(), "private must not be reported");
    let skipped = r.private_skipped.as_ref().expect("private skipped");
    assert_eq!(skipped.reason, Reason::AwaitingPublic);
    assert_eq!(
        skipped.message,
        "Public metadata exchange has not succeeded yet."
    );
}

fn paths(server: &TlsServer) -> Vec<String> {
    server.requests().into_iter().map(|r| r.path).collect()
}

#[test]
fn happy_path_token_verified_like_deckhouse_exporter() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b-uuid", "b.local", &own);
    let now = unix_now();
    let out = fetch(
        &settings(&[]),
        &[peer.federation("b", &ca)],
        Some(&own),
        now,
    );

    assert_eq!(out.keys().collect::<Vec<_>>(), vec!["b"]);
    let r = &out["b"];
    let public = r.public.as_ref().unwrap();
    assert_eq!(public.url, peer.public_url());
    assert!(public.seconds > 0.0);
    let p = public_ok(r);
    assert_eq!(p.cluster_uuid, "peer-b-uuid");
    assert_eq!(p.authn_key_pub, peer.keys.public_pem);
    assert_eq!(p.root_ca, peer.root_pem);
    assert_eq!(p.roots.len(), 1);
    assert_eq!(p.roots[0].pem, peer.root_pem);

    let private = r.private.as_ref().unwrap();
    assert_eq!(private.url, peer.private_url());
    assert!(private.seconds > 0.0);
    let m = private_ok(r);
    assert_eq!(
        m.ingress_gateways,
        vec![Gateway {
            address: "198.51.100.7".into(),
            port: 15443
        }]
    );
    assert_eq!(m.public_services.len(), 1);
    assert_eq!(m.public_services[0].hostname, "web.prod.svc.b.local");
    let ports: Vec<(&str, u16, &str)> = m.public_services[0]
        .ports
        .iter()
        .map(|p| (p.name.as_str(), p.port, p.protocol))
        .collect();
    assert_eq!(ports, vec![("http", 8080, "HTTP")]);
    assert!(m.dropped.is_empty());
    assert!(r.private_skipped.is_none());

    // What the exporter saw: public without a token, then private with a valid one.
    let reqs = peer.server.requests();
    assert_eq!(
        reqs.iter().map(|q| q.path.as_str()).collect::<Vec<_>>(),
        vec![PUBLIC_PATH, PRIVATE_PATH]
    );
    assert_eq!(reqs[0].authorization, None);
    let ua = format!("istio-federation-hook/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(reqs[0].user_agent.as_deref(), Some(ua.as_str()));
    assert_eq!(reqs[1].auth_error, None);
    let claims = reqs[1].claims.as_ref().expect("token accepted");
    assert_eq!(claims.aud, "peer-b-uuid");
    assert_eq!(claims.sub, OWN_UUID);
    assert_eq!(claims.scope, "private-federation");
    assert_eq!(claims.iss, "d8-istio");
    assert_eq!(claims.nbf, now);
    assert_eq!(claims.exp, now + 60);
    let auth = reqs[1].authorization.as_deref().unwrap();
    let token = auth.strip_prefix("Bearer ").expect("Bearer scheme");
    let header = URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    assert_eq!(header, br#"{"alg":"EdDSA"}"#);
}

#[test]
fn public_500_means_no_private_request() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    peer.serve_public(Route::status(500, "boom"));
    let out = fetch(
        &settings(&[]),
        &[peer.federation("b", &ca)],
        Some(&own),
        unix_now(),
    );
    let r = &out["b"];
    let f = public_err(r);
    assert_eq!(f.reason, Reason::NonOkResponse);
    assert_eq!(f.message, "HTTP status 500 when fetching public metadata");
    assert_awaiting_public(r);
    assert_eq!(paths(&peer.server), vec![PUBLIC_PATH]);
}

#[test]
fn private_500_keeps_fresh_public() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    peer.serve_private(Route::status(500, "boom"), &own);
    let out = fetch(
        &settings(&[]),
        &[peer.federation("b", &ca)],
        Some(&own),
        unix_now(),
    );
    let r = &out["b"];
    assert_eq!(public_ok(r).cluster_uuid, "peer-b");
    let f = private_err(r);
    assert_eq!(f.reason, Reason::NonOkResponse);
    assert_eq!(f.message, "HTTP status 500 when fetching private metadata");
    assert!(r.private_skipped.is_none());
}

#[test]
fn peer_that_does_not_know_us_yet_answers_401() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let stranger = SigningKeys::generate();
    // The peer registered some other key under our UUID.
    let peer = Peer::start(&ca, "peer-b", "b.local", &stranger);
    let out = fetch(
        &settings(&[]),
        &[peer.federation("b", &ca)],
        Some(&own),
        unix_now(),
    );
    let f = private_err(&out["b"]);
    assert_eq!(f.reason, Reason::NonOkResponse);
    assert_eq!(f.message, "HTTP status 401 when fetching private metadata");
    let reqs = peer.server.requests_to(PRIVATE_PATH);
    assert_eq!(
        reqs[0].auth_error.as_deref(),
        Some("cannot verify JWT token with known public key")
    );
}

#[test]
fn invalid_json_is_reported_per_document() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let bad_public = Peer::start(&ca, "peer-b", "b.local", &own);
    bad_public.serve_public(Route::ok(r#"{"zzz"#));
    let bad_private = Peer::start(&ca, "peer-c", "c.local", &own);
    bad_private.serve_private(Route::ok("<html>not json</html>"), &own);
    let out = fetch(
        &settings(&[]),
        &[
            bad_public.federation("b", &ca),
            bad_private.federation("c", &ca),
        ],
        Some(&own),
        unix_now(),
    );
    assert_eq!(public_err(&out["b"]).reason, Reason::InvalidJson);
    assert_awaiting_public(&out["b"]);
    assert_eq!(paths(&bad_public.server), vec![PUBLIC_PATH]);
    assert_eq!(public_ok(&out["c"]).cluster_uuid, "peer-c");
    assert_eq!(private_err(&out["c"]).reason, Reason::InvalidJson);
}

#[test]
fn wrong_format_is_invalid_metadata() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let b = Peer::start(&ca, "peer-b", "b.local", &own);
    b.serve_public(Route::ok(r#"{"wrong":"format"}"#));
    let c = Peer::start(&ca, "peer-c", "c.local", &own);
    c.serve_private(Route::ok(r#"{"wrong":"format"}"#), &own);
    let out = fetch(
        &settings(&[]),
        &[b.federation("b", &ca), c.federation("c", &ca)],
        Some(&own),
        unix_now(),
    );
    assert_eq!(public_err(&out["b"]).reason, Reason::InvalidPublicMetadata);
    assert_awaiting_public(&out["b"]);
    assert_eq!(
        private_err(&out["c"]).reason,
        Reason::InvalidPrivateMetadata
    );
}

#[test]
fn body_is_capped_at_fetch_max_bytes() {
    const CAP: usize = 4096;
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let cfg = settings(&[("FETCH_MAX_BYTES", "4KiB")]);
    let pad = |body: &str, len: usize| format!("{body}{}", " ".repeat(len - body.len()));

    // Exactly at the cap: accepted (trailing whitespace is valid JSON).
    let exact = Peer::start(&ca, "peer-exact", "exact.local", &own);
    exact.serve_public(Route::ok(pad(&exact.public_body, CAP)));
    // One byte over, with Content-Length: refused before reading.
    let over = Peer::start(&ca, "peer-over", "over.local", &own);
    over.serve_public(Route::ok(pad(&over.public_body, CAP + 1)));
    // Over the cap without Content-Length (chunked).
    let chunked = Peer::start(&ca, "peer-chunked", "chunked.local", &own);
    chunked.serve_public(Route {
        chunked: true,
        ..Route::ok(pad(&chunked.public_body, CAP + 500))
    });
    // A body that never ends: must not be buffered.
    let endless = Peer::start(&ca, "peer-endless", "endless.local", &own);
    endless.serve_private(
        Route {
            endless: true,
            ..Route::ok("")
        },
        &own,
    );

    let out = fetch(
        &cfg,
        &[
            exact.federation("exact", &ca),
            over.federation("over", &ca),
            chunked.federation("chunked", &ca),
            endless.federation("endless", &ca),
        ],
        Some(&own),
        unix_now(),
    );
    assert_eq!(public_ok(&out["exact"]).cluster_uuid, "peer-exact");
    for name in ["over", "chunked"] {
        let f = public_err(&out[name]);
        assert_eq!(f.reason, Reason::ResponseTooLarge, "{name}");
        assert!(
            f.message.contains("FETCH_MAX_BYTES (4096 bytes)"),
            "{}",
            f.message
        );
    }
    assert_eq!(public_ok(&out["endless"]).cluster_uuid, "peer-endless");
    assert_eq!(
        private_err(&out["endless"]).reason,
        Reason::ResponseTooLarge
    );
}

#[test]
fn deadline_bounds_the_whole_phase() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let cfg = settings(&[("FETCH_DEADLINE", "2s"), ("FETCH_TIMEOUT", "10s")]);
    let hung_public = Peer::start(&ca, "peer-hung", "hung.local", &own);
    hung_public.serve_public(Route::never_answer());
    let hung_private = Peer::start(&ca, "peer-slowpriv", "slowpriv.local", &own);
    hung_private.serve_private(Route::never_answer(), &own);
    let silent = SilentListener::start(); // accepts TCP, never completes TLS
    let healthy = Peer::start(&ca, "peer-ok", "ok.local", &own);

    let feds = vec![
        hung_public.federation("hung", &ca),
        hung_private.federation("slowpriv", &ca),
        federation(
            "silent",
            "silent.local",
            &silent.endpoint(),
            Some(json!({"clusterCA": ca.cert_pem})),
            None,
        ),
        healthy.federation("ok", &ca),
    ];
    let started = Instant::now();
    let out = fetch(&cfg, &feds, Some(&own), unix_now());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "fetch took {took:?}, deadline is 2s"
    );

    let f = public_err(&out["hung"]);
    assert_eq!(f.reason, Reason::FetchFailed);
    assert_eq!(
        f.message,
        format!(
            "cannot fetch public metadata from {}: fetch deadline of 2s exceeded",
            hung_public.public_url()
        )
    );
    assert_awaiting_public(&out["hung"]);
    let f = public_err(&out["silent"]);
    assert_eq!(f.reason, Reason::FetchFailed);
    assert!(
        f.message.ends_with("fetch deadline of 2s exceeded"),
        "{}",
        f.message
    );

    // A late private answer does not throw away the fresh public document.
    assert_eq!(public_ok(&out["slowpriv"]).cluster_uuid, "peer-slowpriv");
    let f = private_err(&out["slowpriv"]);
    assert_eq!(
        f.message,
        format!(
            "cannot fetch private metadata from {}: fetch deadline of 2s exceeded",
            hung_private.private_url()
        )
    );
    // One stuck peer does not affect another.
    assert_eq!(public_ok(&out["ok"]).cluster_uuid, "peer-ok");
    private_ok(&out["ok"]);
}

#[test]
fn queued_federations_fail_when_the_deadline_passes_before_their_turn() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let cfg = settings(&[("FETCH_DEADLINE", "1s"), ("FETCH_CONCURRENCY", "1")]);
    let hung = Peer::start(&ca, "peer-a", "a.local", &own);
    hung.serve_public(Route::never_answer());
    let waiting = Peer::start(&ca, "peer-b", "b.local", &own);
    let started = Instant::now();
    let out = fetch(
        &cfg,
        &[hung.federation("a", &ca), waiting.federation("b", &ca)],
        Some(&own),
        unix_now(),
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let b = out["b"].public.as_ref().unwrap();
    assert_eq!(
        b.result.as_ref().expect_err("b never ran").message,
        format!(
            "cannot fetch public metadata from {}: fetch deadline of 1s exceeded",
            waiting.public_url()
        )
    );
    assert_eq!(b.seconds, 0.0);
    assert_awaiting_public(&out["b"]);
    assert!(waiting.server.requests().is_empty());
}

#[test]
fn malformed_endpoints_are_fetch_failures() {
    let own = SigningKeys::generate();
    let feds = vec![
        federation(
            "bad-1",
            "b1.local",
            "https://exa mple.com/metadata/",
            None,
            None,
        ),
        federation("bad-2", "b2.local", "https://[::1/metadata/", None, None),
        federation("bad-3", "b3.local", "https://127.0.0.1:99999/", None, None),
    ];
    let out = fetch(&settings(&[]), &feds, Some(&own), unix_now());
    assert_eq!(out.len(), 3);
    for (name, r) in &out {
        let f = public_err(r);
        assert_eq!(f.reason, Reason::FetchFailed, "{name}: {}", f.message);
        assert!(
            f.message
                .starts_with("cannot fetch public metadata from https://"),
            "{}",
            f.message
        );
        assert_awaiting_public(r);
    }
}

#[test]
fn request_timeout_shorter_than_deadline() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let cfg = settings(&[("FETCH_TIMEOUT", "1s"), ("FETCH_DEADLINE", "30s")]);
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    peer.serve_public(Route::never_answer());
    let started = Instant::now();
    let out = fetch(&cfg, &[peer.federation("b", &ca)], Some(&own), unix_now());
    assert!(started.elapsed() < Duration::from_secs(5));
    let f = public_err(&out["b"]);
    assert_eq!(f.reason, Reason::FetchFailed);
    assert_eq!(
        f.message,
        format!(
            "cannot fetch public metadata from {}: no complete response within FETCH_TIMEOUT (1s)",
            peer.public_url()
        )
    );
}

#[test]
fn redirects_stay_on_the_origin() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();

    // Same origin: followed, for public and for private (the token goes along).
    let same = Peer::start(&ca, "peer-same", "same.local", &own);
    same.serve_public(Route::redirect("/moved/public.json"));
    same.server
        .route("/moved/public.json", Route::ok(same.public_body.clone()));
    same.serve_private(
        Route::redirect(&same.server.url("/moved/federation.json")),
        &own,
    );
    same.server.route(
        "/moved/federation.json",
        Route::ok(same.private_body.clone()).with_jwt(same.jwt_check(&own)),
    );

    // Another origin (other port): refused, and the other server sees nothing.
    let elsewhere = Peer::start(&ca, "peer-elsewhere", "elsewhere.local", &own);
    let cross = Peer::start(&ca, "peer-cross", "cross.local", &own);
    cross.serve_public(Route::redirect(&elsewhere.public_url()));
    // Same port, other host name: another origin too.
    let host = Peer::start(&ca, "peer-host", "host.local", &own);
    let localhost_url = format!("https://localhost:{}{PUBLIC_PATH}", host.server.port());
    host.serve_public(Route::redirect(&localhost_url));

    // Three hops are fine, four are not.
    let three = Peer::start(&ca, "peer-three", "three.local", &own);
    three.serve_public(Route::redirect("/r1"));
    three.server.route("/r1", Route::redirect("/r2"));
    three.server.route("/r2", Route::redirect("/r3"));
    three
        .server
        .route("/r3", Route::ok(three.public_body.clone()));
    let four = Peer::start(&ca, "peer-four", "four.local", &own);
    four.serve_public(Route::redirect("/r1"));
    four.server.route("/r1", Route::redirect("/r2"));
    four.server.route("/r2", Route::redirect("/r3"));
    four.server.route("/r3", Route::redirect("/r4"));
    four.server
        .route("/r4", Route::ok(four.public_body.clone()));

    let out = fetch(
        &settings(&[]),
        &[
            same.federation("same", &ca),
            cross.federation("cross", &ca),
            host.federation("host", &ca),
            three.federation("three", &ca),
            four.federation("four", &ca),
        ],
        Some(&own),
        unix_now(),
    );

    assert_eq!(public_ok(&out["same"]).cluster_uuid, "peer-same");
    private_ok(&out["same"]);
    let moved = same.server.requests_to("/moved/federation.json");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].claims.as_ref().unwrap().aud, "peer-same");

    let f = public_err(&out["cross"]);
    assert_eq!(f.reason, Reason::FetchFailed);
    assert_eq!(
        f.message,
        format!(
            "cannot fetch public metadata from {}: redirect to another origin (https://127.0.0.1:{}) refused; set spec.metadataEndpoint to the final location",
            cross.public_url(),
            elsewhere.server.port()
        )
    );
    assert_awaiting_public(&out["cross"]);
    assert!(elsewhere.server.requests().is_empty());

    let f = public_err(&out["host"]);
    assert!(
        f.message.contains(&format!(
            "redirect to another origin (https://localhost:{})",
            host.server.port()
        )),
        "{}",
        f.message
    );
    assert_eq!(paths(&host.server), vec![PUBLIC_PATH]);

    assert_eq!(public_ok(&out["three"]).cluster_uuid, "peer-three");
    let f = public_err(&out["four"]);
    assert_eq!(f.reason, Reason::FetchFailed);
    assert!(
        f.message.ends_with(": more than 3 redirects"),
        "{}",
        f.message
    );
    assert!(four.server.requests_to("/r4").is_empty());
}

#[test]
fn unknown_ca_is_a_tls_error() {
    let ca = Ca::new("private endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    // No clusterCA: only the system trust store, which does not know the test CA.
    let fed = federation("b", "b.local", &peer.endpoint(), None, None);
    let out = fetch(&settings(&[]), &[fed], Some(&own), unix_now());
    let f = public_err(&out["b"]);
    assert_eq!(f.reason, Reason::TlsError, "{}", f.message);
    assert!(
        f.message.starts_with(&format!(
            "cannot fetch public metadata from {}: TLS handshake failed: invalid peer certificate",
            peer.public_url()
        )),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("spec.metadata.clusterCA"),
        "{}",
        f.message
    );
    assert_awaiting_public(&out["b"]);
    assert!(peer.server.requests().is_empty());
}

#[test]
fn insecure_mode_without_ca_skips_verification() {
    let ca = Ca::new("private endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    let fed = federation(
        "b",
        "b.local",
        &peer.endpoint(),
        Some(json!({"enableInsecureConnection": true})),
        None,
    );
    let out = fetch(&settings(&[]), &[fed], Some(&own), unix_now());
    assert_eq!(public_ok(&out["b"]).cluster_uuid, "peer-b");
    private_ok(&out["b"]);
}

#[test]
fn cluster_ca_adds_a_trusted_ca_and_accepts_bundles_and_the_ca_alias() {
    let ca = Ca::new("private endpoint CA");
    let unrelated = Ca::new("unrelated CA");
    let own = SigningKeys::generate();
    let b = Peer::start(&ca, "peer-b", "b.local", &own);
    let c = Peer::start(&ca, "peer-c", "c.local", &own);
    let bundle = format!("{}{}", unrelated.cert_pem, ca.cert_pem);
    let feds = vec![
        federation(
            "b",
            "b.local",
            &b.endpoint(),
            Some(json!({"clusterCA": bundle})),
            None,
        ),
        federation(
            "c",
            "c.local",
            &c.endpoint(),
            Some(json!({"ca": ca.cert_pem})),
            None,
        ),
    ];
    let out = fetch(&settings(&[]), &feds, Some(&own), unix_now());
    assert_eq!(public_ok(&out["b"]).cluster_uuid, "peer-b");
    assert_eq!(public_ok(&out["c"]).cluster_uuid, "peer-c");
}

#[test]
fn ca_with_insecure_still_verifies() {
    let ca = Ca::new("private endpoint CA");
    let wrong = Ca::new("wrong CA");
    let own = SigningKeys::generate();
    let b = Peer::start(&ca, "peer-b", "b.local", &own);
    let c = Peer::start(&ca, "peer-c", "c.local", &own);
    let feds = vec![
        federation(
            "b",
            "b.local",
            &b.endpoint(),
            Some(json!({"clusterCA": wrong.cert_pem, "enableInsecureConnection": true})),
            None,
        ),
        federation(
            "c",
            "c.local",
            &c.endpoint(),
            Some(json!({"clusterCA": ca.cert_pem, "enableInsecureConnection": true})),
            None,
        ),
    ];
    let out = fetch(&settings(&[]), &feds, Some(&own), unix_now());
    assert_eq!(public_err(&out["b"]).reason, Reason::TlsError);
    assert!(b.server.requests().is_empty());
    assert_eq!(public_ok(&out["c"]).cluster_uuid, "peer-c");
}

#[test]
fn unparsable_cluster_ca_fails_that_federation_only() {
    let ca = Ca::new("private endpoint CA");
    let own = SigningKeys::generate();
    let b = Peer::start(&ca, "peer-b", "b.local", &own);
    let c = Peer::start(&ca, "peer-c", "c.local", &own);
    let garbage =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let feds = vec![
        federation(
            "b",
            "b.local",
            &b.endpoint(),
            Some(json!({"clusterCA": "hello, I am not PEM"})),
            None,
        ),
        federation(
            "b2",
            "b.local",
            &b.endpoint(),
            Some(json!({"clusterCA": garbage, "enableInsecureConnection": true})),
            None,
        ),
        c.federation("c", &ca),
    ];
    let out = fetch(&settings(&[]), &feds, Some(&own), unix_now());
    for name in ["b", "b2"] {
        let r = &out[name];
        let f = public_err(r);
        assert_eq!(f.reason, Reason::TlsError, "{name}");
        assert!(
            f.message
                .starts_with("spec.metadata.clusterCA is not a PEM certificate: "),
            "{}",
            f.message
        );
        assert_eq!(r.public.as_ref().unwrap().url, b.public_url());
        assert_awaiting_public(r);
    }
    assert!(b.server.requests().is_empty());
    assert_eq!(public_ok(&out["c"]).cluster_uuid, "peer-c");
}

#[test]
fn no_acceptable_root_is_certificate_rejected() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let expired = pki::root_cert_pem("expired root", true, (2015, 1, 1), (2021, 1, 1));
    let leaf = pki::root_cert_pem("not a CA", false, (2020, 1, 1), (2045, 1, 1));
    let valid = pki::valid_root_pem("good root");

    let bad = Peer::start(&ca, "peer-bad", "bad.local", &own);
    bad.serve_public(Route::ok(public_json(
        "peer-bad",
        &bad.keys.public_pem,
        &format!("{expired}{leaf}"),
    )));
    let mixed = Peer::start(&ca, "peer-mixed", "mixed.local", &own);
    mixed.serve_public(Route::ok(public_json(
        "peer-mixed",
        &mixed.keys.public_pem,
        &format!("{expired}{valid}"),
    )));
    let out = fetch(
        &settings(&[]),
        &[bad.federation("bad", &ca), mixed.federation("mixed", &ca)],
        Some(&own),
        unix_now(),
    );

    let f = public_err(&out["bad"]);
    assert_eq!(f.reason, Reason::CertificateRejected);
    assert!(
        f.message.starts_with(
            "No root certificate of the peer is acceptable: certificate 1: expired on 2021-01-01"
        ),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("certificate 2: not a CA certificate"),
        "{}",
        f.message
    );
    assert_awaiting_public(&out["bad"]);
    assert_eq!(paths(&bad.server), vec![PUBLIC_PATH]);

    let p = public_ok(&out["mixed"]);
    assert_eq!(p.roots.len(), 1);
    assert_eq!(p.roots[0].pem, valid);
    assert_eq!(p.rejected.len(), 1);
    private_ok(&out["mixed"]);
}

#[test]
fn hostile_private_items_are_dropped() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    let hostile = json!({
        "ingressGateways": [
            {"address": "198.51.100.7", "port": 15443},
            {"address": "bad address!", "port": 15443},
            {"address": "198.51.100.8", "port": 70000},
            {"address": "198.51.100.9", "port": 0}
        ],
        "publicServices": [
            {"hostname": "web.prod.svc.b.local", "ports": [
                {"name": "http", "port": 8080},
                {"name": "big", "port": 70000}
            ]},
            {"hostname": "kubernetes.default.svc.my.cluster", "ports": [{"name": "https", "port": 443}]},
            {"hostname": "api.prod.svc.c.local", "ports": [{"name": "http", "port": 80}]},
            {"hostname": "web.prod.svc.b.local.evil.example", "ports": [{"name": "http", "port": 80}]}
        ]
    });
    peer.serve_private(Route::ok(hostile.to_string()), &own);
    let out = fetch(
        &settings(&[]),
        &[peer.federation("b", &ca)],
        Some(&own),
        unix_now(),
    );
    let m = private_ok(&out["b"]);
    assert_eq!(
        m.ingress_gateways,
        vec![Gateway {
            address: "198.51.100.7".into(),
            port: 15443
        }]
    );
    let hosts: Vec<&str> = m
        .public_services
        .iter()
        .map(|s| s.hostname.as_str())
        .collect();
    assert_eq!(hosts, vec!["web.prod.svc.b.local"]);
    let ports: Vec<u16> = m.public_services[0].ports.iter().map(|p| p.port).collect();
    assert_eq!(ports, vec![8080]);
    let out_of_scope: Vec<&str> = m
        .dropped
        .iter()
        .filter(|d| d.reason == Reason::HostnameOutOfScope)
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(out_of_scope.len(), 3, "{:?}", m.dropped);
    assert!(out_of_scope[0].contains("kubernetes.default.svc.my.cluster"));
    assert!(out_of_scope[1].contains("api.prod.svc.c.local"));
    // 3 bad gateways, 1 bad port, 3 out-of-scope hostnames.
    assert_eq!(m.dropped.len(), 7, "{:?}", m.dropped);
}

#[test]
fn two_peers_sharing_a_trust_domain_get_their_own_tokens() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let one = Peer::start(&ca, "peer-uuid-1", "shared.local", &own);
    let two = Peer::start(&ca, "peer-uuid-2", "shared.local", &own);
    let out = fetch(
        &settings(&[]),
        &[
            one.federation("shared-1", &ca),
            two.federation("shared-2", &ca),
        ],
        Some(&own),
        unix_now(),
    );
    for (name, peer) in [("shared-1", &one), ("shared-2", &two)] {
        assert_eq!(public_ok(&out[name]).cluster_uuid, peer.uuid);
        let m = private_ok(&out[name]);
        assert_eq!(m.public_services[0].hostname, "web.prod.svc.shared.local");
        let reqs = peer.server.requests_to(PRIVATE_PATH);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].claims.as_ref().unwrap().aud, peer.uuid);
    }
}

#[test]
fn missing_key_pair_fetches_public_only() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    // Even with a cached UUID (which would allow a parallel private request).
    let fed = federation(
        "b",
        "b.local",
        &peer.endpoint(),
        Some(json!({"clusterCA": ca.cert_pem})),
        Some(json!({"clusterUUID": "peer-b"})),
    );
    let cfg = settings(&[("FEDERATION_NAMESPACE", "federation-system")]);
    let out = fetch(&cfg, &[fed], None, unix_now());
    let r = &out["b"];
    assert_eq!(public_ok(r).cluster_uuid, "peer-b");
    assert!(r.private.is_none());
    let skipped = r.private_skipped.as_ref().unwrap();
    assert_eq!(skipped.reason, Reason::KeyPairMissing);
    assert!(
        skipped
            .message
            .contains("Secret federation-system/d8-remote-authn-keypair has no key priv.pem"),
        "{}",
        skipped.message
    );
    assert_eq!(paths(&peer.server), vec![PUBLIC_PATH]);
}

#[test]
fn unusable_key_is_token_generation_failed() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    let own_record = Own {
        cluster_uuid: OWN_UUID,
        root_fingerprints: &[],
        now: unix_now(),
    };
    let out = fetch_all(
        &settings(&[]),
        &[peer.federation("b", &ca)],
        Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        &own_record,
        unix_now(),
    );
    let r = &out["b"];
    public_ok(r);
    assert!(r.private.is_none());
    let skipped = r.private_skipped.as_ref().unwrap();
    assert_eq!(skipped.reason, Reason::TokenGenerationFailed);
    assert!(
        skipped
            .message
            .contains("priv.pem of Secret d8-istio/d8-remote-authn-keypair"),
        "{}",
        skipped.message
    );
    assert_eq!(paths(&peer.server), vec![PUBLIC_PATH]);
}

/// The pin (docs/how-it-works.md, "Remote discovery"): with the peer's UUID cached, the
/// private request waits for the public answer and is addressed to the UUID it carries, never
/// sent ahead to whoever answers at the endpoint.
#[test]
fn cached_uuid_private_request_waits_for_the_public_answer() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    let delay = Duration::from_millis(400);
    peer.serve_public(Route::ok(peer.public_body.clone()).with_delay(delay));
    peer.serve_private(Route::ok(peer.private_body.clone()).with_delay(delay), &own);
    let fed = federation(
        "b",
        "b.local",
        &peer.endpoint(),
        Some(json!({"clusterCA": ca.cert_pem})),
        Some(json!({"clusterUUID": "peer-b", "authnKeyPub": "x", "rootCA": "y"})),
    );
    let out = fetch(&settings(&[]), &[fed], Some(&own), unix_now());
    public_ok(&out["b"]);
    private_ok(&out["b"]);
    let public = &peer.server.requests_to(PUBLIC_PATH)[0];
    let private = peer.server.requests_to(PRIVATE_PATH);
    assert_eq!(private.len(), 1);
    assert!(private[0].arrived >= public.answered.unwrap());
    assert_eq!(private[0].claims.as_ref().unwrap().aud, "peer-b");
}

/// A cached UUID the fresh public document does not carry: no token goes out at all (the
/// public document is refused later, in the reconcile, as ClusterUUIDMismatch).
#[test]
fn cached_uuid_that_changed_sends_no_token() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-new", "b.local", &own);
    let fed = federation(
        "b",
        "b.local",
        &peer.endpoint(),
        Some(json!({"clusterCA": ca.cert_pem})),
        Some(json!({"clusterUUID": "peer-old"})),
    );
    let out = fetch(&settings(&[]), &[fed], Some(&own), unix_now());
    assert_eq!(public_ok(&out["b"]).cluster_uuid, "peer-new");
    assert_awaiting_public(&out["b"]);
    assert!(peer.server.requests_to(PRIVATE_PATH).is_empty());
}

#[test]
fn cached_uuid_private_result_is_dropped_when_public_fails() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    peer.serve_public(Route::status(503, "maintenance"));
    let fed = federation(
        "b",
        "b.local",
        &peer.endpoint(),
        Some(json!({"clusterCA": ca.cert_pem})),
        Some(json!({"clusterUUID": "peer-b"})),
    );
    let out = fetch(&settings(&[]), &[fed], Some(&own), unix_now());
    assert_eq!(
        public_err(&out["b"]).message,
        "HTTP status 503 when fetching public metadata"
    );
    assert_awaiting_public(&out["b"]);
    assert!(peer.server.requests_to(PRIVATE_PATH).is_empty());
}

#[test]
fn own_trust_domain_is_not_fetched() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "peer-b", "b.local", &own);
    let fed = federation(
        "me",
        support::OWN_DOMAIN,
        &peer.endpoint(),
        Some(json!({"clusterCA": ca.cert_pem})),
        None,
    );
    let out = fetch(&settings(&[]), &[fed], Some(&own), unix_now());
    assert!(out.is_empty());
    assert!(peer.server.requests().is_empty());
    assert!(fetch(&settings(&[]), &[], Some(&own), unix_now()).is_empty());
}

#[test]
fn concurrency_is_bounded_by_fetch_concurrency() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let gauge = Arc::new(Gauge::default());
    let peers: Vec<Peer> = (0..5)
        .map(|i| {
            let server =
                TlsServer::start_with_gauge(&ca.server_identity(), Some(Arc::clone(&gauge)));
            let peer = Peer::start_on(server, &format!("peer-{i}"), &format!("p{i}.local"), &own);
            let delay = Duration::from_millis(150);
            peer.serve_public(Route::ok(peer.public_body.clone()).with_delay(delay));
            peer.serve_private(Route::ok(peer.private_body.clone()).with_delay(delay), &own);
            peer
        })
        .collect();
    let feds: Vec<Federation> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| p.federation(&format!("p{i}"), &ca))
        .collect();
    let out = fetch(
        &settings(&[("FETCH_CONCURRENCY", "2")]),
        &feds,
        Some(&own),
        unix_now(),
    );
    assert_eq!(out.len(), 5);
    for r in out.values() {
        public_ok(r);
        private_ok(r);
    }
    // Two workers, each with one request at a time (no cached UUIDs).
    assert_eq!(gauge.max(), 2);
}

#[test]
fn connection_refused_is_fetch_failed() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("https://127.0.0.1:{port}/metadata/");
    let fed = federation("gone", "gone.local", &endpoint, None, None);
    let own = SigningKeys::generate();
    let out = fetch(&settings(&[]), &[fed], Some(&own), unix_now());
    let f = public_err(&out["gone"]);
    assert_eq!(f.reason, Reason::FetchFailed);
    let prefix = format!(
        "cannot fetch public metadata from https://127.0.0.1:{port}/metadata/public/public.json: "
    );
    assert!(f.message.starts_with(&prefix), "{}", f.message);
    assert_awaiting_public(&out["gone"]);
}

#[test]
fn failure_messages_are_stable_across_runs() {
    let ca = Ca::new("endpoint CA");
    let own = SigningKeys::generate();
    let b = Peer::start(&ca, "peer-b", "b.local", &own);
    b.serve_public(Route::status(500, "x"));
    let c = Peer::start(&ca, "peer-c", "c.local", &own);
    c.serve_public(Route::ok(r#"{"zzz"#));
    let d = Peer::start(&ca, "peer-d", "d.local", &own);
    let e = Peer::start(&ca, "peer-e", "e.local", &own);
    e.serve_public(Route::redirect(&b.public_url()));
    let feds = vec![
        b.federation("b", &ca),
        c.federation("c", &ca),
        federation("d", "d.local", &d.endpoint(), None, None),
        e.federation("e", &ca),
    ];
    let summary = |out: &BTreeMap<String, FetchReport>| -> Vec<(String, String, String)> {
        out.iter()
            .map(|(name, r)| {
                let f = public_err(r);
                (name.clone(), f.reason.to_string(), f.message.clone())
            })
            .collect()
    };
    let first = summary(&fetch(&settings(&[]), &feds, Some(&own), unix_now()));
    let second = summary(&fetch(&settings(&[]), &feds, Some(&own), unix_now()));
    assert_eq!(first, second);
    assert_eq!(first.len(), 4);
}
