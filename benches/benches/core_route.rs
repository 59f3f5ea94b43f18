//! The core's routing throughput: QoS 0 PUBLISHes fed to one `Shard` in batches and
//! delivered to subscribers' output buffers, which are then drained as a socket would.
//! This is the hot path the metrics counters sit on (`core::observe`: one counter per frame
//! in, one per packet out, two byte counters), so `docs/benchmarks.md` ("Metrics cost")
//! compares it with and without them.
//!
//! `cargo bench -p starling-benches --bench core_route`

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group};
use starling::core::{ConnId, CoreConfig, Shard, Shared};
use starling_loadtest::mqtt;

/// PUBLISHes per read fed to the shard.
const BATCH_PUBLISHES: usize = 50;
/// Payload of each PUBLISH.
const PAYLOAD_BYTES: usize = 64;

fn connect(client_id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    mqtt::connect(&mut out, mqtt::Protocol::V311, client_id, 60, true);
    out
}

fn subscribe(filter: &str) -> Vec<u8> {
    let mut out = Vec::new();
    mqtt::subscribe(&mut out, mqtt::Protocol::V311, 1, filter, 0);
    out
}

fn publish(topic: &str) -> Vec<u8> {
    let mut out = Vec::new();
    mqtt::publish(
        &mut out,
        mqtt::Protocol::V311,
        topic,
        0,
        0,
        &[b'x'; PAYLOAD_BYTES],
    );
    out
}

struct Bench {
    shard: Shard,
    publisher: ConnId,
    dirty: Vec<ConnId>,
    batch: Vec<u8>,
}

impl Bench {
    /// One shard with `subscribers` clients on `filter` and one publisher on `topic`.
    fn new(subscribers: usize, filter: &str, topic: &str) -> Bench {
        let shard = Shard::new(0, 1, CoreConfig::default(), Arc::new(Shared::new(1)))
            .expect("default pool config is valid");
        let mut bench = Bench {
            shard,
            publisher: ConnId::from_u64(0),
            dirty: Vec::new(),
            batch: (0..BATCH_PUBLISHES).flat_map(|_| publish(topic)).collect(),
        };
        for i in 0..subscribers {
            let c = bench.client(&format!("sub-{i}"));
            bench.shard.receive(c, &subscribe(filter), 0);
        }
        bench.publisher = bench.client("pub");
        bench.drain();
        bench
    }

    fn client(&mut self, id: &str) -> ConnId {
        let c = self.shard.accept(0).expect("pool has room");
        self.shard.receive(c, &connect(id), 0);
        c
    }

    /// Writes every dirty connection's output, as the driver's socket writes would.
    fn drain(&mut self) {
        self.shard.drain_dirty(&mut self.dirty);
        for &c in &self.dirty {
            let n = self.shard.output(c).len();
            self.shard.consume_output(c, n, 0);
        }
        while self.shard.poll_action().is_some() {}
    }

    fn round(&mut self) {
        self.shard.receive(self.publisher, &self.batch, 0);
        self.drain();
    }
}

/// The scenarios: name, subscribers, their filter (the publisher uses `bench/t`).
const SCENARIOS: [(&str, usize, &str); 2] = [
    ("fanin_1_sub_wildcard", 1, "bench/+"),
    ("fanout_100_subs", 100, "bench/t"),
];

fn route(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_route");
    for (name, subscribers, filter) in SCENARIOS {
        let mut bench = Bench::new(subscribers, filter, "bench/t");
        group.throughput(Throughput::Elements((BATCH_PUBLISHES * subscribers) as u64));
        group.bench_function(name, |b| b.iter(|| bench.round()));
    }
    group.finish();
}

criterion_group!(benches, route);

fn main() {
    // A fixed amount of work instead of criterion's timing, for instruction counts that do
    // not depend on the machine's noise: `CORE_ROUTE_ROUNDS=20000 CORE_ROUTE_ONLY=fanout
    // perf stat -e instructions:u target/release/deps/core_route-* --bench`
    // (docs/benchmarks.md, "Metrics cost").
    if let Some(rounds) = std::env::var("CORE_ROUTE_ROUNDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let only = std::env::var("CORE_ROUTE_ONLY").unwrap_or_default();
        for (name, subscribers, filter) in SCENARIOS {
            if !name.contains(only.as_str()) {
                continue;
            }
            let mut bench = Bench::new(subscribers, filter, "bench/t");
            for _ in 0..rounds {
                bench.round();
            }
            println!("{name}: {rounds} rounds of {BATCH_PUBLISHES} PUBLISHes");
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
