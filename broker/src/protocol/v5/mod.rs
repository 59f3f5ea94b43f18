//! The MQTT 5.0 wire format: decoding every client→server packet and encoding every
//! server→client packet.
//!
//! # Entry points
//!
//! - [`decode_connect_any`](super::decode_connect_any) decodes the first packet of any
//!   version; [`decode_connect`] keeps refusing level 5 for callers
//!   that do not speak v5 yet.
//! - [`decode_v5`] decodes the later frames of a v5 connection (framed with
//!   [`check_frame_for`](super::check_frame_for)`(V5, …)`, which also refuses a
//!   non-minimal remaining length, MQTT-1.5.5-1); [`decode_any`] dispatches on the version.
//!   [`decode`](super::decode) stays 3.x-only, so its [`Packet`] type is
//!   unchanged for the core.
//! - The `encode_*_v5` functions take the peer's Maximum Packet Size
//!   (`max_packet_size_bytes`, [`UNLIMITED_PACKET_SIZE_BYTES`] when none): PUBLISH is
//!   refused whole if too large ([`publish_v5_len`] tells beforehand); acknowledgements,
//!   CONNACK, DISCONNECT and AUTH first leave out the Reason String, then the User
//!   Properties ([`Trim`]), as MQTT-3.2.2-19/20 and siblings require. The `*_v5_len`
//!   functions give the exact size that would be written.
//!
//! Every error from a v5 decoder reports [`DecodeError::is_v5`], its MQTT 5
//! [`ReasonCode`](super::ReasonCode) (0x81 malformed vs 0x82 protocol error as the spec
//! text says, see [`properties`](super::properties)) and its MQTT 5.0 statement number.
//!
//! # What the codec leaves to the session layer
//!
//! Topic Alias resolution and its maximum (0x94), Receive Maximum accounting (0x93),
//! Session Expiry changes at DISCONNECT (not from 0, §3.14.2.2.2), Payload Format
//! validation of payloads (0x99, [`PayloadFormat::accepts`]), Authentication Method support
//! (0x8C), a second CONNECT (MQTT-3.1.0-2) and an AUTH before CONNACK.

mod acks;
mod connack;
mod connect;
mod out;
mod publish;
mod subscribe;
mod wire;

pub use acks::{
    AckV5, AuthV5, DisconnectV5, ack_v5_len, disconnect_v5_len, encode_ack_v5, encode_auth_v5,
    encode_disconnect_v5,
};
pub use connack::{
    ConnAckProperties, ConnAckV5, SubAckV5, connack_v5_len, encode_connack_v5, encode_suback_v5,
    encode_unsuback_v5, suback_v5_len,
};
pub(crate) use connect::decode_connect_v5_rest;
pub use connect::{ConnectProperties, ConnectV5, WillProperties};
pub use out::{Trim, UNLIMITED_PACKET_SIZE_BYTES};
pub use publish::{PayloadFormat, PublishProperties, PublishV5, encode_publish_v5, publish_v5_len};
pub use subscribe::{
    RetainHandling, SHARED_PREFIX, SharedFilter, SubscribeV5, SubscriptionOptions, SubscriptionV5,
    UnsubscribeV5, parse_shared_filter,
};
pub use wire::{MAX_VARINT_VALUE, SubscriptionIds, UserProperties, UserProperty, UserPropertyIter};

use super::ProtocolVersion;
use super::connect::decode_connect;
use super::decode::{Packet, decode, split_frame};
use super::error::{DecodeError, DecodeErrorKind};
use super::frame::PacketType;
use super::properties::Direction;

