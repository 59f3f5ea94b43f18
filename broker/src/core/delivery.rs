//! Sending a message to one session at its QoS.
//!
//! A QoS 0 message to an online client with room in its output is encoded straight from the
//! borrowed PUBLISH into the client's lent output buffer: no copy of the message is made.
//! Everything else needs the shared copy ([`SharedMessage`], made once per PUBLISH however
//! many subscribers want it): QoS 1/2 messages enter the in-flight window (kept for
//! redelivery until acknowledged) or the queue; a client whose output is over
//! `max_output_buffer_bytes` gets its messages queued. The queue holds at most
//! `max_queued_messages`; when full, a queued QoS 0 message is dropped first, else the new
//! message is dropped, and every drop is counted.
//!
//! MQTT 5 adds three reasons not to send: the message expired (MQTT-3.3.2-5; checked
//! again when a queued message moves up), it is larger than the client's Maximum Packet
//! Size (MQTT-3.1.2-25: dropped for that client only), and the client's Receive Maximum,
//! which narrows the in-flight window (MQTT-3.3.4-9).
//!
//! Retained messages owed since a SUBSCRIBE never enter the queue: `pump` hands the
//! connection to `retained_stream` once the queue is empty, which sends what fits, and
//! `deliver` lets a stream send a topic's retained message before a live one on it.

use crate::core::conn::{Conn, Phase};
use crate::core::flow::Origin;
use crate::core::message::SharedMessage;
use crate::core::observe::DropReason;
use crate::core::outbound::for_subscriber;
use crate::core::session::{Inflight, InflightState, Queued, Session};
use crate::core::subscription::SubIds;
use crate::core::{ConnId, Message, Shard, flow, groups, retained_stream};
use crate::protocol::v5::{PublishV5, UNLIMITED_PACKET_SIZE_BYTES, publish_v5_len};
use crate::protocol::{PacketType, ProtocolVersion, QoS, ReasonCode, publish_len};

/// A message to deliver: borrowed from a frame (with a slot for its shared copy, made only
/// if some delivery needs one), or already shared.
pub(crate) struct Outgoing<'a, 'm> {
    /// Topic (resolved), payload and properties.
    pub view: PublishV5<'a>,
    /// When the message expires, in loop ms.
    pub expires_at_ms: Option<u64>,
    /// The shared copy, if made.
    pub shared: &'m mut Option<SharedMessage>,
    /// Who published it, if a client did: held back if the message has to wait in a
    /// congested subscriber's queue (`flow`).
    pub origin: Option<Origin>,
}

impl<'a, 'm> Outgoing<'a, 'm> {
    /// A message that is already shared, viewed with `qos` and `retain` (its shared copy
    /// is itself, kept in `slot`).
    pub(crate) fn of_shared(
        message: &'a SharedMessage,
        qos: QoS,
        retain: bool,
        slot: &'m mut Option<SharedMessage>,
    ) -> Self {
        *slot = Some(message.clone());
        Outgoing {
            view: message.as_publish(qos, retain, false, None),
            expires_at_ms: message.expires_at_ms(),
            shared: slot,
            origin: None,
        }
    }

    /// The shared copy, made on first use.
    pub(crate) fn shared(&mut self) -> SharedMessage {
        self.shared
            .get_or_insert_with(|| Message::from_publish_v5(&self.view, self.expires_at_ms))
            .clone()
    }
}

/// One delivery's own settings: QoS, RETAIN flag and Subscription Identifiers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grant<'s> {
    /// The delivery QoS (the lower of the published and the granted one).
    pub qos: QoS,
    /// The RETAIN flag to send.
    pub retain: bool,
    /// The Subscription Identifiers to send (MQTT 5).
    pub sub_ids: &'s [u32],
    /// The shared-subscription group that chose this session, if any.
    pub group: Option<u32>,
}

/// The connection of `session` if it is online and not closing.
fn online(session: &Session, shard_pool: &starling_pool::Pool<Conn>) -> Option<ConnId> {
    let key = session.conn?;
    let conn = shard_pool.get(key).ok()?;
    (conn.phase == Phase::Connected).then_some(key)
}

