//! `subscribe`: `--clients` clients each subscribe to `--filters` filters of their own
//! (`PREFIX/PID/sub/C/I`), `--filters-per-packet` to a SUBSCRIBE, pipelined; then each
//! unsubscribes from all of them the same way. Measured: the time per subscription and per
//! removal (all clients' time, from the first packet to the last acknowledgement, over the
//! count), the broker's RSS with the clients connected and with the subscriptions made (so the
//! memory per subscription), refusals, and a bystander's probes throughout.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Bystander, BystanderReport, Client, client_id, stall_lateness, topic_root};
use crate::RunError;
use crate::cli::{Args, Scenario};
use crate::mqtt::{self, Incoming, Protocol};
use crate::procstat::{cpu_secs, rss_bytes};
use crate::report::{Report, mib};
use crate::stalls::StallProbe;

/// SUBSCRIBE (or UNSUBSCRIBE) packets a client keeps unacknowledged.
const WINDOW_PACKETS: u64 = 16;
/// A client gives up after this long without an acknowledgement.
const STALL: Duration = Duration::from_secs(60);
/// How long one read waits.
const READ_WAIT: Duration = Duration::from_millis(100);

/// What a `subscribe` run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubscriptionRun {
    /// Clients.
    pub clients: u64,
    /// Filters per client.
    pub filters_per_client: u64,
    /// Filters per SUBSCRIBE / UNSUBSCRIBE packet.
    pub filters_per_packet: u64,
    /// Subscriptions asked for in all.
    pub subscriptions: u64,
    /// Refused in SUBACK (0x80 and above).
    pub refused: u64,
    /// First SUBSCRIBE → last SUBACK, seconds.
    pub subscribe_secs: f64,
    /// subscribe_secs per subscription, microseconds.
    pub per_subscribe_us: f64,
    /// First UNSUBSCRIBE → last UNSUBACK, seconds.
    pub unsubscribe_secs: f64,
    /// unsubscribe_secs per subscription, microseconds.
    pub per_unsubscribe_us: f64,
    /// The broker's CPU time (user + system) while subscribing, per subscription,
    /// microseconds: what one costs, whatever the machine's other load.
    pub cpu_per_subscribe_us: Option<f64>,
    /// The same while unsubscribing.
    pub cpu_per_unsubscribe_us: Option<f64>,
    /// The broker's RSS before the clients connected.
    pub rss_start_bytes: Option<u64>,
    /// With the clients connected, before they subscribe.
    pub rss_connected_bytes: Option<u64>,
    /// With every subscription made.
    pub rss_subscribed_bytes: Option<u64>,
    /// After every subscription was removed.
    pub rss_unsubscribed_bytes: Option<u64>,
    /// (subscribed - connected) / subscriptions granted.
    pub rss_bytes_per_subscription: Option<f64>,
    /// The bystander's probes over both phases.
    pub bystander: BystanderReport,
}

impl SubscriptionRun {
    /// The human rows.
    pub fn human(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "subscribed       {} clients × {} filters ({} per packet) = {} in {:.3} s: {:.2} µs each, {} refused",
            self.clients,
            self.filters_per_client,
            self.filters_per_packet,
            self.subscriptions,
            self.subscribe_secs,
            self.per_subscribe_us,
            self.refused
        );
        let _ = writeln!(
            out,
            "unsubscribed     all in {:.3} s: {:.2} µs each",
            self.unsubscribe_secs, self.per_unsubscribe_us
        );
        if let (Some(s), Some(u)) = (self.cpu_per_subscribe_us, self.cpu_per_unsubscribe_us) {
            let _ = writeln!(
                out,
                "broker CPU       {s:.2} µs per subscribe, {u:.2} µs per unsubscribe"
            );
        }
        let rss = |b: Option<u64>| b.map_or("-".into(), |b| mib(b as f64));
        let _ = writeln!(
            out,
            "broker RSS       start {}, connected {}, subscribed {}, unsubscribed {}; {} B per subscription",
            rss(self.rss_start_bytes),
            rss(self.rss_connected_bytes),
            rss(self.rss_subscribed_bytes),
            rss(self.rss_unsubscribed_bytes),
            self.rss_bytes_per_subscription
                .map_or("-".into(), |b| format!("{b:.0}"))
        );
        self.bystander.human(out);
    }
}

