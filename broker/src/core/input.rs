//! Framing: turning the byte stream of one connection into packets, and dispatching each to
//! its handler. Check, then parse, then allocate: [`check_frame_for`] reads only the fixed
//! header (and refuses an oversized packet before its body is buffered), [`decode_any`] borrows
//! from the frame, and only a partial packet at the end of a read is copied (into a buffer
//! lent by the loop).
//!
//! Before CONNECT, the first bytes are held to what a CONNECT can start with
//! ([`connect_prefix`]): anything else (an HTTP request, TLS, a stray byte, a protocol name
//! other than `MQTT` or `MQIsdp`) closes the connection as soon as it is read, rather than
//! at the connect timeout.
//!
//! Time: `last_seen_ms` is when the connection last completed a packet or began one after
//! CONNECT (bytes that only extend a partial packet leave it alone, and before CONNECT it
//! stays the accept time). So the connect timeout counts from accept, and a partial packet's
//! deadline from the read that brought its first bytes (`lifecycle::expire_timers`).

use crate::core::conn::Phase;
use crate::core::{ConnId, Shard, handlers, lifecycle, observe};
use crate::protocol::v5::{PacketV5, decode_v5};
use crate::protocol::{AnyPacket, FrameError, PacketType, ReasonCode, check_frame_for, decode_any};

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
    let was_partial = !conn.input.is_empty();
    let done = if was_partial {
        let mut pending = std::mem::take(&mut conn.input);
        pending.extend_from_slice(bytes);
        let done = process(shard, key, &pending, now_ms);
        pending.drain(..done.consumed);
        match shard.pool.get_mut(key) {
            Ok(conn) if conn.phase != Phase::Closing && !pending.is_empty() => {
                conn.input = pending;
            }
            _ => shard.buffers.give(pending),
        }
        done
    } else {
        let done = process(shard, key, bytes, now_ms);
        keep_rest(shard, key, &bytes[done.consumed..]);
        done
    };
    if done.packets > 0 || !was_partial {
        progressed(shard, key, now_ms);
    }
}

/// Handles what waited in `conn`'s input while its CONNECT was parked
/// (`core::credentials`).
pub(crate) fn resume(shard: &mut Shard, key: ConnId, now_ms: u64) {
    if shard.pool.get(key).is_ok_and(|c| !c.input.is_empty()) {
        feed(shard, key, &[], now_ms);
    }
    if let Ok(conn) = shard.pool.get_mut(key) {
        conn.settle();
    }
}

/// A connected client completed a packet or began one: its keep-alive counts from now, and
/// a packet left partial must be whole within `partial_packet_timeout_ms` of now.
fn progressed(shard: &mut Shard, key: ConnId, now_ms: u64) {
    let Ok(conn) = shard.pool.get_mut(key) else {
        return;
    };
    if conn.phase != Phase::Connected {
        return; // before CONNECT the connect timeout counts from accept
    }
    conn.last_seen_ms = now_ms;
    if !conn.input.is_empty() {
        let due = now_ms.saturating_add(shard.config.partial_packet_timeout_ms);
        shard.arm_timer(key, due);
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

/// What [`process`] did with a buffer.
struct Processed {
    /// Bytes consumed (whole packets, or everything once the connection is closing).
    consumed: usize,
    /// Whole packets handled.
    packets: usize,
}

/// Handles every complete packet in `buf`.
fn process(shard: &mut Shard, key: ConnId, buf: &[u8], now_ms: u64) -> Processed {
    let mut at = 0;
    let mut packets = 0;
    let stop = |packets| Processed {
        consumed: buf.len(),
        packets,
    };
    while at < buf.len() {
        let Ok(conn) = shard.pool.get(key) else {
            return stop(packets);
        };
        let version = conn.version;
        if conn.phase == Phase::Verifying {
            // Parked: the rest waits in the input for the verdict.
            break;
        }
        if conn.phase == Phase::AwaitingConnect
            && let Err(not_mqtt) = connect_prefix(&buf[at..])
        {
            let (what, code) = not_mqtt.describe();
            let first = FirstBytes(&buf[at..]);
            lifecycle::close_for(shard, key, what, code, &first, now_ms);
            return stop(packets);
        }
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
                return stop(packets);
            }
        };
        let len = header.frame_len();
        if buf.len() - at < len {
            break;
        }
        if header.packet_type == PacketType::Publish
            && packets > 0
            && shard.over_output_backlog_limit()
        {
            // Paced (`intake`): the rest waits in the connection's input.
            break;
        }
        let frame = &buf[at..at + len];
        observe::count_packet_in(&mut shard.stats, frame);
        packets += 1;
        if header.packet_type == PacketType::Publish {
            shard.charge_publish(key, len, now_ms);
        }
        match dispatch(shard, key, header.packet_type, frame, now_ms) {
            Flow::Continue => at += len,
            Flow::Stop => return stop(packets),
            Flow::Handover(to) => {
                observe::uncount_handed_over(&mut shard.stats, &buf[at..]);
                lifecycle::hand_over(shard, key, to, &buf[at..], now_ms);
                return stop(packets);
            }
        }
    }
    Processed {
        consumed: at,
        packets,
    }
}

