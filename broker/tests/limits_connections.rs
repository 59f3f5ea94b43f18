//! Connection limits against the real binary: per source IP, per listener, the connect
//! timeout, and a connect flood from one address that must not hurt a well-behaved client.
//! (The global `max_connections` is in `server_binary.rs`; the per-listener limit is also
//! in `config_binary.rs`.) Every test keeps a bystander client and checks it is unaffected.

mod server_common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use server_common::{Broker, Client, connect_from};

/// The flood's source address: loopback, but not the bystander's 127.0.0.1.
const ATTACKER_IP: [u8; 4] = [127, 0, 0, 2];
/// Connection attempts of the flood.
const FLOOD_ATTEMPTS: usize = 20_000;
/// Threads making them.
const FLOOD_THREADS: usize = 2;
/// The per-IP limit during the flood.
const FLOOD_PER_IP_LIMIT: usize = 100;
/// Connections the attacker holds open (more than the limit: the rest are refused).
const FLOOD_HELD: usize = 150;

/// Whether the broker has closed `stream` (EOF or reset readable without blocking; a
/// CONNACK before it is read past).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Waits for the broker's verdict on a connection that sent CONNECT: its CONNACK (admitted)
/// or its close (refused at accept).
fn admitted(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(server_common::READ_TIMEOUT))
        .expect("timeout");
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(0) => false,
        Ok(_) => {
            assert_eq!(first[0], 0x20, "CONNACK");
            true
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset) => false,
        Err(e) => panic!("neither CONNACK nor close: {e}"),
    }
}

/// How late a thread asking to sleep 1 ms wakes, sampled until `stop` is set: the machine's
/// own scheduling delay, which the broker's latency is judged net of (a busy CI host delays
/// every thread, the test's and the broker's alike).
fn machine_lateness(stop: Arc<AtomicBool>) -> JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut late = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            late.push(started.elapsed().saturating_sub(Duration::from_millis(1)));
        }
        late
    })
}

/// The `p`th percentile of `samples` (sorted here).
fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort_unstable();
    samples
        .get(samples.len().saturating_sub(1) * p / 100)
        .copied()
        .unwrap_or_default()
}

/// A client connected from `source`, CONNECT not sent yet.
fn open_from(source: [u8; 4], broker: &Broker) -> Client {
    let stream = connect_from(source, broker.addr).expect("connect");
    stream
        .set_read_timeout(Some(server_common::READ_TIMEOUT))
        .expect("timeout");
    Client { stream }
}

/// A client connected from `source` with CONNECT accepted.
fn connected_from(source: [u8; 4], broker: &Broker, client_id: &str) -> Client {
    let mut client = open_from(source, broker);
    client.send(&server_common::connect(client_id));
    assert_eq!(
        client.recv().expect("CONNACK").body,
        vec![0, 0],
        "{client_id}"
    );
    client
}

/// The limited clients come from 127.0.0.3, which nothing else uses (the test helper probes
/// the port from 127.0.0.1 at start, and that probe's close may not be seen yet).
#[test]
fn per_ip_limit_closes_the_extra_connection_and_releases_on_close() {
    const LIMITED: [u8; 4] = [127, 0, 0, 3];
    let broker = Broker::start(&["--event-loops", "2", "--max-connections-per-ip", "2"]);
    let mut bystander = connected_from(ATTACKER_IP, &broker, "bystander");

    // Each admission is confirmed by its CONNACK before the next connection is opened
    // (sockets the kernel has queued may be accepted by the loops in any order).
    let first = connected_from(LIMITED, &broker, "one");
    let mut second = connected_from(LIMITED, &broker, "two");
    let mut third = open_from(LIMITED, &broker);
    third.expect_closed();
    broker.wait_log("limit=\"max_connections_per_ip\"", 1);
    second.ping();

    // A slot freed by a close is reusable.
    first.disconnect();
    let deadline = Instant::now() + server_common::READ_TIMEOUT;
    let again = loop {
        let mut client = open_from(LIMITED, &broker);
        client.send(&server_common::connect("three"));
        match client.recv() {
            Ok(connack) if connack.body == [0, 0] => break client,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("the freed slot was not reused: {other:?}"),
        }
    };
    bystander.ping();
    again.disconnect();
}

#[test]
fn connect_timeout_closes_a_silent_connection() {
    let broker = Broker::start(&["--connect-timeout-ms", "300"]);
    let mut bystander = Client::connected(&broker, "bystander");
    let mut silent = Client::open(&broker);
    // Up to a 1 s timer slot after the 300 ms, and slack for a busy host: well short of the
    // 10 s default, which would mean the flag was not applied.
    let waited = silent.wait_closed(&broker, server_common::READ_TIMEOUT);
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    bystander.ping();
    broker.wait_log("connect timeout", 1);
}

