//! MQTT 5 CONNECT (§3.1): properties, will properties, Authentication Method/Data.

use std::num::{NonZeroU16, NonZeroU32};

use super::publish::PayloadFormat;
use super::wire::{UserProperties, UserProperty};
use crate::protocol::ProtocolVersion;
use crate::protocol::connect::{
    Connect, FLAG_CLEAN_SESSION, FLAG_WILL, check_flags, read_login, read_will,
};
use crate::protocol::error::{DecodeError, DecodeErrorKind};
use crate::protocol::frame::{FrameHeader, PacketType, varint_len};
use crate::protocol::properties::{
    Direction, PropertyContext, PropertyId, PropertyValue, parse_properties,
};
use crate::protocol::reader::Reader;

/// CONNECT properties (§3.1.2.11). Owned: decoded once per connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    /// Session Expiry Interval in seconds (absent: 0, the session ends with the network
    /// connection; `u32::MAX`: never expires).
    pub session_expiry_interval_secs: Option<u32>,
    /// Receive Maximum (absent: 65 535).
    pub receive_maximum: Option<NonZeroU16>,
    /// Maximum Packet Size the client accepts, in bytes (absent: no limit).
    pub maximum_packet_size: Option<NonZeroU32>,
    /// Topic Alias Maximum the client accepts (absent: 0, no aliases toward it).
    pub topic_alias_maximum: Option<u16>,
    /// Request Response Information (absent: false).
    pub request_response_information: Option<bool>,
    /// Request Problem Information (absent: true).
    pub request_problem_information: Option<bool>,
    /// Authentication Method (enhanced authentication, §4.12).
    pub authentication_method: Option<String>,
    /// Authentication Data (only with a method, §3.1.2.11.10).
    pub authentication_data: Option<Vec<u8>>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
}

impl ConnectProperties {
    /// The client's Maximum Packet Size as a byte limit for the encoders
    /// ([`UNLIMITED_PACKET_SIZE_BYTES`](super::UNLIMITED_PACKET_SIZE_BYTES) when absent).
    pub fn max_packet_size_bytes(&self) -> usize {
        self.maximum_packet_size
            .and_then(|n| usize::try_from(n.get()).ok())
            .unwrap_or(super::UNLIMITED_PACKET_SIZE_BYTES)
    }
}

/// Will properties (§3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    /// Will Delay Interval in seconds (absent: 0).
    pub will_delay_interval_secs: Option<u32>,
    /// Payload Format Indicator of the will message.
    pub payload_format: Option<PayloadFormat>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval_secs: Option<u32>,
    /// Content Type.
    pub content_type: Option<String>,
    /// Response Topic (a valid topic name).
    pub response_topic: Option<String>,
    /// Correlation Data.
    pub correlation_data: Option<Vec<u8>>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
}

/// A decoded MQTT 5 CONNECT: the fields shared with 3.x (`connect.version` is
/// [`ProtocolVersion::V5`], `connect.clean_session` is Clean Start) plus properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectV5 {
    /// Client id, Clean Start, keep alive, will message, username, password.
    pub connect: Connect,
    /// CONNECT properties.
    pub properties: ConnectProperties,
    /// Will properties, exactly when `connect.will` is `Some`.
    pub will_properties: Option<WillProperties>,
}

