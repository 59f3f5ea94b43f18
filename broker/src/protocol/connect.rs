//! CONNECT: decoded before the protocol version is known.

use super::decode::split_frame;
use super::error::{DecodeError, DecodeErrorKind};
use super::frame::{FrameHeader, PacketType};
use super::reader::Reader;
use super::v5::{ConnectV5, decode_connect_v5_rest};
use super::{MAX_V31_CLIENT_ID_LEN_BYTES, ProtocolVersion, QoS};
use crate::topic::validate_topic_name;

const FLAG_RESERVED: u8 = 0b0000_0001;
/// Clean Session (3.x) / Clean Start (5.0).
pub(crate) const FLAG_CLEAN_SESSION: u8 = 0b0000_0010;
/// Will Flag.
pub(crate) const FLAG_WILL: u8 = 0b0000_0100;
const FLAG_WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL_QOS_MASK: u8 = 0b0001_1000;
const FLAG_WILL_RETAIN: u8 = 0b0010_0000;
const FLAG_PASSWORD: u8 = 0b0100_0000;
const FLAG_USERNAME: u8 = 0b1000_0000;

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic name, validated like a PUBLISH topic (no wildcards, not empty).
    pub topic: String,
    /// Message payload (binary).
    pub payload: Vec<u8>,
    /// QoS to publish the will with.
    pub qos: QoS,
    /// Whether the will is published as retained.
    pub retain: bool,
}

/// A decoded, validated CONNECT. Owned: it is decoded once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol revision the client speaks.
    pub version: ProtocolVersion,
    /// Client identifier; may be empty in 3.1.1 only with `clean_session` (the broker then
    /// assigns one, MQTT-3.1.3-6); in 5.0 it may be empty either way (the server assigns
    /// one and returns it as Assigned Client Identifier, MQTT-3.1.3-6/7).
    pub client_id: String,
    /// Clean Session flag (3.x); in 5.0 the same bit is Clean Start, and session lifetime
    /// is the Session Expiry Interval property instead.
    pub clean_session: bool,
    /// Keep alive in seconds; 0 turns the keep-alive mechanism off.
    pub keep_alive_secs: u16,
    /// The will message, if the will flag is set.
    pub will: Option<Will>,
    /// Username, if the username flag is set (possibly empty).
    pub username: Option<String>,
    /// Password (binary data), if the password flag is set (possibly empty).
    pub password: Option<Vec<u8>>,
}

/// Reads the protocol name and level of a complete CONNECT frame without parsing further.
///
/// `MQTT`/4 is 3.1.1, `MQIsdp`/3 is 3.1, `MQTT`/5 is 5.0 (reported, not refused: that is for
/// the caller). Any other level with a known name is
/// [`DecodeErrorKind::UnsupportedProtocolLevel`] (CONNACK 0x01, MQTT-3.1.2-2); any other
/// name is [`DecodeErrorKind::InvalidProtocolName`] (close, MQTT-3.1.2-1).
pub fn peek_connect_version(frame: &[u8]) -> Result<ProtocolVersion, DecodeError> {
    let (_, body) = split_connect(frame)?;
    read_version(&mut Reader::new(body))
}

/// Decodes and validates the first packet of a connection, which must be a CONNECT
/// (MQTT-3.1.0-1). `frame` is exactly the bytes [`check_frame`](super::check_frame) framed.
///
/// A level-5 CONNECT is refused with [`DecodeErrorKind::UnsupportedProtocolLevel`] (CONNACK
/// 0x01) without parsing its body: this is the entry point for a caller that does not
/// speak MQTT 5 (the broker core until it adopts v5). [`decode_connect_any`] decodes v5
/// too.
pub fn decode_connect(frame: &[u8]) -> Result<Connect, DecodeError> {
    let (_, body) = split_connect(frame)?;
    let mut r = Reader::new(body);
    let version = read_version(&mut r)?;
    if version == ProtocolVersion::V5 {
        return Err(DecodeError::new(
            DecodeErrorKind::UnsupportedProtocolLevel(version.level()),
            "CONNECT protocol level (MQTT 5 not supported yet)",
        ));
    }
    decode_v3_rest(version, r)
}

