//! Sockets a loop holds outside its pool, in a small table of its own:
//!
//! - **Refusing**: a newcomer that found no pool object (the pool full and no connection
//!   awaiting CONNECT to shed, or the process out of descriptors and the newcomer accepted
//!   on the spare one). The loop waits up to [`REFUSAL_CONNECT_WAIT_MS`] for the first bytes
//!   of its CONNECT, answers CONNACK 0x03 (MQTT 5: 0x97) in the client's version, and the
//!   socket lingers.
//! - **Lingering**: a connection the broker closed after a last packet with a reason (a
//!   refusing CONNACK, a DISCONNECT 0x93, 0x8E, ...). What the socket did not take yet is
//!   written, the write side is shut down (FIN), and input is read and discarded until EOF,
//!   `limits.close_linger_timeout_ms` or `limits.close_linger_max_bytes`, whichever comes
//!   first. Closing a socket with unread input makes the kernel send RST, and a client that
//!   is still writing then loses the packet that told it why, unread in its buffer.
//!
//! Neither kind holds a pool object or counts as a connection for any limit. The table
//! holds at most [`OUTSIDE_POOL_MAX_SOCKETS`] per loop: the descriptors are set aside by
//! [`connection_ceiling`](crate::config::sizing::connection_ceiling). When it is full, the
//! entry closest to its deadline is closed first.
//!
//! A socket's mio token is its table index in the high half and [`OUTSIDE_TOKEN_MARK`] in
//! the low half, which no pool slot index reaches (`EventLoop::new` keeps them below it).

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use mio::{Interest, Token};
use slab::Slab;

use super::event_loop::{EventLoop, Peer};
use crate::config::sizing::{MAX_LISTENERS, OUTSIDE_POOL_MAX_SOCKETS};
use crate::core::refusals::{self, Answer, CONNECT_PREFIX_BYTES, Refusal};
use crate::protocol::ReasonCode;
use crate::protocol::v5::UNLIMITED_PACKET_SIZE_BYTES;

/// How long a newcomer refused outside the pool has to send the start of its CONNECT (the
/// protocol name and level: what the answer's version depends on). A client sends CONNECT
/// right after the TCP handshake; one that does not is closed without an answer.
pub const REFUSAL_CONNECT_WAIT_MS: u64 = 2_000;
/// The low half of the tokens of sockets outside the pool: just below the listeners'.
pub const OUTSIDE_TOKEN_MARK: u32 = u32::MAX - MAX_LISTENERS as u32 - 1;

/// The token of table entry `index`.
fn outside_token(index: usize) -> Token {
    Token(((index as u64) << 32 | u64::from(OUTSIDE_TOKEN_MARK)) as usize)
}

/// The table entry a token names, if it is an outside token.
pub(super) fn outside_index(token: Token) -> Option<usize> {
    let raw = token.0 as u64;
    (raw as u32 == OUTSIDE_TOKEN_MARK && raw >> 32 != u64::from(u32::MAX))
        .then_some((raw >> 32) as usize)
}

/// How a lingering socket's time ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LingerEnd {
    /// The client closed its side (what lingering waits for).
    Eof,
    /// `close_linger_timeout_ms` ran out.
    Timeout,
    /// The client sent more than `close_linger_max_bytes`.
    Bytes,
    /// Closed early to make room in a full table, or at the end of a shutdown.
    Evicted,
    /// A socket error.
    Error,
}

impl LingerEnd {
    /// Every end, in the order of [`OutsideStats::linger_ended`].
    pub const ALL: [LingerEnd; 5] = [
        LingerEnd::Eof,
        LingerEnd::Timeout,
        LingerEnd::Bytes,
        LingerEnd::Evicted,
        LingerEnd::Error,
    ];

    /// The name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            LingerEnd::Eof => "eof",
            LingerEnd::Timeout => "timeout",
            LingerEnd::Bytes => "bytes",
            LingerEnd::Evicted => "evicted",
            LingerEnd::Error => "error",
        }
    }
}

/// What a loop's table holds and has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutsideStats {
    /// Newcomers waiting for their CONNECT to be answered, now.
    pub refusing: usize,
    /// Sockets lingering, now.
    pub lingering: usize,
    /// Refusing CONNACKs written outside the pool.
    pub answered: u64,
    /// Sockets that began to linger.
    pub lingered: u64,
    /// Lingering ended, by [`LingerEnd`] (in the order of [`LingerEnd::ALL`]).
    pub linger_ended: [u64; LingerEnd::ALL.len()],
}

enum State {
    /// Waiting for the protocol name and level of a CONNECT.
    Refusing {
        head: [u8; CONNECT_PREFIX_BYTES],
        len: usize,
    },
    /// The last packet (or what the socket did not take of it) to write, then discard.
    Lingering {
        output: Vec<u8>,
        written: usize,
        discarded_bytes: usize,
    },
}

