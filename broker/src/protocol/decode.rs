//! Decoding complete client→server frames into [`Packet`]s.

use super::connect::{Connect, decode_connect};
use super::error::{DecodeError, DecodeErrorKind, FrameError, MalformedFrame};
use super::frame::{FrameHeader, PacketType, check_frame_for};
use super::reader::Reader;
use super::subscribe::{decode_subscribe, decode_unsubscribe};
use super::{ProtocolVersion, QoS};
use crate::topic::validate_topic_name;

/// Fixed-header flags of PUBREL, SUBSCRIBE and UNSUBSCRIBE (MQTT-2.2.2-1).
pub(crate) const FLAGS_0010: u8 = 0b0010;

/// The DUP bit an MQTT 3.1 client sets when it resends PUBREL, SUBSCRIBE or UNSUBSCRIBE
/// (3.1 §3.6, §3.8, §3.10: "QoS level 1", DUP set on a retry).
const V31_RETRY_DUP: u8 = 0b1000;

const PUBLISH_DUP: u8 = 0b1000;
const PUBLISH_QOS_MASK: u8 = 0b0110;
const PUBLISH_QOS_SHIFT: u8 = 1;
const PUBLISH_RETAIN: u8 = 0b0001;

/// A PUBLISH borrowed from its frame: decoding it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRef<'a> {
    /// Topic name, validated (no wildcards, not empty, no U+0000).
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
}

/// A decoded client→server packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// CONNECT. [`decode`] returns it too, so that the session layer can refuse a second
    /// CONNECT as a protocol violation (MQTT-3.1.0-2).
    Connect(Box<Connect>),
    /// PUBLISH, borrowed from the frame.
    Publish(PublishRef<'a>),
    /// PUBACK with its packet identifier.
    PubAck(u16),
    /// PUBREC with its packet identifier.
    PubRec(u16),
    /// PUBREL with its packet identifier.
    PubRel(u16),
    /// PUBCOMP with its packet identifier.
    PubComp(u16),
    /// SUBSCRIBE: at least one validated filter with its requested QoS.
    Subscribe {
        /// Packet identifier (non-zero).
        packet_id: u16,
        /// Topic filters and requested QoS, in packet order.
        filters: Vec<(String, QoS)>,
    },
    /// UNSUBSCRIBE: at least one validated filter.
    Unsubscribe {
        /// Packet identifier (non-zero).
        packet_id: u16,
        /// Topic filters, in packet order.
        filters: Vec<String>,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
}

/// Decodes one complete frame (exactly the `frame_len()` bytes that
/// [`check_frame`](super::check_frame) reported) received on a connection speaking
/// `version`.
///
/// Packets only a server sends are refused ([`DecodeErrorKind::UnexpectedPacketType`]).
/// `version` must be a 3.x version for now; v5 frames are refused.
pub fn decode(version: ProtocolVersion, frame: &[u8]) -> Result<Packet<'_>, DecodeError> {
    if !version.is_v3() {
        return Err(DecodeError::new(
            DecodeErrorKind::UnsupportedProtocolLevel(version.level()),
            "decode (MQTT 5 not supported yet)",
        ));
    }
    let (header, body) = split_frame(version, frame)?;
    let mut r = Reader::new(body);
    let packet = match header.packet_type {
        PacketType::Connect => return decode_connect(frame).map(|c| Packet::Connect(Box::new(c))),
        PacketType::Publish => return decode_publish(header.flags, body).map(Packet::Publish),
        PacketType::Subscribe => {
            expect_flags_0010(version, &header, "SUBSCRIBE fixed header")?;
            return decode_subscribe(body);
        }
        PacketType::Unsubscribe => {
            expect_flags_0010(version, &header, "UNSUBSCRIBE fixed header")?;
            return decode_unsubscribe(body);
        }
        PacketType::PubAck => {
            expect_flags(&header, 0, "PUBACK fixed header")?;
            Packet::PubAck(r.packet_id("PUBACK packet identifier")?)
        }
        PacketType::PubRec => {
            expect_flags(&header, 0, "PUBREC fixed header")?;
            Packet::PubRec(r.packet_id("PUBREC packet identifier")?)
        }
        PacketType::PubRel => {
            expect_flags_0010(version, &header, "PUBREL fixed header")?;
            Packet::PubRel(r.packet_id("PUBREL packet identifier")?)
        }
        PacketType::PubComp => {
            expect_flags(&header, 0, "PUBCOMP fixed header")?;
            Packet::PubComp(r.packet_id("PUBCOMP packet identifier")?)
        }
        PacketType::PingReq => {
            expect_flags(&header, 0, "PINGREQ fixed header")?;
            Packet::PingReq
        }
        PacketType::Disconnect => {
            expect_flags(&header, 0, "DISCONNECT fixed header")?;
            Packet::Disconnect
        }
        other @ (PacketType::ConnAck
        | PacketType::SubAck
        | PacketType::UnsubAck
        | PacketType::PingResp
        | PacketType::Auth) => {
            return Err(DecodeError::new(
                DecodeErrorKind::UnexpectedPacketType(other),
                "packet type",
            ));
        }
    };
    // Acks, PINGREQ and DISCONNECT have fixed lengths in 3.x (2, 0, 0).
    r.finish("packet body")?;
    Ok(packet)
}

