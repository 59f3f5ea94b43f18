//! The run's report: a human-readable table and the same figures as JSON.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::{Offline, Scenario, Transport};
use crate::drain::{Drain, Missing};
use crate::procstat::Sample;
use crate::tcp::tls::{TlsConnects, TlsSummary};
use crate::track::Tally;

/// Nanoseconds per millisecond.
const NS_PER_MS: f64 = 1_000_000.0;
/// Bytes per MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarises a nanosecond histogram.
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |v: u64| v as f64 / NS_PER_MS;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Connection set-up figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Connects {
    /// Clients that tried.
    pub attempted: u64,
    /// Clients that got CONNACK 0.
    pub connected: u64,
    /// Clients refused (CONNACK code ≠ 0) or whose socket failed.
    pub failed: u64,
    /// From the first connect to the last CONNACK, seconds.
    pub elapsed_secs: f64,
    /// connected / elapsed.
    pub per_sec: f64,
    /// Socket connect start → CONNACK.
    pub connack_latency: Latency,
    /// tcp: socket connect start → the handshake seen done by the harness (kernel and
    /// harness only: the broker has not run yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_latency: Option<Latency>,
    /// tcp: CONNECT written → CONNACK read (the broker's accept, read and reply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_to_connack_latency: Option<Latency>,
    /// tcp with TLS: full and resumed handshakes, and the TLS handshake's latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConnects>,
    /// tcp with `--broker-pid`: the broker's CPU from the first connect to the last client
    /// ready, microseconds per connected client (a handshake's cost, whatever the machine's
    /// other load does to the rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_us_per_connect: Option<f64>,
    /// tcp: the harness's own CPU over the same time, microseconds per connected client
    /// (near a core per worker, the harness, not the broker, limits the connect rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harness_cpu_us_per_connect: Option<f64>,
}

/// One churn cycle.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cycle {
    /// 1-based cycle number (1 is cold).
    pub cycle: usize,
    /// Its connects.
    pub connects: Connects,
    /// sim: acquisitions served by an object that already existed, percent.
    pub pool_reuse_percent: Option<f64>,
}

/// Message flow figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Messages {
    /// QoS used by publishers and subscriptions.
    pub qos: u8,
    /// PUBLISH packets sent.
    pub published: u64,
    /// Publishing phase, seconds.
    pub publish_secs: f64,
    /// published / publish_secs.
    pub published_per_sec: f64,
    /// From the first publish to the last delivery, seconds.
    pub deliver_secs: f64,
    /// delivered / deliver_secs.
    pub delivered_per_sec: f64,
    /// Distinct deliveries expected (published × matching subscribers).
    pub expected: u64,
    /// Delivery accounting (for `shared`, across the group: each message counts once).
    pub tally: Tally,
    /// Publish → delivery, from the timestamp in the payload.
    pub latency: Latency,
    /// `shared`: how the group's members divided the messages.
    pub group: Option<GroupBalance>,
    /// Distinct deliveries over expected, percent (100 when nothing was expected).
    pub delivered_percent: f64,
    /// tcp: how the harness stopped waiting for deliveries ([`crate::drain`]).
    pub drain: Option<Drain>,
    /// Missing deliveries counted as dropped: the drain ended quiet (deliveries had
    /// stopped), or sim (the core ran until idle).
    pub dropped: u64,
    /// Missing deliveries counted as not delivered by the deadline: deliveries were still
    /// arriving when it passed, so some might have arrived later.
    pub undelivered: u64,
    /// tcp, QoS 1/2: publishes the broker had not acknowledged (PUBACK, PUBCOMP) when the
    /// drain ended.
    pub unacknowledged: u64,
    /// tcp: the longest time one subscriber waited between two deliveries, milliseconds (a
    /// broker that stalls shows here even when everything arrives).
    pub longest_gap_ms: f64,
    /// tcp, `--subscribers-offline`: the subscribers were away while publishers published
    /// (`deliver_secs` then counts from their return).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline: Option<OfflineRun>,
}

