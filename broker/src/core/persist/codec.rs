//! The broker's encoding of what it stores: message bodies, outbound entries, session
//! records and routes. The store sees only bytes; this module is the one place that knows
//! their layout.
//!
//! Every record starts with [`RECORD_VERSION`]; integers are little-endian, strings and
//! byte strings carry a `u32` length. Times are absolute (Unix milliseconds), never the
//! loop's clock, so what expired while the broker was down is known at start-up. Decoding
//! never trusts a length: a record cut short or with an unknown tag is an error naming the
//! record, never a panic.

use std::fmt;

use crate::core::message::{Message, MessageProps};
use crate::core::session::InflightState;
use crate::core::subscription::SubIds;
use crate::protocol::QoS;
use crate::protocol::v5::{PayloadFormat, UserProperty};

/// The layout version every record starts with.
pub const RECORD_VERSION: u8 = 1;

/// A record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Converts between the loop's clock and the wall clock: `wall = loop + offset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WallClock {
    /// Unix milliseconds at loop time 0.
    pub offset_ms: u64,
}

impl WallClock {
    /// The wall time of loop time `loop_ms`.
    pub fn to_wall(self, loop_ms: u64) -> u64 {
        loop_ms.saturating_add(self.offset_ms)
    }

    /// The loop time of wall time `wall_ms` (at least 1: 0 means "none" in several fields;
    /// a time before the loop's start is in the past either way).
    pub fn to_loop(self, wall_ms: u64) -> u64 {
        wall_ms.saturating_sub(self.offset_ms).max(1)
    }
}

/// Appends fields to a record.
pub(crate) struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        // Invariant: every stored string and payload came in one MQTT packet (< 256 MiB).
        debug_assert!(u32::try_from(v.len()).is_ok());
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn opt_str(&mut self, v: Option<&str>) {
        self.opt_bytes(v.map(str::as_bytes));
    }
    pub fn opt_bytes(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.bytes(v);
            }
        }
    }
}

/// Reads fields of a record, refusing to read past its end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError(self.what))
    }
    pub fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.bytes().map(Some),
            _ => Err(DecodeError(self.what)),
        }
    }
    pub fn opt_str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.opt_bytes()? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|_| DecodeError(self.what)),
        }
    }
    pub fn qos(&mut self) -> Result<QoS, DecodeError> {
        QoS::from_u8(self.u8()?).ok_or(DecodeError(self.what))
    }
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError(self.what)),
        }
    }
    pub fn version(&mut self) -> Result<(), DecodeError> {
        if self.u8()? == RECORD_VERSION {
            Ok(())
        } else {
            Err(DecodeError(self.what))
        }
    }
    pub fn end(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(self.what))
        }
    }
}

/// Writes a message's properties (or their absence).
pub(crate) fn write_props(w: &mut Writer<'_>, props: Option<&MessageProps>, clock: WallClock) {
    let Some(p) = props else {
        w.u8(0);
        return;
    };
    w.u8(1);
    w.u8(p.payload_format.map_or(0xff, |f| f as u8));
    w.u64(p.expires_at_ms.map_or(0, |at| clock.to_wall(at)));
    w.opt_str(p.content_type.as_deref());
    w.opt_str(p.response_topic.as_deref());
    w.opt_bytes(p.correlation_data.as_deref());
    w.u32(p.user_properties.len() as u32);
    for up in &p.user_properties {
        w.str(&up.name);
        w.str(&up.value);
    }
}

/// Reads what [`write_props`] wrote.
pub(crate) fn read_props(
    r: &mut Reader<'_>,
    clock: WallClock,
) -> Result<Option<Box<MessageProps>>, DecodeError> {
    if !r.bool()? {
        return Ok(None);
    }
    let payload_format = match r.u8()? {
        0xff => None,
        b => Some(PayloadFormat::from_u8(b)),
    };
    let expires_at_ms = match r.u64()? {
        0 => None,
        wall => Some(clock.to_loop(wall)),
    };
    let content_type = r.opt_str()?.map(Into::into);
    let response_topic = r.opt_str()?.map(Into::into);
    let correlation_data = r.opt_bytes()?.map(Into::into);
    let count = r.u32()? as usize;
    let mut user_properties = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let name = r.str()?.to_owned();
        let value = r.str()?.to_owned();
        user_properties.push(UserProperty { name, value });
    }
    Ok(Some(Box::new(MessageProps {
        payload_format,
        expires_at_ms,
        content_type,
        response_topic,
        correlation_data,
        user_properties: user_properties.into_boxed_slice(),
    })))
}

