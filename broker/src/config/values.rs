//! The configuration's value types that are not numbers: the log level and format and the
//! pool preset, as `server.log_level`, `server.log_format` and `pool.preset` in the file and
//! `--log-level`, `--log-format` and `--pool-preset` on the command line (the `cli` module,
//! which takes them through clap's [`ValueEnum`]); and the defaults that depend on the
//! process's environment (the loop count, the log level).

use clap::ValueEnum;
use serde::Deserialize;
use starling_pool::Preset;

use super::sizing::MAX_EVENT_LOOPS;

/// `--pool-preset`, `pool.preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolPreset {
    /// 256 built at start, 10 000 preheated at most, 10 000 connections.
    Small,
    /// 2 048 built at start, 100 000 preheated at most, 100 000 connections.
    Medium,
    /// 10 000 built at start, 100 000 preheated at most, 1 000 000 connections.
    Large,
}

impl PoolPreset {
    /// The pool crate's preset.
    pub fn to_pool(self) -> Preset {
        match self {
            PoolPreset::Small => Preset::Small,
            PoolPreset::Medium => Preset::Medium,
            PoolPreset::Large => Preset::Large,
        }
    }
}

/// `--log-level`, `server.log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Start-up, refusals and closes for a reason (the default).
    Info,
    /// Every accept and close, with the peer address.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The `tracing` level.
    pub fn to_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }

    /// A plain level name (as in `RUST_LOG=debug`), case-insensitive.
    pub fn parse_plain(text: &str) -> Option<LogLevel> {
        LogLevel::from_str(text.trim(), true).ok()
    }
}

/// `--log-format`, `server.log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event: time, level, target, message, then `key=value`
    /// fields.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, and `fields` with the
    /// message and every field.
    Json,
}

/// The default loop count: the cores this process may run on.
pub fn default_event_loops() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, usize::from(MAX_EVENT_LOOPS))
}

/// The log level when none is configured: `RUST_LOG` if it is a plain level, else info.
pub fn env_log_level() -> LogLevel {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| LogLevel::parse_plain(&v))
        .unwrap_or(LogLevel::Info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_names() {
        assert_eq!(LogLevel::parse_plain("DEBUG"), Some(LogLevel::Debug));
        assert_eq!(LogLevel::parse_plain("starling=debug"), None);
    }
}
