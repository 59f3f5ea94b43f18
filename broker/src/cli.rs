//! The command line of the `starling` binary. Every setting of the configuration file is
//! also a flag (`limits.max_connections` is `--max-connections`, `pool.initial_objects` is
//! `--pool-initial-objects`, `server.event_loops` is `--event-loops`); a flag overrides the
//! file, and a key set by neither takes its documented default (`crate::config`,
//! `core::config`, `starling_pool::config`). The flags produce the file's own shape
//! ([`Cli::flags`]), so both go through the same checks.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::password::HashFormat;
use crate::auth::password::edit::{Action, Passwd, PasswordSource};
use crate::config::access::TakeoverKey;
use crate::config::file::{
    ClientIdLength, Connections, EventLoops, FactorPercent, Inflight, KeepAliveSecs,
    ListenerSection, MetricsListen, Millis, Objects, OptionalBytes, OptionalConnections,
    OutputBytes, PacketSize, PositiveMillis, SysIntervalSecs, ThresholdPercent, TopicLength,
    TopicLevels,
};
use crate::config::{FileConfig, ListenerProtocol, LogFormat, LogLevel, PoolPreset};

/// Starling, an MQTT 3.1, 3.1.1 and 5.0 broker: one event loop per core, pooled connection
/// state.
///
/// With no arguments it listens on 127.0.0.1:1883 (loopback only) with the documented defaults. With
/// --config FILE it reads a TOML file (its keys: starling.toml(5), starling.example.toml);
/// every key is also a flag, and a flag overrides the file's key. --check-config FILE runs
/// every check start-up makes and exits. SIGTERM/SIGINT shut down gracefully (a second one,
/// half a second or more after the first, exits at once); SIGHUP re-reads the file and
/// applies what can change live. The open-file limit is raised to its hard limit at start,
/// and --max-connections is capped to what it allows. Pool flags are per event loop. Exit
/// status: 0 after a graceful shutdown or a valid check, 2 for an invalid configuration, 1
/// otherwise.
#[derive(Debug, Parser)]
#[command(
    name = "starling",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Something to do instead of running the broker.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML configuration file; re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check FILE (with the other flags over it) as start-up would, open-file limit
    /// included, print the result and exit: 0 if valid, 2 if not.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub check_config: Option<PathBuf>,

    /// A listener, `IP:PORT`, with options after commas: `max_connections=N`,
    /// `proxy_protocol=true` (connections start with a PROXY protocol header),
    /// `protocol=tcp|tls|ws|wss`, `cert_file=PATH`, `key_file=PATH`, `ca_file=PATH`,
    /// `require_certificate=true`, `use_identity_as_username=true`, `ws_path=/PATH`; repeat
    /// for several. Replaces the listeners of the file. [default: 127.0.0.1:1883]
    #[arg(long = "listen", value_name = "ADDR:PORT", value_parser = parse_listener)]
    pub listen: Vec<ListenerSection>,

    /// Event-loop threads. [default: the number of cores]
    #[arg(long, value_name = "N", value_parser = EventLoops::parse)]
    pub event_loops: Option<EventLoops>,

    /// Log level (logs go to stderr). [default: RUST_LOG if it is a plain level, else info]
    #[arg(long, value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,

    /// Log line format: text (human-readable) or json (one object per line, for log
    /// collectors). [default: text]
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Time a graceful shutdown may take to flush queued messages. [default: 5000]
    #[arg(long, value_name = "N", value_parser = Millis::parse)]
    pub shutdown_timeout_ms: Option<Millis>,

    /// Connected clients across all loops; one more gets CONNACK 0x03. [default: 1000000,
    /// or the pool preset's]
    #[arg(long, value_name = "N", value_parser = Connections::parse)]
    pub max_connections: Option<Connections>,

    /// Connections one source IP may hold; more are closed at accept (0: no limit).
    /// [default: 0]
    #[arg(long, value_name = "N", value_parser = OptionalConnections::parse)]
    pub max_connections_per_ip: Option<OptionalConnections>,

    /// Largest packet accepted, fixed header included; a larger one closes the connection.
    /// [default: 262144]
    #[arg(long, value_name = "N", value_parser = PacketSize::parse)]
    pub max_packet_size_bytes: Option<PacketSize>,

    /// Time a new connection has to send its whole CONNECT, counted from accept.
    /// [default: 10000]
    #[arg(long, value_name = "N", value_parser = PositiveMillis::parse)]
    pub connect_timeout_ms: Option<PositiveMillis>,

    /// Time a packet begun after CONNECT has to arrive whole, counted from its first bytes.
    /// [default: 60000]
    #[arg(long, value_name = "N", value_parser = PositiveMillis::parse)]
    pub partial_packet_timeout_ms: Option<PositiveMillis>,

    /// QoS 1/2 messages in flight toward one client. [default: 20]
    #[arg(long, value_name = "N", value_parser = Inflight::parse)]
    pub max_inflight_messages: Option<Inflight>,

    /// Messages queued for one client beyond its in-flight window. [default: 1000]
    #[arg(long, value_name = "N", value_parser = crate::config::file::Count::parse)]
    pub max_queued_messages: Option<crate::config::file::Count>,

    /// Bytes (topics + payloads) queued for one client (0: no byte limit). [default: 16777216]
    #[arg(long, value_name = "N", value_parser = OptionalBytes::parse)]
    pub max_queued_bytes: Option<OptionalBytes>,

    /// Cap on the keep-alive a client may ask for (0: no cap): MQTT 5 clients asking for
    /// more, or for 0, are told the cap; 3.x clients are refused with CONNACK 0x02.
    /// [default: 0]
    #[arg(long, value_name = "N", value_parser = KeepAliveSecs::parse)]
    pub max_keep_alive_secs: Option<KeepAliveSecs>,

    /// Subscriptions one client may hold; more get 0x80 in SUBACK. [default: 1024]
    #[arg(long, value_name = "N", value_parser = crate::config::file::Count::parse)]
    pub max_subscriptions_per_client: Option<crate::config::file::Count>,

    /// Longest topic name or filter in bytes. [default: 65535]
    #[arg(long, value_name = "N", value_parser = TopicLength::parse)]
    pub max_topic_length_bytes: Option<TopicLength>,

    /// Deepest topic name or filter in levels. [default: 256]
    #[arg(long, value_name = "N", value_parser = TopicLevels::parse)]
    pub max_topic_levels: Option<TopicLevels>,

    /// Output bytes one connection may have waiting before messages queue. [default: 262144]
    #[arg(long, value_name = "N", value_parser = OutputBytes::parse)]
    pub max_output_buffer_bytes: Option<OutputBytes>,

    /// MQTT 5: Topic Alias Maximum announced to clients (0: clients may not use topic
    /// aliases). [default: 10]
    #[arg(long, value_name = "N", value_parser = KeepAliveSecs::parse)]
    pub topic_alias_maximum: Option<KeepAliveSecs>,

    /// Receive Maximum: QoS 1/2 PUBLISHes a client may have unacknowledged toward the
    /// broker (MQTT 5 announces it; one more is DISCONNECT 0x93, 3.1.1 closes). [default: 1024]
    #[arg(long, value_name = "N", value_parser = Inflight::parse)]
    pub receive_maximum: Option<Inflight>,

    /// Longest time a publisher is held back (not read) for a subscriber whose queue is
    /// filling; after it that subscriber's queue limit applies (drops counted).
    /// [default: 1000]
    #[arg(long, value_name = "MS", value_parser = PositiveMillis::parse)]
    pub max_publisher_hold_ms: Option<PositiveMillis>,

    /// PUBLISH packets one client may send per second, with a burst of one second's worth;
    /// a client over it is not read until it is within the rate again (0: unlimited).
    /// [default: 0]
    #[arg(long, value_name = "N", value_parser = crate::config::file::Count::parse)]
    pub max_publish_rate_messages_per_sec: Option<crate::config::file::Count>,

    /// PUBLISH bytes (whole packets) one client may send per second, likewise (0:
    /// unlimited). [default: 0]
    #[arg(long, value_name = "N", value_parser = OptionalBytes::parse)]
    pub max_publish_rate_bytes_per_sec: Option<OptionalBytes>,

    /// After the broker's last packet to a client (a refusing CONNACK, a DISCONNECT with a
    /// reason), how long the closed socket lingers, its input read and discarded until EOF,
    /// so a client still writing reads that packet instead of a reset (0: close at once).
    /// [default: 2000]
    #[arg(long, value_name = "N", value_parser = Millis::parse)]
    pub close_linger_timeout_ms: Option<Millis>,

    /// Most input a lingering socket may send before it is closed anyway (0: no
    /// lingering). [default: 1048576]
    #[arg(long, value_name = "N", value_parser = OptionalBytes::parse)]
    pub close_linger_max_bytes: Option<OptionalBytes>,

    /// MQTT 5: topic bytes one connection's Topic Alias table may hold (0: no byte limit);
    /// a client setting an alias past it gets DISCONNECT 0x97 Quota exceeded. The broker's
    /// own aliases toward a client stay within it too. [default: 65536]
    #[arg(long, value_name = "N", value_parser = OptionalBytes::parse)]
    pub max_topic_alias_bytes: Option<OptionalBytes>,

    /// Longest client identifier in bytes (at least 23); a longer one gets CONNACK 0x85
    /// (3.1.1: 0x02 Identifier rejected). [default: 256]
    #[arg(long, value_name = "N", value_parser = ClientIdLength::parse)]
    pub max_client_id_length_bytes: Option<ClientIdLength>,

    /// A deployment size for each loop's pool of connection objects: small (256 built at
    /// start, 10 000 preheated at most, 10 000 connections), medium (2 048 / 100 000 /
    /// 100 000), large (10 000 / 100 000 / 1 000 000). Without it: 1 024 / 100 000 /
    /// 1 000 000. Preset values are lowered to a loop's share of --max-connections if above
    /// it; each is overridden by its own flag.
    #[arg(long, value_name = "PRESET", value_enum)]
    pub pool_preset: Option<PoolPreset>,

    /// Connection objects each loop builds at start (overrides the preset).
    #[arg(long, value_name = "N", value_parser = Objects::parse)]
    pub pool_initial_objects: Option<Objects>,

    /// Connection objects each loop preheats at most as it grows (overrides the preset).
    #[arg(long, value_name = "N", value_parser = Objects::parse)]
    pub pool_max_preheated_objects: Option<Objects>,

    /// Idle time after which spare pool objects are freed. [default: 300000]
    #[arg(long, value_name = "N", value_parser = PositiveMillis::parse)]
    pub pool_idle_ttl_ms: Option<PositiveMillis>,

    /// Pool growth trigger, in percent of the preheated size in use. [default: 80]
    #[arg(long, value_name = "N", value_parser = ThresholdPercent::parse)]
    pub pool_growth_threshold_percent: Option<ThresholdPercent>,

    /// Address of the metrics and health endpoint (GET /metrics, GET /healthz), or `off`.
    /// [default: 127.0.0.1:9464]
    #[arg(long, value_name = "IP:PORT|off", value_parser = MetricsListen::parse)]
    pub metrics_listen: Option<MetricsListen>,

    /// Whether sessions, queued and retained messages survive a restart: off, sync (durable
    /// before each acknowledgement), async (durable within --persistence-flush-interval-ms).
    /// [default: off]
    #[arg(long, value_name = "MODE", value_enum)]
    pub persistence_mode: Option<crate::config::persistence::PersistenceMode>,

    /// Directory of the store (created if missing; locked against a second broker).
    /// [default: starling-data]
    #[arg(long, value_name = "DIR")]
    pub persistence_path: Option<std::path::PathBuf>,

    /// async mode: the longest a change waits before it is made durable (what a crash may
    /// lose). [default: 100]
    #[arg(long, value_name = "N", value_parser = PositiveMillis::parse)]
    pub persistence_flush_interval_ms: Option<PositiveMillis>,

    /// The store's page cache in MiB. [default: 64]
    #[arg(long, value_name = "N", value_parser = crate::config::persistence::CacheMib::parse)]
    pub persistence_cache_mib: Option<crate::config::persistence::CacheMib>,

    /// Seconds between $SYS topic rounds (0: no $SYS messages). [default: 10]
    #[arg(long, value_name = "N", value_parser = SysIntervalSecs::parse)]
    pub sys_interval_secs: Option<SysIntervalSecs>,

    /// File holding the bearer token GET /metrics then requires (Authorization: Bearer
    /// TOKEN; surrounding whitespace trimmed; at most 4 KiB); GET /healthz stays open.
    /// [default: none, /metrics is open to whoever reaches it]
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Pool growth step, in percent of the preheated size. [default: 150]
    #[arg(long, value_name = "N", value_parser = FactorPercent::parse)]
    pub pool_growth_factor_percent: Option<FactorPercent>,

    /// Whether clients without a user name are admitted (every listener without its own
    /// key). [default: false with a password file; else true on loopback, and a listener on
    /// another address refuses to start unless this is true]
    #[arg(long, value_name = "BOOL")]
    pub allow_anonymous: Option<bool>,

    /// Mosquitto's password_file (`username:hash` lines; `starling passwd` writes it).
    /// [default: none, user names are taken as given]
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,

    /// Mosquitto's acl_file. [default: none, every topic readable and writable except `$`
    /// topics, which no client publishes to]
    #[arg(long, value_name = "PATH")]
    pub acl_file: Option<PathBuf>,

    /// Who may take over a client id's session: same-user or any. [default: same-user with
    /// a password file, else any]
    #[arg(long, value_name = "WHO", value_parser = parse_takeover)]
    pub session_takeover: Option<TakeoverKey>,
}

