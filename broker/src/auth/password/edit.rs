//! The changes `starling passwd` makes to a password file, as `mosquitto_passwd` makes them:
//! add or update one user's line, or delete it, keeping every other line (comments, blank
//! lines, other users, even lines the broker would refuse) byte for byte.
//!
//! The new file is written to a temporary file in the same directory and renamed over the
//! old one, so a reader (the broker re-reading on SIGHUP) sees the old file or the new one,
//! never half of one. An existing file keeps its permission bits (and its owner, where the
//! process may set it); a new file is created with mode 0600.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{
    HashFormat, Line, PasswordFile, check_username, classify, hash_password, raw_lines, without_cr,
};

/// Longest password `starling passwd` hashes, in bytes: MQTT's limit for the Password
/// field of CONNECT.
pub const MAX_PASSWORD_BYTES: usize = 65_535;

/// Mode of a password file `starling passwd` creates: read and write for its owner only.
pub const NEW_FILE_MODE: u32 = 0o600;

/// A change to one user's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Replace the user's line with `username:hash` (where its first line was, later
    /// duplicates removed), or append it if the user is not listed.
    Set(&'a str),
    /// Remove every line of the user.
    Delete,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The user was not listed and now is.
    Added,
    /// The user's hash was replaced.
    Updated,
    /// The user's line was removed.
    Deleted,
}

/// Where the password to hash comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// Given on the command line (`-b`).
    Given(Vec<u8>),
    /// Read from the terminal, twice without echo, or one line of standard input when it is
    /// not a terminal ([`super::prompt::read_password`]).
    Prompt,
}

/// What `starling passwd` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add or update the user with a password hashed in `format`.
    Set {
        /// Where the password comes from.
        password: PasswordSource,
        /// The hash to write.
        format: HashFormat,
    },
    /// Delete the user (`-D`).
    Delete,
}

/// One `starling passwd` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    /// The password file.
    pub file: PathBuf,
    /// The user to add, update or delete.
    pub username: String,
    /// Start from an empty file, replacing any (`-c`).
    pub create: bool,
    /// What to do.
    pub action: Action,
}

/// What went wrong in `starling passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdError(pub String);

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PasswdError {}

/// What `starling passwd` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The change made.
    pub outcome: Outcome,
    /// Set when the file written would not load in the broker (another line is at fault),
    /// with the reason.
    pub warning: Option<String>,
}

/// Runs `request`: validates the username, reads the file (unless creating it), gets and
/// hashes the password, and writes the file back.
pub fn run(request: &Passwd) -> Result<Report, PasswdError> {
    let fail = |message: String| PasswdError(format!("{}: {message}", request.file.display()));
    check_username(&request.username).map_err(&fail)?;
    let existing = if request.create {
        Vec::new()
    } else {
        match fs::read(&request.file) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(fail(
                    "no such file (-c creates a new password file)".to_string(),
                ));
            }
            Err(error) => return Err(fail(format!("cannot read: {error}"))),
        }
    };
    let hash;
    let change = match &request.action {
        Action::Delete => Change::Delete,
        Action::Set { password, format } => {
            let password = match password {
                PasswordSource::Given(password) => password.clone(),
                PasswordSource::Prompt => super::prompt::read_password().map_err(PasswdError)?,
            };
            check_password(&password).map_err(PasswdError)?;
            hash = hash_password(&password, *format).map_err(|e| PasswdError(e.to_string()))?;
            Change::Set(&hash)
        }
    };
    let (contents, outcome) = edit_text(&existing, &request.username, change).map_err(&fail)?;
    write_atomically(&request.file, &contents)
        .map_err(|error| fail(format!("cannot write: {error}")))?;
    let warning = PasswordFile::parse(&contents, &request.file.display().to_string())
        .err()
        .map(|error| format!("the broker would refuse this file: {error}"));
    Ok(Report { outcome, warning })
}

/// Checks a password before hashing: not empty, at most [`MAX_PASSWORD_BYTES`].
pub fn check_password(password: &[u8]) -> Result<(), String> {
    if password.is_empty() {
        return Err("empty password".to_string());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is {} bytes long (at most {MAX_PASSWORD_BYTES})",
            password.len()
        ));
    }
    Ok(())
}

/// Applies `change` for `username` to the file contents `existing`: the new contents (each
/// line ending in `\n`) and what changed. Lines of other users, comments and blank lines
/// are kept byte for byte, `\r` included. Deleting a user who is not listed is an error.
pub fn edit_text(
    existing: &[u8],
    username: &str,
    change: Change<'_>,
) -> Result<(Vec<u8>, Outcome), String> {
    let mut out = Vec::with_capacity(existing.len() + 128);
    let mut found = false;
    for raw in raw_lines(existing) {
        let line = without_cr(raw);
        let ours = matches!(classify(line), Line::Entry { username: name, .. }
            if name == username.as_bytes());
        if !ours {
            out.extend_from_slice(raw);
            out.push(b'\n');
            continue;
        }
        if let (Change::Set(hash), false) = (change, found) {
            push_entry(&mut out, username, hash);
        }
        found = true;
    }
    let outcome = match (change, found) {
        (Change::Set(_), true) => Outcome::Updated,
        (Change::Set(hash), false) => {
            push_entry(&mut out, username, hash);
            Outcome::Added
        }
        (Change::Delete, true) => Outcome::Deleted,
        (Change::Delete, false) => {
            return Err(format!("no user \"{}\"", username.escape_debug()));
        }
    };
    Ok((out, outcome))
}

fn push_entry(out: &mut Vec<u8>, username: &str, hash: &str) {
    out.extend_from_slice(username.as_bytes());
    out.push(b':');
    out.extend_from_slice(hash.as_bytes());
    out.push(b'\n');
}

/// Replaces the file at `path` with `contents` through a temporary file in the same
/// directory and a rename (a symbolic link is followed: its target is replaced). The
/// permission bits of an existing file are kept, and its owner where the process may set
/// it; a new file gets [`NEW_FILE_MODE`].
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let name = target.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".starling-tmp-{}", std::process::id()));
    let temp = dir.join(temp_name);
    let existing = fs::metadata(&target).ok();
    let mode = existing
        .as_ref()
        .map_or(NEW_FILE_MODE, |meta| meta.permissions().mode() & 0o7777);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(NEW_FILE_MODE)
            .open(&temp)?;
        if let Some(meta) = &existing {
            // Best effort: only root (or the owner, for its own groups) may set these.
            let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
        }
        // Exact, whatever the umask.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, &target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
        return result;
    }
    // The rename is durable once the directory is; a failure here leaves a correct file.
    if let Ok(dir) = fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
