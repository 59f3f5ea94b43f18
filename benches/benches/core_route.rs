//! The core's routing throughput: PUBLISHes fed to one `Shard` in batches and delivered
//! to subscribers' output buffers, which are then drained as a socket would. This is the
//! hot path the metrics counters sit on (`core::observe`: one counter per frame in, one per
//! packet out, two byte counters), so `docs/benchmarks.md` ("Metrics cost") compares it
//! with and without them. The QoS 1 fan-in scenarios add the acknowledgements both ways
//! (the publisher's PUBACK, whose MQTT 5 reason code says whether anyone matched, and the
//! subscriber's PUBACKs), and with the shard as one of two loops whose other loop holds
//! nothing, or a subscription to other topics (its summary is read per PUBLISH and the
//! topic hashed: "No matching subscribers" in `docs/benchmarks.md`). The `_acl` scenarios
//! run the same under an ACL of 1 000 rules ([`acl_text`]; "Authentication and access
//! control" in `docs/benchmarks.md`), the `_100_topics` ones cycle each batch over 100
//! topics, so that the sessions' memo of their last topic never answers.
//!
//! `cargo bench -p starling-benches --bench core_route`

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group};
use starling::acl::Acl;
use starling::core::access::{AccessPolicy, ListenerAccess, SessionTakeover};
use starling::core::shared::ASSIGNED_ID_KEY_BYTES;
use starling::core::{ConnId, CoreConfig, Shard, Shared};
use starling_loadtest::mqtt;

/// PUBLISHes per read fed to the shard.
const BATCH_PUBLISHES: usize = 50;
/// Payload of each PUBLISH.
const PAYLOAD_BYTES: usize = 64;

/// A CONNECT; with an ACL the client gives its client id as its user name.
fn connect(client_id: &str, protocol: mqtt::Protocol, acl: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let login = mqtt::Login {
        username: acl.then_some(client_id),
        password: None,
    };
    mqtt::connect_as(&mut out, protocol, client_id, 60, true, login);
    out
}

/// The ACL of the `_acl` scenarios, 1 000 rules: 196 users of 5 rules each that no client
/// of the benchmark is, 15 patterns with `%c` / `%u` matching none of its topics, and its
/// own clients' rules: `pub` may write `bench/+` (its section); `sub-0` reads `bench/+`
/// but not `bench/private` (its section: a subscription to `bench/+` is checked per
/// delivered topic, one to `bench/t` is always allowed); every client may read `bench/t`
/// (a pattern: the fan-out subscribers' `bench/t` is always allowed).
fn acl_text() -> String {
    let mut text = String::from("topic read $SYS/#\n");
    for i in 0..196 {
        text += &format!(
            "user tenant{i}\ntopic readwrite tenants/{i}/#\ntopic deny tenants/{i}/secret/#\n\
             topic read fleet/{i}/+/status\ntopic write fleet/{i}/+/cmd\ntopic read shared/+/{i}\n"
        );
    }
    text += "user pub\ntopic write bench/+\n";
    text += "user sub-0\ntopic read bench/+\ntopic deny bench/private\n";
    for pattern in [
        "readwrite devices/%c/#",
        "deny devices/%c/private/#",
        "write telemetry/%u/+",
        "read commands/%u/#",
        "read $SYS/broker/connection/%c/state",
        "readwrite home/%u/%c/#",
        "read config/%u",
        "write status/%c",
        "readwrite inbox/%u/+",
        "deny inbox/%u/admin",
        "read alerts/+/%u",
        "write logs/%u/%c",
        "read fleet/+/%c/cmd",
        "read announcements/%u",
        "write fleet/+/%c/status",
        "read bench/t",
    ] {
        text += &format!("pattern {pattern}\n");
    }
    text
}

fn subscribe(filter: &str, qos: u8) -> Vec<u8> {
    let mut out = Vec::new();
    mqtt::subscribe(&mut out, mqtt::Protocol::V311, 1, filter, qos);
    out
}

