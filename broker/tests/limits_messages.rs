//! Per-client limits against the real binary: packet size, keep-alive cap, in-flight window,
//! queued messages and bytes, subscriptions, topic length and levels. Each test crosses the
//! limit, sees the documented refusal (close, SUBACK 0x80, messages held back or dropped)
//! and checks that a bystander client is unaffected.

mod server_common;

use std::time::{Duration, Instant};

use server_common::{Broker, Client, field, frame, puback, publish};

/// How long a test waits to be sure nothing more arrives.
const QUIET: Duration = Duration::from_millis(300);

/// CONNECT (3.1.1) with the clean-session flag and keep-alive given.
fn connect_frame(client_id: &str, clean: bool, keep_alive_secs: u16) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.push(4);
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&keep_alive_secs.to_be_bytes());
    body.extend(field(client_id.as_bytes()));
    frame(0x10, &body)
}

/// A persistent-session client (clean session 0); returns it and "session present".
fn connect_persistent(broker: &Broker, client_id: &str) -> (Client, bool) {
    let mut client = Client::open(broker);
    client.send(&connect_frame(client_id, false, 60));
    let connack = client.recv().expect("CONNACK");
    assert_eq!((connack.first, connack.body[1]), (0x20, 0), "{connack:?}");
    (client, connack.body[0] == 1)
}

/// Asserts nothing arrives within [`QUIET`].
fn assert_quiet(client: &mut Client) {
    client
        .stream
        .set_read_timeout(Some(QUIET))
        .expect("timeout");
    if let Ok(packet) = client.recv() {
        panic!("expected nothing, got {packet:?}");
    }
    client
        .stream
        .set_read_timeout(Some(server_common::READ_TIMEOUT))
        .expect("timeout");
}

#[test]
fn a_packet_over_max_packet_size_closes_only_its_connection() {
    let broker = Broker::start(&["--max-packet-size-bytes", "1024"]);
    let mut bystander = Client::connected(&broker, "bystander");
    let mut big = Client::connected(&broker, "big");
    big.send(&publish("t", &[0u8; 2000], 0, 0));
    big.expect_closed();
    bystander.ping();
    broker.wait_log("closing connection: bad frame", 1);
}

#[test]
fn the_keep_alive_cap_closes_a_client_silent_past_it() {
    let broker = Broker::start(&["--max-keep-alive-secs", "10"]);
    let mut bystander = Client::open(&broker);
    bystander.send(&connect_frame("bystander", true, 10));
    assert_eq!(bystander.recv().expect("CONNACK").body, vec![0, 0]);
    // Within the cap: enforced at 1.5 s.
    let mut silent = Client::open(&broker);
    silent.send(&connect_frame("silent", true, 1));
    assert_eq!(silent.recv().expect("CONNACK").body, vec![0, 0]);
    let started = Instant::now();
    // The bystander is held to the cap too: it pings every 300 ms meanwhile.
    loop {
        bystander.ping();
        if silent.closed_within(Duration::from_millis(300)) {
            break;
        }
        // 1.5 s, up to a 1 s timer slot, slack; plus any time the loop reported it did
        // not run (not counted against the client).
        let stalled = broker.stalled();
        let waited = started.elapsed();
        assert!(
            waited < Duration::from_secs(4) + stalled,
            "still open after {waited:?} (stalled {stalled:?})"
        );
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "closed after {waited:?}");
    bystander.ping();
}

#[test]
fn a_v3_client_asking_past_the_keep_alive_cap_is_refused_with_0x02() {
    let broker = Broker::start(&["--max-keep-alive-secs", "1"]);
    // 3.1.1 cannot be told a shorter keep-alive: over the cap (60 s), or none (0), is refused
    // with CONNACK 0x02 instead of being accepted and then closed for silence.
    for (n, keep_alive_secs) in [60u16, 0].into_iter().enumerate() {
        let mut client = Client::open(&broker);
        client.send(&connect_frame("long", true, keep_alive_secs));
        assert_eq!(client.recv().expect("CONNACK").body, vec![0, 0x02]);
        client.expect_closed();
        broker.wait_log("CONNECT refused: keep-alive over the cap", n + 1);
    }
    assert!(
        broker
            .log_text()
            .contains("\"long\" asked for a keep-alive of 60 s")
    );
}

#[test]
fn the_inflight_window_holds_messages_until_acknowledged() {
    let broker = Broker::start(&["--max-inflight-messages", "2"]);
    let mut subscriber = Client::connected(&broker, "sub");
    assert_eq!(subscriber.subscribe(1, "w/#", 1), vec![1]);
    let mut publisher = Client::connected(&broker, "pub");
    for i in 0..5u16 {
        publisher.send(&publish("w/t", &[i as u8], 1, i + 1));
        assert_eq!(publisher.recv().expect("PUBACK").first, 0x40);
    }
    let first = subscriber.recv_publish();
    let _second = subscriber.recv_publish();
    assert_quiet(&mut subscriber);
    subscriber.send(&puback(first.packet_id.expect("QoS 1")));
    assert_eq!(subscriber.recv_publish().payload, vec![2]);
    publisher.ping();
}

