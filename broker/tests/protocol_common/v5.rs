//! MQTT 5 packet builders for the `protocol_v5_*` tests. Like the 3.1.1 ones, they write
//! exactly what they are told, so invalid packets can be built too.

use super::{field, frame};

/// A variable byte integer, minimally encoded.
pub fn varint(n: u32) -> Vec<u8> {
    super::varint(n as usize)
}

/// A property block: varint length, then the concatenated properties.
pub fn props(entries: &[Vec<u8>]) -> Vec<u8> {
    let body = entries.concat();
    let mut out = varint(body.len() as u32);
    out.extend(body);
    out
}

/// No properties (property length 0).
pub fn no_props() -> Vec<u8> {
    vec![0]
}

/// A Byte property.
pub fn p_u8(id: u8, v: u8) -> Vec<u8> {
    vec![id, v]
}

/// A Two Byte Integer property.
pub fn p_u16(id: u8, v: u16) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(v.to_be_bytes());
    out
}

/// A Four Byte Integer property.
pub fn p_u32(id: u8, v: u32) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(v.to_be_bytes());
    out
}

/// A Variable Byte Integer property.
pub fn p_varint(id: u8, v: u32) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(varint(v));
    out
}

/// A UTF-8 string or binary property.
pub fn p_str(id: u8, v: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(field(v));
    out
}

/// A User Property.
pub fn p_user(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x26];
    out.extend(field(name));
    out.extend(field(value));
    out
}

/// A v5 CONNECT: `flags`, keep alive 30, `props`, then `payload` (client id, will…).
pub fn connect5(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.extend([5, flags, 0, 30]);
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// A minimal valid v5 CONNECT with `props` and client id `id`.
pub fn connect5_simple(props: &[u8]) -> Vec<u8> {
    connect5(0x02, props, &field(b"id"))
}

/// A v5 PUBLISH: first-byte `flags`, topic, packet id (if any), properties, payload.
pub fn publish5(flags: u8, topic: &[u8], id: Option<u16>, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    if let Some(id) = id {
        body.extend(id.to_be_bytes());
    }
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

/// A QoS 0 PUBLISH to `a/b` with `props`.
pub fn publish5_props(props: &[u8]) -> Vec<u8> {
    publish5(0, b"a/b", None, props, b"x")
}

/// A v5 PUBACK-style ack: packet id, then the reason and properties when given.
pub fn ack5(first: u8, id: u16, reason: Option<u8>, props: Option<&[u8]>) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend(reason);
    if let Some(p) = props {
        body.extend_from_slice(p);
    }
    frame(first, &body)
}

/// A v5 SUBSCRIBE: packet id, properties, (filter, options byte) pairs.
pub fn subscribe5(id: u16, props: &[u8], subs: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(props);
    for (filter, opts) in subs {
        body.extend(field(filter));
        body.push(*opts);
    }
    frame(0x82, &body)
}

/// A v5 UNSUBSCRIBE: packet id, properties, filters.
pub fn unsubscribe5(id: u16, props: &[u8], filters: &[&[u8]]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(props);
    for filter in filters {
        body.extend(field(filter));
    }
    frame(0xA2, &body)
}

/// A DISCONNECT (type 14) or AUTH (type 15) style packet: reason and properties if given.
pub fn reason_packet(first: u8, reason: Option<u8>, props: Option<&[u8]>) -> Vec<u8> {
    let mut body: Vec<u8> = reason.into_iter().collect();
    if let Some(p) = props {
        body.extend_from_slice(p);
    }
    frame(first, &body)
}
