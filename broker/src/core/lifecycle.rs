//! The end of connections and sessions: closing for a reason, DISCONNECT, takeover, handover
//! to another loop, the will, and the timers that close silent connections.

use std::fmt::Display;

use crate::core::conn::Phase;
use crate::core::input::Flow;
use crate::core::{Action, ConnId, Shard, routing};
use crate::protocol::PublishRef;

/// Closes `key` because of bad input or a limit, logging the client and the reason once.
pub(crate) fn close_for(
    shard: &mut Shard,
    key: ConnId,
    what: &str,
    reason: &dyn Display,
    _now_ms: u64,
) {
    let Ok(conn) = shard.pool.get(key) else {
        return;
    };
    if conn.phase == Phase::Closing {
        return;
    }
    let client = client_name(shard, key);
    tracing::info!(client = %client, conn = %key, reason = %reason, "closing connection: {what}");
    shard.stats.closed_bad_input += 1;
    start_close(shard, key);
}

/// Marks `key` closing and asks the driver to close it.
fn start_close(shard: &mut Shard, key: ConnId) {
    if let Ok(conn) = shard.pool.get_mut(key)
        && conn.phase != Phase::Closing
    {
        conn.phase = Phase::Closing;
        shard.actions.push_back(Action::Close(key));
    }
}

/// The client id of `key`, or its handle before CONNECT.
fn client_name(shard: &Shard, key: ConnId) -> String {
    let session = shard.pool.get(key).map(|c| c.session).unwrap_or(u32::MAX);
    shard
        .sessions
        .get(session)
        .filter(|s| s.conn == Some(key))
        .map_or_else(|| format!("<conn {key}>"), |s| s.client_id.to_string())
}

/// DISCONNECT: the will is discarded (MQTT-3.14.4-3) and the connection closed.
pub(crate) fn handle_disconnect(shard: &mut Shard, key: ConnId) -> Flow {
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.will = None;
    }
    start_close(shard, key);
    Flow::Stop
}

/// A second connection with the same client id: the old one is closed (MQTT-3.1.4-2) and
/// detached from the session, which the new connection then takes.
pub(crate) fn take_over(shard: &mut Shard, old: ConnId, client_id: &str, _now_ms: u64) {
    tracing::info!(client = %client_id, conn = %old, "session taken over by a new connection");
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
/// MQTT-3.1.2-10), unbind the session and end it if it was clean, release the object.
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
    if let Some(will) = will {
        publish_will(shard, &will, now_ms);
    }
    if session_id != u32::MAX {
        let clean = match shard.sessions.get_mut(session_id) {
            Some(session) if session.conn == Some(key) => {
                session.conn = None;
                session.clean
            }
            _ => false,
        };
        if clean {
            end_session(shard, session_id);
        }
    }
    release(shard, key, now_ms);
}

/// Publishes a will as if its client had sent it.
fn publish_will(shard: &mut Shard, will: &crate::protocol::Will, now_ms: u64) {
    shard.stats.wills_published += 1;
    let view = PublishRef {
        topic: &will.topic,
        payload: &will.payload,
        qos: will.qos,
        retain: will.retain,
        dup: false,
        packet_id: None,
    };
    routing::route_local_publish(shard, &view, now_ms);
}

/// Ends a session: its subscriptions leave the index and its messages are dropped.
pub(crate) fn end_session(shard: &mut Shard, session_id: u32) {
    if shard.sessions.get(session_id).is_none() {
        return;
    }
    let session = shard.sessions.remove(session_id);
    let filters = session.subscriptions.iter().map(|(f, _)| &**f);
    shard.index.unsubscribe_all(session_id, filters);
    shard
        .shared
        .set_subscriptions(shard.loop_index, shard.index.len());
}

/// Returns the connection's buffers to the loop and its object to the pool.
fn release(shard: &mut Shard, key: ConnId, now_ms: u64) {
    if let Ok(conn) = shard.pool.get_mut(key) {
        let input = std::mem::take(&mut conn.input);
        let output = std::mem::take(&mut conn.output);
        shard.buffers.give(input);
        shard.buffers.give(output);
    }
    let _ = shard.pool.release(key, now_ms);
}

/// Closes connections whose connect timeout or keep-alive (1.5 × the interval,
/// MQTT-3.1.2-24) has run out; files the others again at their real deadline.
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
        let deadline = match conn.phase {
            Phase::AwaitingConnect => conn.last_seen_ms + shard.config.connect_timeout_ms,
            Phase::Connected if conn.keep_alive_timeout_ms > 0 => {
                conn.last_seen_ms + conn.keep_alive_timeout_ms
            }
            Phase::Connected | Phase::Closing => continue,
        };
        if now_ms >= deadline {
            let what = if conn.phase == Phase::AwaitingConnect {
                "connect timeout"
            } else {
                "keep-alive timeout (MQTT-3.1.2-24)"
            };
            shard.stats.closed_timeout += 1;
            if conn.phase == Phase::AwaitingConnect {
                shard.stats.closed_connect_timeout += 1;
            }
            let client = client_name(shard, key);
            tracing::info!(client = %client, conn = %key, "closing connection: {what}");
            start_close(shard, key);
        } else {
            shard.arm_timer(key, deadline);
        }
    }
    shard.timer_scratch = due;
}