/// 20 000 connection attempts from 127.0.0.2 with a per-IP limit of 100: the attacker
/// holds 100, every other attempt is closed at accept, the log stays short, and a client
/// from 127.0.0.1 connects and gets its PINGRESPs with normal latency throughout (judged
/// net of how late the machine itself wakes a sleeping thread meanwhile).
#[test]
fn a_connect_flood_from_one_address_leaves_other_clients_served() {
    let limit = FLOOD_PER_IP_LIMIT.to_string();
    let mut broker =
        Broker::start_monitored(&["--event-loops", "2", "--max-connections-per-ip", &limit]);
    let addr = broker.addr;
    let mut good = Client::connected(&broker, "good");
    let baseline = ping_latencies(&mut good, 50);

    // The attacker's held connections: the first FLOOD_HELD, of which the limit admits 100.
    // They send CONNECT (so the connect timeout does not free them during a slow run); the
    // writes to refused ones may fail.
    let mut held: Vec<TcpStream> = (0..FLOOD_HELD)
        .map(|n| {
            let mut stream = connect_from(ATTACKER_IP, addr).expect("attacker connect");
            let _ = stream.write_all(&server_common::connect(&format!("held-{n}")));
            stream
        })
        .collect();
    // Each held connection is admitted or refused before the flood starts: a flood
    // connection accepted before a held one could otherwise take its slot for a moment.
    let admitted_held = held.iter_mut().map(admitted).filter(|&a| a).count();
    assert_eq!(admitted_held, FLOOD_PER_IP_LIMIT);
    let stop_probe = Arc::new(AtomicBool::new(false));
    let lateness = machine_lateness(Arc::clone(&stop_probe));
    let started = Instant::now();
    let attackers: Vec<_> = (0..FLOOD_THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut failed = 0usize;
                for _ in 0..(FLOOD_ATTEMPTS - FLOOD_HELD) / FLOOD_THREADS {
                    // Connect and drop at once: each attempt is refused at accept anyway.
                    if connect_from(ATTACKER_IP, addr).is_err() {
                        failed += 1;
                    }
                }
                failed
            })
        })
        .collect();
    // Meanwhile the good client keeps pinging, and a new good client connects.
    let mut during = Vec::new();
    while attackers.iter().any(|a| !a.is_finished()) {
        during.extend(ping_latencies(&mut good, 10));
    }
    let fresh = Client::connected(&broker, "fresh");
    let failed: usize = attackers
        .into_iter()
        .map(|a| a.join().expect("attacker thread"))
        .sum();
    let flood_time = started.elapsed();
    stop_probe.store(true, Ordering::Relaxed);
    let mut machine = lateness.join().expect("lateness probe");
    assert!(flood_time < Duration::from_secs(60), "{flood_time:?}");
    assert!(
        failed < FLOOD_ATTEMPTS / 100,
        "{failed} attempts failed to connect at all"
    );

    let open = held
        .iter_mut()
        .map(closed_by_peer)
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        open, FLOOD_PER_IP_LIMIT,
        "the attacker holds exactly the limit"
    );

    assert!(!during.is_empty());
    let mut base = baseline;
    let base_p50 = percentile(&mut base, 50);
    let (p50, p99) = (percentile(&mut during, 50), percentile(&mut during, 99));
    let max = during[during.len() - 1];
    // A ping needs two threads woken (the broker's loop and this one).
    let (late_p50, late_p99) = (percentile(&mut machine, 50), percentile(&mut machine, 99));
    eprintln!(
        "flood: {FLOOD_ATTEMPTS} attempts in {flood_time:?}; ping baseline p50 {base_p50:?}, during p50 {p50:?} p99 {p99:?} max {max:?} ({} pings); the machine woke sleepers late by p50 {late_p50:?} p99 {late_p99:?}",
        during.len()
    );
    assert!(
        p50 < Duration::from_millis(20) + 2 * late_p50,
        "p50 {p50:?}"
    );
    assert!(
        p99 < Duration::from_millis(200) + 2 * late_p99,
        "p99 {p99:?}"
    );

    // Refusals are logged at most once per second per loop, not once per attempt.
    let lines = broker
        .log_text()
        .matches("connection refused at accept")
        .count();
    assert!((1..100).contains(&lines), "{lines} refusal lines");
    fresh.disconnect();
    good.disconnect();

    // Every refusal was counted, by reason. The last attempts may still be in the kernel's
    // accept queue when the flood ends: the shutdown closes the listeners, so wait until
    // the broker has counted them (or has stopped counting).
    let attempts = (FLOOD_ATTEMPTS - failed) as u64;
    let expected = attempts - FLOOD_PER_IP_LIMIT as u64;
    broker.wait_metrics(|b| {
        b.metric(
            "starling_connections_refused_total",
            &[("reason", "per_ip")],
        ) >= expected as f64
    });
    broker.signal("TERM");
    assert_eq!(broker.wait_exit(Duration::from_secs(10)), Some(0));
    let log = broker.log_text();
    let refused: u64 = log
        .lines()
        .find(|l| l.contains("refusals since start, by limit"))
        .and_then(|l| l.split("max_connections_per_ip=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no per-IP refusal count in:\n{log}"));
    // (All of them unless a few never reached the broker.)
    assert!(
        refused <= expected && refused >= expected * 99 / 100,
        "{refused} refusals counted for {expected}"
    );
}

fn ping_latencies(client: &mut Client, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            client.ping();
            started.elapsed()
        })
        .collect()
}
