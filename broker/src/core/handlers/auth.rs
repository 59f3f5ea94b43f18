//! AUTH: MQTT 5 enhanced authentication (§4.12), driven through an [`Authenticator`].
//!
//! A shard has no authenticator unless one is installed ([`Shard::set_authenticator`]);
//! the binary installs none yet, so a CONNECT that names an Authentication Method is
//! refused with CONNACK 0x8C Bad authentication method, and an AUTH packet is a protocol
//! error (0x82): no exchange was started. With an authenticator whose method the CONNECT
//! names, the exchange runs here:
//!
//! 1. CONNECT (method, data) → [`AuthExchange::step`]. `Continue(data)` sends AUTH 0x18 and
//!    the connection waits in [`Phase::Authenticating`] (the connect timeout still runs);
//!    `Success` sends CONNACK 0x00 with the method (and final data); `Refuse(code)` sends
//!    CONNACK `code` and closes.
//! 2. AUTH 0x18 from the client (same method, MQTT-4.12.0-5) → the next step, the same way.
//!    Any other packet before CONNACK is a protocol error (CONNACK 0x82, §4.12).
//! 3. Re-authentication after CONNACK: AUTH 0x19 with the method the connection used
//!    (MQTT-4.12.1-1) starts a new exchange; success is AUTH 0x00, a refusal DISCONNECT.

use std::fmt;
use std::rc::Rc;

use crate::core::conn::Phase;
use crate::core::directory::Reservation;
use crate::core::handlers::connect::{self, Request};
use crate::core::input::Flow;
use crate::core::{ConnId, Shard, lifecycle};
use crate::protocol::ReasonCode;
use crate::protocol::v5::{AuthV5, UserProperties, encode_auth_v5};

/// One step of an enhanced-authentication exchange, as an authentication layer answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Authenticated (with final Authentication Data for the client, if any).
    Success(Option<Vec<u8>>),
    /// Send AUTH 0x18 Continue authentication with this data and wait for the client.
    Continue(Vec<u8>),
    /// Refused with this CONNACK / DISCONNECT reason code (0x87 Not authorized, 0x8C …).
    Refuse(ReasonCode),
}

/// An enhanced-authentication method (e.g. SCRAM-SHA-256): what the broker drives from
/// CONNECT and AUTH packets. One per event loop (it need not be `Send`).
pub trait Authenticator {
    /// The Authentication Method name it serves.
    fn method(&self) -> &str;
    /// A new exchange for `client_id` (at CONNECT, and at each re-authentication).
    fn begin(&self, client_id: &str) -> Box<dyn AuthExchange>;
}

/// One client's exchange in progress.
pub trait AuthExchange {
    /// The next step, given the client's Authentication Data.
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep;

    /// The user name the exchange authenticated, once a step has returned
    /// [`AuthStep::Success`] (the core reads it then); `None` before, after a refusal, or
    /// for a method that names no user.
    fn identity(&self) -> Option<&str> {
        None
    }
}

/// Where a v5 connection is in enhanced authentication.
pub(crate) enum AuthState {
    /// Before CONNACK: the CONNECT waits for the exchange to succeed.
    Connecting {
        /// The CONNECT, accepted once authenticated.
        request: Box<Request>,
        /// Its client id (assigned or given) and whether it was assigned.
        client_id: Box<str>,
        assigned: bool,
        /// Holds the client id on this loop until the exchange ends.
        reservation: Reservation,
        exchange: Box<dyn AuthExchange>,
    },
    /// Authenticated with `method`; `exchange` is a re-authentication in progress.
    Authenticated {
        method: Box<str>,
        exchange: Option<Box<dyn AuthExchange>>,
    },
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthState::Connecting { client_id, .. } => {
                write!(f, "Connecting({client_id})")
            }
            AuthState::Authenticated { method, exchange } => {
                write!(f, "Authenticated({method}, reauth: {})", exchange.is_some())
            }
        }
    }
}

impl Shard {
    /// Installs the enhanced-authentication method this loop offers on every listener
    /// without one of its own.
    pub fn set_authenticator(&mut self, authenticator: Rc<dyn Authenticator>) {
        self.authenticator = Some(authenticator);
    }

    /// Installs (or with `None`, removes) the enhanced-authentication method of listener
    /// `listener` (the SCRAM method of its password file).
    pub fn set_listener_authenticator(
        &mut self,
        listener: u8,
        authenticator: Option<Rc<dyn Authenticator>>,
    ) {
        let at = usize::from(listener);
        if self.listener_authenticators.len() <= at {
            self.listener_authenticators.resize(at + 1, None);
        }
        self.listener_authenticators[at] = authenticator;
    }

