//! The open-file limit: every connection is a file descriptor, so `RLIMIT_NOFILE` bounds the
//! connections a process can hold. The soft limit is raised to the hard one at start.

use std::io;

use super::outside::OUTSIDE_POOL_MAX_SOCKETS;

/// Descriptors kept out of the connection budget whatever the loop count: stdio, the log,
/// the allocator's and the runtime's own, and headroom for a few short-lived files.
pub const FIXED_RESERVED_FDS: u64 = 64;

/// Descriptors each event loop holds besides its connections: its epoll instance, its waker
/// (an eventfd), its spare descriptor (`accept`) and one listener per listen address
/// (counted separately).
pub const PER_LOOP_RESERVED_FDS: u64 = 3;

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

/// How many connections `soft_limit` descriptors can carry once the fixed and per-loop
/// reserves are set aside. The per-loop reserve includes the loop's pool slack
/// ([`super::pool_slack_objects`]), taken for a share of `soft_limit / loops`: a little
/// more than the share the result allows, so the reserve errs on the safe side; and the
/// sockets a loop holds outside its pool ([`OUTSIDE_POOL_MAX_SOCKETS`]: refused newcomers
/// being answered, lingering closes), so that at the ceiling a newcomer can still be
/// accepted, answered and closed.
pub fn connection_ceiling(soft_limit: u64, event_loops: usize, listen_addresses: usize) -> usize {
    let loops = event_loops.max(1) as u64;
    let share = usize::try_from(soft_limit / loops).unwrap_or(usize::MAX);
    let slack = super::pool_slack_objects(share) as u64;
    let per_loop =
        PER_LOOP_RESERVED_FDS + listen_addresses as u64 + slack + OUTSIDE_POOL_MAX_SOCKETS as u64;
    let reserve = FIXED_RESERVED_FDS.saturating_add(loops.saturating_mul(per_loop));
    usize::try_from(soft_limit.saturating_sub(reserve)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_sets_the_reserves_aside() {
        let per_loop = PER_LOOP_RESERVED_FDS as usize
            + 1
            + super::super::pool_slack_objects(10_000)
            + OUTSIDE_POOL_MAX_SOCKETS;
        assert_eq!(
            connection_ceiling(20_000, 2, 1),
            20_000 - FIXED_RESERVED_FDS as usize - 2 * per_loop
        );
        assert_eq!(connection_ceiling(10, 2, 1), 0);
        // The whole pools (share + slack) fit in what the ceiling leaves.
        let ceiling = connection_ceiling(20_000, 2, 1);
        let pools = 2 * super::super::max_live_objects_per_loop(ceiling, 2);
        let outside = 2 * OUTSIDE_POOL_MAX_SOCKETS as u64;
        assert!(
            pools as u64 + outside + FIXED_RESERVED_FDS + 2 * (PER_LOOP_RESERVED_FDS + 1) <= 20_000
        );
    }

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
