//! Error types of the codec: framing, decoding and encoding.

use std::fmt;

use super::encode::ConnectReturnCode;
pub use super::encode_error::EncodeError;
use super::frame::PacketType;
pub use super::reason::ReasonCode;
use crate::topic::TopicError;

/// Why a fixed header cannot start a valid packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedFrame {
    /// The remaining-length varint has a continuation bit on its fourth byte (MQTT 3.1.1
    /// §2.2.3: at most four bytes).
    RemainingLengthTooLong,
    /// Packet type 0 (reserved in every version) or 15 (reserved in 3.x, AUTH in 5.0).
    ReservedPacketType(u8),
    /// MQTT 5 only: the remaining length is not encoded in the fewest bytes
    /// (MQTT-1.5.5-1), e.g. `0x80 0x00` for zero.
    NonMinimalRemainingLength,
}

/// The outcome of [`check_frame`](super::check_frame) when no whole frame is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Not enough bytes yet: read more and call again. `needed` is the exact number of
    /// further bytes that completes the frame once the fixed header is complete, and `None`
    /// while the fixed header itself is incomplete (at least one more byte is needed).
    Incomplete {
        /// Further bytes needed, when known.
        needed: Option<usize>,
    },
    /// The stream cannot be a valid MQTT stream: close the connection.
    Malformed(MalformedFrame),
    /// The fixed header announces a packet of `size` bytes (fixed header included), more
    /// than the maximum packet size. Decided before the body is buffered.
    TooLarge {
        /// Total size of the announced packet in bytes, fixed header included.
        size: usize,
    },
}

impl FrameError {
    /// `true` for [`FrameError::Incomplete`]: the only case where reading on makes sense.
    pub const fn is_incomplete(&self) -> bool {
        matches!(self, FrameError::Incomplete { .. })
    }