/// Whether `key`'s output can take `len` more bytes (one packet always fits an empty one).
pub(crate) fn has_room(shard: &Shard, key: ConnId, len: usize) -> bool {
    shard.pool.get(key).is_ok_and(|conn| {
        conn.output.is_empty() || conn.output.len() + len <= shard.config.max_output_buffer_bytes
    })
}

/// The in-flight window toward `key`'s client: ours, narrowed by its Receive Maximum.
pub(crate) fn window(shard: &Shard, key: ConnId) -> usize {
    let client = shard
        .pool
        .get(key)
        .ok()
        .and_then(|c| c.v5.as_ref())
        .map_or(usize::MAX, |v| usize::from(v.receive_maximum));
    shard.config.max_inflight_messages.min(client)
}

/// Whether the message is past its Message Expiry Interval.
pub(crate) fn expired(expires_at_ms: Option<u64>, now_ms: u64) -> bool {
    expires_at_ms.is_some_and(|at| at <= now_ms)
}

/// Whether a v5 client's Maximum Packet Size is too small for this delivery.
fn too_large_for(
    shard: &Shard,
    session: &Session,
    message: &Outgoing<'_, '_>,
    grant: &Grant<'_>,
) -> bool {
    let Some(max) = session
        .conn
        .and_then(|key| shard.pool.get(key).ok())
        .map(|c| c.peer_max_packet_size_bytes())
        .filter(|&max| max != UNLIMITED_PACKET_SIZE_BYTES)
    else {
        return false;
    };
    // The largest form: with a packet id, and an expiry interval if it has one.
    let mut probe = for_subscriber(&message.view, grant.sub_ids, message.expires_at_ms, 0);
    probe.qos = grant.qos;
    probe.packet_id = (grant.qos != QoS::AtMostOnce).then_some(1);
    !publish_v5_len(&probe).is_ok_and(|len| len <= max)
}

/// Whether a message of `len` bytes at `qos` can go to `session`'s client `key` now: nothing
/// queued before it, room in the output, and for QoS 1/2 a free slot in the window.
pub(crate) fn can_send_now(
    shard: &Shard,
    session: &Session,
    key: ConnId,
    qos: QoS,
    len: usize,
) -> bool {
    let traffic = session.traffic();
    let window_open = traffic.inflight.len() < window(shard, key);
    traffic.queue.is_empty() && has_room(shard, key, len) && (qos == QoS::AtMostOnce || window_open)
}

/// Delivers `message` to session `session_id` as `grant` says, after the retained message
/// of its topic if a retained stream of the session still owes it ([`retained_stream`]).
pub(crate) fn deliver(
    shard: &mut Shard,
    session_id: u32,
    message: &mut Outgoing<'_, '_>,
    grant: Grant<'_>,
    now_ms: u64,
) {
    let live = message.shared.as_ref();
    if retained_stream::before_live(shard, session_id, message.view.topic, live, now_ms) {
        send_or_queue(shard, session_id, message, grant, now_ms);
    }
}

