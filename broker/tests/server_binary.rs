//! The real `starling` binary over loopback: CONNECT/CONNACK, routing between event loops,
//! takeover across loops, the connection limit, and start-up validation.

mod server_common;

use std::process::Command;
use std::time::{Duration, Instant};

use server_common::{Broker, Client, id_on_loop, puback, publish};

/// Rounds of the takeover test before giving up on seeing the two connections accepted by
/// different loops (each round has a ½ chance with two loops).
const TAKEOVER_ROUNDS: usize = 24;
/// A payload larger than the loop's 64 KiB read buffer and than one socket write.
const LARGE_PAYLOAD_BYTES: usize = 200_000;

#[test]
fn connect_is_accepted() {
    let mut broker = Broker::start(&[]);
    let client = Client::connected(&broker, "hello");
    client.disconnect();
    assert!(broker.alive());
}

/// A subscriber and a publisher whose sessions live on different loops: every message
/// crosses loops (`Action::Forward`), whichever loop accepted the sockets.
#[test]
fn messages_cross_event_loops_at_qos_0_and_1() {
    let mut broker = Broker::start(&["--event-loops", "2"]);
    for (sub_loop, pub_loop) in [(0, 1), (1, 0)] {
        let sub_id = id_on_loop("sub", sub_loop, 2);
        let pub_id = id_on_loop("pub", pub_loop, 2);
        let topic = format!("cross/{sub_loop}");
        let mut subscriber = Client::connected(&broker, &sub_id);
        assert_eq!(subscriber.subscribe(1, "cross/#", 1), vec![1]);
        let mut publisher = Client::connected(&broker, &pub_id);

        publisher.send(&publish(&topic, b"zero", 0, 0));
        let message = subscriber.recv_publish();
        assert_eq!(
            (
                message.topic.as_str(),
                message.payload.as_slice(),
                message.qos
            ),
            (topic.as_str(), &b"zero"[..], 0)
        );

        publisher.send(&publish(&topic, b"one", 1, 7));
        let ack = publisher.recv().expect("PUBACK");
        assert_eq!((ack.first, ack.body.as_slice()), (0x40, &[0u8, 7][..]));
        let message = subscriber.recv_publish();
        assert_eq!(
            (
                message.topic.as_str(),
                message.payload.as_slice(),
                message.qos
            ),
            (topic.as_str(), &b"one"[..], 1)
        );
        let id = message.packet_id.expect("QoS 1 has a packet id");
        subscriber.send(&puback(id));

        // Larger than a read buffer and a socket write: partial reads and writes on both
        // loops.
        let payload: Vec<u8> = (0..LARGE_PAYLOAD_BYTES).map(|i| (i % 251) as u8).collect();
        publisher.send(&publish(&topic, &payload, 1, 8));
        let ack = publisher.recv().expect("PUBACK");
        assert_eq!((ack.first, ack.body.as_slice()), (0x40, &[0u8, 8][..]));
        let message = subscriber.recv_publish();
        assert_eq!(message.payload.len(), payload.len());
        assert!(message.payload == payload, "large payload corrupted");
        subscriber.send(&puback(message.packet_id.expect("packet id")));

        subscriber.disconnect();
        publisher.disconnect();
    }
    assert!(broker.alive());
}

/// Two connections with one client id, accepted by different loops: the session's loop gets
/// both (handover), closes the first (MQTT-3.1.4-2) and keeps the second.
#[test]
fn takeover_across_loops_closes_the_first_connection() {
    let mut broker = Broker::start(&["--event-loops", "2"]);
    let mut crossed = 0;
    for round in 0..TAKEOVER_ROUNDS {
        let id = format!("takeover-{round}");
        let mut first = Client::connected(&broker, &id);
        let mut second = Client::connected(&broker, &id);
        first.expect_closed();
        second.ping();
        let first_loop = broker.accepting_loop(first.local_addr());
        let second_loop = broker.accepting_loop(second.local_addr());
        if first_loop != second_loop {
            crossed += 1;
            if crossed >= 2 {
                break;
            }
        }
        second.disconnect();
    }
    assert!(
        crossed > 0,
        "SO_REUSEPORT never spread the pair over two loops in {TAKEOVER_ROUNDS} rounds"
    );
    assert!(broker.alive());
}

#[test]
fn over_the_connection_limit_gets_connack_3() {
    let mut broker = Broker::start(&["--event-loops", "2", "--max-connections", "2"]);
    let first = Client::connected(&broker, "limit-a");
    let _second = Client::connected(&broker, "limit-b");
    let (mut third, code) = Client::connect(&broker, "limit-c");
    assert_eq!(code, 0x03, "CONNACK 0x03 (server unavailable)");
    third.expect_closed();

    // A freed slot is usable again (the count drops once the broker has closed the socket).
    first.disconnect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (client, code) = Client::connect(&broker, "limit-d");
        if code == 0 {
            client.disconnect();
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(broker.log_shows("max_connections reached"));
    assert!(broker.alive());
}

#[test]
fn a_bad_combination_exits_2_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["--listen", "127.0.0.1:0", "--event-loops", "2"])
        .args(["--max-connections", "10", "--pool-initial-objects", "500"])
        .output()
        .expect("run the binary");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("initial_objects (500) must not exceed"),
        "{stderr}"
    );
}

#[test]
fn help_lists_the_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("--help")
        .output()
        .expect("run the binary");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--event-loops",
        "--max-connections",
        "--max-packet-size-bytes",
        "--connect-timeout-ms",
        "--partial-packet-timeout-ms",
        "--max-inflight-messages",
        "--max-queued-messages",
        "--max-keep-alive-secs",
        "--max-subscriptions-per-client",
        "--pool-preset",
        "--pool-initial-objects",
        "--pool-max-preheated-objects",
        "--log-level",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// Two brokers on one address would split the clients between them (each would miss the
/// other's messages): the second must refuse to start, as any server whose port is taken.
#[test]
fn a_second_instance_on_the_same_address_exits_with_address_in_use() {
    let mut first = Broker::start(&["--event-loops", "2"]);
    let args: Vec<String> = ["--listen", &first.addr.to_string(), "--event-loops", "2"]
        .iter()
        .chain(&["--metrics-listen", "off"])
        .map(|a| a.to_string())
        .collect();
    let mut second = Broker::spawn(first.addr, &args);
    let code = second.wait_exit(Duration::from_secs(10));
    let log = second.log_text();
    assert_eq!(code, Some(1), "the second instance must not run:\n{log}");
    let expected = format!("cannot listen on {}: address in use", first.addr);
    assert!(log.contains(&expected), "{log}");
    // Every client reaches the first one: a subscription and a publication made over
    // separate connections always meet.
    for round in 0..10u16 {
        let mut subscriber = Client::connected(&first, &format!("sub-{round}"));
        assert_eq!(subscriber.subscribe(1, "pair/t", 1), vec![1]);
        let mut publisher = Client::connected(&first, &format!("pub-{round}"));
        publisher.send(&publish("pair/t", &round.to_be_bytes(), 1, 1));
        assert_eq!(publisher.recv().expect("PUBACK").first, 0x40);
        let message = subscriber.recv_publish();
        assert_eq!(message.payload, round.to_be_bytes());
        subscriber.send(&puback(message.packet_id.expect("QoS 1")));
        subscriber.disconnect();
        publisher.disconnect();
    }
    assert!(first.alive());
}
