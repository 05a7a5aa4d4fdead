//! What every step of the walk returns: a [`Check`] (ok, warn, fail or skip, with a hint for
//! what to fix), or a [`Stop`] when the steps after it cannot run. Apart from the steps so each
//! step module needs only this, never another step.

use serde::Serialize;
use std::time::Duration;

/// A root or certificate expiring within this many seconds is a warning.
pub(super) const EXPIRY_WARNING: i64 = 30 * 24 * 3600;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    pub(super) fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            hint: None,
        }
    }

    pub(super) fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail)
    }

    pub(super) fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Skip, detail)
    }

    pub(super) fn fail(
        name: &'static str,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Fail, detail).hint(hint)
    }

    pub(super) fn warn(
        name: &'static str,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Warn, detail).hint(hint)
    }

    pub(super) fn hint(mut self, hint: impl Into<String>) -> Check {
        self.hint = Some(hint.into());
        self
    }
}

/// Why the walk ended early: a step failed (every later step is then skipped, since each
/// needs the one before it), or the invocation itself is unusable.
pub(super) enum Stop {
    Failed { check: Check, why: &'static str },
    Invocation(String),
}

impl Stop {
    pub(super) fn failed(check: Check, why: &'static str) -> Stop {
        Stop::Failed { check, why }
    }
}

pub(super) fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