/// Sends `message` to session `session_id` now if it can go, else queues it (or drops it,
/// counted).
pub(crate) fn send_or_queue(
    shard: &mut Shard,
    session_id: u32,
    message: &mut Outgoing<'_, '_>,
    grant: Grant<'_>,
    now_ms: u64,
) {
    if shard
        .sessions
        .get(session_id)
        .is_some_and(|s| s.acl_checked)
        && !crate::core::access::may_read(shard, session_id, message.view.topic)
    {
        shard.stats.denied_delivery += 1;
        return;
    }
    let Some(session) = shard.sessions.get(session_id) else {
        return;
    };
    if expired(message.expires_at_ms, now_ms) {
        shard.stats.count_drop(DropReason::Expired);
        return;
    }
    if too_large_for(shard, session, message, &grant) {
        shard.stats.count_drop(DropReason::TooLargeForClient);
        return;
    }
    let qos = grant.qos;
    let send_now = match online(session, &shard.pool) {
        Some(key) => {
            let len = publish_len(
                ProtocolVersion::V311,
                message.view.topic.len(),
                message.view.payload.len(),
                qos,
            )
            .unwrap_or(usize::MAX);
            can_send_now(shard, session, key, qos, len).then_some(key)
        }
        // Offline: QoS 0 is not kept (MQTT-3.1.2-5 allows either; Mosquitto does not keep it).
        None if qos == QoS::AtMostOnce => {
            shard.stats.count_drop(DropReason::Qos0Offline);
            return;
        }
        None => None,
    };
    match send_now {
        None => {
            let origin = message.origin;
            let message = message.shared();
            let queued = Queued {
                qos,
                retain: grant.retain,
                message,
                sub_ids: SubIds::from_slice(grant.sub_ids),
                group: grant.group,
                seq: 0,
            };
            enqueue(shard, session_id, queued, origin, now_ms);
        }
        Some(key) if qos == QoS::AtMostOnce => {
            // The delivery's own header on the borrowed view (no copy of the view), put
            // back after: the shared copy, if made later, keeps the published flags.
            let published = (message.view.qos, message.view.retain, message.view.dup);
            let packet_id = message.view.packet_id.take();
            (message.view.qos, message.view.retain, message.view.dup) = (qos, grant.retain, false);
            let written = shard.write_publish(
                key,
                &message.view,
                grant.sub_ids,
                message.expires_at_ms,
                now_ms,
            );
            (message.view.qos, message.view.retain, message.view.dup) = published;
            message.view.packet_id = packet_id;
            if written {
                shard.stats.publish_sent += 1;
            }
        }
        Some(key) => {
            let shared = message.shared();
            let queued = Queued {
                qos,
                retain: grant.retain,
                message: shared,
                sub_ids: SubIds::from_slice(grant.sub_ids),
                group: grant.group,
                seq: 0,
            };
            send_inflight(shard, session_id, key, queued, now_ms);
        }
    }
    groups::sync_presence(shard, session_id);
}

/// Sends a QoS 1/2 message under a fresh packet id and records it in flight.
fn send_inflight(shard: &mut Shard, session_id: u32, key: ConnId, queued: Queued, now_ms: u64) {
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return;
    };
    let Some(packet_id) = session.next_packet_id() else {
        shard.stats.count_drop(DropReason::NoPacketId);
        shard.journal.entry_done(session, queued.seq);
        return;
    };
    let state = if queued.qos == QoS::AtLeastOnce {
        InflightState::AwaitPubAck
    } else {
        InflightState::AwaitPubRec
    };
    let Queued {
        qos,
        retain,
        message,
        sub_ids,
        group,
        seq,
    } = queued;
    let view = message.as_publish(qos, retain, false, Some(packet_id));
    if shard.write_publish(
        key,
        &view,
        sub_ids.as_slice(),
        message.expires_at_ms(),
        now_ms,
    ) {
        shard.stats.publish_sent += 1;
    }
    if let Some(session) = shard.sessions.get_mut(session_id) {
        let inflight = &mut session.traffic_mut().inflight;
        inflight.push(Inflight {
            packet_id,
            qos,
            state,
            message,
            sub_ids,
            group,
            seq,
        });
        let at = inflight.len() - 1;
        let persist = &shard.shared.persist;
        shard.journal.inflight_at(persist, session_id, session, at);
    }
}

/// Queues a message from `origin`. When the queue holds `max_queued_messages`, or the
/// message would take it over `max_queued_bytes`, queued QoS 0 messages are dropped first
/// (oldest first), else the new message is dropped. Every drop is counted; the first per
/// session is logged.
///
/// A message for a session that is holding its publishers back (`flow`) was already read or
/// forwarded when the hold began: it is queued past `max_queued_messages` (counted in
/// `queued_past_limit`) rather than dropped; `max_queued_bytes` still applies.
fn enqueue(
    shard: &mut Shard,
    session_id: u32,
    queued: Queued,
    origin: Option<Origin>,
    now_ms: u64,
) {
    let limit = shard.config.max_queued_messages;
    let max_messages = if flow::holding(shard, session_id, now_ms) {
        usize::MAX
    } else {
        limit
    };
    let max_bytes = match shard.config.max_queued_bytes {
        0 => usize::MAX,
        n => n,
    };
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return;
    };
    let traffic = session.traffic_mut();
    let len = queued.bytes();
    let mut dropped_for = None;
    while traffic.queue.len() >= max_messages || traffic.queued_bytes + len > max_bytes {
        let reason = if traffic.queue.len() >= max_messages {
            DropReason::QueueFullMessages
        } else {
            DropReason::QueueFullBytes
        };
        dropped_for = Some(reason);
        shard.stats.count_drop(reason);
        if traffic.drop_queued_qos0().is_none() {
            log_drop(session, reason);
            // The subscriber is congested all the same: its publishers are held if it is
            // holding them.
            flow::after_enqueue(shard, session_id, origin, now_ms);
            return;
        }
    }
    if traffic.queue.len() >= limit {
        shard.stats.queued_past_limit += 1;
    }
    traffic.push_queued(queued);
    shard
        .journal
        .queued_last(&shard.shared.persist, session_id, session);
    if let Some(reason) = dropped_for {
        log_drop(session, reason);
    }
    flow::after_enqueue(shard, session_id, origin, now_ms);
}

