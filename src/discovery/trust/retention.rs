//! Root rotation on the importing side (docs/rotation.md): a root the peer
//! stops publishing in a valid fresh document stays trusted for `ROOT_RETENTION` from the run
//! that first saw it gone, never past its own notAfter, so the peer's workloads that still hold
//! certificates under it keep working with us while it re-issues them. And the emergency brake:
//! roots named in the `federation.istio.deckhouse.io/distrust-roots` annotation are never
//! trusted, published or retained.
//!
//! The hook is stateless, so the retained roots live in `status.retiredRoots` of the
//! IstioFederation — `{fingerprint, pem, retiredAt, until}` each, with the PEM, since the cached
//! metadata no longer carries it. That status is input like any other cached input: every entry
//! must still pass the root checks, or it is dropped (with a log) and never trusted.
//!
//! An outage changes nothing here: without a valid fresh document no root is retired, and
//! the last-known-good metadata stays what it was. Time still passes: a retained root leaves
//! when its retention ends, whatever the peer is doing.

use crate::discovery::network::report::{Attempt, FetchReport};
use crate::discovery::state::{FedState, Retention, RetiredRoot};
use crate::discovery::trust::trust_bundle::TrustEntry;
use crate::hook::timefmt;
use crate::protocol::certs::{self, CertRejection, RootCert};
use crate::protocol::federation::Federation;
use crate::protocol::labels::DISTRUST_ROOTS_ANNOTATION;
use crate::protocol::metadata::{Own, PublicMetadata};
use crate::protocol::text;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// At most this many retired roots are retained per federation (the most recently retired
/// win): a peer that rotates every minute must not grow the trust bundle past the 1 MiB a
/// ConfigMap can hold, which would break trust for every peer.
pub(crate) const MAX_RETAINED: usize = 8;

/// Reads the distrust annotation: fingerprints separated by commas or white space, upper- or
/// lower-case hex, with or without `:` between the bytes (as `openssl x509 -fingerprint
/// -sha256` prints them). Returns the fingerprints and the number of entries that are not one.
pub(crate) fn parse_distrust(text: &str) -> (BTreeSet<String>, usize) {
    let mut out = BTreeSet::new();
    let mut bad = 0;
    for token in text.split(|c: char| c == ',' || c.is_whitespace()) {
        if token.is_empty() {
            continue;
        }
        let hex: String = token
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.insert(hex);
        } else {
            bad += 1;
        }
    }
    (out, bad)
}

/// A validated entry of `status.retiredRoots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub root: RootCert,
    pub retired_at: i64,
    /// The stored `until` when it is not after now: this retention has ended, whatever
    /// `ROOT_RETENTION` says now. Such an entry is never trusted again; it stays written only
    /// as a record that keeps its root from being retired anew ([`ended_records`]).
    pub ended_at: Option<i64>,
}

/// Reads `status.retiredRoots`. An entry is kept only if its PEM is one root that passes the
/// root checks now (CA, valid, not our own) with the fingerprint it claims, and its
/// `retiredAt` is a time no later than now; anything else is dropped with a log.
pub(crate) fn read_stored(fed: &Federation, own: &Own) -> Vec<Stored> {
    read_list(
        fed.retired_roots.as_ref(),
        own,
        &format!("IstioFederation {}", fed.name),
        "status.retiredRoots",
    )
}

/// Reads a stored list of retired roots (`[{fingerprint, pem, retiredAt, until}]`), wherever
/// it is kept: `owner` and `field` name it in the log lines. The rules of [`read_stored`];
/// the export hook keeps our own retired roots the same way (docs/rotation.md).
pub(crate) fn read_list(v: Option<&Value>, own: &Own, owner: &str, field: &str) -> Vec<Stored> {
    let Some(v) = v else {
        return Vec::new();
    };
    let Some(items) = v.as_array() else {
        log::warn!(target: "retention", "{owner}: {field} is not a list; ignored, nothing of it is trusted");
        return Vec::new();
    };
    let mut out: Vec<Stored> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match read_one(item, own) {
            Ok(s) if out.iter().any(|o| o.root.fingerprint == s.root.fingerprint) => {}
            Ok(s) => out.push(s),
            Err(Ended(why)) => {
                log::info!(target: "retention", "{owner}: retired root {field}[{i}] is no longer trusted: {why}");
            }
            Err(Junk(why)) => {
                log::warn!(target: "retention", "{owner}: {field}[{i}] {why}; dropped, not trusted");
            }
        }
    }
    out
}

