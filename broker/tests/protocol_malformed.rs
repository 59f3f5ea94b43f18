//! Byte-level cases for every defect found by probing the mqttbytes crates, each tied to
//! the MQTT 3.1.1 normative statement it violates, asserting the error kind, the MQTT 5
//! reason code and (for CONNECT) the CONNACK return code.

mod protocol_common;

use protocol_common::{
    ConnectSpec, ack, frame, publish, subscribe, subscribe_with, unsubscribe, unsubscribe_with,
};
use starling::protocol::{
    ConnectReturnCode, DecodeError, DecodeErrorKind as K, FrameError, MAX_REMAINING_LENGTH_BYTES,
    MalformedFrame, PacketType, ProtocolVersion, ReasonCode, check_frame, decode, decode_connect,
};
use starling::topic::TopicError;

const V311: ProtocolVersion = ProtocolVersion::V311;
const MAX: usize = 1 << 20;

/// Frames `bytes` (it must be exactly one whole frame) and decodes it on a 3.1.1 connection.
fn refused(bytes: &[u8]) -> DecodeError {
    let header = check_frame(bytes, MAX).expect("test frames are whole frames");
    assert_eq!(header.frame_len(), bytes.len(), "test frame length");
    decode(V311, bytes).expect_err("must be refused")
}

fn refused_connect(spec: &ConnectSpec) -> DecodeError {
    let bytes = spec.build();
    assert!(check_frame(&bytes, MAX).is_ok());
    decode_connect(&bytes).expect_err("must be refused")
}

#[track_caller]
fn assert_error(err: DecodeError, kind: K, code: ReasonCode, statement: Option<&str>) {
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(err.reason_code(), code, "{err}");
    assert_eq!(err.statement(), statement, "{err}");
    assert!(!err.to_string().is_empty());
}

// ---- Fixed header -------------------------------------------------------------------------

#[test]
fn reserved_header_flags_are_malformed_mqtt_2_2_2_1_and_2_2_2_2() {
    let cases: [(&[u8], PacketType, u8, &str); 8] = [
        (
            &subscribe_with(0x80, 1, &[(b"a", 0)]),
            PacketType::Subscribe,
            0x0,
            "MQTT-3.8.1-1",
        ),
        (&ack(0x60, 1), PacketType::PubRel, 0x0, "MQTT-3.6.1-1"),
        (&[0xCF, 0], PacketType::PingReq, 0xF, "MQTT-2.2.2-1"),
        (&[0xE5, 0], PacketType::Disconnect, 0x5, "MQTT-2.2.2-1"),
        (&ack(0x41, 1), PacketType::PubAck, 0x1, "MQTT-2.2.2-1"),
        (&ack(0x58, 1), PacketType::PubRec, 0x8, "MQTT-2.2.2-1"),
        (&ack(0x72, 1), PacketType::PubComp, 0x2, "MQTT-2.2.2-1"),
        (
            &unsubscribe_with(0xA3, 1, &[b"a"]),
            PacketType::Unsubscribe,
            0x3,
            "MQTT-3.10.1-1",
        ),
    ];
    for (bytes, packet_type, flags, statement) in cases {
        assert_error(
            refused(bytes),
            K::InvalidHeaderFlags { packet_type, flags },
            ReasonCode::MalformedPacket,
            Some(statement),
        );
    }
    let mut connect = ConnectSpec::default().build();
    connect[0] = 0x12;
    let err = decode_connect(&connect).expect_err("CONNECT flags must be 0");
    assert_eq!(
        err.kind(),
        K::InvalidHeaderFlags {
            packet_type: PacketType::Connect,
            flags: 2
        }
    );
}

#[test]
fn remaining_length_over_four_bytes_is_malformed_not_incomplete() {
    assert_eq!(
        check_frame(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01], MAX),
        Err(FrameError::Malformed(
            MalformedFrame::RemainingLengthTooLong
        ))
    );
    assert_eq!(
        FrameError::Malformed(MalformedFrame::RemainingLengthTooLong).reason_code(),
        Some(ReasonCode::MalformedPacket)
    );
}

