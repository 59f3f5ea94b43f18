//! MQTT 5 packets, byte by byte: decoding every client→server packet (with the statement
//! each refusal enforces) and the exact bytes of every server→client encoder, including
//! the short forms and the Maximum Packet Size handling.

mod protocol_common;

use std::num::NonZeroU16;

use protocol_common::field;
use protocol_common::v5::*;
use starling::protocol::v5::*;
use starling::protocol::{
    AnyConnect, AnyPacket, DecodeErrorKind as K, PacketV5, ProtocolVersion, QoS, ReasonCode,
    SharedFilterError, decode, decode_any, decode_connect, decode_connect_any, decode_v5,
};

fn refusal(frame: &[u8]) -> (K, ReasonCode, Option<&'static str>) {
    let err = decode_v5(frame).map(drop).expect_err("must be refused");
    (err.kind(), err.reason_code(), err.statement())
}

#[test]
fn connect_v5_full() {
    let will = [
        props(&[
            p_u32(0x18, 10),
            p_u8(0x01, 1),
            p_str(0x08, b"re/ply"),
            p_user(b"w", b"1"),
        ]),
        field(b"will/t"),
        field(b"bye"),
    ]
    .concat();
    // username + password + will retain + will QoS 1 + will + clean start.
    let payload = [field(b"cid"), will, field(b"u"), field(&[0xFF])].concat();
    let cprops = props(&[
        p_u32(0x11, u32::MAX),
        p_u16(0x21, 10),
        p_u32(0x27, 1024),
        p_u16(0x22, 5),
        p_u8(0x19, 1),
        p_user(b"a", b"b"),
    ]);
    let Ok(AnyConnect::V5(c)) = decode_connect_any(&connect5(0b1110_1110, &cprops, &payload))
    else {
        panic!()
    };
    assert_eq!(c.connect.version, ProtocolVersion::V5);
    assert_eq!(
        (c.connect.client_id.as_str(), c.connect.clean_session),
        ("cid", true)
    );
    let will = c.connect.will.as_ref().expect("will");
    assert_eq!(
        (will.topic.as_str(), will.qos, will.retain),
        ("will/t", QoS::AtLeastOnce, true)
    );
    let wp = c.will_properties.as_ref().expect("will properties");
    assert_eq!(wp.will_delay_interval_secs, Some(10));
    assert_eq!(wp.payload_format, Some(PayloadFormat::Utf8));
    assert_eq!(wp.response_topic.as_deref(), Some("re/ply"));
    assert_eq!(wp.user_properties[0].name, "w");
    let p = &c.properties;
    assert_eq!(p.session_expiry_interval_secs, Some(u32::MAX));
    assert_eq!(p.receive_maximum.map(NonZeroU16::get), Some(10));
    assert_eq!(p.max_packet_size_bytes(), 1024);
    assert_eq!(
        (p.topic_alias_maximum, p.request_response_information),
        (Some(5), Some(true))
    );
    assert_eq!(p.user_properties.len(), 1);
}

#[test]
fn connect_v5_relaxed_and_strict_rules() {
    // Password without username is allowed in 5.0 (§3.1.2.9); so is an empty client id
    // without Clean Start (MQTT-3.1.3-6: the server may assign one).
    let c = decode_connect_any(&connect5(
        0x40,
        &no_props(),
        &[field(b""), field(b"pw")].concat(),
    ));
    assert!(
        matches!(c, Ok(AnyConnect::V5(ref c)) if c.connect.password.is_some() && c.connect.client_id.is_empty())
    );
    // Will QoS without will (MQTT-3.1.2-11), will QoS 3 (MQTT-3.1.2-12), will retain
    // without will (MQTT-3.1.2-13), reserved flag (MQTT-3.1.2-3): malformed.
    for (flags, kind, statement) in [
        (0x0A, K::WillQoSWithoutWill, "MQTT-3.1.2-11"),
        (0x1E, K::InvalidWillQoS, "MQTT-3.1.2-12"),
        (0x22, K::WillRetainWithoutWill, "MQTT-3.1.2-13"),
        (0x03, K::ConnectReservedFlag, "MQTT-3.1.2-3"),
    ] {
        let err =
            decode_connect_any(&connect5(flags, &no_props(), &field(b"id"))).expect_err("refused");
        assert_eq!(
            (err.kind(), err.reason_code(), err.statement()),
            (kind, ReasonCode::MalformedPacket, Some(statement))
        );
    }
    // The 3.x-only entry point keeps refusing level 5 (CONNACK 0x01) for the core.
    let frame = connect5_simple(&no_props());
    assert_eq!(
        decode_connect(&frame).map_err(|e| e.kind()),
        Err(K::UnsupportedProtocolLevel(5))
    );
    // Trailing bytes after the password.
    let err = decode_connect_any(&connect5(
        0x02,
        &no_props(),
        &[field(b"id"), vec![0]].concat(),
    ))
    .expect_err("trailing");
    assert_eq!(err.kind(), K::TrailingBytes);
    // A second CONNECT on a v5 connection comes back as a packet for the session layer.
    assert!(matches!(decode_v5(&frame), Ok(PacketV5::Connect(_))));
    // 3.1.1 CONNECT through decode_connect_any.
    let v3 = protocol_common::ConnectSpec::default().build();
    assert!(matches!(decode_connect_any(&v3), Ok(AnyConnect::V3(_))));
}

