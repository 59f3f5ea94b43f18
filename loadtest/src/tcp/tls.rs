//! TLS for the tcp transport (`--tls-ca`): one rustls client configuration for the run
//! ([`TlsClient`]), the session store every client shares with `--tls-resume`
//! ([`SessionStore`]), and what the report says about the handshakes ([`TlsSeen`],
//! [`TlsConnects`], [`TlsSummary`]).
//!
//! Each client's `rustls::ClientConnection` lives in its [`super::conn::Conn`] and is driven
//! by the worker's mio loop, sans-IO: bytes read from the socket go in through `read_tls`
//! and `process_new_packets`, plaintext comes out of `reader()`, MQTT packets go in through
//! `writer()` and leave through `write_tls`. No thread per connection.
//!
//! Resumption: without `--tls-resume` the configuration has resumption disabled (no session
//! store, no TLS 1.2 session id), so every connect is a full handshake. With it, every
//! client's configuration holds the same [`SessionStore`]: the TLS 1.3 tickets a server sends
//! after each handshake are kept (up to [`TICKETS_KEPT_PER_CLIENT`] per client of the run) and
//! each is offered once, as RFC 8446 §C.4 asks of clients and as a server with single-use
//! tickets requires; TLS 1.2 resumes by session id only (`Tls12Resumption::SessionIdOnly`),
//! so that two brokers are compared on the same mechanism, their session cache. Whether a
//! handshake did resume is rustls's own verdict (`ClientConnection::handshake_kind`), and
//! the store counts what it was given and what it offered, so a server that ignores offered
//! sessions shows as tickets offered without resumed handshakes.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hdrhistogram::Histogram;
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls12Resumption,
    Tls13ClientSessionValue,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, NamedGroup, RootCertStore,
    SupportedProtocolVersion,
};
use serde::Serialize;

use crate::RunError;
use crate::cli::{TlsArgs, TlsVersion};
use crate::report::Latency;

/// TLS 1.3 tickets the shared store keeps per client of the run (OpenSSL and rustls servers
/// send two after a full handshake, one after a resumed one; each is offered once).
pub const TICKETS_KEPT_PER_CLIENT: usize = 2;
/// The fewest TLS 1.3 tickets the shared store keeps (rustls's own cache keeps 8).
const MIN_TICKETS_KEPT: usize = 8;

/// The run's TLS client: configuration, server name and (with `--tls-resume`) the shared
/// session store.
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    store: Option<Arc<SessionStore>>,
    versions_offered: Vec<String>,
    suites_offered: Vec<String>,
    client_certificate: bool,
}