/// A message body: QoS, RETAIN, topic, payload, properties.
pub fn encode_message(message: &Message, clock: WallClock, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(RECORD_VERSION);
    w.u8(message.qos.as_u8());
    w.u8(u8::from(message.retain));
    w.str(&message.topic);
    w.bytes(&message.payload);
    write_props(&mut w, message.props.as_deref(), clock);
}

/// Reads what [`encode_message`] wrote.
pub fn decode_message(body: &[u8], clock: WallClock) -> Result<Message, DecodeError> {
    let mut r = Reader::new(body, "message body");
    r.version()?;
    let qos = r.qos()?;
    let retain = r.bool()?;
    let topic = r.str()?.into();
    let payload = r.bytes()?.into();
    let props = read_props(&mut r, clock)?;
    r.end()?;
    Ok(Message::new(topic, payload, qos, retain, props))
}

/// Where an outbound entry is: queued, or in flight in one of its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Waiting in the queue.
    Queued,
    /// Sent under `packet_id`, in `state`.
    Inflight {
        /// The packet id it was sent with.
        packet_id: u16,
        /// Where its flow is.
        state: InflightState,
    },
}

/// An outbound entry's own fields (its message is referenced by id beside them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// The delivery QoS.
    pub qos: QoS,
    /// The RETAIN flag to send.
    pub retain: bool,
    /// Queued or in flight.
    pub state: EntryState,
    /// The Subscription Identifiers it is delivered with.
    pub sub_ids: SubIds,
}

/// Encodes an outbound entry's fields.
pub fn encode_entry(meta: &EntryMeta, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(RECORD_VERSION);
    w.u8(meta.qos.as_u8());
    w.u8(u8::from(meta.retain));
    match meta.state {
        EntryState::Queued => w.u8(0),
        EntryState::Inflight { packet_id, state } => {
            w.u8(match state {
                InflightState::AwaitPubAck => 1,
                InflightState::AwaitPubRec => 2,
                InflightState::AwaitPubComp => 3,
            });
            w.u16(packet_id);
        }
    }
    let ids = meta.sub_ids.as_slice();
    w.u32(ids.len() as u32);
    for &id in ids {
        w.u32(id);
    }
}

/// Reads what [`encode_entry`] wrote.
pub fn decode_entry(meta: &[u8]) -> Result<EntryMeta, DecodeError> {
    let mut r = Reader::new(meta, "outbound entry");
    r.version()?;
    let qos = r.qos()?;
    let retain = r.bool()?;
    let state = match r.u8()? {
        0 => EntryState::Queued,
        tag @ 1..=3 => {
            let state = match tag {
                1 => InflightState::AwaitPubAck,
                2 => InflightState::AwaitPubRec,
                _ => InflightState::AwaitPubComp,
            };
            EntryState::Inflight {
                packet_id: r.u16()?,
                state,
            }
        }
        _ => return Err(DecodeError("outbound entry")),
    };
    let count = r.u32()? as usize;
    let mut ids = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        ids.push(r.u32()?);
    }
    r.end()?;
    Ok(EntryMeta {
        qos,
        retain,
        state,
        sub_ids: SubIds::from_slice(&ids),
    })
}

/// Where a message handed to another loop was going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Every matching plain subscription of the sessions of that loop.
    All {
        /// The loop.
        loop_index: u16,
    },
    /// One member of a shared-subscription group among the sessions of that loop.
    Group {
        /// The loop.
        loop_index: u16,
        /// The group's filter (`$share/name/filter`).
        filter: Box<str>,
    },
}

/// Encodes a route record.
pub fn encode_route(target: &RouteTarget, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(RECORD_VERSION);
    match target {
        RouteTarget::All { loop_index } => {
            w.u8(0);
            w.u16(*loop_index);
        }
        RouteTarget::Group { loop_index, filter } => {
            w.u8(1);
            w.u16(*loop_index);
            w.str(filter);
        }
    }
}

/// Reads what [`encode_route`] wrote.
pub fn decode_route(record: &[u8]) -> Result<RouteTarget, DecodeError> {
    let mut r = Reader::new(record, "route");
    r.version()?;
    let target = match r.u8()? {
        0 => RouteTarget::All {
            loop_index: r.u16()?,
        },
        1 => RouteTarget::Group {
            loop_index: r.u16()?,
            filter: r.str()?.into(),
        },
        _ => return Err(DecodeError("route")),
    };
    r.end()?;
    Ok(target)
}
