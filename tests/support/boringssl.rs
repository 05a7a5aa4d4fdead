//! The BoringSSL oracle (tests/c/boringssl_roots.c): Envoy loads the trust bundle with
//! BoringSSL, and one certificate BoringSSL refuses fails the whole validation context, so
//! mutual TLS breaks for every peer at once. The program is built here with the system C
//! compiler against Debian's `android-libboringssl-dev` (scripts/test-deps.sh installs it);
//! when the package is missing the build fails the test, never skips it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's android-libboringssl-dev puts BoringSSL's headers and libraries.
const INCLUDE: &str = "/usr/include/android";
const LIB: &str = "/usr/lib/x86_64-linux-gnu/android";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the oracle into `work` (once per call; the compile takes a fraction of a second).
pub fn build(work: &Path) -> PathBuf {
    std::fs::create_dir_all(work).unwrap();
    assert!(
        Path::new(INCLUDE).join("openssl/x509.h").exists(),
        "{INCLUDE}/openssl/x509.h is missing: the BoringSSL oracle needs android-libboringssl-dev (run scripts/test-deps.sh)"
    );
    let bin = work.join("boringssl_roots");
    let out = Command::new("cc")
        .args(["-Wall", "-Werror", "-O1", "-I", INCLUDE, "-o"])
        .arg(&bin)
        .arg(root().join("tests/c/boringssl_roots.c"))
        .args(["-L", LIB, "-lcrypto"])
        .arg(format!("-Wl,-rpath,{LIB}"))
        .output()
        .unwrap_or_else(|e| panic!("cc: {e} — the BoringSSL oracle needs a C compiler"));
    assert!(
        out.status.success(),
        "building tests/c/boringssl_roots.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// BoringSSL's verdict per file stem: `ok` or `refused: <error>`.
pub fn verdicts(bin: &Path, files: &[PathBuf]) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    // A few hundred paths per process keeps the command line short.
    for chunk in files.chunks(500) {
        let out = Command::new(bin).env_clear().args(chunk).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for l in String::from_utf8(out.stdout).unwrap().lines() {
            let (name, verdict) = l.split_once('\t').expect("name<TAB>verdict");
            all.insert(name.to_string(), verdict.to_string());
        }
    }
    all
}