/// Runs `subscribe` against `--target`.
pub fn run(args: &Args) -> Result<Report, RunError> {
    let (clients, filters, per_packet) = (
        args.clients.max(1) as u64,
        args.filters.max(1) as u64,
        args.filters_per_packet.max(1) as u64,
    );
    let root = topic_root(&args.topic_prefix, "sub");
    let stalls = StallProbe::start();
    let rss = || args.broker_pid.and_then(rss_bytes);
    let mut run = SubscriptionRun {
        clients,
        filters_per_client: filters,
        filters_per_packet: per_packet,
        subscriptions: clients * filters,
        rss_start_bytes: rss(),
        ..SubscriptionRun::default()
    };
    let mut conns = (0..clients)
        .map(|c| {
            let id = client_id(&args.client_prefix, &format!("sub-{c}"));
            Client::connect(args.target, args.protocol, &id, args.keep_alive_secs).map(|cl| (c, cl))
        })
        .collect::<Result<Vec<_>, _>>()?;
    run.rss_connected_bytes = rss();
    let bystander = Bystander::for_run(args)?;
    let shape = Shape {
        protocol: args.protocol,
        root: &root,
        filters,
        per_packet,
        qos: args.qos,
    };
    let threads = args.worker_threads().min(conns.len()).max(1);
    let cpu = || args.broker_pid.and_then(cpu_secs);
    let total = run.subscriptions as f64;
    let per_us = |from: Option<f64>, to: Option<f64>| Some((to? - from?) * 1e6 / total);
    let (started, cpu_before) = (Instant::now(), cpu());
    run.refused = in_parallel(&mut conns, threads, |c, client| {
        shape.pipeline(c, client, false)
    })?;
    run.subscribe_secs = started.elapsed().as_secs_f64();
    let cpu_subscribed = cpu();
    run.cpu_per_subscribe_us = per_us(cpu_before, cpu_subscribed);
    run.rss_subscribed_bytes = rss();
    let started = Instant::now();
    in_parallel(&mut conns, threads, |c, client| {
        shape.pipeline(c, client, true)
    })?;
    run.unsubscribe_secs = started.elapsed().as_secs_f64();
    run.cpu_per_unsubscribe_us = per_us(cpu_subscribed, cpu());
    run.rss_unsubscribed_bytes = rss();
    run.bystander = bystander.finish();
    run.per_subscribe_us = run.subscribe_secs * 1e6 / total;
    run.per_unsubscribe_us = run.unsubscribe_secs * 1e6 / total;
    let granted = run.subscriptions - run.refused;
    if let (Some(connected), Some(subscribed), true) = (
        run.rss_connected_bytes,
        run.rss_subscribed_bytes,
        granted > 0,
    ) {
        run.rss_bytes_per_subscription =
            Some((subscribed as f64 - connected as f64) / granted as f64);
    }
    for (_, client) in conns {
        client.disconnect();
    }
    let mut notes = Vec::new();
    if run.refused > 0 {
        notes.push(format!(
            "{} subscriptions refused: raise the broker's per-client limit (Starling: \
             --max-subscriptions-per-client)",
            run.refused
        ));
    }
    Ok(Report {
        subscriptions: Some(run),
        timer_lateness: stall_lateness(stalls),
        notes,
        ..super::report(args, Scenario::Subscribe, clients + 1)
    })
}

/// Runs `f` for every client, the clients shared out over `threads` threads; the sum of
/// what `f` returns.
fn in_parallel(
    conns: &mut [(u64, Client)],
    threads: usize,
    f: impl Fn(u64, &mut Client) -> Result<u64, RunError> + Sync,
) -> Result<u64, RunError> {
    let per_thread = conns.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = conns
            .chunks_mut(per_thread)
            .map(|chunk| {
                let f = &f;
                scope.spawn(move || {
                    chunk
                        .iter_mut()
                        .try_fold(0, |sum, (c, client)| Ok(sum + f(*c, client)?))
                })
            })
            .collect();
        workers.into_iter().try_fold(0, |sum, w| {
            let result = w
                .join()
                .map_err(|_| RunError::Io("a subscribing thread panicked".into()))?;
            Ok(sum + result?)
        })
    })
}

/// The filters of a run.
struct Shape<'a> {
    protocol: Protocol,
    root: &'a str,
    filters: u64,
    per_packet: u64,
    qos: u8,
}

impl Shape<'_> {
    /// Client `c` subscribes to (or unsubscribes from) all its filters, at most
    /// [`WINDOW_PACKETS`] packets unacknowledged; returns the refused subscriptions.
    fn pipeline(&self, c: u64, client: &mut Client, unsubscribe: bool) -> Result<u64, RunError> {
        let packets = self.filters.div_ceil(self.per_packet);
        let io = |e: std::io::Error| RunError::Aborted(format!("client {c}: {e}"));
        let (mut next, mut done, mut refused) = (0u64, 0u64, 0u64);
        let mut out = Vec::new();
        let mut last_progress = Instant::now();
        while done < packets {
            while next < packets && next - done < WINDOW_PACKETS {
                let first = next * self.per_packet;
                let filters: Vec<String> = (first..(first + self.per_packet).min(self.filters))
                    .map(|i| format!("{}/{c}/{i}", self.root))
                    .collect();
                let packet_id = (next % u64::from(u16::MAX)) as u16 + 1;
                if unsubscribe {
                    mqtt::unsubscribe_many(&mut out, self.protocol, packet_id, &filters);
                } else {
                    mqtt::subscribe_many(&mut out, self.protocol, packet_id, &filters, self.qos);
                }
                next += 1;
            }
            client.send(&out).map_err(io)?;
            out.clear();
            let before = done;
            client
                .read(READ_WAIT, |p| match p {
                    Incoming::SubAck { refused: r, .. } => {
                        done += 1;
                        refused += r as u64;
                    }
                    Incoming::UnsubAck => done += 1,
                    _ => {}
                })
                .map_err(io)?;
            if done > before {
                last_progress = Instant::now();
            } else if last_progress.elapsed() > STALL {
                return Err(RunError::Aborted(format!(
                    "client {c}: {done} of {packets} packets acknowledged, then nothing for {STALL:?}"
                )));
            }
        }
        Ok(refused)
    }
}
