//! A configuration error: where (file, line, column), which key, and what is wrong and
//! allowed. Displayed as `FILE:LINE:COLUMN: key `KEY`: MESSAGE`.

use std::fmt;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `command line`).
    pub origin: String,
    /// The dotted key, when one is to blame (`limits.max_connections`, `listeners[1].bind`).
    pub key: Option<String>,
    /// 1-based line and column of the offending key or value, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong, and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` with no position (yet).
    pub fn key(origin: &str, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: origin.to_string(),
            key: Some(key.to_string()),
            position: None,
            message: message.into(),
        }
    }

    /// From a TOML (syntax, type or range) error, `path` being where serde was.
    pub fn from_toml(
        origin: &str,
        text: &str,
        path: Option<String>,
        error: &toml::de::Error,
    ) -> ConfigError {
        let mut message = error.message().trim().to_string();
        let mut key = path.filter(|p| !p.is_empty() && p != ".");
        // An unknown key: serde's path ends at its table; name the key itself.
        if let Some(unknown) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            let unknown = unknown.to_string();
            let full = match key.as_deref() {
                Some(table) if !table.ends_with(&unknown) => {
                    format!("{}.{unknown}", table.trim_end_matches(".?"))
                }
                Some(table) => table.to_string(),
                None => unknown.clone(),
            };
            key = Some(full.replace(".?", ""));
            message = format!("unknown key; {message}");
        }
        ConfigError {
            origin: origin.to_string(),
            key,
            position: error.span().map(|span| line_column(text, span.start)),
            message,
        }
    }

    /// Points the error at where `key` (`section.name`) is set in `text`, if it is.
    pub fn located(mut self, text: Option<&str>) -> ConfigError {
        if self.position.is_none()
            && let (Some(text), Some(key)) = (text, self.key.as_deref())
        {
            self.position = locate(text, key);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of byte `at` of `text`.
pub fn line_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Where `section.name` is set in `text`: the line of `name = ` under `[section]` (or the
/// first `[[section]]` entry for array keys such as `listeners[0].bind`). A heuristic for
/// errors found after parsing (relations between keys); `None` if it is not found.
fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    let (section, name) = key.rsplit_once('.')?;
    let (section, wanted_entry) = match section.split_once('[') {
        Some((s, rest)) => (s, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (section, None),
    };
    let mut in_section = false;
    let mut entry = 0usize;
    let mut offset = 0usize;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with("[[") {
            let name = trimmed.trim_matches(|c| c == '[' || c == ']').trim();
            if name == section {
                in_section = wanted_entry.is_none_or(|w| w == entry);
                entry += 1;
            } else {
                in_section = false;
            }
        } else if trimmed.starts_with('[') {
            in_section = trimmed.trim_matches(|c| c == '[' || c == ']').trim() == section;
        } else if in_section
            && let Some((k, _)) = trimmed.split_once('=')
            && k.trim() == name
        {
            let indent = line.len() - line.trim_start().len();
            return Some(line_column(text, offset + indent));
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_column("a\nbc", 0), (1, 1));
        assert_eq!(line_column("a\nbc", 3), (2, 2));
    }

    #[test]
    fn keys_are_found_in_their_section() {
        let text = "[limits]\nx = 1\n[pool]\n  initial_objects = 5\n";
        assert_eq!(locate(text, "pool.initial_objects"), Some((4, 3)));
        assert_eq!(locate(text, "limits.initial_objects"), None);
        let text = "[[listeners]]\nbind = \"a\"\n[[listeners]]\nbind = \"b\"\n";
        assert_eq!(locate(text, "listeners[1].bind"), Some((4, 1)));
    }
}
