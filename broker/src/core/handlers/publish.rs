//! PUBLISH from a client (QoS 0, 1, 2) and PUBREL (the second half of an incoming QoS 2).
//!
//! For MQTT 5 the PUBLISH is checked before it is routed: its Topic Alias resolved against
//! the connection's table (MQTT-3.3.2-7 … 12), its payload against a UTF-8 Payload Format
//! Indicator (0x99), and a QoS 2 one against the Receive Maximum we announced (0x93). Its
//! PUBACK / PUBREC says 0x10 No matching subscribers when routing knows nobody got it.

use crate::core::config::TopicRefusal;
use crate::core::input::Flow;
use crate::core::{ConnId, Shard, access, lifecycle, routing};
use crate::protocol::v5::{PayloadFormat, PublishV5};
use crate::protocol::{PacketType, ProtocolVersion, QoS, ReasonCode};

/// PUBLISH: route it, then acknowledge at its QoS. A QoS 2 PUBLISH whose id is still
/// awaiting PUBREL is a duplicate: acknowledged again, not routed again (MQTT-4.3.3-2, the
/// "store the packet id, deliver once" method).
pub(crate) fn handle_publish(
    shard: &mut Shard,
    key: ConnId,
    publish: PublishV5<'_>,
    now_ms: u64,
) -> Flow {
    shard.stats.publish_received += 1;
    // The aliased topic is taken out of the connection's table while the PUBLISH is
    // handled (no copy) and put back after.
    let aliased = match resolve_alias(shard, key, &publish, now_ms) {
        Ok(aliased) => aliased,
        Err(flow) => return flow,
    };
    let flow = match &aliased {
        Some((_, topic)) => {
            let resolved = PublishV5 { topic, ..publish };
            handle_resolved(shard, key, &resolved, now_ms)
        }
        None => handle_resolved(shard, key, &publish, now_ms),
    };
    if let Some((alias, topic)) = aliased {
        restore_alias(shard, key, alias, topic);
    }
    flow
}

fn handle_resolved(shard: &mut Shard, key: ConnId, publish: &PublishV5<'_>, now_ms: u64) -> Flow {
    if let Some(refusal) = shard.config.topic_refusal(publish.topic) {
        // No way to refuse one PUBLISH in 3.1.1: the connection is closed (logged once).
        shard.count_topic_refusal(refusal);
        let code = ReasonCode::TopicNameInvalid;
        lifecycle::close_for(
            shard,
            key,
            "PUBLISH topic over a limit",
            code,
            &refusal,
            now_ms,
        );
        return Flow::Stop;
    }
    let Ok(conn) = shard.pool.get(key) else {
        return Flow::Stop;
    };
    let (session_id, version) = (conn.session, conn.version);
    if access::is_reserved_topic(publish.topic)
        || !access::may_write(shard, session_id, publish.topic)
    {
        return deny(shard, key, session_id, publish);
    }
    if version == ProtocolVersion::V5
        && publish.properties.payload_format == Some(PayloadFormat::Utf8)
        && !PayloadFormat::Utf8.accepts(publish.payload)
    {
        return refuse_payload(shard, key, publish, now_ms);
    }
    let expires_at_ms = publish
        .properties
        .message_expiry_interval_secs
        .map(|secs| now_ms.saturating_add(u64::from(secs) * 1000));
    if publish.qos != QoS::AtMostOnce && shard.shared.persist.degraded() {
        return refuse_unstorable(shard, key, version, publish, now_ms);
    }
    let publisher = Some(session_id);
    let route = |shard: &mut Shard| {
        routing::route_local_publish(shard, publisher, Some(key), publish, expires_at_ms, now_ms)
    };
    match (publish.qos, publish.packet_id) {
        (QoS::AtMostOnce, _) => {
            route(shard);
        }
        (QoS::AtLeastOnce, Some(id)) => {
            let matched = route(shard);
            shard.write_ack(key, PacketType::PubAck, id, ack_reason(matched));
        }
        (QoS::ExactlyOnce, Some(id)) => {
            let Some(session) = shard.sessions.get_mut(session_id) else {
                return Flow::Stop;
            };
            let awaiting_rel = &mut session.traffic_mut().awaiting_rel;
            // A retransmission (its id still awaits PUBREL) is not routed again: Success.
            let mut matched = true;
            if !awaiting_rel.contains(&id) {
                let maximum = shard.config.receive_maximum;
                if awaiting_rel.len() >= usize::from(maximum) {
                    lifecycle::close_for(
                        shard,
                        key,
                        "more QoS 2 messages awaiting PUBREL than Receive Maximum (MQTT-3.3.4-8)",
                        ReasonCode::ReceiveMaximumExceeded,
                        &maximum,
                        now_ms,
                    );
                    return Flow::Stop;
                }
                awaiting_rel.push(id);
                shard.journal.inbound(session, id, true);
                matched = route(shard);
            }
            shard.write_ack(key, PacketType::PubRec, id, ack_reason(matched));
        }
        // Invariant: the decoder gives QoS 1/2 a packet id (MQTT-2.3.1-1).
        (_, None) => debug_assert!(false, "QoS > 0 PUBLISH without packet id"),
    }
    Flow::Continue
}

