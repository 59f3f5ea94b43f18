//! One real client connection: its socket, its TLS session if any, buffers, MQTT state and
//! what it received.

use std::io::{self, Read, Write};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use rustls::ClientConnection;

use crate::mqtt::{self, Ack, Incoming, ParseError, Protocol};
use crate::track::{self, Tracker};

/// Packet id of the one SUBSCRIBE each client sends.
pub const SUBSCRIBE_PACKET_ID: u16 = 1;
/// A paced subscriber may read at most this long's worth of its rate at once, milliseconds.
pub const PACE_BURST_MS: u64 = 10;
/// Socket reads of one connection per turn before it yields to the worker's other clients
/// and to the run's shared counters (a broker that keeps the socket full would otherwise
/// keep the worker in one connection).
pub const MAX_READS_PER_TURN: usize = 16;

/// A deliberately slow reader (`--subscriber-pause-ms`, `--subscriber-read-bytes-per-sec`):
/// nothing until the pause is over, then a token bucket of bytes refilled at the rate and
/// holding at most [`PACE_BURST_MS`] worth (at least one byte), or no limit at rate 0.
#[derive(Debug, Clone)]
pub struct Pace {
    bytes_per_sec: u64,
    tokens: f64,
    last_ns: u64,
}

impl Pace {
    /// A pace starting at `now_ns`: nothing for `pause_ms`, then `bytes_per_sec` (0 = no
    /// limit) from an empty bucket.
    pub fn new(bytes_per_sec: u64, pause_ms: u64, now_ns: u64) -> Pace {
        Pace {
            bytes_per_sec,
            tokens: 0.0,
            last_ns: now_ns.saturating_add(pause_ms.saturating_mul(1_000_000)),
        }
    }

    /// Bytes it may read at `now_ns`.
    pub fn allowance(&mut self, now_ns: u64) -> usize {
        if now_ns < self.last_ns {
            return 0;
        }
        if self.bytes_per_sec == 0 {
            return usize::MAX;
        }
        let burst = (self.bytes_per_sec as f64 * PACE_BURST_MS as f64 / 1e3).max(1.0);
        let elapsed = (now_ns - self.last_ns) as f64 / 1e9;
        self.tokens = (self.tokens + elapsed * self.bytes_per_sec as f64).min(burst);
        self.last_ns = now_ns;
        self.tokens as usize
    }

    /// `bytes` were read.
    pub fn spend(&mut self, bytes: usize) {
        self.tokens = (self.tokens - bytes as f64).max(0.0);
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not opened yet.
    Idle,
    /// TCP connect in progress.
    Connecting,
    /// TLS handshake in progress (after the TCP connect, before CONNECT).
    TlsHandshake,
    /// CONNECT sent.
    AwaitConnAck,
    /// SUBSCRIBE sent.
    AwaitSubAck,
    /// Connected (and subscribed).
    Ready,
    /// DISCONNECT queued: closes once written.
    Closing,
    /// Gone (closed or failed).
    Closed,
}

impl State {
    /// Whether the connection is on its way to `Ready` (counted as pending by its worker).
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            State::TlsHandshake | State::AwaitConnAck | State::AwaitSubAck
        )
    }
}

/// What a connection's worker needs to know about its latest events.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Its TLS handshake completed: CONNECT may go.
    pub tls_established: bool,
    /// It reached `Ready` (with the CONNACK latency recorded).
    pub became_ready: bool,
    /// It failed (refused, malformed input, socket error) with this reason.
    pub failed: Option<String>,
}

/// Per-worker sinks a connection reports into.
pub struct Sinks<'a> {
    /// Deliveries.
    pub tracker: &'a mut Tracker,
    /// End-to-end latency.
    pub e2e: &'a mut Histogram<u64>,
    /// CONNACK latency (socket connect start → CONNACK).
    pub connack: &'a mut Histogram<u64>,
    /// CONNECT written → CONNACK: the broker's part of the CONNACK latency.
    pub connect_to_connack: &'a mut Histogram<u64>,
    /// New unique deliveries in this batch.
    pub unique_delta: &'a mut u64,
    /// Latest delivery time.
    pub last_delivery_ns: &'a mut u64,
    /// QoS 1/2 publishes acknowledged (PUBACK, PUBCOMP) in this batch.
    pub acknowledged: &'a mut u64,
    /// Longest time one subscriber waited between two deliveries.
    pub longest_gap_ns: &'a mut u64,
}

