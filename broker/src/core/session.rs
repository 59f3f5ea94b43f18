//! Sessions: what outlives a connection (MQTT 3.1.1 §3.1.2.4): subscriptions, QoS 1/2
//! messages in flight toward the client, packet ids of QoS 2 messages received but not yet
//! released, and messages queued while the client is offline or its window is full.
//!
//! Sessions live in a slab; the subscription index names them by slab index (`u32`), and a
//! hash table finds them by client id without storing the id twice.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use slab::Slab;
use starling_pool::Key;

use crate::core::conn::PendingWill;
use crate::core::directory::Directory;
use crate::core::groups::Presence;
use crate::core::message::SharedMessage;
use crate::core::retained_stream::Streams;
use crate::core::subscription::SubIds;
use crate::core::subscriptions::Subscriptions;
use crate::protocol::QoS;
use std::sync::Arc;

/// Where an outgoing QoS 1/2 message is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// QoS 1 PUBLISH sent, PUBACK awaited.
    AwaitPubAck,
    /// QoS 2 PUBLISH sent, PUBREC awaited.
    AwaitPubRec,
    /// PUBREL sent, PUBCOMP awaited.
    AwaitPubComp,
}

/// One outgoing QoS 1/2 message in flight.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// The packet id it was sent with.
    pub packet_id: u16,
    /// The delivery QoS (1 or 2).
    pub qos: QoS,
    /// Where it is in its flow.
    pub state: InflightState,
    /// The message, kept for redelivery.
    pub message: SharedMessage,
    /// The Subscription Identifiers it is delivered with (MQTT 5).
    pub sub_ids: SubIds,
    /// The shared-subscription group it was given to this session by, if any (handed to
    /// another member if this session ends first).
    pub group: Option<u32>,
    /// Its outbound entry in the store (0: not stored; `core::persist`).
    pub seq: u64,
}

/// One message waiting to be sent.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The delivery QoS.
    pub qos: QoS,
    /// Whether to send it with RETAIN set (retained messages sent on subscribe).
    pub retain: bool,
    /// The message.
    pub message: SharedMessage,
    /// The Subscription Identifiers it is delivered with (MQTT 5).
    pub sub_ids: SubIds,
    /// The shared-subscription group it was given to this session by, if any.
    pub group: Option<u32>,
    /// Its outbound entry in the store (0: not stored; `core::persist`).
    pub seq: u64,
}

impl Queued {
    /// What the message counts against `max_queued_bytes`: its topic and payload.
    pub fn bytes(&self) -> usize {
        self.message.topic.len() + self.message.payload.len()
    }
}

/// The message traffic of a session: allocated on its first QoS 1/2 message or queued
/// message, so an idle session that only ever saw QoS 0 pays 8 bytes for it, not 80.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Outgoing QoS 1/2 messages awaiting acknowledgement, oldest first.
    pub inflight: Vec<Inflight>,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub awaiting_rel: Vec<u16>,
    /// Messages waiting for the client, oldest first. Change it only through
    /// [`Traffic::push_queued`], [`Traffic::pop_queued`] and [`Traffic::drop_queued_qos0`],
    /// which keep the counts below.
    pub queue: VecDeque<Queued>,
    /// Topic and payload bytes of the messages in `queue`.
    // Invariant: the sum of `Queued::bytes` over `queue`.
    pub queued_bytes: usize,
    /// QoS 0 messages in `queue`, so a full queue of QoS 1/2 messages is not scanned for one
    /// on every new message.
    // Invariant: the number of entries of `queue` with QoS 0.
    pub queued_qos0: usize,
    /// What few sessions need (kept here so a session without traffic pays nothing for it).
    pub extras: SessionExtras,
}

impl Traffic {
    /// Appends a message to the queue.
    pub fn push_queued(&mut self, queued: Queued) {
        self.queued_bytes += queued.bytes();
        self.queued_qos0 += usize::from(queued.qos == QoS::AtMostOnce);
        self.queue.push_back(queued);
    }

    /// Takes the oldest queued message.
    pub fn pop_queued(&mut self) -> Option<Queued> {
        let queued = self.queue.pop_front()?;
        self.forget(&queued);
        Some(queued)
    }

    /// Drops the oldest queued QoS 0 message, if there is one.
    pub fn drop_queued_qos0(&mut self) -> Option<Queued> {
        if self.queued_qos0 == 0 {
            return None;
        }
        let at = self.queue.iter().position(|q| q.qos == QoS::AtMostOnce)?;
        let queued = self.queue.remove(at)?;
        self.forget(&queued);
        Some(queued)
    }

    fn forget(&mut self, queued: &Queued) {
        self.queued_bytes -= queued.bytes();
        self.queued_qos0 -= usize::from(queued.qos == QoS::AtMostOnce);
        debug_assert_eq!(
            self.queued_qos0 == 0,
            self.queue.iter().all(|q| q.qos != QoS::AtMostOnce)
        );
    }
}