    /// The method a connection of listener `listener` may use.
    fn authenticator_for(&self, key: ConnId) -> Option<Rc<dyn Authenticator>> {
        let listener = self.pool.get(key).map_or(0, |c| c.listener);
        match self.listener_authenticators.get(usize::from(listener)) {
            Some(Some(own)) => Some(Rc::clone(own)),
            _ => self.authenticator.clone(),
        }
    }
}

/// A CONNECT naming `method`: starts the exchange, or refuses with 0x8C when no
/// authenticator serves that method.
pub(crate) fn begin_connect(
    shard: &mut Shard,
    key: ConnId,
    request: Request,
    client_id: Box<str>,
    assigned: bool,
    reservation: Reservation,
    now_ms: u64,
) -> Flow {
    let method = request
        .authentication_method()
        .unwrap_or_default()
        .to_owned();
    let authenticator = shard
        .authenticator_for(key)
        .filter(|a| a.method() == method);
    let Some(authenticator) = authenticator else {
        shard.stats.refused_connect += 1;
        let code = ReasonCode::BadAuthenticationMethod;
        connect::refuse(shard, key, request.version(), code);
        lifecycle::close_for(shard, key, "CONNECT refused", code, &method, now_ms);
        return Flow::Stop;
    };
    if shard.login_throttled(key) {
        shard.stats.refused_connect += 1;
        shard.stats.refused_credentials += 1;
        let code = ReasonCode::ConnectionRateExceeded;
        connect::refuse(shard, key, request.version(), code);
        let why = &"too many failed logins from this address";
        lifecycle::close_for(shard, key, "authentication refused", code, why, now_ms);
        return Flow::Stop;
    }
    let mut exchange = authenticator.begin(&client_id);
    let step = exchange.step(request.authentication_data());
    let state = AuthState::Connecting {
        request: Box::new(request),
        client_id,
        assigned,
        reservation,
        exchange,
    };
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.version = crate::protocol::ProtocolVersion::V5;
        conn.phase = Phase::Authenticating;
        conn.v5.get_or_insert_with(Default::default).auth = Some(Box::new(state));
    }
    connect_step(shard, key, &method, step, now_ms)
}

/// Carries out one step of the exchange that precedes CONNACK.
fn connect_step(shard: &mut Shard, key: ConnId, method: &str, step: AuthStep, now_ms: u64) -> Flow {
    match step {
        AuthStep::Continue(data) => continue_exchange(shard, key, method, &data),
        AuthStep::Refuse(code) => {
            // Answered after the failure delay, like a wrong password.
            shard.login_failed(key);
            crate::core::credentials::refuse_later(shard, key, code);
            Flow::Continue
        }
        AuthStep::Success(data) => {
            let state = shard
                .pool
                .get_mut(key)
                .ok()
                .and_then(|c| c.v5.as_mut())
                .and_then(|v| v.auth.take());
            let Some(AuthState::Connecting {
                request,
                client_id,
                assigned,
                reservation,
                exchange,
            }) = state.map(|s| *s)
            else {
                return Flow::Stop;
            };
            if let Ok(conn) = shard.pool.get_mut(key) {
                conn.phase = Phase::AwaitingConnect;
            }
            let who = connect::Who {
                username: exchange.identity().map(Box::from),
                auth: Some(connect::AuthDone {
                    method: method.into(),
                    data,
                }),
            };
            let flow = connect::accept(shard, key, *request, client_id, assigned, who, now_ms);
            drop(reservation);
            flow
        }
    }
}