    /// The MQTT 5 reason code to close with, or `None` for [`FrameError::Incomplete`].
    pub const fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            FrameError::Incomplete { .. } => None,
            FrameError::Malformed(_) => Some(ReasonCode::MalformedPacket),
            FrameError::TooLarge { .. } => Some(ReasonCode::PacketTooLarge),
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete { needed: Some(n) } => {
                write!(f, "incomplete frame: {n} more bytes needed")
            }
            FrameError::Incomplete { needed: None } => f.write_str("incomplete fixed header"),
            FrameError::Malformed(MalformedFrame::RemainingLengthTooLong) => {
                f.write_str("malformed frame: remaining length longer than 4 bytes")
            }
            FrameError::Malformed(MalformedFrame::ReservedPacketType(t)) => {
                write!(f, "malformed frame: reserved packet type {t}")
            }
            FrameError::Malformed(MalformedFrame::NonMinimalRemainingLength) => {
                f.write_str("malformed frame: remaining length not minimally encoded")
            }
            FrameError::TooLarge { size } => {
                write!(f, "packet of {size} bytes exceeds the maximum packet size")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// What is wrong with a complete frame. Machine-readable; see [`DecodeError`] for the
/// reason code, CONNACK code and normative statement of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The slice given to the decoder is not exactly one frame (caller error).
    FrameLengthMismatch {
        /// Frame length announced by the fixed header.
        expected: usize,
        /// Length of the slice passed in.
        actual: usize,
    },
    /// The remaining-length varint is longer than four bytes.
    MalformedRemainingLength,
    /// Packet type 0, or 15 in 3.x.
    ReservedPacketType(u8),
    /// The first packet of a connection is not a CONNECT.
    NotConnect(PacketType),
    /// A packet only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP) came from a client.
    UnexpectedPacketType(PacketType),
    /// Reserved fixed-header flag bits are not as the spec lists them.
    InvalidHeaderFlags {
        /// The packet type.
        packet_type: PacketType,
        /// The low nibble of the first byte.
        flags: u8,
    },
    /// A field runs past the end of the frame.
    Truncated,
    /// Bytes left after the last field.
    TrailingBytes,
    /// A UTF-8 string field is not well-formed UTF-8.
    InvalidUtf8,
    /// A UTF-8 string field contains U+0000.
    NullCharacter,
    /// PUBLISH QoS bits are both set.
    InvalidQoS(u8),
    /// PUBLISH with DUP=1 and QoS 0.
    DupWithQoS0,
    /// Packet identifier 0 where a non-zero one is required.
    PacketIdZero,
    /// A PUBLISH or will topic name is invalid.
    InvalidTopicName(TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE topic filter is invalid.
    InvalidTopicFilter(TopicError),
    /// A SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    NoTopicFilters(PacketType),
    /// A SUBSCRIBE options byte with reserved bits set or QoS 3.
    InvalidSubscriptionOptions(u8),
    /// CONNECT protocol name is neither `MQTT` nor `MQIsdp`.
    InvalidProtocolName,
    /// CONNECT protocol level not supported (includes 5 until v5 lands).
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags bit 0 (reserved) is set.
    ConnectReservedFlag,
    /// Will QoS non-zero while the will flag is 0.
    WillQoSWithoutWill,
    /// Will retain set while the will flag is 0.
    WillRetainWithoutWill,
    /// Will QoS is 3.
    InvalidWillQoS,
    /// Password flag set while the username flag is 0 (allowed again in 5.0).
    PasswordWithoutUsername,
    /// Zero-length client identifier with clean session 0.
    EmptyClientIdWithoutCleanSession,
    /// MQTT 3.1 client identifier outside 1..=23 bytes.
    V31ClientIdLength(usize),
    // ---- MQTT 5 only ----
    /// A variable byte integer uses more bytes than its value needs (MQTT-1.5.5-1).
    NonMinimalVarint,
    /// A variable byte integer has a continuation bit on its fourth byte.
    MalformedVarint,
    /// A property identifier the spec does not define (§2.2.2.2: malformed).
    UnknownProperty(u8),
    /// A property not allowed in this packet (or in the will properties) (§2.2.2.2:
    /// malformed).
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// The packet it appeared in (CONNECT for will properties).
        packet_type: PacketType,
    },
    /// A single-value property included more than once (protocol error).
    DuplicateProperty(u8),
    /// A property value the spec forbids: Topic Alias, Subscription Identifier, Receive
    /// Maximum or Maximum Packet Size 0; a 0/1 byte property with another value.
    InvalidPropertyValue {
        /// The property identifier.
        id: u8,
        /// The value received.
        value: u32,
    },
    /// A Subscription Identifier in a client→server PUBLISH (MQTT-3.3.4-6).
    SubscriptionIdentifierFromClient,
    /// A zero-length topic name without a Topic Alias (§3.3.2.1: protocol error).
    EmptyTopicWithoutAlias,
    /// A Response Topic that is not a valid topic name (MQTT-3.3.2-14; for a will, §3.1.3.2.5).
    InvalidResponseTopic(TopicError),
    /// A reason code the packet may not carry, or a client may not send.
    InvalidReasonCode {
        /// The packet type.
        packet_type: PacketType,
        /// The reason-code byte received.
        code: u8,
    },
    /// An AUTH packet without an Authentication Method (§3.15.2.2.2).
    MissingAuthenticationMethod,
    /// Authentication Data without an Authentication Method (§3.1.2.11.10).
    AuthenticationDataWithoutMethod,
    /// SUBSCRIBE options with Maximum QoS 3 (§3.8.3.1: protocol error).
    InvalidSubscriptionQoS,
    /// SUBSCRIBE options with Retain Handling 3 (§3.8.3.1: protocol error).
    InvalidRetainHandling,
    /// No Local set on a shared subscription (MQTT-3.8.3-4).
    NoLocalOnSharedSubscription,
    /// A `$share/` filter that is not `$share/{ShareName}/{filter}` (MQTT-4.8.2-1,
    /// MQTT-4.8.2-2).
    InvalidSharedSubscription(SharedFilterError),
}

/// What is wrong with a `$share/{ShareName}/{filter}` topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedFilterError {
    /// The ShareName is empty (MQTT-4.8.2-1).
    EmptyShareName,
    /// The ShareName contains `+` or `#` (MQTT-4.8.2-2).
    WildcardInShareName,
    /// No `/` and topic filter after the ShareName (MQTT-4.8.2-2).
    MissingFilter,
    /// The filter after the ShareName is not a valid topic filter.
    InvalidFilter(TopicError),
}

/// A complete frame that cannot be accepted: close the connection (after sending the
/// CONNACK from [`DecodeError::connack_return_code`], if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    context: &'static str,
    v5: bool,
}

