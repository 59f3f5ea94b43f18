//! CONNECT: version, client id, limits, takeover, session resumption, CONNACK.
//!
//! Both protocol families end in the same [`accept`]: a 3.1.1 CONNECT is an MQTT 5 one
//! with Clean Session standing for "Clean Start, and a Session Expiry Interval of 0 (clean)
//! or for ever (not clean)", no properties and a CONNACK without them.

use crate::core::config::CoreConfig;
use crate::core::conn::{ConnV5, PendingWill, Phase};
use crate::core::directory::{Reservation, Route};
use crate::core::handlers::auth::{self, AuthState};
use crate::core::input::Flow;
use crate::core::message::MessageProps;
use crate::core::outbound::OutAliases;
use crate::core::peers::PeerText;
use crate::core::refusals::{self, Refusal};
use crate::core::session::Session;
use crate::core::{ConnId, Shard, access, credentials, delivery, lifecycle};
use crate::protocol::v5::{
    ConnAckProperties, ConnAckV5, ConnectProperties, ConnectV5, PublishProperties, SubscriptionIds,
    UNLIMITED_PACKET_SIZE_BYTES, UserProperties, WillProperties, connack_v5_len, encode_connack_v5,
};
use crate::protocol::{
    AnyConnect, Connect, ConnectReturnCode, DecodeError, MAX_FIXED_HEADER_LEN_BYTES,
    MAX_REMAINING_LENGTH_BYTES, ProtocolVersion, ReasonCode, decode_connect_any, encode_connack,
    peek_connect_version,
};

/// What a CONNECT asks for, in MQTT 5 terms.
pub(crate) struct Request {
    connect: Connect,
    /// Session Expiry Interval in seconds (3.1.1: 0 when clean, for ever when not).
    expiry_secs: u32,
    /// MQTT 5 properties (none for 3.1.1).
    v5: Option<(ConnectProperties, Option<WillProperties>)>,
}

impl Request {
    /// The protocol version.
    pub(crate) fn version(&self) -> ProtocolVersion {
        self.connect.version
    }

    /// The Authentication Method (MQTT 5 enhanced authentication), if any.
    pub(crate) fn authentication_method(&self) -> Option<&str> {
        self.v5.as_ref()?.0.authentication_method.as_deref()
    }

    /// The Authentication Data of the CONNECT, if any.
    pub(crate) fn authentication_data(&self) -> Option<&[u8]> {
        self.v5.as_ref()?.0.authentication_data.as_deref()
    }

    /// The User Name, if any.
    pub(crate) fn username(&self) -> Option<&str> {
        self.connect.username.as_deref()
    }

    /// The Password, if any.
    pub(crate) fn password(&self) -> Option<&[u8]> {
        self.connect.password.as_deref()
    }
}

/// Who a CONNECT is accepted as: the user it authenticated as (or gave, on a listener
/// without a password file), and a finished enhanced authentication.
pub(crate) struct Who {
    /// The user name, if any.
    pub username: Option<Box<str>>,
    /// The enhanced authentication that authenticated it, if one did.
    pub auth: Option<AuthDone>,
}

/// A finished enhanced authentication: its method and final data go into the CONNACK
/// (§3.2.2.3.17, §3.2.2.3.18).
pub(crate) struct AuthDone {
    /// The Authentication Method.
    pub method: Box<str>,
    /// Final Authentication Data for the client.
    pub data: Option<Vec<u8>>,
}

