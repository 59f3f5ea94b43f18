//! What sits between a socket and the core on TLS and WebSocket listeners: a per-connection
//! [`Stack`] of TLS (rustls) under WebSocket (tungstenite), both sans-IO, so they run
//! inside the loop that owns the connection without a thread of their own.
//!
//! The loop reads the socket into its scratch buffer and feeds the bytes to the stack
//! ([`Stack::read_wire`]), which hands back the client's MQTT bytes for the core. Output
//! goes the other way: the loop gives the stack what the core holds for the connection
//! ([`Stack::write_mqtt`], at most [`MQTT_CHUNK_BYTES`] at a time and only once the stack's
//! own output is written), and writes the stack's bytes to the socket
//! ([`Stack::write_wire`]). So the stack buffers at most about one chunk beyond what the
//! socket refused, and the core's own output limits and congestion rules keep working.
//!
//! A plain TCP connection has no stack (its slot holds an empty `Option`). The stack moves
//! with its socket when a connection is handed over to another loop. Its handshake is
//! bounded by the core's connect timeout, armed at accept: a client that never finishes it
//! sends no CONNECT.
//!
//! - [`tls`]: the listener's rustls configuration, reload, certificate facts.
//! - [`stats`]: per-listener numbers for `/metrics`.

pub mod stats;
pub mod tls;

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::server::{Acceptor, ServerConnection};
use rustls::{AlertDescription, CertificateError, Error as TlsError};

use crate::config::{ListenerProtocol, ListenerSettings};
use stats::Failure;
use tls::TlsContext;

/// MQTT output handed to the stack at a time: one TLS record's worth of plaintext.
pub const MQTT_CHUNK_BYTES: usize = 16 * 1024;

/// What a listener puts under MQTT, shared by every loop.
#[derive(Debug, Clone)]
pub struct ListenerTransport {
    /// TLS, for `tls` and `wss`.
    pub tls: Option<Arc<TlsContext>>,
}

impl ListenerTransport {
    /// Loads the TLS files of `settings` (if it is a TLS listener).
    pub fn load(settings: &ListenerSettings) -> Result<ListenerTransport, tls::TlsError> {
        let tls = match &settings.transport.tls {
            Some(tls) => {
                let alpn: &'static [u8] = match settings.protocol {
                    ListenerProtocol::Wss => b"http/1.1",
                    _ => b"mqtt",
                };
                Some(Arc::new(TlsContext::load(tls, alpn)?))
            }
            None => None,
        };
        Ok(ListenerTransport { tls })
    }

    /// Whether connections on this listener need a stack.
    pub fn layered(&self) -> bool {
        self.tls.is_some()
    }
}

/// Why a stack gave up on its connection.
#[derive(Debug)]
pub enum TransportError {
    /// The client closed the transport in order (TLS close_notify, WebSocket close).
    Closed,
    /// A failure, counted under its reason; the detail is for the log line.
    Failed(Failure, String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Closed => f.write_str("closed by the client"),
            TransportError::Failed(failure, detail) => {
                write!(f, "{} ({detail})", failure.label())
            }
        }
    }
}

/// What one read brought.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The handshake completed during this read: MQTT may flow from now on.
    pub established: bool,
}

/// The TLS side of a stack.
enum TlsState {
    /// Waiting for the whole ClientHello (to choose the configuration by its ALPN offer).
    Accepting(Box<Acceptor>, Arc<TlsContext>),
    /// Handshaking or established.
    Connected(Box<ServerConnection>),
    /// Refused at the ClientHello: only the alert is left to write.
    Refused(Box<rustls::server::AcceptedAlert>),
}

/// One connection's transport layers.
pub struct Stack {
    tls: Option<TlsState>,
    /// When the connection was accepted (for the handshake's duration).
    accepted_at: Instant,
    established: bool,
    /// A handshake or frame was refused (counted under its reason already).
    failed: bool,
    /// Whether the listener takes the client certificate's name as the user name.
    identity_wanted: bool,
    /// That name, once the handshake is done.
    identity: Option<Box<str>>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("tls", &self.tls.is_some())
            .field("established", &self.established)
            .finish()
    }
}

impl Stack {
    /// The layers `listener` needs for a connection accepted now (`None`: plain TCP).
    pub fn new(listener: &ListenerTransport) -> Option<Box<Stack>> {
        if !listener.layered() {
            return None;
        }
        let tls = listener
            .tls
            .as_ref()
            .map(|context| TlsState::Accepting(Box::default(), Arc::clone(context)));
        Some(Box::new(Stack {
            tls,
            accepted_at: Instant::now(),
            established: false,
            failed: false,
            identity_wanted: listener
                .tls
                .as_ref()
                .is_some_and(|t| t.settings().use_identity_as_username),
            identity: None,
        }))
    }

    /// Whether MQTT bytes flow (every handshake is done).
    pub fn established(&self) -> bool {
        self.established
    }

