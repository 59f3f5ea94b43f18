//! The simulated store's crashes and failures: a crash keeps exactly the durable state plus
//! the first k buffered batches; an injected failure applies nothing and loses what was
//! buffered, as redb's reopen after an I/O error does.

mod common;

use common::*;
use starling_store::{Durability, Op, SimStore, Store, StoreError};

use Durability::{Buffered, Durable};

/// Batch `i` of a run: a session, a queued message, a retained message and a route, some
/// of them undoing an earlier batch's.
fn batch(i: u64) -> Vec<Op> {
    let client = format!("c{}", i % 3);
    let mut ops = vec![put_session(&client, &i.to_be_bytes())];
    ops.extend(queued(&client, i, i + 1));
    ops.push(put_retained(&format!("t/{}", i % 2), &i.to_be_bytes()));
    if i % 2 == 1 {
        ops.push(put_route(i, 0, b"route"));
        ops.push(delete_outbound(&format!("c{}", (i + 2) % 3), i - 1));
    }
    if i % 4 == 3 {
        ops.push(delete_session(&format!("c{}", (i + 1) % 3)));
    }
    ops
}

/// What a store that applied `batches` durably holds.
fn durably(batches: &[Vec<Op>]) -> SimStore {
    let mut store = SimStore::new();
    for ops in batches {
        store.apply(ops, Durable).expect("apply");
    }
    store
}

#[test]
fn a_crash_keeps_the_durable_state_and_the_first_k_buffered_batches() {
    let batches: Vec<Vec<Op>> = (0..9).map(batch).collect();
    // Batches 0..=3 durable (3 makes 1 and 2 durable), 4..9 buffered.
    let durabilities = [Durable, Buffered, Buffered, Durable];
    for keep in 0..=6 {
        let mut store = SimStore::new();
        for (i, ops) in batches.iter().enumerate() {
            store
                .apply(ops, durabilities.get(i).copied().unwrap_or(Buffered))
                .expect("apply");
        }
        assert_eq!(store.buffered_batches(), 5);
        store.crash(keep);
        assert_eq!(store.buffered_batches(), 0);
        let kept = 4 + keep.min(5);
        let expected = durably(&batches[..kept]).load().expect("load");
        let recovered = store.load().expect("load");
        assert_eq!(recovered, expected, "keeping {keep} buffered batches");
        assert_bodies_referenced(&recovered);
        assert_eq!(
            store.stats().messages,
            recovered.messages.len() as u64,
            "the counts are the kept state's"
        );
        // The store carries on from there.
        store
            .apply(&batches[0], Buffered)
            .expect("apply after a crash");
        store.crash(1);
        assert_eq!(store.buffered_batches(), 0);
    }
}

#[test]
fn a_sync_or_a_durable_batch_makes_every_buffered_batch_survive() {
    let mut store = SimStore::new();
    store.apply(&batch(0), Buffered).expect("apply");
    store.apply(&batch(1), Buffered).expect("apply");
    assert_eq!(store.buffered_batches(), 2);
    store.sync().expect("sync");
    assert_eq!(store.buffered_batches(), 0);
    store.apply(&batch(2), Buffered).expect("apply");
    store
        .apply(&[], Durable)
        .expect("an empty durable batch syncs");
    assert_eq!(store.buffered_batches(), 0);
    store.crash(0);
    let expected = durably(&[batch(0), batch(1), batch(2)])
        .load()
        .expect("load");
    assert_eq!(store.load().expect("load"), expected);
}

#[test]
fn injected_failures_apply_nothing_and_lose_the_buffered_batches() {
    let mut store = SimStore::new();
    store.apply(&batch(0), Durable).expect("apply");
    store.apply(&batch(1), Buffered).expect("apply");
    store.fail_next(2, || StoreError::NoSpace("/sim".into()));
    let error = store
        .apply(&batch(2), Durable)
        .expect_err("the first failure");
    assert!(matches!(error, StoreError::NoSpace(_)), "{error}");
    assert_eq!(store.buffered_batches(), 0, "lost with the failure");
    store
        .apply(&batch(3), Buffered)
        .expect_err("the second failure");
    store.apply(&batch(4), Buffered).expect("failures are over");
    assert_eq!(store.stats().failures, 2);
    assert_eq!(store.stats().batches, 3);
    store.crash(1);
    let expected = durably(&[batch(0), batch(4)]).load().expect("load");
    assert_eq!(store.load().expect("load"), expected);

    // A sync with nothing to make durable writes nothing, so it cannot fail.
    store.fail_next(1, || StoreError::NoSpace("/sim".into()));
    store.sync().expect("nothing buffered");
    store
        .apply(&batch(5), Buffered)
        .expect_err("the failure waited for a write");
}

#[test]
fn the_simulated_store_can_move_between_threads_and_be_cloned() {
    fn send_and_clone<T: Send + Clone>(_: &T) {}
    let mut store = SimStore::new();
    store.apply(&batch(0), Buffered).expect("apply");
    send_and_clone(&store);
    let mut copy = store.clone();
    copy.crash(0);
    let thread = std::thread::spawn(move || store.load().expect("load"));
    let recovered = thread.join().expect("the thread");
    assert_eq!(recovered.sessions.len(), 1, "the original kept its batch");
    assert!(copy.load().expect("load").sessions.is_empty());
}
