//! The two stores side by side: random batches of random ops, durable or buffered, syncs,
//! loads and restarts, applied to a `RedbStore` and a `SimStore`. After every step both hold
//! as many bodies; at every load (in place, or after closing and reopening the directory)
//! redb holds what the simulated store does; at every restart the closed file holds a body
//! exactly when something references it (checked on the file itself, before the load that
//! would collect garbage). One test restarts after every step; the other only now and then,
//! since a load rebuilds the reference counts: what they become over many batches is tested
//! there.

mod common;

use common::*;
use proptest::prelude::*;
use starling_store::{Durability, Op, Recovered, SimStore, Store};

/// Test cases (each a fresh store and a run of steps); `PROPTEST_CASES` overrides it.
const CASES: u32 = 96;
/// Steps per case, at most.
const MAX_STEPS: usize = 24;
/// Op groups per batch, at most (a group is one op, or a body and the op referencing it).
const MAX_GROUPS_PER_BATCH: usize = 6;
/// Bytes of a record, a body or a meta, at most.
const MAX_BLOB_BYTES: usize = 24;

#[derive(Debug, Clone)]
enum Step {
    Batch(Vec<Op>, Durability),
    Sync,
    /// A load in place.
    Load,
    /// Close, check the file, reopen and load.
    Restart,
}

fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..MAX_BLOB_BYTES)
}

/// Few names and ids, so that ops meet: the same sessions, entries, bodies and topics.
fn client() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "ab", "é"])
}

fn topic() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["t", "t/1", "t/2"])
}

/// One op, or a body put right before the op that references it (so that every reference
/// has its body, as the broker guarantees).
fn group() -> impl Strategy<Value = Vec<Op>> {
    let seq = 0..3u64;
    let message = 1..6u64;
    let packet_id = 1..4u16;
    let ticket = 0..3u32;
    prop_oneof![
        3 => (client(), blob()).prop_map(|(c, record)| vec![put_session(c, &record)]),
        1 => client().prop_map(|c| vec![delete_session(c)]),
        1 => (message.clone(), blob()).prop_map(|(id, body)| vec![put_message(id, &body)]),
        4 => (client(), seq.clone(), message.clone(), blob(), blob()).prop_map(
            |(c, seq, id, body, meta)| vec![put_message(id, &body), put_outbound(c, seq, id, &meta)]
        ),
        2 => (client(), seq).prop_map(|(c, seq)| vec![delete_outbound(c, seq)]),
        2 => (client(), packet_id.clone()).prop_map(|(c, p)| vec![put_inbound(c, p)]),
        1 => (client(), packet_id).prop_map(|(c, p)| vec![delete_inbound(c, p)]),
        1 => (topic(), blob()).prop_map(|(t, body)| vec![put_retained(t, &body)]),
        1 => topic().prop_map(|t| vec![delete_retained(t)]),
        1 => (message.clone(), ticket.clone(), blob(), blob()).prop_map(|(id, ticket, body, r)| {
            vec![put_message(id, &body), put_route(id, ticket, &r)]
        }),
        1 => (message, ticket).prop_map(|(id, ticket)| vec![delete_route(id, ticket)]),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let batch =
        prop::collection::vec(group(), 0..MAX_GROUPS_PER_BATCH).prop_map(|groups| groups.concat());
    let durability = prop_oneof![Just(Durability::Durable), Just(Durability::Buffered)];
    prop_oneof![
        8 => (batch, durability).prop_map(|(ops, d)| Step::Batch(ops, d)),
        1 => Just(Step::Sync),
        1 => Just(Step::Load),
        1 => Just(Step::Restart),
    ]
}

/// The highest message id any of `ops` puts.
fn highest_put(ops: &[Op]) -> u64 {
    ops.iter()
        .filter_map(|op| match op {
            Op::PutMessage { id, .. } => Some(*id),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn check(recovered: &Recovered, expected: &Recovered, highest: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(recovered, expected);
    assert_bodies_referenced(recovered);
    prop_assert_eq!(recovered.max_message_id, highest);
    Ok(())
}

/// Runs `steps` on both stores (and a restart at the end, or after every step with
/// `restart_each`), checking them as the module says.
fn run(steps: &[Step], restart_each: bool) -> Result<(), TestCaseError> {
    let dir = TempDir::new(if restart_each {
        "model-restarts"
    } else {
        "model"
    });
    let (mut redb, _) = open_loaded(dir.path());
    let mut sim = SimStore::new();
    let mut highest = 0;
    let restart = [Step::Restart];
    let extra: &[Step] = if restart_each { &restart } else { &[] };
    let all = steps
        .iter()
        .flat_map(|step| std::iter::once(step).chain(extra));
    for step in all.chain(&restart) {
        match step {
            Step::Batch(ops, durability) => {
                redb.apply(ops, *durability).expect("redb apply");
                sim.apply(ops, *durability).expect("sim apply");
                highest = highest.max(highest_put(ops));
            }
            Step::Sync => {
                redb.sync().expect("redb sync");
                sim.sync().expect("sim sync");
            }
            Step::Load => {
                let expected = sim.load().expect("sim load");
                check(&redb.load().expect("redb load"), &expected, highest)?;
            }
            Step::Restart => {
                let (reopened, recovered) = reopen(redb);
                redb = reopened;
                check(&recovered, &sim.load().expect("sim load"), highest)?;
            }
        }
        prop_assert_eq!(redb.stats().messages, sim.stats().messages);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Restarts now and then: the counts carry across batches, as in a broker's life.
    #[test]
    fn redb_holds_what_the_simulated_store_holds(
        steps in prop::collection::vec(step(), 1..MAX_STEPS)
    ) {
        run(&steps, false)?;
    }

    /// A restart after every step: every state on the way is checked on the file.
    #[test]
    fn redb_holds_what_the_simulated_store_holds_after_every_step(
        steps in prop::collection::vec(step(), 1..MAX_STEPS / 2)
    ) {
        run(&steps, true)?;
    }
}
