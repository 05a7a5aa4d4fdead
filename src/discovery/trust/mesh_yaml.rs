//! Surgical edits of the MeshConfig YAML (docs/how-it-works.md, "Trust bundle modes"): the `mesh`
//! text of the mesh-config ConfigMap is never re-serialised. [`MeshDoc::parse`] locates the
//! top-level
//! `caCertificates` node in the text; [`MeshDoc::rewrite`] changes only that node's bytes
//! (appending the node when it is absent, removing the key when no entry is left) and then
//! parses its own output again to prove that every other value, and every kept entry, reads the
//! same as before. Every byte outside the node — comments, odd scalars, anchors — stays as it was.
//!
//! istiod reads this text with Go's YAML 1.1 parser (`sigs.k8s.io/yaml`), which reads plain
//! scalars differently from YAML 1.2 (`010` is 8, `yes` is true, `.inf` does not convert to JSON).
//! That is why no byte outside the node is rewritten, why kept entries are copied verbatim, and
//! why a plain scalar counts as a string here only when both readings agree. What we write is
//! explicit: literal `|` blocks for PEMs (or double-quoted strings), and trust domains plain only
//! when they cannot read as anything but a string.
//!
//! The edit is refused — nothing is written and the caller reports why — only when the node's
//! own span cannot be located unambiguously: the text is not YAML, holds several documents, is
//! not a mapping, has `caCertificates` twice, a merge key (`<<`) may supply it, it is an alias or
//! carries an anchor some alias uses, or its layout is one this module does not edit.

use granit_parser::{Event, Options, Parser, ScalarStyle, ScanError, StructureStyle};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The MeshConfig field holding the trust entries.
pub(crate) const KEY: &str = "caCertificates";

/// Why the mesh text is not edited. `Display` is the message after the object's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not YAML at all; the parser's message.
    Syntax(String),
    /// A carriage return not followed by a line feed (old Mac line breaks).
    BareCarriageReturn,
    MultipleDocuments,
    NotAMapping,
    /// `caCertificates` is neither a list nor null; the line of its value.
    NotAList(usize),
    /// The lines of every `caCertificates` key.
    DuplicateKey(Vec<usize>),
    /// The line of a top-level merge key whose mappings hold `caCertificates`.
    MergeKey(usize),
    /// `caCertificates` (key or value) is an alias; its line.
    Alias(usize),
    /// An anchor on the node, or on an entry that would be removed, is used by an alias.
    AnchorInUse(usize),
    /// The text around the node is laid out in a way this module does not edit.
    Layout(&'static str, usize),
    /// The edited text failed the re-parse check (a bug here, never a wrong write).
    Check(String),
    /// Removing the entries an edit would add fails on its result: the edit is not made.
    Undo(Box<Refusal>),
    /// A character Go's YAML 1.1 reader reads as a line break (U+0085, U+2028, U+2029) or a
    /// byte-order mark after the start: the two readers would not see the same keys. Its line.
    GoReadsOtherwise(char, usize),
    /// A top-level `!!binary` key Go decodes to `caCertificates`; its line.
    BinaryKey(usize),
    /// Go refuses the text: its aliases expand beyond what Go's reader allows.
    ExcessiveAliasing,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Syntax(e) => write!(f, "data.mesh is not valid YAML ({e})"),
            Refusal::BareCarriageReturn => {
                write!(f, "data.mesh uses bare carriage returns as line breaks")
            }
            Refusal::MultipleDocuments => write!(f, "data.mesh holds more than one YAML document"),
            Refusal::NotAMapping => write!(f, "data.mesh is not a YAML mapping"),
            Refusal::NotAList(_) => write!(f, "{KEY} in data.mesh is not a list"),
            Refusal::DuplicateKey(lines) => {
                let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
                write!(
                    f,
                    "data.mesh has {KEY} more than once (lines {})",
                    lines.join(", ")
                )
            }
            Refusal::MergeKey(line) => write!(
                f,
                "the merge key (<<) on line {line} of data.mesh supplies {KEY}"
            ),
            Refusal::Alias(line) => write!(f, "{KEY} on line {line} of data.mesh is an alias"),
            Refusal::AnchorInUse(line) => write!(
                f,
                "{KEY} in data.mesh holds an anchor (line {line}) that an alias uses; editing it would change that alias"
            ),
            Refusal::Layout(what, line) => {
                write!(f, "cannot locate {what} of {KEY} on line {line} of data.mesh")
            }
            Refusal::Check(what) => write!(
                f,
                "editing {KEY} in data.mesh would change {what} (self-check failed)"
            ),
            Refusal::GoReadsOtherwise(c, line) => write!(
                f,
                "data.mesh has U+{:04X} on line {line}, which Go's YAML reader (istiod) reads differently from this editor",
                u32::from(*c)
            ),
            Refusal::BinaryKey(line) => write!(
                f,
                "the !!binary key on line {line} of data.mesh is {KEY} to Go's YAML reader (istiod)"
            ),
            Refusal::ExcessiveAliasing => write!(
                f,
                "data.mesh expands its aliases beyond what Go's YAML reader accepts (istiod refuses it: document contains excessive aliasing)"
            ),
            Refusal::Undo(why) => write!(
                f,
                "entries added to {KEY} in data.mesh could not be removed again ({why})"
            ),
        }
    }
}

/// One entry to add, in the shape we own: `{pem, trustDomains: [trust_domain]}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewEntry<'e> {
    pub pem: &'e str,
    pub trust_domain: &'e str,
}

#[derive(Debug)]
enum Kind {
    Scalar {
        value: String,
        style: ScalarStyle,
    },
    Seq {
        flow: bool,
        items: Vec<usize>,
    },
    Map {
        flow: bool,
        entries: Vec<(usize, usize)>,
    },
    Alias(usize),
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    /// First byte of the content; for a block collection, of its first child.
    start: usize,
    /// End of the parser's span: exact for scalars, aliases and flow collections, only a hint for
    /// block collections (see [`Tree::content_end`]).
    end: usize,
    /// First byte of the node's properties (anchor, tag), `start` when it has none.
    props: usize,
    anchored: bool,
    tag: Option<(String, String)>,
    /// 1-based line of `start`.
    line: usize,
}

/// The nodes of one document in parse order; aliases point at their anchored node.
#[derive(Debug, Default)]
struct Tree {
    nodes: Vec<Node>,
    root: Option<usize>,
    /// Start of an explicit `...` document end marker.
    doc_end: Option<usize>,
    /// Whether the document starts with an explicit `---`.
    explicit_start: bool,
}

fn syntax(e: &ScanError) -> Refusal {
    let m = e.marker();
    let info = e.info();
    let first = info.lines().next().unwrap_or("");
    Refusal::Syntax(format!(
        "error: line {} column {}: {first}",
        m.line(),
        m.col() + 1
    ))
}

/// A node event's kind, anchor ID and tag; `None` for events that are not nodes.
type NodeStart = (Kind, usize, Option<(String, String)>);

fn node_kind(
    event: Event,
    anchors: &HashMap<usize, usize>,
    line: usize,
) -> Result<Option<NodeStart>, Refusal> {
    let tag_of = |t: Option<std::borrow::Cow<granit_parser::Tag>>| {
        t.map(|t| (t.handle().to_string(), t.suffix().to_string()))
    };
    Ok(Some(match event {
        Event::Scalar(value, style, anchor, tag) => (
            Kind::Scalar {
                value: value.into_owned(),
                style,
            },
            anchor,
            tag_of(tag),
        ),
        Event::SequenceStart(style, anchor, tag) => (
            Kind::Seq {
                flow: style == StructureStyle::Flow,
                items: Vec::new(),
            },
            anchor,
            tag_of(tag),
        ),
        Event::MappingStart(style, anchor, tag) => (
            Kind::Map {
                flow: style == StructureStyle::Flow,
                entries: Vec::new(),
            },
            anchor,
            tag_of(tag),
        ),
        Event::Alias(id) => {
            let target = *anchors
                .get(&id)
                .ok_or_else(|| Refusal::Syntax(format!("unknown alias on line {line}")))?;
            (Kind::Alias(target), 0, None)
        }
        _ => return Ok(None),
    }))
}

