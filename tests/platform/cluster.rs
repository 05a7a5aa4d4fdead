//! One cluster of the two-cluster scenarios, everything on loopback: etcd + kube-apiserver,
//! Istio's CRDs, Istio's namespace and mesh config as its installer leaves them, a plug-in root
//! CA (`cacerts`) of its own, `deploy/` (the base, or the example overlay with the cacerts
//! component), istiod out of cluster, `serve` answering from the metadata Secret (mounted by the
//! harness as kubelet would), and shell-operator running `hooks/` as the ServiceAccount the
//! manifests create, with a token from the TokenRequest API.
// Not every field is read by every scenario.
#![allow(dead_code)]

use crate::bins::Bins;
use crate::http;
use crate::kube::Kube;
use crate::kubelet::{mount_once, Kubelet, Mount};
use crate::manifests;
use crate::procs::{free_port, wait_for, Proc};
use crate::support::pki::Ca;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a cluster installs the hook.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Install {
    /// `kubectl apply -k deploy` (the base: cluster A's example values, mesh-config mode).
    Base,
    /// `deploy/overlays/example` plus `components/cacerts-mode`.
    ExampleOverlayCacerts,
}

pub struct Spec {
    pub name: &'static str,
    pub install: Install,
    /// The hook's namespace and the cluster's identity, as the manifests of `install` set them.
    pub fed_ns: &'static str,
    pub domain: &'static str,
    pub uuid: &'static str,
    /// The ingress gateway's load-balancer address: TEST-NET-2 (RFC 5737), never routed. Only
    /// data: no proxy runs, nothing connects to it (the hooks refuse loopback gateways).
    pub gateway_ip: &'static str,
    /// The Service this cluster exports (namespace prod).
    pub exported: &'static str,
}

pub const ISTIO_NS: &str = "istio-system";

pub const A: Spec = Spec {
    name: "a",
    install: Install::Base,
    fed_ns: "istio-federation",
    domain: "cluster-a.local",
    uuid: "4f9a7c1e-0000-4000-8000-000000000001",
    gateway_ip: "198.51.100.11",
    exported: "web",
};

pub const B: Spec = Spec {
    name: "b",
    install: Install::ExampleOverlayCacerts,
    fed_ns: "mesh-federation",
    domain: "cluster-b.local",
    uuid: "7d3e52b0-0000-4000-8000-000000000002",
    gateway_ip: "198.51.100.12",
    exported: "api",
};

pub struct IstioRoot {
    pub cert_pem: String,
    pub key_pem: String,
}

impl IstioRoot {
    pub fn new(cn: &str) -> IstioRoot {
        let key = KeyPair::generate().expect("root key");
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::OrganizationName, "Istio");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2045, 1, 1);
        let cert = p.self_signed(&key).expect("self-signed root");
        IstioRoot {
            cert_pem: crate::support::pki::pem("CERTIFICATE", cert.der()),
            key_pem: key.serialize_pem(),
        }
    }
}

pub struct Cluster {
    pub spec: &'static Spec,
    pub kube: Kube,
    pub root: IstioRoot,
    pub istiod: Proc,
    pub istiod_http: u16,
    pub istiod_grpc: u16,
    pub operator: Proc,
    pub serve: Proc,
    pub serve_port: u16,
    pub serve_ca: Ca,
    pub env: Vec<(String, String)>,
    bins_xds: PathBuf,
    _kubelet: Kubelet,
}

