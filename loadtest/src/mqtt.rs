//! A minimal client-side MQTT 3.1.1 and 5.0 codec: what a load client sends, and a streaming
//! parser for what a broker sends back. Independent of Starling's own codec, so the harness
//! holds any broker to the standard rather than to Starling's reading of it.
//!
//! In MQTT 5 the client sends no properties at all (every packet's property length is 0,
//! MQTT 5 §2.2.2), and acknowledgements in their short form (reason code 0 omitted,
//! §3.4.2.1); it parses and skips whatever properties the broker sends.

/// MQTT 3.1.1 protocol level.
const PROTOCOL_LEVEL_V311: u8 = 4;
/// MQTT 5.0 protocol level.
const PROTOCOL_LEVEL_V5: u8 = 5;

/// The protocol version the harness's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    #[value(name = "3.1.1", alias = "4")]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5")]
    #[serde(rename = "5")]
    V5,
}

impl Protocol {
    /// The bytes of an empty property list (MQTT 5), or none (3.1.1).
    fn no_properties(self) -> &'static [u8] {
        match self {
            Protocol::V311 => &[],
            Protocol::V5 => &[0],
        }
    }
}
/// CONNECT flag: clean session.
const CLEAN_SESSION_FLAG: u8 = 0x02;
/// Largest remaining length MQTT can express (four length bytes).
pub const MAX_REMAINING_LEN: usize = 268_435_455;

/// Packet type bytes (first byte of the fixed header, flags included where fixed).
mod first {
    pub const CONNECT: u8 = 0x10;
    pub const PUBLISH: u8 = 0x30;
    pub const PUBACK: u8 = 0x40;
    pub const PUBREC: u8 = 0x50;
    pub const PUBREL: u8 = 0x62;
    pub const PUBCOMP: u8 = 0x70;
    pub const SUBSCRIBE: u8 = 0x82;
    pub const UNSUBSCRIBE: u8 = 0xA2;
    pub const PINGREQ: u8 = 0xC0;
    pub const DISCONNECT: u8 = 0xE0;
}

/// Appends `len` as a variable byte integer (a remaining or property length).
pub fn put_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    // Callers pass client ids and topics far below 64 KiB.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT flag: a user name follows the client id.
const USERNAME_FLAG: u8 = 0x80;
/// CONNECT flag: a password follows (after the user name).
const PASSWORD_FLAG: u8 = 0x40;

/// The credentials a CONNECT carries: none, a user name, or a user name and a password
/// (MQTT 3.1.1 allows no password without a user name, MQTT-3.1.2-22).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Login<'a> {
    /// The user name, if any.
    pub username: Option<&'a str>,
    /// The password, if any (sent only with a user name).
    pub password: Option<&'a [u8]>,
}

/// Appends a CONNECT (no will, no credentials; in MQTT 5 no properties, so a session ends
/// with its connection, MQTT 5 §3.1.2.11.2). `clean_session` is Clean Start in MQTT 5.
pub fn connect(
    out: &mut Vec<u8>,
    protocol: Protocol,
    client_id: &str,
    keep_alive_secs: u16,
    clean_session: bool,
) {
    connect_as(
        out,
        protocol,
        client_id,
        keep_alive_secs,
        clean_session,
        Login::default(),
    );
}

/// Appends a CONNECT carrying `login` (otherwise as [`connect`]). A password without a
/// user name is not sent.
pub fn connect_as(
    out: &mut Vec<u8>,
    protocol: Protocol,
    client_id: &str,
    keep_alive_secs: u16,
    clean_session: bool,
    login: Login<'_>,
) {
    let session = SessionRequest {
        clean: clean_session,
        expiry_secs: 0,
    };
    connect_session(out, protocol, client_id, keep_alive_secs, session, login);
}

/// The session a CONNECT asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRequest {
    /// Clean Session (3.1.1) / Clean Start (5): begin with a new session.
    pub clean: bool,
    /// MQTT 5: the Session Expiry Interval, seconds (0: the session ends with the
    /// connection; the property is then left out). 3.1.1 has no such field: a session that
    /// outlives its connection is asked for with `clean` false.
    pub expiry_secs: u32,
}

/// MQTT 5 property: Session Expiry Interval (four-byte integer, §3.1.2.11.2).
const SESSION_EXPIRY_PROPERTY: u8 = 0x11;

