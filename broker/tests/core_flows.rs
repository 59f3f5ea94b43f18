//! The sans-IO core driven in memory (no sockets): CONNECT, the QoS 1 and QoS 2 state
//! machines in both directions, retained messages, wills, takeover, persistent sessions,
//! keep-alive. Statement numbers are MQTT 3.1.1's.

mod core_common;
mod protocol_common;

use core_common::{Net, Received, publishes};
use protocol_common::{self as packets, ConnectSpec};

fn net() -> Net {
    Net::new(1, Net::small_config())
}

#[test]
fn connect_gets_connack_accepted_mqtt_3_2_2_3() {
    let mut net = net();
    let (_, connack) = net.connect(0, ConnectSpec::default());
    assert_eq!(
        connack,
        Received::ConnAck {
            session_present: false,
            code: 0
        }
    );
}

#[test]
fn first_packet_must_be_connect_mqtt_3_1_0_1() {
    let mut net = net();
    let client = net.open(0);
    net.send(client, &packets::frame(0xC0, &[]));
    assert!(net.is_closed(client));
    assert!(net.take(client).is_empty());
}

#[test]
fn a_second_connect_closes_the_connection_mqtt_3_1_0_2() {
    let mut net = net();
    let client = net.connect_ok("twice", true);
    net.send(client, &ConnectSpec::default().build());
    assert!(net.is_closed(client));
}

#[test]
fn unacceptable_protocol_level_gets_0x01_mqtt_3_1_2_2() {
    let mut net = net();
    let (client, connack) = net.connect(
        0,
        ConnectSpec {
            level: 6,
            ..ConnectSpec::default()
        },
    );
    assert_eq!(
        connack,
        Received::ConnAck {
            session_present: false,
            code: 1
        }
    );
    assert!(net.is_closed(client));
}

#[test]
fn empty_client_id_without_clean_session_gets_0x02_mqtt_3_1_3_8() {
    let mut net = net();
    let spec = ConnectSpec {
        client_id: Vec::new(),
        clean_session: false,
        ..ConnectSpec::default()
    };
    let (client, connack) = net.connect(0, spec);
    assert_eq!(
        connack,
        Received::ConnAck {
            session_present: false,
            code: 2
        }
    );
    assert!(net.is_closed(client));
}

#[test]
fn empty_client_id_with_clean_session_is_assigned_one_mqtt_3_1_3_6() {
    let mut net = net();
    let spec = ConnectSpec {
        client_id: Vec::new(),
        ..ConnectSpec::default()
    };
    let (a, connack) = net.connect(0, spec.clone());
    assert_eq!(
        connack,
        Received::ConnAck {
            session_present: false,
            code: 0
        }
    );
    let (b, _) = net.connect(0, spec);
    assert!(
        !net.is_closed(a) && !net.is_closed(b),
        "two assigned ids do not collide"
    );
}

#[test]
fn max_connections_refuses_with_0x03() {
    let mut config = Net::small_config();
    config.max_connections = 2;
    let mut net = Net::new(1, config);
    let a = net.connect_ok("a", true);
    let _b = net.connect_ok("b", true);
    let (c, connack) = net.connect(
        0,
        ConnectSpec {
            client_id: b"c".to_vec(),
            ..ConnectSpec::default()
        },
    );
    assert_eq!(
        connack,
        Received::ConnAck {
            session_present: false,
            code: 3
        }
    );
    assert!(net.is_closed(c));
    net.drop_connection(a);
    let (_, connack) = net.connect(
        0,
        ConnectSpec {
            client_id: b"d".to_vec(),
            ..ConnectSpec::default()
        },
    );
    assert_eq!(
        connack,
        Received::ConnAck {
            session_present: false,
            code: 0
        },
        "a slot came free"
    );
}