enum Unusable {
    /// A valid entry whose root expired: its retention ends with it.
    Ended(String),
    /// Not a usable entry.
    Junk(String),
}
use Unusable::{Ended, Junk};

fn read_one(item: &Value, own: &Own) -> Result<Stored, Unusable> {
    let field = |k: &str| item.get(k).and_then(Value::as_str);
    let (Some(fp), Some(pem), Some(at)) = (field("fingerprint"), field("pem"), field("retiredAt"))
    else {
        return Err(Junk(
            "lacks a string fingerprint, pem or retiredAt".to_string(),
        ));
    };
    let retired_at = timefmt::parse_rfc3339(at)
        .filter(|t| *t <= own.now)
        .ok_or_else(|| {
            Junk(format!(
                "retiredAt {at:?} is not an RFC 3339 time in the past"
            ))
        })?;
    let check = certs::check_roots(pem, own.now, own.root_fingerprints)
        .map_err(|e| Junk(format!("pem: {e}")))?;
    if let [(_, why)] = check.rejected.as_slice() {
        if check.accepted.is_empty() {
            return Err(match why {
                CertRejection::Expired { .. } => Ended(why.to_string()),
                _ => Junk(format!("pem: {why}")),
            });
        }
    }
    match (check.accepted.as_slice(), check.rejected.is_empty()) {
        ([root], true) if root.fingerprint.eq_ignore_ascii_case(fp) => Ok(Stored {
            root: root.clone(),
            retired_at,
            ended_at: field("until")
                .and_then(timefmt::parse_rfc3339)
                .filter(|t| *t <= own.now),
        }),
        ([_], true) => Err(Junk(format!("pem does not have fingerprint {}", short(fp)))),
        _ => Err(Junk("pem is not exactly one certificate".to_string())),
    }
}

/// The first 16 hex digits of a fingerprint, for messages (input-controlled text stays short).
fn short(fp: &str) -> String {
    text::shorten(fp, text::Limit::chars(16, ""))
}

/// The decision, pure: the stored retired roots plus the roots newly gone, minus those
/// published again (active again), distrusted, or whose retention or validity has ended.
/// `until` follows from `retiredAt` and the current `retention`, so changing `ROOT_RETENTION`
/// applies to roots already retained (`0s` ends them all at once). At most [`MAX_RETAINED`]
/// are kept, the most recently retired.
pub(crate) fn decide(
    stored: Vec<Stored>,
    newly_gone: Vec<RootCert>,
    published: &BTreeSet<String>,
    distrust: &BTreeSet<String>,
    retention: Duration,
    now: i64,
) -> Vec<RetiredRoot> {
    let secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let mut all: Vec<Stored> = stored;
    for root in newly_gone {
        // A root with a stored entry, even an ended one, keeps it: never retired anew.
        if !all.iter().any(|s| s.root.fingerprint == root.fingerprint) {
            all.push(Stored {
                root,
                retired_at: now,
                ended_at: None,
            });
        }
    }
    let mut out: Vec<RetiredRoot> = all
        .into_iter()
        .filter(|s| s.ended_at.is_none())
        .filter(|s| !published.contains(&s.root.fingerprint))
        .filter(|s| !distrust.contains(&s.root.fingerprint))
        .map(|s| RetiredRoot {
            until: s.retired_at.saturating_add(secs).min(s.root.not_after),
            retired_at: s.retired_at,
            root: s.root,
        })
        .filter(|r| r.until > now)
        .collect();
    // Most recently retired first for the cap, then (retiredAt, fingerprint) order.
    out.sort_by(|a, b| {
        (b.retired_at, &a.root.fingerprint).cmp(&(a.retired_at, &b.root.fingerprint))
    });
    out.truncate(MAX_RETAINED);
    out.sort_by(|a, b| {
        (a.retired_at, &a.root.fingerprint).cmp(&(b.retired_at, &b.root.fingerprint))
    });
    out
}

