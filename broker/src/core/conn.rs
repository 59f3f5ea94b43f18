//! The pooled per-connection object.
//!
//! What it holds is connection-lifetime state only; what must outlive the socket (the
//! session: subscriptions, queues, in-flight messages) lives in [`super::session`].
//!
//! The bump arena is per-packet scratch: a handler that needs temporary lists (a SUBSCRIBE's
//! return codes, say) allocates them there, and the arena is `reset()` after the packet,
//! keeping its chunk for the packets that follow in the same burst. When the connection goes
//! idle (nothing buffered either way) the chunk is freed ([`Conn::settle`]): bumpalo's
//! smallest chunk is 512 bytes, and a per-connection arena that stayed allocated would be
//! most of what an idle connection costs. The buffers are lent by the loop's
//! [`super::buffers::BufferPool`] only while bytes are pending, for the same reason. So a
//! preheated object owns an (empty) arena and no buffers, and acquiring it allocates nothing.

use bumpalo::Bump;
use starling_pool::Poolable;

use crate::core::message::MessageProps;
use crate::protocol::v5::UNLIMITED_PACKET_SIZE_BYTES;
use crate::protocol::{ProtocolVersion, Will};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; its first packet must be a CONNECT within the connect timeout.
    AwaitingConnect,
    /// MQTT 5 CONNECT received, enhanced authentication in progress (AUTH packets only,
    /// still within the connect timeout).
    Authenticating,
    /// CONNECT received, its password being verified off the loop (`core::credentials`):
    /// not read, what came after the CONNECT kept in its input; the connect timeout runs.
    Verifying,
    /// CONNECT accepted; bound to a session.
    Connected,
    /// The core decided to close it (or hand it over); waiting for the driver to confirm.
    Closing,
}

/// A will message with what MQTT 5 adds to it: properties, its Message Expiry Interval
/// (counted from when it is published) and the Will Delay Interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWill {
    /// Topic, payload, QoS, RETAIN.
    pub will: Will,
    /// The will properties that travel with the message.
    pub props: Option<Box<MessageProps>>,
    /// Message Expiry Interval in seconds, counted from publication.
    pub expiry_secs: Option<u32>,
    /// Will Delay Interval in seconds (0: published when the connection ends).
    pub delay_secs: u32,
    /// When a delayed will is due, in loop ms (0 while the connection lives).
    pub due_ms: u64,
}

/// What only an MQTT 5 connection needs (boxed: 3.1.1 connections pay one pointer).
#[derive(Debug)]
pub struct ConnV5 {
    /// The client's Receive Maximum: QoS 1/2 messages we may have in flight toward it.
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size (a larger message is not sent to it, MQTT-3.1.2-25).
    pub max_packet_size_bytes: usize,
    /// Topic aliases the client set on this connection: (alias, topic), one entry per
    /// alias in use, so memory follows the aliases used, not the maximum allowed (at most
    /// `topic_alias_maximum` entries of at most `max_topic_length_bytes` each, and at most
    /// `max_topic_alias_bytes` of topics in all).
    pub topic_aliases: Vec<(u16, Box<str>)>,
    /// Topic bytes of `topic_aliases`, counting an entry taken out while its PUBLISH is
    /// handled.
    // Invariant: the sum of the topics' lengths whenever no PUBLISH is being handled.
    pub topic_alias_bytes: usize,
    /// Request Problem Information: whether Reason Strings may be sent (MQTT-3.1.2-29).
    pub problem_information: bool,
    /// The Topic Aliases the broker uses toward the client (within its Topic Alias
    /// Maximum).
    pub out_aliases: crate::core::outbound::OutAliases,
    /// Enhanced authentication, if the CONNECT named a method.
    pub(crate) auth: Option<Box<crate::core::handlers::auth::AuthState>>,
}

impl Default for ConnV5 {
    fn default() -> Self {
        ConnV5 {
            receive_maximum: u16::MAX,
            max_packet_size_bytes: UNLIMITED_PACKET_SIZE_BYTES,
            topic_aliases: Vec::new(),
            topic_alias_bytes: 0,
            problem_information: true,
            out_aliases: Default::default(),
            auth: None,
        }
    }
}