impl Tree {
    fn parse(text: &str) -> Result<Tree, Refusal> {
        let mut options = Options::default();
        options.emit_anchor_events = true;
        options.emit_comments = false;
        let mut tree = Tree::default();
        let mut open: Vec<(usize, Option<usize>)> = Vec::new();
        let mut anchors: HashMap<usize, usize> = HashMap::new();
        let mut documents = 0;
        for item in Parser::new_from_str_with_options(text, options) {
            let (event, span) = item.map_err(|e| syntax(&e))?;
            let range = span
                .byte_range()
                .ok_or_else(|| Refusal::Syntax("the parser gave no byte offsets".into()))?;
            let props = span
                .tag_start
                .and_then(|m| m.byte_offset())
                .map_or(range.start, |t| t.min(range.start));
            let line = span.start.line();
            let (kind, anchor, tag) = match event {
                Event::DocumentStart(explicit, _) => {
                    tree.explicit_start = explicit;
                    documents += 1;
                    if documents > 1 {
                        return Err(Refusal::MultipleDocuments);
                    }
                    continue;
                }
                Event::DocumentEnd => {
                    if text.get(range.clone()) == Some("...") {
                        tree.doc_end = Some(range.start);
                    }
                    continue;
                }
                Event::Anchor(..) => {
                    if let Some(n) = tree.nodes.last_mut() {
                        n.props = n.props.min(range.start);
                    }
                    continue;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some((idx, _)) = open.pop() {
                        tree.nodes[idx].end = range.end;
                    }
                    continue;
                }
                other => match node_kind(other, &anchors, line)? {
                    Some(node) => node,
                    None => continue,
                },
            };
            let idx = tree.nodes.len();
            let collection = matches!(kind, Kind::Seq { .. } | Kind::Map { .. });
            tree.nodes.push(Node {
                kind,
                start: range.start,
                end: range.end,
                props,
                anchored: anchor != 0,
                tag,
                line,
            });
            if anchor != 0 {
                anchors.insert(anchor, idx);
            }
            tree.attach(&mut open, idx);
            if collection {
                open.push((idx, None));
            }
        }
        Ok(tree)
    }

    fn attach(&mut self, open: &mut [(usize, Option<usize>)], idx: usize) {
        let Some((parent, pending)) = open.last_mut() else {
            self.root.get_or_insert(idx);
            return;
        };
        match &mut self.nodes[*parent].kind {
            Kind::Seq { items, .. } => items.push(idx),
            Kind::Map { entries, .. } => match pending.take() {
                None => *pending = Some(idx),
                Some(key) => entries.push((key, idx)),
            },
            _ => {}
        }
    }

    /// Follows an alias to its anchored node.
    fn resolve(&self, idx: usize) -> usize {
        match self.nodes[idx].kind {
            Kind::Alias(target) => target,
            _ => idx,
        }
    }

    /// End of the node's own text: its last byte of content, or — after a block scalar — the
    /// start of the line that ends it (the scalar owns its final line breaks).
    fn content_end(&self, text: &str, mut idx: usize) -> usize {
        loop {
            let n = &self.nodes[idx];
            match &n.kind {
                Kind::Seq { flow: false, items } => match items.last() {
                    Some(&last) => idx = last,
                    None => return n.end,
                },
                Kind::Map {
                    flow: false,
                    entries,
                } => match entries.last() {
                    Some(&(k, v)) if self.is_empty_scalar(v) => return self.content_end(text, k),
                    Some(&(_, v)) => idx = v,
                    None => return n.end,
                },
                Kind::Scalar {
                    style: ScalarStyle::Literal | ScalarStyle::Folded,
                    ..
                } => {
                    // The parser ends a block scalar inside the indentation of the line after
                    // it — for an empty one (`pem: |` and nothing more) even past its own
                    // start: back to that line's start.
                    let end = n.end.min(text.len());
                    let head = text.as_bytes()[..end].iter().rev();
                    return end - head.take_while(|&&b| b == b' ').count();
                }
                _ => return n.end,
            }
        }
    }

    /// A plain scalar with no text (`key:` with nothing after it).
    fn is_empty_scalar(&self, idx: usize) -> bool {
        let n = &self.nodes[idx];
        matches!(
            n.kind,
            Kind::Scalar {
                style: ScalarStyle::Plain,
                ..
            }
        ) && n.start == n.end
    }

    fn is_null(&self, idx: usize) -> bool {
        let n = &self.nodes[idx];
        n.tag.is_none()
            && match &n.kind {
                Kind::Scalar {
                    value,
                    style: ScalarStyle::Plain,
                } => n.start == n.end || matches!(value.as_str(), "~" | "null" | "Null" | "NULL"),
                _ => false,
            }
    }

    fn scalar(&self, idx: usize) -> Option<(&str, ScalarStyle)> {
        match &self.nodes[idx].kind {
            Kind::Scalar { value, style } => Some((value, *style)),
            _ => None,
        }
    }

    /// The value of a scalar that reads as the same string in YAML 1.1 (Go) and 1.2.
    fn string(&self, idx: usize) -> Option<&str> {
        let n = &self.nodes[idx];
        let str_tag = n
            .tag
            .as_ref()
            .is_some_and(|(h, s)| h == "tag:yaml.org,2002:" && s == "str");
        if n.tag.is_some() && !str_tag {
            return None;
        }
        match self.scalar(idx)? {
            (v, ScalarStyle::Plain) if !str_tag && !plain_is_string(v) => None,
            (v, _) => Some(v),
        }
    }

    /// `(trust domain, pem)` of an entry of exactly the shape we write.
    fn our_shape(&self, idx: usize) -> Option<(String, String)> {
        let n = &self.nodes[idx];
        let Kind::Map { entries, .. } = &n.kind else {
            return None;
        };
        if n.tag.is_some() || entries.len() != 2 {
            return None;
        }
        let (mut pem, mut td) = (None, None);
        for &(k, v) in entries {
            match self.string(k)? {
                "pem" => pem = Some(self.string(v)?.to_string()),
                "trustDomains" => {
                    let Kind::Seq { items, .. } = &self.nodes[v].kind else {
                        return None;
                    };
                    let [only] = items.as_slice() else {
                        return None;
                    };
                    if self.nodes[v].tag.is_some() {
                        return None;
                    }
                    td = Some(self.string(*only)?.to_string());
                }
                _ => return None,
            }
        }
        Some((td?, pem?))
    }

