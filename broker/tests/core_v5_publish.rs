//! MQTT 5 messages in the sans-IO core, with a simulated clock: message expiry (queued and
//! retained), subscription options (No Local, Retain As Published, Retain Handling) and
//! identifiers, topic aliases in both directions, Receive Maximum and Maximum Packet Size,
//! properties passed through, UNSUBACK reason codes, and 3.1.1 ↔ 5.0 interplay.
//! Statement numbers are MQTT 5.0's.

mod core_common;
mod core_v5_common;
mod protocol_common;

use core_v5_common::*;

#[test]
fn an_expired_message_is_not_delivered_and_the_rest_of_the_interval_is_sent_3_3_2_3_3() {
    let mut net = net(1);
    let expiry = [p_u32(SESSION_EXPIRY, 3600)];
    let (sub, _) = connect_v5(&mut net, "sub", true, &expiry, None);
    subscribe_v5(&mut net, sub, "t", 1, None);
    net.drop_connection(sub);
    let (publisher, _) = connect_v5(&mut net, "pub", true, &[], None);
    publish_v5(
        &mut net,
        publisher,
        "t",
        1,
        &[p_u32(MESSAGE_EXPIRY, 5)],
        b"short",
    );
    publish_v5(
        &mut net,
        publisher,
        "t",
        1,
        &[p_u32(MESSAGE_EXPIRY, 60)],
        b"long",
    );
    net.advance(6_000);
    let (sub, _) = connect_v5(&mut net, "sub", false, &expiry, None);
    let got = net.take(sub);
    let delivered: Vec<_> = got
        .iter()
        .filter_map(|r| match r {
            Received::Publish5 {
                payload,
                expiry_secs,
                ..
            } => Some((payload.clone(), *expiry_secs)),
            _ => None,
        })
        .collect();
    // MQTT-3.3.2-5: expired, not delivered; MQTT-3.3.2-6: 60 − 6 seconds left.
    assert_eq!(delivered, vec![(b"long".to_vec(), Some(54))]);
    assert_eq!(net.shards[0].stats().dropped_expired, 1);
}

#[test]
fn no_local_keeps_a_clients_own_messages_from_it_mqtt_3_8_3_3() {
    let mut net = net(1);
    let (me, _) = connect_v5(&mut net, "me", true, &[], None);
    let (other, _) = connect_v5(&mut net, "other", true, &[], None);
    subscribe_v5(&mut net, me, "chat", 0x04, None);
    subscribe_v5(&mut net, other, "chat", 0x04, None);
    publish_v5(&mut net, me, "chat", 0, &[], b"hi");
    assert!(publishes(&net.take(me)).is_empty());
    assert_eq!(publishes(&net.take(other)).len(), 1);
}

#[test]
fn retain_as_published_keeps_the_retain_flag_mqtt_3_3_1_12_13() {
    let mut net = net(1);
    let (rap, _) = connect_v5(&mut net, "rap", true, &[], None);
    let (plain, _) = connect_v5(&mut net, "plain", true, &[], None);
    subscribe_v5(&mut net, rap, "t", 0x08, None);
    subscribe_v5(&mut net, plain, "t", 0, None);
    let (publisher, _) = connect_v5(&mut net, "p", true, &[], None);
    net.send(publisher, &publish5(0x01, b"t", None, &no_props(), b"r"));
    let retain_of = |r: &[Received]| match r.first() {
        Some(Received::Publish5 { retain, .. }) => *retain,
        other => panic!("{other:?}"),
    };
    assert!(retain_of(&net.take(rap)));
    assert!(!retain_of(&net.take(plain)));
}

#[test]
fn retain_handling_1_sends_retained_only_for_a_new_subscription_and_2_never_3_8_3_1() {
    let mut net = net(1);
    let (publisher, _) = connect_v5(&mut net, "p", true, &[], None);
    net.send(publisher, &publish5(0x01, b"t", None, &no_props(), b"r"));
    let (c, _) = connect_v5(&mut net, "c", true, &[], None);
    subscribe_v5(&mut net, c, "t", 0x10, None);
    assert_eq!(publishes(&net.take(c)).len(), 1, "new subscription");
    subscribe_v5(&mut net, c, "t", 0x10, None);
    assert!(publishes(&net.take(c)).is_empty(), "existing subscription");
    subscribe_v5(&mut net, c, "u/#", 0x20, None);
    net.send(publisher, &publish5(0x01, b"u/1", None, &no_props(), b"r"));
    net.take(c);
    subscribe_v5(&mut net, c, "u/#", 0x20, None);
    assert!(publishes(&net.take(c)).is_empty(), "Retain Handling 2");
}