/// A decoded MQTT 5 client→server packet. PUBLISH, the acks, DISCONNECT and AUTH borrow
/// from the frame; CONNECT, SUBSCRIBE and UNSUBSCRIBE are owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketV5<'a> {
    /// CONNECT on an established connection: the session layer refuses it
    /// (MQTT-3.1.0-2).
    Connect(Box<ConnectV5>),
    /// PUBLISH.
    Publish(PublishV5<'a>),
    /// PUBACK.
    PubAck(AckV5<'a>),
    /// PUBREC.
    PubRec(AckV5<'a>),
    /// PUBREL.
    PubRel(AckV5<'a>),
    /// PUBCOMP.
    PubComp(AckV5<'a>),
    /// SUBSCRIBE.
    Subscribe(SubscribeV5),
    /// UNSUBSCRIBE.
    Unsubscribe(UnsubscribeV5),
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect(DisconnectV5<'a>),
    /// AUTH.
    Auth(AuthV5<'a>),
}

/// Decodes one complete frame received on an MQTT 5 connection.
pub fn decode_v5(frame: &[u8]) -> Result<PacketV5<'_>, DecodeError> {
    decode_v5_inner(frame).map_err(DecodeError::in_v5)
}

fn decode_v5_inner(frame: &[u8]) -> Result<PacketV5<'_>, DecodeError> {
    let (header, body) = split_frame(ProtocolVersion::V5, frame)?;
    Ok(match header.packet_type {
        PacketType::Connect => match super::connect::decode_connect_any(frame)? {
            super::connect::AnyConnect::V5(c) => PacketV5::Connect(c),
            // A v3 CONNECT on a v5 connection: refused as a v5 one would be.
            super::connect::AnyConnect::V3(_) => {
                return decode_connect(frame).and_then(|_| {
                    Err(DecodeError::new(
                        DecodeErrorKind::UnexpectedPacketType(PacketType::Connect),
                        "CONNECT",
                    ))
                });
            }
        },
        PacketType::Publish => PacketV5::Publish(PublishV5::decode_body(
            header.flags,
            body,
            Direction::ClientToServer,
        )?),
        PacketType::PubAck => PacketV5::PubAck(acks::decode_ack(&header, body)?),
        PacketType::PubRec => PacketV5::PubRec(acks::decode_ack(&header, body)?),
        PacketType::PubRel => PacketV5::PubRel(acks::decode_ack(&header, body)?),
        PacketType::PubComp => PacketV5::PubComp(acks::decode_ack(&header, body)?),
        PacketType::Subscribe => PacketV5::Subscribe(subscribe::decode_subscribe(&header, body)?),
        PacketType::Unsubscribe => {
            PacketV5::Unsubscribe(subscribe::decode_unsubscribe(&header, body)?)
        }
        PacketType::PingReq => {
            super::decode::expect_flags(&header, 0, "PINGREQ fixed header")?;
            if !body.is_empty() {
                return Err(DecodeError::new(DecodeErrorKind::TrailingBytes, "PINGREQ"));
            }
            PacketV5::PingReq
        }
        PacketType::Disconnect => PacketV5::Disconnect(acks::decode_disconnect(&header, body)?),
        PacketType::Auth => PacketV5::Auth(acks::decode_auth(&header, body)?),
        other @ (PacketType::ConnAck
        | PacketType::SubAck
        | PacketType::UnsubAck
        | PacketType::PingResp) => {
            return Err(DecodeError::new(
                DecodeErrorKind::UnexpectedPacketType(other),
                "packet type",
            ));
        }
    })
}

/// Decodes a PUBLISH frame as a client receives it: Subscription Identifiers allowed, and
/// repeatable (§3.3.2.3.8). For tests and bridges; the broker uses [`decode_v5`].
pub fn decode_publish_from_server(frame: &[u8]) -> Result<PublishV5<'_>, DecodeError> {
    let inner = || {
        let (header, body) = split_frame(ProtocolVersion::V5, frame)?;
        if header.packet_type != PacketType::Publish {
            return Err(DecodeError::new(
                DecodeErrorKind::UnexpectedPacketType(header.packet_type),
                "packet type",
            ));
        }
        PublishV5::decode_body(header.flags, body, Direction::ServerToClient)
    };
    inner().map_err(DecodeError::in_v5)
}

/// A decoded client→server packet of either wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyPacket<'a> {
    /// MQTT 3.1 / 3.1.1.
    V3(Packet<'a>),
    /// MQTT 5.0.
    V5(PacketV5<'a>),
}

/// Decodes a frame received on a connection speaking `version`: [`decode`] for 3.x,
/// [`decode_v5`] for 5.0.
pub fn decode_any(version: ProtocolVersion, frame: &[u8]) -> Result<AnyPacket<'_>, DecodeError> {
    if version.is_v3() {
        decode(version, frame).map(AnyPacket::V3)
    } else {
        decode_v5(frame).map(AnyPacket::V5)
    }
}
