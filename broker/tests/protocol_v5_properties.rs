//! MQTT 5 property validation (MQTT 5.0 §2.2.2), byte by byte: every rule, its reason code
//! (0x81 Malformed Packet vs 0x82 Protocol Error) and the statement it enforces.

mod protocol_common;

use protocol_common::field;
use protocol_common::v5::*;
use starling::protocol::{
    AnyConnect, DecodeErrorKind as K, PacketType, PacketV5, ReasonCode, decode_connect_any,
    decode_v5,
    v5::{PayloadFormat, decode_publish_from_server},
};

const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
const PROTOCOL: ReasonCode = ReasonCode::ProtocolError;

/// The refusal of `frame` (CONNECT through `decode_connect_any`, others `decode_v5`).
fn refusal(frame: &[u8]) -> (K, ReasonCode, Option<&'static str>) {
    let err = if frame[0] >> 4 == 1 {
        decode_connect_any(frame)
            .map(drop)
            .expect_err("must be refused")
    } else {
        decode_v5(frame).map(drop).expect_err("must be refused")
    };
    assert!(err.is_v5(), "{err}");
    (err.kind(), err.reason_code(), err.statement())
}

#[test]
fn unknown_property_is_malformed() {
    // §2.2.2.2: an identifier that is not valid for the packet type is malformed.
    for id in [0x00, 0x04, 0x2B, 0x7F, 0x80] {
        let (kind, code, _) = refusal(&publish5_props(&props(&[vec![id, 0]])));
        assert_eq!((kind, code), (K::UnknownProperty(id), MALFORMED), "{id:#x}");
    }
}

#[test]
fn property_not_allowed_in_packet_is_malformed() {
    // Session Expiry Interval in a PUBLISH; Topic Alias in a CONNECT; Will Delay Interval
    // in CONNECT properties; Receive Maximum in the will properties; Subscription
    // Identifier in UNSUBSCRIBE; Reason String in SUBSCRIBE.
    let cases: [(Vec<u8>, u8, PacketType); 6] = [
        (
            publish5_props(&props(&[p_u32(0x11, 5)])),
            0x11,
            PacketType::Publish,
        ),
        (
            connect5_simple(&props(&[p_u16(0x23, 1)])),
            0x23,
            PacketType::Connect,
        ),
        (
            connect5_simple(&props(&[p_u32(0x18, 1)])),
            0x18,
            PacketType::Connect,
        ),
        (
            connect5(
                0x06,
                &no_props(),
                &[
                    field(b"id"),
                    props(&[p_u16(0x21, 1)]),
                    field(b"w"),
                    field(b""),
                ]
                .concat(),
            ),
            0x21,
            PacketType::Connect,
        ),
        (
            unsubscribe5(1, &props(&[p_varint(0x0B, 1)]), &[b"a"]),
            0x0B,
            PacketType::Unsubscribe,
        ),
        (
            subscribe5(1, &props(&[p_str(0x1F, b"r")]), &[(b"a", 0)]),
            0x1F,
            PacketType::Subscribe,
        ),
    ];
    for (frame, id, packet_type) in cases {
        let (kind, code, _) = refusal(&frame);
        assert_eq!(
            (kind, code),
            (K::PropertyNotAllowed { id, packet_type }, MALFORMED),
            "{id:#x}"
        );
    }
}

#[test]
fn duplicate_single_value_property_is_a_protocol_error() {
    let cases = [
        publish5_props(&props(&[p_u16(0x23, 1), p_u16(0x23, 2)])),
        publish5_props(&props(&[p_u8(0x01, 0), p_u8(0x01, 0)])),
        publish5_props(&props(&[p_str(0x03, b"a"), p_str(0x03, b"b")])),
        connect5_simple(&props(&[p_u32(0x11, 1), p_u32(0x11, 1)])),
        connect5_simple(&props(&[p_u16(0x21, 1), p_u16(0x21, 1)])),
        subscribe5(
            1,
            &props(&[p_varint(0x0B, 1), p_varint(0x0B, 2)]),
            &[(b"a", 0)],
        ),
        ack5(
            0x40,
            1,
            Some(0x10),
            Some(&props(&[p_str(0x1F, b"a"), p_str(0x1F, b"b")])),
        ),
    ];
    for frame in cases {
        let (kind, code, _) = refusal(&frame);
        assert!(matches!(kind, K::DuplicateProperty(_)), "{kind:?}");
        assert_eq!(code, PROTOCOL);
    }
}

