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

/// PUBLISHes per read fed to the shard.
const BATCH_PUBLISHES: usize = 50;
/// Payload of each PUBLISH.
const PAYLOAD_BYTES: usize = 64;

fn remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn connect(client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, "MQTT");
    body.extend_from_slice(&[4, 0x02, 0, 60]);
    string(&mut body, client_id);
    packet(0x10, &body)
}

fn subscribe(filter: &str) -> Vec<u8> {
    let mut body = vec![0, 1];
    string(&mut body, filter);
    body.push(0);
    packet(0x82, &body)
}

fn publish(topic: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic);
    body.extend_from_slice(&[b'x'; PAYLOAD_BYTES]);
    packet(0x30, &body)
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

fn route(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_route");
    for (name, subscribers, filter) in [
        ("fanin_1_sub_wildcard", 1, "bench/+"),
        ("fanout_100_subs", 100, "bench/t"),
    ] {
        let mut bench = Bench::new(subscribers, filter, "bench/t");
        group.throughput(Throughput::Elements((BATCH_PUBLISHES * subscribers) as u64));
        group.bench_function(name, |b| b.iter(|| bench.round()));
    }
    group.finish();
}

criterion_group!(benches, route);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
