//! MQTT 5 reason codes (MQTT 5.0 §2.4, Table 2-6) and the packets each may appear in.

use super::frame::PacketType;

/// An MQTT 5 reason code (MQTT 5.0 §2.4).
///
/// The value 0x00 has three names depending on the packet: "Success" (CONNACK, PUBACK,
/// PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH), "Normal disconnection" (DISCONNECT) and
/// "Granted QoS 0" (SUBACK); it is the single variant [`ReasonCode::Success`] here and
/// [`ReasonCode::name_in`] gives the packet-specific name.
///
/// A v3.x connection has no reason codes on the wire; a code still classifies a decode error
/// (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// 0x00: Success / Normal disconnection / Granted QoS 0.
    Success = 0x00,
    /// 0x01: Granted QoS 1 (SUBACK).
    GrantedQoS1 = 0x01,
    /// 0x02: Granted QoS 2 (SUBACK).
    GrantedQoS2 = 0x02,
    /// 0x04: Disconnect with Will Message (client DISCONNECT).
    DisconnectWithWillMessage = 0x04,
    /// 0x10: No matching subscribers (PUBACK, PUBREC).
    NoMatchingSubscribers = 0x10,
    /// 0x11: No subscription existed (UNSUBACK).
    NoSubscriptionExisted = 0x11,
    /// 0x18: Continue authentication (AUTH).
    ContinueAuthentication = 0x18,
    /// 0x19: Re-authenticate (AUTH).
    ReAuthenticate = 0x19,
    /// 0x80: Unspecified error.
    UnspecifiedError = 0x80,
    /// 0x81: the packet does not follow the wire format.
    MalformedPacket = 0x81,
    /// 0x82: well-formed, but not allowed here (wrong direction, packet id 0, …).
    ProtocolError = 0x82,
    /// 0x83: Implementation specific error.
    ImplementationSpecificError = 0x83,
    /// 0x84: protocol name or level not supported.
    UnsupportedProtocolVersion = 0x84,
    /// 0x85: the client identifier is not acceptable.
    ClientIdentifierNotValid = 0x85,
    /// 0x86: Bad User Name or Password.
    BadUserNameOrPassword = 0x86,
    /// 0x87: Not authorized.
    NotAuthorized = 0x87,
    /// 0x88: Server unavailable.
    ServerUnavailable = 0x88,
    /// 0x89: Server busy.
    ServerBusy = 0x89,
    /// 0x8A: Banned.
    Banned = 0x8A,
    /// 0x8B: Server shutting down.
    ServerShuttingDown = 0x8B,
    /// 0x8C: Bad authentication method.
    BadAuthenticationMethod = 0x8C,
    /// 0x8D: Keep Alive timeout.
    KeepAliveTimeout = 0x8D,
    /// 0x8E: Session taken over.
    SessionTakenOver = 0x8E,
    /// 0x8F: a SUBSCRIBE or UNSUBSCRIBE topic filter is not valid.
    TopicFilterInvalid = 0x8F,
    /// 0x90: a PUBLISH (or will) topic name is not valid.
    TopicNameInvalid = 0x90,
    /// 0x91: Packet Identifier in use.
    PacketIdentifierInUse = 0x91,
    /// 0x92: Packet Identifier not found.
    PacketIdentifierNotFound = 0x92,
    /// 0x93: Receive Maximum exceeded.
    ReceiveMaximumExceeded = 0x93,
    /// 0x94: Topic Alias invalid.
    TopicAliasInvalid = 0x94,
    /// 0x95: the packet is larger than the maximum packet size.
    PacketTooLarge = 0x95,
    /// 0x96: Message rate too high.
    MessageRateTooHigh = 0x96,
    /// 0x97: Quota exceeded.
    QuotaExceeded = 0x97,
    /// 0x98: Administrative action.
    AdministrativeAction = 0x98,
    /// 0x99: Payload format invalid.
    PayloadFormatInvalid = 0x99,
    /// 0x9A: Retain not supported.
    RetainNotSupported = 0x9A,
    /// 0x9B: QoS not supported.
    QoSNotSupported = 0x9B,
    /// 0x9C: Use another server.
    UseAnotherServer = 0x9C,
    /// 0x9D: Server moved.
    ServerMoved = 0x9D,
    /// 0x9E: Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E,
    /// 0x9F: Connection rate exceeded.
    ConnectionRateExceeded = 0x9F,
    /// 0xA0: Maximum connect time.
    MaximumConnectTime = 0xA0,
    /// 0xA1: Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1,
    /// 0xA2: Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2,
}