/// A PUBLISH its client may not make (the ACL denies its topic, or the topic is one of the
/// broker's `$` topics): not routed, counted, logged once per client. MQTT 5 answers QoS 1/2
/// with 0x87 Not authorized (a PUBREC with an error ends the exchange: no PUBREL follows);
/// 3.1.1 has no way to say it, so the PUBLISH is acknowledged as usual (MQTT-3.3.5-2 allows
/// a server to drop it) and a QoS 2 id still awaits its PUBREL.
fn deny(shard: &mut Shard, key: ConnId, session_id: u32, publish: &PublishV5<'_>) -> Flow {
    shard.stats.denied_publish += 1;
    let (version, first) = match shard.pool.get_mut(key) {
        Ok(conn) => (
            conn.version,
            !std::mem::replace(&mut conn.refusal_logged, true),
        ),
        Err(_) => return Flow::Stop,
    };
    if first {
        let client = shard.sessions.get(session_id).map_or("", |s| &s.client_id);
        tracing::info!(
            client,
            topic = publish.topic,
            "PUBLISH not authorized (further refusals for this client are counted, not logged)"
        );
    }
    let v5 = version == ProtocolVersion::V5;
    let code = if v5 {
        ReasonCode::NotAuthorized
    } else {
        ReasonCode::Success
    };
    match (publish.qos, publish.packet_id) {
        (QoS::AtLeastOnce, Some(id)) => {
            shard.write_ack(key, PacketType::PubAck, id, code);
        }
        (QoS::ExactlyOnce, Some(id)) => {
            if !v5
                && let Some(session) = shard.sessions.get_mut(session_id)
                && !session.traffic().awaiting_rel.contains(&id)
            {
                session.traffic_mut().awaiting_rel.push(id);
                shard.journal.inbound(session, id, true);
            }
            shard.write_ack(key, PacketType::PubRec, id, code);
        }
        _ => {}
    }
    Flow::Continue
}

/// The reason code of a PUBACK or PUBREC: 0x10 No matching subscribers when the broker
/// knows nobody got the message (`routing::Matched`), Success otherwise. A 3.x ack carries
/// no reason code: the writer leaves it out.
fn ack_reason(matched: routing::Matched) -> ReasonCode {
    if matched {
        ReasonCode::Success
    } else {
        ReasonCode::NoMatchingSubscribers
    }
}

/// A payload that claims to be UTF-8 and is not: not routed; answered with 0x99 in the
/// acknowledgement (QoS 1/2) or a DISCONNECT (QoS 0) (§3.3.2.3.2).
fn refuse_payload(shard: &mut Shard, key: ConnId, publish: &PublishV5<'_>, now_ms: u64) -> Flow {
    let code = ReasonCode::PayloadFormatInvalid;
    let ack = match publish.qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce => Some(PacketType::PubAck),
        QoS::ExactlyOnce => Some(PacketType::PubRec),
    };
    match (ack, publish.packet_id) {
        (Some(packet_type), Some(id)) => {
            tracing::info!(conn = %key, topic = publish.topic, "PUBLISH refused: payload is not the UTF-8 its Payload Format Indicator claims (0x99)");
            shard.write_ack(key, packet_type, id, code);
            Flow::Continue
        }
        _ => {
            let what = "payload is not the UTF-8 its Payload Format Indicator claims";
            lifecycle::close_for(shard, key, what, code, &publish.topic, now_ms);
            Flow::Stop
        }
    }
}