/// `status.retiredRoots` as written.
pub(crate) fn to_status(retained: &[RetiredRoot]) -> Value {
    Value::Array(
        retained
            .iter()
            .map(|r| {
                json!({
                    "fingerprint": r.root.fingerprint,
                    "pem": r.root.pem,
                    "retiredAt": timefmt::rfc3339(r.retired_at),
                    "until": timefmt::rfc3339(r.until),
                })
            })
            .collect(),
    )
}

/// `rootCA` of the federation's cached (last good) public document.
fn cached_root_ca(fed: &Federation) -> Option<&str> {
    fed.cached_public
        .as_ref()
        .and_then(|c| c.get("rootCA"))
        .and_then(Value::as_str)
}

/// The roots of the last good document that a valid fresh one no longer lists (by
/// fingerprint, whether or not the fresh document's copy would be accepted). Empty without a
/// fresh document: an outage retires nothing.
fn newly_gone(fed: &Federation, fresh: Option<&PublicMetadata>, own: &Own) -> Vec<RootCert> {
    let Some(fresh) = fresh else {
        return Vec::new();
    };
    let Some(old) = cached_root_ca(fed) else {
        return Vec::new();
    };
    if old == fresh.root_ca {
        return Vec::new();
    }
    let Ok(check) = certs::check_roots(old, own.now, own.root_fingerprints) else {
        return Vec::new();
    };
    let listed: BTreeSet<String> = certs::certificate_fingerprints(&fresh.root_ca)
        .into_iter()
        .collect();
    check
        .accepted
        .into_iter()
        .filter(|r| !listed.contains(&r.fingerprint))
        .collect()
}

/// What rotation is decided with, besides the federations' states.
pub(crate) struct Context<'a> {
    pub own: &'a Own<'a>,
    /// The entries we own in the trust object; `None` when it is not known (no snapshot, or
    /// an object that cannot be read): nothing is then concluded from it.
    pub installed: Option<&'a [TrustEntry]>,
    pub retention: Duration,
}

