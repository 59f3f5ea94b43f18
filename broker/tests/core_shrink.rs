//! Memory comes back after a spike of clients has gone: the pool's idle sweep runs to the
//! end on consecutive ticks (not one budget per second), and the session slab, the client-id
//! table and the subscription index give back their peak capacity.

mod core_common;
mod protocol_common;

use core_common::Net;

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