#[test]
fn qos0_is_routed_to_a_matching_subscriber() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    assert_eq!(net.subscribe(sub, 1, "a/+", 0), [0]);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "a/b", 0, false, None, b"hello");
    net.publish(publisher, "x/b", 0, false, None, b"nobody");
    assert_eq!(
        publishes(&net.take(sub)),
        [("a/b".to_string(), b"hello".to_vec(), 0)]
    );
    assert!(
        net.take(publisher).is_empty(),
        "QoS 0 has no acknowledgement"
    );
}

#[test]
fn qos1_flow_both_directions_mqtt_4_3_2() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    assert_eq!(net.subscribe(sub, 1, "t", 1), [1]);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 1, false, Some(7), b"m");
    assert_eq!(net.take(publisher), [Received::PubAck(7)]);
    let got = net.take(sub);
    let Received::Publish {
        qos: 1,
        packet_id: Some(id),
        dup: false,
        ..
    } = got[0]
    else {
        panic!("{got:?}");
    };
    // Until PUBACK, further messages are in flight too; after it the slot is free.
    net.send(sub, &packets::ack(0x40, id));
    net.publish(publisher, "t", 1, false, Some(8), b"n");
    assert_eq!(
        publishes(&net.take(sub)),
        [("t".to_string(), b"n".to_vec(), 1)]
    );
}

#[test]
fn granted_qos_caps_delivery_qos_mqtt_3_8_4_6() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "t", 0);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 2, false, Some(1), b"m");
    assert_eq!(
        publishes(&net.take(sub)),
        [("t".to_string(), b"m".to_vec(), 0)]
    );
}

#[test]
fn qos2_inbound_duplicate_is_not_routed_twice_mqtt_4_3_3() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "t", 2);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 2, false, Some(5), b"once");
    assert_eq!(net.take(publisher), [Received::PubRec(5)]);
    // The client did not see our PUBREC and sends the PUBLISH again with DUP.
    net.send(publisher, &packets::publish(0x0C, b"t", Some(5), b"once"));
    assert_eq!(net.take(publisher), [Received::PubRec(5)]);
    net.send(publisher, &packets::ack(0x62, 5));
    assert_eq!(net.take(publisher), [Received::PubComp(5)]);
    assert_eq!(publishes(&net.take(sub)).len(), 1, "delivered exactly once");
    // After PUBREL the id is free: the same id is a new message.
    net.publish(publisher, "t", 2, false, Some(5), b"again");
    assert_eq!(publishes(&net.take(sub)).len(), 1);
}

#[test]
fn qos2_outbound_flow_publish_pubrec_pubrel_pubcomp() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "t", 2);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 2, false, Some(1), b"m");
    let got = net.take(sub);
    let Received::Publish {
        qos: 2,
        packet_id: Some(id),
        ..
    } = got[0]
    else {
        panic!("{got:?}");
    };
    net.send(sub, &packets::ack(0x50, id));
    assert_eq!(net.take(sub), [Received::PubRel(id)]);
    net.send(sub, &packets::ack(0x50, id));
    assert_eq!(
        net.take(sub),
        [Received::PubRel(id)],
        "a repeated PUBREC gets PUBREL again"
    );
    net.send(sub, &packets::ack(0x70, id));
    assert!(net.take(sub).is_empty());
}

#[test]
fn pubrel_for_an_unknown_id_still_gets_pubcomp() {
    let mut net = net();
    let client = net.connect_ok("c", true);
    net.send(client, &packets::ack(0x62, 99));
    assert_eq!(net.take(client), [Received::PubComp(99)]);
}

#[test]
fn inflight_window_holds_back_and_releases_in_order() {
    let mut config = Net::small_config();
    config.max_inflight_messages = 2;
    let mut net = Net::new(1, config);
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "t", 1);
    let publisher = net.connect_ok("pub", true);
    for i in 0..5u16 {
        net.publish(publisher, "t", 1, false, Some(i + 1), &[i as u8]);
    }
    let first = net.take(sub);
    assert_eq!(publishes(&first).len(), 2, "window of 2");
    let ids: Vec<u16> = first
        .iter()
        .filter_map(|r| match r {
            Received::Publish { packet_id, .. } => *packet_id,
            _ => None,
        })
        .collect();
    net.send(sub, &packets::ack(0x40, ids[0]));
    let next = publishes(&net.take(sub));
    assert_eq!(next, [("t".to_string(), vec![2], 1)], "the third, in order");
}

