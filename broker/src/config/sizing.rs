//! The sizing arithmetic the configuration is checked and fitted with: the most loops and
//! listeners, each loop's share of `limits.max_connections` and the slack its pool gets on
//! top, preset preheating lowered to fit, and the connections a number of open files
//! carries once every loop's own descriptors are set aside. The server's event loops are
//! built to the same numbers.

use starling_pool::PoolConfig;

use crate::core::directory::DIRECTORY_MAX_LOOPS;

/// The most event loops accepted (`server.event_loops`, `--event-loops`).
pub const MAX_EVENT_LOOPS: u16 = 1024;

// The client-id directory names a session's loop in a few bits of each entry.
const _: () = assert!(MAX_EVENT_LOOPS as usize <= DIRECTORY_MAX_LOOPS);

/// The most listeners one loop can have: each loop binds a socket for every listener, and
/// the mio tokens just below its waker's are reserved for them (`server::event_loop`).
pub const MAX_LISTENERS: usize = 64;

/// Sockets one loop holds outside its pool at most (refusing and lingering together:
/// `server::outside`). [`connection_ceiling`] sets their descriptors aside.
pub const OUTSIDE_POOL_MAX_SOCKETS: usize = 128;

/// Slack objects every loop's pool has whatever its share (see [`pool_slack_objects`]).
pub const POOL_SLACK_BASE_OBJECTS: usize = 64;
/// Standard deviations of the loops' uneven shares the slack covers (see [`pool_slack_objects`]).
pub const POOL_SLACK_SKEW_SIGMAS: usize = 4;

/// Descriptors kept out of the connection budget whatever the loop count: stdio, the log,
/// the allocator's and the runtime's own, and headroom for a few short-lived files.
pub const FIXED_RESERVED_FDS: u64 = 64;

/// Descriptors each event loop holds besides its connections: its epoll instance, its waker
/// (an eventfd), its spare descriptor (`accept`) and one listener per listen address
/// (counted separately).
pub const PER_LOOP_RESERVED_FDS: u64 = 3;

/// Extra pool objects a loop gets beyond `share` (its share of `max_connections`).
///
/// The pool's `max_live_objects` is a hard limit: past it `Shard::accept` refuses and the
/// socket is dropped without a word. The global connection limit is checked later, on
/// CONNECT, and answered with CONNACK 0x03, which needs a pool object to be written from.
/// Two things make a loop need more than its share:
///
/// - Connections that have not sent CONNECT yet, and those being refused, hold objects
///   without counting as connected ([`POOL_SLACK_BASE_OBJECTS`] of them).
/// - The kernel's `SO_REUSEPORT` hash spreads sockets over the loops (and a CONNECT for a
///   session held elsewhere moves to its loop), so the connected clients of one loop are
///   binomially spread around `share` with a standard deviation of about
///   `√share`: with an exact share, the fuller loop would drop clients that are still under
///   the global limit. [`POOL_SLACK_SKEW_SIGMAS`]` × √share` covers that (measured: 6 100
///   simultaneous CONNECTs against `--max-connections 6000` on two loops got 12 to 59
///   silent drops with a flat 32-object slack, and 0x03 for all 100 extra clients with this).
///
/// The slack stays small next to the share (6 % at 10 000, 0.6 % at 500 000). Each slack
/// object may hold a socket, so the descriptor reserve ([`connection_ceiling`]) sets the
/// loops' slack aside.
pub fn pool_slack_objects(share: usize) -> usize {
    POOL_SLACK_BASE_OBJECTS.saturating_add(POOL_SLACK_SKEW_SIGMAS.saturating_mul(share.isqrt()))
}

/// `max_live_objects` of each loop's pool: its share of `max_connections` (rounded up) plus
/// [`pool_slack_objects`] of it.
pub fn max_live_objects_per_loop(max_connections: usize, event_loops: usize) -> usize {
    let share = max_connections.div_ceil(event_loops.max(1));
    share.saturating_add(pool_slack_objects(share))
}

/// Clamps a pool configuration's preheating to its `max_live_objects` (for values that came
/// from a preset rather than from an explicit flag). Returns whether anything changed.
pub fn clamp_preheating(pool: &mut PoolConfig) -> bool {
    let before = (pool.initial_objects, pool.max_preheated_objects);
    pool.max_preheated_objects = pool.max_preheated_objects.min(pool.max_live_objects);
    pool.initial_objects = pool.initial_objects.min(pool.max_preheated_objects);
    before != (pool.initial_objects, pool.max_preheated_objects)
}

/// How many connections `soft_limit` descriptors can carry once the fixed and per-loop
/// reserves are set aside. The per-loop reserve includes the loop's pool slack
/// ([`pool_slack_objects`]), taken for a share of `soft_limit / loops`: a little more than
/// the share the result allows, so the reserve errs on the safe side; and the sockets a
/// loop holds outside its pool ([`OUTSIDE_POOL_MAX_SOCKETS`]: refused newcomers being
/// answered, lingering closes), so that at the ceiling a newcomer can still be accepted,
/// answered and closed.
pub fn connection_ceiling(soft_limit: u64, event_loops: usize, listen_addresses: usize) -> usize {
    let loops = event_loops.max(1) as u64;
    let share = usize::try_from(soft_limit / loops).unwrap_or(usize::MAX);
    let slack = pool_slack_objects(share) as u64;
    let per_loop =
        PER_LOOP_RESERVED_FDS + listen_addresses as u64 + slack + OUTSIDE_POOL_MAX_SOCKETS as u64;
    let reserve = FIXED_RESERVED_FDS.saturating_add(loops.saturating_mul(per_loop));
    usize::try_from(soft_limit.saturating_sub(reserve)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_loop_share_rounds_up_and_adds_slack() {
        assert_eq!(
            max_live_objects_per_loop(10, 3),
            4 + POOL_SLACK_BASE_OBJECTS + POOL_SLACK_SKEW_SIGMAS * 2
        );
        assert_eq!(
            max_live_objects_per_loop(10, 0),
            10 + POOL_SLACK_BASE_OBJECTS + POOL_SLACK_SKEW_SIGMAS * 3
        );
        assert_eq!(pool_slack_objects(10_000), 64 + 400);
    }

    #[test]
    fn clamping_keeps_preheating_within_max_live() {
        let mut pool = PoolConfig {
            max_live_objects: 40,
            ..PoolConfig::default()
        };
        assert!(clamp_preheating(&mut pool));
        assert_eq!((pool.initial_objects, pool.max_preheated_objects), (40, 40));
        assert!(pool.validate().is_ok());
        assert!(!clamp_preheating(&mut pool));
    }

    #[test]
    fn ceiling_sets_the_reserves_aside() {
        let per_loop = PER_LOOP_RESERVED_FDS as usize
            + 1
            + pool_slack_objects(10_000)
            + OUTSIDE_POOL_MAX_SOCKETS;
        assert_eq!(
            connection_ceiling(20_000, 2, 1),
            20_000 - FIXED_RESERVED_FDS as usize - 2 * per_loop
        );
        assert_eq!(connection_ceiling(10, 2, 1), 0);
        // The whole pools (share + slack) fit in what the ceiling leaves.
        let ceiling = connection_ceiling(20_000, 2, 1);
        let pools = 2 * max_live_objects_per_loop(ceiling, 2);
        let outside = 2 * OUTSIDE_POOL_MAX_SOCKETS as u64;
        assert!(
            pools as u64 + outside + FIXED_RESERVED_FDS + 2 * (PER_LOOP_RESERVED_FDS + 1) <= 20_000
        );
    }
}
