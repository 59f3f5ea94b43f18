//! The error of a file read line by line (the password and ACL files): which file, which
//! line, what is wrong.

use std::fmt;

/// A malformed or unreadable file: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file, as given (or a stand-in such as `<text>` when parsed from a string).
    pub file: String,
    /// The 1-based line at fault; 0 when the fault is not one line's (an unreadable file).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for FileError {}
