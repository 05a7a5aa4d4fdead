//! istio-federation-hook: a shell-operator hook that federates Istio meshes across clusters,
//! wire-compatible with Deckhouse's `IstioFederation`.
//!
//! Three programs share two contracts (docs/ARCHITECTURE.md):
//! - [`hook`]: the shell-operator contract — binding context, settings, operations, metrics,
//!   logging — with nothing Istio-specific;
//! - [`protocol`]: Deckhouse's wire contract — metadata documents and their validation, request
//!   tokens, certificates, the IstioFederation object, the Secrets both sides share;
//! - [`discovery`], [`export`], [`serve`]: the programs. Each has a pure core and a thin
//!   imperative shell (`run`); only the shells touch files, the network and the clock.
//! - [`doctor`] and [`discovery::plan`]: operators' tools built on the discovery hook's own
//!   code (docs/operating.md).
#![forbid(unsafe_code)]
#![warn(clippy::too_many_lines)]

/// Declares a fieldless enum together with `ALL`, every variant in declaration order. A variant
/// cannot be added without being listed, so whatever walks `ALL` — the docs tests, which hold
/// docs/reference/ to the code — sees every one.
macro_rules! enum_with_all {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            #[allow(dead_code)]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant),+];
        }
    };
}

#[cfg(test)]
mod docs_tests;

pub mod discovery;
pub mod doctor;
pub mod export;
pub mod hook;
pub mod protocol;
pub mod serve;
