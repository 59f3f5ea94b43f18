//! The `starling` binary: parse the flags, raise the open-file limit, start one event loop
//! per core, and wait. `starling --help` lists the flags.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use starling::cli::Cli;
use starling::server::{self, ServerConfig, rlimit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(cli.log_level().to_tracing())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let loops = cli.event_loops();
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
    let mut max_connections = cli.max_connections;
    if let Some(soft) = soft_limit {
        let ceiling = rlimit::connection_ceiling(soft, loops, cli.listen.len());
        tracing::info!(
            open_files = soft,
            connection_ceiling = ceiling,
            "connection ceiling: open files minus a reserve for the loops and their slack"
        );
        if ceiling == 0 {
            Cli::command()
                .error(
                    ErrorKind::ValueValidation,
                    format!("the open-file limit ({soft}) leaves no room for connections with {loops} event loops"),
                )
                .exit();
        }
        if ceiling < max_connections {
            tracing::warn!(
                requested = max_connections,
                ceiling,
                "--max-connections lowered to the open-file ceiling"
            );
            max_connections = ceiling;
        }
    }
    let (core, clamped) = match cli.core_config(max_connections) {
        Ok(config) => config,
        Err(message) => Cli::command()
            .error(ErrorKind::ArgumentConflict, message)
            .exit(),
    };
    if clamped {
        tracing::info!(
            max_live_objects = core.pool.max_live_objects,
            "pool preheating lowered to the loop's max live objects"
        );
    }
    let pool = core.pool.clone();
    let server = match server::start(ServerConfig {
        listen: cli.listen.clone(),
        event_loops: loops,
        core,
    }) {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, "could not start");
            return ExitCode::FAILURE;
        }
    };
    for addr in &server.local_addrs {
        tracing::info!(%addr, event_loops = loops, "listening");
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
    let (loop_index, why) = server.wait();
    tracing::error!(loop_index, reason = %why, "an event loop stopped; exiting");
    ExitCode::FAILURE
}
