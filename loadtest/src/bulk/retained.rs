//! `retained`: `--messages` retained messages (`PREFIX/PID/ret/0` … `/N-1`, `--payload-bytes`
//! each) are stored by one publisher, then one new client subscribes to `PREFIX/PID/ret/#`
//! at `--qos` and reads until it has every one (or `--drain-secs` run out). Measured: the
//! time from SUBSCRIBE to the first and to the last retained message, what arrived (distinct,
//! duplicated, missing, without RETAIN), the broker's RSS once loaded and its peak while it
//! delivers (sampled every 10 ms), and a bystander's probes meanwhile.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{
    Bystander, BystanderReport, Client, acknowledge, client_id, stall_lateness, topic_root,
};
use crate::RunError;
use crate::cli::{Args, Scenario};
use crate::mqtt::{self, Ack, Incoming};
use crate::procstat::{PeakSampler, cpu_secs, rss_bytes};
use crate::report::{Report, mib};
use crate::stalls::StallProbe;

/// Retained messages when `--messages` is 0.
pub const DEFAULT_RETAINED_MESSAGES: u64 = 100_000;
/// QoS 1 retained publishes the loader keeps unacknowledged.
const LOAD_WINDOW_MESSAGES: u64 = 1000;
/// Bytes the loader writes at once.
const LOAD_WRITE_BYTES: usize = 1 << 20;
/// The load gives up after this long without an acknowledgement.
const LOAD_STALL: Duration = Duration::from_secs(30);
/// How often the broker's RSS is sampled while it delivers.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// How long one read waits.
const READ_WAIT: Duration = Duration::from_millis(100);

/// What a `retained` run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetainedRun {
    /// Retained messages stored.
    pub messages: u64,
    /// QoS of the retained messages and of the subscription.
    pub qos: u8,
    /// Storing them, seconds.
    pub load_secs: f64,
    /// SUBSCRIBE → the first retained message, milliseconds.
    pub first_ms: f64,
    /// SUBSCRIBE → the last distinct retained message, seconds.
    pub deliver_secs: f64,
    /// distinct / deliver_secs.
    pub delivered_per_sec: f64,
    /// PUBLISH packets received on the subscription.
    pub received: u64,
    /// Distinct retained messages received.
    pub distinct: u64,
    /// Received more than once.
    pub duplicates: u64,
    /// Never received (by the deadline).
    pub missing: u64,
    /// Received without the RETAIN flag (MQTT-3.3.1-8 says it is set).
    pub without_retain: u64,
    /// The broker's RSS with the set stored, before the SUBSCRIBE.
    pub rss_loaded_bytes: Option<u64>,
    /// Its peak while delivering.
    pub rss_peak_bytes: Option<u64>,
    /// The broker's CPU time (user + system) from the SUBSCRIBE to the last message,
    /// seconds.
    pub cpu_deliver_secs: Option<f64>,
    /// The bystander's probes while delivering.
    pub bystander: BystanderReport,
}

impl RetainedRun {
    /// The human rows.
    pub fn human(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "retained set     {} messages at QoS {} stored in {:.2} s",
            self.messages, self.qos, self.load_secs
        );
        let _ = writeln!(
            out,
            "delivered        {} distinct in {:.3} s ({:.0} msg/s), first after {:.1} ms; \
             duplicates {}, missing {}, without RETAIN {}",
            self.distinct,
            self.deliver_secs,
            self.delivered_per_sec,
            self.first_ms,
            self.duplicates,
            self.missing,
            self.without_retain
        );
        if let Some(cpu) = self.cpu_deliver_secs {
            let _ = writeln!(out, "broker CPU       {cpu:.3} s while delivering");
        }
        if let (Some(loaded), Some(peak)) = (self.rss_loaded_bytes, self.rss_peak_bytes) {
            let _ = writeln!(
                out,
                "broker RSS       loaded {}, peak while delivering {} (+{})",
                mib(loaded as f64),
                mib(peak as f64),
                mib(peak.saturating_sub(loaded) as f64)
            );
        }
        self.bystander.human(out);
    }
}

/// Runs `retained` against `--target`.
pub fn run(args: &Args) -> Result<Report, RunError> {
    if args.qos > 1 {
        return Err(RunError::Usage(
            "retained stores its messages at QoS 0 or 1 (--qos 0 or 1)".into(),
        ));
    }
    let n = match args.messages {
        0 => DEFAULT_RETAINED_MESSAGES,
        n => n,
    };
    let root = topic_root(&args.topic_prefix, "ret");
    let stalls = StallProbe::start();
    let started = Instant::now();
    load(args, &root, n)?;
    let load_secs = started.elapsed().as_secs_f64();
    let rss_loaded = args.broker_pid.and_then(rss_bytes);
    let sampler = args
        .broker_pid
        .map(|pid| PeakSampler::start_every(pid, RSS_SAMPLE_INTERVAL));
    let bystander = Bystander::for_run(args)?;
    let cpu_before = args.broker_pid.and_then(cpu_secs);
    let mut run = deliver(args, &root, n)?;
    run.cpu_deliver_secs = args
        .broker_pid
        .and_then(cpu_secs)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    run.rss_peak_bytes = sampler.map(|s| s.peak_bytes());
    run.bystander = bystander.finish();
    run.rss_loaded_bytes = rss_loaded;
    run.load_secs = load_secs;
    let mut notes = Vec::new();
    if run.missing > 0 {
        notes.push(format!(
            "{} of {n} retained messages did not arrive within --drain-secs {}",
            run.missing, args.drain_secs
        ));
    }
    Ok(Report {
        retained: Some(run),
        timer_lateness: stall_lateness(stalls),
        notes,
        ..super::report(args, Scenario::Retained, 3)
    })
}

