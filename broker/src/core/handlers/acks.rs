//! Acknowledgements from a client for messages we sent: PUBACK (QoS 1), PUBREC and PUBCOMP
//! (QoS 2). Each frees or advances an in-flight slot; a freed slot lets queued messages move.

use crate::core::input::Flow;
use crate::core::session::InflightState;
use crate::core::{ConnId, Shard, delivery};
use crate::protocol::{PacketType, ReasonCode};

/// PUBACK: the QoS 1 message is delivered (whatever its reason code: MQTT 5 §4.3.2, the
/// message is no longer ours to resend).
pub(crate) fn handle_puback(shard: &mut Shard, key: ConnId, id: u16, now_ms: u64) -> Flow {
    if complete(shard, key, id, InflightState::AwaitPubAck) {
        delivery::pump(shard, key, now_ms);
    }
    Flow::Continue
}

/// PUBREC: the QoS 2 message arrived; answer PUBREL and await PUBCOMP. A PUBREC with an
/// error code (MQTT 5, 0x80 and above) ends the flow instead (MQTT-4.3.3-4: no PUBREL).
pub(crate) fn handle_pubrec(
    shard: &mut Shard,
    key: ConnId,
    id: u16,
    reason: ReasonCode,
    now_ms: u64,
) -> Flow {
    if reason.is_error() {
        if complete(shard, key, id, InflightState::AwaitPubRec) {
            delivery::pump(shard, key, now_ms);
        }
        return Flow::Continue;
    }
    let Ok(conn) = shard.pool.get(key) else {
        return Flow::Stop;
    };
    let Some(session) = shard.sessions.get_mut(conn.session) else {
        return Flow::Continue;
    };
    let known = session
        .traffic_mut()
        .inflight
        .iter_mut()
        .find(|m| m.packet_id == id && m.state != InflightState::AwaitPubAck);
    if let Some(message) = known {
        message.state = InflightState::AwaitPubComp;
        shard.write_ack(key, PacketType::PubRel, id, ReasonCode::Success);
    } else {
        tracing::debug!(packet_id = id, "PUBREC for an unknown packet id ignored");
    }
    Flow::Continue
}

/// PUBCOMP: the QoS 2 flow is complete.
pub(crate) fn handle_pubcomp(shard: &mut Shard, key: ConnId, id: u16, now_ms: u64) -> Flow {
    if complete(shard, key, id, InflightState::AwaitPubComp) {
        delivery::pump(shard, key, now_ms);
    }
    Flow::Continue
}

/// Removes the in-flight message `id` if it is in `state`; whether it was.
fn complete(shard: &mut Shard, key: ConnId, id: u16, state: InflightState) -> bool {
    let Ok(conn) = shard.pool.get(key) else {
        return false;
    };
    let Some(session) = shard.sessions.get_mut(conn.session) else {
        return false;
    };
    let at = session
        .traffic()
        .inflight
        .iter()
        .position(|m| m.packet_id == id && m.state == state);
    match at {
        Some(at) => {
            session.traffic_mut().inflight.remove(at);
            let session_id = conn.session;
            crate::core::groups::sync_presence(shard, session_id);
            true
        }
        None => {
            tracing::debug!(
                packet_id = id,
                ?state,
                "acknowledgement for an unknown packet id ignored"
            );
            false
        }
    }
}
