//! The subscription index: replacement and removal rules, and property tests against the
//! brute-force reference (`matches` over every subscription) and a map model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use starling::topic::{SubscriptionIndex, matches, validate_topic_filter, validate_topic_name};

fn matched(index: &SubscriptionIndex<u8, u16>, name: &str) -> Vec<(u8, u16)> {
    let mut out = Vec::new();
    index.for_each_match(name, |s, o| out.push((s, *o)));
    out.sort_unstable();
    out
}

#[test]
fn same_filter_same_subscriber_replaces_mqtt_3_8_4_3() {
    let mut index = SubscriptionIndex::new();
    assert_eq!(index.subscribe("a/+", 1u8, 0u16), Ok(None));
    assert_eq!(index.subscribe("a/+", 1, 2), Ok(Some(0)));
    assert_eq!(index.len(), 1);
    assert_eq!(matched(&index, "a/b"), [(1, 2)]);
    // Another subscriber, or another filter, is another subscription.
    assert_eq!(index.subscribe("a/+", 2, 1), Ok(None));
    assert_eq!(index.subscribe("a/#", 1, 1), Ok(None));
    assert_eq!(index.len(), 3);
    assert_eq!(index.get("a/+", 1), Some(&2));
    assert_eq!(index.get("a/#", 2), None);
    index.check_invariants().expect("invariants hold");
}

#[test]
fn overlapping_filters_report_each_match_mqtt_3_3_5_1() {
    // The router folds these into one delivery at the highest QoS; the index reports both.
    let mut index = SubscriptionIndex::new();
    index.subscribe("a/+", 1u8, 0u16).expect("shallow filter");
    index.subscribe("a/#", 1, 2).expect("shallow filter");
    index.subscribe("#", 2, 1).expect("shallow filter");
    assert_eq!(matched(&index, "a/b"), [(1, 0), (1, 2), (2, 1)]);
}

#[test]
fn unsubscribe_compares_filters_literally_and_prunes() {
    let mut index = SubscriptionIndex::new();
    index.subscribe("a/b/c", 1u8, 0u16).expect("shallow filter");
    index.subscribe("a/+/c", 1, 0).expect("shallow filter");
    // A filter that merely matches, or a different subscriber, removes nothing.
    assert_eq!(index.unsubscribe("a/+/+", 1), None);
    assert_eq!(index.unsubscribe("a/#", 1), None);
    assert_eq!(index.unsubscribe("a/b/c", 2), None);
    assert_eq!(index.unsubscribe("a/b/c", 1), Some(0));
    assert_eq!(index.node_count(), 3); // a, a/+, a/+/c
    assert_eq!(index.unsubscribe("a/+/c", 1), Some(0));
    assert_eq!((index.len(), index.node_count()), (0, 0));
    index.check_invariants().expect("invariants hold");
}

#[test]
fn unsubscribe_all_takes_the_sessions_filters_and_purge_finds_them_itself() {
    let mut index = SubscriptionIndex::new();
    let filters = ["x/#", "+/y", "x/y", "/"];
    for f in filters {
        index.subscribe(f, 1u8, 0u16).expect("shallow filter");
        index.subscribe(f, 2, 0).expect("shallow filter");
    }
    assert_eq!(
        index.unsubscribe_all(1, filters.iter().copied().chain(["never/subscribed"])),
        4
    );
    assert_eq!(index.len(), 4);
    assert_eq!(index.purge(2), 4);
    assert_eq!(index.purge(2), 0);
    assert_eq!((index.len(), index.node_count()), (0, 0));
}

#[test]
fn wide_levels_switch_representation_and_come_back() {
    let mut index = SubscriptionIndex::new();
    for i in 0..1000u16 {
        index
            .subscribe(&format!("bench/{i}"), (i % 200) as u8, i)
            .expect("shallow filter");
    }
    index.check_invariants().expect("invariants hold");
    assert_eq!(matched(&index, "bench/999"), [(199, 999)]);
    for i in 0..1000u16 {
        assert_eq!(
            index.unsubscribe(&format!("bench/{i}"), (i % 200) as u8),
            Some(i)
        );
        if i % 97 == 0 {
            index.check_invariants().expect("invariants hold");
        }
    }
    assert_eq!((index.len(), index.node_count()), (0, 0));
}

