//! The WebSocket layer against tungstenite's client side (over the same kind of in-memory
//! stream) and, where a client cannot send the bad thing, hand-built frames.
//!
//! - [`upgrade`]: the HTTP upgrade, accepted and refused.
//! - [`frames`]: messages both ways, pings, closes, protocol errors, limits, memory.
//! - [`props`]: random streams cut at random, and arbitrary input.

mod frames;
mod props;
mod upgrade;

use std::io::{self, Read, Write};
use std::sync::Arc;

use tungstenite::ClientRequestBuilder;
use tungstenite::handshake::HandshakeError;
use tungstenite::handshake::client::Response;
use tungstenite::http::Uri;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};
use tungstenite::{Message, WebSocket};

use super::*;

/// An MQTT 3.1.1 CONNECT (client id "abcd", keep-alive 60).
const CONNECT: &[u8] = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd";
/// An MQTT PINGREQ.
const PINGREQ: &[u8] = b"\xc0\x00";
/// A `Sec-WebSocket-Key` (RFC 6455's example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The most an idle upgraded layer may take inline (measured: 104 bytes; none on the
/// heap).
const IDLE_MAX_BYTES: usize = 112;

/// The client's end of the connection.
#[derive(Debug, Default)]
struct Pipe {
    /// What the layer sent, read up to `read`.
    from_server: Vec<u8>,
    read: usize,
    /// What the client wrote, not yet fed to the layer.
    to_server: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.from_server.get(self.read..).unwrap_or_default();
        if rest.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.to_server.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Client = WebSocket<Pipe>;

fn layer_with(settings: WsSettings) -> WsLayer {
    WsLayer::new(Arc::new(settings))
}

fn layer() -> WsLayer {
    layer_with(WsSettings::default())
}

/// Everything the layer has for the client, taken.
fn take_out(layer: &mut WsLayer) -> Vec<u8> {
    let out = layer.wire_out().to_vec();
    layer.consume_wire_out(out.len());
    out
}

/// Feeds the client's bytes to the layer and hands the layer's output to the client.
fn pump(pipe: &mut Pipe, layer: &mut WsLayer) -> (Result<(), WsError>, Vec<u8>) {
    let to_server = std::mem::take(&mut pipe.to_server);
    let mut mqtt = Vec::new();
    let result = layer.read_wire(&to_server, &mut mqtt);
    pipe.from_server.extend(take_out(layer));
    (result, mqtt)
}

fn request(path: &str, protocols: &[&str]) -> ClientRequestBuilder {
    let uri: Uri = format!("ws://broker.example{path}")
        .parse()
        .expect("a valid URI");
    protocols
        .iter()
        .fold(ClientRequestBuilder::new(uri), |request, p| {
            request.with_sub_protocol(*p)
        })
}

/// How a client's handshake went: its socket and the response, or the status it was
/// refused with and the layer's error.
type Handshake = Result<(Client, Response), (Option<u16>, Option<WsError>)>;

/// Runs tungstenite's client handshake against `layer`.
fn connect(layer: &mut WsLayer, request: ClientRequestBuilder) -> Handshake {
    let mut attempt = tungstenite::client::client_with_config(request, Pipe::default(), None);
    let mut refusal = None;
    for _ in 0..4 {
        match attempt {
            Ok(done) => return Ok(done),
            Err(HandshakeError::Interrupted(mut mid)) => {
                let (result, mqtt) = pump(mid.get_mut().get_mut(), layer);
                assert!(mqtt.is_empty());
                refusal = result.err();
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                return Err((Some(response.status().as_u16()), refusal));
            }
            Err(HandshakeError::Failure(_)) => return Err((None, refusal)),
        }
    }
    panic!("the handshake did not end");
}

/// An upgraded layer and its client (subprotocol `mqtt`).
fn open() -> (WsLayer, Client) {
    let mut layer = layer();
    let (client, _) = connect(&mut layer, request("/mqtt", &["mqtt"])).expect("upgraded");
    assert!(layer.upgraded());
    (layer, client)
}

fn subprotocol_of(response: &Response) -> Option<&str> {
    response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
}

/// The client sends `messages`; the layer reads them all.
fn send(client: &mut Client, layer: &mut WsLayer, messages: Vec<Message>) -> Vec<u8> {
    for message in messages {
        client.write(message).expect("written");
    }
    client.flush().expect("flushed");
    let (result, mqtt) = pump(client.get_mut(), layer);
    assert_eq!(result, Ok(()));
    mqtt
}

fn binary(bytes: &[u8]) -> Message {
    Message::Binary(bytes.to_vec().into())
}

/// A frame as a client writes it (masked), from tungstenite's encoder; `masked: false` for
/// what a client must not send.
fn client_frame(opcode: OpCode, is_final: bool, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut frame = match opcode {
        OpCode::Data(_) => Frame::message(payload.to_vec(), opcode, is_final),
        OpCode::Control(_) => Frame::ping(payload.to_vec()),
    };
    frame.header_mut().opcode = opcode;
    frame.header_mut().is_final = is_final;
    frame.header_mut().mask = masked.then_some([0x37, 0xfa, 0x21, 0x3d]);
    let mut out = Vec::new();
    frame.format(&mut out).expect("formatted");
    out
}

fn bin(payload: &[u8]) -> Vec<u8> {
    client_frame(OpCode::Data(Data::Binary), true, payload, true)
}

/// The close frame the client reads next.
fn close_from_server(client: &mut Client) -> Option<u16> {
    match client.read() {
        Ok(Message::Close(frame)) => frame.map(|f| u16::from(f.code)),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// A raw upgrade request for `path`, with `extra` header lines.
fn raw_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: broker.example\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         {extra}\r\n"
    )
}

/// Feeds raw bytes in one read: the result and the layer's output as text.
fn feed_raw(layer: &mut WsLayer, bytes: &[u8]) -> (Result<(), WsError>, String) {
    let mut mqtt = Vec::new();
    let result = layer.read_wire(bytes, &mut mqtt);
    (
        result,
        String::from_utf8_lossy(&take_out(layer)).into_owned(),
    )
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}
