//! MQTT over WebSocket (RFC 6455, as MQTT 3.1.1 and 5.0 use it in their chapter 6): a
//! sans-IO layer between the bytes of a connection (after TLS, if any) and the MQTT bytes
//! the core reads and writes.
//!
//! A [`WsLayer`] first reads the HTTP upgrade request ([`upgrade`]): an HTTP/1.1 `GET` of
//! the listener's path with the WebSocket headers, from an allowed origin, offering the
//! `mqtt` subprotocol (or the older `mqttv3.1`, or none). It answers 101 Switching
//! Protocols, or an HTTP error (400, 403, 404, 431) after which the connection is closed.
//! From then on the payloads of the client's binary messages are the MQTT input, one
//! stream (a packet may span messages, a message may hold several packets: the core
//! reassembles packets), and each write of MQTT output goes out as one binary message. A
//! text message closes the connection with status 1003 (MQTT-6.0.0-1); unmasked client
//! frames and other protocol errors with 1002; a frame or message over
//! [`WsSettings::max_message_bytes`] with 1009. Pings are answered with pongs, a close from
//! the client with a close reply.
//!
//! The framing and the handshake are tungstenite's, run over an in-memory stream
//! (`stream::Mem`): the driver feeds the layer what it read ([`WsLayer::read_wire`]) and
//! sends what it has for the client ([`WsLayer::wire_out`]). Where this departs from the
//! library's plain use, it is for memory, and with tungstenite's own code:
//!
//! - The upgrade request is gathered here and handed to tungstenite whole ([`upgrade`]).
//! - tungstenite is only given whole frames (`stream`): a partial frame holds the bytes
//!   that came, not the length its header announces.
//! - Whenever tungstenite holds no partial message after a read, it is dropped and only
//!   its stream is kept ("resting"), to be built again at the next read: its read buffer
//!   keeps the capacity of the largest frame it ever read, and its state takes 360 bytes
//!   with the stream's. An idle upgraded layer holds no heap memory at all
//!   ([`WsLayer::heap_bytes`]); the layer itself is 104 bytes.
//!   A read of more than [`SMALL_READ_BYTES`] builds it with a read buffer the size of the
//!   read, up to [`MAX_READ_CHUNK_BYTES`] (an empty one reads 14 bytes at a time).
//! - MQTT output is framed with tungstenite's `FrameHeader::format` straight into the
//!   stream's output rather than through `WebSocket::send`, whose write buffer would keep
//!   the capacity of the largest message ever sent and copy every message once more.

mod error;
mod stream;
#[cfg(test)]
mod tests;
pub mod upgrade;

use std::sync::Arc;

use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, FrameHeader, Utf8Bytes};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::core::config::DEFAULT_MAX_PACKET_SIZE_BYTES;
pub use error::WsError;
use stream::{Mem, Wire};
use upgrade::Gathered;
pub use upgrade::{MAX_UPGRADE_HEADERS, MAX_UPGRADE_REQUEST_BYTES};

/// The request path accepted for the upgrade by default, and the room a message may have
/// above the broker's largest packet (a client may send a small packet, a PUBACK, in the
/// same message as a largest one): the configuration's.
pub use crate::config::transport::{
    DEFAULT_WS_PATH, WS_FRAME_SLACK_BYTES as WS_MESSAGE_SLACK_BYTES,
};

/// The default [`WsSettings::max_message_bytes`]: the default largest MQTT packet
/// (`DEFAULT_MAX_PACKET_SIZE_BYTES`, 256 KiB) plus [`WS_MESSAGE_SLACK_BYTES`]. MQTT over
/// WebSocket clients send each packet as a message of its own, so a lower limit would
/// refuse packets the broker accepts over TCP.
pub const DEFAULT_WS_MAX_MESSAGE_BYTES: usize =
    DEFAULT_MAX_PACKET_SIZE_BYTES + WS_MESSAGE_SLACK_BYTES;

/// The largest read buffer tungstenite is built with for one read, in bytes: a read of
/// more is taken in pieces of this size.
pub const MAX_READ_CHUNK_BYTES: usize = 16 * 1024;

/// A read of up to this many bytes builds tungstenite with no read buffer: it then reads
/// 14 bytes at a time, which for a few small frames costs less than allocating a buffer.
pub const SMALL_READ_BYTES: usize = 64;

