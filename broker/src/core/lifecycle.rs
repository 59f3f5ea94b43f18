//! The end of connections and sessions: closing for a reason, DISCONNECT, takeover, handover
//! to another loop, the will, and the timers that close silent connections.
//!
//! MQTT 5 adds: a DISCONNECT with a reason code from the server wherever it closes a v5
//! connection (§4.13: 0x81, 0x82, 0x8D, 0x8E, 0x93, 0x94, 0x95, 0x99 …);
//! the Session Expiry Interval (a session outlives its connection by that long, or for
//! ever); and the Will Delay Interval (the will waits that long, and a reconnect within it
//! cancels it, MQTT-3.1.3-9). Both deadlines are kept in [`SessionTimers`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Display;

use crate::core::conn::{PendingWill, Phase};
use crate::core::input::Flow;
use crate::core::message::Message;
use crate::core::observe::DropReason;
use crate::core::refusals::Refusal;
use crate::core::{Action, ConnId, Shard, groups, routing};
use crate::protocol::v5::{DisconnectV5, PublishV5};
use crate::protocol::{ProtocolVersion, ReasonCode};

/// Deadlines of offline sessions (expiry, delayed will): (due ms, session index). An entry
/// is only a reminder: what is due is read from the session itself, so an entry made
/// stale by a reconnect (or a reused slot) finds nothing due and is dropped.
pub type SessionTimers = BinaryHeap<Reverse<(u64, u32)>>;

/// Closes `key` because of bad input or a limit, logging the client and the reason once.
/// A v5 client that got its CONNACK is told why with a DISCONNECT carrying `code`.
pub(crate) fn close_for(
    shard: &mut Shard,
    key: ConnId,
    what: &str,
    code: ReasonCode,
    reason: &dyn Display,
    _now_ms: u64,
) {
    let Ok(conn) = shard.pool.get(key) else {
        return;
    };
    if conn.phase == Phase::Closing {
        return;
    }
    let connected = conn.phase == Phase::Connected;
    let client = client_name(shard, key);
    tracing::info!(client = %client, conn = %key, reason = %reason, code = code.as_u8(), "closing connection: {what}");
    shard.stats.closed_bad_input += 1;
    if connected {
        shard.write_disconnect(key, code);
    }
    start_close(shard, key);
}

/// Marks `key` closing and asks the driver to close it (what is in its output is written
/// first).
pub(crate) fn start_close(shard: &mut Shard, key: ConnId) {
    if let Ok(conn) = shard.pool.get_mut(key)
        && conn.phase != Phase::Closing
    {
        conn.phase = Phase::Closing;
        shard.actions.push_back(Action::Close(key));
    }
}

/// The client id of `key`, or its handle before CONNECT.
pub(crate) fn client_name(shard: &Shard, key: ConnId) -> String {
    let session = shard.pool.get(key).map(|c| c.session).unwrap_or(u32::MAX);
    shard
        .sessions
        .get(session)
        .filter(|s| s.conn == Some(key))
        .map_or_else(|| format!("<conn {key}>"), |s| s.client_id.to_string())
}

/// DISCONNECT: the will is discarded (MQTT-3.14.4-3) unless a v5 client asked for it
/// (0x04); a v5 client may change its Session Expiry Interval, but not from 0
/// (§3.14.2.2.2: a protocol error).
pub(crate) fn handle_disconnect(
    shard: &mut Shard,
    key: ConnId,
    disconnect: Option<&DisconnectV5<'_>>,
    now_ms: u64,
) -> Flow {
    let Ok(conn) = shard.pool.get(key) else {
        return Flow::Stop;
    };
    let session_id = conn.session;
    if let Some(expiry) = disconnect.and_then(|d| d.session_expiry_interval_secs) {
        let Some(session) = shard.sessions.get_mut(session_id) else {
            return Flow::Stop;
        };
        if session.expiry_secs == 0 && expiry != 0 {
            let what = "DISCONNECT sets a Session Expiry Interval after CONNECT's 0";
            close_for(shard, key, what, ReasonCode::ProtocolError, &expiry, now_ms);
            return Flow::Stop;
        }
        session.expiry_secs = expiry;
        shard.journal.session_changed(session_id, session);
    }
    let keep_will = disconnect.is_some_and(|d| d.reason == ReasonCode::DisconnectWithWillMessage);
    let code = disconnect.map_or(ReasonCode::Success, |d| d.reason);
    tracing::info!(
        client = %client_name(shard, key),
        code = code.as_u8(),
        will = keep_will,
        "client disconnected (DISCONNECT)"
    );
    if let Ok(conn) = shard.pool.get_mut(key)
        && !keep_will
        && conn.will.take().is_some()
        && let Some(session) = shard.sessions.get_mut(session_id)
    {
        shard.journal.session_changed(session_id, session);
    }
    start_close(shard, key);
    Flow::Stop
}

