//! One event loop: a [`Shard`], its `mio::Poll`, its listeners and its sockets.
//!
//! Sockets are edge-triggered and registered once for READABLE | WRITABLE: a readable event
//! reads until `WouldBlock` (at most [`MAX_READS_PER_EVENT`] reads, then the rest waits for
//! the next turn so one busy client cannot starve the others; a publisher is not read while
//! a subscriber is congested, `core::flow`); a writable event writes what
//! the core still holds for the connection. After every batch of events the loop settles:
//! it carries out the core's [`Action`](crate::core::Action)s and writes the output of every connection the core
//! marked dirty, until neither is left (writing can release queued messages, which makes
//! more output).
//!
//! Sockets are stored by pool slot (`ConnId::index()`), and a connection's mio token is its
//! whole key (`ConnId::to_u64()`: slot index in the low half, generation in the high half),
//! so an event for a connection that has since closed and whose slot was reused is told
//! apart by the generation and ignored.
//!
//! Time is milliseconds since the loop started, on the monotonic clock.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use starling_pool::PoolStats;

use super::admission::{Admission, Origin};
use super::control::Draining;
use super::mailbox::{Inbound, Inbox, Peers, WAKER_TOKEN};
use super::outside::{OUTSIDE_TOKEN_MARK, Outside, outside_index};
use super::pacing::Pacing;
use super::proxy::ProxyPending;
use super::transport::stats::TransportStats;
use super::transport::{ListenerTransport, Stack};
use crate::config::sizing::MAX_LISTENERS;
use crate::core::{ConnId, CoreConfig, Deadlines, Shard, Shared};

/// While polls keep coming back full, the connections' deadlines are held at most this long
/// (a loop that stays saturated still closes silent clients).
pub const MAX_DEADLINE_HOLD_MS: u64 = 1000;
/// The loop's heartbeat for the health check is refreshed at most this often.
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;
/// Size of the loop's one read buffer, shared by all its connections.
pub const READ_SCRATCH_BYTES: usize = 64 * 1024;
/// Readiness events taken from one `poll`.
pub const EVENTS_CAPACITY: usize = 1024;
/// The longest the loop sleeps in `poll`, whatever the core's next deadline.
pub const MAX_POLL_TIMEOUT_MS: u64 = 100;
/// Deliveries waiting in another loop's mailbox beyond which this loop stops reading its
/// sockets until that loop catches up. The mailboxes are unbounded (a bounded one could
/// deadlock two loops sending to each other), so this is what bounds them: publishers on
/// this loop are held back by TCP, as a single-threaded broker holds them back by not
/// reading faster than it routes.
pub const MAILBOX_HIGH_WATER_DELIVERIES: usize = 16 * 1024;
/// Bytes of forwarded messages waiting in another loop's mailbox beyond which this loop
/// stops reading its sockets likewise: 16 Ki large messages would be gigabytes.
pub const MAILBOX_HIGH_WATER_BYTES: usize = 4 * 1024 * 1024;
/// Poll timeout while reads are held back for a peer's backlog.
pub const BACKPRESSURE_POLL_MS: u64 = 1;
/// Reads of one connection per readiness event before it yields to the others.
pub const MAX_READS_PER_EVENT: usize = 16;
/// Mailbox deliveries handled per turn before the loop polls its sockets again.
pub const INBOX_BATCH_DELIVERIES: usize = 1024;
/// Connections one listener's accept takes per turn before the loop serves its other
/// sockets (the rest are accepted on the next turn).
pub const MAX_ACCEPTS_PER_TURN: usize = 256;
/// How soon accepting is retried after the process ran out of descriptors (an
/// edge-triggered listener does not report the connections already queued again).
pub const ACCEPT_RETRY_MS: u64 = 50;
/// At most one "accept failed" warning per this interval.
pub const ACCEPT_WARNING_INTERVAL_MS: u64 = 1000;
/// Reads that discard unread input before a close without a last packet (one with a last
/// packet lingers instead, `outside`): closing a socket with unread input makes the kernel
/// send RST.
pub const CLOSE_DRAIN_READS: usize = 4;
/// How often the loop checks, while shutting down, whether its connections have drained.
pub const SHUTDOWN_POLL_MS: u64 = 10;
/// How often the loop gives back the capacity its socket table and dirty list kept from a
/// spike (the core shrinks its own tables at its pool sweep).
pub const TRIM_INTERVAL_MS: u64 = 1000;

