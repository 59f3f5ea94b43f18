//! Flow control toward slow subscribers: instead of letting an online subscriber's queue
//! overflow (and drop QoS 1/2 messages), publishers are held back.
//!
//! A session is *congested* when it is online and its queue holds at least
//! [`CONGESTION_HIGH_WATER_PERCENT`] of `max_queued_messages` (or of `max_queued_bytes`),
//! whatever the QoS of the queued messages. While
//! any session on any loop is congested, [`Shard::may_read`](crate::core::Shard::may_read)
//! tells the driver to stop reading every connection that has nothing in flight or queued
//! toward it (the publishers), so TCP holds them back and their PUBACKs wait; connections with
//! messages pending toward them are still read, so their acknowledgements keep the queues
//! moving. A session stops being congested once its queue is under
//! [`CONGESTION_LOW_WATER_PERCENT`], or when it goes offline (an offline session cannot drain:
//! its queue limit applies, with counted and logged drops).
//!
//! What was already read or forwarded between loops when the high-water mark was crossed
//! still arrives (at most one read per connection, and what another loop's mailbox held):
//! a QoS 1/2 message for a session that is holding publishers back is queued even past
//! `max_queued_messages` (counted in `ShardStats::queued_past_limit`; `max_queued_bytes`
//! still applies). Any message that is dropped (QoS 0, an offline or stalled session, the
//! byte limit) is counted and logged (`delivery::enqueue`), never dropped silently.
//!
//! A subscriber that stops acknowledging altogether must not stop the whole broker: a
//! congested session whose queue has not moved for [`CONGESTION_STALL_MS`] is *stalled* and no
//! longer holds anyone back (its queue fills up to its limit, and what is past the limit is
//! dropped, counted and logged, as for an offline session). It holds publishers back again as
//! soon as its queue moves.
//!
//! Each loop keeps its congested sessions in a short list and publishes their count in
//! [`Shared`](crate::core::Shared), so every loop holds its publishers back, not only the
//! subscriber's.

use crate::core::Shard;
use crate::core::session::Session;

/// Queue fill, in percent of `max_queued_messages` or `max_queued_bytes`, at which an online
/// session holds publishers back.
pub const CONGESTION_HIGH_WATER_PERCENT: usize = 25;
/// Queue fill, in percent of the same limits, under which it lets them go again.
pub const CONGESTION_LOW_WATER_PERCENT: usize = 10;

/// How long a congested session's queue may stand still before it stops holding publishers
/// back (a stalled subscriber must not stop every publisher, nor let their keep-alives run out).
pub const CONGESTION_STALL_MS: u64 = 1000;

/// A session on its loop's congested list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Congested {
    /// The session.
    pub session: u32,
    /// When its queue last moved (or it became congested), in loop ms.
    pub progress_ms: u64,
}

/// A limit scaled to `percent`, at least 1.
fn scaled(limit: usize, percent: usize) -> usize {
    (limit.saturating_mul(percent) / 100).max(1)
}

/// Whether `session`'s queue is at or over `percent` of either limit. Queued QoS 0
/// messages count too: holding publishers back for a live subscriber delivers more than
/// reading everything and dropping what its queue cannot take (QoS 0 fan-in, 100 → 1,
/// same run: 1.07 M/s delivered and 14 % dropped with the hold, 0.24 M/s and 83 % without,
/// `docs/benchmarks.md`).
fn filled(shard: &Shard, session: &Session, percent: usize) -> bool {
    let traffic = session.traffic();
    let max_bytes = match shard.config.max_queued_bytes {
        0 => usize::MAX,
        n => n,
    };
    traffic.queue.len() >= scaled(shard.config.max_queued_messages, percent)
        || traffic.queued_bytes >= scaled(max_bytes, percent)
}

/// Whether `session` is online (bound to a live connection).
fn is_online(shard: &Shard, session: &Session) -> bool {
    session.conn.is_some_and(|key| shard.pool.get(key).is_ok())
}

/// After a message was queued for `session_id`: marks it congested if its queue crossed
/// the high-water mark.
pub(crate) fn after_enqueue(shard: &mut Shard, session_id: u32, now_ms: u64) {
    let Some(session) = shard.sessions.get(session_id) else {
        return;
    };
    if session.congested
        || !is_online(shard, session)
        || !filled(shard, session, CONGESTION_HIGH_WATER_PERCENT)
    {
        return;
    }
    if let Some(session) = shard.sessions.get_mut(session_id) {
        session.congested = true;
        tracing::debug!(client = %session.client_id, "subscriber queue over its high-water mark: holding publishers back");
    }
    shard.congested.push(Congested {
        session: session_id,
        progress_ms: now_ms,
    });
    publish_count(shard, now_ms);
}

/// Whether `session_id` is congested and holding publishers back (not stalled).
pub(crate) fn holding(shard: &Shard, session_id: u32, now_ms: u64) -> bool {
    shard.sessions.get(session_id).is_some_and(|s| s.congested)
        && shard
            .congested
            .iter()
            .find(|c| c.session == session_id)
            .is_some_and(|c| now_ms.saturating_sub(c.progress_ms) < CONGESTION_STALL_MS)
}

/// `session_id`'s queue moved (an acknowledgement or a drained output let a message up): if
/// it is congested, it is not stalled.
pub(crate) fn progressed(shard: &mut Shard, session_id: u32, now_ms: u64) {
    if !shard.sessions.get(session_id).is_some_and(|s| s.congested) {
        return;
    }
    if let Some(entry) = shard.congested.iter_mut().find(|c| c.session == session_id) {
        entry.progress_ms = now_ms;
    }
    refresh(shard, now_ms);
}

/// Re-checks the congested sessions (after a queue moved up, and on every tick): those
/// under the low-water mark, offline or gone are released.
pub(crate) fn refresh(shard: &mut Shard, now_ms: u64) {
    if shard.congested.is_empty() {
        return;
    }
    let mut list = std::mem::take(&mut shard.congested);
    list.retain(|&Congested { session: id, .. }| {
        let Some(session) = shard.sessions.get(id) else {
            return false;
        };
        let keep = session.congested
            && is_online(shard, session)
            && filled(shard, session, CONGESTION_LOW_WATER_PERCENT);
        if !keep && let Some(session) = shard.sessions.get_mut(id) {
            session.congested = false;
        }
        keep
    });
    shard.congested = list;
    publish_count(shard, now_ms);
}

/// Tells the other loops how many sessions this loop has congested and not stalled.
fn publish_count(shard: &mut Shard, now_ms: u64) {
    let holding = shard
        .congested
        .iter()
        .filter(|c| now_ms.saturating_sub(c.progress_ms) < CONGESTION_STALL_MS)
        .count();
    if holding != shard.congested_published {
        shard.congested_published = holding;
        shard.shared.set_congested(shard.loop_index, holding);
    }
}
