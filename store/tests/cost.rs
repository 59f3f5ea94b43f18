//! What one durable apply of a small batch costs (a message queued to a session, then its
//! acknowledgement), printed, not asserted: run it alone, in release, with
//! `cargo test --release -p starling-store --test cost -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use starling_store::{Durability, Op, Store};

/// Rounds of the measurement (each: one batch queuing a message, one acknowledging it).
const ROUNDS: u64 = 1000;
/// The body of a typical small message (bytes).
const BODY_BYTES: usize = 200;

fn percentile(sorted: &[Duration], per_cent: usize) -> Duration {
    sorted[(sorted.len() - 1) * per_cent / 100]
}

fn measure(durability: Durability) {
    let dir = TempDir::new("cost");
    let (mut store, _) = open_loaded(dir.path());
    store
        .apply(&[put_session("client", &[0; 64])], Durability::Durable)
        .expect("apply");
    let mut times = Vec::new();
    for i in 1..=ROUNDS {
        let queue: Vec<Op> = vec![
            put_message(i, &[1; BODY_BYTES]),
            put_outbound("client", i, i, &[2; 12]),
        ];
        let start = Instant::now();
        store.apply(&queue, durability).expect("apply");
        times.push(start.elapsed());
        let start = Instant::now();
        store
            .apply(&[delete_outbound("client", i)], durability)
            .expect("apply");
        times.push(start.elapsed());
    }
    times.sort();
    let stats = store.stats();
    println!(
        "{durability:?}: {} applies of 1–2 ops: p50 {:?}, p90 {:?}, p99 {:?}; file {} bytes",
        times.len(),
        percentile(&times, 50),
        percentile(&times, 90),
        percentile(&times, 99),
        stats.disk_bytes,
    );
}

#[test]
#[ignore = "a measurement: run it alone, in release"]
fn cost_of_one_apply() {
    measure(Durability::Durable);
    measure(Durability::Buffered);
}