/// The payload of message `i`: its number, padded with dots (or cut) to `len` bytes.
fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut p = i.to_string().into_bytes();
    p.resize(len.max(1), b'.');
    p
}

/// Stores the retained set: pipelined, with at most [`LOAD_WINDOW_MESSAGES`] unacknowledged
/// at QoS 1; at QoS 0 a PINGRESP after the last one says the broker has read them all.
fn load(args: &Args, root: &str, n: u64) -> Result<(), RunError> {
    let id = client_id(&args.client_prefix, "ret-loader");
    let io = |e: std::io::Error| RunError::Aborted(format!("loading retained messages: {e}"));
    let mut client = Client::connect(args.target, args.protocol, &id, args.keep_alive_secs)?;
    let qos = args.qos;
    let window = if qos == 0 {
        u64::MAX
    } else {
        LOAD_WINDOW_MESSAGES
    };
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut out = Vec::with_capacity(LOAD_WRITE_BYTES + 1024);
    let mut last_progress = Instant::now();
    while sent < n || (qos > 0 && acked < n) {
        while sent < n && sent - acked < window && out.len() < LOAD_WRITE_BYTES {
            let packet_id = (sent % u64::from(u16::MAX)) as u16 + 1;
            let topic = format!("{root}/{sent}");
            let body = payload(sent, args.payload_bytes);
            mqtt::publish_with(&mut out, args.protocol, &topic, qos, true, packet_id, &body);
            sent += 1;
        }
        client.send(&out).map_err(io)?;
        out.clear();
        if qos == 0 {
            continue;
        }
        let wait = if sent < n && sent - acked < window {
            Duration::from_millis(1)
        } else {
            READ_WAIT
        };
        let before = acked;
        client
            .read(wait, |p| {
                if let Incoming::Ack(Ack::PubAck, _) = p {
                    acked += 1;
                }
            })
            .map_err(io)?;
        if acked > before {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > LOAD_STALL {
            return Err(RunError::Aborted(format!(
                "loading retained messages: {acked} of {n} acknowledged, then nothing for {LOAD_STALL:?}"
            )));
        }
    }
    if qos == 0 {
        let mut ping = Vec::new();
        mqtt::pingreq(&mut ping);
        client.send(&ping).map_err(io)?;
        let mut pong = false;
        while !pong {
            let read = client
                .read(LOAD_STALL, |p| pong |= p == Incoming::PingResp)
                .map_err(io)?;
            if read == 0 {
                return Err(RunError::Aborted(
                    "no PINGRESP after the retained set".into(),
                ));
            }
        }
    }
    client.disconnect();
    Ok(())
}

/// The number at the end of a topic of this run (`ROOT/N`).
fn index(topic: &[u8], root: &str) -> Option<u64> {
    let rest = topic.strip_prefix(root.as_bytes())?.strip_prefix(b"/")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Subscribes a new client to the whole set and reads it.
fn deliver(args: &Args, root: &str, n: u64) -> Result<RetainedRun, RunError> {
    let id = client_id(&args.client_prefix, "ret-sub");
    let io = |e: std::io::Error| RunError::Aborted(format!("reading retained messages: {e}"));
    let mut client = Client::connect(args.target, args.protocol, &id, args.keep_alive_secs)?;
    let mut run = RetainedRun {
        messages: n,
        qos: args.qos,
        ..RetainedRun::default()
    };
    let mut seen = vec![false; usize::try_from(n).unwrap_or(usize::MAX)];
    let mut subscribe = Vec::new();
    mqtt::subscribe(
        &mut subscribe,
        args.protocol,
        1,
        &format!("{root}/#"),
        args.qos,
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.drain_secs.max(1));
    client.send(&subscribe).map_err(io)?;
    let mut last = Duration::ZERO;
    let mut acks = Vec::new();
    while run.distinct < n && Instant::now() < deadline {
        client
            .read(READ_WAIT, |packet| {
                acknowledge(&packet, &mut acks);
                let Incoming::Publish { topic, retain, .. } = packet else {
                    return;
                };
                run.received += 1;
                run.without_retain += u64::from(!retain);
                if run.received == 1 {
                    run.first_ms = start.elapsed().as_secs_f64() * 1000.0;
                }
                let Some(slot) = index(topic, root).and_then(|i| seen.get_mut(i as usize)) else {
                    return;
                };
                if std::mem::replace(slot, true) {
                    run.duplicates += 1;
                } else {
                    run.distinct += 1;
                    last = start.elapsed();
                }
            })
            .map_err(io)?;
        client.send(&acks).map_err(io)?;
        acks.clear();
    }
    run.deliver_secs = last.as_secs_f64();
    run.delivered_per_sec = run.distinct as f64 / run.deliver_secs.max(f64::EPSILON);
    run.missing = n - run.distinct;
    client.disconnect();
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_and_topics_carry_the_number() {
        assert_eq!(payload(42, 16), b"42..............");
        assert_eq!(payload(123_456, 3), b"123");
        assert_eq!(index(b"lt/7/ret/99", "lt/7/ret"), Some(99));
        assert_eq!(index(b"lt/7/retx/99", "lt/7/ret"), None);
    }
}
