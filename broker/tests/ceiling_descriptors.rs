//! The process out of file descriptors, in process: the broker's own ceiling keeps its pools
//! within the open-file limit, so running out takes descriptors it does not account for.
//! This test takes them (the broker's loop runs in the test process, which shares one
//! limit) and checks that a newcomer is still accepted on the loop's spare descriptor: it
//! gets in when a connection idle before CONNECT can be shed for it, and is answered
//! CONNACK 0x03 outside the pool when none can.
//!
//! Alone in its test binary: it lowers the process's open-file limit.

mod server_common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use server_common::{Client, READ_TIMEOUT, connect};
use starling::config::{ListenerProtocol, ListenerSettings};
use starling::core::CoreConfig;
use starling::server::{self, ServerConfig};
use starling_pool::PoolConfig;

/// Descriptors the test leaves free above those open when it lowers the limit (more than
/// it needs for its own sockets before the fillers take the rest).
const HEADROOM_FDS: u64 = 32;

fn nofile() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a pointer to a live local.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    (limit.rlim_cur, limit.rlim_max)
}

fn set_soft_nofile(soft: u64) {
    let (_, hard) = nofile();
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one rlimit through a pointer to a live local.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// Opens files until the process has no descriptor left.
fn take_every_descriptor() -> Vec<File> {
    let mut fillers = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        fillers.push(file);
    }
    fillers
}

/// A raw client socket, the CONNECT sent.
fn connect_raw(addr: SocketAddr, client_id: &str) -> Client {
    let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("connect");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("timeout");
    let mut client = Client { stream };
    client.send(&connect(client_id));
    client
}

#[test]
fn out_of_descriptors_a_newcomer_is_accepted_on_the_spare() {
    let core = CoreConfig {
        max_connections: 1000,
        pool: PoolConfig {
            initial_objects: 8,
            max_preheated_objects: 8,
            max_live_objects: 1000,
            ..PoolConfig::default()
        },
        ..CoreConfig::default()
    };
    let server = server::start(ServerConfig {
        listeners: vec![ListenerSettings {
            protocol: ListenerProtocol::Tcp,
            bind: "127.0.0.1:0".parse().expect("address"),
            max_connections: 0,
            access: Default::default(),
            proxy_protocol: false,
            transport: Default::default(),
        }],
        max_connections_per_ip: 0,
        event_loops: 1,
        core,
        persistence: Default::default(),
    })
    .expect("the server starts");
    let addr = server.local_addrs[0];
    let probe = server.probe();
    // A connection that never sends CONNECT: the one to shed.
    let mut idle = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("idle socket");
    idle.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    wait_for(&probe, "the idle socket accepted", |t| t.accepted == 1);

    let (soft_before, _) = nofile();
    let open = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count() as u64;
    set_soft_nofile(open + HEADROOM_FDS);
    let mut fillers = take_every_descriptor();

    // One descriptor free: the client's socket takes it, the broker's accept finds none.
    drop(fillers.pop());
    let mut first = connect_raw(addr, "on-the-spare");
    let connack = first.recv().expect("CONNACK");
    assert_eq!(connack.body, [0, 0], "the idle connection was shed for it");
    let mut byte = [0u8; 1];
    assert_eq!(
        idle.read(&mut byte).expect("EOF"),
        0,
        "the idle socket is closed"
    );
    first.ping();

    // Nothing left to shed: answered outside the pool, on the spare.
    drop(fillers.pop());
    let mut second = connect_raw(addr, "refused-on-the-spare");
    let connack = second.recv().expect("CONNACK");
    assert_eq!(connack.body, [0, 3], "CONNACK 0x03 outside the pool");
    assert_eq!(second.stream.read(&mut byte).expect("EOF"), 0);

    drop(fillers);
    set_soft_nofile(soft_before);
    drop(second);
    let totals = wait_for(&probe, "the refusals counted", |t| {
        t.refused_descriptors == 2 && t.refused_unanswered == 0
    });
    assert_eq!(totals.shed_before_connect, 1);
    let snapshot = probe.snapshot();
    assert_eq!(snapshot.loops[0].outside.answered, 1);
    // The spare came back: a third newcomer, with descriptors to spare now, gets in.
    let mut third = connect_raw(addr, "plenty");
    assert_eq!(third.recv().expect("CONNACK").body, [0, 0]);
    third
        .stream
        .write_all(&server_common::DISCONNECT)
        .expect("DISCONNECT");
    first.disconnect();
}

/// Polls the loops' counters until `check` accepts them.
fn wait_for(
    probe: &starling::monitor::Probe,
    what: &str,
    check: impl Fn(&starling::core::ShardStats) -> bool,
) -> starling::core::ShardStats {
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        let totals = probe.snapshot().totals();
        if check(&totals) {
            return totals;
        }
        assert!(Instant::now() < deadline, "{what}: {totals:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