/// `--session-takeover same-user|any`.
fn parse_takeover(text: &str) -> Result<TakeoverKey, String> {
    match text {
        "same-user" => Ok(TakeoverKey::SameUser),
        "any" => Ok(TakeoverKey::Any),
        _ => Err(format!("`{text}`: expected same-user or any")),
    }
}

/// What `starling` can do besides running the broker.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the manual pages (starling(1), starling-man(1), starling-passwd(1),
    /// starling.toml(5)) into DIR/man1 and DIR/man5, print their paths and exit.
    Man {
        /// The manual's root, such as /usr/local/share/man.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Add, update or delete a user of a password file (Mosquitto's password_file format).
    ///
    /// As mosquitto_passwd does: other lines, comments included, are kept as they are; the
    /// file is replaced through a temporary file and a rename (a new file gets mode 0600).
    /// Without -b the password is read twice from the terminal without echo, or as one line
    /// of standard input when it is not a terminal. Exit status: 0 on success, 1 otherwise.
    Passwd(PasswdArgs),
    /// Show what a store (the directory `persistence.path` names) holds: its format, size, sessions, queued and
    /// in-flight messages, message bodies and retained messages.
    ///
    /// The store is locked while a broker runs on it: stop the broker first (or inspect a
    /// backup copy). The store is opened as the broker opens it (its integrity checked; a
    /// damaged store is refused with the file named). Exit status: 0 on success, 1 otherwise.
    Store {
        /// The store's directory (the broker's `persistence.path`).
        #[arg(value_name = "DIR")]
        path: PathBuf,
        /// Also list every session: client id, expiry, subscriptions, messages queued and in
        /// flight.
        #[arg(long)]
        sessions: bool,
    },
}