/// What a run with `--subscribers-offline` measured while the subscribers were away.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OfflineRun {
    /// Whether they stayed away or came back.
    pub then: Offline,
    /// Subscribers that left before publishing (the broker closed their connection after
    /// their DISCONNECT).
    pub departed: u64,
    /// Deliveries queued for them (published × matching subscribers).
    pub queued: u64,
    /// Publishes acknowledged (PUBACK at QoS 1, PUBCOMP at QoS 2).
    pub acknowledged: u64,
    /// From the first publish to the last acknowledgement, seconds.
    pub acknowledged_secs: f64,
    /// acknowledged / acknowledged_secs.
    pub acknowledged_per_sec: f64,
    /// The broker's CPU over that time, seconds (`--broker-pid`).
    pub broker_cpu_secs: Option<f64>,
    /// `return`: subscribers that resumed their sessions (CONNACK Session Present 1).
    pub resumed: u64,
    /// `return`: from the first reconnect to the last CONNACK, seconds.
    pub return_secs: f64,
}

impl Default for OfflineRun {
    fn default() -> Self {
        OfflineRun {
            then: Offline::Stay,
            departed: 0,
            queued: 0,
            acknowledged: 0,
            acknowledged_secs: 0.0,
            acknowledged_per_sec: 0.0,
            broker_cpu_secs: None,
            resumed: 0,
            return_secs: 0.0,
        }
    }
}

impl OfflineRun {
    fn human(&self, out: &mut String) {
        let cpu = match self.broker_cpu_secs {
            Some(cpu) if self.acknowledged > 0 => format!(
                ", broker CPU {:.2} µs per publish",
                cpu * 1e6 / self.acknowledged as f64
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "offline          {} subscribers left; {} publishes acknowledged in {:.2} s: {:.0} \
             msg/s{cpu}; {} deliveries queued for them",
            self.departed,
            self.acknowledged,
            self.acknowledged_secs,
            self.acknowledged_per_sec,
            self.queued
        );
        let _ = match self.then {
            Offline::Stay => writeln!(
                out,
                "                 they stayed away: the messages stay queued"
            ),
            Offline::Return => writeln!(
                out,
                "                 {} resumed their sessions in {:.2} s; delivered counts from then",
                self.resumed, self.return_secs
            ),
        };
    }
}

impl Messages {
    /// Judges the missing deliveries by how the drain ended (`None`: the broker ran until
    /// idle) and fills in what follows from the tally.
    pub fn judge(&mut self, drain: Option<Drain>) {
        let missing = Missing::classify(self.tally.missing, drain.map(|d| d.ended));
        // Invariant: every missing delivery is counted once, as one kind or the other.
        debug_assert_eq!(missing.dropped + missing.undelivered, self.tally.missing);
        self.drain = drain;
        self.dropped = missing.dropped;
        self.undelivered = missing.undelivered;
        self.delivered_percent = if self.expected == 0 {
            100.0
        } else {
            100.0 * self.tally.unique.min(self.expected) as f64 / self.expected as f64
        };
    }

    /// The missing deliveries, and what they were, in words.
    fn missing_text(&self) -> String {
        let missing = self.tally.missing;
        if missing == 0 {
            return "missing 0".into();
        }
        if self.undelivered > 0 {
            let deadline = self.drain.map_or(0, |d| d.deadline_secs);
            return format!(
                "missing {missing}: not delivered by the {deadline} s deadline (deliveries \
                 were still arriving)"
            );
        }
        match self.drain {
            Some(d) => format!(
                "missing {missing}: dropped (no delivery for {} ms before the drain ended)",
                d.quiet_ms
            ),
            None => format!("missing {missing}: dropped (the broker ran until idle)"),
        }
    }
}

/// How a shared-subscription group's members divided the messages.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupBalance {
    /// Distinct messages each member received, in member order.
    pub per_member: Vec<u64>,
    /// The fewest any member received.
    pub min: u64,
    /// The most any member received.
    pub max: u64,
    /// The mean.
    pub mean: f64,
    /// Standard deviation over the mean, percent (0 = perfectly even).
    pub cv_percent: f64,
}