#[test]
fn reserved_packet_types_0_and_15_are_malformed_in_v3() {
    for first in [0x00, 0x05, 0xF0] {
        assert!(matches!(
            check_frame(&[first, 0], MAX),
            Err(FrameError::Malformed(MalformedFrame::ReservedPacketType(_)))
        ));
    }
    assert_eq!(
        decode(V311, &[0xF0, 0]).map_err(|e| e.kind()),
        Err(K::ReservedPacketType(15))
    );
}

#[test]
fn oversized_packets_are_refused_from_the_header_alone() {
    let header_only = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    let err = check_frame(&header_only, MAX).expect_err("too large");
    assert_eq!(
        err,
        FrameError::TooLarge {
            size: 5 + MAX_REMAINING_LENGTH_BYTES
        }
    );
    assert_eq!(err.reason_code(), Some(ReasonCode::PacketTooLarge));
}

#[test]
fn server_only_packets_from_a_client_are_protocol_errors_mqtt_4_8_0_1() {
    for (bytes, t) in [
        (frame(0x20, &[0, 0]), PacketType::ConnAck),
        (frame(0x90, &[0, 1, 0]), PacketType::SubAck),
        (frame(0xB0, &[0, 1]), PacketType::UnsubAck),
        (frame(0xD0, &[]), PacketType::PingResp),
    ] {
        assert_error(
            refused(&bytes),
            K::UnexpectedPacketType(t),
            ReasonCode::ProtocolError,
            Some("MQTT-4.8.0-1"),
        );
    }
}

// ---- CONNECT ------------------------------------------------------------------------------

#[test]
fn first_packet_must_be_connect_mqtt_3_1_0_1() {
    let err = decode_connect(&publish(0, b"a", None, b"")).expect_err("not a CONNECT");
    assert_error(
        err,
        K::NotConnect(PacketType::Publish),
        ReasonCode::ProtocolError,
        Some("MQTT-3.1.0-1"),
    );
}

#[test]
fn connect_reserved_flag_mqtt_3_1_2_3() {
    let spec = ConnectSpec {
        flags_override: Some(0x03),
        ..ConnectSpec::default()
    };
    let err = refused_connect(&spec);
    assert_error(
        err,
        K::ConnectReservedFlag,
        ReasonCode::MalformedPacket,
        Some("MQTT-3.1.2-3"),
    );
    assert_eq!(err.connack_return_code(), None);
}

#[test]
fn password_without_username_mqtt_3_1_2_22() {
    let spec = ConnectSpec {
        password: Some(b"p".to_vec()),
        ..ConnectSpec::default()
    };
    let err = refused_connect(&spec);
    assert_error(
        err,
        K::PasswordWithoutUsername,
        ReasonCode::MalformedPacket,
        Some("MQTT-3.1.2-22"),
    );
}

#[test]
fn connect_trailing_bytes_are_malformed() {
    let spec = ConnectSpec {
        trailing: vec![9, 9],
        ..ConnectSpec::default()
    };
    assert_error(
        refused_connect(&spec),
        K::TrailingBytes,
        ReasonCode::MalformedPacket,
        None,
    );
}

#[test]
fn level_5_connect_is_refused_with_connack_0x01_mqtt_3_1_2_2() {
    // A real v5 CONNECT: property length 0 between keep alive and client id.
    let mut body = protocol_common::field(b"MQTT");
    body.extend_from_slice(&[5, 0x02, 0, 60, 0]);
    body.extend(protocol_common::field(b"client"));
    let bytes = frame(0x10, &body);
    // And a v3-shaped body with level 5: refused on the level alone, never parsed.
    let spec = ConnectSpec {
        level: 5,
        ..ConnectSpec::default()
    };
    for bytes in [bytes, spec.build()] {
        let err = decode_connect(&bytes).expect_err("v5 refused");
        assert_error(
            err,
            K::UnsupportedProtocolLevel(5),
            ReasonCode::UnsupportedProtocolVersion,
            Some("MQTT-3.1.2-2"),
        );
        assert_eq!(
            err.connack_return_code(),
            Some(ConnectReturnCode::UnacceptableProtocolVersion)
        );
    }
}