/// `starling passwd [-c] [-b] [-D] [--hash FORMAT] FILE USER [PASSWORD]`.
#[derive(Debug, Clone, clap::Args)]
pub struct PasswdArgs {
    /// Create the file, replacing any existing one.
    #[arg(short = 'c', conflicts_with = "delete")]
    pub create: bool,

    /// Batch mode: take the password from the command line (visible to other users of the
    /// host in the process list; prefer piping it on standard input).
    #[arg(short = 'b', requires = "password")]
    pub batch: bool,

    /// Delete the user instead of adding or updating it.
    #[arg(short = 'D', conflicts_with_all = ["batch", "hash"])]
    pub delete: bool,

    /// The hash to write: argon2id (the strongest), pbkdf2-sha512 (`$7$`, 101 iterations,
    /// what mosquitto_passwd writes: Mosquitto reads it too) or scram-sha-256 (a verifier
    /// that also serves MQTT 5 SCRAM-SHA-256 authentication).
    #[arg(
        short = 'H',
        long = "hash",
        value_name = "FORMAT",
        value_enum,
        default_value_t
    )]
    pub hash: HashFormat,

    /// The password file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The user to add, update or delete.
    #[arg(value_name = "USER")]
    pub username: String,

    /// The password, with -b only.
    #[arg(value_name = "PASSWORD", requires = "batch")]
    pub password: Option<OsString>,
}

