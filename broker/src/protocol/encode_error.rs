//! Why an encoder wrote nothing.

use std::fmt;

use super::ProtocolVersion;
use super::frame::PacketType;
use super::reason::ReasonCode;

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
    /// MQTT 5: the packet (fixed header included) would be `size` bytes, more than the
    /// peer's Maximum Packet Size `max` (MQTT-3.1.2-24); nothing was written. For acks the
    /// Reason String and User Properties were already left out (MQTT-3.2.2-19/20…).
    ExceedsMaximumPacketSize {
        /// The smallest encoding's size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// MQTT 5: a string or binary field is longer than 65535 bytes.
    StringTooLong,
    /// MQTT 5: a reason code not valid in this packet (MQTT 5.0 Table 2-6).
    InvalidReasonCode {
        /// The packet being encoded.
        packet_type: PacketType,
        /// The code given.
        code: ReasonCode,
    },
    /// MQTT 5: a property value the spec forbids (Topic Alias 0, Subscription Identifier
    /// 0 or above 268435455, a 0/1 property given another value…); the property id.
    InvalidProperty(u8),
    /// MQTT 5: an empty topic name without a Topic Alias.
    EmptyTopicWithoutAlias,
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
            EncodeError::ExceedsMaximumPacketSize { size, max } => {
                write!(
                    f,
                    "packet of {size} bytes exceeds the maximum packet size {max}"
                )
            }
            EncodeError::StringTooLong => f.write_str("string longer than 65535 bytes"),
            EncodeError::InvalidReasonCode { packet_type, code } => {
                write!(f, "reason code {code:?} is not valid in {packet_type:?}")
            }
            EncodeError::InvalidProperty(id) => write!(f, "invalid value for property {id:#04x}"),
            EncodeError::EmptyTopicWithoutAlias => {
                f.write_str("empty topic name without a Topic Alias")
            }
        }
    }
}

impl std::error::Error for EncodeError {}
