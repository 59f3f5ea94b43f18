//! MQTT 5 properties (MQTT 5.0 §2.2.2): identifiers, data types, the packets each may appear
//! in, and a validating single-pass parser over a property block.
//!
//! Validation rules and their reason codes:
//!
//! | rule | reason | where the spec says so |
//! |---|---|---|
//! | unknown identifier | 0x81 Malformed | §2.2.2.2 |
//! | identifier not valid for the packet (or the will) | 0x81 Malformed | §2.2.2.2 |
//! | value cut short, ill-formed UTF-8, U+0000 | 0x81 Malformed | §2.2.2.2, MQTT-1.5.4-1/2, MQTT-1.5.7-1 |
//! | variable byte integer not minimal | 0x81 Malformed | MQTT-1.5.5-1 |
//! | single-value property twice | 0x82 Protocol Error | each property's §, e.g. §3.3.2.3.4 |
//! | Topic Alias 0 | 0x82 Protocol Error | MQTT-3.3.2-8, §3.3.2.3.4 |
//! | Subscription Identifier 0 | 0x82 Protocol Error | §3.3.2.3.8, §3.8.2.1.2 |
//! | Receive Maximum 0, Maximum Packet Size 0 | 0x82 Protocol Error | §3.1.2.11.3, §3.1.2.11.4 |
//! | a Byte property (Payload Format Indicator, Request Problem/Response Information, Maximum QoS, the *Available flags) other than 0 or 1 | 0x82 Protocol Error | §3.1.2.11.6/7, §3.2.2.3.4… (see below) |
//! | Subscription Identifier in a client→server PUBLISH | 0x82 Protocol Error | MQTT-3.3.4-6 |
//! | Response Topic with wildcards | 0x82 Protocol Error | MQTT-3.3.2-14 |
//!
//! The spec does not name a reason code for a Payload Format Indicator other than 0 or 1;
//! the value has the right data type (Byte), so it is not malformed, and every other
//! two-valued Byte property is explicitly a Protocol Error, so that is used here too.

use super::error::{DecodeError, DecodeErrorKind};
use super::frame::PacketType;
use super::reader::Reader;
use crate::topic::validate_topic_name;

/// The wire data type of a property value (MQTT 5.0 §1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    /// One byte.
    Byte,
    /// Big-endian u16.
    TwoByteInteger,
    /// Big-endian u32.
    FourByteInteger,
    /// Variable byte integer (1 to 4 bytes, minimal).
    VariableByteInteger,
    /// Length-prefixed UTF-8 string.
    Utf8String,
    /// Length-prefixed binary data.
    BinaryData,
    /// Two UTF-8 strings (name, value).
    Utf8StringPair,
}

/// Where a property block sits: a packet type, or the will properties of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyContext {
    /// A packet's own properties.
    Packet(PacketType),
    /// The will properties in a CONNECT payload.
    Will,
}

impl PropertyContext {
    const fn mask(self) -> u32 {
        match self {
            PropertyContext::Packet(t) => 1 << (t as u32),
            PropertyContext::Will => WILL,
        }
    }

    /// The packet type reported in errors (CONNECT for the will).
    pub const fn packet_type(self) -> PacketType {
        match self {
            PropertyContext::Packet(t) => t,
            PropertyContext::Will => PacketType::Connect,
        }
    }
}

/// Who sent the packet: decides whether Subscription Identifiers may appear in a PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server: what the broker decodes.
    ClientToServer,
    /// Server to client: what the broker encodes (decoded in tests and by bridges).
    ServerToClient,
}

const fn p(t: PacketType) -> u32 {
    1 << (t as u32)
}
/// Bit for the will properties (above the 16 packet types).
const WILL: u32 = 1 << 16;
const CONNECT: u32 = p(PacketType::Connect);
const CONNACK: u32 = p(PacketType::ConnAck);
const PUBLISH: u32 = p(PacketType::Publish);
const SUBSCRIBE: u32 = p(PacketType::Subscribe);
const DISCONNECT: u32 = p(PacketType::Disconnect);
const AUTH: u32 = p(PacketType::Auth);
/// Packets with a Reason String: every ack, DISCONNECT and AUTH.
const REASON_STRING: u32 = CONNACK
    | p(PacketType::PubAck)
    | p(PacketType::PubRec)
    | p(PacketType::PubRel)
    | p(PacketType::PubComp)
    | p(PacketType::SubAck)
    | p(PacketType::UnsubAck)
    | DISCONNECT
    | AUTH;
