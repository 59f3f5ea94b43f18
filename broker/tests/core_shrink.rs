//! Memory comes back after a spike of clients has gone: the pool's idle sweep runs to the
//! end on consecutive ticks (not one budget per second), and the session slab, the client-id
//! table and the subscription index give back their peak capacity; the buffers a burst
//! left idle are freed, and what closed connections pinned is reported to the driver (which
//! then asks malloc to return it to the OS).

mod core_common;
mod core_v5_common;
mod protocol_common;

use core_common::Net;
use core_v5_common::{TOPIC_ALIAS, connect_v5, p_u16, publish_v5};

const TTL_MS: u64 = 2_000;
const CLIENTS: usize = 3_000;

#[test]
fn after_every_client_left_the_tables_and_the_pool_return_to_their_start() {
    let mut config = Net::small_config();
    config.pool.idle_ttl_ms = TTL_MS;
    let initial = config.pool.initial_objects;
    let mut net = Net::new(1, config);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let client = net.connect_ok(&format!("spike-{i}"), true);
            net.subscribe(client, 1, &format!("spike/{i}"), 0);
            client
        })
        .collect();
    let (slab, table) = net.shards[0].session_capacity();
    assert!(slab >= CLIENTS && table >= CLIENTS);
    assert_eq!(net.shards[0].subscription_count(), CLIENTS);
    for client in clients {
        net.drop_connection(client);
    }
    // One sweep interval past the TTL, then a handful of ticks: 3 000 idle objects take
    // twelve budgets of 256, one per tick.
    net.advance(TTL_MS + starling::core::POOL_SWEEP_INTERVAL_MS);
    for _ in 0..16 {
        net.advance(1);
    }
    let shard = &net.shards[0];
    assert_eq!(
        shard.pool_stats().live,
        initial,
        "the pool is back at its first rung"
    );
    assert_eq!(shard.session_count(), 0);
    assert_eq!(shard.session_capacity(), (0, 0));
    assert_eq!(shard.subscription_count(), 0);
}

#[test]
fn what_closed_connections_pinned_is_reported_as_released() {
    const ALIASES: u16 = 10;
    const TOPIC_BYTES: usize = 6_000;
    const ID_BYTES: usize = 10_000;
    let mut config = Net::small_config();
    config.max_client_id_length_bytes = ID_BYTES;
    config.max_topic_alias_bytes = 0;
    let mut net = Net::new(1, config);
    net.shards[0].take_released_bytes();
    let long_id = "i".repeat(ID_BYTES);
    let holder = net.connect_ok(&long_id, true);
    let (aliased, _) = connect_v5(&mut net, "aliased", true, &[], None);
    for alias in 1..=ALIASES {
        let topic = format!("t/{alias}/{}", "x".repeat(TOPIC_BYTES));
        publish_v5(
            &mut net,
            aliased,
            &topic,
            0,
            &[p_u16(TOPIC_ALIAS, alias)],
            b"x",
        );
    }
    assert!(
        !net.is_closed(aliased),
        "no byte budget: every alias is kept"
    );
    assert_eq!(
        net.shards[0].take_released_bytes(),
        0,
        "nothing freed while they are connected"
    );
    net.drop_connection(aliased);
    net.drop_connection(holder);
    let released = net.shards[0].take_released_bytes();
    let pinned = usize::from(ALIASES) * TOPIC_BYTES + ID_BYTES;
    assert!(
        released >= pinned,
        "released {released} B, the clients pinned {pinned} B"
    );
    assert_eq!(net.shards[0].take_released_bytes(), 0, "reported once");
}

#[test]
fn buffers_a_burst_left_idle_are_freed_within_two_sweeps() {
    let mut net = Net::new(1, Net::small_config());
    let clients: Vec<_> = (0..200)
        .map(|i| net.connect_ok(&format!("burst-{i}"), true))
        .collect();
    // Each client's CONNACK went through a lent output buffer.
    let (lent, idle) = net.shards[0].buffer_use();
    assert_eq!(lent, 0);
    assert!(idle >= 1, "returned buffers are kept for reuse at first");
    for client in clients {
        net.drop_connection(client);
    }
    net.advance(starling::core::POOL_SWEEP_INTERVAL_MS);
    net.advance(starling::core::POOL_SWEEP_INTERVAL_MS);
    assert_eq!(
        net.shards[0].buffer_use(),
        (0, 0),
        "no buffer was taken for a whole interval: none is kept"
    );
    assert!(net.shards[0].take_released_bytes() >= idle * 4096);
}
