//! The TOML file's shape: every key optional (a missing key takes its flag's value or its
//! default), unknown keys refused, every number range-checked while it is read so that the
//! error carries the value's line and column.
//!
//! The command line produces the same [`FileConfig`] (see the `cli` module), so flags and
//! file go through one resolution ([`super::Settings::resolve`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::fmt;

use serde::de::{Error as _, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::ConfigError;
use super::sizing::MAX_EVENT_LOOPS;
pub use super::transport::ListenerProtocol;
use super::values::{LogFormat, LogLevel, PoolPreset};

/// An integer within `MIN..=MAX`, refused while it is read otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// What is allowed, as error messages say it.
    pub fn allowed() -> String {
        format!("an integer within {MIN}..={MAX}")
    }

    /// Checks `value` (also used by the command line's parsers).
    pub fn new(value: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&value) {
            Ok(Bounded(value))
        } else {
            Err(format!("{value} is out of range: allowed {MIN}..={MAX}"))
        }
    }

    /// The value as a `usize` (every bound used fits one on the 64-bit targets served).
    pub fn get(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// A command-line value parser for this range.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value = text
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("{e}: expected {}", Self::allowed()))?;
        Self::new(value)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(BoundedVisitor::<MIN, MAX>)
    }
}

/// Reads an integer and checks its range; a value of another type is refused with the
/// range as what was expected.
struct BoundedVisitor<const MIN: u64, const MAX: u64>;

impl<const MIN: u64, const MAX: u64> Visitor<'_> for BoundedVisitor<MIN, MAX> {
    type Value = Bounded<MIN, MAX>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Bounded::<MIN, MAX>::allowed())
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
        let unsigned =
            u64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))?;
        self.visit_u64(unsigned)
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Bounded::new(value).map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
    }
}

/// Reads `IP:PORT`, saying so when the text is not one.
fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        D::Error::invalid_value(
            Unexpected::Str(&text),
            &"an IP:PORT address such as \"0.0.0.0:1883\" or \"[::1]:1883\" (no host names)",
        )
    })
}