/// User Property: every packet with properties, and the will.
const USER_PROPERTY: u32 =
    REASON_STRING | CONNECT | PUBLISH | SUBSCRIBE | p(PacketType::Unsubscribe) | WILL;

/// Every property identifier of MQTT 5.0 (§2.2.2.2, Table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // The names are the spec's; `PropertyId::name` spells them out.
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQoS = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

impl PropertyId {
    /// The property with identifier `id`, or `None` for an unknown one.
    pub const fn from_u8(id: u8) -> Option<PropertyId> {
        use PropertyId as P;
        Some(match id {
            0x01 => P::PayloadFormatIndicator,
            0x02 => P::MessageExpiryInterval,
            0x03 => P::ContentType,
            0x08 => P::ResponseTopic,
            0x09 => P::CorrelationData,
            0x0B => P::SubscriptionIdentifier,
            0x11 => P::SessionExpiryInterval,
            0x12 => P::AssignedClientIdentifier,
            0x13 => P::ServerKeepAlive,
            0x15 => P::AuthenticationMethod,
            0x16 => P::AuthenticationData,
            0x17 => P::RequestProblemInformation,
            0x18 => P::WillDelayInterval,
            0x19 => P::RequestResponseInformation,
            0x1A => P::ResponseInformation,
            0x1C => P::ServerReference,
            0x1F => P::ReasonString,
            0x21 => P::ReceiveMaximum,
            0x22 => P::TopicAliasMaximum,
            0x23 => P::TopicAlias,
            0x24 => P::MaximumQoS,
            0x25 => P::RetainAvailable,
            0x26 => P::UserProperty,
            0x27 => P::MaximumPacketSize,
            0x28 => P::WildcardSubscriptionAvailable,
            0x29 => P::SubscriptionIdentifierAvailable,
            0x2A => P::SharedSubscriptionAvailable,
            _ => return None,
        })
    }

    /// The identifier byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The value's data type.
    pub const fn data_type(self) -> PropertyType {
        use PropertyId as P;
        use PropertyType as T;
        match self {
            P::PayloadFormatIndicator
            | P::RequestProblemInformation
            | P::RequestResponseInformation
            | P::MaximumQoS
            | P::RetainAvailable
            | P::WildcardSubscriptionAvailable
            | P::SubscriptionIdentifierAvailable
            | P::SharedSubscriptionAvailable => T::Byte,
            P::ServerKeepAlive | P::ReceiveMaximum | P::TopicAliasMaximum | P::TopicAlias => {
                T::TwoByteInteger
            }
            P::MessageExpiryInterval
            | P::SessionExpiryInterval
            | P::WillDelayInterval
            | P::MaximumPacketSize => T::FourByteInteger,
            P::SubscriptionIdentifier => T::VariableByteInteger,
            P::ContentType
            | P::ResponseTopic
            | P::AssignedClientIdentifier
            | P::AuthenticationMethod
            | P::ResponseInformation
            | P::ServerReference
            | P::ReasonString => T::Utf8String,
            P::CorrelationData | P::AuthenticationData => T::BinaryData,
            P::UserProperty => T::Utf8StringPair,
        }
    }

    const fn contexts(self) -> u32 {
        use PropertyId as P;
        match self {
            P::PayloadFormatIndicator
            | P::MessageExpiryInterval
            | P::ContentType
            | P::ResponseTopic
            | P::CorrelationData => PUBLISH | WILL,
            P::SubscriptionIdentifier => PUBLISH | SUBSCRIBE,
            P::SessionExpiryInterval => CONNECT | CONNACK | DISCONNECT,
            P::AssignedClientIdentifier
            | P::ServerKeepAlive
            | P::ResponseInformation
            | P::MaximumQoS
            | P::RetainAvailable
            | P::WildcardSubscriptionAvailable
            | P::SubscriptionIdentifierAvailable
            | P::SharedSubscriptionAvailable => CONNACK,
            P::AuthenticationMethod | P::AuthenticationData => CONNECT | CONNACK | AUTH,
            P::RequestProblemInformation | P::RequestResponseInformation => CONNECT,
            P::WillDelayInterval => WILL,
            P::ServerReference => CONNACK | DISCONNECT,
            P::ReasonString => REASON_STRING,
            P::ReceiveMaximum | P::TopicAliasMaximum | P::MaximumPacketSize => CONNECT | CONNACK,
            P::TopicAlias => PUBLISH,
            P::UserProperty => USER_PROPERTY,
        }
    }

