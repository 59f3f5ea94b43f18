//! Flow control toward slow subscribers (`core::flow`) and per-client publish rates
//! (`core::gate`), driven in memory. While an online subscriber's queue is filling, the
//! publishers whose messages go to it are not read (`Shard::may_read`), on whatever loop they
//! are, and what was in transit is queued rather than dropped; nobody else is held back. A
//! subscriber that does not drain within `max_publisher_hold_ms`, or goes offline, holds no
//! one back: its queue limit applies and what it cannot take is dropped and counted.
//! MQTT 3.1.1 §4.3.2 (QoS 1 delivery, MQTT-4.3.2-1) and §4.4 (in-order redelivery) are what
//! the flow protects.

mod core_common;
mod protocol_common;

use core_common::{ClientId, Net, Received};
use protocol_common as packets;
use protocol_common::ConnectSpec;
use starling::core::CoreConfig;
use starling::core::owner_loop;

/// Queue limit of these tests: high-water mark at 25 % (10), low-water mark at 10 % (4).
const MAX_QUEUED: usize = 40;
/// How long these tests let a subscriber hold its publishers.
const HOLD_MS: u64 = 500;

fn config() -> CoreConfig {
    let mut config = Net::small_config();
    config.max_queued_messages = MAX_QUEUED;
    config.max_publisher_hold_ms = HOLD_MS;
    config
}

/// A client id whose connection opens on loop `want` of 2.
fn id_on(prefix: &str, want: usize) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| owner_loop(id, 2) == want)
        .expect("some id hashes to each loop")
}

/// A subscriber (on loop 0, on `flow/#` at QoS 1, persistent unless `clean`) and a publisher
/// (on loop 1), so every test crosses loops.
fn subscriber_and_publisher(clean: bool) -> (Net, ClientId, ClientId) {
    let mut net = Net::new(2, config());
    let subscriber = net.connect_ok(&id_on("sub", 0), clean);
    assert_eq!(net.subscribe(subscriber, 1, "flow/#", 1), vec![1]);
    let publisher = net.connect_ok(&id_on("pub", 1), true);
    assert_ne!(
        net.clients[subscriber].loop_index,
        net.clients[publisher].loop_index
    );
    (net, subscriber, publisher)
}

fn may_read(net: &Net, client: ClientId) -> bool {
    let c = &net.clients[client];
    net.shards[c.loop_index].may_read(c.conn.expect("connected"), net.now_ms)
}

/// Congested sessions on every loop, and how many hold their publishers.
fn congestion(net: &Net) -> (usize, usize) {
    net.shards
        .iter()
        .map(|s| s.congestion())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// The QoS 1 PUBLISHes a client received: (packet id, first payload bytes as a number).
fn received_publishes(net: &mut Net, client: ClientId) -> Vec<(u16, u16)> {
    net.take(client)
        .into_iter()
        .filter_map(|r| match r {
            Received::Publish {
                packet_id: Some(id),
                payload,
                ..
            } => Some((id, u16::from_be_bytes([payload[0], payload[1]]))),
            _ => None,
        })
        .collect()
}

fn publish_n(net: &mut Net, publisher: ClientId, topic: &str, from: u16, count: u16) {
    for n in from..from + count {
        net.publish(publisher, topic, 1, false, Some(n + 1), &n.to_be_bytes());
    }
}

/// Acknowledges everything the subscriber gets until nothing more comes; returns the
/// numbers received, in order.
fn drain(net: &mut Net, subscriber: ClientId) -> Vec<u16> {
    let mut got = Vec::new();
    loop {
        let batch = received_publishes(net, subscriber);
        if batch.is_empty() {
            return got;
        }
        for &(packet_id, n) in &batch {
            got.push(n);
            net.send(subscriber, &packets::ack(0x40, packet_id));
        }
    }
}

fn total_stats(net: &Net) -> starling::core::ShardStats {
    let mut total = starling::core::ShardStats::default();
    for s in &net.shards {
        let stats = s.stats();
        total.dropped += stats.dropped;
        total.dropped_queue_messages += stats.dropped_queue_messages;
        total.queued_past_limit += stats.queued_past_limit;
        total.publishers_held += stats.publishers_held;
        total.hold_timeouts += stats.hold_timeouts;
        total.rate_paused_messages += stats.rate_paused_messages;
        total.rate_paused_bytes += stats.rate_paused_bytes;
    }
    total
}

#[test]
fn a_filling_queue_holds_its_publisher_back_across_loops_and_loses_nothing() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(true);
    assert!(may_read(&net, publisher));

    // 20 go in flight (the window), the next 10 fill the queue to its high-water mark.
    publish_n(&mut net, publisher, "flow/t", 0, 30);
    assert_eq!(congestion(&net), (1, 1));
    assert!(
        !may_read(&net, publisher),
        "the publisher is held back on its own loop"
    );
    assert!(
        may_read(&net, subscriber),
        "the subscriber is read: its PUBACKs drain the queue"
    );

    // What was in transit when the hold began is queued, even past the queue limit.
    publish_n(&mut net, publisher, "flow/t", 30, 50);
    let stats = total_stats(&net);
    assert_eq!(stats.dropped, 0);
    assert!(stats.queued_past_limit > 0);
    assert_eq!(stats.publishers_held, 1, "held once, however many messages");

    // The subscriber acknowledges what it gets; every message arrives, once, in order
    // (MQTT-4.3.2-1, §4.6).
    assert_eq!(drain(&mut net, subscriber), (0..80).collect::<Vec<u16>>());
    assert_eq!(congestion(&net), (0, 0));
    assert!(may_read(&net, publisher), "released once the queue drained");
}

