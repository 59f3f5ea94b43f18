//! What the broker's acknowledgements promise, recorded for the store.
//!
//! The core never touches the store: it records, in its [`Journal`], the [`Op`]s that
//! describe each change a durable session, a retained message or a hand-over between loops
//! went through, and the driver takes them once per turn ([`crate::core::Shard::take_persist_ops`])
//! and applies them as one batch. In `sync` mode the driver makes that batch durable before
//! it writes any of the turn's output, so no PUBACK, PUBREC, SUBACK or CONNACK leaves
//! before what it promises is on disk.
//!
//! What is recorded:
//! - a session whose Session Expiry Interval is not 0: its record (expiry, subscriptions,
//!   will, user name) whenever one of those changes, written once per turn however often it
//!   changed (`session_changed` marks it; `Journal::take` encodes it); its deletion when
//!   it ends;
//! - its QoS 1/2 messages, queued or in flight ([`Op::PutOutbound`] keyed by a sequence
//!   number that keeps their order), with the message body stored once per batch however
//!   many sessions reference it;
//! - the packet ids of QoS 2 messages its client sent that await PUBREL;
//! - retained messages set and cleared, in the order the loops set them (recorded under the
//!   retained store's lock, in a queue all loops share);
//! - a QoS 1/2 message handed to another loop, until that loop has routed it
//!   ([`Op::PutRoute`], [`Op::DeleteRoute`]): a crash in between would otherwise lose the
//!   message for the other loop's subscribers after the publisher had its PUBACK.
//!
//! QoS 0 messages are never stored ("at most once"), nor is anything of a session that
//! ends with its connection.

pub mod codec;
pub mod record;
pub mod restore;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hashbrown::HashSet;
pub use starling_store::Op;

use crate::core::message::Message;
use crate::core::session::{Inflight, Session};
use codec::{EntryMeta, EntryState, RouteTarget, WallClock};

/// Broker-wide persistence state, in [`crate::core::Shared`].
#[derive(Debug, Default)]
pub struct PersistShared {
    /// Whether anything is recorded at all (`[persistence] mode` is not `off`).
    pub enabled: bool,
    /// The loops' clock against the wall clock.
    pub clock: WallClock,
    /// The next message id to give (ids are never reused for the store's life).
    next_message_id: AtomicU64,
    /// The next outbound sequence number (one counter for all loops: restored sessions
    /// keep theirs, new entries come after every one of them).
    next_seq: AtomicU64,
    /// Retained messages set and cleared, in the order the loops did it.
    retained_ops: Mutex<Vec<Op>>,
    /// Whether the store's last write failed: QoS 1/2 PUBLISHes are refused meanwhile
    /// (nothing is acknowledged that could not be stored).
    degraded: AtomicBool,
}

impl PersistShared {
    /// Recording on, with the clock and the first free message id and sequence number.
    pub fn enabled(clock: WallClock, first_message_id: u64, first_seq: u64) -> PersistShared {
        PersistShared {
            enabled: true,
            clock,
            next_message_id: AtomicU64::new(first_message_id.max(1)),
            next_seq: AtomicU64::new(first_seq.max(1)),
            retained_ops: Mutex::new(Vec::new()),
            degraded: AtomicBool::new(false),
        }
    }

    /// Whether the store's last write failed.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// The driver's word on the store's last write.
    pub fn set_degraded(&self, degraded: bool) {
        self.degraded.store(degraded, Ordering::Release);
    }

    /// The message's store id, given now if it has none.
    pub fn message_id(&self, message: &Message) -> u64 {
        message
            .persist_id
            .get_or_set(|| self.next_message_id.fetch_add(1, Ordering::Relaxed))
    }

    fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a retained message set (`Some`) or cleared. Called under the retained
    /// store's lock, so the order here is the order the store saw. The broker's own `$SYS` topics are not stored: they are published again every
    /// round.
    /// Returns whether it was recorded.
    pub fn retained(&self, topic: &str, message: Option<&Message>) -> bool {
        if !self.enabled || topic.starts_with('$') {
            return false;
        }
        let op = match message {
            Some(message) => {
                let mut body = Vec::new();
                codec::encode_message(message, self.clock, &mut body);
                Op::PutRetained {
                    topic: topic.into(),
                    body,
                }
            }
            None => Op::DeleteRetained {
                topic: topic.into(),
            },
        };
        if let Ok(mut ops) = self.retained_ops.lock() {
            ops.push(op);
        }
        true
    }

    /// Moves the retained ops recorded so far into `into` (the driver queues them with a
    /// loop's batch).
    pub fn take_retained(&self, into: &mut Vec<Op>) {
        if let Ok(mut ops) = self.retained_ops.lock() {
            into.append(&mut ops);
        }
    }
}