fn read_connect_properties(r: &mut Reader<'_>) -> Result<ConnectProperties, DecodeError> {
    const CONTEXT: &str = "CONNECT properties";
    let mut p = ConnectProperties::default();
    let block = parse_properties(
        r,
        PropertyContext::Packet(PacketType::Connect),
        Direction::ClientToServer,
        CONTEXT,
        |id, v| match (id, v) {
            (PropertyId::SessionExpiryInterval, PropertyValue::U32(n)) => {
                p.session_expiry_interval_secs = Some(n);
            }
            (PropertyId::ReceiveMaximum, PropertyValue::U16(n)) => {
                p.receive_maximum = NonZeroU16::new(n);
            }
            (PropertyId::MaximumPacketSize, PropertyValue::U32(n)) => {
                p.maximum_packet_size = NonZeroU32::new(n);
            }
            (PropertyId::TopicAliasMaximum, PropertyValue::U16(n)) => {
                p.topic_alias_maximum = Some(n);
            }
            (PropertyId::RequestResponseInformation, PropertyValue::Byte(b)) => {
                p.request_response_information = Some(b == 1);
            }
            (PropertyId::RequestProblemInformation, PropertyValue::Byte(b)) => {
                p.request_problem_information = Some(b == 1);
            }
            (PropertyId::AuthenticationMethod, PropertyValue::Str(s)) => {
                p.authentication_method = Some(s.to_owned());
            }
            (PropertyId::AuthenticationData, PropertyValue::Binary(b)) => {
                p.authentication_data = Some(b.to_vec());
            }
            _ => {}
        },
    )?;
    p.user_properties = UserProperties::wire(block).to_vec();
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::new(
            DecodeErrorKind::AuthenticationDataWithoutMethod,
            CONTEXT,
        ));
    }
    Ok(p)
}

fn read_will_properties(r: &mut Reader<'_>) -> Result<WillProperties, DecodeError> {
    let mut w = WillProperties::default();
    let block = parse_properties(
        r,
        PropertyContext::Will,
        Direction::ClientToServer,
        "CONNECT will properties",
        |id, v| match (id, v) {
            (PropertyId::WillDelayInterval, PropertyValue::U32(n)) => {
                w.will_delay_interval_secs = Some(n);
            }
            (PropertyId::PayloadFormatIndicator, PropertyValue::Byte(b)) => {
                w.payload_format = Some(PayloadFormat::from_u8(b));
            }
            (PropertyId::MessageExpiryInterval, PropertyValue::U32(n)) => {
                w.message_expiry_interval_secs = Some(n);
            }
            (PropertyId::ContentType, PropertyValue::Str(s)) => {
                w.content_type = Some(s.to_owned());
            }
            (PropertyId::ResponseTopic, PropertyValue::Str(s)) => {
                w.response_topic = Some(s.to_owned());
            }
            (PropertyId::CorrelationData, PropertyValue::Binary(b)) => {
                w.correlation_data = Some(b.to_vec());
            }
            _ => {}
        },
    )?;
    w.user_properties = UserProperties::wire(block).to_vec();
    Ok(w)
}

/// Decodes a v5 CONNECT after its protocol name and level.
pub(crate) fn decode_connect_v5_rest(
    header: &FrameHeader,
    mut r: Reader<'_>,
) -> Result<ConnectV5, DecodeError> {
    // The CONNECT was framed before its version was known, with 3.x rules.
    if header.header_len != 1 + varint_len(header.remaining_len) {
        return Err(DecodeError::new(
            DecodeErrorKind::NonMinimalVarint,
            "CONNECT fixed header",
        ));
    }
    let flags = r.u8("CONNECT flags")?;
    check_flags(ProtocolVersion::V5, flags)?;
    let keep_alive_secs = r.u16("CONNECT keep alive")?;
    let properties = read_connect_properties(&mut r)?;
    // Payload: client id, will properties, will topic, will payload, username, password
    // (MQTT-3.1.3-1).
    let client_id = r.string("CONNECT client identifier")?;
    let (will, will_properties) = if flags & FLAG_WILL != 0 {
        let props = read_will_properties(&mut r)?;
        (Some(read_will(&mut r, flags)?), Some(props))
    } else {
        (None, None)
    };
    let (username, password) = read_login(&mut r, flags)?;
    r.finish("CONNECT")?;
    Ok(ConnectV5 {
        connect: Connect {
            version: ProtocolVersion::V5,
            client_id: client_id.to_owned(),
            clean_session: flags & FLAG_CLEAN_SESSION != 0,
            keep_alive_secs,
            will,
            username,
            password,
        },
        properties,
        will_properties,
    })
}
