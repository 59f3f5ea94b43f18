//! The harness's TLS clients against an in-process Starling's own TLS listener: full and
//! resumed handshakes are counted alike by both ends (the broker's per-listener numbers),
//! with and without a shared session store and on TLS 1.2 (session ids) as on TLS 1.3
//! (tickets); messages cross TLS with every delivery counted; the negotiated suite is the one
//! offered; a client certificate is presented when asked for and a wrong server name is
//! refused.
//!
//! The certificates are made at run time with the `openssl` command (an ECDSA P-256 CA,
//! a server certificate for localhost and 127.0.0.1, a client certificate). Loopback only,
//! seconds each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use starling::config::access::AccessSettings;
use starling::config::transport::{TlsSettings, TransportSettings};
use starling::config::{ListenerProtocol, ListenerSettings};
use starling::core::CoreConfig;
use starling::monitor::Probe;
use starling_loadtest::RunError;
use starling_loadtest::cli::Args;
use starling_loadtest::drain::DrainEnd;
use starling_loadtest::report::Report;

mod common;

fn run(argv: &[&str]) -> Result<Report, RunError> {
    let mut full = vec!["starling-loadtest"];
    full.extend_from_slice(argv);
    starling_loadtest::run(&Args::parse_from(full))
}

/// Starling in this process with one TLS listener on a free loopback port (client
/// certificates required when `client_auth`); its loops live until the test ends.
fn starling_tls(certs: &Certs, client_auth: bool) -> (SocketAddr, Probe) {
    let tls = TlsSettings {
        cert_file: certs.0.join("server.crt"),
        key_file: certs.0.join("server.key"),
        ca_file: client_auth.then(|| certs.0.join("ca.crt")),
        require_certificate: client_auth,
        use_identity_as_username: false,
    };
    let listener = ListenerSettings {
        protocol: ListenerProtocol::Tls,
        bind: "127.0.0.1:0".parse().expect("address"),
        max_connections: 0,
        access: AccessSettings::default(),
        proxy_protocol: false,
        transport: TransportSettings {
            tls: Some(tls),
            websocket: None,
        },
    };
    common::start_broker(listener, 2, CoreConfig::default(), Default::default())
}

fn broker_kinds(probe: &Probe) -> (u64, u64) {
    let snapshot = probe.snapshot();
    let counts = &snapshot.listeners[0].2;
    (counts.handshakes - counts.resumed, counts.resumed)
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
            Err(e) => panic!(
                "cannot run openssl to make certificates (scripts/setup.sh installs it): {e}"
            ),
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

/// `churn --clients N --cycles 2` against `front` with `flags`.
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
    for (version, resume) in [("1.3", true), ("1.3", false), ("1.2", true)] {
        let (front, probe) = starling_tls(&certs, false);
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
        assert_eq!(broker_kinds(&probe), (full, resumed), "{case}");
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
    let (front, _) = starling_tls(&certs, false);
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
    let (front, _) = starling_tls(&certs, true);
    let with_cert = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    let report = churn(front, "5", &with_cert).expect("the run completes");
    assert_eq!(kinds(&report), vec![(5, 0), (5, 0)]);
    assert!(report.tls.expect("a TLS summary").client_certificate);
    let refused = churn(front, "5", &["--tls-ca", &ca]);
    let Err(RunError::TargetDown(why)) = refused else {
        panic!("a client without a certificate must be refused: {refused:?}");
    };
    assert!(why.contains("CertificateRequired"), "{why}");
    let (front, _) = starling_tls(&certs, false);
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
