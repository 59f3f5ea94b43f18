//! `starling.example.toml` read as a document: the one description of every configuration
//! key, from which `starling.toml(5)` is generated (`crate::manual`).
//!
//! The file's conventions, which [`parse`] relies on: a comment block directly above a
//! section header or a key describes it; a key written out is set to its default; a key
//! commented out as `# key = value` (or a section as `# [[name]]`) is an example whose
//! default depends on the machine or on another key. [`uncommented`] turns every such
//! example on, so tests can check that the examples are valid too.

/// The example configuration, as shipped at the repository root.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../starling.example.toml");

/// The example file's parts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Example {
    /// The comment lines before the first section (blank lines kept as empty strings).
    pub header: Vec<String>,
    /// The sections in file order.
    pub sections: Vec<Section>,
}

/// One `[name]` or `[[name]]` header and the keys under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// `server`, `listeners`, ...
    pub name: String,
    /// `[[name]]`: an array of tables (one entry per header).
    pub array: bool,
    /// Commented out: an example entry, not part of the defaults.
    pub example: bool,
    /// The comment block above the header.
    pub doc: Vec<String>,
    /// The keys in file order.
    pub keys: Vec<Key>,
}

/// One key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key's name within its section.
    pub name: String,
    /// The value as written (TOML).
    pub value: String,
    /// Commented out: the value is an example, not the default.
    pub example: bool,
    /// The comment block above it.
    pub doc: Vec<String>,
}

impl Section {
    /// `[name]` or `[[name]]`.
    pub fn header(&self) -> String {
        if self.array {
            format!("[[{}]]", self.name)
        } else {
            format!("[{}]", self.name)
        }
    }
}

/// What one line of the file is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line<'a> {
    Blank,
    /// Prose of a comment (after `#` and one space).
    Comment(&'a str),
    /// A section header; `commented` if it is written `# [..]`.
    Section {
        name: &'a str,
        array: bool,
        commented: bool,
    },
    /// `key = value`; `commented` if it is written `# key = value`.
    Key {
        name: &'a str,
        value: &'a str,
        commented: bool,
    },
}

/// A section header (`[name]`, `[[name]]`) or a `key = value` line, if `text` is one.
fn setting(text: &str, commented: bool) -> Option<Line<'_>> {
    let text = text.trim();
    if let Some(name) = text.strip_prefix("[[").and_then(|t| t.strip_suffix("]]")) {
        return is_name(name).then_some(Line::Section {
            name,
            array: true,
            commented,
        });
    }
    if let Some(name) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return is_name(name).then_some(Line::Section {
            name,
            array: false,
            commented,
        });
    }
    let (name, value) = text.split_once(" = ")?;
    is_name(name).then_some(Line::Key {
        name,
        value: value.trim(),
        commented,
    })
}

/// A bare TOML key as the file uses them: lowercase letters, digits and underscores.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn classify(line: &str) -> Line<'_> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Line::Blank;
    }
    match trimmed.strip_prefix('#') {
        Some(comment) => {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            setting(comment, true).unwrap_or(Line::Comment(comment))
        }
        None => setting(trimmed, false).unwrap_or(Line::Comment(trimmed)),
    }
}

/// Reads the example file's structure (see the module's conventions).
pub fn parse(text: &str) -> Example {
    let mut example = Example::default();
    let mut pending: Vec<String> = Vec::new();
    for line in text.lines() {
        match classify(line) {
            Line::Blank => {
                // A block not directly above a header or key: the file's header, or more
                // about the section it is in.
                let doc = std::mem::take(&mut pending);
                match example.sections.last_mut() {
                    None => {
                        example.header.extend(doc);
                        example.header.push(String::new());
                    }
                    Some(section) => section.doc.extend(doc),
                }
            }
            Line::Comment(comment) => pending.push(comment.to_string()),
            Line::Section {
                name,
                array,
                commented,
            } => example.sections.push(Section {
                name: name.to_string(),
                array,
                example: commented,
                doc: std::mem::take(&mut pending),
                keys: Vec::new(),
            }),
            Line::Key {
                name,
                value,
                commented,
            } => {
                let key = Key {
                    name: name.to_string(),
                    value: value.to_string(),
                    example: commented,
                    doc: std::mem::take(&mut pending),
                };
                match example.sections.last_mut() {
                    Some(section) => section.keys.push(key),
                    None => example.header.push(format!("{name} = {value}")),
                }
            }
        }
    }
    while example.header.last().is_some_and(String::is_empty) {
        example.header.pop();
    }
    example
}

/// `text` with every commented-out key and section header turned on: the file with every
/// example value set.
pub fn uncommented(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let turned_on = match classify(line) {
            Line::Section {
                commented: true, ..
            }
            | Line::Key {
                commented: true, ..
            } => line.trim_start().trim_start_matches('#').trim_start(),
            _ => line,
        };
        out.push_str(turned_on);
        out.push('\n');
    }
    out
}

/// Every key as `section.name` (array sections without an index), in file order, once.
pub fn dotted_keys(example: &Example) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for section in &example.sections {
        for key in &section.keys {
            let dotted = format!("{}.{}", section.name, key.name);
            if !keys.contains(&dotted) {
                keys.push(dotted);
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# Header.\n#\n#   usage\n\n[server]\n# Loops.\n# event_loops = 2\n\
        # Timeout.\nshutdown_timeout_ms = 5000\n\n# Extra.\n# [[listeners]]\n# bind = \"a\"\n";

    #[test]
    fn blocks_attach_to_what_follows_them() {
        let example = parse(TEXT);
        assert_eq!(example.header, ["Header.", "", "  usage"]);
        assert_eq!(example.sections.len(), 2);
        let server = &example.sections[0];
        assert_eq!(
            (server.name.as_str(), server.array, server.example),
            ("server", false, false)
        );
        assert_eq!(server.keys[0].name, "event_loops");
        assert!(server.keys[0].example);
        assert_eq!(server.keys[0].doc, ["Loops."]);
        assert_eq!(server.keys[1].value, "5000");
        assert!(!server.keys[1].example);
        let listeners = &example.sections[1];
        assert!(listeners.array && listeners.example);
        assert_eq!(listeners.doc, ["Extra."]);
        assert_eq!(listeners.keys[0].value, "\"a\"");
    }

    #[test]
    fn uncommenting_turns_on_keys_and_headers_only() {
        let on = uncommented(TEXT);
        assert!(on.contains("\nevent_loops = 2\n"), "{on}");
        assert!(on.contains("\n[[listeners]]\nbind = \"a\"\n"), "{on}");
        assert!(on.contains("# Loops.\n"), "{on}");
        assert!(on.contains("#   usage\n"), "{on}");
    }
}
