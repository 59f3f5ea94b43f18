//! Acknowledgements from a client for messages we sent: PUBACK (QoS 1), PUBREC and PUBCOMP
//! (QoS 2). Each frees or advances an in-flight slot; a freed slot lets queued messages move.
//!
//! An acknowledgement of the wrong kind for a message in flight (PUBREC or PUBCOMP for a
//! QoS 1 message, PUBACK for a QoS 2 one, PUBCOMP before PUBREC) is a protocol error
//! (§4.3.2, §4.3.3: each QoS has its own exchange): the connection is closed (MQTT 5: with
//! DISCONNECT 0x82), counted and logged with the client id. Left alone, the slot would stay
//! taken until the client reconnected. An acknowledgement for an id that is not in flight
//! is ignored: it may be a late duplicate.

use crate::core::input::Flow;
use crate::core::session::InflightState;
use crate::core::{ConnId, Shard, delivery, lifecycle};
use crate::protocol::{PacketType, ReasonCode};

/// PUBACK: the QoS 1 message is delivered (whatever its reason code: MQTT 5 §4.3.2, the
/// message is no longer ours to resend).
pub(crate) fn handle_puback(shard: &mut Shard, key: ConnId, id: u16, now_ms: u64) -> Flow {
    match inflight_state(shard, key, id) {
        Some((at, InflightState::AwaitPubAck)) => complete(shard, key, at, now_ms),
        Some((_, state)) => wrong_kind(shard, key, PacketType::PubAck, id, state, now_ms),
        None => ignore_unknown(PacketType::PubAck, id),
    }
}

/// PUBREC: the QoS 2 message arrived; answer PUBREL and await PUBCOMP (a repeated PUBREC
/// gets the PUBREL again). A PUBREC with an error code (MQTT 5, 0x80 and above) ends the
/// flow instead (MQTT-4.3.3-4: no PUBREL).
pub(crate) fn handle_pubrec(
    shard: &mut Shard,
    key: ConnId,
    id: u16,
    reason: ReasonCode,
    now_ms: u64,
) -> Flow {
    match (inflight_state(shard, key, id), reason.is_error()) {
        (Some((at, InflightState::AwaitPubRec)), true) => complete(shard, key, at, now_ms),
        (Some((at, InflightState::AwaitPubRec | InflightState::AwaitPubComp)), false) => {
            set_state(shard, key, at, InflightState::AwaitPubComp);
            shard.write_ack(key, PacketType::PubRel, id, ReasonCode::Success);
            Flow::Continue
        }
        // An error PUBREC after a successful one: the PUBREL is out, PUBCOMP will end it.
        (Some((_, InflightState::AwaitPubComp)), true) => ignore_unknown(PacketType::PubRec, id),
        (Some((_, state @ InflightState::AwaitPubAck)), _) => {
            wrong_kind(shard, key, PacketType::PubRec, id, state, now_ms)
        }
        (None, _) => ignore_unknown(PacketType::PubRec, id),
    }
}

/// PUBCOMP: the QoS 2 flow is complete.
pub(crate) fn handle_pubcomp(shard: &mut Shard, key: ConnId, id: u16, now_ms: u64) -> Flow {
    match inflight_state(shard, key, id) {
        Some((at, InflightState::AwaitPubComp)) => complete(shard, key, at, now_ms),
        Some((_, state)) => wrong_kind(shard, key, PacketType::PubComp, id, state, now_ms),
        None => ignore_unknown(PacketType::PubComp, id),
    }
}

/// Where in `key`'s in-flight window the message `id` is, and where it is in its flow.
fn inflight_state(shard: &Shard, key: ConnId, id: u16) -> Option<(usize, InflightState)> {
    let conn = shard.pool.get(key).ok()?;
    let session = shard.sessions.get(conn.session)?;
    let inflight = &session.traffic().inflight;
    let at = inflight.iter().position(|m| m.packet_id == id)?;
    Some((at, inflight[at].state))
}

/// Moves the in-flight message at `at` (from [`inflight_state`]) to `state`.
fn set_state(shard: &mut Shard, key: ConnId, at: usize, state: InflightState) {
    let Ok(conn) = shard.pool.get(key) else {
        return;
    };
    if let Some(session) = shard.sessions.get_mut(conn.session)
        && let Some(message) = session.traffic_mut().inflight.get_mut(at)
    {
        message.state = state;
    }
}

/// Removes the in-flight message at `at` (its flow is over) and lets queued messages move.
fn complete(shard: &mut Shard, key: ConnId, at: usize, now_ms: u64) -> Flow {
    let Ok(conn) = shard.pool.get(key) else {
        return Flow::Stop;
    };
    let session_id = conn.session;
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return Flow::Continue;
    };
    let inflight = &mut session.traffic_mut().inflight;
    if at < inflight.len() {
        inflight.remove(at);
        crate::core::groups::sync_presence(shard, session_id);
        delivery::pump(shard, key, now_ms);
    }
    Flow::Continue
}

/// An acknowledgement for an id that is not in flight: ignored.
fn ignore_unknown(packet_type: PacketType, id: u16) -> Flow {
    tracing::debug!(
        packet_id = id,
        ?packet_type,
        "acknowledgement for a packet id not in flight ignored"
    );
    Flow::Continue
}

/// An acknowledgement that does not belong to the exchange of the message in flight under
/// its id: a protocol error.
fn wrong_kind(
    shard: &mut Shard,
    key: ConnId,
    packet_type: PacketType,
    id: u16,
    state: InflightState,
    now_ms: u64,
) -> Flow {
    shard.stats.closed_wrong_ack += 1;
    let awaited = match state {
        InflightState::AwaitPubAck => "PUBACK",
        InflightState::AwaitPubRec => "PUBREC",
        InflightState::AwaitPubComp => "PUBCOMP",
    };
    let why = format!("{packet_type:?} for packet id {id}, which awaits {awaited}");
    let what = "acknowledgement of the wrong kind (protocol error)";
    lifecycle::close_for(shard, key, what, ReasonCode::ProtocolError, &why, now_ms);
    Flow::Stop
}