/// One connection's state.
pub struct Conn {
    /// Where the connection is in its life.
    pub phase: Phase,
    /// The protocol revision, known after CONNECT.
    pub version: ProtocolVersion,
    /// The session index, valid while `Connected`.
    pub session: u32,
    /// Keep-alive timeout in ms (1.5 × the interval), 0 when off.
    pub keep_alive_timeout_ms: u32,
    /// When the connection was accepted, or last sent a packet, in loop ms.
    pub last_seen_ms: u64,
    /// Bytes of a partial packet (lent buffer, or empty with no capacity when idle).
    pub input: Vec<u8>,
    /// Encoded packets the socket has not taken yet (lent buffer, or empty when idle).
    pub output: Vec<u8>,
    /// The will to publish if the connection ends without DISCONNECT.
    pub will: Option<Box<PendingWill>>,
    /// MQTT 5 state, for v5 connections.
    pub v5: Option<Box<ConnV5>>,
    /// Why the connection may not be read now (flow-control holds, publish rate limits);
    /// allocated on the first hold or rate-limited PUBLISH.
    pub gate: Option<Box<crate::core::gate::Gate>>,
    /// Whether the connection holds a slot of the global connection count.
    pub counted: bool,
    /// Whether the connection is on the loop's list of connections with new output.
    pub dirty: bool,
    /// Whether a refusal (a subscription over a limit) was logged for this connection
    /// already: refusals are counted every time but logged once per client.
    pub refusal_logged: bool,
    /// The listener that accepted it (whose access policy applies).
    pub listener: u8,
    /// The deadline this connection is filed under in the timer wheel (0: not filed).
    pub timer_due_ms: u64,
    /// Per-packet scratch.
    pub arena: Bump,
}

impl Conn {
    /// A fresh object: an empty arena, no buffers.
    pub fn new() -> Conn {
        Conn {
            phase: Phase::AwaitingConnect,
            version: ProtocolVersion::V311,
            session: u32::MAX,
            keep_alive_timeout_ms: 0,
            last_seen_ms: 0,
            input: Vec::new(),
            output: Vec::new(),
            will: None,
            v5: None,
            gate: None,
            dirty: false,
            counted: false,
            refusal_logged: false,
            listener: 0,
            timer_due_ms: 0,
            arena: Bump::new(),
        }
    }

    /// The client's Maximum Packet Size (unlimited for 3.x).
    pub fn peer_max_packet_size_bytes(&self) -> usize {
        self.v5
            .as_ref()
            .map_or(UNLIMITED_PACKET_SIZE_BYTES, |v| v.max_packet_size_bytes)
    }

    /// Bytes of variable-size state the connection holds beside its pooled object (the
    /// topics of both Topic Alias tables, the will's topic and payload): what closing it
    /// gives back to the allocator (an estimate: allocator overhead left out).
    pub fn pinned_bytes(&self) -> usize {
        let v5 = self
            .v5
            .as_ref()
            .map_or(0, |v| v.topic_alias_bytes + v.out_aliases.bytes());
        let will = self
            .will
            .as_ref()
            .map_or(0, |w| w.will.topic.len() + w.will.payload.len());
        v5 + will
    }

    /// Whether nothing is buffered in either direction.
    pub fn is_idle(&self) -> bool {
        self.input.is_empty() && self.output.is_empty()
    }

    /// Frees the arena's chunk if the connection is idle (see the module docs).
    pub fn settle(&mut self) {
        if self.is_idle() && self.arena.allocated_bytes() > 0 {
            self.arena = Bump::new();
        }
    }
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
}

impl Poolable for Conn {
    fn reset(&mut self) {
        // Invariant: the core returns lent buffers to the loop before releasing the object.
        debug_assert_eq!(self.input.capacity(), 0, "input buffer not returned");
        debug_assert_eq!(self.output.capacity(), 0, "output buffer not returned");
        self.phase = Phase::AwaitingConnect;
        self.session = u32::MAX;
        self.keep_alive_timeout_ms = 0;
        self.will = None;
        self.v5 = None;
        self.gate = None;
        self.dirty = false;
        self.counted = false;
        self.refusal_logged = false;
        self.timer_due_ms = 0;
        // A pooled object keeps no arena chunk (so no object is ever too big to pool): an
        // idle connection frees it anyway (`settle`), and one closed mid-burst (a burst of
        // huge SUBSCRIBEs cut short) would otherwise keep it for as long as it is pooled.
        if self.arena.allocated_bytes() > 0 {
            self.arena = Bump::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_object_keeps_no_arena_chunk_and_no_mqtt5_state() {
        let mut conn = Conn::new();
        conn.output = vec![0; 8]; // pending output: `settle` keeps the arena
        let _scratch = conn.arena.alloc_slice_fill_copy(10_000, 0u8);
        let mut v5 = Box::new(ConnV5::default());
        v5.topic_aliases.push((1, "a/b".into()));
        v5.topic_alias_bytes = 3;
        conn.v5 = Some(v5);
        assert_eq!(conn.pinned_bytes(), 3);
        conn.settle();
        assert!(conn.arena.allocated_bytes() >= 10_000);
        conn.output = Vec::new();
        conn.reset();
        assert_eq!(conn.arena.allocated_bytes(), 0);
        assert!(conn.v5.is_none());
        assert_eq!(conn.pinned_bytes(), 0);
    }
}
