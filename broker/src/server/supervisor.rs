//! The main thread once the loops run: it waits for signals and for loops that fail.
//!
//! - SIGTERM, SIGINT: graceful shutdown (`control`): stop accepting, drain within
//!   `server.shutdown_timeout_ms`, log a summary, exit 0. A second one at least
//!   [`SECOND_SIGNAL_GRACE_MS`] after the first exits at once (1); one sooner is the same
//!   request delivered twice (`timeout` and a terminal's Ctrl-C signal the whole process
//!   group, so the broker may get the signal twice within a millisecond) and is ignored.
//! - SIGHUP: live reload: re-read the `--config` file (flags still override it), refuse it
//!   whole if it is invalid, log every changed key, apply the live ones
//!   ([`crate::config::reload`]) and log the others as needing a restart.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::Server;
use super::control::ShutdownReport;
use crate::config::LogLevel;
use crate::config::{FileConfig, Host, Settings, load_fitted, reload};

/// How long the main thread sleeps between checks on the loops.
pub const SUPERVISOR_POLL_MS: u64 = 100;
/// How long after the shutdown deadline the main thread waits for loops to report.
pub const SHUTDOWN_GRACE_MS: u64 = 1000;
/// A shutdown signal this soon after the first is taken as the same request (a process
/// group signalled as a whole), not as "exit now".
pub const SECOND_SIGNAL_GRACE_MS: u64 = 500;
/// The signals the supervisor handles. Their handlers are installed (by creating the
/// `Signals` the supervisor reads) before the listeners are bound.
pub const SUPERVISED_SIGNALS: [i32; 3] = [SIGTERM, SIGINT, SIGHUP];

const SIGNALS: Token = Token(0);

/// The main thread's state.
pub struct Supervisor {
    /// The running loops.
    pub server: Server,
    /// The settings in force (live changes applied).
    pub settings: Settings,
    /// The command-line layer, put over the file again on every reload.
    pub flags: FileConfig,
    /// The file re-read on SIGHUP.
    pub config_path: Option<PathBuf>,
    /// `max_connections` is capped to this (the open-file ceiling).
    pub connection_ceiling: usize,
    /// Changes the log level.
    pub set_log_level: Box<dyn Fn(LogLevel)>,
}

struct Stopping {
    reports: crossbeam_channel::Receiver<ShutdownReport>,
    received: Vec<ShutdownReport>,
    deadline: Instant,
    started: Instant,
}

impl Supervisor {
    /// Runs until a graceful shutdown completes (success), a second signal arrives or a
    /// loop fails (failure). `signals` are the [`SUPERVISED_SIGNALS`], installed before the
    /// server was started; those that arrived since are handled first.
    pub fn run(mut self, mut signals: Signals) -> io::Result<ExitCode> {
        let mut poll = Poll::new()?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut events = Events::with_capacity(8);
        let mut stopping: Option<Stopping> = None;
        loop {
            match poll.poll(&mut events, Some(Duration::from_millis(SUPERVISOR_POLL_MS))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for signal in signals.pending() {
                match signal {
                    SIGHUP if stopping.is_none() => self.reload(),
                    SIGHUP => tracing::info!("SIGHUP ignored: shutting down"),
                    _ => match stopping.as_ref().map(|s| s.started.elapsed()) {
                        Some(since) if since >= Duration::from_millis(SECOND_SIGNAL_GRACE_MS) => {
                            tracing::warn!(signal, "second shutdown signal: exiting at once");
                            return Ok(ExitCode::FAILURE);
                        }
                        Some(since) => tracing::info!(
                            signal,
                            since_first_ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
                            grace_ms = SECOND_SIGNAL_GRACE_MS,
                            "shutdown signal repeated within the grace: the shutdown goes on"
                        ),
                        None => stopping = Some(self.begin_shutdown(signal)),
                    },
                }
            }
            if let Some(stop) = stopping.as_mut() {
                stop.received.extend(stop.reports.try_iter());
                let all = stop.received.len() >= self.server.loops();
                let late =
                    Instant::now() >= stop.deadline + Duration::from_millis(SHUTDOWN_GRACE_MS);
                if all || late {
                    log_summary(stop, self.server.loops());
                    self.server.close_store();
                    return Ok(ExitCode::SUCCESS);
                }
                while self.server.try_exited().is_some() {}
            } else if let Some((loop_index, outcome)) = self.server.try_exited() {
                let reason = outcome
                    .err()
                    .unwrap_or_else(|| "event loop returned".to_string());
                tracing::error!(loop_index, %reason, "an event loop stopped; exiting");
                return Ok(ExitCode::FAILURE);
            }
        }
    }

    fn begin_shutdown(&self, signal: i32) -> Stopping {
        let timeout_ms = self.settings.shutdown_timeout_ms;
        tracing::info!(
            signal,
            shutdown_timeout_ms = timeout_ms,
            "shutting down: no new connections, flushing what clients have queued"
        );
        let started = Instant::now();
        let deadline = started + Duration::from_millis(timeout_ms);
        Stopping {
            reports: self.server.shutdown(deadline),
            received: Vec::new(),
            deadline,
            started,
        }
    }

    /// SIGHUP: the TLS files first (with or without a configuration file), then re-read
    /// the configuration, validate it whole, diff, apply the live keys.
    fn reload(&mut self) {
        self.reload_tls();
        let Some(path) = self.config_path.clone() else {
            tracing::warn!("SIGHUP: no --config file to re-read; nothing reloaded");
            return;
        };
        // The same checks as start-up, with the ceiling found then (the loops that run).
        let host = Host::Ceiling(self.connection_ceiling);
        let fitted = match load_fitted(Some(&path), &self.flags, host) {
            Ok(fitted) => fitted,
            Err(error) => {
                tracing::error!(%error, "SIGHUP: configuration rejected; the running configuration stays");
                return;
            }
        };
        fitted.log_lowered();
        let new = fitted.settings;
        let changes = reload::diff(&self.settings, &new);
        self.reload_access(&new);
        if changes.is_empty() {
            tracing::info!(file = %path.display(), "SIGHUP: configuration re-read; nothing changed");
            return;
        }
        let next = reload::apply_live(&self.settings, &new);
        let listener_max: Vec<usize> = next.listeners.iter().map(|l| l.max_connections).collect();
        let confirmed = self
            .server
            .reload(&next.core, &listener_max, next.max_connections_per_ip);
        if confirmed < self.server.loops() {
            tracing::warn!(
                confirmed,
                loops = self.server.loops(),
                "not every event loop confirmed the new limits in time"
            );
        }
        (self.set_log_level)(next.log_level);
        self.settings = next;
        // Logged once in force, so that "applied" means applied.
        let (mut applied, mut skipped) = (0, 0);
        for change in &changes {
            if change.live {
                applied += 1;
                tracing::info!(key = %change.key, old = %change.old, new = %change.new, "configuration key changed: applied");
            } else {
                skipped += 1;
                tracing::warn!(key = %change.key, old = %change.old, new = %change.new, "configuration key changed: needs a restart, not applied");
            }
        }
        tracing::info!(
            applied,
            needs_restart = skipped,
            "SIGHUP: configuration reloaded"
        );
    }
}

impl Supervisor {
    /// Re-reads every TLS listener's certificate, key and CA files (a broken one keeps the
    /// files in use), logging each certificate's subject and expiry.
    fn reload_tls(&self) {
        for (listener, outcome) in self.server.reload_tls() {
            match outcome {
                Ok(info) => {
                    crate::server::transport::tls::log_certificate(listener, &info, "reloaded")
                }
                Err(error) => tracing::error!(
                    %listener,
                    %error,
                    "SIGHUP: TLS files rejected; the listener keeps its certificate"
                ),
            }
        }
    }