#[test]
fn user_property_may_repeat_and_keeps_order() {
    let frame = publish5_props(&props(&[
        p_user(b"k", b"1"),
        p_user(b"k", b"2"),
        p_user(b"", b""),
    ]));
    let Ok(PacketV5::Publish(p)) = decode_v5(&frame) else {
        panic!()
    };
    let users: Vec<_> = p.properties.user_properties.iter().collect();
    assert_eq!(users, [("k", "1"), ("k", "2"), ("", "")]);
}

#[test]
fn subscription_identifier_repeats_only_server_to_client_mqtt_3_3_4_6() {
    // From a client, even one Subscription Identifier in a PUBLISH is refused.
    let one = publish5_props(&props(&[p_varint(0x0B, 7)]));
    let (kind, code, statement) = refusal(&one);
    assert_eq!(
        (kind, code, statement),
        (
            K::SubscriptionIdentifierFromClient,
            PROTOCOL,
            Some("MQTT-3.3.4-6")
        )
    );
    // As a client receives it, several are fine (§3.3.2.3.8).
    let two = publish5_props(&props(&[p_varint(0x0B, 7), p_varint(0x0B, 268_435_455)]));
    let p = decode_publish_from_server(&two).expect("valid from a server");
    assert_eq!(
        p.properties
            .subscription_identifiers
            .iter()
            .collect::<Vec<_>>(),
        [7, 268_435_455]
    );
    // SUBSCRIBE: once.
    let sub = subscribe5(
        1,
        &props(&[p_varint(0x0B, 1), p_varint(0x0B, 1)]),
        &[(b"a", 0)],
    );
    assert_eq!(refusal(&sub).0, K::DuplicateProperty(0x0B));
}

#[test]
fn zero_values_are_protocol_errors() {
    // Topic Alias 0 (MQTT-3.3.2-8), Subscription Identifier 0 (§3.8.2.1.2), Receive
    // Maximum 0 (§3.1.2.11.3), Maximum Packet Size 0 (§3.1.2.11.4).
    let cases = [
        (
            publish5_props(&props(&[p_u16(0x23, 0)])),
            0x23,
            Some("MQTT-3.3.2-8"),
        ),
        (
            subscribe5(1, &props(&[p_varint(0x0B, 0)]), &[(b"a", 0)]),
            0x0B,
            None,
        ),
        (connect5_simple(&props(&[p_u16(0x21, 0)])), 0x21, None),
        (connect5_simple(&props(&[p_u32(0x27, 0)])), 0x27, None),
    ];
    for (frame, id, statement) in cases {
        assert_eq!(
            refusal(&frame),
            (
                K::InvalidPropertyValue { id, value: 0 },
                PROTOCOL,
                statement
            )
        );
    }
}

#[test]
fn byte_properties_other_than_0_or_1_are_protocol_errors() {
    // Payload Format Indicator (§3.3.2.3.2), Request Problem / Response Information
    // (§3.1.2.11.7, §3.1.2.11.6: "a value other than 0 or 1" is a Protocol Error).
    let cases = [
        (publish5_props(&props(&[p_u8(0x01, 2)])), 0x01),
        (connect5_simple(&props(&[p_u8(0x17, 2)])), 0x17),
        (connect5_simple(&props(&[p_u8(0x19, 0xFF)])), 0x19),
    ];
    for (frame, id) in cases {
        let (kind, code, _) = refusal(&frame);
        assert!(
            matches!(kind, K::InvalidPropertyValue { id: got, .. } if got == id),
            "{kind:?}"
        );
        assert_eq!(code, PROTOCOL);
    }
    let ok = publish5_props(&props(&[p_u8(0x01, 1)]));
    let Ok(PacketV5::Publish(p)) = decode_v5(&ok) else {
        panic!()
    };
    assert_eq!(p.properties.payload_format, Some(PayloadFormat::Utf8));
}

