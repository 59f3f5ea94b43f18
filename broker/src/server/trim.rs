//! Giving memory back after a spike: the loop's socket table and lists shrink once mostly
//! vacant, and malloc returns freed pages to the OS (glibc keeps them otherwise), at most a
//! small share of the loop's time.

use super::event_loop::{EventLoop, Slot};

/// The socket table is trimmed when its capacity is at least this many times its length.
pub const TRIM_WHEN_CAPACITY_OVER_LEN: usize = 4;
/// A dirty list longer than this (entries) is freed at the next trim.
pub const DIRTY_KEEP_ENTRIES: usize = 4096;
/// Bytes of connection and session state the core freed (`Shard::take_released_bytes`)
/// after which the loop asks malloc to return free memory to the OS. glibc's malloc keeps
/// what is freed in its per-thread arenas: 300 closed connections whose topic aliases held
/// 180 MB left 160 MB resident, and more after every round, until trimmed.
pub const MALLOC_TRIM_AFTER_RELEASED_BYTES: usize = 1024 * 1024;
/// The share of a loop's time `malloc_trim` may take: it walks every free chunk of every
/// arena (≈ 10 ms per 100 000 free chunks measured), so after a trim that took `t` of the
/// thread's CPU time the next waits at least `t × 100 / this`.
pub const MALLOC_TRIM_MAX_TIME_PERCENT: u64 = 1;

impl EventLoop {
    /// Gives back what the socket table and the dirty lists kept of a spike: the table's
    /// vacant tail (slots past the highest open socket) once it is mostly vacant, and long
    /// empty dirty and retry lists; then returns freed memory to the OS if needed.
    pub(super) fn trim(&mut self) {
        let active = self.shard.pool_stats().active;
        if self.conns.capacity() >= TRIM_WHEN_CAPACITY_OVER_LEN * active.max(1) {
            let open = self
                .conns
                .iter()
                .rposition(Option::is_some)
                .map_or(0, |i| i + 1);
            if self.conns.capacity() >= TRIM_WHEN_CAPACITY_OVER_LEN * open.max(1) {
                let before = self.conns.capacity();
                self.conns.truncate(open);
                self.conns.shrink_to_fit();
                self.released_bytes +=
                    (before - self.conns.capacity()) * std::mem::size_of::<Option<Slot>>();
            }
        }
        for list in [
            &mut self.dirty,
            &mut self.read_again,
            &mut self.read_again_spare,
        ] {
            if list.is_empty() && list.capacity() > DIRTY_KEEP_ENTRIES {
                *list = Vec::new();
            }
        }
        self.return_free_memory();
    }

    /// Asks malloc to return free memory to the OS after the pool shrank or the core freed
    /// [`MALLOC_TRIM_AFTER_RELEASED_BYTES`], at most [`MALLOC_TRIM_MAX_TIME_PERCENT`] of
    /// the loop's time. Without it glibc keeps what closed connections freed (a leak to
    /// the eye, though the memory is reused by later clients).
    fn return_free_memory(&mut self) {
        self.released_bytes += self.shard.take_released_bytes();
        let shrinks = self.shard.pool_stats().shrinks;
        let due =
            shrinks > self.shrinks_seen || self.released_bytes >= MALLOC_TRIM_AFTER_RELEASED_BYTES;
        if !due || self.now_ms < self.next_malloc_trim_ms {
            return;
        }
        let started_us = thread_cpu_us();
        release_free_memory();
        // CPU time, not wall time: on a busy host the thread may be preempted mid-trim, and
        // that is not a cost of trimming.
        let cpu_us = thread_cpu_us().saturating_sub(started_us);
        tracing::debug!(
            loop_index = self.index,
            released_bytes = self.released_bytes,
            cpu_us,
            "returned free memory to the OS"
        );
        self.shrinks_seen = shrinks;
        self.released_bytes = 0;
        let pause_ms = cpu_us.saturating_mul(100) / MALLOC_TRIM_MAX_TIME_PERCENT / 1000;
        self.next_malloc_trim_ms = self.now_ms.saturating_add(pause_ms);
    }
}

/// Asks the allocator to give freed memory back to the OS: glibc's malloc keeps freed
/// blocks in its arenas (one per thread) and returns only a free top of the heap by
/// itself; `malloc_trim` also releases the free pages between live blocks.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a size and touches only the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CPU time this thread has used, in microseconds (0 where it cannot be read).
fn thread_cpu_us() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the call writes only into it.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if read != 0 {
        return 0;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1000)
}
