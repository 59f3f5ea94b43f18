//! MQTT 5 in the sans-IO core, driven in memory with a simulated clock: session expiry,
//! the Will Delay Interval, message expiry, shared subscriptions across loops, subscription
//! options and identifiers, topic aliases, Receive Maximum and Maximum Packet Size, and
//! 3.1.1 ↔ 5.0 interplay. What needs time is tested here, deterministically; the
//! black-box suite (`tests/python/test_v5_*.py`) covers the same over real sockets.
//! Statement numbers are MQTT 5.0's.

mod core_common;
mod protocol_common;

use core_common::{ClientId, Net, Received, publishes};
use protocol_common::v5::{
    connect5, no_props, p_u16, p_u32, p_user, p_varint, props, publish5, reason_packet, subscribe5,
    unsubscribe5,
};
use protocol_common::{self as packets, ConnectSpec, field};
use std::rc::Rc;

use protocol_common::v5::p_str;
use starling::core::{AuthExchange, AuthStep, Authenticator, owner_loop};
use starling::protocol::ReasonCode;

const SESSION_EXPIRY: u8 = 0x11;
const RECEIVE_MAXIMUM: u8 = 0x21;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const TOPIC_ALIAS: u8 = 0x23;
const MESSAGE_EXPIRY: u8 = 0x02;
const SUBSCRIPTION_ID: u8 = 0x0B;
const WILL_DELAY: u8 = 0x18;

/// A will for [`connect_v5`]: topic, payload, Will Delay Interval.
struct WillSpec<'a> {
    topic: &'a str,
    payload: &'a [u8],
    delay_secs: u32,
}

/// Connects a v5 client on the loop that owns `id`; asserts CONNACK success and returns
/// the client and Session Present.
fn connect_v5(
    net: &mut Net,
    id: &str,
    clean_start: bool,
    connect_props: &[Vec<u8>],
    will: Option<WillSpec<'_>>,
) -> (ClientId, bool) {
    let mut flags = u8::from(clean_start) << 1;
    let mut payload = field(id.as_bytes());
    if let Some(w) = &will {
        flags |= 0x04;
        payload.extend(props(&[p_u32(WILL_DELAY, w.delay_secs)]));
        payload.extend(field(w.topic.as_bytes()));
        payload.extend(field(w.payload));
    }
    let loop_index = owner_loop(id, net.shards.len());
    let client = net.open(loop_index);
    net.send(client, &connect5(flags, &props(connect_props), &payload));
    match next_packet(net, client).as_ref() {
        Some(Received::ConnAck {
            session_present,
            code: 0,
        }) => (client, *session_present),
        other => panic!("expected CONNACK 0 for {id}, got {other:?}"),
    }
}

/// The first packet `client` received (what follows stays for the test to take).
fn next_packet(net: &mut Net, client: ClientId) -> Option<Received> {
    let received = &mut net.clients[client].received;
    (!received.is_empty()).then(|| received.remove(0))
}

fn subscribe_v5(net: &mut Net, client: ClientId, filter: &str, options: u8, sub_id: Option<u32>) {
    let p = match sub_id {
        Some(id) => props(&[p_varint(SUBSCRIPTION_ID, id)]),
        None => no_props(),
    };
    net.send(client, &subscribe5(1, &p, &[(filter.as_bytes(), options)]));
    match next_packet(net, client).as_ref() {
        Some(Received::SubAck { codes, .. }) if codes[0] < 0x80 => {}
        other => panic!("expected SUBACK success, got {other:?}"),
    }
}

fn publish_v5(
    net: &mut Net,
    client: ClientId,
    topic: &str,
    qos: u8,
    p: &[Vec<u8>],
    payload: &[u8],
) {
    let id = (qos > 0).then_some(1);
    net.send(
        client,
        &publish5(qos << 1, topic.as_bytes(), id, &props(p), payload),
    );
}

