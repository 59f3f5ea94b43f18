//! MQTT 5 PUBLISH (MQTT 5.0 §3.3): decoded as a view borrowing topic, properties and
//! payload from the frame, and encoded from the same type without allocating.

use std::num::NonZeroU16;

use bytes::BufMut;

use super::out::{measure, write_frame};
use super::wire::{Sink, SubscriptionIds, UserProperties, prop_bytes, prop_u8, prop_u16, prop_u32};
use crate::protocol::decode::{PublishFlags, PublishRef, publish_flags};
use crate::protocol::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::protocol::frame::PacketType;
use crate::protocol::properties::{
    Direction, PropertyContext, PropertyId, PropertyValue, parse_properties,
};
use crate::protocol::reader::Reader;
use crate::protocol::{MAX_STRING_LEN_BYTES, QoS};
use crate::topic::validate_topic_name;

const PUBLISH: u8 = 0x30;

/// The Payload Format Indicator (MQTT 5.0 §3.3.2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified = 0,
    /// 1: UTF-8 encoded character data.
    Utf8 = 1,
}

impl PayloadFormat {
    pub(crate) const fn from_u8(b: u8) -> PayloadFormat {
        // The parser only lets 0 and 1 through.
        if b == 1 {
            PayloadFormat::Utf8
        } else {
            PayloadFormat::Unspecified
        }
    }

    /// Whether `payload` is consistent with this indicator: any bytes for `Unspecified`,
    /// well-formed UTF-8 for `Utf8`. A receiver MAY check (MQTT-3.3.2-4 lets the sender
    /// promise it); a failed check is answered with 0x99 Payload format invalid.
    pub fn accepts(self, payload: &[u8]) -> bool {
        self == PayloadFormat::Unspecified || std::str::from_utf8(payload).is_ok()
    }
}

/// The properties of a PUBLISH. Decoded, the User Properties and Subscription
/// Identifiers are lazy views over the frame; to encode, set what the subscriber must see
/// (e.g. the remaining Message Expiry Interval, this subscriber's Subscription Identifiers,
/// no or another Topic Alias).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishProperties<'a> {
    /// Payload Format Indicator.
    pub payload_format: Option<PayloadFormat>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval_secs: Option<u32>,
    /// Topic Alias (never 0: MQTT-3.3.2-8).
    pub topic_alias: Option<NonZeroU16>,
    /// Response Topic (a valid topic name, MQTT-3.3.2-14).
    pub response_topic: Option<&'a str>,
    /// Correlation Data.
    pub correlation_data: Option<&'a [u8]>,
    /// User Properties, forwarded unchanged and in order (MQTT-3.3.2-17/18).
    pub user_properties: UserProperties<'a>,
    /// Subscription Identifiers (server→client only, MQTT-3.3.4-6).
    pub subscription_identifiers: SubscriptionIds<'a>,
    /// Content Type.
    pub content_type: Option<&'a str>,
}

impl PublishProperties<'_> {
    fn emit(&self, s: &mut dyn Sink) {
        prop_u8(
            s,
            PropertyId::PayloadFormatIndicator,
            self.payload_format.map(|f| f as u8),
        );
        prop_u32(
            s,
            PropertyId::MessageExpiryInterval,
            self.message_expiry_interval_secs,
        );
        prop_u16(
            s,
            PropertyId::TopicAlias,
            self.topic_alias.map(NonZeroU16::get),
        );
        prop_bytes(
            s,
            PropertyId::ResponseTopic,
            self.response_topic.map(str::as_bytes),
        );
        prop_bytes(s, PropertyId::CorrelationData, self.correlation_data);
        self.user_properties.emit(s);
        self.subscription_identifiers.emit(s);
        prop_bytes(
            s,
            PropertyId::ContentType,
            self.content_type.map(str::as_bytes),
        );
    }
}

/// An MQTT 5 PUBLISH borrowed from its frame (decoding allocates nothing), and the input of
/// [`encode_publish_v5`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishV5<'a> {
    /// Topic name: validated, or empty when a Topic Alias stands for it (§3.3.2.1). The
    /// codec does not resolve aliases: that needs the connection's alias table.
    pub topic: &'a str,
    /// Application payload (may be empty).
    pub payload: &'a [u8],
    /// Delivery QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// DUP flag (only ever set with QoS > 0).
    pub dup: bool,
    /// Packet identifier: `Some` (non-zero) exactly when QoS > 0.
    pub packet_id: Option<u16>,
    /// Properties.
    pub properties: PublishProperties<'a>,
}

impl<'a> PublishV5<'a> {
    /// A v3 PUBLISH seen as v5 (no properties): what a v5 subscriber gets from a v3
    /// publisher.
    pub fn from_v3(p: &PublishRef<'a>) -> Self {
        PublishV5 {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            dup: p.dup,
            packet_id: p.packet_id,
            properties: PublishProperties::default(),
        }
    }

