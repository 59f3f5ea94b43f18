//! The `starling` binary: read the configuration (file and flags), raise the open-file limit,
//! start one event loop per core, then wait for signals (`server::supervisor`).
//! `starling --help` lists the flags; `starling.example.toml` the file's keys.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use signal_hook_mio::v1_0::Signals;
use starling::cli::{Cli, LogLevel};
use starling::server::supervisor::{SUPERVISED_SIGNALS, Supervisor};
use starling::server::{self, ServerConfig, rlimit};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

/// Exit status for a configuration that does not validate.
const EXIT_INVALID_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.check_config {
        return match starling::config::Settings::load(path, &cli.flags()) {
            Ok(settings) => {
                println!(
                    "{}: valid ({} listener(s), {} event loop(s), max_connections {})",
                    path.display(),
                    settings.listeners.len(),
                    settings.event_loops,
                    settings.core.max_connections
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("starling: {error}");
                ExitCode::from(EXIT_INVALID_CONFIG)
            }
        };
    }
    // Before anything is bound: a signal that arrives once the port accepts connections
    // (a SIGHUP from a deployment script that saw the port open, a SIGTERM) must find its
    // handler installed, or its default action ends the process. Signals that arrive before
    // the supervisor runs wait in `signals` until it does.
    let signals = match Signals::new(SUPERVISED_SIGNALS) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("starling: cannot install the signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("starling: invalid configuration: {error}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    let (filter, handle) = reload::Layer::new(level_filter(settings.log_level));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
    if let Some(path) = &cli.config {
        tracing::info!(file = %path.display(), "configuration file read");
    }

    let loops = settings.event_loops;
    let soft_limit = match rlimit::raise_nofile() {
        Ok(limit) => {
            tracing::info!(
                soft_before = limit.soft_before,
                soft = limit.soft,
                hard = limit.hard,
                "open-file limit (RLIMIT_NOFILE) at its hard limit"
            );
            Some(limit.soft)
        }
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-file limit");
            rlimit::current_nofile().ok().map(|(soft, _)| soft)
        }
    };
    let mut max_connections = settings.core.max_connections;
    let mut ceiling = usize::MAX;
    if let Some(soft) = soft_limit {
        ceiling = rlimit::connection_ceiling(soft, loops, settings.listeners.len());
        tracing::info!(
            open_files = soft,
            connection_ceiling = ceiling,
            "connection ceiling: open files minus a reserve for the loops and their slack"
        );
        if ceiling == 0 {
            eprintln!(
                "starling: the open-file limit ({soft}) leaves no room for connections with {loops} event loops"
            );
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
        if ceiling < max_connections {
            tracing::warn!(
                requested = max_connections,
                ceiling,
                "limits.max_connections lowered to the open-file ceiling"
            );
            max_connections = ceiling;
        }
    }
    let (core, clamped) = match settings.core_config(max_connections) {
        Ok(config) => config,
        Err((key, message)) => {
            eprintln!("starling: invalid configuration: key `{key}`: {message}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    if clamped {
        tracing::info!(
            max_live_objects = core.pool.max_live_objects,
            "pool preheating lowered to the loop's max live objects"
        );
    }
    let pool = core.pool.clone();
    let server = match server::start(ServerConfig {
        listeners: settings.listeners.clone(),
        max_connections_per_ip: settings.max_connections_per_ip,
        event_loops: loops,
        core: core.clone(),
    }) {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, "could not start");
            return ExitCode::FAILURE;
        }
    };
    for (addr, listener) in server.local_addrs.iter().zip(&settings.listeners) {
        tracing::info!(%addr, event_loops = loops, listener_max_connections = listener.max_connections, "listening (listener_max_connections 0: only the global limit)");
    }
    let preheated: usize = server.pool_stats.iter().map(|s| s.live).sum();
    tracing::info!(
        event_loops = loops,
        max_connections,
        pool_initial_objects = pool.initial_objects,
        pool_max_preheated_objects = pool.max_preheated_objects,
        pool_max_live_objects = pool.max_live_objects,
        preheated_objects_all_loops = preheated,
        "event loops running (pool sizes are per loop)"
    );
    starling::monitor::start(&settings.monitor, &server.probe());
    let mut running = settings;
    running.core = core;
    let supervisor = Supervisor {
        server,
        settings: running,
        flags: cli.flags(),
        config_path: cli.config.clone(),
        connection_ceiling: ceiling,
        set_log_level: Box::new(move |level| {
            if let Err(error) = handle.modify(|filter| *filter = level_filter(level)) {
                tracing::warn!(%error, "could not change the log level");
            }
        }),
    };
    match supervisor.run(signals) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(%error, "signal handling failed");
            ExitCode::FAILURE
        }
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    LevelFilter::from_level(level.to_tracing())
}