#[test]
fn overlapping_subscriptions_deliver_once_at_the_highest_qos_mqtt_3_3_5_1() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "a/#", 0);
    net.subscribe(sub, 2, "a/+", 2);
    net.subscribe(sub, 3, "a/b", 1);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "a/b", 2, false, Some(1), b"m");
    assert_eq!(
        publishes(&net.take(sub)),
        [("a/b".to_string(), b"m".to_vec(), 2)]
    );
}

#[test]
fn resubscribing_replaces_the_subscription_mqtt_3_8_4_3() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "t", 2);
    net.subscribe(sub, 2, "t", 0);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 2, false, Some(1), b"m");
    assert_eq!(
        publishes(&net.take(sub)),
        [("t".to_string(), b"m".to_vec(), 0)]
    );
}

#[test]
fn unsubscribe_stops_delivery_mqtt_3_10_4() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "t", 0);
    net.send(sub, &packets::unsubscribe(2, &[b"t"]));
    assert_eq!(net.take(sub), [Received::UnsubAck(2)]);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 0, false, None, b"m");
    assert!(net.take(sub).is_empty());
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards_mqtt_4_7_2_1() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "#", 0);
    net.subscribe(sub, 2, "+/x", 0);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "$sys/x", 0, false, None, b"m");
    assert!(net.take(sub).is_empty());
}

#[test]
fn retained_set_replace_clear_mqtt_3_3_1_5_to_11() {
    let mut net = net();
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "r/a", 1, true, Some(1), b"one");
    net.publish(publisher, "r/a", 0, true, None, b"two");
    net.publish(publisher, "r/b", 0, true, None, b"b");
    let sub = net.connect_ok("sub", true);
    net.send(sub, &packets::subscribe(1, &[(b"r/+", 1)]));
    let got = net.take(sub);
    assert_eq!(
        got[0],
        Received::SubAck {
            packet_id: 1,
            codes: vec![1]
        },
        "SUBACK first"
    );
    let mut retained: Vec<_> = got[1..]
        .iter()
        .map(|r| match r {
            Received::Publish {
                topic,
                payload,
                retain,
                ..
            } => (topic.clone(), payload.clone(), *retain),
            other => panic!("{other:?}"),
        })
        .collect();
    retained.sort();
    assert_eq!(
        retained,
        [
            ("r/a".to_string(), b"two".to_vec(), true),
            ("r/b".to_string(), b"b".to_vec(), true)
        ],
        "replaced, and sent with RETAIN 1 (MQTT-3.3.1-8)"
    );
    // A live retained publish reaches existing subscribers with RETAIN 0 (MQTT-3.3.1-9).
    net.publish(publisher, "r/a", 0, true, None, b"three");
    assert!(matches!(
        net.take(sub)[..],
        [Received::Publish { retain: false, .. }]
    ));
    // An empty retained payload clears the topic (MQTT-3.3.1-10/11) and is delivered.
    net.publish(publisher, "r/a", 0, true, None, b"");
    assert_eq!(publishes(&net.take(sub)).len(), 1);
    let late = net.connect_ok("late", true);
    net.send(late, &packets::subscribe(1, &[(b"r/a", 0)]));
    assert_eq!(net.take(late).len(), 1, "only the SUBACK: r/a is cleared");
}

