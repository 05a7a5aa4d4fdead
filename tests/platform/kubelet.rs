//! What kubelet would do for the processes the harness runs outside any pod: mount Secrets
//! into directories the way kubelet mounts them (a timestamped directory, `..data` swapped to it
//! atomically, one symlink per key), and keep them current while the Secret changes. `serve`
//! reads the metadata Secret this way, istiod its plug-in CA (`cacerts`).
//!
//! And what kube-controller-manager's garbage collector does for an object without
//! dependents deleted with `propagationPolicy: Foreground` (shell-operator's `Delete`): remove
//! its `foregroundDeletion` finalizer, so the delete completes instead of waiting forever. The
//! suite runs no controller-manager; only the kinds the hooks delete are collected.

use crate::kube::Kube;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Mount {
    pub namespace: String,
    pub secret: String,
    pub dir: PathBuf,
}

pub struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Kubelet {
    /// Keeps every mount current, polling the API server every second.
    pub fn start(kubeconfig: &Path, mounts: Vec<Mount>) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let kubeconfig = kubeconfig.to_path_buf();
        let thread = std::thread::spawn(move || {
            let mut last: Vec<Option<Map<String, Value>>> = vec![None; mounts.len()];
            let mut generation = 0u64;
            while !flag.load(Ordering::Relaxed) {
                for (m, seen) in mounts.iter().zip(last.iter_mut()) {
                    let data = secret_data(&kubeconfig, &m.namespace, &m.secret);
                    if data.is_some() && data != *seen {
                        generation += 1;
                        mount(&m.dir, data.as_ref().unwrap_or(&Map::new()), generation);
                        *seen = data;
                    }
                }
                collect_foreground_deletions(&kubeconfig);
                std::thread::sleep(Duration::from_millis(700));
            }
        });
        Kubelet {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The kinds the hooks delete (Istio objects; their Secrets and ConfigMaps are only patched).
const COLLECTED: &str = "serviceentries.networking.istio.io,destinationrules.networking.istio.io,authorizationpolicies.security.istio.io";

fn collect_foreground_deletions(kubeconfig: &Path) {
    let out = crate::kube::kubectl_with(kubeconfig, &["get", COLLECTED, "-A", "-o", "json"], None);
    let Ok(list) = serde_json::from_slice::<Value>(&out.stdout) else {
        return;
    };
    for o in list["items"].as_array().cloned().unwrap_or_default() {
        let m = &o["metadata"];
        let waiting = m["deletionTimestamp"].is_string()
            && m["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"));
        if waiting {
            let kind = o["kind"].as_str().unwrap_or("").to_ascii_lowercase();
            let group = o["apiVersion"]
                .as_str()
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            let name = m["name"].as_str().unwrap_or("");
            let ns = m["namespace"].as_str().unwrap_or("");
            let _ = crate::kube::kubectl_with(
                kubeconfig,
                &[
                    "patch",
                    &format!("{kind}.{group}"),
                    name,
                    "-n",
                    ns,
                    "--type=json",
                    "-p",
                    r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
                ],
                None,
            );
        }
    }
}

fn secret_data(kubeconfig: &Path, ns: &str, name: &str) -> Option<Map<String, Value>> {
    let out = crate::kube::kubectl_with(
        kubeconfig,
        &["get", "secret", name, "-n", ns, "-o", "json"],
        None,
    );
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["data"].as_object().cloned().unwrap_or_default())
}

pub use crate::support::mount::mount;

/// A Secret's data from the API server, once (for mounting before a process starts).
pub fn mount_once(k: &Kube, m: &Mount) -> bool {
    match secret_data(&k.kubeconfig, &m.namespace, &m.secret) {
        Some(data) => {
            mount(&m.dir, &data, 0);
            true
        }
        None => false,
    }
}
