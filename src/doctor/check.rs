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
            detail: shown(&detail.into()),
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
        self.hint = Some(shown(&hint.into()));
        self
    }
}

/// What replaces anything that looks like a bearer token in doctor's output.
pub(super) const REDACTED: &str = "[redacted: looks like a token]";

/// A text as doctor prints it. Details quote what peers send (response bodies, names, error
/// texts), and a hostile peer can put terminal control sequences there, or echo back the
/// bearer token we just sent it. So: every control or direction-changing character is
/// escaped (`\u{1b}`), and every word that looks like a JWT or one of its parts is replaced by
/// [`REDACTED`] — a dotted word one of whose parts starts like base64url JSON (`eyJ`), or a
/// part of 43 or more base64url characters that is not hexadecimal (an Ed25519 signature is
/// 86; fingerprints are hex and stay).
pub(crate) fn shown(text: &str) -> String {
    let token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=');
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if looks_like_token(word) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if token_char(c) {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out);
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn looks_like_token(word: &str) -> bool {
    word.split('.').any(|part| {
        let part = part.trim_end_matches('=');
        (part.starts_with("eyJ") && part.len() >= 8)
            || (part.len() >= 43
                && part.bytes().any(|b| b.is_ascii_uppercase())
                && part.bytes().any(|b| b.is_ascii_lowercase()))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_controls_and_redacts_token_lookalikes() {
        assert_eq!(
            shown("a\u{1b}[2Jb\u{7}\n\u{202e}c"),
            "a\\u{1b}[2Jb\\u{7}\\u{a}\\u{202e}c"
        );
        let sig = "Zm9vYmFyYmF6cXV4cXV1eHh5enp5MTIzNDU2Nzg5MEFCQ0RFRkdISUpLTE1OT1BR";
        let jwt = format!("eyJhbGciOiJFZERTQSJ9.eyJhdWQiOiJ4In0.{sig}");
        assert_eq!(
            shown(&format!("sent: Bearer {jwt}!")),
            format!("sent: Bearer {REDACTED}!")
        );
        assert_eq!(shown(&format!("sig {sig}")), format!("sig {REDACTED}"));
        assert_eq!(
            shown("payload eyJhdWQiOiJ4In0"),
            format!("payload {REDACTED}")
        );
        // What doctor says itself stays: hosts, UUIDs, hex fingerprints, URLs.
        for plain in [
            "alliance-healthcheck-uuid-cluster-b-with-a-long-name.d8-istio.svc.b.local",
            "4240b0727f5e04bfea03a891c3add9e49dad85ed081d53ec61410803b16a58ee",
            "deadbeef-0000-4000-8000-000000000000",
            "https://127.0.0.1:8443/metadata/private/federation.json (HTTP 401)",
        ] {
            assert_eq!(shown(plain), plain);
        }
    }
}
