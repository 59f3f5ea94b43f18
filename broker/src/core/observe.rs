//! What the monitoring side (`crate::monitor`) reads from a shard, and the one thing it
//! writes: `$SYS` messages.
//!
//! The hot path only bumps plain `u64` fields of [`ShardStats`] (no atomics, nothing
//! shared, no branch): one [`PacketCounts`] increment per complete frame received and one
//! per packet written into a connection's output, indexed by the packet's first byte. Everything else here runs when a scrape or a
//! `$SYS` round asks, on the loop's own thread.

use crate::core::{Shard, routing};
use crate::protocol::{PublishRef, QoS};

/// Counters of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Newcomers refused at the pool's hard limit with no connection to shed (the driver
    /// answers them outside the pool).
    pub refused_at_pool_limit: u64,
    /// Newcomers accepted on the spare descriptor when the process was out of them.
    pub refused_descriptors: u64,
    /// Newcomers refused outside the pool and closed without a CONNACK (no CONNECT in time,
    /// not a CONNECT, or no room to hold them).
    pub refused_unanswered: u64,
    /// Connections on a `proxy_protocol` listener closed for a missing, malformed or
    /// oversize PROXY header.
    pub closed_proxy_header: u64,
    /// Connections idle before CONNECT closed to give their object to a newcomer.
    pub shed_before_connect: u64,
    /// CONNECTs refused with CONNACK 0x03 at the connection limit.
    pub refused_at_max_connections: u64,
    /// CONNECTs refused for a protocol reason.
    pub refused_connect: u64,
    /// Connections handed to another loop.
    pub handed_over: u64,
    /// Connections closed for bad input (malformed, protocol error, too large).
    pub closed_bad_input: u64,
    /// Connections closed by keep-alive or connect timeout.
    pub closed_timeout: u64,
    /// PUBLISH packets received.
    pub publish_received: u64,
    /// PUBLISH packets sent.
    pub publish_sent: u64,
    /// Messages not delivered to a session whose subscription matched them, for any reason
    /// (the sum of the `dropped_*` counters, [`DropReason`]).
    pub dropped: u64,
    /// Wills published.
    pub wills_published: u64,
    // Refusals by reason (each also logged once per client). The first two are decided by
    // the driver at accept, before the core sees the connection ([`Shard::record_refusal`]).
    /// Connections closed at accept: the source IP holds `max_connections_per_ip`.
    pub refused_per_ip: u64,
    /// Connections closed at accept: their listener holds its `max_connections`.
    pub refused_listener_max_connections: u64,
    /// Connections closed for announcing a packet over `max_packet_size_bytes` (also in
    /// `closed_bad_input`).
    pub refused_packet_too_large: u64,
    /// Connections closed by the connect timeout (also in `closed_timeout`).
    pub closed_connect_timeout: u64,
    /// Connections closed because a packet begun after CONNECT was not whole within
    /// `partial_packet_timeout_ms` (also in `closed_timeout`).
    pub closed_partial_packet_timeout: u64,
    /// Times the loop found it had not run for [`STALL_THRESHOLD_MS`](crate::core::STALL_THRESHOLD_MS) or more
    /// ([`Shard::stalled`]).
    pub stalls: u64,
    /// Milliseconds of those stalls, not counted against any client's deadlines.
    pub stalled_ms: u64,
    /// Topics (PUBLISH, will or SUBSCRIBE filter) over `max_topic_length_bytes`.
    pub refused_topic_length: u64,
    /// Topics (PUBLISH, will or SUBSCRIBE filter) over `max_topic_levels`.
    pub refused_topic_levels: u64,
    /// Subscriptions refused at `max_subscriptions_per_client`.
    pub refused_subscriptions: u64,
    /// MQTT 5 connections closed (0x97) for a Topic Alias table over
    /// `max_topic_alias_bytes` (also in `closed_bad_input`).
    pub refused_topic_alias_bytes: u64,
    /// CONNECTs refused (0x85 / 0x02) for a client id over `max_client_id_length_bytes`
    /// (also in `refused_connect`).
    pub refused_client_id_length: u64,
    /// Messages dropped because a queue held `max_queued_messages` (also in `dropped`).
    pub dropped_queue_messages: u64,
    /// Messages dropped because a queue held `max_queued_bytes` (also in `dropped`).
    pub dropped_queue_bytes: u64,
    /// Messages dropped for a subscriber because their Message Expiry Interval ran out
    /// (also in `dropped`).
    pub dropped_expired: u64,
    /// Messages dropped for a subscriber because they exceed its Maximum Packet Size
    /// (also in `dropped`).
    pub dropped_too_large: u64,
    // Traffic, for the metrics endpoint and $SYS (`core::observe`): plain per-loop counters,
    // summed across loops only when scraped.
    /// Complete packets received, by first byte (type and flags: QoS for PUBLISH).
    pub packets_in: PacketCounts,
    /// Packets written into connections' output, by first byte.
    pub packets_out: PacketCounts,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes taken by sockets (written).
    pub bytes_out: u64,
    /// Messages queued past `max_queued_messages` for a subscriber that was holding its
    /// publishers back (`flow`): in transit when the hold began, kept rather than dropped.
    pub queued_past_limit: u64,
    /// Times a publisher was held back for a congested subscriber (`flow`).
    pub publishers_held: u64,
    /// Times a congested subscriber held its publishers for `max_publisher_hold_ms` without
    /// draining, and its queue limit applied from then on (`flow`).
    pub hold_timeouts: u64,
    /// Times a client was paused for going over `max_publish_rate_messages_per_sec`.
    pub rate_paused_messages: u64,
    /// Times a client was paused for going over `max_publish_rate_bytes_per_sec`.
    pub rate_paused_bytes: u64,
    /// QoS 0 messages for an offline subscriber (also in `dropped`).
    pub dropped_qos0_offline: u64,
    /// Messages dropped because every packet id toward the client was in use (also in
    /// `dropped`).
    pub dropped_no_packet_id: u64,
    /// Shared-subscription messages whose chosen member left, with no other member to take
    /// them (also in `dropped`).
    pub dropped_group_member_gone: u64,
    /// Messages queued for a session when it ended (also in `dropped`).
    pub dropped_session_ended: u64,
    /// Connections closed for an acknowledgement of the wrong kind: PUBREC or PUBCOMP for a
    /// QoS 1 message, PUBACK for a QoS 2 one, PUBCOMP before PUBREC (also in
    /// `closed_bad_input`).
    pub closed_wrong_ack: u64,
    /// QoS 1/2 PUBLISHes refused while the store could not write (MQTT 5: 0x97; 3.1.1:
    /// the connection closed).
    pub refused_store_degraded: u64,
    /// 3.x CONNECTs refused (CONNACK 0x02) for a keep-alive over `max_keep_alive_secs`, or
    /// 0, while a cap is set (also in `refused_connect`).
    pub refused_keep_alive: u64,
    /// v5 CONNECTs refused because even the smallest CONNACK exceeds the client's Maximum
    /// Packet Size (also in `refused_connect`).
    pub refused_connack_too_large: u64,
    /// CONNECTs whose password was sent to be verified off the loop.
    pub credentials_verified: u64,
    /// CONNECTs refused for who they are: bad user name or password, anonymous where
    /// that is not allowed, throttled after failures, a will or a session takeover the
    /// policy forbids (also in `refused_connect`).
    pub refused_credentials: u64,
    /// Clients disconnected because a reload removed their user.
    pub disconnected_user_removed: u64,
    /// PUBLISHes not routed: the ACL denies their topic, or it begins with `$`.
    pub denied_publish: u64,
    /// Subscriptions refused: no topic their filter matches is readable.
    pub denied_subscribe: u64,
    /// Deliveries not made: the topic is not readable by the subscriber.
    pub denied_delivery: u64,
}

