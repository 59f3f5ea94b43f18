//! `$SYS` topics: the broker's numbers published as retained QoS 0 messages every
//! `sys_interval_secs`, under Mosquitto's names where Mosquitto has one
//! (`$SYS/broker/clients/connected`, `$SYS/broker/load/messages/received/1min`, …) and
//! under `$SYS/broker/pool/…`, `$SYS/broker/process/…` and `$SYS/broker/health` for what is
//! Starling's own. They go through the normal routing on loop 0, so a `$SYS/#` subscriber
//! on any loop gets them, and a `#` subscriber does not (MQTT-4.7.2-1: wildcards at the
//! first level do not match topics starting with `$`).
//!
//! The same thread checks the health every [`HEALTH_CHECK_INTERVAL_MS`] and logs its
//! changes ([`super::health::HealthWatch`]), whether `$SYS` is on or not.

use std::io;
use std::time::{Duration, Instant};

use super::health::{HealthReport, HealthWatch};
use super::{Probe, Snapshot};

/// How often the health is checked (and its changes logged).
pub const HEALTH_CHECK_INTERVAL_MS: u64 = 1000;
/// The windows of the `load/…` averages, in minutes (Mosquitto's).
pub const LOAD_WINDOWS_MINUTES: [u64; 3] = [1, 5, 15];

/// The counters the `load/…` topics average.
pub const LOAD_SERIES: [&str; 7] = [
    "messages/received",
    "messages/sent",
    "publish/received",
    "publish/sent",
    "bytes/received",
    "bytes/sent",
    "connections",
];

/// Exponentially weighted per-minute rates of [`LOAD_SERIES`] over [`LOAD_WINDOWS_MINUTES`]
/// (Mosquitto's `$SYS/broker/load/...`).
#[derive(Debug, Default)]
pub struct Load {
    last: Option<([u64; LOAD_SERIES.len()], f64)>,
    averages: [[f64; LOAD_WINDOWS_MINUTES.len()]; LOAD_SERIES.len()],
}

impl Load {
    /// Takes the counters of `snapshot` at `at_secs` (seconds on any monotonic clock).
    pub fn update(&mut self, snapshot: &Snapshot, at_secs: f64) {
        let t = snapshot.totals();
        let values = [
            t.packets_in.total(),
            t.packets_out.total(),
            t.publish_received,
            t.publish_sent,
            t.bytes_in,
            t.bytes_out,
            t.accepted,
        ];
        if let Some((before, then)) = self.last {
            let dt = at_secs - then;
            if dt > 0.0 {
                for (series, averages) in self.averages.iter_mut().enumerate() {
                    let per_minute =
                        values[series].saturating_sub(before[series]) as f64 * 60.0 / dt;
                    for (w, average) in averages.iter_mut().enumerate() {
                        let keep = (-dt / (LOAD_WINDOWS_MINUTES[w] as f64 * 60.0)).exp();
                        *average = *average * keep + per_minute * (1.0 - keep);
                    }
                }
            }
        }
        self.last = Some((values, at_secs));
    }

    /// `(topic, value)` for every series and window.
    fn topics(&self) -> impl Iterator<Item = (String, String)> + '_ {
        LOAD_SERIES.iter().enumerate().flat_map(move |(s, series)| {
            LOAD_WINDOWS_MINUTES
                .iter()
                .enumerate()
                .map(move |(w, minutes)| {
                    (
                        format!("$SYS/broker/load/{series}/{minutes}min"),
                        format!("{:.2}", self.averages[s][w]),
                    )
                })
        })
    }
}

