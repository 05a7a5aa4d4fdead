//! A Secret mounted the way kubelet mounts it: the keys written into a new timestamped
//! directory, `..data` swapped to it atomically, one `<key>` → `..data/<key>` symlink per key.
//! The in-memory clusters (tests/cluster) and the real platform's kubelet stand-in
//! (tests/platform/kubelet.rs) both mount with it, so `serve` reads one layout everywhere.

use base64::Engine as _;
use serde_json::{Map, Value};
use std::path::Path;

/// Mounts `data` (base64 values, as a Secret's `data`) into `dir` like kubelet.
pub fn mount(dir: &Path, data: &Map<String, Value>, generation: u64) {
    std::fs::create_dir_all(dir).expect("mount dir");
    let gen_dir = dir.join(format!("..2026_12_07_00_00_00.{generation}"));
    std::fs::create_dir(&gen_dir).expect("generation dir");
    for (k, v) in data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .expect("Secret data is base64");
        std::fs::write(gen_dir.join(k), bytes).expect("write key");
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(gen_dir.file_name().expect("name"), &tmp_link).expect("symlink");
    std::fs::rename(&tmp_link, dir.join("..data")).expect("atomic swap");
    for k in data.keys() {
        let link = dir.join(k);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(k), &link).expect("key symlink");
        }
    }
    // Keys that left the Secret leave the mount (their links now dangle).
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !data.contains_key(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
