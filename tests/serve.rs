//! `serve` end to end: the real binary on a loopback port, a metadata directory laid out the
//! way kubelet mounts a Secret, certificates and keys made at test time, and clients that
//! speak raw HTTP/1.1 over TCP (to control every byte) or go through reqwest (TLS).
//!
//! Expected values are computed independently of the product where it matters: RSA moduli
//! and DER come from the `openssl` command line, EC coordinates from rcgen's key, and one
//! token is signed with ring directly in Deckhouse's claim order with Deckhouse's fixture key.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use istio_federation_hook::protocol::{certs, jwt};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{json, Value};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const OWN: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const PEER_B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const PEER_C: &str = "cccccccc-0000-4000-8000-000000000003";
const FEDERATION_PATH: &str = "/metadata/private/federation.json";
const PUBLIC_PATH: &str = "/metadata/public/public.json";
const SPIFFE_PATH: &str = "/metadata/public/spiffe-bundle-endpoint";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_istio-federation-hook")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------------
// Keys, certificates, tokens

/// An Ed25519 key pair: the signer and its SPKI PEM as a peer would publish it.
struct Peer {
    uuid: &'static str,
    key: Ed25519KeyPair,
    pub_pem: String,
}

impl Peer {
    fn generated(uuid: &'static str) -> Peer {
        let (priv_pem, pub_pem) = certs::generate_ed25519_pem().unwrap();
        Peer {
            uuid,
            key: certs::parse_ed25519_private_pem(&priv_pem).unwrap(),
            pub_pem,
        }
    }

    /// A token for the server `OWN`, made by the product's signer.
    fn token(&self) -> String {
        jwt::sign(
            &self.key,
            &jwt::Claims::private_federation(self.uuid, OWN, now()),
        )
    }

    fn token_with(&self, aud: &str, scope: &str, nbf: i64, exp: i64) -> String {
        raw_token(
            &self.key,
            &format!(
                r#"{{"aud":"{aud}","exp":{exp},"iss":"d8-istio","nbf":{nbf},"scope":"{scope}","sub":"{}"}}"#,
                self.uuid
            ),
        )
    }
}

/// A compact JWS signed with ring directly: Deckhouse's header and the given payload bytes.
fn raw_token(key: &Ed25519KeyPair, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA"}"#),
        URL_SAFE_NO_PAD.encode(payload.as_bytes())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// Body of the first PEM block, decoded here without the product's PEM code.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD.decode(body).unwrap()
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A self-signed RSA CA made by openssl with public exponent `exp`.
fn openssl_rsa_root(dir: &Path, name: &str, exp: u32) -> String {
    let cert = dir.join(format!("{name}.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-pkeyopt",
        &format!("rsa_keygen_pubexp:{exp}"),
        "-nodes",
        "-keyout",
        dir.join(format!("{name}.key")).to_str().unwrap(),
        "-subj",
        &format!("/O=test/CN={name}"),
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-out",
        cert.to_str().unwrap(),
    ]);
    std::fs::read_to_string(cert).unwrap()
}

fn ca_params(cn: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
}

/// A self-signed CA from rcgen and its key pair.
fn rcgen_root(
    alg: &'static rcgen::SignatureAlgorithm,
    cn: &str,
) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert = ca_params(cn).self_signed(&key).unwrap();
    (cert, key)
}

fn ec_root_pem() -> String {
    rcgen_root(&rcgen::PKCS_ECDSA_P256_SHA256, "EC Root")
        .0
        .pem()
}

// ---------------------------------------------------------------------------------------------
// The metadata directory, as kubelet lays out a Secret volume

/// `DIR/<key>` → `..data/<key>`, `..data` → `..<timestamp>/`, swapped atomically by `update`.
struct SecretDir {
    dir: tempfile::TempDir,
    generation: u32,
}

