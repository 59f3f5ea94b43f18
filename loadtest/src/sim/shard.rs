//! The body of one shard thread: build the shard, then connect, publish, disconnect and
//! sweep in step with the other shards (a barrier at each phase boundary), or run churn
//! cycles on its own.

use std::io::{self, Write};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use starling::core::{
    CoreConfig, POOL_SWEEP_INTERVAL_MS, Shard, Shared, SharedMessage, owner_loop,
};

use super::driver::{Counts, Driver, TICK_EVERY_CLIENTS};
use crate::RunError;
use crate::alloc_count::BrokerScope;
use crate::cli::Args;
use crate::mqtt;
use crate::track;

/// PUBLISH packets the publisher sends in one read.
const PUBLISHES_PER_READ: usize = 64;
/// Most ticks the sweep phase runs.
const MAX_SWEEP_TICKS: u64 = 100_000;
/// Barriers a non-churn run passes (built, connected, published, disconnected, swept).
const PHASE_BARRIERS: usize = 5;

/// What a shard thread is given.
pub struct Job {
    /// Shard index.
    pub index: usize,
    /// Shards in all.
    pub shards: usize,
    /// The flags.
    pub args: Args,
    /// The core's configuration.
    pub config: CoreConfig,
    /// State shared by the shards.
    pub shared: Arc<Shared>,
    /// Every shard's inbox.
    pub peers: Arc<Vec<Sender<SharedMessage>>>,
    /// This shard's inbox.
    pub inbox: Receiver<SharedMessage>,
    /// The clients it owns (global numbers).
    pub clients: Vec<u32>,
    /// Phase boundaries.
    pub barrier: Arc<Barrier>,
    /// Pool objects live per shard when loaded.
    pub pool_live_loaded: Arc<Mutex<Vec<usize>>>,
}

/// One churn cycle of one shard.
pub struct CycleOut {
    /// CONNACK latency.
    pub connack: Histogram<u64>,
    /// Clients connected.
    pub connected: u64,
    /// Connect time, seconds.
    pub secs: f64,
    /// Pool acquisitions in the cycle.
    pub acquisitions: u64,
    /// Of which built on demand.
    pub constructed_on_demand: u64,
}

/// What a shard thread measured.
pub struct ShardOut {
    /// CONNACK latency.
    pub connack: Histogram<u64>,
    /// Publish → delivery.
    pub e2e: Histogram<u64>,
    /// Deliveries.
    pub counts: Counts,
    /// Clients connected.
    pub connected: u64,
    /// Connect phase, seconds.
    pub connect_secs: f64,
    /// PUBLISH packets sent.
    pub published: u64,
    /// Pool objects live at the end.
    pub pool_live_end: usize,
    /// `[POOL] Expand` lines.
    pub expansions: Vec<String>,
    /// Problems.
    pub errors: Vec<String>,
    /// Churn cycles.
    pub cycles: Vec<CycleOut>,
}

/// Keeps the shard's `[POOL]` log lines and echoes every line to stderr.
#[derive(Clone)]
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    prefix: String,
}

/// One log record being written.
struct CaptureLine {
    capture: Capture,
    buf: Vec<u8>,
}

impl Write for CaptureLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for CaptureLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.buf).trim_end().to_string();
        let _ = writeln!(io::stderr(), "{}{line}", self.capture.prefix);
        if let Some(at) = line.find("[POOL] Expand")
            && let Ok(mut lines) = self.capture.lines.lock()
        {
            lines.push(line[at..].to_string());
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = CaptureLine;
    fn make_writer(&'a self) -> CaptureLine {
        CaptureLine {
            capture: self.clone(),
            buf: Vec::new(),
        }
    }
}

/// A client id placed on shard `index`, for its publisher.
fn publisher_id(args: &Args, index: usize, shards: usize) -> String {
    (0..)
        .map(|k| format!("{}-simpub-{index}-{k}", args.client_prefix))
        .find(|id| owner_loop(id, shards) == index)
        .unwrap_or_default()
}

