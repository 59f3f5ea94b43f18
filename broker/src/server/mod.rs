//! The thin mio driver around the sans-IO core: one event-loop thread per loop, each with
//! its own [`Shard`](crate::core::Shard), `mio::Poll` and `SO_REUSEPORT` listeners.
//!
//! - [`listener`]: binding the per-loop listening sockets.
//! - [`event_loop`]: the loop itself (accept, read, write, actions, timers).
//! - [`mailbox`]: what loops send each other (handed-over sockets, forwarded messages).
//! - [`admission`]: the per-IP and per-listener limits, checked at accept.
//! - [`proxy`]: the PROXY protocol header on the listeners configured for it (the client's
//!   address behind a load balancer).
//! - [`control`]: live reload and graceful shutdown, asked by the main thread.
//! - [`accept`], [`actions`]: the loop's accepting and its carrying out of core actions.
//! - [`outside`]: sockets a loop holds outside its pool (newcomers refused when it is full,
//!   connections lingering after the broker's last packet).
//! - [`supervisor`]: the main thread (signals, reload, shutdown summary).
//! - [`trim`]: memory given back after a spike (tables shrunk, `malloc_trim`).
//! - [`layered`], [`transport`]: TLS and WebSocket between the socket and the core.
//! - [`observe`]: a loop's answer to the monitoring threads (its numbers, `$SYS` messages).
//!
//! [`start`] binds, spawns the loops and waits until every one has built its shard, then
//! returns a [`Server`] to reload, shut down or wait on.

pub mod accept;
pub mod actions;
pub mod admission;
pub mod control;
pub mod credentials;
pub mod durable;
pub mod event_loop;
pub mod layered;
pub mod listener;
pub mod login;
pub mod mailbox;
pub mod observe;
pub mod outside;
pub mod pacing;
pub mod persist;
pub mod proxy;
pub mod supervisor;
pub mod throttle;
pub mod transport;
pub mod trim;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use starling_pool::PoolStats;

use crate::config::ListenerSettings;
use crate::core::{CoreConfig, Shared};
use admission::Admission;
use control::{Control, ShutdownReport};
use event_loop::EventLoop;
use mailbox::{Inbound, Mailbox, Peers};

// Tokens carry a whole 64-bit pool key (see `event_loop`).
#[cfg(not(target_pointer_width = "64"))]
compile_error!("the mio driver packs 64-bit connection keys into tokens: 64-bit targets only");

/// How long a reload waits for the loops to confirm the new limits.
pub const RELOAD_ACK_TIMEOUT_MS: u64 = 1000;

