//! What an idle TLS connection's transport stack costs on the heap, counted by a counting
//! allocator (bytes requested, before malloc's own overhead): the stacks of connections that
//! did a TLS 1.3 handshake, read a CONNECT and wrote a CONNACK, with their clients gone. The
//! figure is printed (run with `--nocapture`) and bounded, so that a rustls upgrade that
//! keeps more per connection is noticed.

use std::io::Write;
use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use starling::config::transport::TlsSettings;
use starling::server::transport::tls::TlsContext;
use starling::server::transport::{ListenerTransport, Stack};
use starling_alloc_count::{Counting, snapshot};

mod tempdir_common;
use tempdir_common::TempDir;

#[global_allocator]
static GLOBAL: Counting = Counting;

const STACKS: usize = 200;
/// The most heap bytes an idle TLS stack may hold (measured: 7 467 with rustls 0.23.46 and
/// ring; rustls keeps a 4 KiB receive buffer for good, its connection state and the record
/// keys of both directions).
const MAX_IDLE_TLS_STACK_BYTES: isize = 10 * 1024;

/// A self-signed certificate for localhost, as PEM files in a directory of the test's own.
fn certificate() -> (TempDir, rcgen::Certificate) {
    let dir = TempDir::new("tls-memory");
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::write(dir.join("server.crt"), cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
    (dir, cert)
}

/// A client and a server stack, handshaken; the client has sent `mqtt` and read the answer.
fn connected(listener: &ListenerTransport, config: &Arc<ClientConfig>) -> Stack {
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(Arc::clone(config), name).expect("client");
    let mut stack = *Stack::new(listener).expect("a TLS stack");
    client
        .writer()
        .write_all(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd")
        .expect("CONNECT");
    let (mut between, mut mqtt) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client write");
        }
        stack
            .read_wire(&wire, &mut between, &mut mqtt)
            .expect("handshake");
        if stack.established() && mqtt.len() == 18 {
            stack.write_mqtt(b"\x20\x02\x00\x00");
        }
        let back = stack.take_wire();
        let mut rest = &back[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).expect("client read");
            client.process_new_packets().expect("client process");
        }
    }
    assert!(stack.established() && mqtt.len() == 18, "connected");
    stack
}

#[test]
fn an_idle_tls_stack_holds_a_few_kilobytes() {
    let (dir, cert) = certificate();
    let settings = TlsSettings {
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
        ca_file: None,
        require_certificate: false,
        use_identity_as_username: false,
    };
    let listener = ListenerTransport {
        tls: Some(Arc::new(
            TlsContext::load(&settings, b"mqtt").expect("load"),
        )),
        ws: None,
    };
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    // One connection first: lazily built state (the ticketer's, the provider's) is not
    // any connection's.
    drop(connected(&listener, &config));
    let mut stacks = Vec::with_capacity(STACKS);
    let start = snapshot().live_bytes;
    for _ in 0..STACKS {
        stacks.push(connected(&listener, &config));
    }
    let per_stack = (snapshot().live_bytes - start) / STACKS as isize;
    println!(
        "an idle TLS 1.3 stack: {per_stack} heap bytes, {} inline",
        std::mem::size_of::<Stack>()
    );
    assert!(
        (1..=MAX_IDLE_TLS_STACK_BYTES).contains(&per_stack),
        "{per_stack} bytes per idle TLS stack"
    );
}
