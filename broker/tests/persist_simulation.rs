//! A deterministic simulation of crashes: the core's shards on a simulated store that, at a
//! crash, keeps only what was made durable. A seeded schedule of publishers (QoS 1 and 2,
//! persistent sessions), persistent subscribers that come and go, retained messages and
//! crashes at any driver step (between a batch applied, an action carried out and a
//! connection's output delivered); after each crash the broker is rebuilt from the store.
//! At the end every message acknowledged to a publisher has reached every subscriber at
//! least once (QoS 1) or exactly once (QoS 2), no session was lost, and the retained value
//! is the last acknowledged one or a later one.
//!
//! `STARLING_SIM_SEED=N` runs seed N alone (a failure names its seed);
//! `STARLING_SIM_SEEDS=K` runs seeds 0..K (default [`DEFAULT_SEEDS`]).

mod core_common;
mod protocol_common;

use std::collections::{BTreeMap, HashMap, HashSet};

use core_common::{Net, Received};
use protocol_common::{self as packets, ConnectSpec};
use starling::core::CoreConfig;
use starling_store::SimStore;

/// Seeds run by default (each with [`CRASHES_PER_SEED`] crashes).
const DEFAULT_SEEDS: u64 = 250;
/// Crashes per seed.
const CRASHES_PER_SEED: usize = 12;
/// Schedule steps between two crashes, at most.
const STEPS_BETWEEN_CRASHES: u64 = 40;
/// A crash comes within this many driver steps of the last restart (the schedule's steps
/// make a few each: most crashes land mid-exchange, some after a quiet moment).
const CRASH_WITHIN_DRIVER_STEPS: u64 = 150;
/// Event loops of the simulated broker.
const LOOPS: usize = 2;
/// Wall-clock time of the first start (any fixed value: the run is deterministic).
const FIRST_WALL_MS: u64 = 1_800_000_000_000;
/// The topic the publishers publish on, and the retained one.
const TOPIC: &str = "sim/data";
const RETAINED_TOPIC: &str = "sim/state";

/// xorshift64*: a seeded, dependency-free generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Where a publisher's message is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    AwaitAck,
    AwaitComp,
}

/// A simulated client's own state (it survives the broker's crashes: it is the client's).
struct Model {
    name: String,
    /// QoS it publishes or subscribes with.
    qos: u8,
    subscriber: bool,
    /// Its connection in the current network.
    client: Option<usize>,
    /// Whether the broker has confirmed a session for it (a CONNACK).
    has_session: bool,
    /// Publisher: the next payload number and packet id; messages in flight by packet id.
    next_seq: u64,
    next_pid: u16,
    inflight: BTreeMap<u16, (Vec<u8>, Sent)>,
    /// Subscriber: how often each payload arrived; QoS 2 packet ids awaiting PUBREL.
    received: HashMap<Vec<u8>, u32>,
    awaiting_rel: HashSet<u16>,
}

impl Model {
    fn new(name: &str, qos: u8, subscriber: bool) -> Model {
        Model {
            name: name.into(),
            qos,
            subscriber,
            client: None,
            has_session: false,
            next_seq: 0,
            next_pid: 0,
            inflight: BTreeMap::new(),
            received: HashMap::new(),
            awaiting_rel: HashSet::new(),
        }
    }
}

/// One seed's run.
struct Sim {
    rng: Rng,
    net: Net,
    wall_ms: u64,
    models: Vec<Model>,
    /// Payloads acknowledged to a publisher (PUBACK, or PUBREC for QoS 2), with its QoS.
    acked: Vec<(Vec<u8>, u8)>,
    /// The last retained value acknowledged, and every value ever sent.
    retained_acked: Option<u64>,
    lost_sessions: Vec<String>,
    crashes: usize,
}

