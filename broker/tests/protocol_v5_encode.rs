//! MQTT 5 server→client encoders, byte by byte: short forms, every property, the checks
//! that refuse invalid input, and the Maximum Packet Size handling (MQTT-3.1.2-24/25,
//! MQTT-3.2.2-19/20 and siblings).

use starling::protocol::v5::*;
use starling::protocol::{EncodeError, PacketType, QoS, ReasonCode};

const NO_LIMIT: usize = UNLIMITED_PACKET_SIZE_BYTES;

#[test]
fn ack_encoders_use_short_forms_and_trim_to_fit() {
    let mut out = Vec::new();
    assert_eq!(
        encode_ack_v5(&mut out, PacketType::PubAck, &AckV5::success(1), NO_LIMIT),
        Ok(4)
    );
    assert_eq!(out, [0x40, 2, 0, 1]);
    out.clear();
    let ack = AckV5 {
        reason: ReasonCode::NoMatchingSubscribers,
        ..AckV5::success(1)
    };
    encode_ack_v5(&mut out, PacketType::PubRec, &ack, NO_LIMIT).expect("fits");
    assert_eq!(out, [0x50, 3, 0, 1, 0x10]);
    out.clear();
    let pairs = [("k", "v")];
    let ack = AckV5 {
        reason: ReasonCode::PacketIdentifierNotFound,
        reason_string: Some("gone"),
        user_properties: UserProperties::from_pairs(&pairs),
        ..AckV5::success(2)
    };
    let full = encode_ack_v5(&mut out, PacketType::PubComp, &ack, NO_LIMIT).expect("fits");
    assert_eq!(
        out,
        [
            0x70, 18, 0, 2, 0x92, 14, 0x1F, 0, 4, b'g', b'o', b'n', b'e', 0x26, 0, 1, b'k', 0, 1,
            b'v'
        ]
    );
    assert_eq!(full, out.len());
    // Under a limit the Reason String goes first, then the User Properties
    // (MQTT-3.7.2-2/3); below the 3-byte form nothing is written.
    assert_eq!(
        ack_v5_len(PacketType::PubComp, &ack, full - 1),
        Ok(full - 7)
    );
    assert_eq!(ack_v5_len(PacketType::PubComp, &ack, full - 8), Ok(5));
    out.clear();
    assert_eq!(
        encode_ack_v5(&mut out, PacketType::PubComp, &ack, 4),
        Err(EncodeError::ExceedsMaximumPacketSize { size: 5, max: 4 })
    );
    assert!(out.is_empty());
    assert!(matches!(
        encode_ack_v5(&mut out, PacketType::PubAck, &ack, NO_LIMIT),
        Err(EncodeError::InvalidReasonCode { .. })
    ));
    assert_eq!(
        encode_ack_v5(&mut out, PacketType::PubAck, &AckV5::success(0), NO_LIMIT),
        Err(EncodeError::InvalidPacketId)
    );
}

