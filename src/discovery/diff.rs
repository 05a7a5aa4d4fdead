//! The diff of the desired Istio objects against the observed ones: only what changes is
//! written, and only objects the hook owns are ever deleted.

use crate::discovery::services::istio_objects::{Desired, Observed, Snapshot};
use crate::protocol::labels::{DELETION_HELD_ANNOTATION, FEDERATIONS_ANNOTATION};
use serde_json::Value;
use std::collections::BTreeSet;

/// A manifest discovery writes: one of its typed Istio objects, or a plain JSON object (the
/// mesh-config ConfigMap it creates).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Manifest {
    Json(Value),
    Istio(Box<Desired>),
}

/// An operation of a discovery run.
pub(crate) type Operation = crate::hook::operations::Operation<Manifest>;

/// Whether `observed` already is `desired` as far as we care: same spec, and every label and
/// annotation we set present with our value (other writers' labels are fine). An object still
/// marked by a mass-deletion hold that ended is rewritten without the mark
/// ([`crate::discovery::mass_deletion`]).
fn matches(desired: &Desired, observed: &Observed) -> bool {
    observed.spec.as_ref() == Some(&desired.spec)
        && !observed.annotations.contains_key(DELETION_HELD_ANNOTATION)
        && desired
            .metadata
            .labels
            .0
            .iter()
            .all(|(k, v)| observed.labels.get(k) == Some(v))
        && desired
            .metadata
            .annotations
            .0
            .iter()
            .all(|(k, v)| observed.annotations.get(k) == Some(v))
}

/// The object to PUT: desired, plus labels and annotations other writers put on the live
/// object (CreateOrUpdate is a full update and would otherwise drop them). Server-owned
/// metadata and `status` are never part of a typed object.
fn with_foreign_metadata(mut desired: Desired, observed: &Observed) -> Desired {
    for (ours, theirs) in [
        (&mut desired.metadata.labels, &observed.labels),
        (&mut desired.metadata.annotations, &observed.annotations),
    ] {
        for (k, v) in &theirs.0 {
            if !ours.contains_key(k)
                && !k.starts_with("kubectl.kubernetes.io/")
                && k != DELETION_HELD_ANNOTATION
            {
                ours.0.push((k.clone(), v.clone()));
            }
        }
    }
    desired
}

/// The write (if any) that makes the object named like `desired` match it.
pub(crate) fn diff_one(desired: Desired, observed: Option<&Observed>) -> Option<Operation> {
    match observed {
        Some(o) if matches(&desired, o) => None,
        Some(o) => Some(Operation::CreateOrUpdate(Manifest::Istio(Box::new(
            with_foreign_metadata(desired, o),
        )))),
        None => Some(Operation::CreateOrUpdate(Manifest::Istio(Box::new(
            desired,
        )))),
    }
}

/// Which deletes of ServiceEntries and DestinationRules this run may make. Objects of a
/// federation that cannot be read this run (spec unreadable, cached metadata unusable, items
/// dropped from its private metadata) are kept as they are: odd input never deletes a
/// ServiceEntry. An unreadable federation without a name could be any of them, so it freezes
/// every delete. New and changed objects are written either way; only deletes are held back.
#[derive(Debug, Default)]
pub(crate) struct DeletePolicy<'a> {
    freeze_all: bool,
    held: BTreeSet<&'a str>,
}

impl<'a> DeletePolicy<'a> {
    /// `broken` names the federations whose spec cannot be read (`""` when unnamed); `held`
    /// the readable ones whose deletes are held back.
    pub(crate) fn new(broken: &'a [String], held: impl IntoIterator<Item = &'a str>) -> Self {
        let mut set: BTreeSet<&str> = broken.iter().map(String::as_str).collect();
        let freeze_all = set.contains("");
        set.extend(held);
        DeletePolicy {
            freeze_all,
            held: set,
        }
    }

    /// Whether `o` must survive although no record wants it: every delete is frozen, or one of
    /// the federations named in its federations annotation is held back.
    pub(crate) fn keeps(&self, o: &Observed) -> bool {
        self.freeze_all
            || (!self.held.is_empty()
                && o.annotations
                    .get(FEDERATIONS_ANNOTATION)
                    .is_some_and(|a| a.split(',').any(|f| self.held.contains(f))))
    }
}

