//! Text helpers shared by every program: input-controlled strings quoted in messages are
//! bounded, and base64 fields that carry text are decoded in one place.

use base64::Engine as _;

/// How [`shorten`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Bytes,
    Chars,
}

/// A bound on quoted text: text of at most `max` units is shown whole; longer text is cut to
/// `keep` units and followed by `ellipsis`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    unit: Unit,
    max: usize,
    keep: usize,
    ellipsis: &'static str,
}

impl Limit {
    /// Counted in bytes; a cut never splits a character (it moves back to the boundary).
    pub(crate) const fn bytes(max: usize, keep: usize, ellipsis: &'static str) -> Limit {
        Limit {
            unit: Unit::Bytes,
            max,
            keep,
            ellipsis,
        }
    }

    /// Counted in characters; longer text keeps its first `max`.
    pub(crate) const fn chars(max: usize, ellipsis: &'static str) -> Limit {
        Limit {
            unit: Unit::Chars,
            max,
            keep: max,
            ellipsis,
        }
    }
}

/// `s` within `limit`: keeps hostile input from bloating messages and log lines.
pub(crate) fn shorten(s: &str, limit: Limit) -> String {
    match limit.unit {
        Unit::Bytes if s.len() <= limit.max => s.to_string(),
        Unit::Bytes => {
            let mut end = limit.keep.min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}{}", &s[..end], limit.ellipsis)
        }
        Unit::Chars if s.chars().count() <= limit.max => s.to_string(),
        Unit::Chars => {
            let mut out: String = s.chars().take(limit.keep).collect();
            out.push_str(limit.ellipsis);
            out
        }
    }
}

/// Why a base64 field does not hold text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unb64Error {
    /// Not standard base64 (the decoder's reason).
    Base64(String),
    NotUtf8,
}

/// The UTF-8 text a (standard, padded) base64 field holds, surrounding whitespace ignored: how
/// Secret `data` values are read.
pub(crate) fn unb64(b64: &str) -> Result<String, Unb64Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| Unb64Error::Base64(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| Unb64Error::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortening_keeps_short_text_and_cuts_on_character_boundaries() {
        let quoted = Limit::bytes(80, 77, "...");
        let short = "a".repeat(80);
        assert_eq!(shorten(&short, quoted), short);
        let long = "a".repeat(81);
        assert_eq!(shorten(&long, quoted), format!("{}...", "a".repeat(77)));
        // 'é' is two bytes: byte 77 is inside the 39th, so the cut moves back to 76.
        let wide = "é".repeat(41);
        assert_eq!(shorten(&wide, quoted), format!("{}...", "é".repeat(38)));
        let log = Limit::bytes(4, 4, "…");
        assert_eq!(shorten("abcd", log), "abcd");
        assert_eq!(shorten("abcde", log), "abcd…");
        let label = Limit::chars(3, "…");
        assert_eq!(shorten("ééé", label), "ééé");
        assert_eq!(shorten("éééé", label), "ééé…");
        assert_eq!(shorten("abcd", Limit::chars(3, "")), "abc");
    }

    #[test]
    fn base64_text() {
        assert_eq!(unb64(" aGk=\n"), Ok("hi".to_string()));
        assert!(matches!(unb64("!!"), Err(Unb64Error::Base64(_))));
        assert_eq!(unb64("/w=="), Err(Unb64Error::NotUtf8));
    }
}