/// A net with a 3.1.1 client watching `will/#`.
fn net_with_will_watcher() -> (Net, ClientId) {
    let mut net = net(1);
    let watcher = net.connect_ok("watcher", true);
    net.subscribe(watcher, 1, "will/#", 0);
    (net, watcher)
}

/// A will on `will/w` with `delay_secs`.
fn will_w(delay_secs: u32) -> WillSpec<'static> {
    WillSpec {
        topic: "will/w",
        payload: b"gone",
        delay_secs,
    }
}

fn net(loops: usize) -> Net {
    Net::new(loops, Net::small_config())
}

fn v3_publisher(net: &mut Net) -> ClientId {
    net.connect_ok("v3-publisher", true)
}

#[test]
fn a_session_outlives_its_connection_by_its_expiry_interval_3_1_2_11_2() {
    let mut net = net(1);
    let (sub, _) = connect_v5(&mut net, "sub", true, &[p_u32(SESSION_EXPIRY, 10)], None);
    subscribe_v5(&mut net, sub, "t", 1, None);
    net.drop_connection(sub);
    let publisher = v3_publisher(&mut net);
    net.publish(publisher, "t", 1, false, Some(1), b"kept");
    net.advance(9_000);
    let (sub, present) = connect_v5(&mut net, "sub", false, &[p_u32(SESSION_EXPIRY, 10)], None);
    assert!(present, "resumed within the interval (MQTT-3.2.2-3)");
    assert_eq!(
        publishes(&net.take(sub)),
        vec![("t".into(), b"kept".to_vec(), 1)]
    );
}

#[test]
fn an_expired_session_is_gone_3_1_2_11_2() {
    let mut net = net(1);
    let (sub, _) = connect_v5(&mut net, "sub", true, &[p_u32(SESSION_EXPIRY, 10)], None);
    subscribe_v5(&mut net, sub, "t", 1, None);
    net.drop_connection(sub);
    net.advance(10_001);
    assert_eq!(net.shards[0].session_count(), 0, "the session ended");
    assert_eq!(net.shards[0].subscription_count(), 0);
    let (_, present) = connect_v5(&mut net, "sub", false, &[], None);
    assert!(!present, "no session to resume (MQTT-3.2.2-3)");
}

#[test]
fn expiry_zero_ends_the_session_with_the_connection_and_max_never_expires() {
    let mut net = net(1);
    let (a, _) = connect_v5(&mut net, "zero", true, &[], None);
    subscribe_v5(&mut net, a, "t", 1, None);
    let (b, _) = connect_v5(
        &mut net,
        "forever",
        true,
        &[p_u32(SESSION_EXPIRY, u32::MAX)],
        None,
    );
    subscribe_v5(&mut net, b, "t", 1, None);
    net.drop_connection(a);
    net.drop_connection(b);
    net.advance(100_000_000);
    assert_eq!(
        net.shards[0].session_count(),
        1,
        "only the 0xFFFFFFFF session is left"
    );
    let (_, present) = connect_v5(&mut net, "forever", false, &[], None);
    assert!(present);
}

#[test]
fn a_disconnect_may_shorten_the_expiry_but_not_raise_it_from_zero_3_14_2_2_2() {
    let mut net = net(1);
    let (a, _) = connect_v5(&mut net, "a", true, &[p_u32(SESSION_EXPIRY, 100)], None);
    subscribe_v5(&mut net, a, "t", 1, None);
    net.send(
        a,
        &reason_packet(0xE0, Some(0), Some(&props(&[p_u32(SESSION_EXPIRY, 0)]))),
    );
    assert!(net.is_closed(a));
    assert_eq!(
        net.shards[0].session_count(),
        0,
        "expiry 0 at DISCONNECT ends it"
    );

    let (b, _) = connect_v5(&mut net, "b", true, &[], None);
    net.send(
        b,
        &reason_packet(0xE0, Some(0), Some(&props(&[p_u32(SESSION_EXPIRY, 60)]))),
    );
    assert_eq!(
        net.take(b),
        vec![Received::Disconnect(0x82)],
        "protocol error"
    );
    assert!(net.is_closed(b));
}

