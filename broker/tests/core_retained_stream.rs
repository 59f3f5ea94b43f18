//! Retained messages on SUBSCRIBE as a stream paced by the subscriber (`core::retained_stream`),
//! driven in memory: every matching retained message arrives once, at the granted QoS with
//! RETAIN set (MQTT-3.3.1-6, MQTT-3.3.1-8), through a small in-flight window, without ever
//! entering the session's queue; live messages never overtake a topic's retained message;
//! streams survive a resumed session and end with an UNSUBSCRIBE or a clean session.

mod core_common;
mod protocol_common;

use std::collections::BTreeMap;

use core_common::{ClientId, Net, Received};
use protocol_common as packets;
use starling::core::CoreConfig;
use starling::core::retained_stream::RETAINED_TURN_MESSAGES;

/// The in-flight window of these tests.
const WINDOW: usize = 5;

fn net(config: impl FnOnce(&mut CoreConfig)) -> Net {
    let mut c = Net::small_config();
    c.max_inflight_messages = WINDOW;
    config(&mut c);
    Net::new(2, c)
}

/// A network with `n` messages `{prefix}/{i}` retained at `qos` by a publisher, and a
/// subscriber connected (not subscribed yet) as `client_id`.
fn loaded(
    config: impl FnOnce(&mut CoreConfig),
    prefix: &str,
    n: usize,
    qos: u8,
    client_id: &str,
    clean: bool,
) -> (Net, ClientId, ClientId) {
    let mut net = net(config);
    let publisher = net.connect_ok("pub", true);
    retain_many(&mut net, publisher, prefix, n, qos);
    let sub = net.connect_ok(client_id, clean);
    (net, publisher, sub)
}

/// Retains `n` messages `{prefix}/{i}` (payload `i` as text) at `qos`, in batches.
fn retain_many(net: &mut Net, publisher: ClientId, prefix: &str, n: usize, qos: u8) {
    let flags = (qos << 1) | 1;
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let mut bytes = Vec::new();
        for &i in chunk {
            let id = (qos > 0).then_some((i % 60_000 + 1) as u16);
            let topic = format!("{prefix}/{i}");
            bytes.extend(packets::publish(
                flags,
                topic.as_bytes(),
                id,
                i.to_string().as_bytes(),
            ));
        }
        net.send(publisher, &bytes);
        net.take(publisher);
    }
}

/// One PUBLISH as (topic, payload, qos, retain, packet id).
type Pub = (String, Vec<u8>, u8, bool, Option<u16>);

fn publishes(received: Vec<Received>) -> Vec<Pub> {
    received
        .into_iter()
        .filter_map(|r| match r {
            Received::Publish {
                topic,
                payload,
                qos,
                retain,
                packet_id,
                ..
            } => Some((topic, payload, qos, retain, packet_id)),
            _ => None,
        })
        .collect()
}

/// What a client still has queued in its session (the stream must never use the queue).
fn queued(net: &Net, client: ClientId) -> usize {
    let c = &net.clients[client];
    net.shards[c.loop_index]
        .pending(c.conn.expect("connected"))
        .queued
}

/// Reads like a client that keeps up: takes what arrived, acknowledges every QoS 1/2
/// PUBLISH, lets the loops turn, until nothing more comes. Asserts on the way that no more
/// than the window was ever unacknowledged and that nothing was queued.
fn read_all(net: &mut Net, client: ClientId) -> Vec<Pub> {
    read(net, client, true)
}