/// Bit of a packet type in the `packets` masks below.
const fn bit(t: PacketType) -> u16 {
    1 << (t as u16)
}

const CONNACK: u16 = bit(PacketType::ConnAck);
const PUBACK: u16 = bit(PacketType::PubAck);
const PUBREC: u16 = bit(PacketType::PubRec);
const PUBREL: u16 = bit(PacketType::PubRel);
const PUBCOMP: u16 = bit(PacketType::PubComp);
const SUBACK: u16 = bit(PacketType::SubAck);
const UNSUBACK: u16 = bit(PacketType::UnsubAck);
const DISCONNECT: u16 = bit(PacketType::Disconnect);
const AUTH: u16 = bit(PacketType::Auth);
/// The common "error in an acknowledgement" set.
const ACKS_ERR: u16 = CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT;

impl ReasonCode {
    /// Every reason code, in ascending order.
    pub const ALL: [ReasonCode; 43] = {
        use ReasonCode as R;
        [
            R::Success,
            R::GrantedQoS1,
            R::GrantedQoS2,
            R::DisconnectWithWillMessage,
            R::NoMatchingSubscribers,
            R::NoSubscriptionExisted,
            R::ContinueAuthentication,
            R::ReAuthenticate,
            R::UnspecifiedError,
            R::MalformedPacket,
            R::ProtocolError,
            R::ImplementationSpecificError,
            R::UnsupportedProtocolVersion,
            R::ClientIdentifierNotValid,
            R::BadUserNameOrPassword,
            R::NotAuthorized,
            R::ServerUnavailable,
            R::ServerBusy,
            R::Banned,
            R::ServerShuttingDown,
            R::BadAuthenticationMethod,
            R::KeepAliveTimeout,
            R::SessionTakenOver,
            R::TopicFilterInvalid,
            R::TopicNameInvalid,
            R::PacketIdentifierInUse,
            R::PacketIdentifierNotFound,
            R::ReceiveMaximumExceeded,
            R::TopicAliasInvalid,
            R::PacketTooLarge,
            R::MessageRateTooHigh,
            R::QuotaExceeded,
            R::AdministrativeAction,
            R::PayloadFormatInvalid,
            R::RetainNotSupported,
            R::QoSNotSupported,
            R::UseAnotherServer,
            R::ServerMoved,
            R::SharedSubscriptionsNotSupported,
            R::ConnectionRateExceeded,
            R::MaximumConnectTime,
            R::SubscriptionIdentifiersNotSupported,
            R::WildcardSubscriptionsNotSupported,
        ]
    };

    /// The byte sent on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The reason code with wire value `value`, or `None` for an unassigned value.
    pub fn from_u8(value: u8) -> Option<ReasonCode> {
        ReasonCode::ALL.iter().copied().find(|c| c.as_u8() == value)
    }

    /// `true` for the error codes (0x80 and above).
    pub const fn is_error(self) -> bool {
        self.as_u8() >= 0x80
    }

