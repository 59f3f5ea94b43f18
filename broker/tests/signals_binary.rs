//! Signals against the real binary: SIGHUP reloads the file (a lower max_connections refuses
//! newcomers and keeps everyone connected; a broken file changes nothing), SIGTERM drains
//! what clients have queued and exits 0 within the timeout, a second signal after a short
//! grace exits at once (two within the grace are one request), and a signal that comes as
//! soon as the port is open finds its handler installed.

mod server_common;

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use server_common::{Broker, Client, TempConfig, puback, publish};

/// Starts a broker from a file made by `text(listen_addr)`; the file is returned to rewrite.
fn start_from_file(
    args: &[&str],
    text: impl Fn(&str) -> String + Clone,
) -> (Broker, TempConfig, String) {
    let made: Mutex<Option<(TempConfig, String)>> = Mutex::new(None);
    let broker = Broker::start_with(args, |addr| {
        let file = TempConfig::new("signals", &text(&addr.to_string()));
        let arg = file.arg();
        *made.lock().expect("lock") = Some((file, addr.to_string()));
        vec!["--config".to_string(), arg]
    });
    let (file, addr) = made.into_inner().expect("lock").expect("the file was made");
    (broker, file, addr)
}

fn limits_file(addr: &str, max_connections: usize) -> String {
    format!(
        "[server]\nevent_loops = 2\nshutdown_timeout_ms = 3000\n\
         [[listeners]]\nbind = \"{addr}\"\n\
         [limits]\nmax_connections = {max_connections}\n"
    )
}

#[test]
fn sighup_lowering_max_connections_refuses_newcomers_and_keeps_everyone() {
    let (broker, file, addr) = start_from_file(&[], |addr| limits_file(addr, 3));
    let mut clients: Vec<Client> = (0..3)
        .map(|i| Client::connected(&broker, &format!("c{i}")))
        .collect();
    file.write(&limits_file(&addr, 1));
    broker.signal("HUP");
    broker.wait_log("SIGHUP: configuration reloaded", 1);
    assert!(
        broker
            .log_text()
            .contains("configuration key changed: applied key=limits.max_connections old=3 new=1")
    );
    let (_refused, code) = Client::connect(&broker, "newcomer");
    assert_eq!(code, 3, "over the lowered limit: CONNACK 0x03");
    for client in &mut clients {
        client.ping();
    }
    // Raised again: newcomers get in.
    file.write(&limits_file(&addr, 10));
    broker.signal("HUP");
    broker.wait_log("SIGHUP: configuration reloaded", 2);
    Client::connected(&broker, "welcome").disconnect();
}

#[test]
fn sighup_changes_the_log_level() {
    let made: Mutex<Option<(TempConfig, String)>> = Mutex::new(None);
    let text = |addr: &str, level: &str| {
        format!("[server]\nlog_level = \"{level}\"\n[[listeners]]\nbind = \"{addr}\"\n")
    };
    let broker = Broker::start_logging(
        &[],
        |addr| {
            let file = TempConfig::new("level", &text(&addr.to_string(), "info"));
            let arg = file.arg();
            *made.lock().expect("lock") = Some((file, addr.to_string()));
            vec!["--config".to_string(), arg]
        },
        None,
    );
    let (file, addr) = made.into_inner().expect("lock").expect("the file was made");
    // "connection accepted" is a debug line (the info one is "client connected").
    Client::connected(&broker, "quiet").disconnect();
    broker.wait_log("client connected", 1);
    assert!(!broker.log_text().contains("connection accepted"));
    file.write(&text(&addr, "debug"));
    broker.signal("HUP");
    broker.wait_log("applied key=server.log_level old=info new=debug", 1);
    Client::connected(&broker, "loud").disconnect();
    broker.wait_log("connection accepted", 1);
}

#[test]
fn sighup_with_a_broken_file_keeps_the_running_config() {
    let (mut broker, file, addr) = start_from_file(&[], |addr| limits_file(addr, 2));
    file.write(&format!("{}max_conections = 1\n", limits_file(&addr, 1)));
    broker.signal("HUP");
    broker.wait_log("configuration rejected", 1);
    broker.wait_log("limits.max_conections", 1);
    // Still 2, not 1.
    let a = Client::connected(&broker, "a");
    let b = Client::connected(&broker, "b");
    assert_eq!(Client::connect(&broker, "c").1, 3);
    a.disconnect();
    b.disconnect();
    // A key that needs a restart is reported, not applied.
    file.write(&limits_file(&addr, 2).replace("event_loops = 2", "event_loops = 3"));
    broker.signal("HUP");
    broker.wait_log("needs a restart, not applied key=server.event_loops", 1);
    assert!(broker.alive());
}

