//! The root oracles. istiod parses every trust anchor with Go's `crypto/x509.ParseCertificate`
//! and requires `IsCA`; one root it refuses drops the whole trust source (docs/security.md).
//! Envoy loads the same roots with BoringSSL (`PEM_X509_INFO_read_bio`, `X509_STORE_add_cert`);
//! one root it refuses fails the whole validation context, for every peer. This test builds
//! `tests/go/x509oracle` with the distribution's Go 1.23 — module mode, `go 1.23` in go.mod
//! (what makes Go refuse negative serials), no network — and `tests/c/boringssl_roots.c`
//! against Debian's BoringSSL, runs both over every root of testdata/go-oracle/roots/ (made by
//! scripts/gen-odd-roots.py) and over roots generated here, and checks, for every entry:
//!
//! - the hook accepts a root only when Go parses it and calls it a CA and BoringSSL loads it
//!   (acceptance ⊆ Go's ∩ BoringSSL's);
//! - on the corpus, the three verdicts are exactly those of testdata/go-oracle/expected.tsv,
//!   which is reviewed by hand (`UPDATE_GOLDEN=1` rewrites it).

#[path = "support/boringssl.rs"]
mod boringssl;
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
fn our_roots_are_a_subset_of_what_go_and_boringssl_accept() {
    let files = corpus();
    assert!(files.len() >= 30, "only {} corpus entries", files.len());
    let go = go_verdicts(&oracle(), &files, None);
    let paths: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
    let boring = boringssl::verdicts(
        &boringssl::build(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("boringssl")),
        &paths,
    );

    let mut lines = vec![
        "# Verdicts on testdata/go-oracle/roots/ (tests/go_oracle.rs; review every change by hand)."
            .to_string(),
        "# name<TAB>Go 1.23 ParseCertificate + IsCA<TAB>BoringSSL as Envoy loads a CA list<TAB>the hook's check_roots".to_string(),
    ];
    let mut violations = Vec::new();
    let descriptions = descriptions();
    for (name, path) in &files {
        let theirs = go
            .get(name)
            .unwrap_or_else(|| panic!("no Go verdict for {name}"));
        let envoy = boring
            .get(name)
            .unwrap_or_else(|| panic!("no BoringSSL verdict for {name}"));
        let ours = our_verdict(path);
        if ours == "accepted" && (theirs != "ca" || envoy != "ok") {
            violations.push(format!(
                "{name}: the hook accepts it, Go says {theirs:?}, BoringSSL says {envoy:?}"
            ));
        }
        let description = descriptions
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in index.tsv"));
        lines.push(format!("# {description}"));
        lines.push(format!("{name}\t{theirs}\t{envoy}\t{ours}"));
    }
    assert!(
        violations.is_empty(),
        "roots the hook would give istiod and Envoy that Go or BoringSSL refuses:\n{}",
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

/// One DER element as the generator below sees it: constructed ones with their children,
/// OCTET and BIT STRINGs that wrap exactly one constructed element (extension values, RSA
/// keys) with that element, everything else as its bytes.
#[derive(Clone)]
enum Der {
    Raw(Vec<u8>),
    Cons(u8, Vec<Der>),
    /// tag, the bytes before the wrapped element (a BIT STRING's unused-bits octet), the element.
    Wrapped(u8, Vec<u8>, Box<Der>),
}

/// (tag, body, rest) of the first element: single-byte tags, definite lengths.
fn der_split(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn der_children(mut body: &[u8]) -> Option<Vec<Der>> {
    let mut kids = Vec::new();
    while !body.is_empty() {
        let (tag, inner, rest) = der_split(body)?;
        kids.push(der_tree(tag, inner));
        body = rest;
    }
    Some(kids)
}

fn der_tree(tag: u8, body: &[u8]) -> Der {
    let raw = || Der::Raw(der_encode(tag, body));
    if tag & 0x20 != 0 {
        return der_children(body).map_or_else(raw, |kids| Der::Cons(tag, kids));
    }
    let (prefix, inner) = match (tag, body) {
        (0x04, b) => (&b[..0], b),
        (0x03, [0, b @ ..]) => (&body[..1], b),
        _ => return raw(),
    };
    match der_split(inner) {
        Some((t, b, [])) if t & 0x20 != 0 => match der_tree(t, b) {
            cons @ Der::Cons(..) => Der::Wrapped(tag, prefix.to_vec(), Box::new(cons)),
            _ => raw(),
        },
        _ => raw(),
    }
}

fn der_encode(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(body);
    out
}

fn der_bytes(d: &Der) -> Vec<u8> {
    match d {
        Der::Raw(b) => b.clone(),
        Der::Cons(tag, kids) => {
            der_encode(*tag, &kids.iter().flat_map(der_bytes).collect::<Vec<u8>>())
        }
        Der::Wrapped(tag, prefix, inner) => {
            der_encode(*tag, &[prefix.clone(), der_bytes(inner)].concat())
        }
    }
}

/// Every constructed element of the tree, as child-index paths (the root is `[]`).
fn der_paths(d: &Der, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    match d {
        Der::Cons(_, kids) => {
            out.push(path.clone());
            for (i, k) in kids.iter().enumerate() {
                path.push(i);
                der_paths(k, path, out);
                path.pop();
            }
        }
        Der::Wrapped(_, _, inner) => der_paths(inner, path, out),
        Der::Raw(_) => {}
    }
}

/// The tree with `extra` appended to the children of the constructed element at `path`.
fn der_with_trailing(d: &Der, path: &[usize], extra: &[u8]) -> Der {
    match d {
        Der::Wrapped(tag, prefix, inner) => Der::Wrapped(
            *tag,
            prefix.clone(),
            Box::new(der_with_trailing(inner, path, extra)),
        ),
        Der::Cons(tag, kids) => {
            let mut kids = kids.clone();
            match path.split_first() {
                None => kids.push(Der::Raw(extra.to_vec())),
                Some((&i, rest)) => kids[i] = der_with_trailing(&kids[i], rest, extra),
            }
            Der::Cons(*tag, kids)
        }
        Der::Raw(_) => d.clone(),
    }
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn der_of_pem(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// Generated roots: every well-formed control of the corpus with one trailing element (a NULL,
/// an INTEGER 0) appended inside each of its constructed DER fields in turn — an extension, a
/// name entry, the validity, an algorithm identifier, the public key, an extension's value…
/// Go's parser ignores many of these, BoringSSL refuses them: the hook must accept none that
/// either refuses.
#[test]
fn generated_roots_with_trailing_elements_are_a_subset_of_both() {
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("generated-roots");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut files = Vec::new();
    for (name, path) in corpus().iter().filter(|(n, _)| n.starts_with("ok-")) {
        let der = der_of_pem(&std::fs::read_to_string(path).unwrap());
        let (tag, body, rest) = der_split(&der).unwrap();
        assert!(rest.is_empty(), "{name}");
        let tree = der_tree(tag, body);
        let mut paths = Vec::new();
        der_paths(&tree, &mut Vec::new(), &mut paths);
        for p in paths {
            for (what, extra) in [("null", &[5u8, 0][..]), ("int0", &[2, 1, 0][..])] {
                let at: Vec<String> = p.iter().map(usize::to_string).collect();
                let stem = format!("{name}+{what}@{}", at.join("."));
                let file = work.join(format!("{stem}.pem"));
                let mutated = der_bytes(&der_with_trailing(&tree, &p, extra));
                std::fs::write(&file, pem_of(&mutated)).unwrap();
                files.push((stem, file));
            }
        }
    }
    assert!(files.len() > 300, "only {} generated roots", files.len());
    let go = go_verdicts(&oracle(), &files, None);
    let paths: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
    let boring = boringssl::verdicts(&boringssl::build(&work.join("bin")), &paths);
    let (mut ours_n, mut go_only, mut violations) = (0, Vec::new(), Vec::new());
    for (name, path) in &files {
        let (g, b) = (&go[name], &boring[name]);
        if g == "ca" && b != "ok" {
            go_only.push(format!("{name}: {b}"));
        }
        if our_verdict(path) == "accepted" {
            ours_n += 1;
            if g != "ca" || b != "ok" {
                violations.push(format!("{name}: Go says {g:?}, BoringSSL says {b:?}"));
            }
        }
    }
    eprintln!(
        "{} generated roots; the hook accepts {ours_n}; Go accepts {} that BoringSSL refuses:\n{}",
        files.len(),
        go_only.len(),
        go_only.join("\n")
    );
    assert!(
        violations.is_empty(),
        "generated roots the hook accepts that Go or BoringSSL refuses:\n{}",
        violations.join("\n")
    );
}
