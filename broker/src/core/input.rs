//! Framing: turning the byte stream of one connection into packets, and dispatching each to
//! its handler. Check, then parse, then allocate: [`check_frame_for`] reads only the fixed
//! header (and refuses an oversized packet before its body is buffered), [`decode_any`] borrows
//! from the frame, and only a partial packet at the end of a read is copied (into a buffer
//! lent by the loop).

use crate::core::conn::Phase;
use crate::core::{ConnId, Shard, handlers, lifecycle, observe};
use crate::protocol::v5::{PacketV5, decode_v5};
use crate::protocol::{
    AnyPacket, FrameError, PacketType, ProtocolVersion, ReasonCode, check_frame_for, decode_any,
};

/// What the frame loop does after a packet.
pub(crate) enum Flow {
    /// Next packet.
    Continue,
    /// The connection is closing: ignore the rest.
    Stop,
    /// The CONNECT belongs to another loop: hand the connection and these bytes over.
    Handover(usize),
}

/// Feeds `bytes` to `conn`.
pub(crate) fn receive(shard: &mut Shard, key: ConnId, bytes: &[u8], now_ms: u64) {
    feed(shard, key, bytes, now_ms);
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.settle();
    }
}

fn feed(shard: &mut Shard, key: ConnId, bytes: &[u8], now_ms: u64) {
    let Ok(conn) = shard.pool.get_mut(key) else {
        return;
    };
    if conn.phase == Phase::Closing {
        return;
    }
    conn.last_seen_ms = now_ms;
    if conn.input.is_empty() {
        let consumed = process(shard, key, bytes, now_ms);
        keep_rest(shard, key, &bytes[consumed..]);
    } else {
        let mut pending = std::mem::take(&mut conn.input);
        pending.extend_from_slice(bytes);
        let consumed = process(shard, key, &pending, now_ms);
        pending.drain(..consumed);
        match shard.pool.get_mut(key) {
            Ok(conn) if conn.phase != Phase::Closing && !pending.is_empty() => {
                conn.input = pending;
            }
            _ => shard.buffers.give(pending),
        }
    }
}

/// Stores the tail of a read that is not a whole packet yet.
fn keep_rest(shard: &mut Shard, key: ConnId, rest: &[u8]) {
    if rest.is_empty() {
        return;
    }
    let Ok(conn) = shard.pool.get_mut(key) else {
        return;
    };
    if conn.phase == Phase::Closing {
        return;
    }
    let mut buffer = shard.buffers.take();
    buffer.extend_from_slice(rest);
    conn.input = buffer;
}

/// Handles every complete packet in `buf`; returns how many bytes were consumed.
fn process(shard: &mut Shard, key: ConnId, buf: &[u8], now_ms: u64) -> usize {
    let mut at = 0;
    while at < buf.len() {
        let version = shard
            .pool
            .get(key)
            .map_or(ProtocolVersion::V311, |c| c.version);
        let header = match check_frame_for(version, &buf[at..], shard.config.max_packet_size_bytes)
        {
            Ok(header) => header,
            Err(FrameError::Incomplete { .. }) => break,
            Err(error) => {
                if matches!(error, FrameError::TooLarge { .. }) {
                    shard.stats.refused_packet_too_large += 1;
                }
                let code = error.reason_code().unwrap_or(ReasonCode::MalformedPacket);
                lifecycle::close_for(shard, key, "bad frame", code, &error, now_ms);
                return buf.len();
            }
        };
        let len = header.frame_len();
        if buf.len() - at < len {
            break;
        }
        let frame = &buf[at..at + len];
        observe::count_packet_in(&mut shard.stats, frame);
        if header.packet_type == PacketType::Publish {
            shard.charge_publish(key, len, now_ms);
        }
        match dispatch(shard, key, header.packet_type, frame, now_ms) {
            Flow::Continue => at += len,
            Flow::Stop => return buf.len(),
            Flow::Handover(to) => {
                observe::uncount_handed_over(&mut shard.stats, &buf[at..]);
                lifecycle::hand_over(shard, key, to, &buf[at..], now_ms);
                return buf.len();
            }
        }
    }
    at
}

/// One handler per packet type.
fn dispatch(
    shard: &mut Shard,
    key: ConnId,
    packet_type: PacketType,
    frame: &[u8],
    now_ms: u64,
) -> Flow {
    let Ok(conn) = shard.pool.get(key) else {
        return Flow::Stop;
    };
    match conn.phase {
        Phase::Closing => Flow::Stop,
        Phase::AwaitingConnect if packet_type == PacketType::Connect => {
            handlers::connect::handle(shard, key, frame, now_ms)
        }
        Phase::AwaitingConnect => {
            lifecycle::close_for(
                shard,
                key,
                "first packet is not CONNECT (MQTT-3.1.0-1)",
                ReasonCode::ProtocolError,
                &packet_type_name(packet_type),
                now_ms,
            );
            Flow::Stop
        }
        Phase::Authenticating => match decode_v5(frame) {
            Ok(PacketV5::Auth(auth)) => handlers::auth::handle_auth(shard, key, &auth, now_ms),
            Ok(PacketV5::Disconnect(_)) => {
                lifecycle::close_for(
                    shard,
                    key,
                    "DISCONNECT while authenticating",
                    ReasonCode::Success,
                    &"client",
                    now_ms,
                );
                Flow::Stop
            }
            Ok(_) => handlers::auth::unexpected_while_authenticating(shard, key, now_ms),
            Err(error) => {
                let code = error.reason_code();
                lifecycle::close_for(shard, key, "bad packet", code, &error, now_ms);
                Flow::Stop
            }
        },
        Phase::Connected => {
            let version = conn.version;
            match decode_any(version, frame) {
                Ok(AnyPacket::V3(packet)) => handlers::handle_packet(shard, key, packet, now_ms),
                Ok(AnyPacket::V5(packet)) => handlers::handle_packet_v5(shard, key, packet, now_ms),
                Err(error) => {
                    let code = error.reason_code();
                    lifecycle::close_for(shard, key, "bad packet", code, &error, now_ms);
                    Flow::Stop
                }
            }
        }
    }
}

fn packet_type_name(packet_type: PacketType) -> String {
    format!("{packet_type:?}")
}