/// The most bytes tungstenite keeps of a control frame it sent (a pong, a close): 2 bytes
/// of header and 125 of payload.
const MAX_CONTROL_FRAME_BYTES: usize = 127;

/// The largest message for a listener whose largest MQTT packet is `max_packet_size_bytes`.
pub fn max_message_bytes_for(max_packet_size_bytes: usize) -> usize {
    max_packet_size_bytes.saturating_add(WS_MESSAGE_SLACK_BYTES)
}

/// Settings shared by every connection of one WebSocket listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// The request path accepted for the upgrade (default [`DEFAULT_WS_PATH`]); a query
    /// string after it is fine.
    pub path: String,
    /// The origins allowed: exact matches of the `Origin` header (e.g.
    /// `https://app.example.com`). Empty: any. A request without `Origin` is accepted
    /// either way: browsers always send it, and it guards against a page of another site
    /// opening a connection in the user's name; a client that is not a browser could send
    /// any origin it likes, so refusing the ones that send none would protect nothing.
    pub allowed_origins: Vec<String>,
    /// The largest payload of a frame, and of a message (a fragmented message's frames
    /// together), in bytes. It must not be below the listener's largest MQTT packet:
    /// [`max_message_bytes_for`].
    pub max_message_bytes: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            path: DEFAULT_WS_PATH.to_owned(),
            allowed_origins: Vec::new(),
            max_message_bytes: DEFAULT_WS_MAX_MESSAGE_BYTES,
        }
    }
}

/// tungstenite's configuration for a listener's connections, with a read buffer of
/// `read_buffer_bytes` (allocated when it is built; 0 allocates nothing).
fn config(settings: &WsSettings, read_buffer_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer_bytes)
        // Nothing waits in tungstenite: the pongs and closes it writes go straight to the
        // in-memory output, which takes them whole (MQTT output does not pass through it).
        .write_buffer_size(0)
        .max_frame_size(Some(settings.max_message_bytes))
        .max_message_size(Some(settings.max_message_bytes))
        // RFC 6455: a server must close the connection on an unmasked client frame.
        .accept_unmasked_frames(false)
}

/// The header of a whole binary message from the broker (unmasked).
fn binary_header() -> FrameHeader {
    FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Data(Data::Binary),
        mask: None,
    }
}

/// One connection's WebSocket layer (see the module documentation).
#[derive(Debug)]
pub struct WsLayer {
    settings: Arc<WsSettings>,
    state: State,
}

/// Where a connection is.
#[derive(Debug)]
enum State {
    /// Reading the upgrade request: its bytes so far.
    Upgrading(Vec<u8>),
    /// Upgraded, tungstenite at rest: it holds nothing, so only its stream is kept.
    Resting(Mem),
    /// Upgraded, tungstenite holding a partial message or the broker's close.
    Active(Box<Active>),
    /// Closed: only output is left to send.
    Ended(Wire),
}

/// tungstenite at work.
#[derive(Debug)]
struct Active {
    /// tungstenite over the in-memory stream.
    ws: WebSocket<Mem>,
    /// The read buffer it was built with, in bytes.
    read_buffer_bytes: usize,
}

impl WsLayer {
    /// A layer for a newly accepted connection, waiting for its upgrade request.
    pub fn new(settings: Arc<WsSettings>) -> WsLayer {
        WsLayer {
            settings,
            state: State::Upgrading(Vec::new()),
        }
    }

    /// Feeds bytes from the client (after TLS, if any). The MQTT bytes carried by binary
    /// messages are appended to `mqtt`; the upgrade response, pongs and close replies are
    /// queued for the client ([`WsLayer::wire_out`]).
    ///
    /// `Err`: the connection must be closed, once the output is sent. Whatever the client
    /// is told first (an HTTP error, a close frame with a status) is already queued.
    pub fn read_wire(&mut self, wire: &[u8], mqtt: &mut Vec<u8>) -> Result<(), WsError> {
        let result = match &mut self.state {
            State::Upgrading(request) => match upgrade::gather(request, wire) {
                Gathered::More => return Ok(()),
                Gathered::Refused(error) => Err(error),
                Gathered::Whole { end, taken } => {
                    let buffered = std::mem::take(request);
                    upgrade::accept(buffered, end, &self.settings).and_then(|ws| {
                        self.state = State::Resting(ws.into_inner());
                        // The rest of the read, and what came with the request.
                        self.read_frames(wire.get(taken..).unwrap_or_default(), mqtt)
                    })
                }
            },
            State::Resting(_) | State::Active(_) => self.read_frames(wire, mqtt),
            State::Ended(_) => return Err(WsError::Closed),
        };
        if let Err(error) = &result {
            self.end(error);
        }
        result
    }

