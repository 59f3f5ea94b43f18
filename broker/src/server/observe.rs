//! A loop's side of monitoring: its numbers on request ([`Control::Snapshot`]) and `$SYS`
//! messages to route ([`Control::PublishSys`]). Both arrive through the loop's mailbox, so
//! the shard is read on its own thread and the hot path carries no shared counters.
//!
//! [`Control::Snapshot`]: super::control::Control::Snapshot
//! [`Control::PublishSys`]: super::control::Control::PublishSys

use super::event_loop::EventLoop;
use crate::monitor::LoopSnapshot;

impl EventLoop {
    /// This loop's numbers now.
    pub(super) fn snapshot(&self) -> LoopSnapshot {
        let (buffers_lent, buffers_idle) = self.shard.buffer_use();
        LoopSnapshot {
            loop_index: self.index,
            stats: self.shard.stats(),
            pool: self.shard.pool_stats(),
            sessions: self.shard.session_counts(),
            subscriptions: self.shard.subscription_count(),
            buffers_lent,
            buffers_idle,
            buffer_bytes: self.shard.config().buffer_bytes,
            sockets: self.conns.iter().flatten().count(),
            outside: self.outside.stats(),
            max_connections: self.shard.config().max_connections,
            retained: self.shard.retained_count(),
        }
    }
}