/// A second connection with the same client id: the old one is closed (MQTT-3.1.4-2; a v5
/// one told 0x8E Session taken over) and detached from the session, which the new
/// connection then takes. If the new connection `continues` the session, a will with a
/// Will Delay Interval is not sent (MQTT-3.1.3-9); one without a delay is, as on any close.
pub(crate) fn take_over(
    shard: &mut Shard,
    old: ConnId,
    client_id: &str,
    continues: bool,
    _now_ms: u64,
) {
    tracing::info!(client = %client_id, conn = %old, "session taken over by a new connection");
    shard.write_disconnect(old, ReasonCode::SessionTakenOver);
    if let Ok(conn) = shard.pool.get_mut(old)
        && continues
        && conn.will.as_ref().is_some_and(|w| w.delay_secs > 0)
    {
        conn.will = None;
    }
    if let Ok(conn) = shard.pool.get(old) {
        let session = conn.session;
        if let Some(s) = shard.sessions.get_mut(session) {
            s.conn = None;
        }
    }
    if let Ok(conn) = shard.pool.get_mut(old) {
        conn.session = u32::MAX;
    }
    start_close(shard, old);
}

/// Hands a connection whose CONNECT belongs to loop `to` over, with the bytes to replay.
pub(crate) fn hand_over(shard: &mut Shard, key: ConnId, to: usize, bytes: &[u8], now_ms: u64) {
    shard.stats.handed_over += 1;
    shard.actions.push_back(Action::Handover {
        conn: key,
        to,
        bytes: bytes.to_vec(),
    });
    release(shard, key, now_ms);
}

/// The socket is gone: publish the will if there is one (not after DISCONNECT,
/// MQTT-3.1.2-10; after its delay, for v5), unbind the session and end it if it does not
/// outlive its connection, release the object.
pub(crate) fn finalize(shard: &mut Shard, key: ConnId, now_ms: u64) {
    let Ok(conn) = shard.pool.get_mut(key) else {
        return;
    };
    let counted = std::mem::take(&mut conn.counted);
    let will = conn.will.take();
    let session_id = conn.session;
    if counted {
        shard.shared.disconnected();
    }
    let mut will = will.map(|w| *w);
    if session_id != u32::MAX {
        let owned = shard
            .sessions
            .get(session_id)
            .is_some_and(|s| s.conn == Some(key));
        if owned {
            will = will.filter(|w| will_allowed(shard, session_id, w));
            will = unbind(shard, session_id, will, now_ms);
        }
    }
    if let Some(will) = will {
        publish_will(shard, will, now_ms);
    }
    release(shard, key, now_ms);
}

/// Detaches a session from its ended connection: ends it (expiry 0), or files its expiry
/// and a delayed will. Returns the will to publish now, if any.
fn unbind(
    shard: &mut Shard,
    session_id: u32,
    will: Option<PendingWill>,
    now_ms: u64,
) -> Option<PendingWill> {
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return will;
    };
    session.conn = None;
    let expiry_secs = session.expiry_secs;
    if expiry_secs == 0 {
        end_session(shard, session_id, now_ms);
        return will;
    }
    shard.journal.session_changed(session_id, session);
    groups::sync_presence(shard, session_id);
    if expiry_secs != u32::MAX {
        let due = now_ms.saturating_add(u64::from(expiry_secs) * 1000).max(1);
        if let Some(session) = shard.sessions.get_mut(session_id) {
            session.extras_mut().expiry_due_ms = due;
        }
        shard.session_timers.push(Reverse((due, session_id)));
    }
    match will {
        Some(mut will) if will.delay_secs > 0 => {
            // Published when the delay or the session ends, whichever is first (§3.1.3.2.2).
            let delay_secs = will.delay_secs.min(expiry_secs);
            will.due_ms = now_ms.saturating_add(u64::from(delay_secs) * 1000);
            let due = will.due_ms;
            if let Some(session) = shard.sessions.get_mut(session_id) {
                session.extras_mut().delayed_will = Some(will);
            }
            shard.session_timers.push(Reverse((due, session_id)));
            None
        }
        will => will,
    }
}

/// Whether the session's client may still publish its will (the ACL may have changed since
/// its CONNECT): one it may not is dropped, counted as a denied PUBLISH.
fn will_allowed(shard: &mut Shard, session_id: u32, will: &PendingWill) -> bool {
    will_topic_allowed(shard, session_id, &will.will.topic)
}

fn will_topic_allowed(shard: &mut Shard, session_id: u32, topic: &str) -> bool {
    let allowed = crate::core::access::may_write(shard, session_id, topic);
    if !allowed {
        shard.stats.denied_publish += 1;
        let client = shard.sessions.get(session_id).map_or("", |s| &s.client_id);
        tracing::info!(
            client,
            topic,
            "will not published: its client may no longer write its topic"
        );
    }
    allowed
}