/// The token of listener `i`: just below the waker's.
fn listener_token(i: usize) -> Token {
    Token(WAKER_TOKEN.0 - 1 - i)
}

/// The token of a connection: its whole key. Never collides with the reserved tokens: their
/// low halves are within [`MAX_LISTENERS`] of `u32::MAX` (the waker's and listeners') or
/// [`OUTSIDE_TOKEN_MARK`] (sockets outside the pool), and slot indices stay below
/// `max_live_objects`, which [`EventLoop::new`] keeps below both.
fn conn_token(key: ConnId) -> Token {
    Token(key.to_u64() as usize)
}

/// Everything a loop is built from (moved into its thread).
pub struct Parts {
    /// This loop's index.
    pub index: usize,
    /// How many loops there are.
    pub loops: usize,
    /// The core's limits.
    pub core: CoreConfig,
    /// State shared by all loops.
    pub shared: Arc<Shared>,
    /// This loop's poll (its waker is registered with it).
    pub poll: Poll,
    /// This loop's mailbox.
    pub inbox: Inbox,
    /// Every loop's mailbox, to hand over and forward.
    pub peers: Peers,
    /// This loop's listeners (one per listen address).
    pub listeners: Vec<TcpListener>,
    /// Which listeners expect a PROXY protocol header before MQTT (by listener index).
    pub proxy_listeners: Vec<bool>,
    /// What each listener puts under MQTT (TLS, WebSocket), by listener index.
    pub transports: Arc<[ListenerTransport]>,
    /// Each listener's transport numbers.
    pub transport_stats: Arc<TransportStats>,
    /// The per-IP and per-listener counts, shared by every loop.
    pub admission: Arc<Admission>,
    /// The password files, access policy and verifier threads, shared by every loop.
    pub credentials: Arc<super::credentials::Credentials>,
    /// Time zero of every loop's clock: one instant for all, so a deadline one loop sets
    /// (a message's expiry) means the same on the loop it is forwarded to.
    pub epoch: Instant,
    /// The store, when persistence is on.
    pub persister: Option<Arc<super::persist::Persister>>,
}

/// A connection's socket, stored at its pool slot.
pub(super) struct Slot {
    pub(super) key: ConnId,
    pub(super) stream: TcpStream,
    pub(super) origin: Origin,
    /// On a listener with `proxy_protocol`, until the PROXY header is whole (`proxy`).
    pub(super) proxy: Option<Box<ProxyPending>>,
    /// TLS and WebSocket layers (`transport`); `None` on plain TCP.
    pub(super) stack: Option<Box<Stack>>,
}

/// Shows a socket's peer address, asked from the kernel only when a log line is written.
pub(super) struct Peer<'a>(pub(super) &'a TcpStream);

impl std::fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.peer_addr() {
            Ok(addr) => write!(f, "{addr}"),
            Err(_) => f.write_str("?"),
        }
    }
}

/// Why a socket went away.
pub(super) enum Gone<'a> {
    PeerClosed,
    Error(&'a io::Error),
    WriteZero,
}

impl std::fmt::Display for Gone<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gone::PeerClosed => f.write_str("peer closed"),
            Gone::Error(e) => write!(f, "{e}"),
            Gone::WriteZero => f.write_str("socket took no bytes"),
        }
    }
}

