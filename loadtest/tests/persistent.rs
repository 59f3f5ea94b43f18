//! Persistent subscribers: with `--subscriber-session-expiry-secs` the harness's subscribers
//! keep their sessions (3.1.1 Clean Session 0, MQTT 5 Session Expiry Interval), so a broker
//! that persists stores their messages; with `--subscribers-offline` they are away while the
//! publishers publish, and then stay away (the messages stay queued) or resume their
//! sessions and receive everything. Checked against an in-process Starling with `sync`
//! persistence, whose own counters (sessions, queued messages, store ops) agree.
//! Loopback only, seconds each.

use std::net::SocketAddr;

use clap::Parser;
use starling::config::persistence::{PersistenceMode, PersistenceSettings};
use starling::core::CoreConfig;
use starling::monitor::Probe;
use starling_loadtest::RunError;
use starling_loadtest::cli::{Args, Offline};
use starling_loadtest::report::Messages;

mod common;
use common::TempDir;

/// Messages per publisher: enough for many turns, few enough for a debug build.
const MESSAGES: &str = "500";
/// Publishers in each run.
const PUBLISHERS: u64 = 4;

fn args(argv: &[&str]) -> Args {
    let mut full = vec!["starling-loadtest"];
    full.extend_from_slice(argv);
    Args::parse_from(full)
}

/// Starling in this process on `event_loops` loops with `sync` persistence in `dir` and
/// unbounded queues, and a probe to read its counters.
fn starling(dir: &TempDir, event_loops: usize) -> (SocketAddr, Probe) {
    let core = CoreConfig {
        max_queued_messages: 1_000_000,
        max_queued_bytes: 0,
        ..CoreConfig::default()
    };
    let persistence = PersistenceSettings {
        mode: PersistenceMode::Sync,
        path: dir.0.clone(),
        ..PersistenceSettings::default()
    };
    let listener = common::tcp_listener(Default::default());
    common::start_broker(listener, event_loops, core, persistence)
}

/// A QoS 1 fan-in of [`PUBLISHERS`] publishers to one subscriber with `flags`.
fn fanin(target: SocketAddr, flags: &[&str]) -> Result<Messages, RunError> {
    let target = target.to_string();
    let publishers = PUBLISHERS.to_string();
    let mut argv = vec![
        "fanin",
        "--target",
        &target,
        "--publishers",
        &publishers,
        "--messages",
        MESSAGES,
        "--qos",
        "1",
        "--duration-secs",
        "30",
        "--drain-deadline-secs",
        "30",
    ];
    argv.extend_from_slice(flags);
    let report = starling_loadtest::run(&args(&argv))?;
    Ok(report.messages.expect("a message phase"))
}

fn total() -> u64 {
    PUBLISHERS * MESSAGES.parse::<u64>().expect("a count")
}

/// What the store has done so far: ops applied.
fn store_ops(probe: &Probe) -> u64 {
    probe.snapshot().store.expect("persistence is on").store.ops
}

#[test]
fn a_persistent_subscriber_has_its_messages_stored_and_a_clean_one_not() {
    let dir = TempDir::new("persistent");
    // One loop: with two, a QoS 1 message handed to the other loop is recorded until it is
    // routed there, whoever the subscriber is.
    let (target, probe) = starling(&dir, 1);
    // A clean session: its messages are delivered, never stored.
    let before = store_ops(&probe);
    let clean = fanin(target, &[]).expect("the run completes");
    assert_eq!((clean.tally.unique, clean.tally.missing), (total(), 0));
    assert_eq!(
        store_ops(&probe),
        before,
        "nothing stored for a clean session"
    );
    // Persistent, over 3.1.1 (Clean Session 0) and MQTT 5 (Session Expiry Interval): every
    // message is stored on its way (a body and an entry, then the entry's deletion at least).
    for protocol in ["3.1.1", "5"] {
        let before = store_ops(&probe);
        let kept = fanin(
            target,
            &[
                "--protocol",
                protocol,
                "--subscriber-session-expiry-secs",
                "600",
            ],
        )
        .expect("the run completes");
        assert_eq!((kept.tally.unique, kept.tally.missing), (total(), 0));
        assert_eq!(kept.tally.duplicates, 0);
        assert!(kept.offline.is_none());
        let ops = store_ops(&probe) - before;
        assert!(
            ops >= 3 * total(),
            "{protocol}: {ops} ops for {} messages",
            total()
        );
    }
}