/// Splits a complete frame into its header and body; anything that is not exactly one
/// frame is a [`DecodeError`], never "incomplete".
pub(crate) fn split_frame(
    version: ProtocolVersion,
    frame: &[u8],
) -> Result<(FrameHeader, &[u8]), DecodeError> {
    const CONTEXT: &str = "fixed header";
    match check_frame_for(version, frame, usize::MAX) {
        Ok(header) if header.frame_len() == frame.len() => {
            Ok((header, frame.get(header.header_len..).unwrap_or_default()))
        }
        Ok(header) => Err(DecodeError::new(
            DecodeErrorKind::FrameLengthMismatch {
                expected: header.frame_len(),
                actual: frame.len(),
            },
            CONTEXT,
        )),
        Err(FrameError::Incomplete { needed: Some(n) }) => Err(DecodeError::new(
            DecodeErrorKind::FrameLengthMismatch {
                expected: frame.len() + n,
                actual: frame.len(),
            },
            CONTEXT,
        )),
        Err(FrameError::Incomplete { needed: None }) => {
            Err(DecodeError::new(DecodeErrorKind::Truncated, CONTEXT))
        }
        Err(FrameError::Malformed(MalformedFrame::ReservedPacketType(t))) => Err(DecodeError::new(
            DecodeErrorKind::ReservedPacketType(t),
            CONTEXT,
        )),
        Err(FrameError::Malformed(MalformedFrame::NonMinimalRemainingLength)) => {
            Err(DecodeError::new(DecodeErrorKind::NonMinimalVarint, CONTEXT))
        }
        Err(FrameError::Malformed(MalformedFrame::RemainingLengthTooLong))
        | Err(FrameError::TooLarge { .. }) => Err(DecodeError::new(
            DecodeErrorKind::MalformedRemainingLength,
            CONTEXT,
        )),
    }
}

pub(crate) fn expect_flags(
    header: &FrameHeader,
    expected: u8,
    context: &'static str,
) -> Result<(), DecodeError> {
    if header.flags == expected {
        Ok(())
    } else {
        Err(DecodeError::new(
            DecodeErrorKind::InvalidHeaderFlags {
                packet_type: header.packet_type,
                flags: header.flags,
            },
            context,
        ))
    }
}

/// The flags rule of PUBREL, SUBSCRIBE and UNSUBSCRIBE, by protocol level: `0010` in 3.1.1
/// and 5.0 (MQTT-3.6.1-1, MQTT-3.8.1-1, MQTT-3.10.1-1); MQTT 3.1 defines these packets with
/// QoS 1 and a DUP bit its clients set on a retry, so `1010` is accepted from them too.
pub(crate) fn expect_flags_0010(
    version: ProtocolVersion,
    header: &FrameHeader,
    context: &'static str,
) -> Result<(), DecodeError> {
    if version == ProtocolVersion::V31 && header.flags == FLAGS_0010 | V31_RETRY_DUP {
        return Ok(());
    }
    expect_flags(header, FLAGS_0010, context)
}

