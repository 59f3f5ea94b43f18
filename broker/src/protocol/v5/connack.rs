//! MQTT 5 CONNACK (§3.2), SUBACK (§3.9) and UNSUBACK (§3.11): server→client only.

use bytes::BufMut;

use super::out::{Trim, fit, write_trimmed};
use super::wire::{Sink, UserProperties, prop_bytes, prop_u8, prop_u16, prop_u32, properties};
use crate::protocol::QoS;
use crate::protocol::error::EncodeError;
use crate::protocol::frame::PacketType;
use crate::protocol::properties::PropertyId;
use crate::protocol::reason::ReasonCode;

/// The properties a server announces in CONNACK (§3.2.2.3). `None` leaves a property out
/// (the client then assumes the spec's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnAckProperties<'a> {
    /// Session Expiry Interval in seconds, when the server overrides the client's.
    pub session_expiry_interval_secs: Option<u32>,
    /// Receive Maximum (non-zero).
    pub receive_maximum: Option<u16>,
    /// Maximum QoS: 0 or 1 only (a server supporting QoS 2 omits it, §3.2.2.3.4).
    pub maximum_qos: Option<QoS>,
    /// Retain Available.
    pub retain_available: Option<bool>,
    /// Maximum Packet Size in bytes (non-zero).
    pub maximum_packet_size: Option<u32>,
    /// Assigned Client Identifier (for a client that sent an empty one).
    pub assigned_client_identifier: Option<&'a str>,
    /// Topic Alias Maximum.
    pub topic_alias_maximum: Option<u16>,
    /// Reason String (left out first when the packet would be too large, MQTT-3.2.2-19).
    pub reason_string: Option<&'a str>,
    /// User Properties (left out next, MQTT-3.2.2-20).
    pub user_properties: UserProperties<'a>,
    /// Wildcard Subscription Available.
    pub wildcard_subscription_available: Option<bool>,
    /// Subscription Identifiers Available.
    pub subscription_identifiers_available: Option<bool>,
    /// Shared Subscription Available.
    pub shared_subscription_available: Option<bool>,
    /// Server Keep Alive in seconds (the client must use it, MQTT-3.2.2-21).
    pub server_keep_alive_secs: Option<u16>,
    /// Response Information.
    pub response_information: Option<&'a str>,
    /// Server Reference.
    pub server_reference: Option<&'a str>,
    /// Authentication Method.
    pub authentication_method: Option<&'a str>,
    /// Authentication Data.
    pub authentication_data: Option<&'a [u8]>,
}

/// A CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAckV5<'a> {
    /// Session Present: sent only with reason 0x00 (MQTT-3.2.2-6).
    pub session_present: bool,
    /// Reason code (valid in CONNACK).
    pub reason: ReasonCode,
    /// Properties.
    pub properties: ConnAckProperties<'a>,
}

impl ConnAckProperties<'_> {
    fn check(&self) -> Result<(), EncodeError> {
        let bad = |id: PropertyId| Err(EncodeError::InvalidProperty(id.as_u8()));
        if self.receive_maximum == Some(0) {
            return bad(PropertyId::ReceiveMaximum);
        }
        if self.maximum_packet_size == Some(0) {
            return bad(PropertyId::MaximumPacketSize);
        }
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return bad(PropertyId::MaximumQoS);
        }
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return bad(PropertyId::AuthenticationData);
        }
        Ok(())
    }

    fn emit(&self, s: &mut dyn Sink, trim: Trim) {
        use PropertyId as P;
        let flag = |b: Option<bool>| b.map(u8::from);
        prop_u32(
            s,
            P::SessionExpiryInterval,
            self.session_expiry_interval_secs,
        );
        prop_u16(s, P::ReceiveMaximum, self.receive_maximum);
        prop_u8(s, P::MaximumQoS, self.maximum_qos.map(QoS::as_u8));
        prop_u8(s, P::RetainAvailable, flag(self.retain_available));
        prop_u32(s, P::MaximumPacketSize, self.maximum_packet_size);
        prop_bytes(
            s,
            P::AssignedClientIdentifier,
            self.assigned_client_identifier.map(str::as_bytes),
        );
        prop_u16(s, P::TopicAliasMaximum, self.topic_alias_maximum);
        if trim.keeps_reason_string() {
            prop_bytes(s, P::ReasonString, self.reason_string.map(str::as_bytes));
        }
        if trim.keeps_user_properties() {
            self.user_properties.emit(s);
        }
        prop_u8(
            s,
            P::WildcardSubscriptionAvailable,
            flag(self.wildcard_subscription_available),
        );
        prop_u8(
            s,
            P::SubscriptionIdentifierAvailable,
            flag(self.subscription_identifiers_available),
        );
        prop_u8(
            s,
            P::SharedSubscriptionAvailable,
            flag(self.shared_subscription_available),
        );
        prop_u16(s, P::ServerKeepAlive, self.server_keep_alive_secs);
        prop_bytes(
            s,
            P::ResponseInformation,
            self.response_information.map(str::as_bytes),
        );
        prop_bytes(
            s,
            P::ServerReference,
            self.server_reference.map(str::as_bytes),
        );
        prop_bytes(
            s,
            P::AuthenticationMethod,
            self.authentication_method.map(str::as_bytes),
        );
        prop_bytes(s, P::AuthenticationData, self.authentication_data);
    }
}

