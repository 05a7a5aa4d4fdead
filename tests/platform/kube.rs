//! One cluster's control plane: etcd and kube-apiserver on loopback, the API server with RBAC
//! authorization, a static token in `system:masters` for the harness, and service-account
//! issuer and keys so the TokenRequest API issues tokens (the hooks run with one). The harness
//! talks to it with kubectl and a kubeconfig, so every message a test shows is the API
//! server's own.
// Not every helper is used by every scenario.
#![allow(dead_code)]

use crate::procs::{free_port, wait_for, Proc};
use crate::support::pki::Ca;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub struct Kube {
    pub name: String,
    pub port: u16,
    pub kubeconfig: PathBuf,
    pub dir: PathBuf,
    ca_file: PathBuf,
    etcd: Proc,
    apiserver: Proc,
}

/// What the API server signs service-account tokens for (and the audience they carry).
pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

impl Kube {
    pub fn start(bins: &crate::bins::Bins, name: &str, dir: &Path) -> Kube {
        let dir = dir.join(name);
        std::fs::create_dir_all(dir.join("etcd")).expect("etcd dir");
        let (client, peer) = (free_port(), free_port());
        let etcd = Proc::spawn(
            &format!("{name}-etcd"),
            &bins.bin("etcd"),
            &[
                format!("--name=etcd-{name}"),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster=etcd-{name}=http://127.0.0.1:{peer}"),
                "--unsafe-no-fsync=true".to_string(),
                "--log-level=warn".to_string(),
            ],
            &[],
            &dir,
        );
        let ca = Ca::new(&format!("{name} API server CA"));
        let id = ca.server_identity();
        let write = |f: &str, s: &str| {
            let p = dir.join(f);
            std::fs::write(&p, s).expect("write");
            p
        };
        let ca_file = write("ca.pem", &ca.cert_pem);
        let cert = write("apiserver.pem", &id.cert_pem);
        let key = write("apiserver-key.pem", &id.key_pem);
        // The API server signs with the private key and verifies with the public one (its
        // --service-account-key-file reads public keys, not PKCS#8 private ones).
        let sa_pair = rcgen::KeyPair::generate().expect("service-account key");
        let sa_key = write("sa-key.pem", &sa_pair.serialize_pem());
        let sa_pub = write("sa-pub.pem", &sa_pair.public_key_pem());
        let token = format!("harness-{}", free_port());
        let tokens = write(
            "tokens.csv",
            &format!("{token},harness,harness,\"system:masters\"\n"),
        );
        let port = free_port();
        let apiserver = Proc::spawn(
            &format!("{name}-kube-apiserver"),
            &bins.bin("kube-apiserver"),
            &[
                format!("--etcd-servers=http://127.0.0.1:{client}"),
                "--bind-address=127.0.0.1".to_string(),
                "--advertise-address=127.0.0.1".to_string(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", cert.display()),
                format!("--tls-private-key-file={}", key.display()),
                format!("--token-auth-file={}", tokens.display()),
                "--authorization-mode=RBAC".to_string(),
                format!("--service-account-issuer={SA_ISSUER}"),
                format!("--service-account-key-file={}", sa_pub.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--service-cluster-ip-range=10.96.0.0/16".to_string(),
                "--endpoint-reconciler-type=none".to_string(),
                format!("--cert-dir={}", dir.join("certs").display()),
                "--profiling=false".to_string(),
                "--v=1".to_string(),
            ],
            &[],
            &dir,
        );
        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(&kubeconfig, port, &ca_file, &token);
        let mut k = Kube {
            name: name.to_string(),
            port,
            kubeconfig,
            dir,
            ca_file,
            etcd,
            apiserver,
        };
        k.wait_ready();
        k
    }

    fn wait_ready(&mut self) {
        let log = self.apiserver.log.clone();
        wait_for(
            &format!("{}'s kube-apiserver to be ready", self.name),
            Duration::from_secs(120),
            || {
                self.etcd.assert_running();
                self.apiserver.assert_running();
                let out = self.kubectl(&["get", "--raw", "/readyz"], None);
                out.status.success().then_some(())
            },
            || crate::procs::tail_of(&log, 20),
        );
    }

    /// A kubeconfig for this API server authenticating with `token`.
    pub fn kubeconfig_for(&self, file: &str, token: &str) -> PathBuf {
        let p = self.dir.join(file);
        write_kubeconfig(&p, self.port, &self.ca_file, token);
        p
    }

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_with(&self.kubeconfig, args, stdin)
    }

    /// kubectl as the harness; panics with the API server's message when it fails.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "{}: kubectl {} failed:\n{}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One object, or None when it does not exist.
    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let mut args = vec!["get", resource, name, "-o", "json"];
        if !ns.is_empty() {
            args.extend(["-n", ns]);
        }
        let out = self.kubectl(&args, None);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("NotFound") || err.contains("not found"),
                "{}: {err}",
                self.name
            );
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Every object of a resource in a namespace ("" = all namespaces or cluster-scoped).
    pub fn list(&self, resource: &str, ns: &str) -> Vec<Value> {
        let mut args = vec!["get", resource, "-o", "json"];
        if ns.is_empty() {
            args.push("-A");
        } else {
            args.extend(["-n", ns]);
        }
        let text = self.ok(&args, None);
        let v: Value = serde_json::from_str(&text).expect("kubectl JSON");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Server-side apply of YAML/JSON documents as the harness.
    pub fn apply(&self, docs: &str) {
        self.ok(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=harness",
                "-f",
                "-",
            ],
            Some(docs),
        );
    }

    /// A token of a ServiceAccount from the TokenRequest API.
    pub fn token(&self, ns: &str, sa: &str) -> String {
        self.ok(&["create", "token", sa, "-n", ns, "--duration=6h"], None)
            .trim()
            .to_string()
    }

    /// One request as `token`, as a controller sends it (kubectl would GET before a PATCH):
    /// the HTTP status and the body, the API server's Status on a refusal.
    pub fn request(
        &self,
        token: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-X", method, "--cacert"])
            .arg(&self.ca_file)
            .args([
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                &format!("Content-Type: {content_type}"),
            ])
            .args(["--data-binary", body, "-w", "\n%{http_code}"])
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("curl (scripts/test-deps.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn log_tail(&self) -> String {
        self.apiserver.tail(30)
    }
}

pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .expect("kubectl (scripts/test-deps.sh names it)");
    if let Some(text) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(text.as_bytes()).expect("kubectl stdin");
    }
    child.wait_with_output().expect("kubectl")
}

fn write_kubeconfig(path: &Path, port: u16, ca: &Path, token: &str) {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
        ca.display()
    );
    std::fs::write(path, text).expect("kubeconfig");
}