/// A CONNECT of any supported version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyConnect {
    /// MQTT 3.1 or 3.1.1.
    V3(Connect),
    /// MQTT 5.0.
    V5(Box<ConnectV5>),
}

/// [`decode_connect`] for a caller that speaks MQTT 5: a level-5 CONNECT is decoded with
/// its properties and will properties (errors then carry MQTT 5.0 statement numbers and
/// reason codes, [`DecodeError::is_v5`]).
pub fn decode_connect_any(frame: &[u8]) -> Result<AnyConnect, DecodeError> {
    let (header, body) = split_connect(frame)?;
    let mut r = Reader::new(body);
    let version = read_version(&mut r)?;
    if version == ProtocolVersion::V5 {
        decode_connect_v5_rest(&header, r)
            .map(|c| AnyConnect::V5(Box::new(c)))
            .map_err(DecodeError::in_v5)
    } else {
        decode_v3_rest(version, r).map(AnyConnect::V3)
    }
}

fn decode_v3_rest(version: ProtocolVersion, mut r: Reader<'_>) -> Result<Connect, DecodeError> {
    let flags = r.u8("CONNECT flags")?;
    check_flags(version, flags)?;
    let keep_alive_secs = r.u16("CONNECT keep alive")?;

    // Payload order: client id, will topic, will message, username, password (MQTT-3.1.3-1).
    let client_id = r.string("CONNECT client identifier")?;
    let will = if flags & FLAG_WILL != 0 {
        Some(read_will(&mut r, flags)?)
    } else {
        None
    };
    let (username, password) = read_login(&mut r, flags)?;
    r.finish("CONNECT")?;

    // Policy refusals last: a packet that is also malformed is closed without a CONNACK.
    let clean_session = flags & FLAG_CLEAN_SESSION != 0;
    check_client_id(version, client_id, clean_session)?;

    Ok(Connect {
        version,
        client_id: client_id.to_owned(),
        clean_session,
        keep_alive_secs,
        will,
        username,
        password,
    })
}

/// The will topic and message (properties, in v5, come before and are read by the caller).
pub(crate) fn read_will(r: &mut Reader<'_>, flags: u8) -> Result<Will, DecodeError> {
    let topic = r.utf8("CONNECT will topic")?;
    validate_topic_name(topic).map_err(|e| {
        DecodeError::new(DecodeErrorKind::InvalidTopicName(e), "CONNECT will topic")
    })?;
    let payload = r.binary("CONNECT will message")?;
    let qos = QoS::from_u8((flags & FLAG_WILL_QOS_MASK) >> FLAG_WILL_QOS_SHIFT).ok_or(
        DecodeError::new(DecodeErrorKind::InvalidWillQoS, "CONNECT flags"),
    )?;
    Ok(Will {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        qos,
        retain: flags & FLAG_WILL_RETAIN != 0,
    })
}

/// Username and password, as the flags announce them.
pub(crate) type Login = (Option<String>, Option<Vec<u8>>);

pub(crate) fn read_login(r: &mut Reader<'_>, flags: u8) -> Result<Login, DecodeError> {
    let username = if flags & FLAG_USERNAME != 0 {
        Some(r.string("CONNECT username")?.to_owned())
    } else {
        None
    };
    let password = if flags & FLAG_PASSWORD != 0 {
        Some(r.binary("CONNECT password")?.to_vec())
    } else {
        None
    };
    Ok((username, password))
}

fn split_connect(frame: &[u8]) -> Result<(FrameHeader, &[u8]), DecodeError> {
    let (header, body) = split_frame(ProtocolVersion::V311, frame)?;
    if header.packet_type != PacketType::Connect {
        return Err(DecodeError::new(
            DecodeErrorKind::NotConnect(header.packet_type),
            "first packet",
        ));
    }
    if header.flags != 0 {
        return Err(DecodeError::new(
            DecodeErrorKind::InvalidHeaderFlags {
                packet_type: PacketType::Connect,
                flags: header.flags,
            },
            "CONNECT fixed header",
        ));
    }
    Ok((header, body))
}