/// One batch of PUBLISHes to `topic` at `qos` (packet ids 1 to [`BATCH_PUBLISHES`]), or
/// with `topics` > 1 to `bench/0`, `bench/1`, ... in turn.
fn batch(topic: &str, scenario: &Scenario) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..BATCH_PUBLISHES {
        let cycled;
        let topic = if scenario.topics > 1 {
            cycled = format!("bench/{}", i % scenario.topics);
            cycled.as_str()
        } else {
            topic
        };
        mqtt::publish(
            &mut out,
            scenario.publisher,
            topic,
            scenario.qos,
            i as u16 + 1,
            &[b'x'; PAYLOAD_BYTES],
        );
    }
    out
}

/// One benchmark setting.
struct Scenario {
    name: &'static str,
    subscribers: usize,
    /// The subscribers' filter (the publisher uses `bench/t`).
    filter: &'static str,
    /// The publisher's QoS, also the subscribers' requested QoS.
    qos: u8,
    /// The publisher's protocol.
    publisher: mqtt::Protocol,
    /// Event loops of the broker (the benchmark drives loop 0).
    loops: usize,
    /// A filter loop 1 holds (as its summary tells the others), or none.
    other_loop_filter: Option<&'static str>,
    /// Under [`acl_text`]'s ACL, clients logged in as their client ids.
    acl: bool,
    /// Distinct topics a batch cycles over (1: `bench/t` only).
    topics: usize,
}

struct Bench {
    shard: Shard,
    publisher: ConnId,
    dirty: Vec<ConnId>,
    batch: Vec<u8>,
    /// Scratch for the subscribers' PUBACKs.
    acks: Vec<u8>,
    /// Clients log in as their client ids.
    acl: bool,
    /// PUBLISHes written to subscribers.
    delivered: u64,
}

impl Bench {
    /// One shard with the scenario's subscribers and one publisher on `topic`.
    fn new(scenario: &Scenario, topic: &str) -> Bench {
        let shared = Arc::new(Shared::new(scenario.loops, [0; ASSIGNED_ID_KEY_BYTES]));
        if let Some(filter) = scenario.other_loop_filter {
            shared.set_summary(1, starling::core::summary::filter_bit(filter));
        }
        let mut shard = Shard::new(0, scenario.loops, CoreConfig::default(), shared)
            .expect("default pool config is valid");
        if scenario.acl {
            let acl = Acl::parse(&acl_text(), "bench").expect("valid ACL");
            assert_eq!(acl.rule_count(), 1000);
            let listener = ListenerAccess {
                allow_anonymous: true,
                users: None,
                acl: Some(Arc::new(acl)),
                session_takeover: SessionTakeover::Any,
                identity_as_username: false,
            };
            shard.set_access(AccessPolicy::new(vec![listener], 1), 0);
        }
        let mut bench = Bench {
            shard,
            publisher: ConnId::from_u64(0),
            dirty: Vec::new(),
            batch: batch(topic, scenario),
            acks: Vec::new(),
            acl: scenario.acl,
            delivered: 0,
        };
        for i in 0..scenario.subscribers {
            let c = bench.client(&format!("sub-{i}"), mqtt::Protocol::V311);
            bench
                .shard
                .receive(c, &subscribe(scenario.filter, scenario.qos), 0);
        }
        bench.publisher = bench.client("pub", scenario.publisher);
        bench.drain();
        bench
    }

    fn client(&mut self, id: &str, protocol: mqtt::Protocol) -> ConnId {
        let c = self.shard.accept(0).expect("pool has room");
        self.shard.receive(c, &connect(id, protocol, self.acl), 0);
        c
    }

    /// Writes every dirty connection's output, as the driver's socket writes would; a
    /// subscriber acknowledges each QoS 1 PUBLISH it was sent, until nothing moves.
    fn drain(&mut self) {
        loop {
            self.shard.drain_dirty(&mut self.dirty);
            if self.dirty.is_empty() {
                break;
            }
            for &c in &self.dirty {
                self.acks.clear();
                let out = self.shard.output(c);
                let mut at = 0;
                while let Ok((packet, used)) = mqtt::parse(&out[at..], mqtt::Protocol::V311) {
                    if let mqtt::Incoming::Publish { qos, packet_id, .. } = packet {
                        self.delivered += 1;
                        if qos == 1 {
                            mqtt::ack(&mut self.acks, mqtt::Ack::PubAck, packet_id);
                        }
                    }
                    at += used;
                }
                let n = out.len();
                self.shard.consume_output(c, n, 0);
                if !self.acks.is_empty() && c != self.publisher {
                    self.shard.receive(c, &self.acks, 0);
                }
            }
        }
        while self.shard.poll_action().is_some() {}
    }