impl TlsClient {
    /// The client `tls` describes, for `clients` clients of a run against `target`.
    pub fn new(tls: &TlsArgs, target: SocketAddr, clients: usize) -> Result<TlsClient, RunError> {
        let usage = |why: String| RunError::Usage(why);
        let ca = tls
            .tls_ca
            .as_deref()
            .ok_or_else(|| usage("TLS needs --tls-ca".into()))?;
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots
                .add(cert)
                .map_err(|e| usage(format!("--tls-ca {}: {e}", ca.display())))?;
        }
        let mut provider = rustls::crypto::ring::default_provider();
        if !tls.tls_cipher.is_empty() {
            let known: Vec<String> = provider
                .cipher_suites
                .iter()
                .map(|s| suite_name(*s))
                .collect();
            if let Some(unknown) = tls.tls_cipher.iter().find(|c| !known.contains(c)) {
                return Err(usage(format!(
                    "--tls-cipher {unknown}: not a suite of the ring provider (one of {})",
                    known.join(", ")
                )));
            }
            provider
                .cipher_suites
                .retain(|s| tls.tls_cipher.contains(&suite_name(*s)));
        }
        let versions: &[&'static SupportedProtocolVersion] = match tls.tls_version {
            None => rustls::DEFAULT_VERSIONS,
            Some(TlsVersion::V12) => &[&rustls::version::TLS12],
            Some(TlsVersion::V13) => &[&rustls::version::TLS13],
        };
        let suites_offered = provider
            .cipher_suites
            .iter()
            .filter(|s| versions.iter().any(|v| v.version == s.version().version))
            .map(|s| suite_name(*s))
            .collect();
        let versions_offered = versions.iter().map(|v| version_name(v.version)).collect();
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .map_err(|e| usage(format!("--tls-version and --tls-cipher: {e}")))?
            .with_root_certificates(roots);
        let mut config = match (&tls.tls_cert, &tls.tls_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    usage(format!("--tls-key {}: no private key: {e}", key.display()))
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| usage(format!("--tls-cert and --tls-key: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        let store = tls.tls_resume.then(|| {
            Arc::new(SessionStore::new(
                clients
                    .saturating_mul(TICKETS_KEPT_PER_CLIENT)
                    .max(MIN_TICKETS_KEPT),
            ))
        });
        config.resumption = match &store {
            Some(store) => Resumption::store(Arc::clone(store) as Arc<dyn ClientSessionStore>)
                .tls12_resumption(Tls12Resumption::SessionIdOnly),
            None => Resumption::disabled(),
        };
        let server_name = match &tls.tls_server_name {
            Some(name) => ServerName::try_from(name.clone())
                .map_err(|e| usage(format!("--tls-server-name {name}: {e}")))?,
            None => ServerName::IpAddress(target.ip().into()),
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
            store,
            versions_offered,
            suites_offered,
            client_certificate: tls.tls_cert.is_some(),
        })
    }

    /// A new client connection (its ClientHello waits to be written).
    pub fn connect(&self) -> Result<ClientConnection, rustls::Error> {
        ClientConnection::new(Arc::clone(&self.config), self.server_name.clone())
    }

    /// What the report says about TLS in this run, given the handshakes `seen`.
    pub fn summary(&self, seen: &TlsSeen) -> TlsSummary {
        TlsSummary {
            server_name: self.server_name.to_str().into_owned(),
            versions_offered: self.versions_offered.clone(),
            cipher_suites_offered: self.suites_offered.clone(),
            resumption: self.store.is_some(),
            client_certificate: self.client_certificate,
            first: seen.first.as_ref().map(|(_, n)| n.clone()),
            negotiated: seen.distinct.clone(),
            store: self.store.as_ref().map(|s| s.counts()),
        }
    }
}

/// Every certificate in the PEM file `path` (at least one).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, RunError> {
    let bad = |why: String| RunError::Usage(format!("{}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(certs)
}

/// A cipher suite's rustls name (e.g. `TLS13_AES_128_GCM_SHA256`).
fn suite_name(suite: rustls::SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

/// A protocol version as people write it (`TLS 1.3`).
fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".into(),
        other => format!("{other:?}"),
    }
}

/// What one connection's handshake settled on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Negotiated {
    /// Protocol version (`TLS 1.3`).
    pub version: String,
    /// Cipher suite, rustls's name (`TLS13_AES_256_GCM_SHA384`).
    pub cipher_suite: String,
    /// Key exchange group (`X25519`); none for a resumed TLS 1.2 session (no key exchange).
    pub key_exchange: Option<String>,
}

impl Negotiated {
    /// What `conn` (its handshake done) negotiated.
    pub fn of(conn: &ClientConnection) -> Negotiated {
        Negotiated {
            version: conn
                .protocol_version()
                .map_or_else(|| "-".into(), version_name),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map_or_else(|| "-".into(), suite_name),
            key_exchange: conn
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name())),
        }
    }

    /// `TLS 1.3 TLS13_AES_256_GCM_SHA384 X25519`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {}",
            self.version,
            self.cipher_suite,
            self.key_exchange.as_deref().unwrap_or("(no key exchange)")
        )
    }
}

/// The handshakes one worker (or, merged, one connect phase) completed.
#[derive(Debug, Clone, Default)]
pub struct TlsSeen {
    /// The earliest completed handshake's time (harness clock, ns) and parameters.
    pub first: Option<(u64, Negotiated)>,
    /// Every distinct set of parameters seen.
    pub distinct: Vec<Negotiated>,
    /// Full handshakes (a HelloRetryRequest's included).
    pub full: u64,
    /// Full handshakes that took a HelloRetryRequest (an extra round trip).
    pub hello_retries: u64,
    /// Resumed handshakes.
    pub resumed: u64,
}

