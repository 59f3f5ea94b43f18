//! Property-based round trips.
//!
//! - Packets that travel both ways (PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP): our encoder,
//!   then `check_frame` + `decode`, must give back the same values, byte counts must match
//!   `publish_len`, and a buffer one byte short must be left untouched.
//! - Client→server-only packets (CONNECT, SUBSCRIBE, UNSUBSCRIBE): the test's own builders
//!   write them, `decode_connect`/`decode` must read back exactly what was built.
//! - Server→client-only packets are checked against the `mqtt5-protocol` decoder in
//!   `protocol_differential.rs`.

mod protocol_common;

use proptest::prelude::*;
use protocol_common::{ConnectSpec, subscribe, unsubscribe};
use starling::protocol::{
    Connect, Packet, ProtocolVersion, PublishRef, QoS, Will, check_frame, decode, decode_connect,
    encode_puback, encode_pubcomp, encode_publish, encode_pubrec, encode_pubrel, publish_len,
};

const V311: ProtocolVersion = ProtocolVersion::V311;
const MAX: usize = 1 << 24;

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// Valid topic names: non-empty, no wildcards, no U+0000, some multi-byte characters.
fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9/$é _-]{1,40}"
}

/// Valid topic filters: levels of `+` or plain text, optionally ending in `#`.
fn topic_filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![Just("+".to_owned()), "[a-z0-9$ü]{0,6}"], 0..5),
        any::<bool>(),
    )
        .prop_filter_map("filter must not be empty", |(mut levels, hash)| {
            if hash {
                levels.push("#".to_owned());
            }
            let filter = levels.join("/");
            (!filter.is_empty()).then_some(filter)
        })
}

/// Payload sizes around the varint boundaries (127/128, 16383/16384) and small ones.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..200),
        1 => prop::collection::vec(any::<u8>(), 16_300..16_500),
    ]
}

fn publish_case() -> impl Strategy<Value = (String, Vec<u8>, QoS, bool, bool, u16)> {
    (
        topic_name(),
        payload(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        1..=u16::MAX,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn publish_encodes_and_decodes_back((topic, payload, qos, retain, dup, id) in publish_case()) {
        let publish = PublishRef {
            topic: &topic,
            payload: &payload,
            qos,
            retain,
            dup: dup && qos != QoS::AtMostOnce,
            packet_id: (qos != QoS::AtMostOnce).then_some(id),
        };
        let len = publish_len(V311, topic.len(), payload.len(), qos).expect("valid sizes");

        let mut grown = Vec::new();
        prop_assert_eq!(encode_publish(&mut grown, V311, &publish), Ok(len));
        prop_assert_eq!(grown.len(), len);

        // Into an exactly-sized fixed buffer: same bytes, buffer fully used.
        let mut fixed = vec![0u8; len];
        let mut out: &mut [u8] = &mut fixed;
        prop_assert_eq!(encode_publish(&mut out, V311, &publish), Ok(len));
        prop_assert!(out.is_empty());
        prop_assert_eq!(&fixed, &grown);

        // One byte short: error, nothing written.
        let mut short = vec![0x55u8; len - 1];
        let mut out: &mut [u8] = &mut short;
        prop_assert!(encode_publish(&mut out, V311, &publish).is_err());
        prop_assert_eq!(out.len(), len - 1);
        prop_assert!(short.iter().all(|&b| b == 0x55));

        let header = check_frame(&grown, MAX).expect("whole frame");
        prop_assert_eq!(header.frame_len(), len);
        prop_assert_eq!(decode(V311, &grown), Ok(Packet::Publish(publish)));
    }

    #[test]
    fn acks_encode_and_decode_back(id in 1..=u16::MAX, which in 0..4usize) {
        let mut out = Vec::new();
        let (n, expected) = match which {
            0 => (encode_puback(&mut out, V311, id), Packet::PubAck(id)),
            1 => (encode_pubrec(&mut out, V311, id), Packet::PubRec(id)),
            2 => (encode_pubrel(&mut out, V311, id), Packet::PubRel(id)),
            _ => (encode_pubcomp(&mut out, V311, id), Packet::PubComp(id)),
        };
        prop_assert_eq!(n, Ok(4));
        prop_assert_eq!(check_frame(&out, MAX).map(|h| h.frame_len()), Ok(4));
        prop_assert_eq!(decode(V311, &out), Ok(expected));
    }

    #[test]
    fn built_connect_decodes_to_its_fields(
        v31 in any::<bool>(),
        client_id in "[a-zA-Z0-9]{1,23}",
        empty_id in any::<bool>(),
        clean_session in any::<bool>(),
        keep_alive in any::<u16>(),
        will in prop::option::of((topic_name(), prop::collection::vec(any::<u8>(), 0..50), qos(), any::<bool>())),
        username in prop::option::of("[a-zA-Zß0-9]{0,10}"),
        password in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
    ) {
        let (version, name, level) = if v31 {
            (ProtocolVersion::V31, b"MQIsdp".to_vec(), 3)
        } else {
            (ProtocolVersion::V311, b"MQTT".to_vec(), 4)
        };
        // Keep the id valid: 3.1 needs 1..=23 bytes, 3.1.1 needs clean session if empty.
        let client_id = if empty_id && !v31 { String::new() } else { client_id };
        let clean_session = clean_session || client_id.is_empty();
        // MQTT-3.1.2-22: no password without a username.
        let password = password.filter(|_| username.is_some());
        let spec = ConnectSpec {
            name,
            level,
            clean_session,
            keep_alive,
            client_id: client_id.clone().into_bytes(),
            will: will.clone().map(|(t, p, q, r)| (t.into_bytes(), p, q.as_u8(), r)),
            username: username.clone().map(String::into_bytes),
            password: password.clone(),
            ..ConnectSpec::default()
        };
        let bytes = spec.build();
        prop_assert_eq!(check_frame(&bytes, MAX).map(|h| h.frame_len()), Ok(bytes.len()));
        let expected = Connect {
            version,
            client_id,
            clean_session,
            keep_alive_secs: keep_alive,
            will: will.map(|(topic, payload, qos, retain)| Will { topic, payload, qos, retain }),
            username,
            password,
        };
        prop_assert_eq!(decode_connect(&bytes), Ok(expected.clone()));
        // `decode` hands a CONNECT to the session layer too (it refuses a second one).
        prop_assert_eq!(decode(version, &bytes), Ok(Packet::Connect(Box::new(expected))));
    }

    #[test]
    fn built_subscribe_and_unsubscribe_decode_to_their_fields(
        id in 1..=u16::MAX,
        filters in prop::collection::vec((topic_filter(), qos()), 1..8),
    ) {
        let raw: Vec<(&[u8], u8)> = filters.iter().map(|(f, q)| (f.as_bytes(), q.as_u8())).collect();
        let bytes = subscribe(id, &raw);
        prop_assert_eq!(check_frame(&bytes, MAX).map(|h| h.frame_len()), Ok(bytes.len()));
        prop_assert_eq!(decode(V311, &bytes), Ok(Packet::Subscribe { packet_id: id, filters: filters.clone() }));

        let names: Vec<&[u8]> = filters.iter().map(|(f, _)| f.as_bytes()).collect();
        let bytes = unsubscribe(id, &names);
        let expected: Vec<String> = filters.into_iter().map(|(f, _)| f).collect();
        prop_assert_eq!(decode(V311, &bytes), Ok(Packet::Unsubscribe { packet_id: id, filters: expected }));
    }
}