/// The `$SYS` messages for `snapshot`. `max_connected` is the most clients seen connected
/// at once.
pub fn messages(snapshot: &Snapshot, load: &Load, max_connected: usize) -> Vec<(String, String)> {
    let t = snapshot.totals();
    let sessions = snapshot.session_totals();
    let pool = snapshot.pool_totals();
    let health = HealthReport::from_snapshot(snapshot);
    let mut out: Vec<(String, String)> = Vec::with_capacity(64);
    let mut put = |topic: &str, value: String| out.push((format!("$SYS/broker/{topic}"), value));
    put(
        "version",
        format!("starling version {}", env!("CARGO_PKG_VERSION")),
    );
    put("uptime", format!("{} seconds", snapshot.uptime_secs));
    put("clients/connected", snapshot.connected.to_string());
    put(
        "clients/disconnected",
        sessions
            .sessions
            .saturating_sub(sessions.online)
            .to_string(),
    );
    put("clients/total", sessions.sessions.to_string());
    put("clients/maximum", max_connected.to_string());
    put("messages/received", t.packets_in.total().to_string());
    put("messages/sent", t.packets_out.total().to_string());
    put("publish/messages/received", t.publish_received.to_string());
    put("publish/messages/sent", t.publish_sent.to_string());
    put("publish/messages/dropped", t.dropped.to_string());
    put("bytes/received", t.bytes_in.to_string());
    put("bytes/sent", t.bytes_out.to_string());
    put("retained messages/count", snapshot.retained().to_string());
    put("subscriptions/count", snapshot.subscriptions().to_string());
    put(
        "store/messages/count",
        (sessions.inflight + sessions.queued).to_string(),
    );
    put("store/messages/bytes", sessions.queued_bytes.to_string());
    put("clients/refused", snapshot.refused().to_string());
    put("pool/preheated", pool.preheated.to_string());
    put("pool/active", pool.active.to_string());
    put("pool/available", pool.available.to_string());
    put("pool/live", pool.live.to_string());
    put("pool/max_live", pool.max_live.to_string());
    put("pool/high_water", pool.high_water.to_string());
    put("pool/expansions", pool.expansions.to_string());
    put("pool/shrinks", pool.shrinks.to_string());
    put("pool/refused", pool.refused.to_string());
    put("pool/reuse_rate", format!("{:.4}", pool.reuse_rate()));
    put("pool/health", pool.health.to_string());
    put("health", health.status.to_string());
    if let Some(memory) = snapshot.memory {
        put("process/rss_bytes", memory.rss_bytes.to_string());
        put("process/peak_rss_bytes", memory.peak_rss_bytes.to_string());
    }
    out.extend(load.topics());
    out
}

/// Starts the thread (`starling-sys`) that checks health every second and, when
/// `interval_secs` is not 0, publishes the `$SYS` messages every `interval_secs`.
pub fn spawn(interval_secs: u64, probe: Probe) -> io::Result<()> {
    std::thread::Builder::new()
        .name("starling-sys".to_string())
        .spawn(move || run(interval_secs, &probe))?;
    Ok(())
}

fn run(interval_secs: u64, probe: &Probe) {
    let started = Instant::now();
    let mut watch = HealthWatch::default();
    let mut load = Load::default();
    let mut max_connected = 0;
    let mut next_sys = started;
    loop {
        let snapshot = probe.snapshot();
        watch.observe(&HealthReport::from_snapshot(&snapshot));
        max_connected = max_connected.max(snapshot.connected);
        let now = Instant::now();
        if interval_secs > 0 && now >= next_sys {
            load.update(&snapshot, now.duration_since(started).as_secs_f64());
            probe.publish_sys(messages(&snapshot, &load, max_connected));
            next_sys = now + Duration::from_secs(interval_secs);
        }
        std::thread::sleep(Duration::from_millis(HEALTH_CHECK_INTERVAL_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::LoopSnapshot;

    #[test]
    fn load_converges_to_the_per_minute_rate() {
        let mut load = Load::default();
        let mut snapshot = Snapshot {
            loops: vec![LoopSnapshot::default()],
            ..Snapshot::default()
        };
        for second in 0..=3600u64 {
            snapshot.loops[0].stats.publish_received = second * 10; // 600 a minute
            load.update(&snapshot, second as f64);
        }
        let one_minute = load
            .topics()
            .find(|(topic, _)| topic == "$SYS/broker/load/publish/received/1min")
            .map(|(_, value)| value);
        assert_eq!(one_minute.as_deref(), Some("600.00"));
    }

    #[test]
    fn every_topic_is_a_valid_sys_topic_name() {
        let snapshot = Snapshot {
            loops: vec![LoopSnapshot::default()],
            loops_expected: 1,
            ..Snapshot::default()
        };
        let all = messages(&snapshot, &Load::default(), 0);
        assert!(
            all.iter()
                .any(|(t, _)| t == "$SYS/broker/clients/connected")
        );
        for (topic, _) in &all {
            assert!(topic.starts_with("$SYS/broker/"));
            assert!(crate::topic::validate_topic_name(topic).is_ok(), "{topic}");
        }
    }
}