struct Entry {
    stream: TcpStream,
    state: State,
    deadline_ms: u64,
    /// Whether it holds the loop's spare descriptor (given back when it closes).
    spare: bool,
}

/// The table.
#[derive(Default)]
pub struct Outside {
    entries: Slab<Entry>,
    /// No entry's deadline is earlier (`u64::MAX`: empty).
    next_deadline_ms: u64,
    stats: OutsideStats,
}

impl Outside {
    /// Sockets held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Its numbers now.
    pub fn stats(&self) -> OutsideStats {
        let refusing = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Refusing { .. }))
            .count();
        OutsideStats {
            refusing,
            lingering: self.entries.len() - refusing,
            ..self.stats
        }
    }
}

/// What a read turn on an outside socket came to.
enum Step {
    /// Wait for the next event.
    Wait,
    /// Close it: lingering ended, or a refusal that could not be answered.
    Close(Option<LingerEnd>),
}

impl EventLoop {
    /// Holds a newcomer that has no pool object until its CONNECT says which CONNACK it
    /// can read (`head`: bytes of it already read, as a handover brings).
    pub(super) fn hold_refusing(&mut self, stream: TcpStream, head: &[u8], spare: bool) {
        let mut prefix = [0u8; CONNECT_PREFIX_BYTES];
        let len = head.len().min(CONNECT_PREFIX_BYTES);
        prefix[..len].copy_from_slice(&head[..len]);
        let state = State::Refusing { head: prefix, len };
        let deadline_ms = self.now_ms + REFUSAL_CONNECT_WAIT_MS;
        if let Some(index) = self.hold(stream, state, deadline_ms, spare) {
            self.outside_read(index);
        }
    }