    /// Whether a merge key's value — a mapping, an alias of one, or a list of those, through
    /// their own merge keys — has `caCertificates`. Each node is visited once.
    fn supplies_key(&self, idx: usize, seen: &mut HashSet<usize>) -> bool {
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            let i = self.resolve(i);
            if !seen.insert(i) {
                continue;
            }
            match &self.nodes[i].kind {
                Kind::Map { entries, .. } => {
                    for &(k, v) in entries {
                        let k = self.resolve(k);
                        if self.scalar(k).is_some_and(|(s, _)| s == KEY) {
                            return true;
                        }
                        if self.is_merge_key(k) {
                            stack.push(v);
                        }
                    }
                }
                Kind::Seq { items, .. } => stack.extend(items),
                _ => {}
            }
        }
        false
    }

    fn is_merge_key(&self, idx: usize) -> bool {
        let n = &self.nodes[idx];
        let merge_tag = n
            .tag
            .as_ref()
            .is_some_and(|(h, s)| h == "tag:yaml.org,2002:" && s == "merge");
        match self.scalar(idx) {
            Some(("<<", ScalarStyle::Plain)) => n.tag.is_none() || merge_tag,
            Some(_) => merge_tag,
            None => false,
        }
    }

    /// Whether any anchor on `idx` or inside it is the target of an alias.
    fn anchor_in_use(&self, idx: usize, used: &HashSet<usize>) -> Option<usize> {
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            let n = &self.nodes[i];
            if n.anchored && used.contains(&i) {
                return Some(n.line);
            }
            match &n.kind {
                Kind::Seq { items, .. } => stack.extend(items),
                Kind::Map { entries, .. } => {
                    stack.extend(entries.iter().flat_map(|&(k, v)| [k, v]))
                }
                _ => {}
            }
        }
        None
    }

    fn alias_targets(&self) -> HashSet<usize> {
        self.nodes
            .iter()
            .filter_map(|n| match n.kind {
                Kind::Alias(t) => Some(t),
                _ => None,
            })
            .collect()
    }
}

/// Refuses what Go's YAML 1.1 reader reads as a line break and YAML 1.2 does not (NEL, LS,
/// PS: a comment ends there for Go, so Go may see a key this editor reads as comment text),
/// and a byte-order mark anywhere but at the start (Go reads it as part of a key).
fn go_line_breaks(text: &str) -> Result<(), Refusal> {
    let odd = text.char_indices().find(|&(i, c)| {
        matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') || (c == '\u{feff}' && i > 0)
    });
    match odd {
        None => Ok(()),
        Some((i, c)) => Err(Refusal::GoReadsOtherwise(
            c,
            text[..i].bytes().filter(|&b| b == b'\n').count() + 1,
        )),
    }
}

impl Tree {
    /// What Go decodes a `!!binary` scalar to (`None` for anything else, or bad base64).
    fn binary_key(&self, idx: usize) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let n = &self.nodes[idx];
        let binary = n
            .tag
            .as_ref()
            .is_some_and(|(h, s)| h == "tag:yaml.org,2002:" && s == "binary");
        let (value, _) = self.scalar(idx).filter(|_| binary)?;
        let compact: String = value.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()
    }

    /// Go's reader (gopkg.in/yaml.v2, under sigs.k8s.io/yaml) counts every node it decodes,
    /// through aliases and merge keys, and refuses the document when too large a share comes
    /// from aliases (`allowedAliasRatio`). The same count in the same order: the work is
    /// bounded by Go's own limit (4 million decodes, or fewer than the text's node count over
    /// 0.9 beyond that), and a text Go refuses is refused here before anything else reads it.
    fn go_alias_budget(&self) -> Result<(), Refusal> {
        const LOW: u64 = 400_000;
        const HIGH: u64 = 4_000_000;
        let allowed = |decodes: u64| match decodes {
            d if d <= LOW => 0.99,
            d if d >= HIGH => 0.10,
            d => 0.99 - 0.89 * ((d - LOW) as f64 / (HIGH - LOW) as f64),
        };
        let Some(root) = self.root else {
            return Ok(());
        };
        let (mut decodes, mut aliased) = (1u64, 0u64); // the document node
        let mut stack = vec![(root, 0u32)];
        while let Some((i, depth)) = stack.pop() {
            decodes += 1;
            aliased += u64::from(depth > 0);
            if aliased > 100 && decodes > 1000 && aliased as f64 / decodes as f64 > allowed(decodes)
            {
                return Err(Refusal::ExcessiveAliasing);
            }
            match &self.nodes[i].kind {
                Kind::Alias(target) => stack.push((*target, depth + 1)),
                Kind::Seq { items, .. } => stack.extend(items.iter().rev().map(|&c| (c, depth))),
                Kind::Map { entries, .. } => {
                    for &(k, v) in entries.iter().rev() {
                        if self.is_merge_key(k) {
                            self.push_merge(v, depth, &mut stack);
                        } else {
                            stack.push((v, depth));
                            stack.push((k, depth));
                        }
                    }
                }
                Kind::Scalar { .. } => {}
            }
        }
        Ok(())
    }

    /// A merge key's value as Go decodes it: a list's items last to first, without the list.
    fn push_merge(&self, v: usize, depth: u32, stack: &mut Vec<(usize, u32)>) {
        match &self.nodes[v].kind {
            Kind::Seq { items, .. } => stack.extend(items.iter().map(|&c| (c, depth))),
            _ => stack.push((v, depth)),
        }
    }
}

/// Whether Go's YAML 1.1 and YAML 1.2 both read this plain scalar as the string it spells:
/// conservative (anything starting like a number, a bool, a null or `.inf` does not count).
fn plain_is_string(s: &str) -> bool {
    const WORDS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    !(first.is_ascii_digit()
        || matches!(first, '+' | '-' | '.' | '~' | '<' | '=')
        || WORDS.contains(&s)
        || matches!(s, "null" | "Null" | "NULL"))
}

/// A trust domain we may write as a plain scalar: starts with a letter, uses only
/// `[A-Za-z0-9._-]` and is no bool or null word — no YAML 1.1 or 1.2 resolver reads that as
/// anything but a string.
fn plain_trust_domain(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && plain_is_string(s)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A PEM we may write as a literal block: printable ASCII lines, none empty or starting with
/// white space, and exactly one final line break (what clip chomping gives back).
fn literal_pem(pem: &str) -> bool {
    let Some(body) = pem.strip_suffix('\n') else {
        return false;
    };
    !body.is_empty()
        && body.split('\n').all(|l| {
            !l.is_empty()
                && !l.starts_with(' ')
                && l.bytes().all(|b| (0x20..0x7f).contains(&b))
                && !l.ends_with(' ')
        })
}

/// A YAML double-quoted string; everything outside printable ASCII is escaped.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// New entries as block sequence items at `indent`, every line ending with `nl`.
fn render_block(add: &[NewEntry], indent: usize, nl: &str) -> String {
    let ind = " ".repeat(indent);
    let mut out = String::new();
    for e in add {
        out.push_str(&format!("{ind}- pem: "));
        if literal_pem(e.pem) {
            out.push('|');
            out.push_str(nl);
            for line in e.pem.lines() {
                out.push_str(&format!("{ind}    {line}{nl}"));
            }
        } else {
            out.push_str(&double_quoted(e.pem));
            out.push_str(nl);
        }
        let td = if plain_trust_domain(e.trust_domain) {
            e.trust_domain.to_string()
        } else {
            double_quoted(e.trust_domain)
        };
        out.push_str(&format!("{ind}  trustDomains:{nl}{ind}  - {td}{nl}"));
    }
    out
}

/// One new entry as a flow mapping (JSON).
fn render_flow(e: &NewEntry) -> String {
    format!(
        "{{\"pem\": {}, \"trustDomains\": [{}]}}",
        double_quoted(e.pem),
        double_quoted(e.trust_domain)
    )
}

/// A new `caCertificates` entry (key and block list) at `indent`.
fn render_entry(add: &[NewEntry], indent: usize, nl: &str) -> String {
    format!(
        "{}{KEY}:{nl}{}",
        " ".repeat(indent),
        render_block(add, indent, nl)
    )
}

/// The mesh text of a ConfigMap we create: only our entries.
pub(crate) fn render_new(add: &[NewEntry]) -> String {
    render_entry(add, 0, "\n")
}

/// The length of a byte-order mark that opens the text: the first line starts after it.
fn bom(text: &str) -> usize {
    if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    }
}

