//! A loopback HTTP/1.1 forward proxy standing in for an Istio sidecar in the data-plane probe
//! tests (docs/operating.md, "Data-plane probe"): it receives the probe's absolute-form request and
//! answers it itself, so the peer's health-check host is never resolved or dialled.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the proxy answers a probe.
#[derive(Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Never,
}

/// One request the proxy received: its request line and headers (names lower-cased).
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP/1.1 forward proxy that answers every request itself.
pub struct Proxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Proxy {
    pub fn start(answer: Answer) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(answer));
        let (s, a) = (Arc::clone(&seen), Arc::clone(&answer));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, a) = (Arc::clone(&s), Arc::clone(&a));
                std::thread::spawn(move || serve(conn, &s, &a));
            }
        });
        Proxy { addr, seen, answer }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, seen: &Mutex<Vec<Seen>>, answer: &Mutex<Answer>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let line = line.trim_end().to_string();
        seen.lock().unwrap().push(Seen {
            line: line.clone(),
            headers,
        });
        let answer = *answer.lock().unwrap();
        let code = match answer {
            Answer::Never => {
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            // Only the probe's absolute-form request is a request for the sidecar (the URL
            // library drops the default port :80 from the request line).
            Answer::Status(code)
                if line.starts_with("GET http://alliance-healthcheck-")
                    && line.ends_with("/healthz HTTP/1.1") =>
            {
                code
            }
            Answer::Status(_) => 400,
        };
        let body = if code == 200 { "Ok." } else { "no" };
        let _ = write!(
            conn,
            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
            body.len()
        );
    }
}
