//! Root rotation on the publishing side (docs/rotation.md): a root that
//! leaves ConfigMap `istio-ca-root-cert` stays in `public.json`'s `rootCA` for
//! `ROOT_RETENTION` from the first export run that saw it gone, never past its own notAfter,
//! so peers — ours and Deckhouse's, which keep no retention of their own — keep trusting our
//! workloads that still hold certificates under it while istiod re-issues them.
//!
//! The export hook is stateless, so the retired roots live in the data key
//! `retired-local-roots.json` of the metadata Secret it already writes and binds
//! (`[{fingerprint, pem, retiredAt, until}]`, the format of discovery's `status.retiredRoots`,
//! read with the same checks: anything unusable is dropped with a log). A root counts as gone
//! when the last published `rootCA` listed it as current (not as retired) and the ConfigMap no
//! longer does; so the state is the published Secret itself, and a run over the same inputs
//! writes nothing.
//!
//! The SPIFFE bundle `serve` derives from `rootCA` carries a `spiffe_sequence` that must change
//! with the keys: export increases it in data key `spiffe-sequence` whenever the published
//! roots change, and writes `spiffe-refresh-hint` (a quarter of `ROOT_RETENTION`). Both keys
//! are written only when they differ from what their absence means (1, and the hint of the
//! default retention), so a cluster that never rotates keeps the Secret it had.

use crate::discovery::state::RetiredRoot;
use crate::discovery::trust::retention;
use crate::hook::timefmt;
use crate::protocol::certs;
use crate::protocol::metadata::Own;
use crate::protocol::secret::{
    spiffe_refresh_hint, DEFAULT_SPIFFE_REFRESH_HINT, METADATA_SECRET, RETIRED_LOCAL_ROOTS_JSON,
    SPIFFE_REFRESH_HINT, SPIFFE_SEQUENCE,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What to publish as `rootCA`, and the retired roots to keep for the next run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    /// The ConfigMap's `root-cert.pem` as is, then each retained root's PEM.
    pub root_ca: String,
    /// Retired roots still published, in (retiredAt, fingerprint) order.
    pub retained: Vec<RetiredRoot>,
}

impl Published {
    /// `retired-local-roots.json` as written; `None` when nothing is retained (the key is
    /// left out).
    pub(crate) fn retired_file(&self) -> Option<String> {
        (!self.retained.is_empty()).then(|| super::pretty(&retention::to_status(&self.retained)))
    }
}

/// The fingerprints a stored list names, valid or not: a root whose stored entry is junk is
/// not "newly gone" again (that would restart its retention), it is simply no longer published.
fn named_fingerprints(stored: Option<&Value>) -> BTreeSet<String> {
    stored
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("fingerprint").and_then(Value::as_str))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Decides `rootCA`: the current roots of `istio-ca-root-cert` (`current`, published verbatim
/// as before rotation existed), plus the roots that left it within `retention`.
/// `old_root_ca` is the `rootCA` of the last published `public.json`, `stored` the text of
/// its `retired-local-roots.json`.
pub(crate) fn publish(
    current: &str,
    old_root_ca: Option<&str>,
    stored: Option<&str>,
    retention: Duration,
    now: i64,
    namespace: &str,
) -> Published {
    let owner = format!("Secret {namespace}/{METADATA_SECRET}");
    let stored: Option<Value> = stored.and_then(|t| match serde_json::from_str(t) {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn!(target: "retention", "{owner}: {RETIRED_LOCAL_ROOTS_JSON} is not JSON ({e}); ignored, no retired root is published from it");
            None
        }
    });
    // Our own roots are what is stored here: none is refused for being ours.
    let own = Own {
        cluster_uuid: "",
        root_fingerprints: &[],
        now,
    };
    // Only a root the last rootCA published stays published: the stored list is input, and an
    // entry for a root we never published must not make peers trust it.
    let last_published: BTreeSet<String> = old_root_ca
        .map(certs::certificate_fingerprints)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut valid = retention::read_list(stored.as_ref(), &own, &owner, RETIRED_LOCAL_ROOTS_JSON);
    valid.retain(|s| {
        let published = last_published.contains(&s.root.fingerprint);
        if !published {
            log::warn!(target: "retention", "{owner}: {RETIRED_LOCAL_ROOTS_JSON} names root {} ({}), which the last public.json did not publish; dropped, not published", s.root.fingerprint, s.root.subject);
        }
        published
    });
    let named = named_fingerprints(stored.as_ref());
    let current_fps: BTreeSet<String> = certs::certificate_fingerprints(current)
        .into_iter()
        .collect();
    // Roots the last rootCA published as current: everything it listed but the retired ones.
    let was_current: Vec<certs::RootCert> = old_root_ca
        .and_then(|old| certs::check_roots(old, now, &[]).ok())
        .map(|c| c.accepted)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| !named.contains(&r.fingerprint))
        .collect();
    let gone: Vec<certs::RootCert> = was_current
        .into_iter()
        .filter(|r| !current_fps.contains(&r.fingerprint))
        .collect();
    let retained = retention::decide(
        valid,
        gone.clone(),
        &current_fps,
        &BTreeSet::new(),
        retention,
        now,
    );
    for r in &gone {
        match retained
            .iter()
            .find(|k| k.root.fingerprint == r.fingerprint)
        {
            Some(k) => {
                log::info!(target: "retention", "our root {} ({}) left ConfigMap istio-ca-root-cert; peers are still sent it until {} (ROOT_RETENTION)", r.fingerprint, r.subject, timefmt::rfc3339(k.until))
            }
            None => {
                log::info!(target: "retention", "our root {} ({}) left ConfigMap istio-ca-root-cert; no longer published (ROOT_RETENTION is 0, or it expires)", r.fingerprint, r.subject)
            }
        }
    }
    let mut root_ca = current.to_string();
    for r in &retained {
        if !root_ca.is_empty() && !root_ca.ends_with('\n') {
            root_ca.push('\n');
        }
        root_ca.push_str(&r.root.pem);
    }
    Published { root_ca, retained }
}