/// Settings the suite adds to what the Deployment sets: a fast schedule, short timeouts.
pub fn suite_env() -> Vec<(String, String)> {
    [
        ("HOOK_SCHEDULE", "*/4 * * * * *"),
        ("FETCH_TIMEOUT", "2s"),
        ("FETCH_DEADLINE", "5s"),
        ("MASS_DELETION_GRACE", "8s"),
        ("ROOT_RETENTION", "20s"),
        ("LOG_LEVEL", "info"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn render_install(spec: &Spec, repo: &Path, dir: &Path) -> String {
    match spec.install {
        Install::Base => manifests::render(&repo.join("deploy")),
        Install::ExampleOverlayCacerts => {
            let overlay = dir.join("overlay");
            std::fs::create_dir_all(&overlay).expect("overlay dir");
            std::fs::copy(
                repo.join("deploy/overlays/example/cluster-values.yaml"),
                overlay.join("cluster-values.yaml"),
            )
            .expect("cluster-values.yaml");
            let rel = relative(&overlay, &repo.join("deploy"));
            std::fs::write(
                overlay.join("kustomization.yaml"),
                format!(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {rel}/base\n- cluster-values.yaml\ncomponents:\n- {rel}/components/cacerts-mode\n- {rel}/components/cluster-values\n"
                ),
            )
            .expect("kustomization");
            manifests::render(&overlay)
        }
    }
}

/// `to` relative to `from` (kustomize reads its resources by relative path).
fn relative(from: &Path, to: &Path) -> String {
    let depth = from.components().count() - 1;
    format!("{}{}", "../".repeat(depth), to.display()).replace("//", "/")
}

impl Cluster {
    pub fn start(bins: &Bins, spec: &'static Spec, tmp: &Path, repo: &Path) -> Cluster {
        let kube = Kube::start(bins, spec.name, tmp);
        let dir = kube.dir.clone();
        manifests::install_crds(&kube, bins);
        let cacerts = spec.install == Install::ExampleOverlayCacerts;
        // A (mesh-config mode) starts with a root someone else put in caCertificates.
        let foreign = (!cacerts).then(|| IstioRoot::new("someone else's root").cert_pem);
        manifests::istio_install(
            &kube,
            ISTIO_NS,
            spec.domain,
            cacerts.then_some(A.domain),
            foreign.as_deref(),
        );
        let root = IstioRoot::new(&format!("cluster {} Istio root", spec.name));
        put_cacerts(&kube, &root, &root.cert_pem);
        let rendered = render_install(spec, repo, &dir);
        manifests::apply_rendered(&kube, &rendered);
        workloads(&kube, spec);

        // Secrets mounted as kubelet would: istiod's plug-in CA and serve's metadata.
        let cacerts_mount = Mount {
            namespace: ISTIO_NS.into(),
            secret: "cacerts".into(),
            dir: dir.join("cacerts"),
        };
        assert!(mount_once(&kube, &cacerts_mount), "cacerts Secret");
        let metadata_dir = dir.join("metadata");
        std::fs::create_dir_all(&metadata_dir).expect("metadata dir");
        let kubelet = Kubelet::start(
            &kube.kubeconfig,
            vec![
                cacerts_mount,
                Mount {
                    namespace: spec.fed_ns.into(),
                    secret: "istio-federation-metadata".into(),
                    dir: metadata_dir.clone(),
                },
            ],
        );

        let (istiod, istiod_http, istiod_grpc) = start_istiod(bins, &kube, &dir);
        let serve_ca = Ca::new(&format!("cluster {} metadata endpoint CA", spec.name));
        let (serve, serve_port) = start_serve(&serve_ca, &metadata_dir, &dir);
        let mut env = manifests::hook_env(&kube, spec.fed_ns);
        env.extend(suite_env());
        let operator = start_operator(bins, &kube, spec, &env, &dir, repo);
        let mut c = Cluster {
            spec,
            kube,
            root,
            istiod,
            istiod_http,
            istiod_grpc,
            operator,
            serve,
            serve_port,
            serve_ca,
            env,
            bins_xds: bins.bin("xdsclient"),
            _kubelet: kubelet,
        };
        c.wait_istiod_ready();
        c
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/metadata/", self.serve_port)
    }

    fn wait_istiod_ready(&mut self) {
        wait_ready(&mut self.istiod, self.istiod_http, self.spec.name);
    }

    /// The IstioFederation a user creates in this cluster for `peer`.
    pub fn federate_with(&self, peer: &Cluster) {
        let ca = peer.serve_ca.cert_pem.replace('\n', "\n      ");
        self.kube.apply(&format!(
            "apiVersion: deckhouse.io/v1alpha1\nkind: IstioFederation\nmetadata: {{name: cluster-{}}}\nspec:\n  trustDomain: {}\n  metadataEndpoint: {}\n  metadata:\n    clusterCA: |\n      {ca}\n",
            peer.spec.name,
            peer.spec.domain,
            peer.endpoint()
        ));
    }

    /// The ServiceEntries in the hook's namespace, as the API server has them.
    pub fn service_entries(&self) -> Vec<Value> {
        self.kube
            .list("serviceentries.networking.istio.io", self.spec.fed_ns)
    }

    /// The DestinationRules in the hook's namespace, as the API server has them.
    pub fn destination_rules(&self) -> Vec<Value> {
        self.kube
            .list("destinationrules.networking.istio.io", self.spec.fed_ns)
    }

    /// shell-operator's error lines (a refused write appears here with the API server's text).
    pub fn operator_errors(&self) -> String {
        let text = self.operator.log_text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("\"level\":\"error\"")
                    || l.contains("forbidden")
                    || l.contains("Forbidden")
            })
            .collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }

    /// What the xDS client, posing as a sidecar in namespace prod, receives from istiod.
    pub fn xds(&self, extra: &[&str]) -> Value {
        let mut args = vec!["--eds=outbound", "--pcds"];
        args.extend_from_slice(extra);
        xds_client(&self.bins_xds, self.istiod_grpc, &args)
    }

    /// istiod's validation webhook on `obj`, as the API server would ask it: (allowed, message).
    pub fn validate(&self, obj: &Value, operation: &str) -> (bool, String) {
        let api = obj["apiVersion"].as_str().unwrap_or("");
        let (group, version) = api.split_once('/').unwrap_or(("", api));
        let kind = obj["kind"].as_str().unwrap_or("");
        let resource = format!("{}s", kind.to_ascii_lowercase()).replace("policys", "policies");
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "platform-suite",
                "kind": {"group": group, "version": version, "kind": kind},
                "resource": {"group": group, "version": version, "resource": resource},
                "name": obj["metadata"]["name"],
                "namespace": obj["metadata"]["namespace"],
                "operation": operation,
                "userInfo": {"username": format!("system:serviceaccount:{}:istio-federation-hook", self.spec.fed_ns)},
                "object": obj,
                "dryRun": false,
            }
        });
        let r = http::request(
            self.istiod_http,
            "POST",
            "/validate",
            Some(&review.to_string()),
        )
        .expect("istiod /validate");
        assert_eq!(r.status, 200, "istiod /validate: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).expect("AdmissionReview response");
        (
            v["response"]["allowed"] == true,
            v["response"]["status"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    }

    /// A document `serve` publishes, fetched as a peer would (TLS, this cluster's endpoint CA).
    pub fn served(&self, path: &str) -> String {
        let ca = self.kube.dir.join("serve-ca.pem");
        std::fs::write(&ca, &self.serve_ca.cert_pem).expect("serve CA");
        let out = std::process::Command::new("curl")
            .args(["-sSf", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .arg(format!("https://127.0.0.1:{}{path}", self.serve_port))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many runs of (discovery, export) shell-operator has finished (scheduled runs may be
    /// compacted with event runs into one, under the event's binding name).
    pub fn runs(&self) -> (usize, usize) {
        let log = self.operator.log_text();
        let done = |hook: &str| {
            log.lines()
                .filter(|l| {
                    l.contains("Hook executed successfully")
                        && l.contains(&format!("\"hook\":\"{hook}\""))
                })
                .count()
        };
        (
            done("istio-federation-discovery"),
            done("istio-federation-export"),
        )
    }

    pub fn debug(&self, path: &str) -> Value {
        let r = http::get(self.istiod_http, path).expect("istiod debug endpoint");
        assert_eq!(r.status, 200, "istiod {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or(Value::String(r.body))
    }
}

/// The plug-in CA Secret istiod signs with: this cluster's root, as signing certificate too.
pub fn put_cacerts(k: &Kube, root: &IstioRoot, root_bundle: &str) {
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    k.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: cacerts, namespace: {ISTIO_NS}}}\ndata:\n  ca-cert.pem: {}\n  ca-key.pem: {}\n  cert-chain.pem: {}\n  root-cert.pem: {}\n",
        b64(&root.cert_pem),
        b64(&root.key_pem),
        b64(&root.cert_pem),
        b64(root_bundle)
    ));
}

/// What runs in the cluster besides Istio and the hook: the ingress gateway's Service (its
/// load-balancer address set as a cloud controller would) and the Service this cluster exports.
fn workloads(k: &Kube, spec: &Spec) {
    k.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: istio-ingressgateway, namespace: {ISTIO_NS}, labels: {{app: ingressgateway}}}}\n\
         spec: {{type: LoadBalancer, selector: {{app: ingressgateway}}, ports: [{{name: tls, port: 15443, targetPort: 15443}}]}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {{name: prod}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: {}, namespace: prod, labels: {{federation.istio.deckhouse.io/public-service: \"\"}}}}\n\
         spec: {{selector: {{app: {}}}, ports: [{{name: http, port: 8080}}, {{name: grpc-api, port: 9090}}]}}\n",
        spec.exported, spec.exported
    ));
    k.ok(
        &[
            "patch",
            "service",
            "istio-ingressgateway",
            "-n",
            ISTIO_NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                "{{\"status\":{{\"loadBalancer\":{{\"ingress\":[{{\"ip\":\"{}\"}}]}}}}}}",
                spec.gateway_ip
            ),
        ],
        None,
    );
}

/// istiod alone against `k` (its mesh config already there), with `root` as its plug-in CA
/// (mounted once, as kubelet would), ready: the process and its HTTP and gRPC ports.
pub fn istiod_alone(bins: &Bins, k: &Kube, root: &IstioRoot) -> (Proc, u16, u16) {
    let dir = k.dir.clone();
    put_cacerts(k, root, &root.cert_pem);
    let cacerts = Mount {
        namespace: ISTIO_NS.into(),
        secret: "cacerts".into(),
        dir: dir.join("cacerts"),
    };
    assert!(mount_once(k, &cacerts), "cacerts Secret");
    let (mut istiod, http_port, grpc) = start_istiod(bins, k, &dir);
    wait_ready(&mut istiod, http_port, &k.name);
    (istiod, http_port, grpc)
}

/// Waits for istiod's `/ready` on `port`, failing with its log when it exits or takes too long.
fn wait_ready(istiod: &mut Proc, port: u16, name: &str) {
    let log = istiod.log.clone();
    wait_for(
        &format!("{name}'s istiod to be ready"),
        Duration::from_secs(180),
        || {
            istiod.assert_running();
            http::get(port, "/ready")
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ())
        },
        || crate::procs::tail_of(&log, 20),
    );
}

