//! Fixed header and remaining length: is there a whole frame, and may it be buffered?

use super::error::{FrameError, MalformedFrame};
use super::{MAX_VARINT_LEN_BYTES, ProtocolVersion};

/// The control packet type: the high nibble of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1: client request to connect.
    Connect = 1,
    /// 2: connect acknowledgment (server only).
    ConnAck = 2,
    /// 3: publish message.
    Publish = 3,
    /// 4: publish acknowledgment (QoS 1).
    PubAck = 4,
    /// 5: publish received (QoS 2, part 1).
    PubRec = 5,
    /// 6: publish release (QoS 2, part 2).
    PubRel = 6,
    /// 7: publish complete (QoS 2, part 3).
    PubComp = 7,
    /// 8: subscribe request.
    Subscribe = 8,
    /// 9: subscribe acknowledgment (server only).
    SubAck = 9,
    /// 10: unsubscribe request.
    Unsubscribe = 10,
    /// 11: unsubscribe acknowledgment (server only).
    UnsubAck = 11,
    /// 12: ping request.
    PingReq = 12,
    /// 13: ping response (server only).
    PingResp = 13,
    /// 14: disconnect notification.
    Disconnect = 14,
    /// 15: authentication exchange (MQTT 5 only; reserved in 3.x).
    Auth = 15,
}

impl PacketType {
    /// The packet type for a high nibble, or `None` for the reserved value 0 (and > 15).
    pub const fn from_nibble(nibble: u8) -> Option<PacketType> {
        Some(match nibble {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            15 => PacketType::Auth,
            _ => return None,
        })
    }
}

/// A parsed fixed header: enough to know how long the frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The packet type (high nibble of the first byte).
    pub packet_type: PacketType,
    /// The flags (low nibble of the first byte), not yet validated.
    pub flags: u8,
    /// Bytes taken by the fixed header (2 to 5).
    pub header_len: usize,
    /// The remaining length: variable header plus payload, in bytes.
    pub remaining_len: usize,
}

