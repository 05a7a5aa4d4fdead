//! A real nginx (Debian `nginx-light`) serving Deckhouse's metadata files over TLS on a free
//! loopback port, with its own configuration under a temporary directory: the files laid out
//! as Deckhouse's metadata-exporter lays them out (`metadata/public/public.json`,
//! `metadata/private/federation.json`, the private location refusing requests without a
//! Bearer token). Used by the fetch test (tests/nginx.rs) and the Deckhouse-shaped peer on the
//! real platform (tests/platform_deckhouse.rs).
//!
//! nginx is required: CI installs `nginx-light`; locally run `apt-get install -y nginx-light`.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";

/// nginx started by a test; killed by PID when dropped.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The metadata endpoint a federation names: `https://127.0.0.1:<port>/metadata/`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/metadata/", self.port)
    }
}

/// Writes `dir/www` as Deckhouse's metadata-exporter serves it, and the TLS identity nginx
/// presents (`dir/server.crt`, `dir/server.key`).
pub fn deckhouse_layout(dir: &Path, cert_pem: &str, key_pem: &str, public: &str, private: &str) {
    fs::write(dir.join("server.crt"), cert_pem).expect("write server.crt");
    fs::write(dir.join("server.key"), key_pem).expect("write server.key");
    fs::create_dir_all(dir.join("www/metadata/public")).expect("public dir");
    fs::create_dir_all(dir.join("www/metadata/private")).expect("private dir");
    fs::write(dir.join("www/metadata/public/public.json"), public).expect("public.json");
    fs::write(dir.join("www/metadata/private/federation.json"), private).expect("federation.json");
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

/// Starts nginx on a free port serving `dir` (see [`deckhouse_layout`]); retries when the port
/// was taken in between.
pub fn start_nginx(dir: &Path) -> Nginx {
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
