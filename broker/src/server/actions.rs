//! Carrying out the core's requests: closing a socket, handing one to another loop, and
//! queueing deliveries for other loops.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use super::event_loop::{CLOSE_DRAIN_READS, EventLoop, Peer};
use super::mailbox::Inbound;
use crate::core::{Action, ConnId};

impl EventLoop {
    /// Carries out every action the core has queued.
    pub(super) fn act(&mut self) {
        while let Some(action) = self.shard.poll_action() {
            match action {
                // A forwarded message is recorded before the other loop records its
                // routing (`persist`).
                Action::Forward { .. } | Action::ForwardShared { .. }
                    if self.persister.is_some() =>
                {
                    self.queue_recorded();
                    self.carry_out(action);
                }
                action => self.carry_out(action),
            }
        }
    }

    /// Carries out one action.
    fn carry_out(&mut self, action: Action) {
        match action {
            Action::Close(key) => self.close(key),
            Action::Handover { conn, to, bytes } => self.hand_over(conn, to, bytes),
            Action::Forward {
                to,
                message,
                origin,
            } => {
                let _ = self.send(to, Inbound::Forward(message, origin));
            }
            Action::ForwardShared {
                to,
                pick,
                message,
                origin,
            } => {
                let _ = self.send(to, Inbound::ForwardShared(pick, message, origin));
            }
            Action::Hold { to, conn, hold } => self.send_hold(to, conn, hold),
            Action::Authenticate {
                conn,
                listener,
                username,
                password,
            } => self.authenticate(conn, listener, username, password),
            Action::DelayRefusal { conn } => {
                self.credentials
                    .verifier
                    .refuse_later(self.index, conn, std::time::Instant::now());
            }
        }
    }

    /// Close: the connection's object and its limits' slots are given back at once. With
    /// a last packet in its output (a refusing CONNACK, a DISCONNECT with a reason), the
    /// socket lingers outside the pool until the client has read it (`outside`); without
    /// one it gets FIN, a few reads discard unread input, and it is closed.
    pub(super) fn close(&mut self, key: ConnId) {
        if !self.may_write(key) {
            // What the connection has left waits for the store: it is not written.
            self.forget_held(key);
            let unstored = self.shard.output(key).len();
            self.shard.consume_output(key, unstored, self.now_ms);
        }
        let Some((mut stream, origin, stack)) = self.unregister(key) else {
            self.shard.closed(key, self.now_ms);
            return;
        };
        self.admission.release(origin);
        let last_packet = !self.shard.output(key).is_empty();
        let rest = match stack {
            Some(mut stack) => self.close_layered(key, origin.listener, &mut stack, &mut stream),
            None => self.write_last(key, &mut stream),
        };
        tracing::debug!(loop_index = self.index, conn = %key, peer = %Peer(&stream), "connection closed by the broker");
        self.shard.closed(key, self.now_ms);
        if last_packet || !rest.is_empty() {
            self.linger(stream, rest);
            return;
        }
        let _ = stream.shutdown(Shutdown::Write);
        for _ in 0..CLOSE_DRAIN_READS {
            match stream.read(&mut self.scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    /// Writes what the core holds for `key` to `stream` as far as it takes; returns the rest.
    fn write_last(&mut self, key: ConnId, stream: &mut mio::net::TcpStream) -> Vec<u8> {
        let mut output = self.shard.output(key);
        while !output.is_empty() {
            match stream.write(output) {
                Ok(n) if n > 0 => {
                    self.shard.consume_output(key, n, self.now_ms);
                    output = self.shard.output(key);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        output.to_vec()
    }

    /// Handover: the socket moves to loop `to` (the core has already released `conn`).
    pub(super) fn hand_over(&mut self, conn: ConnId, to: usize, bytes: Vec<u8>) {
        let Some((stream, origin, stack)) = self.unregister(conn) else {
            return;
        };
        tracing::debug!(loop_index = self.index, conn = %conn, peer = %Peer(&stream), to, "connection handed over");
        if let Err(Inbound::Handover { origin, .. }) = self.send(
            to,
            Inbound::Handover {
                stream,
                origin,
                stack,
                bytes,
            },
        ) {
            self.admission.release(origin);
        }
    }

    /// Holds or releases loop `to`'s publisher `conn` (`core::flow`): flagged urgent, so
    /// that a loop busy reading that publisher stops before its next read, not after its
    /// turn.
    fn send_hold(&mut self, to: usize, conn: ConnId, hold: bool) {
        let Some(peer) = self.peers.get(to) else {
            return;
        };
        if peer.send_urgent(Inbound::Hold(conn, hold)).is_ok()
            && let Some(flag) = self.wake.get_mut(to)
        {
            *flag = true;
        }
    }

    /// Queues a delivery for loop `to`; the wake is sent once per turn. Gives the delivery
    /// back if the loop is gone (it has shut down, or failed).
    pub(super) fn send(&mut self, to: usize, inbound: Inbound) -> Result<(), Inbound> {
        let Some(peer) = self.peers.get(to) else {
            tracing::error!(loop_index = self.index, to, "no such event loop");
            return Err(inbound);
        };
        if let Err(inbound) = peer.send(inbound) {
            tracing::debug!(
                loop_index = self.index,
                to,
                "event loop is gone; delivery dropped"
            );
            return Err(inbound);
        }
        if let Some(flag) = self.wake.get_mut(to) {
            *flag = true;
        }
        Ok(())
    }
}
