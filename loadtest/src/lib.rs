//! `starling-loadtest`: a load harness for MQTT 3.1.1 and 5.0 brokers.
//!
//! Two transports share one command line ([`cli::Args`]) and one report
//! ([`report::Report`]):
//!
//! - [`tcp`]: real clients over real sockets against any broker (Starling, Mosquitto, …),
//!   with a client-side codec of its own ([`mqtt`]) so the broker under test is held to the
//!   standard, not to Starling's reading of it. Worker threads each run a mio loop; with
//!   `--tls-ca` the clients speak TLS in those loops ([`tcp::tls`]).
//! - [`sim`]: up to a million simulated clients driven in-process through Starling's
//!   sans-IO core (`starling::core::Shard`), one shard per core on its own thread. No
//!   sockets, so it leaves out the kernel's socket memory (≈ 4.1 KiB per connection).
//!
//! Scenarios ([`plan`]) are the field's standard shapes: `conn`, `fanin`, `fanout`, `p2p`,
//! `churn`, and `shared` (publishers to one MQTT 5 `$share` group: loss and duplication
//! counted across the group, each member's share and the balance reported); [`bulk`] adds
//! `retained` (a large retained set to one new subscriber) and `subscribe` (many
//! subscriptions from few clients), which move much state through few blocking clients.
//! Every payload carries a timestamp and a (publisher, sequence) pair ([`track`]), so the
//! report has end-to-end latency percentiles (hdrhistogram) and exact counts of missing,
//! duplicated and out-of-order messages. After publishing the harness drains until every
//! delivery arrived, deliveries stopped, or a deadline passed ([`drain`]), and says whether
//! what is missing was dropped or not delivered by the deadline. With `--broker-pid` the
//! broker's RSS and CPU are read from /proc ([`procstat`]). A probe thread ([`stalls`])
//! records how late the machine wakes a sleeping thread during the run, so a latency tail
//! that is the machine's shows.
//!
//! [`floor`] is the `starling-floor` server: the least any MQTT server must do per
//! connection (fixed CONNACK/SUBACK, no sessions), to measure what the machine allows.

pub mod alloc_count;
pub mod bulk;
pub mod cli;
pub mod drain;
pub mod floor;
pub mod mqtt;
pub mod plan;
pub mod procstat;
pub mod progress;
pub mod report;
pub mod sim;
pub mod stalls;
pub mod tcp;
pub mod track;

use cli::{Args, Scenario, Transport};
use report::Report;

/// Why a run failed (each maps to a distinct exit code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The flags do not make a runnable scenario.
    Usage(String),
    /// The broker is not reachable.
    TargetDown(String),
    /// The open-file limit cannot hold the run.
    FdLimit(String),
    /// The run stopped part-way.
    Aborted(String),
    /// An operating-system failure in the harness itself.
    Io(String),
}

impl RunError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) => 2,
            RunError::TargetDown(_) => 3,
            RunError::FdLimit(_) => 4,
            RunError::Aborted(_) => 5,
            RunError::Io(_) => 6,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Usage(m) => write!(f, "usage: {m}"),
            RunError::TargetDown(m) => write!(f, "target down: {m}"),
            RunError::FdLimit(m) => write!(f, "open-file limit: {m}"),
            RunError::Aborted(m) => write!(f, "run aborted: {m}"),
            RunError::Io(m) => write!(f, "harness error: {m}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs the scenario `args` describe.
pub fn run(args: &Args) -> Result<Report, RunError> {
    if args.scenario == Scenario::Shared && args.transport == Transport::Sim {
        return Err(RunError::Usage(
            "`shared` runs on the tcp transport only (the sim transport does not carry \
             messages between shards for shared-subscription groups yet)"
                .into(),
        ));
    }
    let bulk = matches!(args.scenario, Scenario::Retained | Scenario::Subscribe);
    if bulk && args.transport == Transport::Sim {
        return Err(RunError::Usage(format!(
            "`{:?}` runs on the tcp transport only",
            args.scenario
        )));
    }
    let login = args.username.is_some() || args.username_prefix.is_some();
    if login && (bulk || args.transport == Transport::Sim) {
        return Err(RunError::Usage(
            "--username, --username-prefix and --password apply to the tcp transport's conn, \
             churn, fanin, fanout, p2p and shared scenarios only"
                .into(),
        ));
    }
    if args.tls.enabled() && (bulk || args.transport == Transport::Sim) {
        return Err(RunError::Usage(
            "the --tls-* flags apply to the tcp transport's conn, churn, fanin, fanout, p2p \
             and shared scenarios only"
                .into(),
        ));
    }
    check_sessions(args, bulk)?;
    match args.scenario {
        Scenario::Retained => return bulk::retained::run(args),
        Scenario::Subscribe => return bulk::subscribe::run(args),
        _ => {}
    }
    if args.payload_bytes < track::MIN_PAYLOAD_BYTES {
        return Err(RunError::Usage(format!(
            "--payload-bytes must be at least {} (timestamp, publisher, sequence)",
            track::MIN_PAYLOAD_BYTES
        )));
    }
    match args.transport {
        Transport::Tcp => tcp::run(args),
        Transport::Sim => sim::run(args),
    }
}

/// Refuses persistent-session flags where they cannot apply.
fn check_sessions(args: &Args, bulk: bool) -> Result<(), RunError> {
    if args.subscriber_session_expiry_secs > 0 && (bulk || args.transport == Transport::Sim) {
        return Err(RunError::Usage(
            "--subscriber-session-expiry-secs applies to the tcp transport's conn, churn, \
             fanin, fanout, p2p and shared scenarios only"
                .into(),
        ));
    }
    if args.subscribers_offline.is_none() {
        return Ok(());
    }
    let shape = matches!(
        args.scenario,
        Scenario::Fanin | Scenario::Fanout | Scenario::P2p
    );
    if !shape || args.transport == Transport::Sim {
        return Err(RunError::Usage(
            "--subscribers-offline applies to the tcp transport's fanin, fanout and p2p \
             scenarios only"
                .into(),
        ));
    }
    if args.subscriber_session_expiry_secs == 0 || args.qos == 0 {
        return Err(RunError::Usage(
            "--subscribers-offline needs --subscriber-session-expiry-secs above 0 and --qos 1 \
             or 2: only a session that outlives its connection keeps QoS 1/2 messages"
                .into(),
        ));
    }
    Ok(())
}