#[test]
fn publish_v5_topic_alias_and_empty_topic_mqtt_3_3_2_1() {
    // Empty topic with a Topic Alias: valid, the alias stands for the topic.
    let frame = publish5(0x02, b"", Some(9), &props(&[p_u16(0x23, 3)]), b"pl");
    let Ok(PacketV5::Publish(p)) = decode_v5(&frame) else {
        panic!()
    };
    assert_eq!((p.topic, p.packet_id, p.payload), ("", Some(9), &b"pl"[..]));
    assert_eq!(p.properties.topic_alias.map(NonZeroU16::get), Some(3));
    assert_eq!(p.to_v3(), None);
    // Empty topic without an alias: protocol error (§3.3.2.1).
    let frame = publish5(0, b"", None, &no_props(), b"");
    assert_eq!(
        refusal(&frame),
        (K::EmptyTopicWithoutAlias, ReasonCode::ProtocolError, None)
    );
    // Wildcards (MQTT-3.3.2-2), QoS 3 (MQTT-3.3.1-4), DUP on QoS 0 (MQTT-3.3.1-2), packet id
    // 0 (MQTT-2.2.1-3).
    assert_eq!(
        refusal(&publish5(0, b"a/+", None, &no_props(), b"")).2,
        Some("MQTT-3.3.2-2")
    );
    assert_eq!(
        refusal(&publish5(0x06, b"a", Some(1), &no_props(), b"")).2,
        Some("MQTT-3.3.1-4")
    );
    assert_eq!(
        refusal(&publish5(0x08, b"a", None, &no_props(), b"")).2,
        Some("MQTT-3.3.1-2")
    );
    assert_eq!(
        refusal(&publish5(0x02, b"a", Some(0), &no_props(), b"")).2,
        Some("MQTT-2.2.1-3")
    );
    // Missing property length.
    assert_eq!(refusal(&publish5(0, b"a", None, &[], b"")).0, K::Truncated);
}

#[test]
fn publish_v5_properties_view() {
    let pr = props(&[
        p_u8(0x01, 1),
        p_u32(0x02, 60),
        p_str(0x08, b"resp"),
        p_str(0x09, &[1, 2]),
        p_user(b"k", b"v"),
        p_str(0x03, b"text/plain"),
    ]);
    let frame = publish5(0x01, b"t", None, &pr, "é".as_bytes());
    let Ok(PacketV5::Publish(p)) = decode_v5(&frame) else {
        panic!()
    };
    let pp = p.properties;
    assert!(p.retain);
    assert_eq!(pp.message_expiry_interval_secs, Some(60));
    assert_eq!(
        (pp.response_topic, pp.correlation_data, pp.content_type),
        (Some("resp"), Some(&[1u8, 2][..]), Some("text/plain"))
    );
    assert!(pp.payload_format.expect("pfi").accepts(p.payload));
    assert!(!PayloadFormat::Utf8.accepts(&[0xFF]));
}

