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

use crate::core::conn::{Conn, Phase};
use crate::core::message::SharedMessage;
use crate::core::session::{Inflight, InflightState, Queued, Session};
use crate::core::{ConnId, Message, Shard};
use crate::protocol::{
    EncodeError, ProtocolVersion, PublishRef, QoS, encode_publish, encode_pubrel, publish_len,
};

/// A message to deliver: borrowed from a frame (with a slot for its shared copy, made only
/// if some delivery needs one), or already shared.
pub(crate) struct Outgoing<'a, 'm> {
    /// Topic and payload.
    pub view: PublishRef<'a>,
    /// The shared copy, if made.
    pub shared: &'m mut Option<SharedMessage>,
}

impl Outgoing<'_, '_> {
    /// The shared copy, made on first use.
    pub(crate) fn shared(&mut self) -> SharedMessage {
        self.shared
            .get_or_insert_with(|| Message::from_publish(&self.view))
            .clone()
    }
}

impl Shard {
    /// Encodes one packet into `key`'s output (lending it a buffer if it has none) and marks
    /// it for the driver. Returns whether it was written.
    pub(crate) fn write(
        &mut self,
        key: ConnId,
        encode: impl FnOnce(&mut Vec<u8>, ProtocolVersion) -> Result<usize, EncodeError>,
    ) -> bool {
        let Ok(conn) = self.pool.get_mut(key) else {
            return false;
        };
        if conn.output.capacity() == 0 {
            conn.output = self.buffers.take();
        }
        let version = conn.version;
        let start = conn.output.len();
        match encode(&mut conn.output, version) {
            Ok(_) => {
                let first = conn.output.get(start).copied();
                crate::core::observe::count_packet_out(&mut self.stats, first);
                self.mark_dirty(key);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "could not encode a packet");
                false
            }
        }
    }
}

/// The connection of `session` if it is online and not closing.
fn online(session: &Session, shard_pool: &starling_pool::Pool<Conn>) -> Option<ConnId> {
    let key = session.conn?;
    let conn = shard_pool.get(key).ok()?;
    (conn.phase == Phase::Connected).then_some(key)
}

/// Whether `key`'s output can take `len` more bytes (one packet always fits an empty one).
fn has_room(shard: &Shard, key: ConnId, len: usize) -> bool {
    shard.pool.get(key).is_ok_and(|conn| {
        conn.output.is_empty() || conn.output.len() + len <= shard.config.max_output_buffer_bytes
    })
}

/// Delivers `message` to session `session_id` at `qos` with the RETAIN flag `retain`.
pub(crate) fn deliver(
    shard: &mut Shard,
    session_id: u32,
    message: &mut Outgoing<'_, '_>,
    qos: QoS,
    retain: bool,
) {
    let Some(session) = shard.sessions.get(session_id) else {
        return;
    };
    let send_now = match online(session, &shard.pool) {
        Some(key) => {
            let len = publish_len(
                ProtocolVersion::V311,
                message.view.topic.len(),
                message.view.payload.len(),
                qos,
            )
            .unwrap_or(usize::MAX);
            let traffic = session.traffic();
            let window_open = traffic.inflight.len() < shard.config.max_inflight_messages;
            let can_send = traffic.queue.is_empty()
                && has_room(shard, key, len)
                && (qos == QoS::AtMostOnce || window_open);
            can_send.then_some(key)
        }
        // Offline: QoS 0 is not kept (MQTT-3.1.2-5 allows either; Mosquitto does not keep it).
        None if qos == QoS::AtMostOnce => {
            shard.stats.dropped += 1;
            return;
        }
        None => None,
    };
    match send_now {
        None => {
            let message = message.shared();
            enqueue(
                shard,
                session_id,
                Queued {
                    qos,
                    retain,
                    message,
                },
            );
        }
        Some(key) if qos == QoS::AtMostOnce => {
            let view = PublishRef {
                qos,
                retain,
                dup: false,
                packet_id: None,
                ..message.view
            };
            if shard.write(key, |out, v| encode_publish(out, v, &view)) {
                shard.stats.publish_sent += 1;
            }
        }
        Some(key) => {
            let shared = message.shared();
            send_inflight(shard, session_id, key, shared, qos, retain);
        }
    }
}

