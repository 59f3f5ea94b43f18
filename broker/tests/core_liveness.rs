//! Liveness in the sans-IO core, with a simulated clock: the connect timeout counts from
//! accept however slowly a CONNECT trickles in, a packet begun after CONNECT must be whole
//! within `partial_packet_timeout_ms`, bytes that cannot start a CONNECT close the
//! connection at once, and time the loop did not run (a stall) or input it has not read
//! yet (deadlines held) is not counted against anyone. The black-box side is in
//! `tests/python/test_liveness.py`.

mod core_common;
mod protocol_common;

use core_common::{Net, Received};
use protocol_common::{self as packets, ConnectSpec};
use starling::core::{CoreConfig, Deadlines, STALL_THRESHOLD_MS};

const CONNECT_TIMEOUT_MS: u64 = 1000;
const PARTIAL_PACKET_TIMEOUT_MS: u64 = 2000;

fn config() -> CoreConfig {
    let mut config = Net::small_config();
    config.connect_timeout_ms = CONNECT_TIMEOUT_MS;
    config.partial_packet_timeout_ms = PARTIAL_PACKET_TIMEOUT_MS;
    config
}

fn net() -> Net {
    Net::new(1, config())
}

/// A connected 3.1.1 client with `keep_alive` seconds.
fn connected(net: &mut Net, client_id: &str, keep_alive: u16) -> usize {
    let spec = ConnectSpec {
        client_id: client_id.as_bytes().to_vec(),
        keep_alive,
        ..ConnectSpec::default()
    };
    let (client, connack) = net.connect(0, spec);
    assert!(
        matches!(connack, Received::ConnAck { code: 0, .. }),
        "{connack:?}"
    );
    client
}

fn pingreq() -> Vec<u8> {
    packets::frame(0xC0, &[])
}

#[test]
fn the_connect_timeout_counts_from_accept_however_slowly_the_connect_arrives() {
    let mut net = net();
    let client = net.open(0);
    let connect = ConnectSpec::default().build();
    // One byte every 300 ms: each would have restarted a timeout counted from the last byte.
    for byte in &connect[..3] {
        net.advance(300);
        net.send(client, std::slice::from_ref(byte));
    }
    assert!(!net.is_closed(client), "900 ms after accept");
    net.advance(CONNECT_TIMEOUT_MS - 900);
    assert!(net.is_closed(client), "closed at the connect timeout");
    let stats = net.shards[0].stats();
    assert_eq!((stats.closed_connect_timeout, stats.closed_timeout), (1, 1));
}

#[test]
fn a_connect_sent_byte_by_byte_in_time_is_accepted() {
    for (name, level) in [(&b"MQTT"[..], 4), (&b"MQIsdp"[..], 3)] {
        let mut net = net();
        let client = net.open(0);
        let spec = ConnectSpec {
            name: name.to_vec(),
            level,
            ..ConnectSpec::default()
        };
        for byte in spec.build() {
            net.send(client, &[byte]);
        }
        assert_eq!(
            net.take(client),
            [Received::ConnAck {
                session_present: false,
                code: 0
            }],
            "every prefix of a {level} CONNECT is a possible CONNECT"
        );
    }
}

#[test]
fn bytes_that_cannot_start_a_connect_close_at_once() {
    let tls_client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    let publish_first = packets::publish(0, b"t", None, &[0; 100]);
    let cases: [(&str, &[u8]); 5] = [
        ("an HTTP request", b"GET / HTTP/1.1\r\nHost: broker\r\n"),
        ("a TLS ClientHello", &tls_client_hello),
        ("a PUBLISH first, partial", &publish_first[..10]),
        ("CONNECT with reserved flags", &[0x12, 0x10]),
        ("a protocol name MQTX", b"\x10\x20\x00\x04MQTX"),
    ];
    let mut net = net();
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let client = net.open(0);
        net.send(client, bytes);
        assert!(net.is_closed(client), "{what}: closed without waiting");
        assert!(net.take(client).is_empty(), "{what}: no CONNACK");
        assert_eq!(net.shards[0].stats().closed_bad_input, i as u64 + 1);
    }
    // A name that is still a prefix of MQIsdp or MQTT waits for more bytes.
    for prefix in [&b"\x10\x20\x00\x06MQI"[..], b"\x10\x20\x00", b"\x10\xa0"] {
        let client = net.open(0);
        net.send(client, prefix);
        assert!(!net.is_closed(client), "{prefix:?} may still be a CONNECT");
    }
}

