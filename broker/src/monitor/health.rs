//! The broker's health: four states from how full it is, reported as JSON on
//! `GET /healthz` and logged when it changes.
//!
//! The status is the worst of: the global utilisation (connected clients over
//! `max_connections`, classified with the pool's thresholds: degraded from 75 %, overloaded
//! from 90 %, unavailable at 100 %), and each loop's pool health (its active objects over
//! its `max_live_objects`). A loop that has not gone round for
//! [`LOOP_STUCK_WINDOW_MS`](super::LOOP_STUCK_WINDOW_MS) is stuck and makes the broker
//! unavailable; one that is only late to answer the probe (a busy host) is named in the
//! message and changes nothing, so the health does not flap under CPU load. HTTP 200 for
//! healthy and degraded, 503 for overloaded and unavailable, so a load balancer stops
//! sending new clients before the limit refuses them.

use starling_pool::Health;

use super::Snapshot;

/// What `/healthz` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// The overall state.
    pub status: Health,
    /// Connected clients over `max_connections` (0..=1).
    pub utilisation: f64,
    /// Clients past CONNECT.
    pub active_connections: usize,
    /// The global connection limit.
    pub max_connections: usize,
    /// Connections refused since start, every reason.
    pub refused_connections: u64,
    /// Connections closed for bad input or refused for a protocol reason, over connections
    /// accepted, since start.
    pub error_rate: f64,
    /// One line for people.
    pub message: String,
}

impl HealthReport {
    /// The health `snapshot` shows.
    pub fn from_snapshot(snapshot: &Snapshot) -> HealthReport {
        let max = snapshot.max_connections();
        let active = snapshot.connected;
        let totals = snapshot.totals();
        let utilisation = if max == 0 {
            1.0
        } else {
            active as f64 / max as f64
        };
        let global = if max == 0 {
            Health::Unavailable
        } else {
            Health::classify(active, max)
        };
        let worst_pool = snapshot
            .loops
            .iter()
            .map(|l| (l.pool.health, l.loop_index))
            .max();
        let mut status = global;
        let mut why = format!(
            "{active}/{max} connections ({:.0} % of max_connections)",
            utilisation * 100.0
        );
        if let Some((pool, loop_index)) = worst_pool
            && pool > status
        {
            status = pool;
            why = format!("{why}; loop {loop_index}'s pool is {pool}");
        }
        let stuck = loop_list(snapshot.stuck());
        let late = loop_list(
            snapshot
                .unanswered()
                .filter(|&(_, silent_ms)| silent_ms < super::LOOP_STUCK_WINDOW_MS),
        );
        if !stuck.is_empty() {
            status = Health::Unavailable;
            why = format!("event loop(s) stuck, no progress: {stuck}; {why}");
        }
        if !late.is_empty() {
            why = format!("{why}; event loop(s) late to answer but going round: {late}");
        }
        if snapshot.store.as_ref().is_some_and(|s| s.degraded) {
            status = status.max(Health::Degraded);
            why = format!("{why}; the store cannot write: QoS 1/2 PUBLISHes are refused");
        }
        let errors = totals.closed_bad_input + totals.refused_connect;
        HealthReport {
            status,
            utilisation,
            active_connections: active,
            max_connections: max,
            refused_connections: snapshot.refused(),
            error_rate: errors as f64 / totals.accepted.max(1) as f64,
            message: format!("{status}: {why}"),
        }
    }

    /// The HTTP status: 200 while clients can still be taken, 503 otherwise.
    pub fn http_status(&self) -> u16 {
        match self.status {
            Health::Healthy | Health::Degraded => 200,
            Health::Overloaded | Health::Unavailable => 503,
        }
    }

    /// The report as a JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"status\":\"{}\",\"utilisation\":{:.4},\"active_connections\":{},\
             \"max_connections\":{},\"refused_connections\":{},\"error_rate\":{:.4},\
             \"message\":\"{}\"}}\n",
            self.status,
            self.utilisation,
            self.active_connections,
            self.max_connections,
            self.refused_connections,
            self.error_rate,
            json_escape(&self.message)
        )
    }
}