/// [`read_all`], with live messages queued meanwhile (`queue_unused` false).
fn read(net: &mut Net, client: ClientId, queue_unused: bool) -> Vec<Pub> {
    let mut all = Vec::new();
    let mut idle_turns = 0;
    while idle_turns < 10 {
        if queue_unused {
            assert_eq!(queued(net, client), 0, "a retained stream used the queue");
        }
        let got = publishes(net.take(client));
        if got.is_empty() {
            idle_turns += 1;
            net.advance(1);
            continue;
        }
        idle_turns = 0;
        let unacked = got.iter().filter(|p| p.2 > 0).count();
        assert!(
            unacked <= WINDOW,
            "{unacked} in flight past a window of {WINDOW}"
        );
        let mut acks = Vec::new();
        for p in &got {
            if let Some(id) = p.4 {
                acks.extend(packets::ack(0x40, id));
            }
        }
        all.extend(got);
        if !acks.is_empty() {
            net.send(client, &acks);
        }
    }
    all
}

/// Subscribes `client` to `filter` at `qos` and checks the SUBACK grants it; what followed
/// the SUBACK (the first retained messages) is left for the reader.
fn subscribe(net: &mut Net, client: ClientId, packet_id: u16, filter: &str, qos: u8) {
    net.send(
        client,
        &packets::subscribe(packet_id, &[(filter.as_bytes(), qos)]),
    );
    let received = &mut net.clients[client].received;
    assert!(!received.is_empty(), "no SUBACK");
    let suback = received.remove(0);
    assert_eq!(
        suback,
        Received::SubAck {
            packet_id,
            codes: vec![qos]
        }
    );
}

fn topics(got: &[Pub]) -> Vec<&str> {
    got.iter().map(|p| p.0.as_str()).collect()
}