/// One event loop. Not `Send` (its shard is not): built and run on its own thread.
pub struct EventLoop {
    pub(super) index: usize,
    pub(super) shard: Shard,
    pub(super) poll: Poll,
    pub(super) listeners: Vec<TcpListener>,
    /// Listeners configured (still counted once a shutdown has closed them).
    pub(super) listener_count: usize,
    /// Which listeners expect a PROXY protocol header (by listener index).
    pub(super) proxy_listeners: Vec<bool>,
    /// What each listener puts under MQTT, by listener index.
    pub(super) transports: Arc<[ListenerTransport]>,
    /// Each listener's transport numbers.
    pub(super) transport_stats: Arc<TransportStats>,
    /// MQTT bytes a stack decoded from one read, on their way to the core.
    pub(super) plain: Vec<u8>,
    /// What TLS decrypted from one read, on its way to the WebSocket layer (`wss`).
    pub(super) between: Vec<u8>,
    inbox: Inbox,
    pub(super) peers: Peers,
    pub(super) conns: Vec<Option<Slot>>,
    pub(super) scratch: Box<[u8]>,
    pub(super) dirty: Vec<ConnId>,
    pub(super) read_again: Vec<ConnId>,
    pub(super) read_again_spare: Vec<ConnId>,
    /// Reads were held back this turn because a peer's mailbox is over its high-water mark.
    pub(super) reads_held: bool,
    /// Intake paced by this loop's output backlog (`pacing`).
    pub(super) pacing: Pacing,
    pub(super) wake: Vec<bool>,
    pub(super) accept_retry: bool,
    /// A listener had more to accept than one turn takes ([`MAX_ACCEPTS_PER_TURN`]).
    pub(super) accept_more: bool,
    pub(super) last_accept_warning_ms: Option<u64>,
    start: Instant,
    pub(super) now_ms: u64,
    pub(super) admission: Arc<Admission>,
    /// The password files, access policy and verifier threads.
    pub(super) credentials: Arc<super::credentials::Credentials>,
    /// Sockets held outside the pool: refused newcomers and lingering closes.
    pub(super) outside: Outside,
    /// A descriptor held in reserve: given up to accept (and answer) one newcomer when the
    /// process has run out of them (`accept`).
    pub(super) spare: Option<std::fs::File>,
    /// Set once a graceful shutdown has begun.
    pub(super) draining: Option<Draining>,
    next_trim_ms: u64,
    /// When the heartbeat was last refreshed.
    last_beat_ms: u64,
    /// The pool's shrink count at the last `malloc_trim` (a new shrink returns memory to
    /// the OS).
    pub(super) shrinks_seen: u64,
    /// Bytes the core freed since the last `malloc_trim`.
    pub(super) released_bytes: usize,
    /// No `malloc_trim` before this (loop ms): see [`super::trim::MALLOC_TRIM_MAX_TIME_PERCENT`].
    pub(super) next_malloc_trim_ms: u64,
    /// The store, when persistence is on (`persist`).
    pub(super) persister: Option<Arc<super::persist::Persister>>,
    /// The ops of a turn on their way to the store (kept for its capacity).
    pub(super) persist_ops: Vec<crate::core::persist::Op>,
    /// Connections whose output waits for the store (`durable`).
    pub(super) held: super::durable::Held,
    /// A spare list for the core's marked connections (kept for its capacity).
    pub(super) dirty_spare: Vec<ConnId>,
}

