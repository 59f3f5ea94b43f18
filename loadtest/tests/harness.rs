//! Tests of the harness itself: it counts deliveries exactly against the real broker, it
//! detects loss and duplication (a fake broker that drops and duplicates on purpose), it
//! tells dropped deliveries (the broker stopped delivering: Starling's own drop counter
//! agrees) from deliveries still under way at the drain's deadline (a deliberately slow
//! subscriber), it exits non-zero with a clear message when the target is down, and its
//! clients log in with the user names and password they are given (a password file and
//! an ACL hold them to it).
//! Loopback only, seconds each.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use starling::auth::password::{HashFormat, hash_password};
use starling::config::access::AccessSettings;
use starling::core::CoreConfig;
use starling::core::access::SessionTakeover;
use starling::monitor::Probe;
use starling_loadtest::cli::Args;
use starling_loadtest::drain::DrainEnd;
use starling_loadtest::report::Messages;

mod common;

fn args(argv: &[&str]) -> Args {
    let mut full = vec!["starling-loadtest"];
    full.extend_from_slice(argv);
    Args::parse_from(full)
}

/// Starling in this process on a free loopback port (its loops live until the test ends).
fn starling() -> SocketAddr {
    starling_with(CoreConfig::default(), 2).0
}

/// Starling with `core` limits on `event_loops` loops, and a probe to read its own counters.
fn starling_with(core: CoreConfig, event_loops: usize) -> (SocketAddr, Probe) {
    starling_with_access(core, event_loops, AccessSettings::default())
}

/// Starling whose listener has `access` (password file, ACL).
fn starling_with_access(
    core: CoreConfig,
    event_loops: usize,
    access: AccessSettings,
) -> (SocketAddr, Probe) {
    let listener = common::tcp_listener(access);
    common::start_broker(listener, event_loops, core, Default::default())
}

/// Every missing delivery is counted once, as dropped or as not delivered by the deadline,
/// and what arrived plus what is missing is what was expected.
fn assert_accounted(m: &Messages) {
    assert_eq!(m.dropped + m.undelivered, m.tally.missing);
    assert_eq!(m.tally.unique + m.tally.missing, m.expected);
    assert_eq!(m.tally.delivered, m.tally.unique + m.tally.duplicates);
}

/// A `fanin` run of two publishers against `target` with `flags`; its message phase.
fn fanin(target: SocketAddr, flags: &[&str]) -> Messages {
    let target = target.to_string();
    let mut argv = vec![
        "fanin",
        "--target",
        &target,
        "--publishers",
        "2",
        "--duration-secs",
        "10",
    ];
    argv.extend_from_slice(flags);
    let report = starling_loadtest::run(&args(&argv)).expect("the run completes");
    report.messages.expect("a message phase")
}

#[test]
fn the_bulk_scenarios_count_a_retained_set_and_subscriptions_against_starling() {
    let target = starling().to_string();
    for qos in ["0", "1"] {
        let report = starling_loadtest::run(&args(&[
            "retained",
            "--target",
            &target,
            "--messages",
            "3000",
            "--payload-bytes",
            "16",
            "--qos",
            qos,
            "--drain-secs",
            "10",
        ]))
        .expect("the run completes");
        let r = report.retained.expect("a retained run");
        assert_eq!(
            (r.distinct, r.duplicates, r.missing, r.without_retain),
            (3000, 0, 0, 0),
            "QoS {qos}"
        );
        assert_eq!(r.bystander.failed, 0);
    }
    let report = starling_loadtest::run(&args(&[
        "subscribe",
        "--target",
        &target,
        "--clients",
        "3",
        "--filters",
        "500",
        "--filters-per-packet",
        "7",
    ]))
    .expect("the run completes");
    let s = report.subscriptions.expect("a subscribe run");
    assert_eq!((s.subscriptions, s.refused), (1500, 0));
    assert!(s.per_subscribe_us > 0.0 && s.per_unsubscribe_us > 0.0);
    // Past the broker's per-client limit (1024 by default) the rest is counted as refused.
    let report = starling_loadtest::run(&args(&[
        "subscribe",
        "--target",
        &target,
        "--clients",
        "1",
        "--filters",
        "1100",
    ]))
    .expect("the run completes");
    assert_eq!(report.subscriptions.expect("a subscribe run").refused, 76);
}

