//! One worker thread: a mio event loop driving its share of the clients through the phases
//! the coordinator sets (connect, publish, stop).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::conn::{Conn, Pace, Sinks, State};
use super::tls::{TlsClient, TlsSeen};
use super::{Control, PHASE_CONNECT, PHASE_LEAVE, PHASE_PUBLISH, PHASE_RETURN, PHASE_STOP};
use crate::cli::Offline;
use crate::mqtt;
use crate::plan::ClientPlan;
use crate::track::{self, Tracker};

/// Bytes read from a socket at once.
const READ_SCRATCH_BYTES: usize = 64 * 1024;
/// An unlimited-rate publisher stops generating while this much output waits.
const WRITE_HIGH_WATER_BYTES: usize = 64 * 1024;
/// Messages one publisher generates per loop iteration at most.
const PUBLISH_BATCH_MESSAGES: u64 = 256;
/// Poll timeout while there is nothing to generate.
const IDLE_POLL: Duration = Duration::from_millis(1);
/// How often keep-alive is checked.
const KEEP_ALIVE_CHECK_NS: u64 = 1_000_000_000;
/// How long the stop phase waits for DISCONNECTs to be written.
const STOP_FLUSH_NS: u64 = 1_000_000_000;
/// Events taken from one poll.
const EVENTS_CAPACITY: usize = 1024;
/// Errors kept per worker (the rest are counted).
const MAX_ERRORS_KEPT: usize = 5;

/// Where in its period publisher `publisher_no` sends at a limited rate, as a fraction in
/// (0, 1] of the period: spread by the golden ratio, so that publishers at a total rate send
/// a steady stream, not all in the same instant once a period. (All sending together made a
/// p2p run of 1 000 pairs a burst of 1 000 messages every period, and its latency the time
/// to work through a burst.)
fn publish_phase(publisher_no: u32) -> f64 {
    const GOLDEN_RATIO_FRACTION: f64 = 0.618_033_988_749_894_9;
    1.0 - (f64::from(publisher_no) * GOLDEN_RATIO_FRACTION).fract()
}

/// What the worker needs.
pub struct Setup {
    /// Worker index.
    pub index: usize,
    /// Workers in all.
    pub workers: usize,
    /// The whole plan.
    pub plan: Arc<Vec<ClientPlan>>,
    /// Its clients (plan indices).
    pub mine: Vec<usize>,
    /// Broker address.
    pub target: SocketAddr,
    /// Source addresses.
    pub sources: Vec<IpAddr>,
    /// Coordination with the main thread.
    pub control: Arc<Control>,
    /// Flags that matter here.
    pub qos: u8,
    /// Payload size.
    pub payload_bytes: usize,
    /// Per-publisher rate, messages/s (0 = unlimited).
    pub rate_per_publisher: f64,
    /// Per-publisher message cap (0 = none).
    pub messages: u64,
    /// QoS 1/2 window.
    pub inflight: usize,
    /// This worker's connect rate, clients/s (0 = unlimited).
    pub connect_rate: f64,
    /// This worker's concurrent CONNECTs.
    pub connect_concurrency: usize,
    /// Keep-alive, seconds.
    pub keep_alive_secs: u16,
    /// The MQTT version the clients speak.
    pub protocol: mqtt::Protocol,
    /// Bytes a second each subscriber reads at most in the message phase (0 = no limit).
    pub subscriber_read_bytes_per_sec: u64,
    /// Subscribers read nothing for this long at the start of the message phase, ms.
    pub subscriber_pause_ms: u64,
    /// Socket receive buffer subscribers ask for, bytes (0 = the kernel's default).
    pub subscriber_rcvbuf_bytes: usize,
    /// The password clients with a user name send (`--password`).
    pub password: Option<Arc<[u8]>>,
    /// TLS (`--tls-ca`): every client's session comes from it.
    pub tls: Option<Arc<TlsClient>>,
    /// Subscribers' Session Expiry Interval (3.1.1: Clean Session 0 when not 0).
    pub subscriber_session_expiry_secs: u32,
    /// Whether subscribers are away while publishers publish, and what they do next.
    pub offline: Option<Offline>,
}

