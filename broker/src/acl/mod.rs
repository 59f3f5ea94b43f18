//! Authorization: Mosquitto's `acl_file` (syntax and semantics), checked per topic and
//! classified per subscription.
//!
//! Pure computation over topic names and filters: no I/O besides [`Acl::load`] reading the
//! file. The core asks it two questions: may this client read or write this topic
//! ([`Acl::check`]), and what does a subscription to this filter need ([`Acl::classify`]):
//! always allowed, never allowed, or a check per delivered topic.
//!
//! # Syntax
//!
//! As Mosquitto 2.0 reads an `acl_file` (`mosquitto.conf(5)`; details in the `parse` submodule):
//!
//! ```text
//! # Anonymous clients (lines before the first `user` line):
//! topic read $SYS/#
//!
//! user roger
//! topic foo/bar              # access omitted: readwrite
//! topic deny foo/bar/secret
//!
//! # Every client, with %c = client identifier and %u = user name:
//! pattern write $SYS/broker/connection/%c/state
//! pattern readwrite sensor/%u/#
//! ```
//!
//! # Semantics
//!
//! As Mosquitto 2.0's `mosquitto_acl_check_default` (`src/security_default.c`), in order:
//!
//! 1. The client's section: the section of its user name, or the anonymous section for a
//!    client without one. A user without a section, and an anonymous client when the file
//!    has no anonymous section, skip this step. A matching `deny` rule denies; otherwise a
//!    matching rule granting the access grants.
//! 2. The patterns, for every client, with `%c` and `%u` substituted. A client whose user
//!    name or client identifier contains `+`, `#` or `/` gets nothing from patterns (see
//!    below); a pattern using `%u` never applies to a client without a user name. A
//!    matching `deny` pattern denies; otherwise a matching pattern granting the access
//!    grants.
//! 3. Otherwise the access is denied: an empty file denies everything.
//!
//! So a `deny` overrides grants of its own phase, and a section `deny` overrides pattern
//! grants, but a pattern `deny` does not override a grant of the client's section: that is
//! how a user is given an exception to a `pattern deny`.
//!
//! Matching follows [`crate::topic::matches`]: a wildcard in the first level never matches
//! a topic starting with `$` (MQTT-4.7.2-1), so `#` does not grant `$SYS/...`, `$SYS/#`
//! does. Mosquitto 2.0 refuses patterns to values containing `+` or `#`; it substitutes a
//! value containing `/` textually, so client `a/b` would get `dev/a/b/#` from
//! `dev/%c/#`, inside client `a`'s hierarchy: we refuse `/` too, as Mosquitto 1.x did.
//!
//! Subscriptions: Mosquitto 2.0's acl_file accepts every SUBSCRIBE and checks read access
//! per delivered message. [`Acl::classify`] decides at SUBSCRIBE time what a filter needs
//! (the same deliveries: a `Never` filter would have delivered nothing). Rules for `$SYS`
//! writes and `$share` topics that Mosquitto applies to every client whatever the ACL
//! (`acl__check_dollar` in `src/security.c`) are the caller's business.
//!
//! # Cost
//!
//! [`Acl::check`] allocates nothing: a hash lookup of the user name, then a walk of that
//! section's trie and of the pattern trie, level by level (the `rules` submodule).

mod classify;
mod parse;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

pub use parse::{MAX_ACL_FILE_BYTES, MAX_ACL_LINE_BYTES, MAX_ACL_RULES, MAX_ACL_USERNAME_BYTES};
use rules::{DENY, READ, RuleSet, WRITE, substitutable};

/// Who a check is for: the authenticated user name (none for an anonymous client) and the
/// client identifier (for `%c` in `pattern` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The user name the client authenticated as, if any.
    pub username: Option<&'a str>,
    /// The client identifier.
    pub client_id: &'a str,
}

/// The kind of access a check asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receiving messages published to the topic.
    Read,
    /// Publishing to the topic.
    Write,
}

