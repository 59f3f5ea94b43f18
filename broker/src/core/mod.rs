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
//! - [`flow`]: holding back the publishers of a subscriber whose queue is filling.
//! - [`gate`]: whether a connection may be read (flow-control holds, publish rate limits).
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
//! - `accept`: drawing a new connection's object, and shedding the connections that have
//!   waited longest for their CONNECT when the pool is full.
//! - [`refusals`]: turning newcomers away at the connection ceilings (shedding connections
//!   idle before CONNECT first) and logging it as a summary.
//! - [`access`]: each listener's access policy (anonymous clients, password
//!   verification, the ACL, session takeover) and the checks on PUBLISH, SUBSCRIBE and
//!   delivery; [`credentials`]: CONNECTs parked while the driver verifies their password.
//! - [`peers`]: peer addresses of connections awaiting their CONNECT, for the connect log
//!   line.
//! - [`persist`]: what the acknowledgements promise, recorded as the store's ops for the
//!   driver to apply, and rebuilding sessions from what the store recovered.
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

mod accept;
pub mod access;
pub mod buffers;
pub mod config;
pub mod conn;
pub mod credentials;
pub mod delivery;
pub mod directory;
pub mod flow;
pub mod gate;
pub mod groups;
mod handlers;
pub mod input;
pub mod intake;
pub mod lifecycle;
pub mod message;
pub mod observe;
pub mod outbound;
pub mod peers;
pub mod persist;
pub mod refusals;
pub mod retained_stream;
pub mod routing;
pub mod session;
pub mod shared;
pub mod subscription;
pub mod subscriptions;
pub mod summary;
pub mod timers;

use std::collections::VecDeque;
use std::fmt::Display;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use starling_pool::{Key, Pool, PoolStats};

pub use config::CoreConfig;
pub use handlers::auth::{AuthExchange, AuthStep, Authenticator};
pub use message::{Message, SharedMessage};
pub use observe::ShardStats;
pub use shared::Shared;

use crate::topic::SubscriptionIndex;
use buffers::{BufferPool, DEFAULT_MAX_FREE_BUFFERS};
use conn::Conn;
use refusals::{Refusal, RefusalLog};
use session::Sessions;
use subscription::SubOpts;
use timers::Timers;

/// A connection's handle: the key of its pooled object. Stale once the connection is closed.
pub type ConnId = Key;

/// How often the idle sweep of the connection pool runs.
pub const POOL_SWEEP_INTERVAL_MS: u64 = 1000;
/// A scratch vector larger than this (entries) is freed at the next pool sweep.
pub const SCRATCH_KEEP_ENTRIES: usize = 4096;
/// A gap this long or longer in which the driver did not look at its sockets (beyond the
/// sleep it asked for) is a stall ([`Shard::stalled`]): shorter ones are ordinary
/// scheduling noise, already covered by the half interval of grace keep-alive gives.
pub const STALL_THRESHOLD_MS: u64 = 1000;

/// Whether a [`Shard::tick_with`] may close connections whose deadline has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadlines {
    /// The driver has read everything its sockets reported: deadlines apply.
    Enforce,
    /// The driver may have input it has not been told about yet (its last poll was full):
    /// no connection is closed for silence until a tick with [`Deadlines::Enforce`].
    Hold,
}

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
        /// Who published it (for flow control), if a client did.
        origin: Option<flow::Origin>,
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
        /// Who published it (for flow control), if a client did.
        origin: Option<flow::Origin>,
    },
    /// Verify `username`'s `password` (off the loop: hashing is slow on purpose) against
    /// listener `listener`'s password file, then call [`Shard::credentials_checked`].
    Authenticate {
        /// The connection whose CONNECT waits.
        conn: ConnId,
        /// The listener that accepted it.
        listener: u8,
        /// The user name of the CONNECT.
        username: Box<str>,
        /// The password of the CONNECT.
        password: Vec<u8>,
    },
    /// Answer `conn`'s failed login after the fixed failure delay: call
    /// [`Shard::credentials_checked`] (with [`credentials::Verdict::Refused`]) then.
    DelayRefusal {
        /// The connection whose refusal waits.
        conn: ConnId,
    },
    /// Tell loop `to` that its connection `conn` feeds a congested subscriber here and must
    /// not be read ([`Shard::hold_publisher`] with `hold`), or no longer.
    Hold {
        /// The publisher's loop.
        to: usize,
        /// The publisher's connection there.
        conn: ConnId,
        /// Hold (true) or release (false).
        hold: bool,
    },
}