    /// Whether this property may appear in `context` (MQTT 5.0 Table 2-4).
    pub const fn allowed_in(self, context: PropertyContext) -> bool {
        self.contexts() & context.mask() != 0
    }

    /// Whether this property may appear more than once in `context` sent in `direction`:
    /// User Property always, Subscription Identifier only in a server→client PUBLISH.
    pub const fn may_repeat(self, context: PropertyContext, direction: Direction) -> bool {
        match self {
            PropertyId::UserProperty => true,
            PropertyId::SubscriptionIdentifier => matches!(
                (context, direction),
                (
                    PropertyContext::Packet(PacketType::Publish),
                    Direction::ServerToClient
                )
            ),
            _ => false,
        }
    }

    /// The spec's name.
    pub const fn name(self) -> &'static str {
        use PropertyId as P;
        match self {
            P::PayloadFormatIndicator => "Payload Format Indicator",
            P::MessageExpiryInterval => "Message Expiry Interval",
            P::ContentType => "Content Type",
            P::ResponseTopic => "Response Topic",
            P::CorrelationData => "Correlation Data",
            P::SubscriptionIdentifier => "Subscription Identifier",
            P::SessionExpiryInterval => "Session Expiry Interval",
            P::AssignedClientIdentifier => "Assigned Client Identifier",
            P::ServerKeepAlive => "Server Keep Alive",
            P::AuthenticationMethod => "Authentication Method",
            P::AuthenticationData => "Authentication Data",
            P::RequestProblemInformation => "Request Problem Information",
            P::WillDelayInterval => "Will Delay Interval",
            P::RequestResponseInformation => "Request Response Information",
            P::ResponseInformation => "Response Information",
            P::ServerReference => "Server Reference",
            P::ReasonString => "Reason String",
            P::ReceiveMaximum => "Receive Maximum",
            P::TopicAliasMaximum => "Topic Alias Maximum",
            P::TopicAlias => "Topic Alias",
            P::MaximumQoS => "Maximum QoS",
            P::RetainAvailable => "Retain Available",
            P::UserProperty => "User Property",
            P::MaximumPacketSize => "Maximum Packet Size",
            P::WildcardSubscriptionAvailable => "Wildcard Subscription Available",
            P::SubscriptionIdentifierAvailable => "Subscription Identifier Available",
            P::SharedSubscriptionAvailable => "Shared Subscription Available",
        }
    }
}

