//! Error types of the codec: framing, decoding and encoding.

use std::fmt;

use super::ProtocolVersion;
use super::encode::ConnectReturnCode;
use super::frame::PacketType;
use crate::topic::TopicError;

/// MQTT 5 reason codes the codec's errors map to (MQTT 5.0 §2.4).
///
/// A v3.x connection has no reason codes on the wire; the code still classifies the error
/// (for logs and metrics) and is what a v5 connection will send in its DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// 0x81: the packet does not follow the wire format.
    MalformedPacket = 0x81,
    /// 0x82: well-formed, but not allowed here (wrong direction, packet id 0, …).
    ProtocolError = 0x82,
    /// 0x84: protocol name or level not supported.
    UnsupportedProtocolVersion = 0x84,
    /// 0x85: the client identifier is not acceptable.
    ClientIdentifierNotValid = 0x85,
    /// 0x8F: a SUBSCRIBE or UNSUBSCRIBE topic filter is not valid.
    TopicFilterInvalid = 0x8F,
    /// 0x90: a PUBLISH (or will) topic name is not valid.
    TopicNameInvalid = 0x90,
    /// 0x95: the packet is larger than the maximum packet size.
    PacketTooLarge = 0x95,
}

impl ReasonCode {
    /// The byte sent on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Why a fixed header cannot start a valid packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedFrame {
    /// The remaining-length varint has a continuation bit on its fourth byte (MQTT 3.1.1
    /// §2.2.3: at most four bytes).
    RemainingLengthTooLong,
    /// Packet type 0 (reserved in every version) or 15 (reserved in 3.x, AUTH in 5.0).
    ReservedPacketType(u8),
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
}

/// A complete frame that cannot be accepted: close the connection (after sending the
/// CONNACK from [`DecodeError::connack_return_code`], if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    context: &'static str,
}

impl DecodeError {
    pub(crate) const fn new(kind: DecodeErrorKind, context: &'static str) -> Self {
        DecodeError { kind, context }
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
        match self.kind {
            K::NotConnect(_)
            | K::UnexpectedPacketType(_)
            | K::PacketIdZero
            | K::NoTopicFilters(_) => ReasonCode::ProtocolError,
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
            | K::PasswordWithoutUsername => ReasonCode::MalformedPacket,
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

    /// The MQTT 3.1.1 normative statement this error enforces, when there is one.
    pub const fn statement(&self) -> Option<&'static str> {
        use DecodeErrorKind as K;
        Some(match self.kind {
            K::FrameLengthMismatch { .. }
            | K::MalformedRemainingLength
            | K::ReservedPacketType(_)
            | K::Truncated
            | K::TrailingBytes
            | K::V31ClientIdLength(_) => return None,
            K::NotConnect(_) => "MQTT-3.1.0-1",
            K::UnexpectedPacketType(_) => "MQTT-4.8.0-1",
            K::InvalidHeaderFlags { packet_type, .. } => match packet_type {
                PacketType::PubRel => "MQTT-3.6.1-1",
                PacketType::Subscribe => "MQTT-3.8.1-1",
                PacketType::Unsubscribe => "MQTT-3.10.1-1",
                _ => "MQTT-2.2.2-1",
            },
            K::InvalidUtf8 => "MQTT-1.5.3-1",
            K::NullCharacter => "MQTT-1.5.3-2",
            K::InvalidQoS(_) => "MQTT-3.3.1-4",
            K::DupWithQoS0 => "MQTT-3.3.1-2",
            K::PacketIdZero => "MQTT-2.3.1-1",
            K::InvalidTopicName(e) => match e {
                TopicError::Empty => "MQTT-4.7.3-1",
                TopicError::NullCharacter => "MQTT-4.7.3-2",
                TopicError::TooLong => "MQTT-4.7.3-3",
                TopicError::WildcardInName | TopicError::MisplacedWildcard => "MQTT-3.3.2-2",
            },
            K::InvalidTopicFilter(e) => match e {
                TopicError::Empty => "MQTT-4.7.3-1",
                TopicError::NullCharacter => "MQTT-4.7.3-2",
                TopicError::TooLong => "MQTT-4.7.3-3",
                TopicError::WildcardInName | TopicError::MisplacedWildcard => "MQTT-4.7.1-2",
            },
            K::NoTopicFilters(PacketType::Unsubscribe) => "MQTT-3.10.3-2",
            K::NoTopicFilters(_) => "MQTT-3.8.3-3",
            K::InvalidSubscriptionOptions(_) => "MQTT-3-8.3-4",
            K::InvalidProtocolName => "MQTT-3.1.2-1",
            K::UnsupportedProtocolLevel(_) => "MQTT-3.1.2-2",
            K::ConnectReservedFlag => "MQTT-3.1.2-3",
            K::WillQoSWithoutWill => "MQTT-3.1.2-13",
            K::WillRetainWithoutWill => "MQTT-3.1.2-15",
            K::InvalidWillQoS => "MQTT-3.1.2-14",
            K::PasswordWithoutUsername => "MQTT-3.1.2-22",
            K::EmptyClientIdWithoutCleanSession => "MQTT-3.1.3-8",
        })
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

/// Why an encoder wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output has room for `available` bytes; the packet needs `needed`.
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes the output can still take.
        available: usize,
    },
    /// The topic is longer than 65535 bytes (it is never truncated).
    TopicTooLong {
        /// Topic length in bytes.
        len: usize,
    },
    /// The remaining length would exceed [`MAX_REMAINING_LENGTH_BYTES`](super::MAX_REMAINING_LENGTH_BYTES).
    PacketTooLarge {
        /// The remaining length the packet would need.
        remaining_len: usize,
    },
    /// QoS 0 with a packet identifier, or QoS > 0 without one or with 0 (MQTT-2.3.1-1,
    /// MQTT-2.3.1-5).
    InvalidPacketId,
    /// DUP set on a QoS 0 PUBLISH (MQTT-3.3.1-2).
    DupWithQoS0,
    /// A SUBACK without return codes (it must answer at least one filter).
    NoReturnCodes,
    /// This packet's wire format differs in that version and is not implemented yet.
    UnsupportedVersion(ProtocolVersion),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed, available } => {
                write!(
                    f,
                    "packet needs {needed} bytes, output has room for {available}"
                )
            }
            EncodeError::TopicTooLong { len } => {
                write!(f, "topic of {len} bytes is longer than 65535")
            }
            EncodeError::PacketTooLarge { remaining_len } => {
                write!(f, "remaining length {remaining_len} exceeds 268435455")
            }
            EncodeError::InvalidPacketId => f.write_str("packet identifier does not match QoS"),
            EncodeError::DupWithQoS0 => f.write_str("DUP set on a QoS 0 PUBLISH"),
            EncodeError::NoReturnCodes => f.write_str("SUBACK without return codes"),
            EncodeError::UnsupportedVersion(v) => write!(f, "encoding for {v:?} not implemented"),
        }
    }
}

impl std::error::Error for EncodeError {}