/// Applies the PUBLISH's Topic Alias (MQTT 5): a topic with an alias sets the mapping
/// (MQTT-3.3.2-12), an empty topic uses it. Returns the alias and topic taken out of the
/// table to use for this PUBLISH, or the flow after a protocol error or a table that would
/// outgrow `max_topic_alias_bytes`. A topic over the topic limits is not mapped: the
/// PUBLISH is refused for its topic (0x90) instead.
fn resolve_alias(
    shard: &mut Shard,
    key: ConnId,
    publish: &PublishV5<'_>,
    now_ms: u64,
) -> Result<Option<(u16, Box<str>)>, Flow> {
    let Some(alias) = publish.properties.topic_alias.map(|a| a.get()) else {
        return Ok(None);
    };
    let maximum = shard.config.topic_alias_maximum;
    if alias > maximum {
        // MQTT-3.3.2-9: above the Topic Alias Maximum we announced (0: none allowed).
        let code = ReasonCode::TopicAliasInvalid;
        let what = "Topic Alias above Topic Alias Maximum (MQTT-3.3.2-9)";
        lifecycle::close_for(shard, key, what, code, &alias, now_ms);
        return Err(Flow::Stop);
    }
    let topic = publish.topic;
    if !topic.is_empty() && shard.config.topic_refusal(topic).is_some() {
        return Ok(None);
    }
    let Ok(conn) = shard.pool.get_mut(key) else {
        return Err(Flow::Stop);
    };
    let v5 = conn.v5.get_or_insert_with(Default::default);
    let at = v5.topic_aliases.iter().position(|(a, _)| *a == alias);
    if topic.is_empty() {
        return match at {
            Some(at) => Ok(Some(v5.topic_aliases.swap_remove(at))),
            None => {
                let what = "empty topic with an unknown Topic Alias";
                lifecycle::close_for(shard, key, what, ReasonCode::ProtocolError, &alias, now_ms);
                Err(Flow::Stop)
            }
        };
    }
    // A topic with an alias sets (or replaces) the mapping (MQTT-3.3.2-12).
    let replaced = at.map_or(0, |at| v5.topic_aliases[at].1.len());
    let bytes = v5.topic_alias_bytes - replaced + topic.len();
    if !shard.config.topic_aliases_fit(bytes) {
        return Err(refuse_alias_bytes(shard, key, bytes, now_ms));
    }
    if let Some(at) = at {
        v5.topic_aliases.swap_remove(at);
    }
    v5.topic_alias_bytes = bytes;
    Ok(Some((alias, topic.into())))
}

/// A client whose Topic Alias table would hold more than `max_topic_alias_bytes`: MQTT 5
/// has no way to announce a byte budget, only a count (Topic Alias Maximum), so the
/// connection is closed with 0x97 Quota exceeded, the reason code for an administrative
/// limit (§4.13; 0x95 Packet too large would blame a packet that is within the Maximum
/// Packet Size, and 0x94 Topic Alias invalid an alias that is within the maximum).
fn refuse_alias_bytes(shard: &mut Shard, key: ConnId, bytes: usize, now_ms: u64) -> Flow {
    shard.stats.refused_topic_alias_bytes += 1;
    let limit = shard.config.max_topic_alias_bytes;
    let why = format!("{bytes} bytes of topics > max_topic_alias_bytes {limit}");
    let what = "Topic Alias table over max_topic_alias_bytes";
    lifecycle::close_for(shard, key, what, ReasonCode::QuotaExceeded, &why, now_ms);
    Flow::Stop
}

/// Puts an alias's topic back after its PUBLISH was handled.
fn restore_alias(shard: &mut Shard, key: ConnId, alias: u16, topic: Box<str>) {
    if let Ok(conn) = shard.pool.get_mut(key)
        && let Some(v5) = conn.v5.as_mut()
    {
        v5.topic_aliases.push((alias, topic));
    }
}

/// A QoS 1/2 PUBLISH while the store fails (the disk is full, a write failed): nothing
/// is acknowledged that could not be stored. MQTT 5 answers 0x97 Quota exceeded (a PUBREC
/// with an error ends the exchange); 3.1.1 cannot refuse one PUBLISH, so the connection
/// is closed without an acknowledgement and the client sends it again after reconnecting.
/// QoS 0 is served as usual.
fn refuse_unstorable(
    shard: &mut Shard,
    key: ConnId,
    version: ProtocolVersion,
    publish: &PublishV5<'_>,
    now_ms: u64,
) -> Flow {
    shard.stats.refused_store_degraded += 1;
    let Some(id) = publish.packet_id else {
        return Flow::Continue;
    };
    if version != ProtocolVersion::V5 {
        let why = "the store cannot write (see the store's error)";
        let what = "QoS 1/2 PUBLISH while persistence is degraded";
        lifecycle::close_for(shard, key, what, ReasonCode::QuotaExceeded, &why, now_ms);
        return Flow::Stop;
    }
    let ack = match publish.qos {
        QoS::AtLeastOnce => PacketType::PubAck,
        _ => PacketType::PubRec,
    };
    shard.write_ack(key, ack, id, ReasonCode::QuotaExceeded);
    Flow::Continue
}

/// PUBREL: forget the id, answer PUBCOMP (also for an id we do not know: the client may be
/// retrying after our PUBCOMP was lost; MQTT 5 then says 0x92 Packet Identifier not found).
pub(crate) fn handle_pubrel(shard: &mut Shard, key: ConnId, id: u16) -> Flow {
    let Ok(conn) = shard.pool.get(key) else {
        return Flow::Stop;
    };
    let mut known = false;
    if let Some(session) = shard.sessions.get_mut(conn.session)
        && !session.traffic().awaiting_rel.is_empty()
    {
        let awaiting = &mut session.traffic_mut().awaiting_rel;
        let before = awaiting.len();
        awaiting.retain(|&pending| pending != id);
        known = awaiting.len() != before;
        if known {
            shard.journal.inbound(session, id, false);
        }
    }
    let code = if known {
        ReasonCode::Success
    } else {
        ReasonCode::PacketIdentifierNotFound
    };
    shard.write_ack(key, PacketType::PubComp, id, code);
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
