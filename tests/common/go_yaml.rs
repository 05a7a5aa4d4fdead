//! Go's reading of mesh config texts: `tests/go/meshyaml`, built with Debian's Go 1.23 against
//! the distribution's `sigs.k8s.io/yaml` (what istiod reads MeshConfig with).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Go's reading of each text (`{"json": …}` or `{"error": …}`), one Go process for all.
pub fn go_read(texts: &[String]) -> Vec<Value> {
    let go = std::env::var("GO").unwrap_or_else(|_| "/usr/lib/go-1.23/bin/go".into());
    assert!(
        Path::new(&go).exists() || std::env::var("GO").is_ok(),
        "Go 1.23 is not at {go}: run scripts/test-deps.sh (Debian: golang-1.23-go golang-k8s-sigs-yaml-dev), or set GO"
    );
    // Examples include this module too, where cargo sets no CARGO_TARGET_TMPDIR.
    let tmp = option_env!("CARGO_TARGET_TMPDIR")
        .map_or_else(|| super::target_dir().join("tmp"), PathBuf::from)
        .join("meshyaml");
    std::fs::create_dir_all(&tmp).unwrap();
    // One binary per test process: test files run in parallel and must not race on one path.
    let bin = tmp.join(format!("meshyaml-{}", std::process::id()));
    let out = Command::new(&go)
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(super::root().join("tests/go/meshyaml"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", tmp.join("cache"))
        .env("GOPATH", tmp.join("gopath"))
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build of tests/go/meshyaml failed (needs golang-k8s-sigs-yaml-dev under /usr/share/gocode):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir_in(&tmp).expect("tempdir");
    let mut paths = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let p = dir.path().join(format!("text-{i}.yaml"));
        std::fs::write(&p, t).unwrap();
        paths.push(p);
    }
    let out = Command::new(&bin)
        .args(&paths)
        .output()
        .expect("run meshyaml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = super::ndjson(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines.len(), texts.len());
    lines
}