#[test]
fn a_delayed_will_waits_for_its_delay_3_1_3_2_2() {
    let (mut net, watcher) = net_with_will_watcher();
    let will = will_w(5);
    let (w, _) = connect_v5(
        &mut net,
        "w",
        true,
        &[p_u32(SESSION_EXPIRY, 60)],
        Some(will),
    );
    net.drop_connection(w);
    net.advance(4_000);
    assert!(
        publishes(&net.take(watcher)).is_empty(),
        "not before the delay"
    );
    net.advance(1_000);
    assert_eq!(
        publishes(&net.take(watcher)),
        vec![("will/w".into(), b"gone".to_vec(), 0)]
    );
}

#[test]
fn a_reconnect_within_the_delay_cancels_the_will_mqtt_3_1_3_9() {
    let (mut net, watcher) = net_with_will_watcher();
    let will = || will_w(5);
    let expiry = [p_u32(SESSION_EXPIRY, 60)];
    let (w, _) = connect_v5(&mut net, "w", true, &expiry, Some(will()));
    net.drop_connection(w);
    net.advance(2_000);
    let (_, present) = connect_v5(&mut net, "w", false, &expiry, None);
    assert!(present);
    net.advance(60_000);
    assert!(publishes(&net.take(watcher)).is_empty(), "cancelled");
}

#[test]
fn a_will_is_published_at_session_end_if_that_comes_first_3_1_3_2_2() {
    let (mut net, watcher) = net_with_will_watcher();
    let will = will_w(3600);
    let (w, _) = connect_v5(&mut net, "w", true, &[p_u32(SESSION_EXPIRY, 2)], Some(will));
    net.drop_connection(w);
    net.advance(2_000);
    assert_eq!(
        publishes(&net.take(watcher)).len(),
        1,
        "at the session's expiry"
    );
}

#[test]
fn disconnect_with_will_message_0x04_publishes_the_will_3_14_2_1() {
    let (mut net, watcher) = net_with_will_watcher();
    let will = || will_w(0);
    let (w, _) = connect_v5(&mut net, "w", true, &[], Some(will()));
    net.send(w, &reason_packet(0xE0, Some(0x04), None));
    assert_eq!(publishes(&net.take(watcher)).len(), 1);
    let (w, _) = connect_v5(&mut net, "w", true, &[], Some(will()));
    net.send(w, &reason_packet(0xE0, None, None));
    assert!(
        publishes(&net.take(watcher)).is_empty(),
        "normal disconnection (MQTT-3.1.2-10)"
    );
}

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

/// Two client ids owned by different loops of a 2-loop net.
fn ids_on_two_loops() -> (String, String) {
    let first = (0..)
        .map(|i| format!("m{i}"))
        .find(|id| owner_loop(id, 2) == 0);
    let second = (0..)
        .map(|i| format!("m{i}"))
        .find(|id| owner_loop(id, 2) == 1);
    (first.unwrap_or_default(), second.unwrap_or_default())
}

fn payloads(received: &[Received]) -> Vec<Vec<u8>> {
    publishes(received).into_iter().map(|(_, p, _)| p).collect()
}

