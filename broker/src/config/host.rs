//! Fitting the resolved settings to the host. Every connection is a file descriptor, so the
//! open-file limit caps `limits.max_connections`, and each loop's pool is sized for what is
//! left. Start-up and `--check-config` both call [`load_fitted`] with the open-file limit
//! raised the same way ([`OpenFiles::raise`]), so a file that validates also starts: a pool
//! key that only fails once the connection count is lowered (an explicit
//! `pool.max_preheated_objects` above a loop's share) is refused by both, with the same
//! message. A reload fits the new file to the ceiling found at start, for the loops that run.

use std::io;
use std::path::Path;

use super::sizing::connection_ceiling;
use super::{ConfigError, FileConfig, Settings, Source};
use crate::rlimit::{self, NofileLimit};

/// The open-file limit this process runs with.
#[derive(Debug)]
pub struct OpenFiles {
    /// The raise to the hard limit, or why it failed.
    pub raised: io::Result<NofileLimit>,
    /// The soft limit in force afterwards (`None`: it could not be read).
    pub soft: Option<u64>,
}

impl OpenFiles {
    /// Raises the soft `RLIMIT_NOFILE` to the hard limit (what start-up does before anything
    /// else) and reads what is in force.
    pub fn raise() -> OpenFiles {
        let raised = rlimit::raise_nofile();
        let soft = match &raised {
            Ok(limit) => Some(limit.soft),
            Err(_) => rlimit::current_nofile().ok().map(|(soft, _)| soft),
        };
        OpenFiles { raised, soft }
    }

    /// Logs the raise (start-up, once logging is set up).
    pub fn log(&self) {
        match &self.raised {
            Ok(limit) => tracing::info!(
                soft_before = limit.soft_before,
                soft = limit.soft,
                hard = limit.hard,
                "open-file limit (RLIMIT_NOFILE) at its hard limit"
            ),
            Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
        }
    }
}

/// Where the connection ceiling comes from.
#[derive(Debug, Clone, Copy)]
pub enum Host {
    /// Start-up and `--check-config`: the open-file limit (`None`: unknown, no ceiling),
    /// less the reserve for the configuration's loops and listeners.
    OpenFiles(Option<u64>),
    /// A reload: the ceiling found at start, for the loops and listeners that run.
    Ceiling(usize),
}

/// The settings fitted to the host: what the broker runs with.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// `core.max_connections` lowered to the ceiling if it was above, the pools sized for it.
    pub settings: Settings,
    /// `limits.max_connections` as resolved from the file, flags, preset or default.
    pub requested_max_connections: usize,
    /// The open-file limit the ceiling was derived from, if known.
    pub open_files: Option<u64>,
    /// The connection ceiling (`usize::MAX` when the open-file limit is unknown).
    pub connection_ceiling: usize,
    /// Whether preset pool values were lowered to fit a loop's max live objects.
    pub preheating_lowered: bool,
}

impl Fitted {
    /// Whether `limits.max_connections` was lowered to the ceiling.
    pub fn lowered(&self) -> bool {
        self.settings.core.max_connections < self.requested_max_connections
    }

    /// Logs a lowered `limits.max_connections`: a warning when the operator set it (file or
    /// flag) and gets less, information when it was the default's or the preset's.
    pub fn log_lowered(&self) {
        if !self.lowered() {
            return;
        }
        let (requested, ceiling) = (self.requested_max_connections, self.connection_ceiling);
        if self.settings.max_connections_configured {
            tracing::warn!(
                requested,
                ceiling,
                "limits.max_connections lowered to the open-file ceiling"
            );
        } else {
            tracing::info!(
                default = requested,
                ceiling,
                "max_connections is the open-file ceiling (the default is higher)"
            );
        }
    }

    /// One line for `--check-config`: what start-up would run with.
    pub fn summary(&self) -> String {
        let s = &self.settings;
        let pool = &s.core.pool;
        let mut line = format!(
            "{} listener(s), {} event loop(s), max_connections {}",
            s.listeners.len(),
            s.event_loops,
            s.core.max_connections
        );
        if self.lowered() {
            let files = self.open_files.unwrap_or_default();
            line.push_str(&format!(
                " ({} lowered to what this process's {files} open files allow)",
                self.requested_max_connections
            ));
        }
        line.push_str(&format!(
            ", pool per loop: {} initial, {} preheated at most, {} live at most",
            pool.initial_objects, pool.max_preheated_objects, pool.max_live_objects
        ));
        line
    }
}

impl Settings {
    /// The connections `open_files` descriptors carry with this configuration's loops and
    /// listeners (0: none).
    pub fn connection_ceiling(&self, open_files: u64) -> usize {
        connection_ceiling(open_files, self.event_loops, self.listeners.len())
    }

    /// Fits to `ceiling` connections: `core.max_connections` lowered to it if above, each
    /// loop's pool sized for the result. The error names the key to blame.
    pub fn fit(self, ceiling: usize) -> Result<Fitted, (&'static str, String)> {
        let requested = self.core.max_connections;
        let max_connections = requested.min(ceiling);
        let (core, preheating_lowered) =
            self.core_config(max_connections)
                .map_err(|(key, mut message)| {
                    if max_connections < requested {
                        message.push_str(&format!(
                            "; limits.max_connections {requested} was lowered to the open-file \
                         ceiling {ceiling}: raise the open-file limit or lower the pool key"
                        ));
                    }
                    (key, message)
                })?;
        Ok(Fitted {
            settings: Settings { core, ..self },
            requested_max_connections: requested,
            open_files: None,
            connection_ceiling: ceiling,
            preheating_lowered,
        })
    }
}

/// Reads `path` (if any) with `flags` over it, resolves it and fits it to `host`: every
/// check start-up makes before it binds a socket. `--check-config`, start-up and a reload
/// all come through here.
pub fn load_fitted(
    path: Option<&Path>,
    flags: &FileConfig,
    host: Host,
) -> Result<Fitted, ConfigError> {
    let Source {
        settings,
        origin,
        text,
    } = Source::load(path, flags)?;
    let (open_files, ceiling) = match host {
        Host::OpenFiles(None) => (None, usize::MAX),
        Host::OpenFiles(Some(files)) => (Some(files), settings.connection_ceiling(files)),
        Host::Ceiling(ceiling) => (None, ceiling),
    };
    if ceiling == 0 {
        return Err(ConfigError {
            origin,
            key: None,
            position: None,
            message: format!(
                "the open-file limit ({}) leaves no room for connections with {} event loop(s) \
                 and {} listener(s): raise it (ulimit -n, LimitNOFILE) or use fewer loops",
                open_files.unwrap_or_default(),
                settings.event_loops,
                settings.listeners.len()
            ),
        });
    }
    let mut fitted = settings.fit(ceiling).map_err(|(key, message)| {
        ConfigError::key(&origin, key, message).located(text.as_deref())
    })?;
    fitted.open_files = open_files;
    Ok(fitted)
}
