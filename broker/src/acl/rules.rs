//! Compiled rules: a trie of topic-filter levels per section (the anonymous section, each
//! user's, the patterns), walked once per check without allocating.
//!
//! A node records, as access bits, the rules that end there (`here`) and the rules that end
//! in `#` there (`hash`: they match this level and everything below). Its children are the
//! literal levels (sorted, binary search), a `+` child, and, in the pattern trie, the levels
//! holding `%c` or `%u` ([`Template`]), compared with the client's values at check time.
//! A check collects the bits of every rule matching the topic; the caller decides with them
//! (a deny bit first, then the wanted access).

use super::Identity;
use super::parse::Rule;
use crate::topic::is_dollar_topic;

/// Access bit: `read` (and `readwrite`).
pub(super) const READ: u8 = 1;
/// Access bit: `write` (and `readwrite`).
pub(super) const WRITE: u8 = 2;
/// Access bit: `deny`.
pub(super) const DENY: u8 = 4;

/// A piece of a pattern level: text, or a value substituted per client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    /// `%c`: the client identifier.
    ClientId,
    /// `%u`: the user name.
    Username,
}

/// Splits a pattern (or one level of it) into text and `%c` / `%u`, scanning left to right
/// as Mosquitto's substitution does: `%` followed by anything else is text.
fn pieces(pattern: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    let bytes = pattern.as_bytes();
    while i < bytes.len() {
        let placeholder = match (bytes[i], bytes.get(i + 1)) {
            (b'%', Some(b'c')) => Some(Piece::ClientId),
            (b'%', Some(b'u')) => Some(Piece::Username),
            _ => None,
        };
        match placeholder {
            Some(piece) => {
                if text_start < i {
                    out.push(Piece::Text(pattern[text_start..i].into()));
                }
                out.push(piece);
                i += 2;
                text_start = i;
            }
            None => i += 1,
        }
    }
    if text_start < bytes.len() {
        out.push(Piece::Text(pattern[text_start..].into()));
    }
    out
}

/// The value of a placeholder for `who`; `None` for `%u` of an anonymous client (a pattern
/// using `%u` never applies to it).
fn value<'a>(piece: &Piece, who: Identity<'a>) -> Option<&'a str> {
    match piece {
        Piece::ClientId => Some(who.client_id),
        Piece::Username => who.username,
        Piece::Text(_) => None,
    }
}

/// `pattern` with `%c` and `%u` replaced by `who`'s values; `None` when it uses `%u` and
/// `who` has no user name.
pub(super) fn substitute(pattern: &str, who: Identity<'_>) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    for piece in pieces(pattern) {
        match &piece {
            Piece::Text(text) => out.push_str(text),
            _ => out.push_str(value(&piece, who)?),
        }
    }
    Some(out)
}

/// Whether the client's values may be substituted into patterns at all. Mosquitto 2.0
/// denies every pattern to a client whose user name or client identifier contains `+` or
/// `#` (they would act as wildcards); we also refuse `/`, as Mosquitto 1.x did, because a
/// value spanning levels would let client `a/b` into client `a`'s `%c/#` hierarchy.
pub(super) fn substitutable(who: Identity<'_>) -> bool {
    let safe = |s: &str| !s.bytes().any(|b| matches!(b, b'+' | b'#' | b'/'));
    safe(who.client_id) && who.username.is_none_or(safe)
}

/// One pattern level holding `%c` or `%u`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

impl Template {
    /// Whether `level` equals this level with `who`'s values substituted.
    fn matches(&self, level: &str, who: Identity<'_>) -> bool {
        let mut rest = level;
        for piece in &self.0 {
            let expected = match piece {
                Piece::Text(text) => &**text,
                _ => match value(piece, who) {
                    Some(v) => v,
                    None => return false,
                },
            };
            match rest.strip_prefix(expected) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }
}

#[derive(Debug, Default)]
struct Node {
    /// Literal levels, sorted by level.
    literal: Vec<(Box<str>, Node)>,
    /// Levels with placeholders (pattern tries only), in file order.
    templates: Vec<(Template, Node)>,
    plus: Option<Box<Node>>,
    /// Access bits of the rules ending at this node.
    here: u8,
    /// Access bits of the rules ending in `#` below this node.
    hash: u8,
}

impl Node {
    fn child(&mut self, level: &str, patterns: bool) -> &mut Node {
        if level == "+" {
            return self.plus.get_or_insert_with(Box::default);
        }
        if patterns {
            let template = pieces(level);
            if template.iter().any(|p| !matches!(p, Piece::Text(_))) {
                let template = Template(template);
                let i = match self.templates.iter().position(|(t, _)| *t == template) {
                    Some(i) => i,
                    None => {
                        self.templates.push((template, Node::default()));
                        self.templates.len() - 1
                    }
                };
                return &mut self.templates[i].1;
            }
        }
        let i = match self.literal.binary_search_by(|(k, _)| (**k).cmp(level)) {
            Ok(i) => i,
            Err(i) => {
                self.literal.insert(i, (level.into(), Node::default()));
                i
            }
        };
        &mut self.literal[i].1
    }

    /// ORs into `acc` the bits of the rules below this node matching the rest of the topic
    /// (`None`: the topic ended at this node). Recursion depth is bounded by the depth of
    /// the trie, at most [`MAX_TOPIC_LEVELS`](crate::topic::MAX_TOPIC_LEVELS) + 1.
    fn collect(
        &self,
        rest: Option<&str>,
        first: bool,
        dollar: bool,
        who: Identity<'_>,
        acc: &mut u8,
    ) {
        // Wildcards in the first level never match a `$` topic (MQTT-4.7.2-1).
        let wildcards = !(first && dollar);
        if wildcards {
            *acc |= self.hash;
        }
        let Some(rest) = rest else {
            *acc |= self.here;
            return;
        };
        let (level, next) = match rest.split_once('/') {
            Some((level, next)) => (level, Some(next)),
            None => (rest, None),
        };
        if let Ok(i) = self.literal.binary_search_by(|(k, _)| (**k).cmp(level)) {
            self.literal[i].1.collect(next, false, dollar, who, acc);
        }
        if wildcards && let Some(plus) = &self.plus {
            plus.collect(next, false, dollar, who, acc);
        }
        for (template, child) in &self.templates {
            if template.matches(level, who) {
                child.collect(next, false, dollar, who, acc);
            }
        }
    }
}

/// The rules of one section (or of all patterns), compiled.
#[derive(Debug, Default)]
pub(super) struct RuleSet {
    root: Node,
    /// The rules as written, for [`classify`](super::Acl::classify).
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Compiles `rules`; `patterns`: levels with `%c` / `%u` are templates.
    pub(super) fn new(rules: Vec<Rule>, patterns: bool) -> RuleSet {
        let mut root = Node::default();
        for rule in &rules {
            let mut node = &mut root;
            let mut levels = rule.filter.split('/').peekable();
            while let Some(level) = levels.next() {
                if level == "#" && levels.peek().is_none() {
                    node.hash |= rule.access;
                    break;
                }
                node = node.child(level, patterns);
                if levels.peek().is_none() {
                    node.here |= rule.access;
                }
            }
        }
        RuleSet { root, rules }
    }

    /// The access bits of every rule matching the topic name `topic` for `who`.
    pub(super) fn bits(&self, topic: &str, who: Identity<'_>) -> u8 {
        let mut acc = 0;
        self.root
            .collect(Some(topic), true, is_dollar_topic(topic), who, &mut acc);
        acc
    }

    /// The rules as written, in file order.
    pub(super) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}