#[test]
fn offline_subscribers_return_to_everything_queued_for_them() {
    let dir = TempDir::new("offline-return");
    let (target, probe) = starling(&dir, 2);
    for protocol in ["3.1.1", "5"] {
        let m = fanin(
            target,
            &[
                "--protocol",
                protocol,
                "--subscriber-session-expiry-secs",
                "600",
                "--subscribers-offline",
                "return",
            ],
        )
        .expect("the run completes");
        let away = m.offline.expect("an offline part");
        assert_eq!(away.then, Offline::Return);
        assert_eq!((away.departed, away.resumed), (1, 1), "{protocol}");
        assert_eq!(away.queued, total());
        assert_eq!(away.acknowledged, total());
        assert!(away.acknowledged_per_sec > 0.0);
        assert_eq!(m.expected, total());
        assert_eq!(
            (m.tally.unique, m.tally.missing),
            (total(), 0),
            "{protocol}"
        );
        assert_eq!(m.tally.duplicates, 0);
        assert_eq!(m.delivered_percent, 100.0);
    }
    // Nothing is left behind once they took it all.
    assert_eq!(probe.snapshot().session_totals().queued, 0);
}

#[test]
fn offline_subscribers_that_stay_away_leave_their_messages_queued() {
    let dir = TempDir::new("offline-stay");
    let (target, probe) = starling(&dir, 2);
    let m = fanin(
        target,
        &[
            "--subscriber-session-expiry-secs",
            "600",
            "--subscribers-offline",
            "stay",
        ],
    )
    .expect("the run completes");
    let away = m.offline.expect("an offline part");
    assert_eq!(
        (away.then, away.departed, away.resumed),
        (Offline::Stay, 1, 0)
    );
    assert_eq!((away.queued, away.acknowledged), (total(), total()));
    // Nothing was expected to arrive, so nothing counts as missing.
    assert_eq!((m.expected, m.tally.delivered, m.tally.missing), (0, 0, 0));
    assert_eq!(m.unacknowledged, 0);
    let snapshot = probe.snapshot();
    let sessions = snapshot.session_totals();
    assert_eq!((sessions.online, sessions.queued), (0, total() as usize));
    // Every message body is in the store, once.
    let store = snapshot.store.expect("persistence is on").store;
    assert_eq!(store.messages, total());
}

#[test]
fn offline_runs_need_a_session_that_outlives_the_connection_and_qos_1() {
    let target = "127.0.0.1:9"; // never reached: the flags are refused first
    for (flags, why) in [
        (
            vec!["fanin", "--qos", "1", "--subscribers-offline", "stay"],
            "no expiry",
        ),
        (
            vec![
                "fanin",
                "--subscriber-session-expiry-secs",
                "60",
                "--subscribers-offline",
                "return",
            ],
            "QoS 0",
        ),
        (
            vec![
                "conn",
                "--qos",
                "1",
                "--subscriber-session-expiry-secs",
                "60",
                "--subscribers-offline",
                "stay",
            ],
            "conn",
        ),
        (
            vec![
                "conn",
                "--transport",
                "sim",
                "--subscriber-session-expiry-secs",
                "60",
            ],
            "sim",
        ),
    ] {
        let mut argv = flags.clone();
        argv.extend_from_slice(&["--target", target]);
        match starling_loadtest::run(&args(&argv)) {
            Err(RunError::Usage(_)) => {}
            other => panic!("{why}: expected a usage error, got {other:?}"),
        }
    }
}
