//! Parsing an ACL file, line by line, as Mosquitto 2.0's `aclfile__parse`
//! (`src/security_default.c`) does.
//!
//! - Trailing white space is stripped; so is leading white space (Mosquitto only skips
//!   leading spaces, and refuses a line starting with a tab or an indented comment: we
//!   accept both, a superset).
//! - Blank lines and lines starting with `#` are ignored.
//! - `topic [read|write|readwrite|deny] <topic>` and `pattern [...] <topic>`: words are
//!   separated by spaces (not tabs), the topic is the rest of the line and may contain
//!   spaces. With one word after the keyword, that word is the topic and the access is
//!   `readwrite`: `topic read` grants read and write on the topic `read`, as in Mosquitto.
//!   The topic must be a valid topic filter.
//! - `user <username>`: the rest of the line, spaces included, starts that user's section.
//!   Sections of the same name are merged. Lines before the first `user` line make up the
//!   anonymous section.
//! - Anything else is an error, and one error refuses the whole file.

use std::collections::HashMap;

use super::AclError;
use super::rules::{DENY, READ, WRITE};
use crate::topic::{MAX_TOPIC_LEVELS, level_count, validate_topic_filter};

/// The largest ACL file [`Acl::load`](super::Acl::load) reads.
pub const MAX_ACL_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The longest line of an ACL file, in bytes, without its line ending: room for a topic
/// of the protocol's maximum length (65,535 bytes) and the words before it.
pub const MAX_ACL_LINE_BYTES: usize = 65_535 + 1024;
/// The most rules (`topic` and `pattern` lines) an ACL file may hold.
pub const MAX_ACL_RULES: usize = 1_000_000;
/// The longest user name of a `user` line, in bytes: the longest the protocol can carry.
pub const MAX_ACL_USERNAME_BYTES: usize = 65_535;

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rule {
    /// The topic filter as written (`%c`, `%u` not yet substituted in patterns).
    pub filter: Box<str>,
    /// [`READ`], [`WRITE`], both, or [`DENY`].
    pub access: u8,
}

/// The rules of a file, grouped as Mosquitto groups them.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    /// `topic` lines before the first `user` line.
    pub anonymous: Vec<Rule>,
    /// `topic` lines of each user's sections, merged per name, in order of first appearance.
    pub users: Vec<(Box<str>, Vec<Rule>)>,
    /// `pattern` lines, wherever they are.
    pub patterns: Vec<Rule>,
}

/// White space as C's `isspace` (which Mosquitto uses to strip line ends) sees it.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Splits off the first space-delimited word, skipping the spaces before and after it
/// (`strtok_r` with `" "`). `None` when only spaces remain.
fn next_word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(' ') {
        Some((word, rest)) => (word, rest),
        None => (s, ""),
    })
}

fn parse_access(word: &str) -> Option<u8> {
    Some(match word {
        "read" => READ,
        "write" => WRITE,
        "readwrite" => READ | WRITE,
        "deny" => DENY,
        _ => return None,
    })
}

/// Parses the text of an ACL file; `file` names it in errors.
pub(super) fn parse(text: &str, file: &str) -> Result<Parsed, AclError> {
    let mut parsed = Parsed::default();
    // Index into `parsed.users` of the current section; `None` before the first `user`.
    let mut section: Option<usize> = None;
    let mut rules = 0usize;
    // User name → index into `parsed.users`, so that repeated sections merge.
    let mut sections: HashMap<&str, usize> = HashMap::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line_number = index + 1;
        let error = |message: String| AclError {
            file: file.to_owned(),
            line: line_number,
            message,
        };
        if raw.len() > MAX_ACL_LINE_BYTES {
            return Err(error(format!(
                "line is longer than {MAX_ACL_LINE_BYTES} bytes"
            )));
        }
        let line = raw.trim_matches(is_space);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((keyword, rest)) = next_word(line) else {
            continue;
        };
        match keyword {
            "topic" | "pattern" => {
                let Some((first, after)) = next_word(rest) else {
                    return Err(error(format!("`{keyword}` without a topic")));
                };
                let after = after.trim_matches(is_space);
                let (access, topic) = if after.is_empty() {
                    (READ | WRITE, first)
                } else {
                    let access = parse_access(first).ok_or_else(|| {
                        error(format!(
                            "invalid access `{first}`: expected `read`, `write`, `readwrite` or `deny`"
                        ))
                    })?;
                    (access, after)
                };
                if let Err(e) = validate_topic_filter(topic) {
                    return Err(error(format!("invalid topic filter `{topic}`: {e}")));
                }
                if level_count(topic) > MAX_TOPIC_LEVELS {
                    return Err(error(format!(
                        "topic filter has more than {MAX_TOPIC_LEVELS} levels"
                    )));
                }
                rules += 1;
                if rules > MAX_ACL_RULES {
                    return Err(error(format!("more than {MAX_ACL_RULES} rules")));
                }
                let rule = Rule {
                    filter: topic.into(),
                    access,
                };
                match (keyword, section) {
                    ("pattern", _) => parsed.patterns.push(rule),
                    (_, None) => parsed.anonymous.push(rule),
                    (_, Some(i)) => parsed.users[i].1.push(rule),
                }
            }
            "user" => {
                let name = rest.trim_matches(is_space);
                if name.is_empty() {
                    return Err(error("`user` without a user name".to_owned()));
                }
                if name.len() > MAX_ACL_USERNAME_BYTES {
                    return Err(error(format!(
                        "user name is longer than {MAX_ACL_USERNAME_BYTES} bytes"
                    )));
                }
                let next = parsed.users.len();
                let i = *sections.entry(name).or_insert(next);
                if i == next {
                    parsed.users.push((name.into(), Vec::new()));
                }
                section = Some(i);
            }
            other => {
                return Err(error(format!(
                    "expected `topic`, `pattern` or `user`, found `{other}`"
                )));
            }
        }
    }
    Ok(parsed)
}