#[test]
fn a_publisher_whose_messages_go_elsewhere_is_never_held_back() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(true);
    // Bystanders on both loops, publishing to a topic the congested subscriber does not
    // want, and a subscriber of theirs.
    let other_sub = net.connect_ok(&id_on("other-sub", 1), true);
    assert_eq!(net.subscribe(other_sub, 1, "other/#", 1), vec![1]);
    let bystanders = [
        net.connect_ok(&id_on("bystander", 0), true),
        net.connect_ok(&id_on("bystander", 1), true),
    ];
    publish_n(&mut net, publisher, "flow/t", 0, 40);
    assert!(!may_read(&net, publisher));
    for (i, &bystander) in bystanders.iter().enumerate() {
        assert!(may_read(&net, bystander), "bystander {i}");
        publish_n(&mut net, bystander, "other/t", 0, 5);
        assert!(may_read(&net, bystander), "bystander {i} after publishing");
    }
    assert_eq!(drain(&mut net, other_sub).len(), 10);
    assert!(may_read(&net, subscriber));
}

#[test]
fn the_hold_ends_after_max_publisher_hold_ms_and_the_queue_limit_applies() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(true);
    publish_n(&mut net, publisher, "flow/t", 0, 30);
    assert!(!may_read(&net, publisher));

    // Not a single PUBACK for the whole hold: the publisher is read again.
    net.advance(HOLD_MS - 1);
    assert!(
        !may_read(&net, publisher),
        "still within max_publisher_hold_ms"
    );
    net.advance(1);
    assert!(may_read(&net, publisher));
    assert_eq!(congestion(&net), (1, 0), "congested, overflowing");

    // Its queue now takes only up to its limit; the rest is dropped and counted.
    publish_n(&mut net, publisher, "flow/t", 30, 40);
    let stats = total_stats(&net);
    assert_eq!(stats.hold_timeouts, 1);
    assert_eq!(stats.dropped_queue_messages, 10, "{stats:?}");
    assert_eq!(stats.dropped, 10);
    assert!(
        may_read(&net, publisher),
        "an overflowing subscriber holds no one"
    );

    // Once it has drained, a subscriber that fills up again holds its publisher again.
    assert_eq!(drain(&mut net, subscriber).len(), 60);
    assert_eq!(congestion(&net), (0, 0));
    publish_n(&mut net, publisher, "flow/t", 0, 30);
    assert!(!may_read(&net, publisher));
}

#[test]
fn a_held_publisher_is_released_by_its_last_congested_subscriber() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(true);
    let second = net.connect_ok(&id_on("sub2", 1), true);
    assert_eq!(net.subscribe(second, 1, "flow/#", 1), vec![1]);
    publish_n(&mut net, publisher, "flow/t", 0, 30);
    assert_eq!(congestion(&net), (2, 2));
    assert!(!may_read(&net, publisher));
    assert_eq!(drain(&mut net, subscriber).len(), 30);
    assert!(!may_read(&net, publisher), "the second still holds it");
    assert_eq!(drain(&mut net, second).len(), 30);
    assert!(may_read(&net, publisher));
}

#[test]
fn an_offline_session_holds_no_one_back() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(false);
    net.drop_connection(subscriber);
    publish_n(&mut net, publisher, "flow/t", 0, 50);
    assert_eq!(congestion(&net), (0, 0));
    assert!(may_read(&net, publisher));
    let stats = total_stats(&net);
    assert_eq!(
        stats.dropped, 10,
        "the queue limit applies to an offline session"
    );
    assert_eq!(stats.queued_past_limit, 0);
}

