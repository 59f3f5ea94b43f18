//! CONNECTs whose credentials are being verified off the loop, and what a reload of the
//! access policy does to the clients already connected.
//!
//! A CONNECT with a user name on a listener that verifies passwords is parked here
//! ([`Phase::Verifying`]) with its client id reserved, and the driver is asked to verify it
//! ([`Action::Authenticate`]): password hashing is slow on purpose and never runs on a loop.
//! Meanwhile the connection is not read, and the bytes that came after the CONNECT wait
//! in its input (a client may send packets before CONNACK). The verdict comes back through
//! [`Shard::credentials_checked`]: accepted, the CONNECT goes on as any other and the waiting
//! packets are handled; refused, CONNACK 0x04 / 0x86 and close. The connect timeout still
//! runs.

use hashbrown::HashMap;

use crate::core::conn::Phase;
use crate::core::directory::Reservation;
use crate::core::handlers::connect::{self, Request};
use crate::core::{Action, ConnId, Shard, access, input, lifecycle};
use crate::protocol::{ProtocolVersion, ReasonCode};

/// How a verification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password is the user's.
    Accepted,
    /// Unknown user or wrong password: CONNACK 0x04 (3.x) / 0x86 (5.0).
    Refused,
    /// Too many failures from the client's address lately: refused without verifying,
    /// CONNACK 0x05 (3.x) / 0x9F Connection rate exceeded (5.0).
    Throttled,
    /// The verifiers are saturated: CONNACK 0x03 (3.x) / 0x89 Server busy (5.0).
    Busy,
}

/// A CONNECT waiting for its verdict.
pub(crate) struct Parked {
    request: Box<Request>,
    client_id: Box<str>,
    assigned: bool,
    /// Holds the client id on this loop until the verdict.
    reservation: Reservation,
    username: Box<str>,
}

/// The CONNECTs of a loop waiting for their verdicts.
#[derive(Default)]
pub(crate) struct Verifying {
    parked: HashMap<ConnId, Parked>,
    /// Enhanced authentications that failed, waiting out the failure delay before their
    /// refusal (this reason code) is written.
    refusing: HashMap<ConnId, ReasonCode>,
    /// The names the driver read from client certificates, on listeners that take them as
    /// user names, until the connection's CONNECT ([`Shard::set_identity`]).
    identities: HashMap<ConnId, Box<str>>,
}

impl Verifying {
    /// Forgets `key`'s CONNECT (its connection closed), releasing its client id.
    pub(crate) fn forget(&mut self, key: ConnId) {
        self.parked.remove(&key);
        self.refusing.remove(&key);
        self.identities.remove(&key);
    }

    /// Takes the certificate identity the driver gave `key`, if any.
    pub(crate) fn take_identity(&mut self, key: ConnId) -> Option<Box<str>> {
        self.identities.remove(&key)
    }
}

impl Shard {
    /// The name in `conn`'s client certificate, on a listener whose policy takes it as the
    /// user name (`ListenerAccess::identity_as_username`): its CONNECT is then accepted as
    /// that user without a password. Given by the driver once the TLS handshake is done,
    /// before any MQTT byte of the connection.
    pub fn set_identity(&mut self, conn: ConnId, identity: Box<str>) {
        if self.pool.get(conn).is_ok() {
            self.verifying.identities.insert(conn, identity);
        }
    }
}

/// A failed enhanced authentication (which runs on the loop): its refusal `code` is written
/// after the same fixed delay as a failed password's ([`Action::DelayRefusal`]); meanwhile
/// the connection is not read.
pub(crate) fn refuse_later(shard: &mut Shard, key: ConnId, code: ReasonCode) {
    let Ok(conn) = shard.pool.get_mut(key) else {
        return;
    };
    conn.phase = Phase::Verifying;
    shard.verifying.refusing.insert(key, code);
    shard.actions.push_back(Action::DelayRefusal { conn: key });
}

/// Parks `request` and asks the driver to verify `username`'s password.
pub(crate) fn park(
    shard: &mut Shard,
    key: ConnId,
    request: Request,
    client_id: Box<str>,
    assigned: bool,
    reservation: Reservation,
) -> input::Flow {
    let username: Box<str> = request.username().unwrap_or_default().into();
    let password = request.password().unwrap_or_default().to_vec();
    let Ok(conn) = shard.pool.get_mut(key) else {
        return input::Flow::Stop;
    };
    conn.phase = Phase::Verifying;
    conn.version = request.version();
    let listener = conn.listener;
    shard.stats.credentials_verified += 1;
    shard.actions.push_back(Action::Authenticate {
        conn: key,
        listener,
        username: username.clone(),
        password,
    });
    shard.verifying.parked.insert(
        key,
        Parked {
            request: Box::new(request),
            client_id,
            assigned,
            reservation,
            username,
        },
    );
    input::Flow::Continue
}

