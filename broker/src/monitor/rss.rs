//! The process's memory as the kernel counts it: resident set size now and at its peak
//! (`VmRSS` and `VmHWM` of `/proc/self/status` on Linux; `None` elsewhere).

/// Resident memory of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now, in bytes.
    pub rss_bytes: u64,
    /// The highest resident set size so far, in bytes.
    pub peak_rss_bytes: u64,
}

/// The process's memory now, if the platform says.
pub fn read() -> Option<Memory> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status(&status)
}

/// `VmRSS` and `VmHWM` (in kB) from the text of `/proc/<pid>/status`.
pub fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some(kb * 1024)
        })
    };
    let rss_bytes = field("VmRSS")?;
    let peak_rss_bytes = field("VmHWM").unwrap_or(rss_bytes);
    Some(Memory {
        rss_bytes,
        peak_rss_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_peak_in_bytes() {
        let text = "Name:\tstarling\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss_bytes: 10 * 1024 * 1024,
                peak_rss_bytes: 20 * 1024 * 1024
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
        assert_eq!(parse_status("VmRSS:\tlots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_resident_memory() {
        let memory = read().expect("/proc/self/status has VmRSS on Linux");
        assert!(memory.rss_bytes > 0 && memory.peak_rss_bytes >= memory.rss_bytes);
    }
}
