//! The broker's configuration: a TOML file ([`mod@file`]), the command line (the `cli`
//! module, which produces the same shape and overrides the file key by key), documented
//! defaults, and the resolved [`Settings`] the binary runs with. [`values`] holds the value
//! types the file and the command line share, [`sizing`] the arithmetic the pools and the
//! connection ceiling are sized with. [`host`] fits the settings to the open-file limit (the
//! one set of checks `--check-config`, start-up and a reload share); [`reload`] compares two
//! resolutions for a live reload (SIGHUP).
//!
//! Every key is `section.name` in the file and `--name` (pool keys: `--pool-name`) on the
//! command line; `starling.example.toml` at the repository root lists them all.

pub mod access;
pub mod error;
pub mod example;
pub mod file;
pub mod host;
pub mod persistence;
pub mod reload;
pub mod sizing;
pub mod transport;
pub mod values;

use std::net::SocketAddr;
use std::path::Path;

use starling_pool::PoolConfig;

pub use error::ConfigError;
pub use file::{FileConfig, ListenerProtocol};
pub use host::{Fitted, Host, OpenFiles, load_fitted};
pub use values::{LogFormat, LogLevel, PoolPreset};

use crate::core::CoreConfig;
use crate::core::config::DEFAULT_MAX_CONNECTIONS;
use crate::monitor::MonitorSettings;
use crate::monitor::token::MetricsToken;
use sizing::{MAX_LISTENERS, clamp_preheating, max_live_objects_per_loop};
use values::{default_event_loops, env_log_level};

/// The MQTT port (IANA), on the loopback interface: the listener when none is configured
/// (as Mosquitto 2.0 does: a broker nobody configured is not open to the network).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";
/// Default time a graceful shutdown may take to flush what clients have queued.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 5_000;
/// Default connections from one source IP address (0 = no limit).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 0;

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// What it speaks.
    pub protocol: ListenerProtocol,
    /// Where it listens.
    pub bind: SocketAddr,
    /// Connections open through it at once (0: only the global limit).
    pub max_connections: usize,
    /// Who may connect through it, and what they may touch.
    pub access: access::AccessSettings,
    /// Whether its connections start with a PROXY protocol header (`server::proxy`).
    pub proxy_protocol: bool,
    /// Its TLS and WebSocket settings (`server::transport`).
    pub transport: transport::TransportSettings,
}

/// Everything the binary runs with, resolved from defaults, file and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Event-loop threads.
    pub event_loops: usize,
    /// The log level.
    pub log_level: LogLevel,
    /// The log line format.
    pub log_format: LogFormat,
    /// Time a graceful shutdown may take.
    pub shutdown_timeout_ms: u64,
    /// The listeners.
    pub listeners: Vec<ListenerSettings>,
    /// Connections one source IP may hold (0: no limit).
    pub max_connections_per_ip: usize,
    /// The core's limits and the per-loop pool for `core.max_connections`.
    pub core: CoreConfig,
    /// Whether `limits.max_connections` was set (file or flag) rather than taken from the
    /// preset or the default: lowering the operator's own value is worth a warning.
    pub max_connections_configured: bool,
    /// The pool preset, if any.
    pub pool_preset: Option<PoolPreset>,
    /// `pool.initial_objects` if set (else the preset's, lowered to fit).
    pub pool_initial_objects: Option<usize>,
    /// `pool.max_preheated_objects` if set (else the preset's, lowered to fit).
    pub pool_max_preheated_objects: Option<usize>,
    /// `[monitoring]`: the metrics endpoint and `$SYS`.
    pub monitor: MonitorSettings,
    /// `[persistence]`: the store.
    pub persistence: persistence::PersistenceSettings,
}

