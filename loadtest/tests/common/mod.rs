//! What the harness's integration tests share: Starling in the test's own process, and a
//! temporary directory.

// Each test crate uses its own part.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use starling::config::access::AccessSettings;
use starling::config::persistence::PersistenceSettings;
use starling::config::{ListenerProtocol, ListenerSettings};
use starling::core::CoreConfig;
use starling::monitor::Probe;
use starling::server::{ServerConfig, start};

/// A plain TCP listener on a free loopback port with `access`.
pub fn tcp_listener(access: AccessSettings) -> ListenerSettings {
    ListenerSettings {
        protocol: ListenerProtocol::Tcp,
        bind: "127.0.0.1:0".parse().expect("address"),
        max_connections: 0,
        access,
        proxy_protocol: false,
        transport: Default::default(),
    }
}

/// Starling in this process with one `listener`, `event_loops` loops, `core` limits and
/// `persistence`; its address and a probe to read its own counters. Its loops live until
/// the test ends.
pub fn start_broker(
    listener: ListenerSettings,
    event_loops: usize,
    core: CoreConfig,
    persistence: PersistenceSettings,
) -> (SocketAddr, Probe) {
    let server = start(ServerConfig {
        listeners: vec![listener],
        max_connections_per_ip: 0,
        event_loops,
        core,
        persistence,
    })
    .expect("the broker starts");
    let addr = server.local_addrs[0];
    let probe = server.probe();
    std::thread::spawn(move || server.wait());
    (addr, probe)
}

/// A directory for one test's files, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("starling-loadtest-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
