//! The peer addresses of connections that have not connected yet, for the one log line
//! each client gets when its CONNECT is accepted.
//!
//! The core never sees a socket: the driver tells it a new connection's peer
//! ([`crate::core::Shard::note_peer`]). Only connections awaiting their CONNECT are kept
//! here (an entry is taken when the CONNECT is accepted, and dropped when the connection
//! ends or moves to another loop), so an idle connected client costs nothing for it; a flood
//! of sockets that never send CONNECT costs one entry each until they are shed or time out.

use std::collections::HashMap;
use std::net::SocketAddr;

use starling_pool::Key;

use crate::core::conn::Phase;
use crate::core::{ConnId, Shard};

/// An empty book larger than this (entries it has room for) gives its memory back.
const KEEP_CAPACITY_ENTRIES: usize = 1024;

/// Peer addresses by connection, while the connection awaits its CONNECT.
#[derive(Debug, Default)]
pub struct PeerBook {
    peers: HashMap<Key, SocketAddr>,
}

impl PeerBook {
    /// Notes `key`'s peer.
    pub fn note(&mut self, key: Key, peer: SocketAddr) {
        self.peers.insert(key, peer);
    }

    /// Takes `key`'s peer (its CONNECT was accepted, or it ended).
    pub fn take(&mut self, key: Key) -> Option<SocketAddr> {
        let peer = self.peers.remove(&key);
        if self.peers.is_empty() && self.peers.capacity() > KEEP_CAPACITY_ENTRIES {
            self.peers = HashMap::new();
        }
        peer
    }

    /// `key`'s peer, if noted.
    pub fn get(&self, key: Key) -> Option<SocketAddr> {
        self.peers.get(&key).copied()
    }

    /// Connections with a noted peer.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is noted.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// A peer address for a log line: the address, or `-` where the driver gave none (the
/// simulated transport, the tests' in-memory network).
pub struct PeerText(pub Option<SocketAddr>);

impl std::fmt::Display for PeerText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("-"),
        }
    }
}

impl Shard {
    /// The driver's word on a new connection's peer address (kept until its CONNECT is
    /// accepted, for the connect log line).
    pub fn note_peer(&mut self, key: ConnId, peer: SocketAddr) {
        if self
            .pool
            .get(key)
            .is_ok_and(|c| c.phase == Phase::AwaitingConnect)
        {
            self.peers.note(key, peer);
        }
    }

    /// The client id of `key` if it is connected (bound to its session).
    pub fn connected_client(&self, key: ConnId) -> Option<&str> {
        let conn = self.pool.get(key).ok()?;
        if conn.phase != Phase::Connected {
            return None;
        }
        self.sessions
            .get(conn.session)
            .filter(|s| s.conn == Some(key))
            .map(|s| &*s.client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_kept_until_taken_and_a_large_empty_book_shrinks() {
        let mut book = PeerBook::default();
        let addr: SocketAddr = "127.0.0.1:5000".parse().expect("address");
        for i in 0..5000u64 {
            book.note(Key::from_u64(i), addr);
        }
        assert_eq!(book.take(Key::from_u64(7)), Some(addr));
        assert_eq!(book.take(Key::from_u64(7)), None);
        for i in 0..5000u64 {
            book.take(Key::from_u64(i));
        }
        assert!(book.is_empty());
        assert!(book.peers.capacity() <= KEEP_CAPACITY_ENTRIES);
        assert_eq!(PeerText(None).to_string(), "-");
        assert_eq!(PeerText(Some(addr)).to_string(), "127.0.0.1:5000");
    }
}
