//! The open-file limit (`RLIMIT_NOFILE`): every connection is a file descriptor, so it
//! bounds the connections a process can hold. The soft limit is raised to the hard one at
//! start (`config::OpenFiles::raise`); what that leaves for connections is
//! `config::sizing::connection_ceiling`'s arithmetic.

use std::io;

/// Where `nr_open` (the kernel's ceiling on any `RLIMIT_NOFILE`) is published.
const NR_OPEN_PATH: &str = "/proc/sys/fs/nr_open";

/// The ceiling used when the hard limit is "unlimited" and `nr_open` cannot be read (the
/// kernel's default `nr_open`).
const FALLBACK_NR_OPEN: u64 = 1 << 20;

/// The open-file limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit found at start.
    pub soft_before: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (what the soft one may be raised to without privileges).
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or to `nr_open` when the hard limit
/// is unlimited) and returns what is in force afterwards. If raising fails the limit found
/// is returned unchanged with the error left to the caller to log.
pub fn raise_nofile() -> io::Result<NofileLimit> {
    let (soft_before, hard) = current_nofile()?;
    let target = if hard == libc::RLIM_INFINITY {
        nr_open().unwrap_or(FALLBACK_NR_OPEN)
    } else {
        hard
    };
    if soft_before >= target {
        return Ok(NofileLimit {
            soft_before,
            soft: soft_before,
            hard,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: hard,
    };
    // SAFETY: `setrlimit` only reads the `rlimit` behind a pointer to a live local for the
    // duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(NofileLimit {
        soft_before,
        soft: target,
        hard,
    })
}

/// The soft and hard `RLIMIT_NOFILE` in force.
pub fn current_nofile() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a pointer to a live, properly aligned
    // local; it keeps no reference to it after returning.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// The kernel's per-process ceiling on open files.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string(NR_OPEN_PATH)
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_is_idempotent() {
        let Ok(first) = raise_nofile() else {
            return; // a sandbox without getrlimit: nothing to check
        };
        let Ok(second) = raise_nofile() else {
            panic!("second raise failed after the first succeeded");
        };
        assert_eq!(second.soft, first.soft);
        assert_eq!(second.soft_before, first.soft);
    }
}
