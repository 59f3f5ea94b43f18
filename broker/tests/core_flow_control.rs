//! Flow control toward slow subscribers (`core::flow`), driven in memory: while an online
//! subscriber's queue is filling, publishers are not read (`Shard::may_read`) on any loop,
//! and what was in transit is queued rather than dropped; a subscriber that stops
//! acknowledging altogether (stalled) or goes offline holds no one back, and what its queue
//! cannot take is dropped and counted. MQTT 3.1.1 §4.3.2 (QoS 1 delivery, MQTT-4.3.2-1) and
//! §4.4 (in-order redelivery) are what the flow protects.

mod core_common;
mod protocol_common;

use core_common::{ClientId, Net, Received};
use protocol_common as packets;
use starling::core::flow::CONGESTION_STALL_MS;
use starling::core::owner_loop;

/// Queue limit of these tests: high-water mark at 25 % (10), low-water mark at 10 % (4).
const MAX_QUEUED: usize = 40;

fn net() -> Net {
    let mut config = Net::small_config();
    config.max_queued_messages = MAX_QUEUED;
    Net::new(2, config)
}

/// Client ids owned by loop 0 and loop 1, so the test crosses loops.
fn ids() -> (String, String) {
    let on = |want: usize| {
        (0..)
            .map(|n| format!("flow-{n}"))
            .find(|id| owner_loop(id, 2) == want)
            .expect("some id hashes to each loop")
    };
    (on(0), on(1))
}

/// A subscriber (owned by loop 0, on `flow/#` at QoS 1, persistent unless `clean`) and a
/// publisher (owned by loop 1), so every test crosses loops.
fn subscriber_and_publisher(clean: bool) -> (Net, ClientId, ClientId) {
    let mut net = net();
    let (sub_id, pub_id) = ids();
    let subscriber = net.connect_ok(&sub_id, clean);
    assert_eq!(net.subscribe(subscriber, 1, "flow/#", 1), vec![1]);
    let publisher = net.connect_ok(&pub_id, true);
    assert_ne!(
        net.clients[subscriber].loop_index,
        net.clients[publisher].loop_index
    );
    (net, subscriber, publisher)
}

fn may_read(net: &Net, client: ClientId) -> bool {
    let c = &net.clients[client];
    net.shards[c.loop_index].may_read(c.conn.expect("connected"))
}

/// The QoS 1 PUBLISHes a client received: (packet id, first payload byte).
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

fn publish_n(net: &mut Net, publisher: ClientId, from: u16, count: u16) {
    for n in from..from + count {
        net.publish(publisher, "flow/t", 1, false, Some(n + 1), &n.to_be_bytes());
    }
}

fn total_stats(net: &Net) -> (u64, u64) {
    net.shards.iter().fold((0, 0), |(dropped, past), s| {
        let stats = s.stats();
        (dropped + stats.dropped, past + stats.queued_past_limit)
    })
}

#[test]
fn a_filling_queue_holds_publishers_back_on_every_loop_and_loses_nothing() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(true);
    assert!(may_read(&net, publisher));

    // 20 go in flight (the window), the next 10 fill the queue to its high-water mark.
    publish_n(&mut net, publisher, 0, 30);
    assert!(net.shared.any_congested());
    assert!(
        !may_read(&net, publisher),
        "a publisher is held back on its own loop"
    );
    assert!(
        may_read(&net, subscriber),
        "the subscriber is read: its PUBACKs drain the queue"
    );

    // What was in transit when the hold began is queued, even past the queue limit.
    publish_n(&mut net, publisher, 30, 50);
    let (dropped, past_limit) = total_stats(&net);
    assert_eq!(dropped, 0);
    assert!(past_limit > 0);

    // The subscriber acknowledges what it gets; every message arrives, once, in order
    // (MQTT-4.3.2-1, §4.6).
    let mut got = Vec::new();
    loop {
        let batch = received_publishes(&mut net, subscriber);
        if batch.is_empty() {
            break;
        }
        for &(packet_id, n) in &batch {
            got.push(n);
            net.send(subscriber, &packets::ack(0x40, packet_id));
        }
    }
    assert_eq!(got, (0..80).collect::<Vec<u16>>());
    assert!(!net.shared.any_congested());
    assert!(may_read(&net, publisher), "released once the queue drained");
}

#[test]
fn a_stalled_subscriber_stops_holding_publishers_back_and_its_drops_are_counted() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(true);
    publish_n(&mut net, publisher, 0, 30);
    assert!(!may_read(&net, publisher));

    // No PUBACK for a whole stall interval: the subscriber no longer holds anyone back.
    net.advance(CONGESTION_STALL_MS);
    assert!(!net.shared.any_congested());
    assert!(may_read(&net, publisher));

    // Its queue now takes only up to its limit; the rest is dropped and counted.
    publish_n(&mut net, publisher, 30, 40);
    let sub_loop = net.clients[subscriber].loop_index;
    let stats = net.shards[sub_loop].stats();
    assert_eq!(stats.dropped_queue_messages, 10, "{stats:?}");
    assert_eq!(stats.dropped, 10);

    // Acknowledging again makes it a live, congested subscriber again.
    let first = received_publishes(&mut net, subscriber);
    let (packet_id, _) = first[0];
    net.send(subscriber, &packets::ack(0x40, packet_id));
    assert!(net.shared.any_congested());
    assert!(!may_read(&net, publisher));
}

#[test]
fn an_offline_session_holds_no_one_back() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(false);
    net.drop_connection(subscriber);
    publish_n(&mut net, publisher, 0, 50);
    assert!(!net.shared.any_congested());
    assert!(may_read(&net, publisher));
    let (dropped, past_limit) = total_stats(&net);
    assert_eq!(dropped, 10, "the queue limit applies to an offline session");
    assert_eq!(past_limit, 0);
}

#[test]
fn a_subscriber_that_goes_offline_while_congested_releases_the_hold() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(false);
    publish_n(&mut net, publisher, 0, 30);
    assert!(!may_read(&net, publisher));
    net.drop_connection(subscriber);
    net.advance(1);
    assert!(!net.shared.any_congested());
    assert!(may_read(&net, publisher));
}

#[test]
fn queued_qos0_messages_hold_publishers_back_too() {
    let (mut net, subscriber, publisher) = subscriber_and_publisher(true);
    // The window (20) fills with unacknowledged QoS 1 messages and one more waits in the
    // queue; QoS 0 messages queue behind it (order is kept) up to the high-water mark (10).
    publish_n(&mut net, publisher, 0, 21);
    for n in 0..8u16 {
        net.publish(publisher, "flow/t", 0, false, None, &n.to_be_bytes());
    }
    assert!(may_read(&net, publisher), "9 queued: under the mark");
    net.publish(publisher, "flow/t", 0, false, None, b"tenth");
    assert!(!may_read(&net, publisher), "10 queued: held back");
    assert!(may_read(&net, subscriber));
}
