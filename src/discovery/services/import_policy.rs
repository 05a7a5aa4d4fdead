//! The import policy of a federation (`spec.import`, docs/sharing.md): which
//! of the hosts a peer offers are imported, and in which namespaces the ServiceEntries and
//! DestinationRules made from them are visible.
//!
//! Two decisions, both pure:
//! - per federation, before its services are merged: [`apply`] keeps the hosts its policy
//!   admits and counts the others (a host left out by policy is the operator's choice, not
//!   odd input: its objects are deleted like those of a host the peer stopped exporting);
//! - per record, after the merge: [`export_to`], the union of the `exportTo` of every
//!   federation the record was built from (unset, visible everywhere, wins).

use crate::discovery::services::service_entries::Record;
use crate::discovery::state::FedState;
use crate::protocol::federation::ImportSpec;
use crate::protocol::metadata::PrivateMetadata;
use std::collections::{BTreeMap, BTreeSet};

/// Whether `host` matches `glob`: `*` matches any run of characters (dots included, possibly
/// none), every other character only itself, case-sensitively. Linear in practice: on a
/// mismatch only the last `*` is retried, one character further.
pub(crate) fn glob_matches(glob: &str, host: &str) -> bool {
    let (g, h) = (glob.as_bytes(), host.as_bytes());
    let (mut gi, mut hi) = (0, 0);
    // Where the last `*` was, and the host position it currently stands for the end of.
    let mut star: Option<(usize, usize)> = None;
    while hi < h.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, hi));
            gi += 1;
        } else if gi < g.len() && g[gi] == h[hi] {
            gi += 1;
            hi += 1;
        } else if let Some((sg, sh)) = star {
            gi = sg + 1;
            hi = sh + 1;
            star = Some((sg, sh + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == b'*')
}

/// What a federation's policy says about one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Imported,
    /// `spec.import.hosts` is set and no glob of it matches.
    NotListed,
    /// A glob of `spec.import.excludeHosts` matches (whatever `hosts` says).
    Excluded,
}

impl Verdict {
    /// The field that left the host out, for messages ("excluded by …").
    pub(crate) fn field(self) -> Option<&'static str> {
        match self {
            Verdict::Imported => None,
            Verdict::NotListed => Some("spec.import.hosts"),
            Verdict::Excluded => Some("spec.import.excludeHosts"),
        }
    }
}

pub(crate) fn verdict(spec: &ImportSpec, host: &str) -> Verdict {
    if spec.exclude_hosts.iter().any(|g| glob_matches(g, host)) {
        return Verdict::Excluded;
    }
    match &spec.hosts {
        Some(globs) if !globs.iter().any(|g| glob_matches(g, host)) => Verdict::NotListed,
        _ => Verdict::Imported,
    }
}

/// Keeps in `private` only the services whose host `spec` admits; returns how many distinct
/// hosts it left out (the `ServicesImported` message counts them).
pub(crate) fn apply(spec: &ImportSpec, private: &mut PrivateMetadata) -> usize {
    if spec.hosts.is_none() && spec.exclude_hosts.is_empty() {
        return 0;
    }
    let mut left_out = BTreeSet::new();
    private.public_services.retain(|s| {
        let keep = verdict(spec, &s.hostname) == Verdict::Imported;
        if !keep {
            left_out.insert(s.hostname.clone());
        }
        keep
    });
    left_out.len()
}

/// The `exportTo` of a record built from federations with the given `exportTo`s: the union
/// of their entries, and unset as soon as one of them is unset (unset is every namespace).
/// Written canonically so merged and observed objects compare equal and Istio accepts them:
/// `*` alone if any says `*`; else sorted, each once, the federation namespace itself written
/// `.` (Istio counts `.` and the object's own namespace as one entry and refuses both).
pub(crate) fn export_to<'a>(
    of_federations: impl IntoIterator<Item = Option<&'a [String]>>,
    namespace: &str,
) -> Option<Vec<String>> {
    let mut union = BTreeSet::new();
    for entries in of_federations {
        for e in entries? {
            union.insert(if e == namespace { "." } else { e.as_str() });
        }
    }
    if union.is_empty() {
        return None; // no federation at all: nothing to restrict
    }
    if union.contains("*") {
        return Some(vec!["*".to_string()]);
    }
    Some(union.into_iter().map(str::to_string).collect())
}