impl PasswdArgs {
    /// The request these arguments make.
    pub fn request(&self) -> Passwd {
        let action = if self.delete {
            Action::Delete
        } else {
            let password = match &self.password {
                Some(password) => PasswordSource::Given(password.as_bytes().to_vec()),
                None => PasswordSource::Prompt,
            };
            Action::Set {
                password,
                format: self.hash,
            }
        };
        Passwd {
            file: self.file.clone(),
            username: self.username.clone(),
            create: self.create,
            action,
        }
    }
}

/// The options `--listen` takes after the address.
const LISTEN_OPTIONS: &str = "max_connections=N, proxy_protocol=true|false, \
    protocol=tcp|tls|ws|wss, cert_file=PATH, key_file=PATH, ca_file=PATH, \
    require_certificate=true|false, use_identity_as_username=true|false, ws_path=/PATH";

/// `--listen IP:PORT[,OPTION=VALUE]...` (see [`LISTEN_OPTIONS`]).
fn parse_listener(text: &str) -> Result<ListenerSection, String> {
    let mut parts = text.split(',');
    let bind: SocketAddr = parts
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|e| format!("{e}: expected IP:PORT[,OPTION=VALUE]..."))?;
    let mut listener = ListenerSection::new(bind);
    listener.protocol = Some(ListenerProtocol::Tcp);
    for option in parts {
        let Some((key, value)) = option.split_once('=') else {
            return Err(format!(
                "listener option `{option}`: expected OPTION=VALUE ({LISTEN_OPTIONS})"
            ));
        };
        let path = || Some(std::path::PathBuf::from(value));
        match key {
            "max_connections" => {
                listener.max_connections = Some(OptionalConnections::parse(value)?);
            }
            "proxy_protocol" => listener.proxy_protocol = Some(flag(key, value)?),
            "protocol" => {
                listener.protocol = Some(match value {
                    "tcp" => ListenerProtocol::Tcp,
                    "tls" => ListenerProtocol::Tls,
                    "ws" => ListenerProtocol::Ws,
                    "wss" => ListenerProtocol::Wss,
                    _ => return Err(format!("protocol={value}: expected tcp, tls, ws or wss")),
                });
            }
            "cert_file" => listener.cert_file = path(),
            "key_file" => listener.key_file = path(),
            "ca_file" => listener.ca_file = path(),
            "require_certificate" => listener.require_certificate = Some(flag(key, value)?),
            "use_identity_as_username" => {
                listener.use_identity_as_username = Some(flag(key, value)?);
            }
            "ws_path" => listener.ws_path = Some(value.to_string()),
            _ => {
                return Err(format!(
                    "unknown listener option `{option}`: allowed {LISTEN_OPTIONS}"
                ));
            }
        }
    }
    Ok(listener)
}

