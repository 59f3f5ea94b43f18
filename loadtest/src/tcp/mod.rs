//! The `tcp` transport: real MQTT clients over real sockets, spread over worker threads
//! ([`worker`]), each client a [`conn::Conn`], over TLS with `--tls-ca` ([`tls`]). The main
//! thread runs the phases: everyone connects (and subscribes), the clients are held,
//! publishers publish, the harness drains (waits for the last deliveries:
//! [`crate::drain`]), everyone disconnects. With `--subscribers-offline` the subscribers
//! leave before publishing (phase leave), publishing lasts until every publish is
//! acknowledged, and with `return` they come back (phase return) before the drain.

pub mod conn;
pub mod tls;
pub mod worker;

use std::net::TcpStream;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::RunError;
use crate::cli::{Args, Offline, Scenario};
use crate::drain::{Drain, DrainWatch};
use crate::plan::{self, ClientPlan};
use crate::procstat::{self, PeakSampler};
use crate::progress::Progress;
use crate::report::{Broker, Connects, Cycle, GroupBalance, Latency, Messages, OfflineRun, Report};
use crate::stalls::StallProbe;
use crate::track::{self, Tracker};
use tls::{TlsClient, TlsConnects, TlsSeen};

/// Phase: connect and subscribe.
pub const PHASE_CONNECT: u8 = 0;
/// Phase: publish.
pub const PHASE_PUBLISH: u8 = 1;
/// Phase: disconnect and return.
pub const PHASE_STOP: u8 = 2;
/// Phase (`--subscribers-offline`): subscribers disconnect, keeping their sessions.
pub const PHASE_LEAVE: u8 = 3;
/// Phase (`--subscribers-offline return`): subscribers reconnect, resuming their sessions.
pub const PHASE_RETURN: u8 = 4;

/// How long the reachability probe waits.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the main thread looks at the counters.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);
/// Descriptors the process keeps for itself beyond client sockets (epoll, stdio, threads).
const FD_RESERVE: u64 = 64;
/// Seconds without a single new CONNACK after which the connect phase gives up.
const CONNECT_STALL_SECS: u64 = 30;

/// What the main thread and the workers share.
#[derive(Default)]
pub struct Control {
    /// The phase.
    pub phase: AtomicU8,
    /// When publishing stops (ns on the harness clock).
    pub publish_deadline_ns: AtomicU64,
    /// Clients ready.
    pub connected: AtomicU64,
    /// Workers whose clients are all ready or failed.
    pub ready_workers: AtomicUsize,
    /// Workers whose publishers are done.
    pub publishers_done: AtomicUsize,
    /// PUBLISH packets generated.
    pub published: AtomicU64,
    /// Distinct deliveries expected so far.
    pub expected: AtomicU64,
    /// Distinct deliveries so far.
    pub unique: AtomicU64,
    /// Every PUBLISH received so far (repeats included): the drain's sign of activity.
    pub receipts: AtomicU64,
    /// When the last PUBLISH was received (ns on the harness clock).
    pub last_receipt_ns: AtomicU64,
    /// QoS 1/2 publishes acknowledged so far (PUBACK, PUBCOMP).
    pub acknowledged: AtomicU64,
    /// When the last acknowledgement was read (ns on the harness clock).
    pub last_ack_ns: AtomicU64,
    /// Offline runs: deliveries queued for the subscribers while they were away.
    pub queued: AtomicU64,
    /// Offline runs: subscribers that left (the broker closed their connection).
    pub departed: AtomicU64,
    /// Workers whose subscribers have all left.
    pub left_workers: AtomicUsize,
    /// Offline `return` runs: subscribers that resumed their sessions.
    pub resumed: AtomicU64,
    /// Workers whose subscribers have all reconnected (or failed to).
    pub returned_workers: AtomicUsize,
    /// A reason the run cannot go on.
    pub fatal: Mutex<Option<String>>,
}

impl Control {
    /// Records a fatal reason (the first wins).
    pub fn set_fatal(&self, why: &str) {
        if let Ok(mut fatal) = self.fatal.lock()
            && fatal.is_none()
        {
            *fatal = Some(why.to_string());
        }
    }
}

