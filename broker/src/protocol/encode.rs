//! Encoding server→client packets into any [`BufMut`].
//!
//! Every encoder computes the exact packet length first and checks it against
//! `out.remaining_mut()`; on any error nothing has been written. Each returns the number of
//! bytes written. None of them allocates.

use bytes::BufMut;

use super::decode::{FLAGS_0010, PublishRef};
use super::error::EncodeError;
use super::frame::varint_len;
use super::{MAX_REMAINING_LENGTH_BYTES, MAX_STRING_LEN_BYTES, ProtocolVersion, QoS};

const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const PUBREC: u8 = 0x50;
const PUBREL: u8 = 0x60 | FLAGS_0010;
const PUBCOMP: u8 = 0x70;
const SUBACK: u8 = 0x90;
const UNSUBACK: u8 = 0xB0;
const PINGRESP: u8 = 0xD0;

/// Bytes of a packet identifier.
const PACKET_ID_LEN_BYTES: usize = 2;
/// Bytes of a string length prefix.
const STRING_PREFIX_LEN_BYTES: usize = 2;

/// MQTT 3.x CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectReturnCode {
    /// 0x00: connection accepted.
    Accepted = 0,
    /// 0x01: unacceptable protocol version.
    UnacceptableProtocolVersion = 1,
    /// 0x02: identifier rejected.
    IdentifierRejected = 2,
    /// 0x03: server unavailable.
    ServerUnavailable = 3,
    /// 0x04: bad user name or password.
    BadUsernameOrPassword = 4,
    /// 0x05: not authorized.
    NotAuthorized = 5,
}

/// One entry of a SUBACK payload (MQTT 3.1.1 §3.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubackReturnCode {
    /// Success with the granted maximum QoS (0x00, 0x01, 0x02).
    Granted(QoS),
    /// Failure (0x80). MQTT 3.1 has no failure code; it is sent anyway, as brokers do.
    Failure,
}

impl SubackReturnCode {
    /// The byte sent on the wire.
    pub const fn as_u8(self) -> u8 {
        match self {
            SubackReturnCode::Granted(qos) => qos.as_u8(),
            SubackReturnCode::Failure => 0x80,
        }
    }
}

/// Total packet length for a given remaining length, or `PacketTooLarge`.
fn frame_len(remaining_len: usize) -> Result<usize, EncodeError> {
    if remaining_len > MAX_REMAINING_LENGTH_BYTES {
        return Err(EncodeError::PacketTooLarge { remaining_len });
    }
    Ok(1 + varint_len(remaining_len) + remaining_len)
}

fn ensure_fits<B: BufMut + ?Sized>(out: &B, needed: usize) -> Result<(), EncodeError> {
    let available = out.remaining_mut();
    if needed > available {
        return Err(EncodeError::BufferTooSmall { needed, available });
    }
    Ok(())
}

fn put_fixed_header<B: BufMut + ?Sized>(out: &mut B, first: u8, mut remaining_len: usize) {
    out.put_u8(first);
    loop {
        // Truncation intended: the low seven bits.
        let mut byte = (remaining_len % 128) as u8;
        remaining_len /= 128;
        if remaining_len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if remaining_len == 0 {
            break;
        }
    }
}

/// CONNACK. `session_present` is only sent with [`ConnectReturnCode::Accepted`]
/// (MQTT-3.2.2-4) and never in MQTT 3.1, where that byte is reserved.
pub fn encode_connack<B: BufMut + ?Sized>(
    out: &mut B,
    version: ProtocolVersion,
    session_present: bool,
    code: ConnectReturnCode,
) -> Result<usize, EncodeError> {
    if !version.is_v3() {
        return Err(EncodeError::UnsupportedVersion(version));
    }
    let len = frame_len(2)?;
    ensure_fits(out, len)?;
    let ack_flags =
        session_present && code == ConnectReturnCode::Accepted && version == ProtocolVersion::V311;
    put_fixed_header(out, CONNACK, 2);
    out.put_u8(u8::from(ack_flags));
    out.put_u8(code as u8);
    Ok(len)
}

/// Exact encoded size of a PUBLISH with a `topic_len`-byte topic, a `payload_len`-byte
/// payload and `qos`, fixed header included.
pub fn publish_len(
    version: ProtocolVersion,
    topic_len: usize,
    payload_len: usize,
    qos: QoS,
) -> Result<usize, EncodeError> {
    frame_len(publish_remaining_len(version, topic_len, payload_len, qos)?)
}