/// Decides rotation for every federation and applies it to its state: distrusted roots leave
/// `public.roots` (so nothing downstream trusts them), and `retention` says what is retained
/// and what to write. Only a root installed for the federation's trust domain is retained: a
/// `status.retiredRoots` entry is input, and one naming a root we never trusted for that peer
/// (written by hand, or kept from before a root was left out) must not add trust.
pub(crate) fn apply(
    states: &mut [FedState],
    fetched: &BTreeMap<String, FetchReport>,
    cx: &Context,
) {
    let own = cx.own;
    for st in states.iter_mut() {
        let fed = st.fed;
        let (distrust, bad) = fed
            .distrust_roots
            .as_deref()
            .map(parse_distrust)
            .unwrap_or_default();
        if bad > 0 {
            log::error!(target: "retention", "IstioFederation {}: annotation {DISTRUST_ROOTS_ANNOTATION}: {bad} entr{} not a SHA-256 fingerprint (64 hex digits) and ignored", fed.name, if bad == 1 { "y is" } else { "ies are" });
        }
        let mut distrusted = Vec::new();
        if let Some(p) = st.public.as_mut() {
            let (out, keep): (Vec<RootCert>, Vec<RootCert>) = std::mem::take(&mut p.roots)
                .into_iter()
                .partition(|r| distrust.contains(&r.fingerprint));
            p.roots = keep;
            distrusted = out;
        }
        for r in &distrusted {
            log::warn!(target: "retention", "IstioFederation {}: root {} ({}) is distrusted by annotation {DISTRUST_ROOTS_ANNOTATION}; not trusted", fed.name, r.fingerprint, r.subject);
        }
        let fresh = match fetched.get(&fed.name).and_then(|r| r.public.as_ref()) {
            Some(Attempt { result: Ok(p), .. }) => Some(p),
            _ => None,
        };
        let installed = |fp: &str| {
            cx.installed.is_none_or(|all| {
                all.iter()
                    .any(|e| e.fingerprint == fp && e.trust_domain == fed.trust_domain)
            })
        };
        let mut gone = newly_gone(fed, fresh, own);
        gone.retain(|r| installed(&r.fingerprint));
        let mut stored = read_stored(fed, own);
        stored.retain(|s| {
            let ok = installed(&s.root.fingerprint);
            if !ok {
                log::warn!(target: "retention", "IstioFederation {}: status.retiredRoots names root {} ({}), which is not installed for trust domain {}; dropped, not trusted", fed.name, s.root.fingerprint, s.root.subject, fed.trust_domain);
            }
            ok
        });
        // Only a stored root can be published again (a newly gone one is, by definition, not
        // in the document this run works from): most runs skip reading the bundle again.
        let published: BTreeSet<String> = match (&st.public, stored.is_empty()) {
            (Some(p), false) => certs::certificate_fingerprints(&p.root_ca)
                .into_iter()
                .collect(),
            _ => BTreeSet::new(),
        };
        let retained = decide(
            stored.clone(),
            gone.clone(),
            &published,
            &distrust,
            cx.retention,
            own.now,
        );
        let ended = ended_records(fed, &stored, &gone, &retained, (&published, &distrust), cx);
        for r in &gone {
            match retained
                .iter()
                .find(|k| k.root.fingerprint == r.fingerprint)
            {
                Some(k) => {
                    log::info!(target: "retention", "IstioFederation {}: the peer no longer publishes root {} ({}); it stays trusted until {} (ROOT_RETENTION)", fed.name, r.fingerprint, r.subject, timefmt::rfc3339(k.until))
                }
                None => {
                    log::info!(target: "retention", "IstioFederation {}: the peer no longer publishes root {} ({}); no longer trusted (ROOT_RETENTION is 0, or the root is distrusted)", fed.name, r.fingerprint, r.subject)
                }
            }
        }
        let mut record: Vec<RetiredRoot> = retained.iter().cloned().chain(ended).collect();
        record.sort_by(|a, b| {
            (a.retired_at, &a.root.fingerprint).cmp(&(b.retired_at, &b.root.fingerprint))
        });
        let written = to_status(&retained);
        let written_held = to_status(&record);
        let stored = fed
            .retired_roots
            .clone()
            .unwrap_or_else(|| Value::Array(Vec::new()));
        st.retention = Retention {
            retained,
            distrusted,
            distrust,
            bad_distrust_entries: bad,
            status_held: (written_held != stored).then_some(written_held),
            status: (written != stored).then_some(written),
        };
    }
}

/// The retentions that have ended but must stay recorded: those of roots the cached public
/// document still lists. That document stops advancing while the federation's trust is held
/// (`AwaitingAuthorizationPolicy`, `ObjectTooLarge`), and every run would otherwise find the
/// root "newly gone" against it again and retire it anew for another `ROOT_RETENTION` — a
/// retention that never ends. The record (its `until` in the past) is never trusted, and goes
/// once the cached document no longer lists the root. At most [`MAX_RETAINED`].
fn ended_records(
    fed: &Federation,
    stored: &[Stored],
    gone: &[RootCert],
    retained: &[RetiredRoot],
    (published, distrust): (&BTreeSet<String>, &BTreeSet<String>),
    cx: &Context,
) -> Vec<RetiredRoot> {
    // Most runs retire nothing and hold no record: no need to read the cached roots.
    if stored.is_empty() && gone.is_empty() {
        return Vec::new();
    }
    let own = cx.own;
    let secs = i64::try_from(cx.retention.as_secs()).unwrap_or(i64::MAX);
    let Some(cached) = cached_root_ca(fed) else {
        return Vec::new();
    };
    let cached: BTreeSet<String> = certs::certificate_fingerprints(cached)
        .into_iter()
        .collect();
    let newly = gone.iter().map(|root| Stored {
        root: root.clone(),
        retired_at: own.now,
        ended_at: Some(own.now),
    });
    let mut out: Vec<RetiredRoot> = Vec::new();
    for s in stored.iter().cloned().chain(newly) {
        let fp = &s.root.fingerprint;
        if !cached.contains(fp)
            || published.contains(fp)
            || distrust.contains(fp)
            || retained.iter().any(|r| &r.root.fingerprint == fp)
            || out.iter().any(|r| &r.root.fingerprint == fp)
        {
            continue;
        }
        let until = s.ended_at.unwrap_or_else(|| {
            s.retired_at
                .saturating_add(secs)
                .min(s.root.not_after)
                .min(own.now)
        });
        out.push(RetiredRoot {
            until,
            retired_at: s.retired_at,
            root: s.root,
        });
    }
    out.truncate(MAX_RETAINED);
    out
}

