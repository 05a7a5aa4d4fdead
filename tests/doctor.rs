//! `doctor` against healthy and hostile peers on 127.0.0.1 (tests/support): every check's
//! status and hint, the exit codes, the signed request as the hook signs it, the bound of
//! `--timeout`, and the gateway probe through the test-only gateway map (docs/operating.md).
//! Nothing is ever sent to the test data's non-loopback addresses.

mod support;

use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::pki::{Ca, SigningKeys};
use support::server::{Route, SilentListener, TlsServer};
use support::{Peer, OWN_UUID, PRIVATE_PATH, PUBLIC_PATH};

const PEER_UUID: &str = "uuid-b";
const PEER_DOMAIN: &str = "b.local";
/// The gateway `support::simple_private_json` advertises (TEST-NET-2: never contacted).
const ADVERTISED: &str = "198.51.100.7:15443";

struct Files {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        Files { _dir: dir, path }
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.path.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    }
}

struct Out {
    code: i32,
    json: Value,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Out {
    fn check(&self, name: &str) -> &Value {
        self.json["checks"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no check {name}: {}", self.stdout))
    }

    fn status(&self, name: &str) -> String {
        self.check(name)["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn hint(&self, name: &str) -> String {
        self.check(name)["hint"].as_str().unwrap_or("").to_string()
    }

    fn detail(&self, name: &str) -> String {
        self.check(name)["detail"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn statuses(&self) -> Vec<String> {
        ["url", "dns", "tcp", "tls", "public", "private", "gateways"]
            .iter()
            .map(|n| format!("{n}={}", self.status(n)))
            .collect()
    }
}

fn doctor_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_istio-federation-hook"));
    cmd.arg("doctor").args(args).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().expect("run doctor");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Out {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    }
}

fn doctor(args: &[&str]) -> Out {
    doctor_env(args, &[])
}

/// A healthy peer that knows our key, and the files doctor reads.
struct Setup {
    ca: Ca,
    own: SigningKeys,
    peer: Peer,
    files: Files,
    ca_file: String,
    key_file: String,
}

fn setup() -> Setup {
    let ca = Ca::new("doctor test CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, PEER_UUID, PEER_DOMAIN, &own);
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ca.cert_pem);
    let key_file = files.write("priv.pem", &own.private_pem);
    Setup {
        ca,
        own,
        peer,
        files,
        ca_file,
        key_file,
    }
}

impl Setup {
    fn args(&self) -> Vec<String> {
        vec![
            "--endpoint".into(),
            self.peer.endpoint(),
            "--ca".into(),
            self.ca_file.clone(),
            "--trust-domain".into(),
            PEER_DOMAIN.into(),
            "--key".into(),
            self.key_file.clone(),
            "--uuid".into(),
            OWN_UUID.into(),
            "--output".into(),
            "json".into(),
            "--timeout".into(),
            "3s".into(),
        ]
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn healthy_peer_passes_every_check_with_the_hooks_own_requests() {
    let s = setup();
    let gateway = TcpListener::bind("127.0.0.1:0").expect("bind");
    let map = format!("{ADVERTISED}={}", gateway.local_addr().unwrap());
    let mut args = s.args();
    args.push("--probe-gateways".into());
    let out = doctor_env(
        &strs(&args),
        &[("ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP", &map)],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.json["ok"], true);
    assert_eq!(out.json["endpoint"], s.peer.endpoint());
    let names: Vec<&str> = out.json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["url", "dns", "tcp", "tls", "public", "private", "gateways"]
    );
    for c in out.json["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c.get("hint").is_none(), "{c}");
        assert!(!c["detail"].as_str().unwrap().is_empty());
    }
    assert!(
        out.detail("tls").contains("verified"),
        "{}",
        out.detail("tls")
    );
    assert!(out.detail("public").contains(PEER_UUID));
    assert!(out.detail("private").contains(ADVERTISED));
    assert!(
        out.detail("gateways").contains(&format!(
            "{ADVERTISED} via {}",
            gateway.local_addr().unwrap()
        )),
        "{}",
        out.detail("gateways")
    );
    // The private request is the hook's: a token from us to the peer's published UUID.
    let private = s.peer.server.requests_to(PRIVATE_PATH);
    assert_eq!(private.len(), 1);
    let claims = private[0].claims.as_ref().expect("token accepted");
    assert_eq!(claims.sub, OWN_UUID);
    assert_eq!(claims.aud, PEER_UUID);
    assert_eq!(claims.scope, "private-federation");
    assert_eq!(claims.exp - claims.nbf, 60);
    assert!(private[0]
        .user_agent
        .as_deref()
        .is_some_and(|u| u.starts_with("istio-federation-hook/")));
    assert!(s.peer.server.requests_to(PUBLIC_PATH)[0]
        .authorization
        .is_none());

    // Text: one line per check with its mark.
    let mut text_args = s.args();
    text_args.retain(|a| a != "--output" && a != "json");
    let text = doctor(&strs(&text_args));
    assert_eq!(text.code, 0);
    for n in ["url", "dns", "tcp", "tls", "public", "private"] {
        assert!(
            text.stdout
                .lines()
                .any(|l| l.starts_with("[ ok ]") && l.contains(n)),
            "{}",
            text.stdout
        );
    }
    assert!(text.stdout.contains("[skip] gateways"), "{}", text.stdout);
    assert!(
        text.stdout.ends_with("Nothing failed.\n"),
        "{}",
        text.stdout
    );
}

#[test]
fn status_500_and_bad_json_fail_public_with_their_hints() {
    let s = setup();
    s.peer
        .serve_public(Route::status(500, "upstream connect error"));
    let out = doctor(&strs(&s.args()));
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(out.json["ok"], false);
    assert_eq!(out.status("tls"), "ok");
    assert_eq!(out.status("public"), "fail");
    assert!(
        out.detail("public").contains("HTTP status 500"),
        "{}",
        out.detail("public")
    );
    assert!(out.detail("public").contains("upstream connect error"));
    assert!(
        out.hint("public")
            .contains("metadata server fails (HTTP 500)"),
        "{}",
        out.hint("public")
    );
    assert_eq!(out.status("private"), "skip");

    s.peer.serve_public(Route::ok("<html>login</html>"));
    let out = doctor(&strs(&s.args()));
    assert_eq!(out.code, 1);
    assert_eq!(out.status("public"), "fail");
    assert!(
        out.detail("public").contains("InvalidJSON"),
        "{}",
        out.detail("public")
    );
    assert!(
        out.hint("public").contains("not with JSON"),
        "{}",
        out.hint("public")
    );

    // Valid JSON, invalid metadata: every validation rule of the hook applies.
    s.peer.serve_public(Route::ok(r#"{"clusterUUID": "x"}"#));
    let out = doctor(&strs(&s.args()));
    assert_eq!(out.status("public"), "fail");
    assert!(out.detail("public").contains("InvalidPublicMetadata"));
    assert!(out.hint("public").contains("invalid public metadata"));
}

#[test]
fn refused_certificates_fail_tls_with_the_reason() {
    let s = setup();
    // Another CA than the one that issued the endpoint's certificate.
    let other = Ca::new("some other CA");
    let other_file = s.files.write("other.pem", &other.cert_pem);
    let mut args = s.args();
    let at = args.iter().position(|a| a == "--ca").unwrap();
    args[at + 1] = other_file;
    let out = doctor(&strs(&args));
    assert_eq!(out.code, 1);
    assert_eq!(out.status("tcp"), "ok");
    assert_eq!(out.status("tls"), "fail", "{}", out.stdout);
    assert!(
        out.hint("tls").contains("doctor test CA"),
        "{}",
        out.hint("tls")
    );
    assert!(out.hint("tls").contains("--ca"), "{}", out.hint("tls"));
    assert_eq!(out.status("public"), "skip");
    assert!(s.peer.server.requests_to(PRIVATE_PATH).is_empty());

    // No CA at all: the system store does not know the test CA either.
    args.drain(at..at + 2);
    let out = doctor(&strs(&args));
    assert_eq!(out.status("tls"), "fail");
    assert!(out.hint("tls").contains("--ca FILE"), "{}", out.hint("tls"));

    // --insecure as enableInsecureConnection: works, and warns.
    args.push("--insecure".into());
    let out = doctor(&strs(&args));
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(out.status("tls"), "warn");
    assert!(out.hint("tls").contains("impersonate"));

    // A certificate for another name, and an expired one.
    for (names, from, until, expect) in [
        (
            &["metadata.b.example"][..],
            (2020, 1, 1),
            (2045, 1, 1),
            "names DNS:metadata.b.example, not 127.0.0.1",
        ),
        (
            &["127.0.0.1"][..],
            (2020, 1, 1),
            (2021, 1, 1),
            "expired on 2021-01-01",
        ),
    ] {
        let server = TlsServer::start(&s.ca.server_identity_with(names, from, until));
        let peer = Peer::start_on(server, PEER_UUID, PEER_DOMAIN, &s.own);
        let mut args = s.args();
        args[1] = peer.endpoint();
        let out = doctor(&strs(&args));
        assert_eq!(out.status("tls"), "fail", "{}", out.stdout);
        assert!(out.hint("tls").contains(expect), "{}", out.hint("tls"));
    }
}

#[test]
fn unknown_keys_fail_private_with_their_hints() {
    let s = setup();
    // The peer never fetched the public metadata of this cluster: it does not know its UUID.
    let mut args = s.args();
    let at = args.iter().position(|a| a == "--uuid").unwrap();
    args[at + 1] = "stranger-uuid".into();
    let out = doctor(&strs(&args));
    assert_eq!(out.code, 1);
    assert_eq!(out.status("public"), "ok");
    assert_eq!(out.status("private"), "fail", "{}", out.stdout);
    assert!(out.detail("private").contains("HTTP status 401"));
    assert!(
        out.detail("private")
            .contains("unknown source cluster stranger-uuid"),
        "{}",
        out.detail("private")
    );
    assert!(
        out.hint("private").contains("the peer has not fetched our public metadata yet: check it has an IstioFederation for us"),
        "{}",
        out.hint("private")
    );

    // Our UUID, another key than the one the peer knows for it.
    let other = SigningKeys::generate();
    let other_key = s.files.write("other-priv.pem", &other.private_pem);
    let mut args = s.args();
    let at = args.iter().position(|a| a == "--key").unwrap();
    args[at + 1] = other_key;
    let out = doctor(&strs(&args));
    assert_eq!(out.status("private"), "fail");
    assert!(
        out.hint("private").contains("another public key"),
        "{}",
        out.hint("private")
    );

    // Not a key at all.
    let junk = s.files.write("junk.pem", "not a key");
    args[at + 1] = junk;
    let out = doctor(&strs(&args));
    assert_eq!(out.status("private"), "fail");
    assert!(
        out.hint("private").contains("Ed25519 priv.pem"),
        "{}",
        out.hint("private")
    );

    // Without --key the private check is skipped, which is not a failure.
    let out = doctor(&[
        "--endpoint",
        &s.peer.endpoint(),
        "--ca",
        &s.ca_file,
        "-o",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(out.status("private"), "skip");
    assert_eq!(out.status("gateways"), "skip");
}

#[test]
fn peers_that_never_answer_are_bounded_by_the_timeout() {
    // Accepts TCP, never speaks TLS.
    let silent = SilentListener::start();
    let out = doctor(&[
        "--endpoint",
        &silent.endpoint(),
        "--timeout",
        "1s",
        "-o",
        "json",
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(out.status("tcp"), "ok");
    assert_eq!(out.status("tls"), "fail");
    assert!(
        out.hint("tls")
            .contains("does not complete a TLS handshake"),
        "{}",
        out.hint("tls")
    );
    assert!(
        out.took < Duration::from_millis(2500),
        "took {:?}",
        out.took
    );

    // Completes TLS, never answers the request.
    let s = setup();
    s.peer.serve_public(Route::never_answer());
    let mut args = s.args();
    let at = args.iter().position(|a| a == "--timeout").unwrap();
    args[at + 1] = "1s".into();
    let out = doctor(&strs(&args));
    assert_eq!(out.code, 1);
    assert_eq!(out.status("tls"), "ok", "{}", out.stdout);
    assert_eq!(out.status("public"), "fail");
    assert!(
        out.hint("public").contains("no complete answer within 1s"),
        "{}",
        out.hint("public")
    );
    assert!(
        out.took < Duration::from_millis(2500),
        "took {:?}",
        out.took
    );

    // Answers public, hangs on private: each step bounded on its own.
    s.peer.serve_public(Route::ok(s.peer.public_body.clone()));
    s.peer.serve_private(Route::never_answer(), &s.own);
    let out = doctor(&strs(&args));
    assert_eq!(out.status("public"), "ok");
    assert_eq!(out.status("private"), "fail");
    assert!(
        out.took < Duration::from_millis(3500),
        "took {:?}",
        out.took
    );
}

#[test]
fn gateways_are_probed_only_through_the_loopback_map() {
    let s = setup();
    let two = r#"{"ingressGateways": [{"address": "198.51.100.7", "port": 15443}, {"address": "203.0.113.10", "port": 15443}],
        "publicServices": [{"hostname": "web.prod.svc.b.local", "ports": [{"name": "http", "port": 8080}]}]}"#;
    s.peer.serve_private(Route::ok(two), &s.own);
    let alive = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let map = format!(
        "198.51.100.7:15443={},203.0.113.10:15443={dead_addr}",
        alive.local_addr().unwrap()
    );
    let mut args = s.args();
    args.push("--probe-gateways".into());
    let env = [("ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP", map.as_str())];
    let out = doctor_env(&strs(&args), &env);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(out.status("gateways"), "fail");
    let d = out.detail("gateways");
    assert!(
        d.contains("198.51.100.7:15443 via") && d.contains("connected"),
        "{d}"
    );
    assert!(
        d.contains(&format!(
            "203.0.113.10:15443 via {dead_addr}: cannot connect"
        )),
        "{d}"
    );
    assert!(out.hint("gateways").contains("ingress gateway"));

    // A gateway the map does not list is not contacted at all.
    let only_one = format!("198.51.100.7:15443={}", alive.local_addr().unwrap());
    let out = doctor_env(
        &strs(&args),
        &[("ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP", &only_one)],
    );
    assert_eq!(out.status("gateways"), "ok", "{}", out.stdout);
    assert!(out
        .detail("gateways")
        .contains("203.0.113.10:15443 not probed (not in ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP)"));

    // The map only ever points at loopback.
    let out = doctor_env(
        &strs(&args),
        &[(
            "ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP",
            "198.51.100.7:15443=192.0.2.1:1",
        )],
    );
    assert_eq!(out.status("gateways"), "fail");
    assert!(out.detail("gateways").contains("not a loopback address"));
}

#[test]
fn usage_errors_exit_2() {
    let files = Files::new();
    let key = files.write("k.pem", "x");
    let not_ca = files.write("not-ca.pem", "hello");
    for args in [
        &[][..],
        &["--endpoint"],
        &["--endpoint", "https://h/", "--bogus"],
        &["--endpoint", "https://h/", "--timeout", "soon"],
        &["--endpoint", "https://h/", "--output", "yaml"],
        &["--endpoint", "https://h/", "--key", &key],
        &["--endpoint", "https://h/", "--uuid", "u"],
        &["--endpoint", "https://h/", "--ca", "/nonexistent/ca.pem"],
        &["--endpoint", "https://h/", "--ca", &not_ca],
    ] {
        let out = doctor(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("usage: istio-federation-hook doctor"),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
    let help = doctor(&["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("--probe-gateways"));
    // A bad endpoint is a failed check, not a usage error.
    let out = doctor(&["--endpoint", "http://h/metadata/", "-o", "json"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.statuses()[0], "url=fail");
}

/// A gateway given as a DNS name is resolved first, and what it resolves to is held to the
/// rules an advertised address is: a name resolving to loopback is never dialled (not even
/// through the test map), and the output says what each name resolved to.
#[test]
fn gateway_names_are_resolved_and_held_to_the_address_rules() {
    let s = setup();
    let gateways = r#"{"ingressGateways": [{"address": "gw-loop.b.example", "port": 15443}, {"address": "gw.b.example", "port": 15443}],
        "publicServices": [{"hostname": "web.prod.svc.b.local", "ports": [{"name": "http", "port": 8080}]}]}"#;
    s.peer.serve_private(Route::ok(gateways), &s.own);
    // Were the loopback name dialled, this listener would see it.
    let loopback = TcpListener::bind("127.0.0.1:0").unwrap();
    loopback.set_nonblocking(true).unwrap();
    let alive = TcpListener::bind("127.0.0.1:0").unwrap();
    let map = format!(
        "gw-loop.b.example:15443={},gw.b.example:15443={}",
        loopback.local_addr().unwrap(),
        alive.local_addr().unwrap()
    );
    let mut args = s.args();
    args.push("--probe-gateways".into());
    let out = doctor_env(
        &strs(&args),
        &[
            (
                "ISTIO_FEDERATION_HOOK_TEST_RESOLVE",
                "gw-loop.b.example=127.0.0.1,gw.b.example=203.0.113.10",
            ),
            ("ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP", &map),
        ],
    );
    assert_eq!(out.status("gateways"), "fail", "{}", out.stdout);
    let d = out.detail("gateways");
    assert!(
        d.contains("gw-loop.b.example:15443 resolves to 127.0.0.1 (refused: is a loopback address): not connecting"),
        "{d}"
    );
    assert!(
        d.contains("gw.b.example:15443 resolves to 203.0.113.10 via 127.0.0.1:")
            && d.contains("connected"),
        "{d}"
    );
    assert!(
        loopback.accept().is_err(),
        "doctor connected to the loopback address a gateway name resolved to"
    );
}

/// `--pinned-uuid`: a peer answering with another clusterUUID fails the public check as the
/// hook refuses it (ClusterUUIDMismatch), and no token is sent to it.
#[test]
fn a_peer_with_another_uuid_than_pinned_fails_and_gets_no_token() {
    let s = setup();
    let mut args = s.args();
    args.extend([
        "--pinned-uuid".to_string(),
        "uuid-pinned-earlier".to_string(),
    ]);
    let out = doctor(&strs(&args));
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.detail("public").contains("ClusterUUIDMismatch"),
        "{}",
        out.detail("public")
    );
    assert!(out.detail("public").contains("uuid-pinned-earlier"));
    assert!(out.detail("public").contains(PEER_UUID));
    assert!(
        s.peer.server.requests_to(support::PRIVATE_PATH).is_empty(),
        "a token was sent"
    );
    // Pinned to the UUID the peer publishes: every check passes.
    let mut args = s.args();
    args.extend(["--pinned-uuid".to_string(), PEER_UUID.to_string()]);
    let out = doctor(&strs(&args));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
}

/// A hostile peer's 401 echoes our bearer token and carries terminal control sequences:
/// doctor prints neither the token (nor a part of it) nor a raw control character, in text
/// or JSON output.
#[test]
fn a_peer_echoing_our_token_never_gets_it_printed() {
    let s = setup();
    let body = "Authentication error: JWT is signed for unknown source cluster; you sent {authorization} \u{1b}]0;owned\u{7}\u{1b}[2J done";
    s.peer
        .serve_private(Route::status(401, body).echoing_authorization(), &s.own);
    for output in ["json", "text"] {
        let mut args = s.args();
        let at = args.iter().position(|a| a == "--output").unwrap();
        args[at + 1] = output.into();
        let out = doctor(&strs(&args));
        assert_eq!(out.code, 1, "{}", out.stdout);
        let sent = s.peer.server.requests_to(support::PRIVATE_PATH);
        let token = sent
            .last()
            .and_then(|r| r.authorization.clone())
            .expect("a token was sent");
        let token = token.strip_prefix("Bearer ").unwrap();
        for part in token.split('.') {
            assert!(
                !out.stdout.contains(part),
                "{output}: printed {part}:\n{}",
                out.stdout
            );
        }
        assert!(
            !out.stdout.contains(['\u{1b}', '\u{7}']),
            "{output}: raw control characters:\n{:?}",
            out.stdout
        );
        let shown = if output == "json" {
            out.detail("private")
        } else {
            out.stdout.clone()
        };
        assert!(
            shown.contains("you sent Bearer [redacted: looks like a token]"),
            "{output}: {shown}"
        );
    }
}

/// `--key` and `--uuid` without `--trust-domain`: the signed request runs, and the private
/// check says what needed the trust domain instead of refusing the invocation.
#[test]
fn the_signed_request_runs_without_a_trust_domain() {
    let s = setup();
    let mut args = s.args();
    let at = args.iter().position(|a| a == "--trust-domain").unwrap();
    args.drain(at..at + 2);
    let out = doctor(&strs(&args));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.status("private"), "warn", "{}", out.stdout);
    let d = out.detail("private");
    assert!(
        d.starts_with("signed request accepted; 1 ingress gateway(s): ")
            && d.ends_with(", 1 service(s), not checked against a trust domain"),
        "{d}"
    );
    assert!(out.hint("private").contains("pass --trust-domain"));
    let sent = s.peer.server.requests_to(support::PRIVATE_PATH);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].claims.is_some(),
        "the peer did not accept the token"
    );
}
