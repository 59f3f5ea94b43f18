//! What a batch does, on both stores alike: message references and the deletion of bodies,
//! session deletion, the high-water mark of message ids, garbage at load, statistics.

mod common;

use common::*;
use starling_store::{Durability, Op, Recovered, RedbStore, Store};

use Durability::{Buffered, Durable};

/// Runs `check` on each store, fresh, with its name for messages.
fn on_both(name: &str, check: impl Fn(&mut Either)) {
    for mut store in Either::both(name) {
        check(&mut store);
    }
}

/// A session "c" with `message` queued as entry `seq`.
fn session_queuing(seq: u64, message: u64) -> Vec<Op> {
    let mut batch = vec![put_session("c", b"s")];
    batch.extend(queued("c", seq, message));
    batch
}

fn outbound_messages(recovered: &Recovered, client_id: &str) -> Vec<u64> {
    recovered
        .sessions
        .iter()
        .find(|session| &*session.client_id == client_id)
        .map(|session| session.outbound.iter().map(|entry| entry.message).collect())
        .unwrap_or_default()
}

#[test]
fn a_body_lives_while_an_entry_or_a_route_references_it() {
    on_both("refs", |store| {
        let name = store.name();
        let [body, entry] = queued("c", 1, 7);
        store.apply(&[put_session("c", b"s"), body, entry], Durable);
        store.apply(
            &[queued("c", 2, 7)[1].clone(), put_route(7, 0, b"r")],
            Buffered,
        );
        assert_eq!(store.store().stats().messages, 1, "{name}");
        // Two entries and a route: released one by one.
        store.apply(&[delete_outbound("c", 1), delete_route(7, 0)], Durable);
        let recovered = store.restart();
        assert_eq!(recovered.messages.len(), 1, "{name}: still referenced");
        store.apply(&[delete_outbound("c", 2)], Durable);
        let recovered = store.restart();
        assert!(recovered.messages.is_empty(), "{name}: last reference gone");
        assert_eq!(store.store().stats().messages, 0, "{name}");
        assert_eq!(recovered.max_message_id, 7, "{name}: the id is not reused");
    });
}

#[test]
fn an_entry_put_again_keeps_its_one_reference_or_moves_it() {
    on_both("replace", |store| {
        let name = store.name();
        let mut batch = session_queuing(1, 1);
        batch.push(put_outbound("c", 1, 1, b"sent once"));
        store.apply(&batch, Durable);
        // Had the second put taken a reference, the body would outlive this delete.
        store.apply(&[delete_outbound("c", 1)], Durable);
        assert!(store.restart().messages.is_empty(), "{name}");

        let mut batch = queued("c", 1, 2).to_vec();
        batch.push(put_message(3, b"three"));
        batch.push(put_outbound("c", 1, 3, b"moved"));
        store.apply(&batch, Buffered);
        let recovered = store.restart();
        assert_eq!(outbound_messages(&recovered, "c"), [3], "{name}");
        assert_eq!(
            recovered.messages.keys().copied().collect::<Vec<_>>(),
            [3],
            "{name}"
        );
    });
}

#[test]
fn a_body_nothing_references_at_the_end_of_its_batch_is_not_kept() {
    on_both("unreferenced", |store| {
        let name = store.name();
        store.apply(&[put_message(5, b"alone")], Durable);
        // Referenced and released within one batch.
        let mut batch = session_queuing(1, 6);
        batch.push(delete_outbound("c", 1));
        store.apply(&batch, Durable);
        let recovered = store.restart();
        assert!(recovered.messages.is_empty(), "{name}");
        assert_eq!(recovered.max_message_id, 6, "{name}");
        // Released and referenced again within one batch: kept.
        let mut batch = queued("c", 1, 8).to_vec();
        store.apply(&batch, Durable);
        batch = vec![delete_outbound("c", 1), put_outbound("c", 2, 8, b"again")];
        store.apply(&batch, Durable);
        assert_eq!(outbound_messages(&store.restart(), "c"), [8], "{name}");
        assert_bodies_referenced(&store.restart());
    });
}

#[test]
fn putting_a_stored_body_again_changes_nothing() {
    on_both("put-twice", |store| {
        let name = store.name();
        store.apply(&session_queuing(1, 1), Durable);
        store.apply(&[put_message(1, b"other"), put_route(1, 0, b"r")], Durable);
        let recovered = store.restart();
        assert_eq!(recovered.messages[&1], b"body 1", "{name}");
        assert_eq!(store.store().stats().messages, 1, "{name}");
    });
}

#[test]
fn deleting_a_session_deletes_its_entries_and_releases_their_bodies() {
    on_both("delete-session", |store| {
        let name = store.name();
        let mut batch = vec![put_session("a", b"a"), put_session("b", b"b")];
        batch.extend(queued("a", 1, 1));
        batch.extend(queued("a", 2, 2));
        batch.extend(queued("b", 1, 2));
        batch.extend([
            put_route(1, 0, b"r"),
            put_inbound("a", 9),
            put_inbound("b", 9),
        ]);
        // A client id that extends "a": its entries are not "a"'s.
        batch.extend([put_session("ab", b"ab"), queued("ab", 0, 3)[0].clone()]);
        batch.extend([queued("ab", 0, 3)[1].clone(), put_inbound("ab", 1)]);
        store.apply(&batch, Durable);
        store.apply(&[delete_session("a")], Buffered);
        let recovered = store.restart();
        let clients: Vec<&str> = recovered.sessions.iter().map(|s| &*s.client_id).collect();
        assert_eq!(clients, ["ab", "b"], "{name}");
        assert_eq!(outbound_messages(&recovered, "b"), [2], "{name}");
        assert_eq!(recovered.sessions[0].inbound, [1], "{name}");
        assert_eq!(recovered.sessions[1].inbound, [9], "{name}");
        // Body 1 is held by its route, 2 by b's entry, 3 by ab's.
        assert_eq!(recovered.messages.len(), 3, "{name}");
        assert_bodies_referenced(&recovered);
        store.apply(&[delete_session("b"), delete_route(1, 0)], Durable);
        let recovered = store.restart();
        assert_eq!(recovered.messages.keys().copied().collect::<Vec<_>>(), [3]);
        // A new session of the same client starts empty (before any load collects garbage).
        store.apply(&[put_session("ab", b"new"), delete_session("ab")], Buffered);
        store.apply(&[put_session("ab", b"again")], Durable);
        let recovered = store.restart();
        assert_eq!(recovered.sessions[0].outbound, [], "{name}");
        assert_eq!(recovered.sessions[0].inbound, [] as [u16; 0], "{name}");
    });
}