/// What the driver needs: where to listen, how many loops, and the core's limits (whose
/// `pool` is the per-loop pool, `max_live_objects` included: the configuration sizes it,
/// [`crate::config::sizing`]).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The listeners (each loop gets one socket per listener).
    pub listeners: Vec<ListenerSettings>,
    /// Connections one source IP may hold (0: no limit).
    pub max_connections_per_ip: usize,
    /// Event-loop threads.
    pub event_loops: usize,
    /// The core's configuration, shared by every loop.
    pub core: CoreConfig,
    /// `[persistence]`: the store.
    pub persistence: crate::config::persistence::PersistenceSettings,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listener could not be bound.
    Bind(io::Error),
    /// A password or ACL file could not be read or is malformed.
    Access(String),
    /// A listener's certificate, key or CA file could not be used.
    Tls(String),
    /// The store could not be opened or read (the message names its file).
    Store(String),
    /// A loop could not create its poll or waker, or its thread could not be spawned.
    Io(io::Error),
    /// A loop refused the configuration (its pool's `ConfigError`).
    Loop {
        /// The loop.
        loop_index: usize,
        /// What it said.
        message: String,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(e) => write!(f, "{e}"),
            StartError::Access(e) => write!(f, "{e}"),
            StartError::Tls(e) => write!(f, "{e}"),
            StartError::Store(e) => write!(f, "{e}"),
            StartError::Io(e) => write!(f, "event loop set-up failed: {e}"),
            StartError::Loop {
                loop_index,
                message,
            } => write!(f, "event loop {loop_index} did not start: {message}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The running loops.
pub struct Server {
    handles: Vec<JoinHandle<()>>,
    exited: crossbeam_channel::Receiver<(usize, Result<(), String>)>,
    peers: Peers,
    admission: Arc<Admission>,
    shared: Arc<Shared>,
    credentials: Arc<credentials::Credentials>,
    /// What each listener puts under MQTT (their TLS files are reloaded on SIGHUP).
    transports: Arc<[transport::ListenerTransport]>,
    /// Each listener's transport numbers (for `/metrics`).
    transport_stats: Arc<transport::stats::TransportStats>,
    /// The addresses actually bound (port 0 resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// Each loop's pool numbers right after it was built.
    pub pool_stats: Vec<PoolStats>,
    /// The store, when persistence is on.
    persister: Option<Arc<persist::Persister>>,
}

impl Server {
    /// A loop that has exited since the last call, which one and how.
    pub fn try_exited(&self) -> Option<(usize, Result<(), String>)> {
        self.exited.try_recv().ok()
    }

    /// Applies new limits to every loop (a live reload): the per-IP and per-listener ones
    /// at once, the core's on each loop's next turn. Returns how many loops confirmed within
    /// [`RELOAD_ACK_TIMEOUT_MS`] (all of them unless one is stuck or gone).
    pub fn reload(
        &self,
        core: &CoreConfig,
        listener_max: &[usize],
        max_connections_per_ip: usize,
    ) -> usize {
        self.admission
            .set_limits(listener_max, max_connections_per_ip);
        self.confirmed(|applied| Control::Reload(Box::new(core.clone()), applied))
    }

    /// Re-reads the password and ACL files of `listeners` and puts the new access policy in
    /// force on every loop; returns how many loops confirmed in time, or why the files were
    /// rejected (the running rules then stay).
    pub fn reload_access(&self, listeners: &[ListenerSettings]) -> Result<usize, String> {
        let policy = self.credentials.reload(listeners)?;
        Ok(self.confirmed(|applied| Control::Access(Box::new(policy.clone()), applied)))
    }

    /// Sends every loop the request `control` makes with its confirmation channel; returns
    /// how many loops confirmed within [`RELOAD_ACK_TIMEOUT_MS`].
    fn confirmed(&self, control: impl Fn(crossbeam_channel::Sender<usize>) -> Control) -> usize {
        let (applied, confirmations) = crossbeam_channel::unbounded();
        for peer in self.peers.iter() {
            let _ = peer.send(Inbound::Control(control(applied.clone())));
            let _ = peer.wake();
        }
        drop(applied);
        let deadline = Instant::now() + std::time::Duration::from_millis(RELOAD_ACK_TIMEOUT_MS);
        let mut confirmed = 0;
        while confirmed < self.peers.len() && confirmations.recv_deadline(deadline).is_ok() {
            confirmed += 1;
        }
        confirmed
    }

    /// Starts a graceful shutdown of every loop; each reports on the returned channel once
    /// it has closed its last connection (at `deadline` at the latest).
    pub fn shutdown(&self, deadline: Instant) -> crossbeam_channel::Receiver<ShutdownReport> {
        let (report, reports) = crossbeam_channel::unbounded();
        for peer in self.peers.iter() {
            let control = Control::Shutdown {
                deadline,
                report: report.clone(),
            };
            let _ = peer.send(Inbound::Control(control));
            let _ = peer.wake();
        }
        reports
    }

    /// A clean stop, after the loops reported: closes the store's file (persistence on).
    pub fn close_store(&self) {
        if let Some(persister) = &self.persister {
            persister.close();
        }
    }

    /// The number of event loops.
    pub fn loops(&self) -> usize {
        self.peers.len()
    }

    /// A handle the monitoring threads use to ask every loop for its numbers.
    pub fn probe(&self) -> crate::monitor::Probe {
        crate::monitor::Probe::new(
            Arc::clone(&self.peers),
            Arc::clone(&self.shared),
            Arc::clone(&self.transport_stats),
        )
        .with_store(self.persister.clone())
    }

    /// Reads every TLS listener's certificate, key and CA files again; new handshakes use
    /// them, connections already up keep theirs. A listener whose files do not load keeps
    /// its old ones. Returns, per TLS listener, its address and what came of it.
    pub fn reload_tls(&self) -> Vec<(SocketAddr, Result<transport::tls::CertificateInfo, String>)> {
        self.transports
            .iter()
            .zip(&self.local_addrs)
            .enumerate()
            .filter_map(|(i, (t, &addr))| {
                let context = t.tls.as_ref()?;
                let outcome = context.reload().map_err(|e| e.to_string());
                if let (Ok(info), Some(stats)) = (&outcome, self.transport_stats.listener(i)) {
                    stats.set_certificate_not_after(info.not_after_unix_secs);
                }
                Some((addr, outcome))
            })
            .collect()
    }

    /// Blocks until a loop exits (they only do on a fatal error) and returns which one and
    /// why.
    pub fn wait(self) -> (usize, String) {
        let outcome = match self.exited.recv() {
            Ok((index, Ok(()))) => (index, "event loop returned".to_string()),
            Ok((index, Err(error))) => (index, error),
            Err(_) => (usize::MAX, "every event loop is gone".to_string()),
        };
        drop(self.handles);
        outcome
    }
}

/// Binds the listeners, spawns one pinned thread per loop and waits until each has built
/// its shard (and preheated its pool).
pub fn start(config: ServerConfig) -> Result<Server, StartError> {
    let loops = config.event_loops.max(1);
    let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.bind).collect();
    let listeners = listener::bind_all(&addrs, loops).map_err(StartError::Bind)?;
    let listener_max: Vec<usize> = config.listeners.iter().map(|l| l.max_connections).collect();
    let admission = Arc::new(Admission::new(&listener_max, config.max_connections_per_ip));
    let epoch = Instant::now();
    let local_addrs: Vec<SocketAddr> = listeners
        .first()
        .map(|l| l.iter().filter_map(|l| l.local_addr().ok()).collect())
        .unwrap_or_default();
    // Assigned client ids are derived from a key no client can know (`Shared::assigned_client_id`).
    let assigned_id_key = crate::core::shared::random_assigned_id_key().map_err(StartError::Io)?;
    let recovery = persist::Recovery::open(&config.persistence, loops, epoch)?;
    let shared =
        Arc::new(Shared::new(loops, assigned_id_key).with_persistence(recovery.persist_shared()));
    let (persister, mut restores) = recovery.start(&config.persistence, &shared)?;
    let mut mailboxes = Vec::with_capacity(loops);
    let mut polls = Vec::with_capacity(loops);
    for _ in 0..loops {
        let poll = mio::Poll::new().map_err(StartError::Io)?;
        let (mailbox, inbox) = Mailbox::new(poll.registry(), epoch).map_err(StartError::Io)?;
        mailboxes.push(mailbox);
        polls.push((poll, inbox));
    }
    let peers: Peers = Arc::from(mailboxes);
    let (transports, transport_stats) = load_transports(&config.listeners, &local_addrs)?;
    let loaded = credentials::load(&config.listeners, 0).map_err(StartError::Access)?;
    let credentials = Arc::new(
        credentials::Credentials::start(loaded, Arc::clone(&peers)).map_err(StartError::Io)?,
    );
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(loops);
    let (exit_tx, exit_rx) = crossbeam_channel::bounded(loops);
    let mut handles = Vec::with_capacity(loops);
    for (index, ((poll, inbox), listeners)) in polls.into_iter().zip(listeners).enumerate() {
        let core = config.core.clone();
        let shared = Arc::clone(&shared);
        let peers = Arc::clone(&peers);
        let admission = Arc::clone(&admission);
        let credentials = Arc::clone(&credentials);
        let proxy_listeners: Vec<bool> =
            config.listeners.iter().map(|l| l.proxy_protocol).collect();
        let transports = Arc::clone(&transports);
        let transport_stats = Arc::clone(&transport_stats);
        let pin = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let ready_tx = ready_tx.clone();
        let exit_tx = exit_tx.clone();
        let persister = persister.clone();
        let restore = restores.take(index);
        let handle = std::thread::Builder::new()
            .name(format!("starling-loop-{index}"))
            .spawn(move || {
                if let Some(core_id) = pin
                    && !core_affinity::set_for_current(core_id)
                {
                    tracing::debug!(loop_index = index, "could not pin the loop to a core");
                }
                let parts = event_loop::Parts {
                    index,
                    loops,
                    core,
                    shared,
                    poll,
                    inbox,
                    peers,
                    listeners,
                    proxy_listeners,
                    transports,
                    transport_stats,
                    admission,
                    credentials,
                    epoch,
                    persister,
                };
                // A panicking loop must take the process down with it (through `wait`),
                // not leave a broker with one dead loop behind.
                let mut reported = false;
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                        || match EventLoop::new(parts) {
                            Ok(mut event_loop) => {
                                event_loop.restore(restore);
                                reported = true;
                                let _ = ready_tx.send((index, Ok(event_loop.pool_stats())));
                                event_loop.run().map_err(|e| format!("poll failed: {e}"))
                            }
                            Err(error) => Err(error.to_string()),
                        },
                    ));
                let result = outcome.unwrap_or_else(|_| Err("the event loop panicked".to_string()));
                if !reported {
                    let message = result.clone().err().unwrap_or_default();
                    let _ = ready_tx.send((index, Err(message)));
                }
                let _ = exit_tx.send((index, result));
            })
            .map_err(StartError::Io)?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut pool_stats = vec![PoolStats::default(); loops];
    for _ in 0..loops {
        match ready_rx.recv() {
            Ok((index, Ok(stats))) => pool_stats[index] = stats,
            Ok((loop_index, Err(message))) => {
                return Err(StartError::Loop {
                    loop_index,
                    message,
                });
            }
            Err(_) => {
                return Err(StartError::Loop {
                    loop_index: usize::MAX,
                    message: "a loop thread ended before reporting".to_string(),
                });
            }
        }
    }
    Ok(Server {
        handles,
        exited: exit_rx,
        peers,
        admission,
        shared,
        credentials,
        transports,
        transport_stats,
        local_addrs,
        pool_stats,
        persister,
    })
}

/// Loads every listener's TLS files (logging each certificate) and makes their numbers.
#[allow(clippy::type_complexity)]
fn load_transports(
    listeners: &[ListenerSettings],
    local_addrs: &[SocketAddr],
) -> Result<
    (
        Arc<[transport::ListenerTransport]>,
        Arc<transport::stats::TransportStats>,
    ),
    StartError,
> {
    let stats = transport::stats::TransportStats::new(listeners);
    let mut transports = Vec::with_capacity(listeners.len());
    for (i, settings) in listeners.iter().enumerate() {
        let loaded = transport::ListenerTransport::load(settings)
            .map_err(|e| StartError::Tls(format!("listener {}: {e}", settings.bind)))?;
        if let Some(context) = &loaded.tls {
            let info = context.certificate();
            let addr = local_addrs.get(i).copied().unwrap_or(settings.bind);
            transport::tls::log_certificate(addr, &info, "loaded");
            if let Some(stats) = stats.listener(i) {
                stats.set_certificate_not_after(info.not_after_unix_secs);
            }
        }
        transports.push(loaded);
    }
    Ok((Arc::from(transports), Arc::new(stats)))
}
