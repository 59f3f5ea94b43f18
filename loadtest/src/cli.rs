//! The command line: every scenario, rate, count and duration is a flag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, ValueEnum};

use crate::drain::{DEFAULT_DRAIN_DEADLINE_SECS, DEFAULT_DRAIN_QUIET_MS};
pub use crate::mqtt::Protocol;

/// Default clients for `conn` and `churn`.
pub const DEFAULT_CLIENTS: usize = 1000;
/// Default publishers (fanin) / subscribers (fanout) / pairs (p2p).
pub const DEFAULT_FAN: usize = 100;
/// Default payload, bytes (the field's standard 64-byte messages).
pub const DEFAULT_PAYLOAD_BYTES: usize = 64;
/// Default publishing phase, seconds.
pub const DEFAULT_DURATION_SECS: u64 = 10;
/// Default QoS 1/2 messages a publisher keeps unacknowledged.
pub const DEFAULT_INFLIGHT: usize = 10;
/// Default CONNECTs waiting for their CONNACK at once.
pub const DEFAULT_CONNECT_CONCURRENCY: usize = 100;
/// Default keep-alive the clients ask for, seconds.
pub const DEFAULT_KEEP_ALIVE_SECS: u16 = 60;
/// Default filters each client subscribes to (subscribe).
pub const DEFAULT_FILTERS_PER_CLIENT: usize = 1000;
/// Default filters in one SUBSCRIBE / UNSUBSCRIBE packet (subscribe).
pub const DEFAULT_FILTERS_PER_PACKET: usize = 100;

const ABOUT: &str = "Load harness for MQTT 3.1.1 and 5.0 brokers (Starling, Mosquitto, any other).";

const LONG_ABOUT: &str = "\
Load harness for MQTT 3.1.1 and 5.0 brokers (--protocol): real sockets against any broker (tcp), or up to a
million simulated clients driven in-process through Starling's sans-IO core (sim).