impl SecretDir {
    fn new(files: &[(&str, &str)]) -> SecretDir {
        let mut s = SecretDir {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        s.update(files);
        s
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a new version and swaps `..data` to it with a rename, as kubelet's
    /// AtomicWriter does; user-visible links for new keys are added, those of removed keys
    /// dropped, and the old version deleted.
    fn update(&mut self, files: &[(&str, &str)]) {
        self.generation += 1;
        let root = self.dir.path();
        let version = format!(
            "..2026_01_01_00_00_{:02}.{:09}",
            self.generation, self.generation
        );
        std::fs::create_dir(root.join(&version)).unwrap();
        for (name, content) in files {
            std::fs::write(root.join(&version).join(name), content).unwrap();
        }
        let old = std::fs::read_link(root.join("..data")).ok();
        std::os::unix::fs::symlink(&version, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        for name in [
            "public.json",
            "federation.json",
            "remote-public-metadata.json",
        ] {
            let link = root.join(name);
            let wanted = files.iter().any(|(n, _)| *n == name);
            let exists = std::fs::symlink_metadata(&link).is_ok();
            if wanted && !exists {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            } else if !wanted && exists {
                std::fs::remove_file(&link).unwrap();
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(root.join(old)).unwrap();
        }
    }
}

fn public_json(root_ca: &str) -> String {
    // Pretty, with a key the server does not know: it must be served byte for byte.
    serde_json::to_string_pretty(&json!({
        "clusterUUID": OWN,
        "authnKeyPub": "-----BEGIN ED25519 PUBLIC KEY-----\nMCowBQYDK2VwAyEAKWjdKDeIIT4xESCMhbol662vNMpq4DxFct8GvJ500Xs=\n-----END ED25519 PUBLIC KEY-----\n",
        "rootCA": root_ca,
        "extra": "kept verbatim ✓",
    }))
    .unwrap()
}

const FEDERATION_JSON: &str = r#"{"ingressGateways":[{"address":"203.0.113.10","port":15443}],"publicServices":[{"hostname":"web.prod.svc.cluster-a.local","ports":[{"name":"http","port":8080}]}]}"#;

fn remotes(peers: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, Value> = peers
        .iter()
        .map(|(uuid, pem)| {
            (
                uuid.to_string(),
                json!({"clusterUUID": uuid, "authnKeyPub": pem, "rootCA": ec_root_pem()}),
            )
        })
        .collect();
    Value::Object(map).to_string()
}

/// The usual directory: our public metadata (EC root), federation enabled, peers as given.
fn standard_dir(peers: &[&Peer]) -> SecretDir {
    let pairs: Vec<(&str, &str)> = peers.iter().map(|p| (p.uuid, p.pub_pem.as_str())).collect();
    SecretDir::new(&[
        ("public.json", &public_json(&ec_root_pem())),
        ("federation.json", FEDERATION_JSON),
        ("remote-public-metadata.json", &remotes(&pairs)),
    ])
}

// ---------------------------------------------------------------------------------------------
// The server process

struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// Starts `serve` on an ephemeral loopback port and waits for its "listening" log line.
    fn start_with(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--metadata-dir"])
            .arg(dir)
            .args(extra)
            .env("LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http").nth(1) {
                    let port = rest
                        .split(':')
                        .nth(2)
                        .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|p| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("serve did not start ({other:?}): {}", log.lock().unwrap());
            }
        };
        Server { child, port, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it contains `needle` (the log is read by another thread); panics after 5 s.
    fn log_with(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no {needle:?} in log: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// One request on a fresh connection (closed after the answer).
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.raw(req.as_bytes())
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[])
    }

    fn get_with_token(&self, token: &str) -> Reply {
        self.request(
            "GET",
            FEDERATION_PATH,
            &[("Authorization", &format!("Bearer {token}"))],
        )
    }

    /// Sends `bytes` and reads until the server closes the connection.
    fn raw(&self, bytes: &[u8]) -> Reply {
        let mut s = self.connect();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        Reply::parse(&out)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits up to `limit` for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn metrics(&self) -> String {
        self.get("/metrics").text()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Public endpoints

#[test]
fn public_json_is_served_verbatim() {
    let root = ec_root_pem();
    let public = public_json(&root);
    let dir = SecretDir::new(&[("public.json", &public)]);
    let server = Server::start(dir.path());
    let r = server.get(PUBLIC_PATH);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, public.as_bytes());
    assert_eq!(r.header("content-type"), Some("application/json"));

    // HEAD: same headers, no body.
    let r = server.request("HEAD", PUBLIC_PATH, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(public.len().to_string().as_str())
    );
    assert!(r.body.is_empty());

    // Probes.
    assert_eq!(server.get("/healthz").text(), "Ok.");
    let ready = server.get("/readyz");
    assert_eq!((ready.status, ready.text().as_str()), (200, "Ok."));

    // Other methods, unknown paths, query strings.
    let r = server.request("POST", PUBLIC_PATH, &[("Content-Length", "0")]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(server.request("DELETE", FEDERATION_PATH, &[]).status, 405);
    assert_eq!(server.get("/").status, 404);
    assert_eq!(server.get("/metadata/public/").status, 404);
    assert_eq!(server.get("/metadata/public/public.json/..").status, 404);
    assert_eq!(
        server.get(&format!("{PUBLIC_PATH}?x=1")).body,
        public.as_bytes()
    );
}

/// A client that shuts down its sending side right after the request (scripted clients and
/// some proxies do) still gets the answer, also when many do so at once.
#[test]
fn half_closed_clients_get_their_answer() {
    let dir = standard_dir(&[]);
    let public = std::fs::read(dir.path().join("public.json")).unwrap();
    let server = Server::start(dir.path());
    let port = server.port;
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let public = public.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    let path = if (w + i) % 2 == 0 {
                        PUBLIC_PATH
                    } else {
                        FEDERATION_PATH
                    };
                    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
                        .unwrap();
                    s.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut out = Vec::new();
                    let _ = s.read_to_end(&mut out);
                    assert!(
                        !out.is_empty(),
                        "{path}: connection closed without an answer"
                    );
                    let r = Reply::parse(&out);
                    if path == PUBLIC_PATH {
                        assert_eq!((r.status, r.body.as_slice()), (200, public.as_slice()));
                    } else {
                        assert_eq!(r.status, 401, "{}", r.text());
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("every half-closed client got its answer");
    }
}

#[test]
fn public_json_missing_or_invalid_is_503() {
    let mut dir = SecretDir::new(&[("federation.json", FEDERATION_JSON)]);
    let server = Server::start(dir.path());
    for path in [PUBLIC_PATH, SPIFFE_PATH, "/readyz", FEDERATION_PATH] {
        let r = server.get(path);
        assert_eq!(r.status, 503, "{path}");
        assert!(r.text().contains("public.json"), "{path}: {}", r.text());
    }
    assert_eq!(server.get("/healthz").status, 200);

    // Not JSON: public.json is still served as is, but the server is not ready.
    dir.update(&[("public.json", "{ not json")]);
    assert_eq!(server.get(PUBLIC_PATH).body, b"{ not json");
    assert_eq!(server.get("/readyz").status, 503);
    assert_eq!(server.get(SPIFFE_PATH).status, 500);

    // JSON without clusterUUID: not ready either.
    dir.update(&[("public.json", r#"{"rootCA":""}"#)]);
    let r = server.get("/readyz");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("clusterUUID"), "{}", r.text());
}

/// The keys of the SPIFFE bundle, which has the sequence and hint of a Secret without
/// `spiffe-sequence` / `spiffe-refresh-hint`: 1, and a quarter of the default ROOT_RETENTION.
fn spiffe_keys(server: &Server) -> Vec<Value> {
    let r = server.get(SPIFFE_PATH);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let bundle = r.json();
    assert_eq!(bundle["spiffe_sequence"], 1);
    assert_eq!(bundle["spiffe_refresh_hint"], 43_200);
    bundle["keys"].as_array().unwrap().clone()
}

fn spiffe_key(server: &Server) -> Value {
    let keys = spiffe_keys(server);
    assert_eq!(keys.len(), 1);
    keys[0].clone()
}

#[test]
fn spiffe_bundle_for_rsa_roots_matches_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    for (exp, e_b64) in [(65537, "AQAB"), (3, "Aw")] {
        let root = openssl_rsa_root(tmp.path(), &format!("rsa-{exp}"), exp);
        let cert_file = tmp.path().join(format!("rsa-{exp}.pem"));
        let cert_path = cert_file.to_str().unwrap();
        // The modulus as openssl prints it ("Modulus=HEX"), and the DER.
        let modulus_hex =
            String::from_utf8(openssl(&["x509", "-in", cert_path, "-noout", "-modulus"])).unwrap();
        let hex = modulus_hex.trim().strip_prefix("Modulus=").unwrap();
        let modulus: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let modulus = &modulus[modulus.iter().position(|b| *b != 0).unwrap()..];
        let der = openssl(&["x509", "-in", cert_path, "-outform", "DER"]);

        // A second certificate (a root retained while we rotate) is a second key.
        let bundle = format!("{root}{}", ec_root_pem());
        let dir = SecretDir::new(&[("public.json", &public_json(&bundle))]);
        let server = Server::start(dir.path());
        let keys = spiffe_keys(&server);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1]["kty"], "EC");
        let key = &keys[0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["use"], "x509-svid");
        assert_eq!(key["n"], URL_SAFE_NO_PAD.encode(modulus));
        assert_eq!(key["e"], e_b64);
        assert_eq!(key["x5c"], json!([STANDARD.encode(&der)]));
        assert_eq!(key.as_object().unwrap().len(), 5);
    }
}

#[test]
fn spiffe_bundle_for_ec_roots() {
    for (alg, crv, size) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32),
        (&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", 48),
    ] {
        let (cert, key) = rcgen_root(alg, "EC Root");
        let point = key.public_key_raw(); // 0x04 || X || Y
        assert_eq!(point.len(), 1 + 2 * size);
        let dir = SecretDir::new(&[("public.json", &public_json(&cert.pem()))]);
        let server = Server::start(dir.path());
        let jwk = spiffe_key(&server);
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["use"], "x509-svid");
        assert_eq!(jwk["crv"], crv);
        assert_eq!(jwk["x"], URL_SAFE_NO_PAD.encode(&point[1..1 + size]));
        assert_eq!(jwk["y"], URL_SAFE_NO_PAD.encode(&point[1 + size..]));
        assert_eq!(jwk["x5c"], json!([STANDARD.encode(pem_der(&cert.pem()))]));
    }
}

#[test]
fn spiffe_bundle_takes_sequence_and_hint_from_the_secret_and_sees_them_change() {
    // export writes spiffe-sequence / spiffe-refresh-hint (docs/rotation.md);
    // serve re-reads them with the rest of the file set.
    let (a, _) = rcgen_root(&rcgen::PKCS_ECDSA_P256_SHA256, "Root A");
    let (b, _) = rcgen_root(&rcgen::PKCS_ECDSA_P256_SHA256, "Root B");
    let mut dir = SecretDir::new(&[("public.json", &public_json(&a.pem()))]);
    let server = Server::start(dir.path());
    let bundle = server.get(SPIFFE_PATH).json();
    assert_eq!(bundle["spiffe_sequence"], 1);
    assert_eq!(bundle["keys"].as_array().unwrap().len(), 1);
    let both = public_json(&format!("{}{}", a.pem(), b.pem()));
    dir.update(&[
        ("public.json", &both),
        ("spiffe-sequence", "2\n"),
        ("spiffe-refresh-hint", "900\n"),
    ]);
    let bundle = server.get(SPIFFE_PATH).json();
    assert_eq!(bundle["spiffe_sequence"], 2);
    assert_eq!(bundle["spiffe_refresh_hint"], 900);
    let x5c: Vec<Value> = bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["x5c"][0].clone())
        .collect();
    assert_eq!(
        x5c,
        [
            json!(STANDARD.encode(pem_der(&a.pem()))),
            json!(STANDARD.encode(pem_der(&b.pem())))
        ]
    );
    // Only the sequence changes: seen too (the file set is the version).
    dir.update(&[
        ("public.json", &both),
        ("spiffe-sequence", "3\n"),
        ("spiffe-refresh-hint", "900\n"),
    ]);
    assert_eq!(server.get(SPIFFE_PATH).json()["spiffe_sequence"], 3);
    // Junk: the default, and the bundle is still served.
    dir.update(&[
        ("public.json", &both),
        ("spiffe-sequence", "zero"),
        ("spiffe-refresh-hint", "0"),
    ]);
    let bundle = server.get(SPIFFE_PATH).json();
    assert_eq!(
        (&bundle["spiffe_sequence"], &bundle["spiffe_refresh_hint"]),
        (&json!(1), &json!(43_200))
    );
}

#[test]
fn spiffe_bundle_for_unsupported_roots_is_500() {
    let (ed_cert, _) = rcgen_root(&rcgen::PKCS_ED25519, "Ed Root");
    for root in [ed_cert.pem(), "garbage".to_string(), String::new()] {
        let dir = SecretDir::new(&[("public.json", &public_json(&root))]);
        let server = Server::start(dir.path());
        let r = server.get(SPIFFE_PATH);
        assert_eq!(r.status, 500, "{root}");
        assert!(!r.text().trim().is_empty());
        // The public metadata itself is still served.
        assert_eq!(server.get(PUBLIC_PATH).status, 200);
    }
}

// ---------------------------------------------------------------------------------------------
// Private endpoint: Deckhouse's checks and texts (conformance E29–E35)

fn auth_body(e: jwt::AuthError) -> String {
    format!("Authentication error: {e}\n")
}

#[test]
fn private_metadata_with_valid_tokens() {
    let b = Peer::generated(PEER_B);
    // Deckhouse's fixture key pair with Deckhouse's PEM labels, used without the product's
    // key parsing: the PKCS#8 DER straight into ring.
    let fixture_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/certs");
    let fixture_priv =
        std::fs::read_to_string(fixture_dir.join("deckhouse-fixture-priv.pem")).unwrap();
    let fixture_pub =
        std::fs::read_to_string(fixture_dir.join("deckhouse-fixture-pub.pem")).unwrap();
    assert!(
        fixture_priv.contains("ED25519 PRIVATE KEY") && fixture_pub.contains("ED25519 PUBLIC KEY")
    );
    let c_key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_der(&fixture_priv)).unwrap();
    assert_eq!(&pem_der(&fixture_pub)[12..], c_key.public_key().as_ref());

    let dir = SecretDir::new(&[
        ("public.json", &public_json(&ec_root_pem())),
        ("federation.json", FEDERATION_JSON),
        (
            "remote-public-metadata.json",
            &remotes(&[(PEER_B, &b.pub_pem), (PEER_C, &fixture_pub)]),
        ),
    ]);
    let server = Server::start(dir.path());

    // Signed by the product's signer.
    let token_b = b.token();
    let r = server.get_with_token(&token_b);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, FEDERATION_JSON.as_bytes());
    assert_eq!(r.header("content-type"), Some("application/json"));

