//! The HTTP upgrade that opens a WebSocket connection: the client's request, the broker's
//! answer (101 Switching Protocols, or an HTTP error before the connection is closed).
//!
//! tungstenite parses the request, checks the WebSocket headers (an HTTP/1.1 `GET` with
//! `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a valid
//! `Sec-WebSocket-Key`) and writes the 101 response; `check` adds the listener's rules:
//! its path (a query string is fine), its allowed origins, and the MQTT subprotocol.
//!
//! The request is gathered here until its blank line and handed to tungstenite's handshake
//! whole, rather than fed to tungstenite's `MidHandshake` read by read (resumed on
//! `HandshakeError::Interrupted`):
//!
//! - tungstenite counts the reads a request takes (`AttackCheck` in its
//!   `handshake::machine`): past 64 reads averaging under 128 bytes it fails the handshake,
//!   so a request arriving in small pieces (a byte at a time, or over a slow link) would be
//!   refused;
//! - it refuses any byte after the request (`JunkAfterRequest`), so a client that sends its
//!   first frame right behind the request would be refused; here those bytes wait for the
//!   upgrade and are read as frames;
//! - its handshake reader takes 8 KiB (a 4 KiB read chunk and a 4 KiB buffer) from the
//!   first byte, where the bytes a request has so far are enough.
//!
//! So a request is bounded here, by [`MAX_UPGRADE_REQUEST_BYTES`] (tungstenite's own bound,
//! 64 KiB, is never reached), and the connection timeout the core arms at accept bounds a
//! request that never ends. A request that does not start like `GET ` (a plain MQTT client
//! or a TLS client on a WebSocket port) is refused at once.

use tungstenite::handshake::HandshakeError;
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response, write_response};
use tungstenite::http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, ORIGIN,
    SEC_WEBSOCKET_PROTOCOL,
};
use tungstenite::http::{HeaderName, StatusCode};
use tungstenite::protocol::WebSocket;

use super::stream::Mem;
use super::{WsError, WsSettings, config};

/// The longest upgrade request accepted (request line and headers), in bytes. A browser's
/// request is about half a kibibyte plus the cookies it holds for the broker's host (sent
/// with the upgrade, as with any request to that host); 16 KiB is what Node.js's HTTP
/// server allows. A longer request gets 431 Request Header Fields Too Large.
pub const MAX_UPGRADE_REQUEST_BYTES: usize = 16 * 1024;

/// The most header lines an upgrade request may have: tungstenite's own limit
/// (`handshake::headers::MAX_HEADERS`); more get 400.
pub const MAX_UPGRADE_HEADERS: usize = tungstenite::handshake::headers::MAX_HEADERS;

/// The subprotocol MQTT 3.1.1 and 5.0 clients offer (MQTT-6.0.0-3).
pub const MQTT_SUBPROTOCOL: &str = "mqtt";

/// The subprotocol some MQTT 3.1 clients offer instead.
pub const MQTT_V31_SUBPROTOCOL: &str = "mqttv3.1";

/// The most bytes of a request's path, origin or subprotocols an error quotes.
const MAX_QUOTED_BYTES: usize = 100;

/// What the bytes of a request so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Gathered {
    /// More bytes are needed.
    More,
    /// The request is whole: its first `end` bytes (what follows is the client's first
    /// frames); `taken` bytes of the last read were added to it.
    Whole { end: usize, taken: usize },
    /// Refused before it is whole.
    Refused(WsError),
}

/// Adds the bytes of one read to `request`, up to [`MAX_UPGRADE_REQUEST_BYTES`].
pub(super) fn gather(request: &mut Vec<u8>, wire: &[u8]) -> Gathered {
    let before = request.len();
    let taken = MAX_UPGRADE_REQUEST_BYTES
        .saturating_sub(before)
        .min(wire.len());
    request.extend_from_slice(wire.get(..taken).unwrap_or_default());
    if !starts_like_get(request) {
        return Gathered::Refused(WsError::BadRequest("not an HTTP GET request".into()));
    }
    // A blank line ending in the new bytes begins at most two bytes before them.
    match blank_line(request, before.saturating_sub(2)) {
        Some(end) => Gathered::Whole { end, taken },
        None if request.len() >= MAX_UPGRADE_REQUEST_BYTES => {
            Gathered::Refused(WsError::RequestTooLarge)
        }
        None => Gathered::More,
    }
}

/// Whether `bytes` start as `GET ` does (as far as they go).
fn starts_like_get(bytes: &[u8]) -> bool {
    const GET: &[u8] = b"GET ";
    let n = bytes.len().min(GET.len());
    bytes.get(..n) == GET.get(..n)
}

/// The end of the first blank line (`\n\n` or `\n\r\n`, what httparse takes for the end of
/// the headers) at or after `from`.
fn blank_line(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let newline = at + bytes.get(at..)?.iter().position(|&b| b == b'\n')?;
        match bytes.get(newline + 1..) {
            Some([b'\n', ..]) => return Some(newline + 2),
            Some([b'\r', b'\n', ..]) => return Some(newline + 3),
            _ => at = newline + 1,
        }
    }
}

