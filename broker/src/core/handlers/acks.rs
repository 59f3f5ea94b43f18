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
    match find(shard, key, id) {
        Some(slot) if slot.state == InflightState::AwaitPubAck => {
            complete(shard, key, slot, now_ms)
        }
        Some(slot) => wrong_kind(shard, key, PacketType::PubAck, id, slot.state, now_ms),
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
    let Some(slot) = find(shard, key, id) else {
        return ignore_unknown(PacketType::PubRec, id);
    };
    match (slot.state, reason.is_error()) {
        (InflightState::AwaitPubRec, true) => complete(shard, key, slot, now_ms),
        (InflightState::AwaitPubRec | InflightState::AwaitPubComp, false) => {
            set_state(shard, slot, InflightState::AwaitPubComp);
            shard.write_ack(key, PacketType::PubRel, id, ReasonCode::Success);
            Flow::Continue
        }
        // An error PUBREC after a successful one: the PUBREL is out, PUBCOMP will end it.
        (InflightState::AwaitPubComp, true) => ignore_unknown(PacketType::PubRec, id),
        (state @ InflightState::AwaitPubAck, _) => {
            wrong_kind(shard, key, PacketType::PubRec, id, state, now_ms)
        }
    }
}

/// PUBCOMP: the QoS 2 flow is complete.
pub(crate) fn handle_pubcomp(shard: &mut Shard, key: ConnId, id: u16, now_ms: u64) -> Flow {
    match find(shard, key, id) {
        Some(slot) if slot.state == InflightState::AwaitPubComp => {
            complete(shard, key, slot, now_ms)
        }
        Some(slot) => wrong_kind(shard, key, PacketType::PubComp, id, slot.state, now_ms),
        None => ignore_unknown(PacketType::PubComp, id),
    }
}

/// Where an acknowledged message is: its session, its place in the in-flight window and
/// where it is in its flow.
#[derive(Debug, Clone, Copy)]
struct Slot {
    session: u32,
    at: usize,
    state: InflightState,
}

/// The in-flight message `id` of `key`'s session, if it is in flight.
fn find(shard: &Shard, key: ConnId, id: u16) -> Option<Slot> {
    let session = shard.pool.get(key).ok()?.session;
    let inflight = &shard.sessions.get(session)?.traffic().inflight;
    let at = inflight.iter().position(|m| m.packet_id == id)?;
    Some(Slot {
        session,
        at,
        state: inflight[at].state,
    })
}

/// Moves the in-flight message of `slot` to `state`.
fn set_state(shard: &mut Shard, slot: Slot, state: InflightState) {
    if let Some(session) = shard.sessions.get_mut(slot.session)
        && let Some(message) = session.traffic_mut().inflight.get_mut(slot.at)
        && message.state != state
    {
        message.state = state;
        let persist = &shard.shared.persist;
        shard
            .journal
            .inflight_at(persist, slot.session, session, slot.at);
    }
}

/// Removes the in-flight message of `slot` (its flow is over) and lets queued messages
/// move.
fn complete(shard: &mut Shard, key: ConnId, slot: Slot, now_ms: u64) -> Flow {
    let Some(session) = shard.sessions.get_mut(slot.session) else {
        return Flow::Continue;
    };
    let inflight = &mut session.traffic_mut().inflight;
    if slot.at < inflight.len() {
        let done = inflight.remove(slot.at);
        shard.journal.entry_done(session, done.seq);
        crate::core::groups::sync_presence(shard, slot.session);
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
