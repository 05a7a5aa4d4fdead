//! The mounted `istio-federation-metadata` Secret, re-read when kubelet updates it.
//!
//! kubelet mounts a Secret as `DIR/<key>` → `..data/<key>` symlinks, where `DIR/..data` is
//! itself a symlink to a timestamped directory (`..2026_01_02_03_04_05.123456789`) that is
//! swapped atomically on every update. So the link target of `..data` is a complete version
//! identifier: resolving it is one `readlink` per request, and the files are re-read (from the
//! resolved directory, so one version is never mixed with the next) only when it changed.
//! Without `..data` (a plain directory, e.g. in tests or with another mounter) the version is
//! the device, inode, size and mtime of each file: three `stat`s per request.
//!
//! Everything a request needs is derived once per version: the bytes to serve, our own
//! cluster UUID, the SPIFFE bundle, and the peers' Ed25519 keys (parsed once, not per request).
//! Problems are logged once per version, not once per request.

use super::spiffe;
use crate::protocol::visibility::PeerViews;
use crate::protocol::{certs, text};
use hyper::body::Bytes;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The Secret's keys.
pub(super) use crate::protocol::secret::{
    FEDERATION_JSON as FEDERATION, PUBLIC_JSON as PUBLIC, REMOTE_PUBLIC_JSON as REMOTES,
    SPIFFE_REFRESH_HINT, SPIFFE_SEQUENCE, VISIBILITY_JSON as VISIBILITY,
};
const FILES: [&str; 6] = [
    PUBLIC,
    FEDERATION,
    REMOTES,
    VISIBILITY,
    SPIFFE_SEQUENCE,
    SPIFFE_REFRESH_HINT,
];

/// A Secret holds at most 1 MiB; anything much larger is not what we expect to serve.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Longest text of a remote-controlled value quoted in a log line.
const MAX_QUOTED: usize = 128;

/// Identifies one version of the directory's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Version {
    /// kubelet layout: the target of `..data`.
    Data(OsString),
    /// Plain directory: the identity of each file (`None` when absent or unreadable).
    Files(Box<[Option<Stamp>; 6]>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// A file of the Secret as read.
#[derive(Debug, Clone)]
pub(super) enum FileState {
    Absent,
    Unreadable(String),
    Present(Bytes),
}

/// The SPIFFE bundle, or why it cannot be served: `Unavailable` (503) when public.json cannot
/// be read, `Invalid` (500) when its root certificate is unusable.
#[derive(Debug, Clone)]
pub(super) enum Spiffe {
    Ready(Bytes),
    Unavailable(String),
    Invalid(String),
}

/// Per-peer views of federation.json, from `federation-visibility.json`.
#[derive(Debug)]
pub(super) enum Visibility {
    /// No visibility file: no service is restricted, every peer gets federation.json as is.
    Unrestricted,
    /// Restricted services, checked against this version's federation.json.
    Restricted(PeerViews),
    /// The file is unreadable, malformed or does not match federation.json: private metadata
    /// is withheld from every peer (fail closed).
    Invalid(String),
}

/// Everything the routes need from one version of the directory.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// public.json verbatim, or why it cannot be served.
    pub public: Result<Bytes, String>,
    /// `clusterUUID` of public.json (non-empty), or why it is unknown.
    pub own_uuid: Result<String, String>,
    pub spiffe: Spiffe,
    pub federation: FileState,
    /// Which peer sees which service (docs/sharing.md).
    pub visibility: Visibility,
    /// Peer UUID → Ed25519 public key, from remote-public-metadata.json.
    pub peers: Result<HashMap<String, [u8; 32]>, String>,
}

/// The directory and the snapshot of its current version.
pub(super) struct MetadataStore {
    dir: PathBuf,
    cache: Mutex<Option<(Version, Arc<Snapshot>)>>,
    /// Whether a visibility file was ever read here: from then on its absence is a directory
    /// mid-update, not "nothing restricted" ([`vanished_visibility`]).
    seen_visibility: AtomicBool,
}