/// What a session without traffic reads as.
static NO_TRAFFIC: Traffic = Traffic {
    inflight: Vec::new(),
    awaiting_rel: Vec::new(),
    queue: VecDeque::new(),
    queued_bytes: 0,
    queued_qos0: 0,
    extras: SessionExtras {
        delayed_will: None,
        expiry_due_ms: 0,
        presence: None,
        retained: None,
        access: None,
    },
};

/// The rarely used parts of a session, allocated with its traffic when first needed.
#[derive(Debug, Default)]
pub struct SessionExtras {
    /// A will waiting out its Will Delay Interval while the client is away (MQTT 5).
    pub delayed_will: Option<PendingWill>,
    /// When the offline session expires, in loop ms (0: online, or never).
    pub expiry_due_ms: u64,
    /// The session's load and presence as the members of its shared subscriptions'
    /// groups see it (set once the session joins a group).
    pub presence: Option<Arc<Presence>>,
    /// The retained messages its subscriptions are still owed (`core::retained_stream`).
    pub retained: Option<Box<Streams>>,
    /// Who the session authenticated as and its last access verdicts (`core::access`).
    pub access: Option<Box<crate::core::access::SessionAccess>>,
}

/// One client's session.
#[derive(Debug)]
pub struct Session {
    /// The client identifier.
    pub client_id: Box<str>,
    /// The connection bound to it, if the client is online.
    pub conn: Option<Key>,
    /// Session Expiry Interval in seconds: 0 ends the session with its connection (3.1.1
    /// clean session 1), `u32::MAX` never expires (3.1.1 clean session 0).
    pub expiry_secs: u32,
    /// The last packet id used toward the client.
    pub last_packet_id: u16,
    /// Its subscriptions (filter, options), mirrored in the loop's index.
    pub subscriptions: Subscriptions,
    /// Whether a dropped message was logged for this session already (drops are counted
    /// every time, logged once).
    pub drop_logged: bool,
    /// Whether the session is on its loop's list of congested sessions (`core::flow`).
    pub congested: bool,
    /// Whether its overflowing (too slow for its publishers, `core::flow`) was logged.
    pub overflow_logged: bool,
    /// The listener its client connected through (whose access policy applies).
    pub listener: u8,
    /// Whether a subscription of it needs each delivered topic checked against the ACL
    /// (`core::access`).
    pub acl_checked: bool,
    /// Whether its record is in the store (`core::persist`).
    pub persisted: bool,
    /// Whether its record changed since the store last heard of it.
    pub persist_dirty: bool,
    traffic: Option<Box<Traffic>>,
}

impl Session {
    fn new(client_id: Box<str>, expiry_secs: u32) -> Session {
        Session {
            client_id,
            conn: None,
            expiry_secs,
            last_packet_id: 0,
            subscriptions: Subscriptions::default(),
            drop_logged: false,
            congested: false,
            overflow_logged: false,
            listener: 0,
            acl_checked: false,
            persisted: false,
            persist_dirty: false,
            traffic: None,
        }
    }

    /// The session's extras, if its traffic was ever allocated.
    pub fn extras(&self) -> Option<&SessionExtras> {
        self.traffic.as_deref().map(|t| &t.extras)
    }

    /// The session's extras, mutably, if its traffic was ever allocated.
    pub fn extras_if_any(&mut self) -> Option<&mut SessionExtras> {
        self.traffic.as_deref_mut().map(|t| &mut t.extras)
    }

    /// The session's extras, allocated on first use (with its traffic).
    pub fn extras_mut(&mut self) -> &mut SessionExtras {
        &mut self.traffic_mut().extras
    }

    /// Messages in flight or queued toward the client (what a shared-subscription group
    /// balances on).
    pub fn load(&self) -> usize {
        self.traffic().inflight.len() + self.traffic().queue.len()
    }

    /// The session's traffic (empty if it never had any).
    pub fn traffic(&self) -> &Traffic {
        self.traffic.as_deref().unwrap_or(&NO_TRAFFIC)
    }

    /// Takes the session's traffic out (what an ended session still held).
    pub fn take_traffic(&mut self) -> Traffic {
        self.traffic.take().map(|t| *t).unwrap_or_default()
    }

    /// The session's traffic, allocated on first use.
    pub fn traffic_mut(&mut self) -> &mut Traffic {
        self.traffic.get_or_insert_with(Box::default)
    }

    /// Bytes of variable-size state the session holds beside its slab slot (client id,
    /// subscriptions, traffic and what it queues): what ending it gives back to the
    /// allocator (an estimate: shared messages are counted whole, allocator overhead left
    /// out).
    pub fn pinned_bytes(&self) -> usize {
        let filters: usize = self
            .subscriptions
            .iter()
            .map(|(filter, _)| {
                filter.len() + std::mem::size_of::<(Box<str>, crate::core::subscription::SubOpts)>()
            })
            .sum();
        let traffic = self
            .traffic
            .as_deref()
            .map_or(0, |t| std::mem::size_of::<Traffic>() + t.queued_bytes);
        self.client_id.len() + filters + traffic
    }