/// What a snapshot's deletes are pinned to: the one kind it is of and the namespace the hook
/// writes to. Whatever else a snapshot delivers is never deleted (docs/security.md).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// `ServiceEntry` or `DestinationRule`, exactly.
    pub kind: &'a str,
    /// `FEDERATION_NAMESPACE`.
    pub namespace: &'a str,
}

impl Scope<'_> {
    /// Whether `o` is an object of this scope: the kind, the `networking.istio.io` API group
    /// and the namespace, exactly.
    pub(crate) fn contains(&self, o: &Observed) -> bool {
        o.kind == self.kind
            && o.namespace == self.namespace
            && o.api_version
                .split_once('/')
                .is_some_and(|(group, version)| {
                    group == "networking.istio.io" && !version.is_empty()
                })
    }
}

/// The observed objects of ours that are not `wanted` and not kept by `keep`: what a run
/// would delete, before the scope check. One selection for [`deletes`] and for the
/// mass-deletion guard's count of what a run would remove.
pub(crate) fn unwanted_managed<'a>(
    observed: Option<&'a Snapshot>,
    wanted: &'a BTreeSet<String>,
    keep: &'a dyn Fn(&Observed) -> bool,
) -> impl Iterator<Item = Observed> + 'a {
    observed
        .into_iter()
        .flat_map(|s| s.objects_except(wanted))
        .filter(move |o| o.is_managed() && !keep(o))
}

