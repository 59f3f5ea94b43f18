//! Persistence in the core, one promise at a time: what a client was told (CONNACK, SUBACK,
//! PUBACK, PUBREC, PUBREL) survives a crash of the broker at the worst moment, on the
//! simulated store (which keeps only what was made durable). The randomised version of
//! these is `persist_simulation`.

mod core_common;
mod protocol_common;

use core_common::{Net, Received, publishes};
use protocol_common::{self as packets, ConnectSpec};
use starling::core::CoreConfig;
use starling_store::SimStore;

const LOOPS: usize = 2;
const WALL_MS: u64 = 1_800_000_000_000;

fn config() -> CoreConfig {
    Net::small_config()
}

/// A broker on an empty simulated store.
fn fresh() -> Net {
    Net::restarted(LOOPS, config(), SimStore::default(), WALL_MS)
}

/// The broker crashes now: what was not applied to the store is gone, and a new broker
/// starts on what was, `later_ms` later.
fn crash(net: Net, later_ms: u64) -> Net {
    let mut store = net.store.expect("a store");
    store.crash(0);
    Net::restarted(LOOPS, config(), store, WALL_MS + later_ms)
}

/// A 3.1.1 client with a persistent session (clean session 0), on the loop its id hashes to.
fn connect(net: &mut Net, client_id: &str) -> (usize, Received) {
    let spec = ConnectSpec {
        client_id: client_id.as_bytes().to_vec(),
        clean_session: false,
        ..ConnectSpec::default()
    };
    net.connect(starling::core::owner_loop(client_id, LOOPS), spec)
}

fn session_present(connack: &Received) -> bool {
    matches!(
        connack,
        Received::ConnAck {
            session_present: true,
            code: 0
        }
    )
}

#[test]
fn a_session_and_its_subscription_come_back_after_a_crash() {
    let mut net = fresh();
    let (sub, connack) = connect(&mut net, "sub");
    assert!(!session_present(&connack));
    net.send(sub, &packets::subscribe(1, &[(b"a/#", 1)]));
    assert!(net.take(sub).contains(&Received::SubAck {
        packet_id: 1,
        codes: vec![1]
    }));
    let mut net = crash(net, 1_000);
    let (sub, connack) = connect(&mut net, "sub");
    assert!(session_present(&connack), "{connack:?}");
    let (publisher, _) = connect(&mut net, "pub");
    net.send(
        publisher,
        &packets::publish(0x02, b"a/b", Some(1), b"hello"),
    );
    assert_eq!(
        publishes(&net.take(sub)),
        vec![("a/b".to_string(), b"hello".to_vec(), 1)]
    );
}

#[test]
fn a_message_acknowledged_to_its_publisher_reaches_an_offline_subscriber_after_a_crash() {
    let mut net = fresh();
    let (sub, _) = connect(&mut net, "sub");
    net.send(sub, &packets::subscribe(1, &[(b"a/#", 2)]));
    net.drop_connection(sub);
    let (publisher, _) = connect(&mut net, "pub");
    net.send(publisher, &packets::publish(0x02, b"a/1", Some(7), b"one"));
    assert!(net.take(publisher).contains(&Received::PubAck(7)));
    let mut net = crash(net, 1_000);
    let (sub, connack) = connect(&mut net, "sub");
    assert!(session_present(&connack));
    assert_eq!(
        publishes(&net.take(sub)),
        vec![("a/1".to_string(), b"one".to_vec(), 1)]
    );
}

#[test]
fn nothing_is_acknowledged_before_it_is_stored() {
    let mut net = fresh();
    let (sub, _) = connect(&mut net, "sub");
    net.send(sub, &packets::subscribe(1, &[(b"a/#", 1)]));
    net.drop_connection(sub);
    let (publisher, _) = connect(&mut net, "pub");
    // The crash comes before the first driver step: the PUBLISH was read, nothing applied.
    net.crash_after_steps = Some(0);
    net.send(publisher, &packets::publish(0x02, b"a/1", Some(7), b"one"));
    assert!(net.take(publisher).is_empty(), "no PUBACK before the store");
    let mut net = crash(net, 1_000);
    let (sub, _) = connect(&mut net, "sub");
    assert!(publishes(&net.take(sub)).is_empty(), "nothing was promised");
}

