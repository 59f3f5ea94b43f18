//! One shard's thread: drives its clients through `Shard` exactly as the mio driver would
//! (accept, receive, actions, dirty output, consume, tick), with no socket.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use starling::core::{Action, ConnId, Shard, SharedMessage};

use crate::alloc_count::BrokerScope;
use crate::mqtt::{self, Ack, Incoming, Protocol};
use crate::track;

/// Clients handled between two ticks (the real loop ticks after every batch of events).
pub const TICK_EVERY_CLIENTS: usize = 256;
/// Sentinel in the slot → client table.
const NO_CLIENT: u32 = u32::MAX;
/// Most message rounds the per-client bitmask tracks.
pub const MAX_ROUNDS: u64 = 32;

/// Delivery counts of one shard.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// PUBLISH packets delivered to subscribers.
    pub delivered: u64,
    /// Distinct (client, round) delivered.
    pub unique: u64,
    /// Repeated deliveries.
    pub duplicates: u64,
    /// Deliveries of an earlier round after a later one.
    pub out_of_order: u64,
}

/// One shard and its clients.
pub struct Driver {
    /// The shard.
    pub shard: Shard,
    /// Channels to every shard (forwarded messages).
    pub peers: Arc<Vec<Sender<SharedMessage>>>,
    /// This shard's inbox.
    pub inbox: Receiver<SharedMessage>,
    /// Its clients' global numbers.
    pub clients: Vec<u32>,
    /// Their connections.
    pub conns: Vec<Option<ConnId>>,
    /// Pool slot → local client.
    slot_client: Vec<u32>,
    /// Per local client: rounds received (bit per round).
    rounds: Vec<u32>,
    /// Per local client: CONNACK seen.
    acked: Vec<bool>,
    dirty: Vec<ConnId>,
    clock: Instant,
    /// Added to the wall clock (the sweep phase jumps time forward).
    pub offset_ms: u64,
    /// CONNACK latency (the core's processing time: no network).
    pub connack: Histogram<u64>,
    /// Publish → delivery.
    pub e2e: Histogram<u64>,
    /// Deliveries.
    pub counts: Counts,
    /// Problems seen.
    pub errors: Vec<String>,
    /// The MQTT version the clients speak.
    pub protocol: Protocol,
}

impl Driver {
    /// A driver for `shard` and the clients it owns.
    pub fn new(
        shard: Shard,
        peers: Arc<Vec<Sender<SharedMessage>>>,
        inbox: Receiver<SharedMessage>,
        clients: Vec<u32>,
    ) -> Driver {
        let n = clients.len();
        Driver {
            shard,
            peers,
            inbox,
            clients,
            conns: vec![None; n],
            slot_client: Vec::new(),
            rounds: vec![0; n],
            acked: vec![false; n],
            dirty: Vec::new(),
            clock: Instant::now(),
            offset_ms: 0,
            connack: track::latency_histogram(),
            e2e: track::latency_histogram(),
            counts: Counts::default(),
            errors: Vec::new(),
            protocol: Protocol::V311,
        }
    }