#[test]
fn the_highest_message_id_survives_its_body() {
    on_both("high-water", |store| {
        let name = store.name();
        let mut batch = session_queuing(1, 41);
        batch.extend(queued("c", 2, 40));
        store.apply(&batch, Durable);
        store.apply(&[delete_session("c")], Durable);
        let recovered = store.restart();
        assert!(recovered.messages.is_empty(), "{name}");
        assert_eq!(recovered.max_message_id, 41, "{name}");
        store.apply(&[put_message(12, b"lower")], Durable);
        assert_eq!(store.restart().max_message_id, 41, "{name}");
    });
}

#[test]
fn a_load_drops_what_nothing_can_use() {
    on_both("garbage", |store| {
        let name = store.name();
        // Entries of a client with no session record, and the body only they reference.
        let mut batch = queued("ghost", 1, 1).to_vec();
        batch.extend([put_inbound("ghost", 3), put_session("c", b"s")]);
        batch.extend(queued("c", 1, 2));
        batch.push(put_outbound("ghost", 2, 2, b"shared"));
        store.apply(&batch, Durable);
        assert_eq!(store.store().stats().messages, 2, "{name}");
        let syncs = store.store().stats().syncs;
        let recovered = store.store().load().expect("load");
        assert_eq!(recovered.sessions.len(), 1, "{name}");
        assert_eq!(recovered.messages.keys().copied().collect::<Vec<_>>(), [2]);
        let stats = store.store().stats();
        assert_eq!(stats.messages, 1, "{name}");
        assert_eq!(
            stats.syncs,
            syncs + 1,
            "{name}: the garbage went in one commit"
        );
        // Nothing left for the next load.
        assert_eq!(store.store().load().expect("load"), recovered, "{name}");
        assert_eq!(store.store().stats().syncs, syncs + 1, "{name}");
        // The released body's id stays used.
        assert_eq!(store.restart().max_message_id, 2, "{name}");
    });
}

#[test]
fn retained_messages_and_inbound_ids_come_back_sorted() {
    on_both("sorted", |store| {
        let name = store.name();
        let batch = [
            put_session("z", b"z"),
            put_session("a", b"a"),
            put_inbound("a", 300),
            put_inbound("a", 2),
            put_retained("t/2", b"2"),
            put_retained("t/1", b"1"),
            put_retained("t/3", b"3"),
            delete_retained("t/3"),
            delete_inbound("a", 300),
            put_inbound("a", 1),
        ];
        store.apply(&batch, Buffered);
        store.store().sync().expect("sync");
        let recovered = store.restart();
        let clients: Vec<&str> = recovered.sessions.iter().map(|s| &*s.client_id).collect();
        assert_eq!(clients, ["a", "z"], "{name}");
        assert_eq!(recovered.sessions[0].inbound, [1, 2], "{name}");
        let topics: Vec<&str> = recovered.retained.iter().map(|(t, _)| &**t).collect();
        assert_eq!(topics, ["t/1", "t/2"], "{name}");
    });
}

#[test]
fn statistics_count_batches_ops_and_durable_commits() {
    on_both("stats", |store| {
        let name = store.name();
        let start = store.store().stats();
        store.apply(&[put_session("a", b"a"), put_session("b", b"b")], Buffered);
        store.apply(&[], Buffered);
        store.store().sync().expect("sync");
        store.store().sync().expect("a sync with nothing buffered");
        store.apply(&[put_session("c", b"c")], Durable);
        store.apply(&[], Durable);
        let stats = store.store().stats();
        assert_eq!(stats.batches - start.batches, 4, "{name}");
        assert_eq!(stats.ops - start.ops, 3, "{name}");
        assert_eq!(stats.syncs - start.syncs, 2, "{name}");
        assert_eq!(stats.failures, 0, "{name}");
        match store {
            Either::Redb(..) => assert!(stats.disk_bytes > 0),
            Either::Sim(_) => assert_eq!(stats.disk_bytes, 0),
        }
    });
}

#[test]
fn a_batch_before_any_load_counts_the_references_the_file_holds() {
    let dir = TempDir::new("no-load");
    let (mut store, _) = open_loaded(dir.path());
    let mut batch = session_queuing(1, 1);
    batch.push(put_outbound("c", 2, 1, b"twice"));
    store.apply(&batch, Durable).expect("apply");
    store.close().expect("close");

    let mut store = RedbStore::open(dir.path(), CACHE_BYTES).expect("open");
    store
        .apply(&[delete_outbound("c", 1)], Durable)
        .expect("apply without a load");
    assert_eq!(store.stats().messages, 1, "one reference is left");
    let (mut store, recovered) = reopen(store);
    assert_eq!(outbound_messages(&recovered, "c"), [1]);
    store
        .apply(&[delete_outbound("c", 2)], Durable)
        .expect("apply");
    let (_, recovered) = reopen(store);
    assert!(recovered.messages.is_empty());
}
