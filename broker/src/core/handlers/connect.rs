//! CONNECT: version, client id, limits, takeover, session resumption, CONNACK.

use crate::core::conn::Phase;
use crate::core::input::Flow;
use crate::core::{ConnId, Shard, delivery, lifecycle, owner_loop};
use crate::protocol::{
    Connect, ConnectReturnCode, ProtocolVersion, decode_connect, encode_connack,
    peek_connect_version,
};

/// The first packet of a connection.
pub(crate) fn handle(shard: &mut Shard, key: ConnId, frame: &[u8], now_ms: u64) -> Flow {
    let connect = match decode_connect(frame) {
        Ok(connect) => connect,
        Err(error) => {
            shard.stats.refused_connect += 1;
            if let Some(code) = error.connack_return_code() {
                let version = match peek_connect_version(frame) {
                    Ok(v) if v.is_v3() => v,
                    _ => ProtocolVersion::V311,
                };
                refuse(shard, key, version, code);
            }
            lifecycle::close_for(shard, key, "CONNECT refused", &error, now_ms);
            return Flow::Stop;
        }
    };
    let will_refusal = connect
        .will
        .as_ref()
        .and_then(|will| shard.config.topic_refusal(&will.topic));
    if let Some(refusal) = will_refusal {
        // Checked before the handover so that the refusal is counted once, here.
        shard.count_topic_refusal(refusal);
        shard.stats.refused_connect += 1;
        lifecycle::close_for(shard, key, "will topic over a limit", &refusal, now_ms);
        return Flow::Stop;
    }
    let client_id = if connect.client_id.is_empty() {
        // MQTT-3.1.3-6: assign a unique id, one that this loop owns.
        shard.assign_client_id()
    } else {
        let owner = owner_loop(&connect.client_id, shard.loops);
        if owner != shard.loop_index {
            return Flow::Handover(owner);
        }
        connect.client_id.clone().into_boxed_str()
    };
    accept(shard, key, connect, client_id, now_ms)
}

fn accept(
    shard: &mut Shard,
    key: ConnId,
    connect: Connect,
    client_id: Box<str>,
    now_ms: u64,
) -> Flow {
    let version = connect.version;
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
        shard.stats.refused_at_max_connections += 1;
        refuse(shard, key, version, ConnectReturnCode::ServerUnavailable);
        lifecycle::close_for(
            shard,
            key,
            "CONNECT refused",
            &"max_connections reached (CONNACK 0x03)",
            now_ms,
        );
        return Flow::Stop;
    }
    if let Some(old) = old_conn {
        lifecycle::take_over(shard, old, &client_id, now_ms);
    }
    // A clean session lasts as long as its connection: one that was just taken over ends.
    let resumable = existing.filter(|&id| shard.sessions.get(id).is_some_and(|s| !s.clean));
    let (session_id, session_present) = match existing {
        Some(id) if !connect.clean_session && resumable.is_some() => (id, true),
        Some(id) => {
            lifecycle::end_session(shard, id);
            (shard.sessions.create(client_id, true), false)
        }
        None => (
            shard.sessions.create(client_id, connect.clean_session),
            false,
        ),
    };
    if let Some(session) = shard.sessions.get_mut(session_id) {
        session.conn = Some(key);
        session.clean = connect.clean_session;
    }
    let keep_alive_timeout_ms = shard.config.keep_alive_timeout_ms(connect.keep_alive_secs);
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.counted = true;
        conn.phase = Phase::Connected;
        conn.version = version;
        conn.session = session_id;
        conn.keep_alive_timeout_ms = keep_alive_timeout_ms.unwrap_or(0);
        conn.will = connect.will.map(Box::new);
    }
    if let Some(timeout_ms) = keep_alive_timeout_ms {
        shard.arm_timer(key, now_ms + timeout_ms);
    }
    shard.write(key, |out, v| {
        encode_connack(out, v, session_present, ConnectReturnCode::Accepted)
    });
    tracing::debug!(
        client = %shard.sessions.get(session_id).map_or("", |s| &s.client_id),
        ?version,
        session_present,
        "client connected"
    );
    if session_present {
        delivery::resume(shard, key, now_ms);
    }
    Flow::Continue
}

/// Sends a refusing CONNACK (the connection is closed right after).
fn refuse(shard: &mut Shard, key: ConnId, version: ProtocolVersion, code: ConnectReturnCode) {
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.version = version;
    }
    shard.write(key, |out, v| encode_connack(out, v, false, code));
}

impl Shard {
    /// A fresh client id that hashes to this loop.
    pub(crate) fn assign_client_id(&mut self) -> Box<str> {
        loop {
            self.next_assigned_id += 1;
            let id = format!("starling-{}-{}", self.loop_index, self.next_assigned_id);
            if owner_loop(&id, self.loops) == self.loop_index && self.sessions.find(&id).is_none() {
                return id.into_boxed_str();
            }
        }
    }
}
