//! Flow control toward slow subscribers: the publishers that feed a subscriber whose queue
//! is filling are held back (not read, so TCP pushes back on them) for a bounded time,
//! instead of letting its queue overflow. Nobody else is held back.
//!
//! A session is *congested* when it is online and its queue holds at least
//! [`CONGESTION_HIGH_WATER_PERCENT`] of `max_queued_messages` (or of `max_queued_bytes`),
//! whatever the QoS of the queued messages. From then on every message queued for it names
//! its publisher (an [`Origin`]: the loop and connection it was read from), and that
//! publisher is *held*: its loop stops reading it ([`Shard::may_read`]) until the session is
//! released. A publisher whose messages go elsewhere is never held, and a connection with
//! messages in flight or queued toward it is never held (its acknowledgements are what
//! drains queues). The session is released, and with it every publisher it held, when
//!
//! - its queue falls under [`CONGESTION_LOW_WATER_PERCENT`] (a subscriber that keeps up:
//!   nothing is lost), or it goes offline or ends; or
//! - it has held publishers for `max_publisher_hold_ms` without draining (a subscriber too
//!   slow for its publishers): it *overflows*, logged once per client and counted, and until
//!   it has drained under the low-water mark its queue policy applies (a queued QoS 0 message
//!   is dropped first, then the new message; every drop counted and the first logged).
//!
//! What was already read or forwarded between loops when a hold began still arrives (at
//! most the rest of one read per publisher, and what the mailboxes held): while the session
//! holds publishers it is queued even past `max_queued_messages` (counted in
//! `ShardStats::queued_past_limit`; `max_queued_bytes` still applies), so a subscriber that
//! keeps up loses nothing, QoS 0 included.
//!
//! Holds cross loops: a publisher on another loop is held and released by
//! [`Action::Hold`] messages to its loop. A held connection's gate
//! ([`crate::core::gate::Gate`]) counts the sessions holding it and has its own deadline,
//! so a lost release can never hold a publisher longer than `max_publisher_hold_ms`.

use crate::core::session::Session;
use crate::core::{Action, ConnId, Shard};

/// Queue fill, in percent of `max_queued_messages` or `max_queued_bytes`, at which an online
/// session holds its publishers back.
pub const CONGESTION_HIGH_WATER_PERCENT: usize = 25;
/// Queue fill, in percent of the same limits, under which it lets them go again.
pub const CONGESTION_LOW_WATER_PERCENT: usize = 10;

/// Where a message was read: the loop and the publisher's connection there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The publisher's loop.
    pub loop_index: usize,
    /// The publisher's connection on that loop.
    pub conn: ConnId,
}

/// A session on its loop's congested list.
#[derive(Debug, Clone)]
pub(crate) struct Congested {
    /// The session.
    pub session: u32,
    /// When it became congested, in loop ms.
    pub since_ms: u64,
    /// Whether it still holds its publishers (false once `max_publisher_hold_ms` ran out:
    /// it overflows until it drains).
    pub holding: bool,
    /// The publishers it holds.
    pub feeders: Vec<Origin>,
}

/// A limit scaled to `percent`, at least 1.
fn scaled(limit: usize, percent: usize) -> usize {
    (limit.saturating_mul(percent) / 100).max(1)
}

/// Whether `session`'s queue is at or over `percent` of either limit. Queued QoS 0
/// messages count too: holding the publishers of a live subscriber delivers more than
/// reading everything and dropping what its queue cannot take.
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

/// After a message from `origin` was queued for `session_id`: marks the session congested
/// if its queue crossed the high-water mark, and holds `origin` if the session is holding
/// its publishers.
pub(crate) fn after_enqueue(
    shard: &mut Shard,
    session_id: u32,
    origin: Option<Origin>,
    now_ms: u64,
) {
    let Some(session) = shard.sessions.get(session_id) else {
        return;
    };
    if !session.congested {
        if !is_online(shard, session) || !filled(shard, session, CONGESTION_HIGH_WATER_PERCENT) {
            return;
        }
        tracing::debug!(client = %session.client_id, "subscriber queue over its high-water mark: holding its publishers back");
        if let Some(session) = shard.sessions.get_mut(session_id) {
            session.congested = true;
        }
        shard.congested.push(Congested {
            session: session_id,
            since_ms: now_ms,
            holding: true,
            feeders: Vec::new(),
        });
    }
    let Some(origin) = origin else {
        return;
    };
    let Some(entry) = shard.congested.iter_mut().find(|c| c.session == session_id) else {
        return;
    };
    if !entry.holding || entry.feeders.contains(&origin) {
        return;
    }
    entry.feeders.push(origin);
    shard.stats.publishers_held += 1;
    set_hold(shard, origin, true, now_ms);
}

