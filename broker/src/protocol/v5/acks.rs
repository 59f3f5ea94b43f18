//! MQTT 5 PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4–§3.7), DISCONNECT (§3.14) and AUTH
//! (§3.15): one borrowed type each, decoded from a client and encoded to it.

use bytes::BufMut;

use super::out::{Trim, fit, write_trimmed};
use super::wire::{Sink, UserProperties, prop_bytes, prop_u32, properties};
use crate::protocol::decode::{FLAGS_0010, expect_flags};
use crate::protocol::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::protocol::frame::{FrameHeader, PacketType};
use crate::protocol::properties::{
    Direction, PropertyContext, PropertyId, PropertyValue, parse_properties,
};
use crate::protocol::reader::Reader;
use crate::protocol::reason::ReasonCode;

/// A PUBACK, PUBREC, PUBREL or PUBCOMP: the packet type says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckV5<'a> {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// Reason code: valid for the packet type (MQTT-3.4.2-1 and siblings).
    pub reason: ReasonCode,
    /// Reason String.
    pub reason_string: Option<&'a str>,
    /// User Properties.
    pub user_properties: UserProperties<'a>,
}

impl AckV5<'static> {
    /// Success without properties (the two-byte short form).
    pub const fn success(packet_id: u16) -> Self {
        AckV5 {
            packet_id,
            reason: ReasonCode::Success,
            reason_string: None,
            user_properties: UserProperties::NONE,
        }
    }
}

fn read_reason(
    r: &mut Reader<'_>,
    packet_type: PacketType,
    allowed: impl Fn(ReasonCode) -> bool,
    context: &'static str,
) -> Result<ReasonCode, DecodeError> {
    let code = r.u8(context)?;
    match ReasonCode::from_u8(code) {
        Some(reason) if reason.is_valid_for(packet_type) && allowed(reason) => Ok(reason),
        _ => Err(DecodeError::new(
            DecodeErrorKind::InvalidReasonCode { packet_type, code },
            context,
        )),
    }
}

/// Decodes a v5 PUBACK/PUBREC/PUBREL/PUBCOMP body: remaining length 2 is Success without
/// properties, 3 a reason code without properties (§3.4.2.1).
pub(crate) fn decode_ack<'a>(
    header: &FrameHeader,
    body: &'a [u8],
) -> Result<AckV5<'a>, DecodeError> {
    let t = header.packet_type;
    let flags = if t == PacketType::PubRel {
        FLAGS_0010
    } else {
        0
    };
    expect_flags(header, flags, "acknowledgement fixed header")?;
    let mut r = Reader::new(body);
    let packet_id = r.packet_id("acknowledgement packet identifier")?;
    let mut ack = AckV5::success(packet_id);
    if !r.is_empty() {
        ack.reason = read_reason(&mut r, t, |_| true, "acknowledgement reason code")?;
    }
    if !r.is_empty() {
        let block = parse_properties(
            &mut r,
            PropertyContext::Packet(t),
            Direction::ClientToServer,
            "acknowledgement properties",
            |id, v| {
                if let (PropertyId::ReasonString, PropertyValue::Str(s)) = (id, v) {
                    ack.reason_string = Some(s);
                }
            },
        )?;
        ack.user_properties = UserProperties::wire(block);
    }
    r.finish("acknowledgement")?;
    Ok(ack)
}

fn ack_body(ack: &AckV5<'_>, s: &mut dyn Sink, trim: Trim) {
    s.u16(ack.packet_id);
    let reason_string = ack.reason_string.filter(|_| trim.keeps_reason_string());
    let users = trim.keeps_user_properties() && !ack.user_properties.is_empty();
    if ack.reason == ReasonCode::Success && reason_string.is_none() && !users {
        return;
    }
    s.u8(ack.reason.as_u8());
    if reason_string.is_none() && !users {
        return;
    }
    properties(s, &|s| {
        prop_bytes(
            s,
            PropertyId::ReasonString,
            reason_string.map(str::as_bytes),
        );
        if users {
            ack.user_properties.emit(s);
        }
    });
}

fn ack_first_byte(packet_type: PacketType, ack: &AckV5<'_>) -> Result<u8, EncodeError> {
    let first = match packet_type {
        PacketType::PubAck => 0x40,
        PacketType::PubRec => 0x50,
        PacketType::PubRel => 0x60 | FLAGS_0010,
        PacketType::PubComp => 0x70,
        _ => {
            return Err(EncodeError::InvalidReasonCode {
                packet_type,
                code: ack.reason,
            });
        }
    };
    if !ack.reason.is_valid_for(packet_type) {
        return Err(EncodeError::InvalidReasonCode {
            packet_type,
            code: ack.reason,
        });
    }
    if ack.packet_id == 0 {
        return Err(EncodeError::InvalidPacketId);
    }
    Ok(first)
}

/// The size [`encode_ack_v5`] would write under `max_packet_size_bytes` (after leaving
/// out what does not fit), or why it would write nothing.
pub fn ack_v5_len(
    packet_type: PacketType,
    ack: &AckV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    ack_first_byte(packet_type, ack)?;
    fit(max_packet_size_bytes, &|s, trim| ack_body(ack, s, trim)).map(|(_, len)| len)
}