    // Signed with ring in Deckhouse's claim order (Go marshals map keys alphabetically).
    let t = now();
    let payload = format!(
        r#"{{"aud":"{OWN}","exp":{},"iss":"d8-istio","nbf":{t},"scope":"private-federation","sub":"{PEER_C}"}}"#,
        t + 60
    );
    let r = server.get_with_token(&raw_token(&c_key, &payload));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, FEDERATION_JSON.as_bytes());

    // E32: nbf far in the future but exp valid → accepted (Deckhouse ignores nbf).
    let r = server.get_with_token(&b.token_with(OWN, "private-federation", t + 3600, t + 60));
    assert_eq!(r.status, 200, "{}", r.text());

    // HEAD with a token: headers only.
    let r = server.request(
        "HEAD",
        FEDERATION_PATH,
        &[("Authorization", &format!("Bearer {token_b}"))],
    );
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());

    // The token never appears in the log.
    let log = server.log_with("metadata loaded");
    let signature = token_b.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "{log}");
}

#[test]
fn private_metadata_refusals_have_deckhouse_texts() {
    let b = Peer::generated(PEER_B);
    let stranger = Peer::generated(PEER_C);
    let dir = standard_dir(&[&b]);
    let server = Server::start(dir.path());
    let t = now();

    // E29: no Authorization header, or not a Bearer one.
    for headers in [vec![], vec![("Authorization", "Basic dXNlcjpwYXNz")]] {
        let r = server.request("GET", FEDERATION_PATH, &headers);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.text(),
            "Authentication error: Bearer authorization required\n"
        );
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }

    // Malformed tokens.
    for token in ["abc", "a.b", "a.b.c.d", "!!!.!!!.!!!", "e30.e30.e30"] {
        let r = server.get_with_token(token);
        assert_eq!(r.status, 401, "{token}");
        assert!(
            r.text()
                .starts_with("Authentication error: malformed JWT: "),
            "{token}: {}",
            r.text()
        );
    }

    let cases: Vec<(String, jwt::AuthError)> = vec![
        // E30: another destination cluster.
        (
            b.token_with("dddddddd-other", "private-federation", t, t + 60),
            jwt::AuthError::WrongAudience {
                expected: OWN.into(),
                got: "dddddddd-other".into(),
            },
        ),
        // E31: the multicluster scope on the federation endpoint.
        (
            b.token_with(OWN, "private-multicluster", t, t + 60),
            jwt::AuthError::WrongScope {
                expected: "private-federation".into(),
                got: "private-multicluster".into(),
            },
        ),
        // E32: expired.
        (
            b.token_with(OWN, "private-federation", t - 120, t - 60),
            jwt::AuthError::Expired,
        ),
        // A lifetime no Deckhouse token has: exp 2^62, or just over an hour from now.
        (
            b.token_with(OWN, "private-federation", t, 1 << 62),
            jwt::AuthError::LifetimeTooLong,
        ),
        (
            b.token_with(OWN, "private-federation", t, t + 3700),
            jwt::AuthError::LifetimeTooLong,
        ),
        // E33: a sub we do not know.
        (
            stranger.token(),
            jwt::AuthError::UnknownSubject(PEER_C.into()),
        ),
        // E34: sub is B, but signed with another key.
        (
            raw_token(
                &stranger.key,
                &format!(
                    r#"{{"aud":"{OWN}","exp":{},"iss":"d8-istio","nbf":{t},"scope":"private-federation","sub":"{PEER_B}"}}"#,
                    t + 60
                ),
            ),
            jwt::AuthError::BadSignature,
        ),
    ];
    for (token, err) in cases {
        let r = server.get_with_token(&token);
        assert_eq!(r.status, 401, "{err:?}");
        assert_eq!(r.text(), auth_body(err.clone()));
        assert!(r.text().starts_with("Authentication error: "));
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    // Deckhouse's own texts are the prefix of ours.
    let texts = [
        (
            b.token_with("x", "private-federation", t, t + 60),
            "JWT is signed for wrong destination cluster. Expected: ",
        ),
        (
            b.token_with(OWN, "private-multicluster", t, t + 60),
            "JWT is signed for wrong scope",
        ),
        (
            b.token_with(OWN, "private-federation", t, t - 1),
            "JWT token expired",
        ),
        (stranger.token(), "JWT is signed for unknown source cluster"),
    ];
    for (token, text) in texts {
        let body = server.get_with_token(&token).text();
        assert!(
            body.starts_with(&format!("Authentication error: {text}")),
            "{body}"
        );
    }

    // Tampered: a valid token whose payload was swapped keeps B's signature.
    let good = b.token();
    let parts: Vec<&str> = good.split('.').collect();
    let other_payload = URL_SAFE_NO_PAD.encode(
        format!(
            r#"{{"aud":"{OWN}","exp":{},"iss":"d8-istio","nbf":{t},"scope":"private-federation","sub":"{PEER_B}"}}"#,
            t + 3600
        )
        .as_bytes(),
    );
    let r = server.get_with_token(&format!("{}.{other_payload}.{}", parts[0], parts[2]));
    assert_eq!(r.text(), auth_body(jwt::AuthError::BadSignature));

    // Every refusal was logged with its reason; none logged a token.
    for reason in [
        "missing_bearer",
        "malformed",
        "wrong_audience",
        "wrong_scope",
        "expired",
        "lifetime_too_long",
        "unknown_subject",
        "bad_signature",
    ] {
        server.log_with(&format!("reason={reason}"));
    }
    assert!(!server.log().contains(parts[2]), "{}", server.log());

    // And counted.
    let m = server.metrics();
    assert_eq!(
        metric(
            &m,
            r#"istio_federation_metadata_auth_failures_total{reason="missing_bearer"}"#
        ),
        2
    );
    assert_eq!(
        metric(
            &m,
            r#"istio_federation_metadata_auth_failures_total{reason="bad_signature"}"#
        ),
        2
    );
    assert_eq!(
        metric(
            &m,
            r#"istio_federation_metadata_requests_total{endpoint="federation",code="401"}"#
        ),
        2 + 5 + 7 + 4 + 1
    );
    assert_eq!(
        metric(
            &m,
            r#"istio_federation_metadata_auth_failures_total{reason="lifetime_too_long"}"#
        ),
        2
    );
}

