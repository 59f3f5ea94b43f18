//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5.0 §4.8.2) in the sans-IO core,
//! across one and two event loops: one member per message, fewest unacknowledged first,
//! strict turns when tied, and what happens to a leaving member's messages.

mod core_common;
mod core_v5_common;
mod protocol_common;

use core_v5_common::*;

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