fn config() -> CoreConfig {
    let mut config = Net::small_config();
    // Every message kept: the queue limit is not what is under test.
    config.max_queued_messages = 100_000;
    config
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let models = vec![
            Model::new("pub-q1", 1, false),
            Model::new("pub-q2", 2, false),
            Model::new("pub-retain", 1, false),
            Model::new("sub-a-q1", 1, true),
            Model::new("sub-b-q2", 2, true),
            Model::new("sub-c-q2", 2, true),
            Model::new("sub-d-q1", 1, true),
        ];
        let wall_ms = FIRST_WALL_MS;
        let net = Net::restarted(LOOPS, config(), SimStore::default(), wall_ms);
        let mut sim = Sim {
            rng: Rng::new(seed),
            net,
            wall_ms,
            models,
            acked: Vec::new(),
            retained_acked: None,
            lost_sessions: Vec::new(),
            crashes: 0,
        };
        // Every subscriber subscribes once, before anything is published, and keeps its
        // subscription for the whole run (its session must keep it across crashes).
        for m in 0..sim.models.len() {
            if sim.models[m].subscriber {
                sim.connect(m);
                let qos = sim.models[m].qos;
                let client = sim.models[m].client.expect("connected");
                sim.net
                    .send(client, &packets::subscribe(1, &[(TOPIC.as_bytes(), qos)]));
                sim.settle();
            }
        }
        sim
    }

    /// Connects model `m` (persistent session) and resends what it has in flight.
    fn connect(&mut self, m: usize) {
        let spec = ConnectSpec {
            client_id: self.models[m].name.as_bytes().to_vec(),
            clean_session: false,
            ..ConnectSpec::default()
        };
        let loop_index = starling::core::owner_loop(&self.models[m].name, LOOPS);
        let client = self.net.open(loop_index);
        self.models[m].client = Some(client);
        self.net.send(client, &spec.build());
        self.settle();
    }

    /// Reacts to everything the clients received until nothing new arrives.
    fn settle(&mut self) {
        loop {
            if self.net.crashed() {
                return;
            }
            let mut any = false;
            for m in 0..self.models.len() {
                let Some(client) = self.models[m].client else {
                    continue;
                };
                let packets = self.net.take(client);
                for packet in packets {
                    any = true;
                    self.react(m, client, packet);
                    if self.net.crashed() {
                        return;
                    }
                }
                if self.net.is_closed(client) {
                    self.models[m].client = None;
                }
            }
            if !any {
                return;
            }
        }
    }

    fn react(&mut self, m: usize, client: usize, packet: Received) {
        match packet {
            Received::ConnAck {
                session_present,
                code,
            } => {
                assert_eq!(code, 0, "{} refused", self.models[m].name);
                if self.models[m].has_session && !session_present {
                    self.lost_sessions.push(self.models[m].name.clone());
                }
                self.models[m].has_session = true;
                self.resend(m, client);
            }
            Received::Publish {
                payload,
                qos,
                packet_id,
                topic,
                ..
            } => {
                let model = &mut self.models[m];
                let fresh = qos < 2 || packet_id.is_some_and(|id| model.awaiting_rel.insert(id));
                if fresh && topic == TOPIC {
                    *model.received.entry(payload).or_default() += 1;
                }
                match (qos, packet_id) {
                    (1, Some(id)) => self.net.send(client, &packets::ack(0x40, id)),
                    (2, Some(id)) => self.net.send(client, &packets::ack(0x50, id)),
                    _ => {}
                }
            }
            Received::PubRel(id) => {
                self.models[m].awaiting_rel.remove(&id);
                self.net.send(client, &packets::ack(0x70, id));
            }
            Received::PubAck(id) => {
                if let Some((payload, _)) = self.models[m].inflight.remove(&id) {
                    self.acknowledged(m, payload);
                }
            }
            Received::PubRec(id) => {
                let model = &mut self.models[m];
                if let Some((payload, state)) = model.inflight.get_mut(&id) {
                    if *state == Sent::AwaitAck {
                        *state = Sent::AwaitComp;
                        let payload = payload.clone();
                        self.acknowledged(m, payload);
                    }
                    self.net.send(client, &packets::ack(0x62, id));
                }
            }
            Received::PubComp(id) => {
                self.models[m].inflight.remove(&id);
            }
            Received::SubAck { .. } | Received::PingResp => {}
            other => panic!("{} got {other:?}", self.models[m].name),
        }
    }

    fn acknowledged(&mut self, m: usize, payload: Vec<u8>) {
        let model = &self.models[m];
        if model.name == "pub-retain" {
            let seq = String::from_utf8_lossy(&payload)
                .rsplit(':')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a numbered payload");
            self.retained_acked = self.retained_acked.max(Some(seq));
        } else {
            self.acked.push((payload, model.qos));
        }
    }

    /// After a CONNACK: what the client has in flight goes again (PUBLISH with DUP, or
    /// PUBREL).
    fn resend(&mut self, m: usize, client: usize) {
        let topic = self.topic_of(m);
        let model = &self.models[m];
        let qos = model.qos;
        let again: Vec<(u16, Vec<u8>, Sent)> = model
            .inflight
            .iter()
            .map(|(&id, (payload, state))| (id, payload.clone(), *state))
            .collect();
        for (id, payload, state) in again {
            let bytes = match state {
                Sent::AwaitAck => packets::publish(
                    0x08 | (qos << 1) | self.retain_flag(m),
                    topic.as_bytes(),
                    Some(id),
                    &payload,
                ),
                Sent::AwaitComp => packets::ack(0x62, id),
            };
            self.net.send(client, &bytes);
            if self.net.crashed() {
                return;
            }
        }
    }

    fn topic_of(&self, m: usize) -> &'static str {
        if self.models[m].name == "pub-retain" {
            RETAINED_TOPIC
        } else {
            TOPIC
        }
    }

    fn retain_flag(&self, m: usize) -> u8 {
        u8::from(self.models[m].name == "pub-retain")
    }

    /// A new message from publisher `m`.
    fn publish(&mut self, m: usize) {
        let Some(client) = self.models[m].client else {
            return;
        };
        let topic = self.topic_of(m);
        let flags = (self.models[m].qos << 1) | self.retain_flag(m);
        let model = &mut self.models[m];
        if model.inflight.len() >= 10 {
            return; // its own in-flight window
        }
        model.next_seq += 1;
        let payload = format!("{}:{}", model.name, model.next_seq).into_bytes();
        let pid = loop {
            model.next_pid = model.next_pid.checked_add(1).unwrap_or(1);
            if !model.inflight.contains_key(&model.next_pid) {
                break model.next_pid;
            }
        };
        model
            .inflight
            .insert(pid, (payload.clone(), Sent::AwaitAck));
        self.net.send(
            client,
            &packets::publish(flags, topic.as_bytes(), Some(pid), &payload),
        );
    }

    /// One random step of the schedule.
    fn step(&mut self) {
        let m = self.rng.below(self.models.len() as u64) as usize;
        match (self.models[m].client, self.rng.below(10)) {
            (None, _) => self.connect(m),
            // A subscriber goes away now and then (its queue builds up meanwhile).
            (Some(client), 0..=1) if self.models[m].subscriber => {
                self.net.drop_connection(client);
                self.models[m].client = None;
            }
            (Some(_), _) if !self.models[m].subscriber => self.publish(m),
            (Some(_), _) => {}
        }
        self.settle();
    }

    /// Runs steps until the next crash, which comes after a random number of driver
    /// steps; then rebuilds the broker from what the store kept.
    fn run_until_crash(&mut self) {
        let steps = 1 + self.rng.below(STEPS_BETWEEN_CRASHES);
        self.net.crash_after_steps = Some(self.rng.below(CRASH_WITHIN_DRIVER_STEPS) as usize);
        for _ in 0..steps {
            if self.net.crashed() {
                break;
            }
            self.step();
        }
        self.restart();
    }

    fn restart(&mut self) {
        let mut store = self.net.store.take().expect("a store");
        // Batches no output promised are buffered: a crash keeps some of them, or none.
        let kept = self.rng.below(store.buffered_batches() as u64 + 1) as usize;
        store.crash(kept);
        self.crashes += 1;
        self.wall_ms += 1_000 + self.rng.below(5_000);
        self.net = Net::restarted(LOOPS, config(), store, self.wall_ms);
        for model in &mut self.models {
            model.client = None;
        }
    }

    /// Everyone connects and the publishers finish what they have in flight; then every
    /// subscriber has drained its session.
    fn finish(&mut self) {
        for _ in 0..3 {
            for m in 0..self.models.len() {
                if self.models[m].client.is_none() {
                    self.connect(m);
                }
            }
            self.settle();
        }
    }

    fn check(&mut self, seed: u64) {
        assert!(
            self.lost_sessions.is_empty(),
            "seed {seed}: sessions lost after a restart: {:?}",
            self.lost_sessions
        );
        for model in self.models.iter().filter(|m| m.subscriber) {
            for (payload, qos) in &self.acked {
                let count = model.received.get(payload).copied().unwrap_or(0);
                let text = String::from_utf8_lossy(payload);
                assert!(
                    count >= 1,
                    "seed {seed}: {} never got acknowledged {text}",
                    model.name
                );
                if *qos == 2 && model.qos == 2 {
                    assert_eq!(
                        count, 1,
                        "seed {seed}: {} got {text} {count} times",
                        model.name
                    );
                }
            }
            if model.qos == 2 {
                for (payload, count) in &model.received {
                    let text = String::from_utf8_lossy(payload);
                    let qos2 = text.starts_with("pub-q2");
                    assert!(
                        !qos2 || *count == 1,
                        "seed {seed}: {} got {text} {count} times",
                        model.name
                    );
                }
            }
        }
        self.check_retained(seed);
    }

    /// A fresh subscriber gets the last acknowledged retained value, or a later one.
    fn check_retained(&mut self, seed: u64) {
        let Some(acked) = self.retained_acked else {
            return;
        };
        let spec = ConnectSpec {
            client_id: b"retained-reader".to_vec(),
            ..ConnectSpec::default()
        };
        let (client, _) = self.net.connect(0, spec);
        self.net.send(
            client,
            &packets::subscribe(1, &[(RETAINED_TOPIC.as_bytes(), 1)]),
        );
        let got = core_common::publishes(&self.net.take(client));
        let seq: Option<u64> = got.first().and_then(|(_, payload, _)| {
            String::from_utf8_lossy(payload)
                .rsplit(':')
                .next()
                .and_then(|n| n.parse().ok())
        });
        assert!(
            seq.is_some_and(|seq| seq >= acked),
            "seed {seed}: retained value {seq:?}, but {acked} was acknowledged"
        );
    }
}

fn run_seed(seed: u64) -> usize {
    let mut sim = Sim::new(seed);
    for _ in 0..CRASHES_PER_SEED {
        sim.run_until_crash();
    }
    sim.finish();
    sim.check(seed);
    if std::env::var_os("STARLING_SIM_VERBOSE").is_some() {
        let received: Vec<usize> = sim.models.iter().map(|m| m.received.len()).collect();
        eprintln!(
            "seed {seed}: {} crashes, {} acknowledged, retained {:?}, received {received:?}",
            sim.crashes,
            sim.acked.len(),
            sim.retained_acked
        );
    }
    sim.crashes
}

#[test]
fn nothing_acknowledged_is_lost_across_simulated_crashes() {
    let seeds: Vec<u64> = match std::env::var("STARLING_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("STARLING_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("STARLING_SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(DEFAULT_SEEDS);
            (0..count).collect()
        }
    };
    let mut crashes = 0;
    for seed in seeds {
        crashes += run_seed(seed);
    }
    eprintln!("{crashes} simulated crashes");
    assert!(crashes > 0);
}