    /// When the offline session expires (0: online, or never).
    pub fn expiry_due_ms(&self) -> u64 {
        self.extras().map_or(0, |e| e.expiry_due_ms)
    }

    /// Whether the session ends when its connection does.
    pub fn ends_with_connection(&self) -> bool {
        self.expiry_secs == 0
    }

    /// The next packet id not in flight (1..=65535, wrapping), or `None` if all are.
    pub fn next_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.last_packet_id = self.last_packet_id.checked_add(1).unwrap_or(1);
            let id = self.last_packet_id;
            if !self.traffic().inflight.iter().any(|m| m.packet_id == id) {
                return Some(id);
            }
        }
        None
    }
}

/// The session slab and id table give their capacity back when it is at least this many
/// times what they hold (after a spike of clients has gone).
pub const SHRINK_WHEN_CAPACITY_OVER_LEN: usize = 4;

/// All sessions of one event loop.
pub struct Sessions {
    slab: Slab<Session>,
    /// The table that says which loop holds each client id, and this loop's index in it.
    directory: Arc<Directory>,
    loop_index: usize,
    by_client_id: HashTable<u32>,
    hasher: RandomState,
    /// The session count at the last [`Sessions::shrink_if_sparse`] that found them sparse
    /// (so a slab pinned by one high session is not rescanned until the count changes).
    shrunk_at_len: Option<usize>,
}

impl Sessions {
    /// The sessions of loop `loop_index`, entered in `directory` as they come and go.
    pub fn new(directory: Arc<Directory>, loop_index: usize) -> Self {
        Sessions {
            slab: Slab::new(),
            directory,
            loop_index,
            by_client_id: HashTable::new(),
            hasher: RandomState::new(),
            shrunk_at_len: None,
        }
    }

    /// The session of `client_id`, if any.
    pub fn find(&self, client_id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(client_id);
        self.by_client_id
            .find(hash, |&id| &*self.slab[id as usize].client_id == client_id)
            .copied()
    }

    /// Creates a session for a client id that has none.
    pub fn create(&mut self, client_id: Box<str>, expiry_secs: u32) -> u32 {
        debug_assert!(self.find(&client_id).is_none(), "one session per client id");
        let hash = self.hasher.hash_one(&*client_id);
        let id = self.slab.insert(Session::new(client_id, expiry_secs)) as u32;
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.by_client_id.insert_unique(hash, id, |&other| {
            hasher.hash_one(&*slab[other as usize].client_id)
        });
        self.directory
            .session_created(&self.slab[id as usize].client_id, self.loop_index);
        id
    }

    /// Removes a session and returns it.
    pub fn remove(&mut self, id: u32) -> Session {
        let hash = self.hasher.hash_one(&*self.slab[id as usize].client_id);
        if let Ok(entry) = self.by_client_id.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        let session = self.slab.remove(id as usize);
        self.directory
            .session_ended(&session.client_id, self.loop_index);
        session
    }

    /// The session with index `id`.
    pub fn get(&self, id: u32) -> Option<&Session> {
        self.slab.get(id as usize)
    }

    /// The session with index `id`, mutably.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut Session> {
        self.slab.get_mut(id as usize)
    }

    /// Number of sessions, online and offline.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every session's index, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.slab.iter().map(|(id, _)| id as u32)
    }

    /// Every session, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.slab.iter().map(|(_, session)| session)
    }

    /// Gives back the capacity of the slab and the id table when they are mostly empty
    /// (at least [`SHRINK_WHEN_CAPACITY_OVER_LEN`] × what they hold). Session indices are
    /// held by the subscription index and connections, so the slab only frees its vacant
    /// tail (down to the highest live session); the id table is rebuilt at its size.
    /// O(capacity), and only when the count changed since the last sparse check. Returns
    /// the bytes of capacity given back.
    pub fn shrink_if_sparse(&mut self) -> usize {
        let len = self.slab.len();
        let sparse = |capacity: usize| capacity >= SHRINK_WHEN_CAPACITY_OVER_LEN * len.max(1);
        if !sparse(self.slab.capacity()) && !sparse(self.by_client_id.capacity()) {
            return 0;
        }
        if self.shrunk_at_len == Some(len) {
            return 0;
        }
        self.shrunk_at_len = Some(len);
        let before = self.capacity();
        self.slab.shrink_to_fit();
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.by_client_id
            .shrink_to_fit(|&id| hasher.hash_one(&*slab[id as usize].client_id));
        let after = self.capacity();
        (before.0 - after.0) * std::mem::size_of::<Session>()
            + (before.1 - after.1) * std::mem::size_of::<u32>()
    }

    /// Slots the slab and the id table have room for (for memory tests).
    pub fn capacity(&self) -> (usize, usize) {
        (self.slab.capacity(), self.by_client_id.capacity())
    }
}