impl Settings {
    /// Resolves `config` (file overlaid with flags); `text` is the file's contents, used to
    /// point errors found after parsing at the key's line.
    pub fn resolve(
        config: &FileConfig,
        origin: &str,
        text: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let err = |key: &str, message: String| ConfigError::key(origin, key, message).located(text);
        let listeners: Vec<ListenerSettings> = match &config.listeners {
            None => vec![ListenerSettings {
                protocol: ListenerProtocol::Tcp,
                bind: DEFAULT_LISTEN
                    .parse()
                    .map_err(|e| err("listeners", format!("{e}")))?,
                max_connections: 0,
                access: access::AccessSettings::default(),
                proxy_protocol: false,
                transport: transport::TransportSettings::default(),
            }],
            Some(list) => list
                .iter()
                .map(|l| ListenerSettings {
                    protocol: l.protocol.unwrap_or(ListenerProtocol::Tcp),
                    bind: l.bind,
                    max_connections: l.max_connections.map_or(0, |n| n.get()),
                    access: access::AccessSettings::default(),
                    proxy_protocol: l.proxy_protocol.unwrap_or(false),
                    transport: transport::TransportSettings::default(),
                })
                .collect(),
        };
        let mut listeners = listeners;
        let max_packet_size_bytes = config
            .limits
            .max_packet_size_bytes
            .map_or(CoreConfig::default().max_packet_size_bytes, |v| v.get());
        for (i, l) in listeners.iter_mut().enumerate() {
            let section = config.listeners.as_ref().and_then(|list| list.get(i));
            let own = section.map(file::ListenerSection::auth).unwrap_or_default();
            let keys = section
                .map(file::ListenerSection::transport)
                .unwrap_or_default();
            l.transport = transport::resolve(l.protocol, &keys, max_packet_size_bytes)
                .map_err(|(key, message)| err(&format!("listeners[{i}].{key}"), message))?;
            let identity = l
                .transport
                .tls
                .as_ref()
                .is_some_and(|t| t.use_identity_as_username);
            l.access = access::resolve(l.bind, &own, &config.auth, identity)
                .map_err(|(key, message)| err(&access::blame(key, i, &own), message))?;
        }
        if listeners.is_empty() || listeners.len() > MAX_LISTENERS {
            return Err(err(
                "listeners",
                format!("{} listeners: allowed 1..={MAX_LISTENERS}", listeners.len()),
            ));
        }
        for (i, l) in listeners.iter().enumerate() {
            if listeners[..i].iter().any(|other| other.bind == l.bind) {
                return Err(err(
                    &format!("listeners[{i}].bind"),
                    format!(
                        "{} is bound by an earlier listener: each bind address once",
                        l.bind
                    ),
                ));
            }
        }
        let (s, l, p) = (&config.server, &config.limits, &config.pool);
        let preset_connections = p
            .preset
            .map(|preset| PoolConfig::preset(preset.to_pool()).max_live_objects);
        let defaults = CoreConfig::default();
        let core = CoreConfig {
            max_packet_size_bytes: l
                .max_packet_size_bytes
                .map_or(defaults.max_packet_size_bytes, |v| v.get()),
            connect_timeout_ms: l
                .connect_timeout_ms
                .map_or(defaults.connect_timeout_ms, |v| v.0),
            partial_packet_timeout_ms: l
                .partial_packet_timeout_ms
                .map_or(defaults.partial_packet_timeout_ms, |v| v.0),
            max_keep_alive_secs: l
                .max_keep_alive_secs
                .map_or(defaults.max_keep_alive_secs, |v| {
                    u16::try_from(v.0).unwrap_or(u16::MAX)
                }),
            max_inflight_messages: l
                .max_inflight_messages
                .map_or(defaults.max_inflight_messages, |v| v.get()),
            max_queued_messages: l
                .max_queued_messages
                .map_or(defaults.max_queued_messages, |v| v.get()),
            max_queued_bytes: l
                .max_queued_bytes
                .map_or(defaults.max_queued_bytes, |v| v.get()),
            max_connections: l
                .max_connections
                .map(|v| v.get())
                .or(preset_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_subscriptions_per_client: l
                .max_subscriptions_per_client
                .map_or(defaults.max_subscriptions_per_client, |v| v.get()),
            max_topic_length_bytes: l
                .max_topic_length_bytes
                .map_or(defaults.max_topic_length_bytes, |v| v.get()),
            max_topic_levels: l
                .max_topic_levels
                .map_or(defaults.max_topic_levels, |v| v.get()),
            max_output_buffer_bytes: l
                .max_output_buffer_bytes
                .map_or(defaults.max_output_buffer_bytes, |v| v.get()),
            topic_alias_maximum: l
                .topic_alias_maximum
                .map_or(defaults.topic_alias_maximum, |v| {
                    u16::try_from(v.0).unwrap_or(u16::MAX)
                }),
            receive_maximum: l.receive_maximum.map_or(defaults.receive_maximum, |v| {
                u16::try_from(v.get()).unwrap_or(u16::MAX)
            }),
            max_publisher_hold_ms: l
                .max_publisher_hold_ms
                .map_or(defaults.max_publisher_hold_ms, |v| v.0),
            max_publish_rate_messages_per_sec: l
                .max_publish_rate_messages_per_sec
                .map_or(defaults.max_publish_rate_messages_per_sec, |v| v.0),
            max_publish_rate_bytes_per_sec: l
                .max_publish_rate_bytes_per_sec
                .map_or(defaults.max_publish_rate_bytes_per_sec, |v| v.0),
            max_topic_alias_bytes: l
                .max_topic_alias_bytes
                .map_or(defaults.max_topic_alias_bytes, |v| v.get()),
            max_client_id_length_bytes: l
                .max_client_id_length_bytes
                .map_or(defaults.max_client_id_length_bytes, |v| v.get()),
            buffer_bytes: defaults.buffer_bytes,
            close_linger_timeout_ms: l
                .close_linger_timeout_ms
                .map_or(defaults.close_linger_timeout_ms, |v| v.0),
            close_linger_max_bytes: l
                .close_linger_max_bytes
                .map_or(defaults.close_linger_max_bytes, |v| v.get()),
            pool: PoolConfig {
                idle_ttl_ms: p.idle_ttl_ms.map_or(defaults.pool.idle_ttl_ms, |v| v.0),
                growth_threshold_percent: p
                    .growth_threshold_percent
                    .map_or(defaults.pool.growth_threshold_percent, |v| v.0 as u32),
                growth_factor_percent: p
                    .growth_factor_percent
                    .map_or(defaults.pool.growth_factor_percent, |v| v.0 as u32),
                ..defaults.pool
            },
        };
        let mut settings = Settings {
            event_loops: s.event_loops.map_or_else(default_event_loops, |v| v.get()),
            log_level: s.log_level.unwrap_or_else(env_log_level),
            log_format: s.log_format.unwrap_or_default(),
            shutdown_timeout_ms: s
                .shutdown_timeout_ms
                .map_or(DEFAULT_SHUTDOWN_TIMEOUT_MS, |v| v.0),
            listeners,
            max_connections_per_ip: l
                .max_connections_per_ip
                .map_or(DEFAULT_MAX_CONNECTIONS_PER_IP, |v| v.get()),
            core,
            max_connections_configured: l.max_connections.is_some(),
            pool_preset: p.preset,
            pool_initial_objects: p.initial_objects.map(|v| v.get()),
            pool_max_preheated_objects: p.max_preheated_objects.map(|v| v.get()),
            monitor: monitor_settings(&config.monitoring)
                .map_err(|(key, message)| err(key, message))?,
            persistence: persistence::PersistenceSettings::resolve(&config.persistence),
        };
        let (core, _) = settings
            .core_config(settings.core.max_connections)
            .map_err(|(key, message)| err(key, message))?;
        settings.core = core;
        Ok(settings)
    }

    /// Reads and resolves the file at `path` with `flags` over it.
    pub fn load(path: &Path, flags: &FileConfig) -> Result<Settings, ConfigError> {
        Ok(Source::load(Some(path), flags)?.settings)
    }

    /// The core's configuration for `max_connections` (the configured value, or that value
    /// lowered to the open-file ceiling): the per-loop pool is sized for it. Returns whether
    /// preset values were lowered to fit, or the key to blame and why the pool is invalid.
    pub fn core_config(
        &self,
        max_connections: usize,
    ) -> Result<(CoreConfig, bool), (&'static str, String)> {
        let loops = self.event_loops;
        let base = self.core.pool.clone();
        let mut pool = match self.pool_preset {
            None => PoolConfig::default(),
            Some(preset) => PoolConfig::preset(preset.to_pool()),
        };
        pool.idle_ttl_ms = base.idle_ttl_ms;
        pool.growth_threshold_percent = base.growth_threshold_percent;
        pool.growth_factor_percent = base.growth_factor_percent;
        pool.max_live_objects = max_live_objects_per_loop(max_connections, loops);
        // Only values that came from the preset are lowered; explicit ones are checked.
        let clamped = clamp_preheating(&mut pool);
        if let Some(n) = self.pool_max_preheated_objects {
            pool.max_preheated_objects = n;
        }
        match self.pool_initial_objects {
            Some(n) => pool.initial_objects = n,
            None => pool.initial_objects = pool.initial_objects.min(pool.max_preheated_objects),
        }
        pool.validate().map_err(|e| {
            let key = match e {
                starling_pool::ConfigError::InitialAboveCap { .. }
                | starling_pool::ConfigError::InitialZero => "pool.initial_objects",
                _ => "pool.max_preheated_objects",
            };
            let message = format!(
                "{e} (per event loop: initial {}, max preheated {}, max live {} = \
                 {max_connections} max connections / {loops} loops rounded up + slack)",
                pool.initial_objects, pool.max_preheated_objects, pool.max_live_objects,
            );
            (key, message)
        })?;
        Ok((
            CoreConfig {
                max_connections,
                pool,
                ..self.core.clone()
            },
            clamped,
        ))
    }
}

/// Resolved settings with where they came from, to point later errors at a line.
#[derive(Debug, Clone)]
pub struct Source {
    /// The settings.
    pub settings: Settings,
    /// The file's name, or `command line`.
    pub origin: String,
    /// The file's text, if there is a file.
    pub text: Option<String>,
}

impl Source {
    /// Reads `path` (if any: without one, the flags alone) and resolves it with `flags` over
    /// it.
    pub fn load(path: Option<&Path>, flags: &FileConfig) -> Result<Source, ConfigError> {
        let Some(path) = path else {
            let origin = "command line".to_string();
            let settings = Settings::resolve(flags, &origin, None)?;
            return Ok(Source {
                settings,
                origin,
                text: None,
            });
        };
        let (origin, text) = read(path)?;
        let file = FileConfig::parse(&text, &origin)?.overlay(flags);
        let settings = Settings::resolve(&file, &origin, Some(&text))?;
        Ok(Source {
            settings,
            origin,
            text: Some(text),
        })
    }
}

/// The file at `path` as its name for error messages and its text.
fn read(path: &Path) -> Result<(String, String), ConfigError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((origin, text)),
        Err(e) => Err(ConfigError {
            origin,
            key: None,
            position: None,
            message: format!("cannot read the configuration file: {e}"),
        }),
    }
}

/// `[monitoring]` with its defaults; the token file is read here, so that start-up,
/// `--check-config` and a reload refuse the same bad file. Errs with the key to blame.
fn monitor_settings(
    m: &file::MonitoringSection,
) -> Result<MonitorSettings, (&'static str, String)> {
    let defaults = MonitorSettings::default();
    let metrics_token = match &m.token_file {
        None => None,
        Some(path) => Some(MetricsToken::read(path).map_err(|e| ("monitoring.token_file", e))?),
    };
    Ok(MonitorSettings {
        metrics_listen: m.metrics_listen.map_or(defaults.metrics_listen, |v| v.0),
        sys_interval_secs: m
            .sys_interval_secs
            .map_or(defaults.sys_interval_secs, |v| v.0),
        metrics_token,
    })
}

#[cfg(test)]
mod tests;