/// Publishes a will as if its client had sent it (its Message Expiry Interval counted from
/// now, its properties passed on).
fn publish_will(shard: &mut Shard, will: PendingWill, now_ms: u64) {
    shard.stats.wills_published += 1;
    let PendingWill {
        will,
        props,
        expiry_secs,
        ..
    } = will;
    let expires_at_ms = expiry_secs.map(|secs| now_ms.saturating_add(u64::from(secs) * 1000));
    let message = Message::new(
        will.topic.into(),
        will.payload.into(),
        will.qos,
        will.retain,
        props,
    );
    let mut view: PublishV5<'_> = message.as_publish(message.qos, message.retain, false, None);
    view.properties.message_expiry_interval_secs = expiry_secs;
    routing::route_local_publish(shard, None, None, &view, expires_at_ms, now_ms);
}

/// Ends a session: a delayed will is published now (§3.1.3.2.2), its subscriptions leave
/// the index and the groups, the messages shared groups gave it go to other members
/// (queued ones, and QoS 1 in flight; QoS 2 in flight never, MQTT-4.8.2-5), and the rest is
/// dropped.
pub(crate) fn end_session(shard: &mut Shard, session_id: u32, now_ms: u64) {
    if shard.sessions.get(session_id).is_none() {
        return;
    }
    let delayed_allowed = shard
        .sessions
        .get(session_id)
        .and_then(|s| s.extras())
        .and_then(|e| e.delayed_will.as_ref())
        .map(|w| w.will.topic.clone())
        .is_none_or(|topic| will_topic_allowed(shard, session_id, &topic));
    let mut session = shard.sessions.remove(session_id);
    shard.journal.session_ended(&session);
    shard.released_bytes += session.pinned_bytes();
    let mut plain = Vec::with_capacity(session.subscriptions.len());
    for (filter, _) in session.subscriptions.iter() {
        match crate::protocol::v5::parse_shared_filter(filter) {
            Ok(Some(shared)) => groups::leave(shard, session_id, shared),
            _ => plain.push(filter),
        }
    }
    for filter in plain {
        shard.index_unsubscribe(filter, session_id);
    }
    shard.publish_subscriptions();
    let mut traffic = session.take_traffic();
    let delayed_will = traffic.extras.delayed_will.take();
    // A QoS 2 message already sent must not go to another member (MQTT-4.8.2-5).
    let inflight = traffic
        .inflight
        .into_iter()
        .filter(|m| m.qos != crate::protocol::QoS::ExactlyOnce)
        .map(|m| (m.group, m.message));
    let queued = traffic
        .queue
        .into_iter()
        .map(|q| (q.group, q.message, true));
    let inflight = inflight.map(|(group, message)| (group, message, false));
    for (group, message, never_sent) in inflight.chain(queued) {
        match group {
            Some(group) => groups::redispatch(shard, group, message, now_ms),
            // What was in flight reached the client or not: only what never left is
            // known to be lost.
            None if never_sent => shard.stats.count_drop(DropReason::SessionEnded),
            None => {}
        }
    }
    if let Some(will) = delayed_will.filter(|_| delayed_allowed) {
        publish_will(shard, will, now_ms);
    }
}

/// Returns the connection's buffers to the loop and its object to the pool.
fn release(shard: &mut Shard, key: ConnId, now_ms: u64) {
    shard.peers.take(key);
    shard.verifying.forget(key);
    if let Ok(conn) = shard.pool.get(key) {
        shard.released_bytes += conn.pinned_bytes();
    }
    shard.return_buffers(key);
    let _ = shard.pool.release(key, now_ms);
}

/// Publishes delayed wills and ends expired sessions whose deadlines have come.
pub(crate) fn expire_sessions(shard: &mut Shard, now_ms: u64) {
    while let Some(&Reverse((due, session_id))) = shard.session_timers.peek() {
        if due > now_ms {
            break;
        }
        shard.session_timers.pop();
        let Some(session) = shard.sessions.get_mut(session_id) else {
            continue;
        };
        if session.conn.is_some() {
            continue; // the client came back: both deadlines are void
        }
        let will = session
            .extras_if_any()
            .filter(|e| e.delayed_will.as_ref().is_some_and(|w| w.due_ms <= now_ms))
            .and_then(|e| e.delayed_will.take());
        let expired = session.expiry_due_ms() != 0 && session.expiry_due_ms() <= now_ms;
        if let Some(will) = will {
            if let Some(session) = shard.sessions.get_mut(session_id) {
                shard.journal.session_changed(session_id, session);
            }
            if will_allowed(shard, session_id, &will) {
                publish_will(shard, will, now_ms);
            }
        }
        if expired {
            tracing::debug!(session = session_id, "session expired");
            end_session(shard, session_id, now_ms);
        }
    }
}

