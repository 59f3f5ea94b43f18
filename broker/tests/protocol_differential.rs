//! Differential tests against `mqtt5-protocol` 0.16 (dev-dependency), the most spec-correct
//! Rust MQTT codec we found, used as an oracle for MQTT 3.1.1.
//!
//! The oracle's verdict on a frame is: its fixed header parses and covers the frame exactly,
//! `Packet::decode_from_body_with_version(.., 4)` (or `decode_from_body` for CONNECT, which
//! reads the level from the body) succeeds and consumes the whole body, and the topic names
//! and filters it returns pass its own `validate_topic_name`/`validate_topic_filter` (its
//! decoder does not call them). Ours is `check_frame` + `decode_connect`/`decode`.
//!
//! Where the two disagree, the case must be one of the intentional disagreements below, each
//! pinned by an example in [`documented_disagreements`]:
//!
//! | ours | oracle | why |
//! |---|---|---|
//! | accept | reject | `MQIsdp`/3 CONNECT: we support MQTT 3.1; the oracle knows only `MQTT` |
//! | reject | accept | CONNACK/SUBACK/UNSUBACK/PINGRESP from a client: a server never accepts them (MQTT-4.8.0-1); the oracle decodes both directions |
//! | reject | accept | packet identifier 0 (MQTT-2.3.1-1): the oracle does not check |
//! | reject | accept | SUBSCRIBE options with reserved bits or QoS 3 (MQTT-3-8.3-4): the oracle masks the v3 byte to its QoS bits (QoS 3 becomes 0) |
//! | reject | accept | PUBACK/PUBREC/PUBREL/PUBCOMP/DISCONNECT with a body: 3.1.1 has fixed lengths; the oracle applies v5 reason-code syntax |
//! | reject | accept | empty client id with clean session 0 (MQTT-3.1.3-8): the oracle leaves it to the caller |
//! | reject | accept | CONNECT level ≠ 4 with name `MQTT` (MQTT-3.1.2-2; level 5 until v5 lands): the oracle parses any level |
//! | reject | accept | packet type 15: AUTH exists only in v5, reserved in 3.1.1 |
//!
//! Also: every server→client packet we encode is decoded by the oracle to the same values.

mod protocol_common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use mqtt5_protocol::packet::suback::SubAckReasonCode;
use mqtt5_protocol::{
    FixedHeader as OracleHeader, Packet as OraclePacket, PacketType as OracleType,
    ReasonCode as OracleReason,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use protocol_common::{ConnectSpec, ack, frame, publish, subscribe, unsubscribe};
use starling::protocol::{
    ConnectReturnCode, DecodeErrorKind as K, FrameError, MalformedFrame, ProtocolVersion,
    PublishRef, QoS, SubackReturnCode, check_frame, decode, decode_connect, encode_connack,
    encode_pingresp, encode_puback, encode_pubcomp, encode_publish, encode_pubrec, encode_pubrel,
    encode_suback, encode_unsuback,
};

const V311: ProtocolVersion = ProtocolVersion::V311;

/// Our verdict: `Err` carries the decode kind, or `None` for a framing refusal.
fn ours(bytes: &[u8]) -> Result<(), Option<K>> {
    match check_frame(bytes, usize::MAX) {
        Ok(h) if h.frame_len() == bytes.len() => {}
        Err(FrameError::Malformed(MalformedFrame::ReservedPacketType(t))) => {
            return Err(Some(K::ReservedPacketType(t)));
        }
        _ => return Err(None),
    }
    let result = if bytes[0] >> 4 == 1 {
        decode_connect(bytes).map(drop)
    } else {
        decode(V311, bytes).map(drop)
    };
    result.map_err(|e| Some(e.kind()))
}

fn oracle_decode(bytes: &[u8]) -> Result<OraclePacket, String> {
    let mut buf: &[u8] = bytes;
    let header = OracleHeader::decode(&mut buf).map_err(|e| e.to_string())?;
    if header.remaining_length as usize != buf.len() {
        return Err("not exactly one frame".into());
    }
    let packet = if header.packet_type == OracleType::Connect {
        OraclePacket::decode_from_body(header.packet_type, &header, &mut buf)
    } else {
        OraclePacket::decode_from_body_with_version(header.packet_type, &header, &mut buf, 4)
    }
    .map_err(|e| e.to_string())?;
    if !buf.is_empty() {
        return Err(format!("{} trailing bytes", buf.len()));
    }
    protocol_common::oracle_topics_valid(&packet, false)?;
    Ok(packet)
}

/// The oracle's verdict; `None` if it panicked (counted, never blamed on us).
fn oracle(bytes: &[u8]) -> Option<Result<OraclePacket, String>> {
    catch_unwind(AssertUnwindSafe(|| oracle_decode(bytes))).ok()
}

/// The justification when a disagreement is one of the intentional ones.
fn excuse(
    bytes: &[u8],
    ours: &Result<(), Option<K>>,
    oracle: &Result<OraclePacket, String>,
) -> Option<&'static str> {
    use OraclePacket as O;
    match (ours, oracle) {
        (Ok(()), Err(_)) if bytes.get(2..10) == Some(b"\0\x06MQIsdp") => Some("MQTT 3.1 support"),
        (Err(Some(K::ReservedPacketType(15))), _) => Some("AUTH is v5-only"),
        (Err(Some(kind)), Ok(p)) => match (kind, p) {
            (K::UnexpectedPacketType(_), _) => Some("server-only packet from a client"),
            (K::PacketIdZero, _) => Some("packet id 0"),
            (K::InvalidSubscriptionOptions(_), _) => {
                Some("v3 SUBSCRIBE options masked by the oracle")
            }
            (
                K::TrailingBytes,
                O::PubAck(_) | O::PubRec(_) | O::PubRel(_) | O::PubComp(_) | O::Disconnect(_),
            ) => Some("v5 reason-code syntax on a v3 ack"),
            (K::EmptyClientIdWithoutCleanSession, _) => Some("MQTT-3.1.3-8 left to the caller"),
            (K::UnsupportedProtocolLevel(_), O::Connect(c)) if c.protocol_version != 4 => {
                Some("protocol level not 4")
            }
            _ => None,
        },
        _ => None,
    }
}