    /// Re-reads the password and ACL files of the listeners that keep their address (a
    /// listener that moves needs a restart, and keeps its rules until then) and puts them
    /// in force on every loop.
    fn reload_access(&mut self, new: &Settings) {
        let mut listeners = self.settings.listeners.clone();
        for (l, updated) in listeners.iter_mut().zip(&new.listeners) {
            if l.bind == updated.bind {
                l.access = updated.access.clone();
            }
        }
        match self.server.reload_access(&listeners) {
            Ok(confirmed) => tracing::info!(
                confirmed,
                "SIGHUP: password and ACL files re-read and in force"
            ),
            Err(error) => tracing::error!(
                %error,
                "SIGHUP: a password or ACL file was rejected; the running rules stay"
            ),
        }
    }
}

fn log_summary(stop: &Stopping, loops: usize) {
    let mut total = ShutdownReport::default();
    let mut refusals = [0u64; 14];
    for r in &stop.received {
        total.clients_closed += r.clients_closed;
        total.clients_forced += r.clients_forced;
        total.messages_flushed += r.messages_flushed;
        total.messages_dropped += r.messages_dropped;
        let s = &r.stats;
        let each = [
            s.refused_at_max_connections,
            s.refused_at_pool_limit,
            s.refused_descriptors,
            s.refused_unanswered,
            s.shed_before_connect,
            s.refused_listener_max_connections,
            s.refused_per_ip,
            s.closed_connect_timeout,
            s.refused_packet_too_large,
            s.refused_topic_length,
            s.refused_topic_levels,
            s.refused_subscriptions,
            s.dropped_queue_messages,
            s.dropped_queue_bytes,
        ];
        for (sum, n) in refusals.iter_mut().zip(each) {
            *sum += n;
        }
    }
    tracing::info!(
        clients = total.clients_closed,
        clients_closed_with_unsent_data = total.clients_forced,
        messages_flushed = total.messages_flushed,
        messages_dropped = total.messages_dropped,
        loops_reported = stop.received.len(),
        loops,
        elapsed_ms = u64::try_from(stop.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "shutdown complete"
    );
    let [
        max_connections,
        pool_limit,
        descriptors,
        unanswered,
        shed_before_connect,
        listener_max_connections,
        max_connections_per_ip,
        connect_timeout_ms,
        max_packet_size_bytes,
        max_topic_length_bytes,
        max_topic_levels,
        max_subscriptions_per_client,
        max_queued_messages,
        max_queued_bytes,
    ] = refusals;
    tracing::info!(
        max_connections,
        pool_limit,
        descriptors,
        unanswered,
        shed_before_connect,
        listener_max_connections,
        max_connections_per_ip,
        connect_timeout_ms,
        max_packet_size_bytes,
        max_topic_length_bytes,
        max_topic_levels,
        max_subscriptions_per_client,
        max_queued_messages,
        max_queued_bytes,
        "refusals since start, by limit"
    );
}
