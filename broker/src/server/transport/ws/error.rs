//! Why a WebSocket connection is closed, and what the client is told.

use std::fmt;

use tungstenite::error::CapacityError;
use tungstenite::http::StatusCode;
use tungstenite::protocol::frame::coding::CloseCode;

use super::upgrade::{MAX_UPGRADE_REQUEST_BYTES, MQTT_SUBPROTOCOL};

/// Why a WebSocket connection is closed. Whatever the client is told first (an HTTP
/// response, a close frame) is already in the layer's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// Not a valid WebSocket upgrade request (HTTP 400): not a `GET`, not HTTP/1.1, a
    /// WebSocket header missing or wrong, a malformed request. The reason says which.
    BadRequest(String),
    /// No end of the request within [`MAX_UPGRADE_REQUEST_BYTES`] (HTTP 431).
    RequestTooLarge,
    /// An upgrade for another path than the listener's (HTTP 404); the path asked for.
    WrongPath(String),
    /// An `Origin` the listener does not allow (HTTP 403); that origin.
    ForbiddenOrigin(String),
    /// Subprotocols offered, none of them MQTT's (HTTP 400); those offered.
    NoMqttSubprotocol(String),
    /// A text message (close status 1003).
    TextFrame,
    /// A frame or message over the limit (close status 1009).
    FrameTooBig {
        /// Its size (as far as it is known), in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// A WebSocket protocol error (close status 1002): an unmasked frame, a reserved
    /// opcode or bit, a fragmented or oversized control frame, a continuation out of place,
    /// invalid UTF-8 in a close reason. tungstenite's reason.
    Protocol(String),
    /// The client closed the connection (its close frame is answered), with its status.
    ClosedByClient(Option<u16>),
    /// The connection is closed: the client answered the broker's close frame, or the
    /// layer was used after it ended.
    Closed,
    /// MQTT output before the upgrade (a bug in the caller).
    NotUpgraded,
}

impl WsError {
    /// A short, stable name for logs and metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            WsError::BadRequest(_) => "bad_upgrade",
            WsError::RequestTooLarge => "request_too_large",
            WsError::WrongPath(_) => "wrong_path",
            WsError::ForbiddenOrigin(_) => "forbidden_origin",
            WsError::NoMqttSubprotocol(_) => "no_mqtt_subprotocol",
            WsError::TextFrame => "text_frame",
            WsError::FrameTooBig { .. } => "frame_too_big",
            WsError::Protocol(_) => "protocol",
            WsError::ClosedByClient(_) => "closed_by_client",
            WsError::Closed => "closed",
            WsError::NotUpgraded => "not_upgraded",
        }
    }

    /// The HTTP status a refused upgrade is answered with.
    pub(super) fn http_status(&self) -> Option<StatusCode> {
        match self {
            WsError::BadRequest(_) | WsError::NoMqttSubprotocol(_) => Some(StatusCode::BAD_REQUEST),
            WsError::RequestTooLarge => Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            WsError::WrongPath(_) => Some(StatusCode::NOT_FOUND),
            WsError::ForbiddenOrigin(_) => Some(StatusCode::FORBIDDEN),
            _ => None,
        }
    }

    /// The close status the connection is closed with.
    pub(super) fn close_code(&self) -> Option<CloseCode> {
        match self {
            WsError::TextFrame => Some(CloseCode::Unsupported),
            WsError::FrameTooBig { .. } => Some(CloseCode::Size),
            WsError::Protocol(_) => Some(CloseCode::Protocol),
            _ => None,
        }
    }

    /// What a failed read from tungstenite means.
    pub(super) fn from_read(error: tungstenite::Error) -> WsError {
        match error {
            tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                WsError::FrameTooBig {
                    size,
                    max: max_size,
                }
            }
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                WsError::Closed
            }
            tungstenite::Error::Protocol(error) => WsError::Protocol(error.to_string()),
            other => WsError::Protocol(other.to_string()),
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::BadRequest(reason) => {
                write!(f, "not a valid WebSocket upgrade request: {reason}")
            }
            WsError::RequestTooLarge => write!(
                f,
                "no end of the upgrade request within {MAX_UPGRADE_REQUEST_BYTES} bytes"
            ),
            WsError::WrongPath(path) => write!(f, "no WebSocket endpoint at path {path:?}"),
            WsError::ForbiddenOrigin(origin) => write!(f, "origin {origin:?} is not allowed"),
            WsError::NoMqttSubprotocol(offered) => write!(
                f,
                "subprotocols {offered:?} offered, not {MQTT_SUBPROTOCOL:?}"
            ),
            WsError::TextFrame => write!(
                f,
                "a text message (MQTT over WebSocket takes binary messages only)"
            ),
            WsError::FrameTooBig { size, max } => {
                write!(f, "a frame or message of {size} bytes, over {max}")
            }
            WsError::Protocol(reason) => write!(f, "WebSocket protocol error: {reason}"),
            WsError::ClosedByClient(Some(code)) => {
                write!(f, "the client closed the WebSocket (status {code})")
            }
            WsError::ClosedByClient(None) => write!(f, "the client closed the WebSocket"),
            WsError::Closed => write!(f, "the WebSocket is closed"),
            WsError::NotUpgraded => write!(f, "MQTT output before the WebSocket upgrade"),
        }
    }
}

impl std::error::Error for WsError {}
