//! PEM text in and out: splitting a peer's bundle into blocks (with each block's byte span, so
//! a block can be removed cleanly), decoding bodies as leniently as Go's `encoding/pem`, and
//! rendering DER canonically so equal certificates are byte-identical whatever formatting a
//! peer used.

use super::rejection::shorten;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Base64 decoder for PEM bodies. As lenient as Go's `encoding/pem` (padding optional,
/// non-zero trailing bits accepted), because peers' PEM comes from Go and OpenSSL alike.
pub(super) const PEM_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One PEM block found in a text. `start..end` is the byte span in the input covering the
/// `-----BEGIN …-----` line through the end of the `-----END …-----` line INCLUDING the line
/// terminator that follows it (if any), so removing that span removes the block cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label between `BEGIN ` and the closing dashes, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
    /// Byte offset of the start of the BEGIN line (including any leading whitespace on it).
    pub start: usize,
    /// Byte offset just past the END line and its line terminator.
    pub end: usize,
}

/// Splits a text into PEM blocks. Text outside blocks is ignored (comments, blank lines).
/// Tolerates CRLF, leading/trailing whitespace on lines, base64 bodies with arbitrary line length.
/// Errors: BEGIN without matching END, mismatched labels, invalid base64 — with a message that
/// says which block (1-based index) and what is wrong.
pub fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    scan_pem(text, true)
}

/// A BEGIN line seen and not yet closed.
pub(super) struct OpenBlock {
    index: usize,
    line: usize,
    label: String,
    start: usize,
    body: String,
}

/// Shared scanner. In strict mode the first malformed block is an error; in lenient mode
/// malformed blocks are skipped (like Go's `pem.Decode` does), which suits our own bundles.
pub(super) fn scan_pem(text: &str, strict: bool) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<OpenBlock> = None;
    let mut count = 0usize;
    let mut pos = 0usize;

    for (line_no, raw_line) in text.split_inclusive('\n').enumerate() {
        let line_start = pos;
        pos += raw_line.len();
        let content = raw_line.trim();

        if let Some(label) = armor_label(content, "-----BEGIN ") {
            if let Some(unclosed) = open.take() {
                if strict {
                    return Err(unclosed_message(&unclosed));
                }
            }
            count += 1;
            open = Some(OpenBlock {
                index: count,
                line: line_no + 1,
                label: label.to_string(),
                start: line_start,
                body: String::new(),
            });
            continue;
        }

        if let Some(end_label) = armor_label(content, "-----END ") {
            let Some(block) = open.take() else {
                // A stray END outside any block is ignored like any other outside text.
                continue;
            };
            if end_label != block.label {
                if strict {
                    return Err(format!(
                        "PEM block {} (line {}): BEGIN {} is closed by END {}",
                        block.index,
                        block.line,
                        shorten(&block.label),
                        shorten(end_label)
                    ));
                }
                continue;
            }
            match PEM_BASE64.decode(block.body.as_bytes()) {
                Ok(der) => blocks.push(PemBlock {
                    label: block.label,
                    der,
                    start: block.start,
                    end: pos,
                }),
                Err(e) => {
                    if strict {
                        return Err(format!(
                            "PEM block {} (line {}, {}): invalid base64: {}",
                            block.index,
                            block.line,
                            shorten(&block.label),
                            e
                        ));
                    }
                }
            }
            continue;
        }

        // Body line (text outside blocks is ignored). Go's encoding/pem drops all spaces and
        // tabs inside the body; so do we.
        if let Some(block) = open.as_mut() {
            block
                .body
                .extend(content.chars().filter(|c| !c.is_whitespace()));
        }
    }

    if let Some(unclosed) = open {
        if strict {
            return Err(unclosed_message(&unclosed));
        }
    }
    Ok(blocks)
}

/// Returns the label of an armor line such as `-----BEGIN X-----` for `prefix` `-----BEGIN `.
pub(super) fn armor_label<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

pub(super) fn unclosed_message(block: &OpenBlock) -> String {
    format!(
        "PEM block {} (line {}): BEGIN {} has no matching END",
        block.index,
        block.line,
        shorten(&block.label)
    )
}

/// Renders DER as a canonical PEM block: `-----BEGIN {label}-----\n`, base64 (standard alphabet,
/// padded) wrapped at 64 columns, `-----END {label}-----\n`.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for (i, c) in body.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    if !body.is_empty() {
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}