/// One decoded property value, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyValue<'a> {
    /// A Byte (validated 0 or 1).
    Byte(u8),
    /// A Two Byte Integer.
    U16(u16),
    /// A Four Byte Integer.
    U32(u32),
    /// A Variable Byte Integer.
    Varint(u32),
    /// A UTF-8 string (well-formed, no U+0000).
    Str(&'a str),
    /// Binary data.
    Binary(&'a [u8]),
    /// A UTF-8 string pair.
    Pair(&'a str, &'a str),
}

impl<'a> PropertyValue<'a> {
    /// The value as an integer, for the integer types.
    pub const fn as_u32(self) -> Option<u32> {
        match self {
            PropertyValue::Byte(b) => Some(b as u32),
            PropertyValue::U16(v) => Some(v as u32),
            PropertyValue::U32(v) | PropertyValue::Varint(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string.
    pub const fn as_str(self) -> Option<&'a str> {
        match self {
            PropertyValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as binary data.
    pub const fn as_bytes(self) -> Option<&'a [u8]> {
        match self {
            PropertyValue::Binary(b) => Some(b),
            _ => None,
        }
    }
}

fn read_value<'a>(
    r: &mut Reader<'a>,
    id: PropertyId,
    context: &'static str,
) -> Result<PropertyValue<'a>, DecodeError> {
    let invalid = |value: u32| {
        Err(DecodeError::new(
            DecodeErrorKind::InvalidPropertyValue {
                id: id.as_u8(),
                value,
            },
            context,
        ))
    };
    let value = match id.data_type() {
        PropertyType::Byte => PropertyValue::Byte(r.u8(context)?),
        PropertyType::TwoByteInteger => PropertyValue::U16(r.u16(context)?),
        PropertyType::FourByteInteger => PropertyValue::U32(r.u32(context)?),
        PropertyType::VariableByteInteger => PropertyValue::Varint(r.varint(context)?),
        PropertyType::Utf8String => PropertyValue::Str(r.string(context)?),
        PropertyType::BinaryData => PropertyValue::Binary(r.binary(context)?),
        PropertyType::Utf8StringPair => PropertyValue::Pair(r.string(context)?, r.string(context)?),
    };
    match (id, value) {
        (_, PropertyValue::Byte(b)) if b > 1 => return invalid(u32::from(b)),
        (
            PropertyId::TopicAlias
            | PropertyId::ReceiveMaximum
            | PropertyId::MaximumPacketSize
            | PropertyId::SubscriptionIdentifier,
            PropertyValue::U16(0) | PropertyValue::U32(0) | PropertyValue::Varint(0),
        ) => return invalid(0),
        (PropertyId::ResponseTopic, PropertyValue::Str(topic)) => {
            validate_topic_name(topic)
                .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidResponseTopic(e), context))?;
        }
        _ => {}
    }
    Ok(value)
}

/// Reads a property length and the block it announces from `r`, validates every property
/// for `ctx` sent in `direction`, and calls `f` with each one in order. Returns the block
/// (without its length prefix), which later views iterate without re-validating.
pub(crate) fn parse_properties<'a>(
    r: &mut Reader<'a>,
    ctx: PropertyContext,
    direction: Direction,
    context: &'static str,
    mut f: impl FnMut(PropertyId, PropertyValue<'a>),
) -> Result<&'a [u8], DecodeError> {
    let len = r.varint(context)?;
    let block = r.take(len as usize, context)?;
    let mut props = Reader::new(block);
    let mut seen = 0u64;
    while !props.is_empty() {
        let raw = props.u8(context)?;
        let fail = |kind| Err(DecodeError::new(kind, context));
        let Some(id) = PropertyId::from_u8(raw) else {
            return fail(DecodeErrorKind::UnknownProperty(raw));
        };
        if !id.allowed_in(ctx) {
            return fail(DecodeErrorKind::PropertyNotAllowed {
                id: raw,
                packet_type: ctx.packet_type(),
            });
        }
        if id == PropertyId::SubscriptionIdentifier
            && ctx == PropertyContext::Packet(PacketType::Publish)
            && direction == Direction::ClientToServer
        {
            return fail(DecodeErrorKind::SubscriptionIdentifierFromClient);
        }
        let bit = 1u64 << raw;
        if seen & bit != 0 && !id.may_repeat(ctx, direction) {
            return fail(DecodeErrorKind::DuplicateProperty(raw));
        }
        seen |= bit;
        f(id, read_value(&mut props, id, context)?);
    }
    Ok(block)
}

/// Iterates a block that [`parse_properties`] validated. Stops (rather than panicking) if
/// the bytes were not validated.
#[derive(Debug, Clone)]
pub(crate) struct PropertyIter<'a> {
    r: Reader<'a>,
}

impl<'a> PropertyIter<'a> {
    pub(crate) const fn new(block: &'a [u8]) -> Self {
        PropertyIter {
            r: Reader::new(block),
        }
    }
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = (PropertyId, PropertyValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let id = PropertyId::from_u8(self.r.u8("properties").ok()?)?;
        match read_value(&mut self.r, id, "properties") {
            Ok(value) => Some((id, value)),
            Err(_) => {
                self.r = Reader::new(&[]);
                None
            }
        }
    }
}