    /// Whether the upgrade is done and the connection open for output: MQTT bytes may be
    /// written ([`WsLayer::write_mqtt`]). False before the upgrade, after the broker's
    /// close frame and once the layer has ended.
    pub fn upgraded(&self) -> bool {
        match &self.state {
            State::Resting(_) => true,
            State::Active(active) => active.ws.can_write(),
            State::Upgrading(_) | State::Ended(_) => false,
        }
    }

    /// Frames MQTT output as one binary message. Only once [`WsLayer::upgraded`].
    pub fn write_mqtt(&mut self, mqtt: &[u8]) -> Result<(), WsError> {
        // Invariant: tungstenite has nothing waiting to be written (its write buffer is
        // never held back and the stream takes every write), so this frame follows
        // whatever it wrote last, whole.
        let out = match &mut self.state {
            State::Resting(stream) => &mut stream.output.bytes,
            State::Active(active) if active.ws.can_write() => &mut active.ws.get_mut().output.bytes,
            State::Upgrading(_) => {
                debug_assert!(false, "MQTT output before the WebSocket upgrade");
                return Err(WsError::NotUpgraded);
            }
            State::Active(_) | State::Ended(_) => return Err(WsError::Closed),
        };
        if mqtt.is_empty() {
            return Ok(());
        }
        let header = binary_header();
        let payload_bytes = mqtt.len() as u64;
        out.reserve(header.len(payload_bytes) + mqtt.len());
        header
            .format(payload_bytes, out)
            .map_err(|e| WsError::Protocol(e.to_string()))?;
        out.extend_from_slice(mqtt);
        Ok(())
    }

    /// The bytes to send to the client.
    pub fn wire_out(&self) -> &[u8] {
        match &self.state {
            State::Upgrading(_) => &[],
            State::Resting(stream) => stream.output.pending(),
            State::Active(active) => active.ws.get_ref().output.pending(),
            State::Ended(wire) => wire.pending(),
        }
    }

    /// `n` bytes of [`WsLayer::wire_out`] were sent.
    pub fn consume_wire_out(&mut self, n: usize) {
        match &mut self.state {
            State::Upgrading(_) => {}
            State::Resting(stream) => stream.output.consume(n),
            State::Active(active) => active.ws.get_mut().output.consume(n),
            State::Ended(wire) => wire.consume(n),
        }
    }

    /// Queues a close frame with status `code` (1000 when the broker closes the
    /// connection, 1001 at shutdown), once; nothing before the upgrade. The connection
    /// still reads until the client answers ([`WsError::Closed`]); MQTT output is refused.
    pub fn close(&mut self, code: u16) {
        let code = CloseCode::from(code);
        debug_assert!(code.is_allowed(), "{code} may not be sent");
        if let Some(active) = self.activate(0) {
            active.close(code);
        }
    }

    /// Heap bytes this layer holds now, for memory accounting: exact for what is buffered
    /// here (the upgrade request, input, output) and for tungstenite's state, estimated
    /// for tungstenite's buffers; none for tungstenite while it rests.
    pub fn heap_bytes(&self) -> usize {
        match &self.state {
            State::Upgrading(request) => request.capacity(),
            State::Resting(stream) => stream.heap_bytes(),
            State::Active(active) => active.heap_bytes(),
            State::Ended(wire) => wire.capacity(),
        }
    }

    /// Feeds one read to an upgraded connection and reads every message it completes
    /// (see [`WsLayer::read_wire`]); tungstenite is put to rest after, if it may.
    fn read_frames(&mut self, wire: &[u8], mqtt: &mut Vec<u8>) -> Result<(), WsError> {
        let max_frame_bytes = self.settings.max_message_bytes;
        let read_buffer_bytes = match &mut self.state {
            State::Resting(stream) => {
                stream.input.push(wire, max_frame_bytes);
                match stream.input.readable_bytes() {
                    0 => return Ok(()), // A frame still incomplete, or nothing.
                    small if small <= SMALL_READ_BYTES => 0,
                    readable => readable.min(MAX_READ_CHUNK_BYTES),
                }
            }
            State::Active(active) => {
                active.ws.get_mut().input.push(wire, max_frame_bytes);
                active.read_buffer_bytes
            }
            State::Upgrading(_) | State::Ended(_) => return Err(WsError::Closed),
        };
        let Some(active) = self.activate(read_buffer_bytes) else {
            return Err(WsError::Closed);
        };
        active.read(mqtt)?;
        self.rest();
        Ok(())
    }

