//! The pooled per-connection object.
//!
//! What it holds is connection-lifetime state only; what must outlive the socket (the
//! session: subscriptions, queues, in-flight messages) lives in [`super::session`].
//!
//! The bump arena is per-packet scratch: a handler that needs temporary lists (a SUBSCRIBE's
//! return codes, say) allocates them there, and the arena is `reset()` after every packet,
//! keeping its chunk, so steady traffic allocates nothing from the global allocator. The
//! buffers are lent by the loop's [`super::buffers::BufferPool`] only while bytes are
//! pending, so an idle connection holds none.

use bumpalo::Bump;
use starling_pool::Poolable;

use crate::protocol::{ProtocolVersion, Will};

/// An arena that grew past this many times its configured capacity (a burst of huge
/// SUBSCRIBEs) makes its connection object unhealthy: the pool drops it instead of keeping
/// the memory.
pub const ARENA_UNHEALTHY_FACTOR: usize = 16;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; its first packet must be a CONNECT within the connect timeout.
    AwaitingConnect,
    /// CONNECT accepted; bound to a session.
    Connected,
    /// The core decided to close it (or hand it over); waiting for the driver to confirm.
    Closing,
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
    pub keep_alive_timeout_ms: u64,
    /// When the connection was accepted, or last sent a packet, in loop ms.
    pub last_seen_ms: u64,
    /// Bytes of a partial packet (lent buffer, or empty with no capacity when idle).
    pub input: Vec<u8>,
    /// Encoded packets the socket has not taken yet (lent buffer, or empty when idle).
    pub output: Vec<u8>,
    /// The will to publish if the connection ends without DISCONNECT.
    pub will: Option<Box<Will>>,
    /// Whether the connection holds a slot of the global connection count.
    pub counted: bool,
    /// Whether the connection is on the loop's list of connections with new output.
    pub dirty: bool,
    /// The deadline this connection is filed under in the timer wheel (0: not filed).
    pub timer_due_ms: u64,
    /// Per-packet scratch.
    pub arena: Bump,
    arena_bytes: usize,
}

impl Conn {
    /// A fresh object whose arena already holds its first chunk.
    pub fn new(arena_bytes: usize) -> Conn {
        Conn {
            phase: Phase::AwaitingConnect,
            version: ProtocolVersion::V311,
            session: u32::MAX,
            keep_alive_timeout_ms: 0,
            last_seen_ms: 0,
            input: Vec::new(),
            output: Vec::new(),
            will: None,
            dirty: false,
            counted: false,
            timer_due_ms: 0,
            arena: Bump::with_capacity(arena_bytes),
            arena_bytes,
        }
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
        self.dirty = false;
        self.counted = false;
        self.timer_due_ms = 0;
        self.arena.reset();
    }

    fn is_healthy(&self) -> bool {
        self.arena.allocated_bytes() <= self.arena_bytes.max(1) * ARENA_UNHEALTHY_FACTOR
    }
}