fn line_start(text: &str, pos: usize) -> usize {
    text[..pos]
        .rfind('\n')
        .map_or(bom(text).min(pos), |i| i + 1)
}

/// Whether `pos` starts a line.
fn at_line_start(text: &str, pos: usize) -> bool {
    pos <= bom(text) || text.as_bytes()[pos - 1] == b'\n'
}

/// `pos` when it starts a line, else the start of the next line (or the end of the text).
fn next_line(text: &str, pos: usize) -> usize {
    if at_line_start(text, pos) {
        return pos;
    }
    text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1)
}

/// Start of the line holding the `-` of the block sequence item whose content starts at
/// `props`: the dash is on that line before it (`- pem: …`), or alone on an earlier line with
/// only blank and comment lines in between (`-` then `  pem: …`). Never before `floor`.
fn dash_line(text: &str, props: usize, floor: usize) -> Option<usize> {
    let mut ls = line_start(text, props);
    let head = text[ls..props].trim_end_matches(' ');
    if let Some(before) = head.strip_suffix('-') {
        return (only_spaces(before) && ls >= floor).then_some(ls);
    }
    if !only_spaces(head) {
        return None;
    }
    while ls > floor {
        ls = line_start(text, ls - 1);
        let line = text[ls..].split('\n').next().unwrap_or("");
        let body = line.trim_start_matches(' ').trim_end_matches([' ', '\r']);
        let dash_comment = (body.starts_with("- ") || body.starts_with("-\t"))
            && body[1..].trim_start().starts_with('#');
        if body == "-" || dash_comment {
            return Some(ls);
        }
        if !(body.is_empty() || body.starts_with('#')) {
            return None;
        }
    }
    None
}

fn only_spaces(s: &str) -> bool {
    s.bytes().all(|b| b == b' ')
}

/// How the existing value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `caCertificates:` with nothing, `~` or `null`.
    Null,
    Block,
    Flow,
}

/// The `caCertificates` entry of the root mapping.
#[derive(Debug, Clone, Copy)]
struct Located {
    key: usize,
    value: usize,
    /// Just after the colon that follows the key.
    after_colon: usize,
    style: Style,
}

/// Where the list of a rewrite comes from, in order: kept entries, then added ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Old(usize),
    New(usize),
}

/// One replacement of the byte range `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edit {
    start: usize,
    end: usize,
    with: String,
}

/// A parsed mesh text whose `caCertificates` node has been located.
#[derive(Debug)]
pub(crate) struct MeshDoc<'a> {
    text: &'a str,
    tree: Tree,
    /// The root mapping and whether it is in flow style; `None` for an empty document.
    root: Option<(usize, bool)>,
    node: Option<Located>,
    /// The list's items (empty when the node is absent or null).
    items: Vec<usize>,
    nl: &'static str,
}

impl<'a> MeshDoc<'a> {
    /// Parses `text` and locates the `caCertificates` node; `Err` says why it cannot be edited.
    pub(crate) fn parse(text: &'a str) -> Result<MeshDoc<'a>, Refusal> {
        let bytes = text.as_bytes();
        if bytes
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
        {
            return Err(Refusal::BareCarriageReturn);
        }
        go_line_breaks(text)?;
        let tree = Tree::parse(text)?;
        tree.go_alias_budget()?;
        let root = match tree.root {
            None => None,
            Some(r) => match &tree.nodes[r].kind {
                Kind::Map { flow, .. } => Some((r, *flow)),
                _ if tree.is_empty_scalar(r) && tree.nodes[r].tag.is_none() => None,
                _ => return Err(Refusal::NotAMapping),
            },
        };
        let nl = if text.split('\n').next().is_some_and(|l| l.ends_with('\r')) {
            "\r\n"
        } else {
            "\n"
        };
        let mut doc = MeshDoc {
            text,
            tree,
            root,
            node: None,
            items: Vec::new(),
            nl,
        };
        doc.node = doc.locate()?;
        if let Some(l) = doc.node {
            if let Kind::Seq { items, .. } = &doc.tree.nodes[l.value].kind {
                doc.items = items.clone();
            }
        }
        Ok(doc)
    }

    fn root_index(&self) -> usize {
        self.root.map_or(0, |(r, _)| r)
    }

    fn root_entries(&self) -> &[(usize, usize)] {
        match self.root.map(|(r, _)| &self.tree.nodes[r].kind) {
            Some(Kind::Map { entries, .. }) => entries,
            _ => &[],
        }
    }

    /// Finds the one top-level `caCertificates` entry, refusing anything ambiguous.
    fn locate(&self) -> Result<Option<Located>, Refusal> {
        let t = &self.tree;
        let mut found = Vec::new();
        // Shared by every merge key: a node one of them has searched is not searched again.
        let mut searched = HashSet::new();
        for &(k, v) in self.root_entries() {
            let key = t.resolve(k);
            if t.is_merge_key(key) && t.supplies_key(v, &mut searched) {
                return Err(Refusal::MergeKey(t.nodes[k].line));
            }
            if t.binary_key(key).as_deref() == Some(KEY.as_bytes()) {
                return Err(Refusal::BinaryKey(t.nodes[k].line));
            }
            if t.scalar(key).is_some_and(|(s, _)| s == KEY) {
                found.push((k, v));
            }
        }
        let (k, v) = match found.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            many => {
                return Err(Refusal::DuplicateKey(
                    many.iter().map(|&(k, _)| t.nodes[k].line).collect(),
                ))
            }
        };
        if matches!(t.nodes[k].kind, Kind::Alias(_)) || matches!(t.nodes[v].kind, Kind::Alias(_)) {
            return Err(Refusal::Alias(t.nodes[k].line));
        }
        if t.nodes[v].anchored && t.alias_targets().contains(&v) {
            return Err(Refusal::AnchorInUse(t.nodes[v].line));
        }
        let key_end = t.nodes[k].end;
        let gap = self.text[key_end..]
            .bytes()
            .take_while(|&b| b == b' ' || b == b'\t');
        let colon = key_end + gap.count();
        if self.text.as_bytes().get(colon) != Some(&b':') {
            return Err(Refusal::Layout("the colon after the key", t.nodes[k].line));
        }
        let style = match &t.nodes[v].kind {
            _ if t.is_null(v) => Style::Null,
            Kind::Seq { flow: true, .. } => Style::Flow,
            Kind::Seq { flow: false, .. } => Style::Block,
            _ => return Err(Refusal::NotAList(t.nodes[v].line)),
        };
        Ok(Some(Located {
            key: k,
            value: v,
            after_colon: colon + 1,
            style,
        }))
    }

    /// Each existing entry: `(trust domain, pem)` when it has exactly the shape we write and
    /// Go would read the same strings, `None` for anything else (foreign by shape).
    pub(crate) fn entries(&self) -> Vec<Option<(String, String)>> {
        self.items.iter().map(|&i| self.tree.our_shape(i)).collect()
    }

    /// The text with the entries where `keep` is false removed and `add` appended. Only the
    /// `caCertificates` node's bytes change; the result is checked by parsing it again.
    pub(crate) fn rewrite(&self, keep: &[bool], add: &[NewEntry]) -> Result<String, Refusal> {
        if keep.len() != self.items.len() {
            return Err(Refusal::Check(format!(
                "the entry count ({} decisions for {} entries)",
                keep.len(),
                self.items.len()
            )));
        }
        let used = self.tree.alias_targets();
        for (&i, _) in self.items.iter().zip(keep).filter(|(_, &k)| !k) {
            if let Some(line) = self.tree.anchor_in_use(i, &used) {
                return Err(Refusal::AnchorInUse(line));
            }
        }
        let (edits, order) = self.edits(keep, add)?;
        let mut out = String::with_capacity(self.text.len() + add.len() * 1200);
        let mut cursor = 0;
        for e in &edits {
            out.push_str(&self.text[cursor..e.start]);
            out.push_str(&e.with);
            cursor = e.end;
        }
        out.push_str(&self.text[cursor..]);
        let after = self.check(&out, &order, add)?;
        if !add.is_empty() {
            // Never an edit we could not undo: remove what was added from the result, as a
            // later run would, and require that edit to pass its own self-check.
            let undo: Vec<bool> = order
                .iter()
                .map(|e| matches!(e, Expected::Old(_)))
                .collect();
            after
                .rewrite(&undo, &[])
                .map_err(|e| Refusal::Undo(Box::new(e)))?;
        }
        Ok(out)
    }