/// Runs the shard thread.
pub fn run(job: Job) -> Result<ShardOut, RunError> {
    let capture = Capture {
        lines: Arc::new(Mutex::new(Vec::new())),
        prefix: format!("[shard {}] ", job.index),
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let churn = job.args.scenario == crate::cli::Scenario::Churn;
    let shard = {
        let _scope = BrokerScope::enter();
        Shard::new(
            job.index,
            job.shards,
            job.config.clone(),
            Arc::clone(&job.shared),
        )
    };
    let shard = match shard {
        Ok(shard) => shard,
        Err(e) => {
            if !churn {
                for _ in 0..PHASE_BARRIERS {
                    job.barrier.wait();
                }
            }
            return Err(RunError::Usage(format!(
                "the shard refused its config: {e:?}"
            )));
        }
    };
    let n = job.clients.len();
    let mut clients = job.clients.clone();
    clients.push(u32::MAX); // the publisher, local index n
    let mut d = Driver::new(shard, Arc::clone(&job.peers), job.inbox.clone(), clients);
    let args = &job.args;
    d.protocol = args.protocol;
    let mut out = ShardOut {
        connack: track::latency_histogram(),
        e2e: track::latency_histogram(),
        counts: Counts::default(),
        connected: 0,
        connect_secs: 0.0,
        published: 0,
        pool_live_end: 0,
        expansions: Vec::new(),
        errors: Vec::new(),
        cycles: Vec::new(),
    };
    let mut bytes = Vec::new();
    if churn {
        for _ in 0..args.cycles.max(1) {
            let before = d.shard.pool_stats();
            d.connack = track::latency_histogram();
            let started = Instant::now();
            let connected = connect_all(&mut d, args, &job.clients, false, &mut bytes);
            let secs = started.elapsed().as_secs_f64();
            disconnect_all(&mut d, n, &mut bytes);
            let after = d.shard.pool_stats();
            out.cycles.push(CycleOut {
                connack: std::mem::replace(&mut d.connack, track::latency_histogram()),
                connected,
                secs,
                acquisitions: after.acquisitions - before.acquisitions,
                constructed_on_demand: after.constructed_on_demand - before.constructed_on_demand,
            });
        }
    } else {
        job.barrier.wait(); // built
        let started = Instant::now();
        out.connected = connect_all(&mut d, args, &job.clients, true, &mut bytes);
        out.connect_secs = started.elapsed().as_secs_f64();
        // Keep-alive: every client pings once.
        for c in 0..n {
            bytes.clear();
            mqtt::pingreq(&mut bytes);
            d.send(c, &bytes);
        }
        let publisher = publisher_id(args, job.index, job.shards);
        bytes.clear();
        mqtt::connect(
            &mut bytes,
            args.protocol,
            &publisher,
            args.keep_alive_secs,
            true,
        );
        d.connect(n, &bytes);
        d.tick();
        d.drain_inbox();
        if let Ok(mut live) = job.pool_live_loaded.lock() {
            live[job.index] = d.shard.pool_stats().live;
        }
        job.barrier.wait(); // connected
        out.published = publish_all(&mut d, args, &job, &mut bytes);
        job.barrier.wait(); // published
        d.drain_inbox();
        disconnect_all(&mut d, n + 1, &mut bytes);
        job.barrier.wait(); // disconnected
        if args.sweep {
            sweep(&mut d, &job.config, args.keep_alive_secs);
            d.shrink_dirty();
        }
        job.barrier.wait(); // swept
        out.connack = std::mem::replace(&mut d.connack, track::latency_histogram());
    }
    out.e2e = std::mem::replace(&mut d.e2e, track::latency_histogram());
    out.counts = d.counts;
    out.pool_live_end = d.shard.pool_stats().live;
    out.errors = std::mem::take(&mut d.errors);
    out.expansions = capture.lines.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(out)
}

/// Connects (and, with `subscribe`, subscribes) every client; returns how many got CONNACK 0.
fn connect_all(
    d: &mut Driver,
    args: &Args,
    clients: &[u32],
    subscribe: bool,
    bytes: &mut Vec<u8>,
) -> u64 {
    let mut connected = 0;
    let subscribe = subscribe && (args.subscribe || args.messages > 0);
    for (c, &global) in clients.iter().enumerate() {
        bytes.clear();
        mqtt::connect(
            bytes,
            args.protocol,
            &super::client_id(args, global as usize),
            args.keep_alive_secs,
            true,
        );
        if d.connect(c, bytes) {
            connected += 1;
            if subscribe {
                bytes.clear();
                let topic = format!("{}/c/{global}", args.topic_prefix);
                mqtt::subscribe(bytes, args.protocol, 1, &topic, args.qos);
                d.send(c, bytes);
            }
        }
        if c % TICK_EVERY_CLIENTS == 0 {
            d.tick();
            d.drain_inbox();
        }
    }
    d.tick();
    connected
}

/// Sends `--messages` rounds, one message to each client's own topic per round.
fn publish_all(d: &mut Driver, args: &Args, job: &Job, bytes: &mut Vec<u8>) -> u64 {
    let n = job.clients.len();
    let mut payload = vec![0u8; args.payload_bytes.max(track::MIN_PAYLOAD_BYTES)];
    let mut published = 0;
    let mut packet_id: u16 = 0;
    for round in 0..args.messages {
        bytes.clear();
        for (c, &global) in job.clients.iter().enumerate() {
            let topic = format!("{}/c/{global}", args.topic_prefix);
            track::stamp(&mut payload, track::now_ns(), job.index as u32, round);
            packet_id = packet_id.checked_add(1).unwrap_or(1);
            mqtt::publish(bytes, args.protocol, &topic, args.qos, packet_id, &payload);
            published += 1;
            if (c + 1) % PUBLISHES_PER_READ == 0 || c + 1 == n {
                d.send(n, bytes);
                bytes.clear();
            }
            if c % TICK_EVERY_CLIENTS == 0 {
                d.tick();
                d.drain_inbox();
            }
        }
    }
    d.tick();
    d.drain_inbox();
    published
}

/// Every connected client among the first `count` sends DISCONNECT.
fn disconnect_all(d: &mut Driver, count: usize, bytes: &mut Vec<u8>) {
    bytes.clear();
    mqtt::disconnect(bytes);
    for c in 0..count {
        if d.is_connected(c) {
            d.send(c, bytes);
        }
        if c % TICK_EVERY_CLIENTS == 0 {
            d.tick();
        }
    }
    d.tick();
}

/// Jumps the clock past the idle TTL and past the closed connections' keep-alive deadlines
/// (their timer-wheel entries are dropped when they come due, not at close), then ticks
/// until the pool stops shrinking.
fn sweep(d: &mut Driver, config: &CoreConfig, keep_alive_secs: u16) {
    let keep_alive_deadline_ms = u64::from(keep_alive_secs) * 1500;
    d.offset_ms += config.pool.idle_ttl_ms.max(keep_alive_deadline_ms) + POOL_SWEEP_INTERVAL_MS;
    let quiet_ticks = config.pool.idle_ttl_ms / POOL_SWEEP_INTERVAL_MS + 2;
    let mut last = usize::MAX;
    let mut unchanged = 0;
    for _ in 0..MAX_SWEEP_TICKS {
        d.offset_ms += POOL_SWEEP_INTERVAL_MS;
        d.tick();
        let live = d.shard.pool_stats().live;
        if live == last {
            unchanged += 1;
            if unchanged >= quiet_ticks {
                return;
            }
        } else {
            unchanged = 0;
            last = live;
        }
    }
}
