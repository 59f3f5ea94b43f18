//! The harness's TLS clients against a TLS front (rustls's server, in this process) for an
//! in-process Starling: full and resumed handshakes are counted alike by both ends, with and
//! without a shared session store and on TLS 1.2 (session ids) as on TLS 1.3 (tickets);
//! messages cross TLS with every delivery counted; the negotiated suite is the one offered;
//! a client certificate is presented when asked for and a wrong server name is refused.
//!
//! The certificates are made at run time with the `openssl` command (an ECDSA P-256 CA,
//! a server certificate for localhost and 127.0.0.1, a client certificate); without it the
//! tests say so and pass. Loopback only, seconds each.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{HandshakeKind, RootCertStore, ServerConfig, ServerConnection};
use starling::config::access::AccessSettings;
use starling::config::{ListenerProtocol, ListenerSettings};
use starling::core::CoreConfig;
use starling::server::{ServerConfig as BrokerConfig, start};
use starling_loadtest::RunError;
use starling_loadtest::cli::Args;
use starling_loadtest::drain::DrainEnd;
use starling_loadtest::report::Report;

/// How long the front sleeps when none of its connections moved.
const FRONT_IDLE_SLEEP: Duration = Duration::from_micros(200);
/// Bytes the front moves at once.
const FRONT_BUFFER_BYTES: usize = 64 * 1024;

fn run(argv: &[&str]) -> Result<Report, RunError> {
    let mut full = vec!["starling-loadtest"];
    full.extend_from_slice(argv);
    starling_loadtest::run(&Args::parse_from(full))
}

/// Starling in this process on a free loopback port (its loops live until the test ends).
fn starling() -> SocketAddr {
    let server = start(BrokerConfig {
        listeners: vec![ListenerSettings {
            protocol: ListenerProtocol::Tcp,
            bind: "127.0.0.1:0".parse().expect("address"),
            max_connections: 0,
            access: AccessSettings::default(),
            proxy_protocol: false,
        }],
        max_connections_per_ip: 0,
        event_loops: 2,
        core: CoreConfig::default(),
    })
    .expect("the broker starts");
    let addr = server.local_addrs[0];
    std::thread::spawn(move || server.wait());
    addr
}

/// A directory of certificates made by `openssl`, removed when dropped.
struct Certs(PathBuf);