#[test]
fn sigterm_with_clients_in_flight_delivers_what_was_queued_and_exits_0() {
    let (mut broker, _file, _) = start_from_file(&["--max-inflight-messages", "1"], |addr| {
        limits_file(addr, 100)
    });
    let mut subscriber = Client::connected(&broker, "sub");
    assert_eq!(subscriber.subscribe(1, "drain/#", 1), vec![1]);
    let mut publisher = Client::connected(&broker, "pub");
    const MESSAGES: u8 = 10;
    for i in 0..MESSAGES {
        publisher.send(&publish("drain/t", &[i], 1, u16::from(i) + 1));
        assert_eq!(publisher.recv().expect("PUBACK").first, 0x40);
    }
    // One message is in flight, nine are queued behind the window.
    let first = subscriber.recv_publish();
    let started = Instant::now();
    broker.signal("TERM");
    broker.wait_log("shutting down", 1);
    // No new connections, once every loop has closed its listener (each does on its next
    // turn after the shutdown request).
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&broker.addr, Duration::from_secs(1)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 5 s into the shutdown"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Acknowledging opens the window: every queued message still arrives.
    let mut got = vec![first.payload[0]];
    subscriber.send(&puback(first.packet_id.expect("QoS 1")));
    while got.len() < usize::from(MESSAGES) {
        let message = subscriber.recv_publish();
        got.push(message.payload[0]);
        subscriber.send(&puback(message.packet_id.expect("QoS 1")));
    }
    assert_eq!(got, (0..MESSAGES).collect::<Vec<u8>>());
    subscriber.expect_closed();
    publisher.expect_closed();
    let code = broker.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", broker.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let log = broker.log_text();
    assert!(log.contains("shutdown complete clients=2"), "{log}");
    assert!(log.contains("messages_dropped=0"), "{log}");
}

#[test]
fn sigterm_closes_what_cannot_drain_at_the_timeout() {
    let (mut broker, _file, _) = start_from_file(&["--max-inflight-messages", "1"], |addr| {
        limits_file(addr, 100).replace("shutdown_timeout_ms = 3000", "shutdown_timeout_ms = 500")
    });
    let mut subscriber = Client::connected(&broker, "stuck");
    assert_eq!(subscriber.subscribe(1, "s/#", 1), vec![1]);
    let mut publisher = Client::connected(&broker, "pub");
    for i in 0..5u16 {
        publisher.send(&publish("s/t", b"m", 1, i + 1));
        assert_eq!(publisher.recv().expect("PUBACK").first, 0x40);
    }
    let started = Instant::now();
    broker.signal("INT");
    // The subscriber never acknowledges: its queue cannot drain.
    let code = broker.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let log = broker.log_text();
    assert!(log.contains("clients_closed_with_unsent_data=1"), "{log}");
    assert!(log.contains("messages_dropped=4"), "{log}");
}

/// A subscriber that never acknowledges, with QoS 1 messages queued behind its window of
/// one: a graceful shutdown cannot drain it before `shutdown_timeout_ms`.
fn stuck_subscriber(broker: &Broker) -> (Client, Client) {
    let mut subscriber = Client::connected(broker, "stuck");
    assert_eq!(subscriber.subscribe(1, "s/#", 1), vec![1]);
    let mut publisher = Client::connected(broker, "pub");
    for i in 0..3u16 {
        publisher.send(&publish("s/t", b"m", 1, i + 1));
        assert_eq!(publisher.recv().expect("PUBACK").first, 0x40);
    }
    (subscriber, publisher)
}

/// Sends `signal` to the broker's pid directly (no `kill` process in between, so two calls
/// can be a fraction of a millisecond apart).
fn raw_signal(broker: &Broker, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(broker.pid()).expect("pid fits pid_t");
    // SAFETY: kill(2) takes two integers and touches no memory of ours; the pid is our own
    // child's, which has not been reaped (the Broker still holds it).
    let status = unsafe { libc::kill(pid, signal) };
    assert_eq!(status, 0, "kill({pid}, {signal})");
}

