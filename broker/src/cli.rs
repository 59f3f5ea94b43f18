//! The command line of the `starling` binary. Every limit has its unit in its flag's name and
//! defaults to the core's constant (`core::config`, `starling_pool::config`).

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use starling_pool::{PoolConfig, Preset};

use crate::core::CoreConfig;
use crate::core::config::{
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_INFLIGHT_MESSAGES,
    DEFAULT_MAX_KEEP_ALIVE_SECS, DEFAULT_MAX_PACKET_SIZE_BYTES, DEFAULT_MAX_QUEUED_MESSAGES,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT,
};
use crate::protocol::{MAX_FIXED_HEADER_LEN_BYTES, MAX_REMAINING_LENGTH_BYTES};
use crate::server::{clamp_preheating, max_live_objects_per_loop};

/// The MQTT port (IANA), on every IPv4 interface.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:1883";
/// The most event loops accepted.
pub const MAX_EVENT_LOOPS: u16 = 1024;
/// The smallest packet-size limit accepted: a minimal CONNECT (protocol name, level, flags,
/// keep-alive and an empty client id behind a two-byte fixed header) must fit.
pub const MIN_PACKET_SIZE_BYTES: usize = 14;
/// The largest packet MQTT 3.1.1 can frame: a five-byte fixed header and the largest
/// remaining length.
pub const MAX_PACKET_SIZE_BYTES: usize = MAX_FIXED_HEADER_LEN_BYTES + MAX_REMAINING_LENGTH_BYTES;

/// Starling, an MQTT 3.1.1 broker: one event loop per core, pooled connection state.
///
/// With no arguments it listens on 0.0.0.0:1883 with the defaults below. The open-file
/// limit is raised to its hard limit at start, and --max-connections is capped to what it
/// allows. Pool flags are per event loop; each loop's pool may hold its share of
/// --max-connections (rounded up) plus a slack for clients being refused and for the
/// uneven spread of client ids over loops.
#[derive(Debug, Parser)]
#[command(name = "starling", version, about, long_about)]
pub struct Cli {
    /// Address to listen on; repeat for several.
    #[arg(long = "listen", value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: Vec<SocketAddr>,

    /// Event-loop threads (default: the number of cores).
    #[arg(long, value_name = "N", default_value_t = default_event_loops(),
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_EVENT_LOOPS)))]
    pub event_loops: u16,

    /// Connected clients across all loops; one more gets CONNACK 0x03.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = at_least_one)]
    pub max_connections: usize,

    /// Largest packet accepted, fixed header included; a larger one closes the connection.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PACKET_SIZE_BYTES,
          value_parser = packet_size)]
    pub max_packet_size_bytes: usize,

    /// Time a new connection has to send its CONNECT.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONNECT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: u64,

    /// QoS 1/2 messages in flight toward one client.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_INFLIGHT_MESSAGES,
          value_parser = at_least_one)]
    pub max_inflight_messages: usize,

    /// Messages queued for one client beyond its in-flight window.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_QUEUED_MESSAGES)]
    pub max_queued_messages: usize,

    /// Cap on the keep-alive a client may ask for (0: no cap).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_KEEP_ALIVE_SECS)]
    pub max_keep_alive_secs: u16,

    /// Subscriptions one client may hold; more get 0x80 in SUBACK.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT)]
    pub max_subscriptions_per_client: usize,

    /// Pool sizes per loop: small (256 initial, 10 000 preheated at most), medium (2 048 /
    /// 100 000), large (10 000 / 100 000). Without it: 1 024 / 100 000. Preset values are
    /// lowered to the loop's max live objects if above it.
    #[arg(long, value_name = "PRESET", value_enum)]
    pub pool_preset: Option<PoolPreset>,

    /// Connection objects each loop builds at start (overrides the preset).
    #[arg(long, value_name = "N")]
    pub pool_initial_objects: Option<usize>,

    /// Connection objects each loop preheats at most as it grows (overrides the preset).
    #[arg(long, value_name = "N")]
    pub pool_max_preheated_objects: Option<usize>,

    /// Log level (logs go to stderr). Without it, RUST_LOG is used if it is a plain level,
    /// else info.
    #[arg(long, value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,
}

/// `--pool-preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolPreset {
    /// 256 initial, 10 000 preheated at most.
    Small,
    /// 2 048 initial, 100 000 preheated at most.
    Medium,
    /// 10 000 initial, 100 000 preheated at most.
    Large,
}

/// `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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

/// The default loop count: the cores this process may run on.
pub fn default_event_loops() -> u16 {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, usize::from(MAX_EVENT_LOOPS)) as u16
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn packet_size(text: &str) -> Result<usize, String> {
    let n = text.parse::<usize>().map_err(|e| e.to_string())?;
    if (MIN_PACKET_SIZE_BYTES..=MAX_PACKET_SIZE_BYTES).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "must be within {MIN_PACKET_SIZE_BYTES}..={MAX_PACKET_SIZE_BYTES} (a minimal CONNECT up to the largest MQTT packet)"
        ))
    }
}

