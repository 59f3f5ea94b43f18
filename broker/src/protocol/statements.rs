//! The normative statement each [`DecodeError`] enforces, in MQTT 3.1.1 or MQTT 5.0
//! numbering (the same rule often has different numbers in the two documents).

use super::error::{DecodeError, DecodeErrorKind, SharedFilterError};
use super::frame::PacketType;
use crate::topic::TopicError;

impl DecodeError {
    /// The normative statement this error enforces, when there is one: MQTT 5.0 numbering
    /// for errors found on a v5 packet ([`DecodeError::is_v5`]), MQTT 3.1.1 otherwise.
    /// Rules the spec states only in prose (e.g. "It is a Protocol Error to include the
    /// Topic Alias value more than once") have no number and give `None`.
    pub const fn statement(&self) -> Option<&'static str> {
        if self.is_v5() {
            v5_statement(self.kind())
        } else {
            v3_statement(self.kind())
        }
    }
}

const fn topic_statement(e: TopicError, wildcard: &'static str) -> &'static str {
    match e {
        TopicError::Empty => "MQTT-4.7.3-1",
        TopicError::NullCharacter => "MQTT-4.7.3-2",
        TopicError::TooLong => "MQTT-4.7.3-3",
        TopicError::WildcardInName | TopicError::MisplacedWildcard => wildcard,
    }
}

const fn v3_statement(kind: DecodeErrorKind) -> Option<&'static str> {
    use DecodeErrorKind as K;
    Some(match kind {
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
        K::InvalidTopicName(e) => topic_statement(e, "MQTT-3.3.2-2"),
        K::InvalidTopicFilter(e) => topic_statement(e, "MQTT-4.7.1-2"),
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
        // Never produced on a 3.x packet; their MQTT 5 numbers.
        other => return v5_statement(other),
    })
}

const fn v5_statement(kind: DecodeErrorKind) -> Option<&'static str> {
    use DecodeErrorKind as K;
    Some(match kind {
        K::FrameLengthMismatch { .. }
        | K::MalformedRemainingLength
        | K::ReservedPacketType(_)
        | K::Truncated
        | K::TrailingBytes
        | K::V31ClientIdLength(_)
        | K::PasswordWithoutUsername
        | K::EmptyClientIdWithoutCleanSession
        | K::MalformedVarint
        | K::UnknownProperty(_)
        | K::PropertyNotAllowed { .. }
        | K::DuplicateProperty(_)
        | K::EmptyTopicWithoutAlias
        | K::MissingAuthenticationMethod
        | K::AuthenticationDataWithoutMethod
        | K::InvalidSubscriptionQoS
        | K::InvalidRetainHandling => return None,
        K::NotConnect(_) => "MQTT-3.1.0-1",
        K::UnexpectedPacketType(_) => return None,
        K::InvalidHeaderFlags { packet_type, .. } => match packet_type {
            PacketType::PubRel => "MQTT-3.6.1-1",
            PacketType::Subscribe => "MQTT-3.8.1-1",
            PacketType::Unsubscribe => "MQTT-3.10.1-1",
            PacketType::Disconnect => "MQTT-3.14.1-1",
            PacketType::Auth => "MQTT-3.15.1-1",
            _ => "MQTT-2.1.3-1",
        },
        K::InvalidUtf8 => "MQTT-1.5.4-1",
        K::NullCharacter => "MQTT-1.5.4-2",
        K::InvalidQoS(_) => "MQTT-3.3.1-4",
        K::DupWithQoS0 => "MQTT-3.3.1-2",
        K::PacketIdZero => "MQTT-2.2.1-3",
        K::InvalidTopicName(e) => topic_statement(e, "MQTT-3.3.2-2"),
        K::InvalidTopicFilter(e) => topic_statement(e, "MQTT-4.7.1-1"),
        K::NoTopicFilters(PacketType::Unsubscribe) => "MQTT-3.10.3-2",
        K::NoTopicFilters(_) => "MQTT-3.8.3-2",
        K::InvalidSubscriptionOptions(_) => "MQTT-3.8.3-5",
        K::InvalidProtocolName => "MQTT-3.1.2-1",
        K::UnsupportedProtocolLevel(_) => "MQTT-3.1.2-2",
        K::ConnectReservedFlag => "MQTT-3.1.2-3",
        K::WillQoSWithoutWill => "MQTT-3.1.2-11",
        K::InvalidWillQoS => "MQTT-3.1.2-12",
        K::WillRetainWithoutWill => "MQTT-3.1.2-13",
        K::NonMinimalVarint => "MQTT-1.5.5-1",
        K::InvalidPropertyValue { id: 0x23, .. } => "MQTT-3.3.2-8",
        K::InvalidPropertyValue { .. } => return None,
        K::SubscriptionIdentifierFromClient => "MQTT-3.3.4-6",
        K::InvalidResponseTopic(_) => "MQTT-3.3.2-14",
        K::InvalidReasonCode { packet_type, .. } => match packet_type {
            PacketType::PubAck => "MQTT-3.4.2-1",
            PacketType::PubRec => "MQTT-3.5.2-1",
            PacketType::PubRel => "MQTT-3.6.2-1",
            PacketType::PubComp => "MQTT-3.7.2-1",
            PacketType::Disconnect => "MQTT-3.14.2-1",
            PacketType::Auth => "MQTT-3.15.2-1",
            _ => return None,
        },
        K::NoLocalOnSharedSubscription => "MQTT-3.8.3-4",
        K::InvalidSharedSubscription(SharedFilterError::EmptyShareName) => "MQTT-4.8.2-1",
        K::InvalidSharedSubscription(SharedFilterError::InvalidFilter(e)) => {
            topic_statement(e, "MQTT-4.7.1-1")
        }
        K::InvalidSharedSubscription(_) => "MQTT-4.8.2-2",
    })
}