/// Valid client→server packets of every kind, split into (first byte, body).
fn valid_packet() -> impl Strategy<Value = Vec<u8>> {
    let topic = prop_oneof![Just("a/b".to_owned()), "[a-z/]{1,10}"];
    let filter = prop_oneof![
        Just("#".to_owned()),
        Just("+/x/#".to_owned()),
        "[a-z/]{1,8}"
    ];
    prop_oneof![
        (
            any::<bool>(),
            "[a-zA-Z0-9]{0,12}",
            prop::option::of((0u8..3, any::<bool>())),
            prop::option::of((
                "[a-z]{0,5}",
                prop::option::of(prop::collection::vec(any::<u8>(), 0..6))
            )),
            any::<u16>(),
        )
            .prop_map(|(v31, id, will, login, keep_alive)| {
                let (name, level) = if v31 {
                    (b"MQIsdp".to_vec(), 3)
                } else {
                    (b"MQTT".to_vec(), 4)
                };
                ConnectSpec {
                    name,
                    level,
                    keep_alive,
                    client_id: if v31 && id.is_empty() {
                        b"x".to_vec()
                    } else {
                        id.into_bytes()
                    },
                    will: will.map(|(q, r)| (b"w/t".to_vec(), b"bye".to_vec(), q, r)),
                    username: login.as_ref().map(|(u, _)| u.clone().into_bytes()),
                    password: login.and_then(|(_, p)| p),
                    ..ConnectSpec::default()
                }
                .build()
            }),
        (
            topic,
            0u8..3,
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(t, qos, retain, dup, payload)| {
                let flags = (u8::from(dup && qos > 0) << 3) | (qos << 1) | u8::from(retain);
                publish(flags, t.as_bytes(), (qos > 0).then_some(0x0102), &payload)
            }),
        prop::collection::vec((filter.clone(), 0u8..3), 1..3).prop_map(|fs| {
            let raw: Vec<(&[u8], u8)> = fs.iter().map(|(f, q)| (f.as_bytes(), *q)).collect();
            subscribe(0x0A0B, &raw)
        }),
        prop::collection::vec(filter, 1..3).prop_map(|fs| {
            let raw: Vec<&[u8]> = fs.iter().map(|f| f.as_bytes()).collect();
            unsubscribe(0x0A0B, &raw)
        }),
        (
            prop::sample::select(vec![0x40u8, 0x50, 0x62, 0x70]),
            1..=u16::MAX
        )
            .prop_map(|(f, id)| ack(f, id)),
        prop::sample::select(vec![frame(0xC0, &[]), frame(0xE0, &[])]),
        // Server→client packets a misbehaving client might send.
        prop::sample::select(vec![
            frame(0x20, &[0, 0]),
            frame(0x90, &[0, 1, 1]),
            frame(0xB0, &[0, 1]),
            frame(0xD0, &[]),
        ]),
    ]
}