#[test]
fn strings_and_pairs_must_be_well_formed_mqtt_1_5_4_1_and_1_5_4_2_and_1_5_7_1() {
    let cases = [
        (p_str(0x03, &[0xFF]), K::InvalidUtf8, "MQTT-1.5.4-1"),
        (p_str(0x03, &[b'a', 0]), K::NullCharacter, "MQTT-1.5.4-2"),
        (p_user(b"ok", &[0xC0, 0x80]), K::InvalidUtf8, "MQTT-1.5.4-1"),
        (p_user(&[0], b"v"), K::NullCharacter, "MQTT-1.5.4-2"),
    ];
    for (prop, kind, statement) in cases {
        assert_eq!(
            refusal(&publish5_props(&props(&[prop]))),
            (kind, MALFORMED, Some(statement))
        );
    }
    // Correlation Data is binary: anything goes.
    assert!(decode_v5(&publish5_props(&props(&[p_str(0x09, &[0, 0xFF])]))).is_ok());
}

#[test]
fn truncated_properties_are_malformed() {
    // Property length says 5, only 3 bytes follow before the payload ends the frame.
    let frame = publish5(0, b"t", None, &[5, 0x23, 0, 1], b"");
    assert_eq!(refusal(&frame).1, MALFORMED);
    // A Four Byte Integer cut inside the block.
    let frame = publish5(0, b"t", None, &[3, 0x02, 0, 0], b"");
    assert_eq!(refusal(&frame), (K::Truncated, MALFORMED, None));
    // A string pair missing its value.
    let frame = publish5(0, b"t", None, &[4, 0x26, 0, 1, b'k'], b"");
    assert_eq!(refusal(&frame).0, K::Truncated);
}

#[test]
fn non_minimal_varints_are_malformed_mqtt_1_5_5_1() {
    let expected = (K::NonMinimalVarint, MALFORMED, Some("MQTT-1.5.5-1"));
    // Property length 0 as 0x80 0x00.
    assert_eq!(
        refusal(&publish5(0, b"t", None, &[0x80, 0x00], b"")),
        expected
    );
    // Subscription Identifier 1 as 0x81 0x00.
    let sub = subscribe5(1, &[3, 0x0B, 0x81, 0x00], &[(b"a", 0)]);
    assert_eq!(refusal(&sub), expected);
    // Remaining length 0 of a PINGREQ as 0x80 0x00 (a v5 connection).
    assert_eq!(refusal(&[0xC0, 0x80, 0x00]), expected);
    // A CONNECT whose remaining length is padded: framed before the version is known.
    let mut connect = connect5_simple(&no_props());
    let rl = connect[1];
    connect.splice(1..2, [rl | 0x80, 0x00]);
    assert_eq!(refusal(&connect), expected);
    // A five-byte varint is malformed too.
    let sub = subscribe5(1, &[5, 0x0B, 0x80, 0x80, 0x80, 0x80], &[(b"a", 0)]);
    assert_eq!(refusal(&sub).1, MALFORMED);
}

#[test]
fn response_topic_must_be_a_topic_name_mqtt_3_3_2_14() {
    let frame = publish5_props(&props(&[p_str(0x08, b"a/#")]));
    let (kind, code, statement) = refusal(&frame);
    assert!(matches!(kind, K::InvalidResponseTopic(_)));
    assert_eq!((code, statement), (PROTOCOL, Some("MQTT-3.3.2-14")));
}

#[test]
fn authentication_data_needs_a_method() {
    // §3.1.2.11.10: Authentication Data without Authentication Method is a Protocol Error.
    let frame = connect5_simple(&props(&[p_str(0x16, b"x")]));
    assert_eq!(
        refusal(&frame),
        (K::AuthenticationDataWithoutMethod, PROTOCOL, None)
    );
    let ok = connect5_simple(&props(&[p_str(0x15, b"SCRAM"), p_str(0x16, b"x")]));
    let Ok(AnyConnect::V5(c)) = decode_connect_any(&ok) else {
        panic!()
    };
    assert_eq!(c.properties.authentication_method.as_deref(), Some("SCRAM"));
    assert_eq!(c.properties.authentication_data.as_deref(), Some(&b"x"[..]));
}
