//! The `sim` transport: one Starling [`Shard`](starling::core::Shard) per core, each on its own thread
//! ([`driver`]), each simulated client placed on a shard by a fixed hash of its client id
//! ([`owner_loop`]), as the kernel spreads real sockets; a new client id stays where it
//! connects, so no handover is needed and no socket exists. Everything else is the
//! real broker: the same pools, arenas, timers and codecs as a real connection.
//!
//! The broker's memory is measured with the counting allocator ([`crate::alloc_count`]):
//! what shards allocate, apart from the harness's own bookkeeping. Kernel socket memory is
//! not included (there are no sockets).

pub mod driver;
mod shard;

use std::sync::{Arc, Barrier, Mutex};

use starling::core::shared::ASSIGNED_ID_KEY_BYTES;
use starling::core::{CoreConfig, Shared, owner_loop};

use crate::RunError;
use crate::alloc_count;
use crate::cli::{Args, Scenario};
use crate::procstat;
use crate::report::{Connects, Cycle, Latency, Messages, Report, Sim};
use crate::track::{self, Tally};

/// Kernel memory per idle loopback TCP socket on this kind of machine (server end), bytes.
pub const KERNEL_BYTES_PER_SOCKET: u64 = 4100;

/// What the sim transport leaves out.
pub fn excludes() -> String {
    format!(
        "kernel socket memory: about {:.1} KB ({KERNEL_BYTES_PER_SOCKET} B) per connection on \
         Linux, because sim has no sockets; add it per client to size a real deployment",
        KERNEL_BYTES_PER_SOCKET as f64 / 1000.0
    )
}