#[test]
fn unknown_protocol_name_closes_without_connack_mqtt_3_1_2_1() {
    let err = refused_connect(&ConnectSpec {
        name: b"MQTP".to_vec(),
        ..ConnectSpec::default()
    });
    assert_error(
        err,
        K::InvalidProtocolName,
        ReasonCode::UnsupportedProtocolVersion,
        Some("MQTT-3.1.2-1"),
    );
    assert_eq!(err.connack_return_code(), None);
}

#[test]
fn will_flags_must_be_consistent_mqtt_3_1_2_11_13_14_15() {
    let base = ConnectSpec::default();
    let err = refused_connect(&ConnectSpec {
        flags_override: Some(0x02 | 0x08),
        ..base.clone()
    });
    assert_error(
        err,
        K::WillQoSWithoutWill,
        ReasonCode::MalformedPacket,
        Some("MQTT-3.1.2-13"),
    );
    let err = refused_connect(&ConnectSpec {
        flags_override: Some(0x02 | 0x20),
        ..base.clone()
    });
    assert_error(
        err,
        K::WillRetainWithoutWill,
        ReasonCode::MalformedPacket,
        Some("MQTT-3.1.2-15"),
    );
    let will = Some((b"w".to_vec(), b"bye".to_vec(), 3, false));
    let err = refused_connect(&ConnectSpec {
        will,
        ..base.clone()
    });
    assert_error(
        err,
        K::InvalidWillQoS,
        ReasonCode::MalformedPacket,
        Some("MQTT-3.1.2-14"),
    );
    // The will topic is a topic name: no wildcards.
    let will = Some((b"w/#".to_vec(), b"bye".to_vec(), 1, false));
    let err = refused_connect(&ConnectSpec { will, ..base });
    assert_error(
        err,
        K::InvalidTopicName(TopicError::WildcardInName),
        ReasonCode::TopicNameInvalid,
        Some("MQTT-3.3.2-2"),
    );
}

#[test]
fn connect_strings_must_be_utf8_mqtt_1_5_3_1_and_3_1_3_4_10_11() {
    let bad = vec![b'a', 0xFF];
    let base = ConnectSpec::default();
    let cases = [
        ConnectSpec {
            client_id: bad.clone(),
            ..base.clone()
        },
        ConnectSpec {
            will: Some((bad.clone(), b"x".to_vec(), 0, false)),
            ..base.clone()
        },
        ConnectSpec {
            username: Some(bad.clone()),
            ..base.clone()
        },
    ];
    for spec in cases {
        assert_error(
            refused_connect(&spec),
            K::InvalidUtf8,
            ReasonCode::MalformedPacket,
            Some("MQTT-1.5.3-1"),
        );
    }
    let spec = ConnectSpec {
        client_id: b"a\0b".to_vec(),
        ..base.clone()
    };
    assert_error(
        refused_connect(&spec),
        K::NullCharacter,
        ReasonCode::MalformedPacket,
        Some("MQTT-1.5.3-2"),
    );
    // The password is binary data (§3.1.3.5): anything goes, unlike in mqttbytes.
    let spec = ConnectSpec {
        username: Some(b"u".to_vec()),
        password: Some(vec![0xFF, 0]),
        ..base
    };
    let connect = decode_connect(&spec.build()).expect("binary password is valid");
    assert_eq!(connect.password.as_deref(), Some(&[0xFF, 0][..]));
}

