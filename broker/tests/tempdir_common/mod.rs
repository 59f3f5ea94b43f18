//! A fresh directory under the temporary directory for one test, removed when dropped:
//! shared by the tests that write files (password files, manual pages, certificates).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `starling-NAME-PID` under the temporary directory, empty, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates it (emptied if a crashed run left it behind).
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("starling-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temporary directory");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