/// Appends a CONNECT asking for `session`, carrying `login` (otherwise as [`connect`]).
pub fn connect_session(
    out: &mut Vec<u8>,
    protocol: Protocol,
    client_id: &str,
    keep_alive_secs: u16,
    session: SessionRequest,
    login: Login<'_>,
) {
    let mut expiry = [5, SESSION_EXPIRY_PROPERTY, 0, 0, 0, 0];
    expiry[2..].copy_from_slice(&session.expiry_secs.to_be_bytes());
    let props: &[u8] = if protocol == Protocol::V5 && session.expiry_secs > 0 {
        &expiry
    } else {
        protocol.no_properties()
    };
    let username = login.username;
    let password = login.password.filter(|_| username.is_some());
    let credentials = username.map_or(0, |u| 2 + u.len()) + password.map_or(0, |p| 2 + p.len());
    let remaining = 10 + props.len() + 2 + client_id.len() + credentials;
    let mut flags = if session.clean { CLEAN_SESSION_FLAG } else { 0 };
    if username.is_some() {
        flags |= USERNAME_FLAG;
    }
    if password.is_some() {
        flags |= PASSWORD_FLAG;
    }
    out.push(first::CONNECT);
    put_len(out, remaining);
    put_str(out, b"MQTT");
    out.push(match protocol {
        Protocol::V311 => PROTOCOL_LEVEL_V311,
        Protocol::V5 => PROTOCOL_LEVEL_V5,
    });
    out.push(flags);
    out.extend_from_slice(&keep_alive_secs.to_be_bytes());
    out.extend_from_slice(props);
    put_str(out, client_id.as_bytes());
    if let Some(username) = username {
        put_str(out, username.as_bytes());
    }
    if let Some(password) = password {
        put_str(out, password);
    }
}

/// Appends a SUBSCRIBE to one filter (MQTT 5: options No Local 0, Retain As Published 0,
/// Retain Handling 0).
pub fn subscribe(out: &mut Vec<u8>, protocol: Protocol, packet_id: u16, filter: &str, qos: u8) {
    subscribe_many(out, protocol, packet_id, &[filter], qos);
}

/// Appends a SUBSCRIBE to several filters, each at `qos` (MQTT 5 options as [`subscribe`]).
pub fn subscribe_many<S: AsRef<str>>(
    out: &mut Vec<u8>,
    protocol: Protocol,
    packet_id: u16,
    filters: &[S],
    qos: u8,
) {
    let props = protocol.no_properties();
    let entries: usize = filters.iter().map(|f| 2 + f.as_ref().len() + 1).sum();
    out.push(first::SUBSCRIBE);
    put_len(out, 2 + props.len() + entries);
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.extend_from_slice(props);
    for filter in filters {
        put_str(out, filter.as_ref().as_bytes());
        out.push(qos);
    }
}

/// Appends an UNSUBSCRIBE from several filters.
pub fn unsubscribe_many<S: AsRef<str>>(
    out: &mut Vec<u8>,
    protocol: Protocol,
    packet_id: u16,
    filters: &[S],
) {
    let props = protocol.no_properties();
    let entries: usize = filters.iter().map(|f| 2 + f.as_ref().len()).sum();
    out.push(first::UNSUBSCRIBE);
    put_len(out, 2 + props.len() + entries);
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.extend_from_slice(props);
    for filter in filters {
        put_str(out, filter.as_ref().as_bytes());
    }
}

/// Appends a PUBLISH. `packet_id` is ignored at QoS 0.
pub fn publish(
    out: &mut Vec<u8>,
    protocol: Protocol,
    topic: &str,
    qos: u8,
    packet_id: u16,
    payload: &[u8],
) {
    publish_with(out, protocol, topic, qos, false, packet_id, payload);
}

/// Appends a PUBLISH with the RETAIN flag set (or not). `packet_id` is ignored at QoS 0.
pub fn publish_with(
    out: &mut Vec<u8>,
    protocol: Protocol,
    topic: &str,
    qos: u8,
    retain: bool,
    packet_id: u16,
    payload: &[u8],
) {
    let props = protocol.no_properties();
    let id_len = if qos > 0 { 2 } else { 0 };
    out.push(first::PUBLISH | (qos << 1) | u8::from(retain));
    put_len(out, 2 + topic.len() + id_len + props.len() + payload.len());
    put_str(out, topic.as_bytes());
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    out.extend_from_slice(props);
    out.extend_from_slice(payload);
}

/// Appends a two-byte acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP).
pub fn ack(out: &mut Vec<u8>, kind: Ack, packet_id: u16) {
    let byte = match kind {
        Ack::PubAck => first::PUBACK,
        Ack::PubRec => first::PUBREC,
        Ack::PubRel => first::PUBREL,
        Ack::PubComp => first::PUBCOMP,
    };
    out.extend_from_slice(&[byte, 2]);
    out.extend_from_slice(&packet_id.to_be_bytes());
}