#[test]
fn client_identifier_rules_mqtt_3_1_3_5_to_3_1_3_8() {
    // Zero-length id with clean session 0: CONNACK 0x02 then close (MQTT-3.1.3-8).
    let spec = ConnectSpec {
        client_id: Vec::new(),
        clean_session: false,
        ..ConnectSpec::default()
    };
    let err = refused_connect(&spec);
    assert_error(
        err,
        K::EmptyClientIdWithoutCleanSession,
        ReasonCode::ClientIdentifierNotValid,
        Some("MQTT-3.1.3-8"),
    );
    assert_eq!(
        err.connack_return_code(),
        Some(ConnectReturnCode::IdentifierRejected)
    );
    // Zero-length id with clean session 1 is allowed (MQTT-3.1.3-6, -7).
    let spec = ConnectSpec {
        client_id: Vec::new(),
        ..ConnectSpec::default()
    };
    assert_eq!(
        decode_connect(&spec.build()).map(|c| c.client_id),
        Ok(String::new())
    );
    // Longer than 23 bytes and non-alphanumeric: the server MAY allow it (MQTT-3.1.3-5).
    let spec = ConnectSpec {
        client_id: "ü-".repeat(20).into_bytes(),
        ..ConnectSpec::default()
    };
    assert!(decode_connect(&spec.build()).is_ok());
    // MQTT 3.1 limits the id to 1..=23 bytes and answers CONNACK 0x02.
    let spec = ConnectSpec {
        name: b"MQIsdp".to_vec(),
        level: 3,
        client_id: vec![b'x'; 24],
        ..ConnectSpec::default()
    };
    let err = refused_connect(&spec);
    assert_eq!(err.kind(), K::V31ClientIdLength(24));
    assert_eq!(
        err.connack_return_code(),
        Some(ConnectReturnCode::IdentifierRejected)
    );
}

#[test]
fn truncation_inside_a_complete_connect_is_malformed_not_incomplete() {
    // The client-id length says 9 bytes, the frame holds 1: mqttbytes reports this kind of
    // thing as `InsufficientBytes`, which a read loop would wait on forever.
    let mut body = protocol_common::field(b"MQTT");
    body.extend_from_slice(&[4, 0x02, 0, 60, 0, 9, b'a']);
    let bytes = frame(0x10, &body);
    assert!(check_frame(&bytes, MAX).is_ok());
    assert_error(
        decode_connect(&bytes).expect_err("truncated"),
        K::Truncated,
        ReasonCode::MalformedPacket,
        None,
    );
    // Keep alive cut off.
    let mut body = protocol_common::field(b"MQTT");
    body.extend_from_slice(&[4, 0x02, 0]);
    assert_eq!(
        decode_connect(&frame(0x10, &body)).map_err(|e| e.kind()),
        Err(K::Truncated)
    );
}

// ---- PUBLISH ------------------------------------------------------------------------------

#[test]
fn publish_topic_names_mqtt_3_3_2_2_and_4_7_3_1_and_4_7_3_2() {
    const INVALID: ReasonCode = ReasonCode::TopicNameInvalid;
    // U+0000 in a string makes the packet malformed (MQTT-1.5.4-2): 0x81, not 0x90.
    const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
    for (topic, e, code, statement) in [
        (
            &b"a/+"[..],
            TopicError::WildcardInName,
            INVALID,
            "MQTT-3.3.2-2",
        ),
        (b"#", TopicError::WildcardInName, INVALID, "MQTT-3.3.2-2"),
        (b"", TopicError::Empty, INVALID, "MQTT-4.7.3-1"),
        (b"a\0", TopicError::NullCharacter, MALFORMED, "MQTT-4.7.3-2"),
    ] {
        assert_error(
            refused(&publish(0, topic, None, b"x")),
            K::InvalidTopicName(e),
            code,
            Some(statement),
        );
    }
    assert_error(
        refused(&publish(0, &[0xFF], None, b"")),
        K::InvalidUtf8,
        ReasonCode::MalformedPacket,
        Some("MQTT-1.5.3-1"),
    );
}

#[test]
fn publish_dup_with_qos0_mqtt_3_3_1_2() {
    assert_error(
        refused(&publish(0b1000, b"a", None, b"")),
        K::DupWithQoS0,
        ReasonCode::MalformedPacket,
        Some("MQTT-3.3.1-2"),
    );
}

#[test]
fn publish_qos_3_mqtt_3_3_1_4() {
    assert_error(
        refused(&publish(0b0110, b"a", Some(1), b"")),
        K::InvalidQoS(3),
        ReasonCode::MalformedPacket,
        Some("MQTT-3.3.1-4"),
    );
}