/// The deadline a connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// A whole CONNECT within `connect_timeout_ms` of accept (bytes trickling in do not
    /// extend it).
    Connect,
    /// A packet begun after CONNECT whole within `partial_packet_timeout_ms`.
    PartialPacket,
    /// A packet within 1.5 × the keep-alive interval (MQTT-3.1.2-24).
    KeepAlive,
}

impl Deadline {
    fn what(self) -> &'static str {
        match self {
            Deadline::Connect => "connect timeout",
            Deadline::PartialPacket => "partial packet timeout (partial_packet_timeout_ms)",
            Deadline::KeepAlive => "keep-alive timeout (MQTT-3.1.2-24)",
        }
    }
}

/// The deadline `key` is held to now and when it falls, pushed back by the loop's stalls
/// since the moment it counts from; `None` when nothing is due (connected, no packet
/// partial, keep-alive off; closing; gone).
fn deadline_of(shard: &Shard, key: ConnId, now_ms: u64) -> Option<(Deadline, u64)> {
    let conn = shard.pool.get(key).ok()?;
    let (deadline, timeout_ms) = match conn.phase {
        Phase::AwaitingConnect | Phase::Authenticating | Phase::Verifying => {
            (Deadline::Connect, shard.config.connect_timeout_ms)
        }
        Phase::Connected if !conn.input.is_empty() => (
            Deadline::PartialPacket,
            shard.config.partial_packet_timeout_ms,
        ),
        Phase::Connected if conn.keep_alive_timeout_ms > 0 => {
            (Deadline::KeepAlive, u64::from(conn.keep_alive_timeout_ms))
        }
        Phase::Connected | Phase::Closing => return None,
    };
    let mut since = conn.last_seen_ms;
    if deadline == Deadline::KeepAlive {
        // Time the broker chose not to read the client (a flow-control hold, a rate pause)
        // does not count against it.
        since = since.max(conn.gate.as_ref().map_or(0, |g| g.credit_until(now_ms)));
    }
    let credit = shard.stalls.credit_since(since);
    Some((
        deadline,
        since.saturating_add(timeout_ms).saturating_add(credit),
    ))
}

/// Closes connections whose connect, partial-packet or keep-alive deadline has passed;
/// files the others again at their real deadline.
pub(crate) fn expire_timers(shard: &mut Shard, now_ms: u64) {
    let mut due = std::mem::take(&mut shard.timer_scratch);
    due.clear();
    shard.timers.expire(now_ms, &mut due);
    for &(key, filed_ms) in &due {
        let Ok(conn) = shard.pool.get_mut(key) else {
            continue;
        };
        if conn.timer_due_ms != filed_ms {
            continue; // superseded by a later entry
        }
        conn.timer_due_ms = 0;
        match deadline_of(shard, key, now_ms) {
            Some((_, at_ms)) if now_ms < at_ms => shard.arm_timer(key, at_ms),
            Some((deadline, _)) => close_at_deadline(shard, key, deadline, now_ms),
            None => {}
        }
    }
    shard.timer_scratch = due;
}

/// Closes `key`, whose `deadline` has passed: counted, logged, and a v5 client silent past
/// its keep-alive told 0x8D.
fn close_at_deadline(shard: &mut Shard, key: ConnId, deadline: Deadline, now_ms: u64) {
    shard.stats.closed_timeout += 1;
    match deadline {
        Deadline::Connect => {
            // A flood of sockets that never send CONNECT times out by the thousand:
            // counted and summarised (`core::refusals`), not one line each.
            let client = client_name(shard, key);
            shard.refused(Refusal::ConnectTimeout, now_ms, &client);
            start_close(shard, key);
            return;
        }
        Deadline::PartialPacket => shard.stats.closed_partial_packet_timeout += 1,
        Deadline::KeepAlive => {
            if shard
                .pool
                .get(key)
                .is_ok_and(|c| c.version == ProtocolVersion::V5)
            {
                shard.write_disconnect(key, ReasonCode::KeepAliveTimeout);
            }
        }
    }
    let client = client_name(shard, key);
    tracing::info!(client = %client, conn = %key, "closing connection: {}", deadline.what());
    start_close(shard, key);
}

/// A graceful shutdown: v5 clients are told 0x8B Server shutting down.
pub(crate) fn notify_shutdown(shard: &mut Shard, key: ConnId) {
    if shard
        .pool
        .get(key)
        .is_ok_and(|c| c.phase == Phase::Connected)
    {
        shard.write_disconnect(key, ReasonCode::ServerShuttingDown);
    }
}
