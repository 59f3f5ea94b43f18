//! Per-listener transport metrics: connections accepted, handshakes completed and failed
//! (by reason), the handshake duration histogram and the certificate's expiry.
//!
//! Counters and gauges go through the `metrics` recorder like the others
//! ([`record`]); the histogram's buckets are counted by the loops themselves
//! (`server::transport::stats`), so its text is written here ([`render_histogram`]) and
//! appended to the exporter's.

use std::fmt::Write as _;

use metrics::{counter, gauge};

use super::Snapshot;
use crate::server::transport::stats::HANDSHAKE_BUCKETS_US;

/// The histogram's name.
pub const HANDSHAKE_HISTOGRAM: &str = "starling_listener_handshake_duration_seconds";

/// Descriptions of the metrics recorded here: kind is counter unless the name says gauge.
pub const DESCRIPTIONS: &[(&str, bool, &str)] = &[
    (
        "starling_listener_connections_accepted_total",
        false,
        "Connections accepted, by listener.",
    ),
    (
        "starling_listener_handshakes_total",
        false,
        "TLS handshakes and WebSocket upgrades completed, by listener.",
    ),
    (
        "starling_listener_handshakes_resumed_total",
        false,
        "TLS handshakes that resumed a session (ticket or session id), by listener.",
    ),
    (
        "starling_listener_handshake_failures_total",
        false,
        "Connections refused by the transport (TLS, WebSocket), by listener and reason.",
    ),
    (
        "starling_listener_certificate_expiry_timestamp_seconds",
        true,
        "When the listener's TLS certificate expires (Unix time).",
    ),
];

/// Records every listener's counters and gauges.
pub fn record(s: &Snapshot) {
    for (name, protocol, counts) in &s.listeners {
        let labels = [
            ("listener", name.clone()),
            ("protocol", protocol.to_string()),
        ];
        counter!("starling_listener_connections_accepted_total", &labels).absolute(counts.accepted);
        if *protocol == "tcp" {
            continue;
        }
        counter!("starling_listener_handshakes_total", &labels).absolute(counts.handshakes);
        counter!("starling_listener_handshakes_resumed_total", &labels).absolute(counts.resumed);
        for (failure, value) in &counts.failures {
            let labels = [
                ("listener", name.clone()),
                ("protocol", protocol.to_string()),
                ("reason", failure.label().to_string()),
            ];
            counter!("starling_listener_handshake_failures_total", &labels).absolute(*value);
        }
        if counts.certificate_not_after != 0 {
            gauge!(
                "starling_listener_certificate_expiry_timestamp_seconds",
                &labels
            )
            .set(counts.certificate_not_after as f64);
        }
    }
}

/// The handshake duration histogram of every listener with a handshake, as Prometheus
/// text (empty when there is none).
pub fn render_histogram(s: &Snapshot) -> String {
    let mut out = String::new();
    let layered = s.listeners.iter().filter(|(_, p, _)| *p != "tcp");
    for (i, (name, protocol, counts)) in layered.enumerate() {
        if i == 0 {
            let _ = writeln!(
                out,
                "# HELP {HANDSHAKE_HISTOGRAM} Time from accept to the end of the TLS handshake or WebSocket upgrade."
            );
            let _ = writeln!(out, "# TYPE {HANDSHAKE_HISTOGRAM} histogram");
        }
        let labels = format!("listener=\"{name}\",protocol=\"{protocol}\"");
        for (bound_us, count) in HANDSHAKE_BUCKETS_US.iter().zip(&counts.cumulative_buckets) {
            let le = *bound_us as f64 / 1e6;
            let _ = writeln!(
                out,
                "{HANDSHAKE_HISTOGRAM}_bucket{{{labels},le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{HANDSHAKE_HISTOGRAM}_bucket{{{labels},le=\"+Inf\"}} {}",
            counts.handshakes
        );
        let _ = writeln!(
            out,
            "{HANDSHAKE_HISTOGRAM}_sum{{{labels}}} {}",
            counts.handshake_us_total as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "{HANDSHAKE_HISTOGRAM}_count{{{labels}}} {}",
            counts.handshakes
        );
    }
    out
}