impl DecodeError {
    pub(crate) const fn new(kind: DecodeErrorKind, context: &'static str) -> Self {
        DecodeError {
            kind,
            context,
            v5: false,
        }
    }

    /// Marks the error as found on an MQTT 5 packet (statement numbers follow 5.0).
    pub(crate) const fn in_v5(mut self) -> Self {
        self.v5 = true;
        self
    }

    /// Whether the error was found decoding an MQTT 5 packet.
    pub const fn is_v5(&self) -> bool {
        self.v5
    }

    /// The machine-readable reason.
    pub const fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// Where in the packet the problem is, e.g. `"PUBLISH topic"`.
    pub const fn context(&self) -> &'static str {
        self.context
    }

    /// The MQTT 5 reason code this error maps to.
    pub const fn reason_code(&self) -> ReasonCode {
        use DecodeErrorKind as K;
        use TopicError::NullCharacter as Nul;
        match self.kind {
            // U+0000 in any UTF-8 string, topics included, makes the packet malformed
            // (MQTT-1.5.4-2), whatever else the field's own rules say.
            K::InvalidTopicName(Nul)
            | K::InvalidTopicFilter(Nul)
            | K::InvalidResponseTopic(Nul)
            | K::InvalidSharedSubscription(SharedFilterError::InvalidFilter(Nul)) => {
                ReasonCode::MalformedPacket
            }
            K::NotConnect(_)
            | K::UnexpectedPacketType(_)
            | K::PacketIdZero
            | K::NoTopicFilters(_)
            | K::DuplicateProperty(_)
            | K::InvalidPropertyValue { .. }
            | K::SubscriptionIdentifierFromClient
            | K::EmptyTopicWithoutAlias
            | K::InvalidResponseTopic(_)
            | K::InvalidReasonCode { .. }
            | K::MissingAuthenticationMethod
            | K::AuthenticationDataWithoutMethod
            | K::InvalidSubscriptionQoS
            | K::InvalidRetainHandling
            | K::NoLocalOnSharedSubscription => ReasonCode::ProtocolError,
            K::InvalidSharedSubscription(_) => ReasonCode::TopicFilterInvalid,
            K::InvalidProtocolName | K::UnsupportedProtocolLevel(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            K::EmptyClientIdWithoutCleanSession | K::V31ClientIdLength(_) => {
                ReasonCode::ClientIdentifierNotValid
            }
            K::InvalidTopicName(_) => ReasonCode::TopicNameInvalid,
            K::InvalidTopicFilter(_) => ReasonCode::TopicFilterInvalid,
            K::FrameLengthMismatch { .. }
            | K::MalformedRemainingLength
            | K::ReservedPacketType(_)
            | K::InvalidHeaderFlags { .. }
            | K::Truncated
            | K::TrailingBytes
            | K::InvalidUtf8
            | K::NullCharacter
            | K::InvalidQoS(_)
            | K::DupWithQoS0
            | K::InvalidSubscriptionOptions(_)
            | K::ConnectReservedFlag
            | K::WillQoSWithoutWill
            | K::WillRetainWithoutWill
            | K::InvalidWillQoS
            | K::PasswordWithoutUsername
            | K::NonMinimalVarint
            | K::MalformedVarint
            | K::UnknownProperty(_)
            | K::PropertyNotAllowed { .. } => ReasonCode::MalformedPacket,
        }
    }

    /// For a CONNECT problem, the MQTT 3.x CONNACK return code to send before closing
    /// (0x01 unacceptable protocol version, 0x02 identifier rejected); `None` means close
    /// without a CONNACK.
    pub const fn connack_return_code(&self) -> Option<ConnectReturnCode> {
        match self.kind {
            DecodeErrorKind::UnsupportedProtocolLevel(_) => {
                Some(ConnectReturnCode::UnacceptableProtocolVersion)
            }
            DecodeErrorKind::EmptyClientIdWithoutCleanSession
            | DecodeErrorKind::V31ClientIdLength(_) => Some(ConnectReturnCode::IdentifierRejected),
            _ => None,
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind as K;
        match self {
            K::FrameLengthMismatch { expected, actual } => {
                write!(
                    f,
                    "frame is {actual} bytes but its header announces {expected}"
                )
            }
            K::MalformedRemainingLength => f.write_str("remaining length longer than 4 bytes"),
            K::ReservedPacketType(t) => write!(f, "reserved packet type {t}"),
            K::NotConnect(t) => write!(f, "expected CONNECT, got {t:?}"),
            K::UnexpectedPacketType(t) => write!(f, "{t:?} is never sent by a client"),
            K::InvalidHeaderFlags { packet_type, flags } => {
                write!(
                    f,
                    "invalid fixed-header flags {flags:#06b} for {packet_type:?}"
                )
            }
            K::Truncated => f.write_str("field runs past the end of the packet"),
            K::TrailingBytes => f.write_str("unexpected bytes after the last field"),
            K::InvalidUtf8 => f.write_str("string is not well-formed UTF-8"),
            K::NullCharacter => f.write_str("string contains U+0000"),
            K::InvalidQoS(q) => write!(f, "invalid QoS {q}"),
            K::DupWithQoS0 => f.write_str("DUP flag set on a QoS 0 PUBLISH"),
            K::PacketIdZero => f.write_str("packet identifier is 0"),
            K::InvalidTopicName(e) => write!(f, "invalid topic name: {e}"),
            K::InvalidTopicFilter(e) => write!(f, "invalid topic filter: {e}"),
            K::NoTopicFilters(t) => write!(f, "{t:?} carries no topic filter"),
            K::InvalidSubscriptionOptions(o) => {
                write!(
                    f,
                    "subscription options {o:#04x}: reserved bits set or QoS 3"
                )
            }
            K::InvalidProtocolName => f.write_str("protocol name is neither MQTT nor MQIsdp"),
            K::UnsupportedProtocolLevel(l) => write!(f, "unacceptable protocol level {l}"),
            K::ConnectReservedFlag => f.write_str("reserved CONNECT flag is set"),
            K::WillQoSWithoutWill => f.write_str("will QoS set without the will flag"),
            K::WillRetainWithoutWill => f.write_str("will retain set without the will flag"),
            K::InvalidWillQoS => f.write_str("will QoS is 3"),
            K::PasswordWithoutUsername => f.write_str("password flag set without username flag"),
            K::EmptyClientIdWithoutCleanSession => {
                f.write_str("empty client identifier requires clean session")
            }
            K::V31ClientIdLength(n) => {
                write!(
                    f,
                    "MQTT 3.1 client identifier must be 1 to 23 bytes, got {n}"
                )
            }
            K::NonMinimalVarint => f.write_str("variable byte integer not minimally encoded"),
            K::MalformedVarint => f.write_str("variable byte integer longer than 4 bytes"),
            K::UnknownProperty(id) => write!(f, "unknown property identifier {id:#04x}"),
            K::PropertyNotAllowed { id, packet_type } => {
                write!(f, "property {id:#04x} is not allowed in {packet_type:?}")
            }
            K::DuplicateProperty(id) => write!(f, "property {id:#04x} included more than once"),
            K::InvalidPropertyValue { id, value } => {
                write!(f, "property {id:#04x} has the invalid value {value}")
            }
            K::SubscriptionIdentifierFromClient => {
                f.write_str("Subscription Identifier in a PUBLISH from a client")
            }
            K::EmptyTopicWithoutAlias => f.write_str("empty topic name without a Topic Alias"),
            K::InvalidResponseTopic(e) => write!(f, "invalid Response Topic: {e}"),
            K::InvalidReasonCode { packet_type, code } => {
                write!(f, "reason code {code:#04x} is not valid in {packet_type:?}")
            }
            K::MissingAuthenticationMethod => f.write_str("AUTH without Authentication Method"),
            K::AuthenticationDataWithoutMethod => {
                f.write_str("Authentication Data without Authentication Method")
            }
            K::InvalidSubscriptionQoS => f.write_str("subscription Maximum QoS 3"),
            K::InvalidRetainHandling => f.write_str("subscription Retain Handling 3"),
            K::NoLocalOnSharedSubscription => f.write_str("No Local on a shared subscription"),
            K::InvalidSharedSubscription(e) => write!(f, "invalid shared subscription: {e:?}"),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.kind)?;
        if let Some(statement) = self.statement() {
            write!(f, " [{statement}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for DecodeError {}
