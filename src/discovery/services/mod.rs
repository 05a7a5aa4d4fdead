//! The imported services: [`import_policy`] decides which remote hosts a federation imports and
//! for which namespaces, [`service_entries`] turns them into ServiceEntries and
//! DestinationRules, typed in [`istio_objects`] as written and as read back; [`visibility`]
//! says when the mesh config hides them.

pub(crate) mod import_policy;
pub(crate) mod istio_objects;
pub(crate) mod service_entries;
pub(crate) mod visibility;