#[test]
fn a_shared_group_spreads_messages_over_members_on_both_loops_4_8_2() {
    let mut net = net(2);
    let (id_a, id_b) = ids_on_two_loops();
    let (a, _) = connect_v5(&mut net, &id_a, true, &[], None);
    let (b, _) = connect_v5(&mut net, &id_b, true, &[], None);
    subscribe_v5(&mut net, a, "$share/g/jobs/#", 1, None);
    subscribe_v5(&mut net, b, "$share/g/jobs/#", 1, None);
    let (publisher, _) = connect_v5(&mut net, "producer", true, &[], None);
    for i in 0..10u8 {
        publish_v5(&mut net, publisher, "jobs/x", 1, &[], &[i]);
    }
    let (got_a, got_b) = (payloads(&net.take(a)), payloads(&net.take(b)));
    // Each message to one member only; neither acknowledges, so the fewest-unacknowledged
    // rule alternates them.
    assert_eq!((got_a.len(), got_b.len()), (5, 5), "{got_a:?} {got_b:?}");
    let mut all: Vec<_> = got_a.into_iter().chain(got_b).collect();
    all.sort();
    assert_eq!(all, (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
}

#[test]
fn a_member_that_leaves_hands_its_unacknowledged_messages_to_the_group_4_8_2() {
    let mut net = net(2);
    let (id_a, id_b) = ids_on_two_loops();
    let (a, _) = connect_v5(&mut net, &id_a, true, &[], None);
    let (b, _) = connect_v5(&mut net, &id_b, true, &[], None);
    subscribe_v5(&mut net, a, "$share/g/jobs", 1, None);
    subscribe_v5(&mut net, b, "$share/g/jobs", 1, None);
    let (publisher, _) = connect_v5(&mut net, "producer", true, &[], None);
    for i in 0..6u8 {
        publish_v5(&mut net, publisher, "jobs", 1, &[], &[i]);
    }
    let got_a = payloads(&net.take(a));
    let first_b = payloads(&net.take(b));
    assert_eq!(got_a.len(), 3);
    // A's session ends with its connection (expiry 0): its 3 QoS 1 messages go to B.
    net.drop_connection(a);
    let mut second_b = payloads(&net.take(b));
    second_b.sort();
    let mut expected = got_a.clone();
    expected.sort();
    assert_eq!(
        second_b, expected,
        "B got A's unacknowledged messages ({first_b:?} before)"
    );
}

#[test]
fn members_on_one_loop_take_turns_when_equally_loaded_4_8_2() {
    let mut net = net(1);
    let mut members = Vec::new();
    for id in ["s1", "s2", "s3"] {
        let (c, _) = connect_v5(&mut net, id, true, &[], None);
        subscribe_v5(&mut net, c, "$share/q/t", 0, None);
        members.push(c);
    }
    let (publisher, _) = connect_v5(&mut net, "p", true, &[], None);
    for i in 0..9u8 {
        publish_v5(&mut net, publisher, "t", 0, &[], &[i]);
    }
    // QoS 0 leaves nothing unacknowledged: round-robin.
    for m in members {
        assert_eq!(payloads(&net.take(m)).len(), 3);
    }
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
fn takeover_tells_the_old_v5_connection_0x8e_mqtt_3_1_4_3() {
    let mut net = net(1);
    let (old, _) = connect_v5(&mut net, "same", true, &[], None);
    let (_new, _) = connect_v5(&mut net, "same", true, &[], None);
    assert_eq!(net.take(old), vec![Received::Disconnect(0x8E)]);
    assert!(net.is_closed(old));
}

#[test]
fn keep_alive_timeout_tells_a_v5_client_0x8d_3_1_2_10() {
    let mut net = net(1);
    let (c, _) = connect_v5(&mut net, "c", true, &[], None);
    // connect5 asks for a 30 s keep-alive: enforced at 45 s.
    net.advance(44_000);
    assert!(!net.is_closed(c));
    net.advance(2_000);
    assert_eq!(net.take(c), vec![Received::Disconnect(0x8D)]);
    assert!(net.is_closed(c));
}

#[test]
fn a_v3_connect_still_works_next_to_v5() {
    let mut net = net(1);
    let (c, connack) = net.connect(0, ConnectSpec::default());
    assert_eq!(
        connack,
        Received::ConnAck {
            session_present: false,
            code: 0
        }
    );
    assert!(!net.is_closed(c));
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
fn a_qos2_message_in_flight_to_a_member_is_not_given_to_another_mqtt_4_8_2_5() {
    let mut net = net(1);
    let (a, _) = connect_v5(&mut net, "a", true, &[], None);
    subscribe_v5(&mut net, a, "$share/g/t", 2, None);
    let (p, _) = connect_v5(&mut net, "p", true, &[], None);
    publish_v5(&mut net, p, "t", 2, &[], b"once");
    assert_eq!(payloads(&net.take(a)), vec![b"once".to_vec()]);
    let (b, _) = connect_v5(&mut net, "b", true, &[], None);
    subscribe_v5(&mut net, b, "$share/g/t", 2, None);
    net.drop_connection(a); // its session ends (expiry 0) with the QoS 2 message in flight
    assert!(
        payloads(&net.take(b)).is_empty(),
        "never sent to a second member"
    );
}

#[test]
fn a_takeover_that_continues_the_session_cancels_a_delayed_will_but_a_clean_one_sends_it() {
    let (mut net, watcher) = net_with_will_watcher();
    let will = || will_w(30);
    let expiry = [p_u32(SESSION_EXPIRY, 600)];
    let (_old, _) = connect_v5(&mut net, "w", true, &expiry, Some(will()));
    let (_new, present) = connect_v5(&mut net, "w", false, &expiry, Some(will()));
    assert!(present);
    net.advance(60_000);
    assert!(publishes(&net.take(watcher)).is_empty(), "MQTT-3.1.3-9");
    // Clean Start 1: the old session ends, and its will with it (§3.1.3.2.2).
    let (_newest, present) = connect_v5(&mut net, "w", true, &expiry, None);
    assert!(!present);
    assert_eq!(publishes(&net.take(watcher)).len(), 1);
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

/// A toy challenge-response method: "hello" → challenge, "response" → welcome.
struct Toy;

struct ToyExchange {
    challenged: bool,
}

impl Authenticator for Toy {
    fn method(&self) -> &str {
        "TOY"
    }
    fn begin(&self, _client_id: &str) -> Box<dyn AuthExchange> {
        Box::new(ToyExchange { challenged: false })
    }
}

impl AuthExchange for ToyExchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        match (self.challenged, data) {
            (false, Some(b"hello")) => {
                self.challenged = true;
                AuthStep::Continue(b"challenge".to_vec())
            }
            (true, Some(b"response")) => AuthStep::Success(Some(b"welcome".to_vec())),
            _ => AuthStep::Refuse(ReasonCode::NotAuthorized),
        }
    }
}

const AUTH_METHOD: u8 = 0x15;
const AUTH_DATA: u8 = 0x16;

fn auth_props(method: &[u8], data: &[u8]) -> Vec<Vec<u8>> {
    vec![p_str(AUTH_METHOD, method), p_str(AUTH_DATA, data)]
}

fn toy_net() -> Net {
    let mut net = net(1);
    net.shards[0].set_authenticator(Rc::new(Toy));
    net
}

fn auth_connect(net: &mut Net, id: &str, method: &[u8], data: &[u8]) -> ClientId {
    let client = net.open(0);
    let p = props(&auth_props(method, data));
    net.send(client, &connect5(0x02, &p, &field(id.as_bytes())));
    client
}

fn auth_packet(reason: u8, method: &[u8], data: &[u8]) -> Vec<u8> {
    reason_packet(0xF0, Some(reason), Some(&props(&auth_props(method, data))))
}

#[test]
fn an_enhanced_authentication_exchange_ends_in_connack_4_12() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"TOY", b"hello");
    assert_eq!(
        net.take(c),
        vec![Received::Auth {
            reason: 0x18,
            data: Some(b"challenge".to_vec())
        }],
        "AUTH 0x18 Continue authentication (MQTT-4.12.0-2)"
    );
    net.send(c, &auth_packet(0x18, b"TOY", b"response"));
    assert!(matches!(
        net.take(c).first(),
        Some(Received::ConnAck { code: 0, .. })
    ));
    subscribe_v5(&mut net, c, "t", 0, None);
    assert!(!net.is_closed(c), "a connected client like any other");
}

#[test]
fn a_failed_exchange_is_refused_with_its_reason_and_closed_4_12() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"TOY", b"hello");
    net.take(c);
    net.send(c, &auth_packet(0x18, b"TOY", b"wrong"));
    assert_eq!(
        net.take(c),
        vec![Received::ConnAck {
            session_present: false,
            code: 0x87
        }]
    );
    assert!(net.is_closed(c));
}