impl MetadataStore {
    pub(super) fn new(dir: PathBuf) -> Self {
        MetadataStore {
            dir,
            cache: Mutex::new(None),
            seen_visibility: AtomicBool::new(false),
        }
    }

    /// The snapshot of the directory's current contents; re-reads the files if they changed
    /// since the last call.
    pub(super) fn current(&self) -> Arc<Snapshot> {
        let mut version = self.version();
        // Holding the lock while loading makes concurrent callers wait for one load instead of
        // each doing their own.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, snapshot)) = cache.as_ref() {
            if *cached == version {
                return snapshot.clone();
            }
        }
        // The directory can change while we read it (kubelet deletes the old version right
        // after the swap). Retry until the version is the same before and after the read.
        let mut attempts = 0;
        let snapshot = loop {
            let snapshot = load(&self.dir_of(&version));
            let after = self.version();
            attempts += 1;
            if after == version || attempts == 3 {
                break snapshot;
            }
            version = after;
        };
        let snapshot = vanished_visibility(snapshot, &self.seen_visibility);
        log_snapshot(&self.dir, &version, &snapshot);
        let snapshot = Arc::new(snapshot);
        *cache = Some((version, snapshot.clone()));
        snapshot
    }

    fn version(&self) -> Version {
        match std::fs::read_link(self.dir.join("..data")) {
            Ok(target) => Version::Data(target.into_os_string()),
            Err(_) => Version::Files(Box::new(FILES.map(|name| {
                std::fs::metadata(self.dir.join(name)).ok().map(|m| Stamp {
                    dev: m.dev(),
                    ino: m.ino(),
                    len: m.len(),
                    mtime: m.mtime(),
                    mtime_nsec: m.mtime_nsec(),
                })
            }))),
        }
    }

    /// Where the files of `version` are: the resolved `..data` target, or the directory.
    fn dir_of(&self, version: &Version) -> PathBuf {
        match version {
            // A relative target is relative to the directory; join keeps an absolute one.
            Version::Data(target) => self.dir.join(target),
            Version::Files(_) => self.dir.clone(),
        }
    }
}

fn read_file(dir: &Path, name: &str) -> FileState {
    let file = match std::fs::File::open(dir.join(name)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileState::Absent,
        Err(e) => return FileState::Unreadable(format!("{name}: {e}")),
    };
    let mut bytes = Vec::new();
    match file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        Ok(_) if bytes.len() as u64 > MAX_FILE_BYTES => {
            FileState::Unreadable(format!("{name}: larger than {MAX_FILE_BYTES} bytes"))
        }
        Ok(_) => FileState::Present(Bytes::from(bytes)),
        Err(e) => FileState::Unreadable(format!("{name}: {e}")),
    }
}

#[derive(serde::Deserialize)]
struct PublicDoc {
    #[serde(rename = "clusterUUID")]
    cluster_uuid: Option<String>,
    #[serde(rename = "rootCA")]
    root_ca: Option<String>,
}

#[derive(serde::Deserialize)]
struct RemoteDoc {
    #[serde(rename = "authnKeyPub")]
    authn_key_pub: Option<String>,
}

