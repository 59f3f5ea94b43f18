//! Writing packets into a connection's output in the connection's own protocol version:
//! one writer per packet kind, each choosing the 3.1.1 or the MQTT 5 encoder, so handlers
//! never branch on the version themselves.
//!
//! MQTT 5 packets are encoded under the client's Maximum Packet Size: acknowledgements
//! leave out Reason Strings and User Properties to fit (the encoders' `Trim` ladder), and
//! a PUBLISH that does not fit is not written at all (MQTT-3.1.2-25; the caller counts
//! the drop).

use std::num::NonZeroU16;

use bumpalo::Bump;

use crate::core::{ConnId, Shard};
use crate::protocol::v5::{
    AckV5, DisconnectV5, PublishV5, SubAckV5, SubscriptionIds, UserProperties, encode_ack_v5,
    encode_disconnect_v5, encode_publish_v5, encode_suback_v5, encode_unsuback_v5,
};
use crate::protocol::{
    EncodeError, PacketType, ProtocolVersion, QoS, ReasonCode, SubackReturnCode, encode_puback,
    encode_pubcomp, encode_publish, encode_pubrec, encode_pubrel, encode_suback, encode_unsuback,
};

impl Shard {
    /// Encodes one packet into `key`'s output (lending it a buffer if it has none) and marks
    /// it for the driver. `encode` gets the output, the connection's version and the
    /// client's Maximum Packet Size. Returns whether it was written.
    pub(crate) fn write_with(
        &mut self,
        key: ConnId,
        encode: impl FnOnce(&mut Vec<u8>, ProtocolVersion, usize) -> Result<usize, EncodeError>,
    ) -> bool {
        let Ok(conn) = self.pool.get_mut(key) else {
            return false;
        };
        if conn.output.capacity() == 0 {
            conn.output = self.buffers.take();
        }
        let version = conn.version;
        let peer_max = conn.peer_max_packet_size_bytes();
        let start = conn.output.len();
        let encoded = encode(&mut conn.output, version, peer_max);
        // Invariant: an encoder only appends (a failed one leaves what it wrote counted).
        debug_assert!(conn.output.len() >= start);
        self.output_backlog_bytes += conn.output.len().saturating_sub(start);
        match encoded {
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

    /// [`Shard::write_with`] for an encoder that needs only the version.
    pub(crate) fn write(
        &mut self,
        key: ConnId,
        encode: impl FnOnce(&mut Vec<u8>, ProtocolVersion) -> Result<usize, EncodeError>,
    ) -> bool {
        self.write_with(key, |out, version, _| encode(out, version))
    }

    /// PUBACK, PUBREC, PUBREL or PUBCOMP with `reason` (3.x: the reason is not on the wire).
    pub(crate) fn write_ack(
        &mut self,
        key: ConnId,
        packet_type: PacketType,
        packet_id: u16,
        reason: ReasonCode,
    ) -> bool {
        self.write_with(key, |out, version, peer_max| {
            if version == ProtocolVersion::V5 {
                let ack = AckV5 {
                    packet_id,
                    reason,
                    reason_string: None,
                    user_properties: UserProperties::NONE,
                };
                return encode_ack_v5(out, packet_type, &ack, peer_max);
            }
            match packet_type {
                PacketType::PubAck => encode_puback(out, version, packet_id),
                PacketType::PubRec => encode_pubrec(out, version, packet_id),
                PacketType::PubRel => encode_pubrel(out, version, packet_id),
                _ => encode_pubcomp(out, version, packet_id),
            }
        })
    }

    /// SUBACK with one code per filter (3.x: granted QoS or 0x80 Failure).
    pub(crate) fn write_suback(
        &mut self,
        key: ConnId,
        packet_id: u16,
        codes: &[ReasonCode],
        scratch: &Bump,
    ) -> bool {
        self.write_with(key, |out, version, peer_max| {
            if version == ProtocolVersion::V5 {
                return encode_suback_v5(out, &suback(packet_id, codes), peer_max);
            }
            let mut v3 = bumpalo::collections::Vec::with_capacity_in(codes.len(), scratch);
            v3.extend(codes.iter().map(|&code| match QoS::from_u8(code.as_u8()) {
                Some(qos) => SubackReturnCode::Granted(qos),
                None => SubackReturnCode::Failure,
            }));
            encode_suback(out, version, packet_id, &v3)
        })
    }

    /// UNSUBACK (3.x has no reason codes).
    pub(crate) fn write_unsuback(
        &mut self,
        key: ConnId,
        packet_id: u16,
        codes: &[ReasonCode],
    ) -> bool {
        self.write_with(key, |out, version, peer_max| {
            if version == ProtocolVersion::V5 {
                return encode_unsuback_v5(out, &suback(packet_id, codes), peer_max);
            }
            encode_unsuback(out, version, packet_id)
        })
    }

    /// A server DISCONNECT with `reason`, for MQTT 5 connections (3.x has none: the
    /// connection is just closed). Returns whether one was written.
    pub(crate) fn write_disconnect(&mut self, key: ConnId, reason: ReasonCode) -> bool {
        let is_v5 = self
            .pool
            .get(key)
            .is_ok_and(|c| c.version == ProtocolVersion::V5);
        is_v5
            && self.write_with(key, |out, _, peer_max| {
                encode_disconnect_v5(out, &DisconnectV5::new(reason), peer_max)
            })
    }

    /// A PUBLISH to the client of `key`: for MQTT 5 with this delivery's Subscription
    /// Identifiers and the Message Expiry Interval left at `now_ms`; for 3.x without
    /// properties. `false` when it was not written (for v5, too large for the client).
    pub(crate) fn write_publish(
        &mut self,
        key: ConnId,
        publish: &PublishV5<'_>,
        sub_ids: &[u32],
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> bool {
        // Toward a v5 client that accepts Topic Aliases, the topic may go as an alias
        // (decided now, recorded only once the packet is written: MQTT-3.3.2-10/11).
        let budget_bytes = self.config.max_topic_alias_bytes;
        let alias = self
            .pool
            .get(key)
            .ok()
            .and_then(|c| c.v5.as_ref())
            .and_then(|v| v.out_aliases.choose(publish.topic, budget_bytes));
        let written = self.write_with(key, |out, version, peer_max| {
            if version != ProtocolVersion::V5 {
                let v3 = publish.to_v3().ok_or(EncodeError::EmptyTopicWithoutAlias)?;
                return encode_publish(out, version, &v3);
            }
            let mut view = for_subscriber(publish, sub_ids, expires_at_ms, now_ms);
            if let Some(choice) = alias {
                view.properties.topic_alias = NonZeroU16::new(choice.alias());
                if choice.is_known() {
                    view.topic = "";
                }
            }
            encode_publish_v5(out, &view, peer_max)
        });
        if let (true, Some(choice)) = (written, alias)
            && let Ok(conn) = self.pool.get_mut(key)
            && let Some(v5) = conn.v5.as_mut()
        {
            v5.out_aliases.record(choice, publish.topic);
        }
        written
    }
}

/// Aliases the broker gives topics toward one client at most (fewer if the client's Topic
/// Alias Maximum is lower): enough for the few hot topics of a typical subscriber, while
/// the topics they hold stay bounded per connection.
pub const OUT_TOPIC_ALIASES_MAX: u16 = 16;

/// The Topic Aliases the broker set toward one v5 client (empty when it accepts none).
#[derive(Debug, Default)]
pub struct OutAliases {
    /// The client's Topic Alias Maximum, capped at [`OUT_TOPIC_ALIASES_MAX`].
    maximum: u16,
    /// The topic of each alias (index: alias − 1).
    topics: Vec<Box<str>>,
    /// Bytes of `topics`, kept within `max_topic_alias_bytes`.
    // Invariant: the sum of the lengths of `topics`.
    bytes: usize,
    /// The slot reused next once all are taken (round-robin).
    next: u16,
}

/// How one PUBLISH names its topic toward a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasChoice {
    /// The topic already has this alias: send the alias with an empty topic.
    Known(u16),
    /// Send the topic and (re)map this alias to it.
    Set(u16),
}

impl AliasChoice {
    fn alias(self) -> u16 {
        match self {
            AliasChoice::Known(a) | AliasChoice::Set(a) => a,
        }
    }

    fn is_known(self) -> bool {
        matches!(self, AliasChoice::Known(_))
    }
}

impl OutAliases {
    /// For a client announcing Topic Alias Maximum `client_maximum`.
    pub fn new(client_maximum: u16) -> OutAliases {
        OutAliases {
            maximum: client_maximum.min(OUT_TOPIC_ALIASES_MAX),
            topics: Vec::new(),
            bytes: 0,
            next: 0,
        }
    }

    /// Topic bytes the aliases hold.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How to send `topic`, or `None` when the client takes no aliases or mapping it would
    /// take the table past `budget_bytes` (0: no byte limit): the topic then goes in full.
    fn choose(&self, topic: &str, budget_bytes: usize) -> Option<AliasChoice> {
        if self.maximum == 0 || topic.is_empty() {
            return None;
        }
        if let Some(at) = self.topics.iter().position(|t| &**t == topic) {
            return Some(AliasChoice::Known(at as u16 + 1));
        }
        let len = self.topics.len() as u16;
        let slot = if len < self.maximum { len } else { self.next };
        // Invariant: aliases stay within 1..=the client's maximum (MQTT-3.1.2-26).
        debug_assert!(slot < self.maximum);
        let replaced = self.topics.get(usize::from(slot)).map_or(0, |t| t.len());
        if budget_bytes != 0 && self.bytes - replaced + topic.len() > budget_bytes {
            return None;
        }
        Some(AliasChoice::Set(slot + 1))
    }

    /// Records what was sent.
    fn record(&mut self, choice: AliasChoice, topic: &str) {
        let AliasChoice::Set(alias) = choice else {
            return;
        };
        let slot = usize::from(alias - 1);
        if slot == self.topics.len() {
            self.topics.push(topic.into());
            self.bytes += topic.len();
        } else if let Some(t) = self.topics.get_mut(slot) {
            self.bytes = self.bytes - t.len() + topic.len();
            *t = topic.into();
            self.next = (alias) % self.maximum;
        }
        debug_assert_eq!(
            self.bytes,
            self.topics.iter().map(|t| t.len()).sum::<usize>()
        );
    }
}

/// The PUBLISH a v5 subscriber sees: no Topic Alias of the publisher's, its own
/// Subscription Identifiers (MQTT-3.3.4-3), and the expiry interval that is left
/// (MQTT-3.3.2-6).
pub(crate) fn for_subscriber<'a>(
    publish: &PublishV5<'a>,
    sub_ids: &'a [u32],
    expires_at_ms: Option<u64>,
    now_ms: u64,
) -> PublishV5<'a> {
    let mut view = *publish;
    view.properties.topic_alias = None;
    view.properties.subscription_identifiers = SubscriptionIds::from_slice(sub_ids);
    view.properties.message_expiry_interval_secs =
        expires_at_ms.map(|at| remaining_secs(at, now_ms));
    view
}