/// The first packet of a connection.
pub(crate) fn handle(shard: &mut Shard, key: ConnId, frame: &[u8], now_ms: u64) -> Flow {
    let request = match decode_connect_any(frame) {
        Ok(AnyConnect::V3(connect)) => Request {
            expiry_secs: if connect.clean_session { 0 } else { u32::MAX },
            connect,
            v5: None,
        },
        Ok(AnyConnect::V5(boxed)) => {
            let ConnectV5 {
                connect,
                properties,
                will_properties,
            } = *boxed;
            Request {
                expiry_secs: properties.session_expiry_interval_secs.unwrap_or(0),
                connect,
                v5: Some((properties, will_properties)),
            }
        }
        Err(error) => return refuse_undecodable(shard, key, frame, &error, now_ms),
    };
    let version = request.connect.version;
    let will_refusal = request
        .connect
        .will
        .as_ref()
        .and_then(|will| shard.config.topic_refusal(&will.topic));
    if let Some(refusal) = will_refusal {
        // Checked before the handover so that the refusal is counted once, here.
        shard.count_topic_refusal(refusal);
        shard.stats.refused_connect += 1;
        let code = ReasonCode::TopicNameInvalid;
        refuse(shard, key, version, code);
        lifecycle::close_for(
            shard,
            key,
            "will topic over a limit",
            code,
            &refusal,
            now_ms,
        );
        return Flow::Stop;
    }
    if request.connect.client_id.len() > shard.config.max_client_id_length_bytes {
        return refuse_client_id(shard, key, &request, now_ms);
    }
    if let Some(flow) = refuse_keep_alive_over_cap(shard, key, &request, now_ms) {
        return flow;
    }
    let (client_id, assigned, reservation) = if request.connect.client_id.is_empty() {
        // MQTT-3.1.3-6: assign a unique id, one that no loop holds.
        let (id, reservation) = shard.assign_client_id();
        (id, true, reservation)
    } else {
        let id = &request.connect.client_id;
        match shard.shared.directory.route(id, shard.loop_index) {
            Route::Here(reservation) => (id.clone().into_boxed_str(), false, reservation),
            Route::There(owner) => return Flow::Handover(owner),
        }
    };
    if shard.listener_access(key).identity_as_username {
        // The client certificate names the user; no password is checked.
        let Some(identity) = shard.verifying.take_identity(key) else {
            return refuse_not_authorized(
                shard,
                key,
                request.version(),
                "no client certificate identity",
                now_ms,
            );
        };
        let who = Who {
            username: Some(identity),
            auth: None,
        };
        let flow = accept(shard, key, request, client_id, assigned, who, now_ms);
        drop(reservation);
        return flow;
    }
    if request.authentication_method().is_some() {
        // Enhanced authentication runs on the loop that holds the client id; the
        // exchange keeps the reservation until it ends.
        return auth::begin_connect(
            shard,
            key,
            request,
            client_id,
            assigned,
            reservation,
            now_ms,
        );
    }
    let policy = shard.listener_access(key);
    let verifies = policy.users.is_some();
    let username = request.username().map(Box::<str>::from);
    match username {
        // Verified off the loop; the id stays reserved until the verdict.
        Some(_) if verifies => {
            return credentials::park(shard, key, request, client_id, assigned, reservation);
        }
        None if !policy.allow_anonymous => {
            return refuse_not_authorized(shard, key, request.version(), "anonymous", now_ms);
        }
        _ => {}
    }
    let who = Who {
        username,
        auth: None,
    };
    let flow = accept(shard, key, request, client_id, assigned, who, now_ms);
    // The session (if one was made) now holds the id on this loop by itself.
    drop(reservation);
    flow
}

/// A CONNECT its listener's policy does not admit: CONNACK 0x05 (3.x) / 0x87 (5.0), close.
pub(crate) fn refuse_not_authorized(
    shard: &mut Shard,
    key: ConnId,
    version: ProtocolVersion,
    why: &str,
    now_ms: u64,
) -> Flow {
    shard.stats.refused_connect += 1;
    shard.stats.refused_credentials += 1;
    let code = ReasonCode::NotAuthorized;
    refuse(shard, key, version, code);
    lifecycle::close_for(shard, key, "CONNECT not authorized", code, &why, now_ms);
    Flow::Stop
}