#[test]
fn packet_id_zero_mqtt_2_3_1_1() {
    for bytes in [
        publish(0b0010, b"a", Some(0), b""),
        publish(0b0100, b"a", Some(0), b""),
        ack(0x40, 0),
        ack(0x50, 0),
        ack(0x62, 0),
        ack(0x70, 0),
        subscribe(0, &[(b"a", 0)]),
        unsubscribe(0, &[b"a"]),
    ] {
        assert_error(
            refused(&bytes),
            K::PacketIdZero,
            ReasonCode::ProtocolError,
            Some("MQTT-2.3.1-1"),
        );
    }
}

#[test]
fn publish_qos1_without_packet_id_is_truncated() {
    assert_error(
        refused(&publish(0b0010, b"a", None, b"")),
        K::Truncated,
        ReasonCode::MalformedPacket,
        None,
    );
}

// ---- SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------------

#[test]
fn subscribe_without_filters_mqtt_3_8_3_3() {
    assert_error(
        refused(&subscribe(1, &[])),
        K::NoTopicFilters(PacketType::Subscribe),
        ReasonCode::ProtocolError,
        Some("MQTT-3.8.3-3"),
    );
}

#[test]
fn subscribe_reserved_option_bits_and_qos3_mqtt_3_8_3_4() {
    for options in [0x03, 0x04, 0x80, 0xFD] {
        assert_error(
            refused(&subscribe(1, &[(b"a", 0), (b"b", options)])),
            K::InvalidSubscriptionOptions(options),
            ReasonCode::MalformedPacket,
            Some("MQTT-3-8.3-4"),
        );
    }
}

#[test]
fn subscribe_invalid_filters_mqtt_4_7_1_2_and_4_7_3_1() {
    const INVALID: ReasonCode = ReasonCode::TopicFilterInvalid;
    const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
    for (filter, e, code, statement) in [
        (
            &b"a/#/b"[..],
            TopicError::MisplacedWildcard,
            INVALID,
            "MQTT-4.7.1-2",
        ),
        (
            b"a+",
            TopicError::MisplacedWildcard,
            INVALID,
            "MQTT-4.7.1-2",
        ),
        (b"", TopicError::Empty, INVALID, "MQTT-4.7.3-1"),
        (b"a\0", TopicError::NullCharacter, MALFORMED, "MQTT-4.7.3-2"),
    ] {
        assert_error(
            refused(&subscribe(1, &[(filter, 1)])),
            K::InvalidTopicFilter(e),
            code,
            Some(statement),
        );
        assert_error(
            refused(&unsubscribe(1, &[filter])),
            K::InvalidTopicFilter(e),
            code,
            Some(statement),
        );
    }
}

#[test]
fn subscribe_filters_must_be_utf8_mqtt_3_8_3_1_and_3_10_3_1() {
    assert_eq!(
        refused(&subscribe(1, &[(&[0xC3], 0)])).kind(),
        K::InvalidUtf8
    );
    assert_eq!(
        refused(&unsubscribe(1, &[&[0xED, 0xA0, 0x80]])).kind(),
        K::InvalidUtf8
    );
}

#[test]
fn subscribe_missing_options_byte_is_truncated() {
    let mut body = vec![0, 1];
    body.extend(protocol_common::field(b"a"));
    assert_error(
        refused(&frame(0x82, &body)),
        K::Truncated,
        ReasonCode::MalformedPacket,
        None,
    );
}

#[test]
fn unsubscribe_without_filters_mqtt_3_10_3_2() {
    assert_error(
        refused(&unsubscribe(1, &[])),
        K::NoTopicFilters(PacketType::Unsubscribe),
        ReasonCode::ProtocolError,
        Some("MQTT-3.10.3-2"),
    );
}

// ---- Fixed-size packets --------------------------------------------------------------------

#[test]
fn fixed_size_packets_refuse_extra_bytes() {
    for bytes in [
        frame(0x40, &[0, 1, 0]),
        frame(0x62, &[0, 1, 0, 0]),
        frame(0xC0, &[0]),
        frame(0xE0, &[0]),
    ] {
        assert_error(
            refused(&bytes),
            K::TrailingBytes,
            ReasonCode::MalformedPacket,
            None,
        );
    }
}