#[test]
fn pub_acks_short_forms_and_reasons() {
    // Remaining length 2: Success; 3: reason only; 4+: reason and properties (§3.4.2.1).
    let f1 = ack5(0x40, 5, None, None);
    let Ok(PacketV5::PubAck(a)) = decode_v5(&f1) else {
        panic!()
    };
    assert_eq!((a.packet_id, a.reason), (5, ReasonCode::Success));
    let f2 = ack5(0x50, 5, Some(0x10), None);
    let Ok(PacketV5::PubRec(a)) = decode_v5(&f2) else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::NoMatchingSubscribers);
    let p = props(&[p_str(0x1F, b"why"), p_user(b"k", b"v")]);
    let f3 = ack5(0x62, 5, Some(0x92), Some(&p));
    let Ok(PacketV5::PubRel(a)) = decode_v5(&f3) else {
        panic!()
    };
    assert_eq!(
        (a.reason, a.reason_string),
        (ReasonCode::PacketIdentifierNotFound, Some("why"))
    );
    assert!(matches!(
        decode_v5(&ack5(0x70, 5, Some(0), Some(&no_props()))),
        Ok(PacketV5::PubComp(_))
    ));
    // A reason not valid for the packet: MQTT-3.4.2-1, MQTT-3.6.2-1, MQTT-3.7.2-1.
    for (first, code, statement) in [
        (0x40, 0x92, "MQTT-3.4.2-1"),
        (0x62, 0x10, "MQTT-3.6.2-1"),
        (0x70, 0x03, "MQTT-3.7.2-1"),
        (0x50, 0x81, "MQTT-3.5.2-1"),
    ] {
        let (kind, reason, st) = refusal(&ack5(first, 1, Some(code), None));
        assert!(matches!(kind, K::InvalidReasonCode { .. }));
        assert_eq!((reason, st), (ReasonCode::ProtocolError, Some(statement)));
    }
    // PUBREL flags (MQTT-3.6.1-1), packet id 0, trailing bytes.
    assert_eq!(refusal(&ack5(0x60, 1, None, None)).2, Some("MQTT-3.6.1-1"));
    assert_eq!(refusal(&ack5(0x40, 0, None, None)).0, K::PacketIdZero);
    assert_eq!(
        refusal(&ack5(0x40, 1, Some(0), Some(&[0, 7]))).0,
        K::TrailingBytes
    );
}

#[test]
fn subscribe_v5_options_and_shared() {
    let subs: [(&[u8], u8); 3] = [
        (b"a/#", 0b0010_1110),
        (b"$share/g/x/+", 0b0000_1001),
        (b"$share/", 0),
    ];
    // The third is refused; first check the two valid ones.
    let frame = subscribe5(
        7,
        &props(&[p_varint(0x0B, 300), p_user(b"k", b"v")]),
        &subs[..2],
    );
    let Ok(PacketV5::Subscribe(s)) = decode_v5(&frame) else {
        panic!()
    };
    assert_eq!((s.packet_id, s.subscription_identifier), (7, Some(300)));
    let o = s.subscriptions[0].options;
    assert_eq!(
        (o.qos, o.no_local, o.retain_as_published, o.retain_handling),
        (QoS::ExactlyOnce, true, true, RetainHandling::DoNotSend)
    );
    assert_eq!(o.as_byte(), 0b0010_1110);
    assert_eq!(
        s.subscriptions[1].shared(),
        Some(SharedFilter {
            group: "g",
            filter: "x/+"
        })
    );
    assert_eq!(s.user_properties.len(), 1);
    // Reserved bits: malformed (MQTT-3.8.3-5); QoS 3 and Retain Handling 3: protocol error
    // (§3.8.3.1); No Local on a shared subscription (MQTT-3.8.3-4).
    let bad = |opts: u8, filter: &[u8]| refusal(&subscribe5(1, &no_props(), &[(filter, opts)]));
    assert_eq!(
        bad(0x40, b"a"),
        (
            K::InvalidSubscriptionOptions(0x40),
            ReasonCode::MalformedPacket,
            Some("MQTT-3.8.3-5")
        )
    );
    assert_eq!(
        bad(0x03, b"a").0..=bad(0x03, b"a").0,
        K::InvalidSubscriptionQoS..=K::InvalidSubscriptionQoS
    );
    assert_eq!(bad(0x30, b"a").1, ReasonCode::ProtocolError);
    assert_eq!(
        bad(0x04, b"$share/g/a"),
        (
            K::NoLocalOnSharedSubscription,
            ReasonCode::ProtocolError,
            Some("MQTT-3.8.3-4")
        )
    );
    // Shared filter syntax (MQTT-4.8.2-1, MQTT-4.8.2-2): 0x8F Topic Filter invalid.
    for (filter, e) in [
        (&b"$share/"[..], SharedFilterError::EmptyShareName),
        (b"$share//a", SharedFilterError::EmptyShareName),
        (b"$share/g", SharedFilterError::MissingFilter),
        (b"$share/g/", SharedFilterError::MissingFilter),
        (b"$share/g+/a", SharedFilterError::WildcardInShareName),
        (b"$share/#/a", SharedFilterError::WildcardInShareName),
    ] {
        let (kind, code, _) = bad(0, filter);
        assert_eq!(
            (kind, code),
            (
                K::InvalidSharedSubscription(e),
                ReasonCode::TopicFilterInvalid
            ),
            "{filter:?}"
        );
    }
    assert!(matches!(
        bad(0, b"$share/g/a/#/b").0,
        K::InvalidSharedSubscription(SharedFilterError::InvalidFilter(_))
    ));
    // No filter at all (MQTT-3.8.3-2), flags (MQTT-3.8.1-1), missing properties.
    assert_eq!(
        refusal(&subscribe5(1, &no_props(), &[])).2,
        Some("MQTT-3.8.3-2")
    );
    let mut wrong_flags = subscribe5(1, &no_props(), &[(b"a", 0)]);
    wrong_flags[0] = 0x80;
    assert_eq!(refusal(&wrong_flags).2, Some("MQTT-3.8.1-1"));
}