impl Cli {
    /// The log level: the flag, else `RUST_LOG` if it is a plain level, else info.
    pub fn log_level(&self) -> LogLevel {
        self.log_level
            .or_else(|| {
                std::env::var("RUST_LOG")
                    .ok()
                    .and_then(|v| LogLevel::parse_plain(&v))
            })
            .unwrap_or(LogLevel::Info)
    }

    /// The event-loop count.
    pub fn event_loops(&self) -> usize {
        usize::from(self.event_loops)
    }

    /// The core's configuration with `max_connections` (the flag, possibly capped to the
    /// open-file ceiling) and the per-loop pool. Returns whether preset values were lowered
    /// to fit, or the reason the combination is invalid.
    pub fn core_config(&self, max_connections: usize) -> Result<(CoreConfig, bool), String> {
        let loops = self.event_loops();
        let mut pool = match self.pool_preset {
            None => PoolConfig::default(),
            Some(PoolPreset::Small) => PoolConfig::preset(Preset::Small),
            Some(PoolPreset::Medium) => PoolConfig::preset(Preset::Medium),
            Some(PoolPreset::Large) => PoolConfig::preset(Preset::Large),
        };
        pool.max_live_objects = max_live_objects_per_loop(max_connections, loops);
        // Only values that came from the preset are lowered; explicit ones are checked.
        let clamped = clamp_preheating(&mut pool);
        if let Some(n) = self.pool_max_preheated_objects {
            pool.max_preheated_objects = n;
        }
        if let Some(n) = self.pool_initial_objects {
            pool.initial_objects = n;
        } else {
            pool.initial_objects = pool.initial_objects.min(pool.max_preheated_objects);
        }
        pool.validate().map_err(|e| {
            format!(
                "invalid pool configuration per event loop (initial {}, max preheated {}, max live {} = \
                 {max_connections} max connections / {loops} loops rounded up + slack): {e}",
                pool.initial_objects,
                pool.max_preheated_objects,
                pool.max_live_objects,
            )
        })?;
        let core = CoreConfig {
            max_packet_size_bytes: self.max_packet_size_bytes,
            connect_timeout_ms: self.connect_timeout_ms,
            max_keep_alive_secs: self.max_keep_alive_secs,
            max_inflight_messages: self.max_inflight_messages,
            max_queued_messages: self.max_queued_messages,
            max_connections,
            max_subscriptions_per_client: self.max_subscriptions_per_client,
            pool,
            ..CoreConfig::default()
        };
        Ok((core, clamped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("starling").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_come_from_the_core() {
        let cli = parse(&[]).expect("no flags");
        assert_eq!(
            cli.listen,
            vec![DEFAULT_LISTEN.parse::<SocketAddr>().expect("literal")]
        );
        let (core, _) = cli.core_config(cli.max_connections).expect("valid");
        let defaults = CoreConfig::default();
        assert_eq!(core.max_packet_size_bytes, defaults.max_packet_size_bytes);
        assert_eq!(core.max_inflight_messages, defaults.max_inflight_messages);
        assert_eq!(core.pool.initial_objects, defaults.pool.initial_objects);
    }

    #[test]
    fn preset_values_shrink_to_a_small_limit_but_explicit_ones_are_checked() {
        let cli = parse(&["--event-loops", "2", "--pool-preset", "large"]).expect("flags");
        let (core, clamped) = cli.core_config(10).expect("clamped preset is valid");
        assert!(clamped);
        assert_eq!(
            core.pool.max_live_objects,
            crate::server::max_live_objects_per_loop(10, 2)
        );
        assert!(core.pool.initial_objects <= core.pool.max_live_objects);

        let cli = parse(&["--event-loops", "2", "--pool-initial-objects", "500"]).expect("flags");
        let error = cli
            .core_config(10)
            .expect_err("500 initial objects exceed the clamped preheating");
        assert!(error.contains("initial_objects (500)"), "{error}");
    }

    #[test]
    fn bad_values_are_refused_by_the_parser() {
        assert!(parse(&["--event-loops", "0"]).is_err());
        assert!(parse(&["--max-connections", "0"]).is_err());
        assert!(parse(&["--max-packet-size-bytes", "3"]).is_err());
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--pool-preset", "huge"]).is_err());
    }

    #[test]
    fn several_listen_addresses() {
        let cli = parse(&["--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2"]).expect("flags");
        assert_eq!(cli.listen.len(), 2);
    }

    #[test]
    fn log_level_names() {
        assert_eq!(LogLevel::parse_plain("DEBUG"), Some(LogLevel::Debug));
        assert_eq!(LogLevel::parse_plain("starling=debug"), None);
    }
}