    fn edits(
        &self,
        keep: &[bool],
        add: &[NewEntry],
    ) -> Result<(Vec<Edit>, Vec<Expected>), Refusal> {
        let kept: Vec<Expected> = (0..self.items.len())
            .filter(|&i| keep[i])
            .map(Expected::Old)
            .collect();
        let added = (0..add.len()).map(Expected::New);
        let Some(node) = self.node else {
            if add.is_empty() {
                return Ok((Vec::new(), Vec::new()));
            }
            return Ok((vec![self.append_entry(add)?], added.collect()));
        };
        match node.style {
            Style::Null if add.is_empty() => Ok((Vec::new(), Vec::new())),
            Style::Null => Ok((self.fill_null(node, add), added.collect())),
            // An emptied flow list stays as `[]`: that is how it was written by hand.
            Style::Flow => Ok((
                vec![self.rewrite_flow(node, keep, add)],
                kept.into_iter().chain(added).collect(),
            )),
            Style::Block => self.rewrite_block(node, keep, add, kept),
        }
    }

    /// Indentation (in spaces) of the node starting at `idx`, checked to be only spaces.
    fn indent_of(&self, pos: usize) -> Option<usize> {
        let ls = line_start(self.text, pos);
        only_spaces(&self.text[ls..pos]).then_some(pos - ls)
    }

    /// Whether the text ends, without a final line break, inside a block scalar: appending
    /// after it would add a line break to that scalar's value.
    fn ends_in_open_block_scalar(&self) -> bool {
        let text = self.text;
        if text.ends_with('\n') {
            return false;
        }
        self.tree.nodes.iter().any(|n| {
            matches!(
                n.kind,
                Kind::Scalar {
                    style: ScalarStyle::Literal | ScalarStyle::Folded,
                    ..
                }
            ) && n.end == text.len()
        })
    }

    /// `with`, preceded by a line break when `pos` does not start a line.
    fn at_line(&self, pos: usize, with: String) -> Edit {
        let with = if !at_line_start(self.text, pos) {
            format!("{}{with}", self.nl)
        } else {
            with
        };
        Edit {
            start: pos,
            end: pos,
            with,
        }
    }

    /// Appends a new `caCertificates` entry to the root mapping (or the empty document).
    fn append_entry(&self, add: &[NewEntry]) -> Result<Edit, Refusal> {
        let t = &self.tree;
        match self.root {
            Some((r, true)) => {
                let flow = add.iter().map(render_flow).collect::<Vec<_>>().join(", ");
                Ok(match self.root_entries().last() {
                    None => Edit {
                        start: t.nodes[r].start + 1,
                        end: t.nodes[r].start + 1,
                        with: format!("{KEY}: [{flow}]"),
                    },
                    Some(&(k, v)) => {
                        let pos = if t.is_empty_scalar(v) {
                            let end = t.nodes[k].end;
                            let gap = self.text[end..].bytes().take_while(|&b| b == b' ');
                            let colon = end + gap.count();
                            colon + usize::from(self.text.as_bytes().get(colon) == Some(&b':'))
                        } else {
                            t.content_end(self.text, v)
                        };
                        Edit {
                            start: pos,
                            end: pos,
                            with: format!(", {KEY}: [{flow}]"),
                        }
                    }
                })
            }
            Some((_, false)) => {
                let &(first, _) = self
                    .root_entries()
                    .first()
                    .ok_or(Refusal::Layout("the root mapping", 1))?;
                // The mapping starts at its first key, or at the `?` of a complex one.
                let first_props = t.nodes[first].props.min(t.nodes[self.root_index()].start);
                let indent = self
                    .indent_of(first_props)
                    .ok_or(Refusal::Layout("the indentation", t.nodes[first].line))?;
                let entry = render_entry(add, indent, self.nl);
                if self.tree.doc_end.is_none() && self.ends_in_open_block_scalar() {
                    // Appending would give that final block scalar a line break: go first instead.
                    let pos = line_start(self.text, first_props);
                    return Ok(Edit {
                        start: pos,
                        end: pos,
                        with: entry,
                    });
                }
                let pos = self
                    .tree
                    .doc_end
                    .map_or(self.text.len(), |e| line_start(self.text, e));
                Ok(self.at_line(pos, entry))
            }
            None => {
                let pos = self
                    .tree
                    .doc_end
                    .map_or(self.text.len(), |e| line_start(self.text, e));
                Ok(self.at_line(pos, render_entry(add, 0, self.nl)))
            }
        }
    }

    /// Gives a null `caCertificates` its first entries.
    fn fill_null(&self, node: Located, add: &[NewEntry]) -> Vec<Edit> {
        let t = &self.tree;
        let v = &t.nodes[node.value];
        let explicit = v.start < v.end;
        let flow_parent = self.root.is_some_and(|(_, flow)| flow);
        if flow_parent {
            let flow = add.iter().map(render_flow).collect::<Vec<_>>().join(", ");
            return vec![if explicit {
                Edit {
                    start: v.start,
                    end: v.end,
                    with: format!("[{flow}]"),
                }
            } else {
                Edit {
                    start: node.after_colon,
                    end: node.after_colon,
                    with: format!(" [{flow}]"),
                }
            }];
        }
        let indent = self.indent_of(t.nodes[node.key].props).unwrap_or(0);
        let mut edits = Vec::new();
        let mut from = node.after_colon;
        if explicit {
            // `caCertificates: ~` loses the ` ~`; the list goes on the lines below.
            edits.push(Edit {
                start: node.after_colon,
                end: v.end,
                with: String::new(),
            });
            from = v.end;
        }
        let pos = next_line(self.text, from);
        edits.push(self.at_line(pos, render_block(add, indent, self.nl)));
        edits
    }

    /// Removes the whole `caCertificates` entry of a block list that became empty (undoing the
    /// append), or, when the key does not start its line, leaves `caCertificates: []`.
    fn remove_entry(&self, node: Located) -> Edit {
        let t = &self.tree;
        let end = next_line(self.text, t.content_end(self.text, node.value));
        let key = t.nodes[node.key].props;
        let ls = line_start(self.text, key);
        let only_key = self.root_entries().len() == 1;
        if only_key && t.doc_end.is_some() && !t.explicit_start {
            // `...` with no content before it is a text Go refuses: the key stays, as null.
            let nl = if self.text[..end].ends_with('\n') {
                self.nl
            } else {
                ""
            };
            return Edit {
                start: node.after_colon,
                end,
                with: nl.to_string(),
            };
        }
        if only_spaces(&self.text[ls..key]) {
            return Edit {
                start: ls,
                end,
                with: String::new(),
            };
        }
        let nl = if self.text[..end].ends_with('\n') {
            self.nl
        } else {
            ""
        };
        Edit {
            start: node.after_colon,
            end,
            with: format!(" []{nl}"),
        }
    }

