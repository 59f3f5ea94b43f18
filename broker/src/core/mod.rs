//! The sans-IO core: one [`Shard`] per event loop.
//!
//! A shard consumes bytes and produces bytes and [`Action`]s; it never touches a socket or a
//! clock. The mio driver (`crate::server`) feeds it what sockets read and writes what it
//! produced; the load harness and the tests drive it the same way with no sockets at all.
//!
//! - [`config`]: the limits ([`CoreConfig`]).
//! - [`conn`]: the pooled per-connection object ([`conn::Conn`]: phase, keep-alive, lent
//!   buffers, will, per-packet arena).
//! - [`session`]: sessions (subscriptions, in-flight and queued messages) by client id.
//! - [`directory`]: which loop holds each client id's session (shared by the loops).
//! - [`input`]: framing the byte stream and dispatching one handler per packet type
//!   (`handlers/`).
//! - [`delivery`]: sending a message to one session at its QoS: direct encode, in-flight
//!   window, bounded queue, redelivery.
//! - [`flow`]: holding publishers back while a subscriber's queue is filling.
//! - [`routing`]: a PUBLISH to every matching session, the retained store, other loops.
//! - [`retained_stream`]: the retained messages owed since a SUBSCRIBE, sent as the
//!   subscriber takes them.
//! - [`lifecycle`]: closing connections, wills, ending sessions, timers.
//! - [`outbound`]: one version-aware writer per packet kind (3.1.1 or MQTT 5 encoders), and
//!   the Topic Aliases the broker uses toward v5 clients.
//! - [`groups`]: shared subscriptions, one registry for all loops.
//! - [`subscription`]: a subscription's options ([`subscription::SubOpts`], 32 bits) and the
//!   Subscription Identifiers of a delivery; [`subscriptions`]: a session's own list of
//!   them, a hash table once long.
//! - [`buffers`], [`timers`], [`message`], [`shared`]: the supporting pieces.
//!
//! The handlers are written once, against the MQTT 5 shapes of the packets; a 3.1.1
//! connection is served by the same code with its packets converted (no properties) and a
//! session model where Clean Session means a Session Expiry Interval of 0 or for ever.
//!
//! A client's session lives on the loop that accepted its first CONNECT; the [`directory`]
//! says which loop that is, and a later CONNECT for the same client id that arrives on
//! another loop is handed over there ([`Action::Handover`]), so takeover and session
//! resumption never cross threads.

pub mod buffers;
pub mod config;
pub mod conn;
pub mod delivery;
pub mod directory;
pub mod flow;
pub mod groups;
mod handlers;
pub mod input;
pub mod lifecycle;
pub mod message;
pub mod observe;
pub mod outbound;
pub mod retained_stream;
pub mod routing;
pub mod session;
pub mod shared;
pub mod subscription;
pub mod subscriptions;
pub mod timers;

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use starling_pool::{Key, Pool, PoolStats};

pub use config::CoreConfig;
pub use handlers::auth::{AuthExchange, AuthStep, Authenticator};
pub use message::{Message, SharedMessage};
pub use shared::Shared;

use crate::topic::SubscriptionIndex;
use buffers::{BufferPool, DEFAULT_MAX_FREE_BUFFERS};
use conn::Conn;
use session::Sessions;
use subscription::SubOpts;
use timers::Timers;

/// A connection's handle: the key of its pooled object. Stale once the connection is closed.
pub type ConnId = Key;

/// How often the idle sweep of the connection pool runs.
pub const POOL_SWEEP_INTERVAL_MS: u64 = 1000;
/// A scratch vector larger than this (entries) is freed at the next pool sweep.
pub const SCRATCH_KEEP_ENTRIES: usize = 4096;