/// The PUBLISH packet type (fixed header high nibble).
const PUBLISH_TYPE: usize = 3;
/// The CONNECT packet type.
const CONNECT_TYPE: usize = 1;

/// Why a message was not delivered to a session whose subscription matched it. Every
/// such message is counted under exactly one reason (`ShardStats::count_drop`); the label
/// is the metrics endpoint's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The session's queue held `max_queued_messages`.
    QueueFullMessages,
    /// The session's queue would have gone over `max_queued_bytes`.
    QueueFullBytes,
    /// Its Message Expiry Interval ran out before it could be sent.
    Expired,
    /// Larger than the subscriber's Maximum Packet Size.
    TooLargeForClient,
    /// QoS 0 for a subscriber that is offline (not kept, as Mosquitto does).
    Qos0Offline,
    /// Every packet id toward the client was in use.
    NoPacketId,
    /// The shared-subscription member chosen for it left before it arrived, and no other
    /// member could take it.
    GroupMemberGone,
    /// Queued for a session that ended (Clean Start, expiry, takeover with Clean Start).
    SessionEnded,
}

impl DropReason {
    /// Every reason, in the order the metrics endpoint lists them.
    pub const ALL: [DropReason; 8] = [
        DropReason::QueueFullMessages,
        DropReason::QueueFullBytes,
        DropReason::Expired,
        DropReason::TooLargeForClient,
        DropReason::Qos0Offline,
        DropReason::NoPacketId,
        DropReason::GroupMemberGone,
        DropReason::SessionEnded,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFullMessages => "queue_full_messages",
            DropReason::QueueFullBytes => "queue_full_bytes",
            DropReason::Expired => "expired",
            DropReason::TooLargeForClient => "too_large_for_client",
            DropReason::Qos0Offline => "qos0_offline",
            DropReason::NoPacketId => "no_packet_id",
            DropReason::GroupMemberGone => "group_member_gone",
            DropReason::SessionEnded => "session_ended",
        }
    }

    /// How log lines name it: the limit's key where a limit was crossed.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFullMessages => "max_queued_messages",
            DropReason::QueueFullBytes => "max_queued_bytes",
            other => other.label(),
        }
    }
}