impl ConnAckV5<'_> {
    fn check(&self) -> Result<(), EncodeError> {
        if !self.reason.is_valid_for(PacketType::ConnAck) {
            return Err(EncodeError::InvalidReasonCode {
                packet_type: PacketType::ConnAck,
                code: self.reason,
            });
        }
        self.properties.check()
    }

    fn emit(&self, s: &mut dyn Sink, trim: Trim) {
        s.u8(u8::from(
            self.session_present && self.reason == ReasonCode::Success,
        ));
        s.u8(self.reason.as_u8());
        properties(s, &|s| self.properties.emit(s, trim));
    }
}

/// The size [`encode_connack_v5`] would write, or why it would write nothing.
pub fn connack_v5_len(
    connack: &ConnAckV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    connack.check()?;
    fit(max_packet_size_bytes, &|s, trim| connack.emit(s, trim)).map(|(_, len)| len)
}

/// Encodes a v5 CONNACK under the client's Maximum Packet Size (leaving out the Reason
/// String, then the User Properties, MQTT-3.2.2-19/20). Session Present is sent only with
/// Success (MQTT-3.2.2-6).
pub fn encode_connack_v5<B: BufMut + ?Sized>(
    out: &mut B,
    connack: &ConnAckV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    connack.check()?;
    write_trimmed(out, 0x20, max_packet_size_bytes, &|s, trim| {
        connack.emit(s, trim)
    })
}

/// A SUBACK or UNSUBACK: one reason code per topic filter, in order (MQTT-3.8.4-6,
/// MQTT-3.10.4-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubAckV5<'a> {
    /// Packet identifier of the SUBSCRIBE / UNSUBSCRIBE.
    pub packet_id: u16,
    /// One code per filter; at least one.
    pub reason_codes: &'a [ReasonCode],
    /// Reason String.
    pub reason_string: Option<&'a str>,
    /// User Properties.
    pub user_properties: UserProperties<'a>,
}

impl SubAckV5<'_> {
    fn check(&self, packet_type: PacketType) -> Result<(), EncodeError> {
        if self.packet_id == 0 {
            return Err(EncodeError::InvalidPacketId);
        }
        if self.reason_codes.is_empty() {
            return Err(EncodeError::NoReturnCodes);
        }
        match self
            .reason_codes
            .iter()
            .find(|c| !c.is_valid_for(packet_type))
        {
            Some(&code) => Err(EncodeError::InvalidReasonCode { packet_type, code }),
            None => Ok(()),
        }
    }

    fn emit(&self, s: &mut dyn Sink, trim: Trim) {
        s.u16(self.packet_id);
        properties(s, &|s| {
            if trim.keeps_reason_string() {
                prop_bytes(
                    s,
                    PropertyId::ReasonString,
                    self.reason_string.map(str::as_bytes),
                );
            }
            if trim.keeps_user_properties() {
                self.user_properties.emit(s);
            }
        });
        for code in self.reason_codes {
            s.u8(code.as_u8());
        }
    }
}

/// The size [`encode_suback_v5`] (`PacketType::SubAck`) or [`encode_unsuback_v5`]
/// (`PacketType::UnsubAck`) would write, or why it would write nothing.
pub fn suback_v5_len(
    packet_type: PacketType,
    ack: &SubAckV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    ack.check(packet_type)?;
    fit(max_packet_size_bytes, &|s, trim| ack.emit(s, trim)).map(|(_, len)| len)
}

/// Encodes a v5 SUBACK (codes: Granted QoS 0/1/2 or errors valid in SUBACK), leaving out the
/// Reason String and then the User Properties to fit (MQTT-3.9.2-1/2).
pub fn encode_suback_v5<B: BufMut + ?Sized>(
    out: &mut B,
    ack: &SubAckV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    ack.check(PacketType::SubAck)?;
    write_trimmed(out, 0x90, max_packet_size_bytes, &|s, trim| {
        ack.emit(s, trim)
    })
}

/// Encodes a v5 UNSUBACK (codes: Success, No subscription existed or errors valid in
/// UNSUBACK), leaving out the Reason String and then the User Properties to fit
/// (MQTT-3.11.2-1/2).
pub fn encode_unsuback_v5<B: BufMut + ?Sized>(
    out: &mut B,
    ack: &SubAckV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    ack.check(PacketType::UnsubAck)?;
    write_trimmed(out, 0xB0, max_packet_size_bytes, &|s, trim| {
        ack.emit(s, trim)
    })
}