/// Sends a QoS 1/2 message under a fresh packet id and records it in flight.
fn send_inflight(
    shard: &mut Shard,
    session_id: u32,
    key: ConnId,
    message: SharedMessage,
    qos: QoS,
    retain: bool,
) {
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return;
    };
    let Some(packet_id) = session.next_packet_id() else {
        shard.stats.dropped += 1;
        return;
    };
    let state = if qos == QoS::AtLeastOnce {
        InflightState::AwaitPubAck
    } else {
        InflightState::AwaitPubRec
    };
    session.traffic_mut().inflight.push(Inflight {
        packet_id,
        qos,
        state,
        message: message.clone(),
    });
    let view = message.as_publish(qos, retain, false, Some(packet_id));
    if shard.write(key, |out, v| encode_publish(out, v, &view)) {
        shard.stats.publish_sent += 1;
    }
}

/// Queues a message. When the queue holds `max_queued_messages`, or the message would take
/// it over `max_queued_bytes`, queued QoS 0 messages are dropped first (oldest first), else
/// the new message is dropped. Every drop is counted; the first per session is logged.
fn enqueue(shard: &mut Shard, session_id: u32, queued: Queued) {
    let max_messages = shard.config.max_queued_messages;
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
            "max_queued_messages"
        } else {
            "max_queued_bytes"
        };
        dropped_for = Some(reason);
        if traffic.drop_queued_qos0().is_none() {
            count_drop(&mut shard.stats, reason);
            log_drop(session, reason);
            return;
        }
        count_drop(&mut shard.stats, reason);
    }
    traffic.push_queued(queued);
    if let Some(reason) = dropped_for {
        log_drop(session, reason);
    }
}

fn count_drop(stats: &mut crate::core::ShardStats, reason: &str) {
    stats.dropped += 1;
    if reason == "max_queued_messages" {
        stats.dropped_queue_messages += 1;
    } else {
        stats.dropped_queue_bytes += 1;
    }
}

fn log_drop(session: &mut Session, reason: &str) {
    if !std::mem::replace(&mut session.drop_logged, true) {
        tracing::info!(client = %session.client_id, reason, "queue full: message dropped (further drops for this client are counted, not logged)");
    }
}

/// Moves queued messages to the client while its window and output allow.
pub(crate) fn pump(shard: &mut Shard, key: ConnId, _now_ms: u64) {
    let Ok(conn) = shard.pool.get(key) else {
        return;
    };
    if conn.phase != Phase::Connected {
        return;
    }
    let session_id = conn.session;
    loop {
        let Some(session) = shard.sessions.get(session_id) else {
            return;
        };
        let Some(front) = session.traffic().queue.front() else {
            return;
        };
        let window_open = session.traffic().inflight.len() < shard.config.max_inflight_messages;
        let len = publish_len(
            ProtocolVersion::V311,
            front.message.topic.len(),
            front.message.payload.len(),
            front.qos,
        )
        .unwrap_or(usize::MAX);
        if !has_room(shard, key, len) || (front.qos != QoS::AtMostOnce && !window_open) {
            return;
        }
        let Some(queued) = shard
            .sessions
            .get_mut(session_id)
            .and_then(|s| s.traffic_mut().pop_queued())
        else {
            return;
        };
        if queued.qos == QoS::AtMostOnce {
            let view = queued
                .message
                .as_publish(QoS::AtMostOnce, queued.retain, false, None);
            if shard.write(key, |out, v| encode_publish(out, v, &view)) {
                shard.stats.publish_sent += 1;
            }
        } else {
            send_inflight(
                shard,
                session_id,
                key,
                queued.message,
                queued.qos,
                queued.retain,
            );
        }
    }
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
            shard.write(key, |out, v| encode_pubrel(out, v, id));
        } else {
            let view = message
                .message
                .as_publish(message.qos, false, true, Some(id));
            if shard.write(key, |out, v| encode_publish(out, v, &view)) {
                shard.stats.publish_sent += 1;
            }
        }
    }
    pump(shard, key, now_ms);
}

/// Sends the retained messages matching `filter` to the client of `key`, each at the lower
/// of its QoS and `granted`, with RETAIN set (MQTT-3.3.1-8).
pub(crate) fn send_retained(
    shard: &mut Shard,
    key: ConnId,
    filter: &str,
    granted: QoS,
    _now_ms: u64,
) {
    let Ok(conn) = shard.pool.get(key) else {
        return;
    };
    let session_id = conn.session;
    let mut matching: Vec<SharedMessage> = Vec::new();
    if let Ok(retained) = shard.shared.retained.lock() {
        retained.for_each_match(filter, |_, message| matching.push(message.clone()));
    }
    for message in matching {
        let qos = message.qos.min(granted);
        let view = message.as_publish(qos, true, false, None);
        let mut shared = Some(message.clone());
        let mut outgoing = Outgoing {
            view,
            shared: &mut shared,
        };
        deliver(shard, session_id, &mut outgoing, qos, true);
    }
}