#[test]
fn every_retained_message_arrives_at_qos1_through_a_small_window() {
    let n = 3000;
    let (mut net, _, sub) = loaded(|_| {}, "ret", n, 1, "sub", true);
    subscribe(&mut net, sub, 1, "ret/#", 1);
    let got = read_all(&mut net, sub);
    assert_eq!(got.len(), n);
    let mut seen: Vec<usize> = got
        .iter()
        .map(|(t, payload, qos, retain, _)| {
            assert_eq!((*qos, *retain), (1, true), "{t}");
            assert_eq!(
                t.strip_prefix("ret/").map(str::as_bytes),
                Some(&payload[..])
            );
            t["ret/".len()..].parse().expect("a number")
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    for shard in &net.shards {
        let stats = shard.stats();
        assert_eq!((stats.dropped, stats.queued_past_limit), (0, 0));
    }
}

#[test]
fn qos0_arrives_complete_through_a_small_output_buffer() {
    let n = 5000;
    let (mut net, _, sub) = loaded(|c| c.max_output_buffer_bytes = 512, "q0", n, 0, "sub", true);
    // Subscribed at QoS 1, delivered at the messages' QoS 0 (MQTT-3.3.1-5's lower QoS).
    subscribe(&mut net, sub, 1, "q0/+", 1);
    let got = read_all(&mut net, sub);
    assert_eq!(got.len(), n);
    assert!(got.iter().all(|p| p.2 == 0 && p.3));
    let distinct: std::collections::BTreeSet<&str> = topics(&got).into_iter().collect();
    assert_eq!(distinct.len(), n);
    assert_eq!(net.shards.iter().map(|s| s.stats().dropped).sum::<u64>(), 0);
}

#[test]
fn a_live_message_never_overtakes_its_topics_retained_message() {
    let (mut net, publisher, sub) = loaded(|_| {}, "ord", 200, 1, "sub", true);
    subscribe(&mut net, sub, 1, "ord/#", 1);
    // The window is full and nothing acknowledged: the stream is at its start. Live
    // messages on a topic far ahead (ord/150), on a new topic, and a retained
    // replacement of another (ord/199) arrive now.
    net.publish(publisher, "ord/150", 1, false, Some(9001), b"live");
    net.publish(publisher, "ord/new", 1, true, Some(9002), b"new");
    net.publish(publisher, "ord/199", 1, true, Some(9003), b"replaced");
    let got = read(&mut net, sub, false);
    let mut by_topic: BTreeMap<&str, Vec<(&[u8], bool)>> = BTreeMap::new();
    for (t, payload, _, retain, _) in &got {
        by_topic.entry(t).or_default().push((payload, *retain));
    }
    // ord/150: its retained message first, then the live one, and not again after it.
    assert_eq!(
        by_topic["ord/150"],
        vec![(&b"150"[..], true), (&b"live"[..], false)]
    );
    // Stored after the SUBSCRIBE: they arrived live, once, and the stream skips them.
    assert_eq!(by_topic["ord/new"], vec![(&b"new"[..], false)]);
    assert_eq!(by_topic["ord/199"], vec![(&b"replaced"[..], false)]);
    // Every other topic once, retained.
    assert_eq!(got.len(), 200 + 2);
}

#[test]
fn several_filters_stream_one_after_the_other_and_unsubscribe_ends_one() {
    let mut net = net(|_| {});
    let publisher = net.connect_ok("pub", true);
    retain_many(&mut net, publisher, "a", 50, 1);
    retain_many(&mut net, publisher, "b", 50, 1);
    retain_many(&mut net, publisher, "c", 50, 1);
    let sub = net.connect_ok("sub", true);
    net.send(
        sub,
        &packets::subscribe(1, &[(b"a/#", 1), (b"b/#", 1), (b"c/#", 1)]),
    );
    // Before anything is acknowledged: the SUBACK, then the first window of a/#.
    let first = net.take(sub);
    assert!(matches!(&first[0], Received::SubAck { codes, .. } if codes == &[1, 1, 1]));
    assert_eq!(publishes(first[1..].to_vec()).len(), WINDOW);
    // c/# is given up before it started; a/# then b/# arrive in that order.
    net.send(sub, &packets::unsubscribe(2, &[b"c/#"]));
    let mut got = publishes(first[1..].to_vec());
    for p in &got {
        net.send(sub, &packets::ack(0x40, p.4.expect("QoS 1")));
    }
    got.extend(read_all(&mut net, sub));
    let prefixes: Vec<&str> = got.iter().map(|p| &p.0[..1]).collect();
    let split = prefixes
        .iter()
        .position(|p| *p == "b")
        .expect("b/# streamed");
    assert!(prefixes[..split].iter().all(|p| *p == "a"));
    assert!(prefixes[split..].iter().all(|p| *p == "b"));
    assert_eq!((split, got.len()), (50, 100));
}

#[test]
fn subscribing_again_restarts_the_stream() {
    let (mut net, _, sub) = loaded(|_| {}, "re", 30, 1, "sub", true);
    subscribe(&mut net, sub, 1, "re/#", 1);
    let mut got = read_all(&mut net, sub);
    assert_eq!(got.len(), 30);
    // Retain Handling 0 (3.1.1's only behaviour): every retained message again.
    net.send(sub, &packets::subscribe(2, &[(b"re/#", 0)]));
    got = read_all(&mut net, sub);
    assert_eq!(got.len(), 30);
    assert!(got.iter().all(|p| p.2 == 0 && p.3));
}

#[test]
fn a_resumed_session_gets_the_rest() {
    // More than one turn's worth, so the stream waits for a turn when the client goes.
    let n = 2 * RETAINED_TURN_MESSAGES + 100;
    let (mut net, _, sub) = loaded(|_| {}, "res", n, 1, "persistent", false);
    subscribe(&mut net, sub, 1, "res/#", 1);
    // Acknowledge one message at a time without letting the loop turn, until the stream
    // has used its turn and waits for the next; then lose the connection.
    let mut delivered = BTreeMap::new();
    loop {
        let got = publishes(net.take(sub));
        if got.is_empty() {
            break;
        }
        for p in got {
            net.send(sub, &packets::ack(0x40, p.4.expect("QoS 1")));
            delivered.insert(p.0.clone(), p.1.clone());
        }
    }
    assert!(
        delivered.len() < n / 2,
        "{} delivered in one turn",
        delivered.len()
    );
    net.drop_connection(sub);
    let sub = net.connect_ok("persistent", false);
    for p in read_all(&mut net, sub) {
        delivered.insert(p.0, p.1);
    }
    assert_eq!(
        delivered.len(),
        n,
        "every retained message, across the reconnect"
    );
    assert!(
        delivered
            .iter()
            .all(|(t, p)| t.as_bytes()["res/".len()..] == p[..])
    );
}

#[test]
fn a_sparse_filter_over_a_large_store_is_walked_in_turns() {
    let mut net = net(|_| {});
    let publisher = net.connect_ok("pub", true);
    let n = 20_000;
    retain_many(&mut net, publisher, "dev", n, 0);
    let mut bytes = Vec::new();
    for i in (0..n).step_by(2500) {
        bytes.extend(packets::publish(
            1,
            format!("x/{i}/hit").as_bytes(),
            None,
            b"hit",
        ));
    }
    net.send(publisher, &bytes);
    let sub = net.connect_ok("sub", true);
    // `+/+/hit` visits every `dev/N` node without a match: many batches and turns.
    subscribe(&mut net, sub, 1, "+/+/hit", 1);
    let got = read_all(&mut net, sub);
    assert_eq!(got.len(), n / 2500);
    assert!(got.iter().all(|p| p.1 == b"hit"));
}

#[test]
fn a_subscribe_with_thousands_of_filters_gets_each_ones_retained_message_in_order() {
    let n = 2000;
    let (mut net, _, sub) = loaded(
        |c| c.max_subscriptions_per_client = n,
        "m",
        n,
        1,
        "sub",
        true,
    );
    let filters: Vec<String> = (0..n).rev().map(|i| format!("m/{i}")).collect();
    let pairs: Vec<(&[u8], u8)> = filters.iter().map(|f| (f.as_bytes(), 1)).collect();
    net.send(sub, &packets::subscribe(1, &pairs));
    let suback = net.clients[sub].received.remove(0);
    assert!(matches!(suback, Received::SubAck { codes, .. } if codes == vec![1; n]));
    let got = read_all(&mut net, sub);
    // One stream per filter, served in the SUBSCRIBE's order.
    assert_eq!(got.len(), n);
    assert!(topics(&got).iter().eq(filters.iter()));
}

/// A client id whose connection the test network opens on loop `want` of two.
fn id_on_loop(prefix: &str, want: usize) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| starling::core::owner_loop(id, 2) == want)
        .expect("some id hashes to each loop")
}

