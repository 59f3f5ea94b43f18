//! Authorization: Mosquitto's `acl_file` (syntax and semantics), checked per topic and
//! classified per subscription.
//!
//! Pure computation over topic names and filters: no I/O besides [`Acl::load`] reading the
//! file. The core asks it two questions: may this client read or write this topic
//! ([`Acl::check`]), and what does a subscription to this filter need ([`Acl::classify`]):
//! always allowed, never allowed, or a check per delivered topic.

use std::fmt;
use std::path::Path;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclError {
    /// The file (as given), or `<text>` when parsed from a string.
    pub file: String,
    /// The 1-based line, 0 when the file could not be read at all.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for AclError {}

/// A parsed ACL file.
#[derive(Debug, Default)]
pub struct Acl {}

impl Acl {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Acl, AclError> {
        let text = std::fs::read_to_string(path).map_err(|e| AclError {
            file: path.display().to_string(),
            line: 0,
            message: e.to_string(),
        })?;
        Acl::parse(&text, &path.display().to_string())
    }

    /// Parses the text of an ACL file (`file` names it in errors).
    pub fn parse(_text: &str, _file: &str) -> Result<Acl, AclError> {
        Ok(Acl::default())
    }

    /// Whether `who` may `access` the topic name `topic`.
    pub fn check(&self, _who: Identity<'_>, _topic: &str, _access: Access) -> bool {
        false
    }

    /// What a subscription of `who` to the valid filter `filter` needs.
    pub fn classify(&self, _who: Identity<'_>, _filter: &str) -> FilterClass {
        FilterClass::Never
    }

    /// The number of rules (`topic` and `pattern` lines).
    pub fn rule_count(&self) -> usize {
        0
    }
}