/// The trust anchors istiod hands a sidecar in namespace prod (PCDS), one PEM text each.
pub fn pcds_anchors(bins: &Bins, grpc: u16) -> Vec<String> {
    let v = xds_client(&bins.bin("xdsclient"), grpc, &["--pcds"]);
    v["trustBundle"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The xDS client posing as a sidecar in namespace prod against istiod's gRPC port: its JSON.
fn xds_client(bin: &Path, grpc: u16, args: &[&str]) -> Value {
    let out = std::process::Command::new(bin)
        .arg(format!("--addr=127.0.0.1:{grpc}"))
        .arg("--namespace=prod")
        .args(args)
        .output()
        .expect("xdsclient");
    assert!(
        out.status.success(),
        "xdsclient: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("xdsclient JSON")
}

fn start_istiod(bins: &Bins, k: &Kube, dir: &Path) -> (Proc, u16, u16) {
    let (http_port, grpc, monitoring) = (free_port(), free_port(), free_port());
    let env: Vec<(String, String)> = [
        ("POD_NAMESPACE", ISTIO_NS),
        ("POD_NAME", "istiod-harness"),
        ("ISTIO_MULTIROOT_MESH", "true"),
        ("VALIDATION_WEBHOOK_CONFIG_NAME", ""),
        ("INJECTION_WEBHOOK_CONFIG_NAME", ""),
        ("PILOT_ENABLE_ANALYSIS", "false"),
        ("ENABLE_DEBUG_ON_HTTP", "true"),
        ("CLUSTER_ID", "Kubernetes"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .chain([(
        "ROOT_CA_DIR".to_string(),
        dir.join("cacerts").display().to_string(),
    )])
    .collect();
    let p = Proc::spawn(
        &format!("{}-istiod", k.name),
        &bins.bin("istiod"),
        &[
            "discovery".to_string(),
            format!("--kubeconfig={}", k.kubeconfig.display()),
            format!("--httpAddr=127.0.0.1:{http_port}"),
            "--httpsAddr=".to_string(),
            format!("--grpcAddr=127.0.0.1:{grpc}"),
            "--secureGRPCAddr=".to_string(),
            format!("--monitoringAddr=127.0.0.1:{monitoring}"),
            format!("--meshConfig={}", dir.join("no-mesh-file").display()),
            format!(
                "--networksConfig={}",
                dir.join("no-networks-file").display()
            ),
            "--log_output_level=default:info".to_string(),
        ],
        &env,
        dir,
    );
    (p, http_port, grpc)
}

fn start_serve(ca: &Ca, metadata_dir: &Path, dir: &Path) -> (Proc, u16) {
    let id = ca.server_identity();
    let (cert, key) = (dir.join("serve-cert.pem"), dir.join("serve-key.pem"));
    std::fs::write(&cert, &id.cert_pem).expect("cert");
    std::fs::write(&key, &id.key_pem).expect("key");
    let port = free_port();
    let p = Proc::spawn(
        "serve",
        &crate::bins::hook(),
        &[
            "serve".to_string(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--metadata-dir={}", metadata_dir.display()),
            format!("--tls-cert={}", cert.display()),
            format!("--tls-key={}", key.display()),
        ],
        &[("LOG_LEVEL".to_string(), "warn".to_string())],
        dir,
    );
    (p, port)
}

/// shell-operator running `hooks/` with the Deployment's settings, as the hook's
/// ServiceAccount (a TokenRequest token in its kubeconfig).
fn start_operator(
    bins: &Bins,
    k: &Kube,
    spec: &Spec,
    env: &[(String, String)],
    dir: &Path,
    repo: &Path,
) -> Proc {
    let token = k.token(spec.fed_ns, "istio-federation-hook");
    let kubeconfig = k.kubeconfig_for("hook.kubeconfig", &token);
    let tmp = dir.join("shell-operator-tmp");
    std::fs::create_dir_all(&tmp).expect("shell-operator tmp");
    let mut e: Vec<(String, String)> = env.to_vec();
    e.extend(
        [
            (
                "SHELL_OPERATOR_HOOKS_DIR",
                repo.join("hooks").display().to_string(),
            ),
            ("SHELL_OPERATOR_TMP_DIR", tmp.display().to_string()),
            ("SHELL_OPERATOR_LISTEN_ADDRESS", "127.0.0.1".to_string()),
            ("SHELL_OPERATOR_LISTEN_PORT", free_port().to_string()),
            ("SHELL_OPERATOR_NAMESPACE", spec.fed_ns.to_string()),
            ("KUBE_CONFIG", kubeconfig.display().to_string()),
            (
                "DEBUG_UNIX_SOCKET",
                dir.join("shell-operator.socket").display().to_string(),
            ),
            ("LOG_TYPE", "json".to_string()),
            (
                "ISTIO_FEDERATION_HOOK_BIN",
                crate::bins::hook().display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b)),
    );
    Proc::spawn(
        &format!("{}-shell-operator", spec.name),
        &bins.bin("shell-operator"),
        &["start".to_string()],
        &e,
        dir,
    )
}