/// Appends a PINGREQ.
pub fn pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[first::PINGREQ, 0]);
}

/// Appends a DISCONNECT.
pub fn disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[first::DISCONNECT, 0]);
}

/// The acknowledgements of the QoS 1/2 flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// QoS 1 acknowledgement.
    PubAck,
    /// QoS 2, step 1.
    PubRec,
    /// QoS 2, step 2.
    PubRel,
    /// QoS 2, step 3.
    PubComp,
}

/// A packet from the broker. PUBLISH borrows topic and payload from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// CONNACK with its return code (0 = accepted).
    ConnAck {
        /// Return code.
        code: u8,
        /// Session Present: the broker resumed a session it kept for the client.
        session_present: bool,
    },
    /// SUBACK with its return codes.
    SubAck {
        /// Packet id.
        packet_id: u16,
        /// First return code (0x80 = refused).
        code: u8,
        /// Return codes that refuse (0x80 and above).
        refused: usize,
    },
    /// PUBLISH.
    Publish {
        /// Topic.
        topic: &'a [u8],
        /// QoS.
        qos: u8,
        /// RETAIN.
        retain: bool,
        /// Packet id (0 at QoS 0).
        packet_id: u16,
        /// Payload.
        payload: &'a [u8],
    },
    /// PUBACK / PUBREC / PUBREL / PUBCOMP.
    Ack(Ack, u16),
    /// UNSUBACK.
    UnsubAck,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT from the server (MQTT 5 only) with its reason code.
    Disconnect {
        /// Reason code (0 when omitted).
        reason: u8,
    },
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed.
    Incomplete,
    /// The broker sent something a 3.1.1 server must not.
    Malformed(String),
}

