//! Shared by the `server_*` tests: the real `starling` binary on a free loopback port, and a
//! tiny blocking MQTT 3.1.1 client built from raw packet bytes.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod metrics;

/// How long the broker may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any single read from the broker may block.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Start attempts (a free port can be taken between the probe and the broker's bind).
const START_ATTEMPTS: usize = 3;

/// A running broker, killed by its pid when dropped.
pub struct Broker {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its metrics endpoint listens, if the test asked for one
    /// ([`Broker::start_monitored`]).
    pub metrics: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

/// A command running the `starling` binary; with `open_files`, under that open-file limit
/// (soft and hard, set by the shell's `ulimit -n` before it execs the binary), so a test
/// does not depend on the limit it was started with.
pub fn starling_command(open_files: Option<u64>) -> Command {
    let binary = env!("CARGO_BIN_EXE_starling");
    match open_files {
        None => Command::new(binary),
        Some(limit) => {
            let mut command = Command::new("sh");
            command.args([
                "-c",
                "ulimit -n \"$0\" && exec \"$@\"",
                &limit.to_string(),
                binary,
            ]);
            command
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl Broker {
    /// Starts the binary with `--listen 127.0.0.1:PORT --log-level debug` and `args`.
    pub fn start(args: &[&str]) -> Broker {
        Broker::start_with(args, |addr| vec!["--listen".to_string(), addr.to_string()])
    }

    /// Starts the binary with `--log-level debug`, the arguments `listen` makes for the
    /// chosen free loopback address (`--listen ADDR`, or `--config FILE` naming it), and
    /// `args`.
    pub fn start_with(args: &[&str], listen: impl Fn(SocketAddr) -> Vec<String>) -> Broker {
        Broker::start_logging(args, listen, Some("debug"))
    }

    /// Like [`Broker::start_with`], with `--log-level LEVEL` only if `log_level` is given
    /// (without it the configuration file decides, and a reload can change it).
    pub fn start_logging(
        args: &[&str],
        listen: impl Fn(SocketAddr) -> Vec<String>,
        log_level: Option<&str>,
    ) -> Broker {
        Broker::start_limited(None, args, listen, log_level)
    }

    /// Like [`Broker::start_logging`], with the open-file limit (soft and hard) set to
    /// `open_files` for the broker if given (see [`starling_command`]).
    pub fn start_limited(
        open_files: Option<u64>,
        args: &[&str],
        listen: impl Fn(SocketAddr) -> Vec<String>,
        log_level: Option<&str>,
    ) -> Broker {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("loopback address");
            let mut command_line = listen(addr);
            if let Some(level) = log_level {
                command_line.extend(["--log-level".to_string(), level.to_string()]);
            }
            command_line.extend(args.iter().map(|a| a.to_string()));
            let mut broker = Broker::spawn_limited(addr, &command_line, open_files);
            if broker.wait_listening() {
                return broker;
            }
            last = broker.log_text();
        }
        panic!("the broker did not start:\n{last}");
    }

    /// Spawns the binary with exactly `args`, its log captured, without waiting for it to
    /// listen on `addr` (where the caller's arguments tell it to).
    pub fn spawn(addr: SocketAddr, args: &[String]) -> Broker {
        Broker::spawn_limited(addr, args, None)
    }

    /// Like [`Broker::start`] with `--log-level info` (no line per accept and close), in a
    /// process whose open-file limit (soft and hard) is `open_files` if given.
    pub fn start_info(args: &[&str], open_files: Option<u64>) -> Broker {
        let listen = |addr: SocketAddr| vec!["--listen".to_string(), addr.to_string()];
        Broker::start_limited(open_files, args, listen, Some("info"))
    }

    /// [`Broker::spawn`] under the open-file limit `open_files` (see [`starling_command`]).
    fn spawn_limited(addr: SocketAddr, args: &[String], open_files: Option<u64>) -> Broker {
        let mut command = starling_command(open_files);
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the starling binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("log lock").push(line);
            }
        });
        Broker {
            child,
            addr,
            metrics: None,
            log,
            reader: Some(reader),
        }
    }

