//! What an idle client costs the core, byte by byte: 15 000 clients connected and each
//! subscribed to a topic of its own, on one loop, counted by a counting allocator (bytes
//! requested, before malloc's own overhead). The figures are printed (run with
//! `--nocapture`) and written up in `docs/benchmarks.md`; the assertion guards the budget.

mod protocol_common;

use std::sync::Arc;

use protocol_common::{self as packets, ConnectSpec};
use starling::core::session::Session;
use starling::core::shared::ASSIGNED_ID_KEY_BYTES;
use starling::core::{ConnId, CoreConfig, Shard, Shared};
use starling_alloc_count::{Counting, snapshot};

#[global_allocator]
static GLOBAL: Counting = Counting;

const CLIENTS: usize = 15_000;
/// The budget for an idle client with one subscription, whole process: 1 KiB.
const MAX_BYTES_PER_IDLE_CLIENT: f64 = 1024.0;

fn live() -> isize {
    snapshot().live_bytes
}

fn drain(shard: &mut Shard, dirty: &mut Vec<ConnId>) {
    shard.drain_dirty(dirty);
    for &conn in dirty.iter() {
        let n = shard.output(conn).len();
        shard.consume_output(conn, n, 0);
    }
}

#[test]
fn an_idle_subscribed_client_costs_the_core_well_under_a_kibibyte() {
    let mut config = CoreConfig::default();
    // Preheat exactly what the clients need, to separate the pool's headroom from the
    // per-client cost; the headroom is reported separately below.
    config.pool.initial_objects = CLIENTS;
    config.pool.max_preheated_objects = CLIENTS * 2;
    // Loop 0 of two, so the CONNECT step includes the client's entry in the directory that
    // every loop shares (a single loop keeps none).
    let shared = Arc::new(Shared::new(2, [0; ASSIGNED_ID_KEY_BYTES]));
    let mut shard = Shard::new(0, 2, config, Arc::clone(&shared)).expect("valid config");
    let mut dirty = Vec::new();
    let start = live();
    let conns: Vec<ConnId> = (0..CLIENTS)
        .map(|_| shard.accept(0).expect("room"))
        .collect();
    let accepted = live();
    for (i, &conn) in conns.iter().enumerate() {
        let spec = ConnectSpec {
            client_id: format!("idle-{i}").into_bytes(),
            keep_alive: 600,
            ..ConnectSpec::default()
        };
        shard.receive(conn, &spec.build(), 0);
        drain(&mut shard, &mut dirty);
    }
    let connected = live();
    for (i, &conn) in conns.iter().enumerate() {
        let filter = format!("idle/{i}");
        shard.receive(conn, &packets::subscribe(1, &[(filter.as_bytes(), 0)]), 0);
        drain(&mut shard, &mut dirty);
    }
    let subscribed = live();
    let per = |from: isize, to: isize| (to - from) as f64 / CLIENTS as f64;
    assert_eq!(shard.session_count(), CLIENTS);
    assert_eq!(shared.directory.len(), CLIENTS);
    assert_eq!(shard.subscription_count(), CLIENTS);
    assert_eq!(shard.buffer_use().0, 0, "idle clients hold no buffer");
    let slot = (std::mem::size_of::<starling::core::conn::Conn>() + 20) as f64;
    let per_client = slot + per(accepted, subscribed);
    println!(
        "core heap per idle subscribed client: {per_client:.1} B = pool slot {slot} B (preheated) \
         + accept {:.1} B (timer-wheel entry, accept-order entry, and this test's vector of handles) + CONNECT {:.1} B (session, \
         client id, id table, directory entry: {:.1} B of it) + SUBSCRIBE {:.1} B (index entry, \
         session's filter list); size_of Conn {} B, Session {} B",
        per(start, accepted),
        per(accepted, connected),
        shared.directory.heap_bytes() as f64 / CLIENTS as f64,
        per(connected, subscribed),
        std::mem::size_of::<starling::core::conn::Conn>(),
        std::mem::size_of::<Session>(),
    );
    assert!(
        per_client < MAX_BYTES_PER_IDLE_CLIENT * 0.75,
        "{per_client} B per client leaves too little of the 1 KiB budget for the driver and malloc overhead"
    );
    drop(conns);
}