fn publish_remaining_len(
    version: ProtocolVersion,
    topic_len: usize,
    payload_len: usize,
    qos: QoS,
) -> Result<usize, EncodeError> {
    if !version.is_v3() {
        return Err(EncodeError::UnsupportedVersion(version));
    }
    if topic_len > MAX_STRING_LEN_BYTES {
        return Err(EncodeError::TopicTooLong { len: topic_len });
    }
    let packet_id_len = if qos == QoS::AtMostOnce {
        0
    } else {
        PACKET_ID_LEN_BYTES
    };
    (STRING_PREFIX_LEN_BYTES + topic_len + packet_id_len)
        .checked_add(payload_len)
        .ok_or(EncodeError::PacketTooLarge {
            remaining_len: usize::MAX,
        })
}

/// PUBLISH. The topic is written as given (callers pass validated topics); a topic longer
/// than 65535 bytes is an error, never truncated. `packet_id` must be `Some` non-zero exactly
/// when QoS > 0, and `dup` requires QoS > 0.
pub fn encode_publish<B: BufMut + ?Sized>(
    out: &mut B,
    version: ProtocolVersion,
    publish: &PublishRef<'_>,
) -> Result<usize, EncodeError> {
    let remaining_len = publish_remaining_len(
        version,
        publish.topic.len(),
        publish.payload.len(),
        publish.qos,
    )?;
    let len = frame_len(remaining_len)?;
    match (publish.qos, publish.packet_id) {
        (QoS::AtMostOnce, None) => {}
        (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) if id != 0 => {}
        _ => return Err(EncodeError::InvalidPacketId),
    }
    if publish.dup && publish.qos == QoS::AtMostOnce {
        return Err(EncodeError::DupWithQoS0);
    }
    ensure_fits(out, len)?;
    let first = PUBLISH
        | (u8::from(publish.dup) << 3)
        | (publish.qos.as_u8() << 1)
        | u8::from(publish.retain);
    put_fixed_header(out, first, remaining_len);
    // Fits in u16: checked by `publish_len`.
    out.put_u16(publish.topic.len() as u16);
    out.put_slice(publish.topic.as_bytes());
    if let Some(id) = publish.packet_id {
        out.put_u16(id);
    }
    out.put_slice(publish.payload);
    Ok(len)
}

fn encode_ack<B: BufMut + ?Sized>(
    out: &mut B,
    first: u8,
    packet_id: u16,
) -> Result<usize, EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::InvalidPacketId);
    }
    let len = frame_len(PACKET_ID_LEN_BYTES)?;
    ensure_fits(out, len)?;
    put_fixed_header(out, first, PACKET_ID_LEN_BYTES);
    out.put_u16(packet_id);
    Ok(len)
}

/// PUBACK (same bytes in 3.x and 5.0 for reason "success" without properties).
pub fn encode_puback<B: BufMut + ?Sized>(
    out: &mut B,
    _version: ProtocolVersion,
    packet_id: u16,
) -> Result<usize, EncodeError> {
    encode_ack(out, PUBACK, packet_id)
}

/// PUBREC (same bytes in 3.x and 5.0 for reason "success" without properties).
pub fn encode_pubrec<B: BufMut + ?Sized>(
    out: &mut B,
    _version: ProtocolVersion,
    packet_id: u16,
) -> Result<usize, EncodeError> {
    encode_ack(out, PUBREC, packet_id)
}

/// PUBREL, first byte 0x62 (MQTT-3.6.1-1).
pub fn encode_pubrel<B: BufMut + ?Sized>(
    out: &mut B,
    _version: ProtocolVersion,
    packet_id: u16,
) -> Result<usize, EncodeError> {
    encode_ack(out, PUBREL, packet_id)
}

/// PUBCOMP (same bytes in 3.x and 5.0 for reason "success" without properties).
pub fn encode_pubcomp<B: BufMut + ?Sized>(
    out: &mut B,
    _version: ProtocolVersion,
    packet_id: u16,
) -> Result<usize, EncodeError> {
    encode_ack(out, PUBCOMP, packet_id)
}