/// Something the driver must do for the core.
#[derive(Debug)]
pub enum Action {
    /// Write what [`Shard::output`] still holds for `conn` (best effort), close the socket,
    /// then call [`Shard::closed`].
    Close(ConnId),
    /// Move the socket to loop `to`: there, [`Shard::accept`] it and feed `bytes` (the
    /// CONNECT and anything after it) to [`Shard::receive`]. The handle here is already
    /// released.
    Handover {
        /// The connection on this loop (already stale).
        conn: ConnId,
        /// The loop that holds the client id's session.
        to: usize,
        /// The bytes to replay there.
        bytes: Vec<u8>,
    },
    /// Give `message` to loop `to` ([`Shard::remote`]) and wake it.
    Forward {
        /// The destination loop.
        to: usize,
        /// The message.
        message: SharedMessage,
    },
    /// Give `message` to the one shared-subscription member `pick` chose on loop `to`
    /// ([`Shard::remote_shared`]).
    ForwardShared {
        /// The destination loop.
        to: usize,
        /// The member.
        pick: groups::Pick,
        /// The message.
        message: SharedMessage,
    },
}

/// Counters of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused at the pool's hard limit (no CONNACK possible).
    pub refused_at_pool_limit: u64,
    /// CONNECTs refused with CONNACK 0x03 at the connection limit.
    pub refused_at_max_connections: u64,
    /// CONNECTs refused for a protocol reason.
    pub refused_connect: u64,
    /// Connections handed to another loop.
    pub handed_over: u64,
    /// Connections closed for bad input (malformed, protocol error, too large).
    pub closed_bad_input: u64,
    /// Connections closed by keep-alive or connect timeout.
    pub closed_timeout: u64,
    /// PUBLISH packets received.
    pub publish_received: u64,
    /// PUBLISH packets sent.
    pub publish_sent: u64,
    /// Messages dropped (queue full, or QoS 0 for an offline or slow client).
    pub dropped: u64,
    /// Wills published.
    pub wills_published: u64,
    // Refusals by reason (each also logged once per client). The first two are decided by
    // the driver at accept, before the core sees the connection ([`Shard::record_refusal`]).
    /// Connections closed at accept: the source IP holds `max_connections_per_ip`.
    pub refused_per_ip: u64,
    /// Connections closed at accept: their listener holds its `max_connections`.
    pub refused_listener_max_connections: u64,
    /// Connections closed for announcing a packet over `max_packet_size_bytes` (also in
    /// `closed_bad_input`).
    pub refused_packet_too_large: u64,
    /// Connections closed by the connect timeout (also in `closed_timeout`).
    pub closed_connect_timeout: u64,
    /// Topics (PUBLISH, will or SUBSCRIBE filter) over `max_topic_length_bytes`.
    pub refused_topic_length: u64,
    /// Topics (PUBLISH, will or SUBSCRIBE filter) over `max_topic_levels`.
    pub refused_topic_levels: u64,
    /// Subscriptions refused at `max_subscriptions_per_client`.
    pub refused_subscriptions: u64,
    /// Messages dropped because a queue held `max_queued_messages` (also in `dropped`).
    pub dropped_queue_messages: u64,
    /// Messages dropped because a queue held `max_queued_bytes` (also in `dropped`).
    pub dropped_queue_bytes: u64,
    /// Messages dropped for a subscriber because their Message Expiry Interval ran out
    /// (also in `dropped`).
    pub dropped_expired: u64,
    /// Messages dropped for a subscriber because they exceed its Maximum Packet Size
    /// (also in `dropped`).
    pub dropped_too_large: u64,
    // Traffic, for the metrics endpoint and $SYS (`core::observe`): plain per-loop counters,
    // summed across loops only when scraped.
    /// Complete packets received, by first byte (type and flags: QoS for PUBLISH).
    pub packets_in: observe::PacketCounts,
    /// Packets written into connections' output, by first byte.
    pub packets_out: observe::PacketCounts,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes taken by sockets (written).
    pub bytes_out: u64,
    /// QoS 1/2 messages queued past `max_queued_messages` for a subscriber that was holding
    /// publishers back (`flow`): in transit when the hold began, kept rather than dropped.
    pub queued_past_limit: u64,
}

/// A refusal the driver decides before the core sees a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptRefusal {
    /// The source IP is at `max_connections_per_ip`.
    PerIp,
    /// The listener is at its `max_connections`.
    ListenerFull,
}