/// What a subscription to a filter needs, decided once when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterClass {
    /// Every topic the filter can match is readable: no check per delivery.
    Always,
    /// No topic the filter can match is readable: the subscription is refused.
    Never,
    /// Some are, some are not: each delivery's topic is checked.
    PerTopic,
}

/// A malformed ACL file: where and what.
pub type AclError = crate::file_error::FileError;

/// A parsed ACL file.
#[derive(Debug, Default)]
pub struct Acl {
    /// Rules before the first `user` line.
    anonymous: RuleSet,
    /// Each user's section (std's keyed hash: user names come from clients).
    users: HashMap<Box<str>, RuleSet>,
    /// `pattern` lines.
    patterns: RuleSet,
    rule_count: usize,
}

impl Acl {
    /// Reads and parses `path` (at most [`MAX_ACL_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<Acl, AclError> {
        let name = path.display().to_string();
        let fail = |line: usize, message: String| AclError {
            file: name.clone(),
            line,
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(0, e.to_string()))?;
        let mut bytes = Vec::new();
        file.take(MAX_ACL_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(0, e.to_string()))?;
        if bytes.len() as u64 > MAX_ACL_FILE_BYTES {
            return Err(fail(
                0,
                format!("file is larger than {MAX_ACL_FILE_BYTES} bytes"),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            fail(line, "invalid UTF-8".to_owned())
        })?;
        Acl::parse(&text, &name)
    }

    /// Parses the text of an ACL file (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Result<Acl, AclError> {
        let parsed = parse::parse(text, file)?;
        let mut rule_count = parsed.anonymous.len() + parsed.patterns.len();
        let users = parsed
            .users
            .into_iter()
            .map(|(name, rules)| {
                rule_count += rules.len();
                (name, RuleSet::new(rules, false))
            })
            .collect();
        Ok(Acl {
            anonymous: RuleSet::new(parsed.anonymous, false),
            users,
            patterns: RuleSet::new(parsed.patterns, true),
            rule_count,
        })
    }

    /// The section of `who`: its user's, or the anonymous section; `None` when it has none.
    fn section(&self, who: Identity<'_>) -> Option<&RuleSet> {
        match who.username {
            Some(user) => self.users.get(user),
            None => Some(&self.anonymous).filter(|s| !s.is_empty()),
        }
    }

    /// Whether `who` may `access` the topic name `topic` (valid, as
    /// [`validate_topic_name`](crate::topic::validate_topic_name) checks).
    pub fn check(&self, who: Identity<'_>, topic: &str, access: Access) -> bool {
        let wanted = match access {
            Access::Read => READ,
            Access::Write => WRITE,
        };
        if let Some(section) = self.section(who) {
            let bits = section.bits(topic, who);
            if bits & DENY != 0 {
                return false;
            }
            if bits & wanted != 0 {
                return true;
            }
        }
        if self.patterns.is_empty() || !substitutable(who) {
            return false;
        }
        let bits = self.patterns.bits(topic, who);
        bits & DENY == 0 && bits & wanted != 0
    }

    /// What a subscription of `who` to the valid filter `filter` needs (a shared
    /// subscription's filter without its `$share/{group}/` prefix).
    ///
    /// [`FilterClass::Never`] only if no topic matching `filter` is readable by `who`,
    /// [`FilterClass::Always`] only if every one is; [`FilterClass::PerTopic`] otherwise, and
    /// also when the rules decide it only together (the `classify` submodule). Allocates: meant for
    /// SUBSCRIBE, not for deliveries.
    pub fn classify(&self, who: Identity<'_>, filter: &str) -> FilterClass {
        self.classify_filter(who, filter)
    }

    /// The number of rules (`topic` and `pattern` lines).
    pub fn rule_count(&self) -> usize {
        self.rule_count
    }

    /// The number of users with a section.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}
