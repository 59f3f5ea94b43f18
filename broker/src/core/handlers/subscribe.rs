//! SUBSCRIBE (with retained messages delivered after the SUBACK) and UNSUBSCRIBE.
//!
//! MQTT 5 adds per-subscription options (No Local, Retain As Published, Retain Handling),
//! a Subscription Identifier for the whole packet, reason codes per filter in SUBACK and
//! UNSUBACK, and shared subscriptions (`$share/{group}/{filter}`, `core::groups`).

use bumpalo::Bump;

use crate::acl::FilterClass;
use crate::core::input::Flow;
use crate::core::subscription::SubOpts;
use crate::core::{ConnId, Shard, access, delivery, groups, lifecycle, retained_stream};
use crate::protocol::v5::{RetainHandling, SubscriptionV5, parse_shared_filter};
use crate::protocol::{QoS, ReasonCode};

/// The highest QoS this broker grants.
pub const MAX_GRANTED_QOS: QoS = QoS::ExactlyOnce;

/// SUBSCRIBE: add or replace each subscription (MQTT-3.8.4-3), answer one return code per
/// filter in order (MQTT-3.8.4-5), then send the retained messages that match
/// (MQTT-3.3.1-6) as each subscription's Retain Handling allows (MQTT-3.3.1-9/10/11).
pub(crate) fn handle_subscribe(
    shard: &mut Shard,
    key: ConnId,
    packet_id: u16,
    subscription_id: Option<u32>,
    subscriptions: &[SubscriptionV5],
    now_ms: u64,
) -> Flow {
    let Some((session_id, arena)) = borrow_arena(shard, key) else {
        return Flow::Stop;
    };
    {
        // The reason codes are per-packet scratch in the connection's arena.
        let mut codes = bumpalo::collections::Vec::with_capacity_in(subscriptions.len(), &arena);
        // Per filter: whether retained messages are wanted, for a plain subscription made.
        let mut retained = bumpalo::collections::Vec::with_capacity_in(subscriptions.len(), &arena);
        for s in subscriptions {
            let (code, new) = subscribe_one(shard, key, session_id, s, subscription_id);
            codes.push(code);
            let made = new.filter(|_| !code.is_error());
            retained.push(made.map(|new| wants_retained(s.options.retain_handling, new)));
        }
        let snapshot = retained_stream::subscriptions_published(shard);
        if !shard.write_suback(key, packet_id, &codes, &arena) {
            close_ack_too_large(shard, key, "SUBACK", now_ms);
            retained.clear();
        }
        // After the SUBACK (MQTT-3.3.1-6): the retained messages, as the client takes them.
        for ((code, s), send) in codes.iter().zip(subscriptions).zip(retained.iter()) {
            if let (Some(qos), Some(send), Some(snapshot)) =
                (QoS::from_u8(code.as_u8()), *send, snapshot)
            {
                let filter = &s.filter;
                let grant = (qos, subscription_id);
                retained_stream::subscribed(shard, session_id, filter, grant, send, snapshot);
            }
        }
        delivery::pump(shard, key, now_ms);
    }
    return_arena(shard, key, arena);
    flow_after(shard, key)
}

/// Whether the frame loop goes on after an answer that may have closed the connection.
fn flow_after(shard: &Shard, key: ConnId) -> Flow {
    match shard.pool.get(key) {
        Ok(conn) if conn.phase != crate::core::conn::Phase::Closing => Flow::Continue,
        _ => Flow::Stop,
    }
}

/// Retain Handling: 0 always, 1 only for a new subscription, 2 never (§3.8.3.1).
fn wants_retained(handling: RetainHandling, new: bool) -> bool {
    match handling {
        RetainHandling::SendOnSubscribe => true,
        RetainHandling::SendOnNewSubscription => new,
        RetainHandling::DoNotSend => false,
    }
}