#[test]
fn a_retained_message_forwarded_from_another_loop_after_the_subscribe_arrives_once() {
    let mut net = net(|_| {});
    let publisher = net.connect_ok(&id_on_loop("pub", 1), true);
    retain_many(&mut net, publisher, "fw", 100, 1);
    // Loop 0 has a subscriber already, so loop 1 forwards every PUBLISH to it.
    let other = net.connect_ok(&id_on_loop("other", 0), true);
    assert_eq!(net.subscribe(other, 1, "elsewhere", 0), vec![0]);
    let sub = net.connect_ok(&id_on_loop("sub", 0), true);
    // Loop 1 stores a new fw/50 and queues its forward to loop 0; before loop 0 reads the
    // forward, the subscriber's SUBSCRIBE arrives there: fw/50 is in the store before the
    // stream's stamp (the stream sends it) and reaches loop 0 live after it.
    let c = &net.clients[publisher];
    let bytes = packets::publish(0x03, b"fw/50", Some(60_000), b"new");
    net.shards[c.loop_index].receive(c.conn.expect("connected"), &bytes, net.now_ms);
    subscribe(&mut net, sub, 1, "fw/#", 1);
    let got = read(&mut net, sub, false);
    let fifty: Vec<(&[u8], bool)> = got
        .iter()
        .filter(|p| p.0 == "fw/50")
        .map(|p| (&p.1[..], p.3))
        .collect();
    assert_eq!(
        fifty,
        vec![(&b"new"[..], true)],
        "once, as a retained message"
    );
    assert_eq!(got.len(), 100);
}
