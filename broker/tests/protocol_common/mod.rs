//! Client→server packet builders shared by the `protocol_*` tests. They write exactly what
//! they are told (including invalid values), so tests can build malformed packets too.
#![allow(dead_code)]

/// A variable byte integer (the remaining length, and MQTT 5 lengths), minimally encoded.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A frame: first byte, remaining-length varint, body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
pub fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Everything a CONNECT can carry; `flags_override` replaces the computed flags byte.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    pub name: Vec<u8>,
    pub level: u8,
    pub clean_session: bool,
    pub keep_alive: u16,
    pub client_id: Vec<u8>,
    /// (topic, payload, qos, retain)
    pub will: Option<(Vec<u8>, Vec<u8>, u8, bool)>,
    pub username: Option<Vec<u8>>,
    pub password: Option<Vec<u8>>,
    pub flags_override: Option<u8>,
    pub trailing: Vec<u8>,
}

impl Default for ConnectSpec {
    fn default() -> Self {
        ConnectSpec {
            name: b"MQTT".to_vec(),
            level: 4,
            clean_session: true,
            keep_alive: 60,
            client_id: b"client".to_vec(),
            will: None,
            username: None,
            password: None,
            flags_override: None,
            trailing: Vec::new(),
        }
    }
}

impl ConnectSpec {
    pub fn flags(&self) -> u8 {
        let mut flags = 0u8;
        if self.clean_session {
            flags |= 0x02;
        }
        if let Some((_, _, qos, retain)) = &self.will {
            flags |= 0x04 | (qos << 3);
            if *retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        self.flags_override.unwrap_or(flags)
    }

    pub fn build(&self) -> Vec<u8> {
        let mut body = field(&self.name);
        body.push(self.level);
        body.push(self.flags());
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        body.extend(field(&self.client_id));
        if let Some((topic, payload, _, _)) = &self.will {
            body.extend(field(topic));
            body.extend(field(payload));
        }
        if let Some(username) = &self.username {
            body.extend(field(username));
        }
        if let Some(password) = &self.password {
            body.extend(field(password));
        }
        body.extend_from_slice(&self.trailing);
        frame(0x10, &body)
    }
}

/// PUBLISH with raw `flags` (low nibble), raw topic bytes and an optional packet id.
pub fn publish(flags: u8, topic: &[u8], packet_id: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

/// SUBSCRIBE with first byte `first` (0x82 when valid) and raw (filter, options) pairs.
pub fn subscribe_with(first: u8, packet_id: u16, filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for (filter, options) in filters {
        body.extend(field(filter));
        body.push(*options);
    }
    frame(first, &body)
}

/// A valid-header SUBSCRIBE.
pub fn subscribe(packet_id: u16, filters: &[(&[u8], u8)]) -> Vec<u8> {
    subscribe_with(0x82, packet_id, filters)
}

/// UNSUBSCRIBE with first byte `first` (0xA2 when valid).
pub fn unsubscribe_with(first: u8, packet_id: u16, filters: &[&[u8]]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for filter in filters {
        body.extend(field(filter));
    }
    frame(first, &body)
}

/// A valid-header UNSUBSCRIBE.
pub fn unsubscribe(packet_id: u16, filters: &[&[u8]]) -> Vec<u8> {
    unsubscribe_with(0xA2, packet_id, filters)
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP-shaped packet: first byte and packet id.
pub fn ack(first: u8, packet_id: u16) -> Vec<u8> {
    frame(first, &packet_id.to_be_bytes())
}

pub mod v5;

/// The topic checks the differential oracle (`mqtt5-protocol`) leaves to its caller: every
/// topic name and filter in a decoded packet must pass its own validators. An empty PUBLISH
/// topic passes when `empty_publish_topic_ok` (MQTT 5: a Topic Alias stands for it).
pub fn oracle_topics_valid(
    packet: &mqtt5_protocol::Packet,
    empty_publish_topic_ok: bool,
) -> Result<(), String> {
    use mqtt5_protocol::{Packet, validate_topic_filter, validate_topic_name};
    match packet {
        Packet::Publish(p) if empty_publish_topic_ok && p.topic_name.is_empty() => Ok(()),
        Packet::Publish(p) => validate_topic_name(&p.topic_name),
        Packet::Subscribe(s) => s
            .filters
            .iter()
            .try_for_each(|f| validate_topic_filter(&f.filter)),
        Packet::Unsubscribe(u) => u.filters.iter().try_for_each(|f| validate_topic_filter(f)),
        Packet::Connect(c) => c
            .will
            .as_ref()
            .map_or(Ok(()), |w| validate_topic_name(&w.topic)),
        _ => Ok(()),
    }
    .map_err(|e| e.to_string())
}