fn read_version(r: &mut Reader<'_>) -> Result<ProtocolVersion, DecodeError> {
    const CONTEXT: &str = "CONNECT protocol name";
    let name = r.binary(CONTEXT)?;
    let level = r.u8("CONNECT protocol level")?;
    let (expected_level, version) = match name {
        b"MQTT" if level == ProtocolVersion::V5.level() => return Ok(ProtocolVersion::V5),
        b"MQTT" => (ProtocolVersion::V311.level(), ProtocolVersion::V311),
        b"MQIsdp" => (ProtocolVersion::V31.level(), ProtocolVersion::V31),
        _ => {
            return Err(DecodeError::new(
                DecodeErrorKind::InvalidProtocolName,
                CONTEXT,
            ));
        }
    };
    if level == expected_level {
        Ok(version)
    } else {
        Err(DecodeError::new(
            DecodeErrorKind::UnsupportedProtocolLevel(level),
            "CONNECT protocol level",
        ))
    }
}

/// Checks the CONNECT flags byte; password without username is refused in 3.x only (5.0
/// allows it, §3.1.2.9).
pub(crate) fn check_flags(version: ProtocolVersion, flags: u8) -> Result<(), DecodeError> {
    const CONTEXT: &str = "CONNECT flags";
    let fail = |kind| Err(DecodeError::new(kind, CONTEXT));
    if flags & FLAG_RESERVED != 0 {
        return fail(DecodeErrorKind::ConnectReservedFlag);
    }
    if flags & FLAG_WILL == 0 {
        if flags & FLAG_WILL_QOS_MASK != 0 {
            return fail(DecodeErrorKind::WillQoSWithoutWill);
        }
        if flags & FLAG_WILL_RETAIN != 0 {
            return fail(DecodeErrorKind::WillRetainWithoutWill);
        }
    } else if (flags & FLAG_WILL_QOS_MASK) >> FLAG_WILL_QOS_SHIFT > 2 {
        return fail(DecodeErrorKind::InvalidWillQoS);
    }
    if version.is_v3() && flags & FLAG_PASSWORD != 0 && flags & FLAG_USERNAME == 0 {
        return fail(DecodeErrorKind::PasswordWithoutUsername);
    }
    Ok(())
}