/// One event loop's broker state. Not `Send` (it holds the loop's pool): it is built on its
/// thread and stays there.
pub struct Shard {
    loop_index: usize,
    loops: usize,
    config: CoreConfig,
    pool: Pool<Conn>,
    sessions: Sessions,
    index: SubscriptionIndex<u32, SubOpts>,
    buffers: BufferPool,
    timers: Timers,
    session_timers: lifecycle::SessionTimers,
    shared: Arc<Shared>,
    actions: VecDeque<Action>,
    dirty: Vec<ConnId>,
    route_scratch: Vec<(u32, SubOpts)>,
    /// The loops a PUBLISH is forwarded to (`routing`).
    forward_scratch: Vec<usize>,
    id_scratch: Vec<u32>,
    timer_scratch: Vec<(Key, u64)>,
    /// Congested sessions of this loop (`flow`).
    congested: Vec<flow::Congested>,
    /// How many of them were last published to `shared` as holding publishers back.
    congested_published: usize,
    /// Retained streams waiting for a turn, and their scratch space.
    retained: retained_stream::LoopStreams,
    next_sweep_ms: u64,
    next_assigned_id: u64,
    stats: ShardStats,
    authenticator: Option<std::rc::Rc<dyn Authenticator>>,
}

/// A fixed spread of client ids over `loops` (SipHash-1-3 with zero keys, the same in every
/// process): where the simulated transport and the tests open a client, as the kernel's
/// `SO_REUSEPORT` hash spreads real sockets. The broker itself keeps a session where its
/// first CONNECT arrived ([`directory`]).
pub fn owner_loop(client_id: &str, loops: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    client_id.hash(&mut hasher);
    (hasher.finish() % loops.max(1) as u64) as usize
}

impl Shard {
    /// The shard of loop `loop_index` out of `loops`, with its pool preheated.
    pub fn new(
        loop_index: usize,
        loops: usize,
        config: CoreConfig,
        shared: Arc<Shared>,
    ) -> Result<Shard, starling_pool::ConfigError> {
        let pool = Pool::new(config.pool.clone(), Conn::new)?;
        let buffers = BufferPool::new(config.buffer_bytes, DEFAULT_MAX_FREE_BUFFERS, 0);
        Ok(Shard {
            loop_index,
            loops: loops.max(1),
            pool,
            sessions: Sessions::new(Arc::clone(&shared.directory), loop_index),
            index: SubscriptionIndex::new(),
            buffers,
            timers: Timers::default(),
            session_timers: lifecycle::SessionTimers::new(),
            shared,
            actions: VecDeque::new(),
            dirty: Vec::new(),
            route_scratch: Vec::new(),
            forward_scratch: Vec::new(),
            id_scratch: Vec::new(),
            timer_scratch: Vec::new(),
            congested: Vec::new(),
            congested_published: 0,
            retained: retained_stream::LoopStreams::default(),
            next_sweep_ms: 0,
            next_assigned_id: 0,
            stats: ShardStats::default(),
            authenticator: None,
            config,
        })
    }

    /// This shard's loop index.
    pub fn loop_index(&self) -> usize {
        self.loop_index
    }

    /// The configuration in force.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Replaces the limits with `config`'s (a live reload). The pool keeps the configuration
    /// it was built with (it cannot be resized in place); everything else applies to the next
    /// packet, CONNECT or delivery, and no connection is closed by the change.
    pub fn update_config(&mut self, config: &CoreConfig) {
        let mut next = config.clone();
        if let Err(error) = self.pool.reconfigure(config.pool.clone()) {
            // The configuration layer validated it; keep the pool as it is if not.
            tracing::error!(%error, "pool settings refused on reload; the pool keeps its old ones");
            next.pool = self.config.pool.clone();
        }
        self.config = next;
    }

    /// Counts a refusal the driver made at accept.
    pub fn record_refusal(&mut self, refusal: AcceptRefusal) {
        match refusal {
            AcceptRefusal::PerIp => self.stats.refused_per_ip += 1,
            AcceptRefusal::ListenerFull => self.stats.refused_listener_max_connections += 1,
        }
    }