impl GroupBalance {
    /// The balance of `per_member` (members that received nothing included).
    pub fn of(per_member: Vec<u64>) -> GroupBalance {
        let n = per_member.len().max(1) as f64;
        let mean = per_member.iter().sum::<u64>() as f64 / n;
        let variance = per_member
            .iter()
            .map(|&c| (c as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        GroupBalance {
            min: per_member.iter().copied().min().unwrap_or(0),
            max: per_member.iter().copied().max().unwrap_or(0),
            mean,
            cv_percent: if mean > 0.0 {
                100.0 * variance.sqrt() / mean
            } else {
                0.0
            },
            per_member,
        }
    }
}

/// The broker process, sampled from /proc.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Broker {
    /// Its PID.
    pub pid: u32,
    /// Before the run.
    pub start: Option<Sample>,
    /// With every client connected (and subscribed).
    pub loaded: Option<Sample>,
    /// At the end: after every client disconnected and `--settle-secs` passed.
    pub end: Option<Sample>,
    /// Largest RSS seen, bytes.
    pub peak_rss_bytes: u64,
    /// (loaded − start) RSS / connected clients.
    pub rss_bytes_per_client: Option<f64>,
    /// CPU used from the first publish to the last delivery, percent of one core.
    pub cpu_percent_messages: Option<f64>,
    /// CPU used from the first publish to the end of the drain, seconds.
    pub cpu_secs_messages: Option<f64>,
}

/// What the sim transport measured inside the process.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sim {
    /// Shards (one thread each).
    pub shards: usize,
    /// Broker heap after the shards were built, bytes.
    pub heap_start_bytes: i64,
    /// Broker heap with every client connected (and subscribed), bytes.
    pub heap_loaded_bytes: i64,
    /// (loaded − start) / clients.
    pub heap_bytes_per_client: f64,
    /// Broker heap after every client disconnected, bytes.
    pub heap_after_disconnect_bytes: i64,
    /// Broker heap after the idle sweep, bytes (with `--sweep`).
    pub heap_after_sweep_bytes: Option<i64>,
    /// Process RSS at the same points (includes the harness's own client table).
    pub rss_start_bytes: u64,
    /// Process RSS loaded.
    pub rss_loaded_bytes: u64,
    /// Process RSS at the end.
    pub rss_end_bytes: u64,
    /// The harness's own heap when loaded, bytes (not the broker's).
    pub harness_heap_loaded_bytes: i64,
    /// `[POOL] Expand` lines logged by each shard's pool, in order.
    pub expansions: Vec<Vec<String>>,
    /// Whether each shard's expansions follow the pool's ladder (×1.5 up to the cap).
    pub expansions_match_ladder: bool,
    /// Pool numbers per shard at the end.
    pub pool_live_end: Vec<usize>,
    /// Pool numbers per shard when loaded.
    pub pool_live_loaded: Vec<usize>,
    /// What the sim transport leaves out.
    pub excludes: String,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// `--label`.
    pub label: String,
    /// Transport.
    pub transport: Option<Transport>,
    /// Scenario.
    pub scenario: Option<Scenario>,
    /// The broker address (tcp).
    pub target: Option<String>,
    /// Clients the scenario uses in all.
    pub clients: u64,
    /// Payload bytes.
    pub payload_bytes: usize,
    /// Connect phase.
    pub connects: Option<Connects>,
    /// Churn cycles.
    pub cycles: Vec<Cycle>,
    /// Message phase.
    pub messages: Option<Messages>,
    /// The broker process.
    pub broker: Option<Broker>,
    /// Sim-only figures.
    pub sim: Option<Sim>,
    /// tcp: how late a thread sleeping 0.5 ms woke, over the whole run ([`crate::stalls`]):
    /// the machine's own scheduling tail, which no broker's latency can beat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer_lateness: Option<Latency>,
    /// `retained`: the retained set and its delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained: Option<crate::bulk::retained::RetainedRun>,
    /// `subscribe`: subscriptions made and removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<crate::bulk::subscribe::SubscriptionRun>,
    /// tcp with TLS: what was offered and negotiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSummary>,
    /// Warnings and remarks.
    pub notes: Vec<String>,
}

/// Bytes as MiB, one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / MIB)
}

/// A latency summary on one line.
pub fn lat(l: &Latency) -> String {
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms (n={})",
        l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    )
}

