//! Seeded random interleavings of several clients on two loops, driven in memory: publishers
//! at QoS 0/1/2 (with duplicate retransmissions), persistent subscribers that acknowledge
//! late, lose their connection, reconnect (sometimes on the other loop, sometimes taking over
//! a live connection). At the end every QoS 2 message reached every subscriber exactly once,
//! every QoS 1 message at least once, and QoS 0 at most once (MQTT 3.1.1 §4.3).

mod core_common;
mod protocol_common;

use std::collections::{HashMap, HashSet};

use core_common::{ClientId, Net, Received};
use protocol_common::{self as packets, ConnectSpec};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A subscriber as a well-behaved client library would be: it remembers QoS 2 packet ids
/// until PUBREL, so a redelivered QoS 2 message reaches the application once.
struct Subscriber {
    name: String,
    client: ClientId,
    online: bool,
    unacked: Vec<Received>,
    awaiting_rel: HashSet<u16>,
    seen: HashMap<Vec<u8>, u32>,
}

impl Subscriber {
    fn absorb(&mut self, received: Vec<Received>) {
        for packet in received {
            match &packet {
                Received::Publish {
                    payload,
                    qos: 2,
                    packet_id: Some(id),
                    ..
                } => {
                    if self.awaiting_rel.insert(*id) {
                        *self.seen.entry(payload.clone()).or_default() += 1;
                    }
                    self.unacked.push(packet);
                }
                Received::Publish { payload, qos, .. } => {
                    *self.seen.entry(payload.clone()).or_default() += 1;
                    if *qos == 1 {
                        self.unacked.push(packet);
                    }
                }
                Received::PubRel(_) => self.unacked.push(packet),
                _ => {}
            }
        }
    }

    /// The acknowledgement for the oldest unacknowledged packet, if any.
    fn next_ack(&mut self) -> Option<Vec<u8>> {
        if self.unacked.is_empty() {
            return None;
        }
        Some(match self.unacked.remove(0) {
            Received::Publish {
                qos: 1,
                packet_id: Some(id),
                ..
            } => packets::ack(0x40, id),
            Received::Publish {
                qos: 2,
                packet_id: Some(id),
                ..
            } => packets::ack(0x50, id),
            Received::PubRel(id) => {
                self.awaiting_rel.remove(&id);
                packets::ack(0x70, id)
            }
            other => panic!("nothing to acknowledge in {other:?}"),
        })
    }
}

fn connect_subscriber(net: &mut Net, rng: &mut Lcg, name: &str) -> ClientId {
    let spec = ConnectSpec {
        client_id: name.as_bytes().to_vec(),
        clean_session: false,
        ..ConnectSpec::default()
    };
    let (client, connack) = net.connect(rng.below(2) as usize, spec);
    assert!(
        matches!(connack, Received::ConnAck { code: 0, .. }),
        "{connack:?}"
    );
    client
}

fn run(seed: u64) {
    let mut rng = Lcg(seed);
    let mut config = Net::small_config();
    config.max_inflight_messages = 4;
    config.max_queued_messages = 100_000;
    let mut net = Net::new(2, config);
    let mut subs: Vec<Subscriber> = (0..3)
        .map(|i| {
            let name = format!("sub-{i}");
            let client = connect_subscriber(&mut net, &mut rng, &name);
            let mut sub = Subscriber {
                name,
                client,
                online: true,
                unacked: Vec::new(),
                awaiting_rel: HashSet::new(),
                seen: HashMap::new(),
            };
            let codes = net.subscribe(client, 1, "t/#", 2);
            assert_eq!(codes, [2]);
            sub.absorb(net.take(client));
            sub
        })
        .collect();
    let publishers: Vec<ClientId> = (0..2)
        .map(|i| {
            let spec = ConnectSpec {
                client_id: format!("pub-{i}").into_bytes(),
                ..ConnectSpec::default()
            };
            net.connect(rng.below(2) as usize, spec).0
        })
        .collect();
    let mut sent: Vec<(Vec<u8>, u8)> = Vec::new();
    let mut next_id = 1u16;
    for step in 0..400 {
        match rng.below(10) {
            0..=3 => {
                let publisher = publishers[rng.below(2) as usize];
                let qos = rng.below(3) as u8;
                let payload = format!("m{step}").into_bytes();
                let topic = format!("t/{}", rng.below(3));
                let id = (qos > 0).then(|| {
                    next_id += 1;
                    next_id
                });
                net.publish(publisher, &topic, qos, false, id, &payload);
                if qos == 2 && rng.below(3) == 0 {
                    // Our PUBREC was "lost": the publisher retransmits with DUP.
                    net.send(
                        publisher,
                        &packets::publish(0x0C, topic.as_bytes(), id, &payload),
                    );
                }
                if let (2, Some(id)) = (qos, id) {
                    net.send(publisher, &packets::ack(0x62, id));
                }
                net.take(publisher);
                sent.push((payload, qos));
            }
            4..=7 => {
                let sub = &mut subs[rng.below(3) as usize];
                if sub.online {
                    sub.absorb(net.take(sub.client));
                    if let Some(ack) = sub.next_ack() {
                        net.send(sub.client, &ack);
                        sub.absorb(net.take(sub.client));
                    }
                }
            }
            8 => {
                let sub = &mut subs[rng.below(3) as usize];
                if sub.online {
                    sub.absorb(net.take(sub.client));
                    net.drop_connection(sub.client);
                    sub.online = false;
                    sub.unacked.clear();
                }
            }
            _ => {
                let sub = &mut subs[rng.below(3) as usize];
                // Offline: reconnect. Online: a second connection takes the session over.
                if sub.online {
                    sub.absorb(net.take(sub.client));
                }
                sub.unacked.clear();
                sub.client = connect_subscriber(&mut net, &mut rng, &sub.name);
                sub.online = true;
                sub.absorb(net.take(sub.client));
            }
        }
    }
    // Drain: everyone back online, acknowledging until nothing moves.
    for sub in &mut subs {
        if !sub.online {
            sub.client = connect_subscriber(&mut net, &mut rng, &sub.name);
            sub.online = true;
        }
        sub.absorb(net.take(sub.client));
    }
    for _ in 0..100_000 {
        let mut moved = false;
        for sub in &mut subs {
            if let Some(ack) = sub.next_ack() {
                net.send(sub.client, &ack);
                sub.absorb(net.take(sub.client));
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    for sub in &subs {
        for (payload, qos) in &sent {
            let n = sub.seen.get(payload).copied().unwrap_or(0);
            let text = String::from_utf8_lossy(payload);
            match qos {
                2 => assert_eq!(n, 1, "seed {seed}: {} got QoS 2 {text} {n} times", sub.name),
                1 => assert!(n >= 1, "seed {seed}: {} lost QoS 1 {text}", sub.name),
                _ => assert!(
                    n <= 1,
                    "seed {seed}: {} got QoS 0 {text} {n} times",
                    sub.name
                ),
            }
        }
    }
}

#[test]
fn qos_guarantees_hold_under_random_interleavings() {
    for seed in 1..=40 {
        run(seed);
    }
}