#[test]
fn unsubscribe_v5() {
    let frame = unsubscribe5(3, &props(&[p_user(b"k", b"v")]), &[b"a/+", b"$share/g/b"]);
    let Ok(PacketV5::Unsubscribe(u)) = decode_v5(&frame) else {
        panic!()
    };
    assert_eq!(
        (u.packet_id, u.filters.len(), u.user_properties.len()),
        (3, 2, 1)
    );
    assert_eq!(
        refusal(&unsubscribe5(3, &no_props(), &[])).2,
        Some("MQTT-3.10.3-2")
    );
    assert_eq!(
        refusal(&unsubscribe5(3, &props(&[p_str(0x1F, b"r")]), &[b"a"])).1,
        ReasonCode::MalformedPacket
    );
}

#[test]
fn disconnect_v5_forms_mqtt_3_14_2_1() {
    assert_eq!(
        decode_v5(&[0xE0, 0]),
        Ok(PacketV5::Disconnect(DisconnectV5::new(ReasonCode::Success)))
    );
    let f4 = reason_packet(0xE0, Some(0x04), None);
    let Ok(PacketV5::Disconnect(d)) = decode_v5(&f4) else {
        panic!()
    };
    assert_eq!(d.reason, ReasonCode::DisconnectWithWillMessage);
    let p = props(&[p_u32(0x11, 0), p_str(0x1F, b"bye")]);
    let f5 = reason_packet(0xE0, Some(0), Some(&p));
    let Ok(PacketV5::Disconnect(d)) = decode_v5(&f5) else {
        panic!()
    };
    assert_eq!(
        (d.session_expiry_interval_secs, d.reason_string),
        (Some(0), Some("bye"))
    );
    // Server-only reason (0x8E Session taken over) and unassigned ones.
    for code in [0x8E, 0x8B, 0x01, 0x05] {
        assert_eq!(
            refusal(&reason_packet(0xE0, Some(code), None)).2,
            Some("MQTT-3.14.2-1")
        );
    }
    assert_eq!(refusal(&[0xE1, 0]).2, Some("MQTT-3.14.1-1"));
}