#[test]
fn will_is_published_on_network_loss_not_after_disconnect_mqtt_3_1_2_8_and_3_14_4_3() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "will/#", 0);
    let will = Some((b"will/a".to_vec(), b"gone".to_vec(), 0, false));
    let spec = ConnectSpec {
        client_id: b"a".to_vec(),
        will: will.clone(),
        ..ConnectSpec::default()
    };
    let (a, _) = net.connect(0, spec);
    net.drop_connection(a);
    assert_eq!(
        publishes(&net.take(sub)),
        [("will/a".to_string(), b"gone".to_vec(), 0)]
    );
    let spec = ConnectSpec {
        client_id: b"b".to_vec(),
        will,
        ..ConnectSpec::default()
    };
    let (b, _) = net.connect(0, spec);
    net.send(b, &packets::frame(0xE0, &[]));
    assert!(net.is_closed(b));
    assert!(net.take(sub).is_empty(), "no will after DISCONNECT");
}

#[test]
fn takeover_closes_the_first_connection_mqtt_3_1_4_2() {
    let mut net = net();
    let first = net.connect_ok("same", true);
    let second = net.connect_ok("same", true);
    assert!(net.is_closed(first));
    assert!(!net.is_closed(second));
    net.send(second, &packets::frame(0xC0, &[]));
    assert_eq!(net.take(second), [Received::PingResp]);
}

#[test]
fn persistent_session_keeps_subscriptions_and_queues_qos1_while_offline_mqtt_3_1_2_4() {
    let mut net = net();
    let sub = net.connect_ok("p", false);
    net.subscribe(sub, 1, "t", 1);
    net.drop_connection(sub);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 1, false, Some(1), b"while away");
    net.publish(publisher, "t", 0, false, None, b"qos0 not kept");
    let spec = ConnectSpec {
        client_id: b"p".to_vec(),
        clean_session: false,
        ..ConnectSpec::default()
    };
    let (back, connack) = net.connect(0, spec);
    assert_eq!(
        connack,
        Received::ConnAck {
            session_present: true,
            code: 0
        },
        "MQTT-3.2.2-2"
    );
    assert_eq!(
        publishes(&net.take(back)),
        [("t".to_string(), b"while away".to_vec(), 1)]
    );
}

#[test]
fn unacknowledged_messages_are_redelivered_with_dup_after_reconnect_mqtt_4_4_0_1() {
    let mut net = net();
    let sub = net.connect_ok("p", false);
    net.subscribe(sub, 1, "t", 2);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 1, false, Some(1), b"q1");
    net.publish(publisher, "t", 2, false, Some(2), b"q2");
    let got = net.take(sub);
    let ids: Vec<u16> = got
        .iter()
        .filter_map(|r| match r {
            Received::Publish { packet_id, .. } => *packet_id,
            _ => None,
        })
        .collect();
    // The QoS 2 one got as far as PUBREC → PUBREL; then the network goes.
    net.send(sub, &packets::ack(0x50, ids[1]));
    assert_eq!(net.take(sub), [Received::PubRel(ids[1])]);
    net.drop_connection(sub);
    let spec = ConnectSpec {
        client_id: b"p".to_vec(),
        clean_session: false,
        ..ConnectSpec::default()
    };
    let (back, _) = net.connect(0, spec);
    let again = net.take(back);
    assert!(
        matches!(&again[..], [Received::Publish { dup: true, packet_id: Some(id), .. }, Received::PubRel(rel)] if *id == ids[0] && *rel == ids[1]),
        "{again:?}"
    );
}

#[test]
fn clean_session_discards_the_previous_session_mqtt_3_1_2_6() {
    let mut net = net();
    let sub = net.connect_ok("p", false);
    net.subscribe(sub, 1, "t", 1);
    net.drop_connection(sub);
    let back = net.connect_ok("p", true);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 1, false, Some(1), b"m");
    assert!(net.take(back).is_empty(), "subscription gone");
}

