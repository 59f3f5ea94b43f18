//! The output a loop's connections have waiting, all together
//! (`Shard::output_backlog_bytes`): what the driver paces its reading by (`server::pacing`).
//! It must equal the sum of every connection's output through writes, partial and whole
//! drains, and closes, or a loop would pace by a backlog it does not have (or ignore one it
//! has).

mod protocol_common;

use protocol_common as packets;
use protocol_common::ConnectSpec;
use starling::core::shared::ASSIGNED_ID_KEY_BYTES;
use starling::core::{ConnId, CoreConfig, Shard, Shared};
use std::sync::Arc;

const SUBSCRIBERS: usize = 20;

fn shard() -> Shard {
    let mut config = CoreConfig::default();
    config.pool.initial_objects = 16;
    config.pool.max_preheated_objects = 1024;
    config.pool.max_live_objects = 4096;
    Shard::new(
        0,
        1,
        config,
        Arc::new(Shared::new(1, [0; ASSIGNED_ID_KEY_BYTES])),
    )
    .expect("valid config")
}

fn connect(shard: &mut Shard, id: &str) -> ConnId {
    let conn = shard.accept(0).expect("pool has room");
    let spec = ConnectSpec {
        client_id: id.as_bytes().to_vec(),
        clean_session: true,
        ..ConnectSpec::default()
    };
    shard.receive(conn, &spec.build(), 0);
    conn
}

/// The sum the shard's count must equal.
fn sum_of_outputs(shard: &Shard, conns: &[ConnId]) -> usize {
    conns.iter().map(|&c| shard.output(c).len()).sum()
}

/// Connects `SUBSCRIBERS` subscribers to `fan/#` and a publisher; nothing is drained.
fn clients(shard: &mut Shard) -> (Vec<ConnId>, ConnId) {
    let subscribers: Vec<ConnId> = (0..SUBSCRIBERS)
        .map(|i| {
            let conn = connect(shard, &format!("sub-{i}"));
            shard.receive(conn, &packets::subscribe(1, &[(b"fan/#", 0)]), 0);
            conn
        })
        .collect();
    let publisher = connect(shard, "pub");
    (subscribers, publisher)
}

#[test]
fn the_backlog_is_the_sum_of_the_outputs_through_writes_drains_and_closes() {
    let mut shard = shard();
    assert_eq!(shard.output_backlog_bytes(), 0);
    let (subscribers, publisher) = clients(&mut shard);
    let mut all = subscribers.clone();
    all.push(publisher);
    // CONNACKs and SUBACKs are waiting: nobody's socket took anything yet.
    let acks = sum_of_outputs(&shard, &all);
    assert!(acks > 0);
    assert_eq!(shard.output_backlog_bytes(), acks);

    // A burst fanned out to every subscriber, none of them drained.
    let burst: Vec<u8> = (0..50)
        .flat_map(|_| packets::publish(0, b"fan/out", None, &[7; 64]))
        .collect();
    shard.receive(publisher, &burst, 1);
    let after_burst = sum_of_outputs(&shard, &all);
    assert!(after_burst >= acks + SUBSCRIBERS * 50 * 64);
    assert_eq!(shard.output_backlog_bytes(), after_burst);

    // One subscriber's socket takes part of its output, another's all of it.
    let part = shard.output(subscribers[0]).len() / 3;
    shard.consume_output(subscribers[0], part, 2);
    let whole = shard.output(subscribers[1]).len();
    shard.consume_output(subscribers[1], whole, 2);
    assert!(shard.output(subscribers[1]).is_empty());
    assert_eq!(shard.output_backlog_bytes(), sum_of_outputs(&shard, &all));
    assert_eq!(shard.output_backlog_bytes(), after_burst - part - whole);

    // Closed with output still waiting: it leaves the count with the connection.
    shard.closed(subscribers[2], 3);
    all.retain(|&c| c != subscribers[2]);
    assert_eq!(shard.output_backlog_bytes(), sum_of_outputs(&shard, &all));

    for &conn in &all {
        shard.closed(conn, 4);
    }
    assert_eq!(
        shard.output_backlog_bytes(),
        0,
        "nothing waits once all are gone"
    );
}

/// [`clients`], with every output drained.
fn fan_out() -> (Shard, Vec<ConnId>, ConnId) {
    let mut shard = shard();
    let (subscribers, publisher) = clients(&mut shard);
    drain(&mut shard, &subscribers);
    drain(&mut shard, &[publisher]);
    (shard, subscribers, publisher)
}

/// Every socket takes all its output; returns the bytes taken.
fn drain(shard: &mut Shard, conns: &[ConnId]) -> usize {
    conns
        .iter()
        .map(|&c| {
            let len = shard.output(c).len();
            shard.consume_output(c, len, 1);
            len
        })
        .sum()
}

#[test]
fn over_the_limit_a_read_stops_before_its_next_publish_and_resumes_where_it_stopped() {
    const MESSAGES: usize = 50;
    let (mut shard, subscribers, publisher) = fan_out();
    assert_eq!(shard.output_backlog_bytes(), 0);
    let burst: Vec<u8> = (0..MESSAGES)
        .flat_map(|_| packets::publish(0, b"fan/out", None, &[7; 64]))
        .collect();

    // Anything waiting is over this limit: the first PUBLISH is handled (a read always makes
    // progress), the rest waits in the publisher's input.
    shard.set_output_backlog_limit_bytes(1);
    shard.receive(publisher, &burst, 1);
    assert!(shard.has_whole_packet(publisher));
    let per_message = shard.output_backlog_bytes();
    assert!(per_message >= SUBSCRIBERS * 64);
    let mut delivered = drain(&mut shard, &subscribers);

    // Each resume after the subscribers drained handles one more, and stops again.
    for _ in 0..4 {
        shard.resume(publisher, 2);
        assert_eq!(shard.output_backlog_bytes(), per_message);
        delivered += drain(&mut shard, &subscribers);
    }
    assert!(shard.has_whole_packet(publisher));

    // Unpaced: the rest goes at once, in order, and nothing is left.
    shard.set_output_backlog_limit_bytes(usize::MAX);
    shard.resume(publisher, 3);
    assert!(!shard.has_whole_packet(publisher));
    delivered += drain(&mut shard, &subscribers);
    assert_eq!(
        delivered,
        MESSAGES * per_message,
        "every message to every subscriber"
    );
    // Nothing more to resume: an idle connection is left alone.
    shard.resume(publisher, 4);
    assert_eq!(shard.output_backlog_bytes(), 0);
}

#[test]
fn a_partial_packet_is_not_a_whole_one() {
    let (mut shard, _subscribers, publisher) = fan_out();
    let publish = packets::publish(0, b"fan/out", None, &[7; 64]);
    shard.receive(publisher, &publish[..publish.len() - 1], 1);
    assert!(!shard.has_whole_packet(publisher));
    shard.receive(publisher, &publish[publish.len() - 1..], 1);
    assert!(!shard.has_whole_packet(publisher));
    assert!(shard.output_backlog_bytes() > 0, "delivered once whole");
}