// ---- property tests -------------------------------------------------------------------

/// Literal levels: empty, `$`-prefixed, multibyte, and a few plain ones.
fn literal() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "", "$SYS", "$x", "é", "日本"])
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(literal(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("valid name", |n| validate_topic_name(n).is_ok())
}

fn filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => literal(), 1 => Just("+")];
    (prop::collection::vec(level, 0..4), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            levels.join("/")
        })
        .prop_filter("valid filter", |f| validate_topic_filter(f).is_ok())
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe(usize, u8, u16),
    Unsubscribe(usize, u8),
    Purge(u8),
}

fn op(filters: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..filters, 0..4u8, any::<u16>()).prop_map(|(f, s, o)| Op::Subscribe(f, s, o)),
        3 => (0..filters, 0..4u8).prop_map(|(f, s)| Op::Unsubscribe(f, s)),
        1 => (0..4u8).prop_map(Op::Purge),
    ]
}

type Model = BTreeMap<(String, u8), u16>;

fn apply(index: &mut SubscriptionIndex<u8, u16>, model: &mut Model, filters: &[String], op: &Op) {
    match *op {
        Op::Subscribe(f, s, o) => {
            let want = model.insert((filters[f].clone(), s), o);
            assert_eq!(index.subscribe(&filters[f], s, o), Ok(want));
        }
        Op::Unsubscribe(f, s) => {
            let want = model.remove(&(filters[f].clone(), s));
            assert_eq!(index.unsubscribe(&filters[f], s), want);
        }
        Op::Purge(s) => {
            let before = model.len();
            model.retain(|(_, t), _| *t != s);
            assert_eq!(index.purge(s), before - model.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The trie reports exactly the subscriptions whose filter `matches` the name.
    #[test]
    fn for_each_match_agrees_with_brute_force(
        subs in prop::collection::vec((filter(), 0..6u8), 0..24),
        names in prop::collection::vec(name(), 1..12),
    ) {
        let mut index = SubscriptionIndex::new();
        let mut model = Model::new();
        for (i, (f, s)) in subs.iter().enumerate() {
            let o = i as u16;
            prop_assert_eq!(index.subscribe(f, *s, o).expect("shallow filter"), model.insert((f.clone(), *s), o));
        }
        for n in &names {
            let mut want: Vec<(u8, u16)> = model
                .iter()
                .filter(|((f, _), _)| matches(f, n))
                .map(|((_, s), o)| (*s, *o))
                .collect();
            want.sort_unstable();
            prop_assert_eq!(matched(&index, n), want, "name {:?}", n);
        }
    }

    /// Any subscribe/unsubscribe/purge sequence leaves the index equal to a map model, and
    /// removing everything gives every node back.
    #[test]
    fn sequences_agree_with_a_model_and_clean_up(
        filters in prop::collection::vec(filter(), 1..10),
        ops in prop::collection::vec(op(10), 0..80),
    ) {
        let mut index = SubscriptionIndex::new();
        let mut model = Model::new();
        for op in &ops {
            let op = match *op {
                Op::Subscribe(f, s, o) => Op::Subscribe(f % filters.len(), s, o),
                Op::Unsubscribe(f, s) => Op::Unsubscribe(f % filters.len(), s),
                Op::Purge(s) => Op::Purge(s),
            };
            apply(&mut index, &mut model, &filters, &op);
            prop_assert_eq!(index.len(), model.len());
            prop_assert_eq!(index.check_invariants(), Ok(()));
        }
        let mut dump = Model::new();
        index.for_each(|f, s, o| {
            assert!(dump.insert((f.to_owned(), s), *o).is_none(), "{f:?} listed twice");
        });
        prop_assert_eq!(&dump, &model);
        for s in 0..4u8 {
            let mine: Vec<&str> = model.keys().filter(|(_, t)| *t == s).map(|(f, _)| f.as_str()).collect();
            prop_assert_eq!(index.unsubscribe_all(s, mine.iter().copied()), mine.len());
        }
        prop_assert_eq!((index.len(), index.node_count()), (0, 0));
        prop_assert_eq!(index.check_invariants(), Ok(()));
    }
}
