//! The Go oracle: istiod parses every trust anchor with Go's `crypto/x509.ParseCertificate` and
//! requires `IsCA`; one root it refuses drops the whole trust source (docs/security.md). This
//! test builds `tests/go/x509oracle` with the distribution's Go 1.23 — module mode, `go 1.23`
//! in go.mod (what makes Go refuse negative serials), no network — runs it over every root of
//! testdata/go-oracle/roots/ (made by scripts/gen-odd-roots.py) and checks, for every entry:
//!
//! - the hook accepts a root only when Go parses it and calls it a CA (acceptance ⊆ Go's);
//! - Go's verdict and the hook's are exactly those of testdata/go-oracle/expected.tsv, which is
//!   reviewed by hand (`UPDATE_GOLDEN=1` rewrites it).

#[path = "support/odd_roots.rs"]
mod odd_roots;
use istio_federation_hook::protocol::certs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's Go 1.23 (golang-1.23-go from the backports suite; scripts/test-deps.sh installs it).
const GO: &str = "/usr/lib/go-1.23/bin/go";
/// 2027-01-01T00:00:00Z: inside every corpus root's validity (2020–2045).
const NOW: i64 = 1_798_761_600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus() -> Vec<(String, PathBuf)> {
    let dir = root().join("testdata/go-oracle/roots");
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.sort();
    files
}

/// `major.minor` of `go version` output such as `go version go1.23.5 linux/amd64`.
fn go_minor(version: &str) -> Option<(u32, u32)> {
    let v = version.split_whitespace().nth(2)?.strip_prefix("go")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// An environment for the Go tool that cannot reach the network, download a toolchain or write
/// outside target/.
fn go_command(work: &Path) -> Command {
    let mut cmd = Command::new(GO);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", work)
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", work.join("cache"))
        .env("GOPATH", work.join("gopath"));
    cmd
}

/// Builds the oracle once per test process; returns its path.
fn oracle() -> PathBuf {
    let work = root().join("target/go-oracle");
    std::fs::create_dir_all(&work).unwrap();
    let version = go_command(&work)
        .arg("version")
        .output()
        .unwrap_or_else(|e| {
            panic!("{GO}: {e} — the Go oracle needs golang-1.23-go (run scripts/test-deps.sh)")
        });
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    match go_minor(&version) {
        Some((1, minor)) if minor >= 23 => {}
        _ => panic!(
            "{GO} reports {version:?}: the Go oracle needs Go >= 1.23 (what istiod is built with)"
        ),
    }
    let bin = work.join("x509oracle");
    let out = go_command(&work)
        .current_dir(root().join("tests/go/x509oracle"))
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go build of tests/go/x509oracle failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Go's verdict per corpus name: `ca`, `not-ca` or `refused: <error>`.
fn go_verdicts(
    bin: &Path,
    files: &[(String, PathBuf)],
    godebug: Option<&str>,
) -> BTreeMap<String, String> {
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    if let Some(v) = godebug {
        cmd.env("GODEBUG", v);
    }
    let out = cmd.args(files.iter().map(|(_, p)| p)).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, verdict) = l.split_once('\t').expect("name<TAB>verdict");
            (name.to_string(), verdict.to_string())
        })
        .collect()
}

/// The hook's verdict: `accepted` or `rejected: <the text the condition message shows>`.
fn our_verdict(path: &Path) -> String {
    let pem = std::fs::read_to_string(path).unwrap();
    let check = certs::check_roots(&pem, NOW, &[]).unwrap();
    match (check.accepted.len(), check.rejected.as_slice()) {
        (1, []) => "accepted".to_string(),
        (0, [(1, why)]) => format!("rejected: {why}"),
        other => panic!("{}: one block, yet {other:?}", path.display()),
    }
}

fn descriptions() -> BTreeMap<String, String> {
    std::fs::read_to_string(root().join("testdata/go-oracle/index.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect()
}

#[test]
fn our_roots_are_a_subset_of_what_go_accepts() {
    let files = corpus();
    assert!(files.len() >= 30, "only {} corpus entries", files.len());
    let go = go_verdicts(&oracle(), &files, None);

    let mut lines = vec![
        "# Verdicts on testdata/go-oracle/roots/ (tests/go_oracle.rs; review every change by hand)."
            .to_string(),
        "# name<TAB>Go 1.23 ParseCertificate + IsCA<TAB>the hook's check_roots".to_string(),
    ];
    let mut violations = Vec::new();
    let descriptions = descriptions();
    for (name, path) in &files {
        let theirs = go
            .get(name)
            .unwrap_or_else(|| panic!("no Go verdict for {name}"));
        let ours = our_verdict(path);
        if ours == "accepted" && theirs != "ca" {
            violations.push(format!("{name}: the hook accepts it, Go says {theirs:?}"));
        }
        let description = descriptions
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in index.tsv"));
        lines.push(format!("# {description}"));
        lines.push(format!("{name}\t{theirs}\t{ours}"));
    }
    assert!(
        violations.is_empty(),
        "roots the hook would give istiod that Go refuses or does not call a CA:\n{}",
        violations.join("\n")
    );

    let got = lines.join("\n") + "\n";
    let path = root().join("testdata/go-oracle/expected.tsv");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        let diff: Vec<String> = want
            .lines()
            .filter(|l| !got.lines().any(|g| g == *l))
            .map(|l| format!("- {l}"))
            .chain(
                got.lines()
                    .filter(|l| !want.lines().any(|w| w == *l))
                    .map(|l| format!("+ {l}")),
            )
            .collect();
        panic!(
            "verdicts differ from testdata/go-oracle/expected.tsv (UPDATE_GOLDEN=1 rewrites it; review by hand):\n{}",
            diff.join("\n")
        );
    }
}

/// The nine roots issue 10 found in trust bundles: Go must refuse each (so the oracle runs the
/// Go that istiod runs), and the hook must refuse each with its own reason.
#[test]
fn the_nine_are_refused_by_go_and_by_us() {
    let nine = odd_roots::ODD_ROOTS;
    let files: Vec<(String, PathBuf)> = corpus()
        .into_iter()
        .filter(|(n, _)| nine.iter().any(|(m, _)| m == n))
        .collect();
    assert_eq!(
        files.len(),
        nine.len(),
        "a corpus file of the nine is missing"
    );
    let bin = oracle();
    let go = go_verdicts(&bin, &files, None);
    for (name, path) in &files {
        let text = nine
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .unwrap();
        assert!(
            go[name].starts_with("refused: "),
            "{name}: Go says {}",
            go[name]
        );
        assert_eq!(our_verdict(path), format!("rejected: {text}"), "{name}");
    }
    // The oracle is sensitive to the Go semantics that matter: with the pre-1.23 behaviour
    // switched back on, Go parses the negative serial. (So a `go 1.22` go.mod, GOPATH mode or
    // an old toolchain would show up here rather than pass silently.)
    let old = go_verdicts(&bin, &files, Some("x509negativeserial=1"));
    assert_eq!(old["odd-negative-serial"], "ca");
}

#[test]
fn go_version_parsing() {
    assert_eq!(go_minor("go version go1.23.5 linux/amd64"), Some((1, 23)));
    assert_eq!(go_minor("go version go1.24rc1 linux/amd64"), Some((1, 24)));
    assert_eq!(go_minor("go version go1.19.8 linux/amd64"), Some((1, 19)));
    assert_eq!(go_minor("garbage"), None);
}