/// A client id over `max_client_id_length_bytes` (a session would keep it for as long as
/// it lives): CONNACK 0x85 Client Identifier not valid (3.1.1: 0x02 Identifier rejected),
/// then close (§3.1.3.1). Refused before the directory sees the id.
fn refuse_client_id(shard: &mut Shard, key: ConnId, request: &Request, now_ms: u64) -> Flow {
    shard.stats.refused_connect += 1;
    shard.stats.refused_client_id_length += 1;
    let code = ReasonCode::ClientIdentifierNotValid;
    refuse(shard, key, request.version(), code);
    let limit = shard.config.max_client_id_length_bytes;
    let why = format!(
        "{} bytes > max_client_id_length_bytes {limit}",
        request.connect.client_id.len()
    );
    lifecycle::close_for(shard, key, "client id too long", code, &why, now_ms);
    Flow::Stop
}

/// With `max_keep_alive_secs` set, a 3.x client asking for a longer keep-alive, or for
/// none (0), is refused with CONNACK 0x02, as Mosquitto does: 3.x cannot be told a Server
/// Keep Alive, and a client kept to a shorter one than it asked for would be closed for
/// silence and reconnect for ever. MQTT 5 clients are told the cap instead (§3.2.2.3.14).
fn refuse_keep_alive_over_cap(
    shard: &mut Shard,
    key: ConnId,
    request: &Request,
    now_ms: u64,
) -> Option<Flow> {
    let cap = shard.config.max_keep_alive_secs;
    let asked = request.connect.keep_alive_secs;
    if request.v5.is_some() || cap == 0 || (asked != 0 && asked <= cap) {
        return None;
    }
    shard.stats.refused_connect += 1;
    shard.stats.refused_keep_alive += 1;
    let code = ReasonCode::ClientIdentifierNotValid;
    refuse(shard, key, request.version(), code);
    let why = format!(
        "client {:?} asked for a keep-alive of {asked} s (0 = none) but max_keep_alive_secs \
         is {cap}; MQTT 3.x cannot announce a Server Keep Alive (CONNACK 0x02)",
        request.connect.client_id
    );
    let what = "CONNECT refused: keep-alive over the cap";
    lifecycle::close_for(shard, key, what, code, &why, now_ms);
    Some(Flow::Stop)
}

/// A CONNECT that does not decode: CONNACK with the reason where the protocol has one
/// (3.1.1 return codes 0x01/0x02; MQTT 5 reason codes 0x81, 0x82, 0x84, 0x85 …), then close.
fn refuse_undecodable(
    shard: &mut Shard,
    key: ConnId,
    frame: &[u8],
    error: &DecodeError,
    now_ms: u64,
) -> Flow {
    shard.stats.refused_connect += 1;
    if error.is_v5() {
        refuse(shard, key, ProtocolVersion::V5, error.reason_code());
    } else if let Some(code) = error.connack_return_code() {
        let version = match peek_connect_version(frame) {
            Ok(v) if v.is_v3() => v,
            _ => ProtocolVersion::V311,
        };
        if let Ok(conn) = shard.pool.get_mut(key) {
            conn.version = version;
        }
        shard.write(key, |out, v| encode_connack(out, v, false, code));
    }
    lifecycle::close_for(
        shard,
        key,
        "CONNECT refused",
        error.reason_code(),
        error,
        now_ms,
    );
    Flow::Stop
}