/// Encodes a v5 PUBACK, PUBREC, PUBREL or PUBCOMP (`packet_type`), in the shortest form
/// (remaining length 2 for Success without properties, 3 for a reason code alone), leaving
/// out the Reason String and then the User Properties if the packet would exceed
/// `max_packet_size_bytes` (MQTT-3.4.2-2/3 and siblings).
pub fn encode_ack_v5<B: BufMut + ?Sized>(
    out: &mut B,
    packet_type: PacketType,
    ack: &AckV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    let first = ack_first_byte(packet_type, ack)?;
    write_trimmed(out, first, max_packet_size_bytes, &|s, trim| {
        ack_body(ack, s, trim)
    })
}

/// A DISCONNECT (§3.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisconnectV5<'a> {
    /// Reason code; 0x00 is "Normal disconnection".
    pub reason: ReasonCode,
    /// Session Expiry Interval in seconds (client only: MQTT-3.14.2-2). Whether a change is
    /// allowed (not from 0, §3.14.2.2.2) is for the session layer.
    pub session_expiry_interval_secs: Option<u32>,
    /// Reason String.
    pub reason_string: Option<&'a str>,
    /// Server Reference (with 0x9C Use another server / 0x9D Server moved).
    pub server_reference: Option<&'a str>,
    /// User Properties.
    pub user_properties: UserProperties<'a>,
}

impl DisconnectV5<'static> {
    /// A DISCONNECT with `reason` and no properties.
    pub const fn new(reason: ReasonCode) -> Self {
        DisconnectV5 {
            reason,
            session_expiry_interval_secs: None,
            reason_string: None,
            server_reference: None,
            user_properties: UserProperties::NONE,
        }
    }
}

/// Decodes a client's DISCONNECT: remaining length 0 is Normal disconnection, 1 a reason
/// code alone; only codes a client may send are accepted (MQTT-3.14.2-1).
pub(crate) fn decode_disconnect<'a>(
    header: &FrameHeader,
    body: &'a [u8],
) -> Result<DisconnectV5<'a>, DecodeError> {
    expect_flags(header, 0, "DISCONNECT fixed header")?;
    let mut r = Reader::new(body);
    let mut d = DisconnectV5::new(ReasonCode::Success);
    if !r.is_empty() {
        d.reason = read_reason(
            &mut r,
            PacketType::Disconnect,
            ReasonCode::client_may_disconnect_with,
            "DISCONNECT reason code",
        )?;
    }
    if !r.is_empty() {
        let block = parse_properties(
            &mut r,
            PropertyContext::Packet(PacketType::Disconnect),
            Direction::ClientToServer,
            "DISCONNECT properties",
            |id, v| match (id, v) {
                (PropertyId::SessionExpiryInterval, PropertyValue::U32(n)) => {
                    d.session_expiry_interval_secs = Some(n);
                }
                (PropertyId::ReasonString, PropertyValue::Str(s)) => d.reason_string = Some(s),
                (PropertyId::ServerReference, PropertyValue::Str(s)) => {
                    d.server_reference = Some(s);
                }
                _ => {}
            },
        )?;
        d.user_properties = UserProperties::wire(block);
    }
    r.finish("DISCONNECT")?;
    Ok(d)
}

fn disconnect_body(d: &DisconnectV5<'_>, s: &mut dyn Sink, trim: Trim) {
    let reason_string = d.reason_string.filter(|_| trim.keeps_reason_string());
    let users = trim.keeps_user_properties() && !d.user_properties.is_empty();
    let props = reason_string.is_some()
        || users
        || d.server_reference.is_some()
        || d.session_expiry_interval_secs.is_some();
    if d.reason == ReasonCode::Success && !props {
        return;
    }
    s.u8(d.reason.as_u8());
    if !props {
        return;
    }
    properties(s, &|s| {
        prop_u32(
            s,
            PropertyId::SessionExpiryInterval,
            d.session_expiry_interval_secs,
        );
        prop_bytes(
            s,
            PropertyId::ReasonString,
            reason_string.map(str::as_bytes),
        );
        prop_bytes(
            s,
            PropertyId::ServerReference,
            d.server_reference.map(str::as_bytes),
        );
        if users {
            d.user_properties.emit(s);
        }
    });
}

fn check_disconnect(d: &DisconnectV5<'_>) -> Result<(), EncodeError> {
    if !d.reason.is_valid_for(PacketType::Disconnect) {
        return Err(EncodeError::InvalidReasonCode {
            packet_type: PacketType::Disconnect,
            code: d.reason,
        });
    }
    if d.session_expiry_interval_secs.is_some() {
        // MQTT-3.14.2-2: the server never sends a Session Expiry Interval here.
        return Err(EncodeError::InvalidProperty(
            PropertyId::SessionExpiryInterval.as_u8(),
        ));
    }
    Ok(())
}