#[test]
fn auth_v5_mqtt_3_15_2_1() {
    let p = props(&[p_str(0x15, b"SCRAM-SHA-1"), p_str(0x16, &[1, 2])]);
    let f6 = reason_packet(0xF0, Some(0x18), Some(&p));
    let Ok(PacketV5::Auth(a)) = decode_v5(&f6) else {
        panic!()
    };
    assert_eq!(
        (a.reason, a.authentication_method, a.authentication_data),
        (
            ReasonCode::ContinueAuthentication,
            Some("SCRAM-SHA-1"),
            Some(&[1u8, 2][..])
        )
    );
    assert!(matches!(
        decode_v5(&reason_packet(0xF0, Some(0x19), Some(&p))),
        Ok(PacketV5::Auth(_))
    ));
    // 0x00 is the server's (and the remaining-length-0 form implies it).
    assert_eq!(refusal(&[0xF0, 0]).2, Some("MQTT-3.15.2-1"));
    assert_eq!(
        refusal(&reason_packet(0xF0, Some(0x00), Some(&p))).2,
        Some("MQTT-3.15.2-1")
    );
    assert_eq!(
        refusal(&reason_packet(0xF0, Some(0x04), Some(&p))).2,
        Some("MQTT-3.15.2-1")
    );
    // Without Authentication Method (§3.15.2.2.2).
    assert_eq!(
        refusal(&reason_packet(0xF0, Some(0x18), None)).0,
        K::MissingAuthenticationMethod
    );
    assert_eq!(refusal(&[0xF2, 0]).2, Some("MQTT-3.15.1-1"));
    // AUTH stays a reserved type on a 3.x connection.
    assert!(decode(ProtocolVersion::V311, &[0xF0, 0]).is_err());
}

#[test]
fn pingreq_server_packets_and_dispatch() {
    assert_eq!(decode_v5(&[0xC0, 0]), Ok(PacketV5::PingReq));
    assert_eq!(refusal(&[0xC0, 1, 0]).0, K::TrailingBytes);
    for frame in [
        &[0x20, 3, 0, 0, 0][..],
        &[0x90, 4, 0, 1, 0, 0],
        &[0xB0, 3, 0, 1, 0],
        &[0xD0, 0],
    ] {
        assert!(matches!(refusal(frame).0, K::UnexpectedPacketType(_)));
    }
    assert!(matches!(
        decode_any(ProtocolVersion::V5, &[0xE0, 0]),
        Ok(AnyPacket::V5(_))
    ));
    assert!(matches!(
        decode_any(ProtocolVersion::V311, &[0xE0, 0]),
        Ok(AnyPacket::V3(_))
    ));
}

#[test]
fn nul_in_any_topic_is_malformed_mqtt_1_5_4_2() {
    // U+0000 in a topic name, a topic filter (shared or not, in the ShareName too), a will
    // topic or a Response Topic: a Malformed Packet (0x81), not 0x90 / 0x8F.
    let malformed = |frame: &[u8]| refusal(frame).1;
    assert_eq!(
        malformed(&publish5(0, b"a\0b", None, &no_props(), b"")),
        ReasonCode::MalformedPacket
    );
    for filter in [&b"a/\0"[..], b"$share/g/\0", b"$share/g\0/a"] {
        assert_eq!(
            malformed(&subscribe5(1, &no_props(), &[(filter, 0)])),
            ReasonCode::MalformedPacket,
            "{filter:?}"
        );
        assert_eq!(
            malformed(&unsubscribe5(1, &no_props(), &[filter])),
            ReasonCode::MalformedPacket,
            "{filter:?}"
        );
    }
    assert_eq!(
        malformed(&publish5(
            0,
            b"a",
            None,
            &props(&[p_str(0x08, b"r\0")]),
            b""
        )),
        ReasonCode::MalformedPacket
    );
    // A will topic with U+0000: the CONNECT is malformed.
    let mut payload = field(b"id");
    payload.extend(no_props());
    payload.extend(field(b"w\0"));
    payload.extend(field(b"bye"));
    let error = decode_connect_any(&connect5(0x06, &no_props(), &payload))
        .map(drop)
        .expect_err("must be refused");
    assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
    // Without the U+0000 the same will is accepted.
    let mut payload = field(b"id");
    payload.extend(no_props());
    payload.extend(field(b"w"));
    payload.extend(field(b"bye"));
    assert!(decode_connect_any(&connect5(0x06, &no_props(), &payload)).is_ok());
}