/// Accepts an (authenticated) CONNECT: limits, takeover, the session, CONNACK.
pub(crate) fn accept(
    shard: &mut Shard,
    key: ConnId,
    request: Request,
    client_id: Box<str>,
    assigned: bool,
    who: Who,
    now_ms: u64,
) -> Flow {
    let version = request.connect.version;
    if let Some(why) = not_admitted(shard, key, &request, &client_id, who.username.as_deref()) {
        return refuse_not_authorized(shard, key, version, why, now_ms);
    }
    let Who { username, auth } = who;
    let session_expiry_secs = request.expiry_secs;
    let keep_alive_secs = effective_keep_alive(shard, &request);
    let mut granted = Granted {
        session_present: false,
        assigned,
        server_keep_alive_secs: keep_alive_secs.1,
        auth,
    };
    if let Some(flow) = refuse_connack_too_large(shard, key, &request, &client_id, &granted, now_ms)
    {
        return flow;
    }
    let existing = shard.sessions.find(&client_id);
    let old_conn = existing
        .and_then(|id| shard.sessions.get(id))
        .and_then(|session| session.conn);
    let claimed = match old_conn {
        // A takeover replaces a connection, so it never counts against the limit.
        Some(_) => {
            shard
                .shared
                .connected
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            true
        }
        None => shard.shared.try_connect(shard.config.max_connections),
    };
    if !claimed {
        // 3.1.1: 0x03 Server unavailable; MQTT 5: 0x97 Quota exceeded (an administrative
        // limit, §3.2.2.2). Counted and logged as a summary: at the ceiling, newcomers can
        // come by the thousand.
        refuse(shard, key, version, ReasonCode::QuotaExceeded);
        shard.refused(Refusal::MaxConnections, now_ms, &client_id);
        lifecycle::start_close(shard, key);
        return Flow::Stop;
    }
    let clean_start = request.connect.clean_session;
    if let Some(old) = old_conn {
        // The new connection continues the session unless it starts clean or the session
        // ends with its connection: only then is a delayed will of the old one due.
        let continues = !clean_start
            && existing
                .and_then(|id| shard.sessions.get(id))
                .is_some_and(|s| !s.ends_with_connection());
        lifecycle::take_over(shard, old, &client_id, continues, now_ms);
    }
    let session_id = match existing {
        // A session that ends with its connection was ended by the takeover's close
        // already, or is about to be: it is never resumed.
        Some(id)
            if !clean_start
                && shard
                    .sessions
                    .get(id)
                    .is_some_and(|s| !s.ends_with_connection()) =>
        {
            resume_session(shard, id);
            Some(id)
        }
        Some(id) => {
            lifecycle::end_session(shard, id, now_ms);
            None
        }
        None => None,
    };
    let session_present = session_id.is_some();
    let session_id =
        session_id.unwrap_or_else(|| shard.sessions.create(client_id, request.expiry_secs));
    let listener = shard.pool.get(key).map_or(0, |c| c.listener);
    let acl = shard.access.listener(listener).acl.is_some();
    if let Some(session) = shard.sessions.get_mut(session_id) {
        session.conn = Some(key);
        session.expiry_secs = request.expiry_secs;
        session.listener = listener;
        set_username(session, username, acl);
        if let Some(extras) = session.extras_if_any() {
            extras.expiry_due_ms = 0;
        }
        shard.journal.session_changed(session_id, session);
    }
    crate::core::groups::sync_presence(shard, session_id);
    if session_present {
        // A resumed session may come back through another listener, or after a reload.
        credentials::reclassify(shard, session_id);
    }
    bind(
        shard,
        key,
        session_id,
        request,
        keep_alive_secs.0,
        granted.auth.as_ref(),
    );
    if let Some(timeout_ms) = shard.config.keep_alive_timeout_ms(keep_alive_secs.0) {
        shard.arm_timer(key, now_ms + timeout_ms);
    }
    granted.session_present = session_present;
    write_connack(shard, key, session_id, &granted);
    let peer = PeerText(shard.peers.take(key));
    tracing::info!(
        client = %shard.sessions.get(session_id).map_or("", |s| &s.client_id),
        %peer,
        protocol = %version,
        keep_alive_secs = keep_alive_secs.0,
        clean_start,
        session_expiry_secs,
        session_present,
        assigned_id = assigned,
        "client connected"
    );
    if session_present {
        delivery::resume(shard, key, now_ms);
    }
    Flow::Continue
}