/// Body mutations that keep the frame exact (the header is rebuilt), plus first-byte ones.
fn mutated_packet() -> impl Strategy<Value = Vec<u8>> {
    let edit = prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| (0u8, i, b)),
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| (1u8, i, b)),
        any::<prop::sample::Index>().prop_map(|i| (2u8, i, 0)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| (3u8, i, b)),
        any::<prop::sample::Index>().prop_map(|i| (4u8, i, 0)),
        (any::<prop::sample::Index>(), 0u8..16).prop_map(|(i, b)| (5u8, i, b)),
    ];
    (valid_packet(), prop::collection::vec(edit, 0..3)).prop_map(|(packet, edits)| {
        let header = check_frame(&packet, usize::MAX).expect("builders make whole frames");
        let mut first = packet[0];
        let mut body = packet[header.header_len..].to_vec();
        for (op, at, value) in edits {
            let n = body.len();
            match op {
                0 if n > 0 => body[at.index(n)] = value,
                1 if n > 0 => body[at.index(n)] ^= 1 << value,
                2 => body.truncate(at.index(n + 1)),
                3 => body.insert(at.index(n + 1), value),
                4 if n > 0 => {
                    body.remove(at.index(n));
                }
                5 => first ^= value,
                _ => {}
            }
        }
        frame(first, &body)
    })
}

#[test]
fn verdicts_agree_except_where_documented() {
    let mut runner = TestRunner::deterministic();
    let strategy = mutated_packet();
    let (mut both_accept, mut both_reject, mut oracle_panics) = (0, 0, 0);
    let mut excused = std::collections::BTreeMap::<&str, usize>::new();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for _ in 0..6000 {
        let bytes = strategy.new_tree(&mut runner).expect("strategy").current();
        let mine = ours(&bytes);
        let Some(theirs) = oracle(&bytes) else {
            oracle_panics += 1;
            continue;
        };
        match (&mine, &theirs) {
            (Ok(()), Ok(_)) => both_accept += 1,
            (Err(_), Err(_)) => both_reject += 1,
            _ => match excuse(&bytes, &mine, &theirs) {
                Some(why) => *excused.entry(why).or_default() += 1,
                None => failures.push(format!(
                    "{bytes:02X?}\n  ours:   {mine:?}\n  oracle: {theirs:?}"
                )),
            },
        }
    }
    std::panic::set_hook(hook);
    assert!(
        failures.is_empty(),
        "{} unexplained disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "both accept {both_accept}, both reject {both_reject}, excused {excused:?}, oracle panics {oracle_panics}"
    );
    assert!(
        both_accept > 1000 && both_reject > 1000,
        "too little coverage: {both_accept}/{both_reject}"
    );
}

#[test]
fn documented_disagreements() {
    let connect_31 = ConnectSpec {
        name: b"MQIsdp".to_vec(),
        level: 3,
        ..ConnectSpec::default()
    }
    .build();
    let empty_id = ConnectSpec {
        client_id: Vec::new(),
        clean_session: false,
        ..ConnectSpec::default()
    }
    .build();
    let level_3 = ConnectSpec {
        level: 3,
        ..ConnectSpec::default()
    }
    .build();
    let cases: Vec<(&str, Vec<u8>, Option<K>)> = vec![
        ("MQTT 3.1", connect_31, None),
        (
            "CONNACK from client",
            frame(0x20, &[0, 0]),
            Some(K::UnexpectedPacketType(
                starling::protocol::PacketType::ConnAck,
            )),
        ),
        ("PUBACK id 0", ack(0x40, 0), Some(K::PacketIdZero)),
        (
            "SUBSCRIBE id 0",
            subscribe(0, &[(b"a", 0)]),
            Some(K::PacketIdZero),
        ),
        (
            "SUBSCRIBE reserved bits",
            subscribe(1, &[(b"a", 0x41)]),
            Some(K::InvalidSubscriptionOptions(0x41)),
        ),
        (
            "SUBSCRIBE QoS 3",
            subscribe(1, &[(b"a", 3)]),
            Some(K::InvalidSubscriptionOptions(3)),
        ),
        (
            "PUBACK with v5 reason",
            frame(0x40, &[0, 1, 0x10]),
            Some(K::TrailingBytes),
        ),
        (
            "DISCONNECT with v5 reason",
            frame(0xE0, &[0x00]),
            Some(K::TrailingBytes),
        ),
        (
            "empty id, clean session 0",
            empty_id,
            Some(K::EmptyClientIdWithoutCleanSession),
        ),
        (
            "MQTT level 3",
            level_3,
            Some(K::UnsupportedProtocolLevel(3)),
        ),
        ("AUTH", frame(0xF0, &[]), Some(K::ReservedPacketType(15))),
    ];
    for (name, bytes, our_refusal) in cases {
        let mine = ours(&bytes);
        let theirs = oracle(&bytes).expect("oracle must not panic on these");
        assert_eq!(mine.err().flatten(), our_refusal, "{name}: ours {mine:?}");
        assert_ne!(
            mine.is_ok(),
            theirs.is_ok(),
            "{name}: expected a disagreement, oracle {theirs:?}"
        );
        assert!(excuse(&bytes, &mine, &theirs).is_some(), "{name}");
    }
}

