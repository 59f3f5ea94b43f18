//! Property-based round trips for every MQTT 5 packet type: what our encoders (or, for
//! packets only a client sends, the test builders) write decodes back to the same values,
//! and the `*_len` functions predict the bytes written exactly. CONNACK, SUBACK and
//! UNSUBACK, which the broker never decodes, are round-tripped through the oracle in
//! `protocol_v5_differential.rs`.

mod protocol_common;

use std::num::NonZeroU16;

use proptest::prelude::*;
use protocol_common::field;
use protocol_common::v5::*;
use starling::protocol::v5::*;
use starling::protocol::{
    AnyConnect, PacketType, PacketV5, QoS, ReasonCode, decode_connect_any, decode_v5,
};

fn qos() -> impl Strategy<Value = QoS> {
    prop::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn users() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[a-zé]{0,6}", "[a-z0-9 ]{0,8}"), 0..3)
}

fn reason_for(packet_type: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<_> = ReasonCode::ALL
        .iter()
        .copied()
        .filter(|c| c.is_valid_for(packet_type))
        .collect();
    prop::sample::select(codes)
}

const NO_LIMIT: usize = UNLIMITED_PACKET_SIZE_BYTES;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn publish_round_trips(
        topic in "[a-z/]{1,20}",
        alias in prop::option::of(1..=u16::MAX),
        payload in prop::collection::vec(any::<u8>(), 0..200),
        qos in qos(), retain in any::<bool>(), dup in any::<bool>(), id in 1..=u16::MAX,
        expiry in prop::option::of(any::<u32>()),
        pfi in prop::option::of(any::<bool>()),
        response in prop::option::of("[a-z/]{1,10}"),
        correlation in prop::option::of(prop::collection::vec(any::<u8>(), 0..10)),
        content in prop::option::of("[a-z/]{0,10}"),
        users in users(),
        sub_ids in prop::collection::vec(1..=MAX_VARINT_VALUE, 0..3),
        use_alias_only in any::<bool>(),
    ) {
        let pairs: Vec<(&str, &str)> = users.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let topic_alias = alias.and_then(NonZeroU16::new);
        let p = PublishV5 {
            topic: if use_alias_only && topic_alias.is_some() { "" } else { &topic },
            payload: &payload,
            qos,
            retain,
            dup: dup && qos != QoS::AtMostOnce,
            packet_id: (qos != QoS::AtMostOnce).then_some(id),
            properties: PublishProperties {
                payload_format: pfi.map(|u| if u { PayloadFormat::Utf8 } else { PayloadFormat::Unspecified }),
                message_expiry_interval_secs: expiry,
                topic_alias,
                response_topic: response.as_deref(),
                correlation_data: correlation.as_deref(),
                user_properties: UserProperties::from_pairs(&pairs),
                subscription_identifiers: SubscriptionIds::from_slice(&sub_ids),
                content_type: content.as_deref(),
            },
        };
        let mut out = Vec::new();
        let n = encode_publish_v5(&mut out, &p, NO_LIMIT).expect("encode");
        prop_assert_eq!((n, publish_v5_len(&p)), (out.len(), Ok(out.len())));
        prop_assert_eq!(decode_publish_from_server(&out), Ok(p));
        // From a client (no Subscription Identifiers) it decodes the same way.
        if sub_ids.is_empty() {
            prop_assert_eq!(decode_v5(&out), Ok(PacketV5::Publish(p)));
        }
        // One byte less of Maximum Packet Size and nothing is written.
        let mut none = Vec::new();
        prop_assert!(encode_publish_v5(&mut none, &p, n - 1).is_err() && none.is_empty());
    }

    #[test]
    fn acks_round_trip(
        t in prop::sample::select(vec![PacketType::PubAck, PacketType::PubRec, PacketType::PubRel, PacketType::PubComp]),
        id in 1..=u16::MAX,
        pick in any::<prop::sample::Index>(),
        reason_string in prop::option::of("[a-z ]{0,12}"),
        users in users(),
        limit in prop::option::of(4usize..40),
    ) {
        let codes: Vec<_> = ReasonCode::ALL.iter().copied().filter(|c| c.is_valid_for(t)).collect();
        let pairs: Vec<(&str, &str)> = users.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ack = AckV5 { packet_id: id, reason: codes[pick.index(codes.len())], reason_string: reason_string.as_deref(), user_properties: UserProperties::from_pairs(&pairs) };
        let limit = limit.unwrap_or(NO_LIMIT);
        let mut out = Vec::new();
        match encode_ack_v5(&mut out, t, &ack, limit) {
            Ok(n) => {
                prop_assert_eq!((n, ack_v5_len(t, &ack, limit)), (out.len(), Ok(out.len())));
                prop_assert!(n <= limit);
                let decoded = match decode_v5(&out).expect("decodes") {
                    PacketV5::PubAck(a) | PacketV5::PubRec(a) | PacketV5::PubRel(a) | PacketV5::PubComp(a) => a,
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                };
                prop_assert_eq!((decoded.packet_id, decoded.reason), (id, ack.reason));
                // What was kept is exactly what was given, or trimmed away whole.
                if limit == NO_LIMIT {
                    prop_assert_eq!(decoded, ack);
                } else {
                    prop_assert!(decoded.reason_string.is_none() || decoded.reason_string == ack.reason_string);
                    prop_assert!(decoded.user_properties.is_empty() || decoded.user_properties == ack.user_properties);
                }
            }
            Err(_) => prop_assert!(out.is_empty()),
        }
    }

    #[test]
    fn disconnect_round_trips(
        reason in reason_for(PacketType::Disconnect).prop_filter("client-sendable", |c| c.client_may_disconnect_with()),
        reason_string in prop::option::of("[a-z ]{0,12}"),
        server_reference in prop::option::of("[a-z.:0-9]{1,12}"),
        users in users(),
    ) {
        let pairs: Vec<(&str, &str)> = users.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let d = DisconnectV5 { reason, session_expiry_interval_secs: None, reason_string: reason_string.as_deref(), server_reference: server_reference.as_deref(), user_properties: UserProperties::from_pairs(&pairs) };
        let mut out = Vec::new();
        let n = encode_disconnect_v5(&mut out, &d, NO_LIMIT).expect("encode");
        prop_assert_eq!((n, disconnect_v5_len(&d, NO_LIMIT)), (out.len(), Ok(out.len())));
        prop_assert_eq!(decode_v5(&out), Ok(PacketV5::Disconnect(d)));
    }

    #[test]
    fn auth_round_trips(
        method in "[A-Z0-9-]{1,12}",
        data in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
        reason_string in prop::option::of("[a-z ]{0,12}"),
        users in users(),
    ) {
        let pairs: Vec<(&str, &str)> = users.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let a = AuthV5 { reason: ReasonCode::ContinueAuthentication, authentication_method: Some(&method), authentication_data: data.as_deref(), reason_string: reason_string.as_deref(), user_properties: UserProperties::from_pairs(&pairs) };
        let mut out = Vec::new();
        encode_auth_v5(&mut out, &a, NO_LIMIT).expect("encode");
        prop_assert_eq!(decode_v5(&out), Ok(PacketV5::Auth(a)));
    }

    #[test]
    fn connect_round_trips(
        client_id in "[a-zA-Z0-9]{0,16}",
        clean in any::<bool>(),
        expiry in prop::option::of(any::<u32>()),
        receive_max in prop::option::of(1..=u16::MAX),
        max_packet in prop::option::of(1..=u32::MAX),
        will in prop::option::of((qos(), any::<bool>(), prop::option::of(any::<u32>()))),
        username in prop::option::of("[a-z]{0,6}"),
        password in prop::option::of(prop::collection::vec(any::<u8>(), 0..6)),
        users in users(),
    ) {
        let mut entries = Vec::new();
        entries.extend(expiry.map(|v| p_u32(0x11, v)));
        entries.extend(receive_max.map(|v| p_u16(0x21, v)));
        entries.extend(max_packet.map(|v| p_u32(0x27, v)));
        entries.extend(users.iter().map(|(k, v)| p_user(k.as_bytes(), v.as_bytes())));
        let mut flags = u8::from(clean) << 1;
        let mut payload = field(client_id.as_bytes());
        if let Some((q, retain, delay)) = will {
            flags |= 0x04 | (q.as_u8() << 3) | (u8::from(retain) << 5);
            payload.extend(props(&delay.map(|d| vec![p_u32(0x18, d)]).unwrap_or_default()));
            payload.extend(field(b"w/t"));
            payload.extend(field(b"gone"));
        }
        if let Some(u) = &username { flags |= 0x80; payload.extend(field(u.as_bytes())); }
        if let Some(p) = &password { flags |= 0x40; payload.extend(field(p)); }
        let frame = connect5(flags, &props(&entries), &payload);
        let Ok(AnyConnect::V5(c)) = decode_connect_any(&frame) else {
            return Err(TestCaseError::fail("refused"));
        };
        prop_assert_eq!(&c.connect.client_id, &client_id);
        prop_assert_eq!(c.connect.clean_session, clean);
        prop_assert_eq!(c.properties.session_expiry_interval_secs, expiry);
        prop_assert_eq!(c.properties.receive_maximum.map(|n| n.get()), receive_max);
        prop_assert_eq!(c.properties.maximum_packet_size.map(|n| n.get()), max_packet);
        let got: Vec<_> = c.properties.user_properties.iter().map(|u| (u.name.clone(), u.value.clone())).collect();
        prop_assert_eq!(got, users);
        prop_assert_eq!(c.connect.will.as_ref().map(|w| (w.qos, w.retain)), will.map(|(q, r, _)| (q, r)));
        prop_assert_eq!(c.will_properties.map(|w| w.will_delay_interval_secs), will.map(|(_, _, d)| d));
        prop_assert_eq!(c.connect.username, username);
        prop_assert_eq!(c.connect.password, password);
    }

    #[test]
    fn subscribe_and_unsubscribe_round_trip(
        id in 1..=u16::MAX,
        sub_id in prop::option::of(1..=MAX_VARINT_VALUE),
        subs in prop::collection::vec((prop_oneof![Just("a/#".to_owned()), Just("$share/g/+".to_owned()), "[a-z]{1,6}"], qos(), any::<bool>(), any::<bool>(), 0u8..3), 1..4),
        users in users(),
    ) {
        let opts: Vec<(Vec<u8>, SubscriptionOptions)> = subs.iter().map(|(f, q, nl, rap, rh)| {
            let retain_handling = [RetainHandling::SendOnSubscribe, RetainHandling::SendOnNewSubscription, RetainHandling::DoNotSend][usize::from(*rh)];
            // No Local is a protocol error on a shared subscription (MQTT-3.8.3-4).
            let no_local = *nl && !f.starts_with(SHARED_PREFIX);
            (f.clone().into_bytes(), SubscriptionOptions { qos: *q, no_local, retain_as_published: *rap, retain_handling })
        }).collect();
        let raw: Vec<(&[u8], u8)> = opts.iter().map(|(f, o)| (f.as_slice(), o.as_byte())).collect();
        let mut entries: Vec<Vec<u8>> = sub_id.map(|s| p_varint(0x0B, s)).into_iter().collect();
        entries.extend(users.iter().map(|(k, v)| p_user(k.as_bytes(), v.as_bytes())));
        let Ok(PacketV5::Subscribe(s)) = decode_v5(&subscribe5(id, &props(&entries), &raw)) else {
            return Err(TestCaseError::fail("SUBSCRIBE refused"));
        };
        prop_assert_eq!((s.packet_id, s.subscription_identifier), (id, sub_id));
        for (sub, (f, o)) in s.subscriptions.iter().zip(&opts) {
            prop_assert_eq!((sub.filter.as_bytes(), sub.options), (f.as_slice(), *o));
        }
        prop_assert_eq!(s.user_properties.len(), users.len());
        let filters: Vec<&[u8]> = opts.iter().map(|(f, _)| f.as_slice()).collect();
        let Ok(PacketV5::Unsubscribe(u)) = decode_v5(&unsubscribe5(id, &props(&entries[usize::from(sub_id.is_some())..]), &filters)) else {
            return Err(TestCaseError::fail("UNSUBSCRIBE refused"));
        };
        prop_assert_eq!(u.filters.len(), filters.len());
    }
}

#[test]
fn pingreq_round_trips() {
    assert_eq!(decode_v5(&[0xC0, 0]), Ok(PacketV5::PingReq));
}
