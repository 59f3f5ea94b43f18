//! AUTH (MQTT 5 enhanced authentication, §4.12).
//!
//! No authentication method is configured yet, so a CONNECT that names one is refused
//! with CONNACK 0x8C Bad authentication method (handled in `connect`), and an AUTH packet
//! can only be a protocol error: the server never started an exchange (MQTT-3.15.2-1 …
//! §4.12: AUTH is sent only within an exchange the CONNECT's method began).
//! [`Authenticator`] is the seam an authentication layer plugs into later.

use crate::core::input::Flow;
use crate::core::{ConnId, Shard, lifecycle};
use crate::protocol::ReasonCode;
use crate::protocol::v5::AuthV5;

/// One step of an enhanced-authentication exchange, as an authentication layer answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Authenticated: CONNACK 0x00 (with this final data, if any).
    Success(Option<Vec<u8>>),
    /// Send AUTH 0x18 Continue authentication with this data and wait for the client.
    Continue(Vec<u8>),
    /// Refused with this CONNACK / DISCONNECT reason code (0x87, 0x8C …).
    Refuse(ReasonCode),
}

/// An enhanced-authentication method (e.g. SCRAM-SHA-256): the interface the broker will
/// drive from CONNECT and AUTH packets. Nothing implements it yet.
pub trait Authenticator {
    /// The Authentication Method name it serves.
    fn method(&self) -> &str;
    /// The next step, given the client id and the client's Authentication Data.
    fn step(&mut self, client_id: &str, data: Option<&[u8]>) -> AuthStep;
}

/// AUTH from a client: with no method configured, a protocol error.
pub(crate) fn handle_auth(shard: &mut Shard, key: ConnId, auth: &AuthV5<'_>, now_ms: u64) -> Flow {
    lifecycle::close_for(
        shard,
        key,
        "AUTH without an authentication exchange",
        ReasonCode::ProtocolError,
        &format_args!("reason {:#04x}", auth.reason.as_u8()),
        now_ms,
    );
    Flow::Stop
}