impl Certs {
    /// A CA, a server certificate (localhost, 127.0.0.1) and a client certificate, all
    /// ECDSA P-256; `None` (with a note) when `openssl` cannot be run.
    fn make(name: &str) -> Option<Certs> {
        let dir = std::env::temp_dir().join(format!(
            "starling-loadtest-tls-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let certs = Certs(dir);
        let script = r#"set -e
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days 1 -subj "/CN=test CA" -out ca.crt \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
for who in server client; do
    openssl ecparam -name prime256v1 -genkey -noout -out $who.key
    openssl req -new -key $who.key -subj "/CN=$who" -out $who.csr
done
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
printf 'extendedKeyUsage=clientAuth\n' >client.ext
for who in server client; do
    openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
        -sha256 -extfile $who.ext -out $who.crt
done"#;
        let made = Command::new("sh")
            .args(["-c", script])
            .current_dir(&certs.0)
            .output();
        match made {
            Ok(out) if out.status.success() => Some(certs),
            Ok(out) => panic!(
                "openssl failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => {
                eprintln!("skipped: cannot run openssl to make certificates ({e})");
                None
            }
        }
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server's configuration: its certificate, and the CA its clients' certificates must
/// come from when `client_auth`.
fn server_config(certs: &Certs, client_auth: bool) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let read = |file: &str| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(Path::new(&certs.path(file)))
            .expect("PEM file")
            .collect::<Result<_, _>>()
            .expect("certificates")
    };
    let key = PrivateKeyDer::from_pem_file(certs.path("server.key")).expect("server key");
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = if client_auth {
        let mut roots = RootCertStore::empty();
        for cert in read("ca.crt") {
            roots.add(cert).expect("CA");
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(
        builder
            .with_single_cert(read("server.crt"), key)
            .expect("server certificate"),
    )
}

/// Handshakes the front completed, by kind.
#[derive(Default)]
struct Counts {
    full: AtomicU64,
    resumed: AtomicU64,
}

/// A TLS front on a free loopback port for the plain broker at `upstream`: every
/// connection's plaintext goes to a connection of its own to `upstream`, and back. One
/// thread, non-blocking sockets.
fn tls_front(upstream: SocketAddr, config: Arc<ServerConfig>) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("address");
    let counts = Arc::new(Counts::default());
    let seen = Arc::clone(&counts);
    std::thread::spawn(move || {
        let mut pairs: Vec<Pair> = Vec::new();
        let mut buf = vec![0u8; FRONT_BUFFER_BYTES];
        loop {
            let mut busy = false;
            while let Ok((down, _)) = listener.accept() {
                if let Some(pair) = Pair::new(down, upstream, &config) {
                    pairs.push(pair);
                }
                busy = true;
            }
            for pair in &mut pairs {
                busy |= pair.pump(&mut buf, &seen);
            }
            pairs.retain(|p| p.open);
            if !busy {
                std::thread::sleep(FRONT_IDLE_SLEEP);
            }
        }
    });
    (addr, counts)
}

/// One client's connection through the front.
struct Pair {
    tls: ServerConnection,
    down: TcpStream,
    up: TcpStream,
    to_up: Vec<u8>,
    counted: bool,
    open: bool,
}

impl Pair {
    fn new(down: TcpStream, upstream: SocketAddr, config: &Arc<ServerConfig>) -> Option<Pair> {
        let up = TcpStream::connect(upstream).ok()?;
        for s in [&down, &up] {
            s.set_nonblocking(true).ok()?;
            s.set_nodelay(true).ok()?;
        }
        let mut tls = ServerConnection::new(Arc::clone(config)).ok()?;
        tls.set_buffer_limit(None);
        Some(Pair {
            tls,
            down,
            up,
            to_up: Vec::new(),
            counted: false,
            open: true,
        })
    }

    /// Moves what can move; whether anything did.
    fn pump(&mut self, buf: &mut [u8], counts: &Counts) -> bool {
        let mut busy = false;
        match self.tls.read_tls(&mut self.down) {
            Ok(0) => self.open = false,
            Ok(_) => {
                busy = true;
                if self.tls.process_new_packets().is_err() {
                    let _ = self.tls.write_tls(&mut self.down);
                    self.open = false;
                }
                while let Ok(n) = self.tls.reader().read(buf) {
                    if n == 0 {
                        break;
                    }
                    self.to_up.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.open = false,
        }
        if !self.counted && !self.tls.is_handshaking() {
            self.counted = true;
            let kind = match self.tls.handshake_kind() {
                Some(HandshakeKind::Resumed) => &counts.resumed,
                _ => &counts.full,
            };
            kind.fetch_add(1, Ordering::Relaxed);
        }
        while !self.to_up.is_empty() {
            match self.up.write(&self.to_up) {
                Ok(n) => {
                    self.to_up.drain(..n);
                    busy = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.open = false;
                    break;
                }
            }
        }
        match self.up.read(buf) {
            Ok(0) => {
                self.tls.send_close_notify();
                self.open = false;
            }
            Ok(n) => {
                busy = true;
                self.tls.writer().write_all(&buf[..n]).expect("no limit");
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.open = false,
        }
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.down) {
                Ok(_) => busy = true,
                Err(_) => break,
            }
        }
        busy
    }
}

/// `churn --clients N --cycles 2` through `front` with `flags`.
fn churn(front: SocketAddr, clients: &str, flags: &[&str]) -> Result<Report, RunError> {
    let target = front.to_string();
    let mut argv = vec![
        "churn",
        "--target",
        &target,
        "--clients",
        clients,
        "--cycles",
        "2",
    ];
    argv.extend_from_slice(flags);
    run(&argv)
}

/// (full, resumed) of each churn cycle.
fn kinds(report: &Report) -> Vec<(u64, u64)> {
    report
        .cycles
        .iter()
        .map(|c| {
            let t = c.connects.tls.as_ref().expect("TLS figures");
            (t.full, t.resumed)
        })
        .collect()
}

#[test]
fn resumption_is_counted_alike_by_client_and_server_on_tls_1_3_and_1_2() {
    let Some(certs) = Certs::make("resume") else {
        return;
    };
    let ca = certs.path("ca.crt");
    let broker = starling();
    for (version, resume) in [("1.3", true), ("1.3", false), ("1.2", true)] {
        let (front, counts) = tls_front(broker, server_config(&certs, false));
        let mut flags = vec!["--tls-ca", &ca, "--tls-version", version];
        if resume {
            flags.push("--tls-resume");
        }
        let report = churn(front, "20", &flags).expect("the run completes");
        let cycles = kinds(&report);
        let case = format!("TLS {version}, resume {resume}: {cycles:?}");
        let (full, resumed) = cycles
            .iter()
            .fold((0, 0), |(f, r), (cf, cr)| (f + cf, r + cr));
        assert_eq!(full + resumed, 40, "{case}");
        assert_eq!(counts.full.load(Ordering::Relaxed), full, "{case}");
        assert_eq!(counts.resumed.load(Ordering::Relaxed), resumed, "{case}");
        let tls = report.tls.expect("a TLS summary");
        let first = tls.first.expect("a first connection");
        assert_eq!(first.version, format!("TLS {version}"), "{case}");
        if resume {
            // Every client of the second cycle finds a session from the first.
            assert_eq!(cycles[1], (0, 20), "{case}");
            let store = tls.store.expect("a session store");
            if version == "1.3" {
                assert!(store.tls13_tickets_received >= 20, "{case}: {store:?}");
                assert_eq!(store.tls13_tickets_offered, resumed, "{case}: {store:?}");
                assert_eq!(store.tls12_sessions_offered, 0, "{case}: {store:?}");
            } else {
                assert_eq!(store.tls13_tickets_received, 0, "{case}: {store:?}");
                assert!(store.tls12_sessions_offered >= resumed, "{case}: {store:?}");
            }
        } else {
            assert_eq!(resumed, 0, "{case}");
            assert!(tls.store.is_none(), "{case}");
        }
    }
}

#[test]
fn messages_cross_tls_with_every_delivery_counted_on_the_suite_offered() {
    let Some(certs) = Certs::make("fanin") else {
        return;
    };
    let ca = certs.path("ca.crt");
    let (front, _) = tls_front(starling(), server_config(&certs, false));
    let target = front.to_string();
    for suite in ["TLS13_AES_128_GCM_SHA256", "TLS13_CHACHA20_POLY1305_SHA256"] {
        let report = run(&[
            "fanin",
            "--target",
            &target,
            "--tls-ca",
            &ca,
            "--tls-cipher",
            suite,
            "--publishers",
            "4",
            "--messages",
            "500",
            "--payload-bytes",
            "1000",
            "--duration-secs",
            "10",
            "--drain-deadline-secs",
            "10",
        ])
        .expect("the run completes");
        let m = report.messages.expect("a message phase");
        assert_eq!((m.published, m.tally.unique), (2000, 2000), "{suite}");
        assert_eq!((m.tally.missing, m.tally.duplicates), (0, 0), "{suite}");
        assert_eq!(
            m.drain.map(|d| d.ended),
            Some(DrainEnd::Complete),
            "{suite}"
        );
        let tls = report.tls.expect("a TLS summary");
        assert_eq!(tls.cipher_suites_offered, vec![suite.to_string()]);
        assert_eq!(tls.negotiated.len(), 1, "{:?}", tls.negotiated);
        assert_eq!(tls.negotiated[0].cipher_suite, suite);
    }
}

#[test]
fn a_client_certificate_goes_when_asked_for_and_a_wrong_name_is_refused() {
    let Some(certs) = Certs::make("client-cert") else {
        return;
    };
    let ca = certs.path("ca.crt");
    let (cert, key) = (certs.path("client.crt"), certs.path("client.key"));
    let broker = starling();
    let (front, _) = tls_front(broker, server_config(&certs, true));
    let with_cert = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    let report = churn(front, "5", &with_cert).expect("the run completes");
    assert_eq!(kinds(&report), vec![(5, 0), (5, 0)]);
    assert!(report.tls.expect("a TLS summary").client_certificate);
    let refused = churn(front, "5", &["--tls-ca", &ca]);
    let Err(RunError::TargetDown(why)) = refused else {
        panic!("a client without a certificate must be refused: {refused:?}");
    };
    assert!(why.contains("CertificateRequired"), "{why}");
    let (front, _) = tls_front(broker, server_config(&certs, false));
    let named = churn(
        front,
        "5",
        &["--tls-ca", &ca, "--tls-server-name", "localhost"],
    );
    assert!(named.is_ok(), "{named:?}");
    let wrong = churn(
        front,
        "5",
        &["--tls-ca", &ca, "--tls-server-name", "elsewhere"],
    );
    let Err(RunError::TargetDown(why)) = wrong else {
        panic!("a certificate for another name must be refused: {wrong:?}");
    };
    assert!(why.contains("TLS"), "{why}");
}