    /// The process id (to signal it without spawning `kill`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            // The "listening" line comes after every loop has built its shard.
            if self.log_text().contains("event loops running") {
                return TcpStream::connect_timeout(&self.addr, READ_TIMEOUT).is_ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Everything the broker has logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Whether a log line containing `needle` shows up within [`READ_TIMEOUT`] (the log is
    /// read by a background thread, so a line can lag the event that caused it).
    pub fn log_shows(&self, needle: &str) -> bool {
        let deadline = Instant::now() + READ_TIMEOUT;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// The loop that logged "connection accepted" for the client whose local address is
    /// `client`, waiting up to [`READ_TIMEOUT`] for the line.
    pub fn accepting_loop(&self, client: SocketAddr) -> usize {
        let peer = format!("peer={client}");
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            {
                let log = self.log.lock().expect("log lock");
                for line in log.iter().filter(|l| l.contains("connection accepted")) {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    if fields.contains(&peer.as_str()) {
                        let index = fields
                            .iter()
                            .find_map(|f| f.strip_prefix("loop_index="))
                            .and_then(|v| v.parse().ok());
                        if let Some(index) = index {
                            return index;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no accept logged for {client}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (`HUP`, `TERM`, `INT`) to exactly this child's pid.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the process to exit; its exit code (`None`: still running,
    /// or killed by a signal). Once it has exited, its whole log has been read.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Its last lines may still be in the pipe: the reader ends at its EOF.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The time the broker's loops reported they did not run (`stalled_ms=` in its log): on a
    /// host too busy to schedule them, deadlines are pushed back by that much, so a test
    /// bounding when a deadline closes a client allows for it.
    pub fn stalled(&self) -> Duration {
        let ms: u64 = self
            .log_text()
            .lines()
            .filter_map(|line| line.split("stalled_ms=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_millis(ms)
    }

    /// Waits up to [`READ_TIMEOUT`] for the log to contain `text` `count` times.
    pub fn wait_log(&self, text: &str, count: usize) {
        let deadline = Instant::now() + READ_TIMEOUT;
        while self.log_text().matches(text).count() < count {
            assert!(
                Instant::now() < deadline,
                "the log never had {count} × {text:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A connection from `source` (any port) to `to`, with SO_LINGER 0 so that dropping it
/// resets rather than leaving TIME_WAIT behind (thousands of those would exhaust ports).
pub fn connect_from(source: [u8; 4], to: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_linger(Some(Duration::ZERO))?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// The body of `GET path` from the HTTP endpoint at `addr` (the metrics endpoint).
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(io::Error::other(format!("GET {path}: {response}"))),
    }
}

/// The value of the Prometheus sample `name{labels}` (labels as written, `""` for none) in
/// `text`.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A configuration file in the temporary directory, removed when dropped.
pub struct TempConfig {
    /// Where it is.
    pub path: std::path::PathBuf,
}

impl TempConfig {
    /// Writes `text` to a fresh file named after `name` and this process.
    pub fn new(name: &str, text: &str) -> TempConfig {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "starling-test-{}-{name}-{n}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write the configuration");
        TempConfig { path }
    }

    /// Replaces the contents.
    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).expect("rewrite the configuration");
    }

    /// The path as an argument.
    pub fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this child's pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

// ---- packets ------------------------------------------------------------------------------

// The packet builders are shared with the protocol tests.
#[path = "../protocol_common/mod.rs"]
mod packets;
pub use packets::{field, frame};

/// CONNECT (3.1.1, clean session, keep-alive 60 s).
pub fn connect(client_id: &str) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.extend_from_slice(&[4, 0x02, 0, 60]);
    body.extend(field(client_id.as_bytes()));
    frame(0x10, &body)
}

/// SUBSCRIBE to one filter.
pub fn subscribe(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(field(filter.as_bytes()));
    body.push(qos);
    frame(0x82, &body)
}

/// PUBLISH (a packet id only at QoS > 0).
pub fn publish(topic: &str, payload: &[u8], qos: u8, packet_id: u16) -> Vec<u8> {
    let mut body = field(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1), &body)
}

/// PUBACK.
pub fn puback(packet_id: u16) -> Vec<u8> {
    frame(0x40, &packet_id.to_be_bytes())
}

/// PINGREQ.
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// DISCONNECT.
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// One packet as received: its first byte and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Type and flags.
    pub first: u8,
    /// Everything after the remaining length.
    pub body: Vec<u8>,
}

impl Packet {
    /// The packet type (high nibble).
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
}

/// A received PUBLISH, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub packet_id: Option<u16>,
}

/// A blocking client on a raw socket.
pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    /// Opens a connection (nothing sent yet).
    pub fn open(broker: &Broker) -> Client {
        Client::open_addr(broker.addr)
    }

    /// Opens a connection to `addr` (another listener of a broker).
    pub fn open_addr(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("connect");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client { stream }
    }

    /// Opens a connection, sends CONNECT and returns the CONNACK return code.
    pub fn connect(broker: &Broker, client_id: &str) -> (Client, u8) {
        Client::connect_addr(broker, broker.addr, client_id)
    }

    /// Like [`Client::connect`] through the listener at `addr`.
    pub fn connect_addr(broker: &Broker, addr: SocketAddr, client_id: &str) -> (Client, u8) {
        let mut client = Client::open_addr(addr);
        client.send(&connect(client_id));
        let connack = match client.recv() {
            Ok(packet) => packet,
            Err(e) => panic!("no CONNACK for {client_id}: {e}\n{}", broker.log_text()),
        };
        assert_eq!(connack.first, 0x20, "expected CONNACK, got {connack:?}");
        assert_eq!(connack.body.len(), 2, "CONNACK body {connack:?}");
        (client, connack.body[1])
    }

    /// Like [`Client::connect`], asserting return code 0.
    pub fn connected(broker: &Broker, client_id: &str) -> Client {
        let (client, code) = Client::connect(broker, client_id);
        assert_eq!(code, 0, "CONNACK return code for {client_id}");
        client
    }

    /// This end's address (matches the broker's `peer=` log field).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the broker");
    }

    /// Reads one packet; an error on EOF, reset or timeout.
    pub fn recv(&mut self) -> io::Result<Packet> {
        let mut first = [0u8; 1];
        self.stream.read_exact(&mut first)?;
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let mut byte = [0u8; 1];
            self.stream.read_exact(&mut byte)?;
            len |= usize::from(byte[0] & 0x7F) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad varint"));
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok(Packet {
            first: first[0],
            body,
        })
    }

    /// SUBSCRIBE and return the SUBACK return codes.
    pub fn subscribe(&mut self, packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
        self.send(&subscribe(packet_id, filter, qos));
        let suback = self.recv().expect("SUBACK");
        assert_eq!(suback.first, 0x90, "expected SUBACK, got {suback:?}");
        assert_eq!(&suback.body[..2], &packet_id.to_be_bytes());
        suback.body[2..].to_vec()
    }

    /// Reads a PUBLISH and decodes it.
    pub fn recv_publish(&mut self) -> Publish {
        let packet = self.recv().expect("PUBLISH");
        assert_eq!(packet.kind(), 3, "expected PUBLISH, got {packet:?}");
        let qos = (packet.first >> 1) & 0x03;
        let body = &packet.body;
        let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let topic = String::from_utf8(body[2..2 + topic_len].to_vec()).expect("UTF-8 topic");
        let mut at = 2 + topic_len;
        let packet_id = (qos > 0).then(|| {
            let id = u16::from_be_bytes([body[at], body[at + 1]]);
            at += 2;
            id
        });
        Publish {
            topic,
            payload: body[at..].to_vec(),
            qos,
            packet_id,
        }
    }

    /// Asserts that the broker closes this connection (EOF or reset) before the timeout,
    /// with no packet before that.
    pub fn expect_closed(&mut self) {
        assert!(
            self.closed_within(READ_TIMEOUT),
            "expected the connection closed within {READ_TIMEOUT:?}"
        );
    }

    /// Waits for the broker to close this connection (no packet may come first) and returns
    /// how long that took; fails past `limit` plus the time the broker reported it did not
    /// run ([`Broker::stalled`]), which deadlines do not count.
    pub fn wait_closed(&mut self, broker: &Broker, limit: Duration) -> Duration {
        let started = Instant::now();
        while !self.closed_within(Duration::from_millis(100)) {
            let stalled = broker.stalled();
            assert!(
                started.elapsed() < limit + stalled,
                "still open after {:?} (stalled {stalled:?})",
                started.elapsed()
            );
        }
        started.elapsed()
    }

    /// Whether the broker closes this connection within `timeout` (no packet may come
    /// first).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        let mut buf = [0u8; 64];
        let closed = match self.stream.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => panic!("expected the connection closed, got {:?}", &buf[..n]),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => false,
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => true,
                _ => panic!("expected the connection closed, got {e}"),
            },
        };
        self.stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("read timeout");
        closed
    }

    /// PINGREQ → PINGRESP.
    pub fn ping(&mut self) {
        self.send(&PINGREQ);
        let pingresp = self.recv().expect("PINGRESP");
        assert_eq!((pingresp.first, pingresp.body.len()), (0xD0, 0));
    }

    /// DISCONNECT, then wait for the broker to close.
    pub fn disconnect(mut self) {
        self.send(&DISCONNECT);
        self.expect_closed();
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A client id with `prefix` that [`starling::core::owner_loop`] puts on `loop_index`.
pub fn id_on_loop(prefix: &str, loop_index: usize, loops: usize) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| starling::core::owner_loop(id, loops) == loop_index)
        .expect("some id hashes to every loop")
}