/// Event-loop threads.
pub type EventLoops = Bounded<1, { MAX_EVENT_LOOPS as u64 }>;
/// Milliseconds for timeouts (up to a day).
pub type Millis = Bounded<0, 86_400_000>;
/// Milliseconds that must be positive (up to a day).
pub type PositiveMillis = Bounded<1, 86_400_000>;
/// A connection count (pool keys are 32-bit).
pub type Connections = Bounded<1, { u32::MAX as u64 }>;
/// A connection count where 0 means "no limit".
pub type OptionalConnections = Bounded<0, { u32::MAX as u64 }>;
/// A packet size: a minimal CONNECT (14 bytes) up to the largest MQTT packet.
pub type PacketSize = Bounded<14, 268_435_460>;
/// Seconds of keep-alive (0 = no cap).
pub type KeepAliveSecs = Bounded<0, 65_535>;
/// Messages in flight (packet ids are 16-bit).
pub type Inflight = Bounded<1, 65_535>;
/// A count where 0 is allowed.
pub type Count = Bounded<0, { u32::MAX as u64 }>;
/// Bytes where 0 means "no limit" (up to 1 TiB).
pub type OptionalBytes = Bounded<0, { 1 << 40 }>;
/// Output bytes per connection (at least one lent buffer, up to 1 GiB).
pub type OutputBytes = Bounded<4096, { 1 << 30 }>;
/// Topic length (an MQTT string).
pub type TopicLength = Bounded<1, 65_535>;
/// Client identifier length: at least the 23 bytes every server must accept
/// (MQTT-3.1.3-5), at most an MQTT string.
pub type ClientIdLength = Bounded<23, 65_535>;
/// Topic levels (the topic index's ceiling).
pub type TopicLevels = Bounded<1, 256>;
/// Pool object counts.
pub type Objects = Bounded<1, { u32::MAX as u64 }>;
/// A percentage of the growth rule.
pub type ThresholdPercent = Bounded<1, 100>;
/// A growth factor in percent (above 100, at most ×10).
pub type FactorPercent = Bounded<101, 1000>;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[[listeners]]` (none: one TCP listener on 127.0.0.1:1883).
    pub listeners: Option<Vec<ListenerSection>>,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[pool]`.
    #[serde(default)]
    pub pool: PoolSection,
    /// `[monitoring]`.
    #[serde(default)]
    pub monitoring: MonitoringSection,
    /// `[auth]`: who may connect and what they may touch (listeners may override it).
    #[serde(default)]
    pub auth: super::access::AuthSection,
    /// `[persistence]`: the store of sessions, queued and retained messages.
    #[serde(default)]
    pub persistence: super::persistence::PersistenceSection,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Event-loop threads.
    pub event_loops: Option<EventLoops>,
    /// Log level.
    pub log_level: Option<LogLevel>,
    /// Log line format.
    pub log_format: Option<LogFormat>,
    /// Time a graceful shutdown may take.
    pub shutdown_timeout_ms: Option<Millis>,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// `tcp` (the default), `tls`, `ws` or `wss`.
    pub protocol: Option<ListenerProtocol>,
    /// `IP:PORT` to bind.
    #[serde(deserialize_with = "socket_addr")]
    pub bind: SocketAddr,
    /// Connections open through this listener at once (0: only the global limit).
    pub max_connections: Option<OptionalConnections>,
    /// Whether clients without a user name are admitted here (over `[auth]`'s).
    pub allow_anonymous: Option<bool>,
    /// This listener's password file (over `[auth]`'s).
    pub password_file: Option<std::path::PathBuf>,
    /// This listener's ACL file (over `[auth]`'s).
    pub acl_file: Option<std::path::PathBuf>,
    /// Whether every connection starts with a PROXY protocol header (v1 or v2) naming the
    /// client's address (behind HAProxy or a load balancer). Default: false.
    pub proxy_protocol: Option<bool>,
    /// TLS: the certificate chain (PEM).
    pub cert_file: Option<std::path::PathBuf>,
    /// TLS: its private key (PEM).
    pub key_file: Option<std::path::PathBuf>,
    /// TLS: the CAs client certificates are checked against (PEM).
    pub ca_file: Option<std::path::PathBuf>,
    /// TLS: whether clients must present a certificate.
    pub require_certificate: Option<bool>,
    /// TLS: whether the client certificate's name is the user name.
    pub use_identity_as_username: Option<bool>,
    /// WebSocket: the upgrade's path.
    pub ws_path: Option<String>,
    /// WebSocket: the `Origin` headers admitted.
    pub ws_allowed_origins: Option<Vec<String>>,
    /// WebSocket: the largest frame payload, in bytes.
    pub ws_max_frame_bytes: Option<usize>,
}

impl ListenerSection {
    /// A listener on `bind` with nothing else set.
    pub fn new(bind: SocketAddr) -> ListenerSection {
        ListenerSection {
            protocol: None,
            bind,
            max_connections: None,
            allow_anonymous: None,
            password_file: None,
            acl_file: None,
            proxy_protocol: None,
            cert_file: None,
            key_file: None,
            ca_file: None,
            require_certificate: None,
            use_identity_as_username: None,
            ws_path: None,
            ws_allowed_origins: None,
            ws_max_frame_bytes: None,
        }
    }

    /// The transport keys this listener sets.
    pub fn transport(&self) -> super::transport::TransportSection {
        super::transport::TransportSection {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            ca_file: self.ca_file.clone(),
            require_certificate: self.require_certificate,
            use_identity_as_username: self.use_identity_as_username,
            ws_path: self.ws_path.clone(),
            ws_allowed_origins: self.ws_allowed_origins.clone(),
            ws_max_frame_bytes: self.ws_max_frame_bytes,
        }
    }