    /// Packet types this code may appear in (a bit per [`PacketType`] value).
    const fn packets(self) -> u16 {
        use ReasonCode as R;
        match self {
            R::Success => {
                CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK | DISCONNECT | AUTH
            }
            R::GrantedQoS1 | R::GrantedQoS2 => SUBACK,
            R::DisconnectWithWillMessage => DISCONNECT,
            R::NoMatchingSubscribers => PUBACK | PUBREC,
            R::NoSubscriptionExisted => UNSUBACK,
            R::ContinueAuthentication | R::ReAuthenticate => AUTH,
            R::UnspecifiedError | R::ImplementationSpecificError | R::NotAuthorized => ACKS_ERR,
            R::MalformedPacket
            | R::ProtocolError
            | R::ServerBusy
            | R::BadAuthenticationMethod
            | R::PacketTooLarge
            | R::RetainNotSupported
            | R::QoSNotSupported
            | R::UseAnotherServer
            | R::ServerMoved
            | R::ConnectionRateExceeded => CONNACK | DISCONNECT,
            R::UnsupportedProtocolVersion
            | R::ClientIdentifierNotValid
            | R::BadUserNameOrPassword
            | R::ServerUnavailable
            | R::Banned => CONNACK,
            R::ServerShuttingDown
            | R::KeepAliveTimeout
            | R::SessionTakenOver
            | R::ReceiveMaximumExceeded
            | R::TopicAliasInvalid
            | R::MessageRateTooHigh
            | R::AdministrativeAction
            | R::MaximumConnectTime => DISCONNECT,
            R::TopicFilterInvalid => SUBACK | UNSUBACK | DISCONNECT,
            R::TopicNameInvalid | R::PayloadFormatInvalid => CONNACK | PUBACK | PUBREC | DISCONNECT,
            R::PacketIdentifierInUse => PUBACK | PUBREC | SUBACK | UNSUBACK,
            R::PacketIdentifierNotFound => PUBREL | PUBCOMP,
            R::QuotaExceeded => CONNACK | PUBACK | PUBREC | SUBACK | DISCONNECT,
            R::SharedSubscriptionsNotSupported
            | R::SubscriptionIdentifiersNotSupported
            | R::WildcardSubscriptionsNotSupported => SUBACK | DISCONNECT,
        }
    }

    /// Whether this code may appear in a `packet` (MQTT 5.0 Table 2-6).
    pub const fn is_valid_for(self, packet: PacketType) -> bool {
        self.packets() & bit(packet) != 0
    }

    /// Whether a client may send this code in a DISCONNECT (MQTT 5.0 §3.14.2.1: the codes
    /// marked "Client" or "Client or Server").
    pub const fn client_may_disconnect_with(self) -> bool {
        use ReasonCode as R;
        matches!(
            self,
            R::Success
                | R::DisconnectWithWillMessage
                | R::UnspecifiedError
                | R::MalformedPacket
                | R::ProtocolError
                | R::ImplementationSpecificError
                | R::TopicNameInvalid
                | R::ReceiveMaximumExceeded
                | R::TopicAliasInvalid
                | R::PacketTooLarge
                | R::MessageRateTooHigh
                | R::QuotaExceeded
                | R::AdministrativeAction
                | R::PayloadFormatInvalid
        )
    }

