//! What the `core_v5_*` tests share: connecting, subscribing and publishing as an MQTT 5
//! client of a [`Net`], wills, and the property ids the tests use.
#![allow(dead_code, unused_imports)]

pub use crate::core_common::{ClientId, Net, Received, publishes};
pub use crate::protocol_common::v5::{
    connect5, no_props, p_str, p_u16, p_u32, p_user, p_varint, props, publish5, reason_packet,
    subscribe5, unsubscribe5,
};
pub(crate) use crate::protocol_common::{self as packets, ConnectSpec, field};
pub use starling::core::owner_loop;

pub const SESSION_EXPIRY: u8 = 0x11;
pub const RECEIVE_MAXIMUM: u8 = 0x21;
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub const TOPIC_ALIAS: u8 = 0x23;
pub const MESSAGE_EXPIRY: u8 = 0x02;
pub const SUBSCRIPTION_ID: u8 = 0x0B;
pub const WILL_DELAY: u8 = 0x18;

/// A will for [`connect_v5`]: topic, payload, Will Delay Interval.
pub struct WillSpec<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub delay_secs: u32,
}

/// Connects a v5 client on the loop that owns `id`; asserts CONNACK success and returns
/// the client and Session Present.
pub fn connect_v5(
    net: &mut Net,
    id: &str,
    clean_start: bool,
    connect_props: &[Vec<u8>],
    will: Option<WillSpec<'_>>,
) -> (ClientId, bool) {
    let mut flags = u8::from(clean_start) << 1;
    let mut payload = field(id.as_bytes());
    if let Some(w) = &will {
        flags |= 0x04;
        payload.extend(props(&[p_u32(WILL_DELAY, w.delay_secs)]));
        payload.extend(field(w.topic.as_bytes()));
        payload.extend(field(w.payload));
    }
    let loop_index = owner_loop(id, net.shards.len());
    let client = net.open(loop_index);
    net.send(client, &connect5(flags, &props(connect_props), &payload));
    match next_packet(net, client).as_ref() {
        Some(Received::ConnAck {
            session_present,
            code: 0,
        }) => (client, *session_present),
        other => panic!("expected CONNACK 0 for {id}, got {other:?}"),
    }
}

/// The first packet `client` received (what follows stays for the test to take).
pub fn next_packet(net: &mut Net, client: ClientId) -> Option<Received> {
    let received = &mut net.clients[client].received;
    (!received.is_empty()).then(|| received.remove(0))
}

pub fn subscribe_v5(
    net: &mut Net,
    client: ClientId,
    filter: &str,
    options: u8,
    sub_id: Option<u32>,
) {
    let p = match sub_id {
        Some(id) => props(&[p_varint(SUBSCRIPTION_ID, id)]),
        None => no_props(),
    };
    net.send(client, &subscribe5(1, &p, &[(filter.as_bytes(), options)]));
    match next_packet(net, client).as_ref() {
        Some(Received::SubAck { codes, .. }) if codes[0] < 0x80 => {}
        other => panic!("expected SUBACK success, got {other:?}"),
    }
}

pub fn publish_v5(
    net: &mut Net,
    client: ClientId,
    topic: &str,
    qos: u8,
    p: &[Vec<u8>],
    payload: &[u8],
) {
    let id = (qos > 0).then_some(1);
    net.send(
        client,
        &publish5(qos << 1, topic.as_bytes(), id, &props(p), payload),
    );
}

/// A net with a 3.1.1 client watching `will/#`.
pub fn net_with_will_watcher() -> (Net, ClientId) {
    let mut net = net(1);
    let watcher = net.connect_ok("watcher", true);
    net.subscribe(watcher, 1, "will/#", 0);
    (net, watcher)
}

/// A will on `will/w` with `delay_secs`.
pub fn will_w(delay_secs: u32) -> WillSpec<'static> {
    WillSpec {
        topic: "will/w",
        payload: b"gone",
        delay_secs,
    }
}

pub fn net(loops: usize) -> Net {
    Net::new(loops, Net::small_config())
}

pub fn v3_publisher(net: &mut Net) -> ClientId {
    net.connect_ok("v3-publisher", true)
}

/// Two client ids owned by different loops of a 2-loop net.
pub fn ids_on_two_loops() -> (String, String) {
    let first = (0..)
        .map(|i| format!("m{i}"))
        .find(|id| owner_loop(id, 2) == 0);
    let second = (0..)
        .map(|i| format!("m{i}"))
        .find(|id| owner_loop(id, 2) == 1);
    (first.unwrap_or_default(), second.unwrap_or_default())
}

pub fn payloads(received: &[Received]) -> Vec<Vec<u8>> {
    publishes(received).into_iter().map(|(_, p, _)| p).collect()
}