SCENARIOS (the field's standard shapes; QoS, payload, rates, counts and durations are flags)
  conn     --clients N connect at --connect-rate (0 = as fast as --connect-concurrency allows),
           optionally --subscribe each to its own topic, hold for --hold-secs, optionally
           --messages M to each client's own topic. Measures connect rate, CONNACK latency
           and, with --broker-pid, the broker's memory per connection.
  fanin    --publishers P -> 1 subscriber on a wildcard (PREFIX/fanin/+).
  fanout   1 publisher -> --subscribers S on PREFIX/fanout.
  p2p      --pairs N publisher/subscriber pairs, pair i on PREFIX/p2p/i.
  churn    --cycles C times: connect --clients N, then disconnect them all. The first cycle
           is cold (the broker's pool still growing), the rest warm; compare their CONNACK
           latency. The sim transport also reports the pool's reuse rate.
  shared   --publishers P -> one $share group of --subscribers S members on
           $share/lt/PREFIX/shared/+ (use --protocol 5; tcp only). Each message must reach
           exactly one member: loss and duplication are counted across the group, order
           within each member, and the report gives each member's count and the balance.
  retained --messages N retained messages PREFIX/ret/0..N-1 (--payload-bytes each, any size;
           default 100000) are stored at --qos (0 or 1), then one new client subscribes to
           PREFIX/ret/# and reads until it has them all (or --drain-secs pass). Measures the
           time to the first and the last, what arrived (distinct, duplicated, missing,
           without RETAIN), the broker's RSS loaded and at its peak while delivering
           (--broker-pid), and a bystander's probe round trips meanwhile. tcp only.
  subscribe --clients C each subscribe to --filters F filters of their own, --filters-per-packet
           to a SUBSCRIBE, pipelined, then unsubscribe from them all. Measures the time per
           subscription and per removal, the broker's RSS per subscription (--broker-pid),
           refusals, and a bystander's probes. tcp only.

Publishers publish for --duration-secs at --rate messages/s in total (0 = as fast as TCP
backpressure allows; QoS 1/2 publishers keep --inflight messages unacknowledged; at a rate,
each publisher sends at its own phase of its period, so the total arrives as a steady
stream rather than in bursts of every publisher at once). Then the
harness drains: it keeps reading until every expected delivery has arrived, or no delivery
has arrived for --drain-quiet-ms, or --drain-deadline-secs have passed. Every payload
carries a timestamp, a publisher number and a sequence number, so the report counts
delivered, duplicated, missing and out-of-order messages exactly per (publisher, sequence),
and end-to-end latency p50/p99/p99.9. What is missing after a quiet drain is reported as
dropped (the broker had stopped delivering); what is missing when the deadline ended the
drain is reported as not delivered by the deadline (deliveries were still arriving).
--subscriber-read-bytes-per-sec and --subscriber-pause-ms make every subscriber deliberately
slow (with --subscriber-rcvbuf-bytes, so the kernel cannot hide its backlog).

PERSISTENT SESSIONS (tcp: fanin, fanout, p2p; the expiry also conn, churn, shared)
  --subscriber-session-expiry-secs N gives the subscribers sessions that outlive their
  connection (MQTT 5: Session Expiry Interval N; 3.1.1: Clean Session 0), so the broker keeps
  their QoS 1/2 messages, and a broker that persists sessions stores them: a durable fan-in.
  --subscribers-offline stay|return (with --qos 1 or 2) has the subscribers disconnect once
  subscribed; the publishers publish while they are away, so every message is queued for
  them, and publishing ends once every publish is acknowledged (the report's `offline` part:
  acknowledged msg/s, the broker's CPU meanwhile). `stay` leaves the messages queued in the
  broker (measure its store, its memory, a restart); `return` reconnects them without a
  clean start, checks that CONNACK says Session Present, and drains what the broker kept
  (delivered msg/s counted from the reconnect).

TRANSPORTS
  tcp   Real clients over real sockets to --target. Client sockets are spread over
        --source-addrs (e.g. 127.0.0.1-127.0.0.8) so ephemeral ports never run out. Each
        socket is one open file: the run stops with a clear message when the process's
        open-file limit cannot hold --clients. With --tls-ca every client speaks TLS
        (rustls on ring, in the same loops, no thread per connection): the TCP handshake,
        then the TLS handshake, then CONNECT.
  sim   One Starling shard per core, each on its own thread, clients spread over the shards
        by a hash of their client ids, exactly the code paths, pools and arenas of a real
        connection except the socket. Holds 1,000,000 clients on a laptop. It does NOT
        include the kernel's socket memory (about 4.1 KiB per socket on Linux).

TLS (tcp: conn, churn, fanin, fanout, p2p, shared)
  --tls-ca FILE trusts that CA (PEM) and turns TLS on; the server's name is --tls-server-name
  (default: --target's address, matched against the certificate's IP SANs). Every connect is
  a full handshake unless --tls-resume gives all clients one session store: TLS 1.3 tickets
  (each used once, as servers expect) and TLS 1.2 session ids (no TLS 1.2 tickets, so both
  brokers resume from their session cache). `churn --cycles 2 --tls-resume` measures resumed
  handshakes in cycle 2 (cycle 1 collects the sessions; once its first handshakes are done,
  its later connects resume too). --tls-version 1.2|1.3 offers only that version (default
  both), --tls-cipher only the suites named (rustls names, e.g. TLS13_AES_128_GCM_SHA256),
  --tls-cert/--tls-key present a client certificate. The report gives the version, suite and
  key exchange of the first connection (and any other seen), full and resumed handshakes per
  connect phase, and the TLS handshake's latency.

EXAMPLES
  starling-loadtest --transport sim conn --clients 1000000 --subscribe --messages 1
  starling-loadtest conn --target 127.0.0.1:1883 --clients 19000 --subscribe \\
      --source-addrs 127.0.0.1-127.0.0.8 --broker-pid $(pidof starling)
  starling-loadtest fanin --publishers 100 --qos 1 --inflight 10 --json
  starling-loadtest fanin --qos 1 --messages 1000 --subscriber-session-expiry-secs 3600 \\
      --subscribers-offline return
      (100 000 messages queued for one offline session, then delivered when it resumes)
  starling-loadtest churn --clients 2000 --cycles 2 --username-prefix user --password pw
      (users user0..user1999: cycle 1 is each one's first login, cycle 2 the same logins again)
  starling-loadtest churn --target 127.0.0.1:8883 --tls-ca ca.crt --tls-resume --cycles 2
      (cycle 2: every connect resumes a session of cycle 1)";

/// Which clients drive the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Real MQTT clients over real TCP sockets.
    Tcp,
    /// Simulated clients through Starling's sans-IO core (no sockets).
    Sim,
}

/// The shape of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Connect clients and hold them.
    Conn,
    /// Many publishers, one wildcard subscriber.
    Fanin,
    /// One publisher, many subscribers.
    Fanout,
    /// Publisher/subscriber pairs.
    P2p,
    /// Connect/disconnect cycles.
    Churn,
    /// Publishers to one shared-subscription group (MQTT 5 `$share`).
    Shared,
    /// A large retained set delivered to one new subscriber.
    Retained,
    /// Many subscriptions made and removed.
    Subscribe,
}

/// What subscribers that were away while the publishers published do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Offline {
    /// They stay away: the messages stay queued in the broker.
    Stay,
    /// They resume their sessions and receive what was queued.
    Return,
}

/// The harness's flags.
#[derive(Debug, Clone, Parser)]
#[command(name = "starling-loadtest", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// tcp: real sockets to --target; sim: in-process through Starling's core.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: Transport,
    /// The MQTT version the clients speak: 3.1.1 (or 4) or 5.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub protocol: Protocol,
    /// The broker to load (tcp).
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub target: SocketAddr,
    /// Local addresses to spread client sockets over: a range `A-B` or a list `A,B,C`.
    #[arg(long, default_value = "127.0.0.1", value_parser = parse_source_addrs)]
    pub source_addrs: SourceAddrs,
    /// The broker's PID: its RSS and CPU are sampled from /proc (tcp).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Clients (conn, churn).
    #[arg(long, default_value_t = DEFAULT_CLIENTS)]
    pub clients: usize,
    /// Publishers (fanin, shared).
    #[arg(long, default_value_t = DEFAULT_FAN)]
    pub publishers: usize,
    /// Subscribers (fanout) or group members (shared).
    #[arg(long, default_value_t = DEFAULT_FAN)]
    pub subscribers: usize,
    /// Publisher/subscriber pairs (p2p).
    #[arg(long, default_value_t = DEFAULT_FAN)]
    pub pairs: usize,
    /// Connect/disconnect cycles (churn).
    #[arg(long, default_value_t = 5)]
    pub cycles: usize,
    /// QoS of publishes and subscriptions (0, 1 or 2).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 20: timestamp, publisher and sequence numbers).
    #[arg(long, default_value_t = DEFAULT_PAYLOAD_BYTES)]
    pub payload_bytes: usize,
    /// Total offered publish rate, messages/s across all publishers (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Publishing phase, seconds.
    #[arg(long, default_value_t = DEFAULT_DURATION_SECS)]
    pub duration_secs: u64,
    /// Stop each publisher after this many messages (0 = only --duration-secs limits).
    #[arg(long, default_value_t = 0)]
    pub messages: u64,
    /// After publishing, stop waiting for deliveries once none has arrived for this long,
    /// milliseconds (what is still missing then counts as dropped).
    #[arg(long, default_value_t = DEFAULT_DRAIN_QUIET_MS)]
    pub drain_quiet_ms: u64,
    /// After publishing, stop waiting for deliveries after this long even if they are still
    /// arriving, seconds (what is still missing then counts as not delivered by the
    /// deadline).
    #[arg(
        long = "drain-deadline-secs",
        alias = "drain-secs",
        default_value_t = DEFAULT_DRAIN_DEADLINE_SECS
    )]
    pub drain_secs: u64,
    /// Each subscriber reads at most this many bytes a second from its socket during the
    /// message phase (0 = as fast as it can): a deliberately slow subscriber.
    #[arg(long, default_value_t = 0)]
    pub subscriber_read_bytes_per_sec: u64,
    /// Each subscriber reads nothing for this long at the start of the message phase,
    /// milliseconds (then at --subscriber-read-bytes-per-sec): a subscriber that stalls.
    #[arg(long, default_value_t = 0)]
    pub subscriber_pause_ms: u64,
    /// Socket receive buffer each subscriber asks for, bytes (0 = the kernel's default,
    /// which grows on its own): a small one keeps the kernel from absorbing the backlog of a
    /// slow subscriber, so the broker has to hold it (or drop it).
    #[arg(long, default_value_t = 0)]
    pub subscriber_rcvbuf_bytes: usize,
    /// Subscribers keep their session this long after their connection ends, seconds, so
    /// the broker keeps their QoS 1/2 messages (and a broker that persists sessions stores
    /// them): MQTT 5 sends it as the Session Expiry Interval; MQTT 3.1.1 has no interval and
    /// connects them with Clean Session 0 instead (kept until the broker expires it). 0: a
    /// clean session that ends with its connection. tcp; not retained/subscribe.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub subscriber_session_expiry_secs: u32,
    /// Subscribers disconnect once subscribed and are away while the publishers publish, so
    /// every message is queued for their sessions (needs --subscriber-session-expiry-secs
    /// and --qos 1 or 2; fanin, fanout, p2p). Publishing ends once every publish is
    /// acknowledged. Then `stay`: they stay away and the messages stay queued in the broker
    /// (to measure what holding them costs it); `return`: they reconnect without a clean
    /// start (CONNACK must say Session Present) and the drain counts what the broker kept.
    #[arg(long, value_enum, value_name = "THEN")]
    pub subscribers_offline: Option<Offline>,
    /// QoS 1/2 messages each publisher keeps unacknowledged.
    #[arg(long, default_value_t = DEFAULT_INFLIGHT)]
    pub inflight: usize,
    /// Offered connect rate, clients/s (0 = as fast as --connect-concurrency allows).
    #[arg(long, default_value_t = 0)]
    pub connect_rate: u64,
    /// CONNECTs waiting for their CONNACK at once (tcp).
    #[arg(long, default_value_t = DEFAULT_CONNECT_CONCURRENCY)]
    pub connect_concurrency: usize,
    /// conn: subscribe every client to its own topic PREFIX/c/N.
    #[arg(long)]
    pub subscribe: bool,
    /// subscribe: filters each client subscribes to.
    #[arg(long, default_value_t = DEFAULT_FILTERS_PER_CLIENT)]
    pub filters: usize,
    /// subscribe: filters in one SUBSCRIBE / UNSUBSCRIBE packet.
    #[arg(long, default_value_t = DEFAULT_FILTERS_PER_PACKET)]
    pub filters_per_packet: usize,
    /// conn/churn: hold the clients this long after the last CONNACK, seconds.
    #[arg(long, default_value_t = 0)]
    pub hold_secs: u64,
    /// After every client disconnected, wait this long before the broker's last RSS sample
    /// (`--broker-pid`), seconds: what it still holds once it had time to give memory back.
    #[arg(long, default_value_t = 0)]
    pub settle_secs: u64,
    /// Keep-alive the clients ask for, seconds (they send PINGREQ when idle that long).
    #[arg(long, default_value_t = DEFAULT_KEEP_ALIVE_SECS)]
    pub keep_alive_secs: u16,
    /// Topic prefix (tcp adds the harness PID: PREFIX/PID/...).
    #[arg(long, default_value = "lt")]
    pub topic_prefix: String,
    /// Client id prefix (tcp adds the harness PID).
    #[arg(long, default_value = "lt")]
    pub client_prefix: String,
    /// Log each client in as its own user: PREFIX followed by its place n in the connect
    /// order, from 0 (conn, churn: client n; fanin: the subscriber 0, publishers 1..=P; fanout:
    /// subscribers 0..S-1, the publisher S; p2p: subscribers 0..N-1, publishers N..2N-1;
    /// shared: members 0..S-1, publishers S..). The same user in every churn cycle. tcp,
    /// not retained/subscribe.
    #[arg(long, group = "login", value_name = "PREFIX")]
    pub username_prefix: Option<String>,
    /// Log every client in as this one user name (tcp, not retained/subscribe).
    #[arg(long, group = "login", value_name = "NAME")]
    pub username: Option<String>,
    /// The password every client sends with its user name (needs --username or
    /// --username-prefix). Visible in the process list: for test credentials only.
    #[arg(long, requires = "login")]
    pub password: Option<String>,
    /// Worker threads driving the clients (tcp) or shards (sim); 0 = one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// sim: after disconnecting, advance the simulated clock past the pool's idle TTL (and
    /// the closed connections' keep-alive deadlines) and report the memory given back.
    #[arg(long)]
    pub sweep: bool,
    /// Print the report as JSON on stdout (the human table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Label for this run in the report (e.g. the broker's name).
    #[arg(long, default_value = "")]
    pub label: String,
    /// TLS (tcp): off unless --tls-ca is given.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// A TLS protocol version the clients may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    #[value(name = "1.2")]
    #[serde(rename = "1.2")]
    V12,
    /// TLS 1.3 (RFC 8446).
    #[value(name = "1.3")]
    #[serde(rename = "1.3")]
    V13,
}

