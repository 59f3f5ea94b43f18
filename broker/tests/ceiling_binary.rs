//! The connection ceilings against the real binary: a flood of sockets that never send
//! CONNECT fills the pool (or the process's descriptors), and still a client gets in, or
//! gets a CONNACK refusal it can read; refusals are logged as a summary, not one line per
//! connection, and counted in /metrics. And lingering close: a client that is still
//! writing when the broker closes it with a reason reads that reason.

mod server_common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use server_common::{
    Broker, Client, READ_TIMEOUT, connect_from, field, frame, free_port, http_get, metric,
};

/// Where the idle flood comes from (the clients that must get in come from 127.0.0.1).
const FLOOD_IP: [u8; 4] = [127, 0, 0, 2];
/// Idle sockets of the floods: far more than the broker's pools hold in these tests.
const FLOOD_SOCKETS: usize = 3_000;
/// `--max-connections` of the pool-ceiling test.
const MAX_CONNECTIONS: usize = 20;
/// The open-file limit of the descriptor-ceiling test (the broker derives its connection
/// ceiling from it: a few hundred).
const OPEN_FILES: u64 = 1_200;
/// The broker's default Receive Maximum: QoS 2 PUBLISHes a client may leave unreleased.
const RECEIVE_MAXIMUM: u16 = 1024;
/// What a client keeps writing after the packet that gets it disconnected.
const WRITTEN_AFTER_BYTES: usize = 384 * 1024;
/// Log lines the broker may write for a whole flood test besides its summaries (start-up,
/// pool and health changes, the first refusal of each kind): a line per refused or shed
/// connection would be thousands.
const MAX_OTHER_LOG_LINES: usize = 60;
/// Event loops of the flood tests.
const LOOPS: usize = 2;

/// How long a close lingers in these tests: long enough for a client that keeps writing on
/// a busy machine (the default is 2 s).
const LINGER_MS: &str = "10000";

/// A broker with its metrics endpoint on a free port; returns it and the endpoint.
fn start(args: &[&str], open_files: Option<u64>) -> (Broker, SocketAddr) {
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let listen = metrics.to_string();
    let loops = LOOPS.to_string();
    let mut all = vec!["--metrics-listen", &listen, "--event-loops", &loops];
    all.extend_from_slice(args);
    let broker = Broker::start_info(&all, open_files);
    broker.wait_log("metrics and health listening", 1);
    (broker, metrics)
}

/// Opens `n` sockets from [`FLOOD_IP`] that never send anything.
fn idle_flood(broker: &Broker, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            connect_from(FLOOD_IP, broker.addr)
                .unwrap_or_else(|e| panic!("flood socket {i}: {e}\n{}", broker.log_text()))
        })
        .collect()
}

/// Scrapes /metrics until `check` accepts it (counters trail the events by a loop turn).
fn metrics_until(endpoint: SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        let text = http_get(endpoint, "/metrics").expect("GET /metrics");
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn value(text: &str, name: &str, labels: &str) -> f64 {
    metric(text, name, labels).unwrap_or(0.0)
}

/// MQTT 5 CONNECT (clean start, keep-alive 60 s, no properties).
fn connect_v5(client_id: &str) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.extend_from_slice(&[5, 0x02, 0, 60, 0]);
    body.extend(field(client_id.as_bytes()));
    frame(0x10, &body)
}

/// MQTT 5 QoS 2 PUBLISH without properties.
fn publish_v5_qos2(topic: &str, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic.as_bytes());
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.push(0);
    body.extend_from_slice(payload);
    frame(0x34, &body)
}

/// The CONNACK reason of an MQTT 5 newcomer.
fn connect_v5_code(broker: &Broker, client_id: &str) -> (Client, u8) {
    let mut client = Client::open(broker);
    client.send(&connect_v5(client_id));
    let connack = client.recv().expect("CONNACK");
    assert_eq!(connack.first, 0x20, "{connack:?}");
    (client, connack.body[1])
}

/// The log of a flood: summaries at most once a second per loop, a few other lines, never
/// one per connection.
fn assert_log_is_a_summary(log: &str, started: Instant) {
    let summaries = log
        .lines()
        .filter(|l| l.contains("refused or shed since the last summary"))
        .count();
    let seconds = usize::try_from(started.elapsed().as_secs()).unwrap_or(usize::MAX);
    assert!(
        summaries <= LOOPS * (seconds + 2),
        "{summaries} summaries in {seconds} s:\n{log}"
    );
    let others = log.lines().count() - summaries;
    assert!(others < MAX_OTHER_LOG_LINES, "{others} other lines:\n{log}");
}

/// Whether `stream` is still open (no EOF or reset readable now).
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let open = matches!(
        std::io::Read::read(&mut &*stream, &mut byte),
        Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).expect("blocking");
    open
}

