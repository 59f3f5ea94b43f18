//! The TLS side of a [`Stack`] against a real rustls client, all in memory: handshakes
//! (whole and byte by byte, both versions), MQTT bytes both ways, refusals and what they
//! are counted as, the certificate's name, and reloads.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::stats::Failure;
use super::tls::{TlsContext, identity};
use super::{ListenerTransport, Stack, TransportError};
use crate::config::transport::TlsSettings;

/// A CA, a server certificate for `localhost` and its key, as PEM files in a directory of
/// the test's own (removed on drop).
struct Pki {
    dir: PathBuf,
    ca_der: CertificateDer<'static>,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("starling-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Test CA");
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let pki = Pki {
            dir,
            ca_der: issuer.der().clone(),
            issuer,
        };
        pki.write_server("server", "localhost");
        pki
    }

    /// A server certificate `name`.crt / .key for `cn` (SAN localhost).
    fn write_server(&self, name: &str, cn: &str) {
        let (cert, key) = self.sign(cn, vec!["localhost".into()]);
        std::fs::write(self.dir.join(format!("{name}.crt")), cert).expect("write cert");
        std::fs::write(self.dir.join(format!("{name}.key")), key).expect("write key");
    }

    /// A certificate for `cn` (none if empty) and `sans`, signed by the CA: (PEM, key PEM).
    fn sign(&self, cn: &str, sans: Vec<String>) -> (String, String) {
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name = DistinguishedName::new();
        if !cn.is_empty() {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    fn settings(&self) -> TlsSettings {
        TlsSettings {
            cert_file: self.dir.join("server.crt"),
            key_file: self.dir.join("server.key"),
            ca_file: None,
            require_certificate: false,
            use_identity_as_username: false,
        }
    }

    fn listener(&self) -> ListenerTransport {
        let context = TlsContext::load(&self.settings(), b"mqtt").expect("load");
        ListenerTransport {
            tls: Some(Arc::new(context)),
            ws: None,
        }
    }

    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("name");
        ClientConnection::new(Arc::new(config), name).expect("client")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Moves bytes between `client` and `stack` until neither has any to send; `step` bytes at
/// a time towards the stack. Returns the MQTT bytes the stack decoded and how many times it
/// reported the handshake done.
fn pump(
    client: &mut ClientConnection,
    stack: &mut Stack,
    step: usize,
) -> Result<(Vec<u8>, usize), TransportError> {
    let (mut mqtt, mut established) = (Vec::new(), 0);
    for _ in 0..100 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).expect("client write");
        }
        for chunk in to_server.chunks(step.max(1)) {
            if stack
                .read_wire(chunk, &mut Vec::new(), &mut mqtt)?
                .established
            {
                established += 1;
            }
        }
        let to_client = stack.take_wire();
        if to_server.is_empty() && to_client.is_empty() {
            return Ok((mqtt, established));
        }
        let mut rest = &to_client[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).expect("client read");
            client.process_new_packets().expect("client process");
        }
    }
    panic!("the handshake did not settle");
}

fn client_reads(client: &mut ClientConnection, stack: &mut Stack) -> Vec<u8> {
    let wire = stack.take_wire();
    let mut rest = &wire[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        client.read_tls(&mut rest).expect("client read");
        client.process_new_packets().expect("client process");
        // Drained as it comes: the client holds a bounded amount of plaintext.
        let _ = std::io::Read::read_to_end(&mut client.reader(), &mut out);
    }
    out
}

