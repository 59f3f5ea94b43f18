//! PUBLISH from a client (QoS 0, 1, 2) and PUBREL (the second half of an incoming QoS 2).

use crate::core::config::TopicRefusal;
use crate::core::input::Flow;
use crate::core::{ConnId, Shard, lifecycle, routing};
use crate::protocol::{PublishRef, QoS, encode_puback, encode_pubcomp, encode_pubrec};

/// Incoming QoS 2 packet ids awaiting PUBREL, per client, beyond which the client is
/// misbehaving (it ignores our PUBRECs) and is disconnected.
pub const MAX_AWAITING_PUBREL: usize = 1024;

/// PUBLISH: route it, then acknowledge at its QoS. A QoS 2 PUBLISH whose id is still
/// awaiting PUBREL is a duplicate: acknowledged again, not routed again (MQTT-4.3.3-2, the
/// "store the packet id, deliver once" method).
pub(crate) fn handle_publish(
    shard: &mut Shard,
    key: ConnId,
    publish: &PublishRef<'_>,
    now_ms: u64,
) -> Flow {
    shard.stats.publish_received += 1;
    if let Some(refusal) = shard.config.topic_refusal(publish.topic) {
        // 3.1.1 has no way to refuse one PUBLISH: the connection is closed (logged once).
        shard.count_topic_refusal(refusal);
        lifecycle::close_for(shard, key, "PUBLISH topic over a limit", &refusal, now_ms);
        return Flow::Stop;
    }
    let session_id = match shard.pool.get(key) {
        Ok(conn) => conn.session,
        Err(_) => return Flow::Stop,
    };
    match (publish.qos, publish.packet_id) {
        (QoS::AtMostOnce, _) => routing::route_local_publish(shard, publish, now_ms),
        (QoS::AtLeastOnce, Some(id)) => {
            routing::route_local_publish(shard, publish, now_ms);
            shard.write(key, |out, v| encode_puback(out, v, id));
        }
        (QoS::ExactlyOnce, Some(id)) => {
            let Some(session) = shard.sessions.get_mut(session_id) else {
                return Flow::Stop;
            };
            let awaiting_rel = &mut session.traffic_mut().awaiting_rel;
            if !awaiting_rel.contains(&id) {
                if awaiting_rel.len() >= MAX_AWAITING_PUBREL {
                    lifecycle::close_for(
                        shard,
                        key,
                        "too many QoS 2 messages awaiting PUBREL",
                        &MAX_AWAITING_PUBREL,
                        now_ms,
                    );
                    return Flow::Stop;
                }
                awaiting_rel.push(id);
                routing::route_local_publish(shard, publish, now_ms);
            }
            shard.write(key, |out, v| encode_pubrec(out, v, id));
        }
        // Invariant: the decoder gives QoS 1/2 a packet id (MQTT-2.3.1-1).
        (_, None) => debug_assert!(false, "QoS > 0 PUBLISH without packet id"),
    }
    Flow::Continue
}

/// PUBREL: forget the id, answer PUBCOMP (also for an id we do not know: the client may be
/// retrying after our PUBCOMP was lost).
pub(crate) fn handle_pubrel(shard: &mut Shard, key: ConnId, id: u16) -> Flow {
    let Ok(conn) = shard.pool.get(key) else {
        return Flow::Stop;
    };
    if let Some(session) = shard.sessions.get_mut(conn.session)
        && !session.traffic().awaiting_rel.is_empty()
    {
        session
            .traffic_mut()
            .awaiting_rel
            .retain(|&pending| pending != id);
    }
    shard.write(key, |out, v| encode_pubcomp(out, v, id));
    Flow::Continue
}

impl Shard {
    /// Counts a topic over `max_topic_length_bytes` or `max_topic_levels`.
    pub(crate) fn count_topic_refusal(&mut self, refusal: TopicRefusal) {
        match refusal {
            TopicRefusal::Length => self.stats.refused_topic_length += 1,
            TopicRefusal::Levels => self.stats.refused_topic_levels += 1,
        }
    }
}