/// One client.
pub struct Conn {
    /// Index into the plan.
    pub plan: usize,
    /// Its socket, once opened.
    pub stream: Option<TcpStream>,
    /// Its TLS session (`--tls-ca`), once the TCP connect is done.
    pub tls: Option<Box<ClientConnection>>,
    /// TLS: its close_notify is queued (after the DISCONNECT).
    pub close_notify_sent: bool,
    /// When the TLS handshake started (the TCP connect was done).
    pub tls_started_ns: u64,
    /// Its state.
    pub state: State,
    /// When the TCP connect started.
    pub started_ns: u64,
    /// When its CONNECT was queued (written in the same turn of the worker's loop).
    pub connect_sent_ns: u64,
    /// When it last wrote (for keep-alive).
    pub last_write_ns: u64,
    /// Bytes waiting for the socket (TLS: plaintext waiting for the session).
    pub wbuf: Vec<u8>,
    /// The tail of an incomplete frame (TLS: of the plaintext).
    pub rbuf: Vec<u8>,
    /// The socket accepted everything so far (edge-triggered: wait for a writable event
    /// once it said WouldBlock).
    pub writable: bool,
    /// The filter it subscribes to, if any.
    pub filter: Option<String>,
    /// Its subscriber number.
    pub subscriber_no: u32,
    /// The shared-subscription group it is a member of, if any.
    pub group: Option<u32>,
    /// The MQTT version it speaks.
    pub protocol: Protocol,
    /// Publisher: next sequence number.
    pub next_seq: u64,
    /// Publisher: next packet id.
    pub next_packet_id: u16,
    /// Publisher: QoS 1/2 messages not yet acknowledged.
    pub inflight: usize,
    /// Subscriber: reads at most this fast (set for the message phase).
    pub pace: Option<Pace>,
    /// Subscriber: when it last received a PUBLISH (0: not yet).
    pub last_receipt_ns: u64,
    /// Its last read stopped before the socket was empty (its pace allowed no more, or its
    /// turn was over): the worker must read it again (edge-triggered: no new event will say
    /// so).
    pub read_pending: bool,
    /// Subscriber (`--subscribers-offline`): its DISCONNECT is queued, and it has left once
    /// the broker closes the connection.
    pub departing: bool,
    /// Subscriber (`--subscribers-offline return`): this connection resumes its session
    /// (no clean start, no SUBSCRIBE: the session has it; CONNACK must say Session Present).
    pub resuming: bool,
}

impl Conn {
    /// A connection for plan entry `plan`, not opened yet.
    pub fn new(
        plan: usize,
        filter: Option<String>,
        subscriber_no: u32,
        group: Option<u32>,
        protocol: Protocol,
    ) -> Conn {
        Conn {
            plan,
            stream: None,
            tls: None,
            close_notify_sent: false,
            tls_started_ns: 0,
            state: State::Idle,
            started_ns: 0,
            connect_sent_ns: 0,
            last_write_ns: 0,
            wbuf: Vec::new(),
            rbuf: Vec::new(),
            writable: false,
            filter,
            subscriber_no,
            group,
            protocol,
            next_seq: 0,
            next_packet_id: 1,
            inflight: 0,
            pace: None,
            last_receipt_ns: 0,
            read_pending: false,
            departing: false,
            resuming: false,
        }
    }

    /// Makes a subscriber that left ready to connect again, resuming its session.
    pub fn prepare_return(&mut self) {
        self.stream = None;
        self.tls = None;
        self.close_notify_sent = false;
        self.state = State::Idle;
        self.wbuf.clear();
        self.rbuf.clear();
        self.writable = false;
        self.read_pending = false;
        self.departing = false;
        self.resuming = true;
    }