    /// Whether the stack refused its client (a failure already counted).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Microseconds from accept to the end of the handshake (so far).
    pub fn handshake_us(&self) -> u64 {
        u64::try_from(self.accepted_at.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The name in the client's certificate (set once the TLS handshake is done and the
    /// client presented one).
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// Feeds bytes read from the socket; appends the client's MQTT bytes to `mqtt`.
    /// Whatever the stack has to answer (handshake messages, alerts) waits in its output.
    pub fn read_wire(
        &mut self,
        wire: &[u8],
        mqtt: &mut Vec<u8>,
    ) -> Result<Progress, TransportError> {
        let was_established = self.established;
        match &mut self.tls {
            Some(state) => {
                let identity =
                    read_tls(state, wire, mqtt, self.identity_wanted).inspect_err(|e| {
                        self.failed = matches!(e, TransportError::Failed(..));
                    })?;
                if let TlsState::Connected(conn) = state
                    && !conn.is_handshaking()
                    && !self.established
                {
                    self.established = true;
                    self.identity = identity;
                }
            }
            None => mqtt.extend_from_slice(wire),
        }
        Ok(Progress {
            established: self.established && !was_established,
        })
    }

    /// Takes MQTT output for the client (call only once established).
    pub fn write_mqtt(&mut self, mqtt: &[u8]) {
        debug_assert!(self.established, "MQTT output before the handshake");
        if let Some(TlsState::Connected(conn)) = &mut self.tls {
            // Once the handshake is done a write is encrypted at once (no limit applies
            // to sendable TLS), so it takes everything.
            let _ = conn.writer().write_all(mqtt);
        }
    }

    /// Whether bytes wait to be written to the socket.
    pub fn wants_write(&self) -> bool {
        match &self.tls {
            Some(TlsState::Connected(conn)) => conn.wants_write(),
            Some(TlsState::Refused(_)) => true,
            _ => false,
        }
    }

    /// Writes waiting bytes to `socket`; `Ok(0)` when none are left.
    pub fn write_wire(&mut self, socket: &mut dyn Write) -> io::Result<usize> {
        match &mut self.tls {
            Some(TlsState::Connected(conn)) if conn.wants_write() => conn.write_tls(socket),
            Some(TlsState::Refused(alert)) => alert.write(socket),
            _ => Ok(0),
        }
    }

    /// Ends the transport in order: TLS close_notify.
    pub fn close(&mut self) {
        if let Some(TlsState::Connected(conn)) = &mut self.tls {
            conn.send_close_notify();
        }
    }

    /// Every waiting byte, for a socket that lingers outside the pool after its close.
    pub fn take_wire(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Ok(n) = self.write_wire(&mut out) {
            if n == 0 {
                break;
            }
        }
        out
    }
}

/// Feeds `wire` to the TLS side; appends the plaintext to `plain`. Returns the client
/// certificate's name when the handshake completed with one.
fn read_tls(
    state: &mut TlsState,
    mut wire: &[u8],
    plain: &mut Vec<u8>,
    identity_wanted: bool,
) -> Result<Option<Box<str>>, TransportError> {
    while !wire.is_empty() {
        match state {
            TlsState::Accepting(acceptor, context) => {
                acceptor
                    .read_tls(&mut wire)
                    .map_err(|e| failed(Failure::Other, &e))?;
                match acceptor.accept() {
                    Ok(None) => {}
                    Ok(Some(accepted)) => {
                        let config = context.config_for(accepted.client_hello().alpn());
                        match accepted.into_connection(config) {
                            Ok(conn) => *state = TlsState::Connected(Box::new(conn)),
                            Err((error, alert)) => {
                                let failure = classify(&error);
                                *state = TlsState::Refused(Box::new(alert));
                                return Err(failed(failure, &error));
                            }
                        }
                        // What followed the ClientHello is in the connection already.
                        process(state, plain)?;
                    }
                    Err((error, alert)) => {
                        let failure = classify(&error);
                        *state = TlsState::Refused(Box::new(alert));
                        return Err(failed(failure, &error));
                    }
                }
            }
            TlsState::Connected(conn) => {
                conn.read_tls(&mut wire)
                    .map_err(|e| failed(Failure::Other, &e))?;
                process(state, plain)?;
            }
            TlsState::Refused(_) => return Err(failed(Failure::Other, &"after a refusal")),
        }
    }
    Ok(match state {
        TlsState::Connected(conn) if identity_wanted && !conn.is_handshaking() => conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| tls::identity(cert.as_ref())),
        _ => None,
    })
}

/// Processes the records read so far and drains their plaintext into `plain`.
fn process(state: &mut TlsState, plain: &mut Vec<u8>) -> Result<(), TransportError> {
    let TlsState::Connected(conn) = state else {
        return Ok(());
    };
    let io_state = conn.process_new_packets().map_err(|e| {
        let failure = classify(&e);
        failed(failure, &e)
    })?;
    if io_state.plaintext_bytes_to_read() > 0 {
        let before = plain.len();
        plain.reserve(io_state.plaintext_bytes_to_read());
        match conn.reader().read_to_end(plain) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(failed(Failure::Other, &e)),
        }
        debug_assert!(plain.len() >= before);
    }
    if io_state.peer_has_closed() {
        return Err(TransportError::Closed);
    }
    Ok(())
}

fn failed(failure: Failure, detail: &dyn std::fmt::Display) -> TransportError {
    TransportError::Failed(failure, detail.to_string())
}

/// The reason a rustls error is counted under.
fn classify(error: &TlsError) -> Failure {
    match error {
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => Failure::UnknownCa,
        TlsError::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => Failure::CertificateExpired,
        TlsError::InvalidCertificate(_) => Failure::BadCertificate,
        TlsError::NoCertificatesPresented => Failure::NoCertificate,
        TlsError::AlertReceived(AlertDescription::CloseNotify) => Failure::Other,
        TlsError::AlertReceived(_) => Failure::AlertReceived,
        TlsError::InvalidMessage(_)
        | TlsError::InappropriateMessage { .. }
        | TlsError::InappropriateHandshakeMessage { .. }
        | TlsError::PeerIncompatible(_)
        | TlsError::NoApplicationProtocol => Failure::ProtocolMismatch,
        _ => Failure::Other,
    }
}

#[cfg(test)]
mod tests;
