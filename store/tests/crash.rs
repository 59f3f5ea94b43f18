//! A real crash: a child process applies durable and buffered batches to a `RedbStore` and
//! ends with `_exit`, closing nothing; the parent reopens the directory and finds every
//! durable batch, and none of the buffered batches after the last durable one. This is what
//! `SimStore::crash(0)` simulates: both must agree.

mod common;

use common::*;
use starling_store::{Durability, Op, RedbStore, SimStore, Store};

use Durability::{Buffered, Durable};

/// The exit code of a child that reached its end (`_exit` before any destructor).
const CRASHED_EXIT_CODE: i32 = 86;
/// Batches of each run of the script.
const BATCHES_PER_RUN: u64 = 12;

/// The batches of the child: runs of durable and buffered batches, the last run buffered.
/// Each batch queues a message to a session, acknowledges an older one and routes another.
fn script() -> Vec<(Vec<Op>, Durability)> {
    let runs = [Durable, Buffered, Durable, Durable, Buffered];
    let mut batches = Vec::new();
    let mut i = 0u64;
    for durability in runs {
        for _ in 0..BATCHES_PER_RUN {
            let client = format!("client-{}", i % 5);
            let mut ops = vec![put_session(&client, &i.to_be_bytes())];
            ops.extend(queued(&client, i, i + 1));
            ops.push(put_route(i + 1, 0, b"to loop 2"));
            if i >= 5 {
                ops.push(delete_outbound(&format!("client-{}", (i - 5) % 5), i - 5));
                ops.push(delete_route(i - 4, 0));
            }
            ops.push(put_retained(&format!("t/{}", i % 7), &i.to_be_bytes()));
            batches.push((ops, durability));
            i += 1;
        }
    }
    batches
}

/// In a child process: applies the script and dies without closing the store.
#[test]
fn crash_child() {
    let Some(dir) = child_role("crash") else {
        return;
    };
    let mut store = RedbStore::open(&dir, CACHE_BYTES).expect("open");
    store.load().expect("load");
    for (ops, durability) in script() {
        store.apply(&ops, durability).expect("apply");
    }
    // SAFETY: `_exit` ends the process at once; nothing of it is used after.
    unsafe { libc::_exit(CRASHED_EXIT_CODE) };
}

#[test]
fn every_durable_batch_survives_a_crash_and_later_buffered_ones_do_not() {
    let dir = TempDir::new("crash");
    let status = run_child("crash_child", "crash", dir.path());
    assert_eq!(
        status.code(),
        Some(CRASHED_EXIT_CODE),
        "the child: {status}"
    );

    let mut sim = SimStore::new();
    for (ops, durability) in script() {
        sim.apply(&ops, durability).expect("apply");
    }
    assert_eq!(sim.buffered_batches(), BATCHES_PER_RUN as usize);
    sim.crash(0);
    let expected = sim.load().expect("load");

    let (store, recovered) = open_loaded(dir.path());
    assert_eq!(recovered, expected);
    assert_bodies_referenced(&recovered);
    // The buffered run between durable ones survived through them, the last one did not.
    let durable_batches = 4 * BATCHES_PER_RUN;
    assert_eq!(recovered.max_message_id, durable_batches);
    let (_, again) = reopen(store);
    assert_eq!(again, expected, "the repaired file reopens as it was");
}