#[test]
fn a_subscriber_that_goes_offline_while_congested_releases_the_hold() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(false);
    publish_n(&mut net, publisher, "flow/t", 0, 30);
    assert!(!may_read(&net, publisher));
    net.drop_connection(subscriber);
    net.advance(1);
    assert_eq!(congestion(&net), (0, 0));
    assert!(may_read(&net, publisher));
}

#[test]
fn queued_qos0_messages_hold_their_publisher_back_too() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(true);
    // The window (20) fills with unacknowledged QoS 1 messages and one more waits in the
    // queue; QoS 0 messages queue behind it (order is kept) up to the high-water mark (10).
    publish_n(&mut net, publisher, "flow/t", 0, 21);
    for n in 0..8u16 {
        net.publish(publisher, "flow/t", 0, false, None, &n.to_be_bytes());
    }
    assert!(may_read(&net, publisher), "9 queued: under the mark");
    net.publish(publisher, "flow/t", 0, false, None, b"tenth");
    assert!(!may_read(&net, publisher), "10 queued: held back");
    assert!(may_read(&net, subscriber));
    // While held, QoS 0 in transit is kept too: nothing is dropped for a subscriber that
    // keeps reading.
    for n in 0..40u16 {
        net.publish(publisher, "flow/t", 0, false, None, &n.to_be_bytes());
    }
    assert_eq!(total_stats(&net).dropped, 0);
}

#[test]
fn a_held_publisher_is_not_closed_for_keep_alive() {
    let mut config = config();
    config.max_publisher_hold_ms = 10_000;
    let mut net = Net::new(2, config);
    let subscriber = net.connect_ok(&id_on("sub", 0), true);
    assert_eq!(net.subscribe(subscriber, 1, "flow/#", 1), vec![1]);
    let spec = ConnectSpec {
        client_id: id_on("pub", 1).into_bytes(),
        keep_alive: 2,
        ..ConnectSpec::default()
    };
    let (publisher, connack) = net.connect(1, spec);
    assert!(matches!(connack, Received::ConnAck { code: 0, .. }));
    publish_n(&mut net, publisher, "flow/t", 0, 30);
    assert!(!may_read(&net, publisher));
    // Held far past its keep-alive grace (3 s): the broker did not read it, so it is not
    // the client's fault.
    for _ in 0..8 {
        net.advance(1000);
    }
    assert!(!net.is_closed(publisher));
    assert!(!may_read(&net, publisher));
    // Released: it has a whole keep-alive from now, and then it is closed if silent.
    drain(&mut net, subscriber);
    assert!(may_read(&net, publisher));
    net.advance(2000);
    assert!(!net.is_closed(publisher));
    net.advance(1000);
    assert!(net.is_closed(publisher));
}

#[test]
fn a_client_over_its_publish_rate_is_not_read_until_it_is_within_it() {
    let mut config = config();
    config.max_publish_rate_messages_per_sec = 10;
    let mut net = Net::new(1, config);
    let publisher = net.connect_ok("rated", true);
    let other = net.connect_ok("other", true);
    // A burst of one second's worth passes.
    for n in 0..10u16 {
        net.publish(publisher, "rate/t", 0, false, None, &n.to_be_bytes());
    }
    assert!(may_read(&net, publisher));
    net.publish(publisher, "rate/t", 0, false, None, b"11th");
    assert!(!may_read(&net, publisher), "over the rate");
    assert!(may_read(&net, other), "only that client is paused");
    net.advance(99);
    assert!(!may_read(&net, publisher));
    net.advance(1);
    assert!(may_read(&net, publisher), "one message's worth later");
    assert_eq!(total_stats(&net).rate_paused_messages, 1);
}

#[test]
fn the_byte_rate_counts_whole_packets() {
    let mut config = config();
    config.max_publish_rate_bytes_per_sec = 1000;
    let mut net = Net::new(1, config);
    let publisher = net.connect_ok("rated", true);
    // A 3-byte fixed header, 2 + 3 bytes of topic and 490 of payload: 498 bytes each.
    let payload = [0u8; 490];
    net.publish(publisher, "b/t", 0, false, None, &payload);
    net.publish(publisher, "b/t", 0, false, None, &payload);
    assert!(
        may_read(&net, publisher),
        "996 bytes: within one second's worth"
    );
    net.publish(publisher, "b/t", 0, false, None, &payload);
    assert!(!may_read(&net, publisher));
    assert_eq!(total_stats(&net).rate_paused_bytes, 1);
}