/// Why the first bytes of a connection cannot be a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotMqtt {
    /// The first byte is not CONNECT's (0x10): another packet first (MQTT-3.1.0-1), or not
    /// MQTT at all (an HTTP request starts with a letter, TLS with 0x16).
    FirstByte,
    /// The protocol name is neither `MQTT` nor `MQIsdp` (MQTT-3.1.2-1).
    ProtocolName,
}

impl NotMqtt {
    /// The log line's words and the reason code.
    fn describe(self) -> (&'static str, ReasonCode) {
        match self {
            NotMqtt::FirstByte => (
                "not MQTT: the first packet is not a CONNECT (MQTT-3.1.0-1)",
                ReasonCode::ProtocolError,
            ),
            NotMqtt::ProtocolName => (
                "not MQTT: the CONNECT's protocol name is neither MQTT nor MQIsdp (MQTT-3.1.2-1)",
                ReasonCode::UnsupportedProtocolVersion,
            ),
        }
    }
}

/// Protocol names a CONNECT may carry, with their length prefix: `MQTT` (3.1.1 and 5.0)
/// and `MQIsdp` (3.1).
const PROTOCOL_NAMES: [&[u8]; 2] = [b"\x00\x04MQTT", b"\x00\x06MQIsdp"];
/// Bytes of a Remaining Length, at most.
const MAX_REMAINING_LENGTH_BYTES: usize = 4;

/// Whether `bytes`, the start of a connection's input (possibly incomplete), can still be
/// the start of a CONNECT: its fixed header byte, a Remaining Length, and a prefix of a
/// known protocol name. What the Remaining Length and the rest say is for the framing and
/// the decoder once the packet is whole.
pub fn connect_prefix(bytes: &[u8]) -> Result<(), NotMqtt> {
    let Some((&first, rest)) = bytes.split_first() else {
        return Ok(());
    };
    if first != 0x10 {
        return Err(NotMqtt::FirstByte);
    }
    // The Remaining Length ends at its first byte without the continuation bit; a fifth
    // byte is the framing's error to report.
    let Some(end) = rest
        .iter()
        .take(MAX_REMAINING_LENGTH_BYTES)
        .position(|b| b & 0x80 == 0)
    else {
        return Ok(());
    };
    let name = &rest[end + 1..];
    if PROTOCOL_NAMES
        .iter()
        .any(|known| known.starts_with(&name[..name.len().min(known.len())]))
    {
        Ok(())
    } else {
        Err(NotMqtt::ProtocolName)
    }
}

/// The first bytes of a refused connection for its log line, escaped (`GET / HTTP/1.1`
/// shows as such).
struct FirstBytes<'a>(&'a [u8]);

/// Bytes shown of what a connection sent before it was found not to be MQTT.
const FIRST_BYTES_SHOWN: usize = 16;

impl std::fmt::Display for FirstBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.0[..self.0.len().min(FIRST_BYTES_SHOWN)];
        write!(f, "first bytes \"{}\"", shown.escape_ascii())
    }
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
        // Invariant: `process` stops before the packets after a parked CONNECT.
        Phase::Verifying => {
            debug_assert!(false, "a packet dispatched while its CONNECT is parked");
            Flow::Stop
        }
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
