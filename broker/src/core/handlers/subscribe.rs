//! SUBSCRIBE (with retained messages delivered after the SUBACK) and UNSUBSCRIBE.

use bumpalo::Bump;

use crate::core::input::Flow;
use crate::core::{ConnId, Shard, delivery};
use crate::protocol::{QoS, SubackReturnCode, encode_suback, encode_unsuback};

/// The highest QoS this broker grants.
pub const MAX_GRANTED_QOS: QoS = QoS::ExactlyOnce;

/// SUBSCRIBE: add or replace each subscription (MQTT-3.8.4-3), answer one return code per
/// filter in order (MQTT-3.8.4-5), then send the retained messages that match (MQTT-3.3.1-6).
pub(crate) fn handle_subscribe(
    shard: &mut Shard,
    key: ConnId,
    packet_id: u16,
    filters: &[(String, QoS)],
    now_ms: u64,
) -> Flow {
    let Some((session_id, arena)) = borrow_arena(shard, key) else {
        return Flow::Stop;
    };
    {
        // The return codes are per-packet scratch in the connection's arena.
        let mut codes = bumpalo::collections::Vec::with_capacity_in(filters.len(), &arena);
        for (filter, asked) in filters {
            codes.push(subscribe_one(shard, key, session_id, filter, *asked));
        }
        shard
            .shared
            .set_subscriptions(shard.loop_index, shard.index.len());
        shard.write(key, |out, v| encode_suback(out, v, packet_id, &codes));
        for (code, (filter, _)) in codes.iter().zip(filters) {
            if let SubackReturnCode::Granted(granted) = code {
                delivery::send_retained(shard, key, filter, *granted, now_ms);
            }
        }
    }
    return_arena(shard, key, arena);
    Flow::Continue
}

/// One filter of a SUBSCRIBE. A refusal is counted every time and logged once per client.
fn subscribe_one(
    shard: &mut Shard,
    key: ConnId,
    session_id: u32,
    filter: &str,
    asked: QoS,
) -> SubackReturnCode {
    let granted = asked.min(MAX_GRANTED_QOS);
    if let Some(refusal) = shard.config.topic_refusal(filter) {
        shard.count_topic_refusal(refusal);
        log_refusal(shard, key, session_id, filter, &refusal);
        return SubackReturnCode::Failure;
    }
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return SubackReturnCode::Failure;
    };
    let existing = session
        .subscriptions
        .iter()
        .position(|(f, _)| &**f == filter);
    if existing.is_none()
        && session.subscriptions.len() >= shard.config.max_subscriptions_per_client
    {
        shard.stats.refused_subscriptions += 1;
        log_refusal(
            shard,
            key,
            session_id,
            filter,
            &"max_subscriptions_per_client",
        );
        return SubackReturnCode::Failure;
    }
    match shard.index.subscribe(filter, session_id, granted) {
        Ok(_) => {
            match existing {
                Some(at) => session.subscriptions[at].1 = granted,
                None => session.add_subscription(filter, granted),
            }
            SubackReturnCode::Granted(granted)
        }
        Err(error) => {
            log_refusal(shard, key, session_id, filter, &error);
            SubackReturnCode::Failure
        }
    }
}

/// Logs a refused subscription, the first one of this connection only (no log flood from a
/// client that keeps asking).
fn log_refusal(
    shard: &mut Shard,
    key: ConnId,
    session_id: u32,
    filter: &str,
    reason: &dyn std::fmt::Display,
) {
    let Ok(conn) = shard.pool.get_mut(key) else {
        return;
    };
    if std::mem::replace(&mut conn.refusal_logged, true) {
        return;
    }
    let client = shard.sessions.get(session_id).map_or("", |s| &s.client_id);
    tracing::info!(client, filter, %reason, "subscription refused (further refusals for this client are counted, not logged)");
}

/// UNSUBSCRIBE: remove each subscription the session has (MQTT-3.10.4-1), then UNSUBACK
/// (MQTT-3.10.4-4), also when none matched (MQTT-3.10.4-5).
pub(crate) fn handle_unsubscribe(
    shard: &mut Shard,
    key: ConnId,
    packet_id: u16,
    filters: &[String],
) -> Flow {
    let Ok(conn) = shard.pool.get(key) else {
        return Flow::Stop;
    };
    let session_id = conn.session;
    if let Some(session) = shard.sessions.get_mut(session_id) {
        for filter in filters {
            if shard.index.unsubscribe(filter, session_id).is_some() {
                session.subscriptions.retain(|(f, _)| **f != **filter);
            }
        }
    }
    shard
        .shared
        .set_subscriptions(shard.loop_index, shard.index.len());
    shard.write(key, |out, v| encode_unsuback(out, v, packet_id));
    Flow::Continue
}

/// Takes the connection's arena out (leaving an empty one, which allocates nothing) so it
/// can be used while the shard is borrowed mutably.
fn borrow_arena(shard: &mut Shard, key: ConnId) -> Option<(u32, Bump)> {
    let conn = shard.pool.get_mut(key).ok()?;
    Some((conn.session, std::mem::take(&mut conn.arena)))
}

/// Resets the arena (keeping its chunk) and puts it back.
fn return_arena(shard: &mut Shard, key: ConnId, mut arena: Bump) {
    arena.reset();
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.arena = arena;
    }
}