#[test]
fn private_metadata_is_404_when_federation_is_disabled() {
    // E35: no federation.json in the Secret.
    let b = Peer::generated(PEER_B);
    let dir = SecretDir::new(&[
        ("public.json", &public_json(&ec_root_pem())),
        (
            "remote-public-metadata.json",
            &remotes(&[(PEER_B, &b.pub_pem)]),
        ),
    ]);
    let server = Server::start(dir.path());
    for headers in [
        vec![],
        vec![("Authorization", format!("Bearer {}", b.token()))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = server.request("GET", FEDERATION_PATH, &headers);
        assert_eq!(r.status, 404);
    }
    assert_eq!(server.get(PUBLIC_PATH).status, 200);
}

#[test]
fn secret_updates_are_picked_up_without_restart() {
    let b = Peer::generated(PEER_B);
    let c = Peer::generated(PEER_C);
    let mut dir = standard_dir(&[&b]);
    let server = Server::start(dir.path());
    assert_eq!(server.get_with_token(&b.token()).status, 200);
    let r = server.get_with_token(&c.token());
    assert_eq!(
        r.text(),
        auth_body(jwt::AuthError::UnknownSubject(PEER_C.into()))
    );

    // kubelet swaps ..data: C is now a peer, and federation.json has new content.
    let public = public_json(&ec_root_pem());
    let new_federation = r#"{"ingressGateways":[],"publicServices":[]}"#;
    dir.update(&[
        ("public.json", &public),
        ("federation.json", new_federation),
        (
            "remote-public-metadata.json",
            &remotes(&[(PEER_B, &b.pub_pem), (PEER_C, &c.pub_pem)]),
        ),
    ]);
    let r = server.get_with_token(&c.token());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, new_federation.as_bytes());
    assert_eq!(server.get(PUBLIC_PATH).body, public.as_bytes());

    // B removed, federation disabled.
    dir.update(&[
        ("public.json", &public),
        (
            "remote-public-metadata.json",
            &remotes(&[(PEER_C, &c.pub_pem)]),
        ),
    ]);
    assert_eq!(server.get_with_token(&c.token()).status, 404);

    // Enabled again; B is now unknown.
    dir.update(&[
        ("public.json", &public),
        ("federation.json", FEDERATION_JSON),
        (
            "remote-public-metadata.json",
            &remotes(&[(PEER_C, &c.pub_pem)]),
        ),
    ]);
    assert_eq!(
        server.get_with_token(&c.token()).body,
        FEDERATION_JSON.as_bytes()
    );
    assert_eq!(
        server.get_with_token(&b.token()).text(),
        auth_body(jwt::AuthError::UnknownSubject(PEER_B.into()))
    );
    server.log_with("metadata loaded");
}

