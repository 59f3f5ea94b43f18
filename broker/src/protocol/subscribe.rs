//! SUBSCRIBE and UNSUBSCRIBE (MQTT 3.1.1 §3.8, §3.10).

use super::QoS;
use super::decode::Packet;
use super::error::{DecodeError, DecodeErrorKind};
use super::frame::PacketType;
use super::reader::Reader;
use crate::topic::validate_topic_filter;

/// Bits of the 3.x subscription options byte that must be zero (MQTT-3-8.3-4).
const SUBSCRIBE_OPTIONS_RESERVED: u8 = 0b1111_1100;

fn read_filter<'a>(r: &mut Reader<'a>, context: &'static str) -> Result<&'a str, DecodeError> {
    let filter = r.utf8(context)?;
    validate_topic_filter(filter)
        .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidTopicFilter(e), context))?;
    Ok(filter)
}

/// SUBSCRIBE body: packet id, then one or more (filter, options) pairs.
/// The caller has checked the fixed-header flags (they depend on the protocol level).
pub(crate) fn decode_subscribe(body: &[u8]) -> Result<Packet<'static>, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = r.packet_id("SUBSCRIBE packet identifier")?;
    if r.is_empty() {
        return Err(DecodeError::new(
            DecodeErrorKind::NoTopicFilters(PacketType::Subscribe),
            "SUBSCRIBE payload",
        ));
    }
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = read_filter(&mut r, "SUBSCRIBE topic filter")?;
        let options = r.u8("SUBSCRIBE requested QoS")?;
        let qos = match QoS::from_u8(options) {
            Some(qos) if options & SUBSCRIBE_OPTIONS_RESERVED == 0 => qos,
            _ => {
                return Err(DecodeError::new(
                    DecodeErrorKind::InvalidSubscriptionOptions(options),
                    "SUBSCRIBE requested QoS",
                ));
            }
        };
        filters.push((filter.to_owned(), qos));
    }
    Ok(Packet::Subscribe { packet_id, filters })
}

/// UNSUBSCRIBE body: packet id, then one or more filters.
/// The caller has checked the fixed-header flags (they depend on the protocol level).
pub(crate) fn decode_unsubscribe(body: &[u8]) -> Result<Packet<'static>, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = r.packet_id("UNSUBSCRIBE packet identifier")?;
    if r.is_empty() {
        return Err(DecodeError::new(
            DecodeErrorKind::NoTopicFilters(PacketType::Unsubscribe),
            "UNSUBSCRIBE payload",
        ));
    }
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(read_filter(&mut r, "UNSUBSCRIBE topic filter")?.to_owned());
    }
    Ok(Packet::Unsubscribe { packet_id, filters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ProtocolVersion, decode};
    use crate::topic::TopicError;

    fn kind(frame: &[u8]) -> DecodeErrorKind {
        decode(ProtocolVersion::V311, frame)
            .expect_err("must be refused")
            .kind()
    }

    #[test]
    fn subscribe_two_filters() {
        let frame = [0x82, 12, 0, 9, 0, 3, b'a', b'/', b'#', 1, 0, 1, b'+', 2];
        assert_eq!(
            decode(ProtocolVersion::V311, &frame),
            Ok(Packet::Subscribe {
                packet_id: 9,
                filters: vec![
                    ("a/#".into(), QoS::AtLeastOnce),
                    ("+".into(), QoS::ExactlyOnce)
                ],
            })
        );
    }

    #[test]
    fn subscribe_rules() {
        assert!(matches!(
            kind(&[0x80, 6, 0, 1, 0, 1, b'a', 0]),
            DecodeErrorKind::InvalidHeaderFlags { .. }
        ));
        assert_eq!(
            kind(&[0x82, 6, 0, 0, 0, 1, b'a', 0]),
            DecodeErrorKind::PacketIdZero
        );
        assert_eq!(
            kind(&[0x82, 2, 0, 1]),
            DecodeErrorKind::NoTopicFilters(PacketType::Subscribe)
        );
        assert_eq!(
            kind(&[0x82, 6, 0, 1, 0, 1, b'a', 4]),
            DecodeErrorKind::InvalidSubscriptionOptions(4)
        );
        assert_eq!(
            kind(&[0x82, 6, 0, 1, 0, 1, b'a', 3]),
            DecodeErrorKind::InvalidSubscriptionOptions(3)
        );
        assert_eq!(
            kind(&[0x82, 5, 0, 1, 0, 1, b'a']),
            DecodeErrorKind::Truncated
        );
        assert_eq!(
            kind(&[0x82, 5, 0, 1, 0, 0, 0]),
            DecodeErrorKind::InvalidTopicFilter(TopicError::Empty)
        );
    }

    #[test]
    fn unsubscribe_rules() {
        assert_eq!(
            decode(ProtocolVersion::V311, &[0xA2, 5, 0, 1, 0, 1, b'#']),
            Ok(Packet::Unsubscribe {
                packet_id: 1,
                filters: vec!["#".into()]
            })
        );
        assert!(matches!(
            kind(&[0xA0, 5, 0, 1, 0, 1, b'#']),
            DecodeErrorKind::InvalidHeaderFlags { .. }
        ));
        assert_eq!(
            kind(&[0xA2, 2, 0, 1]),
            DecodeErrorKind::NoTopicFilters(PacketType::Unsubscribe)
        );
        assert_eq!(
            kind(&[0xA2, 5, 0, 0, 0, 1, b'#']),
            DecodeErrorKind::PacketIdZero
        );
    }
}