#[test]
fn counts_every_delivery_against_starling() {
    let target = starling().to_string();
    for (scenario, qos) in [("fanin", "1"), ("p2p", "0"), ("fanout", "2")] {
        let report = starling_loadtest::run(&args(&[
            scenario,
            "--target",
            &target,
            "--publishers",
            "4",
            "--pairs",
            "4",
            "--subscribers",
            "4",
            "--qos",
            qos,
            "--messages",
            "250",
            "--rate",
            "20000",
            "--duration-secs",
            "10",
            "--drain-deadline-secs",
            "10",
        ]))
        .expect("the run completes");
        let m = report.messages.expect("a message phase");
        let per_publisher = if scenario == "fanout" { 4 } else { 1 };
        let publishers = if scenario == "fanout" { 1 } else { 4 };
        assert_eq!(m.published, 250 * publishers, "{scenario}");
        assert_eq!(
            m.expected, 1000,
            "{scenario}: {per_publisher} subscribers per message"
        );
        assert_eq!(m.tally.delivered, 1000, "{scenario}");
        assert_eq!(m.tally.unique, 1000, "{scenario}");
        assert_eq!(
            (m.tally.missing, m.tally.duplicates, m.tally.out_of_order),
            (0, 0, 0),
            "{scenario}"
        );
        assert_eq!((m.dropped, m.undelivered), (0, 0), "{scenario}");
        assert_eq!(m.delivered_percent, 100.0, "{scenario}");
        let drain = m.drain.expect("a tcp run drains");
        assert_eq!(drain.ended, DrainEnd::Complete, "{scenario}");
        assert_eq!(m.latency.count, 1000, "{scenario}");
    }
}

#[test]
fn counts_a_shared_group_once_per_message_against_starling_over_mqtt_5() {
    let target = starling().to_string();
    let report = starling_loadtest::run(&args(&[
        "shared",
        "--protocol",
        "5",
        "--target",
        &target,
        "--publishers",
        "4",
        "--subscribers",
        "3",
        "--qos",
        "1",
        "--messages",
        "250",
        "--rate",
        "20000",
        "--drain-deadline-secs",
        "10",
    ]))
    .expect("the run completes");
    let m = report.messages.expect("a message phase");
    assert_eq!(m.published, 1000);
    assert_eq!(m.expected, 1000, "the group counts once per message");
    assert_eq!(m.tally.delivered, 1000);
    assert_eq!((m.tally.missing, m.tally.duplicates), (0, 0));
    let group = m.group.expect("a group balance");
    assert_eq!(group.per_member.len(), 3);
    assert_eq!(group.per_member.iter().sum::<u64>(), 1000);
}

/// Drops every `DROP_EVERY`th PUBLISH and sends every `DUP_EVERY`th (not dropped) twice.
const DROP_EVERY: u64 = 10;
const DUP_EVERY: u64 = 7;

/// A broker that forwards every PUBLISH to every subscriber, badly on purpose.
fn faulty_broker() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let subscribers: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let seen = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (subscribers, seen) = (Arc::clone(&subscribers), Arc::clone(&seen));
            std::thread::spawn(move || serve(stream, &subscribers, &seen));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, subscribers: &Mutex<Vec<TcpStream>>, seen: &AtomicU64) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some((first, header, total)) = frame(&buf) {
            let packet: Vec<u8> = buf.drain(..total).collect();
            let body = &packet[header..];
            let reply: Option<Vec<u8>> = match first >> 4 {
                1 => Some(vec![0x20, 2, 0, 0]),
                8 => Some(vec![0x90, 3, body[0], body[1], 0]),
                3 => {
                    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                    let copies = if n.is_multiple_of(DROP_EVERY) {
                        0
                    } else if n.is_multiple_of(DUP_EVERY) {
                        2
                    } else {
                        1
                    };
                    let mut subs = subscribers.lock().expect("lock");
                    for sub in subs.iter_mut() {
                        for _ in 0..copies {
                            sub.write_all(&packet).expect("forward");
                        }
                    }
                    None
                }
                12 => Some(vec![0xD0, 0]),
                14 => return,
                _ => None,
            };
            if first >> 4 == 8 {
                let clone = stream.try_clone().expect("clone");
                subscribers.lock().expect("lock").push(clone);
            }
            if let Some(reply) = reply {
                stream.write_all(&reply).expect("reply");
            }
        }
    }
}