/// The `rootCA` of a published `public.json`, if it has one.
pub(crate) fn root_ca_of(public_json: Option<&String>) -> Option<String> {
    let doc: Value = serde_json::from_str(public_json?).ok()?;
    doc.get("rootCA")?.as_str().map(str::to_string)
}

/// Writes `spiffe-sequence` and `spiffe-refresh-hint` into `files` (the Secret as it will be),
/// from the Secret as it was (`old`): the sequence goes up by one when the set of
/// certificates in `rootCA` differs from the last published one (a new order alone is the
/// same set of keys).
pub(crate) fn spiffe_files(
    old: &BTreeMap<String, String>,
    files: &mut BTreeMap<String, String>,
    retention: Duration,
    namespace: &str,
) {
    let stored = match old.get(SPIFFE_SEQUENCE).map(|s| s.trim().parse::<u64>()) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => {
            log::warn!(target: "export", "Secret {namespace}/{METADATA_SECRET}: {SPIFFE_SEQUENCE} is not a positive integer; counting again from 1");
            1
        }
    };
    let fps = |public: Option<&String>| {
        root_ca_of(public).map(|pem| {
            certs::certificate_fingerprints(&pem)
                .into_iter()
                .collect::<BTreeSet<String>>()
        })
    };
    let before = fps(old.get(super::PUBLIC_JSON));
    let after = fps(files.get(super::PUBLIC_JSON));
    let sequence = match (&before, &after) {
        (Some(b), Some(a)) if a != b => stored.saturating_add(1),
        _ => stored,
    };
    if sequence > 1 {
        files.insert(SPIFFE_SEQUENCE.into(), format!("{sequence}\n"));
    }
    let hint = spiffe_refresh_hint(retention);
    if hint != DEFAULT_SPIFFE_REFRESH_HINT {
        files.insert(SPIFFE_REFRESH_HINT.into(), format!("{hint}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    const H48: Duration = Duration::from_secs(48 * 3600);

    fn root(cn: &str) -> String {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
        p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
    }

    fn now() -> i64 {
        timefmt::parse_rfc3339("2027-01-01T00:00:00Z").unwrap()
    }

    #[test]
    fn a_root_that_leaves_the_configmap_is_published_for_the_retention() {
        let (old, new) = (root("old"), root("new"));
        let both = format!("{old}{new}");
        // Rotation starts: the ConfigMap lists both; nothing retired.
        let p = publish(&both, Some(&old), None, H48, now(), "ns");
        assert_eq!((p.root_ca.as_str(), p.retained.len()), (both.as_str(), 0));
        // The old root leaves: still published, after the current one.
        let p = publish(&new, Some(&both), None, H48, now(), "ns");
        assert_eq!(p.root_ca, format!("{new}{old}"));
        assert_eq!(p.retained.len(), 1);
        assert_eq!(p.retained[0].until, now() + 48 * 3600);
        let file = p.retired_file().unwrap();
        // The next run, a day later, from what it wrote: the same, until the same end.
        let later = publish(
            &new,
            Some(&p.root_ca),
            Some(&file),
            H48,
            now() + 86400,
            "ns",
        );
        assert_eq!(later, p);
        // Past the end: gone, and the key with it.
        let end = publish(
            &new,
            Some(&p.root_ca),
            Some(&file),
            H48,
            now() + 2 * 86400,
            "ns",
        );
        assert_eq!(
            (end.root_ca.as_str(), end.retired_file()),
            (new.as_str(), None)
        );
        // Back in the ConfigMap: current again, not retired.
        let back = publish(
            &both,
            Some(&p.root_ca),
            Some(&file),
            H48,
            now() + 3600,
            "ns",
        );
        assert_eq!(
            (back.root_ca.as_str(), back.retained.len()),
            (both.as_str(), 0)
        );
        // ROOT_RETENTION=0s: at once, also what was retained.
        let zero = publish(
            &new,
            Some(&p.root_ca),
            Some(&file),
            Duration::ZERO,
            now(),
            "ns",
        );
        assert_eq!(zero.root_ca, new);
        let zero = publish(&new, Some(&both), None, Duration::ZERO, now(), "ns");
        assert_eq!(zero.root_ca, new);
    }

    #[test]
    fn a_junk_entry_is_dropped_and_not_retired_again() {
        let (old, new) = (root("old"), root("new"));
        let p = publish(&new, Some(&format!("{old}{new}")), None, H48, now(), "ns");
        let fp = &p.retained[0].root.fingerprint;
        // The stored PEM tampered with: not published, and not re-retired from the old rootCA.
        let junk = format!(
            r#"[{{"fingerprint": "{fp}", "pem": "{}", "retiredAt": "2027-01-01T00:00:00Z"}}]"#,
            "x"
        );
        let q = publish(&new, Some(&p.root_ca), Some(&junk), H48, now() + 60, "ns");
        assert_eq!((q.root_ca.as_str(), q.retained.len()), (new.as_str(), 0));
        // Not JSON at all: ignored the same way (the old rootCA's extra root has no entry, so
        // it counts as gone now and is retained from this run on).
        let q = publish(
            &new,
            Some(&format!("{old}{new}")),
            Some("{"),
            H48,
            now(),
            "ns",
        );
        assert_eq!(q.retained.len(), 1);
        // A retiredAt in the future is junk.
        let future = p
            .retired_file()
            .unwrap()
            .replace("2027-01-01T00:00:00Z", "2030-01-01T00:00:00Z");
        let q = publish(&new, Some(&p.root_ca), Some(&future), H48, now(), "ns");
        assert_eq!(q.root_ca, new);
    }

    #[test]
    fn the_sequence_follows_the_published_roots() {
        let (a, b) = (root("a"), root("b"));
        let public = |pem: &str| serde_json::json!({"rootCA": pem}).to_string();
        let secret = |pem: &str, seq: Option<&str>| {
            let mut m = BTreeMap::from([(super::super::PUBLIC_JSON.to_string(), public(pem))]);
            if let Some(s) = seq {
                m.insert(SPIFFE_SEQUENCE.to_string(), s.to_string());
            }
            m
        };
        let run = |old: &BTreeMap<String, String>, pem: &str, retention| {
            let mut files = secret(pem, None);
            spiffe_files(old, &mut files, retention, "ns");
            files.remove(super::super::PUBLIC_JSON);
            files
        };
        // Unchanged, never rotated: no key at all (absent means 1, as before).
        assert!(run(&secret(&a, None), &a, H48).is_empty());
        // First publication: 1.
        assert!(run(&BTreeMap::new(), &a, H48).is_empty());
        // A root added: 2; kept at 2 while nothing changes; 3 when one leaves.
        let two = run(&secret(&a, None), &format!("{a}{b}"), H48);
        assert_eq!(two[SPIFFE_SEQUENCE], "2\n");
        let same = run(
            &secret(&format!("{a}{b}"), Some("2\n")),
            &format!("{a}{b}"),
            H48,
        );
        assert_eq!(same[SPIFFE_SEQUENCE], "2\n");
        let three = run(&secret(&format!("{a}{b}"), Some("2\n")), &b, H48);
        assert_eq!(three[SPIFFE_SEQUENCE], "3\n");
        // Another order of the same roots (the old root moving behind the new): the same set.
        let reordered = run(
            &secret(&format!("{a}{b}"), Some("2\n")),
            &format!("{b}{a}"),
            H48,
        );
        assert_eq!(reordered[SPIFFE_SEQUENCE], "2\n");
        // Junk counts again from 1.
        assert_eq!(run(&secret(&a, Some("x")), &b, H48)[SPIFFE_SEQUENCE], "2\n");
        // The hint is written only when it is not the default retention's.
        assert_eq!(
            run(&secret(&a, None), &a, Duration::ZERO)[SPIFFE_REFRESH_HINT],
            "60\n"
        );
        assert_eq!(
            run(&secret(&a, None), &a, Duration::from_secs(3600))[SPIFFE_REFRESH_HINT],
            "900\n"
        );
    }
}