/// Every fingerprint any federation distrusts: removed from every trust entry this hook owns,
/// whichever federation (or trust domain) it came through — a compromised root is trusted
/// nowhere.
pub(crate) fn distrusted_anywhere(states: &[FedState]) -> BTreeSet<String> {
    states
        .iter()
        .flat_map(|st| st.retention.distrust.iter().cloned())
        .collect()
}

/// The sentence `TrustBundleReady` adds about rotation, "" when there is nothing to say.
/// Deterministic: the same state gives the same text in every run.
pub(crate) fn condition_text(r: &Retention) -> String {
    let mut out = String::new();
    if !r.retained.is_empty() {
        let n = r.retained.len();
        let mut untils: Vec<String> = r
            .retained
            .iter()
            .map(|x| timefmt::rfc3339(x.until))
            .collect();
        untils.sort();
        untils.dedup();
        out.push_str(&format!(
            " Retaining {n} root certificate{} the peer no longer publishes, until {}.",
            if n == 1 { "" } else { "s" },
            untils.join(", ")
        ));
    }
    if !r.distrusted.is_empty() {
        let n = r.distrusted.len();
        out.push_str(&format!(
            " Not trusting {n} published root certificate{} distrusted by annotation {DISTRUST_ROOTS_ANNOTATION}.",
            if n == 1 { "" } else { "s" }
        ));
    }
    if r.bad_distrust_entries > 0 {
        let n = r.bad_distrust_entries;
        out.push_str(&format!(
            " Ignored {n} entr{} of annotation {DISTRUST_ROOTS_ANNOTATION} that {} not a SHA-256 fingerprint.",
            if n == 1 { "y" } else { "ies" },
            if n == 1 { "is" } else { "are" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600;
    const NOW: i64 = 1_798_761_600; // 2027-01-01T00:00:00Z

    fn root(fp: &str, not_after: i64) -> RootCert {
        RootCert {
            pem: format!("PEM {fp}"),
            fingerprint: fp.to_string(),
            subject: format!("CN={fp}"),
            not_after,
        }
    }

    fn stored(fp: &str, retired_at: i64) -> Stored {
        Stored {
            root: root(fp, NOW + 365 * DAY),
            retired_at,
            ended_at: None,
        }
    }

    fn set(fps: &[&str]) -> BTreeSet<String> {
        fps.iter().map(|s| s.to_string()).collect()
    }

    fn fps(r: &[RetiredRoot]) -> Vec<&str> {
        r.iter().map(|x| x.root.fingerprint.as_str()).collect()
    }

    const H48: Duration = Duration::from_secs(2 * DAY as u64);

    #[test]
    fn a_root_gone_from_a_fresh_document_is_retained_for_the_retention() {
        let out = decide(
            vec![],
            vec![root("a", NOW + 365 * DAY)],
            &set(&[]),
            &set(&[]),
            H48,
            NOW,
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].retired_at, out[0].until), (NOW, NOW + 2 * DAY));
        // The next run, a day later: the same entry, the same end.
        let again = decide(
            vec![stored("a", NOW)],
            vec![],
            &set(&[]),
            &set(&[]),
            H48,
            NOW + DAY,
        );
        assert_eq!((again[0].retired_at, again[0].until), (NOW, NOW + 2 * DAY));
        // Seen gone again by a fresh document: it keeps its first retiredAt.
        let again = decide(
            vec![stored("a", NOW)],
            vec![root("a", NOW + 365 * DAY)],
            &set(&[]),
            &set(&[]),
            H48,
            NOW + DAY,
        );
        assert_eq!(again[0].retired_at, NOW);
    }

    #[test]
    fn retention_ends_at_its_end_or_the_roots_not_after_whichever_is_first() {
        assert!(decide(
            vec![stored("a", NOW)],
            vec![],
            &set(&[]),
            &set(&[]),
            H48,
            NOW + 2 * DAY
        )
        .is_empty());
        let short_lived = root("b", NOW + 3600);
        let out = decide(vec![], vec![short_lived], &set(&[]), &set(&[]), H48, NOW);
        assert_eq!(out[0].until, NOW + 3600);
        assert!(decide(
            vec![Stored {
                root: root("b", NOW + 3600),
                retired_at: NOW,
                ended_at: None,
            }],
            vec![],
            &set(&[]),
            &set(&[]),
            H48,
            NOW + 3600
        )
        .is_empty());
    }

    #[test]
    fn zero_retention_drops_at_once_also_what_was_retained() {
        let out = decide(
            vec![stored("a", NOW - DAY)],
            vec![root("b", NOW + 365 * DAY)],
            &set(&[]),
            &set(&[]),
            Duration::ZERO,
            NOW,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn republished_is_active_and_distrusted_is_gone() {
        let out = decide(
            vec![stored("a", NOW), stored("b", NOW), stored("c", NOW)],
            vec![],
            &set(&["a"]),
            &set(&["b"]),
            H48,
            NOW + 60,
        );
        assert_eq!(fps(&out), ["c"]);
    }

    #[test]
    fn at_most_max_retained_the_most_recent_win() {
        let many: Vec<Stored> = (0..MAX_RETAINED as i64 + 3)
            .map(|i| stored(&format!("{i:02}"), NOW - 100 + i))
            .collect();
        let out = decide(many, vec![], &set(&[]), &set(&[]), H48, NOW);
        assert_eq!(out.len(), MAX_RETAINED);
        assert_eq!(out[0].root.fingerprint, "03");
        assert_eq!(out[MAX_RETAINED - 1].root.fingerprint, "10");
    }

    #[test]
    fn distrust_annotation_reads_like_operators_write_it() {
        let a = "ab".repeat(32);
        let b = "0f".repeat(32);
        let colons: Vec<String> = (0..32).map(|_| "0F".to_string()).collect();
        let (set, bad) = parse_distrust(&format!(
            " {} ,\n{}, nope,,{}",
            a.to_uppercase(),
            colons.join(":"),
            "ab".repeat(31)
        ));
        assert_eq!(set.into_iter().collect::<Vec<_>>(), [b, a]);
        assert_eq!(bad, 2);
        assert_eq!(parse_distrust(""), (BTreeSet::new(), 0));
    }

    #[test]
    fn condition_text_is_deterministic_and_empty_when_nothing_happens() {
        assert_eq!(condition_text(&Retention::default()), "");
        let r = Retention {
            retained: decide(
                vec![stored("a", NOW), stored("b", NOW - DAY)],
                vec![],
                &set(&[]),
                &set(&[]),
                H48,
                NOW,
            ),
            bad_distrust_entries: 1,
            ..Default::default()
        };
        assert_eq!(
            condition_text(&r),
            " Retaining 2 root certificates the peer no longer publishes, until 2027-01-02T00:00:00Z, 2027-01-03T00:00:00Z. Ignored 1 entry of annotation federation.istio.deckhouse.io/distrust-roots that is not a SHA-256 fingerprint."
        );
    }
}