    /// What `conn` still has to send: output bytes waiting for the socket and messages in
    /// its session's queue (a graceful shutdown waits for both to drain).
    pub fn pending(&self, conn: ConnId) -> (usize, usize) {
        let Ok(c) = self.pool.get(conn) else {
            return (0, 0);
        };
        let queued = self
            .sessions
            .get(c.session)
            .filter(|s| s.conn == Some(conn))
            .map_or(0, |s| s.traffic().queue.len());
        (c.output.len(), queued)
    }

    /// A new connection: draws its object from the pool and starts its connect timeout.
    /// `None` when the pool is at its hard limit: the driver closes the socket.
    pub fn accept(&mut self, now_ms: u64) -> Option<ConnId> {
        let Ok(key) = self.pool.acquire() else {
            self.stats.refused_at_pool_limit += 1;
            tracing::warn!(
                loop_index = self.loop_index,
                "connection refused: pool at max_live_objects"
            );
            return None;
        };
        self.stats.accepted += 1;
        if let Ok(conn) = self.pool.get_mut(key) {
            conn.last_seen_ms = now_ms;
        }
        self.arm_timer(key, now_ms + self.config.connect_timeout_ms);
        Some(key)
    }

    /// Whether the driver should read `conn`'s socket now. `false` while a subscriber
    /// somewhere is congested and `conn` has nothing in flight or queued toward it (it is
    /// a publisher to hold back, [`flow`]); the driver tries again on a later turn.
    pub fn may_read(&self, conn: ConnId) -> bool {
        if !self.shared.any_congested() {
            return true;
        }
        let Ok(c) = self.pool.get(conn) else {
            return true;
        };
        if c.phase != conn::Phase::Connected {
            return true;
        }
        self.sessions
            .get(c.session)
            .is_some_and(|s| s.conn == Some(conn) && s.load() > 0)
    }

    /// Bytes read from `conn`'s socket.
    pub fn receive(&mut self, conn: ConnId, bytes: &[u8], now_ms: u64) {
        self.stats.bytes_in += bytes.len() as u64;
        input::receive(self, conn, bytes, now_ms);
    }

    /// A graceful shutdown is closing `conn`: an MQTT 5 client is told 0x8B Server
    /// shutting down (written into its output before the driver's last write).
    pub fn notify_shutdown(&mut self, conn: ConnId) {
        lifecycle::notify_shutdown(self, conn);
    }

    /// The socket of `conn` is gone (peer closed, I/O error, or after [`Action::Close`]).
    pub fn closed(&mut self, conn: ConnId, now_ms: u64) {
        lifecycle::finalize(self, conn, now_ms);
    }

    /// A message forwarded by another loop.
    pub fn remote(&mut self, message: SharedMessage, now_ms: u64) {
        routing::route_remote(self, &message, now_ms);
    }

    /// A message another loop gave to a shared-subscription member of this loop.
    pub fn remote_shared(&mut self, pick: groups::Pick, message: SharedMessage, now_ms: u64) {
        routing::route_remote_shared(self, pick, &message, now_ms);
    }

    /// Timers, preheating and the pool sweep. Returns when it wants to be called next.
    pub fn tick(&mut self, now_ms: u64) -> Option<u64> {
        flow::refresh(self, now_ms);
        let streaming = retained_stream::on_tick(self, now_ms);
        lifecycle::expire_timers(self, now_ms);
        lifecycle::expire_sessions(self, now_ms);
        let budget = self.config.pool.preheat_budget_objects;
        self.pool.preheat_step(budget, now_ms);
        if now_ms >= self.next_sweep_ms {
            // A sweep frees at most `budget` objects; while more are due it goes on at the
            // next tick rather than a whole interval later (10 000 idle objects would take
            // 40 s to free otherwise).
            if self.pool.sweep(now_ms, budget).more {
                self.next_sweep_ms = now_ms;
            } else {
                self.shrink_if_sparse();
                self.next_sweep_ms = now_ms + POOL_SWEEP_INTERVAL_MS;
            }
        }
        let mut next = self.timers.next_deadline_ms().unwrap_or(u64::MAX);
        if let Some(std::cmp::Reverse((due, _))) = self.session_timers.peek() {
            next = next.min(*due);
        }
        next = next.min(self.next_sweep_ms);
        if self.pool.preheat_pending() > 0 || streaming {
            next = now_ms;
        }
        Some(next)
    }