    /// A flow list rebuilt from the kept items' own text and the new entries.
    fn rewrite_flow(&self, node: Located, keep: &[bool], add: &[NewEntry]) -> Edit {
        let t = &self.tree;
        let mut parts: Vec<String> = self
            .items
            .iter()
            .zip(keep)
            .filter(|(_, &k)| k)
            .map(|(&i, _)| self.text[t.nodes[i].props..t.content_end(self.text, i)].to_string())
            .collect();
        parts.extend(add.iter().map(render_flow));
        let v = &t.nodes[node.value];
        Edit {
            start: v.start,
            end: v.end,
            with: format!("[{}]", parts.join(", ")),
        }
    }

    /// Line ranges of a block list's items: item `i` owns `bounds[i]..bounds[i + 1]` (its dash
    /// line up to the next item's dash line); the last bound is the line after the list. Each
    /// item starts where the parser says its content starts: its dash is found by looking back
    /// from there, never by where the item before seems to end (an empty block scalar's span
    /// runs into the next item's line).
    fn block_bounds(&self, node: Located) -> Result<(Vec<usize>, usize), Refusal> {
        let t = &self.tree;
        let text = self.text;
        let mut bounds = Vec::with_capacity(self.items.len() + 1);
        let mut indent = None;
        let mut floor = next_line(text, node.after_colon);
        for &i in &self.items {
            let item = &t.nodes[i];
            let dash = dash_line(text, item.props, floor)
                .ok_or(Refusal::Layout("the dash of an entry", item.line))?;
            let column = text[dash..].len() - text[dash..].trim_start_matches(' ').len();
            if *indent.get_or_insert(column) != column {
                return Err(Refusal::Layout("the dash of an entry", item.line));
            }
            bounds.push(dash);
            floor = next_line(text, item.props);
        }
        let last = self.items.last().map_or(floor, |&i| {
            next_line(text, t.content_end(text, i).max(t.nodes[i].props))
        });
        bounds.push(last.max(floor));
        Ok((bounds, indent.unwrap_or(0)))
    }

    /// A block list with dropped items' lines removed and the new entries appended.
    fn rewrite_block(
        &self,
        node: Located,
        keep: &[bool],
        add: &[NewEntry],
        kept: Vec<Expected>,
    ) -> Result<(Vec<Edit>, Vec<Expected>), Refusal> {
        if kept.is_empty() && add.is_empty() {
            return Ok((vec![self.remove_entry(node)], Vec::new()));
        }
        let (bounds, indent) = self.block_bounds(node)?;
        let added: Vec<Expected> = (0..add.len()).map(Expected::New).collect();
        let new = render_block(add, indent, self.nl);
        let end = bounds[bounds.len() - 1];
        let front = !add.is_empty() && end == self.text.len() && self.ends_in_open_block_scalar();
        let mut edits: Vec<Edit> = keep
            .iter()
            .enumerate()
            .filter(|(_, &k)| !k)
            .map(|(i, _)| Edit {
                start: bounds[i],
                end: bounds[i + 1],
                with: String::new(),
            })
            .collect();
        if front {
            // Appending would give the last entry's final block scalar a line break.
            edits.insert(
                0,
                Edit {
                    start: bounds[0],
                    end: bounds[0],
                    with: new,
                },
            );
            return Ok((edits, added.into_iter().chain(kept).collect()));
        }
        if !add.is_empty() {
            edits.push(self.at_line(end, new));
        }
        Ok((edits, kept.into_iter().chain(added).collect()))
    }

    /// Parses the edited text and compares it with this document: every other top-level entry
    /// reads the same, and the list holds exactly the expected entries.
    fn check<'o>(
        &self,
        out: &'o str,
        order: &[Expected],
        add: &[NewEntry],
    ) -> Result<MeshDoc<'o>, Refusal> {
        let after = MeshDoc::parse(out)
            .map_err(|e| Refusal::Check(format!("the text's validity ({e})")))?;
        if after.root.is_none() && after.tree.doc_end.is_some() && !after.tree.explicit_start {
            return Err(Refusal::Check(
                "the text into a lone document end marker, which Go refuses".into(),
            ));
        }
        let others = |d: &MeshDoc| -> Vec<(usize, usize)> {
            let skip = d.node.map(|l| l.key);
            d.root_entries()
                .iter()
                .copied()
                .filter(|&(k, _)| Some(k) != skip)
                .collect()
        };
        let (mine, theirs) = (others(self), others(&after));
        let mut memo = HashSet::new();
        if mine.len() != theirs.len()
            || !mine.iter().zip(&theirs).all(|(&(k1, v1), &(k2, v2))| {
                same(&self.tree, k1, &after.tree, k2, &mut memo)
                    && same(&self.tree, v1, &after.tree, v2, &mut memo)
            })
        {
            return Err(Refusal::Check("other fields".into()));
        }
        if after.items.len() != order.len() {
            return Err(Refusal::Check("the number of entries".into()));
        }
        for (&got, exp) in after.items.iter().zip(order) {
            let ok = match *exp {
                Expected::Old(i) => same(&self.tree, self.items[i], &after.tree, got, &mut memo),
                Expected::New(j) => after
                    .tree
                    .our_shape(got)
                    .is_some_and(|(td, pem)| td == add[j].trust_domain && pem == add[j].pem),
            };
            if !ok {
                return Err(Refusal::Check("a kept entry".into()));
            }
        }
        Ok(after)
    }
}