/// Deletes for the observed managed objects that are not `wanted`. `observed == None` means
/// the run has no snapshot of that kind: nothing is deleted, because we cannot know what
/// exists. `keep` names objects that must survive even if not wanted (objects of a federation
/// that cannot be read this run). Objects without our managed-by label, or outside `scope`,
/// are never deleted.
pub(crate) fn deletes(
    observed: Option<&Snapshot>,
    wanted: &BTreeSet<String>,
    keep: &dyn Fn(&Observed) -> bool,
    scope: &Scope,
) -> Vec<Operation> {
    let mut out = Vec::new();
    for o in unwanted_managed(observed, wanted, keep) {
        if !scope.contains(&o) {
            log::warn!(target: "diff", "managed object {:?} {:?} {}/{} is not a {} of networking.istio.io in {}; not deleted", o.api_version, o.kind, o.namespace, o.name, scope.kind, scope.namespace);
            continue;
        }
        out.push(Operation::Delete {
            api_version: o.api_version,
            kind: o.kind,
            namespace: o.namespace,
            name: o.name,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Diffs desired managed objects of one kind against the observed ones: (writes, deletes).
    fn diff_managed(
        desired: Vec<Desired>,
        observed: Option<&Snapshot>,
        keep: &dyn Fn(&Observed) -> bool,
    ) -> (Vec<Operation>, Vec<Operation>) {
        let mut wanted = std::collections::BTreeSet::new();
        let mut writes = Vec::new();
        for d in desired {
            let name = d.metadata.name.clone();
            let current = observed.and_then(|s| s.get(&name));
            writes.extend(diff_one(d, current.as_ref()));
            wanted.insert(name);
        }
        (writes, deletes(observed, &wanted, keep, &DR_SCOPE))
    }
    use crate::protocol::labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
    use serde_json::json;

    const DR_SCOPE: Scope = Scope {
        kind: "DestinationRule",
        namespace: "d8-istio",
    };

    #[test]
    fn deletes_are_pinned_to_our_kind_group_and_namespace() {
        let ours = observed("stale", true, "s.b");
        let mut foreign_ns = observed("elsewhere", true, "e.b");
        foreign_ns["metadata"]["namespace"] = json!("default");
        let mut service = observed("svc", true, "x.b");
        service["apiVersion"] = json!("v1");
        service["kind"] = json!("Service");
        let mut other_group = observed("lookalike", true, "l.b");
        other_group["apiVersion"] = json!("networking.istio.io.evil.example/v1");
        let mut other_kind = observed("se", true, "k.b");
        other_kind["kind"] = json!("ServiceEntry");
        let mut no_version = observed("nover", true, "n.b");
        no_version["apiVersion"] = json!("networking.istio.io");
        let obs = Snapshot::from_values(&[
            ours,
            foreign_ns,
            service,
            other_group,
            other_kind,
            no_version,
        ]);
        let d = deletes(
            Some(&obs),
            &std::collections::BTreeSet::new(),
            &|_| false,
            &DR_SCOPE,
        );
        let names: Vec<Value> = d.iter().map(|op| op.to_json()["name"].clone()).collect();
        assert_eq!(names, [json!("stale")]);
    }

    fn observed(name: &str, managed: bool, host: &str) -> Value {
        let mut labels = json!({"team": "x"});
        if managed {
            labels[MANAGED_BY_LABEL] = json!(MANAGED_BY_VALUE);
        }
        let v = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": "d8-istio", "labels": labels, "resourceVersion": "5", "uid": "u"},
            "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}, "status": {}});
        v
    }

    fn desired(name: &str, host: &str) -> Desired {
        use crate::discovery::services::istio_objects::*;
        Desired {
            api_version: "networking.istio.io/v1beta1".into(),
            kind: "DestinationRule",
            metadata: Meta {
                name: name.into(),
                namespace: "d8-istio".into(),
                labels: OrderedMap(vec![(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into())]),
                annotations: OrderedMap(vec![]),
            },
            spec: Spec::DestinationRule(DrSpec {
                host: host.into(),
                traffic_policy: DrPolicy {
                    tls: DrTls {
                        mode: "ISTIO_MUTUAL".into(),
                    },
                    outlier_detection: None,
                },
                export_to: None,
            }),
        }
    }

    #[test]
    fn unchanged_objects_produce_nothing_and_unmanaged_are_never_deleted() {
        let obs = Snapshot::from_values(&[
            observed("a", true, "a.b"),
            observed("foreign", false, "f.b"),
            observed("stale", true, "s.b"),
        ]);
        let (w, d) = diff_managed(vec![desired("a", "a.b")], Some(&obs), &|_| false);
        assert!(w.is_empty());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_json()["name"], "stale");
        // `keep` holds a delete back.
        let (_, d) = diff_managed(vec![], Some(&obs), &|o| o.name == "stale");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_json()["name"], "a");
    }

    #[test]
    fn updates_keep_foreign_labels_and_carry_no_server_fields() {
        let obs = Snapshot::from_values(&[observed("a", true, "old.b")]);
        let (w, d) = diff_managed(vec![desired("a", "new.b")], Some(&obs), &|_| false);
        assert!(d.is_empty());
        let o = w[0].to_json();
        assert_eq!(o["operation"], "CreateOrUpdate");
        assert_eq!(o["object"]["metadata"]["labels"]["team"], "x");
        assert!(o["object"]["metadata"].get("resourceVersion").is_none());
        assert!(o["object"]["metadata"].get("uid").is_none());
        assert!(o["object"].get("status").is_none());
        assert_eq!(o["object"]["spec"]["host"], "new.b");
    }

    fn annotated(name: &str, federations: Option<&str>) -> Observed {
        let mut meta = json!({"name": name, "namespace": "d8-istio",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}});
        if let Some(f) = federations {
            meta["annotations"] = json!({FEDERATIONS_ANNOTATION: f});
        }
        let raw = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry", "metadata": meta});
        Observed::parse(&raw.to_string()).unwrap()
    }

    #[test]
    fn deletes_are_held_back_only_for_the_federations_named() {
        let broken = vec!["x".to_string()];
        let policy = DeletePolicy::new(&broken, ["b"]);
        assert!(policy.keeps(&annotated("of-x", Some("x"))));
        assert!(policy.keeps(&annotated("of-a-and-b", Some("a,b"))));
        assert!(!policy.keeps(&annotated("of-a", Some("a"))));
        assert!(!policy.keeps(&annotated("unannotated", None)));
        // Nothing broken, nothing held: every unwanted managed object may go.
        let none = DeletePolicy::new(&[], []);
        assert!(!none.keeps(&annotated("of-x", Some("x"))));
    }

    #[test]
    fn an_unnamed_broken_federation_freezes_every_delete() {
        let broken = vec!["".to_string()];
        let policy = DeletePolicy::new(&broken, []);
        assert!(policy.keeps(&annotated("of-a", Some("a"))));
        assert!(policy.keeps(&annotated("unannotated", None)));
        let obs = Snapshot::from_values(&[observed("stale", true, "s.b")]);
        let keep = |o: &Observed| policy.keeps(o);
        assert!(deletes(
            Some(&obs),
            &std::collections::BTreeSet::new(),
            &keep,
            &DR_SCOPE
        )
        .is_empty());
    }

    #[test]
    fn unknown_observed_state_never_deletes() {
        let (w, d) = diff_managed(vec![], None, &|_| false);
        assert!(w.is_empty() && d.is_empty());
    }
}