    /// tungstenite at work, built with a read buffer of `read_buffer_bytes` if it was
    /// resting; `None` before the upgrade and after the end.
    fn activate(&mut self, read_buffer_bytes: usize) -> Option<&mut Active> {
        if let State::Resting(stream) = &mut self.state {
            let stream = std::mem::take(stream);
            let config = config(&self.settings, read_buffer_bytes);
            self.state = State::Active(Box::new(Active {
                ws: WebSocket::from_raw_socket(stream, Role::Server, Some(config)),
                read_buffer_bytes,
            }));
        }
        match &mut self.state {
            State::Active(active) => Some(active),
            _ => None,
        }
    }

    /// Puts tungstenite to rest if it holds nothing: it is dropped, which frees its
    /// buffers (its read buffer keeps the capacity of the largest frame it read), and only
    /// the stream is kept.
    ///
    /// Invariant: "holds nothing" is `Active::may_rest` after a read that ran the stream
    /// dry. It was given whole frames only (`stream`), so it holds no partial frame; no
    /// partial message and no close of the broker's (`may_rest`); no pong or close reply
    /// to write (its read writes those before reading on, and the stream takes every
    /// write).
    fn rest(&mut self) {
        if let State::Active(active) = &mut self.state
            && active.may_rest()
        {
            let mut stream = std::mem::take(active.ws.get_mut());
            stream.input.new_build();
            self.state = State::Resting(stream);
        }
    }

    /// Ends the layer for `error`: tells the client why, frees everything but the output.
    fn end(&mut self, error: &WsError) {
        if let (Some(code), Some(active)) = (error.close_code(), self.activate(0)) {
            active.close(code);
        }
        let wire = match &mut self.state {
            State::Upgrading(_) => Wire::from_bytes(upgrade::refusal_response(error)),
            State::Resting(stream) => std::mem::take(&mut stream.output),
            State::Active(active) => std::mem::take(&mut active.ws.get_mut().output),
            State::Ended(_) => return,
        };
        self.state = State::Ended(wire);
    }
}

impl Active {
    /// Reads every message the released input completes, until the stream runs dry.
    fn read(&mut self, mqtt: &mut Vec<u8>) -> Result<(), WsError> {
        let closing = !self.ws.can_write();
        loop {
            match self.ws.read() {
                Ok(Message::Binary(payload)) => mqtt.extend_from_slice(&payload),
                Ok(Message::Text(_)) => return Err(WsError::TextFrame),
                Ok(Message::Close(frame)) => {
                    // Writes the close reply, if the close was the client's.
                    let _ = self.ws.flush();
                    return Err(if closing {
                        WsError::Closed
                    } else {
                        WsError::ClosedByClient(frame.map(|f| u16::from(f.code)))
                    });
                }
                // tungstenite queued the pong; its next read writes it.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.ws.get_mut().input.compact();
                    return Ok(());
                }
                Err(error) => return Err(WsError::from_read(error)),
            }
        }
    }

    /// Queues a close frame with `code`, once: tungstenite queues it only while the
    /// connection is open, and cannot fail on a stream that takes every write.
    fn close(&mut self, code: CloseCode) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::default(),
        };
        let _ = self.ws.close(Some(frame));
    }

    /// Whether tungstenite may rest: it holds no partial message and the connection is
    /// open both ways (a new one would start open, forgetting the broker's close).
    fn may_rest(&self) -> bool {
        self.ws.can_write() && !self.ws.get_ref().input.in_message()
    }

    /// Heap bytes: this, the stream's buffers, and an estimate of tungstenite's: its read
    /// buffer, the largest frame it read since it was built (its read buffer grows to
    /// hold a frame whole), the partial message, a control frame it wrote.
    fn heap_bytes(&self) -> usize {
        let stream = self.ws.get_ref();
        std::mem::size_of::<Active>()
            + stream.heap_bytes()
            + self.read_buffer_bytes
            + stream.input.largest_frame_bytes()
            + stream.input.message_bytes()
            + MAX_CONTROL_FRAME_BYTES
    }
}