/// Exact encoded size of a SUBACK with `return_codes` entries.
pub fn suback_len(version: ProtocolVersion, return_codes: usize) -> Result<usize, EncodeError> {
    if !version.is_v3() {
        return Err(EncodeError::UnsupportedVersion(version));
    }
    let remaining_len =
        return_codes
            .checked_add(PACKET_ID_LEN_BYTES)
            .ok_or(EncodeError::PacketTooLarge {
                remaining_len: usize::MAX,
            })?;
    frame_len(remaining_len)
}

/// SUBACK: one return code per filter of the SUBSCRIBE, in order (MQTT-3.8.4-5).
pub fn encode_suback<B: BufMut + ?Sized>(
    out: &mut B,
    version: ProtocolVersion,
    packet_id: u16,
    return_codes: &[SubackReturnCode],
) -> Result<usize, EncodeError> {
    let len = suback_len(version, return_codes.len())?;
    if packet_id == 0 {
        return Err(EncodeError::InvalidPacketId);
    }
    if return_codes.is_empty() {
        return Err(EncodeError::NoReturnCodes);
    }
    ensure_fits(out, len)?;
    put_fixed_header(out, SUBACK, PACKET_ID_LEN_BYTES + return_codes.len());
    out.put_u16(packet_id);
    for code in return_codes {
        out.put_u8(code.as_u8());
    }
    Ok(len)
}

/// UNSUBACK (3.x: packet identifier only).
pub fn encode_unsuback<B: BufMut + ?Sized>(
    out: &mut B,
    version: ProtocolVersion,
    packet_id: u16,
) -> Result<usize, EncodeError> {
    if !version.is_v3() {
        return Err(EncodeError::UnsupportedVersion(version));
    }
    encode_ack(out, UNSUBACK, packet_id)
}