fn connects_rows(out: &mut String, prefix: &str, c: &Connects) {
    let _ = writeln!(
        out,
        "{prefix}connected        {} of {} ({} failed) in {:.2} s: {:.0} clients/s",
        c.connected, c.attempted, c.failed, c.elapsed_secs, c.per_sec
    );
    let _ = writeln!(out, "{prefix}CONNACK latency  {}", lat(&c.connack_latency));
    if let Some(l) = &c.handshake_latency {
        let _ = writeln!(out, "{prefix}  TCP handshake  {}", lat(l));
    }
    if let Some(t) = &c.tls {
        let _ = writeln!(
            out,
            "{prefix}  TLS handshake  {}",
            lat(&t.handshake_latency)
        );
        let _ = writeln!(
            out,
            "{prefix}  TLS handshakes {} full ({} with HelloRetryRequest), {} resumed",
            t.full, t.hello_retries, t.resumed
        );
    }
    if let Some(l) = &c.connect_to_connack_latency {
        let _ = writeln!(out, "{prefix}  CONNECT→CONNACK {}", lat(l));
    }
    if c.broker_cpu_us_per_connect.is_some() || c.harness_cpu_us_per_connect.is_some() {
        let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} µs"));
        let _ = writeln!(
            out,
            "{prefix}CPU per connect  broker {}, harness {}",
            us(c.broker_cpu_us_per_connect),
            us(c.harness_cpu_us_per_connect)
        );
    }
}

/// The run's TLS: offered, negotiated, and what the session store saw.
fn tls_rows(out: &mut String, t: &TlsSummary) {
    let _ = writeln!(
        out,
        "TLS offered      {} to {}; suites {}; resumption {}{}",
        t.versions_offered.join(", "),
        t.server_name,
        t.cipher_suites_offered.join(", "),
        if t.resumption { "on" } else { "off" },
        if t.client_certificate {
            "; client certificate"
        } else {
            ""
        }
    );
    if let Some(first) = &t.first {
        let _ = writeln!(
            out,
            "TLS negotiated   {} (first connection)",
            first.describe()
        );
    }
    for other in t.negotiated.iter().filter(|n| Some(*n) != t.first.as_ref()) {
        let _ = writeln!(out, "TLS also         {}", other.describe());
    }
    if let Some(s) = &t.store {
        let _ = writeln!(
            out,
            "TLS sessions     1.3 tickets received {}, offered {}, evicted {}; 1.2 sessions \
             saved {}, offered {}",
            s.tls13_tickets_received,
            s.tls13_tickets_offered,
            s.tls13_tickets_evicted,
            s.tls12_sessions_saved,
            s.tls12_sessions_offered
        );
    }
}