/// Publishes `count` QoS 1 messages of `payload_bytes` to `q/t` for an offline persistent
/// subscriber, reconnects it and returns the payloads it gets.
///
/// A PUBACK only says the publisher's loop has routed the message; the subscriber's session
/// may be on the other loop, reached through a mailbox, and a message that gets there after
/// the reconnect is delivered live rather than queued. So the reconnect waits until the
/// broker has queued or dropped (for `reason`) every message, and what the subscriber got is
/// read up to a sentinel published after the reconnect (delivered after anything queued).
fn offline_delivery(
    args: &[&str],
    count: u16,
    payload_bytes: usize,
    reason: &str,
) -> (Broker, Vec<Vec<u8>>) {
    let broker = Broker::start_monitored(args);
    let (mut subscriber, _) = connect_persistent(&broker, "offline");
    assert_eq!(subscriber.subscribe(1, "q/#", 1), vec![1]);
    subscriber.disconnect();
    let mut publisher = Client::connected(&broker, "pub");
    for i in 0..count {
        let mut payload = vec![b'x'; payload_bytes];
        payload[0] = i as u8;
        publisher.send(&publish("q/t", &payload, 1, i + 1));
        assert_eq!(publisher.recv().expect("PUBACK").first, 0x40);
    }
    let all_there = broker.wait_metrics(|b| {
        let queued = b.metric("starling_queued_messages", &[]);
        let dropped = b.metric("starling_messages_dropped_total", &[("reason", reason)]);
        queued + dropped >= f64::from(count)
    });
    assert!(all_there, "{}", broker.metrics_text());
    let (mut subscriber, present) = connect_persistent(&broker, "offline");
    assert!(present);
    publisher.send(&publish("q/t", SENTINEL, 1, count + 1));
    assert_eq!(publisher.recv().expect("PUBACK").first, 0x40);
    let mut got = Vec::new();
    loop {
        let packet = subscriber.recv().expect("PUBLISH");
        assert_eq!(packet.kind(), 3, "{packet:?}");
        let id = u16::from_be_bytes([packet.body[5], packet.body[6]]);
        subscriber.send(&puback(id));
        if &packet.body[7..] == SENTINEL {
            break;
        }
        got.push(packet.body[7..].to_vec());
    }
    (broker, got)
}

/// Published after the reconnect: what arrives before it was queued while offline.
const SENTINEL: &[u8] = b"sentinel";

#[test]
fn max_queued_messages_drops_the_newest_and_logs_once() {
    let (broker, got) = offline_delivery(
        &["--max-queued-messages", "3"],
        10,
        4,
        "queue_full_messages",
    );
    let firsts: Vec<u8> = got.iter().map(|p| p[0]).collect();
    assert_eq!(firsts, vec![0, 1, 2]);
    broker.wait_log("queue full: message dropped", 1);
    let log = broker.log_text();
    assert_eq!(
        log.matches("queue full: message dropped").count(),
        1,
        "{log}"
    );
    assert!(log.contains("reason=\"max_queued_messages\""), "{log}");
}

#[test]
fn max_queued_bytes_bounds_the_queue_by_size() {
    // Each message counts 3 (topic) + 400 bytes: two fit in 1000, the third does not.
    let (broker, got) =
        offline_delivery(&["--max-queued-bytes", "1000"], 6, 400, "queue_full_bytes");
    assert_eq!(got.len(), 2);
    broker.wait_log("reason=\"max_queued_bytes\"", 1);
}

#[test]
fn max_subscriptions_refuses_the_extra_filter_and_logs_once() {
    let broker = Broker::start(&["--max-subscriptions-per-client", "2"]);
    let mut client = Client::connected(&broker, "subs");
    assert_eq!(client.subscribe(1, "a", 0), vec![0]);
    assert_eq!(client.subscribe(2, "b", 0), vec![0]);
    assert_eq!(client.subscribe(3, "c", 0), vec![0x80]);
    assert_eq!(client.subscribe(4, "d", 0), vec![0x80]);
    // Re-subscribing to a held filter is not a new subscription.
    assert_eq!(client.subscribe(5, "a", 1), vec![1]);
    client.send(&publish("b", b"still", 0, 0));
    assert_eq!(client.recv_publish().payload, b"still");
    broker.wait_log("subscription refused", 1);
    std::thread::sleep(QUIET);
    let log = broker.log_text();
    assert_eq!(log.matches("subscription refused").count(), 1, "{log}");
}

#[test]
fn topic_length_refuses_long_filters_and_closes_on_long_publish_topics() {
    let broker = Broker::start(&["--max-topic-length-bytes", "16"]);
    let mut bystander = Client::connected(&broker, "bystander");
    assert_eq!(bystander.subscribe(1, "short/#", 0), vec![0]);
    let long = "x".repeat(17);
    let mut client = Client::connected(&broker, "long");
    assert_eq!(client.subscribe(1, &long, 0), vec![0x80]);
    client.send(&publish(&long, b"no", 0, 0));
    client.expect_closed();
    broker.wait_log("max_topic_length_bytes", 2);
    bystander.send(&publish("short/ok", b"yes", 0, 0));
    assert_eq!(bystander.recv_publish().payload, b"yes");
}

#[test]
fn topic_levels_refuse_deep_filters_and_close_on_deep_publish_topics() {
    let broker = Broker::start(&["--max-topic-levels", "3"]);
    let mut bystander = Client::connected(&broker, "bystander");
    assert_eq!(bystander.subscribe(1, "a/b/c", 0), vec![0]);
    let mut client = Client::connected(&broker, "deep");
    assert_eq!(client.subscribe(1, "a/b/c/d", 0), vec![0x80]);
    assert_eq!(client.subscribe(2, "a/+/#", 0), vec![0]);
    client.send(&publish("a/b/c/d", b"no", 0, 0));
    client.expect_closed();
    broker.wait_log("max_topic_levels", 2);
    bystander.send(&publish("a/b/c", b"yes", 0, 0));
    assert_eq!(bystander.recv_publish().payload, b"yes");
}