impl ShardStats {
    /// Counts a message not delivered to one session, under `reason`.
    pub fn count_drop(&mut self, reason: DropReason) {
        self.dropped += 1;
        *self.drops_mut(reason) += 1;
    }

    /// Messages dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFullMessages => self.dropped_queue_messages,
            DropReason::QueueFullBytes => self.dropped_queue_bytes,
            DropReason::Expired => self.dropped_expired,
            DropReason::TooLargeForClient => self.dropped_too_large,
            DropReason::Qos0Offline => self.dropped_qos0_offline,
            DropReason::NoPacketId => self.dropped_no_packet_id,
            DropReason::GroupMemberGone => self.dropped_group_member_gone,
            DropReason::SessionEnded => self.dropped_session_ended,
        }
    }

    fn drops_mut(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::QueueFullMessages => &mut self.dropped_queue_messages,
            DropReason::QueueFullBytes => &mut self.dropped_queue_bytes,
            DropReason::Expired => &mut self.dropped_expired,
            DropReason::TooLargeForClient => &mut self.dropped_too_large,
            DropReason::Qos0Offline => &mut self.dropped_qos0_offline,
            DropReason::NoPacketId => &mut self.dropped_no_packet_id,
            DropReason::GroupMemberGone => &mut self.dropped_group_member_gone,
            DropReason::SessionEnded => &mut self.dropped_session_ended,
        }
    }
}

/// Packets counted by their first byte (packet type in the high nibble, flags in the low
/// one: a PUBLISH's QoS among them). One increment per packet with no branch; the split by
/// type and by QoS is made when someone asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketCounts(pub [u64; 256]);

impl Default for PacketCounts {
    fn default() -> Self {
        PacketCounts([0; 256])
    }
}

impl PacketCounts {
    /// Counts a packet whose first byte is `first`.
    #[inline]
    pub fn count(&mut self, first: u8) {
        self.0[usize::from(first)] += 1;
    }

    /// Packets by type (index: the fixed header's packet type, 0..=15).
    pub fn by_type(&self) -> [u64; 16] {
        let mut out = [0; 16];
        for (first, n) in self.0.iter().enumerate() {
            out[first >> 4] += n;
        }
        out
    }

    /// PUBLISH packets by QoS (a first byte with QoS 3 is malformed and not counted here).
    pub fn publish_by_qos(&self) -> [u64; 3] {
        let mut out = [0; 3];
        for flags in 0..16usize {
            if let Some(slot) = out.get_mut((flags >> 1) & 3) {
                *slot += self.0[(PUBLISH_TYPE << 4) | flags];
            }
        }
        out
    }

    /// Every packet.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &PacketCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
}

/// Counts one complete frame received (`frame` starts at its fixed header).
#[inline]
pub(crate) fn count_packet_in(stats: &mut ShardStats, frame: &[u8]) {
    if let Some(&first) = frame.first() {
        stats.packets_in.count(first);
    }
}

/// Takes back the count of a CONNECT (and the bytes from it on) that is handed over to
/// another loop: that loop receives and counts them again.
pub(crate) fn uncount_handed_over(stats: &mut ShardStats, replayed: &[u8]) {
    let connect = &mut stats.packets_in.0[CONNECT_TYPE << 4];
    *connect = connect.saturating_sub(1);
    stats.bytes_in = stats.bytes_in.saturating_sub(replayed.len() as u64);
}

/// Counts one packet written into an output buffer, from its first byte.
#[inline]
pub(crate) fn count_packet_out(stats: &mut ShardStats, first: Option<u8>) {
    if let Some(first) = first {
        stats.packets_out.count(first);
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
    /// Online sessions whose queue is over its high-water mark (`core::flow`).
    pub congested: usize,
    /// Of those, the ones holding their publishers back (the others overflow).
    pub holding: usize,
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
        (counts.congested, counts.holding) = self.congestion();
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
        let publish = crate::protocol::v5::PublishV5::from_v3(&publish);
        routing::route_local_publish(self, None, None, &publish, None, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_by_type_and_publish_qos() {
        let mut counts = PacketCounts::default();
        for first in [0x10, 0x30, 0x31, 0x32, 0x3a, 0x34, 0x3d, 0x82, 0x40, 0xe0] {
            counts.count(first);
        }
        let by_type = counts.by_type();
        assert_eq!(
            (by_type[1], by_type[3], by_type[4], by_type[8], by_type[14]),
            (1, 6, 1, 1, 1)
        );
        // QoS 0: 0x30, 0x31 (RETAIN); 1: 0x32, 0x3a (DUP); 2: 0x34, 0x3d (DUP, RETAIN).
        assert_eq!(counts.publish_by_qos(), [2, 2, 2]);
        assert_eq!(counts.total(), 10);
    }

    #[test]
    fn a_handed_over_connect_is_counted_once() {
        let mut stats = ShardStats::default();
        let connect = [0x10, 0x0c];
        count_packet_in(&mut stats, &connect);
        stats.bytes_in += 14;
        uncount_handed_over(&mut stats, &[0u8; 14]);
        assert_eq!((stats.packets_in.total(), stats.bytes_in), (0, 0));
    }
}
