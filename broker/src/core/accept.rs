//! Accepting connections, and shedding those still awaiting their CONNECT when the pool is
//! full: the oldest go first (the accept-order list `Shard::awaiting`), their objects
//! recycled for newcomers or released for the driver's descriptor.

use crate::core::conn::Phase;
use crate::core::refusals::Refusal;
use crate::core::{Action, ConnId, Shard};

impl Shard {
    /// A new connection: draws its object from the pool and starts its connect timeout.
    /// When the pool is at its hard limit, the connection accepted longest ago that is
    /// still awaiting its CONNECT is shed to make room (its object recycled for the
    /// newcomer, its socket closed by an [`Action::Close`] that the driver must carry out
    /// before it files the newcomer's socket). `None` when there is none to shed: the
    /// driver answers the newcomer outside the pool.
    pub fn accept(&mut self, now_ms: u64) -> Option<ConnId> {
        let key = if self.pool.active() >= self.pool.config().max_live_objects {
            self.shed_for_newcomer(now_ms)?
        } else {
            self.pool.acquire().ok()?
        };
        self.stats.accepted += 1;
        if let Ok(conn) = self.pool.get_mut(key) {
            conn.last_seen_ms = now_ms;
        }
        self.arm_timer(key, now_ms + self.config.connect_timeout_ms);
        self.awaiting.push_back(key);
        self.prune_awaiting();
        Some(key)
    }

    /// Drops the entries at the front of the accept-order list whose connections have sent
    /// CONNECT or closed since (after a burst of connects, all of them: the list holds
    /// nothing for idle clients, and its capacity goes at the next shrink).
    pub(crate) fn prune_awaiting(&mut self) {
        while let Some(&front) = self.awaiting.front() {
            if self.is_awaiting_connect(front) {
                break;
            }
            self.awaiting.pop_front();
        }
    }

    /// Whether `key` is a live connection that has not sent CONNECT yet.
    fn is_awaiting_connect(&self, key: ConnId) -> bool {
        self.pool
            .get(key)
            .is_ok_and(|c| c.phase == Phase::AwaitingConnect)
    }

    /// Sheds the oldest connection still awaiting CONNECT: its object, reset, under a new
    /// key for the newcomer. `None` if no connection awaits CONNECT.
    fn shed_for_newcomer(&mut self, now_ms: u64) -> Option<ConnId> {
        while let Some(victim) = self.shed_victim(now_ms) {
            if let Ok(key) = self.pool.recycle(victim, now_ms) {
                return Some(key);
            }
        }
        None
    }

    /// Sheds the oldest connection still awaiting CONNECT, its object back to the pool (the
    /// driver needs its descriptor, not its object). Whether there was one.
    pub fn shed_oldest_awaiting(&mut self, now_ms: u64) -> bool {
        let Some(victim) = self.shed_victim(now_ms) else {
            return false;
        };
        let _ = self.pool.release(victim, now_ms);
        true
    }

    /// The oldest connection still awaiting CONNECT, with its buffers returned, counted as
    /// shed and its socket's close asked of the driver; its object is the caller's to
    /// recycle or release.
    fn shed_victim(&mut self, now_ms: u64) -> Option<ConnId> {
        while let Some(victim) = self.awaiting.pop_front() {
            if !self.is_awaiting_connect(victim) {
                continue;
            }
            let Ok(conn) = self.pool.get_mut(victim) else {
                continue;
            };
            // Invariant: before CONNECT a connection holds no session, will or slot of the
            // connection count: giving its object away leaves nothing behind.
            debug_assert!(!conn.counted && conn.session == u32::MAX && conn.will.is_none());
            self.return_buffers(victim);
            self.refused(Refusal::ShedBeforeConnect, now_ms, &victim);
            self.actions.push_back(Action::Close(victim));
            return Some(victim);
        }
        None
    }
}