#[test]
fn a_partial_packet_after_connect_must_be_whole_within_its_timeout() {
    let mut net = net();
    let slow = connected(&mut net, "slow", 60);
    let publish = packets::publish(0, b"drip", None, &[7; 200]);
    net.advance(5_000); // the partial deadline counts from the packet's first bytes
    net.send(slow, &publish[..10]);
    for byte in &publish[10..13] {
        net.advance(500);
        net.send(slow, std::slice::from_ref(byte));
    }
    assert!(!net.is_closed(slow), "1.5 s into the packet");
    net.advance(PARTIAL_PACKET_TIMEOUT_MS - 1_500);
    assert!(net.is_closed(slow), "closed 2 s after the packet began");
    let stats = net.shards[0].stats();
    assert_eq!(stats.closed_partial_packet_timeout, 1);
    assert_eq!(stats.closed_timeout, 1);
}

#[test]
fn each_packet_gets_its_own_partial_deadline() {
    let mut net = net();
    let client = connected(&mut net, "steady", 60);
    let publish = packets::publish(0, b"t", None, &[1; 50]);
    // Packet after packet, each finished 1.5 s after it began: 6 s in all, never closed.
    for _ in 0..4 {
        net.send(client, &publish[..5]);
        net.advance(1_500);
        net.send(client, &publish[5..]);
    }
    assert!(!net.is_closed(client));
    net.send(client, &pingreq());
    assert_eq!(net.take(client), [Received::PingResp]);
}

#[test]
fn mid_packet_a_client_is_held_to_the_partial_timeout_not_its_keep_alive() {
    let mut config = config();
    config.partial_packet_timeout_ms = 5_000;
    let mut net = Net::new(1, config);
    let client = connected(&mut net, "uploading", 1); // keep-alive deadline 1.5 s
    let publish = packets::publish(0, b"big", None, &[0; 1000]);
    net.send(client, &publish[..100]);
    for chunk in publish[100..400].chunks(100) {
        net.advance(1_000);
        net.send(client, chunk);
    }
    assert!(
        !net.is_closed(client),
        "3 s into a packet that keeps coming"
    );
    net.advance(2_000);
    assert!(net.is_closed(client), "5 s after the packet began");
    assert_eq!(net.shards[0].stats().closed_partial_packet_timeout, 1);
}

#[test]
fn a_stall_is_not_counted_against_keep_alive_or_the_connect_timeout() {
    let mut net = net();
    let client = connected(&mut net, "pinger", 2); // keep-alive deadline 3 s
    let waiting = net.open(0); // connect deadline 1 s
    net.advance(1_000);
    net.send(client, &pingreq());
    assert_eq!(net.take(client), [Received::PingResp]);
    // The loop does not run from 1.5 s to 6.5 s, then notices.
    net.now_ms += 500;
    net.advance(0);
    assert!(
        net.is_closed(waiting),
        "its connect timeout passed before the stall"
    );
    let late_comer = {
        net.now_ms += 5_000;
        net.shards[0].stalled(5_000, net.now_ms);
        net.advance(0);
        net.open(0)
    };
    assert!(!net.is_closed(client), "deadline 4 s, plus the 5 s stall");
    net.advance(2_499);
    assert!(!net.is_closed(client), "8.999 s");
    net.advance(1);
    assert!(
        net.is_closed(client),
        "9 s: 3 s of silence outside the stall"
    );
    // A connection accepted after the stall has its whole connect timeout, no more.
    assert!(net.is_closed(late_comer), "1 s after its accept");
    let stats = net.shards[0].stats();
    assert_eq!((stats.stalls, stats.stalled_ms), (1, 5_000));
}

#[test]
fn gaps_shorter_than_the_stall_threshold_are_not_stalls() {
    let mut net = net();
    let client = connected(&mut net, "quiet", 2);
    net.now_ms += STALL_THRESHOLD_MS - 1;
    net.shards[0].stalled(STALL_THRESHOLD_MS - 1, net.now_ms);
    net.advance(3_000 - (STALL_THRESHOLD_MS - 1));
    assert!(
        net.is_closed(client),
        "no credit for ordinary scheduling noise"
    );
    assert_eq!(net.shards[0].stats().stalls, 0);
}

#[test]
fn held_deadlines_let_unread_input_be_read_first() {
    let mut net = net();
    let client = connected(&mut net, "behind", 2); // keep-alive deadline 3 s
    net.now_ms += 3_500;
    // The driver's poll came back full: the PINGREQ may be among the unreported sockets.
    net.shards[0].tick_with(net.now_ms, Deadlines::Hold);
    net.run();
    assert!(!net.is_closed(client), "deadlines are held");
    net.send(client, &pingreq());
    net.shards[0].tick_with(net.now_ms, Deadlines::Enforce);
    net.run();
    assert!(
        !net.is_closed(client),
        "its PINGREQ was read before the deadline was enforced"
    );
    assert_eq!(net.take(client), [Received::PingResp]);
    net.advance(3_000 + starling::core::timers::TIMER_SLOT_MS);
    assert!(
        net.is_closed(client),
        "silent for 3 s (and the wheel's slot) after it"
    );
}