/// PINGRESP (identical in every version).
pub fn encode_pingresp<B: BufMut + ?Sized>(
    out: &mut B,
    _version: ProtocolVersion,
) -> Result<usize, EncodeError> {
    let len = frame_len(0)?;
    ensure_fits(out, len)?;
    put_fixed_header(out, PINGRESP, 0);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: ProtocolVersion = ProtocolVersion::V311;

    fn publish<'a>(
        topic: &'a str,
        payload: &'a [u8],
        qos: QoS,
        packet_id: Option<u16>,
    ) -> PublishRef<'a> {
        PublishRef {
            topic,
            payload,
            qos,
            retain: false,
            dup: false,
            packet_id,
        }
    }

    #[test]
    fn connack_bytes() {
        let mut out = Vec::new();
        assert_eq!(
            encode_connack(&mut out, V, true, ConnectReturnCode::Accepted),
            Ok(4)
        );
        assert_eq!(out, [0x20, 2, 1, 0]);
        out.clear();
        // MQTT-3.2.2-4: session present is 0 with a non-zero return code.
        encode_connack(&mut out, V, true, ConnectReturnCode::IdentifierRejected).expect("fits");
        assert_eq!(out, [0x20, 2, 0, 2]);
        out.clear();
        encode_connack(
            &mut out,
            ProtocolVersion::V31,
            true,
            ConnectReturnCode::Accepted,
        )
        .expect("fits");
        assert_eq!(out, [0x20, 2, 0, 0]);
    }

    #[test]
    fn publish_bytes_and_len() {
        let mut out = Vec::new();
        let p = PublishRef {
            retain: true,
            dup: true,
            ..publish("a/b", b"xy", QoS::AtLeastOnce, Some(0x0102))
        };
        assert_eq!(encode_publish(&mut out, V, &p), Ok(11));
        assert_eq!(out, [0x3B, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'x', b'y']);
        assert_eq!(publish_len(V, 3, 2, QoS::AtLeastOnce), Ok(11));
        // Varint boundaries: remaining 127 → 1 byte, 128 → 2 bytes.
        assert_eq!(publish_len(V, 1, 124, QoS::AtMostOnce), Ok(1 + 1 + 127));
        assert_eq!(publish_len(V, 1, 125, QoS::AtMostOnce), Ok(1 + 2 + 128));
    }

    #[test]
    fn publish_large_payload_uses_long_varint() {
        let payload = vec![7u8; 20_000];
        let mut out = Vec::new();
        let n = encode_publish(&mut out, V, &publish("t", &payload, QoS::AtMostOnce, None))
            .expect("fits");
        assert_eq!(n, out.len());
        assert_eq!(&out[..4], &[0x30, 0xA3, 0x9C, 0x01]); // 20 003 = 0x4E23
    }

    #[test]
    fn failures_write_nothing() {
        let mut storage = [0xAAu8; 8];
        let mut out: &mut [u8] = &mut storage;
        let err = encode_publish(&mut out, V, &publish("a/b", b"xyz", QoS::AtMostOnce, None));
        assert_eq!(
            err,
            Err(EncodeError::BufferTooSmall {
                needed: 10,
                available: 8
            })
        );
        assert_eq!(out.len(), 8);
        assert_eq!(storage, [0xAA; 8]);

        let long = "a".repeat(MAX_STRING_LEN_BYTES + 1);
        let mut out = Vec::new();
        assert_eq!(
            encode_publish(&mut out, V, &publish(&long, b"", QoS::AtMostOnce, None)),
            Err(EncodeError::TopicTooLong {
                len: MAX_STRING_LEN_BYTES + 1
            })
        );
        assert_eq!(
            encode_publish(&mut out, V, &publish("a", b"", QoS::AtLeastOnce, None)),
            Err(EncodeError::InvalidPacketId)
        );
        assert_eq!(
            encode_publish(&mut out, V, &publish("a", b"", QoS::AtLeastOnce, Some(0))),
            Err(EncodeError::InvalidPacketId)
        );
        assert_eq!(
            encode_publish(&mut out, V, &publish("a", b"", QoS::AtMostOnce, Some(1))),
            Err(EncodeError::InvalidPacketId)
        );
        let dup = PublishRef {
            dup: true,
            ..publish("a", b"", QoS::AtMostOnce, None)
        };
        assert_eq!(
            encode_publish(&mut out, V, &dup),
            Err(EncodeError::DupWithQoS0)
        );
        assert_eq!(
            encode_puback(&mut out, V, 0),
            Err(EncodeError::InvalidPacketId)
        );
        assert_eq!(
            encode_suback(&mut out, V, 1, &[]),
            Err(EncodeError::NoReturnCodes)
        );
        assert!(out.is_empty());
        assert_eq!(
            publish_len(V, 10, MAX_REMAINING_LENGTH_BYTES, QoS::AtMostOnce),
            Err(EncodeError::PacketTooLarge {
                remaining_len: MAX_REMAINING_LENGTH_BYTES + 12
            })
        );
        assert!(publish_len(V, 10, usize::MAX, QoS::AtMostOnce).is_err());
    }

    #[test]
    fn acks_suback_unsuback_pingresp_bytes() {
        let mut out = Vec::new();
        encode_puback(&mut out, V, 0x0102).expect("fits");
        encode_pubrec(&mut out, V, 1).expect("fits");
        encode_pubrel(&mut out, V, 1).expect("fits");
        encode_pubcomp(&mut out, V, 1).expect("fits");
        encode_unsuback(&mut out, V, 1).expect("fits");
        encode_pingresp(&mut out, V).expect("fits");
        let codes = [
            SubackReturnCode::Granted(QoS::ExactlyOnce),
            SubackReturnCode::Failure,
        ];
        assert_eq!(encode_suback(&mut out, V, 5, &codes), Ok(6));
        assert_eq!(
            out,
            [
                0x40, 2, 1, 2, 0x50, 2, 0, 1, 0x62, 2, 0, 1, 0x70, 2, 0, 1, 0xB0, 2, 0, 1, 0xD0, 0,
                0x90, 4, 0, 5, 2, 0x80
            ]
        );
        assert_eq!(suback_len(V, 2), Ok(6));
    }

    #[test]
    fn v5_formats_are_not_guessed() {
        let mut out = Vec::new();
        let v5 = ProtocolVersion::V5;
        assert_eq!(
            encode_connack(&mut out, v5, false, ConnectReturnCode::Accepted),
            Err(EncodeError::UnsupportedVersion(v5))
        );
        assert_eq!(
            encode_publish(&mut out, v5, &publish("a", b"", QoS::AtMostOnce, None)),
            Err(EncodeError::UnsupportedVersion(v5))
        );
        assert_eq!(
            encode_unsuback(&mut out, v5, 1),
            Err(EncodeError::UnsupportedVersion(v5))
        );
        assert!(out.is_empty());
    }
}