/// Whether `session_id` is congested and holding its publishers back (what reaches it
/// meanwhile was in transit, and is queued past `max_queued_messages`).
pub(crate) fn holding(shard: &Shard, session_id: u32, now_ms: u64) -> bool {
    shard.sessions.get(session_id).is_some_and(|s| s.congested)
        && shard.congested.iter().any(|c| {
            c.session == session_id
                && c.holding
                && now_ms.saturating_sub(c.since_ms) < shard.config.max_publisher_hold_ms
        })
}

/// `session_id`'s queue moved up: if it is congested, check whether it drained.
pub(crate) fn progressed(shard: &mut Shard, session_id: u32, now_ms: u64) {
    if shard.sessions.get(session_id).is_some_and(|s| s.congested) {
        refresh(shard, now_ms);
    }
}

/// Re-checks the congested sessions (after a queue moved up, and on every tick): those
/// under the low-water mark, offline or gone are released; those that held their
/// publishers for `max_publisher_hold_ms` overflow.
pub(crate) fn refresh(shard: &mut Shard, now_ms: u64) {
    if shard.congested.is_empty() {
        return;
    }
    let mut list = std::mem::take(&mut shard.congested);
    list.retain_mut(|entry| {
        let keep = shard.sessions.get(entry.session).is_some_and(|session| {
            session.congested
                && is_online(shard, session)
                && filled(shard, session, CONGESTION_LOW_WATER_PERCENT)
        });
        if !keep {
            if let Some(session) = shard.sessions.get_mut(entry.session) {
                session.congested = false;
            }
            release_all(shard, entry, now_ms);
            return false;
        }
        if entry.holding
            && now_ms.saturating_sub(entry.since_ms) >= shard.config.max_publisher_hold_ms
        {
            overflow(shard, entry, now_ms);
        }
        true
    });
    // Entries added while the list was out (none are: releases only touch gates and
    // actions) would be kept too.
    list.append(&mut shard.congested);
    shard.congested = list;
}

/// A session held its publishers for `max_publisher_hold_ms` without draining: let them go;
/// its queue limit applies from now on.
fn overflow(shard: &mut Shard, entry: &mut Congested, now_ms: u64) {
    entry.holding = false;
    shard.stats.hold_timeouts += 1;
    if let Some(session) = shard.sessions.get_mut(entry.session)
        && !std::mem::replace(&mut session.overflow_logged, true)
    {
        tracing::info!(
            client = %session.client_id,
            held_ms = now_ms.saturating_sub(entry.since_ms),
            publishers = entry.feeders.len(),
            "subscriber too slow for its publishers: they are read again and its queue limit applies (drops counted; logged once per client)"
        );
    }
    release_all(shard, entry, now_ms);
}

fn release_all(shard: &mut Shard, entry: &mut Congested, now_ms: u64) {
    for origin in std::mem::take(&mut entry.feeders) {
        set_hold(shard, origin, false, now_ms);
    }
}

/// Holds or releases the publisher `origin`: here, or through its loop's mailbox.
fn set_hold(shard: &mut Shard, origin: Origin, hold: bool, now_ms: u64) {
    if origin.loop_index == shard.loop_index {
        shard.hold_publisher(origin.conn, hold, now_ms);
    } else {
        shard.actions.push_back(Action::Hold {
            to: origin.loop_index,
            conn: origin.conn,
            hold,
        });
    }
}

/// Sessions of this loop that are congested, and how many of them hold their publishers.
pub(crate) fn counts(shard: &Shard) -> (usize, usize) {
    let holding = shard.congested.iter().filter(|c| c.holding).count();
    (shard.congested.len(), holding)
}
