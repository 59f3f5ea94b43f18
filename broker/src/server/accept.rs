//! Accepting: new sockets from the listeners (after the admission limits) and sockets
//! handed over by other loops.
//!
//! At a ceiling a newcomer is still accepted wherever a socket can be: when the pool is
//! full, the core sheds the oldest connection still awaiting its CONNECT to make room
//! (`Shard::accept`); when there is none to shed, the newcomer is held outside the pool and
//! answered CONNACK 0x03 / 0x97 (`outside`). When the process is out of descriptors, the
//! loop gives up its spare one to accept the next newcomer, sheds a connection awaiting
//! CONNECT if there is one (which frees a descriptor for the spare again) and otherwise
//! answers the newcomer on the spare.

use std::io;

use mio::net::TcpStream;

use super::admission::Origin;
use super::event_loop::{ACCEPT_WARNING_INTERVAL_MS, EventLoop, MAX_ACCEPTS_PER_TURN};
use crate::core::refusals::Refusal;

/// What the spare descriptor is opened on.
const SPARE_PATH: &str = "/dev/null";

/// Opens the loop's spare descriptor (`None` where it cannot be: the loop then leaves
/// newcomers in the backlog when out of descriptors, and retries).
pub(super) fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open(SPARE_PATH).ok()
}

/// Whether `error` says the process (or the system) has no descriptor left.
fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl EventLoop {
    /// Accepts from listener `i` until it would block, or [`MAX_ACCEPTS_PER_TURN`] (the
    /// rest on the next turn, after the other sockets' events: a flood of connections
    /// arriving faster than the loop accepts them must not keep it from its clients).
    pub(super) fn accept_all(&mut self, i: usize) {
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.adopt_new(stream, peer, i),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) if out_of_descriptors(&e) && self.spare.is_some() => {
                    // Give up the spare to take one newcomer; the rest of the backlog
                    // waits for descriptors to come back (shortly retried).
                    self.spare = None;
                    self.accept_retry = true;
                    match self.listeners.get(i).map(|l| l.accept()) {
                        Some(Ok((stream, peer))) => self.adopt_on_spare(stream, peer, i),
                        _ => self.refill_spare(),
                    }
                    return;
                }
                Err(e) => {
                    // Out of descriptors or memory: leave the queued connections in the
                    // backlog and try again shortly.
                    self.accept_retry = true;
                    let due = self
                        .last_accept_warning_ms
                        .is_none_or(|at| self.now_ms >= at + ACCEPT_WARNING_INTERVAL_MS);
                    if due {
                        self.last_accept_warning_ms = Some(self.now_ms);
                        tracing::warn!(loop_index = self.index, error = %e, "accept failed; retrying");
                    }
                    return;
                }
            }
        }
        self.accept_more = true;
    }

    /// Reopens the spare descriptor if it is given up (a descriptor has come back).
    pub(super) fn refill_spare(&mut self) {
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }

    /// A newcomer accepted on the spare descriptor: a connection awaiting CONNECT is shed
    /// for it if there is one (its descriptor goes back to the spare), else it is answered
    /// outside the pool on the spare.
    fn adopt_on_spare(&mut self, stream: TcpStream, peer: std::net::SocketAddr, listener: usize) {
        self.shard.refused(Refusal::Descriptors, self.now_ms, &peer);
        if self.shard.shed_oldest_awaiting(self.now_ms) {
            self.act();
            self.refill_spare();
            self.adopt_new(stream, peer, listener);
        } else {
            self.hold_refusing(stream, &[], true);
        }
    }

    /// A socket fresh from listener `listener`'s `accept`. The per-IP and per-listener
    /// limits are checked first: a refused socket is closed before it costs a pool object,
    /// and the refusal is counted and logged as a summary (no log flood). On a listener
    /// with `proxy_protocol` the per-IP limit waits for the PROXY header (`proxy`).
    fn adopt_new(&mut self, stream: TcpStream, peer: std::net::SocketAddr, listener: usize) {
        let origin = Origin {
            ip: peer.ip(),
            port: peer.port(),
            listener: u8::try_from(listener).unwrap_or(u8::MAX),
        };
        let proxy = self.proxy_listeners.get(listener).copied().unwrap_or(false);
        let admitted = if proxy {
            self.admission.admit_proxied(origin)
        } else {
            self.admission.admit(origin)
        };
        if let Err(refusal) = admitted {
            self.shard.refused(refusal.into(), self.now_ms, &peer);
            return; // dropping the stream closes it
        }
        let _ = stream.set_nodelay(true);
        let stack = self
            .transports
            .get(listener)
            .and_then(super::transport::Stack::new);
        let Some(key) = self.accept_object() else {
            self.admission.release(origin);
            self.shard.refused(Refusal::PoolLimit, self.now_ms, &peer);
            if stack.is_none() && !proxy {
                self.hold_refusing(stream, &[], false);
            }
            // A TLS or WebSocket client cannot read a CONNACK before its handshake, nor a
            // proxied one before its PROXY header is read: it is closed (dropping the
            // stream).
            return;
        };
        if let Some(stats) = self.transport_stats.listener(listener) {
            stats.accepted();
        }
        match self.register(key, stream, origin, proxy, stack) {
            Ok(()) => {
                tracing::debug!(loop_index = self.index, conn = %key, %peer, "connection accepted");
                self.shard.note_peer(key, peer);
                // Read the CONNECT now if it is already here: a refused or handed-over
                // connection then gives its pool object back at once, instead of a whole
                // accept burst (up to the backlog) holding objects until the next poll.
                self.read(key);
            }
            Err(e) => {
                tracing::warn!(loop_index = self.index, %peer, error = %e, "could not register a connection");
                self.admission.release(origin);
                self.shard.closed(key, self.now_ms);
            }
        }
    }

    /// A pool object for a newcomer (`Shard::accept`). A connection shed to make room is
    /// closed now, before the newcomer's socket is filed in the slot it may share.
    fn accept_object(&mut self) -> Option<crate::core::ConnId> {
        let key = self.shard.accept(self.now_ms);
        self.act();
        key
    }

    /// A socket handed over by another loop, with the CONNECT (and what followed) to replay.
    pub(super) fn adopt_handover(
        &mut self,
        stream: TcpStream,
        origin: Origin,
        stack: Option<Box<super::transport::Stack>>,
        bytes: &[u8],
    ) {
        let Some(key) = self.accept_object() else {
            self.admission.release(origin);
            self.shard
                .refused(Refusal::PoolLimit, self.now_ms, &origin.peer());
            if stack.is_none() {
                self.hold_refusing(stream, bytes, false);
            }
            return;
        };
        let peer = origin.peer();
        let identity = stack
            .as_ref()
            .and_then(|s| s.identity())
            .map(Box::<str>::from);
        // The PROXY header, if any, was read by the loop that accepted the socket, and the
        // stack's handshakes are done.
        if let Err(e) = self.register(key, stream, origin, false, stack) {
            tracing::warn!(loop_index = self.index, error = %e, "could not register a handed-over connection");
            self.admission.release(origin);
            self.shard.closed(key, self.now_ms);
            return;
        }
        tracing::debug!(loop_index = self.index, conn = %key, peer = %peer, "connection received from another loop");
        self.shard.note_peer(key, peer);
        if let Some(identity) = identity {
            self.shard.set_identity(key, identity);
        }
        self.shard.receive(key, bytes, self.now_ms);
        self.act();
        // Whatever the stack or the core has to say (the CONNACK) goes out now.
        self.flush(key);
    }
}