/// `loop 1 (silent 5200 ms), loop 3 (…)` for the loops and silences given, or "".
fn loop_list(loops: impl Iterator<Item = (usize, u64)>) -> String {
    let named: Vec<String> = loops
        .map(|(i, silent_ms)| match silent_ms {
            u64::MAX => format!("loop {i} (never seen going round)"),
            ms => format!("loop {i} (last went round {ms} ms ago)"),
        })
        .collect();
    named.join(", ")
}

/// Escapes `text` for a JSON string.
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// Logs the health when it changes.
#[derive(Debug, Default)]
pub struct HealthWatch {
    last: Option<Health>,
}

impl HealthWatch {
    /// Records `report`; logs a line if its status differs from the last one seen.
    pub fn observe(&mut self, report: &HealthReport) {
        let previous = self.last.replace(report.status);
        let Some(from) = previous.filter(|&p| p != report.status) else {
            if previous.is_none() && report.status != Health::Healthy {
                tracing::warn!("[HEALTH] {}", report.message);
            }
            return;
        };
        let to = report.status;
        if to >= Health::Overloaded {
            tracing::warn!("[HEALTH] {from} -> {to} ({})", report.message);
        } else {
            tracing::info!("[HEALTH] {from} -> {to} ({})", report.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{LOOP_STUCK_WINDOW_MS, LoopSnapshot};

    fn snapshot(connected: usize, max: usize) -> Snapshot {
        Snapshot {
            loops: vec![LoopSnapshot {
                max_connections: max,
                ..LoopSnapshot::default()
            }],
            loops_expected: 1,
            connected,
            ..Snapshot::default()
        }
    }

    #[test]
    fn four_states_from_utilisation_with_their_http_status() {
        let cases = [
            (10, Health::Healthy, 200),
            (75, Health::Degraded, 200),
            (90, Health::Overloaded, 503),
            (100, Health::Unavailable, 503),
        ];
        for (connected, status, code) in cases {
            let report = HealthReport::from_snapshot(&snapshot(connected, 100));
            assert_eq!((report.status, report.http_status()), (status, code));
            assert!(
                report
                    .to_json()
                    .contains(&format!("\"status\":\"{status}\""))
            );
        }
    }

    /// Two loops; loop 1 did not answer the probe and last went round `silent_ms` ago.
    fn loop_1_silent_for(silent_ms: u64) -> HealthReport {
        let mut s = snapshot(0, 100);
        s.loops_expected = 2;
        s.loop_silence_ms = vec![0, silent_ms];
        HealthReport::from_snapshot(&s)
    }

    #[test]
    fn a_loop_late_to_answer_but_going_round_leaves_the_broker_healthy() {
        for silent_ms in [0, 1_500, LOOP_STUCK_WINDOW_MS - 1] {
            let report = loop_1_silent_for(silent_ms);
            assert_eq!(
                (report.status, report.http_status()),
                (Health::Healthy, 200)
            );
            assert!(
                report.message.contains("late to answer"),
                "{}",
                report.message
            );
            assert!(report.message.contains("loop 1"), "{}", report.message);
        }
    }

    #[test]
    fn a_loop_with_no_progress_over_the_window_makes_the_broker_unavailable() {
        for silent_ms in [LOOP_STUCK_WINDOW_MS, 60_000, u64::MAX] {
            let report = loop_1_silent_for(silent_ms);
            assert_eq!(
                (report.status, report.http_status()),
                (Health::Unavailable, 503)
            );
            assert!(report.message.contains("stuck"), "{}", report.message);
        }
    }

    #[test]
    fn a_loop_that_answered_is_neither_late_nor_stuck_however_long_ago_it_beat() {
        // The heartbeat is refreshed every few tens of ms; an answer is proof enough.
        let mut s = snapshot(0, 100);
        s.loop_silence_ms = vec![u64::MAX];
        let report = HealthReport::from_snapshot(&s);
        assert_eq!(report.status, Health::Healthy);
        assert!(!report.message.contains("loop 0"), "{}", report.message);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
