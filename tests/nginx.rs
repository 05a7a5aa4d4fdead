//! The fetch phase against a real web server: nginx (Debian `nginx-light`) serving Deckhouse's
//! metadata files over TLS with a certificate from a test CA, on a free loopback port, with
//! its own configuration under a temporary directory. This checks what the in-process test
//! server cannot: that a production HTTP stack (its framing, headers, TLS) and our client agree.
//!
//! nginx is required: CI installs `nginx-light`; locally run `apt-get install -y nginx-light`.

mod support;

use istio_federation_hook::discovery::network::fetch::fetch_all;
use istio_federation_hook::protocol::metadata::{Gateway, Own};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::pki::{self, Ca, SigningKeys};
use support::{public_json, settings, simple_private_json, unix_now, OWN_UUID};

const NGINX: &str = "/usr/sbin/nginx";

/// nginx started by the test; killed by PID when dropped.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free loopback port")
        .port()
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format fed '$uri auth="$http_authorization" ua="$http_user_agent" status=$status';
    access_log {d}/access.log fed;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {d}/server.crt;
        ssl_certificate_key {d}/server.key;
        root {d}/www;
        location /metadata/private/ {{
            if ($http_authorization !~ "^Bearer .+") {{
                return 401 "Authentication error: Bearer authorization required\n";
            }}
        }}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf).expect("write nginx.conf");
    path
}

/// Starts nginx on a free port; retries when the port was taken in between.
fn start_nginx(dir: &Path) -> Nginx {
    assert!(
        Path::new(NGINX).exists(),
        "{NGINX} not found: this test needs a real nginx; install the Debian package nginx-light \
         (apt-get update && apt-get install -y nginx-light)"
    );
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = free_port();
        let conf = write_config(dir, port);
        let _ = fs::remove_file(dir.join("error.log"));
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                last_error = format!("nginx exited with {status}: {}", nginx.error_log());
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if last_error.is_empty() {
            last_error = format!("nginx did not listen within 10s: {}", nginx.error_log());
        }
    }
    panic!("cannot start nginx: {last_error}");
}

#[test]
fn fetches_and_validates_metadata_served_by_nginx() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = Ca::new("nginx test CA");
    let identity = ca.server_identity();
    fs::write(dir.join("server.crt"), &identity.cert_pem).unwrap();
    fs::write(dir.join("server.key"), &identity.key_pem).unwrap();

    let peer_keys = SigningKeys::generate();
    let root = pki::valid_root_pem("nginx peer root");
    let public = public_json("peer-nginx", &peer_keys.public_pem, &root);
    let private = simple_private_json("nginx.local", "203.0.113.10");
    fs::create_dir_all(dir.join("www/metadata/public")).unwrap();
    fs::create_dir_all(dir.join("www/metadata/private")).unwrap();
    fs::write(dir.join("www/metadata/public/public.json"), &public).unwrap();
    fs::write(dir.join("www/metadata/private/federation.json"), &private).unwrap();

    let nginx = start_nginx(dir);
    let endpoint = format!("https://127.0.0.1:{}/metadata/", nginx.port);
    let fed = support::federation(
        "nginx",
        "nginx.local",
        &endpoint,
        Some(serde_json::json!({"clusterCA": ca.cert_pem})),
        None,
    );
    let own_keys = SigningKeys::generate();
    let now = unix_now();
    let own = Own {
        cluster_uuid: OWN_UUID,
        root_fingerprints: &[],
        now,
    };
    let out = fetch_all(
        &settings(&[]),
        &[fed],
        Some(&own_keys.private_pem),
        &own,
        now,
    );

    let r = &out["nginx"];
    let p = match &r.public.as_ref().expect("public attempted").result {
        Ok(p) => p,
        Err(f) => panic!(
            "public: {} {}\nnginx: {}",
            f.reason,
            f.message,
            nginx.error_log()
        ),
    };
    assert_eq!(p.cluster_uuid, "peer-nginx");
    assert_eq!(p.authn_key_pub, peer_keys.public_pem);
    assert_eq!(p.roots.len(), 1);
    assert_eq!(p.roots[0].pem, root);
    let m = match &r.private.as_ref().expect("private attempted").result {
        Ok(m) => m,
        Err(f) => panic!(
            "private: {} {}\nnginx: {}",
            f.reason,
            f.message,
            nginx.error_log()
        ),
    };
    assert_eq!(
        m.ingress_gateways,
        vec![Gateway {
            address: "203.0.113.10".into(),
            port: 15443
        }]
    );
    assert_eq!(m.public_services.len(), 1);
    assert_eq!(m.public_services[0].hostname, "web.prod.svc.nginx.local");
    assert_eq!(m.public_services[0].ports[0].port, 8080);

    // nginx's own record of the two requests.
    let log = nginx.access_log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let ua = format!("istio-federation-hook/{}", env!("CARGO_PKG_VERSION"));
    assert!(
        lines[0].starts_with("/metadata/public/public.json auth=\"-\""),
        "{log}"
    );
    assert!(
        lines[1].starts_with("/metadata/private/federation.json auth=\"Bearer ey"),
        "{log}"
    );
    for line in &lines {
        assert!(line.contains(&format!("ua=\"{ua}\"")), "{log}");
        assert!(line.ends_with("status=200"), "{log}");
    }
}