#[test]
fn plain_directory_changes_are_picked_up() {
    // Without kubelet's ..data layout the files' identity decides.
    let b = Peer::generated(PEER_B);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("public.json"), public_json(&ec_root_pem())).unwrap();
    std::fs::write(dir.path().join("remote-public-metadata.json"), "{}").unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.get_with_token(&b.token()).status, 404);
    std::fs::write(dir.path().join("federation.json"), FEDERATION_JSON).unwrap();
    assert_eq!(server.get_with_token(&b.token()).status, 401);
    std::fs::write(
        dir.path().join("remote-public-metadata.json"),
        remotes(&[(PEER_B, &b.pub_pem)]),
    )
    .unwrap();
    assert_eq!(server.get_with_token(&b.token()).status, 200);
}

#[test]
fn broken_peer_list_is_503_and_bad_entries_are_skipped() {
    let b = Peer::generated(PEER_B);
    let mut dir = standard_dir(&[&b]);
    let public = public_json(&ec_root_pem());
    dir.update(&[
        ("public.json", &public),
        ("federation.json", FEDERATION_JSON),
        ("remote-public-metadata.json", "[not a map"),
    ]);
    let server = Server::start(dir.path());
    let r = server.get_with_token(&b.token());
    assert_eq!(r.status, 503);
    assert!(
        r.text().contains("remote-public-metadata.json"),
        "{}",
        r.text()
    );

    // One good and one broken entry: the good one works.
    let mut doc: serde_json::Map<String, Value> =
        serde_json::from_str(&remotes(&[(PEER_B, &b.pub_pem)])).unwrap();
    doc.insert(PEER_C.into(), json!({"authnKeyPub": "not a key"}));
    dir.update(&[
        ("public.json", &public),
        ("federation.json", FEDERATION_JSON),
        (
            "remote-public-metadata.json",
            &Value::Object(doc).to_string(),
        ),
    ]);
    assert_eq!(server.get_with_token(&b.token()).status, 200);
    server.log_with(&format!("ignoring peer {PEER_C}"));
}