/// Runs tungstenite's handshake on a whole request: the first `end` bytes of `buffered`
/// (the rest stays in the stream's input, for after the upgrade). On success the 101
/// response is in the stream's output.
pub(super) fn accept(
    buffered: Vec<u8>,
    end: usize,
    settings: &WsSettings,
) -> Result<WebSocket<Mem>, WsError> {
    let mut refusal = None;
    let rules = Rules {
        settings,
        refusal: &mut refusal,
    };
    let stream = Mem::with_request(buffered, end);
    // The error holds the rules (and their borrow of `refusal`): only its text is kept.
    let outcome = tungstenite::accept_hdr_with_config(stream, rules, Some(config(settings, 0)))
        .map_err(|error| match error {
            HandshakeError::Failure(error) => error.to_string(),
            // Cannot happen: the request is whole.
            HandshakeError::Interrupted(_) => "incomplete request".to_owned(),
        });
    outcome.map_err(|reason| refusal.unwrap_or(WsError::BadRequest(reason)))
}

/// tungstenite's callback: the listener's rules, and where a refusal is noted. tungstenite
/// writes the refusal's response into the stream, which a failed handshake drops: the
/// layer writes the answer itself ([`refusal_response`]), from the refusal noted here.
struct Rules<'a> {
    settings: &'a WsSettings,
    refusal: &'a mut Option<WsError>,
}

impl Callback for Rules<'_> {
    /// Applies [`check`]; a refusal is noted, and tungstenite is given its status.
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        check(self.settings, request, response).map_err(|error| {
            let mut answer = ErrorResponse::new(None);
            *answer.status_mut() = error.http_status().unwrap_or(StatusCode::BAD_REQUEST);
            *self.refusal = Some(error);
            answer
        })
    }
}

/// The listener's rules, once tungstenite has found the request a valid upgrade: the path,
/// the origin, the subprotocol (added to `response`).
fn check(
    settings: &WsSettings,
    request: &Request,
    mut response: Response,
) -> Result<Response, WsError> {
    let path = request.uri().path();
    if path != settings.path {
        return Err(WsError::WrongPath(quoted(path.as_bytes())));
    }
    if let Some(origin) = request.headers().get(ORIGIN)
        && !settings.allowed_origins.is_empty()
        && !settings
            .allowed_origins
            .iter()
            .any(|allowed| allowed.as_bytes() == origin.as_bytes())
    {
        return Err(WsError::ForbiddenOrigin(quoted(origin.as_bytes())));
    }
    if let Some(chosen) = subprotocol(request.headers())? {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(chosen));
    }
    Ok(response)
}

/// The subprotocol to answer with: `mqtt` if offered, else `mqttv3.1` if offered, else
/// none when none is offered. MQTT asks clients to offer `mqtt`, but some omit the header
/// altogether, and they are accepted without a subprotocol; a client that offers only
/// others is refused.
fn subprotocol(headers: &HeaderMap) -> Result<Option<&'static str>, WsError> {
    let mut offered = false;
    let mut v31 = false;
    for value in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        // A value that is not visible ASCII names nothing spoken here.
        let tokens = value.to_str().unwrap_or("\u{fffd}");
        for token in tokens.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token == MQTT_SUBPROTOCOL {
                return Ok(Some(MQTT_SUBPROTOCOL));
            }
            v31 |= token == MQTT_V31_SUBPROTOCOL;
            offered = true;
        }
    }
    match (v31, offered) {
        (true, _) => Ok(Some(MQTT_V31_SUBPROTOCOL)),
        (false, true) => Err(WsError::NoMqttSubprotocol(offered_list(headers))),
        (false, false) => Ok(None),
    }
}

/// The subprotocols a request offers, as one string for an error.
fn offered_list(headers: &HeaderMap) -> String {
    let values: Vec<&[u8]> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    quoted(&values.join(&b", "[..]))
}

/// Client text for an error (a log line, a metric-free reason): lossy UTF-8, at most
/// [`MAX_QUOTED_BYTES`] of it.
fn quoted(bytes: &[u8]) -> String {
    let cut = bytes.get(..MAX_QUOTED_BYTES).unwrap_or(bytes);
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < bytes.len() {
        text.push('…');
    }
    text
}

/// The HTTP answer to a refused request: its status, `Connection: close`, and the reason
/// as a line of text.
pub(super) fn refusal_response(error: &WsError) -> Vec<u8> {
    let body = format!("{error}\n");
    let mut response = Response::new(());
    *response.status_mut() = error.http_status().unwrap_or(StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 2] = [
        (CONNECTION, "close"),
        (CONTENT_TYPE, "text/plain; charset=utf-8"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut out = Vec::with_capacity(128 + body.len());
    // Invariant: a Vec takes every write and every header value here is visible ASCII,
    // the only things that make `write_response` fail.
    let _ = write_response(&mut out, &response);
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines() {
        assert_eq!(
            blank_line(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 0),
            Some(24)
        );
        assert_eq!(blank_line(b"GET / HTTP/1.1\nA: b\n\nrest", 0), Some(21));
        assert_eq!(blank_line(b"GET / HTTP/1.1\r\nA: b\r\n\r", 0), None);
        assert_eq!(blank_line(b"GET / HTTP/1.1\r\n", 0), None);
        assert_eq!(blank_line(b"", 0), None);
        assert_eq!(blank_line(b"\n", 5), None);
    }

    #[test]
    fn get_prefix() {
        assert!(starts_like_get(b""));
        assert!(starts_like_get(b"GE"));
        assert!(starts_like_get(b"GET /mqtt"));
        assert!(!starts_like_get(b"POST"));
        assert!(!starts_like_get(b"get /"));
        assert!(!starts_like_get(b"\x10\x0c\x00\x04MQTT"));
    }

    #[test]
    fn quoting_is_bounded() {
        assert_eq!(quoted(b"/x"), "/x");
        let long = quoted(&[b'a'; 300]);
        assert_eq!(long.chars().filter(|&c| c == 'a').count(), MAX_QUOTED_BYTES);
        assert!(long.ends_with('…'));
    }
}