impl TlsSeen {
    /// Counts `conn`'s completed handshake, at `now_ns`.
    pub fn record(&mut self, conn: &ClientConnection, now_ns: u64) {
        match conn.handshake_kind() {
            Some(HandshakeKind::Resumed) => self.resumed += 1,
            Some(HandshakeKind::FullWithHelloRetryRequest) => {
                self.full += 1;
                self.hello_retries += 1;
            }
            Some(HandshakeKind::Full) | None => self.full += 1,
        }
        let negotiated = Negotiated::of(conn);
        if !self.distinct.contains(&negotiated) {
            self.distinct.push(negotiated.clone());
        }
        if self.first.is_none() {
            self.first = Some((now_ns, negotiated));
        }
    }

    /// Adds `other`'s handshakes (the earlier first connection wins).
    pub fn merge(&mut self, other: &TlsSeen) {
        self.full += other.full;
        self.hello_retries += other.hello_retries;
        self.resumed += other.resumed;
        for n in &other.distinct {
            if !self.distinct.contains(n) {
                self.distinct.push(n.clone());
            }
        }
        if let Some((at, n)) = &other.first
            && self.first.as_ref().is_none_or(|(mine, _)| at < mine)
        {
            self.first = Some((*at, n.clone()));
        }
    }
}

/// TLS figures of one connect phase (a `conn` run, or one churn cycle).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsConnects {
    /// Full handshakes.
    pub full: u64,
    /// Of which with a HelloRetryRequest.
    pub hello_retries: u64,
    /// Resumed handshakes.
    pub resumed: u64,
    /// TCP connected → TLS handshake done (as the client sees it: its Finished queued).
    pub handshake_latency: Latency,
}

impl TlsConnects {
    /// The figures of `seen` and `latency` (ns).
    pub fn of(seen: &TlsSeen, latency: &Histogram<u64>) -> TlsConnects {
        TlsConnects {
            full: seen.full,
            hello_retries: seen.hello_retries,
            resumed: seen.resumed,
            handshake_latency: Latency::of(latency),
        }
    }
}

/// The run's TLS: what was offered and what was negotiated.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsSummary {
    /// The name the server's certificate was checked against.
    pub server_name: String,
    /// Protocol versions offered.
    pub versions_offered: Vec<String>,
    /// Cipher suites offered, in preference order.
    pub cipher_suites_offered: Vec<String>,
    /// Whether the clients shared a session store (`--tls-resume`).
    pub resumption: bool,
    /// Whether the clients presented a certificate.
    pub client_certificate: bool,
    /// What the first connection negotiated.
    pub first: Option<Negotiated>,
    /// Every distinct outcome seen (one entry when every connection agreed).
    pub negotiated: Vec<Negotiated>,
    /// The shared session store's counters (with `--tls-resume`).
    pub store: Option<StoreCounts>,
}

/// What the shared session store was given and what it handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    /// TLS 1.3 tickets the servers sent.
    pub tls13_tickets_received: u64,
    /// TLS 1.3 tickets offered in a ClientHello (each once).
    pub tls13_tickets_offered: u64,
    /// TLS 1.3 tickets dropped unused because the store was full.
    pub tls13_tickets_evicted: u64,
    /// TLS 1.2 sessions saved after a handshake.
    pub tls12_sessions_saved: u64,
    /// TLS 1.2 session ids offered in a ClientHello.
    pub tls12_sessions_offered: u64,
}

/// One server's entry in the [`SessionStore`].
#[derive(Default)]
struct ServerEntry {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    /// Oldest first.
    tls13: VecDeque<Tls13ClientSessionValue>,
}

