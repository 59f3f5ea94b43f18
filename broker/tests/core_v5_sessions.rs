//! MQTT 5 sessions in the sans-IO core, with a simulated clock: the Session Expiry Interval
//! (0, finite, for ever, changed at DISCONNECT), the Will Delay Interval (and what cancels
//! or hastens it), DISCONNECT with Will Message, takeover (0x8E) and keep-alive (0x8D).
//! The black-box suite (`tests/python/test_v5_*.py`) covers the same over real sockets.
//! Statement numbers are MQTT 5.0's.

mod core_common;
mod core_v5_common;
mod protocol_common;

use core_v5_common::*;

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