#[test]
fn another_method_is_refused_with_0x8c_and_other_packets_mid_exchange_with_0x82() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"SCRAM-SHA-256", b"x");
    assert_eq!(
        net.take(c),
        vec![Received::ConnAck {
            session_present: false,
            code: 0x8C
        }]
    );
    let d = auth_connect(&mut net, "d", b"TOY", b"hello");
    net.take(d);
    net.send(d, &[0xC0, 0]); // PINGREQ before CONNACK
    assert_eq!(
        net.take(d),
        vec![Received::ConnAck {
            session_present: false,
            code: 0x82
        }]
    );
    assert!(net.is_closed(d));
}

#[test]
fn an_exchange_that_never_finishes_is_closed_by_the_connect_timeout() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"TOY", b"hello");
    net.take(c);
    net.advance(Net::small_config().connect_timeout_ms + 1_000);
    assert!(net.is_closed(c));
}

#[test]
fn re_authentication_runs_the_exchange_again_4_12_1() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"TOY", b"hello");
    net.send(c, &auth_packet(0x18, b"TOY", b"response"));
    net.take(c);
    net.send(c, &auth_packet(0x19, b"TOY", b"hello"));
    assert_eq!(
        net.take(c),
        vec![Received::Auth {
            reason: 0x18,
            data: Some(b"challenge".to_vec())
        }]
    );
    net.send(c, &auth_packet(0x18, b"TOY", b"response"));
    assert_eq!(
        net.take(c),
        vec![Received::Auth {
            reason: 0x00,
            data: Some(b"welcome".to_vec())
        }]
    );
    // A re-authentication with another method is a protocol error (MQTT-4.12.0-5)…
    net.send(c, &auth_packet(0x19, b"OTHER", b"hello"));
    assert_eq!(net.take(c), vec![Received::Disconnect(0x82)]);
    // …and a refused one ends the connection with its reason.
    let d = auth_connect(&mut net, "d", b"TOY", b"hello");
    net.send(d, &auth_packet(0x18, b"TOY", b"response"));
    net.take(d);
    net.send(d, &auth_packet(0x19, b"TOY", b"nonsense"));
    assert_eq!(net.take(d), vec![Received::Disconnect(0x87)]);
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

#[test]
fn qos0_members_on_both_loops_take_strict_turns_within_one_read_4_8_2() {
    let mut net = net(2);
    let (id_a, id_b) = ids_on_two_loops();
    let (a, _) = connect_v5(&mut net, &id_a, true, &[], None);
    let (b, _) = connect_v5(&mut net, &id_b, true, &[], None);
    subscribe_v5(&mut net, a, "$share/g/t", 0, None);
    subscribe_v5(&mut net, b, "$share/g/t", 0, None);
    let (p, _) = connect_v5(&mut net, "producer", true, &[], None);
    // Ten PUBLISHes in one read: all are routed before the other loop sees any, so a
    // member's load must not count QoS 0 messages it has not been sent yet.
    let burst: Vec<u8> = (0..10u8)
        .flat_map(|i| publish5(0, b"t", None, &no_props(), &[i]))
        .collect();
    net.send(p, &burst);
    let (got_a, got_b) = (payloads(&net.take(a)), payloads(&net.take(b)));
    assert_eq!((got_a.len(), got_b.len()), (5, 5), "{got_a:?} {got_b:?}");
}