    /// The spec's name for this code (0x00 reads "Success"; see [`ReasonCode::name_in`]).
    pub const fn name(self) -> &'static str {
        use ReasonCode as R;
        match self {
            R::Success => "Success",
            R::GrantedQoS1 => "Granted QoS 1",
            R::GrantedQoS2 => "Granted QoS 2",
            R::DisconnectWithWillMessage => "Disconnect with Will Message",
            R::NoMatchingSubscribers => "No matching subscribers",
            R::NoSubscriptionExisted => "No subscription existed",
            R::ContinueAuthentication => "Continue authentication",
            R::ReAuthenticate => "Re-authenticate",
            R::UnspecifiedError => "Unspecified error",
            R::MalformedPacket => "Malformed Packet",
            R::ProtocolError => "Protocol Error",
            R::ImplementationSpecificError => "Implementation specific error",
            R::UnsupportedProtocolVersion => "Unsupported Protocol Version",
            R::ClientIdentifierNotValid => "Client Identifier not valid",
            R::BadUserNameOrPassword => "Bad User Name or Password",
            R::NotAuthorized => "Not authorized",
            R::ServerUnavailable => "Server unavailable",
            R::ServerBusy => "Server busy",
            R::Banned => "Banned",
            R::ServerShuttingDown => "Server shutting down",
            R::BadAuthenticationMethod => "Bad authentication method",
            R::KeepAliveTimeout => "Keep Alive timeout",
            R::SessionTakenOver => "Session taken over",
            R::TopicFilterInvalid => "Topic Filter invalid",
            R::TopicNameInvalid => "Topic Name invalid",
            R::PacketIdentifierInUse => "Packet Identifier in use",
            R::PacketIdentifierNotFound => "Packet Identifier not found",
            R::ReceiveMaximumExceeded => "Receive Maximum exceeded",
            R::TopicAliasInvalid => "Topic Alias invalid",
            R::PacketTooLarge => "Packet too large",
            R::MessageRateTooHigh => "Message rate too high",
            R::QuotaExceeded => "Quota exceeded",
            R::AdministrativeAction => "Administrative action",
            R::PayloadFormatInvalid => "Payload format invalid",
            R::RetainNotSupported => "Retain not supported",
            R::QoSNotSupported => "QoS not supported",
            R::UseAnotherServer => "Use another server",
            R::ServerMoved => "Server moved",
            R::SharedSubscriptionsNotSupported => "Shared Subscriptions not supported",
            R::ConnectionRateExceeded => "Connection rate exceeded",
            R::MaximumConnectTime => "Maximum connect time",
            R::SubscriptionIdentifiersNotSupported => "Subscription Identifiers not supported",
            R::WildcardSubscriptionsNotSupported => "Wildcard Subscriptions not supported",
        }
    }

    /// The spec's name for this code in `packet`: 0x00 is "Normal disconnection" in
    /// DISCONNECT and "Granted QoS 0" in SUBACK.
    pub const fn name_in(self, packet: PacketType) -> &'static str {
        match (self, packet) {
            (ReasonCode::Success, PacketType::Disconnect) => "Normal disconnection",
            (ReasonCode::Success, PacketType::SubAck) => "Granted QoS 0",
            _ => self.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_and_is_sorted() {
        for pair in ReasonCode::ALL.windows(2) {
            assert!(pair[0].as_u8() < pair[1].as_u8());
        }
        for code in ReasonCode::ALL {
            assert_eq!(ReasonCode::from_u8(code.as_u8()), Some(code));
        }
        let assigned = (0..=u8::MAX)
            .filter(|&b| ReasonCode::from_u8(b).is_some())
            .count();
        assert_eq!(assigned, ReasonCode::ALL.len());
        assert_eq!(ReasonCode::from_u8(0x03), None);
    }

    #[test]
    fn packets_per_code_follow_table_2_6() {
        use PacketType as P;
        assert!(ReasonCode::Success.is_valid_for(P::Auth));
        assert!(!ReasonCode::Success.is_valid_for(P::Publish));
        assert!(ReasonCode::PacketIdentifierNotFound.is_valid_for(P::PubRel));
        assert!(!ReasonCode::PacketIdentifierNotFound.is_valid_for(P::PubAck));
        assert!(ReasonCode::NoMatchingSubscribers.is_valid_for(P::PubRec));
        assert!(!ReasonCode::MalformedPacket.is_valid_for(P::PubAck));
        assert!(ReasonCode::GrantedQoS2.is_valid_for(P::SubAck));
        assert_eq!(
            ReasonCode::Success.name_in(P::Disconnect),
            "Normal disconnection"
        );
        assert_eq!(ReasonCode::Success.name_in(P::SubAck), "Granted QoS 0");
        assert!(ReasonCode::DisconnectWithWillMessage.client_may_disconnect_with());
        assert!(!ReasonCode::SessionTakenOver.client_may_disconnect_with());
    }
}