impl Shard {
    /// Whether `conn`'s CONNECT waits for its verdict (its socket is not read meanwhile).
    pub fn is_verifying(&self, conn: ConnId) -> bool {
        self.pool
            .get(conn)
            .is_ok_and(|c| c.phase == Phase::Verifying)
    }

    /// The verdict on `conn`'s credentials ([`Action::Authenticate`]). A connection that
    /// closed meanwhile is ignored.
    pub fn credentials_checked(&mut self, conn: ConnId, verdict: Verdict, now_ms: u64) {
        if !self.is_verifying(conn) {
            self.verifying.forget(conn);
            return;
        }
        if let Some(code) = self.verifying.refusing.remove(&conn) {
            let what = "authentication refused";
            let v5 = ProtocolVersion::V5;
            return refuse(
                self,
                conn,
                v5,
                code,
                what,
                &"(enhanced authentication)",
                now_ms,
            );
        }
        let Some(parked) = self.verifying.parked.remove(&conn) else {
            return;
        };
        let version = parked.request.version();
        let (code, what) = match verdict {
            Verdict::Accepted => return accepted(self, conn, parked, now_ms),
            Verdict::Refused => (
                ReasonCode::BadUserNameOrPassword,
                "bad user name or password",
            ),
            Verdict::Throttled => (
                ReasonCode::ConnectionRateExceeded,
                "too many failed logins from this address",
            ),
            Verdict::Busy => (ReasonCode::ServerBusy, "credential verifiers saturated"),
        };
        let user = parked.username;
        refuse(
            self,
            conn,
            version,
            code,
            what,
            &format_args!("user {user:?}"),
            now_ms,
        );
    }
}

/// Writes a refusing CONNACK, counted, and closes.
fn refuse(
    shard: &mut Shard,
    key: ConnId,
    version: ProtocolVersion,
    code: ReasonCode,
    what: &str,
    who: &dyn std::fmt::Display,
    now_ms: u64,
) {
    shard.stats.refused_connect += 1;
    shard.stats.refused_credentials += 1;
    connect::refuse(shard, key, version, code);
    lifecycle::close_for(shard, key, what, code, who, now_ms);
}
/// A verified CONNECT: accepted as any other, then the packets that waited behind it.
fn accepted(shard: &mut Shard, key: ConnId, parked: Parked, now_ms: u64) {
    let Parked {
        request,
        client_id,
        assigned,
        reservation,
        username,
    } = parked;
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.phase = Phase::AwaitingConnect;
    }
    let who = connect::Who {
        username: Some(username),
        auth: None,
    };
    let flow = connect::accept(shard, key, *request, client_id, assigned, who, now_ms);
    drop(reservation);
    if matches!(flow, input::Flow::Continue) {
        input::resume(shard, key, now_ms);
    }
}

/// After a reload of the access policy: every session's subscriptions are classified
/// again, and the connected clients whose user is no longer in their listener's password
/// file are disconnected (5.0: DISCONNECT 0x87), counted and logged.
pub(crate) fn apply_reload(shard: &mut Shard, now_ms: u64) {
    let ids: Vec<u32> = shard.sessions.ids().collect();
    let mut removed = Vec::new();
    for id in ids {
        reclassify(shard, id);
        let Some(session) = shard.sessions.get(id) else {
            continue;
        };
        let Some(user) = access::username(session) else {
            continue;
        };
        let gone = shard
            .access
            .listener(session.listener)
            .users
            .as_ref()
            .is_some_and(|users| !users.has_user(user));
        if gone && let Some(conn) = session.conn {
            removed.push((conn, user.to_owned()));
        }
    }
    for (conn, user) in removed {
        shard.stats.disconnected_user_removed += 1;
        let code = ReasonCode::NotAuthorized;
        let why = format_args!("user {user:?} is no longer in the password file");
        lifecycle::close_for(shard, conn, "user removed on reload", code, &why, now_ms);
    }
}

/// Whether a session's deliveries need the ACL asked per topic, from its subscriptions.
pub(crate) fn reclassify(shard: &mut Shard, session_id: u32) {
    let Some(session) = shard.sessions.get(session_id) else {
        return;
    };
    let checked = shard
        .access
        .listener(session.listener)
        .acl
        .as_deref()
        .is_some_and(|acl| {
            session.subscriptions.iter().any(|(filter, _)| {
                let filter = crate::protocol::v5::parse_shared_filter(filter)
                    .ok()
                    .flatten()
                    .map_or(filter, |shared| shared.filter);
                acl.classify(access::identity(session), filter) != crate::acl::FilterClass::Always
            })
        });
    if let Some(session) = shard.sessions.get_mut(session_id) {
        session.acl_checked = checked;
    }
}