/// (first byte, header length, frame length) of a complete frame at the start of `buf`.
fn frame(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (mut len, mut shift, mut at) = (0usize, 0, 1);
    loop {
        let b = *buf.get(at)?;
        len |= usize::from(b & 0x7F) << shift;
        shift += 7;
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    (buf.len() >= at + len).then_some((buf[0], at, at + len))
}

#[test]
fn detects_loss_and_duplication() {
    let m = fanin(
        faulty_broker(),
        &[
            "--messages",
            "100",
            "--rate",
            "2000",
            "--drain-quiet-ms",
            "300",
            "--drain-deadline-secs",
            "30",
            "--threads",
            "1",
        ],
    );
    let dropped = (1..=200u64)
        .filter(|n| n.is_multiple_of(DROP_EVERY))
        .count() as u64;
    let doubled = (1..=200u64)
        .filter(|n| !n.is_multiple_of(DROP_EVERY) && n.is_multiple_of(DUP_EVERY))
        .count() as u64;
    assert_eq!(m.expected, 200);
    assert_eq!(m.tally.missing, dropped);
    assert_eq!(m.tally.duplicates, doubled);
    assert_eq!(m.tally.delivered, 200 - dropped + doubled);
    // The fake broker stopped delivering: a quiet drain, and what is missing was dropped.
    assert_eq!(m.drain.map(|d| d.ended), Some(DrainEnd::Quiet));
    assert_eq!((m.dropped, m.undelivered), (dropped, 0));
    assert_accounted(&m);
}

#[test]
fn a_stalled_subscriber_behind_a_small_queue_shows_what_starling_dropped() {
    // 100 000 QoS 0 messages (8.6 MB) as fast as TCP allows toward one subscriber that
    // reads nothing for the first 500 ms (with a small receive buffer, so the kernel holds
    // little of it), on a Starling that queues at most 16 KiB of messages for a subscriber
    // (a limit that applies even while it holds the publishers back): it must drop, and
    // every message it drops is one the harness finds missing once deliveries stopped.
    let core = CoreConfig {
        max_queued_messages: 100,
        max_queued_bytes: 16 * 1024,
        max_publisher_hold_ms: 50,
        max_output_buffer_bytes: 16 * 1024,
        ..CoreConfig::default()
    };
    let (addr, probe) = starling_with(core, 1);
    let m = fanin(
        addr,
        &[
            "--messages",
            "50000",
            "--subscriber-pause-ms",
            "500",
            "--subscriber-rcvbuf-bytes",
            "16384",
            "--drain-quiet-ms",
            "1000",
            "--drain-deadline-secs",
            "60",
        ],
    );
    assert_eq!(m.expected, 100_000);
    assert_eq!(m.drain.map(|d| d.ended), Some(DrainEnd::Quiet));
    assert!(m.tally.missing > 0, "nothing dropped: {m:?}");
    assert_eq!((m.dropped, m.undelivered), (m.tally.missing, 0));
    assert_eq!(m.tally.duplicates, 0);
    assert_accounted(&m);
    let starling_dropped = probe.snapshot().totals().dropped;
    assert_eq!(
        m.dropped, starling_dropped,
        "Starling's own count differs: {m:?}"
    );
}

#[test]
fn a_subscriber_still_receiving_at_the_deadline_is_undelivered_not_dropped() {
    // 10 000 messages in half a second toward a subscriber that reads 100 kB/s (about
    // 1 200 messages a second): the drain gives up 1 s after publishing, while they are
    // still arriving (the quiet period is longer than the deadline, so it cannot end quiet).
    let m = fanin(
        starling(),
        &[
            "--messages",
            "5000",
            "--rate",
            "20000",
            "--subscriber-read-bytes-per-sec",
            "100000",
            "--drain-quiet-ms",
            "5000",
            "--drain-deadline-secs",
            "1",
        ],
    );
    assert_eq!(m.expected, 10_000);
    assert_eq!(m.drain.map(|d| d.ended), Some(DrainEnd::Deadline));
    assert!(m.tally.missing > 0, "everything arrived: {m:?}");
    assert_eq!((m.dropped, m.undelivered), (0, m.tally.missing));
    assert!(m.delivered_percent < 100.0);
    assert_accounted(&m);
}

#[test]
fn exits_non_zero_with_a_clear_message_when_the_target_is_down() {
    // A port that was free a moment ago, so nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_starling-loadtest"))
        .args(["conn", "--target", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run the binary");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the broker"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// `starling-floor` (the machine's ceiling for `conn`) answers both protocol versions well
/// enough for the harness, and the report splits the CONNACK latency and measures stalls.
#[test]
fn the_floor_serves_conn_runs_and_the_report_splits_connack_latency() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let target = format!("127.0.0.1:{port}");
    let mut floor = Command::new(env!("CARGO_BIN_EXE_starling-floor"))
        .args(["--listen", &target, "--threads", "2"])
        .spawn()
        .expect("start the floor");
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        TcpStream::connect(&target).is_ok()
    });
    assert!(up, "the floor does not listen");
    for protocol in ["4", "5"] {
        let report = starling_loadtest::run(&args(&[
            "conn",
            "--target",
            &target,
            "--clients",
            "300",
            "--subscribe",
            "--protocol",
            protocol,
        ]));
        let report = report.expect("the run completes");
        let c = report.connects.expect("connect phase");
        assert_eq!((c.connected, c.failed), (300, 0), "protocol {protocol}");
        let handshake = c.handshake_latency.expect("tcp splits the latency");
        let broker = c
            .connect_to_connack_latency
            .expect("tcp splits the latency");
        assert_eq!((handshake.count, broker.count), (300, 300));
        assert!(broker.p50_ms <= c.connack_latency.p50_ms);
        assert!(report.timer_lateness.expect("stall probe").count > 0);
    }
    let _ = floor.kill();
    let _ = floor.wait();
}

#[test]
fn clients_log_in_as_their_users_and_an_acl_holds_them_to_their_topics() {
    let dir = common::TempDir::new("login");
    // u0, u1, u2 with the same password ($7$, as mosquitto_passwd writes).
    let mut passwords = String::new();
    for n in 0..3 {
        let hash = hash_password(b"pw", HashFormat::Pbkdf2Sha512).expect("hash");
        passwords.push_str(&format!("u{n}:{hash}\n"));
    }
    let password_file = dir.0.join("passwords");
    std::fs::write(&password_file, passwords).expect("write the password file");
    // fanin's subscriber (u0) reads, each publisher (u1, u2) writes its own topic only.
    let acl_file = dir.0.join("acl");
    let acl = "user u0\ntopic read lt/+/fanin/+\n\
               user u1\ntopic write lt/+/fanin/0\n\
               user u2\ntopic write lt/+/fanin/1\n";
    std::fs::write(&acl_file, acl).expect("write the ACL");
    let access = AccessSettings {
        allow_anonymous: false,
        password_file: Some(password_file),
        acl_file: Some(acl_file),
        session_takeover: SessionTakeover::SameUser,
        identity_as_username: false,
    };
    let target = starling_with_access(CoreConfig::default(), 2, access)
        .0
        .to_string();
    let login = ["--username-prefix", "u", "--password", "pw"];

    // Every client logs in, in both cycles (first logins, then the same logins again).
    let mut argv = vec![
        "churn",
        "--target",
        &target,
        "--clients",
        "3",
        "--cycles",
        "2",
    ];
    argv.extend_from_slice(&login);
    let report = starling_loadtest::run(&args(&argv)).expect("the run completes");
    assert_eq!(report.cycles.len(), 2);
    for cycle in &report.cycles {
        assert_eq!((cycle.connects.connected, cycle.connects.failed), (3, 0));
    }

    // Publishers allowed their own topics deliver everything.
    let mut flags = vec!["--messages", "50", "--drain-quiet-ms", "500"];
    flags.extend_from_slice(&login);
    let m = fanin(target.parse().expect("address"), &flags);
    assert_eq!((m.expected, m.tally.unique, m.tally.missing), (100, 100, 0));

    // One shared user, u0, may read but not write: nothing is delivered.
    let shared = [
        "--messages",
        "50",
        "--drain-quiet-ms",
        "500",
        "--username",
        "u0",
        "--password",
        "pw",
    ];
    let m = fanin(target.parse().expect("address"), &shared);
    assert_eq!((m.expected, m.tally.unique), (100, 0));

    // A wrong password: no client connects, and the run says why (0x04: bad user name or
    // password).
    let error = starling_loadtest::run(&args(&[
        "conn",
        "--target",
        &target,
        "--clients",
        "2",
        "--username-prefix",
        "u",
        "--password",
        "wrong",
    ]))
    .expect_err("refused");
    let text = error.to_string();
    assert!(text.contains("CONNACK refused with code 0x04"), "{text}");
}
