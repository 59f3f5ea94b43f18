//! Failed logins by source address: after [`MAX_FAILURES_PER_WINDOW`] failures from one
//! address within [`FAILURE_WINDOW_MS`], its logins (passwords and SCRAM alike) are refused
//! without trying until the window ends. Failures and early refusals are logged as one
//! summary line per [`FAILURE_SUMMARY_INTERVAL_MS`] at most, not a line per attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::core::access::LoginThrottle;

/// The window failures from one source address are counted in.
pub const FAILURE_WINDOW_MS: u64 = 60_000;
/// Failures from one source address within a window after which its logins are refused
/// without trying until the window ends.
pub const MAX_FAILURES_PER_WINDOW: u32 = 10;
/// Source addresses tracked at most (the table is cleared when full).
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;
/// How often failures and early refusals are logged, as one summary line.
pub const FAILURE_SUMMARY_INTERVAL_MS: u64 = 10_000;

/// The failures of each address, and what the next summary line reports.
pub struct Throttle {
    state: Mutex<State>,
}

struct State {
    /// Failures per source address: (window start, failures).
    failures: HashMap<IpAddr, (Instant, u32)>,
    /// Since the last summary: failures and early refusals.
    failed: u64,
    refused_early: u64,
    /// When the last summary was logged.
    summary_at: Instant,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            state: Mutex::new(State {
                failures: HashMap::new(),
                failed: 0,
                refused_early: 0,
                summary_at: Instant::now(),
            }),
        }
    }
}

impl Throttle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs failures and early refusals since the last summary, if there were any and an
    /// interval has passed.
    pub fn summarize(&self) {
        let mut state = self.lock();
        let elapsed = state.summary_at.elapsed();
        if elapsed < Duration::from_millis(FAILURE_SUMMARY_INTERVAL_MS)
            || (state.failed == 0 && state.refused_early == 0)
        {
            return;
        }
        let throttling = state
            .failures
            .values()
            .filter(|(start, n)| {
                *n >= MAX_FAILURES_PER_WINDOW
                    && start.elapsed() <= Duration::from_millis(FAILURE_WINDOW_MS)
            })
            .count();
        tracing::warn!(
            failed_logins = state.failed,
            refused_early = state.refused_early,
            addresses_throttled = throttling,
            interval_secs = elapsed.as_secs(),
            "failed logins (bad user name or password), and logins refused early after \
             {MAX_FAILURES_PER_WINDOW} failures from one address within {} s",
            FAILURE_WINDOW_MS / 1000
        );
        state.failed = 0;
        state.refused_early = 0;
        state.summary_at = Instant::now();
    }
}

impl LoginThrottle for Throttle {
    fn throttled(&self, ip: IpAddr) -> bool {
        let mut state = self.lock();
        let over = state.failures.get(&ip).is_some_and(|(start, failures)| {
            *failures >= MAX_FAILURES_PER_WINDOW
                && start.elapsed() <= Duration::from_millis(FAILURE_WINDOW_MS)
        });
        if over {
            state.refused_early += 1;
        }
        over
    }

    fn failed(&self, ip: IpAddr) {
        let mut state = self.lock();
        state.failed += 1;
        if state.failures.len() >= MAX_TRACKED_ADDRESSES {
            state.failures.clear();
        }
        let now = Instant::now();
        let entry = state.failures.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) > Duration::from_millis(FAILURE_WINDOW_MS) {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}