/// One loop's record of this turn's changes.
#[derive(Debug, Default)]
pub struct Journal {
    /// Whether anything is recorded (a copy of [`PersistShared::enabled`]).
    enabled: bool,
    /// Ops in the order they happened.
    ops: Vec<Op>,
    /// Sessions whose record changed since the last [`Journal::take`].
    dirty: Vec<u32>,
    /// Message ids whose body is in `ops` already.
    bodies: HashSet<u64>,
    /// Whether this loop recorded a retained change since the last take.
    retained: bool,
    /// Whether something recorded since the last take is promised by this turn's output
    /// (see [`Journal::needs_commit`]).
    urgent: bool,
}

impl Journal {
    /// A journal that records if `enabled`.
    pub fn new(enabled: bool) -> Journal {
        Journal {
            enabled,
            ..Journal::default()
        }
    }

    /// Whether anything is recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether this turn changed anything the store must hear of.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.dirty.is_empty() && !self.retained
    }

    /// Whether this turn's output promises something it recorded, so the commit must come
    /// before the output (`sync` mode). Not so when all it recorded is an entry done (a
    /// message acknowledged, dropped or expired: lost, the message is only sent again), a
    /// QoS 1 message moving from the queue into the window (lost, it is sent again from
    /// the queue, as QoS 1 allows), or a hand-over routed (its entries, if any, are urgent
    /// themselves). Those are committed with the next commit, or within
    /// `LAZY_COMMIT_INTERVAL_MS` by the driver.
    pub fn needs_commit(&self) -> bool {
        self.urgent || self.retained || !self.dirty.is_empty()
    }

    /// The session's record changed (CONNECT, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT, going
    /// offline): it is written at the end of the turn, if the session is durable.
    pub fn session_changed(&mut self, session_id: u32, session: &mut Session) {
        if !self.enabled || (session.expiry_secs == 0 && !session.persisted) {
            return;
        }
        if !std::mem::replace(&mut session.persist_dirty, true) {
            self.dirty.push(session_id);
        }
    }

    /// The session ended: it leaves the store with everything it held (also when its
    /// record was never written: entries recorded this turn must not outlive it and be
    /// taken for a later session's of the same client id).
    pub fn session_ended(&mut self, session: &Session) {
        if self.enabled && (session.persisted || session.expiry_secs > 0) {
            self.urgent = true;
            self.ops.push(Op::DeleteSession {
                client_id: session.client_id.clone(),
            });
        }
    }

    /// Whether the session's messages are stored.
    fn durable(&self, session: &Session) -> bool {
        self.enabled && session.expiry_secs > 0
    }

    /// The message the session just queued (the back of its queue), if it is QoS 1/2.
    pub fn queued_last(&mut self, shared: &PersistShared, session_id: u32, session: &mut Session) {
        if !self.durable(session) {
            return;
        }
        let Some(queued) = session.traffic_mut().queue.back_mut() else {
            return;
        };
        if queued.qos == crate::protocol::QoS::AtMostOnce {
            return;
        }
        queued.seq = shared.next_seq();
        let meta = EntryMeta {
            qos: queued.qos,
            retain: queued.retain,
            state: EntryState::Queued,
            sub_ids: queued.sub_ids.clone(),
        };
        let (seq, message) = (queued.seq, queued.message.clone());
        self.put_entry(shared, session_id, session, seq, &message, &meta);
    }

    /// The message the session just sent in flight (the back of its window), or one whose
    /// state moved (at `at`).
    pub fn inflight_at(
        &mut self,
        shared: &PersistShared,
        session_id: u32,
        session: &mut Session,
        at: usize,
    ) {
        if !self.durable(session) {
            return;
        }
        let Some(inflight) = session.traffic_mut().inflight.get_mut(at) else {
            return;
        };
        // A QoS 1 message already stored as queued moving into the window need not be
        // durable before it is sent (see `needs_commit`); anything else must.
        let moved_qos1 = inflight.seq != 0 && inflight.qos == crate::protocol::QoS::AtLeastOnce;
        if inflight.seq == 0 {
            inflight.seq = shared.next_seq();
        }
        let meta = inflight_meta(inflight);
        let (seq, message) = (inflight.seq, inflight.message.clone());
        let urgent = std::mem::replace(&mut self.urgent, false);
        self.put_entry(shared, session_id, session, seq, &message, &meta);
        self.urgent = urgent || !moved_qos1 || !session.persisted;
    }

    fn put_entry(
        &mut self,
        shared: &PersistShared,
        session_id: u32,
        session: &mut Session,
        seq: u64,
        message: &Message,
        meta: &EntryMeta,
    ) {
        if !session.persisted {
            self.session_changed(session_id, session);
        }
        self.urgent = true;
        let id = self.body(shared, message);
        let mut encoded = Vec::new();
        codec::encode_entry(meta, &mut encoded);
        self.ops.push(Op::PutOutbound {
            client_id: session.client_id.clone(),
            seq,
            message: id,
            meta: encoded,
        });
    }

    /// The body of `message` in this batch (once), and its id.
    fn body(&mut self, shared: &PersistShared, message: &Message) -> u64 {
        let id = shared.message_id(message);
        if self.bodies.insert(id) {
            let mut body = Vec::new();
            codec::encode_message(message, shared.clock, &mut body);
            self.ops.push(Op::PutMessage { id, body });
        }
        id
    }

    /// The session's outbound entry `seq` is done (acknowledged, expired, dropped).
    pub fn entry_done(&mut self, session: &Session, seq: u64) {
        if self.enabled && seq != 0 {
            self.ops.push(Op::DeleteOutbound {
                client_id: session.client_id.clone(),
                seq,
            });
        }
    }

    /// A QoS 2 packet id from the session's client awaits PUBREL (`awaiting`) or no longer.
    pub fn inbound(&mut self, session: &Session, packet_id: u16, awaiting: bool) {
        if !self.durable(session) {
            return;
        }
        let client_id = session.client_id.clone();
        self.urgent = true;
        self.ops.push(if awaiting {
            Op::PutInbound {
                client_id,
                packet_id,
            }
        } else {
            Op::DeleteInbound {
                client_id,
                packet_id,
            }
        });
    }

    /// A QoS 1/2 message is handed to another loop (`ticket`, see [`ticket`]) for
    /// `target`.
    pub fn forwarded(
        &mut self,
        shared: &PersistShared,
        message: &Message,
        ticket: u32,
        target: &RouteTarget,
    ) {
        if !self.enabled || message.qos == crate::protocol::QoS::AtMostOnce {
            return;
        }
        self.urgent = true;
        let id = self.body(shared, message);
        let mut record = Vec::new();
        codec::encode_route(target, &mut record);
        self.ops.push(Op::PutRoute {
            message: id,
            ticket,
            record,
        });
    }

    /// A message handed over by another loop (`ticket`) has been routed here.
    pub fn routed(&mut self, message: &Message, ticket: u32) {
        let id = message.persist_id.get();
        if self.enabled && id != 0 && message.qos != crate::protocol::QoS::AtMostOnce {
            self.ops.push(Op::DeleteRoute {
                message: id,
                ticket,
            });
        }
    }

    /// Moves this turn's ops into `into`: the ops in order, then the records of the
    /// sessions that changed. (Retained ops are queued by the driver from
    /// [`PersistShared::take_retained`].) Returns whether the turn recorded anything,
    /// a retained change included.
    pub(crate) fn take(
        &mut self,
        mut session_record: impl FnMut(u32) -> Option<(Box<str>, Vec<u8>)>,
        into: &mut Vec<Op>,
    ) -> bool {
        if !self.enabled {
            return false;
        }
        let recorded = !self.is_empty();
        // A record is written after the ops that came before it in the turn: a session
        // ended and begun again under the same client id is deleted, then written.
        into.append(&mut self.ops);
        for session_id in self.dirty.drain(..) {
            if let Some((client_id, record)) = session_record(session_id) {
                into.push(Op::PutSession { client_id, record });
            }
        }
        self.bodies.clear();
        self.retained = false;
        self.urgent = false;
        recorded
    }

    /// This loop set or cleared a retained message (recorded in the shared queue): its
    /// acknowledgement waits for the store as any other.
    pub fn retained_changed(&mut self, recorded: bool) {
        self.retained |= recorded;
    }
}

/// An in-flight message's stored fields.
fn inflight_meta(inflight: &Inflight) -> EntryMeta {
    EntryMeta {
        qos: inflight.qos,
        retain: false,
        state: EntryState::Inflight {
            packet_id: inflight.packet_id,
            state: inflight.state,
        },
        sub_ids: inflight.sub_ids.clone(),
    }
}

/// The route ticket of a hand-over to loop `to`: its plain subscribers (`group` `None`:
/// the loop's index), or one member of a shared group (the top bit, the loop and the
/// group). Unique per message: a message goes to a loop's plain subscribers once, and to
/// one member per group on each loop it is handed to.
pub fn ticket(to: usize, group: Option<u32>) -> u32 {
    const LOOP_BITS: u32 = 11;
    const GROUP_BITS: u32 = 20;
    let to = to as u32 & ((1 << LOOP_BITS) - 1);
    match group {
        None => to,
        Some(group) => (1 << 31) | (to << GROUP_BITS) | (group & ((1 << GROUP_BITS) - 1)),
    }
}