    /// Lingers a socket the broker has closed after writing its last packet to it: `rest`
    /// is what the socket has not taken yet.
    pub(super) fn linger(&mut self, stream: TcpStream, rest: Vec<u8>) {
        let timeout_ms = self.shard.config().close_linger_timeout_ms;
        if timeout_ms == 0 || self.shard.config().close_linger_max_bytes == 0 {
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
        if rest.is_empty() {
            let _ = stream.shutdown(Shutdown::Write);
        }
        let state = State::Lingering {
            output: rest,
            written: 0,
            discarded_bytes: 0,
        };
        self.outside.stats.lingered += 1;
        // Registration reports readiness at once: an EOF or input already there is an event.
        let _ = self.hold(stream, state, self.now_ms + timeout_ms, false);
    }

    /// Files a socket in the table (closing the entry nearest its deadline when full) and
    /// registers it. `None` if it could not be registered (it is closed then).
    fn hold(
        &mut self,
        mut stream: TcpStream,
        state: State,
        deadline_ms: u64,
        spare: bool,
    ) -> Option<usize> {
        if self.outside.entries.len() >= OUTSIDE_POOL_MAX_SOCKETS {
            let nearest = self
                .outside
                .entries
                .iter()
                .min_by_key(|(_, e)| e.deadline_ms)
                .map(|(index, _)| index);
            if let Some(index) = nearest {
                self.close_outside(index, Some(LingerEnd::Evicted));
            }
        }
        let index = self.outside.entries.vacant_key();
        let registered = self.poll.registry().register(
            &mut stream,
            outside_token(index),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(error) = registered {
            tracing::warn!(loop_index = self.index, %error, "could not register a socket outside the pool");
            if matches!(state, State::Refusing { .. }) {
                self.shard
                    .refused(Refusal::Unanswered, self.now_ms, &Peer(&stream));
            }
            if spare {
                self.refill_spare();
            }
            return None;
        }
        self.outside.entries.insert(Entry {
            stream,
            state,
            deadline_ms,
            spare,
        });
        self.outside.next_deadline_ms = self.outside.next_deadline_ms.min(deadline_ms);
        Some(index)
    }

    /// A readiness event on table entry `index`.
    pub(super) fn outside_event(&mut self, index: usize, readable: bool, writable: bool) {
        if writable {
            self.outside_write(index);
        }
        if readable {
            self.outside_read(index);
        }
    }

    /// Reads what entry `index` has sent: the start of a CONNECT to answer, or input to
    /// discard.
    fn outside_read(&mut self, index: usize) {
        let step = loop {
            let Some(entry) = self.outside.entries.get_mut(index) else {
                return;
            };
            let n = match entry.stream.read(&mut self.scratch) {
                Ok(0) => break Step::Close(Some(LingerEnd::Eof)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break Step::Close(Some(LingerEnd::Error)),
            };
            match &mut entry.state {
                State::Refusing { head, len } => {
                    let take = n.min(CONNECT_PREFIX_BYTES - *len);
                    head[*len..*len + take].copy_from_slice(&self.scratch[..take]);
                    *len += take;
                    match refusals::answer(&head[..*len]) {
                        Answer::NeedMore => {}
                        Answer::Close => break Step::Close(None),
                        Answer::Connack(version) => {
                            let mut output = Vec::new();
                            let _ = refusals::refusing_connack(
                                &mut output,
                                version,
                                ReasonCode::QuotaExceeded,
                                UNLIMITED_PACKET_SIZE_BYTES,
                            );
                            entry.state = State::Lingering {
                                output,
                                written: 0,
                                discarded_bytes: n - take,
                            };
                            let linger_ms = self.shard.config().close_linger_timeout_ms;
                            entry.deadline_ms = self.now_ms + linger_ms;
                            let deadline_ms = entry.deadline_ms;
                            self.outside.next_deadline_ms =
                                self.outside.next_deadline_ms.min(deadline_ms);
                            self.outside.stats.answered += 1;
                            self.outside.stats.lingered += 1;
                            self.outside_write(index);
                        }
                    }
                }
                State::Lingering {
                    discarded_bytes, ..
                } => {
                    *discarded_bytes += n;
                    if *discarded_bytes > self.shard.config().close_linger_max_bytes {
                        break Step::Close(Some(LingerEnd::Bytes));
                    }
                }
            }
        };
        if let Step::Close(end) = step {
            self.close_outside(index, end);
        }
    }

    /// Writes what entry `index` still has to send; once all is written, shuts down the
    /// write side (the client reads the packet, then EOF).
    fn outside_write(&mut self, index: usize) {
        let Some(entry) = self.outside.entries.get_mut(index) else {
            return;
        };
        let State::Lingering {
            output, written, ..
        } = &mut entry.state
        else {
            return;
        };
        if *written == output.len() {
            return;
        }
        while *written < output.len() {
            match entry.stream.write(&output[*written..]) {
                Ok(0) => break,
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        *output = Vec::new();
        *written = 0;
        let _ = entry.stream.shutdown(Shutdown::Write);
    }

    /// Closes entry `index`. `end` says how lingering ended; `None` is a refusal that
    /// could not be answered.
    fn close_outside(&mut self, index: usize, end: Option<LingerEnd>) {
        let Some(mut entry) = self.outside.entries.try_remove(index) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut entry.stream);
        match (&entry.state, end) {
            (State::Lingering { .. }, Some(end)) => {
                let slot = LingerEnd::ALL.iter().position(|&e| e == end).unwrap_or(0);
                self.outside.stats.linger_ended[slot] += 1;
            }
            _ => self
                .shard
                .refused(Refusal::Unanswered, self.now_ms, &Peer(&entry.stream)),
        }
        drop(entry.stream);
        if entry.spare {
            self.refill_spare();
        }
    }

    /// Closes the entries whose deadline has come; returns the next deadline (`u64::MAX`:
    /// none).
    pub(super) fn expire_outside(&mut self) -> u64 {
        if self.now_ms < self.outside.next_deadline_ms {
            return self.outside.next_deadline_ms;
        }
        let due: Vec<usize> = self
            .outside
            .entries
            .iter()
            .filter(|(_, e)| e.deadline_ms <= self.now_ms)
            .map(|(index, _)| index)
            .collect();
        for index in due {
            self.close_outside(index, Some(LingerEnd::Timeout));
        }
        self.outside.next_deadline_ms = self
            .outside
            .entries
            .iter()
            .map(|(_, e)| e.deadline_ms)
            .min()
            .unwrap_or(u64::MAX);
        self.outside.next_deadline_ms
    }

    /// Closes every entry (the end of a graceful shutdown).
    pub(super) fn close_all_outside(&mut self) {
        let all: Vec<usize> = self.outside.entries.iter().map(|(i, _)| i).collect();
        for index in all {
            self.close_outside(index, Some(LingerEnd::Evicted));
        }
        self.outside.next_deadline_ms = u64::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_tokens_collide_with_nothing_else() {
        for index in [0, 1, OUTSIDE_POOL_MAX_SOCKETS, u32::MAX as usize - 1] {
            assert_eq!(outside_index(outside_token(index)), Some(index));
        }
        assert_eq!(outside_index(super::super::mailbox::WAKER_TOKEN), None);
        for listener in 0..MAX_LISTENERS {
            let token = Token(super::super::mailbox::WAKER_TOKEN.0 - 1 - listener);
            assert_eq!(outside_index(token), None, "listener {listener}");
        }
        // A connection's token: slot index in the low half, below the mark.
        let conn = Token((7u64 << 32 | u64::from(OUTSIDE_TOKEN_MARK - 1)) as usize);
        assert_eq!(outside_index(conn), None);
    }
}