/// What a connection still has to send ([`Shard::pending`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// Output bytes waiting for the socket.
    pub output_bytes: usize,
    /// Messages in its session's queue.
    pub queued: usize,
    /// Whether its session outlives the connection (then what is queued is kept, not
    /// dropped, when the connection closes; a session that ends counts its queue as dropped).
    pub session_persists: bool,
}

/// A refusal the driver decides before the core sees a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptRefusal {
    /// The source IP is at `max_connections_per_ip`.
    PerIp,
    /// The listener is at its `max_connections`.
    ListenerFull,
}

impl From<AcceptRefusal> for Refusal {
    fn from(refusal: AcceptRefusal) -> Refusal {
        match refusal {
            AcceptRefusal::PerIp => Refusal::PerIp,
            AcceptRefusal::ListenerFull => Refusal::ListenerFull,
        }
    }
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
    /// The first levels of `index`'s filters, for the other loops (`summary`).
    summary: summary::TopicSummary,
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
    /// When the loop did not run (not counted against connections' deadlines).
    stalls: timers::Stalls,
    /// Congested sessions of this loop (`flow`).
    congested: Vec<flow::Congested>,
    /// Retained streams waiting for a turn, and their scratch space.
    retained: retained_stream::LoopStreams,
    next_sweep_ms: u64,
    next_assigned_id: u64,
    stats: ShardStats,
    /// Enhanced authentication for every listener without its own entry in
    /// `listener_authenticators`.
    authenticator: Option<std::rc::Rc<dyn Authenticator>>,
    /// Enhanced authentication per listener (index: the listener; `None`: none there).
    listener_authenticators: Vec<Option<std::rc::Rc<dyn Authenticator>>>,
    /// Each listener's access policy (`access`).
    access: Arc<access::AccessPolicy>,
    /// CONNECTs waiting for their credentials' verdict (`credentials`).
    verifying: credentials::Verifying,
    /// Failed logins by address, kept by the driver (`access::LoginThrottle`).
    login_throttle: Option<Arc<dyn access::LoginThrottle>>,
    /// Connections in the order they were accepted, the oldest first, for shedding those
    /// still awaiting CONNECT when the pool is full. Entries of connections that have sent
    /// CONNECT or closed since are stale and dropped when they reach the front.
    awaiting: VecDeque<ConnId>,
    /// Refusals and sheds, logged as a summary.
    refusal_log: RefusalLog,
    /// Bytes of connection and session state freed since the driver last asked
    /// ([`Shard::take_released_bytes`]).
    released_bytes: usize,
    /// Output bytes of all connections waiting for their sockets
    /// ([`Shard::output_backlog_bytes`]).
    // Invariant: the sum of `output.len()` over the pool's connections.
    output_backlog_bytes: usize,
    /// Over this backlog a read stops before its next PUBLISH (`intake`).
    output_backlog_limit_bytes: usize,
    /// Peer addresses of connections awaiting their CONNECT (for the connect log line).
    peers: peers::PeerBook,
    /// This turn's changes for the store (`persist`).
    journal: persist::Journal,
    /// Connections whose output was all written while the journal records: their queues
    /// move up in [`Shard::pump_deferred`], so what that sends is recorded before it is
    /// written.
    pump_later: Vec<ConnId>,
    /// While restoring: the loop each restored session came from, and its index here
    /// (`persist::restore`).
    restored_from: Vec<(u16, u32)>,
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
        let journal = persist::Journal::new(shared.persist.enabled);
        Ok(Shard {
            loop_index,
            loops: loops.max(1),
            pool,
            sessions: Sessions::new(Arc::clone(&shared.directory), loop_index),
            index: SubscriptionIndex::new(),
            summary: summary::TopicSummary::default(),
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
            stalls: timers::Stalls::default(),
            congested: Vec::new(),
            retained: retained_stream::LoopStreams::default(),
            next_sweep_ms: 0,
            next_assigned_id: 0,
            stats: ShardStats::default(),
            authenticator: None,
            listener_authenticators: Vec::new(),
            access: Arc::default(),
            verifying: credentials::Verifying::default(),
            login_throttle: None,
            awaiting: VecDeque::new(),
            refusal_log: RefusalLog::default(),
            released_bytes: 0,
            output_backlog_bytes: 0,
            output_backlog_limit_bytes: usize::MAX,
            peers: peers::PeerBook::default(),
            journal,
            pump_later: Vec::new(),
            restored_from: Vec::new(),
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

    /// Counts a refusal (or a shed) by reason and logs it: the first of a spell with `who`
    /// (a peer address or client id), the rest as one summary line per interval
    /// ([`refusals::RefusalLog`]). The driver calls it for the refusals it decides itself.
    pub fn refused(&mut self, refusal: Refusal, now_ms: u64, who: &dyn Display) {
        let counter = match refusal {
            Refusal::MaxConnections => &mut self.stats.refused_at_max_connections,
            Refusal::PoolLimit => &mut self.stats.refused_at_pool_limit,
            Refusal::Descriptors => &mut self.stats.refused_descriptors,
            Refusal::PerIp => &mut self.stats.refused_per_ip,
            Refusal::ListenerFull => &mut self.stats.refused_listener_max_connections,
            Refusal::ShedBeforeConnect => &mut self.stats.shed_before_connect,
            Refusal::ConnectTimeout => &mut self.stats.closed_connect_timeout,
            Refusal::Unanswered => &mut self.stats.refused_unanswered,
            Refusal::ProxyHeader => &mut self.stats.closed_proxy_header,
        };
        *counter += 1;
        // The rest of a spell only in the summary, at every log level: a flood refused at
        // accept writes no line per connection even at debug.
        if self.refusal_log.note(refusal, now_ms) {
            refusals::log_first(self.loop_index, refusal, who);
        }
    }

    /// Writes the pending refusal summary now (a shutdown does not wait for its interval).
    pub fn flush_refusal_log(&mut self, now_ms: u64) {
        self.refusal_log.flush(self.loop_index, now_ms, true);
    }

    /// What `conn` still has to send: output bytes waiting for the socket and messages in
    /// its session's queue (a graceful shutdown waits for both to drain).
    pub fn pending(&self, conn: ConnId) -> Pending {
        let Ok(c) = self.pool.get(conn) else {
            return Pending::default();
        };
        let session = self
            .sessions
            .get(c.session)
            .filter(|s| s.conn == Some(conn));
        Pending {
            output_bytes: c.output.len(),
            queued: session.map_or(0, |s| s.traffic().queue.len()),
            session_persists: session.is_some_and(|s| s.expiry_secs > 0),
        }
    }

    /// Whether the driver should read `conn`'s socket now: `false` while `conn` is a
    /// publisher held back for a congested subscriber ([`flow`]) or over its publish rate
    /// ([`gate`]). The driver tries again on a later turn.
    pub fn may_read(&self, conn: ConnId, now_ms: u64) -> bool {
        let Ok(c) = self.pool.get(conn) else {
            return true;
        };
        let Some(gate) = c.gate.as_deref() else {
            return true;
        };
        // A connection with messages toward it is read: its acknowledgements drain queues.
        let exempt = c.phase != conn::Phase::Connected
            || self
                .sessions
                .get(c.session)
                .is_some_and(|s| s.conn == Some(conn) && s.load() > 0);
        !gate.blocks(now_ms, exempt)
    }

    /// A congested subscriber (on this loop or another, [`Action::Hold`]) holds the
    /// publisher `conn` back (`hold`) or releases it.
    pub fn hold_publisher(&mut self, conn: ConnId, hold: bool, now_ms: u64) {
        let max_hold_ms = self.config.max_publisher_hold_ms;
        let Ok(c) = self.pool.get_mut(conn) else {
            return;
        };
        if hold {
            c.gate
                .get_or_insert_with(Default::default)
                .hold(now_ms, max_hold_ms);
        } else if let Some(gate) = c.gate.as_deref_mut() {
            gate.release();
            if !gate.held(now_ms) {
                // The time it was not read does not count against its keep-alive.
                c.last_seen_ms = c.last_seen_ms.max(now_ms);
            }
        }
    }

    /// Congested sessions on this loop, and how many of them hold their publishers back.
    pub fn congestion(&self) -> (usize, usize) {
        flow::counts(self)
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

    /// A message forwarded by another loop, published by `origin`.
    pub fn remote(&mut self, message: SharedMessage, origin: Option<flow::Origin>, now_ms: u64) {
        routing::route_remote(self, &message, origin, now_ms);
    }

    /// A message another loop gave to a shared-subscription member of this loop.
    pub fn remote_shared(
        &mut self,
        pick: groups::Pick,
        message: SharedMessage,
        origin: Option<flow::Origin>,
        now_ms: u64,
    ) {
        routing::route_remote_shared(self, pick, &message, origin, now_ms);
    }

    /// Timers, preheating and the pool sweep. Returns when it wants to be called next.
    pub fn tick(&mut self, now_ms: u64) -> Option<u64> {
        self.tick_with(now_ms, Deadlines::Enforce)
    }

    /// [`Shard::tick`], with the connections' deadlines (connect, keep-alive, partial
    /// packet) held back while the driver may still have unread input ([`Deadlines::Hold`]):
    /// a client whose PINGREQ waits unreported in its socket is not closed for silence.
    pub fn tick_with(&mut self, now_ms: u64, deadlines: Deadlines) -> Option<u64> {
        flow::refresh(self, now_ms);
        let streaming = retained_stream::on_tick(self, now_ms);
        if deadlines == Deadlines::Enforce {
            lifecycle::expire_timers(self, now_ms);
        }
        self.refusal_log.flush(self.loop_index, now_ms, false);
        self.prune_awaiting();
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
        next = next.min(self.refusal_log.due_ms().unwrap_or(u64::MAX));
        if self.pool.preheat_pending() > 0 || streaming {
            next = now_ms;
        }
        Some(next)
    }

    /// The driver did not run for `stalled_ms` up to `now_ms` (the host paused, the process
    /// was stopped, the thread was not scheduled, or one turn took that long): no client
    /// could be read in that time, so it is not counted against any connection's connect,
    /// keep-alive or partial-packet deadline. Gaps shorter than [`STALL_THRESHOLD_MS`] are
    /// ignored.
    pub fn stalled(&mut self, stalled_ms: u64, now_ms: u64) {
        if stalled_ms < STALL_THRESHOLD_MS {
            return;
        }
        self.stats.stalls += 1;
        self.stats.stalled_ms += stalled_ms;
        self.stalls.record(stalled_ms, now_ms);
        tracing::warn!(
            loop_index = self.loop_index,
            stalled_ms,
            "event loop did not run; the time is not counted against clients' deadlines"
        );
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
        self.output_backlog_bytes -= written;
        self.stats.bytes_out += written as u64;
        c.output.drain(..written);
        if c.output.is_empty() {
            let buffer = std::mem::take(&mut c.output);
            self.buffers.give(buffer);
            if self.journal.enabled() {
                // What the pump sends must be recorded before it is written.
                self.pump_later.push(conn);
                return;
            }
            delivery::pump(self, conn, now_ms);
            if let Ok(c) = self.pool.get_mut(conn) {
                c.settle();
            }
        }
    }

    /// Moves up the queues of the connections whose output was all written since the last
    /// call (only while persistence records: [`Shard::consume_output`] pumps at once
    /// otherwise). The driver calls it before it takes the turn's ops.
    pub fn pump_deferred(&mut self, now_ms: u64) {
        let mut keys = std::mem::take(&mut self.pump_later);
        for &key in &keys {
            if self.pool.get(key).is_ok_and(|c| c.output.is_empty()) {
                delivery::pump(self, key, now_ms);
                if let Ok(c) = self.pool.get_mut(key) {
                    c.settle();
                }
            }
        }
        keys.clear();
        if self.pump_later.is_empty() {
            self.pump_later = keys;
        }
    }

    /// Whether this turn recorded anything for the store (this loop's changes; the
    /// retained messages all loops share are taken with them).
    pub fn has_persist_ops(&self) -> bool {
        !self.journal.is_empty()
    }

    /// Whether this turn's output promises something it recorded: in `sync` mode the driver
    /// commits before writing it (`persist::Journal::needs_commit`).
    pub fn persist_ops_urgent(&self) -> bool {
        self.journal.needs_commit()
    }

    /// Moves the ops recorded since the last call into `into`, in order: what the driver
    /// applies to the store as one batch before it writes this turn's output. Returns
    /// whether anything was recorded (a retained change is queued by the driver from
    /// [`persist::PersistShared::take_retained`], and counts).
    pub fn take_persist_ops(&mut self, into: &mut Vec<persist::Op>) -> bool {
        let clock = self.shared.persist.clock;
        let loop_index = self.loop_index;
        let (sessions, pool) = (&mut self.sessions, &self.pool);
        let record = |session_id: u32| {
            let session = sessions.get_mut(session_id)?;
            if !std::mem::take(&mut session.persist_dirty) || session.expiry_secs == 0 {
                return None;
            }
            session.persisted = true;
            let will = session
                .conn
                .and_then(|key| pool.get(key).ok())
                .and_then(|c| c.will.as_deref());
            let mut encoded = Vec::new();
            persist::record::SessionRecord::of(session, loop_index, will, clock)
                .encode(clock, &mut encoded);
            Some((session.client_id.clone(), encoded))
        };
        self.journal.take(record, into)
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

    /// Bytes of connection and session state (topic aliases, client ids, subscription
    /// lists, queues, lent buffers, table capacity) freed since the previous call: the
    /// driver asks the allocator to return freed memory to the OS once enough was freed.
    /// An estimate of what the allocator got back, not of what the OS will.
    pub fn take_released_bytes(&mut self) -> usize {
        std::mem::take(&mut self.released_bytes) + self.buffers.take_released_bytes()
    }

    /// After a spike has gone, gives back what the loop's tables kept of its peak: the
    /// session slab and id table, the buffers no one used for a whole interval, and the
    /// scratch vectors (the pool compacts itself when its sweep completes a shrink; the
    /// subscription index shrinks on every removal).
    fn shrink_if_sparse(&mut self) {
        self.released_bytes += self.sessions.shrink_if_sparse();
        self.buffers.trim_idle();
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
        if self.awaiting.capacity() > SCRATCH_KEEP_ENTRIES
            && self.awaiting.len() < self.awaiting.capacity() / 4
        {
            self.awaiting.shrink_to_fit();
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
    /// Gives `key`'s read and output buffers back to the loop (what output was waiting is
    /// no longer part of the backlog).
    fn return_buffers(&mut self, key: ConnId) {
        let Ok(conn) = self.pool.get_mut(key) else {
            return;
        };
        let input = std::mem::take(&mut conn.input);
        let output = std::mem::take(&mut conn.output);
        self.output_backlog_bytes -= output.len();
        self.buffers.give(input);
        self.buffers.give(output);
    }

    fn mark_dirty(&mut self, key: ConnId) {
        if let Ok(conn) = self.pool.get_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }
}