impl FrameHeader {
    /// Total frame length in bytes: fixed header plus remaining length.
    pub const fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Checks whether `buf` starts with a whole frame, using MQTT 3.x rules (packet types 0 and
/// 15 are reserved). Use this before the CONNECT has fixed the version: a v5 client's first
/// packet is a CONNECT (type 1) too.
///
/// Reads only the fixed header. `max_packet_size_bytes` bounds the whole frame (fixed
/// header included, as MQTT 5's Maximum Packet Size does); a larger frame is reported as
/// [`FrameError::TooLarge`] as soon as its header is readable, so its body is never buffered.
pub fn check_frame(buf: &[u8], max_packet_size_bytes: usize) -> Result<FrameHeader, FrameError> {
    check_frame_for(ProtocolVersion::V311, buf, max_packet_size_bytes)
}

/// [`check_frame`] for a connection whose version is known: in v5 type 15 is AUTH.
pub fn check_frame_for(
    version: ProtocolVersion,
    buf: &[u8],
    max_packet_size_bytes: usize,
) -> Result<FrameHeader, FrameError> {
    let Some(&first) = buf.first() else {
        return Err(FrameError::Incomplete { needed: None });
    };
    let nibble = first >> 4;
    let packet_type = match PacketType::from_nibble(nibble) {
        Some(PacketType::Auth) if version.is_v3() => None,
        other => other,
    };
    let Some(packet_type) = packet_type else {
        return Err(FrameError::Malformed(MalformedFrame::ReservedPacketType(
            nibble,
        )));
    };
    let (remaining_len, used) = read_remaining_length(&buf[1..])?;
    if version == ProtocolVersion::V5 && used != varint_len(remaining_len) {
        return Err(FrameError::Malformed(
            MalformedFrame::NonMinimalRemainingLength,
        ));
    }
    let header = FrameHeader {
        packet_type,
        flags: first & 0x0F,
        header_len: 1 + used,
        remaining_len,
    };
    let frame_len = header.frame_len();
    if frame_len > max_packet_size_bytes {
        return Err(FrameError::TooLarge { size: frame_len });
    }
    if buf.len() < frame_len {
        return Err(FrameError::Incomplete {
            needed: Some(frame_len - buf.len()),
        });
    }
    Ok(header)
}

/// Decodes the remaining-length varint at the start of `buf`: `(value, bytes used)`.
/// Non-minimal encodings (e.g. `0x80 0x00`) are accepted here, as MQTT 3.1.1 does not forbid
/// them; [`check_frame_for`] refuses them for MQTT 5 (MQTT-1.5.5-1).
fn read_remaining_length(buf: &[u8]) -> Result<(usize, usize), FrameError> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().take(MAX_VARINT_LEN_BYTES).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= MAX_VARINT_LEN_BYTES {
        Err(FrameError::Malformed(
            MalformedFrame::RemainingLengthTooLong,
        ))
    } else {
        Err(FrameError::Incomplete { needed: None })
    }
}

/// Bytes the remaining-length varint takes for `remaining_len` (1 to 4); callers ensure
/// `remaining_len <= MAX_REMAINING_LENGTH_BYTES`.
pub(crate) const fn varint_len(remaining_len: usize) -> usize {
    match remaining_len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MAX_REMAINING_LENGTH_BYTES;

    const MAX: usize = 1 << 20;

    #[test]
    fn empty_and_header_prefixes_are_incomplete_without_count() {
        assert_eq!(
            check_frame(&[], MAX),
            Err(FrameError::Incomplete { needed: None })
        );
        assert_eq!(
            check_frame(&[0x30], MAX),
            Err(FrameError::Incomplete { needed: None })
        );
        assert_eq!(
            check_frame(&[0x30, 0x80, 0x80], MAX),
            Err(FrameError::Incomplete { needed: None })
        );
    }

    #[test]
    fn body_prefix_says_how_many_bytes_are_missing() {
        assert_eq!(
            check_frame(&[0x30, 5, 0, 1], MAX),
            Err(FrameError::Incomplete { needed: Some(3) })
        );
        let header = check_frame(&[0x30, 2, 0, 0, 0xFF], MAX).expect("whole frame");
        assert_eq!(header.frame_len(), 4);
        assert_eq!(header.packet_type, PacketType::Publish);
    }

    #[test]
    fn five_byte_varint_is_malformed() {
        assert_eq!(
            check_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], MAX),
            Err(FrameError::Malformed(
                MalformedFrame::RemainingLengthTooLong
            ))
        );
        // Four continuation bytes are already enough to know.
        assert_eq!(
            check_frame(&[0x30, 0x80, 0x80, 0x80, 0x80], MAX),
            Err(FrameError::Malformed(
                MalformedFrame::RemainingLengthTooLong
            ))
        );
    }

    #[test]
    fn max_varint_decodes() {
        assert_eq!(
            check_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], usize::MAX),
            Err(FrameError::Incomplete {
                needed: Some(MAX_REMAINING_LENGTH_BYTES)
            })
        );
        // Non-minimal but legal in 3.1.1: 0x80 0x00 is zero.
        let header = check_frame(&[0xC0, 0x80, 0x00], MAX).expect("frame");
        assert_eq!((header.header_len, header.remaining_len), (3, 0));
    }

    #[test]
    fn too_large_is_reported_before_the_body_arrives() {
        // Announces 268 435 455 bytes; only the header is present.
        assert_eq!(
            check_frame(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], MAX),
            Err(FrameError::TooLarge {
                size: 5 + MAX_REMAINING_LENGTH_BYTES
            })
        );
        // The limit covers the fixed header: a 10-byte frame passes a 10-byte limit only.
        let frame = [0x30, 8, 0, 1, b'a', 1, 2, 3, 4, 5];
        assert!(check_frame(&frame, 10).is_ok());
        assert_eq!(
            check_frame(&frame, 9),
            Err(FrameError::TooLarge { size: 10 })
        );
    }

    #[test]
    fn reserved_types_are_malformed_in_v3_and_auth_is_a_frame_in_v5() {
        for first in [0x00, 0x0F, 0xF0, 0xFF] {
            assert!(matches!(
                check_frame(&[first, 0], MAX),
                Err(FrameError::Malformed(MalformedFrame::ReservedPacketType(_)))
            ));
        }
        assert!(check_frame_for(ProtocolVersion::V5, &[0xF0, 0], MAX).is_ok());
        assert!(check_frame_for(ProtocolVersion::V5, &[0x00, 0], MAX).is_err());
    }

    #[test]
    fn v5_refuses_non_minimal_remaining_length_mqtt_1_5_5_1() {
        assert_eq!(
            check_frame_for(ProtocolVersion::V5, &[0xC0, 0x80, 0x00], MAX),
            Err(FrameError::Malformed(
                MalformedFrame::NonMinimalRemainingLength
            ))
        );
        assert!(check_frame_for(ProtocolVersion::V5, &[0xC0, 0x00], MAX).is_ok());
    }

    #[test]
    fn varint_len_boundaries() {
        for (n, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
        ] {
            assert_eq!(varint_len(n), len, "{n}");
        }
        assert_eq!(varint_len(2_097_152), 4);
        assert_eq!(varint_len(MAX_REMAINING_LENGTH_BYTES), 4);
    }
}
