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
//! - [`ws`]: the WebSocket layer (upgrade, frames) over in-memory buffers.
//! - [`stats`]: per-listener numbers for `/metrics`.

pub mod stats;
pub mod tls;
pub mod ws;

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::server::{Acceptor, ServerConnection};
use rustls::{AlertDescription, CertificateError, Error as TlsError};

use crate::config::{ListenerProtocol, ListenerSettings};
use stats::Failure;
use tls::TlsContext;
use ws::{WsError, WsLayer, WsSettings};

/// MQTT output handed to the stack at a time: one TLS record's worth of plaintext.
pub const MQTT_CHUNK_BYTES: usize = 16 * 1024;

/// What a listener puts under MQTT, shared by every loop.
#[derive(Debug, Clone, Default)]
pub struct ListenerTransport {
    /// TLS, for `tls` and `wss`.
    pub tls: Option<Arc<TlsContext>>,
    /// WebSocket, for `ws` and `wss`.
    pub ws: Option<Arc<WsSettings>>,
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
        let ws = settings.transport.websocket.as_ref().map(|w| {
            Arc::new(WsSettings {
                path: w.path.clone(),
                allowed_origins: w.allowed_origins.clone(),
                max_message_bytes: w.max_frame_bytes,
            })
        });
        Ok(ListenerTransport { tls, ws })
    }

    /// Whether connections on this listener need a stack.
    pub fn layered(&self) -> bool {
        self.tls.is_some() || self.ws.is_some()
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
    ws: Option<Box<WsLayer>>,
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
            .field("ws", &self.ws.is_some())
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
        let ws = listener
            .ws
            .as_ref()
            .map(|settings| Box::new(WsLayer::new(Arc::clone(settings))));
        Some(Box::new(Stack {
            tls,
            ws,
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

    /// Whether the TLS handshake resumed a session (a ticket or a session id).
    pub fn resumed(&self) -> bool {
        matches!(&self.tls, Some(TlsState::Connected(conn))
            if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
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

    /// Feeds bytes read from the socket; appends the client's MQTT bytes to `mqtt`
    /// (`between`: a buffer for what TLS decrypts on its way to the WebSocket layer).
    /// Whatever the stack has to answer (handshake messages, alerts, pongs, HTTP errors)
    /// waits in its output.
    pub fn read_wire(
        &mut self,
        wire: &[u8],
        between: &mut Vec<u8>,
        mqtt: &mut Vec<u8>,
    ) -> Result<Progress, TransportError> {
        let was_established = self.established;
        let outcome = self.read_layers(wire, between, mqtt);
        if let Err(TransportError::Failed(..)) = &outcome {
            self.failed = true;
        }
        outcome?;
        Ok(Progress {
            established: self.established && !was_established,
        })
    }

    fn read_layers(
        &mut self,
        wire: &[u8],
        between: &mut Vec<u8>,
        mqtt: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        let tls_done = match &mut self.tls {
            Some(state) => {
                let into = if self.ws.is_some() {
                    between.clear();
                    &mut *between
                } else {
                    &mut *mqtt
                };
                let identity = read_tls(state, wire, into, self.identity_wanted)?;
                if identity.is_some() {
                    self.identity = identity;
                }
                matches!(state, TlsState::Connected(conn) if !conn.is_handshaking())
            }
            None => true,
        };
        if let Some(ws) = &mut self.ws {
            let input = if self.tls.is_some() {
                &between[..]
            } else {
                wire
            };
            let read = ws.read_wire(input, mqtt);
            let upgraded = ws.upgraded();
            self.pump_ws();
            read.map_err(ws_error)?;
            self.established = tls_done && upgraded;
        } else {
            self.established = tls_done;
        }
        Ok(())
    }

    /// Moves what the WebSocket layer has to send into TLS (under `wss`).
    fn pump_ws(&mut self) {
        if let (Some(ws), Some(TlsState::Connected(conn))) = (&mut self.ws, &mut self.tls) {
            let out = ws.wire_out();
            let n = out.len();
            if n > 0 && conn.writer().write_all(out).is_ok() {
                ws.consume_wire_out(n);
            }
        }
    }

    /// Takes MQTT output for the client (call only once established).
    pub fn write_mqtt(&mut self, mqtt: &[u8]) {
        debug_assert!(self.established, "MQTT output before the handshake");
        if let Some(ws) = &mut self.ws {
            // Only fails before the upgrade, which `established` rules out.
            let _ = ws.write_mqtt(mqtt);
            self.pump_ws();
        } else if let Some(TlsState::Connected(conn)) = &mut self.tls {
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
            Some(TlsState::Accepting(..)) => false,
            None => self.ws.as_ref().is_some_and(|ws| !ws.wire_out().is_empty()),
        }
    }

    /// Writes waiting bytes to `socket`; `Ok(0)` when none are left.
    pub fn write_wire(&mut self, socket: &mut dyn Write) -> io::Result<usize> {
        match &mut self.tls {
            Some(TlsState::Connected(conn)) if conn.wants_write() => conn.write_tls(socket),
            Some(TlsState::Refused(alert)) => alert.write(socket),
            Some(_) => Ok(0),
            None => match &mut self.ws {
                Some(ws) if !ws.wire_out().is_empty() => {
                    let n = socket.write(ws.wire_out())?;
                    ws.consume_wire_out(n);
                    Ok(n)
                }
                _ => Ok(0),
            },
        }
    }

    /// Ends the transport in order: a WebSocket close frame (1000), then TLS close_notify.
    pub fn close(&mut self) {
        if let Some(ws) = &mut self.ws
            && ws.upgraded()
        {
            ws.close(WS_CLOSE_NORMAL);
            self.pump_ws();
        }
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

/// The WebSocket close status of a close the broker begins.
const WS_CLOSE_NORMAL: u16 = 1000;

/// What a WebSocket refusal is counted as.
fn ws_error(error: WsError) -> TransportError {
    let failure = match &error {
        WsError::ClosedByClient(_) | WsError::Closed => return TransportError::Closed,
        WsError::ForbiddenOrigin(_) => Failure::ForbiddenOrigin,
        WsError::BadRequest(_)
        | WsError::RequestTooLarge
        | WsError::WrongPath(_)
        | WsError::NoMqttSubprotocol(_) => Failure::BadUpgrade,
        WsError::TextFrame | WsError::FrameTooBig { .. } | WsError::Protocol(_) => {
            Failure::BadFrame
        }
        WsError::NotUpgraded => Failure::Other,
    };
    failed(failure, &error)
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