#[test]
fn both_versions_handshake_and_carry_mqtt_both_ways() {
    let pki = Pki::new("versions");
    let listener = pki.listener();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut client = pki.client(&[version]);
        let mut stack = Stack::new(&listener).expect("a TLS listener has a stack");
        let (mqtt, established) = pump(&mut client, &mut stack, usize::MAX).expect("handshake");
        assert!(mqtt.is_empty());
        assert_eq!(established, 1, "reported once");
        assert!(stack.established() && stack.identity().is_none());
        std::io::Write::write_all(&mut client.writer(), b"\x10\x0cCONNECT...").expect("write");
        let (mqtt, _) = pump(&mut client, &mut stack, usize::MAX).expect("data");
        assert_eq!(mqtt, b"\x10\x0cCONNECT...");
        let big = vec![0x30; 40_000];
        stack.write_mqtt(&big);
        assert_eq!(client_reads(&mut client, &mut stack), big);
    }
}

#[test]
fn a_handshake_fed_one_byte_at_a_time_completes() {
    let pki = Pki::new("bytes");
    let listener = pki.listener();
    let mut client = pki.client(&[&rustls::version::TLS13]);
    let mut stack = Stack::new(&listener).expect("stack");
    let (_, established) = pump(&mut client, &mut stack, 1).expect("handshake");
    assert_eq!(established, 1);
}

#[test]
fn bytes_that_are_not_tls_are_a_protocol_mismatch_answered_with_an_alert() {
    let pki = Pki::new("garbage");
    let listener = pki.listener();
    for input in [
        &b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd"[..],
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut stack = Stack::new(&listener).expect("stack");
        let mut mqtt = Vec::new();
        match stack.read_wire(input, &mut Vec::new(), &mut mqtt) {
            Err(TransportError::Failed(Failure::ProtocolMismatch, _)) => {}
            other => panic!("{input:?}: {other:?}"),
        }
        assert!(stack.failed() && mqtt.is_empty());
        let wire = stack.take_wire();
        assert_eq!(wire.first(), Some(&0x15), "a TLS alert record");
    }
}

#[test]
fn data_before_close_notify_is_delivered_then_closed() {
    let pki = Pki::new("close");
    let listener = pki.listener();
    let mut client = pki.client(&[&rustls::version::TLS13]);
    let mut stack = Stack::new(&listener).expect("stack");
    pump(&mut client, &mut stack, usize::MAX).expect("handshake");
    std::io::Write::write_all(&mut client.writer(), b"\xe0\x00").expect("DISCONNECT");
    client.send_close_notify();
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).expect("write");
    }
    let mut mqtt = Vec::new();
    assert!(matches!(
        stack.read_wire(&wire, &mut Vec::new(), &mut mqtt),
        Err(TransportError::Closed)
    ));
    assert_eq!(mqtt, b"\xe0\x00", "the DISCONNECT before the close is kept");
    assert!(!stack.failed());
}

#[test]
fn the_identity_is_the_common_name_else_the_first_name() {
    let pki = Pki::new("identity");
    let (cn, _) = pki.sign("alice", vec!["other.example".into()]);
    let (san, _) = pki.sign("", vec!["device-7.example".into()]);
    let der = |pem: &str| {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM")
    };
    assert_eq!(identity(der(&cn).as_ref()).as_deref(), Some("alice"));
    assert_eq!(
        identity(der(&san).as_ref()).as_deref(),
        Some("device-7.example")
    );
    assert_eq!(identity(b"not a certificate"), None);
}

#[test]
fn a_reload_takes_new_files_and_refuses_broken_ones() {
    let pki = Pki::new("reload");
    let context = TlsContext::load(&pki.settings(), b"mqtt").expect("load");
    assert_eq!(context.certificate().subject, "CN=localhost");
    pki.write_server("server", "renewed");
    assert_eq!(context.reload().expect("reload").subject, "CN=renewed");
    std::fs::write(pki.dir.join("server.key"), "not a key").expect("write");
    assert!(context.reload().is_err());
    assert_eq!(
        context.certificate().subject,
        "CN=renewed",
        "the old files stay"
    );
    let missing = TlsSettings {
        cert_file: pki.dir.join("none.crt"),
        ..pki.settings()
    };
    let error = TlsContext::load(&missing, b"mqtt").expect_err("missing file");
    assert!(error.to_string().contains("none.crt"), "{error}");
}