/// Runs the scenario against `--target`.
pub fn run(args: &Args) -> Result<Report, RunError> {
    let plans = plan::clients(args);
    // Before the probe: a TLS flag that cannot work is a usage error whatever the target.
    let tls = if args.tls.enabled() {
        Some(Arc::new(TlsClient::new(
            &args.tls,
            args.target,
            plans.len(),
        )?))
    } else {
        None
    };
    if let Err(e) = TcpStream::connect_timeout(&args.target, PROBE_TIMEOUT) {
        return Err(RunError::TargetDown(format!(
            "cannot reach the broker at {}: {e} (is it running and listening there?)",
            args.target
        )));
    }
    let (soft, hard) = procstat::raise_open_file_limit();
    let needed = plans.len() as u64 + FD_RESERVE;
    if soft > 0 && needed > soft {
        return Err(RunError::FdLimit(format!(
            "this run needs {} client sockets, but the process may open only {soft} files \
             (RLIMIT_NOFILE soft {soft}, hard {hard}; {FD_RESERVE} kept for the harness). \
             Lower the client count to at most {}, or split the load over several harness \
             processes.",
            plans.len(),
            soft.saturating_sub(FD_RESERVE)
        )));
    }
    let mut report = Report {
        label: args.label.clone(),
        transport: Some(args.transport),
        scenario: Some(args.scenario),
        target: Some(args.target.to_string()),
        clients: plans.len() as u64,
        payload_bytes: args.payload_bytes,
        ..Report::default()
    };
    let mut tls_seen = TlsSeen::default();
    let sampler = args.broker_pid.map(PeakSampler::start);
    let stalls = StallProbe::start();
    let mut broker = args.broker_pid.map(|pid| Broker {
        pid,
        start: procstat::sample(pid),
        ..Broker::default()
    });
    let plans = Arc::new(plans);
    if args.scenario == Scenario::Churn {
        for cycle in 1..=args.cycles.max(1) {
            let once = run_once(args, &plans, broker.as_mut(), false, tls.as_ref())?;
            tls_seen.merge(&once.tls);
            report.cycles.push(Cycle {
                cycle,
                connects: once.connects,
                pool_reuse_percent: None,
            });
        }
    } else {
        let publish = plans.iter().any(|p| p.publish.is_some());
        let once = run_once(args, &plans, broker.as_mut(), publish, tls.as_ref())?;
        tls_seen.merge(&once.tls);
        let Once {
            connects,
            messages,
            notes,
            ..
        } = once;
        if let Some(b) = broker.as_mut()
            && let (Some(start), Some(loaded)) = (b.start, b.loaded)
            && connects.connected > 0
        {
            b.rss_bytes_per_client = Some(
                (loaded.rss_bytes as f64 - start.rss_bytes as f64) / connects.connected as f64,
            );
        }
        report.connects = Some(connects);
        report.messages = messages;
        report.notes.extend(notes);
    }
    if let (Some(b), Some(s)) = (broker.as_mut(), sampler.as_ref()) {
        // What the broker still holds some time after its clients left (a pool that sweeps
        // idle objects, memory given back to the OS).
        std::thread::sleep(Duration::from_secs(args.settle_secs));
        b.end = procstat::sample(b.pid);
        b.peak_rss_bytes = s.peak_bytes();
    }
    report.broker = broker;
    report.tls = tls.map(|t| t.summary(&tls_seen));
    report.timer_lateness = stalls.and_then(StallProbe::finish).map(|h| Latency::of(&h));
    Ok(report)
}

/// What one pass measured.
struct Once {
    connects: Connects,
    messages: Option<Messages>,
    notes: Vec<String>,
    /// TLS: the handshakes of this pass.
    tls: TlsSeen,
}