#[test]
fn keep_alive_closes_after_one_and_a_half_intervals_mqtt_3_1_2_24() {
    let mut net = net();
    let sub = net.connect_ok("watch", true);
    net.subscribe(sub, 1, "will", 0);
    let spec = ConnectSpec {
        client_id: b"k".to_vec(),
        keep_alive: 2,
        will: Some((b"will".to_vec(), b"ka".to_vec(), 0, false)),
        ..ConnectSpec::default()
    };
    let (client, _) = net.connect(0, spec);
    net.advance(2000);
    net.send(client, &packets::frame(0xC0, &[]));
    assert_eq!(net.take(client), [Received::PingResp]);
    net.advance(2900);
    assert!(
        !net.is_closed(client),
        "2.9 s after the last packet: within 3 s"
    );
    net.advance(1100);
    assert!(net.is_closed(client));
    assert_eq!(
        publishes(&net.take(sub)).len(),
        1,
        "the will is published on keep-alive loss"
    );
}

#[test]
fn connect_timeout_closes_a_silent_connection() {
    let mut config = Net::small_config();
    config.connect_timeout_ms = 1000;
    let mut net = Net::new(1, config);
    let client = net.open(0);
    net.advance(999);
    assert!(!net.is_closed(client));
    net.advance(1001);
    assert!(net.is_closed(client));
}

#[test]
fn oversized_packet_closes_only_that_connection() {
    let mut config = Net::small_config();
    config.max_packet_size_bytes = 100;
    let mut net = Net::new(1, config);
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "t", 0);
    let big = net.connect_ok("big", true);
    net.publish(big, "t", 0, false, None, &[0; 200]);
    assert!(net.is_closed(big));
    let small = net.connect_ok("small", true);
    net.publish(small, "t", 0, false, None, b"ok");
    assert_eq!(
        publishes(&net.take(sub)),
        [("t".to_string(), b"ok".to_vec(), 0)]
    );
}

#[test]
fn packets_split_across_reads_are_reassembled() {
    let mut net = net();
    let sub = net.connect_ok("sub", true);
    net.subscribe(sub, 1, "t", 0);
    let publisher = net.connect_ok("pub", true);
    let mut bytes = packets::publish(0, b"t", None, b"first");
    bytes.extend(packets::publish(0, b"t", None, b"second"));
    for chunk in bytes.chunks(3) {
        net.send(publisher, chunk);
    }
    let got: Vec<Vec<u8>> = publishes(&net.take(sub)).into_iter().map(|p| p.1).collect();
    assert_eq!(got, [b"first".to_vec(), b"second".to_vec()]);
}

#[test]
fn slow_subscriber_queue_is_bounded_dropping_qos0_first() {
    let mut config = Net::small_config();
    config.max_inflight_messages = 1;
    config.max_queued_messages = 3;
    let mut net = Net::new(1, config);
    let sub = net.connect_ok("slow", true);
    net.subscribe(sub, 1, "t", 1);
    let publisher = net.connect_ok("pub", true);
    net.publish(publisher, "t", 1, false, Some(1), b"in flight");
    net.publish(publisher, "t", 1, false, Some(2), b"a");
    // A subscriber that has held its publisher back for `max_publisher_hold_ms` without
    // draining overflows (`core::flow`): its queue limit applies.
    net.advance(net.shards[0].config().max_publisher_hold_ms);
    // Behind a queued message, QoS 0 waits too (order is kept).
    net.publish(publisher, "t", 0, false, None, b"q0");
    net.publish(publisher, "t", 1, false, Some(3), b"b");
    net.publish(publisher, "t", 1, false, Some(4), b"c");
    net.publish(publisher, "t", 1, false, Some(5), b"d");
    let stats = net.shards[0].stats();
    assert_eq!(stats.dropped, 2, "first the QoS 0 one, then the newest");
    let first = net.take(sub);
    let Received::Publish {
        packet_id: Some(id),
        ..
    } = first[0]
    else {
        panic!("{first:?}")
    };
    let mut got = Vec::new();
    let mut next = id;
    for _ in 0..4 {
        net.send(sub, &packets::ack(0x40, next));
        let more = net.take(sub);
        match more.first() {
            Some(Received::Publish {
                payload,
                packet_id: Some(id),
                ..
            }) => {
                got.push(payload.clone());
                next = *id;
            }
            _ => break,
        }
    }
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}