impl Report {
    /// The human-readable table.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== starling-loadtest {:?} {:?} {} {}",
            self.transport.unwrap_or(Transport::Tcp),
            self.scenario.unwrap_or(Scenario::Conn),
            self.target.as_deref().unwrap_or(""),
            self.label
        );
        if let Some(c) = &self.connects {
            connects_rows(&mut out, "", c);
        }
        if let Some(t) = &self.tls {
            tls_rows(&mut out, t);
        }
        for cycle in &self.cycles {
            let _ = writeln!(
                out,
                "cycle {:>3} {}: {:.0} clients/s, CONNACK {}{}{}",
                cycle.cycle,
                if cycle.cycle == 1 { "(cold)" } else { "(warm)" },
                cycle.connects.per_sec,
                lat(&cycle.connects.connack_latency),
                cycle
                    .pool_reuse_percent
                    .map(|p| format!(", pool reuse {p:.1} %"))
                    .unwrap_or_default(),
                cycle
                    .connects
                    .tls
                    .as_ref()
                    .map(|t| format!(
                        "; TLS {} full, {} resumed, handshake p50 {:.3} ms, p99 {:.3} ms",
                        t.full, t.resumed, t.handshake_latency.p50_ms, t.handshake_latency.p99_ms
                    ))
                    .unwrap_or_default()
            );
            if let Some(broker) = cycle.connects.broker_cpu_us_per_connect {
                let _ = writeln!(
                    out,
                    "          CPU per connect: broker {broker:.0} µs, harness {:.0} µs",
                    cycle.connects.harness_cpu_us_per_connect.unwrap_or(0.0)
                );
            }
        }
        if let Some(m) = &self.messages {
            let t = &m.tally;
            let _ = writeln!(
                out,
                "published        {} at QoS {} in {:.2} s: {:.0} msg/s",
                m.published, m.qos, m.publish_secs, m.published_per_sec
            );
            let _ = writeln!(
                out,
                "delivered        {} in {:.2} s: {:.0} msg/s (expected {}, {:.2} % arrived)",
                t.delivered, m.deliver_secs, m.delivered_per_sec, m.expected, m.delivered_percent
            );
            if let Some(d) = &m.drain {
                let _ = writeln!(
                    out,
                    "drain            {}, {:.2} s after publishing stopped (quiet {} ms, \
                     deadline {} s)",
                    d.ended.describe(),
                    d.secs,
                    d.quiet_ms,
                    d.deadline_secs
                );
            }
            let _ = writeln!(
                out,
                "QoS {} accounting {}, duplicated {}, out of order {}{}",
                m.qos,
                m.missing_text(),
                t.duplicates,
                t.out_of_order,
                if m.qos > 0 {
                    format!(", publishes unacknowledged {}", m.unacknowledged)
                } else {
                    String::new()
                }
            );
            if let Some(o) = &m.offline {
                o.human(&mut out);
            }
            let _ = writeln!(out, "end-to-end       {}", lat(&m.latency));
            let _ = writeln!(
                out,
                "longest gap      {:.1} ms between two deliveries to one subscriber",
                m.longest_gap_ms
            );
            if let Some(g) = &m.group {
                let _ = writeln!(
                    out,
                    "group balance    {} members: min {}, max {}, mean {:.0}, spread (sd/mean) {:.1} %",
                    g.per_member.len(),
                    g.min,
                    g.max,
                    g.mean,
                    g.cv_percent
                );
                let _ = writeln!(out, "group members    {:?}", g.per_member);
            }
        }
        if let Some(b) = &self.broker {
            let rss = |s: &Option<Sample>| s.map_or("-".into(), |s| mib(s.rss_bytes as f64));
            let _ = writeln!(
                out,
                "broker pid {}   RSS start {}, loaded {}, end {}, peak {}",
                b.pid,
                rss(&b.start),
                rss(&b.loaded),
                rss(&b.end),
                mib(b.peak_rss_bytes as f64)
            );
            if let Some(per) = b.rss_bytes_per_client {
                let _ = writeln!(out, "broker RSS/client {per:.0} B");
            }
            if let (Some(cpu), Some(secs)) = (b.cpu_percent_messages, b.cpu_secs_messages) {
                let _ = writeln!(
                    out,
                    "broker CPU       {cpu:.0} % of one core, {secs:.2} CPU-s (message phase)"
                );
            }
        }
        if let Some(r) = &self.retained {
            r.human(&mut out);
        }
        if let Some(s) = &self.subscriptions {
            s.human(&mut out);
        }
        if let Some(l) = &self.timer_lateness {
            let _ = writeln!(
                out,
                "machine stalls   a 0.5 ms sleep woke late by {}",
                lat(l)
            );
        }
        if let Some(s) = &self.sim {
            let _ = writeln!(
                out,
                "sim broker heap  start {}, loaded {} ({:.0} B/client), after disconnect {}{}",
                mib(s.heap_start_bytes as f64),
                mib(s.heap_loaded_bytes as f64),
                s.heap_bytes_per_client,
                mib(s.heap_after_disconnect_bytes as f64),
                s.heap_after_sweep_bytes
                    .map(|b| format!(", after sweep {}", mib(b as f64)))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "sim process RSS  start {}, loaded {}, end {} (harness heap loaded {})",
                mib(s.rss_start_bytes as f64),
                mib(s.rss_loaded_bytes as f64),
                mib(s.rss_end_bytes as f64),
                mib(s.harness_heap_loaded_bytes as f64)
            );
            let _ = writeln!(
                out,
                "sim pool live    loaded {:?}, end {:?}; expansions follow the ladder: {}",
                s.pool_live_loaded, s.pool_live_end, s.expansions_match_ladder
            );
            for (shard, lines) in s.expansions.iter().enumerate() {
                for line in lines {
                    let _ = writeln!(out, "  shard {shard}: {line}");
                }
            }
            let _ = writeln!(out, "NOT INCLUDED     {}", s.excludes);
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// The JSON form.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