#[test]
fn overlapping_subscriptions_deliver_once_with_every_identifier_mqtt_3_3_4_3() {
    let mut net = net(1);
    let (c, _) = connect_v5(&mut net, "c", true, &[], None);
    subscribe_v5(&mut net, c, "a/+", 1, Some(7));
    subscribe_v5(&mut net, c, "a/b", 0, Some(9));
    let (publisher, _) = connect_v5(&mut net, "p", true, &[], None);
    publish_v5(&mut net, publisher, "a/b", 1, &[], b"x");
    match net.take(c).as_slice() {
        [Received::Publish5 { qos, sub_ids, .. }] => {
            assert_eq!(*qos, 1, "the highest granted QoS (MQTT-3.3.5-1)");
            let mut ids = sub_ids.clone();
            ids.sort();
            assert_eq!(ids, vec![7, 9]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_topic_alias_stands_for_its_topic_and_one_above_the_maximum_is_refused_3_3_2_3_4() {
    let mut net = net(1);
    let (sub, _) = connect_v5(&mut net, "sub", true, &[], None);
    subscribe_v5(&mut net, sub, "long/topic", 0, None);
    let (p, _) = connect_v5(&mut net, "p", true, &[], None);
    net.send(
        p,
        &publish5(
            0,
            b"long/topic",
            None,
            &props(&[p_u16(TOPIC_ALIAS, 1)]),
            b"1",
        ),
    );
    net.send(
        p,
        &publish5(0, b"", None, &props(&[p_u16(TOPIC_ALIAS, 1)]), b"2"),
    );
    let got = publishes(&net.take(sub));
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        ["long/topic"; 2]
    );
    // The default Topic Alias Maximum is 10 (MQTT-3.3.2-9: above it, 0x94).
    net.send(
        p,
        &publish5(0, b"x", None, &props(&[p_u16(TOPIC_ALIAS, 11)]), b"3"),
    );
    assert_eq!(net.take(p), vec![Received::Disconnect(0x94)]);
    assert!(net.is_closed(p));
}

#[test]
fn an_unknown_topic_alias_is_a_protocol_error_3_3_2_3_4() {
    let mut net = net(1);
    let (p, _) = connect_v5(&mut net, "p", true, &[], None);
    net.send(
        p,
        &publish5(0, b"", None, &props(&[p_u16(TOPIC_ALIAS, 2)]), b"x"),
    );
    assert_eq!(net.take(p), vec![Received::Disconnect(0x82)]);
}

#[test]
fn the_clients_receive_maximum_limits_messages_in_flight_to_it_mqtt_3_3_4_9() {
    let mut net = net(1);
    let (sub, _) = connect_v5(&mut net, "sub", true, &[p_u16(RECEIVE_MAXIMUM, 2)], None);
    subscribe_v5(&mut net, sub, "t", 1, None);
    let (p, _) = connect_v5(&mut net, "p", true, &[], None);
    for i in 0..5u8 {
        publish_v5(&mut net, p, "t", 1, &[], &[i]);
    }
    let first = net.take(sub);
    assert_eq!(payloads(&first).len(), 2, "{first:?}");
    let first_id = match &first[0] {
        Received::Publish5 { packet_id, .. } => packet_id.unwrap_or(0),
        other => panic!("{other:?}"),
    };
    net.send(sub, &packets::ack(0x40, first_id));
    assert_eq!(
        payloads(&net.take(sub)).len(),
        1,
        "one acknowledged, one more sent"
    );
}

#[test]
fn a_message_over_the_clients_maximum_packet_size_is_dropped_for_it_only_mqtt_3_1_2_25() {
    let mut net = net(1);
    let (small, _) = connect_v5(
        &mut net,
        "small",
        true,
        &[p_u32(MAXIMUM_PACKET_SIZE, 64)],
        None,
    );
    let (big, _) = connect_v5(&mut net, "big", true, &[], None);
    subscribe_v5(&mut net, small, "t", 0, None);
    subscribe_v5(&mut net, big, "t", 0, None);
    let (p, _) = connect_v5(&mut net, "p", true, &[], None);
    publish_v5(&mut net, p, "t", 0, &[], &[0u8; 100]);
    publish_v5(&mut net, p, "t", 0, &[], b"fits");
    assert_eq!(payloads(&net.take(small)), vec![b"fits".to_vec()]);
    assert_eq!(payloads(&net.take(big)).len(), 2);
    assert_eq!(net.shards[0].stats().dropped_too_large, 1);
}

#[test]
fn user_properties_reach_v5_subscribers_and_v3_ones_get_the_bare_message_3_3_2_3_7() {
    let mut net = net(1);
    let (v5, _) = connect_v5(&mut net, "v5", true, &[], None);
    subscribe_v5(&mut net, v5, "t", 0, None);
    let v3 = net.connect_ok("v3", true);
    net.subscribe(v3, 1, "t", 0);
    let (p, _) = connect_v5(&mut net, "p", true, &[], None);
    publish_v5(
        &mut net,
        p,
        "t",
        0,
        &[p_user(b"k", b"v"), p_user(b"k", b"w")],
        b"m",
    );
    match net.take(v5).as_slice() {
        [
            Received::Publish5 {
                user_properties, ..
            },
        ] => assert_eq!(
            user_properties,
            &[("k".to_string(), "v".to_string()), ("k".into(), "w".into())],
            "in order, unchanged (MQTT-3.3.2-17/18)"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        publishes(&net.take(v3)),
        vec![("t".into(), b"m".to_vec(), 0)]
    );
}

#[test]
fn a_v3_publisher_reaches_a_v5_subscriber() {
    let mut net = net(1);
    let (v5, _) = connect_v5(&mut net, "v5", true, &[], None);
    subscribe_v5(&mut net, v5, "t", 2, None);
    let v3 = v3_publisher(&mut net);
    net.publish(v3, "t", 2, false, Some(3), b"m");
    assert_eq!(
        publishes(&net.take(v5)),
        vec![("t".into(), b"m".to_vec(), 2)]
    );
}

#[test]
fn unsuback_says_which_subscriptions_existed_3_11_3() {
    let mut net = net(1);
    let (c, _) = connect_v5(&mut net, "c", true, &[], None);
    subscribe_v5(&mut net, c, "a", 0, None);
    net.send(c, &unsubscribe5(2, &no_props(), &[b"a", b"b"]));
    assert_eq!(
        net.take(c),
        vec![Received::UnsubAck5 {
            packet_id: 2,
            codes: vec![0x00, 0x11]
        }]
    );
}

#[test]
fn an_expired_retained_message_is_not_sent_and_is_deleted_3_3_2_3_3() {
    let mut net = net(1);
    let (p, _) = connect_v5(&mut net, "p", true, &[], None);
    let expiry = props(&[p_u32(MESSAGE_EXPIRY, 2)]);
    net.send(p, &publish5(0x01, b"r/short", None, &expiry, b"x"));
    net.send(p, &publish5(0x01, b"r/kept", None, &no_props(), b"y"));
    net.advance(1_000);
    let (early, _) = connect_v5(&mut net, "early", true, &[], None);
    subscribe_v5(&mut net, early, "r/#", 0, None);
    match net.take(early).as_slice() {
        [a, b] => {
            let expiries: Vec<_> = [a, b]
                .iter()
                .map(|r| match r {
                    Received::Publish5 { expiry_secs, .. } => *expiry_secs,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert!(expiries.contains(&Some(1)), "1 s of 2 left: {expiries:?}");
        }
        other => panic!("{other:?}"),
    }
    net.advance(1_500);
    let (late, _) = connect_v5(&mut net, "late", true, &[], None);
    subscribe_v5(&mut net, late, "r/#", 0, None);
    assert_eq!(payloads(&net.take(late)), vec![b"y".to_vec()]);
    assert_eq!(net.shared.retained.lock().map(|r| r.len()).unwrap_or(0), 1);
}

#[test]
fn topic_aliases_can_be_remapped_and_are_per_connection_mqtt_3_3_2_12() {
    let mut net = net(1);
    let (sub, _) = connect_v5(&mut net, "sub", true, &[], None);
    subscribe_v5(&mut net, sub, "#", 0, None);
    let (p, _) = connect_v5(&mut net, "p", true, &[], None);
    let alias = |n| props(&[p_u16(TOPIC_ALIAS, n)]);
    net.send(p, &publish5(0, b"one", None, &alias(3), b"1"));
    net.send(p, &publish5(0, b"two", None, &alias(3), b"2"));
    net.send(p, &publish5(0, b"", None, &alias(3), b"3"));
    let topics: Vec<_> = publishes(&net.take(sub)).into_iter().map(|p| p.0).collect();
    assert_eq!(topics, ["one", "two", "two"]);
    let (p2, _) = connect_v5(&mut net, "p2", true, &[], None);
    net.send(p2, &publish5(0, b"", None, &alias(3), b"4"));
    assert_eq!(
        net.take(p2),
        vec![Received::Disconnect(0x82)],
        "not another connection's"
    );
}

#[test]
fn the_broker_uses_topic_aliases_toward_a_client_within_its_maximum_mqtt_3_1_2_26() {
    let mut net = net(1);
    const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    let (sub, _) = connect_v5(
        &mut net,
        "sub",
        true,
        &[p_u16(TOPIC_ALIAS_MAXIMUM, 2)],
        None,
    );
    subscribe_v5(&mut net, sub, "al/#", 0, None);
    let (plain, _) = connect_v5(&mut net, "plain", true, &[], None);
    subscribe_v5(&mut net, plain, "al/#", 0, None);
    let (p, _) = connect_v5(&mut net, "p", true, &[], None);
    let sent = ["al/a", "al/b", "al/a", "al/c", "al/a", "al/a"];
    for topic in sent {
        publish_v5(&mut net, p, topic, 0, &[], b"x");
    }
    let mut mapping = std::collections::HashMap::new();
    let mut resolved = Vec::new();
    let mut alias_only = 0;
    for r in net.take(sub) {
        let Received::Publish5 {
            topic, topic_alias, ..
        } = r
        else {
            panic!("{r:?}")
        };
        let topic = match topic_alias {
            Some(alias) => {
                assert!((1..=2).contains(&alias), "alias {alias} within 1..=2");
                if topic.is_empty() {
                    alias_only += 1;
                    mapping.get(&alias).cloned().expect("an alias set before")
                } else {
                    mapping.insert(alias, topic.clone());
                    topic
                }
            }
            None => topic,
        };
        resolved.push(topic);
    }
    assert_eq!(resolved, sent, "every topic resolves to the one published");
    assert!(
        alias_only >= 2,
        "repeated topics went as aliases ({alias_only})"
    );
    // A client with no Topic Alias Maximum never gets one (MQTT-3.1.2-27).
    for r in net.take(plain) {
        assert!(
            matches!(
                r,
                Received::Publish5 {
                    topic_alias: None,
                    ..
                }
            ),
            "{r:?}"
        );
    }
}

/// The reason code of the last PUBACK or PUBREC `client` received for `packet_id`.
fn last_ack_reason(net: &Net, client: ClientId, packet_id: u16) -> Option<u8> {
    net.clients[client]
        .ack_reasons
        .iter()
        .rev()
        .find(|(t, id, _)| {
            *id == packet_id
                && matches!(
                    t,
                    starling::protocol::PacketType::PubAck | starling::protocol::PacketType::PubRec
                )
        })
        .map(|&(_, _, reason)| reason)
}

const SUCCESS: u8 = 0x00;
const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
const NOT_AUTHORIZED: u8 = 0x87;

#[test]
fn no_matching_subscribers_0x10_holds_across_loops_3_4_2_1() {
    let mut net = net(2);
    let (here, there) = ids_on_two_loops();
    let (publisher, _) = connect_v5(&mut net, &here, true, &[], None);
    let (subscriber, _) = connect_v5(&mut net, &there, true, &[], None);
    assert_ne!(
        net.clients[publisher].loop_index,
        net.clients[subscriber].loop_index
    );
    let send = |net: &mut Net, topic: &str, qos: u8| {
        publish_v5(net, publisher, topic, qos, &[], b"m");
        last_ack_reason(net, publisher, 1)
    };
    // Nobody subscribed anywhere.
    assert_eq!(send(&mut net, "a/b", 1), Some(NO_MATCHING_SUBSCRIBERS));
    assert_eq!(send(&mut net, "a/b", 2), Some(NO_MATCHING_SUBSCRIBERS));
    net.send(publisher, &packets::ack(0x62, 1));
    // A subscriber on the other loop: forwarded and delivered, so never 0x10.
    subscribe_v5(&mut net, subscriber, "a/+", 1, None);
    assert_eq!(send(&mut net, "a/b", 1), Some(SUCCESS));
    assert_eq!(payloads(&net.take(subscriber)), vec![b"m".to_vec()]);
    // Another first level: the other loop's summary rules it out.
    assert_eq!(send(&mut net, "zz/b", 1), Some(NO_MATCHING_SUBSCRIBERS));
    // `#` matches every topic but those starting with `$` (MQTT-4.7.2-1).
    subscribe_v5(&mut net, subscriber, "#", 1, None);
    assert_eq!(send(&mut net, "zz/b", 1), Some(SUCCESS));
    // `$` topics are the broker's: a client's PUBLISH there is refused, not routed.
    assert_eq!(send(&mut net, "$x/b", 1), Some(NOT_AUTHORIZED));
    assert_eq!(payloads(&net.take(subscriber)), vec![b"m".to_vec()]);
    // Unsubscribed: nothing left there.
    net.send(
        subscriber,
        &unsubscribe5(2, &no_props(), &[b"#".as_slice(), b"a/+"]),
    );
    assert!(matches!(
        net.take(subscriber)[..],
        [Received::UnsubAck5 { ref codes, .. }] if codes == &[0, 0]
    ));
    assert_eq!(send(&mut net, "a/b", 1), Some(NO_MATCHING_SUBSCRIBERS));
    // A shared group whose member is on the other loop.
    subscribe_v5(&mut net, subscriber, "$share/g/c/#", 1, None);
    assert_eq!(send(&mut net, "c/d", 1), Some(SUCCESS));
    assert_eq!(publishes(&net.take(subscriber)).len(), 1);
    // The session ends: its subscriptions leave the summary.
    net.send(subscriber, &reason_packet(0xE0, Some(0), None));
    assert_eq!(send(&mut net, "c/d", 1), Some(NO_MATCHING_SUBSCRIBERS));
}

mod summary_never_hides_a_subscriber {
    use super::*;
    use proptest::prelude::*;

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just("+".to_string()), Just("$s".to_string()), "[ab]{1,2}"]
    }

    fn filter() -> impl Strategy<Value = String> {
        (prop::collection::vec(level(), 1..4), any::<bool>()).prop_map(|(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str("/#");
            }
            f
        })
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(prop_oneof![Just("$s".to_string()), "[ab]{1,2}"], 1..4)
            .prop_map(|levels| levels.join("/"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A subscriber on another loop gets exactly the messages its filters match, and the
        /// publisher hears 0x10 only for those nobody got.
        #[test]
        fn across_loops(filters in prop::collection::vec(filter(), 1..4), topics in prop::collection::vec(topic(), 1..6)) {
            let mut net = net(2);
            let (here, there) = ids_on_two_loops();
            let (publisher, _) = connect_v5(&mut net, &here, true, &[], None);
            let (subscriber, _) = connect_v5(&mut net, &there, true, &[], None);
            for f in &filters {
                subscribe_v5(&mut net, subscriber, f, 0, None);
            }
            for t in &topics {
                publish_v5(&mut net, publisher, t, 1, &[], t.as_bytes());
                // A client's PUBLISH to a `$` topic is refused (0x87), never routed.
                let reserved = t.starts_with('$');
                let matched = !reserved && filters.iter().any(|f| starling::topic::matches(f, t));
                let got = publishes(&net.take(subscriber));
                prop_assert_eq!(got.len(), usize::from(matched), "{:?} → {}", filters, t);
                let reason = last_ack_reason(&net, publisher, 1);
                if reserved {
                    prop_assert_eq!(reason, Some(NOT_AUTHORIZED));
                    continue;
                }
                if matched {
                    prop_assert_eq!(reason, Some(SUCCESS));
                }
                prop_assert!(matches!(reason, Some(SUCCESS | NO_MATCHING_SUBSCRIBERS)));
            }
        }
    }
}