// ---------------------------------------------------------------------------------------------
// Robustness

#[test]
fn oversized_heads_and_bodies_are_refused() {
    let dir = standard_dir(&[]);
    let server = Server::start(dir.path());
    let huge = "x".repeat(20 * 1024);
    let r = server.request("GET", PUBLIC_PATH, &[("X-Padding", &huge)]);
    assert_eq!(r.status, 431);
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(server.request("GET", PUBLIC_PATH, &many).status, 431);
    let long_token = format!("Bearer {}", "A".repeat(15 * 1024));
    let r = server.request("GET", FEDERATION_PATH, &[("Authorization", &long_token)]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        "Authentication error: malformed JWT: token too long\n"
    );

    // A body announced larger than the cap: 413 at once.
    let r = server.request("GET", PUBLIC_PATH, &[("Content-Length", "100000")]);
    assert_eq!(r.status, 413);
    // A chunked body that grows past the cap.
    let mut req =
        format!("GET {PUBLIC_PATH} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..8 {
        req.push_str(&format!("400\r\n{}\r\n", "y".repeat(1024)));
    }
    req.push_str("0\r\n\r\n");
    assert_eq!(server.raw(req.as_bytes()).status, 413);
    // A small body is read and ignored.
    let r = server.raw(
        format!("GET {PUBLIC_PATH} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello").as_bytes(),
    );
    assert_eq!(r.status, 200);

    // Garbage instead of HTTP: 400, and the server carries on.
    assert_eq!(
        server.raw(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").status,
        400
    );
    assert_eq!(server.raw(b"GET / HTTP/9.9\r\n\r\n").status, 400);
    assert_eq!(server.get("/healthz").status, 200);

    // hyper answered the 431s and 400s itself, before any route: they are counted apart.
    let m = server.metrics();
    let errors = |reason: &str| {
        metric(
            &m,
            &format!("istio_federation_metadata_connection_errors_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!((errors("too_large"), errors("malformed")), (2, 2), "{m}");
    assert!(m.contains("istio_federation_metadata_connection_errors_total{reason=\"timeout\"} 0"));
    assert!(m.contains("# TYPE istio_federation_metadata_connection_errors_total counter"));
}

#[test]
fn many_connections_and_slow_clients() {
    let dir = standard_dir(&[]);
    let server = Server::start(dir.path());

    // A client that connects and sends nothing, and one that stops mid-head.
    let mut silent = server.connect();
    let mut partial = server.connect();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();

    // 200 connections open at once, each then answered.
    let conns: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
    for mut c in &conns {
        c.write_all(
            format!("GET {PUBLIC_PATH} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    }
    for mut c in conns {
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        assert_eq!(Reply::parse(&out).status, 200);
    }

    // Keep-alive from 8 threads at once, 100 requests each.
    let port = server.port;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut reader = BufReader::new(s.try_clone().unwrap());
                for _ in 0..100 {
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
                    let mut len = 0;
                    loop {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    assert_eq!(body, b"Ok.");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // The slow clients are dropped by the header timeout (10 s) without an answer or with 408.
    let start = Instant::now();
    for s in [&mut silent, &mut partial] {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1.1 408"),
            "{out:?}"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.get("/healthz").status, 200);
}

/// At the cap, a new connection is served at once and the connection that has waited longest
/// for its client closes to make room: an idle keep-alive connection counts from its last
/// answer, and bytes trickled into a head do not reset the clock.
#[test]
fn at_the_cap_the_longest_waiting_connection_makes_room() {
    let dir = standard_dir(&[]);
    let server = Server::start_with(dir.path(), &["--max-connections", "2"]);
    let mut buf = [0u8; 512];
    fn closed_by_server(s: &mut TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue, // the rest of an earlier answer
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }
    fn still_open(s: &mut TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
    }
    let answered_at_once = || {
        let start = Instant::now();
        assert_eq!(server.get("/healthz").status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    };

    // An idle keep-alive connection (waiting since its answer), then a silent one.
    let mut keep_alive = server.connect();
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(keep_alive.read(&mut buf).unwrap() > 0);
    std::thread::sleep(Duration::from_millis(100));
    let mut silent = server.connect();
    std::thread::sleep(Duration::from_millis(100));
    answered_at_once();
    assert!(
        closed_by_server(&mut keep_alive),
        "the keep-alive connection was shed"
    );
    assert!(still_open(&mut silent));

    // A client trickling a head, opened before a silent one: it goes first, although it has
    // just sent a byte.
    drop(silent);
    let mut trickle = server.connect();
    trickle.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut later = server.connect();
    std::thread::sleep(Duration::from_millis(100));
    trickle.write_all(b"X").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    answered_at_once();
    assert!(
        closed_by_server(&mut trickle),
        "the trickling connection was shed"
    );
    assert!(still_open(&mut later));

    // Each shed was counted and logged (the warning at most once a minute).
    let m = server.metrics();
    assert_eq!(
        metric(&m, "istio_federation_metadata_connections_shed_total"),
        2,
        "{m}"
    );
    assert_eq!(server.log().matches("at the connection cap").count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Idle-connection floods (docs/security.md: idle connections cannot lock peers out)

#[path = "support/idle_flood.rs"]
mod idle_flood;
use idle_flood::{allow_open_files, IdleFlood};

/// A legitimate request on a fresh connection under load: the time from connecting to the
/// complete answer, `None` when there is none within 10 s.
fn timed_public_request(port: u16) -> Option<Duration> {
    let start = Instant::now();
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(10)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(
        format!("GET {PUBLIC_PATH} HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    (out.starts_with(b"HTTP/1.1 200") && start.elapsed() < Duration::from_secs(10))
        .then(|| start.elapsed())
}

/// The reviewed attack: one client holds 1,600 idle sockets against the default cap of 512 and
/// reopens any that close (silent ones, one-byte-a-second heads, idle keep-alive). Peers must
/// still be answered: 2 s is the target, the assertion allows 5 s for a loaded CI machine.
#[test]
fn idle_connections_cannot_lock_peers_out() {
    let (mut sockets, mut cap) = (1600usize, 512usize);
    // The test process holds the sockets, the server (which inherits the limit) the cap.
    let limit = allow_open_files(sockets as u64 + 256);
    if limit < sockets as u64 + 256 {
        // Cannot raise the limit here: the same attack, scaled to it (about 3 sockets a slot).
        sockets = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(256);
        cap = sockets / 3;
        eprintln!("open-files limit {limit}: {sockets} idle sockets against a cap of {cap}");
        assert!(cap >= 16, "open-files limit {limit} too low for this test");
    }
    let dir = standard_dir(&[]);
    let server = Server::start_with(dir.path(), &["--max-connections", &cap.to_string()]);
    let flood = IdleFlood::start(server.port, sockets);

    // Wait until the flood has opened its sockets and the server is shedding.
    let start = Instant::now();
    while flood.opened() < sockets && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let shed = |server: &Server| {
        metric(
            &server.metrics(),
            "istio_federation_metadata_connections_shed_total",
        )
    };
    let shed_before = shed(&server);

    let times: Vec<Option<Duration>> = (0..5)
        .map(|_| {
            let t = timed_public_request(server.port);
            std::thread::sleep(Duration::from_millis(200));
            t
        })
        .collect();
    let shed_during = shed(&server) - shed_before;
    eprintln!(
        "legitimate requests under {sockets} idle sockets (cap {cap}): {times:?}; \
         {shed_during} connections shed meanwhile, {} opened by the flood",
        flood.opened()
    );
    assert!(
        times
            .iter()
            .all(|t| t.is_some_and(|t| t < Duration::from_secs(5))),
        "legitimate requests locked out by idle connections: {times:?}"
    );
    // The cap was full of idle sockets the whole time: every request here (five, and the
    // metrics scrape) found no free slot and made one. (The flood's own count of open sockets
    // lags: its thread is starved by the shedding server on a small machine.)
    assert!(
        shed_during > 6,
        "{shed_during} shed: the flood did not hold the cap"
    );
    drop(flood);
    assert_eq!(server.get("/healthz").status, 200);
    assert!(server
        .log()
        .contains("at the connection cap: closed 1 connection(s)"));
}

#[test]
fn metrics_count_requests_by_route() {
    let b = Peer::generated(PEER_B);
    let dir = standard_dir(&[&b]);
    let server = Server::start(dir.path());
    server.get(PUBLIC_PATH);
    server.get(PUBLIC_PATH);
    server.get_with_token(&b.token());
    server.get_with_token(&b.token_with(OWN, "private-federation", 0, 1));
    server.get("/nothing/here");
    server.get("/another/unknown/path");
    server.request("PUT", "/healthz", &[("Content-Length", "0")]);
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = r.text();
    let req = |labels: &str| {
        metric(
            &m,
            &format!("istio_federation_metadata_requests_total{{{labels}}}"),
        )
    };
    assert_eq!(req(r#"endpoint="public",code="200""#), 2);
    assert_eq!(req(r#"endpoint="federation",code="200""#), 1);
    assert_eq!(req(r#"endpoint="federation",code="401""#), 1);
    assert_eq!(req(r#"endpoint="other",code="404""#), 2);
    assert_eq!(req(r#"endpoint="healthz",code="405""#), 1);
    assert_eq!(
        metric(
            &m,
            r#"istio_federation_metadata_auth_failures_total{reason="expired"}"#
        ),
        1
    );
    assert!(m.contains("istio_federation_metadata_auth_failures_total{reason=\"wrong_scope\"} 0"));
    // Raw paths never become labels.
    assert!(!m.contains("nothing"), "{m}");
    assert!(m.contains("# TYPE istio_federation_metadata_requests_total counter"));
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    let dir = standard_dir(&[]);
    let mut server = Server::start(dir.path());
    // An idle keep-alive connection must not hold up the exit.
    let mut idle = server.connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).unwrap() > 0);
    // A request in flight: its body is not complete yet when the signal arrives.
    let mut in_flight = server.connect();
    in_flight
        .write_all(
            format!("GET {PUBLIC_PATH} HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
                .as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    server.signal("TERM");
    server.log_with("SIGTERM");
    // New connections are refused once the listener is closed.
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", server.port)).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(3), "still accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The in-flight request still gets its answer, then the connection closes.
    in_flight.write_all(b"world").unwrap();
    let mut out = Vec::new();
    in_flight.read_to_end(&mut out).unwrap();
    assert_eq!(Reply::parse(&out).status, 200);

    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("exits promptly");
    assert_eq!(status.code(), Some(0));
    server.log_with("stopped");
}

#[test]
fn sigint_with_idle_connections_exits_0_at_once() {
    let dir = standard_dir(&[]);
    let mut server = Server::start(dir.path());
    let _idle: Vec<TcpStream> = (0..5).map(|_| server.connect()).collect();
    let start = Instant::now();
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(7)).expect("exits");
    assert_eq!(status.code(), Some(0));
    // Connections that never sent a request may be waited for, but not beyond the drain limit.
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn bad_command_lines_fail_at_start() {
    let run = |args: &[&str]| {
        Command::new(bin())
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("default 0.0.0.0:8080") && text.contains("default /metadata"),
        "{text}"
    );

    for args in [
        &["--tls-cert", "/nonexistent.pem"][..],
        &["--listen", "not an address"],
        &["--bogus"],
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.key",
        ],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("serve"), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

struct TlsFiles {
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a leaf for localhost/127.0.0.1 signed by it, written as PEM files.
fn tls_files(dir: &Path, name: &str) -> TlsFiles {
    let (ca, ca_key) = rcgen_root(&rcgen::PKCS_ECDSA_P256_SHA256, &format!("{name} CA"));
    let issuer = rcgen::Issuer::new(ca_params(&format!("{name} CA")), ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    TlsFiles {
        ca_pem: ca.pem(),
        cert,
        key,
    }
}

fn https_client(ca_pem: &str) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn tls_mode_serves_https_and_reloads_its_certificate() {
    let b = Peer::generated(PEER_B);
    let dir = standard_dir(&[&b]);
    let tmp = tempfile::tempdir().unwrap();
    let first = tls_files(tmp.path(), "first");
    let server = Server::start_with(
        dir.path(),
        &[
            "--tls-cert",
            first.cert.to_str().unwrap(),
            "--tls-key",
            first.key.to_str().unwrap(),
        ],
    );
    let base = format!("https://localhost:{}", server.port);
    let client = https_client(&first.ca_pem);
    let public = std::fs::read(dir.path().join("public.json")).unwrap();
    let r = client.get(format!("{base}{PUBLIC_PATH}")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), public.as_slice());
    let r = client
        .get(format!("{base}{FEDERATION_PATH}"))
        .header("Authorization", format!("Bearer {}", b.token()))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().unwrap(), FEDERATION_JSON);
    let r = client
        .get(format!("{base}{FEDERATION_PATH}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Plain HTTP on the TLS port gets no answer.
    let mut s = server.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(!out.starts_with(b"HTTP/1.1 200"));

    // Rotated in place (as a cert-manager Secret mount would): the new chain is served.
    let second = tls_files(tmp.path(), "second");
    std::fs::copy(&second.key, &first.key).unwrap();
    std::fs::copy(&second.cert, &first.cert).unwrap();
    let client2 = https_client(&second.ca_pem);
    let r = client2.get(format!("{base}/healthz")).send().unwrap();
    assert_eq!(r.text().unwrap(), "Ok.");
    assert!(https_client(&first.ca_pem)
        .get(format!("{base}/healthz"))
        .send()
        .is_err());
}

/// With TLS, a connection still in its handshake waits for its client like any other: silent
/// sockets holding the cap make room for a peer's HTTPS request.
#[test]
fn tls_handshakes_never_started_make_room_at_the_cap() {
    let dir = standard_dir(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let tls = tls_files(tmp.path(), "cap");
    let server = Server::start_with(
        dir.path(),
        &[
            "--tls-cert",
            tls.cert.to_str().unwrap(),
            "--tls-key",
            tls.key.to_str().unwrap(),
            "--max-connections",
            "2",
        ],
    );
    let _silent: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let client = https_client(&tls.ca_pem);
    let base = format!("https://localhost:{}", server.port);
    let start = Instant::now();
    let r = client.get(format!("{base}/healthz")).send().unwrap();
    assert_eq!(r.text().unwrap(), "Ok.");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let m = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(
        metric(&m, "istio_federation_metadata_connections_shed_total"),
        1,
        "{m}"
    );
}