/// Sets every record's `exportTo` from the federations it was built from (see [`export_to`]).
pub(crate) fn set_export_to(records: &mut [Record], states: &[FedState], namespace: &str) {
    let of: BTreeMap<&str, Option<&[String]>> = states
        .iter()
        .map(|st| {
            let e = st
                .fed
                .import
                .as_ref()
                .ok()
                .and_then(|i| i.export_to.as_deref());
            (st.fed.name.as_str(), e)
        })
        .collect();
    if of.values().all(Option::is_none) {
        return; // the common case: no federation restricts visibility
    }
    for r in records {
        r.export_to = export_to(
            r.federations
                .iter()
                .map(|f| of.get(f.as_str()).copied().flatten()),
            namespace,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::metadata::{PublicService, ServicePort};

    #[test]
    fn globs_match_runs_of_any_characters_and_everything_else_literally() {
        let yes = [
            ("db.*", "db.prod.svc.b.local"),
            ("*.prod.svc.b.local", "web.prod.svc.b.local"),
            ("*.prod.svc.b.local", "a.b.prod.svc.b.local"),
            ("*", "anything.b.local"),
            ("web.prod.svc.b.local", "web.prod.svc.b.local"),
            ("*web*", "web"),
            ("db*.b.local", "db.b.local"),
            ("a*b*c", "aXbYbZc"),
            ("a*a*a", "aaa"),
            ("**.b.local", "x.b.local"),
        ];
        for (g, h) in yes {
            assert!(glob_matches(g, h), "{g} should match {h}");
        }
        let no = [
            ("db.*", "db"),
            ("db.*", "mydb.prod.svc.b.local"),
            ("*.prod.svc.b.local", "prod.svc.b.local"),
            ("*.prod.svc.b.local", "web.prod.svc.b.local.evil"),
            ("web.prod.svc.b.local", "web.prod.svc.b.locals"),
            ("web.prod", "web-prod"),
            ("DB.*", "db.prod.svc.b.local"),
            ("a*b*c", "aXbYbZ"),
            ("", "a"),
        ];
        for (g, h) in no {
            assert!(!glob_matches(g, h), "{g} should not match {h}");
        }
        // Many stars against a long host: retries stay bounded (this would take seconds if
        // every star were retried at every position).
        let host = format!("{}.b.local", "a".repeat(240));
        let glob = format!("{}b", "*a".repeat(60));
        assert!(!glob_matches(&glob, &host));
    }

    fn spec(hosts: Option<&[&str]>, exclude: &[&str]) -> ImportSpec {
        ImportSpec {
            hosts: hosts.map(|h| h.iter().map(|s| s.to_string()).collect()),
            exclude_hosts: exclude.iter().map(|s| s.to_string()).collect(),
            export_to: None,
        }
    }

    #[test]
    fn exclusion_wins_over_listing_and_an_empty_list_imports_nothing() {
        let s = spec(Some(&["db.*", "web.*"]), &["db.admin.*"]);
        assert_eq!(verdict(&s, "db.prod.b.local"), Verdict::Imported);
        assert_eq!(verdict(&s, "db.admin.b.local"), Verdict::Excluded);
        assert_eq!(verdict(&s, "cache.prod.b.local"), Verdict::NotListed);
        assert_eq!(Verdict::Excluded.field(), Some("spec.import.excludeHosts"));
        assert_eq!(verdict(&spec(None, &[]), "x.b.local"), Verdict::Imported);
        assert_eq!(
            verdict(&spec(Some(&[]), &[]), "x.b.local"),
            Verdict::NotListed
        );
        assert_eq!(
            verdict(&spec(None, &["x.*"]), "x.b.local"),
            Verdict::Excluded
        );
    }

    fn private(hosts: &[&str]) -> PrivateMetadata {
        PrivateMetadata {
            public_services: hosts
                .iter()
                .map(|h| PublicService {
                    hostname: h.to_string(),
                    ports: vec![ServicePort {
                        name: "http".into(),
                        port: 80,
                        protocol: "HTTP",
                    }],
                })
                .collect(),
            ingress_gateways: vec![],
            dropped: vec![],
            carried_over: 0,
        }
    }

    #[test]
    fn apply_keeps_admitted_hosts_and_counts_each_left_out_host_once() {
        // A host listed twice by the peer (two port sets) is one host left out.
        let mut p = private(&["db.b.local", "web.b.local", "db.b.local", "cache.b.local"]);
        let left_out = apply(&spec(Some(&["web.*", "cache.*"]), &["cache.*"]), &mut p);
        assert_eq!(left_out, 2);
        let kept: Vec<&str> = p
            .public_services
            .iter()
            .map(|s| s.hostname.as_str())
            .collect();
        assert_eq!(kept, ["web.b.local"]);
        assert!(
            p.dropped.is_empty(),
            "a policy drop is not a validation drop"
        );
        // No policy: nothing changes.
        let mut p = private(&["db.b.local"]);
        assert_eq!(apply(&ImportSpec::default(), &mut p), 0);
        assert_eq!(p.public_services.len(), 1);
    }

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn export_to_is_the_union_and_unset_wins() {
        let (a, b) = (list(&["prod", "."]), list(&["dev", "prod"]));
        let union = export_to([Some(a.as_slice()), Some(b.as_slice())], "d8-istio");
        assert_eq!(union.unwrap(), [".", "dev", "prod"]);
        assert_eq!(export_to([Some(a.as_slice()), None], "d8-istio"), None);
        assert_eq!(export_to([None, Some(b.as_slice())], "d8-istio"), None);
        let star = list(&["*"]);
        let union = export_to([Some(a.as_slice()), Some(star.as_slice())], "d8-istio");
        assert_eq!(union.unwrap(), ["*"]);
        // The federation namespace and `.` are one entry, written `.`.
        let ns = list(&["d8-istio", "prod"]);
        let union = export_to([Some(a.as_slice()), Some(ns.as_slice())], "d8-istio");
        assert_eq!(union.unwrap(), [".", "prod"]);
        // One federation: its own list, sorted.
        let one = list(&["prod", "dev"]);
        assert_eq!(
            export_to([Some(one.as_slice())], "d8-istio").unwrap(),
            ["dev", "prod"]
        );
        assert_eq!(export_to(std::iter::empty(), "d8-istio"), None);
    }
}