#[test]
fn oracle_decodes_what_we_encode() {
    let decode_oracle =
        |bytes: &[u8]| oracle_decode(bytes).unwrap_or_else(|e| panic!("{bytes:02X?}: {e}"));

    for (code, expected) in [
        (ConnectReturnCode::Accepted, OracleReason::Success),
        (
            ConnectReturnCode::UnacceptableProtocolVersion,
            OracleReason::UnsupportedProtocolVersion,
        ),
        (
            ConnectReturnCode::IdentifierRejected,
            OracleReason::ClientIdentifierNotValid,
        ),
        (
            ConnectReturnCode::ServerUnavailable,
            OracleReason::ServerUnavailable,
        ),
        (
            ConnectReturnCode::BadUsernameOrPassword,
            OracleReason::BadUsernameOrPassword,
        ),
        (
            ConnectReturnCode::NotAuthorized,
            OracleReason::NotAuthorized,
        ),
    ] {
        let mut out = Vec::new();
        encode_connack(&mut out, V311, true, code).expect("encode");
        let OraclePacket::ConnAck(ack) = decode_oracle(&out) else {
            panic!("not a CONNACK")
        };
        assert_eq!(ack.reason_code, expected);
        assert_eq!(ack.session_present, code == ConnectReturnCode::Accepted);
    }

    let mut out = Vec::new();
    let codes = [
        SubackReturnCode::Granted(QoS::AtMostOnce),
        SubackReturnCode::Granted(QoS::AtLeastOnce),
        SubackReturnCode::Granted(QoS::ExactlyOnce),
        SubackReturnCode::Failure,
    ];
    encode_suback(&mut out, V311, 0x1234, &codes).expect("encode");
    let OraclePacket::SubAck(suback) = decode_oracle(&out) else {
        panic!("not a SUBACK")
    };
    assert_eq!(suback.packet_id, 0x1234);
    assert_eq!(
        suback.reason_codes,
        [
            SubAckReasonCode::GrantedQoS0,
            SubAckReasonCode::GrantedQoS1,
            SubAckReasonCode::GrantedQoS2,
            SubAckReasonCode::UnspecifiedError
        ]
    );

    out.clear();
    encode_unsuback(&mut out, V311, 9).expect("encode");
    assert!(matches!(decode_oracle(&out), OraclePacket::UnsubAck(u) if u.packet_id == 9));
    out.clear();
    encode_pingresp(&mut out, V311).expect("encode");
    assert!(matches!(decode_oracle(&out), OraclePacket::PingResp));

    for (i, encode) in [encode_puback, encode_pubrec, encode_pubrel, encode_pubcomp]
        .into_iter()
        .enumerate()
    {
        out.clear();
        encode(&mut out, V311, 77).expect("encode");
        let id = match decode_oracle(&out) {
            OraclePacket::PubAck(p) if i == 0 => p.packet_id,
            OraclePacket::PubRec(p) if i == 1 => p.packet_id,
            OraclePacket::PubRel(p) if i == 2 => p.packet_id,
            OraclePacket::PubComp(p) if i == 3 => p.packet_id,
            other => panic!("{other:?}"),
        };
        assert_eq!(id, 77);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn oracle_decodes_our_publish(
        topic in "[a-z0-9/é]{1,30}",
        payload in prop::collection::vec(any::<u8>(), 0..300),
        qos in 0u8..3,
        retain in any::<bool>(),
        dup in any::<bool>(),
        id in 1..=u16::MAX,
    ) {
        let qos = QoS::from_u8(qos).expect("0..3");
        let publish = PublishRef {
            topic: &topic,
            payload: &payload,
            qos,
            retain,
            dup: dup && qos != QoS::AtMostOnce,
            packet_id: (qos != QoS::AtMostOnce).then_some(id),
        };
        let mut out = Vec::new();
        encode_publish(&mut out, V311, &publish).expect("encode");
        let OraclePacket::Publish(p) = oracle_decode(&out).expect("oracle decodes") else {
            return Err(TestCaseError::fail("not a PUBLISH"));
        };
        prop_assert_eq!(p.topic_name, topic.clone());
        prop_assert_eq!(&p.payload[..], &payload[..]);
        prop_assert_eq!(p.qos as u8, qos.as_u8());
        prop_assert_eq!((p.retain, p.dup, p.packet_id), (publish.retain, publish.dup, publish.packet_id));
    }
}