/// Reads and derives everything from the files in `dir`.
fn load(dir: &Path) -> Snapshot {
    let (public, own_uuid, spiffe) = match read_file(dir, PUBLIC) {
        FileState::Absent => {
            let why = format!("{PUBLIC} is missing");
            (Err(why.clone()), Err(why.clone()), Spiffe::Unavailable(why))
        }
        FileState::Unreadable(why) => {
            (Err(why.clone()), Err(why.clone()), Spiffe::Unavailable(why))
        }
        FileState::Present(bytes) => {
            let (own_uuid, spiffe) = match serde_json::from_slice::<PublicDoc>(&bytes) {
                Err(e) => {
                    let why = format!("{PUBLIC} is not a valid metadata document: {e}");
                    (Err(why.clone()), Spiffe::Invalid(why))
                }
                Ok(doc) => (
                    doc.cluster_uuid
                        .filter(|u| !u.is_empty())
                        .ok_or_else(|| format!("{PUBLIC} has no clusterUUID")),
                    match doc.root_ca.filter(|r| !r.trim().is_empty()) {
                        None => Spiffe::Invalid(format!("{PUBLIC} has no rootCA")),
                        Some(pem) => match spiffe::bundle_from_pem(&pem, bundle_info(dir)) {
                            Ok(json) => Spiffe::Ready(Bytes::from(json)),
                            Err(e) => Spiffe::Invalid(format!("rootCA: {e}")),
                        },
                    },
                ),
            };
            (Ok(bytes), own_uuid, spiffe)
        }
    };
    let federation = read_file(dir, FEDERATION);
    let visibility = match (read_file(dir, VISIBILITY), &federation) {
        (FileState::Absent, _) => Visibility::Unrestricted,
        (FileState::Unreadable(why), _) => Visibility::Invalid(why),
        (FileState::Present(vis), FileState::Present(fed)) => match PeerViews::new(fed, &vis) {
            Ok(views) => Visibility::Restricted(views),
            Err(why) => Visibility::Invalid(why),
        },
        // Without federation.json nothing private is served anyway.
        (FileState::Present(_), _) => {
            Visibility::Invalid(format!("{VISIBILITY} without {FEDERATION}"))
        }
    };
    Snapshot {
        public,
        own_uuid,
        spiffe,
        federation,
        visibility,
        peers: match read_file(dir, REMOTES) {
            // The export hook always writes it; without it no peer is known.
            FileState::Absent => Ok(HashMap::new()),
            FileState::Unreadable(why) => Err(why),
            FileState::Present(bytes) => parse_remotes(&bytes),
        },
    }
}

/// A visibility file that was there and is gone withholds private metadata (fail closed):
/// export always writes one (docs/sharing.md), so its absence after one was read is a
/// directory updated file by file — e.g. cleared and rewritten with `federation.json` first —
/// and treating it as "nothing restricted" could show a restricted service to every peer.
/// Only a directory that never had one (Deckhouse's layout, an older export) is unrestricted.
fn vanished_visibility(mut snapshot: Snapshot, seen: &AtomicBool) -> Snapshot {
    match snapshot.visibility {
        Visibility::Unrestricted if seen.load(Ordering::Relaxed) => {
            snapshot.visibility = Visibility::Invalid(format!(
                "{VISIBILITY} is gone after it was read here (a directory updated file by file?); \
                 export always writes it"
            ));
        }
        Visibility::Unrestricted => {}
        // Both come from a file that is there (readable or not).
        Visibility::Restricted(_) | Visibility::Invalid(_) => seen.store(true, Ordering::Relaxed),
    }
    snapshot
}

/// The SPIFFE bundle's sequence and refresh hint, from `spiffe-sequence` and
/// `spiffe-refresh-hint` (docs/rotation.md); an absent key means its default,
/// an unusable one too (with a log line).
fn bundle_info(dir: &Path) -> spiffe::BundleInfo {
    let mut info = spiffe::BundleInfo::default();
    for (name, slot) in [
        (SPIFFE_SEQUENCE, &mut info.sequence),
        (SPIFFE_REFRESH_HINT, &mut info.refresh_hint),
    ] {
        match read_file(dir, name) {
            FileState::Absent => {}
            FileState::Unreadable(why) => {
                log::warn!(target: "serve", "{}; SPIFFE bundle uses {slot}", shorten(&why))
            }
            FileState::Present(bytes) => match std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .filter(|n| *n >= 1)
            {
                Some(n) => *slot = n,
                None => {
                    log::warn!(target: "serve", "{name} is not a positive integer; SPIFFE bundle uses {slot}")
                }
            },
        }
    }
    info
}