    /// The v3 view (properties dropped), or `None` while the topic is empty (an alias
    /// not resolved yet).
    pub fn to_v3(&self) -> Option<PublishRef<'a>> {
        (!self.topic.is_empty()).then_some(PublishRef {
            topic: self.topic,
            payload: self.payload,
            qos: self.qos,
            retain: self.retain,
            dup: self.dup,
            packet_id: self.packet_id,
        })
    }

    /// Decodes a PUBLISH body sent in `direction` (the broker decodes
    /// [`Direction::ClientToServer`]; Subscription Identifiers are then refused).
    pub(crate) fn decode_body(
        flags: u8,
        body: &'a [u8],
        direction: Direction,
    ) -> Result<Self, DecodeError> {
        let PublishFlags { qos, dup, retain } = publish_flags(flags)?;
        let mut r = Reader::new(body);
        let topic = r.utf8("PUBLISH topic")?;
        if !topic.is_empty() {
            validate_topic_name(topic).map_err(|e| {
                DecodeError::new(DecodeErrorKind::InvalidTopicName(e), "PUBLISH topic")
            })?;
        }
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(r.packet_id("PUBLISH packet identifier")?),
        };
        let mut props = PublishProperties::default();
        let block = parse_properties(
            &mut r,
            PropertyContext::Packet(PacketType::Publish),
            direction,
            "PUBLISH properties",
            |id, v| match (id, v) {
                (PropertyId::PayloadFormatIndicator, PropertyValue::Byte(b)) => {
                    props.payload_format = Some(PayloadFormat::from_u8(b));
                }
                (PropertyId::MessageExpiryInterval, PropertyValue::U32(n)) => {
                    props.message_expiry_interval_secs = Some(n);
                }
                (PropertyId::TopicAlias, PropertyValue::U16(n)) => {
                    props.topic_alias = NonZeroU16::new(n);
                }
                (PropertyId::ResponseTopic, PropertyValue::Str(s)) => {
                    props.response_topic = Some(s);
                }
                (PropertyId::CorrelationData, PropertyValue::Binary(b)) => {
                    props.correlation_data = Some(b);
                }
                (PropertyId::ContentType, PropertyValue::Str(s)) => props.content_type = Some(s),
                _ => {}
            },
        )?;
        props.user_properties = UserProperties::wire(block);
        props.subscription_identifiers = SubscriptionIds::wire(block);
        if topic.is_empty() && props.topic_alias.is_none() {
            return Err(DecodeError::new(
                DecodeErrorKind::EmptyTopicWithoutAlias,
                "PUBLISH topic",
            ));
        }
        Ok(PublishV5 {
            topic,
            payload: r.rest(),
            qos,
            retain,
            dup,
            packet_id,
            properties: props,
        })
    }

    fn check(&self) -> Result<(), EncodeError> {
        if self.topic.len() > MAX_STRING_LEN_BYTES {
            return Err(EncodeError::TopicTooLong {
                len: self.topic.len(),
            });
        }
        if self.topic.is_empty() && self.properties.topic_alias.is_none() {
            return Err(EncodeError::EmptyTopicWithoutAlias);
        }
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) => {}
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) if id != 0 => {}
            _ => return Err(EncodeError::InvalidPacketId),
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::DupWithQoS0);
        }
        self.properties.subscription_identifiers.check()
    }

    fn emit(&self, s: &mut dyn Sink) {
        s.string(self.topic.as_bytes());
        if let Some(id) = self.packet_id {
            s.u16(id);
        }
        super::wire::properties(s, &|s| self.properties.emit(s));
        s.bytes(self.payload);
    }

    fn first_byte(&self) -> u8 {
        PUBLISH | (u8::from(self.dup) << 3) | (self.qos.as_u8() << 1) | u8::from(self.retain)
    }
}

/// Exact encoded size of `publish`, fixed header included: compare it with the
/// subscriber's Maximum Packet Size before queueing (a message too large for a subscriber
/// is dropped for that subscriber, MQTT-3.1.2-25).
pub fn publish_v5_len(publish: &PublishV5<'_>) -> Result<usize, EncodeError> {
    publish.check()?;
    measure(&|s| publish.emit(s))
}

/// Encodes an MQTT 5 PUBLISH if it is at most `max_packet_size_bytes` (the subscriber's
/// Maximum Packet Size, or [`UNLIMITED_PACKET_SIZE_BYTES`](super::UNLIMITED_PACKET_SIZE_BYTES))
/// and fits `out`; otherwise writes nothing. No allocation. Properties are never dropped
/// to fit (User Properties must reach the subscriber unchanged, MQTT-3.3.2-17).
pub fn encode_publish_v5<B: BufMut + ?Sized>(
    out: &mut B,
    publish: &PublishV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    publish.check()?;
    write_frame(out, publish.first_byte(), max_packet_size_bytes, &|s| {
        publish.emit(s)
    })
}