/// Why the listener's policy does not admit this CONNECT as `username`, if it does not: a
/// will its client could not publish, or a session of another user to take over (with
/// `session_takeover` set to the same user only).
fn not_admitted(
    shard: &Shard,
    key: ConnId,
    request: &Request,
    client_id: &str,
    username: Option<&str>,
) -> Option<&'static str> {
    let listener = shard.pool.get(key).map_or(0, |c| c.listener);
    if let Some(will) = &request.connect.will
        && !access::may_write_as(shard, listener, username, client_id, &will.topic)
    {
        return Some("the will's topic is not writable by this client");
    }
    let policy = shard.access.listener(listener);
    if policy.session_takeover == access::SessionTakeover::SameUser
        && let Some(session) = shard
            .sessions
            .find(client_id)
            .and_then(|id| shard.sessions.get(id))
        && access::username(session) != username
    {
        return Some("the client id's session belongs to another user (session_takeover)");
    }
    None
}

/// Records who the session belongs to (kept only for a user, or under an ACL).
fn set_username(session: &mut Session, username: Option<Box<str>>, acl: bool) {
    if username.is_none() && !acl && session.extras().is_none_or(|e| e.access.is_none()) {
        return;
    }
    // A new memo: the verdicts of the previous connection may have been another user's.
    session.extras_mut().access = Some(Box::new(access::SessionAccess::new(username)));
}

/// A session resumed by a new connection: its delayed will is cancelled (MQTT-3.1.3-9).
fn resume_session(shard: &mut Shard, session_id: u32) {
    if let Some(extras) = shard
        .sessions
        .get_mut(session_id)
        .and_then(|s| s.extras_if_any())
    {
        extras.delayed_will = None;
    }
}

/// The keep-alive in force, and the Server Keep Alive to announce (MQTT 5, when it differs
/// from what the client asked: MQTT-3.2.2-21). A 3.x client over the cap was refused
/// already ([`refuse_keep_alive_over_cap`]): its keep-alive is what it asked.
fn effective_keep_alive(shard: &Shard, request: &Request) -> (u16, Option<u16>) {
    let asked = request.connect.keep_alive_secs;
    let cap = shard.config.max_keep_alive_secs;
    if request.v5.is_none() || cap == 0 {
        return (asked, None);
    }
    if asked == 0 || asked > cap {
        (cap, Some(cap))
    } else {
        (asked, None)
    }
}

/// Fills the connection's object from the CONNECT.
fn bind(
    shard: &mut Shard,
    key: ConnId,
    session_id: u32,
    request: Request,
    keep_alive_secs: u16,
    auth: Option<&AuthDone>,
) {
    let keep_alive_timeout_ms = shard.config.keep_alive_timeout_ms(keep_alive_secs);
    let Request { connect, v5, .. } = request;
    let (v5, will_props) = match v5 {
        Some((props, will_props)) => {
            let mut v5 = conn_v5(&props);
            v5.auth = auth.map(|a| {
                Box::new(AuthState::Authenticated {
                    method: a.method.clone(),
                    exchange: None,
                })
            });
            (Some(v5), will_props)
        }
        None => (None, None),
    };
    let will = connect.will.map(|will| {
        let w = will_props.unwrap_or_default();
        Box::new(PendingWill {
            props: will_message_props(&w),
            expiry_secs: w.message_expiry_interval_secs,
            delay_secs: w.will_delay_interval_secs.unwrap_or(0),
            due_ms: 0,
            will,
        })
    });
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.counted = true;
        conn.phase = Phase::Connected;
        conn.version = connect.version;
        conn.session = session_id;
        // At most 65 535 s × 1.5 = 98 302 500 ms: a u32 holds it.
        conn.keep_alive_timeout_ms =
            keep_alive_timeout_ms.map_or(0, |ms| u32::try_from(ms).unwrap_or(u32::MAX));
        conn.will = will;
        conn.v5 = v5;
    }
}

