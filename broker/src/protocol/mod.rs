//! The codec boundary: frame checking, decoding client→server packets into our own types,
//! and encoding server→client packets.
//!
//! # Pipeline
//!
//! 1. [`check_frame`] looks at the fixed header and the remaining-length varint only. It
//!    tells "need more bytes" ([`FrameError::Incomplete`]) apart from "this stream is broken"
//!    ([`FrameError::Malformed`]) and from "this packet is bigger than we accept"
//!    ([`FrameError::TooLarge`], decided *before* the body is buffered).
//! 2. Once `frame_len()` bytes are buffered, [`decode_connect`] (first packet: the protocol
//!    version is not known yet) or [`decode`] turns the frame into a [`Packet`]. A decode error
//!    is never "need more bytes": the frame is complete, so anything missing inside it is
//!    malformed. Every [`DecodeError`] carries a machine-readable [`DecodeErrorKind`], the MQTT 5
//!    [`ReasonCode`] it maps to, the MQTT 3.1.1 CONNACK return code to send first (if any), and
//!    the normative statement it enforces.
//! 3. The `encode_*` functions write server→client packets into any [`bytes::BufMut`]. They
//!    compute the exact length first and write nothing unless the whole packet fits.
//!
//! PUBLISH is the hot path: [`PublishRef`] borrows the topic and payload from the frame and
//! neither decoding nor [`encode_publish`] allocates.
//!
//! # Versions
//!
//! [`ProtocolVersion`] has `V31` (protocol name `MQIsdp`, level 3), `V311` (`MQTT`, level 4)
//! and `V5` (`MQTT`, level 5). The 3.x family goes through [`decode_connect`], [`decode`]
//! and the `encode_*` functions; MQTT 5 through [`decode_connect_any`], [`decode_v5`] (or
//! [`decode_any`]) and the `encode_*_v5` functions of [`v5`], with properties in
//! [`properties`] and the full reason-code table in [`ReasonCode`]. [`decode_connect`] keeps
//! refusing a level-5 CONNECT with [`DecodeErrorKind::UnsupportedProtocolLevel`] (CONNACK
//! return code 0x01) without parsing its body, for callers that do not speak v5 yet, and
//! the 3.x encoders keep returning [`EncodeError::UnsupportedVersion`] for `V5`.
//!
//! # Codec crate: neither `mqttbytes` 0.6.0 nor `mqttbytes-ng` 0.7.1 is used
//!
//! Both were probed with the same hand-made byte strings (November 2026). Of the two,
//! `mqttbytes-ng` is the better crate (it refuses a SUBSCRIBE without filters, its errors
//! implement `std::error::Error`, its filter validator refuses `a+/b`), so it would be the
//! choice if a codec crate were used. It is not used, because for every packet we would have
//! to parse the raw bytes a second time ourselves to do the validation the standard asks of
//! a server, and in some cases its result is wrong rather than just lenient:
//!
//! - CONNECT: the 3.1 protocol name `MQIsdp` is refused (`InvalidProtocol`), so MQTT 3.1
//!   clients could not connect at all; a password that is not UTF-8 is refused
//!   (`TopicNotUtf8`) although the 3.1.1 password is binary data (§3.1.3.5); a username flag
//!   with an empty username comes back as "no login" (information lost); trailing bytes, the
//!   reserved flag (MQTT-3.1.2-3) and password-without-username (MQTT-3.1.2-22) are accepted;
//!   a level-5 CONNECT is misparsed by `v4` as a 3.1.1 one (the property length is read as
//!   the client-identifier length); the reader takes the frame by value and does not report
//!   how much it consumed, so trailing bytes cannot even be detected afterwards.
//! - SUBSCRIBE: the options byte is masked to its QoS bits before we can see it, so the
//!   reserved bits (MQTT-3-8.3-4) cannot be checked without re-parsing; packet id 0
//!   (MQTT-2.3.1-1), header flags 0x80 (MQTT-3.8.1-1) and `a/#/b` are accepted; 0.6.0 also
//!   accepts an empty filter list (MQTT-3.8.3-3).
//! - UNSUBSCRIBE: an empty filter list is accepted by both (MQTT-3.10.3-2).
//! - Everywhere: fixed-header flag bits are never checked (MQTT-2.2.2-1/2); packets only a
//!   server sends (CONNACK, SUBACK…) are decoded happily. In their `v5` modules (which we
//!   will need next) a property-length varint cut short inside a complete frame comes back
//!   as `InsufficientBytes(1)` (probed on both), which a read loop would take as "wait for
//!   more bytes" and hang on; the `v4` readers report such truncation as `BoundaryCrossed` or
//!   `MalformedPacket`.
//!
//! What the crate would save is a length-prefixed-string reader (see `reader.rs`, about 80
//! lines), while costing a second parse, a copy of each frame into a `Bytes` and an extra
//! dependency tree (`thiserror`). The differential test in `tests/protocol_differential.rs`
//! uses `mqtt5-protocol` 0.16 (dev-dependency only) as an oracle instead.

