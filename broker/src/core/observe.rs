//! What the monitoring side (`crate::monitor`) reads from a shard, and the one thing it
//! writes: `$SYS` messages.
//!
//! The hot path only bumps plain `u64` fields of [`ShardStats`] (no atomics, nothing
//! shared): [`count_packet_in`] once per complete frame, [`count_packet_out`] once per
//! packet written into a connection's output. Everything else here runs when a scrape or a
//! `$SYS` round asks, on the loop's own thread.

use crate::core::{Shard, ShardStats, routing};
use crate::protocol::{PublishRef, QoS};

/// The PUBLISH packet type (fixed header high nibble).
const PUBLISH_TYPE: usize = 3;
/// The CONNECT packet type.
const CONNECT_TYPE: u8 = 1;

/// Counts one complete frame received (`frame` starts at its fixed header).
#[inline]
pub(crate) fn count_packet_in(stats: &mut ShardStats, frame: &[u8]) {
    let Some(&first) = frame.first() else {
        return;
    };
    let kind = usize::from(first >> 4);
    stats.packets_in[kind] += 1;
    if kind == PUBLISH_TYPE {
        // QoS 3 is malformed and refused by the decoder; it is not counted by QoS.
        if let Some(n) = stats
            .publish_received_by_qos
            .get_mut(usize::from((first >> 1) & 3))
        {
            *n += 1;
        }
    }
}

/// Takes back the count of a CONNECT (and the bytes from it on) that is handed over to
/// another loop: that loop receives and counts them again.
pub(crate) fn uncount_handed_over(stats: &mut ShardStats, replayed: &[u8]) {
    stats.packets_in[usize::from(CONNECT_TYPE)] =
        stats.packets_in[usize::from(CONNECT_TYPE)].saturating_sub(1);
    stats.bytes_in = stats.bytes_in.saturating_sub(replayed.len() as u64);
}

/// Counts one packet written into an output buffer, from its first byte.
#[inline]
pub(crate) fn count_packet_out(stats: &mut ShardStats, first: Option<u8>) {
    let Some(first) = first else {
        return;
    };
    let kind = usize::from(first >> 4);
    stats.packets_out[kind] += 1;
    if kind == PUBLISH_TYPE
        && let Some(n) = stats
            .publish_sent_by_qos
            .get_mut(usize::from((first >> 1) & 3))
    {
        *n += 1;
    }
}

/// What one loop's sessions hold, counted on demand (a pass over the sessions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Sessions, online and offline.
    pub sessions: usize,
    /// Sessions with a live connection.
    pub online: usize,
    /// QoS 1/2 messages in flight (sent, not yet acknowledged).
    pub inflight: usize,
    /// Messages waiting in session queues.
    pub queued: usize,
    /// Bytes (topic + payload) of the queued messages.
    pub queued_bytes: usize,
}

impl Shard {
    /// Counts sessions and the messages they hold (O(sessions): for scrapes, not packets).
    pub fn session_counts(&self) -> SessionCounts {
        let mut counts = SessionCounts {
            sessions: self.sessions.len(),
            ..SessionCounts::default()
        };
        for session in self.sessions.iter() {
            if session.conn.is_some() {
                counts.online += 1;
            }
            let traffic = session.traffic();
            counts.inflight += traffic.inflight.len();
            counts.queued += traffic.queue.len();
            counts.queued_bytes += traffic.queued_bytes;
        }
        counts
    }

    /// Retained messages (shared by every loop).
    pub fn retained_count(&self) -> usize {
        self.shared.retained.lock().map_or(0, |store| store.len())
    }

    /// Publishes a broker status message: retained, QoS 0, routed like any PUBLISH (this
    /// loop's subscribers, the retained store, and every other loop with subscribers), so
    /// `$SYS/#` subscribers get it wherever they are. `topic` must be a valid topic name;
    /// one that is not is logged and dropped.
    pub fn publish_sys(&mut self, topic: &str, payload: &[u8], now_ms: u64) {
        if crate::topic::validate_topic_name(topic).is_err() {
            tracing::error!(topic, "not a valid $SYS topic name; not published");
            return;
        }
        let publish = PublishRef {
            topic,
            payload,
            qos: QoS::AtMostOnce,
            retain: true,
            dup: false,
            packet_id: None,
        };
        routing::route_local_publish(self, &publish, now_ms);
    }
}
