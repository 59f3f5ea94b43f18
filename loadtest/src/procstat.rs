//! The broker's RSS and CPU time from /proc, and this process's open-file limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the background sampler reads the broker's RSS for its peak.
const PEAK_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes in the kB unit of /proc/PID/status.
const KIB: u64 = 1024;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
}

/// RSS of `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * KIB)
}

/// User + system CPU seconds of `pid` (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks)
}

/// CPU seconds of `pid` to the nanosecond: the sum of its threads' time on a CPU
/// (`/proc/PID/task/*/schedstat`), or [`cpu_secs`] (clock ticks, 10 ms) without schedstat.
/// Threads that have ended no longer count: for long-lived threads, such as a broker's.
pub fn cpu_secs_fine(pid: u32) -> Option<f64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return cpu_secs(pid);
    };
    let (mut ns, mut read) = (0u64, 0usize);
    for task in tasks.flatten() {
        // A thread may end between the listing and the read: it no longer counts.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        read += 1;
    }
    if read == 0 {
        return cpu_secs(pid);
    }
    Some(ns as f64 / 1e9)
}

/// This process's CPU seconds, every thread's (ended ones included), to the nanosecond.
pub fn own_cpu_secs() -> Option<f64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } != 0 {
        return None;
    }
    Some(t.tv_sec as f64 + t.tv_nsec as f64 / 1e9)
}

/// Both readings of `pid`, if it exists.
pub fn sample(pid: u32) -> Option<Sample> {
    Some(Sample {
        rss_bytes: rss_bytes(pid)?,
        cpu_secs: cpu_secs(pid)?,
    })
}

/// Samples a process's RSS in the background and keeps the peak.
pub struct PeakSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl PeakSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> PeakSampler {
        PeakSampler::start_every(pid, PEAK_SAMPLE_INTERVAL)
    }

    /// Starts sampling `pid` every `interval` (for phases shorter than a second).
    pub fn start_every(pid: u32, interval: Duration) -> PeakSampler {
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        let handle = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_bytes(pid) {
                        p.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(interval);
                }
            })
            .ok();
        PeakSampler { peak, stop, handle }
    }

    /// The peak so far.
    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// This process's open-file limit (soft, hard), after raising soft to hard where allowed.
pub fn raise_open_file_limit() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (0, 0);
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; failure leaves the old limit in force.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let s = sample(me).expect("own /proc entry");
        assert!(s.rss_bytes > 0);
        assert!(sample(u32::MAX).is_none());
    }

    #[test]
    fn fine_cpu_readings_grow_with_work() {
        const SPIN_CPU_SECS: f64 = 0.02;
        const SPIN_WALL_CAP: Duration = Duration::from_secs(5);
        let me = std::process::id();
        let own = own_cpu_secs().expect("a process clock");
        let fine = cpu_secs_fine(me).expect("own /proc entry");
        // Spin until this process has had its CPU time (the machine may be busy).
        let cap = std::time::Instant::now() + SPIN_WALL_CAP;
        let mut x = 0u64;
        while own_cpu_secs().is_some_and(|now| now - own < SPIN_CPU_SECS)
            && std::time::Instant::now() < cap
        {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let own_delta = own_cpu_secs().map(|now| now - own);
        let fine_delta = cpu_secs_fine(me).map(|now| now - fine);
        assert!(
            own_delta.is_some_and(|d| d >= SPIN_CPU_SECS),
            "{own_delta:?}"
        );
        // The spinning thread is alive, so its schedstat counts it.
        assert!(
            fine_delta.is_some_and(|d| d >= SPIN_CPU_SECS / 2.0),
            "{fine_delta:?}"
        );
        assert!(cpu_secs_fine(u32::MAX).is_none());
    }
}