    /// The shard's clock, ms.
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64 + self.offset_ms
    }

    /// Opens a connection for local client `c` and sends `bytes` (its CONNECT etc.).
    pub fn connect(&mut self, c: usize, bytes: &[u8]) -> bool {
        let now = self.now_ms();
        let started = track::now_ns();
        let conn = {
            let _scope = BrokerScope::enter();
            self.shard.accept(now)
        };
        let Some(conn) = conn else {
            self.error("accept refused: pool at max_live_objects");
            return false;
        };
        let slot = conn.index() as usize;
        if self.slot_client.len() <= slot {
            self.slot_client.resize(slot + 1, NO_CLIENT);
        }
        self.slot_client[slot] = c as u32;
        self.conns[c] = Some(conn);
        self.acked[c] = false;
        self.send(c, bytes);
        if self.acked[c] {
            track::record(&mut self.connack, track::now_ns().saturating_sub(started));
        }
        self.acked[c]
    }

    /// Sends `bytes` from local client `c` and runs the shard until it is quiet.
    pub fn send(&mut self, c: usize, bytes: &[u8]) {
        let Some(conn) = self.conns[c] else {
            return;
        };
        let now = self.now_ms();
        {
            let _scope = BrokerScope::enter();
            self.shard.receive(conn, bytes, now);
        }
        self.run();
    }

    /// Ticks the shard (timers, preheating, sweep).
    pub fn tick(&mut self) {
        let now = self.now_ms();
        {
            let _scope = BrokerScope::enter();
            self.shard.tick(now);
        }
        self.run();
    }

    /// Frees the dirty list's capacity after a burst (the broker's event loop does the same
    /// with its own, `server::event_loop`).
    pub fn shrink_dirty(&mut self) {
        if self.dirty.capacity() > starling::core::SCRATCH_KEEP_ENTRIES {
            let _scope = BrokerScope::enter();
            self.dirty = Vec::new();
        }
    }

    /// Routes what other shards forwarded.
    pub fn drain_inbox(&mut self) {
        let now = self.now_ms();
        let mut any = false;
        loop {
            // The channel's blocks are the broker's (a real loop's mailbox): the sender
            // allocates them and the receiver frees them, both counted as the broker's.
            let _scope = BrokerScope::enter();
            let Ok(message) = self.inbox.try_recv() else {
                break;
            };
            self.shard.remote(message, None, now);
            any = true;
        }
        if any {
            self.run();
        }
    }

    /// Carries out actions and takes every dirty connection's output.
    pub fn run(&mut self) {
        loop {
            let mut busy = false;
            loop {
                let action = {
                    let _scope = BrokerScope::enter();
                    self.shard.poll_action()
                };
                let Some(action) = action else { break };
                busy = true;
                self.act(action);
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            {
                let _scope = BrokerScope::enter();
                self.shard.drain_dirty(&mut dirty);
            }
            for &conn in &dirty {
                busy = true;
                self.flush(conn);
            }
            self.dirty = dirty;
            if !busy {
                return;
            }
        }
    }

    fn act(&mut self, action: Action) {
        let now = self.now_ms();
        match action {
            Action::Close(conn) => {
                self.flush(conn);
                if let Some(c) = self.client_of(conn) {
                    self.conns[c] = None;
                }
                let _scope = BrokerScope::enter();
                self.shard.closed(conn, now);
            }
            Action::Handover { to, .. } => {
                self.error(&format!("unexpected handover to shard {to}"));
            }
            // The simulated clients are always read: no flow-control holds here.
            Action::Hold { .. } => {}
            // The simulated broker has no password file: nothing is verified.
            Action::Authenticate { .. } | Action::DelayRefusal { .. } => {
                self.error("unexpected credential verification");
            }
            Action::Forward { to, message, .. } => {
                if let Some(peer) = self.peers.get(to) {
                    let _scope = BrokerScope::enter();
                    let _ = peer.send(message);
                }
            }
            Action::ForwardShared { to, .. } => {
                // The sim scenarios subscribe without `$share/`: a group message is a bug.
                self.error(&format!(
                    "unexpected shared-subscription forward to shard {to}"
                ));
            }
        }
    }

    fn client_of(&self, conn: ConnId) -> Option<usize> {
        let c = *self.slot_client.get(conn.index() as usize)?;
        (c != NO_CLIENT && self.conns.get(c as usize).copied().flatten() == Some(conn))
            .then_some(c as usize)
    }

    /// Takes `conn`'s output as a socket would and lets the client react.
    fn flush(&mut self, conn: ConnId) {
        let now = self.now_ms();
        let bytes = self.shard.output(conn).to_vec();
        {
            let _scope = BrokerScope::enter();
            self.shard.consume_output(conn, bytes.len(), now);
        }
        let Some(c) = self.client_of(conn) else {
            return;
        };
        let mut replies = Vec::new();
        let mut at = 0;
        while let Ok((packet, used)) = mqtt::parse(&bytes[at..], self.protocol) {
            at += used;
            match packet {
                Incoming::ConnAck { code, .. } => self.acked[c] = code == 0,
                Incoming::Publish {
                    qos,
                    packet_id,
                    payload,
                    ..
                } => {
                    match qos {
                        1 => mqtt::ack(&mut replies, Ack::PubAck, packet_id),
                        2 => mqtt::ack(&mut replies, Ack::PubRec, packet_id),
                        _ => {}
                    }
                    self.delivered(c, payload);
                }
                Incoming::Ack(Ack::PubRel, id) => mqtt::ack(&mut replies, Ack::PubComp, id),
                Incoming::Ack(Ack::PubRec, id) => mqtt::ack(&mut replies, Ack::PubRel, id),
                _ => {}
            }
        }
        if !replies.is_empty() {
            let _scope = BrokerScope::enter();
            self.shard.receive(conn, &replies, now);
        }
    }

    fn delivered(&mut self, c: usize, payload: &[u8]) {
        self.counts.delivered += 1;
        let Some((sent_ns, _, round)) = track::read_stamp(payload) else {
            return;
        };
        track::record(&mut self.e2e, track::now_ns().saturating_sub(sent_ns));
        if round >= MAX_ROUNDS {
            return;
        }
        let bit = 1u32 << round;
        let seen = &mut self.rounds[c];
        if *seen & bit != 0 {
            self.counts.duplicates += 1;
        } else {
            if *seen >> round != 0 {
                self.counts.out_of_order += 1;
            }
            *seen |= bit;
            self.counts.unique += 1;
        }
    }

    /// Whether local client `c` is connected.
    pub fn is_connected(&self, c: usize) -> bool {
        self.conns[c].is_some()
    }

    fn error(&mut self, why: &str) {
        if self.errors.len() < 5 && !self.errors.iter().any(|e| e == why) {
            self.errors.push(why.to_string());
        }
    }
}