/// Whole seconds left until `expires_at_ms`, rounded up (a message delivered in its last
/// second still says 1, never 0 which would read as "no expiry left").
pub(crate) fn remaining_secs(expires_at_ms: u64, now_ms: u64) -> u32 {
    let ms = expires_at_ms.saturating_sub(now_ms);
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX).max(1)
}

fn suback<'a>(packet_id: u16, codes: &'a [ReasonCode]) -> SubAckV5<'a> {
    SubAckV5 {
        packet_id,
        reason_codes: codes,
        reason_string: None,
        user_properties: UserProperties::NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brokers_aliases_stay_within_the_byte_budget() {
        let mut aliases = OutAliases::new(4);
        let long = "t/".repeat(30); // 60 bytes
        let first = aliases.choose(&long, 100).expect("fits");
        assert_eq!(first, AliasChoice::Set(1));
        aliases.record(first, &long);
        assert_eq!(aliases.bytes(), 60);
        assert_eq!(aliases.choose(&long, 100), Some(AliasChoice::Known(1)));
        let other = "u/".repeat(30);
        assert_eq!(
            aliases.choose(&other, 100),
            None,
            "120 bytes > 100: sent in full"
        );
        let short = "s/1";
        let second = aliases.choose(short, 100).expect("63 bytes fit");
        aliases.record(second, short);
        assert_eq!(aliases.bytes(), 63);
        assert_eq!(
            aliases.choose(&other, 0),
            Some(AliasChoice::Set(3)),
            "0: no byte limit"
        );
    }

    #[test]
    fn a_replaced_alias_gives_its_bytes_back() {
        let mut aliases = OutAliases::new(1);
        let a = "a".repeat(80);
        let b = "b".repeat(90);
        let choice = aliases.choose(&a, 100).expect("fits");
        aliases.record(choice, &a);
        // The only slot is reused: 80 out, 90 in.
        let choice = aliases.choose(&b, 100).expect("fits once a is replaced");
        assert_eq!(choice, AliasChoice::Set(1));
        aliases.record(choice, &b);
        assert_eq!(aliases.bytes(), 90);
    }
}