/// The per-connection MQTT 5 state a CONNECT's properties set.
fn conn_v5(props: &ConnectProperties) -> Box<ConnV5> {
    Box::new(ConnV5 {
        receive_maximum: props.receive_maximum.map_or(u16::MAX, |n| n.get()),
        max_packet_size_bytes: props.max_packet_size_bytes(),
        topic_aliases: Vec::new(),
        topic_alias_bytes: 0,
        problem_information: props.request_problem_information.unwrap_or(true),
        out_aliases: OutAliases::new(props.topic_alias_maximum.unwrap_or(0)),
        auth: None,
    })
}

/// The will properties that travel with the will message (§3.1.3.2).
fn will_message_props(w: &WillProperties) -> Option<Box<MessageProps>> {
    let view = PublishProperties {
        payload_format: w.payload_format,
        message_expiry_interval_secs: None,
        topic_alias: None,
        response_topic: w.response_topic.as_deref(),
        correlation_data: w.correlation_data.as_deref(),
        user_properties: UserProperties::from_owned(&w.user_properties),
        subscription_identifiers: SubscriptionIds::NONE,
        content_type: w.content_type.as_deref(),
    };
    MessageProps::from_publish(&view, None)
}

/// What a successful CONNACK says beyond the server's limits.
struct Granted {
    session_present: bool,
    /// Whether the client id was assigned (it is then announced).
    assigned: bool,
    server_keep_alive_secs: Option<u16>,
    auth: Option<AuthDone>,
}

/// The properties of a successful v5 CONNACK (§3.2.2.3): only those whose value is not the
/// one a client assumes when the property is absent. Retain, Wildcard Subscription,
/// Subscription Identifier and Shared Subscription Available (all supported: absent means
/// 1), a Receive Maximum of 65 535, Maximum QoS 2, a Maximum Packet Size at the protocol's
/// own limit and a Topic Alias Maximum of 0 are left out, so the CONNACK fits a small
/// Maximum Packet Size.
fn connack_properties<'a>(
    config: &CoreConfig,
    assigned_id: Option<&'a str>,
    granted: &'a Granted,
) -> ConnAckProperties<'a> {
    ConnAckProperties {
        receive_maximum: (config.receive_maximum != u16::MAX).then_some(config.receive_maximum),
        maximum_packet_size: u32::try_from(config.max_packet_size_bytes)
            .ok()
            .filter(|&n| (n as usize) < MAX_PACKET_SIZE_BYTES),
        assigned_client_identifier: assigned_id,
        topic_alias_maximum: (config.topic_alias_maximum > 0).then_some(config.topic_alias_maximum),
        server_keep_alive_secs: granted.server_keep_alive_secs,
        authentication_method: granted.auth.as_ref().map(|a| &*a.method),
        authentication_data: granted.auth.as_ref().and_then(|a| a.data.as_deref()),
        ..ConnAckProperties::default()
    }
}

/// The largest packet MQTT can frame: a five-byte fixed header and the largest remaining
/// length. A Maximum Packet Size of this or more says nothing.
const MAX_PACKET_SIZE_BYTES: usize = MAX_FIXED_HEADER_LEN_BYTES + MAX_REMAINING_LENGTH_BYTES;

