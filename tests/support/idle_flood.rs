//! An idle-connection flood for `serve`'s test and bench: one client holding many loopback
//! sockets with no request in progress, reopening any the server closes (docs/security.md).
//! Included with `#[path]` by `tests/serve.rs` and `benches/serve.rs`.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How one socket of an [`IdleFlood`] behaves once connected.
#[derive(Debug, Clone, Copy)]
pub enum IdleKind {
    /// Connects and never sends a byte.
    Silent,
    /// Sends one byte of a request head per second; the head never ends.
    Trickle,
    /// Sends one complete keep-alive request, reads the answer, then stays idle.
    KeepAlive,
}

/// `sockets` loopback connections to `port` held idle by one client, a third of each
/// [`IdleKind`]; any socket the server closes is reopened at once. Runs on its own thread (a
/// tokio runtime) until dropped, which closes every socket.
pub struct IdleFlood {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Sockets connected right now, as far as the flood's thread has noticed (it lags behind
    /// the kernel when a busy server starves it of CPU).
    connected: Arc<AtomicUsize>,
    /// Connections ever established (the initial ones and every reopening).
    opened: Arc<AtomicUsize>,
}

impl IdleFlood {
    pub fn start(port: u16, sockets: usize) -> IdleFlood {
        let connected = Arc::new(AtomicUsize::new(0));
        let opened = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (c, o) = (connected.clone(), opened.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for i in 0..sockets {
                    let kind = [IdleKind::Silent, IdleKind::Trickle, IdleKind::KeepAlive][i % 3];
                    tokio::spawn(idle_socket(port, kind, c.clone(), o.clone()));
                }
                let _ = stopped.await;
            });
            // Dropping the runtime drops every task and so closes every socket.
        });
        IdleFlood {
            stop: Some(stop),
            thread: Some(thread),
            connected,
            opened,
        }
    }

    pub fn connected(&self) -> usize {
        self.connected.load(Relaxed)
    }

    pub fn opened(&self) -> usize {
        self.opened.load(Relaxed)
    }
}

impl Drop for IdleFlood {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One socket of an [`IdleFlood`]: connect, hold it as `kind` says until the server closes
/// it, reconnect.
async fn idle_socket(
    port: u16,
    kind: IdleKind,
    connected: Arc<AtomicUsize>,
    opened: Arc<AtomicUsize>,
) {
    const HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: flood\r\nX-Slow: ";
    loop {
        let mut s = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        connected.fetch_add(1, Relaxed);
        opened.fetch_add(1, Relaxed);
        if let IdleKind::KeepAlive = kind {
            let _ = s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: flood\r\n\r\n")
                .await;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut sent = 0usize;
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                _ = tick.tick(), if matches!(kind, IdleKind::Trickle) => {
                    let byte = HEAD.get(sent).copied().unwrap_or(b'a');
                    if s.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
            }
        }
        connected.fetch_sub(1, Relaxed);
    }
}

/// Soft and hard limit on open files of this process, from /proc/self/limits.
pub fn open_files_limit() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..]
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(u64::MAX));
    Some((values.next()?, values.next()?))
}

/// Makes sure this process (and so the server it spawns afterwards) may open `needed` files:
/// raises the soft limit towards the hard one with util-linux's `prlimit` when it is lower.
/// Returns the soft limit in force.
pub fn allow_open_files(needed: u64) -> u64 {
    let Some((soft, hard)) = open_files_limit() else {
        return needed; // not Linux-like: assume it fits
    };
    if soft >= needed {
        return soft;
    }
    let target = needed.min(hard);
    let _ = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={target}:{hard}"),
        ])
        .status();
    open_files_limit().map_or(soft, |(soft, _)| soft)
}
