//! MQTT 5 enhanced authentication (§4.12) in the sans-IO core, driven through a toy
//! challenge-response `Authenticator`: the exchange before CONNACK, refusals, other
//! packets mid-exchange, the connect timeout, and re-authentication.

mod core_common;
mod core_v5_common;
mod protocol_common;

use std::rc::Rc;

use core_v5_common::*;
use starling::core::{AuthExchange, AuthStep, Authenticator};
use starling::protocol::ReasonCode;

/// A toy challenge-response method: "hello" → challenge, "response" → welcome.
struct Toy;

struct ToyExchange {
    challenged: bool,
}

impl Authenticator for Toy {
    fn method(&self) -> &str {
        "TOY"
    }
    fn begin(&self, _client_id: &str) -> Box<dyn AuthExchange> {
        Box::new(ToyExchange { challenged: false })
    }
}

impl AuthExchange for ToyExchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        match (self.challenged, data) {
            (false, Some(b"hello")) => {
                self.challenged = true;
                AuthStep::Continue(b"challenge".to_vec())
            }
            (true, Some(b"response")) => AuthStep::Success(Some(b"welcome".to_vec())),
            _ => AuthStep::Refuse(ReasonCode::NotAuthorized),
        }
    }
}

const AUTH_METHOD: u8 = 0x15;
const AUTH_DATA: u8 = 0x16;

fn auth_props(method: &[u8], data: &[u8]) -> Vec<Vec<u8>> {
    vec![p_str(AUTH_METHOD, method), p_str(AUTH_DATA, data)]
}

fn toy_net() -> Net {
    let mut net = net(1);
    net.shards[0].set_authenticator(Rc::new(Toy));
    net
}

fn auth_connect(net: &mut Net, id: &str, method: &[u8], data: &[u8]) -> ClientId {
    let client = net.open(0);
    let p = props(&auth_props(method, data));
    net.send(client, &connect5(0x02, &p, &field(id.as_bytes())));
    client
}

fn auth_packet(reason: u8, method: &[u8], data: &[u8]) -> Vec<u8> {
    reason_packet(0xF0, Some(reason), Some(&props(&auth_props(method, data))))
}

#[test]
fn an_enhanced_authentication_exchange_ends_in_connack_4_12() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"TOY", b"hello");
    assert_eq!(
        net.take(c),
        vec![Received::Auth {
            reason: 0x18,
            data: Some(b"challenge".to_vec())
        }],
        "AUTH 0x18 Continue authentication (MQTT-4.12.0-2)"
    );
    net.send(c, &auth_packet(0x18, b"TOY", b"response"));
    assert!(matches!(
        net.take(c).first(),
        Some(Received::ConnAck { code: 0, .. })
    ));
    subscribe_v5(&mut net, c, "t", 0, None);
    assert!(!net.is_closed(c), "a connected client like any other");
}

#[test]
fn a_failed_exchange_is_refused_with_its_reason_and_closed_4_12() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"TOY", b"hello");
    net.take(c);
    net.send(c, &auth_packet(0x18, b"TOY", b"wrong"));
    assert_eq!(
        net.take(c),
        vec![Received::ConnAck {
            session_present: false,
            code: 0x87
        }]
    );
    assert!(net.is_closed(c));
}

#[test]
fn another_method_is_refused_with_0x8c_and_other_packets_mid_exchange_with_0x82() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"SCRAM-SHA-256", b"x");
    assert_eq!(
        net.take(c),
        vec![Received::ConnAck {
            session_present: false,
            code: 0x8C
        }]
    );
    let d = auth_connect(&mut net, "d", b"TOY", b"hello");
    net.take(d);
    net.send(d, &[0xC0, 0]); // PINGREQ before CONNACK
    assert_eq!(
        net.take(d),
        vec![Received::ConnAck {
            session_present: false,
            code: 0x82
        }]
    );
    assert!(net.is_closed(d));
}

#[test]
fn an_exchange_that_never_finishes_is_closed_by_the_connect_timeout() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"TOY", b"hello");
    net.take(c);
    net.advance(Net::small_config().connect_timeout_ms + 1_000);
    assert!(net.is_closed(c));
}

#[test]
fn re_authentication_runs_the_exchange_again_4_12_1() {
    let mut net = toy_net();
    let c = auth_connect(&mut net, "c", b"TOY", b"hello");
    net.send(c, &auth_packet(0x18, b"TOY", b"response"));
    net.take(c);
    net.send(c, &auth_packet(0x19, b"TOY", b"hello"));
    assert_eq!(
        net.take(c),
        vec![Received::Auth {
            reason: 0x18,
            data: Some(b"challenge".to_vec())
        }]
    );
    net.send(c, &auth_packet(0x18, b"TOY", b"response"));
    assert_eq!(
        net.take(c),
        vec![Received::Auth {
            reason: 0x00,
            data: Some(b"welcome".to_vec())
        }]
    );
    // A re-authentication with another method is a protocol error (MQTT-4.12.0-5)…
    net.send(c, &auth_packet(0x19, b"OTHER", b"hello"));
    assert_eq!(net.take(c), vec![Received::Disconnect(0x82)]);
    // …and a refused one ends the connection with its reason.
    let d = auth_connect(&mut net, "d", b"TOY", b"hello");
    net.send(d, &auth_packet(0x18, b"TOY", b"response"));
    net.take(d);
    net.send(d, &auth_packet(0x19, b"TOY", b"nonsense"));
    assert_eq!(net.take(d), vec![Received::Disconnect(0x87)]);
}

/// Two loops, both with the toy method.
fn toy_net2() -> Net {
    let mut net = net(2);
    for shard in &mut net.shards {
        shard.set_authenticator(Rc::new(Toy));
    }
    net
}

#[test]
fn a_client_id_mid_exchange_is_held_on_its_loop_and_freed_when_the_exchange_fails_4_12() {
    let mut net = toy_net2();
    let c = auth_connect(&mut net, "held", b"TOY", b"hello");
    assert!(matches!(
        net.take(c).as_slice(),
        [Received::Auth { reason: 0x18, .. }]
    ));
    assert_eq!(
        net.shared.directory.len(),
        1,
        "reserved while authenticating"
    );
    // A second CONNECT for the id on loop 1 goes to loop 0, where the exchange runs.
    let other = net.open(1);
    let p = props(&auth_props(b"TOY", b"hello"));
    net.send(other, &connect5(0x02, &p, &field(b"held")));
    assert_eq!(
        net.clients[other].loop_index, 0,
        "handed over to the holding loop"
    );
    // Both exchanges fail: nothing holds the id any more.
    net.send(c, &auth_packet(0x18, b"TOY", b"wrong"));
    net.send(other, &auth_packet(0x18, b"TOY", b"wrong"));
    assert!(net.is_closed(c) && net.is_closed(other));
    assert!(
        net.shared.directory.is_empty(),
        "refusals release the reservation"
    );
    let again = net.open(1);
    net.send(again, &connect5(0x02, &[0], &field(b"held")));
    assert!(matches!(
        net.take(again).first(),
        Some(Received::ConnAck { code: 0, .. })
    ));
    assert_eq!(
        net.clients[again].loop_index, 1,
        "the id is free for any loop"
    );
}

#[test]
fn a_connection_dropped_mid_exchange_releases_its_client_id_4_12() {
    let mut net = toy_net2();
    let c = auth_connect(&mut net, "gone", b"TOY", b"hello");
    assert_eq!(net.shared.directory.len(), 1);
    net.drop_connection(c);
    assert!(net.shared.directory.is_empty());
}