/// What an AUTH packet leads to, decided while the connection's state is borrowed.
enum Next {
    Connect(AuthStep),
    Reauth(AuthStep),
    Error(&'static str),
}

/// AUTH from a client: the next step of its exchange, a re-authentication, or (with no
/// exchange possible) a protocol error.
pub(crate) fn handle_auth(shard: &mut Shard, key: ConnId, auth: &AuthV5<'_>, now_ms: u64) -> Flow {
    let method = auth.authentication_method.unwrap_or_default();
    let data = auth.authentication_data;
    let authenticator = shard.authenticator_for(key);
    let client = lifecycle::client_name(shard, key);
    let state = shard
        .pool
        .get_mut(key)
        .ok()
        .and_then(|c| c.v5.as_mut())
        .and_then(|v| v.auth.as_deref_mut());
    let next = match state {
        None => Next::Error("AUTH without an authentication exchange"),
        Some(AuthState::Connecting { exchange, .. })
            if auth.reason == ReasonCode::ContinueAuthentication =>
        {
            Next::Connect(exchange.step(data))
        }
        // The method must stay the one of the CONNECT (MQTT-4.12.0-5).
        Some(AuthState::Authenticated {
            method: ours,
            exchange,
        }) if **ours == *method => match (auth.reason, authenticator) {
            (ReasonCode::ReAuthenticate, Some(authenticator)) => {
                Next::Reauth(exchange.insert(authenticator.begin(&client)).step(data))
            }
            (ReasonCode::ContinueAuthentication, _) => match exchange {
                Some(exchange) => Next::Reauth(exchange.step(data)),
                None => Next::Error("AUTH 0x18 without a re-authentication in progress"),
            },
            _ => Next::Error("AUTH out of sequence"),
        },
        Some(_) => Next::Error("AUTH with another method or out of sequence"),
    };
    let method = method.to_owned();
    match next {
        Next::Connect(step) => connect_step(shard, key, &method, step, now_ms),
        Next::Reauth(step) => reauth_step(shard, key, &method, step, now_ms),
        Next::Error(what) => protocol_error(shard, key, what, now_ms),
    }
}

/// The slot of a re-authentication in progress.
fn reauth_slot(shard: &mut Shard, key: ConnId) -> Option<&mut Option<Box<dyn AuthExchange>>> {
    match shard
        .pool
        .get_mut(key)
        .ok()?
        .v5
        .as_mut()?
        .auth
        .as_deref_mut()?
    {
        AuthState::Authenticated { exchange, .. } => Some(exchange),
        AuthState::Connecting { .. } => None,
    }
}

/// Carries out one step of a re-authentication.
fn reauth_step(shard: &mut Shard, key: ConnId, method: &str, step: AuthStep, now_ms: u64) -> Flow {
    match step {
        AuthStep::Continue(data) => continue_exchange(shard, key, method, &data),
        AuthStep::Success(data) => {
            let same_user = reauth_slot(shard, key)
                .and_then(|slot| slot.take())
                .is_none_or(|exchange| same_user(shard, key, exchange.identity()));
            if !same_user {
                let code = ReasonCode::NotAuthorized;
                let why = &"re-authenticated as another user";
                lifecycle::close_for(shard, key, "re-authentication refused", code, why, now_ms);
                return Flow::Stop;
            }
            write_auth(shard, key, ReasonCode::Success, method, data.as_deref());
            Flow::Continue
        }
        AuthStep::Refuse(code) => {
            lifecycle::close_for(
                shard,
                key,
                "re-authentication refused",
                code,
                &method,
                now_ms,
            );
            Flow::Stop
        }
    }
}

/// Whether a re-authentication's user is the one the connection's session belongs to (a
/// method that names no user keeps it).
fn same_user(shard: &Shard, key: ConnId, identity: Option<&str>) -> bool {
    let Some(identity) = identity else {
        return true;
    };
    let session = shard
        .pool
        .get(key)
        .ok()
        .and_then(|c| shard.sessions.get(c.session));
    session.is_some_and(|s| crate::core::access::username(s) == Some(identity))
}

/// AUTH 0x18 Continue authentication with the method's next data; the exchange waits
/// for the client.
fn continue_exchange(shard: &mut Shard, key: ConnId, method: &str, data: &[u8]) -> Flow {
    let reason = ReasonCode::ContinueAuthentication;
    write_auth(shard, key, reason, method, Some(data));
    Flow::Continue
}

/// An AUTH packet to the client.
fn write_auth(
    shard: &mut Shard,
    key: ConnId,
    reason: ReasonCode,
    method: &str,
    data: Option<&[u8]>,
) {
    let auth = AuthV5 {
        reason,
        authentication_method: Some(method),
        authentication_data: data,
        reason_string: None,
        user_properties: UserProperties::NONE,
    };
    shard.write_with(key, |out, _, peer_max| encode_auth_v5(out, &auth, peer_max));
}

/// A protocol error around AUTH: before CONNACK a CONNACK 0x82, after it a DISCONNECT 0x82.
fn protocol_error(shard: &mut Shard, key: ConnId, what: &str, now_ms: u64) -> Flow {
    let code = ReasonCode::ProtocolError;
    if shard
        .pool
        .get(key)
        .is_ok_and(|c| c.phase == Phase::Authenticating)
    {
        connect::refuse(shard, key, crate::protocol::ProtocolVersion::V5, code);
    }
    lifecycle::close_for(shard, key, what, code, &"(MQTT 5 §4.12)", now_ms);
    Flow::Stop
}

/// A packet other than AUTH or DISCONNECT while authenticating: a protocol error.
pub(crate) fn unexpected_while_authenticating(shard: &mut Shard, key: ConnId, now_ms: u64) -> Flow {
    protocol_error(shard, key, "packet other than AUTH before CONNACK", now_ms)
}