/// The size [`encode_disconnect_v5`] would write, or why it would write nothing.
pub fn disconnect_v5_len(
    d: &DisconnectV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    check_disconnect(d)?;
    fit(max_packet_size_bytes, &|s, trim| {
        disconnect_body(d, s, trim)
    })
    .map(|(_, len)| len)
}

/// Encodes a server DISCONNECT (remaining length 0 for Normal disconnection without
/// properties), leaving out the Reason String and then the User Properties if needed to
/// fit `max_packet_size_bytes` (MQTT-3.14.2-3/4). A Session Expiry Interval is refused
/// (MQTT-3.14.2-2).
pub fn encode_disconnect_v5<B: BufMut + ?Sized>(
    out: &mut B,
    d: &DisconnectV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    check_disconnect(d)?;
    write_trimmed(out, 0xE0, max_packet_size_bytes, &|s, trim| {
        disconnect_body(d, s, trim)
    })
}

/// An AUTH packet (§3.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthV5<'a> {
    /// 0x00 Success (server only), 0x18 Continue authentication, 0x19 Re-authenticate
    /// (client only).
    pub reason: ReasonCode,
    /// Authentication Method: required (§3.15.2.2.2).
    pub authentication_method: Option<&'a str>,
    /// Authentication Data.
    pub authentication_data: Option<&'a [u8]>,
    /// Reason String.
    pub reason_string: Option<&'a str>,
    /// User Properties.
    pub user_properties: UserProperties<'a>,
}

/// Decodes a client's AUTH: reason 0x18 or 0x19 (0x00 is the server's, MQTT-3.15.2-1) and
/// an Authentication Method (§3.15.2.2.2), so never the remaining-length-0 form.
pub(crate) fn decode_auth<'a>(
    header: &FrameHeader,
    body: &'a [u8],
) -> Result<AuthV5<'a>, DecodeError> {
    expect_flags(header, 0, "AUTH fixed header")?;
    let mut r = Reader::new(body);
    let mut a = AuthV5 {
        reason: ReasonCode::Success,
        authentication_method: None,
        authentication_data: None,
        reason_string: None,
        user_properties: UserProperties::NONE,
    };
    if !r.is_empty() {
        a.reason = read_reason(
            &mut r,
            PacketType::Auth,
            |c| c != ReasonCode::Success,
            "AUTH reason code",
        )?;
    }
    if !r.is_empty() {
        let block = parse_properties(
            &mut r,
            PropertyContext::Packet(PacketType::Auth),
            Direction::ClientToServer,
            "AUTH properties",
            |id, v| match (id, v) {
                (PropertyId::AuthenticationMethod, PropertyValue::Str(s)) => {
                    a.authentication_method = Some(s);
                }
                (PropertyId::AuthenticationData, PropertyValue::Binary(b)) => {
                    a.authentication_data = Some(b);
                }
                (PropertyId::ReasonString, PropertyValue::Str(s)) => a.reason_string = Some(s),
                _ => {}
            },
        )?;
        a.user_properties = UserProperties::wire(block);
    }
    r.finish("AUTH")?;
    if a.reason == ReasonCode::Success {
        return Err(DecodeError::new(
            DecodeErrorKind::InvalidReasonCode {
                packet_type: PacketType::Auth,
                code: 0,
            },
            "AUTH reason code",
        ));
    }
    if a.authentication_method.is_none() {
        return Err(DecodeError::new(
            DecodeErrorKind::MissingAuthenticationMethod,
            "AUTH properties",
        ));
    }
    Ok(a)
}

fn auth_body(a: &AuthV5<'_>, s: &mut dyn Sink, trim: Trim) {
    s.u8(a.reason.as_u8());
    properties(s, &|s| {
        prop_bytes(
            s,
            PropertyId::AuthenticationMethod,
            a.authentication_method.map(str::as_bytes),
        );
        prop_bytes(s, PropertyId::AuthenticationData, a.authentication_data);
        prop_bytes(
            s,
            PropertyId::ReasonString,
            a.reason_string
                .filter(|_| trim.keeps_reason_string())
                .map(str::as_bytes),
        );
        if trim.keeps_user_properties() {
            a.user_properties.emit(s);
        }
    });
}

/// Encodes a server AUTH (reason 0x00 or 0x18, with its Authentication Method), leaving
/// out the Reason String and then the User Properties if needed to fit
/// `max_packet_size_bytes` (MQTT-3.15.2-2/3).
pub fn encode_auth_v5<B: BufMut + ?Sized>(
    out: &mut B,
    a: &AuthV5<'_>,
    max_packet_size_bytes: usize,
) -> Result<usize, EncodeError> {
    if !a.reason.is_valid_for(PacketType::Auth) || a.reason == ReasonCode::ReAuthenticate {
        return Err(EncodeError::InvalidReasonCode {
            packet_type: PacketType::Auth,
            code: a.reason,
        });
    }
    if a.authentication_method.is_none() {
        return Err(EncodeError::InvalidProperty(
            PropertyId::AuthenticationMethod.as_u8(),
        ));
    }
    write_trimmed(out, 0xF0, max_packet_size_bytes, &|s, trim| {
        auth_body(a, s, trim)
    })
}