    /// A fresh packet id (never 0).
    pub fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Whether it has bytes to write: MQTT packets, or (TLS) records and handshake messages.
    pub fn has_output(&self) -> bool {
        !self.wbuf.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes as much of `wbuf` as the socket takes (TLS: through the session, and its
    /// close_notify once a closing connection's last packet is in). `Err` on a socket error.
    pub fn flush(&mut self, now_ns: u64) -> io::Result<()> {
        if self.tls.is_some() {
            return self.flush_tls(now_ns);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut written = 0;
        while written < self.wbuf.len() && self.writable {
            match stream.write(&self.wbuf[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if written > 0 {
            self.wbuf.drain(..written);
            self.last_write_ns = now_ns;
        }
        Ok(())
    }

    /// [`Conn::flush`] of a TLS connection: plaintext into the session while it takes it
    /// (it holds at most 64 KiB of records unwritten), records out while the socket takes
    /// them.
    fn flush_tls(&mut self, now_ns: u64) -> io::Result<()> {
        let (Some(stream), Some(tls)) = (self.stream.as_mut(), self.tls.as_deref_mut()) else {
            return Ok(());
        };
        let mut wrote = false;
        loop {
            if !self.wbuf.is_empty() {
                let taken = tls.writer().write(&self.wbuf)?;
                self.wbuf.drain(..taken);
            }
            if self.wbuf.is_empty() && self.state == State::Closing && !self.close_notify_sent {
                tls.send_close_notify();
                self.close_notify_sent = true;
            }
            if !tls.wants_write() || !self.writable {
                break;
            }
            match tls.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => wrote = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if wrote {
            self.last_write_ns = now_ns;
        }
        Ok(())
    }

    /// Reads what is available (at most [`MAX_READS_PER_TURN`] reads, and what its pace
    /// allows) and handles each complete packet. `scratch` takes what the socket gives;
    /// `plain` the plaintext a TLS session gives back.
    pub fn read(
        &mut self,
        scratch: &mut [u8],
        plain: &mut [u8],
        qos: u8,
        sinks: &mut Sinks<'_>,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        self.read_pending = false;
        for _ in 0..MAX_READS_PER_TURN {
            let limit = match self.pace.as_mut() {
                Some(pace) => pace.allowance(track::now_ns()).min(scratch.len()),
                None => scratch.len(),
            };
            if limit == 0 {
                self.read_pending = true;
                return outcome;
            }
            let Some(stream) = self.stream.as_mut() else {
                return outcome;
            };
            let n = match stream.read(&mut scratch[..limit]) {
                Ok(0) => {
                    if self.state != State::Closing {
                        outcome.failed = Some("the broker closed the connection".into());
                    }
                    self.state = State::Closed;
                    return outcome;
                }
                Ok(n) => {
                    if let Some(pace) = self.pace.as_mut() {
                        pace.spend(n);
                    }
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return outcome,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    outcome.failed = Some(format!("read: {e}"));
                    self.state = State::Closed;
                    return outcome;
                }
            };
            if self.tls.is_some() {
                self.decrypt(&scratch[..n], plain, qos, sinks, &mut outcome);
            } else {
                self.consume(&scratch[..n], qos, sinks, &mut outcome);
            }
            if outcome.failed.is_some() || self.state == State::Closed {
                self.state = State::Closed;
                return outcome;
            }
        }
        self.read_pending = true;
        outcome
    }

    /// Handles the MQTT bytes `bytes`, after the incomplete frame left from before.
    fn consume(&mut self, bytes: &[u8], qos: u8, sinks: &mut Sinks<'_>, outcome: &mut Outcome) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        if rbuf.is_empty() {
            let used = self.handle_all(bytes, qos, sinks, outcome);
            rbuf.extend_from_slice(&bytes[used..]);
        } else {
            rbuf.extend_from_slice(bytes);
            let used = self.handle_all(&rbuf, qos, sinks, outcome);
            rbuf.drain(..used);
        }
        self.rbuf = rbuf;
    }

    /// Gives the TLS session the bytes `wire` read from the socket, handles the plaintext it
    /// gives back (read through `plain`), and notes the end of the handshake.
    fn decrypt(
        &mut self,
        mut wire: &[u8],
        plain: &mut [u8],
        qos: u8,
        sinks: &mut Sinks<'_>,
        outcome: &mut Outcome,
    ) {
        let Some(mut tls) = self.tls.take() else {
            return;
        };
        'wire: while !wire.is_empty() {
            // From a slice, read_tls takes what its buffer holds (a few KiB at a time).
            if let Err(e) = tls.read_tls(&mut wire) {
                outcome.failed = Some(format!("TLS: {e}"));
                break;
            }
            if let Err(e) = tls.process_new_packets() {
                outcome.failed = Some(format!("TLS: {e}"));
                // Tell the broker why (the alert rustls queued), if the socket takes it.
                if let Some(stream) = self.stream.as_mut() {
                    let _ = tls.write_tls(stream);
                }
                break;
            }
            if self.state == State::TlsHandshake && !tls.is_handshaking() {
                outcome.tls_established = true;
            }
            loop {
                match tls.reader().read(plain) {
                    Ok(0) => {
                        // The broker's close_notify.
                        if self.state != State::Closing {
                            outcome.failed = Some("the broker closed the TLS session".into());
                        }
                        self.state = State::Closed;
                        break 'wire;
                    }
                    Ok(n) => {
                        self.consume(&plain[..n], qos, sinks, outcome);
                        if outcome.failed.is_some() {
                            break 'wire;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        outcome.failed = Some(format!("TLS: {e}"));
                        break 'wire;
                    }
                }
            }
        }
        self.tls = Some(tls);
    }

    /// Handles the complete frames at the start of `buf`; returns the bytes they took.
    fn handle_all(
        &mut self,
        buf: &[u8],
        qos: u8,
        sinks: &mut Sinks<'_>,
        outcome: &mut Outcome,
    ) -> usize {
        let mut at = 0;
        let mut now_ns = 0;
        loop {
            match mqtt::parse(&buf[at..], self.protocol) {
                Ok((packet, used)) => {
                    at += used;
                    if now_ns == 0 {
                        now_ns = track::now_ns();
                    }
                    self.handle(packet, qos, now_ns, sinks, outcome);
                    if outcome.failed.is_some() {
                        return at;
                    }
                }
                Err(ParseError::Incomplete) => return at,
                Err(ParseError::Malformed(why)) => {
                    outcome.failed = Some(format!("malformed packet from the broker: {why}"));
                    return at;
                }
            }
        }
    }

    fn handle(
        &mut self,
        packet: Incoming<'_>,
        qos: u8,
        now_ns: u64,
        sinks: &mut Sinks<'_>,
        outcome: &mut Outcome,
    ) {
        match packet {
            Incoming::ConnAck {
                code,
                session_present,
            } if self.state == State::AwaitConnAck => {
                if code != 0 {
                    outcome.failed = Some(format!("CONNACK refused with code 0x{code:02x}"));
                    return;
                }
                if self.resuming {
                    // Not a connect of the run's connect phase: its latency is not counted.
                    if !session_present {
                        outcome.failed = Some(
                            "resumed without its session: CONNACK Session Present 0 (the \
                             broker did not keep it)"
                                .into(),
                        );
                        return;
                    }
                    self.state = State::Ready;
                    outcome.became_ready = true;
                    return;
                }
                track::record(sinks.connack, now_ns.saturating_sub(self.started_ns));
                track::record(
                    sinks.connect_to_connack,
                    now_ns.saturating_sub(self.connect_sent_ns),
                );
                if let Some(filter) = &self.filter {
                    mqtt::subscribe(
                        &mut self.wbuf,
                        self.protocol,
                        SUBSCRIBE_PACKET_ID,
                        filter,
                        qos,
                    );
                    self.state = State::AwaitSubAck;
                } else {
                    self.state = State::Ready;
                    outcome.became_ready = true;
                }
            }
            Incoming::SubAck { code, .. } if self.state == State::AwaitSubAck => {
                if code >= 0x80 {
                    outcome.failed =
                        Some(format!("SUBACK refused the subscription (0x{code:02x})"));
                    return;
                }
                self.state = State::Ready;
                outcome.became_ready = true;
            }
            Incoming::Publish {
                qos: got_qos,
                packet_id,
                payload,
                ..
            } => {
                match got_qos {
                    1 => mqtt::ack(&mut self.wbuf, Ack::PubAck, packet_id),
                    2 => mqtt::ack(&mut self.wbuf, Ack::PubRec, packet_id),
                    _ => {}
                }
                let Some((sent_ns, publisher, seq)) = track::read_stamp(payload) else {
                    sinks.tracker.foreign += 1;
                    return;
                };
                let before = sinks.tracker.duplicates;
                match self.group {
                    Some(group) => {
                        sinks
                            .tracker
                            .receive_in_group(group, self.subscriber_no, publisher, seq)
                    }
                    None => sinks.tracker.receive(self.subscriber_no, publisher, seq),
                }
                if sinks.tracker.duplicates == before {
                    *sinks.unique_delta += 1;
                }
                *sinks.last_delivery_ns = now_ns;
                if self.last_receipt_ns > 0 {
                    let gap = now_ns.saturating_sub(self.last_receipt_ns);
                    *sinks.longest_gap_ns = (*sinks.longest_gap_ns).max(gap);
                }
                self.last_receipt_ns = now_ns;
                track::record(sinks.e2e, now_ns.saturating_sub(sent_ns));
            }
            Incoming::Ack(Ack::PubAck, _) if qos == 1 => {
                self.inflight = self.inflight.saturating_sub(1);
                *sinks.acknowledged += 1;
            }
            Incoming::Ack(Ack::PubRec, id) => mqtt::ack(&mut self.wbuf, Ack::PubRel, id),
            Incoming::Ack(Ack::PubRel, id) => mqtt::ack(&mut self.wbuf, Ack::PubComp, id),
            Incoming::Ack(Ack::PubComp, _) => {
                self.inflight = self.inflight.saturating_sub(1);
                *sinks.acknowledged += 1;
            }
            Incoming::Disconnect { reason } => {
                outcome.failed = Some(format!("the broker sent DISCONNECT 0x{reason:02x}"));
            }
            Incoming::PingResp | Incoming::UnsubAck | Incoming::Ack(..) => {}
            other => {
                outcome.failed = Some(format!("unexpected {other:?} in state {:?}", self.state));
            }
        }
    }
}