/// The flags of a PUBLISH fixed header, the same in 3.1.1 and 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublishFlags {
    /// QoS (3 is refused, MQTT-3.3.1-4).
    pub qos: QoS,
    /// DUP (refused with QoS 0, MQTT-3.3.1-2).
    pub dup: bool,
    /// RETAIN.
    pub retain: bool,
}

/// Reads and checks the flags nibble of a PUBLISH.
pub(crate) fn publish_flags(flags: u8) -> Result<PublishFlags, DecodeError> {
    const CONTEXT: &str = "PUBLISH fixed header";
    let qos_bits = (flags & PUBLISH_QOS_MASK) >> PUBLISH_QOS_SHIFT;
    let qos = QoS::from_u8(qos_bits).ok_or(DecodeError::new(
        DecodeErrorKind::InvalidQoS(qos_bits),
        CONTEXT,
    ))?;
    let dup = flags & PUBLISH_DUP != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::new(DecodeErrorKind::DupWithQoS0, CONTEXT));
    }
    Ok(PublishFlags {
        qos,
        dup,
        retain: flags & PUBLISH_RETAIN != 0,
    })
}

/// The hot path: flags, topic, packet id, payload. No allocation.
fn decode_publish(flags: u8, body: &[u8]) -> Result<PublishRef<'_>, DecodeError> {
    let PublishFlags { qos, dup, retain } = publish_flags(flags)?;
    let mut r = Reader::new(body);
    let topic = r.utf8("PUBLISH topic")?;
    validate_topic_name(topic)
        .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidTopicName(e), "PUBLISH topic"))?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(r.packet_id("PUBLISH packet identifier")?),
    };
    Ok(PublishRef {
        topic,
        payload: r.rest(),
        qos,
        retain,
        dup,
        packet_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::TopicError;

    const V: ProtocolVersion = ProtocolVersion::V311;

    fn kind(frame: &[u8]) -> DecodeErrorKind {
        decode(V, frame).expect_err("must be refused").kind()
    }

    #[test]
    fn publish_qos0_and_qos2() {
        let p = decode(V, &[0x31, 5, 0, 1, b'a', b'h', b'i']).expect("valid");
        let Packet::Publish(p) = p else {
            panic!("{p:?}")
        };
        assert_eq!(
            (p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id),
            ("a", &b"hi"[..], QoS::AtMostOnce, true, false, None)
        );
        let p = decode(V, &[0x3C, 5, 0, 1, b'a', 0x12, 0x34]).expect("valid");
        let Packet::Publish(p) = p else {
            panic!("{p:?}")
        };
        assert_eq!(
            (p.qos, p.dup, p.packet_id, p.payload),
            (QoS::ExactlyOnce, true, Some(0x1234), &[][..])
        );
    }

    #[test]
    fn publish_flag_rules_mqtt_3_3_1_2_and_3_3_1_4() {
        assert_eq!(kind(&[0x38, 3, 0, 1, b'a']), DecodeErrorKind::DupWithQoS0);
        assert_eq!(
            kind(&[0x36, 5, 0, 1, b'a', 0, 1]),
            DecodeErrorKind::InvalidQoS(3)
        );
    }

    #[test]
    fn publish_topic_rules() {
        assert_eq!(
            kind(&[0x30, 3, 0, 1, b'#']),
            DecodeErrorKind::InvalidTopicName(TopicError::WildcardInName)
        );
        assert_eq!(
            kind(&[0x30, 2, 0, 0]),
            DecodeErrorKind::InvalidTopicName(TopicError::Empty)
        );
        assert_eq!(
            kind(&[0x30, 3, 0, 1, 0]),
            DecodeErrorKind::InvalidTopicName(TopicError::NullCharacter)
        );
        assert_eq!(kind(&[0x30, 3, 0, 1, 0xC0]), DecodeErrorKind::InvalidUtf8);
        assert_eq!(kind(&[0x32, 3, 0, 1, b'a']), DecodeErrorKind::Truncated);
        assert_eq!(
            kind(&[0x32, 5, 0, 1, b'a', 0, 0]),
            DecodeErrorKind::PacketIdZero
        );
    }

    #[test]
    fn acks_ping_disconnect() {
        assert_eq!(decode(V, &[0x40, 2, 0, 7]), Ok(Packet::PubAck(7)));
        assert_eq!(decode(V, &[0x50, 2, 0, 7]), Ok(Packet::PubRec(7)));
        assert_eq!(decode(V, &[0x62, 2, 0, 7]), Ok(Packet::PubRel(7)));
        assert_eq!(decode(V, &[0x70, 2, 0, 7]), Ok(Packet::PubComp(7)));
        assert_eq!(decode(V, &[0xC0, 0]), Ok(Packet::PingReq));
        assert_eq!(decode(V, &[0xE0, 0]), Ok(Packet::Disconnect));
        assert_eq!(kind(&[0x40, 3, 0, 7, 0]), DecodeErrorKind::TrailingBytes);
        assert_eq!(kind(&[0xC0, 1, 0]), DecodeErrorKind::TrailingBytes);
        assert_eq!(kind(&[0x40, 1, 7]), DecodeErrorKind::Truncated);
    }

    #[test]
    fn server_only_packets_are_refused() {
        for frame in [
            &[0x20, 2, 0, 0][..],
            &[0x90, 3, 0, 1, 0],
            &[0xB0, 2, 0, 1],
            &[0xD0, 0],
        ] {
            assert!(
                matches!(kind(frame), DecodeErrorKind::UnexpectedPacketType(_)),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn frame_must_be_exact() {
        assert_eq!(
            kind(&[0xC0, 0, 0]),
            DecodeErrorKind::FrameLengthMismatch {
                expected: 2,
                actual: 3
            }
        );
        assert_eq!(
            kind(&[0x40, 2, 0]),
            DecodeErrorKind::FrameLengthMismatch {
                expected: 4,
                actual: 3
            }
        );
        assert_eq!(kind(&[0x40]), DecodeErrorKind::Truncated);
        assert_eq!(kind(&[0xF0, 0]), DecodeErrorKind::ReservedPacketType(15));
    }

    #[test]
    fn v31_retries_may_set_dup_on_pubrel_subscribe_unsubscribe() {
        let pubrel = [0x6A, 2, 0, 7];
        let subscribe = [0x8A, 6, 0, 9, 0, 1, b'a', 1];
        let unsubscribe = [0xAA, 5, 0, 9, 0, 1, b'a'];
        let v31 = ProtocolVersion::V31;
        assert_eq!(decode(v31, &pubrel), Ok(Packet::PubRel(7)));
        assert!(matches!(
            decode(v31, &subscribe),
            Ok(Packet::Subscribe { packet_id: 9, .. })
        ));
        assert!(matches!(
            decode(v31, &unsubscribe),
            Ok(Packet::Unsubscribe { packet_id: 9, .. })
        ));
        // 3.1.1 allows only 0010 (MQTT-3.6.1-1, MQTT-3.8.1-1, MQTT-3.10.1-1).
        for frame in [&pubrel[..], &subscribe, &unsubscribe] {
            let error = decode(V, frame).expect_err("3.1.1 refuses DUP here");
            assert!(matches!(
                error.kind(),
                DecodeErrorKind::InvalidHeaderFlags { flags: 0b1010, .. }
            ));
        }
        // 3.1 still wants QoS 1 and nothing else: RETAIN, QoS 0 or QoS 2 are refused.
        for first in [0x63, 0x60, 0x64, 0x6B, 0x6E] {
            assert!(decode(v31, &[first, 2, 0, 7]).is_err(), "{first:#x}");
        }
        // The other packets keep their zero flags in 3.1.
        assert!(decode(v31, &[0x48, 2, 0, 7]).is_err());
    }

    #[test]
    fn v5_decode_is_refused_for_now() {
        assert!(decode(ProtocolVersion::V5, &[0xC0, 0]).is_err());
    }
}