fn check_client_id(
    version: ProtocolVersion,
    client_id: &str,
    clean_session: bool,
) -> Result<(), DecodeError> {
    const CONTEXT: &str = "CONNECT client identifier";
    match version {
        ProtocolVersion::V31
            if client_id.is_empty() || client_id.len() > MAX_V31_CLIENT_ID_LEN_BYTES =>
        {
            Err(DecodeError::new(
                DecodeErrorKind::V31ClientIdLength(client_id.len()),
                CONTEXT,
            ))
        }
        ProtocolVersion::V311 if client_id.is_empty() && !clean_session => Err(DecodeError::new(
            DecodeErrorKind::EmptyClientIdWithoutCleanSession,
            CONTEXT,
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ConnectReturnCode;

    /// CONNECT with protocol `name`/`level`, `flags`, keep alive 60 and `payload`.
    fn connect(name: &[u8], level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![0, name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, flags, 0, 60]);
        body.extend_from_slice(payload);
        let mut frame = vec![0x10, body.len() as u8];
        frame.extend(body);
        frame
    }

    fn kind(frame: &[u8]) -> DecodeErrorKind {
        decode_connect(frame).expect_err("must be refused").kind()
    }

    #[test]
    fn minimal_v311_connect() {
        let c = decode_connect(&connect(b"MQTT", 4, 0x02, &[0, 1, b'a'])).expect("valid");
        assert_eq!(c.version, ProtocolVersion::V311);
        assert_eq!(c.client_id, "a");
        assert!(c.clean_session);
        assert_eq!(c.keep_alive_secs, 60);
        assert_eq!((c.will, c.username, c.password), (None, None, None));
    }

    #[test]
    fn full_connect_with_will_and_binary_password() {
        let payload = [
            &[0, 2, b'i', b'd'][..],
            &[0, 3, b'a', b'/', b'b'],
            &[0, 2, 0xFF, 0x00],
            &[0, 1, b'u'],
            &[0, 2, 0xFF, 0xFE],
        ]
        .concat();
        // username, password, will retain, will QoS 2, will, clean session.
        let c = decode_connect(&connect(b"MQTT", 4, 0b1111_0110, &payload)).expect("valid");
        let will = c.will.expect("will");
        assert_eq!(
            (will.topic.as_str(), will.payload.as_slice()),
            ("a/b", &[0xFF, 0][..])
        );
        assert_eq!((will.qos, will.retain), (QoS::ExactlyOnce, true));
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some(&[0xFF, 0xFE][..]));
    }

    #[test]
    fn empty_username_is_kept() {
        let c = decode_connect(&connect(b"MQTT", 4, 0x82, &[0, 1, b'a', 0, 0])).expect("valid");
        assert_eq!(c.username.as_deref(), Some(""));
    }

    #[test]
    fn mqtt_3_1_is_accepted_with_its_client_id_limits() {
        let c = decode_connect(&connect(b"MQIsdp", 3, 0x02, &[0, 1, b'a'])).expect("valid");
        assert_eq!(c.version, ProtocolVersion::V31);
        let long = [&[0, 24][..], &[b'x'; 24]].concat();
        let err = decode_connect(&connect(b"MQIsdp", 3, 0x02, &long)).expect_err("too long");
        assert_eq!(err.kind(), DecodeErrorKind::V31ClientIdLength(24));
        assert_eq!(
            err.connack_return_code(),
            Some(ConnectReturnCode::IdentifierRejected)
        );
        assert_eq!(
            kind(&connect(b"MQIsdp", 3, 0x02, &[0, 0])),
            DecodeErrorKind::V31ClientIdLength(0)
        );
    }

    #[test]
    fn level_5_is_peeked_and_refused_not_misparsed() {
        // A v5 CONNECT: property length 0, then client id "a". The v4 parser of mqttbytes
        // reads the property length as the client id length.
        let frame = connect(b"MQTT", 5, 0x02, &[0, 0, 1, b'a']);
        assert_eq!(peek_connect_version(&frame), Ok(ProtocolVersion::V5));
        let err = decode_connect(&frame).expect_err("v5 not supported yet");
        assert_eq!(err.kind(), DecodeErrorKind::UnsupportedProtocolLevel(5));
        assert_eq!(
            err.connack_return_code(),
            Some(ConnectReturnCode::UnacceptableProtocolVersion)
        );
    }

    #[test]
    fn unknown_levels_and_names_mqtt_3_1_2_1_and_3_1_2_2() {
        for (name, level) in [
            (&b"MQTT"[..], 3),
            (b"MQTT", 6),
            (b"MQIsdp", 4),
            (b"MQTT", 0),
        ] {
            let err =
                decode_connect(&connect(name, level, 0x02, &[0, 1, b'a'])).expect_err("level");
            assert_eq!(err.kind(), DecodeErrorKind::UnsupportedProtocolLevel(level));
            assert_eq!(err.statement(), Some("MQTT-3.1.2-2"));
        }
        let err = decode_connect(&connect(b"MQTX", 4, 0x02, &[0, 1, b'a'])).expect_err("name");
        assert_eq!(err.kind(), DecodeErrorKind::InvalidProtocolName);
        assert_eq!(err.connack_return_code(), None);
    }

    #[test]
    fn not_a_connect_first_mqtt_3_1_0_1() {
        assert_eq!(
            kind(&[0xC0, 0]),
            DecodeErrorKind::NotConnect(PacketType::PingReq)
        );
    }
}