/// The session store every client shares with `--tls-resume`: like rustls's
/// `ClientSessionMemoryCache`, but holding enough TLS 1.3 tickets for every client of the run
/// (rustls's keeps 8 per server, enough for one client reconnecting, not for thousands
/// reconnecting at once), and counting what it was given and what it offered.
pub struct SessionStore {
    tickets_kept: usize,
    servers: Mutex<HashMap<ServerName<'static>, ServerEntry>>,
    tickets_received: AtomicU64,
    tickets_offered: AtomicU64,
    tickets_evicted: AtomicU64,
    tls12_saved: AtomicU64,
    tls12_offered: AtomicU64,
}

impl SessionStore {
    /// A store keeping up to `tickets_kept` TLS 1.3 tickets per server name.
    pub fn new(tickets_kept: usize) -> SessionStore {
        SessionStore {
            tickets_kept: tickets_kept.max(1),
            servers: Mutex::new(HashMap::new()),
            tickets_received: AtomicU64::new(0),
            tickets_offered: AtomicU64::new(0),
            tickets_evicted: AtomicU64::new(0),
            tls12_saved: AtomicU64::new(0),
            tls12_offered: AtomicU64::new(0),
        }
    }

    /// Its counters.
    pub fn counts(&self) -> StoreCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreCounts {
            tls13_tickets_received: get(&self.tickets_received),
            tls13_tickets_offered: get(&self.tickets_offered),
            tls13_tickets_evicted: get(&self.tickets_evicted),
            tls12_sessions_saved: get(&self.tls12_saved),
            tls12_sessions_offered: get(&self.tls12_offered),
        }
    }

    fn servers(&self) -> MutexGuard<'_, HashMap<ServerName<'static>, ServerEntry>> {
        // A worker that panicked holding the lock left the map consistent (every change is
        // one call on it).
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("tickets_kept", &self.tickets_kept)
            .field("counts", &self.counts())
            .finish()
    }
}

impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.servers().entry(server_name).or_default().kx_hint = Some(group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.servers().get(server_name).and_then(|e| e.kx_hint)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.tls12_saved.fetch_add(1, Ordering::Relaxed);
        self.servers().entry(server_name).or_default().tls12 = Some(value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        let value = self
            .servers()
            .get(server_name)
            .and_then(|e| e.tls12.clone());
        if value.is_some() {
            self.tls12_offered.fetch_add(1, Ordering::Relaxed);
        }
        value
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        if let Some(entry) = self.servers().get_mut(server_name) {
            entry.tls12 = None;
        }
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.tickets_received.fetch_add(1, Ordering::Relaxed);
        let mut servers = self.servers();
        let tickets = &mut servers.entry(server_name).or_default().tls13;
        if tickets.len() >= self.tickets_kept {
            tickets.pop_front();
            self.tickets_evicted.fetch_add(1, Ordering::Relaxed);
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        // The newest ticket: the furthest from its expiry.
        let ticket = self
            .servers()
            .get_mut(server_name)
            .and_then(|e| e.tls13.pop_back());
        if ticket.is_some() {
            self.tickets_offered.fetch_add(1, Ordering::Relaxed);
        }
        ticket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_a_usage_error() {
        let args = TlsArgs {
            tls_ca: Some("/nonexistent/ca.crt".into()),
            ..TlsArgs::default()
        };
        let target: SocketAddr = "127.0.0.1:8883".parse().expect("address");
        let Err(RunError::Usage(why)) = TlsClient::new(&args, target, 1) else {
            panic!("a missing CA file must be refused");
        };
        assert!(why.contains("/nonexistent/ca.crt"), "{why}");
    }

    #[test]
    fn an_empty_store_offers_nothing_and_counts_nothing() {
        let store = SessionStore::new(2);
        let name = ServerName::try_from("localhost").expect("name");
        assert!(store.take_tls13_ticket(&name).is_none());
        assert!(store.tls12_session(&name).is_none());
        assert_eq!(store.counts(), StoreCounts::default());
        store.set_kx_hint(name.clone(), NamedGroup::X25519);
        assert_eq!(store.kx_hint(&name), Some(NamedGroup::X25519));
    }
}
