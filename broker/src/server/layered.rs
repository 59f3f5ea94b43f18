//! The loop's side of connections with transport layers (TLS, WebSocket: `transport`):
//! reading through the stack to the core, writing the core's output through it, and what a
//! failed handshake does (counted by listener and reason, logged, only that connection
//! closed).

use std::io;

use super::event_loop::{EventLoop, Gone};
use super::transport::stats::Failure;
use super::transport::{MQTT_CHUNK_BYTES, Progress, Stack, TransportError};
use crate::core::ConnId;

impl EventLoop {
    /// Whether `key` has transport layers.
    pub(super) fn layered(&self, key: ConnId) -> bool {
        matches!(
            self.conns.get(key.index() as usize),
            Some(Some(slot)) if slot.key == key && slot.stack.is_some()
        )
    }

    /// The index of the listener that accepted `key`.
    fn listener_of(&self, key: ConnId) -> Option<u8> {
        match self.conns.get(key.index() as usize) {
            Some(Some(slot)) if slot.key == key => Some(slot.origin.listener),
            _ => None,
        }
    }

    fn stack_mut(&mut self, key: ConnId) -> Option<&mut Stack> {
        match self.conns.get_mut(key.index() as usize) {
            Some(Some(slot)) if slot.key == key => slot.stack.as_deref_mut(),
            _ => None,
        }
    }

    /// Feeds `range` of the scratch buffer (bytes just read from `key`'s socket) through
    /// its stack; the MQTT bytes go to the core, answers (handshake, pongs) to the socket.
    /// `false`: the connection is closed.
    pub(super) fn read_layered(&mut self, key: ConnId, range: std::ops::Range<usize>) -> bool {
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let mut between = std::mem::take(&mut self.between);
        let outcome = match (
            self.conns.get_mut(key.index() as usize),
            self.scratch.get(range),
        ) {
            (Some(Some(slot)), Some(wire)) if slot.key == key => match slot.stack.as_mut() {
                Some(stack) => stack.read_wire(wire, &mut between, &mut plain),
                None => Ok(Progress::default()),
            },
            _ => Ok(Progress::default()),
        };
        // Before the first MQTT byte: the certificate's name must be known at CONNECT.
        if matches!(outcome, Ok(Progress { established: true })) {
            self.established(key);
        }
        // What was decoded goes to the core even when the read also ended the transport:
        // a client's last packets (a PUBLISH, then DISCONNECT) often share a read with its
        // TLS close_notify.
        if !plain.is_empty() {
            super::pacing::receive_under(&mut self.shard, &self.pacing, key, &plain, self.now_ms);
        }
        let open = match outcome {
            Ok(_) => {
                self.flush_layered(key);
                true
            }
            Err(error) => {
                // The core may have closed the connection already (after a DISCONNECT).
                self.act();
                if self.layered(key) {
                    match error {
                        TransportError::Closed => {
                            // The answer to the client's close (a close frame, TLS
                            // close_notify) goes out first, as far as the socket takes it.
                            self.flush_layered(key);
                            if self.layered(key) {
                                self.gone(key, Gone::PeerClosed);
                            }
                        }
                        TransportError::Failed(failure, detail) => {
                            self.transport_failed(key, failure, &detail)
                        }
                    }
                }
                false
            }
        };
        // Keep the buffers' capacity for the next read, unless a large read grew them.
        if plain.capacity() <= super::event_loop::READ_SCRATCH_BYTES {
            self.plain = plain;
        }
        if between.capacity() <= super::event_loop::READ_SCRATCH_BYTES {
            between.clear();
            self.between = between;
        }
        open
    }

    /// The handshake of `key` is done: its duration is counted and, on a listener that
    /// takes the client certificate's name as the user name, the core is told the name.
    fn established(&mut self, key: ConnId) {
        let Some(listener) = self.listener_of(key) else {
            return;
        };
        let (micros, resumed, identity) = match self.stack_mut(key) {
            Some(stack) => (
                stack.handshake_us(),
                stack.resumed(),
                stack.identity().map(Box::<str>::from),
            ),
            None => return,
        };
        if let Some(stats) = self.transport_stats.listener(usize::from(listener)) {
            stats.handshake(micros, resumed);
        }
        if let Some(identity) = identity {
            self.shard.set_identity(key, identity);
        }
    }

    /// A handshake or frame `key`'s stack refused: counted, logged, the connection closed
    /// (after whatever the stack has to say: a TLS alert, an HTTP error, a close frame).
    fn transport_failed(&mut self, key: ConnId, failure: Failure, detail: &str) {
        if let Some(stats) = self
            .listener_of(key)
            .and_then(|l| self.transport_stats.listener(usize::from(l)))
        {
            stats.failed(failure);
        }
        let peer = self
            .conns
            .get(key.index() as usize)
            .and_then(|s| s.as_ref())
            .map(|s| s.origin.peer());
        match peer {
            Some(peer) => {
                tracing::info!(%peer, reason = failure.label(), %detail, "transport refused")
            }
            None => tracing::info!(reason = failure.label(), %detail, "transport refused"),
        }
        self.close(key);
    }

    /// Writes `key`'s stack output, feeding it the core's output one chunk at a time once
    /// the stack has written what it held, until the socket would block or nothing is left.
    pub(super) fn flush_layered(&mut self, key: ConnId) {
        if self.put_off_write(key) || !self.may_write(key) {
            return;
        }
        loop {
            let Some(slot) = self
                .conns
                .get_mut(key.index() as usize)
                .and_then(|s| s.as_mut())
                .filter(|s| s.key == key)
            else {
                return;
            };
            let Some(stack) = slot.stack.as_mut() else {
                return;
            };
            if stack.wants_write() {
                match stack.write_wire(&mut slot.stream) {
                    Ok(0) => {
                        self.gone(key, Gone::WriteZero);
                        return;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.gone(key, Gone::Error(&e));
                        return;
                    }
                }
            }
            if !stack.established() {
                return;
            }
            let output = self.shard.output(key);
            if output.is_empty() {
                return;
            }
            let n = output.len().min(MQTT_CHUNK_BYTES);
            stack.write_mqtt(&output[..n]);
            self.shard.consume_output(key, n, self.now_ms);
        }
    }

    /// At close: the core's last output through `stack`, then its closing (TLS
    /// close_notify), written to `stream` as far as it takes; returns what is left.
    pub(super) fn close_layered(
        &mut self,
        key: ConnId,
        listener: u8,
        stack: &mut Stack,
        stream: &mut mio::net::TcpStream,
    ) -> Vec<u8> {
        if stack.established() {
            loop {
                let output = self.shard.output(key);
                if output.is_empty() {
                    break;
                }
                let n = output.len();
                stack.write_mqtt(output);
                self.shard.consume_output(key, n, self.now_ms);
            }
            stack.close();
        } else if let Some(stats) = self.transport_stats.listener(usize::from(listener))
            && !stack.failed()
        {
            // Closed by the core before the handshake was done: its connect timeout.
            stats.failed(Failure::Timeout);
        }
        while stack.wants_write() {
            match stack.write_wire(stream) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        stack.take_wire()
    }
}