/// With `--max-connections 20` each loop's pool holds its share plus slack (under 100
/// objects): 3 000 sockets that never send CONNECT fill both pools many times over. The
/// oldest idle ones are shed for each newcomer, so clients still get in up to the limit,
/// and the next is refused with CONNACK 0x03 (0x97 for MQTT 5) it can read; the log says
/// so in a few lines and /metrics counts every shed and refusal.
#[test]
fn at_the_pool_ceiling_idle_sockets_are_shed_and_clients_get_in_or_a_clean_refusal() {
    let limit = MAX_CONNECTIONS.to_string();
    let started = Instant::now();
    let (mut broker, endpoint) = start(&["--max-connections", &limit], None);
    let flood = idle_flood(&broker, FLOOD_SOCKETS);
    let mut clients: Vec<Client> = (0..MAX_CONNECTIONS)
        .map(|i| Client::connected(&broker, &format!("in-{i}")))
        .collect();
    let (mut refused, code) = Client::connect(&broker, "one-too-many");
    assert_eq!(code, 0x03, "CONNACK 0x03 at max_connections");
    refused.expect_closed();
    let (mut refused_v5, code) = connect_v5_code(&broker, "one-too-many-v5");
    assert_eq!(code, 0x97, "MQTT 5: CONNACK 0x97 Quota exceeded");
    refused_v5.expect_closed();
    for client in &mut clients {
        client.ping();
    }
    // Every flood socket beyond what the pools hold is shed (and one per client that got
    // in), once the loops have accepted the whole flood.
    let held = |t: &str| -> f64 {
        (0..LOOPS)
            .map(|l| {
                value(
                    t,
                    "starling_pool_max_live_objects",
                    &format!("loop=\"{l}\""),
                )
            })
            .sum()
    };
    let shed = |t: &str| {
        value(
            t,
            "starling_connections_closed_total",
            "reason=\"shed_before_connect\"",
        )
    };
    let text = metrics_until(endpoint, "every refusal and shed counted", |t| {
        value(
            t,
            "starling_connections_refused_total",
            "reason=\"max_connections\"",
        ) >= 2.0
            && shed(t) >= FLOOD_SOCKETS as f64 - held(t)
    });
    let pools = held(&text);
    assert!(pools > 0.0 && pools < 200.0, "pools of {pools} objects");
    assert_eq!(
        value(
            &text,
            "starling_connections_refused_total",
            "reason=\"max_connections\""
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "starling_connections_refused_total",
            "reason=\"pool_limit\""
        ),
        0.0
    );
    // The oldest idle sockets went first: the first of the flood is closed, the last open.
    assert!(!still_open(&flood[0]), "the oldest idle socket was shed");
    assert!(
        still_open(&flood[FLOOD_SOCKETS - 1]),
        "the newest idle socket stays"
    );
    let log = broker.log_text();
    assert_log_is_a_summary(&log, started);
    assert!(
        log.contains("idle connection without CONNECT closed to make room"),
        "{log}"
    );
    assert!(log.contains("max_connections reached"), "{log}");
    drop(flood);
    for client in clients {
        client.disconnect();
    }
    assert!(broker.alive());
}

/// With the process limited to 1 200 open files the broker sizes its pools to fit (its
/// connection ceiling), so 3 000 idle sockets reach the descriptor ceiling through the
/// pools: the broker never runs out of descriptors, sheds the idle sockets, and a client
/// gets in.
#[test]
fn at_the_descriptor_ceiling_idle_sockets_do_not_lock_clients_out() {
    let started = Instant::now();
    let (mut broker, endpoint) = start(&[], Some(OPEN_FILES));
    assert!(
        broker.log_shows("max_connections is the open-file ceiling"),
        "{}",
        broker.log_text()
    );
    let flood = idle_flood(&broker, FLOOD_SOCKETS);
    let mut client = Client::connected(&broker, "gets-in");
    client.ping();
    let text = metrics_until(endpoint, "the flood shed", |t| {
        value(
            t,
            "starling_connections_closed_total",
            "reason=\"shed_before_connect\"",
        ) > 0.0
    });
    assert_eq!(
        value(
            &text,
            "starling_connections_refused_total",
            "reason=\"descriptors\""
        ),
        0.0,
        "the pools fit the descriptors: the spare was never needed"
    );
    let log = broker.log_text();
    assert!(!log.contains("accept failed"), "{log}");
    assert_log_is_a_summary(&log, started);
    drop(flood);
    client.disconnect();
    assert!(broker.alive());
}