#[test]
fn a_qos2_message_released_to_its_subscriber_is_not_sent_again_after_a_crash() {
    let mut net = fresh();
    let (sub, _) = connect(&mut net, "sub");
    net.send(sub, &packets::subscribe(1, &[(b"a/#", 2)]));
    let (publisher, _) = connect(&mut net, "pub");
    net.send(publisher, &packets::publish(0x04, b"a/1", Some(3), b"once"));
    net.send(publisher, &packets::ack(0x62, 3));
    let got = net.take(sub);
    let id = got
        .iter()
        .find_map(|r| match r {
            Received::Publish { packet_id, .. } => *packet_id,
            _ => None,
        })
        .expect("the subscriber got the message");
    net.send(sub, &packets::ack(0x50, id));
    assert!(net.take(sub).contains(&Received::PubRel(id)));
    // The subscriber has released the id: a PUBLISH with it now would be a new message.
    net.crash_after_steps = Some(0);
    net.send(sub, &packets::ack(0x70, id));
    let mut net = crash(net, 1_000);
    let (sub, connack) = connect(&mut net, "sub");
    assert!(session_present(&connack));
    let again = net.take(sub);
    assert!(publishes(&again).is_empty(), "sent again: {again:?}");
    assert!(again.contains(&Received::PubRel(id)), "{again:?}");
}

#[test]
fn a_qos2_publish_retried_after_a_crash_is_delivered_once() {
    let mut net = fresh();
    let (sub, _) = connect(&mut net, "sub");
    net.send(sub, &packets::subscribe(1, &[(b"a/#", 2)]));
    net.drop_connection(sub);
    let (publisher, _) = connect(&mut net, "pub");
    net.send(publisher, &packets::publish(0x04, b"a/1", Some(9), b"once"));
    assert!(net.take(publisher).contains(&Received::PubRec(9)));
    let mut net = crash(net, 1_000);
    // The publisher did not see PUBCOMP: it sends the PUBLISH again (DUP), then PUBREL.
    let (publisher, connack) = connect(&mut net, "pub");
    assert!(session_present(&connack));
    net.send(publisher, &packets::publish(0x0C, b"a/1", Some(9), b"once"));
    net.send(publisher, &packets::ack(0x62, 9));
    assert!(net.take(publisher).contains(&Received::PubComp(9)));
    let (sub, _) = connect(&mut net, "sub");
    assert_eq!(publishes(&net.take(sub)).len(), 1);
}

#[test]
fn a_retained_message_and_its_clearing_survive_a_crash() {
    let mut net = fresh();
    let (publisher, _) = connect(&mut net, "pub");
    net.send(publisher, &packets::publish(0x03, b"r/1", Some(1), b"kept"));
    net.send(publisher, &packets::publish(0x03, b"r/2", Some(2), b"gone"));
    net.send(publisher, &packets::publish(0x03, b"r/2", Some(3), b""));
    assert!(net.take(publisher).contains(&Received::PubAck(3)));
    let mut net = crash(net, 1_000);
    let (reader, _) = net.connect(0, ConnectSpec::default());
    net.send(reader, &packets::subscribe(1, &[(b"r/#", 1)]));
    assert_eq!(
        publishes(&net.take(reader)),
        vec![("r/1".to_string(), b"kept".to_vec(), 1)]
    );
}

/// An MQTT 5 client `client_id` with a Session Expiry Interval of `expiry_secs` connects;
/// returns it and its CONNACK's session present flag.
fn connect_v5(net: &mut Net, client_id: &str, expiry_secs: u32) -> (usize, bool) {
    use protocol_common::v5;
    let props = v5::props(&[v5::p_u32(0x11, expiry_secs)]);
    let connect = v5::connect5(0x00, &props, &packets::field(client_id.as_bytes()));
    let client = net.open(starling::core::owner_loop(client_id, LOOPS));
    net.send(client, &connect);
    let connack = net.take(client);
    match connack.first() {
        Some(Received::ConnAck {
            session_present,
            code: 0,
        }) => (client, *session_present),
        other => panic!("{client_id}: {other:?}"),
    }
}

#[test]
fn a_session_that_expired_while_the_broker_was_down_is_gone() {
    let mut net = fresh();
    let (client, _) = connect_v5(&mut net, "brief", 10);
    net.drop_connection(client);
    // Down for 9 s: the session is still there (its 10 s run from its disconnect).
    let mut net = crash(net, 9_000);
    let (client, present) = connect_v5(&mut net, "brief", 10);
    assert!(present, "9 s after its disconnect");
    net.drop_connection(client);
    // It went offline again at 9 s, and the broker is down until 20 s.
    let mut net = crash(net, 20_000);
    let (_, present) = connect_v5(&mut net, "brief", 10);
    assert!(!present, "expired while the broker was down");
}