    /// The access keys this listener sets itself.
    pub fn auth(&self) -> super::access::AuthSection {
        super::access::AuthSection {
            allow_anonymous: self.allow_anonymous,
            password_file: self.password_file.clone(),
            acl_file: self.acl_file.clone(),
            session_takeover: None,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is its key, documented in `starling.example.toml`
pub struct LimitsSection {
    pub max_connections: Option<Connections>,
    pub max_connections_per_ip: Option<OptionalConnections>,
    pub connect_timeout_ms: Option<PositiveMillis>,
    pub partial_packet_timeout_ms: Option<PositiveMillis>,
    pub max_packet_size_bytes: Option<PacketSize>,
    pub max_keep_alive_secs: Option<KeepAliveSecs>,
    pub max_inflight_messages: Option<Inflight>,
    pub max_queued_messages: Option<Count>,
    pub max_queued_bytes: Option<OptionalBytes>,
    pub max_subscriptions_per_client: Option<Count>,
    pub max_topic_length_bytes: Option<TopicLength>,
    pub max_topic_levels: Option<TopicLevels>,
    pub max_output_buffer_bytes: Option<OutputBytes>,
    pub topic_alias_maximum: Option<KeepAliveSecs>,
    pub receive_maximum: Option<Inflight>,
    pub max_publisher_hold_ms: Option<PositiveMillis>,
    pub max_publish_rate_messages_per_sec: Option<Count>,
    pub max_publish_rate_bytes_per_sec: Option<OptionalBytes>,
    pub close_linger_timeout_ms: Option<Millis>,
    pub close_linger_max_bytes: Option<OptionalBytes>,
    pub max_topic_alias_bytes: Option<OptionalBytes>,
    pub max_client_id_length_bytes: Option<ClientIdLength>,
}

/// `[pool]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is its key, documented in `starling.example.toml`
pub struct PoolSection {
    pub preset: Option<PoolPreset>,
    pub initial_objects: Option<Objects>,
    pub max_preheated_objects: Option<Objects>,
    pub idle_ttl_ms: Option<PositiveMillis>,
    pub growth_threshold_percent: Option<ThresholdPercent>,
    pub growth_factor_percent: Option<FactorPercent>,
}

/// `[monitoring]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is its key, documented in `starling.example.toml`
pub struct MonitoringSection {
    pub metrics_listen: Option<MetricsListen>,
    pub sys_interval_secs: Option<SysIntervalSecs>,
    pub token_file: Option<PathBuf>,
}

/// Seconds between `$SYS` rounds (0: off; up to a day).
pub type SysIntervalSecs = Bounded<0, 86_400>;

/// `monitoring.metrics_listen`: `IP:PORT` of the metrics and health endpoint, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

impl MetricsListen {
    const EXPECTED: &'static str =
        "an IP:PORT address such as \"127.0.0.1:9464\", or \"off\" to serve no metrics";

    /// Parses `IP:PORT` or `off` (also the command line's parser).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(MetricsListen(None));
        }
        text.parse()
            .map(|addr| MetricsListen(Some(addr)))
            .map_err(|_| format!("{text:?}: expected {}", Self::EXPECTED))
    }
}

impl<'de> Deserialize<'de> for MetricsListen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        MetricsListen::parse(&text)
            .map_err(|_| D::Error::invalid_value(Unexpected::Str(&text), &Self::EXPECTED))
    }
}

impl FileConfig {
    /// Parses `text` (the contents of `origin`); the error names the key, the line and column
    /// and what is allowed.
    pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::from_toml(origin, text, None, &e))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::from_toml(origin, text, Some(path), e.inner())
        })
    }

    /// `self` with every key `over` sets taken from `over` (flags over file).
    pub fn overlay(mut self, over: &FileConfig) -> FileConfig {
        macro_rules! take {
            ($section:ident: $($key:ident),*) => {
                $(if over.$section.$key.is_some() {
                    self.$section.$key = over.$section.$key.clone();
                })*
            };
        }
        take!(server: event_loops, log_level, log_format, shutdown_timeout_ms);
        take!(limits: max_connections, max_connections_per_ip, connect_timeout_ms,
            partial_packet_timeout_ms, max_packet_size_bytes, max_keep_alive_secs, max_inflight_messages,
            max_queued_messages, max_queued_bytes, max_subscriptions_per_client,
            max_topic_length_bytes, max_topic_levels, max_output_buffer_bytes,
            topic_alias_maximum, receive_maximum, max_publisher_hold_ms,
            max_publish_rate_messages_per_sec, max_publish_rate_bytes_per_sec,
            close_linger_timeout_ms, close_linger_max_bytes, max_topic_alias_bytes,
            max_client_id_length_bytes);
        take!(pool: preset, initial_objects, max_preheated_objects, idle_ttl_ms,
            growth_threshold_percent, growth_factor_percent);
        take!(auth: allow_anonymous, password_file, acl_file, session_takeover);
        take!(monitoring: metrics_listen, sys_interval_secs, token_file);
        take!(persistence: mode, path, flush_interval_ms, cache_mib);
        if over.listeners.is_some() {
            self.listeners = over.listeners.clone();
        }
        self
    }
}