/// The TLS flags of the tcp transport.
#[derive(Debug, Clone, Default, PartialEq, Eq, ClapArgs)]
#[command(next_help_heading = "TLS (tcp)")]
pub struct TlsArgs {
    /// Speak TLS, trusting the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// The server name the certificate must carry [default: --target's IP address].
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// Share one session store between all clients, so that connects resume earlier
    /// sessions (TLS 1.3 tickets, TLS 1.2 session ids). Without it every connect is a full
    /// handshake.
    #[arg(long, requires = "tls_ca")]
    pub tls_resume: bool,
    /// Offer only this TLS version [default: 1.2 and 1.3].
    #[arg(long, value_enum, value_name = "VERSION", requires = "tls_ca")]
    pub tls_version: Option<TlsVersion>,
    /// Offer only these cipher suites (rustls names, comma-separated, e.g.
    /// TLS13_AES_128_GCM_SHA256) [default: every suite of the ring provider].
    #[arg(long, value_name = "SUITE", value_delimiter = ',', requires = "tls_ca")]
    pub tls_cipher: Vec<String>,
    /// Present this client certificate chain (PEM; needs --tls-key).
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM; needs --tls-cert).
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// Whether the clients speak TLS.
    pub fn enabled(&self) -> bool {
        self.tls_ca.is_some()
    }
}