/// Whether two nodes (of two trees) read the same: equal scalars (plain ones compared as plain,
/// since their meaning depends on the resolver), equal tags, equal children; aliases followed.
/// Pairs already under comparison count as equal, so shared anchors cost nothing extra.
fn same(a: &Tree, x: usize, b: &Tree, y: usize, memo: &mut HashSet<(usize, usize)>) -> bool {
    let (x, y) = (a.resolve(x), b.resolve(y));
    if !memo.insert((x, y)) {
        return true;
    }
    let (n, m) = (&a.nodes[x], &b.nodes[y]);
    if n.tag != m.tag {
        return false;
    }
    match (&n.kind, &m.kind) {
        (Kind::Scalar { value: v, style: s }, Kind::Scalar { value: w, style: r }) => {
            v == w && (*s == ScalarStyle::Plain) == (*r == ScalarStyle::Plain)
        }
        (Kind::Seq { items: i, .. }, Kind::Seq { items: j, .. }) => {
            i.len() == j.len() && i.iter().zip(j).all(|(&p, &q)| same(a, p, b, q, memo))
        }
        (Kind::Map { entries: e, .. }, Kind::Map { entries: f, .. }) => {
            e.len() == f.len()
                && e.iter().zip(f).all(|(&(k1, v1), &(k2, v2))| {
                    same(a, k1, b, k2, memo) && same(a, v1, b, v2, memo)
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\nBBBB\n-----END CERTIFICATE-----\n";
    const B: NewEntry = NewEntry {
        pem: PEM,
        trust_domain: "b.local",
    };

    fn ours(td: &str) -> String {
        format!(
            "- pem: |\n    -----BEGIN CERTIFICATE-----\n    AAAA\n    BBBB\n    -----END CERTIFICATE-----\n  trustDomains:\n  - {td}\n"
        )
    }

    fn edit(text: &str, keep: &[bool], add: &[NewEntry]) -> Result<String, Refusal> {
        MeshDoc::parse(text)?.rewrite(keep, add)
    }

    fn refusal(text: &str) -> Refusal {
        match MeshDoc::parse(text).and_then(|d| {
            let keep = vec![true; d.items.len()];
            d.rewrite(&keep, &[B])
        }) {
            Err(e) => e,
            Ok(out) => panic!("edited {text:?} into {out:?}"),
        }
    }

    #[test]
    fn appends_after_every_byte_and_keeps_odd_scalars() {
        let text = "# installer comment\nconcurrency: 010 # Go reads 8\nlimit: .inf\nflag: yes\nhex: 0x1F\nwhen: 2001-12-14\nbase: &b {x: 1}\nuse: *b\n";
        let out = edit(text, &[], &[B]).unwrap();
        assert_eq!(out, format!("{text}caCertificates:\n{}", ours("b.local")));
    }

    #[test]
    fn appends_before_an_explicit_document_end() {
        let out = edit("---\na: 1\n...\n", &[], &[B]).unwrap();
        assert_eq!(
            out,
            format!("---\na: 1\ncaCertificates:\n{}...\n", ours("b.local"))
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_kept_and_not_indentation() {
        let text = "\u{feff}a: 1\n";
        let out = edit(text, &[], &[B]).unwrap();
        assert_eq!(out, format!("{text}caCertificates:\n{}", ours("b.local")));
        assert_eq!(edit(&out, &[false], &[]).unwrap(), text);
        assert_eq!(
            edit("\u{feff}", &[], &[B]).unwrap(),
            format!("\u{feff}{}", render_new(&[B]))
        );
    }

    #[test]
    fn an_emptied_list_before_a_document_end_stays_as_null() {
        // `...` alone is a text Go refuses.
        let text = "caCertificates:\n...\n";
        let out = edit(text, &[], &[B]).unwrap();
        assert_eq!(out, format!("caCertificates:\n{}...\n", ours("b.local")));
        assert_eq!(edit(&out, &[false], &[]).unwrap(), text);
        let doc = MeshDoc::parse("a: 1\n").unwrap();
        assert!(doc.check("...\n", &[], &[]).is_err());
    }

    #[test]
    fn appends_to_empty_and_comment_only_texts() {
        assert_eq!(edit("", &[], &[B]).unwrap(), render_new(&[B]));
        assert_eq!(
            edit("# nothing yet", &[], &[B]).unwrap(),
            format!("# nothing yet\n{}", render_new(&[B]))
        );
        assert_eq!(
            edit("---\n", &[], &[B]).unwrap(),
            format!("---\n{}", render_new(&[B]))
        );
    }

    #[test]
    fn appends_at_the_root_mappings_indentation() {
        let out = edit("  a: 1\n  b: 2", &[], &[B]).unwrap();
        let items: String = ours("b.local")
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect();
        assert_eq!(out, format!("  a: 1\n  b: 2\n  caCertificates:\n{items}"));
    }

    #[test]
    fn a_final_block_scalar_without_line_break_is_not_extended() {
        // Appending would add a line break to `note`'s value: the entry goes first instead.
        let text = "trustDomain: x.local\nnote: |\n  last";
        let out = edit(text, &[], &[B]).unwrap();
        assert_eq!(out, format!("caCertificates:\n{}{text}", ours("b.local")));
        let text = "caCertificates:\n- note: |\n    last";
        let out = edit(text, &[true], &[B]).unwrap();
        assert_eq!(
            out,
            format!("caCertificates:\n{}- note: |\n    last", ours("b.local"))
        );
    }

    #[test]
    fn appends_into_flow_root_mappings() {
        let e = render_flow(&B);
        assert_eq!(
            edit("{}", &[], &[B]).unwrap(),
            format!("{{caCertificates: [{e}]}}")
        );
        assert_eq!(
            edit("{\"a\": 1}\n", &[], &[B]).unwrap(),
            format!("{{\"a\": 1, caCertificates: [{e}]}}\n")
        );
        assert_eq!(
            edit("{a: 1, b: }", &[], &[B]).unwrap(),
            format!("{{a: 1, b:, caCertificates: [{e}] }}")
        );
    }

    #[test]
    fn fills_a_null_list_in_place() {
        let tail = "trustDomain: x.local\n";
        for head in [
            "caCertificates:\n",
            "caCertificates: # none yet\n",
            "caCertificates: ~\n",
            "caCertificates: null\n",
        ] {
            let text = format!("{head}{tail}");
            let out = edit(&text, &[], &[B]).unwrap();
            let head = head.replace(" ~", "").replace(" null", "");
            assert_eq!(out, format!("{head}{}{tail}", ours("b.local")), "{text:?}");
        }
        let e = render_flow(&B);
        assert_eq!(
            edit("{caCertificates: ~, a: 1}", &[], &[B]).unwrap(),
            format!("{{caCertificates: [{e}], a: 1}}")
        );
    }

    #[test]
    fn block_lists_keep_foreign_entries_verbatim_and_drop_only_ours() {
        let foreign = "- spiffeBundleUrl: https://bundle.example/b.json # theirs\n  trustDomains: [\"corp.example\"]\n";
        let text = format!(
            "a: 1\ncaCertificates:\n{}  # about the next one\n{foreign}{}b: 2\n",
            ours("b.local"),
            ours("c.local")
        );
        let doc = MeshDoc::parse(&text).unwrap();
        assert_eq!(
            doc.entries(),
            vec![
                Some(("b.local".into(), PEM.into())),
                None,
                Some(("c.local".into(), PEM.into()))
            ]
        );
        let d = NewEntry {
            pem: PEM,
            trust_domain: "d.local",
        };
        let out = doc.rewrite(&[false, true, false], &[d]).unwrap();
        assert_eq!(
            out,
            format!("a: 1\ncaCertificates:\n{foreign}{}b: 2\n", ours("d.local"))
        );
        let out = doc.rewrite(&[true, true, false], &[]).unwrap();
        assert_eq!(
            out,
            format!(
                "a: 1\ncaCertificates:\n{}  # about the next one\n{foreign}b: 2\n",
                ours("b.local")
            )
        );
    }

    #[test]
    fn an_indented_list_with_odd_items_keeps_its_layout() {
        let text = "caCertificates:\n  -\n    pem: x\n  - *a\n  - &c {pem: y}\n";
        let text = format!("z: &a {{pem: z}}\n{text}");
        let out = edit(&text, &[true, true, true], &[B]).unwrap();
        let items: String = ours("b.local")
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect();
        assert_eq!(out, format!("{text}{items}"));
    }

    #[test]
    fn flow_lists_are_rebuilt_from_their_items_text() {
        let text = "caCertificates: [ {pem: x, certSigners: [a]},\n   &k {\"pem\": \"y\"} ] # trailing\nb: 2\n";
        let out = edit(text, &[true, false], &[B]).unwrap();
        assert_eq!(
            out,
            format!(
                "caCertificates: [{{pem: x, certSigners: [a]}}, {}] # trailing\nb: 2\n",
                render_flow(&B)
            )
        );
    }

    #[test]
    fn an_emptied_block_list_removes_the_entry_and_round_trips() {
        let text = "# top\na: 1 # one\nb: |\n  keep\n";
        let added = edit(text, &[], &[B]).unwrap();
        assert_eq!(edit(&added, &[false], &[]).unwrap(), text);
        assert_eq!(edit(&render_new(&[B]), &[false], &[]).unwrap(), "");
        let flow = "caCertificates: [{pem: x}] # by hand\nb: 2\n";
        assert_eq!(
            edit(flow, &[false], &[]).unwrap(),
            "caCertificates: [] # by hand\nb: 2\n"
        );
        assert_eq!(
            edit("{a: 1, caCertificates: [{pem: x}]}", &[false], &[]).unwrap(),
            "{a: 1, caCertificates: []}"
        );
    }

    #[test]
    fn entries_after_an_empty_block_scalar_are_delimited_by_their_dashes() {
        // The parser ends an empty block scalar inside the next item's line: the items are
        // still told apart by their dashes, and what is appended can be removed again.
        for text in [
            "a: 1\ncaCertificates:\n  - pem: |\n",
            "caCertificates:\n  - pem: >-\n  # none\nb: 2\n",
            "  a: 1\n  caCertificates:\n  - pem: |\n  b: 2\n",
        ] {
            let added = edit(text, &[true], &[B]).unwrap();
            assert_eq!(
                MeshDoc::parse(&added).unwrap().entries()[1],
                Some(("b.local".into(), PEM.into()))
            );
            assert_eq!(edit(&added, &[true, false], &[]).unwrap(), text, "{text:?}");
        }
    }

    #[test]
    fn an_edit_whose_undo_fails_is_not_made() {
        let doc = MeshDoc::parse("caCertificates:\n- x\n").unwrap();
        let added = doc.rewrite(&[true], &[B]).unwrap();
        let after = MeshDoc::parse(&added).unwrap();
        let undo = [Expected::Old(0)];
        assert!(after.check("caCertificates:\n- x\n", &undo, &[]).is_ok());
        assert!(matches!(
            Refusal::Undo(Box::new(Refusal::AnchorInUse(2))).to_string().as_str(),
            s if s.starts_with("entries added to caCertificates in data.mesh could not be removed again")
        ));
    }

    #[test]
    fn crlf_texts_get_crlf_lines() {
        let text = "a: \"x\ty\"\r\ncaCertificates:\r\n- pem: x\r\n";
        let out = edit(text, &[true], &[B]).unwrap();
        assert_eq!(
            out,
            format!("{text}{}", ours("b.local").replace('\n', "\r\n"))
        );
    }

    #[test]
    fn entries_of_our_shape_only_when_go_reads_the_same_strings() {
        let doc = MeshDoc::parse(
            "caCertificates:\n- {pem: x, trustDomains: [b.local]}\n- {pem: x, trustDomains: [yes]}\n- {pem: x, trustDomains: [010]}\n- {pem: x, trustDomains: [\"010\"]}\n- {pem: x, trustDomains: [!!str 010]}\n- {pem: x, trustDomains: [a, b]}\n- {pem: x, trustDomains: [b.local], certSigners: [s]}\n- {pem: !custom x, trustDomains: [b.local]}\n- {trustDomains: [b.local], pem: x}\n",
        )
        .unwrap();
        let got: Vec<Option<String>> = doc
            .entries()
            .into_iter()
            .map(|e| e.map(|(td, _)| td))
            .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            got,
            vec![
                s("b.local"),
                None,
                None,
                s("010"),
                s("010"),
                None,
                None,
                None,
                s("b.local")
            ]
        );
    }

    #[test]
    fn refuses_only_what_cannot_be_located_unambiguously() {
        assert_eq!(
            refusal("trustDomain: [unclosed\n  - :"),
            Refusal::Syntax("error: line 2 column 5: illegal placement of ':' indicator".into())
        );
        assert_eq!(refusal("a: 1\r b: 2"), Refusal::BareCarriageReturn);
        assert_eq!(refusal("a: 1\n---\nb: 2\n"), Refusal::MultipleDocuments);
        assert_eq!(refusal("- a\n- b\n"), Refusal::NotAMapping);
        assert_eq!(refusal("~\n"), Refusal::NotAMapping);
        assert_eq!(
            refusal("a: 1\ncaCertificates: oops\n"),
            Refusal::NotAList(2)
        );
        assert_eq!(refusal("caCertificates: {pem: x}\n"), Refusal::NotAList(1));
        assert_eq!(
            refusal("caCertificates: []\nb: 1\n\"caCertificates\": []\n"),
            Refusal::DuplicateKey(vec![1, 3])
        );
        assert_eq!(
            refusal("base: &b\n  caCertificates: []\n<<: *b\n"),
            Refusal::MergeKey(3)
        );
        assert_eq!(refusal("x: &l []\ncaCertificates: *l\n"), Refusal::Alias(2));
        assert_eq!(
            refusal("caCertificates: &l []\nother: *l\n"),
            Refusal::AnchorInUse(1)
        );
        assert_eq!(
            refusal("a: &a {x: 1}\nb: &b {<<: {caCertificates: []}}\n<<: [*a, *b]\n"),
            Refusal::MergeKey(3)
        );
        // What Go's YAML 1.1 reader sees otherwise: line breaks, a late BOM, binary keys.
        assert_eq!(
            refusal("a: 1\n# x\u{2028}caCertificates: []\n"),
            Refusal::GoReadsOtherwise('\u{2028}', 2)
        );
        assert_eq!(
            refusal("# x\u{85}b: 1\n"),
            Refusal::GoReadsOtherwise('\u{85}', 1)
        );
        assert_eq!(
            refusal("a: 1\n\u{feff}b: 2\n"),
            Refusal::GoReadsOtherwise('\u{feff}', 2)
        );
        assert_eq!(
            refusal("a: 1\n? !!binary Y2FDZXJ0aWZpY2F0ZXM=\n: []\n"),
            Refusal::BinaryKey(2)
        );
        // Go's boundary, found with tests/go/meshyaml: 132 merges of this anchor are read,
        // 133 are "document contains excessive aliasing".
        let entries: Vec<String> = (0..200).map(|i| format!("k{i}: {i}")).collect();
        let merges = |n| format!("a: &a {{{}}}\n{}", entries.join(", "), "<<: *a\n".repeat(n));
        assert!(MeshDoc::parse(&merges(132)).is_ok());
        assert_eq!(refusal(&merges(133)), Refusal::ExcessiveAliasing);
        // A merge that does not supply caCertificates, and anchors nobody uses, are fine.
        let ok = "base: &b {x: 1}\n<<: *b\ncaCertificates: &unused []\n";
        assert!(edit(ok, &[], &[B]).is_ok());
    }

    #[test]
    fn refuses_to_remove_an_entry_whose_anchor_is_used() {
        let text = "caCertificates:\n- &mine {pem: x, trustDomains: [b.local]}\nother: *mine\n";
        assert_eq!(edit(text, &[false], &[]), Err(Refusal::AnchorInUse(2)));
        assert!(edit(text, &[true], &[B]).is_ok());
    }

    #[test]
    fn writes_explicit_scalars() {
        assert!(plain_trust_domain("b.local") && plain_trust_domain("cluster"));
        for odd in [
            "yes", "no", "on", "null", "010", "1.5", ".inf", "-x", "a b", "a:b", "",
        ] {
            assert!(!plain_trust_domain(odd), "{odd}");
        }
        let odd = NewEntry {
            pem: "not\n a pem",
            trust_domain: "yes",
        };
        assert_eq!(
            render_block(&[odd], 0, "\n"),
            "- pem: \"not\\n a pem\"\n  trustDomains:\n  - \"yes\"\n"
        );
        assert_eq!(
            double_quoted("é\u{1}\u{1f600}"),
            "\"\\u00e9\\u0001\\U0001f600\""
        );
        let out = edit("a: 1\n", &[], &[odd]).unwrap();
        let doc = MeshDoc::parse(&out).unwrap();
        assert_eq!(
            doc.entries(),
            vec![Some(("yes".into(), "not\n a pem".into()))]
        );
    }

    #[test]
    fn the_self_check_catches_a_wrong_edit() {
        let doc = MeshDoc::parse("a: 1\ncaCertificates: []\n").unwrap();
        let order = [Expected::New(0)];
        assert_eq!(
            doc.check("a: 2\ncaCertificates: []\n", &[], &[]).err(),
            Some(Refusal::Check("other fields".into()))
        );
        assert_eq!(
            doc.check("a: 1\ncaCertificates: []\n", &order, &[B]).err(),
            Some(Refusal::Check("the number of entries".into()))
        );
        assert_eq!(
            doc.check("a: 1\ncaCertificates: [x]\n", &order, &[B]).err(),
            Some(Refusal::Check("a kept entry".into()))
        );
    }
}