/// One filter of a SUBSCRIBE: its reason code and whether the subscription is new (`None`
/// for a shared subscription, which never gets retained messages, §4.8.2). A refusal is
/// counted every time and logged once per client.
fn subscribe_one(
    shard: &mut Shard,
    key: ConnId,
    session_id: u32,
    s: &SubscriptionV5,
    subscription_id: Option<u32>,
) -> (ReasonCode, Option<bool>) {
    let filter = s.filter.as_str();
    let granted = s.options.qos.min(MAX_GRANTED_QOS);
    let opts = SubOpts::new(
        granted,
        s.options.no_local,
        s.options.retain_as_published,
        subscription_id,
    );
    if let Some(refusal) = shard.config.topic_refusal(filter) {
        shard.count_topic_refusal(refusal);
        log_refusal(shard, key, session_id, filter, &refusal);
        return (ReasonCode::TopicFilterInvalid, None);
    }
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return (ReasonCode::UnspecifiedError, None);
    };
    let existing = session.subscriptions.get(filter).is_some();
    if !existing && session.subscriptions.len() >= shard.config.max_subscriptions_per_client {
        shard.stats.refused_subscriptions += 1;
        let why = &"max_subscriptions_per_client";
        log_refusal(shard, key, session_id, filter, why);
        return (ReasonCode::QuotaExceeded, None);
    }
    if let Some(code) = authorize(shard, key, session_id, filter) {
        return (code, None);
    }
    let result = match parse_shared_filter(filter) {
        Ok(None) => shard.index_subscribe(filter, session_id, opts).map(|_| ()),
        Ok(Some(shared)) => {
            groups::join(shard, session_id, shared, opts);
            record(shard, session_id, filter, opts);
            return (granted_code(granted), None);
        }
        Err(error) => {
            log_refusal(shard, key, session_id, filter, &format_args!("{error:?}"));
            return (ReasonCode::TopicFilterInvalid, None);
        }
    };
    match result {
        Ok(()) => {
            record(shard, session_id, filter, opts);
            (granted_code(granted), Some(!existing))
        }
        Err(error) => {
            log_refusal(shard, key, session_id, filter, &error);
            (ReasonCode::TopicFilterInvalid, None)
        }
    }
}

/// The ACL's say on a subscription (`core::access`): refused (0x87; 3.1.1 SUBACK 0x80)
/// when no topic it can match is readable, and the session's deliveries checked per topic
/// when only some are. A malformed shared filter is left to the caller to refuse.
fn authorize(shard: &mut Shard, key: ConnId, session_id: u32, filter: &str) -> Option<ReasonCode> {
    let matched = match parse_shared_filter(filter) {
        Ok(Some(shared)) => shared.filter,
        Ok(None) => filter,
        Err(_) => return None,
    };
    match access::classify(shard, session_id, matched) {
        FilterClass::Always => None,
        FilterClass::PerTopic => {
            if let Some(session) = shard.sessions.get_mut(session_id) {
                session.acl_checked = true;
            }
            None
        }
        FilterClass::Never => {
            shard.stats.denied_subscribe += 1;
            log_refusal(shard, key, session_id, filter, &"not authorized by the ACL");
            Some(ReasonCode::NotAuthorized)
        }
    }
}

/// Records a subscription in the session's own list (added or replaced).
fn record(shard: &mut Shard, session_id: u32, filter: &str, opts: SubOpts) {
    if let Some(session) = shard.sessions.get_mut(session_id) {
        session.subscriptions.insert(filter, opts);
        shard.journal.session_changed(session_id, session);
    }
}

/// The SUBACK code granting `qos`.
fn granted_code(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
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
/// (MQTT-3.10.4-4), also when none matched (MQTT-3.10.4-5; MQTT 5 says 0x11 for those).
pub(crate) fn handle_unsubscribe(
    shard: &mut Shard,
    key: ConnId,
    packet_id: u16,
    filters: &[String],
    now_ms: u64,
) -> Flow {
    let Some((session_id, arena)) = borrow_arena(shard, key) else {
        return Flow::Stop;
    };
    {
        let mut codes = bumpalo::collections::Vec::with_capacity_in(filters.len(), &arena);
        for filter in filters {
            let removed = unsubscribe_one(shard, session_id, filter);
            codes.push(if removed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        shard.publish_subscriptions();
        if !shard.write_unsuback(key, packet_id, &codes) {
            close_ack_too_large(shard, key, "UNSUBACK", now_ms);
        }
    }
    return_arena(shard, key, arena);
    flow_after(shard, key)
}

/// A SUBACK or UNSUBACK that could not be written: its reason codes alone exceed the v5
/// client's Maximum Packet Size (only a Reason String and User Properties may be left out,
/// MQTT-3.9.2-1/2, MQTT-3.11.2-1/2). The server must not send it (MQTT-3.1.2-24), and a
/// client left without its answer would wait for ever: DISCONNECT 0x95 and close.
fn close_ack_too_large(shard: &mut Shard, key: ConnId, ack: &str, now_ms: u64) {
    let peer_max = shard
        .pool
        .get(key)
        .map_or(0, |c| c.peer_max_packet_size_bytes());
    let why = format!("{ack} exceeds the client's Maximum Packet Size of {peer_max} bytes");
    let what = "acknowledgement too large for the client";
    lifecycle::close_for(shard, key, what, ReasonCode::PacketTooLarge, &why, now_ms);
}

/// Removes one subscription of a session (plain or shared); whether it existed.
pub(crate) fn unsubscribe_one(shard: &mut Shard, session_id: u32, filter: &str) -> bool {
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return false;
    };
    if session.subscriptions.remove(filter).is_none() {
        return false;
    }
    shard.journal.session_changed(session_id, session);
    match parse_shared_filter(filter) {
        Ok(Some(shared)) => groups::leave(shard, session_id, shared),
        _ => {
            shard.index_unsubscribe(filter, session_id);
            retained_stream::unsubscribed(shard, session_id, filter);
        }
    }
    true
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