/// A `true`/`false` listener option.
fn flag(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{key}={value}: expected true or false")),
    }
}

impl Cli {
    /// The flags as a configuration layer to put over the file.
    pub fn flags(&self) -> FileConfig {
        let mut c = FileConfig::default();
        c.server.event_loops = self.event_loops;
        c.server.log_level = self.log_level;
        c.server.log_format = self.log_format;
        c.server.shutdown_timeout_ms = self.shutdown_timeout_ms;
        if !self.listen.is_empty() {
            c.listeners = Some(self.listen.clone());
        }
        let l = &mut c.limits;
        l.max_connections = self.max_connections;
        l.max_connections_per_ip = self.max_connections_per_ip;
        l.connect_timeout_ms = self.connect_timeout_ms;
        l.partial_packet_timeout_ms = self.partial_packet_timeout_ms;
        l.max_packet_size_bytes = self.max_packet_size_bytes;
        l.max_keep_alive_secs = self.max_keep_alive_secs;
        l.max_inflight_messages = self.max_inflight_messages;
        l.max_queued_messages = self.max_queued_messages;
        l.max_queued_bytes = self.max_queued_bytes;
        l.max_subscriptions_per_client = self.max_subscriptions_per_client;
        l.max_topic_length_bytes = self.max_topic_length_bytes;
        l.max_topic_levels = self.max_topic_levels;
        l.max_output_buffer_bytes = self.max_output_buffer_bytes;
        l.topic_alias_maximum = self.topic_alias_maximum;
        l.receive_maximum = self.receive_maximum;
        l.max_publisher_hold_ms = self.max_publisher_hold_ms;
        l.max_publish_rate_messages_per_sec = self.max_publish_rate_messages_per_sec;
        l.max_publish_rate_bytes_per_sec = self.max_publish_rate_bytes_per_sec;
        l.close_linger_timeout_ms = self.close_linger_timeout_ms;
        l.close_linger_max_bytes = self.close_linger_max_bytes;
        l.max_topic_alias_bytes = self.max_topic_alias_bytes;
        l.max_client_id_length_bytes = self.max_client_id_length_bytes;
        let p = &mut c.pool;
        p.preset = self.pool_preset;
        p.initial_objects = self.pool_initial_objects;
        p.max_preheated_objects = self.pool_max_preheated_objects;
        p.idle_ttl_ms = self.pool_idle_ttl_ms;
        p.growth_threshold_percent = self.pool_growth_threshold_percent;
        p.growth_factor_percent = self.pool_growth_factor_percent;
        c.monitoring.metrics_listen = self.metrics_listen;
        c.monitoring.sys_interval_secs = self.sys_interval_secs;
        c.monitoring.token_file = self.token_file.clone();
        let ps = &mut c.persistence;
        ps.mode = self.persistence_mode;
        ps.path = self.persistence_path.clone();
        ps.flush_interval_ms = self.persistence_flush_interval_ms;
        ps.cache_mib = self.persistence_cache_mib;
        let a = &mut c.auth;
        a.allow_anonymous = self.allow_anonymous;
        a.password_file = self.password_file.clone();
        a.acl_file = self.acl_file.clone();
        a.session_takeover = self.session_takeover;
        c
    }