/// Writes `bytes`, then [`WRITTEN_AFTER_BYTES`] more (QoS 2 PUBLISHes): a client that is
/// still writing when the broker closes it. Its writes must all succeed: without lingering
/// the broker closes with the input unread, the kernel answers the next bytes with a
/// reset, and the client's writes fail (a client library then drops the connection
/// without reading the reason it was sent).
fn keep_writing(
    mut stream: TcpStream,
    bytes: Vec<u8>,
) -> std::thread::JoinHandle<std::io::Result<usize>> {
    std::thread::spawn(move || {
        stream.write_all(&bytes)?;
        let more: Vec<u8> = (0..1024u16)
            .flat_map(|i| publish_v5_qos2("linger/more", i + 1, &[0u8; 64]))
            .collect();
        let mut written = 0;
        while written < WRITTEN_AFTER_BYTES {
            stream.write_all(&more)?;
            written += more.len();
        }
        Ok(bytes.len() + written)
    })
}

/// Reads the end of the stream: EOF, the broker's orderly close (not a reset).
fn expect_eof(client: &mut Client) {
    let mut byte = [0u8; 1];
    match std::io::Read::read(&mut client.stream, &mut byte) {
        Ok(0) => {}
        other => panic!("expected EOF after the last packet, got {other:?}"),
    }
}

/// A client that sends 1 025 QoS 2 PUBLISHes without PUBREL (one over the Receive
/// Maximum) and keeps writing: it reads its 1 024 PUBRECs and DISCONNECT 0x93, then EOF.
/// Without lingering, the close with its input unread resets the connection and the client
/// loses what it had not read yet.
#[test]
fn a_client_still_writing_reads_disconnect_0x93_before_the_close() {
    let (broker, endpoint) = start(
        &[
            "--max-connections",
            "1",
            "--close-linger-timeout-ms",
            LINGER_MS,
        ],
        None,
    );
    let mut client = Client::open(&broker);
    client.send(&connect_v5("writer"));
    let connack = client.recv().expect("CONNACK");
    assert_eq!((connack.first, connack.body[1]), (0x20, 0x00));
    let publishes: Vec<u8> = (1..=RECEIVE_MAXIMUM + 1)
        .flat_map(|id| publish_v5_qos2("linger/t", id, b"q"))
        .collect();
    let writer = keep_writing(client.stream.try_clone().expect("clone"), publishes);
    let mut pubrecs = 0;
    let disconnect = loop {
        let packet = client
            .recv()
            .unwrap_or_else(|e| panic!("after {pubrecs} PUBRECs: {e}\n{}", broker.log_text()));
        match packet.first {
            0x50 => pubrecs += 1,
            0xE0 => break packet,
            other => panic!("unexpected packet {other:#x}"),
        }
    };
    assert_eq!(pubrecs, usize::from(RECEIVE_MAXIMUM));
    assert_eq!(disconnect.body[0], 0x93, "Receive Maximum exceeded");
    expect_eof(&mut client);
    let written = writer.join().expect("writer");
    assert!(written.is_ok(), "the client's writes failed: {written:?}");
    // The lingering socket holds no connection slot: with max_connections 1 a newcomer
    // gets in at once, and no pool object.
    let (newcomer, code) = Client::connect(&broker, "next");
    assert_eq!(
        code, 0,
        "the lingering socket does not count as a connection"
    );
    drop(client);
    let text = metrics_until(endpoint, "lingering ended", |t| {
        value(
            t,
            "starling_lingering_closes_total",
            "loop=\"0\",end=\"eof\"",
        ) + value(
            t,
            "starling_lingering_closes_total",
            "loop=\"1\",end=\"eof\"",
        ) >= 1.0
    });
    assert_eq!(value(&text, "starling_connections", ""), 1.0);
    newcomer.disconnect();
}

/// A newcomer refused at max_connections that sends CONNECT and at once a lot more reads
/// its CONNACK 0x03 (MQTT 5: 0x97), then EOF, never a reset in its place.
#[test]
fn a_refused_connack_is_readable_by_a_client_that_keeps_writing() {
    let (broker, _endpoint) = start(
        &[
            "--max-connections",
            "1",
            "--close-linger-timeout-ms",
            LINGER_MS,
        ],
        None,
    );
    let inside = Client::connected(&broker, "inside");
    for (version, expected) in [(4u8, 0x03u8), (5, 0x97)] {
        let mut client = Client::open(&broker);
        let connect = if version == 5 {
            connect_v5("refused")
        } else {
            server_common::connect("refused")
        };
        let writer = keep_writing(client.stream.try_clone().expect("clone"), connect);
        let connack = client
            .recv()
            .unwrap_or_else(|e| panic!("v{version}: no CONNACK: {e}\n{}", broker.log_text()));
        assert_eq!(connack.first, 0x20, "v{version}");
        assert_eq!(connack.body[1], expected, "v{version}");
        expect_eof(&mut client);
        let written = writer.join().expect("writer");
        assert!(
            written.is_ok(),
            "v{version}: the client's writes failed: {written:?}"
        );
    }
    inside.disconnect();
}