/// Parsed `--source-addrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(pub Vec<IpAddr>);

/// Most source addresses a range may expand to.
const MAX_SOURCE_ADDRS: u32 = 256;

/// Parses `A-B` (IPv4 range, inclusive) or `A,B,...`.
pub fn parse_source_addrs(text: &str) -> Result<SourceAddrs, String> {
    if let Some((from, to)) = text.split_once('-') {
        let from: Ipv4Addr = from.trim().parse().map_err(|e| format!("{from}: {e}"))?;
        let to: Ipv4Addr = to.trim().parse().map_err(|e| format!("{to}: {e}"))?;
        let (a, b) = (u32::from(from), u32::from(to));
        if b < a || b - a >= MAX_SOURCE_ADDRS {
            return Err(format!(
                "range {text} must be ascending and at most {MAX_SOURCE_ADDRS} addresses"
            ));
        }
        return Ok(SourceAddrs(
            (a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect(),
        ));
    }
    let addrs = text
        .split(',')
        .map(|s| s.trim().parse::<IpAddr>().map_err(|e| format!("{s}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err("no source address".into());
    }
    Ok(SourceAddrs(addrs))
}

impl Args {
    /// Worker threads to use (`--threads`, or one per core).
    pub fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_flags_need_a_user_and_exclude_each_other() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["starling-loadtest", "conn"];
            full.extend_from_slice(argv);
            Args::try_parse_from(full)
        };
        let prefix = parse(&["--username-prefix", "u", "--password", "pw"]).expect("valid");
        assert_eq!(prefix.username_prefix.as_deref(), Some("u"));
        assert_eq!(prefix.password.as_deref(), Some("pw"));
        assert!(parse(&["--username", "bench"]).is_ok());
        assert!(parse(&["--password", "pw"]).is_err());
        assert!(parse(&["--username", "a", "--username-prefix", "u"]).is_err());
    }

    #[test]
    fn tls_flags_need_a_ca_and_a_cert_needs_its_key() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["starling-loadtest", "churn"];
            full.extend_from_slice(argv);
            Args::try_parse_from(full)
        };
        let off = parse(&[]).expect("valid");
        assert!(!off.tls.enabled());
        let on = parse(&[
            "--tls-ca",
            "ca.crt",
            "--tls-resume",
            "--tls-version",
            "1.2",
            "--tls-cipher",
            "TLS13_AES_128_GCM_SHA256,TLS13_AES_256_GCM_SHA384",
        ])
        .expect("valid");
        assert!(on.tls.enabled() && on.tls.tls_resume);
        assert_eq!(on.tls.tls_version, Some(TlsVersion::V12));
        assert_eq!(on.tls.tls_cipher.len(), 2);
        assert!(parse(&["--tls-resume"]).is_err());
        assert!(parse(&["--tls-ca", "ca.crt", "--tls-cert", "c.crt"]).is_err());
        assert!(
            parse(&[
                "--tls-ca",
                "ca.crt",
                "--tls-cert",
                "c.crt",
                "--tls-key",
                "k"
            ])
            .is_ok()
        );
        assert!(parse(&["--tls-ca", "ca.crt", "--tls-version", "1.1"]).is_err());
    }

    #[test]
    fn persistent_subscribers_parse() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["starling-loadtest", "fanin"];
            full.extend_from_slice(argv);
            Args::try_parse_from(full)
        };
        let default = parse(&[]).expect("valid");
        assert_eq!(default.subscriber_session_expiry_secs, 0);
        assert_eq!(default.subscribers_offline, None);
        let away = parse(&[
            "--subscriber-session-expiry-secs",
            "3600",
            "--subscribers-offline",
            "return",
        ])
        .expect("valid");
        assert_eq!(away.subscriber_session_expiry_secs, 3600);
        assert_eq!(away.subscribers_offline, Some(Offline::Return));
        assert!(parse(&["--subscribers-offline", "later"]).is_err());
    }

    #[test]
    fn source_ranges_and_lists_parse() {
        let range = parse_source_addrs("127.0.0.1-127.0.0.8").expect("range");
        assert_eq!(range.0.len(), 8);
        let list = parse_source_addrs("127.0.0.1,127.0.0.2").expect("list");
        assert_eq!(list.0.len(), 2);
        assert!(parse_source_addrs("127.0.0.9-127.0.0.1").is_err());
        assert!(parse_source_addrs("nope").is_err());
    }
}