mod connect;
mod decode;
mod encode;
mod encode_error;
mod error;
mod frame;
pub mod properties;
mod reader;
mod reason;
mod statements;
mod subscribe;
pub mod v5;

pub use connect::{
    AnyConnect, Connect, Will, decode_connect, decode_connect_any, peek_connect_version,
};
pub use decode::{Packet, PublishRef, decode};
pub use encode::{
    ConnectReturnCode, SubackReturnCode, encode_connack, encode_pingresp, encode_puback,
    encode_pubcomp, encode_publish, encode_pubrec, encode_pubrel, encode_suback, encode_unsuback,
    publish_len, suback_len,
};
pub use error::{
    DecodeError, DecodeErrorKind, EncodeError, FrameError, MalformedFrame, ReasonCode,
    SharedFilterError,
};
pub use frame::{FrameHeader, PacketType, check_frame, check_frame_for};
pub use v5::{AnyPacket, PacketV5, decode_any, decode_v5};

/// The largest remaining length a four-byte varint can carry (MQTT 3.1.1 §2.2.3).
pub const MAX_REMAINING_LENGTH_BYTES: usize = 268_435_455;

/// The most bytes the remaining-length varint may use.
pub const MAX_VARINT_LEN_BYTES: usize = 4;

/// The shortest fixed header: one type-and-flags byte plus a one-byte remaining length.
pub const MIN_FIXED_HEADER_LEN_BYTES: usize = 2;

/// The longest fixed header: one type-and-flags byte plus a four-byte remaining length.
pub const MAX_FIXED_HEADER_LEN_BYTES: usize = 1 + MAX_VARINT_LEN_BYTES;

/// The longest client identifier MQTT 3.1 allows; a longer one gets CONNACK 0x02.
pub const MAX_V31_CLIENT_ID_LEN_BYTES: usize = 23;

/// The longest UTF-8 string or binary field: a two-byte length prefix.
pub const MAX_STRING_LEN_BYTES: usize = u16::MAX as usize;

/// The MQTT protocol revision a connection speaks, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0: protocol name `MQTT`, level 5 (codec in [`v5`]).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of the CONNECT variable header.
    pub const fn level(self) -> u8 {
        match self {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name of the CONNECT variable header.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V31 => "MQIsdp",
            ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// Whether this is one of the 3.x revisions (3.1 or 3.1.1), which share a wire format.
    pub const fn is_v3(self) -> bool {
        matches!(self, ProtocolVersion::V31 | ProtocolVersion::V311)
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V31 => "3.1",
            ProtocolVersion::V311 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        })
    }
}

/// Quality of service of a message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// At most once (0).
    AtMostOnce = 0,
    /// At least once (1).
    AtLeastOnce = 1,
    /// Exactly once (2).
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS with wire value `value`, or `None` for 3 and above.
    pub const fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The wire value (0, 1 or 2).
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}