/// Parses remote-public-metadata.json (`{"<uuid>": {"authnKeyPub": PEM, …}, …}`). A peer whose
/// key does not parse is left out (logged by [`log_snapshot`] via the returned count); a
/// document that is not such a map is an error.
fn parse_remotes(bytes: &[u8]) -> Result<HashMap<String, [u8; 32]>, String> {
    let doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)
        .map_err(|e| format!("{REMOTES} is not a JSON object: {e}"))?;
    let mut peers = HashMap::with_capacity(doc.len());
    for (uuid, entry) in doc {
        let key = serde_json::from_value::<RemoteDoc>(entry)
            .map_err(|e| e.to_string())
            .and_then(|d| d.authn_key_pub.ok_or_else(|| "no authnKeyPub".to_string()))
            .and_then(|pem| certs::parse_ed25519_public_pem(&pem));
        match key {
            Ok(key) if !uuid.is_empty() => {
                peers.insert(uuid, key);
            }
            Ok(_) => log::warn!(target: "serve", "{REMOTES}: ignoring a peer with an empty UUID"),
            Err(e) => log::warn!(
                target: "serve",
                "{REMOTES}: ignoring peer {}: {}",
                shorten(&uuid),
                shorten(&e)
            ),
        }
    }
    Ok(peers)
}

/// `s` cut to a bounded length for a log line. Remote-controlled text is otherwise logged as
/// is: the JSON logger escapes control characters, so it cannot forge log lines.
pub(super) fn shorten(s: &str) -> String {
    text::shorten(s, text::Limit::bytes(MAX_QUOTED, MAX_QUOTED, "…"))
}

