//! Accepting: new sockets from the listeners (after the admission limits) and sockets
//! handed over by other loops.

use std::io;

use mio::net::TcpStream;

use super::admission::Origin;
use super::event_loop::{ACCEPT_WARNING_INTERVAL_MS, EventLoop, MAX_ACCEPTS_PER_TURN, Peer};

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

    /// A socket fresh from listener `listener`'s `accept`. The per-IP and per-listener
    /// limits are checked first: a refused socket is closed before it costs a pool object,
    /// and the refusal is counted and logged at most once per interval (no log flood).
    fn adopt_new(&mut self, stream: TcpStream, peer: std::net::SocketAddr, listener: usize) {
        let origin = Origin {
            ip: peer.ip(),
            listener: u8::try_from(listener).unwrap_or(u8::MAX),
        };
        if let Err(refusal) = self.admission.admit(origin) {
            self.shard.record_refusal(refusal);
            self.refusal_log
                .refused(self.index, self.now_ms, refusal, peer);
            return; // dropping the stream closes it
        }
        let _ = stream.set_nodelay(true);
        let Some(key) = self.shard.accept(self.now_ms) else {
            self.admission.release(origin);
            tracing::info!(loop_index = self.index, %peer, "connection refused: pool at its limit");
            return;
        };
        match self.register(key, stream, origin) {
            Ok(()) => {
                tracing::debug!(loop_index = self.index, conn = %key, %peer, "connection accepted");
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

    /// A socket handed over by another loop, with the CONNECT (and what followed) to replay.
    pub(super) fn adopt_handover(&mut self, stream: TcpStream, origin: Origin, bytes: &[u8]) {
        let Some(key) = self.shard.accept(self.now_ms) else {
            self.admission.release(origin);
            tracing::info!(loop_index = self.index, peer = %Peer(&stream), "handed-over connection refused: pool at its limit");
            return;
        };
        let peer = Peer(&stream).to_string_if_debug();
        if let Err(e) = self.register(key, stream, origin) {
            tracing::warn!(loop_index = self.index, error = %e, "could not register a handed-over connection");
            self.admission.release(origin);
            self.shard.closed(key, self.now_ms);
            return;
        }
        tracing::debug!(loop_index = self.index, conn = %key, peer = %peer, "connection received from another loop");
        self.shard.receive(key, bytes, self.now_ms);
        self.act();
    }
}