    /// The settings from the file (if `--config`) with the flags over it.
    pub fn settings(&self) -> Result<crate::config::Settings, crate::config::ConfigError> {
        crate::config::Source::load(self.config.as_deref(), &self.flags()).map(|s| s.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_LISTEN;
    use crate::core::CoreConfig;
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
        let settings = cli.settings().expect("defaults are valid");
        assert_eq!(
            settings.listeners[0].bind,
            DEFAULT_LISTEN.parse::<SocketAddr>().expect("literal")
        );
        let defaults = CoreConfig::default();
        assert_eq!(
            settings.core.max_packet_size_bytes,
            defaults.max_packet_size_bytes
        );
        assert_eq!(
            settings.core.max_inflight_messages,
            defaults.max_inflight_messages
        );
        assert_eq!(
            settings.core.pool.initial_objects,
            defaults.pool.initial_objects
        );
    }

    #[test]
    fn preset_values_shrink_to_a_small_limit_but_explicit_ones_are_checked() {
        let cli = parse(&["--event-loops", "2", "--pool-preset", "large"]).expect("flags");
        let settings = cli.settings().expect("valid");
        assert_eq!(
            settings.core.max_connections, 1_000_000,
            "the preset's max connections"
        );
        let (core, clamped) = settings.core_config(10).expect("clamped preset is valid");
        assert!(clamped);
        assert_eq!(
            core.pool.max_live_objects,
            crate::config::sizing::max_live_objects_per_loop(10, 2)
        );
        assert!(core.pool.initial_objects <= core.pool.max_live_objects);

        let cli = parse(&["--event-loops", "2", "--pool-initial-objects", "500"]).expect("flags");
        let settings = cli
            .settings()
            .expect("valid at the default max connections");
        let (key, error) = settings
            .core_config(10)
            .expect_err("500 initial objects exceed the clamped preheating");
        assert_eq!(key, "pool.initial_objects");
        assert!(error.contains("initial_objects (500)"), "{error}");
    }

    #[test]
    fn bad_values_are_refused_by_the_parser() {
        assert!(parse(&["--event-loops", "0"]).is_err());
        assert!(parse(&["--max-connections", "0"]).is_err());
        assert!(parse(&["--max-packet-size-bytes", "3"]).is_err());
        assert!(parse(&["--listen", "nowhere"]).is_err());
        assert!(parse(&["--listen", "127.0.0.1:1,bogus=1"]).is_err());
        assert!(parse(&["--pool-preset", "huge"]).is_err());
        assert!(parse(&["--max-topic-levels", "257"]).is_err());
        // Every server must accept client ids of up to 23 bytes (MQTT-3.1.3-5).
        assert!(parse(&["--max-client-id-length-bytes", "22"]).is_err());
        assert!(parse(&["--max-client-id-length-bytes", "65536"]).is_err());
    }

    #[test]
    fn what_one_connection_may_pin_is_set_by_flags() {
        let cli = parse(&[
            "--max-topic-alias-bytes",
            "0",
            "--max-client-id-length-bytes",
            "23",
        ])
        .expect("flags");
        let settings = cli.settings().expect("valid");
        assert_eq!(settings.core.max_topic_alias_bytes, 0);
        assert_eq!(settings.core.max_client_id_length_bytes, 23);
    }

    #[test]
    fn several_listen_addresses_with_limits() {
        let cli = parse(&[
            "--listen",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:2,max_connections=5",
        ])
        .expect("flags");
        let settings = cli.settings().expect("valid");
        assert_eq!(settings.listeners.len(), 2);
        assert_eq!(settings.listeners[1].max_connections, 5);
        assert!(!settings.listeners[1].proxy_protocol);
    }

    #[test]
    fn a_listener_with_the_proxy_protocol() {
        let cli = parse(&[
            "--listen",
            "127.0.0.1:1,proxy_protocol=true",
            "--listen",
            "127.0.0.1:2,max_connections=5,proxy_protocol=false",
        ])
        .expect("flags");
        let settings = cli.settings().expect("valid");
        assert!(settings.listeners[0].proxy_protocol);
        assert!(!settings.listeners[1].proxy_protocol);
        assert!(parse(&["--listen", "127.0.0.1:1,proxy_protocol=yes"]).is_err());
    }
}