fn log_snapshot(dir: &Path, version: &Version, s: &Snapshot) {
    let version = match version {
        Version::Data(target) => target.to_string_lossy().into_owned(),
        Version::Files(_) => "files".to_string(),
    };
    let federation = match (&s.federation, &s.visibility) {
        (FileState::Absent, _) => "disabled".to_string(),
        (FileState::Present(_), Visibility::Unrestricted) => "enabled".to_string(),
        (FileState::Present(_), Visibility::Restricted(views)) => format!(
            "enabled, {} restricted service(s)",
            views.restricted_count()
        ),
        (FileState::Present(_), Visibility::Invalid(_)) => {
            "enabled, withheld from every peer".to_string()
        }
        (FileState::Unreadable(why), _) => format!("unreadable ({why})"),
    };
    if let (FileState::Present(_), Visibility::Invalid(why)) = (&s.federation, &s.visibility) {
        log::error!(target: "serve", "private metadata withheld from every peer until {VISIBILITY} is valid: {}", shorten(why));
    }
    match (&s.own_uuid, &s.peers) {
        (Ok(uuid), Ok(peers)) => log::info!(
            target: "serve",
            "metadata loaded from {} (version {version}): clusterUUID {uuid}, federation {federation}, {} peer(s)",
            dir.display(),
            peers.len()
        ),
        (uuid, peers) => log::warn!(
            target: "serve",
            "metadata loaded from {} (version {version}) with problems: {}; federation {federation}; peers: {}",
            dir.display(),
            uuid.as_ref().err().map_or("clusterUUID ok", String::as_str),
            match peers {
                Ok(p) => format!("{} known", p.len()),
                Err(e) => e.clone(),
            }
        ),
    }
    match &s.spiffe {
        Spiffe::Invalid(why) => log::warn!(target: "serve", "SPIFFE bundle unavailable: {why}"),
        Spiffe::Ready(_) | Spiffe::Unavailable(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_parsing() {
        let (_, pub_pem) = certs::generate_ed25519_pem().unwrap();
        let doc = serde_json::json!({
            "good": {"clusterUUID": "good", "authnKeyPub": pub_pem, "rootCA": ""},
            "nokey": {"clusterUUID": "nokey"},
            "badkey": {"authnKeyPub": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
            "notobject": 5,
            "": {"authnKeyPub": pub_pem},
        });
        let peers = parse_remotes(doc.to_string().as_bytes()).unwrap();
        assert_eq!(peers.keys().collect::<Vec<_>>(), vec!["good"]);
        assert_eq!(
            peers["good"],
            certs::parse_ed25519_public_pem(&pub_pem).unwrap()
        );
        assert!(parse_remotes(b"[]").is_err());
        assert!(parse_remotes(b"nonsense").is_err());
        assert!(parse_remotes(b"{}").unwrap().is_empty());
    }

    #[test]
    fn shortening_is_bounded_and_char_safe() {
        assert_eq!(shorten("a\nb"), "a\nb");
        let long = "é".repeat(200);
        let q = shorten(&long);
        assert!(q.len() <= 131 && q.ends_with('…'), "{q}");
    }

    #[test]
    fn plain_directory_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::new(dir.path().to_path_buf());
        let s = store.current();
        assert!(s.public.is_err() && matches!(s.federation, FileState::Absent));
        assert!(s.peers.as_ref().unwrap().is_empty());
        std::fs::write(dir.path().join(PUBLIC), br#"{"clusterUUID":"u1"}"#).unwrap();
        let s = store.current();
        assert_eq!(s.own_uuid.as_deref(), Ok("u1"));
        assert!(matches!(s.spiffe, Spiffe::Invalid(_)));
        // Same snapshot while nothing changes.
        assert!(Arc::ptr_eq(&s, &store.current()));
        std::fs::write(dir.path().join(PUBLIC), br#"{"clusterUUID":"u22"}"#).unwrap();
        assert_eq!(store.current().own_uuid.as_deref(), Ok("u22"));
        std::fs::write(dir.path().join(PUBLIC), b"{").unwrap();
        assert!(store.current().own_uuid.is_err());
        std::fs::write(dir.path().join(FEDERATION), b"{}").unwrap();
        assert!(matches!(store.current().federation, FileState::Present(_)));
        assert!(matches!(
            store.current().visibility,
            Visibility::Unrestricted
        ));
    }

    #[test]
    fn visibility_file_changes_are_seen_and_bad_ones_fail_closed() {
        use crate::protocol::visibility;
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::new(dir.path().to_path_buf());
        let fed = "{\"ingressGateways\": [], \"publicServices\": [{\"hostname\": \"a.x\"}]}\n";
        std::fs::write(dir.path().join(FEDERATION), fed).unwrap();
        let rules = [("a.x".to_string(), ["u1".to_string()].into())].into();
        std::fs::write(dir.path().join(VISIBILITY), visibility::render(fed, &rules)).unwrap();
        match &store.current().visibility {
            Visibility::Restricted(views) => {
                assert!(views.visible("u1", "a.x") && !views.visible("u2", "a.x"))
            }
            other => panic!("{other:?}"),
        }
        // Written for another federation.json: withheld.
        std::fs::write(
            dir.path().join(VISIBILITY),
            visibility::render("{}", &rules),
        )
        .unwrap();
        assert!(matches!(store.current().visibility, Visibility::Invalid(_)));
        std::fs::write(dir.path().join(VISIBILITY), b"[").unwrap();
        assert!(matches!(store.current().visibility, Visibility::Invalid(_)));
        // Gone after it was read here: a directory mid-update, withheld.
        std::fs::remove_file(dir.path().join(VISIBILITY)).unwrap();
        assert!(matches!(store.current().visibility, Visibility::Invalid(_)));
        // A directory that never had one is unrestricted (Deckhouse's layout).
        let fresh = MetadataStore::new(dir.path().to_path_buf());
        assert!(matches!(
            fresh.current().visibility,
            Visibility::Unrestricted
        ));
        // Back: served again.
        std::fs::write(dir.path().join(VISIBILITY), visibility::render(fed, &rules)).unwrap();
        assert!(matches!(
            store.current().visibility,
            Visibility::Restricted(_)
        ));
    }
}
