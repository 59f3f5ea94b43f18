//! Framing for the MQTT 5 encoders: count, check the limits, then write.

use bytes::BufMut;

use super::wire::{Counter, Sink, Writer};
use crate::protocol::MAX_REMAINING_LENGTH_BYTES;
use crate::protocol::error::EncodeError;
use crate::protocol::frame::varint_len;

/// No Maximum Packet Size: the protocol's own limit applies.
pub const UNLIMITED_PACKET_SIZE_BYTES: usize = usize::MAX;

/// What an acknowledgement may leave out to fit the peer's Maximum Packet Size: the spec
/// forbids sending the Reason String or User Properties when they would make the packet
/// too large (MQTT-3.2.2-19/20, MQTT-3.4.2-2/3, MQTT-3.5.2-2/3, MQTT-3.6.2-2/3,
/// MQTT-3.7.2-2/3, MQTT-3.9.2-1/2, MQTT-3.11.2-1/2, MQTT-3.14.2-3/4, MQTT-3.15.2-2/3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// Everything given.
    Nothing,
    /// Without the Reason String.
    ReasonString,
    /// Without the Reason String and the User Properties.
    ReasonStringAndUserProperties,
}

impl Trim {
    /// The order the encoders try.
    pub const LADDER: [Trim; 3] = [
        Trim::Nothing,
        Trim::ReasonString,
        Trim::ReasonStringAndUserProperties,
    ];

    /// Whether the Reason String is kept.
    pub const fn keeps_reason_string(self) -> bool {
        matches!(self, Trim::Nothing)
    }

    /// Whether the User Properties are kept.
    pub const fn keeps_user_properties(self) -> bool {
        !matches!(self, Trim::ReasonStringAndUserProperties)
    }
}

/// The remaining length `body` emits, checked against the protocol's limits.
fn remaining_len(body: &dyn Fn(&mut dyn Sink)) -> Result<usize, EncodeError> {
    let mut counter = Counter::default();
    body(&mut counter);
    if counter.too_long {
        return Err(EncodeError::StringTooLong);
    }
    if counter.len > MAX_REMAINING_LENGTH_BYTES {
        return Err(EncodeError::PacketTooLarge {
            remaining_len: counter.len,
        });
    }
    Ok(counter.len)
}

/// The whole packet size for `body`: fixed header included.
pub(crate) fn measure(body: &dyn Fn(&mut dyn Sink)) -> Result<usize, EncodeError> {
    let rl = remaining_len(body)?;
    Ok(1 + varint_len(rl) + rl)
}

/// Writes `first`, the remaining length and `body`, if the packet is at most
/// `max_packet_size_bytes` and `out` has room; otherwise writes nothing.
pub(crate) fn write_frame<B: BufMut + ?Sized>(
    out: &mut B,
    first: u8,
    max_packet_size_bytes: usize,
    body: &dyn Fn(&mut dyn Sink),
) -> Result<usize, EncodeError> {
    let rl = remaining_len(body)?;
    let len = 1 + varint_len(rl) + rl;
    if len > max_packet_size_bytes {
        return Err(EncodeError::ExceedsMaximumPacketSize {
            size: len,
            max: max_packet_size_bytes,
        });
    }
    let available = out.remaining_mut();
    if len > available {
        return Err(EncodeError::BufferTooSmall {
            needed: len,
            available,
        });
    }
    let mut w = Writer(out);
    w.u8(first);
    // At most MAX_REMAINING_LENGTH_BYTES: checked by `remaining_len`.
    w.varint(rl as u32);
    body(&mut w);
    Ok(len)
}

/// The first [`Trim`] of [`Trim::LADDER`] under which `body` fits, with its size.
pub(crate) fn fit(
    max_packet_size_bytes: usize,
    body: &dyn Fn(&mut dyn Sink, Trim),
) -> Result<(Trim, usize), EncodeError> {
    let mut smallest = 0;
    for trim in Trim::LADDER {
        let len = measure(&|s| body(s, trim))?;
        if len <= max_packet_size_bytes {
            return Ok((trim, len));
        }
        smallest = len;
    }
    Err(EncodeError::ExceedsMaximumPacketSize {
        size: smallest,
        max: max_packet_size_bytes,
    })
}

/// [`write_frame`] after [`fit`]: the largest form that fits is written.
pub(crate) fn write_trimmed<B: BufMut + ?Sized>(
    out: &mut B,
    first: u8,
    max_packet_size_bytes: usize,
    body: &dyn Fn(&mut dyn Sink, Trim),
) -> Result<usize, EncodeError> {
    let (trim, _) = fit(max_packet_size_bytes, body)?;
    write_frame(out, first, max_packet_size_bytes, &|s| body(s, trim))
}