/// A v5 client whose Maximum Packet Size is too small for its CONNACK, even with only the
/// properties it must be told (the Reason String and User Properties, which it may go
/// without, MQTT-3.2.2-19/20, are never sent here): refused before any session is touched,
/// because a session must never run without its CONNACK. It gets CONNACK 0x95 Packet too
/// large (no properties, 5 bytes) if even that fits, and the connection is closed.
fn refuse_connack_too_large(
    shard: &mut Shard,
    key: ConnId,
    request: &Request,
    client_id: &str,
    granted: &Granted,
    now_ms: u64,
) -> Option<Flow> {
    let (props, _) = request.v5.as_ref()?;
    let peer_max = props.max_packet_size_bytes();
    let assigned_id = granted.assigned.then_some(client_id);
    let connack = ConnAckV5 {
        session_present: true,
        reason: ReasonCode::Success,
        properties: connack_properties(&shard.config, assigned_id, granted),
    };
    let needed = match connack_v5_len(&connack, UNLIMITED_PACKET_SIZE_BYTES) {
        Ok(len) if len <= peer_max => return None,
        Ok(len) => len,
        Err(error) => {
            debug_assert!(false, "CONNACK does not encode: {error}");
            return None;
        }
    };
    shard.stats.refused_connect += 1;
    shard.stats.refused_connack_too_large += 1;
    let code = ReasonCode::PacketTooLarge;
    let refusal = ConnAckV5 {
        session_present: false,
        reason: code,
        properties: ConnAckProperties::default(),
    };
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.version = ProtocolVersion::V5;
    }
    // Nothing is written when even the 5-byte refusal exceeds the client's limit.
    shard.write_with(key, |out, _, _| encode_connack_v5(out, &refusal, peer_max));
    let why = format!(
        "client {client_id:?} announced a Maximum Packet Size of {peer_max} bytes; its CONNACK \
         needs {needed} (CONNACK 0x95 if it fits, then close)"
    );
    let what = "CONNECT refused: CONNACK larger than the client's Maximum Packet Size";
    lifecycle::close_for(shard, key, what, code, &why, now_ms);
    Some(Flow::Stop)
}

/// CONNACK 0x00; for MQTT 5 with what the server allows (§3.2.2.3). Its size was checked
/// against the client's Maximum Packet Size before the session was touched
/// ([`refuse_connack_too_large`]).
fn write_connack(shard: &mut Shard, key: ConnId, session_id: u32, granted: &Granted) {
    let session_present = granted.session_present;
    let version = shard
        .pool
        .get(key)
        .map_or(ProtocolVersion::V311, |c| c.version);
    if version != ProtocolVersion::V5 {
        shard.write(key, |out, v| {
            encode_connack(out, v, session_present, ConnectReturnCode::Accepted)
        });
        return;
    }
    let assigned_id: Option<Box<str>> = granted
        .assigned
        .then(|| shard.sessions.get(session_id).map(|s| s.client_id.clone()))
        .flatten();
    let connack = ConnAckV5 {
        session_present,
        reason: ReasonCode::Success,
        properties: connack_properties(&shard.config, assigned_id.as_deref(), granted),
    };
    let written = shard.write_with(key, |out, _, peer_max| {
        encode_connack_v5(out, &connack, peer_max)
    });
    // Invariant: the size was checked before the session was bound.
    debug_assert!(written, "CONNACK not written after its size was checked");
}

/// Sends a refusing CONNACK (the connection is closed right after): for 3.x the return
/// code nearest `code`.
pub(crate) fn refuse(shard: &mut Shard, key: ConnId, version: ProtocolVersion, code: ReasonCode) {
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.version = version;
    }
    // 3.1.1 has no return code for some reasons: then no CONNACK, only the close (§3.2.2.3).
    if version.is_v3() && !refusals::has_v3_return_code(code) {
        return;
    }
    shard.write_with(key, |out, _, peer_max| {
        let start = out.len();
        refusals::refusing_connack(out, version, code, peer_max).map(|_| out.len() - start)
    });
}

impl Shard {
    /// A fresh client id that no loop holds, reserved on this one.
    pub(crate) fn assign_client_id(&mut self) -> (Box<str>, Reservation) {
        loop {
            self.next_assigned_id += 1;
            let id = self
                .shared
                .assigned_client_id(self.loop_index, self.next_assigned_id);
            if self.sessions.find(&id).is_some() {
                continue;
            }
            // A client may have chosen this id itself, on another loop.
            if let Route::Here(reservation) = self.shared.directory.route(&id, self.loop_index) {
                return (id.into_boxed_str(), reservation);
            }
        }
    }
}