#[test]
fn connack_suback_unsuback_disconnect_auth_bytes() {
    let mut out = Vec::new();
    let connack = ConnAckV5 {
        session_present: true,
        reason: ReasonCode::Success,
        properties: ConnAckProperties::default(),
    };
    encode_connack_v5(&mut out, &connack, NO_LIMIT).expect("fits");
    assert_eq!(out, [0x20, 3, 1, 0, 0]);
    out.clear();
    // Session Present only with Success (MQTT-3.2.2-6).
    let refused = ConnAckV5 {
        reason: ReasonCode::BadAuthenticationMethod,
        ..connack
    };
    encode_connack_v5(&mut out, &refused, NO_LIMIT).expect("fits");
    assert_eq!(out, [0x20, 3, 0, 0x8C, 0]);
    out.clear();
    let props = ConnAckProperties {
        receive_maximum: Some(20),
        maximum_qos: Some(QoS::AtLeastOnce),
        topic_alias_maximum: Some(8),
        server_keep_alive_secs: Some(30),
        assigned_client_identifier: Some("auto-1"),
        ..ConnAckProperties::default()
    };
    encode_connack_v5(
        &mut out,
        &ConnAckV5 {
            properties: props,
            ..connack
        },
        NO_LIMIT,
    )
    .expect("fits");
    assert_eq!(out[..6], [0x20, 23, 1, 0, 20, 0x21]);
    out.clear();
    let bad = ConnAckProperties {
        maximum_qos: Some(QoS::ExactlyOnce),
        ..ConnAckProperties::default()
    };
    assert_eq!(
        encode_connack_v5(
            &mut out,
            &ConnAckV5 {
                properties: bad,
                ..connack
            },
            NO_LIMIT
        ),
        Err(EncodeError::InvalidProperty(0x24))
    );
    assert!(matches!(
        encode_connack_v5(
            &mut out,
            &ConnAckV5 {
                reason: ReasonCode::GrantedQoS1,
                ..connack
            },
            NO_LIMIT
        ),
        Err(EncodeError::InvalidReasonCode { .. })
    ));

    let codes = [
        ReasonCode::GrantedQoS2,
        ReasonCode::Success,
        ReasonCode::SharedSubscriptionsNotSupported,
    ];
    let suback = SubAckV5 {
        packet_id: 9,
        reason_codes: &codes,
        reason_string: None,
        user_properties: UserProperties::NONE,
    };
    encode_suback_v5(&mut out, &suback, NO_LIMIT).expect("fits");
    assert_eq!(out, [0x90, 6, 0, 9, 0, 2, 0, 0x9E]);
    out.clear();
    let unsuback = SubAckV5 {
        reason_codes: &[ReasonCode::NoSubscriptionExisted],
        ..suback
    };
    encode_unsuback_v5(&mut out, &unsuback, NO_LIMIT).expect("fits");
    assert_eq!(out, [0xB0, 4, 0, 9, 0, 0x11]);
    out.clear();
    assert!(matches!(
        encode_unsuback_v5(&mut out, &suback, NO_LIMIT),
        Err(EncodeError::InvalidReasonCode { .. })
    ));

    encode_disconnect_v5(&mut out, &DisconnectV5::new(ReasonCode::Success), NO_LIMIT)
        .expect("fits");
    encode_disconnect_v5(
        &mut out,
        &DisconnectV5::new(ReasonCode::SessionTakenOver),
        NO_LIMIT,
    )
    .expect("fits");
    assert_eq!(out, [0xE0, 0, 0xE0, 1, 0x8E]);
    out.clear();
    let with_expiry = DisconnectV5 {
        session_expiry_interval_secs: Some(1),
        ..DisconnectV5::new(ReasonCode::Success)
    };
    assert_eq!(
        encode_disconnect_v5(&mut out, &with_expiry, NO_LIMIT),
        Err(EncodeError::InvalidProperty(0x11))
    );
    let moved = DisconnectV5 {
        server_reference: Some("b"),
        ..DisconnectV5::new(ReasonCode::ServerMoved)
    };
    encode_disconnect_v5(&mut out, &moved, NO_LIMIT).expect("fits");
    assert_eq!(out, [0xE0, 6, 0x9D, 4, 0x1C, 0, 1, b'b']);
    out.clear();

    let auth = AuthV5 {
        reason: ReasonCode::ContinueAuthentication,
        authentication_method: Some("M"),
        authentication_data: None,
        reason_string: None,
        user_properties: UserProperties::NONE,
    };
    encode_auth_v5(&mut out, &auth, NO_LIMIT).expect("fits");
    assert_eq!(out, [0xF0, 6, 0x18, 4, 0x15, 0, 1, b'M']);
    let no_method = AuthV5 {
        authentication_method: None,
        ..auth
    };
    assert_eq!(
        encode_auth_v5(&mut out, &no_method, NO_LIMIT),
        Err(EncodeError::InvalidProperty(0x15))
    );
}

#[test]
fn publish_encoder_bytes_and_maximum_packet_size_mqtt_3_1_2_25() {
    let ids = [1, 200];
    let p = PublishV5 {
        topic: "a",
        payload: b"hi",
        qos: QoS::AtLeastOnce,
        retain: false,
        dup: false,
        packet_id: Some(5),
        properties: PublishProperties {
            message_expiry_interval_secs: Some(9),
            subscription_identifiers: SubscriptionIds::from_slice(&ids),
            ..PublishProperties::default()
        },
    };
    let mut out = Vec::new();
    let len = encode_publish_v5(&mut out, &p, NO_LIMIT).expect("fits");
    assert_eq!(
        out,
        [
            0x32, 18, 0, 1, b'a', 0, 5, 10, 0x02, 0, 0, 0, 9, 0x0B, 1, 0x0B, 0xC8, 0x01, b'h', b'i'
        ]
    );
    assert_eq!(publish_v5_len(&p), Ok(len));
    // Too big for the subscriber: nothing written, the size is reported.
    out.clear();
    assert_eq!(
        encode_publish_v5(&mut out, &p, len - 1),
        Err(EncodeError::ExceedsMaximumPacketSize {
            size: len,
            max: len - 1
        })
    );
    assert!(out.is_empty());
    // Buffer too small: nothing written.
    let mut small = [0u8; 8];
    let mut slice: &mut [u8] = &mut small;
    assert!(matches!(
        encode_publish_v5(&mut slice, &p, NO_LIMIT),
        Err(EncodeError::BufferTooSmall { .. })
    ));
    assert_eq!(small, [0; 8]);
    // Invalid inputs.
    let zero_id = [0];
    let bad = PublishV5 {
        properties: PublishProperties {
            subscription_identifiers: SubscriptionIds::from_slice(&zero_id),
            ..p.properties
        },
        ..p
    };
    assert_eq!(
        publish_v5_len(&bad),
        Err(EncodeError::InvalidProperty(0x0B))
    );
    assert_eq!(
        publish_v5_len(&PublishV5 { topic: "", ..p }),
        Err(EncodeError::EmptyTopicWithoutAlias)
    );
    let long = "x".repeat(70_000);
    let pairs = [("k", long.as_str())];
    let too_long = PublishV5 {
        properties: PublishProperties {
            user_properties: UserProperties::from_pairs(&pairs),
            ..p.properties
        },
        ..p
    };
    assert_eq!(publish_v5_len(&too_long), Err(EncodeError::StringTooLong));
}