/// One connect → (hold → publish → drain) → disconnect pass.
fn run_once(
    args: &Args,
    plans: &Arc<Vec<ClientPlan>>,
    mut broker: Option<&mut Broker>,
    publish: bool,
    tls: Option<&Arc<TlsClient>>,
) -> Result<Once, RunError> {
    let workers = args.worker_threads().min(plans.len()).max(1);
    let control = Arc::new(Control::default());
    let publishers = plans.iter().filter(|p| p.publish.is_some()).count().max(1);
    let password: Option<Arc<[u8]>> = args.password.as_deref().map(|p| p.as_bytes().into());
    let cpu_at_start = cpu_now(broker.as_deref());
    let mut handles = Vec::with_capacity(workers);
    for index in 0..workers {
        let setup = worker::Setup {
            index,
            workers,
            plan: Arc::clone(plans),
            mine: (index..plans.len()).step_by(workers).collect(),
            target: args.target,
            sources: args.source_addrs.0.clone(),
            control: Arc::clone(&control),
            qos: args.qos,
            payload_bytes: args.payload_bytes,
            rate_per_publisher: args.rate as f64 / publishers as f64,
            messages: args.messages,
            inflight: args.inflight.max(1),
            connect_rate: args.connect_rate as f64 / workers as f64,
            connect_concurrency: (args.connect_concurrency / workers).max(1),
            keep_alive_secs: args.keep_alive_secs,
            protocol: args.protocol,
            subscriber_read_bytes_per_sec: args.subscriber_read_bytes_per_sec,
            subscriber_pause_ms: args.subscriber_pause_ms,
            subscriber_rcvbuf_bytes: args.subscriber_rcvbuf_bytes,
            password: password.clone(),
            tls: tls.cloned(),
            subscriber_session_expiry_secs: args.subscriber_session_expiry_secs,
            offline: args.subscribers_offline,
        };
        let handle = std::thread::Builder::new()
            .name(format!("loadtest-worker-{index}"))
            .spawn(move || worker::run(setup))
            .map_err(|e| RunError::Io(format!("spawning a worker: {e}")))?;
        handles.push(handle);
    }
    let progress = Progress::new("connect", plans.len() as u64);
    let mut last_connected = 0;
    let mut last_progress = Instant::now();
    while control.ready_workers.load(Ordering::Acquire) < workers {
        std::thread::sleep(WATCH_INTERVAL);
        let connected = control.connected.load(Ordering::Relaxed);
        progress.set(connected);
        if connected != last_connected {
            last_connected = connected;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_secs(CONNECT_STALL_SECS) {
            control.set_fatal(&format!(
                "no CONNACK for {CONNECT_STALL_SECS} s with {connected} of {} connected",
                plans.len()
            ));
            break;
        }
        if fatal(&control).is_some() {
            break;
        }
    }
    progress.finish();
    let cpu_at_ready = cpu_now(broker.as_deref());
    if args.hold_secs > 0 {
        let hold = Progress::new("hold (s)", args.hold_secs);
        for s in 0..args.hold_secs {
            hold.set(s);
            std::thread::sleep(Duration::from_secs(1));
        }
        hold.finish();
    }
    let offline = args.subscribers_offline.filter(|_| publish);
    if offline.is_some() && fatal(&control).is_none() {
        control.phase.store(PHASE_LEAVE, Ordering::Release);
        await_workers(
            &control,
            "leave",
            workers,
            &control.left_workers,
            &control.departed,
        );
    }
    if let Some(b) = broker.as_deref_mut() {
        b.loaded = procstat::sample(b.pid);
    }
    let mut publish_window = (0u64, 0u64);
    let mut deliver_from = 0u64;
    let mut offline_run = None;
    let mut drained = None;
    if publish && fatal(&control).is_none() {
        let cpu_before = broker.as_deref().and_then(|b| procstat::cpu_secs(b.pid));
        let start = track::now_ns();
        let deadline = start + args.duration_secs * 1_000_000_000;
        control
            .publish_deadline_ns
            .store(deadline, Ordering::Relaxed);
        control.phase.store(PHASE_PUBLISH, Ordering::Release);
        let bar = Progress::new("publish (s)", args.duration_secs);
        while control.publishers_done.load(Ordering::Acquire) < workers {
            std::thread::sleep(WATCH_INTERVAL);
            bar.set(track::now_ns().saturating_sub(start) / 1_000_000_000);
        }
        bar.finish();
        let end = track::now_ns();
        publish_window = (start, end);
        deliver_from = start;
        if let Some(then) = offline {
            // Publishing ends with the last acknowledgement: the messages are queued (and, on
            // a broker that persists them, stored) for the absent subscribers by then.
            let acked = await_acks(args, &control, end).max(start);
            publish_window = (start, acked);
            let cpu_acked = broker.as_deref().and_then(|b| procstat::cpu_secs(b.pid));
            let secs = acked.saturating_sub(start) as f64 / 1e9;
            let acknowledged = control.acknowledged.load(Ordering::Relaxed);
            let mut run = OfflineRun {
                then,
                departed: control.departed.load(Ordering::Relaxed),
                queued: control.queued.load(Ordering::Relaxed),
                acknowledged,
                acknowledged_secs: secs,
                acknowledged_per_sec: acknowledged as f64 / secs.max(1e-9),
                broker_cpu_secs: cpu_before.zip(cpu_acked).map(|(a, b)| b - a),
                ..OfflineRun::default()
            };
            if then == Offline::Return && fatal(&control).is_none() {
                let back = track::now_ns();
                control.phase.store(PHASE_RETURN, Ordering::Release);
                await_workers(
                    &control,
                    "return",
                    workers,
                    &control.returned_workers,
                    &control.resumed,
                );
                run.resumed = control.resumed.load(Ordering::Relaxed);
                run.return_secs = track::now_ns().saturating_sub(back) as f64 / 1e9;
                deliver_from = back;
                drained = Some(drain(args, &control, track::now_ns()));
            }
            offline_run = Some(run);
        } else {
            drained = Some(drain(args, &control, end));
        }
        if let (Some(b), Some(before)) = (broker, cpu_before)
            && let Some(after) = procstat::cpu_secs(b.pid)
        {
            b.cpu_secs_messages = Some(after - before);
            // Busy from the first publish to the last delivery, or acknowledgement when the
            // subscribers were away (the quiet tail of the drain is idle time and not counted).
            let last = control
                .last_receipt_ns
                .load(Ordering::Relaxed)
                .max(publish_window.1);
            let wall = last.saturating_sub(start) as f64 / 1e9;
            b.cpu_percent_messages = Some(100.0 * (after - before) / wall.max(1e-9));
        }
    }
    control.phase.store(PHASE_STOP, Ordering::Release);
    let mut connack = track::latency_histogram();
    let mut handshake = track::latency_histogram();
    let mut tls_handshake = track::latency_histogram();
    let mut tls_seen = TlsSeen::default();
    let mut connect_to_connack = track::latency_histogram();
    let mut e2e = track::latency_histogram();
    let mut tracker = Tracker::default();
    let (mut connected, mut failed, mut published, mut unacknowledged) = (0u64, 0u64, 0u64, 0u64);
    let (mut first_connect, mut last_ready, mut last_delivery) = (u64::MAX, 0u64, 0u64);
    let mut longest_gap = 0u64;
    let mut notes = Vec::new();
    for handle in handles {
        let out = handle
            .join()
            .map_err(|_| RunError::Io("a worker thread panicked".into()))?
            .map_err(|e| RunError::Io(format!("worker event loop: {e}")))?;
        connack.add(&out.connack).ok();
        handshake.add(&out.handshake).ok();
        tls_handshake.add(&out.tls_handshake).ok();
        tls_seen.merge(&out.tls);
        connect_to_connack.add(&out.connect_to_connack).ok();
        e2e.add(&out.e2e).ok();
        tracker.merge(out.tracker);
        connected += out.connected;
        failed += out.failed;
        published += out.published;
        unacknowledged += out.unacknowledged;
        if out.first_connect_ns > 0 {
            first_connect = first_connect.min(out.first_connect_ns);
        }
        last_ready = last_ready.max(out.last_ready_ns);
        last_delivery = last_delivery.max(out.last_delivery_ns);
        longest_gap = longest_gap.max(out.longest_gap_ns);
        for e in out.errors {
            if !notes.contains(&e) {
                notes.push(e);
            }
        }
    }
    if let Some(why) = fatal(&control) {
        return Err(RunError::Aborted(why));
    }
    if connected == 0 && failed > 0 {
        return Err(RunError::TargetDown(format!(
            "no client could connect to {}: {}",
            args.target,
            notes.first().map_or("", String::as_str)
        )));
    }
    let elapsed = last_ready.saturating_sub(first_connect) as f64 / 1e9;
    let connects = Connects {
        attempted: plans.len() as u64,
        connected,
        failed,
        elapsed_secs: elapsed,
        per_sec: connected as f64 / elapsed.max(1e-9),
        connack_latency: Latency::of(&connack),
        handshake_latency: Some(Latency::of(&handshake)),
        connect_to_connack_latency: Some(Latency::of(&connect_to_connack)),
        tls: tls.map(|_| TlsConnects::of(&tls_seen, &tls_handshake)),
        broker_cpu_us_per_connect: per_connect(cpu_at_start.0, cpu_at_ready.0, connected),
        harness_cpu_us_per_connect: per_connect(cpu_at_start.1, cpu_at_ready.1, connected),
    };
    let messages = publish.then(|| {
        let (start, end) = publish_window;
        let publish_secs = end.saturating_sub(start) as f64 / 1e9;
        let deliver_secs = last_delivery.saturating_sub(deliver_from) as f64 / 1e9;
        let expected = control.expected.load(Ordering::Relaxed);
        let tally = tracker.tally(expected);
        let group = (args.scenario == Scenario::Shared).then(|| {
            let counts: std::collections::HashMap<u32, u64> =
                tracker.per_subscriber().into_iter().collect();
            let members = plans.iter().filter(|p| p.group.is_some());
            GroupBalance::of(
                members
                    .map(|p| counts.get(&p.subscriber_no).copied().unwrap_or(0))
                    .collect(),
            )
        });
        let mut messages = Messages {
            qos: args.qos,
            published,
            publish_secs,
            published_per_sec: published as f64 / publish_secs.max(1e-9),
            deliver_secs,
            delivered_per_sec: tally.delivered as f64 / deliver_secs.max(1e-9),
            expected,
            tally,
            latency: Latency::of(&e2e),
            group,
            unacknowledged,
            longest_gap_ms: longest_gap as f64 / 1e6,
            offline: offline_run,
            ..Messages::default()
        };
        messages.judge(drained);
        messages
    });
    Ok(Once {
        connects,
        messages,
        notes,
        tls: tls_seen,
    })
}

/// Waits for the last deliveries after publishing stopped at `end_ns`, until every expected
/// one arrived, none arrived for `--drain-quiet-ms`, or `--drain-deadline-secs` passed.
fn drain(args: &Args, control: &Control, end_ns: u64) -> Drain {
    let expected = control.expected.load(Ordering::Relaxed);
    let bar = Progress::new("drain", expected);
    let mut watch = DrainWatch::new(
        end_ns,
        args.drain_quiet_ms,
        args.drain_secs,
        control.receipts.load(Ordering::Relaxed),
    );
    let ended = loop {
        let unique = control.unique.load(Ordering::Relaxed);
        bar.set(unique);
        let receipts = control.receipts.load(Ordering::Relaxed);
        if let Some(ended) = watch.observe(track::now_ns(), receipts, unique, expected) {
            break ended;
        }
        std::thread::sleep(WATCH_INTERVAL);
    };
    bar.finish();
    Drain {
        ended,
        secs: track::now_ns().saturating_sub(end_ns) as f64 / 1e9,
        quiet_ms: args.drain_quiet_ms,
        deadline_secs: args.drain_secs,
    }
}

/// Waits until every worker has counted itself in `done` (the `what` phase is over for its
/// clients); gives up, fatally, when `progress` has not moved for [`CONNECT_STALL_SECS`].
fn await_workers(
    control: &Control,
    what: &str,
    workers: usize,
    done: &AtomicUsize,
    progress: &AtomicU64,
) {
    let mut last = progress.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while done.load(Ordering::Acquire) < workers && fatal(control).is_none() {
        std::thread::sleep(WATCH_INTERVAL);
        let now = progress.load(Ordering::Relaxed);
        if now != last {
            (last, last_change) = (now, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(CONNECT_STALL_SECS) {
            control.set_fatal(&format!(
                "subscribers did not {what} within {CONNECT_STALL_SECS} s ({now} did)"
            ));
        }
    }
}

/// Waits until every publish is acknowledged, or `--drain-deadline-secs` after publishing
/// stopped at `end_ns`; returns when the last acknowledgement was read.
fn await_acks(args: &Args, control: &Control, end_ns: u64) -> u64 {
    let deadline = end_ns + args.drain_secs * 1_000_000_000;
    while control.acknowledged.load(Ordering::Relaxed) < control.published.load(Ordering::Relaxed)
        && track::now_ns() < deadline
    {
        std::thread::sleep(WATCH_INTERVAL);
    }
    control.last_ack_ns.load(Ordering::Relaxed)
}

/// CPU seconds used so far by the broker (when sampled) and by the harness itself, to the
/// nanosecond (a connect phase can be shorter than the 10 ms clock tick of /proc/PID/stat
/// times its clients).
fn cpu_now(broker: Option<&Broker>) -> (Option<f64>, Option<f64>) {
    (
        broker.and_then(|b| procstat::cpu_secs_fine(b.pid)),
        procstat::own_cpu_secs(),
    )
}

/// CPU microseconds per connected client between two readings.
fn per_connect(start: Option<f64>, end: Option<f64>, connected: u64) -> Option<f64> {
    let (start, end) = (start?, end?);
    (connected > 0).then(|| (end - start) * 1e6 / connected as f64)
}

fn fatal(control: &Control) -> Option<String> {
    control.fatal.lock().ok().and_then(|f| f.clone())
}
