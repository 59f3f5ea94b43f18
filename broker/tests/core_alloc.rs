//! Zero global-allocator calls for a QoS 0 PUBLISH routed to one subscriber once warm,
//! counted by a counting allocator (this file is its own test binary).

mod protocol_common;

use std::sync::Arc;

use protocol_common::{self as packets, ConnectSpec};
use starling::core::shared::ASSIGNED_ID_KEY_BYTES;
use starling::core::{ConnId, CoreConfig, Shard, Shared};
use starling_alloc_count::{Counting, calls_during};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Writes out everything the shard has for its dirty connections, as a driver would.
fn flush(shard: &mut Shard, dirty: &mut Vec<ConnId>, delivered: &mut usize) {
    shard.drain_dirty(dirty);
    for &conn in dirty.iter() {
        let n = shard.output(conn).len();
        *delivered += n;
        shard.consume_output(conn, n, 0);
    }
    while shard.poll_action().is_some() {}
}

fn connect(shard: &mut Shard, id: &str, dirty: &mut Vec<ConnId>) -> ConnId {
    let conn = shard.accept(0).expect("room");
    let spec = ConnectSpec {
        client_id: id.as_bytes().to_vec(),
        ..ConnectSpec::default()
    };
    shard.receive(conn, &spec.build(), 0);
    flush(shard, dirty, &mut 0);
    conn
}

#[test]
fn the_counter_sees_allocations() {
    assert!(calls_during(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 2);
}

#[test]
fn qos0_publish_routed_to_one_subscriber_allocates_nothing_once_warm() {
    let mut config = CoreConfig::default();
    config.pool.initial_objects = 8;
    let mut shard = Shard::new(
        0,
        1,
        config,
        Arc::new(Shared::new(1, [0; ASSIGNED_ID_KEY_BYTES])),
    )
    .expect("valid config");
    let mut dirty = Vec::with_capacity(16);
    let sub = connect(&mut shard, "sub", &mut dirty);
    shard.receive(sub, &packets::subscribe(1, &[(b"sensors/+/temp", 0)]), 0);
    flush(&mut shard, &mut dirty, &mut 0);
    let publisher = connect(&mut shard, "pub", &mut dirty);
    let publish = packets::publish(0, b"sensors/kitchen/temp", None, &[7u8; 64]);
    let mut delivered = 0;
    // Warm up: the buffer pool lends its first output buffer.
    for _ in 0..10 {
        shard.receive(publisher, &publish, 0);
        flush(&mut shard, &mut dirty, &mut delivered);
    }
    delivered = 0;
    let calls = calls_during(|| {
        for _ in 0..10_000 {
            shard.receive(publisher, &publish, 0);
            flush(&mut shard, &mut dirty, &mut delivered);
        }
    });
    assert_eq!(
        delivered,
        10_000 * publish.len(),
        "every message reached the subscriber"
    );
    assert_eq!(
        calls, 0,
        "routing a QoS 0 PUBLISH must not allocate once warm"
    );
}

#[test]
fn a_batch_of_publishes_in_one_read_allocates_nothing_once_warm() {
    let mut config = CoreConfig::default();
    config.pool.initial_objects = 8;
    let mut shard = Shard::new(
        0,
        1,
        config,
        Arc::new(Shared::new(1, [0; ASSIGNED_ID_KEY_BYTES])),
    )
    .expect("valid config");
    let mut dirty = Vec::with_capacity(16);
    let sub = connect(&mut shard, "sub", &mut dirty);
    shard.receive(sub, &packets::subscribe(1, &[(b"#", 0)]), 0);
    flush(&mut shard, &mut dirty, &mut 0);
    let publisher = connect(&mut shard, "pub", &mut dirty);
    let batch: Vec<u8> = (0..50)
        .flat_map(|_| packets::publish(0, b"a/b", None, &[1u8; 32]))
        .collect();
    for _ in 0..3 {
        shard.receive(publisher, &batch, 0);
        flush(&mut shard, &mut dirty, &mut 0);
    }
    let calls = calls_during(|| {
        for _ in 0..1_000 {
            shard.receive(publisher, &batch, 0);
            flush(&mut shard, &mut dirty, &mut 0);
        }
    });
    assert_eq!(calls, 0);
}
