//! How late the machine wakes a sleeping thread: a probe thread sleeps
//! [`PROBE_SLEEP_US`] at a time for the whole run and records how much later than asked it
//! woke. A thread waiting in `epoll_wait` (a broker's loop, a harness worker) is woken the
//! same way, so these figures bound from below what any server's latency tail can be on
//! this machine during this run: a CONNACK p99 under the probe's p99.9 is not the broker's
//! to improve.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::track;

/// The probe's sleep, microseconds (near what a loaded event loop waits between events).
pub const PROBE_SLEEP_US: u64 = 500;

/// A running probe.
pub struct StallProbe {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Histogram<u64>>>,
}

impl StallProbe {
    /// Starts the probe thread (`None` if the thread cannot be spawned: the report then
    /// has no stall figures).
    pub fn start() -> Option<StallProbe> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("loadtest-stall-probe".into())
            .spawn(move || probe(&flag))
            .ok()?;
        Some(StallProbe {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the probe; its lateness histogram, nanoseconds.
    pub fn finish(mut self) -> Option<Histogram<u64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take()?.join().ok()
    }
}

fn probe(stop: &AtomicBool) -> Histogram<u64> {
    let mut late = track::latency_histogram();
    let asked = Duration::from_micros(PROBE_SLEEP_US);
    while !stop.load(Ordering::Relaxed) {
        let before = Instant::now();
        std::thread::sleep(asked);
        let slept = before.elapsed().saturating_sub(asked);
        track::record(
            &mut late,
            u64::try_from(slept.as_nanos()).unwrap_or(u64::MAX),
        );
    }
    late
}