/// What the worker measured.
pub struct Outcome {
    /// CONNACK latency.
    pub connack: Histogram<u64>,
    /// Socket connect start → the harness sees the TCP handshake done.
    pub handshake: Histogram<u64>,
    /// TLS: TCP handshake done → TLS handshake done.
    pub tls_handshake: Histogram<u64>,
    /// TLS: the handshakes completed.
    pub tls: TlsSeen,
    /// CONNECT written → CONNACK read.
    pub connect_to_connack: Histogram<u64>,
    /// End-to-end latency.
    pub e2e: Histogram<u64>,
    /// Deliveries.
    pub tracker: Tracker,
    /// PUBLISH packets generated.
    pub published: u64,
    /// Clients connected.
    pub connected: u64,
    /// Clients that failed.
    pub failed: u64,
    /// First socket opened.
    pub first_connect_ns: u64,
    /// Last client ready.
    pub last_ready_ns: u64,
    /// Last delivery.
    pub last_delivery_ns: u64,
    /// Longest time one subscriber waited between two deliveries.
    pub longest_gap_ns: u64,
    /// QoS 1/2 publishes not acknowledged by the broker when the drain ended.
    pub unacknowledged: u64,
    /// The first few errors.
    pub errors: Vec<String>,
}

/// Runs the worker to the stop phase.
pub fn run(setup: Setup) -> io::Result<Outcome> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let plan = Arc::clone(&setup.plan);
    let control = Arc::clone(&setup.control);
    let mut conns: Vec<Conn> = setup
        .mine
        .iter()
        .map(|&i| {
            let p = &plan[i];
            let filter = p.subscribe.clone();
            Conn::new(i, filter, p.subscriber_no, p.group, setup.protocol)
        })
        .collect();
    let publishers: Vec<usize> = (0..conns.len())
        .filter(|&c| plan[conns[c].plan].publish.is_some())
        .collect();
    let mut out = Outcome {
        connack: track::latency_histogram(),
        handshake: track::latency_histogram(),
        tls_handshake: track::latency_histogram(),
        tls: TlsSeen::default(),
        connect_to_connack: track::latency_histogram(),
        e2e: track::latency_histogram(),
        tracker: Tracker::default(),
        published: 0,
        connected: 0,
        failed: 0,
        first_connect_ns: 0,
        last_ready_ns: 0,
        last_delivery_ns: 0,
        longest_gap_ns: 0,
        unacknowledged: 0,
        errors: Vec::new(),
    };
    let mut scratch = vec![0u8; READ_SCRATCH_BYTES];
    // TLS: the plaintext a session gives back (none without TLS).
    let mut plain = vec![
        0u8;
        if setup.tls.is_some() {
            READ_SCRATCH_BYTES
        } else {
            0
        }
    ];
    let mut payload = vec![0u8; setup.payload_bytes.max(track::MIN_PAYLOAD_BYTES)];
    let mut touched: Vec<usize> = Vec::new();
    // Clients whose last read stopped with bytes perhaps left in their socket, and the
    // clients one turn reads.
    let mut read_again: Vec<usize> = Vec::new();
    let mut to_read: Vec<usize> = Vec::new();
    let mut next_open = 0usize;
    let mut pending = 0usize;
    let mut reported_ready = false;
    let mut reported_published = false;
    let mut publish_start_ns = 0u64;
    let mut next_keep_alive_ns = 0u64;
    let mut stop_started_ns = 0u64;
    // --subscribers-offline: whether the subscribers were told to leave, whether all have,
    // and the ones reconnecting (the next to open, whether all are back).
    let (mut leave_started, mut reported_left) = (false, false);
    let mut returning: Option<Vec<usize>> = None;
    let (mut next_return, mut reported_returned) = (0usize, false);
    let mut busy = false;
    let started_ns = track::now_ns();
    loop {
        poll.poll(
            &mut events,
            Some(if busy { Duration::ZERO } else { IDLE_POLL }),
        )
        .or_else(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        busy = false;
        let now = track::now_ns();
        let mut unique_delta = 0u64;
        let mut acknowledged = 0u64;
        let receipts_before = out.tracker.delivered;
        // This turn reads the clients with events and those whose last read stopped early.
        to_read.append(&mut read_again);
        for event in events.iter() {
            let c = event.token().0;
            let Some(conn) = conns.get_mut(c) else {
                continue;
            };
            touched.push(c);
            if conn.state == State::Connecting {
                let error = conn
                    .stream
                    .as_ref()
                    .and_then(|s| s.take_error().ok().flatten());
                let connected = conn.stream.as_ref().is_some_and(|s| s.peer_addr().is_ok());
                if let Some(e) = error {
                    fail(conn, &mut out, &format!("connect to {}: {e}", setup.target));
                    pending -= 1;
                    continue;
                }
                if !connected {
                    continue;
                }
                track::record(&mut out.handshake, now.saturating_sub(conn.started_ns));
                match setup.tls.as_deref().map(TlsClient::connect) {
                    None => send_connect(conn, &setup, now),
                    Some(Ok(session)) => {
                        // Its ClientHello goes when the connection is flushed below.
                        conn.tls = Some(Box::new(session));
                        conn.state = State::TlsHandshake;
                        conn.tls_started_ns = now;
                    }
                    Some(Err(e)) => {
                        fail(conn, &mut out, &format!("TLS: {e}"));
                        pending -= 1;
                        continue;
                    }
                }
            }
            if event.is_writable() {
                conn.writable = true;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                to_read.push(c);
            }
        }
        to_read.sort_unstable();
        to_read.dedup();
        for &c in &to_read {
            let conn = &mut conns[c];
            let buffers = (&mut scratch[..], &mut plain[..]);
            let counts = (&mut unique_delta, &mut acknowledged);
            read_conn(conn, buffers, &setup, &mut out, counts, &mut pending);
            if conn.read_pending {
                read_again.push(c);
            }
            if conn.stream.is_some() && conn.has_output() {
                // A TLS session may answer what it read (handshake messages, alerts).
                touched.push(c);
            }
        }
        to_read.clear();
        if unique_delta > 0 {
            control.unique.fetch_add(unique_delta, Ordering::Relaxed);
        }
        if acknowledged > 0 {
            control
                .acknowledged
                .fetch_add(acknowledged, Ordering::Relaxed);
            control.last_ack_ns.fetch_max(now, Ordering::Relaxed);
        }
        let receipts = out.tracker.delivered - receipts_before;
        if receipts > 0 {
            control.receipts.fetch_add(receipts, Ordering::Relaxed);
            control
                .last_receipt_ns
                .fetch_max(out.last_delivery_ns, Ordering::Relaxed);
        }
        let phase = control.phase.load(Ordering::Acquire);
        if phase == PHASE_CONNECT {
            let cap = if setup.connect_rate > 0.0 {
                let secs = now.saturating_sub(started_ns) as f64 / 1e9;
                ((secs * setup.connect_rate) as usize + 1).min(conns.len())
            } else {
                conns.len()
            };
            while next_open < cap && pending < setup.connect_concurrency {
                if out.first_connect_ns == 0 {
                    out.first_connect_ns = track::now_ns();
                }
                let c = next_open;
                next_open += 1;
                start_connect(&poll, &setup, (&mut conns[c], c), &mut out, &mut pending);
            }
            if !reported_ready && next_open == conns.len() && pending == 0 {
                reported_ready = true;
                control.ready_workers.fetch_add(1, Ordering::AcqRel);
            }
        } else if phase == PHASE_LEAVE {
            if !leave_started {
                leave_started = true;
                for (c, conn) in conns.iter_mut().enumerate() {
                    if conn.filter.is_some() && conn.state == State::Ready {
                        mqtt::disconnect(&mut conn.wbuf);
                        conn.state = State::Closing;
                        conn.departing = true;
                        touched.push(c);
                    }
                }
            }
            if !reported_left && !conns.iter().any(|c| c.departing) {
                reported_left = true;
                control.left_workers.fetch_add(1, Ordering::AcqRel);
            }
        } else if phase == PHASE_RETURN {
            let back = returning.get_or_insert_with(|| {
                let subscribers: Vec<usize> = (0..conns.len())
                    .filter(|&c| conns[c].filter.is_some() && conns[c].state == State::Closed)
                    .collect();
                for &c in &subscribers {
                    conns[c].prepare_return();
                }
                subscribers
            });
            while next_return < back.len() && pending < setup.connect_concurrency {
                let c = back[next_return];
                next_return += 1;
                start_connect(&poll, &setup, (&mut conns[c], c), &mut out, &mut pending);
            }
            if !reported_returned && next_return == back.len() && pending == 0 {
                reported_returned = true;
                control.returned_workers.fetch_add(1, Ordering::AcqRel);
            }
        } else if phase == PHASE_PUBLISH {
            if publish_start_ns == 0 {
                publish_start_ns = now;
                if setup.subscriber_read_bytes_per_sec > 0 || setup.subscriber_pause_ms > 0 {
                    for conn in conns.iter_mut().filter(|c| c.filter.is_some()) {
                        conn.pace = Some(Pace::new(
                            setup.subscriber_read_bytes_per_sec,
                            setup.subscriber_pause_ms,
                            now,
                        ));
                    }
                }
            }
            let deadline = control.publish_deadline_ns.load(Ordering::Relaxed);
            let mut all_done = true;
            for &c in &publishers {
                let conn = &mut conns[c];
                if conn.state != State::Ready {
                    continue;
                }
                let cap_reached = setup.messages > 0 && conn.next_seq >= setup.messages;
                if now >= deadline || cap_reached {
                    continue;
                }
                all_done = false;
                let p = &plan[conn.plan];
                let mut allowed = PUBLISH_BATCH_MESSAGES;
                if setup.rate_per_publisher > 0.0 {
                    let secs = now.saturating_sub(publish_start_ns) as f64 / 1e9;
                    let due =
                        (secs * setup.rate_per_publisher + publish_phase(p.publisher_no)) as u64;
                    allowed = allowed.min(due.saturating_sub(conn.next_seq));
                } else if conn.wbuf.len() >= WRITE_HIGH_WATER_BYTES {
                    allowed = 0;
                }
                if setup.messages > 0 {
                    allowed = allowed.min(setup.messages - conn.next_seq);
                }
                if setup.qos > 0 {
                    allowed = allowed.min(setup.inflight.saturating_sub(conn.inflight) as u64);
                }
                if allowed == 0 {
                    continue;
                }
                let topic = p.publish.as_deref().unwrap_or_default();
                let sent_ns = track::now_ns();
                for _ in 0..allowed {
                    track::stamp(&mut payload, sent_ns, p.publisher_no, conn.next_seq);
                    let id = if setup.qos > 0 { conn.packet_id() } else { 0 };
                    mqtt::publish(
                        &mut conn.wbuf,
                        setup.protocol,
                        topic,
                        setup.qos,
                        id,
                        &payload,
                    );
                    conn.next_seq += 1;
                    if setup.qos > 0 {
                        conn.inflight += 1;
                    }
                }
                out.published += allowed;
                control.published.fetch_add(allowed, Ordering::Relaxed);
                if setup.offline.is_some() {
                    control
                        .queued
                        .fetch_add(allowed * p.audience, Ordering::Relaxed);
                }
                if setup.offline != Some(Offline::Stay) {
                    control
                        .expected
                        .fetch_add(allowed * p.audience, Ordering::Relaxed);
                }
                touched.push(c);
                if setup.rate_per_publisher <= 0.0 {
                    busy = true;
                }
            }
            if all_done && !reported_published {
                reported_published = true;
                control.publishers_done.fetch_add(1, Ordering::AcqRel);
            }
        } else if phase == PHASE_STOP {
            if stop_started_ns == 0 {
                stop_started_ns = now;
                if setup.qos > 0 {
                    out.unacknowledged = publishers.iter().map(|&c| conns[c].inflight as u64).sum();
                }
                for (c, conn) in conns.iter_mut().enumerate() {
                    if conn.stream.is_some() && conn.state != State::Closed {
                        mqtt::disconnect(&mut conn.wbuf);
                        conn.state = State::Closing;
                        touched.push(c);
                    }
                }
            }
            let unwritten = conns.iter().any(|c| c.stream.is_some() && c.has_output());
            if !unwritten || now.saturating_sub(stop_started_ns) > STOP_FLUSH_NS {
                return Ok(out);
            }
        }
        if setup.keep_alive_secs > 0 && now >= next_keep_alive_ns {
            next_keep_alive_ns = now + KEEP_ALIVE_CHECK_NS;
            let idle_ns = u64::from(setup.keep_alive_secs) * 1_000_000_000;
            for (c, conn) in conns.iter_mut().enumerate() {
                if conn.state == State::Ready && now.saturating_sub(conn.last_write_ns) >= idle_ns {
                    mqtt::pingreq(&mut conn.wbuf);
                    touched.push(c);
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for &c in &touched {
            let conn = &mut conns[c];
            if conn.stream.is_none() || !conn.has_output() {
                continue;
            }
            if let Err(e) = conn.flush(now) {
                if conn.state.is_waiting() {
                    pending -= 1;
                }
                if conn.state != State::Closing {
                    fail(conn, &mut out, &format!("write: {e}"));
                }
                conn.stream = None;
                if std::mem::take(&mut conn.departing) {
                    conn.state = State::Closed;
                    control.departed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        touched.clear();
    }
}

/// Opens the socket of client `c` (`conn`) and starts its TCP connect (a failure is the
/// client's; running out of descriptors is the run's).
fn start_connect(
    poll: &Poll,
    setup: &Setup,
    (conn, c): (&mut Conn, usize),
    out: &mut Outcome,
    pending: &mut usize,
) {
    let source = setup.sources[(setup.index + c * setup.workers) % setup.sources.len()];
    let rcvbuf = if conn.filter.is_some() {
        setup.subscriber_rcvbuf_bytes
    } else {
        0
    };
    match open(poll, setup.target, source, rcvbuf, c) {
        Ok(stream) => {
            conn.stream = Some(stream);
            conn.state = State::Connecting;
            conn.started_ns = track::now_ns();
            *pending += 1;
        }
        Err(e) => {
            let why = if e.raw_os_error() == Some(libc::EMFILE) {
                let msg = format!(
                    "the open-file limit of this process was reached after {} sockets: lower \
                     --clients or run several harness processes",
                    out.connected + *pending as u64
                );
                setup.control.set_fatal(&msg);
                msg
            } else {
                format!("socket: {e}")
            };
            fail(conn, out, &why);
        }
    }
}

/// Queues `conn`'s CONNECT (its transport is ready: TCP connected, TLS established) at
/// `now`. A subscriber asks for a session that outlives the connection when
/// `--subscriber-session-expiry-secs` is set, and one that resumes asks for no clean start.
fn send_connect(conn: &mut Conn, setup: &Setup, now: u64) {
    let plan = &setup.plan[conn.plan];
    let login = mqtt::Login {
        username: plan.username.as_deref(),
        password: setup.password.as_deref(),
    };
    let expiry_secs = match conn.filter {
        Some(_) => setup.subscriber_session_expiry_secs,
        None => 0,
    };
    let v311_keeps = setup.protocol == mqtt::Protocol::V311 && expiry_secs > 0;
    let session = mqtt::SessionRequest {
        clean: !conn.resuming && !v311_keeps,
        expiry_secs,
    };
    mqtt::connect_session(
        &mut conn.wbuf,
        setup.protocol,
        &plan.client_id,
        setup.keep_alive_secs,
        session,
        login,
    );
    conn.state = State::AwaitConnAck;
    conn.connect_sent_ns = now;
}

/// Reads what `conn` has (as much as its pace allows) into `buffers` (what the socket
/// gives, the plaintext a TLS session gives back) and handles the outcome: a TLS handshake
/// done (CONNECT follows), a client that became ready, or one that failed.
fn read_conn(
    conn: &mut Conn,
    buffers: (&mut [u8], &mut [u8]),
    setup: &Setup,
    out: &mut Outcome,
    (unique_delta, acknowledged): (&mut u64, &mut u64),
    pending: &mut usize,
) {
    let was_waiting = conn.state.is_waiting();
    let mut sinks = Sinks {
        tracker: &mut out.tracker,
        e2e: &mut out.e2e,
        connack: &mut out.connack,
        connect_to_connack: &mut out.connect_to_connack,
        unique_delta,
        last_delivery_ns: &mut out.last_delivery_ns,
        longest_gap_ns: &mut out.longest_gap_ns,
        acknowledged,
    };
    let (scratch, plain) = buffers;
    let result = conn.read(scratch, plain, setup.qos, &mut sinks);
    if conn.departing && conn.state == State::Closed {
        // The broker closed the connection of a subscriber that said DISCONNECT: it has
        // left (its session stays).
        conn.departing = false;
        conn.stream = None;
        conn.read_pending = false;
        setup.control.departed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if result.tls_established && result.failed.is_none() {
        let now = track::now_ns();
        track::record(
            &mut out.tls_handshake,
            now.saturating_sub(conn.tls_started_ns),
        );
        if let Some(tls) = conn.tls.as_deref() {
            out.tls.record(tls, now);
        }
        send_connect(conn, setup, now);
    }
    if result.became_ready && conn.resuming {
        *pending -= 1;
        setup.control.resumed.fetch_add(1, Ordering::Relaxed);
    } else if result.became_ready {
        *pending -= 1;
        out.connected += 1;
        out.last_ready_ns = track::now_ns();
        setup.control.connected.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(why) = result.failed {
        if was_waiting {
            *pending -= 1;
        }
        if conn.state != State::Closing {
            fail(conn, out, &why);
        }
        conn.stream = None;
        conn.read_pending = false;
    }
}

/// Marks a client failed and keeps the first few reasons.
fn fail(conn: &mut Conn, out: &mut Outcome, why: &str) {
    conn.state = State::Closed;
    conn.stream = None;
    out.failed += 1;
    if out.errors.len() < MAX_ERRORS_KEPT {
        out.errors.push(why.to_string());
    }
}

/// Opens a non-blocking socket from `source` (port chosen at connect time) toward `target`,
/// with a receive buffer of `rcvbuf` bytes (0: the kernel's default).
fn open(
    poll: &Poll,
    target: SocketAddr,
    source: IpAddr,
    rcvbuf: usize,
    token: usize,
) -> io::Result<TcpStream> {
    let domain = Domain::for_address(target);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if rcvbuf > 0 {
        // Before connect, so the window announced in the handshake already fits it.
        socket.set_recv_buffer_size(rcvbuf)?;
    }
    if source.is_ipv4() == target.is_ipv4() {
        if source.is_ipv4() {
            let on: libc::c_int = 1;
            // SAFETY: a valid socket and a c_int option value of the right size. Failure only
            // means the port is picked at bind time instead of at connect time.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&socket),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&on as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let mut stream = TcpStream::from_std(socket.into());
    poll.registry().register(
        &mut stream,
        Token(token),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::publish_phase;

    #[test]
    fn publish_phases_lie_in_the_period_and_spread_evenly() {
        const PUBLISHERS: u32 = 1000;
        const SLICES: usize = 10;
        let mut per_slice = [0u32; SLICES];
        for n in 0..PUBLISHERS {
            let phase = publish_phase(n);
            assert!(phase > 0.0 && phase <= 1.0, "publisher {n}: {phase}");
            let slice = ((phase * SLICES as f64) as usize).min(SLICES - 1);
            per_slice[slice] += 1;
        }
        // A tenth of the period holds a tenth of the publishers, give or take a few: no
        // instant where they all send.
        for (slice, &count) in per_slice.iter().enumerate() {
            assert!(
                (95..=105).contains(&count),
                "slice {slice}: {count} of {PUBLISHERS}"
            );
        }
    }
}
