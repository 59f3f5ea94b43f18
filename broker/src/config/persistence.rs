//! `[persistence]`: whether and how the broker keeps sessions, queued messages and
//! retained messages across a restart (the store itself is the `starling-store` crate;
//! the server drives it, `server::persist`).

use std::path::PathBuf;

use serde::Deserialize;

use super::file::PositiveMillis;

/// Where the store lives when `path` is not given (relative to the working directory, as
/// Mosquitto's `persistence_location`).
pub const DEFAULT_PERSISTENCE_PATH: &str = "starling-data";
/// Default `flush_interval_ms` (`async` mode): what a crash may lose at most.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 100;
/// Default page cache the store keeps in memory.
pub const DEFAULT_STORE_CACHE_MIB: u64 = 64;

/// `persistence.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PersistenceMode {
    /// Nothing is stored: a restart forgets every session, queued and retained message.
    #[default]
    Off,
    /// Every change an acknowledgement promises is on disk before the acknowledgement
    /// leaves (one fsync per event-loop turn, shared by everything the turn acknowledged).
    Sync,
    /// The same changes, made durable at most `flush_interval_ms` later: a crash (not a
    /// clean stop) can lose that window.
    Async,
}

impl PersistenceMode {
    /// The key's value as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            PersistenceMode::Off => "off",
            PersistenceMode::Sync => "sync",
            PersistenceMode::Async => "async",
        }
    }
}

/// Store cache size in MiB (at least 1, at most 64 GiB).
pub type CacheMib = super::file::Bounded<1, 65_536>;

/// `[persistence]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is its key, documented in `starling.example.toml`
pub struct PersistenceSection {
    pub mode: Option<PersistenceMode>,
    pub path: Option<PathBuf>,
    pub flush_interval_ms: Option<PositiveMillis>,
    pub cache_mib: Option<CacheMib>,
}

/// `[persistence]` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistenceSettings {
    /// Off, sync or async.
    pub mode: PersistenceMode,
    /// The store's directory.
    pub path: PathBuf,
    /// `async`: the longest a change waits before it is made durable.
    pub flush_interval_ms: u64,
    /// Bytes of the store's page cache.
    pub cache_bytes: usize,
}

impl Default for PersistenceSettings {
    fn default() -> Self {
        PersistenceSettings::resolve(&PersistenceSection::default())
    }
}

impl PersistenceSettings {
    /// The section with its defaults.
    pub fn resolve(section: &PersistenceSection) -> PersistenceSettings {
        PersistenceSettings {
            mode: section.mode.unwrap_or_default(),
            path: section
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PERSISTENCE_PATH)),
            flush_interval_ms: section
                .flush_interval_ms
                .map_or(DEFAULT_FLUSH_INTERVAL_MS, |v| v.0),
            cache_bytes: (section.cache_mib.map_or(DEFAULT_STORE_CACHE_MIB, |v| v.0) << 20)
                as usize,
        }
    }

    /// Whether anything is stored.
    pub fn enabled(&self) -> bool {
        self.mode != PersistenceMode::Off
    }
}