impl EventLoop {
    /// Builds the shard (preheating its pool) and registers the listeners.
    pub fn new(parts: Parts) -> Result<EventLoop, Box<dyn std::error::Error>> {
        let Parts {
            index,
            loops,
            core,
            shared,
            poll,
            inbox,
            peers,
            mut listeners,
            proxy_listeners,
            transports,
            transport_stats,
            admission,
            credentials,
            epoch,
            persister,
        } = parts;
        if listeners.len() > MAX_LISTENERS {
            return Err(format!("at most {MAX_LISTENERS} listen addresses").into());
        }
        // Slot indices stay below the mark of the tokens of sockets outside the pool.
        let max_index = OUTSIDE_TOKEN_MARK as usize - 1;
        if core.pool.max_live_objects > max_index {
            return Err(format!("max_live_objects must stay below {max_index}").into());
        }
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(listener, listener_token(i), Interest::READABLE)?;
        }
        let mut shard = Shard::new(index, loops, core, shared)?;
        shard.set_access(credentials.policy(), 0);
        shard.set_login_throttle(credentials.throttle.clone());
        let mut event_loop = EventLoop {
            index,
            shard,
            poll,
            listener_count: listeners.len(),
            listeners,
            proxy_listeners,
            transports,
            transport_stats,
            plain: Vec::new(),
            between: Vec::new(),
            inbox,
            wake: vec![false; peers.len()],
            peers,
            conns: Vec::new(),
            scratch: vec![0; READ_SCRATCH_BYTES].into_boxed_slice(),
            dirty: Vec::new(),
            read_again: Vec::new(),
            read_again_spare: Vec::new(),
            reads_held: false,
            accept_retry: false,
            accept_more: false,
            last_accept_warning_ms: None,
            start: epoch,
            now_ms: 0,
            admission,
            credentials,
            outside: Outside::default(),
            spare: super::accept::open_spare(),
            draining: None,
            next_trim_ms: TRIM_INTERVAL_MS,
            last_beat_ms: 0,
            shrinks_seen: 0,
            released_bytes: 0,
            next_malloc_trim_ms: 0,
            pacing: Pacing::default(),
            persister,
            persist_ops: Vec::new(),
            held: Default::default(),
            dirty_spare: Vec::new(),
        };
        event_loop.install_scram();
        Ok(event_loop)
    }

    /// The pool's numbers.
    pub fn pool_stats(&self) -> PoolStats {
        self.shard.pool_stats()
    }

    /// Runs until `poll` fails or a graceful shutdown is complete.
    ///
    /// Each turn: poll, read and write what the events say, then the timers. Deadlines come
    /// after reading, so a client whose PINGREQ arrived while the loop slept past its
    /// deadline is read before anyone is expired; while polls come back full (more sockets
    /// may be ready than one poll reports) deadlines are held for up to
    /// [`MAX_DEADLINE_HOLD_MS`]. A turn that took [`crate::core::STALL_THRESHOLD_MS`] or
    /// more beyond the sleep it asked for (the process stopped, the host paused) is reported
    /// to the core, which does not count it against anyone's deadline.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut inbox_backlog = false;
        let mut poll_full = false;
        let mut full_since_ms: Option<u64> = None;
        self.now_ms = self.clock_ms();
        let mut looked_ms = self.now_ms;
        let mut next_ms = self.shard.tick(self.now_ms).unwrap_or(u64::MAX);
        self.settle();
        loop {
            self.now_ms = self.clock_ms();
            let timeout_ms = self.poll_timeout_ms(next_ms, inbox_backlog || poll_full);
            match self
                .poll
                .poll(&mut events, Some(Duration::from_millis(timeout_ms)))
            {
                Ok(()) => {}
                // Interrupted (a signal, a debugger): a turn with no events.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
                Err(e) => return Err(e),
            }
            self.now_ms = self.clock_ms();
            let late_ms = self
                .now_ms
                .saturating_sub(looked_ms)
                .saturating_sub(timeout_ms);
            looked_ms = self.now_ms;
            self.shard.stalled(late_ms, self.now_ms);
            self.beat();
            let mut reported = 0;
            for event in events.iter() {
                reported += 1;
                self.on_event(event);
            }
            poll_full = reported >= EVENTS_CAPACITY;
            self.retry_reads();
            if std::mem::take(&mut self.accept_more) || self.accept_retry {
                self.accept_retry = false;
                for i in 0..self.listeners.len() {
                    self.accept_all(i);
                }
            }
            inbox_backlog = self.drain_inbox();
            self.settle();
            let deadlines = self.deadlines(poll_full, &mut full_since_ms);
            next_ms = self
                .shard
                .tick_with(self.now_ms, deadlines)
                .unwrap_or(u64::MAX)
                .min(self.expire_outside());
            self.settle();
            self.retry_store();
            self.commit_lazy();
            if self.now_ms >= self.next_trim_ms {
                self.trim();
                self.next_trim_ms = self.now_ms + TRIM_INTERVAL_MS;
            }
            if self.draining.is_some() && self.drain_step() {
                return Ok(());
            }
        }
    }

    /// How long the next poll may sleep: until the core's next deadline (`next_ms`), at most
    /// [`MAX_POLL_TIMEOUT_MS`]; not at all when work is known to be waiting (`busy`: a
    /// mailbox backlog, a full poll) or connections used their whole turn.
    fn poll_timeout_ms(&mut self, next_ms: u64, busy: bool) -> u64 {
        let mut timeout_ms = next_ms.saturating_sub(self.now_ms).min(MAX_POLL_TIMEOUT_MS);
        if busy || self.accept_more || (!self.read_again.is_empty() && !self.reads_held) {
            timeout_ms = 0;
        } else if self.reads_held {
            timeout_ms = timeout_ms.min(BACKPRESSURE_POLL_MS);
        }
        self.reads_held = false;
        if self.accept_retry {
            timeout_ms = timeout_ms.min(ACCEPT_RETRY_MS);
        }
        if self.draining.is_some() {
            timeout_ms = timeout_ms.min(SHUTDOWN_POLL_MS);
        }
        if self.held.waiting() {
            timeout_ms = timeout_ms.min(super::durable::STORE_RETRY_INTERVAL_MS);
        }
        if self.lazy_pending() {
            timeout_ms = timeout_ms.min(super::durable::LAZY_COMMIT_INTERVAL_MS);
        }
        timeout_ms
    }

    /// Whether this turn's tick may close connections for silence: not while polls come
    /// back full (`poll_full`; since `full_since_ms`), for at most [`MAX_DEADLINE_HOLD_MS`].
    fn deadlines(&self, poll_full: bool, full_since_ms: &mut Option<u64>) -> Deadlines {
        if !poll_full {
            *full_since_ms = None;
            return Deadlines::Enforce;
        }
        let since = *full_since_ms.get_or_insert(self.now_ms);
        if self.now_ms.saturating_sub(since) < MAX_DEADLINE_HOLD_MS {
            Deadlines::Hold
        } else {
            Deadlines::Enforce
        }
    }

    /// Tells the health check this loop is going round (at most every
    /// [`HEARTBEAT_INTERVAL_MS`]).
    fn beat(&mut self) {
        if self.now_ms >= self.last_beat_ms + HEARTBEAT_INTERVAL_MS {
            self.last_beat_ms = self.now_ms;
            if let Some(own) = self.peers.get(self.index) {
                own.beat(self.now_ms);
            }
        }
    }

    fn clock_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn on_event(&mut self, event: &Event) {
        let token = event.token();
        if token == WAKER_TOKEN {
            return; // the mailbox is drained every turn
        }
        let listener = WAKER_TOKEN.0 - 1 - token.0;
        if listener < self.listeners.len() {
            self.accept_all(listener);
            return;
        }
        if let Some(index) = outside_index(token) {
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            self.outside_event(index, readable, event.is_writable());
            return;
        }
        let key = ConnId::from_u64(token.0 as u64);
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read(key);
        }
        if event.is_writable() {
            self.flush(key);
        }
    }

    /// Registers `stream` under `key`'s token and stores it at `key`'s slot. Input that is
    /// already waiting is reported by the registration itself (epoll checks readiness).
    /// `proxy`: the connection's first bytes are to be a PROXY header (`proxy`); `stack`:
    /// its TLS and WebSocket layers (`transport`).
    pub(super) fn register(
        &mut self,
        key: ConnId,
        mut stream: TcpStream,
        origin: Origin,
        proxy: bool,
        stack: Option<Box<Stack>>,
    ) -> io::Result<()> {
        self.shard.set_listener(key, origin.listener);
        self.poll.registry().register(
            &mut stream,
            conn_token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let index = key.index() as usize;
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        self.conns[index] = Some(Slot {
            key,
            stream,
            origin,
            proxy: proxy.then(Box::default),
            stack,
        });
        Ok(())
    }

    /// Takes `key`'s socket out of its slot and out of the poll, with its origin and its
    /// transport layers.
    pub(super) fn unregister(
        &mut self,
        key: ConnId,
    ) -> Option<(TcpStream, Origin, Option<Box<Stack>>)> {
        let slot = self.conns.get_mut(key.index() as usize)?;
        if slot.as_ref().is_none_or(|s| s.key != key) {
            return None;
        }
        let Slot {
            mut stream,
            origin,
            stack,
            ..
        } = slot.take()?;
        let _ = self.poll.registry().deregister(&mut stream);
        Some((stream, origin, stack))
    }

    // ---- reading and writing ---------------------------------------------------------------

    /// Reads `key` until it would block (or its turn is over), feeding the core.
    pub(super) fn read(&mut self, key: ConnId) {
        let mut reads = 0;
        while reads < MAX_READS_PER_EVENT {
            if self.shard.is_verifying(key) {
                // Read again once the verdict is in (`verdict`), not before.
                return;
            }
            if self
                .peers
                .get(self.index)
                .is_some_and(|own| own.take_urgent())
            {
                // A congested subscriber elsewhere holds a publisher of this loop (perhaps
                // this one): take the hold before reading more of what it cannot take.
                while self.drain_inbox() {}
            }
            if self.peer_backlogged()
                || self.intake_paused(key)
                || !self.shard.may_read(key, self.now_ms)
            {
                // Resume when the peer has drained its mailbox (see
                // MAILBOX_HIGH_WATER_DELIVERIES), or when no subscriber is congested any more
                // (`core::flow`: this connection is a publisher to hold back).
                self.reads_held = true;
                break;
            }
            if self.shard.has_whole_packet(key) {
                // A read stopped at the output backlog's mark (`pacing`): the rest first.
                reads += 1;
                self.resume_paced(key);
                self.act();
                continue;
            }
            let Some(stream) = stream_mut(&mut self.conns, key) else {
                return;
            };
            match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.gone(key, Gone::PeerClosed);
                    return;
                }
                Ok(n) => {
                    reads += 1;
                    // The PROXY header first; what follows it goes to the core (through
                    // the TLS and WebSocket layers, if any).
                    let start = if self.proxy_pending(key) {
                        match self.proxy_header(key, n) {
                            Some(start) => start,
                            None => return,
                        }
                    } else {
                        0
                    };
                    if self.layered(key) {
                        if !self.read_layered(key, start..n) {
                            return;
                        }
                    } else {
                        self.receive_paced(key, start..n);
                    }
                    // Now, not later: after a handover this loop must not read the socket
                    // again (the bytes belong to the new loop), and a closed one is gone.
                    self.act();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.gone(key, Gone::Error(&e));
                    return;
                }
            }
        }
        self.read_again.push(key);
    }

    /// Whether another loop has more than [`MAILBOX_HIGH_WATER_DELIVERIES`] or
    /// [`MAILBOX_HIGH_WATER_BYTES`] waiting.
    fn peer_backlogged(&self) -> bool {
        self.peers.iter().enumerate().any(|(i, peer)| {
            i != self.index
                && (peer.backlog() > MAILBOX_HIGH_WATER_DELIVERIES
                    || peer.backlog_bytes() > MAILBOX_HIGH_WATER_BYTES)
        })
    }

    /// Connections that used their whole turn: read them again.
    fn retry_reads(&mut self) {
        if self.read_again.is_empty() {
            return;
        }
        std::mem::swap(&mut self.read_again, &mut self.read_again_spare);
        let mut keys = std::mem::take(&mut self.read_again_spare);
        for &key in &keys {
            self.read(key);
        }
        keys.clear();
        self.read_again_spare = keys;
    }

    /// Writes what the core holds for `key` until the socket would block (the WRITABLE
    /// event resumes it) or nothing is left.
    pub(super) fn flush(&mut self, key: ConnId) {
        if self.put_off_write(key) || !self.may_write(key) {
            return;
        }
        if self.layered(key) {
            self.flush_layered(key);
            return;
        }
        loop {
            let Some(stream) = stream_mut(&mut self.conns, key) else {
                return;
            };
            let output = self.shard.output(key);
            if output.is_empty() {
                return;
            }
            match stream.write(output) {
                Ok(0) => {
                    self.gone(key, Gone::WriteZero);
                    return;
                }
                Ok(n) => self.shard.consume_output(key, n, self.now_ms),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.gone(key, Gone::Error(&e));
                    return;
                }
            }
        }
    }

    /// The socket of `key` closed or failed: drop it and tell the core.
    pub(super) fn gone(&mut self, key: ConnId, why: Gone<'_>) {
        self.forget_held(key);
        if let Some((stream, origin, _)) = self.unregister(key) {
            self.admission.release(origin);
            match self.shard.connected_client(key) {
                // A connected client's connection ended without DISCONNECT: its will goes.
                Some(client) => {
                    tracing::info!(client, peer = %origin.peer(), reason = %why, "connection lost")
                }
                None => {
                    tracing::debug!(loop_index = self.index, conn = %key, peer = %Peer(&stream), reason = %why, "connection closed")
                }
            }
        }
        self.shard.closed(key, self.now_ms);
    }

    /// Handles up to [`INBOX_BATCH_DELIVERIES`] deliveries; returns whether more may wait.
    fn drain_inbox(&mut self) -> bool {
        for _ in 0..INBOX_BATCH_DELIVERIES {
            if self.inbox_paused() {
                return false;
            }
            match self.inbox.try_recv() {
                Ok(Inbound::Handover {
                    stream,
                    origin,
                    stack,
                    bytes,
                }) => self.adopt_handover(stream, origin, stack, &bytes),
                Ok(Inbound::Forward(message, origin)) => {
                    self.shard.remote(message, origin, self.now_ms)
                }
                Ok(Inbound::ForwardShared(pick, message, origin)) => {
                    self.shard.remote_shared(pick, message, origin, self.now_ms)
                }
                Ok(Inbound::Hold(conn, hold)) => self.shard.hold_publisher(conn, hold, self.now_ms),
                Ok(Inbound::Control(control)) => self.control(control),
                Ok(Inbound::Verdict(conn, verdict)) => self.verdict(conn, verdict),
                Err(_) => return false,
            }
        }
        !self.inbox.is_empty()
    }

    /// Actions and output until neither is left, then the wakes this turn owes other loops.
    /// With persistence on, queues move up here rather than as their output is written
    /// (`Shard::pump_deferred`), and the first write of each round makes what the round
    /// recorded durable first (`persist`).
    pub(super) fn settle(&mut self) {
        loop {
            let mut later = Vec::new();
            if self.persister.is_some() {
                self.begin_round(&mut later);
                self.shard.pump_deferred(self.now_ms);
            }
            self.act();
            self.shard.drain_dirty(&mut self.dirty);
            self.dirty.append(&mut later);
            if self.dirty.is_empty() {
                break;
            }
            let dirty = std::mem::take(&mut self.dirty);
            for &key in &dirty {
                self.flush(key);
            }
            self.dirty = dirty;
        }
        // What the turn recorded without writing anything (a message queued for an offline
        // client, a session expired) goes to the store too.
        self.store_recorded();
        self.end_settle();
        for (to, flag) in self.wake.iter_mut().enumerate() {
            if std::mem::take(flag)
                && let Some(peer) = self.peers.get(to)
                && let Err(e) = peer.wake()
            {
                tracing::error!(loop_index = self.index, to, error = %e, "could not wake an event loop");
            }
        }
    }
}

/// The socket at `key`'s slot, if it is still `key`'s.
pub(super) fn stream_mut(conns: &mut [Option<Slot>], key: ConnId) -> Option<&mut TcpStream> {
    match conns.get_mut(key.index() as usize) {
        Some(Some(slot)) if slot.key == key => Some(&mut slot.stream),
        _ => None,
    }
}