/// Reads a variable byte integer at the start of `buf`: its value and length.
fn varint(buf: &[u8]) -> Result<(usize, usize), ParseError> {
    let mut value = 0usize;
    for (i, &b) in buf.iter().enumerate().take(4) {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(ParseError::Malformed(
        "bad or truncated variable byte integer".into(),
    ))
}

/// The bytes an MQTT 5 property list at `at` in `body` takes (length and properties).
pub fn properties_len(body: &[u8], at: usize) -> Result<usize, ParseError> {
    let (len, used) = varint(body.get(at..).unwrap_or_default())?;
    if at + used + len > body.len() {
        return Err(ParseError::Malformed(
            "properties overrun the packet".into(),
        ));
    }
    Ok(used + len)
}

/// Frames the packet at the start of `buf` from its fixed header: the header's length and
/// the whole packet's, once all of it is there.
pub fn frame(buf: &[u8]) -> Result<(usize, usize), ParseError> {
    if buf.is_empty() {
        return Err(ParseError::Incomplete);
    }
    let mut remaining = 0usize;
    let mut at = 1;
    let mut shift = 0;
    loop {
        let Some(&b) = buf.get(at) else {
            return Err(ParseError::Incomplete);
        };
        remaining |= usize::from(b & 0x7F) << shift;
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if at > 4 {
            return Err(ParseError::Malformed(
                "remaining length over 4 bytes".into(),
            ));
        }
    }
    let total = at + remaining;
    if buf.len() < total {
        return Err(ParseError::Incomplete);
    }
    Ok((at, total))
}

/// Parses the frame at the start of `buf`: the packet and the bytes it took.
pub fn parse(buf: &[u8], protocol: Protocol) -> Result<(Incoming<'_>, usize), ParseError> {
    let v5 = protocol == Protocol::V5;
    let (at, total) = frame(buf)?;
    let byte0 = buf[0];
    let body = &buf[at..total];
    let id = |b: &[u8]| -> Result<u16, ParseError> {
        match b {
            [hi, lo, ..] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(ParseError::Malformed(format!(
                "packet 0x{byte0:02x} too short"
            ))),
        }
    };
    let packet = match byte0 >> 4 {
        2 => Incoming::ConnAck {
            code: *body
                .get(1)
                .ok_or_else(|| ParseError::Malformed("short CONNACK".into()))?,
            session_present: body[0] & 1 == 1,
        },
        3 => {
            let qos = (byte0 >> 1) & 3;
            let topic_len = usize::from(id(body)?);
            let mut p = 2 + topic_len;
            let topic = body
                .get(2..p)
                .ok_or_else(|| ParseError::Malformed("PUBLISH topic overruns".into()))?;
            let mut packet_id = 0;
            if qos > 0 {
                packet_id = id(body.get(p..).unwrap_or_default())?;
                p += 2;
            }
            if v5 {
                p += properties_len(body, p)?;
            }
            Incoming::Publish {
                topic,
                qos,
                retain: byte0 & 1 == 1,
                packet_id,
                payload: &body[p.min(body.len())..],
            }
        }
        4 => Incoming::Ack(Ack::PubAck, id(body)?),
        5 => Incoming::Ack(Ack::PubRec, id(body)?),
        6 => Incoming::Ack(Ack::PubRel, id(body)?),
        7 => Incoming::Ack(Ack::PubComp, id(body)?),
        9 => {
            let at = if v5 { 2 + properties_len(body, 2)? } else { 2 };
            let codes = body.get(at..).unwrap_or_default();
            Incoming::SubAck {
                packet_id: id(body)?,
                code: *codes
                    .first()
                    .ok_or_else(|| ParseError::Malformed("SUBACK without codes".into()))?,
                refused: codes.iter().filter(|&&c| c >= 0x80).count(),
            }
        }
        11 => Incoming::UnsubAck,
        13 => Incoming::PingResp,
        14 if v5 => Incoming::Disconnect {
            reason: body.first().copied().unwrap_or(0),
        },
        other => {
            return Err(ParseError::Malformed(format!(
                "a server does not send packet type {other}"
            )));
        }
    };
    Ok((packet, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trips_through_the_parser() {
        for protocol in [Protocol::V311, Protocol::V5] {
            let mut buf = Vec::new();
            publish(&mut buf, protocol, "a/b", 1, 7, &[1, 2, 3]);
            let (packet, used) = parse(&buf, protocol).expect("complete");
            assert_eq!(used, buf.len());
            assert_eq!(
                packet,
                Incoming::Publish {
                    topic: b"a/b",
                    qos: 1,
                    retain: false,
                    packet_id: 7,
                    payload: &[1, 2, 3]
                }
            );
            assert_eq!(parse(&buf[..3], protocol), Err(ParseError::Incomplete));
        }
    }

    #[test]
    fn v5_properties_from_the_broker_are_skipped() {
        // PUBLISH QoS 0 "t", properties: Subscription Identifier 3 (0x0B 0x03), payload "hi"
        // (MQTT 5 §3.3.2.3).
        let frame = [0x30, 8, 0, 1, b't', 2, 0x0B, 3, b'h', b'i'];
        let (packet, used) = parse(&frame, Protocol::V5).expect("complete");
        assert_eq!(used, frame.len());
        assert_eq!(
            packet,
            Incoming::Publish {
                topic: b"t",
                qos: 0,
                retain: false,
                packet_id: 0,
                payload: b"hi"
            }
        );
        // SUBACK id 1 with a Reason String property, granted QoS 1.
        let suback = [0x90, 7, 0, 1, 3, 0x1F, 0, 0, 1];
        let (packet, _) = parse(&suback, Protocol::V5).expect("complete");
        assert_eq!(
            packet,
            Incoming::SubAck {
                packet_id: 1,
                code: 1,
                refused: 0
            }
        );
        // A server DISCONNECT is a packet in MQTT 5, malformed in 3.1.1.
        let disconnect = [0xE0, 1, 0x8B];
        assert_eq!(
            parse(&disconnect, Protocol::V5).map(|p| p.0),
            Ok(Incoming::Disconnect { reason: 0x8B })
        );
        assert!(parse(&disconnect, Protocol::V311).is_err());
        // Properties that claim more bytes than the packet has are malformed.
        let overrun = [0x30, 5, 0, 1, b't', 9, 0];
        assert!(matches!(
            parse(&overrun, Protocol::V5),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn v5_packets_carry_empty_property_lists() {
        let mut buf = Vec::new();
        connect(&mut buf, Protocol::V5, "id", 60, true);
        // Fixed header 2, "MQTT" 6, level, flags, keep-alive 2, properties 0, id.
        assert_eq!(buf[8], 5);
        assert_eq!(buf[12], 0);
        assert_eq!(&buf[13..], &[0, 2, b'i', b'd']);
        let mut sub = Vec::new();
        subscribe(&mut sub, Protocol::V5, 1, "f", 1);
        assert_eq!(sub, vec![0x82, 7, 0, 1, 0, 0, 1, b'f', 1]);
        let mut unsub = Vec::new();
        unsubscribe_many(&mut unsub, Protocol::V311, 2, &["f", "gh"]);
        assert_eq!(unsub, vec![0xA2, 9, 0, 2, 0, 1, b'f', 0, 2, b'g', b'h']);
        // A SUBACK granting one filter and refusing two.
        let suback = [0x90, 5, 0, 3, 1, 0x80, 0x80];
        assert_eq!(
            parse(&suback, Protocol::V311).map(|p| p.0),
            Ok(Incoming::SubAck {
                packet_id: 3,
                code: 1,
                refused: 2
            })
        );
    }

    #[test]
    fn connect_carries_user_name_and_password() {
        let mut buf = Vec::new();
        let login = Login {
            username: Some("u1"),
            password: Some(b"pw"),
        };
        connect_as(&mut buf, Protocol::V311, "id", 60, true, login);
        // Fixed header 2, "MQTT" 6, level, flags, keep-alive 2, id 4, user 4, password 4.
        assert_eq!(buf[1] as usize, buf.len() - 2);
        assert_eq!(buf[9], CLEAN_SESSION_FLAG | USERNAME_FLAG | PASSWORD_FLAG);
        assert_eq!(
            &buf[12..],
            &[0, 2, b'i', b'd', 0, 2, b'u', b'1', 0, 2, b'p', b'w']
        );
        // MQTT 5: the empty property list comes before the payload.
        let mut v5 = Vec::new();
        connect_as(&mut v5, Protocol::V5, "id", 60, true, login);
        assert_eq!(v5[12], 0);
        assert_eq!(&v5[13..], &buf[12..]);
        // A user name alone; a password without a user name is not sent.
        let mut user = Vec::new();
        let alone = Login {
            username: Some("u"),
            password: None,
        };
        connect_as(&mut user, Protocol::V311, "id", 60, true, alone);
        assert_eq!(user[9], CLEAN_SESSION_FLAG | USERNAME_FLAG);
        let mut none = Vec::new();
        let orphan = Login {
            username: None,
            password: Some(b"pw"),
        };
        connect_as(&mut none, Protocol::V311, "id", 60, true, orphan);
        let mut plain = Vec::new();
        connect(&mut plain, Protocol::V311, "id", 60, true);
        assert_eq!(none, plain);
    }

    #[test]
    fn a_session_that_outlives_the_connection_is_asked_for_by_version() {
        let keep = SessionRequest {
            clean: false,
            expiry_secs: 3600,
        };
        // 3.1.1: Clean Session 0, nothing else (no expiry field in 3.1.1).
        let mut v311 = Vec::new();
        connect_session(&mut v311, Protocol::V311, "id", 60, keep, Login::default());
        assert_eq!(v311[9], 0);
        assert_eq!(&v311[12..], &[0, 2, b'i', b'd']);
        // 5: the Session Expiry Interval property (0x11, four bytes), Clean Start as asked.
        let mut v5 = Vec::new();
        let fresh = SessionRequest {
            clean: true,
            ..keep
        };
        connect_session(&mut v5, Protocol::V5, "id", 60, fresh, Login::default());
        assert_eq!(v5[1] as usize, v5.len() - 2);
        assert_eq!(v5[9], CLEAN_SESSION_FLAG);
        assert_eq!(&v5[12..18], &[5, 0x11, 0, 0, 0x0e, 0x10]);
        assert_eq!(&v5[18..], &[0, 2, b'i', b'd']);
        // Expiry 0 leaves the property out: the same bytes as a plain CONNECT.
        let mut plain = Vec::new();
        connect(&mut plain, Protocol::V5, "id", 60, true);
        let mut zero = Vec::new();
        let ends = SessionRequest {
            clean: true,
            expiry_secs: 0,
        };
        connect_session(&mut zero, Protocol::V5, "id", 60, ends, Login::default());
        assert_eq!(zero, plain);
        // CONNACK: Session Present is bit 0 of the acknowledge flags.
        for (flags, present) in [(0, false), (1, true)] {
            let connack = [0x20, 2, flags, 0];
            assert_eq!(
                parse(&connack, Protocol::V311).map(|p| p.0),
                Ok(Incoming::ConnAck {
                    code: 0,
                    session_present: present
                })
            );
        }
    }

    #[test]
    fn long_lengths_use_several_bytes() {
        let mut buf = Vec::new();
        publish(&mut buf, Protocol::V311, "t", 0, 0, &[0u8; 300]);
        assert_eq!(buf[1] & 0x80, 0x80);
        let (_, used) = parse(&buf, Protocol::V311).expect("complete");
        assert_eq!(used, buf.len());
    }
}
