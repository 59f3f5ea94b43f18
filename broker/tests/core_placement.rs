//! Which loop serves a client (in memory, two loops): a new client id stays on the loop
//! that accepted its socket; a later CONNECT for an id whose session lives on another loop
//! is handed over there, so takeover (MQTT-3.1.4-2) and resumption (MQTT-3.2.2-2) happen
//! on one thread; an id whose session has ended is free again. Statement numbers are
//! MQTT 3.1.1's.

mod core_common;
mod protocol_common;

use core_common::{Net, Received, publishes};
use protocol_common::ConnectSpec;

fn net() -> Net {
    Net::new(2, Net::small_config())
}

fn spec(client_id: &str, clean_session: bool) -> ConnectSpec {
    ConnectSpec {
        client_id: client_id.as_bytes().to_vec(),
        clean_session,
        ..ConnectSpec::default()
    }
}

const ACCEPTED: Received = Received::ConnAck {
    session_present: false,
    code: 0,
};

const RESUMED: Received = Received::ConnAck {
    session_present: true,
    code: 0,
};

#[test]
fn a_new_client_stays_on_the_loop_that_accepted_it_whatever_its_id() {
    let mut net = net();
    for (n, arrives_on) in [0, 1, 1, 0, 1, 0].into_iter().enumerate() {
        let (client, connack) = net.connect(arrives_on, spec(&format!("new-{n}"), true));
        assert_eq!(connack, ACCEPTED);
        assert_eq!(
            net.clients[client].loop_index, arrives_on,
            "client {n} moved"
        );
    }
    assert_eq!(net.shared.directory.len(), 6, "one entry per live session");
}

#[test]
fn routing_crosses_loops_for_clients_placed_on_different_loops() {
    let mut net = net();
    let (sub, _) = net.connect(1, spec("sub", true));
    net.subscribe(sub, 1, "x", 1);
    let (publisher, _) = net.connect(0, spec("pub", true));
    net.publish(publisher, "x", 1, false, Some(1), b"across");
    assert_eq!(
        publishes(&net.take(sub)),
        [("x".to_string(), b"across".to_vec(), 1)]
    );
}

#[test]
fn a_second_connection_on_another_loop_is_handed_over_and_takes_over_mqtt_3_1_4_2() {
    let mut net = net();
    let (first, _) = net.connect(1, spec("twice", true));
    let (second, connack) = net.connect(0, spec("twice", true));
    assert_eq!(connack, ACCEPTED);
    assert!(net.is_closed(first), "the old connection is closed");
    assert_eq!(
        net.clients[second].loop_index, 1,
        "served where the session was"
    );
    assert!(!net.is_closed(second));
}

#[test]
fn an_offline_session_is_resumed_on_its_loop_from_either_loop_mqtt_3_2_2_2() {
    let mut net = net();
    let (client, _) = net.connect(1, spec("keeper", false));
    net.subscribe(client, 1, "kept/#", 1);
    net.drop_connection(client);
    let (publisher, _) = net.connect(0, spec("pub", true));
    net.publish(publisher, "kept/a", 1, false, Some(7), b"while away");
    let (back, connack) = net.connect(0, spec("keeper", false));
    assert_eq!(connack, RESUMED);
    assert_eq!(net.clients[back].loop_index, 1);
    assert_eq!(
        publishes(&net.take(back)),
        [("kept/a".to_string(), b"while away".to_vec(), 1)]
    );
}

#[test]
fn an_ended_session_frees_its_id_for_any_loop() {
    let mut net = net();
    let (client, _) = net.connect(1, spec("transient", true));
    net.drop_connection(client);
    assert!(
        net.shared.directory.is_empty(),
        "a clean session ends with its socket"
    );
    let (again, connack) = net.connect(0, spec("transient", true));
    assert_eq!(connack, ACCEPTED);
    assert_eq!(net.clients[again].loop_index, 0, "no longer tied to loop 1");
}

#[test]
fn a_refused_connect_leaves_no_entry_behind() {
    let mut config = Net::small_config();
    config.max_connections = 1;
    let mut net = Net::new(2, config);
    let (_, connack) = net.connect(0, spec("one", true));
    assert_eq!(connack, ACCEPTED);
    let (refused, connack) = net.connect(1, spec("two", true));
    // MQTT-3.2.2-5 (3.1.1 return code 3: server unavailable).
    assert!(
        matches!(connack, Received::ConnAck { code: 3, .. }),
        "{connack:?}"
    );
    assert!(net.is_closed(refused));
    assert_eq!(
        net.shared.directory.len(),
        1,
        "only the accepted client's entry"
    );
    let (_, connack) = net.connect(0, spec("two", true));
    assert!(matches!(connack, Received::ConnAck { code: 3, .. }));
}

#[test]
fn assigned_client_ids_stay_where_they_arrive() {
    let mut net = net();
    for arrives_on in [1, 0, 1] {
        // MQTT-3.1.3-6: an empty client id with Clean Session 1 is given one.
        let (client, connack) = net.connect(arrives_on, spec("", true));
        assert_eq!(connack, ACCEPTED);
        assert_eq!(net.clients[client].loop_index, arrives_on);
    }
    assert_eq!(net.shared.directory.len(), 3);
}