/// Runs a sim scenario.
pub fn run(args: &Args) -> Result<Report, RunError> {
    if !matches!(args.scenario, Scenario::Conn | Scenario::Churn) {
        return Err(RunError::Usage(format!(
            "the sim transport runs `conn` and `churn`; use --transport tcp for {:?}",
            args.scenario
        )));
    }
    if args.messages > driver::MAX_ROUNDS {
        return Err(RunError::Usage(format!(
            "sim tracks at most {} messages per client",
            driver::MAX_ROUNDS
        )));
    }
    let shards = args.worker_threads();
    let mut config = CoreConfig::default();
    // Room for every client plus each shard's publisher.
    config.max_connections = config.max_connections.max(args.clients + shards);
    // A fixed key: the simulation replays the same run every time.
    let shared = Arc::new(Shared::new(shards, [0; ASSIGNED_ID_KEY_BYTES]));
    // Each shard takes the clients whose id it owns.
    let mut owned: Vec<Vec<u32>> = vec![Vec::new(); shards];
    for i in 0..args.clients {
        let id = client_id(args, i);
        owned[owner_loop(&id, shards)].push(i as u32);
    }
    let rss_start = procstat::rss_bytes(std::process::id()).unwrap_or(0);
    // Main + every shard meet at each phase boundary.
    let barrier = Arc::new(Barrier::new(shards + 1));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..shards).map(|_| crossbeam_channel::unbounded()).unzip();
    let peers = Arc::new(senders);
    let loaded = Arc::new(Mutex::new(vec![0usize; shards]));
    let mut handles = Vec::with_capacity(shards);
    for (index, (inbox, clients)) in receivers.into_iter().zip(owned).enumerate() {
        let job = shard::Job {
            index,
            shards,
            args: args.clone(),
            config: config.clone(),
            shared: Arc::clone(&shared),
            peers: Arc::clone(&peers),
            inbox,
            clients,
            barrier: Arc::clone(&barrier),
            pool_live_loaded: Arc::clone(&loaded),
        };
        let handle = std::thread::Builder::new()
            .name(format!("sim-shard-{index}"))
            .spawn(move || shard::run(job))
            .map_err(|e| RunError::Io(format!("spawning a shard thread: {e}")))?;
        handles.push(handle);
    }
    let churn = args.scenario == Scenario::Churn;
    let mut sim = Sim {
        shards,
        excludes: excludes(),
        ..Sim::default()
    };
    let mut publish_secs = 0.0;
    if !churn {
        barrier.wait(); // built
        sim.heap_start_bytes = alloc_count::broker_bytes();
        barrier.wait(); // connected and subscribed
        sim.heap_loaded_bytes = alloc_count::broker_bytes();
        sim.harness_heap_loaded_bytes = alloc_count::harness_bytes();
        sim.rss_loaded_bytes = procstat::rss_bytes(std::process::id()).unwrap_or(0);
        sim.heap_bytes_per_client =
            (sim.heap_loaded_bytes - sim.heap_start_bytes) as f64 / args.clients.max(1) as f64;
        let started = std::time::Instant::now();
        barrier.wait(); // published
        publish_secs = started.elapsed().as_secs_f64();
        barrier.wait(); // disconnected
        sim.heap_after_disconnect_bytes = alloc_count::broker_bytes();
        barrier.wait(); // swept
        if args.sweep {
            sim.heap_after_sweep_bytes = Some(alloc_count::broker_bytes());
        }
    }
    let mut outs = Vec::with_capacity(shards);
    for handle in handles {
        outs.push(
            handle
                .join()
                .map_err(|_| RunError::Io("a shard thread panicked".into()))??,
        );
    }
    sim.rss_start_bytes = rss_start;
    sim.rss_end_bytes = procstat::rss_bytes(std::process::id()).unwrap_or(0);
    sim.pool_live_loaded = loaded.lock().map(|v| v.clone()).unwrap_or_default();
    sim.pool_live_end = outs.iter().map(|o| o.pool_live_end).collect();
    sim.expansions = outs.iter().map(|o| o.expansions.clone()).collect();
    sim.expansions_match_ladder = outs
        .iter()
        .all(|o| expansions_follow_ladder(&o.expansions, &config.pool));
    let mut report = Report {
        label: args.label.clone(),
        transport: Some(args.transport),
        scenario: Some(args.scenario),
        clients: args.clients as u64,
        payload_bytes: args.payload_bytes,
        ..Report::default()
    };
    if !alloc_count::installed() {
        report
            .notes
            .push("heap figures need the binary's counting allocator (not installed)".into());
    }
    for o in &outs {
        report.notes.extend(o.errors.iter().cloned());
    }
    let mut connack = track::latency_histogram();
    let mut e2e = track::latency_histogram();
    let mut tally = Tally::default();
    for o in &outs {
        connack.add(&o.connack).ok();
        e2e.add(&o.e2e).ok();
        tally.delivered += o.counts.delivered;
        tally.unique += o.counts.unique;
        tally.duplicates += o.counts.duplicates;
        tally.out_of_order += o.counts.out_of_order;
    }
    if churn {
        let cycles = outs.iter().map(|o| o.cycles.len()).min().unwrap_or(0);
        for k in 0..cycles {
            let mut h = track::latency_histogram();
            let (mut connected, mut secs, mut acq, mut built) = (0u64, 0f64, 0u64, 0u64);
            for o in &outs {
                let c = &o.cycles[k];
                h.add(&c.connack).ok();
                connected += c.connected;
                secs = secs.max(c.secs);
                acq += c.acquisitions;
                built += c.constructed_on_demand;
            }
            report.cycles.push(Cycle {
                cycle: k + 1,
                connects: Connects {
                    attempted: args.clients as u64,
                    connected,
                    failed: args.clients as u64 - connected.min(args.clients as u64),
                    elapsed_secs: secs,
                    per_sec: connected as f64 / secs.max(1e-9),
                    connack_latency: Latency::of(&h),
                    handshake_latency: None,
                    connect_to_connack_latency: None,
                    tls: None,
                    broker_cpu_us_per_connect: None,
                    harness_cpu_us_per_connect: None,
                },
                pool_reuse_percent: Some(100.0 * (1.0 - built as f64 / acq.max(1) as f64)),
            });
        }
    } else {
        let connected: u64 = outs.iter().map(|o| o.connected).sum();
        let secs = outs.iter().map(|o| o.connect_secs).fold(0.0, f64::max);
        report.connects = Some(Connects {
            attempted: args.clients as u64,
            connected,
            failed: args.clients as u64 - connected.min(args.clients as u64),
            elapsed_secs: secs,
            per_sec: connected as f64 / secs.max(1e-9),
            connack_latency: Latency::of(&connack),
            handshake_latency: None,
            connect_to_connack_latency: None,
            tls: None,
            broker_cpu_us_per_connect: None,
            harness_cpu_us_per_connect: None,
        });
        if args.messages > 0 {
            let published: u64 = outs.iter().map(|o| o.published).sum();
            let expected = published;
            tally.missing = expected.saturating_sub(tally.unique);
            let mut messages = Messages {
                qos: args.qos,
                published,
                publish_secs,
                published_per_sec: published as f64 / publish_secs.max(1e-9),
                deliver_secs: publish_secs,
                delivered_per_sec: tally.delivered as f64 / publish_secs.max(1e-9),
                expected,
                tally,
                latency: Latency::of(&e2e),
                ..Messages::default()
            };
            // The shards ran every message to the end before counting: what is missing
            // was dropped.
            messages.judge(None);
            report.messages = Some(messages);
        }
    }
    report.sim = Some(sim);
    Ok(report)
}

/// Client `i`'s id.
pub fn client_id(args: &Args, i: usize) -> String {
    format!("{}-c-{i}", args.client_prefix)
}

/// Whether `lines` are the first expansions of the documented growth ladder for `pool`
/// (`docs/pool.md`): start at `initial_objects`, trigger at 80 %, grow by half, stop at the
/// cap.
pub fn expansions_follow_ladder(lines: &[String], pool: &starling_pool::PoolConfig) -> bool {
    const LADDER_TRIGGER_PERCENT: usize = 80;
    const LADDER_GROWTH_PERCENT: usize = 150;
    let mut from = pool.initial_objects;
    for line in lines {
        let to = (from * LADDER_GROWTH_PERCENT / 100).min(pool.max_preheated_objects);
        let trigger = from * LADDER_TRIGGER_PERCENT / 100;
        let expected =
            format!("[POOL] Expand: {from}->{to} (trigger at {trigger}/{from} connections)");
        if !line.contains(&expected) {
            return false;
        }
        from = to;
    }
    true
}