    fn round(&mut self) {
        self.shard.receive(self.publisher, &self.batch, 0);
        self.drain();
    }
}

/// A QoS 0 scenario of an MQTT 3.1.1 publisher on one loop.
const fn qos0(
    name: &'static str,
    subscribers: usize,
    filter: &'static str,
    acl: bool,
    topics: usize,
) -> Scenario {
    Scenario {
        name,
        subscribers,
        filter,
        qos: 0,
        publisher: mqtt::Protocol::V311,
        loops: 1,
        other_loop_filter: None,
        acl,
        topics,
    }
}

/// The scenarios.
const SCENARIOS: [Scenario; 9] = [
    qos0("fanin_1_sub_wildcard", 1, "bench/+", false, 1),
    qos0("fanout_100_subs", 100, "bench/t", false, 1),
    Scenario {
        name: "fanin_qos1_v5_one_loop",
        subscribers: 1,
        filter: "bench/+",
        qos: 1,
        publisher: mqtt::Protocol::V5,
        loops: 1,
        other_loop_filter: None,
        acl: false,
        topics: 1,
    },
    Scenario {
        name: "fanin_qos1_v5_two_loops",
        subscribers: 1,
        filter: "bench/+",
        qos: 1,
        publisher: mqtt::Protocol::V5,
        loops: 2,
        other_loop_filter: None,
        acl: false,
        topics: 1,
    },
    Scenario {
        name: "fanin_qos1_v5_other_loop_elsewhere",
        subscribers: 1,
        filter: "bench/+",
        qos: 1,
        publisher: mqtt::Protocol::V5,
        loops: 2,
        other_loop_filter: Some("elsewhere/#"),
        acl: false,
        topics: 1,
    },
    qos0("fanin_1_sub_wildcard_acl", 1, "bench/+", true, 1),
    qos0("fanin_1_sub_wildcard_100_topics", 1, "bench/+", false, 100),
    qos0(
        "fanin_1_sub_wildcard_acl_100_topics",
        1,
        "bench/+",
        true,
        100,
    ),
    qos0("fanout_100_subs_acl", 100, "bench/t", true, 1),
];

fn route(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_route");
    for scenario in &SCENARIOS {
        let mut bench = Bench::new(scenario, "bench/t");
        group.throughput(Throughput::Elements(
            (BATCH_PUBLISHES * scenario.subscribers) as u64,
        ));
        group.bench_function(scenario.name, |b| b.iter(|| bench.round()));
    }
    group.finish();
}

criterion_group!(benches, route);

fn main() {
    // A fixed amount of work instead of criterion's timing, for instruction counts that do
    // not depend on the machine's noise: `CORE_ROUTE_ROUNDS=20000
    // CORE_ROUTE_ONLY=fanout_100_subs perf stat -e instructions:u
    // target/release/deps/core_route-* --bench` (docs/benchmarks.md, "Metrics cost").
    if let Some(rounds) = std::env::var("CORE_ROUTE_ROUNDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        // A scenario's whole name selects it alone, any other text every name containing it.
        let only = std::env::var("CORE_ROUTE_ONLY").unwrap_or_default();
        let exact = SCENARIOS.iter().any(|s| s.name == only);
        for scenario in &SCENARIOS {
            if (exact && scenario.name != only) || !scenario.name.contains(only.as_str()) {
                continue;
            }
            let mut bench = Bench::new(scenario, "bench/t");
            for _ in 0..rounds {
                bench.round();
            }
            let (name, delivered) = (scenario.name, bench.delivered);
            println!(
                "{name}: {rounds} rounds of {BATCH_PUBLISHES} PUBLISHes, {delivered} delivered"
            );
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
