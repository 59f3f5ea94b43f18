//! Scenarios that move much state through few clients: a large retained set delivered to
//! one new subscriber ([`retained`]), and many subscriptions made and removed by few clients
//! ([`subscribe`]). A handful of blocking clients ([`Client`]) is all they need, pipelining
//! their packets; a bystander ([`Bystander`]) measures how the rest of the broker fares
//! meanwhile.

pub mod retained;
pub mod subscribe;

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::RunError;
use crate::cli::{Args, Scenario, Transport};
use crate::mqtt::{self, Ack, Incoming, ParseError, Protocol};
use crate::report::{Latency, Report, lat};
use crate::stalls::StallProbe;

/// How long connecting (TCP and CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from a socket at once.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// How often the bystander sends a probe.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// A probe not back after this long counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One blocking MQTT client that parses whole reads at once.
pub struct Client {
    stream: TcpStream,
    protocol: Protocol,
    buf: Vec<u8>,
    chunk: Box<[u8]>,
}

impl Client {
    /// Connects `client_id` (clean session) and waits for CONNACK 0.
    pub fn connect(
        target: SocketAddr,
        protocol: Protocol,
        client_id: &str,
        keep_alive_secs: u16,
    ) -> Result<Client, RunError> {
        let stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).map_err(|e| {
            RunError::TargetDown(format!("cannot reach the broker at {target}: {e}"))
        })?;
        let io = |e: io::Error| RunError::Io(format!("{client_id}: {e}"));
        stream.set_nodelay(true).map_err(io)?;
        let mut client = Client {
            stream,
            protocol,
            buf: Vec::new(),
            chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
        };
        let mut connect = Vec::new();
        mqtt::connect(&mut connect, protocol, client_id, keep_alive_secs, true);
        client.send(&connect).map_err(io)?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut code = None;
        while code.is_none() && Instant::now() < deadline {
            client
                .read(Duration::from_millis(100), |packet| {
                    if let Incoming::ConnAck { code: c, .. } = packet {
                        code = Some(c);
                    }
                })
                .map_err(io)?;
        }
        match code {
            Some(0) => Ok(client),
            Some(c) => Err(RunError::Aborted(format!(
                "{client_id}: CONNACK refused with 0x{c:02x}"
            ))),
            None => Err(RunError::Aborted(format!("{client_id}: no CONNACK"))),
        }
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Waits up to `timeout` for bytes, reads what is there and calls `f` for every complete
    /// packet; returns how many packets there were (0 on a timeout).
    pub fn read(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(Incoming<'_>),
    ) -> io::Result<usize> {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let n = match self.stream.read(&mut self.chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the broker closed the connection",
                ));
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        self.buf.extend_from_slice(&self.chunk[..n]);
        let mut at = 0;
        let mut packets = 0;
        loop {
            match mqtt::parse(&self.buf[at..], self.protocol) {
                Ok((packet, used)) => {
                    f(packet);
                    at += used;
                    packets += 1;
                }
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Malformed(why)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why));
                }
            }
        }
        self.buf.drain(..at);
        Ok(packets)
    }

    /// Sends DISCONNECT (best effort).
    pub fn disconnect(mut self) {
        let mut bytes = Vec::new();
        mqtt::disconnect(&mut bytes);
        let _ = self.send(&bytes);
    }
}

/// Appends the acknowledgement a received PUBLISH (or PUBREL) asks for.
pub fn acknowledge(packet: &Incoming<'_>, out: &mut Vec<u8>) {
    match *packet {
        Incoming::Publish {
            qos: 1, packet_id, ..
        } => mqtt::ack(out, Ack::PubAck, packet_id),
        Incoming::Publish {
            qos: 2, packet_id, ..
        } => mqtt::ack(out, Ack::PubRec, packet_id),
        Incoming::Ack(Ack::PubRel, packet_id) => mqtt::ack(out, Ack::PubComp, packet_id),
        _ => {}
    }
}

/// What the bystander saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BystanderReport {
    /// Probes that came back in time.
    pub ok: u64,
    /// Probes that did not (or a broken connection).
    pub failed: u64,
    /// Round trips of the probes that came back.
    pub round_trip: Latency,
}

