//! The `starling` binary: read the configuration (file and flags), raise the open-file limit,
//! start one event loop per core, then wait for signals (`server::supervisor`).
//! `starling --help` lists the flags; `starling.example.toml` the file's keys; `starling man
//! --dir DIR` writes the manual pages; `starling passwd` edits a password file.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use signal_hook_mio::v1_0::Signals;
use starling::cli::{Cli, Command, PasswdArgs};
use starling::config::{Host, LogFormat, LogLevel, OpenFiles, load_fitted};
use starling::server::supervisor::{SUPERVISED_SIGNALS, Supervisor};
use starling::server::{self, ServerConfig};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

/// Exit status for a configuration that does not validate.
const EXIT_INVALID_CONFIG: u8 = 2;

/// Allocations of this size or more are mapped (and unmapped when freed), whatever was
/// freed before: glibc's default 128 KiB, pinned.
const MMAP_THRESHOLD_BYTES: libc::c_int = 128 * 1024;

/// Pins glibc's mmap threshold. Left dynamic, glibc raises it past the size of a freed
/// mapped block, so the 19 MiB an argon2id verification allocates (and frees) is then served
/// from the heap and kept: a few hundred logins would leave hundreds of MiB resident.
fn fix_mmap_threshold() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes an allocator parameter; it is called before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}

fn main() -> ExitCode {
    fix_mmap_threshold();
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Man { dir }) => return write_manual(dir),
        Some(Command::Passwd(args)) => return passwd(args),
        Some(Command::Store { path, sessions }) => {
            return match starling::server::persist::inspect::print(path, *sessions) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("starling store: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    // Raised before the configuration is checked: the ceiling it gives is part of the check.
    let open_files = OpenFiles::raise();
    let path = cli.check_config.as_deref().or(cli.config.as_deref());
    let fitted = match load_fitted(path, &cli.flags(), Host::OpenFiles(open_files.soft)) {
        Ok(fitted) => fitted,
        Err(error) => {
            eprintln!("starling: invalid configuration: {error}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    if let Some(path) = &cli.check_config {
        // The TLS files are read as start-up reads them: a file that would stop the start
        // fails the check.
        for listener in &fitted.settings.listeners {
            if let Err(error) = server::transport::ListenerTransport::load(listener) {
                eprintln!(
                    "starling: invalid configuration: listener {}: {error}",
                    listener.bind
                );
                return ExitCode::from(EXIT_INVALID_CONFIG);
            }
        }
        println!("{}: valid ({})", path.display(), fitted.summary());
        return ExitCode::SUCCESS;
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
    let settings = &fitted.settings;
    let (filter, handle) = reload::Layer::new(level_filter(settings.log_level));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match settings.log_format {
        LogFormat::Text => registry
            .with(layer.with_ansi(std::io::stderr().is_terminal()))
            .init(),
        LogFormat::Json => registry.with(layer.json().with_ansi(false)).init(),
    }
    if let Some(path) = &cli.config {
        tracing::info!(file = %path.display(), "configuration file read");
    }
    open_files.log();
    let loops = settings.event_loops;
    let ceiling = fitted.connection_ceiling;
    if let Some(open_files) = fitted.open_files {
        tracing::info!(
            open_files,
            connection_ceiling = ceiling,
            "connection ceiling: open files minus a reserve for the loops and their slack"
        );
    }
    fitted.log_lowered();
    let core = &settings.core;
    let max_connections = core.max_connections;
    if fitted.preheating_lowered {
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
        persistence: settings.persistence.clone(),
    }) {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, "could not start");
            return ExitCode::FAILURE;
        }
    };
    for (addr, listener) in server.local_addrs.iter().zip(&settings.listeners) {
        // 0 is no limit of the listener's own: only limits.max_connections applies.
        let limit = match listener.max_connections {
            0 => "none".to_string(),
            n => n.to_string(),
        };
        tracing::info!(%addr, event_loops = loops, listener_max_connections = %limit, "listening");
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
    let supervisor = Supervisor {
        server,
        settings: fitted.settings,
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

/// `starling man --dir DIR`.
fn write_manual(dir: &std::path::Path) -> ExitCode {
    match starling::manual::write_pages(dir) {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "starling: cannot write the manual pages under {}: {error}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// `starling passwd ...`: silent on success, like mosquitto_passwd.
fn passwd(args: &PasswdArgs) -> ExitCode {
    match starling::auth::password::edit::run(&args.request()) {
        Ok(report) => {
            if let Some(warning) = report.warning {
                eprintln!("starling passwd: warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("starling passwd: {error}");
            ExitCode::FAILURE
        }
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    LevelFilter::from_level(level.to_tracing())
}
