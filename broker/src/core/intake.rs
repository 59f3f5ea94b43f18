//! How much a loop takes in, measured by what it has to send out. The core counts the output
//! all connections have waiting for their sockets ([`Shard::output_backlog_bytes`]); the
//! driver may set a limit on it ([`Shard::set_output_backlog_limit_bytes`]), over which a
//! read stops before its next PUBLISH (at least one packet is handled per read, so a read
//! always makes progress). The rest of the read waits in the connection's input buffer
//! ([`Shard::has_whole_packet`]) until the driver feeds the connection again, with no new
//! bytes if need be ([`Shard::resume`]). Without a limit (the default) every whole packet
//! of a read is handled, as always.

use crate::core::{ConnId, Shard, input};
use crate::protocol::check_frame_for;

impl Shard {
    /// Output bytes this loop's connections have waiting for their sockets, all together.
    pub fn output_backlog_bytes(&self) -> usize {
        self.output_backlog_bytes
    }

    /// Over `bytes` of output backlog, reads stop before their next PUBLISH
    /// (`usize::MAX`: never).
    pub fn set_output_backlog_limit_bytes(&mut self, bytes: usize) {
        self.output_backlog_limit_bytes = bytes;
    }

    /// Whether a read should stop before the PUBLISH it is at.
    pub(crate) fn over_output_backlog_limit(&self) -> bool {
        self.output_backlog_bytes > self.output_backlog_limit_bytes
    }

    /// Whether `conn` has a whole packet read but not handled yet (its read stopped at the
    /// backlog limit).
    pub fn has_whole_packet(&self, conn: ConnId) -> bool {
        let Ok(c) = self.pool.get(conn) else {
            return false;
        };
        if c.input.is_empty() {
            return false;
        }
        check_frame_for(c.version, &c.input, self.config.max_packet_size_bytes)
            .is_ok_and(|header| header.frame_len() <= c.input.len())
    }

    /// Handles the packets `conn` has read but not handled yet, up to the backlog limit.
    pub fn resume(&mut self, conn: ConnId, now_ms: u64) {
        // Only then: feeding no bytes to an idle connection would count as hearing from it.
        if self.has_whole_packet(conn) {
            input::receive(self, conn, &[], now_ms);
        }
    }
}