impl BystanderReport {
    /// The human row.
    pub fn human(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "bystander        {} probes back, {} failed: {}",
            self.ok,
            self.failed,
            lat(&self.round_trip)
        );
    }
}

/// A client on a topic of its own that publishes a QoS 1 probe to itself every
/// `PROBE_INTERVAL` and times its round trip, on its own thread, until stopped.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<BystanderReport>>,
}

impl Bystander {
    /// The bystander of a run: its own client id and topic under the run's prefixes.
    pub fn for_run(args: &Args) -> Result<Bystander, RunError> {
        Bystander::start(
            args.target,
            args.protocol,
            &client_id(&args.client_prefix, "bystander"),
            topic_root(&args.topic_prefix, "probe"),
        )
    }

    /// Connects and starts probing on `topic`.
    pub fn start(
        target: SocketAddr,
        protocol: Protocol,
        id: &str,
        topic: String,
    ) -> Result<Bystander, RunError> {
        let mut client = Client::connect(target, protocol, id, 60)?;
        let mut sub = Vec::new();
        mqtt::subscribe(&mut sub, protocol, 1, &topic, 1);
        client
            .send(&sub)
            .map_err(|e| RunError::Io(format!("bystander: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("bystander".into())
            .spawn(move || probe(client, protocol, &topic, &flag))
            .map_err(|e| RunError::Io(format!("bystander thread: {e}")))?;
        Ok(Bystander {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops probing and returns what was seen.
    pub fn finish(mut self) -> BystanderReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

fn probe(
    mut client: Client,
    protocol: Protocol,
    topic: &str,
    stop: &AtomicBool,
) -> BystanderReport {
    let mut report = BystanderReport::default();
    let mut rtt = Histogram::<u64>::new(3).expect("valid histogram precision");
    let mut packet_id: u16 = 1;
    while !stop.load(Ordering::Relaxed) {
        packet_id = packet_id.checked_add(1).unwrap_or(2);
        let payload = packet_id.to_be_bytes();
        let mut bytes = Vec::new();
        mqtt::publish(&mut bytes, protocol, topic, 1, packet_id, &payload);
        let sent = Instant::now();
        if client.send(&bytes).is_err() {
            report.failed += 1;
            break;
        }
        let mut back = false;
        while !back && sent.elapsed() < PROBE_TIMEOUT {
            let mut acks = Vec::new();
            let read = client.read(PROBE_TIMEOUT.saturating_sub(sent.elapsed()), |packet| {
                acknowledge(&packet, &mut acks);
                if let Incoming::Publish { payload: p, .. } = packet {
                    back |= p == payload;
                }
            });
            if read.is_err() || client.send(&acks).is_err() {
                break;
            }
        }
        if back {
            report.ok += 1;
            let _ = rtt.record(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX));
        } else {
            report.failed += 1;
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
    report.round_trip = Latency::of(&rtt);
    client.disconnect();
    report
}

/// The report of a `scenario` run with `clients` clients, its figures to be filled in.
pub fn report(args: &Args, scenario: Scenario, clients: u64) -> Report {
    Report {
        label: args.label.clone(),
        transport: Some(Transport::Tcp),
        scenario: Some(scenario),
        target: Some(args.target.to_string()),
        clients,
        payload_bytes: args.payload_bytes,
        ..Report::default()
    }
}

/// How late the machine woke a sleeping thread over the run (`crate::stalls`), if the
/// probe ran: the floor under the bystander's latency tail.
pub fn stall_lateness(probe: Option<StallProbe>) -> Option<Latency> {
    probe.and_then(StallProbe::finish).map(|h| Latency::of(&h))
}

/// `--topic-prefix/PID/{what}`: this run's own topics.
pub fn topic_root(prefix: &str, what: &str) -> String {
    format!("{prefix}/{}/{what}", std::process::id())
}

/// `--client-prefix-PID-{what}`: this run's own client ids.
pub fn client_id(prefix: &str, what: &str) -> String {
    format!("{prefix}-{}-{what}", std::process::id())
}