fn log_drop(session: &mut Session, reason: DropReason) {
    if !std::mem::replace(&mut session.drop_logged, true) {
        tracing::info!(client = %session.client_id, reason = reason.name(), "queue full: message dropped (further drops for this client are counted, not logged)");
    }
}

/// Moves queued messages to the client while its window and output allow; expired ones
/// are dropped on the way (MQTT-3.3.2-5).
pub(crate) fn pump(shard: &mut Shard, key: ConnId, now_ms: u64) {
    let Ok(conn) = shard.pool.get(key) else {
        return;
    };
    if conn.phase != Phase::Connected {
        return;
    }
    let session_id = conn.session;
    let window = window(shard, key);
    let mut moved = false;
    loop {
        let Some(session) = shard.sessions.get(session_id) else {
            return;
        };
        let Some(front) = session.traffic().queue.front() else {
            break;
        };
        let stale = expired(front.message.expires_at_ms(), now_ms);
        let window_open = session.traffic().inflight.len() < window;
        let len = publish_len(
            ProtocolVersion::V311,
            front.message.topic.len(),
            front.message.payload.len(),
            front.qos,
        )
        .unwrap_or(usize::MAX);
        if !stale && (!has_room(shard, key, len) || (front.qos != QoS::AtMostOnce && !window_open))
        {
            break;
        }
        let Some(queued) = shard
            .sessions
            .get_mut(session_id)
            .and_then(|s| s.traffic_mut().pop_queued())
        else {
            break;
        };
        moved = true;
        if stale {
            shard.stats.count_drop(DropReason::Expired);
            if let Some(session) = shard.sessions.get(session_id) {
                shard.journal.entry_done(session, queued.seq);
            }
        } else if queued.qos == QoS::AtMostOnce {
            let view = queued
                .message
                .as_publish(QoS::AtMostOnce, queued.retain, false, None);
            let expires = queued.message.expires_at_ms();
            if shard.write_publish(key, &view, queued.sub_ids.as_slice(), expires, now_ms) {
                shard.stats.publish_sent += 1;
            }
        } else {
            send_inflight(shard, session_id, key, queued, now_ms);
        }
        groups::sync_presence(shard, session_id);
    }
    if moved {
        flow::progressed(shard, session_id, now_ms);
    }
    // Once the queue is empty, the retained messages still owed since a SUBSCRIBE.
    retained_stream::pump(shard, key, session_id, now_ms);
}

/// A persistent session resumed: resend what was in flight (PUBLISH with DUP, or PUBREL),
/// in order (MQTT-4.4.0-1), then what was queued.
pub(crate) fn resume(shard: &mut Shard, key: ConnId, now_ms: u64) {
    let Ok(conn) = shard.pool.get(key) else {
        return;
    };
    let Some(session) = shard.sessions.get(conn.session) else {
        return;
    };
    let inflight: Vec<Inflight> = session.traffic().inflight.clone();
    for message in inflight {
        let id = message.packet_id;
        if message.state == InflightState::AwaitPubComp {
            shard.write_ack(key, PacketType::PubRel, id, ReasonCode::Success);
        } else {
            let view = message
                .message
                .as_publish(message.qos, false, true, Some(id));
            let expires = message.message.expires_at_ms();
            if shard.write_publish(key, &view, message.sub_ids.as_slice(), expires, now_ms) {
                shard.stats.publish_sent += 1;
            }
        }
    }
    pump(shard, key, now_ms);
}