#[test]
fn a_second_signal_after_the_grace_exits_at_once() {
    let (mut broker, _file, _) = start_from_file(&["--max-inflight-messages", "1"], |addr| {
        limits_file(addr, 100).replace("shutdown_timeout_ms = 3000", "shutdown_timeout_ms = 60000")
    });
    let _clients = stuck_subscriber(&broker);
    // Taken before the signal: the grace runs from when the broker handles it, later.
    let first = Instant::now();
    broker.signal("TERM");
    broker.wait_log("shutting down", 1);
    // Signals inside the grace are the first one again; keep asking until one counts.
    let deadline = first + Duration::from_secs(10);
    let code = loop {
        broker.signal("TERM");
        if let Some(code) = broker.wait_exit(Duration::from_millis(100)) {
            break Some(code);
        }
        assert!(Instant::now() < deadline, "{}", broker.log_text());
    };
    let waited = first.elapsed();
    assert_eq!(code, Some(1), "{}", broker.log_text());
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(
        broker
            .log_text()
            .contains("second shutdown signal: exiting at once")
    );
}

/// `timeout` sends SIGTERM to the broker and then to its process group, so the broker gets
/// two within a fraction of a millisecond: one request, drained, exit 0.
#[test]
fn two_sigterms_a_fraction_of_a_millisecond_apart_are_one_graceful_shutdown() {
    let (mut broker, _file, _) = start_from_file(&["--max-inflight-messages", "1"], |addr| {
        limits_file(addr, 100).replace("shutdown_timeout_ms = 3000", "shutdown_timeout_ms = 500")
    });
    let (mut subscriber, mut publisher) = stuck_subscriber(&broker);
    raw_signal(&broker, libc::SIGTERM);
    std::thread::sleep(Duration::from_micros(200));
    raw_signal(&broker, libc::SIGTERM);
    let code = broker.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", broker.log_text());
    let log = broker.log_text();
    assert!(log.contains("shutdown complete clients=2"), "{log}");
    assert!(!log.contains("exiting at once"), "{log}");
    assert_eq!(subscriber.recv_publish().payload, b"m");
    subscriber.expect_closed();
    publisher.expect_closed();
}

/// A SIGHUP sent as soon as the port accepts a connection (a deployment script that waits
/// for the port, then reloads) finds its handler installed: the broker reloads (here: says
/// there is no file to re-read) and serves on, never dies of the signal's default action.
#[test]
fn a_sighup_as_soon_as_the_port_accepts_is_handled() {
    const RUNS: usize = 8;
    for run in 0..RUNS {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", server_common::free_port())
            .parse()
            .expect("loopback address");
        let args: Vec<String> = ["--listen", &addr.to_string(), "--log-level", "info"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        let mut broker = Broker::spawn(addr, &args);
        let deadline = Instant::now() + server_common::START_TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            assert!(
                broker.alive(),
                "run {run}: exited early:\n{}",
                broker.log_text()
            );
            assert!(Instant::now() < deadline, "run {run}: never listened");
            std::thread::sleep(Duration::from_micros(200));
        }
        raw_signal(&broker, libc::SIGHUP);
        broker.wait_log("SIGHUP: no --config file to re-read", 1);
        assert!(broker.alive(), "run {run}:\n{}", broker.log_text());
        Client::connected(&broker, "after-hup").disconnect();
    }
}

#[test]
fn sighup_reconfigures_the_pools_in_place() {
    let pool_file = |addr: &str, initial: usize| {
        format!(
            "{}[pool]\ninitial_objects = {initial}\nmax_preheated_objects = 140\nidle_ttl_ms = 60000\n",
            limits_file(addr, 100)
        )
    };
    let (broker, file, addr) = start_from_file(&[], move |addr| pool_file(addr, 64));
    let mut client = Client::connected(&broker, "stays");
    file.write(&pool_file(&addr, 128).replace("idle_ttl_ms = 60000", "idle_ttl_ms = 1000"));
    broker.signal("HUP");
    broker.wait_log(
        "configuration key changed: applied key=pool.initial_objects",
        1,
    );
    broker.wait_log("configuration key changed: applied key=pool.idle_ttl_ms", 1);
    // Each loop's pool moved to the new ladder (64 -> 128) without a restart.
    broker.wait_log("[POOL] Reconfigured", 2);
    assert!(
        !broker.log_text().contains("needs a restart"),
        "{}",
        broker.log_text()
    );
    client.ping();
    client.disconnect();
}