    /// The next thing the driver must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Moves the connections with new output into `into` (which is cleared first).
    pub fn drain_dirty(&mut self, into: &mut Vec<ConnId>) {
        into.clear();
        std::mem::swap(into, &mut self.dirty);
        for &key in into.iter() {
            if let Ok(conn) = self.pool.get_mut(key) {
                conn.dirty = false;
            }
        }
    }

    /// Output `conn` has waiting for its socket (empty for a stale handle).
    pub fn output(&self, conn: ConnId) -> &[u8] {
        self.pool.get(conn).map_or(&[], |c| c.output.as_slice())
    }

    /// The socket took `written` bytes of [`Shard::output`]. When all is written the buffer
    /// goes back to the loop and queued messages move up.
    pub fn consume_output(&mut self, conn: ConnId, written: usize, now_ms: u64) {
        let Ok(c) = self.pool.get_mut(conn) else {
            return;
        };
        let written = written.min(c.output.len());
        self.stats.bytes_out += written as u64;
        c.output.drain(..written);
        if c.output.is_empty() {
            let buffer = std::mem::take(&mut c.output);
            self.buffers.give(buffer);
            delivery::pump(self, conn, now_ms);
            if let Ok(c) = self.pool.get_mut(conn) {
                c.settle();
            }
        }
    }

    /// The pool's numbers.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// This shard's counters.
    pub fn stats(&self) -> ShardStats {
        self.stats
    }

    /// Sessions on this loop (online and offline).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Subscriptions on this loop.
    pub fn subscription_count(&self) -> usize {
        self.index.len()
    }

    /// Buffers lent and idle in this loop's buffer pool.
    pub fn buffer_use(&self) -> (usize, usize) {
        (self.buffers.lent(), self.buffers.idle())
    }

    /// After a spike has gone, gives back what the loop's tables kept of its peak: the
    /// session slab and id table, and the scratch vectors (the pool compacts itself when
    /// its sweep completes a shrink; the subscription index shrinks on every removal).
    fn shrink_if_sparse(&mut self) {
        self.sessions.shrink_if_sparse();
        if self.loop_index == 0 {
            // One loop is enough to trim the table all loops share.
            self.shared.directory.shrink_if_sparse();
        }
        // Scratch vectors are cleared by their users before each use: what they hold
        // between uses is stale.
        if self.timer_scratch.capacity() > SCRATCH_KEEP_ENTRIES {
            self.timer_scratch = Vec::new();
        }
        if self.route_scratch.capacity() > SCRATCH_KEEP_ENTRIES {
            self.route_scratch = Vec::new();
        }
        // A burst of closes or writes leaves these long and empty.
        if self.actions.is_empty() && self.actions.capacity() > SCRATCH_KEEP_ENTRIES {
            self.actions = VecDeque::new();
        }
        if self.dirty.is_empty() && self.dirty.capacity() > SCRATCH_KEEP_ENTRIES {
            self.dirty = Vec::new();
        }
    }

    /// Entries in the timer wheel (closed connections' entries stay until they come due).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Slots the session slab and id table have room for (see [`Shard::session_count`]).
    pub fn session_capacity(&self) -> (usize, usize) {
        self.sessions.capacity()
    }

    /// Files `conn` in the timer wheel for `due_ms`, unless it is already filed earlier.
    fn arm_timer(&mut self, key: ConnId, due_ms: u64) {
        let Ok(conn) = self.pool.get_mut(key) else {
            return;
        };
        if conn.timer_due_ms != 0 && conn.timer_due_ms <= due_ms {
            return;
        }
        conn.timer_due_ms = due_ms.max(1);
        self.timers.arm(key, conn.timer_due_ms);
    }

    /// Marks `conn` as having output for the driver.
    fn mark_dirty(&mut self, key: ConnId) {
        if let Ok(conn) = self.pool.get_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }
}
