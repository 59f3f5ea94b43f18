//! The retained-message store: set, replace, clear, and matching by filter (wildcards, `$`
//! topics, empty levels), plus property tests against brute-force `matches`: for a whole
//! walk, and for a walk cut into pieces while the store changes between them.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use proptest::prelude::*;
use starling::topic::retained::{Cursor, level_order};
use starling::topic::{RetainedStore, matches, validate_topic_filter, validate_topic_name};

fn found(store: &RetainedStore<u32>, filter: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    store.for_each_match(filter, |topic, v| out.push((topic.to_owned(), *v)));
    out.sort_unstable();
    out
}

fn pairs(expected: &[(&str, u32)]) -> Vec<(String, u32)> {
    expected
        .iter()
        .map(|(t, v)| ((*t).to_owned(), *v))
        .collect()
}

#[test]
fn set_replaces_one_message_per_topic_mqtt_3_3_1_5() {
    let mut store = RetainedStore::new();
    assert_eq!(store.set("a/b", 1), Ok(None));
    assert_eq!(store.set("a/b", 2), Ok(Some(1)));
    assert_eq!((store.len(), store.get("a/b")), (1, Some(&2)));
    assert_eq!(store.get("a"), None);
    assert_eq!(found(&store, "a/b"), pairs(&[("a/b", 2)]));
}

#[test]
fn clearing_removes_and_gives_nodes_back_mqtt_3_3_1_10() {
    // The broker calls `remove` for a retained PUBLISH with an empty payload.
    let mut store = RetainedStore::new();
    store.set("a/b/c", 1).expect("shallow topic");
    store.set("a/b", 2).expect("shallow topic");
    assert_eq!(store.remove("a/b/c"), Some(1));
    assert_eq!(store.remove("a/b/c"), None);
    assert_eq!(store.remove("a"), None);
    assert_eq!(found(&store, "#"), pairs(&[("a/b", 2)]));
    assert_eq!(store.remove("a/b"), Some(2));
    assert_eq!(
        (store.len(), store.node_count(), store.is_empty()),
        (0, 0, true)
    );
    store.check_invariants().expect("invariants hold");
}

#[test]
fn wildcards_find_the_retained_topics() {
    let mut store = RetainedStore::new();
    let topics = [
        "sport",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/",
        "/sport",
        "news",
        "$SYS/up",
    ];
    for (i, t) in topics.iter().enumerate() {
        store.set(t, i as u32).expect("shallow topic");
    }
    let everything_but_sys = [
        ("/sport", 4),
        ("news", 5),
        ("sport", 0),
        ("sport/", 3),
        ("sport/tennis", 1),
        ("sport/tennis/player1", 2),
    ];
    assert_eq!(found(&store, "#"), pairs(&everything_but_sys));
    assert_eq!(
        found(&store, "sport/#"),
        pairs(&[
            ("sport", 0),
            ("sport/", 3),
            ("sport/tennis", 1),
            ("sport/tennis/player1", 2)
        ])
    );
    assert_eq!(
        found(&store, "sport/+"),
        pairs(&[("sport/", 3), ("sport/tennis", 1)])
    );
    assert_eq!(found(&store, "+"), pairs(&[("news", 5), ("sport", 0)]));
    assert_eq!(
        found(&store, "+/+"),
        pairs(&[("/sport", 4), ("sport/", 3), ("sport/tennis", 1)])
    );
    assert_eq!(
        found(&store, "+/tennis/#"),
        pairs(&[("sport/tennis", 1), ("sport/tennis/player1", 2)])
    );
    assert_eq!(
        found(&store, "sport/tennis/player1/#"),
        pairs(&[("sport/tennis/player1", 2)])
    );
    assert_eq!(found(&store, "nothing/#"), pairs(&[]));
    // MQTT-4.7.2-1: only a filter naming `$SYS` finds `$SYS` topics.
    assert_eq!(found(&store, "$SYS/#"), pairs(&[("$SYS/up", 6)]));
    assert_eq!(found(&store, "+/up"), pairs(&[]));
}

#[test]
fn wide_levels_are_found_and_emptied() {
    let mut store = RetainedStore::new();
    for i in 0..500u32 {
        store
            .set(&format!("dev/{i}/state"), i)
            .expect("shallow topic");
    }
    assert_eq!(found(&store, "dev/321/+"), pairs(&[("dev/321/state", 321)]));
    assert_eq!(found(&store, "dev/+/state").len(), 500);
    store.check_invariants().expect("invariants hold");
    for i in 0..500u32 {
        assert_eq!(store.remove(&format!("dev/{i}/state")), Some(i));
    }
    assert_eq!((store.len(), store.node_count()), (0, 0));
}

#[test]
fn a_walk_over_a_wide_level_resumes_in_bounded_pieces() {
    let mut store = RetainedStore::new();
    let n = 20_000u32;
    for i in 0..n {
        store.set(&format!("ret/{i}"), i).expect("shallow topic");
    }
    let snapshot = store.stamp();
    let mut cursor = Cursor::new();
    let (mut seen, mut calls) = (0u32, 0);
    let mut last: Option<String> = None;
    while !cursor.is_done() {
        calls += 1;
        let mut taken = 0;
        store.scan("ret/#", &mut cursor, snapshot, 1000, |topic, _| {
            if taken == 256 {
                return ControlFlow::Break(());
            }
            taken += 1;
            if let Some(previous) = &last {
                assert_eq!(level_order(previous, topic), Ordering::Less);
            }
            last = Some(topic.to_owned());
            seen += 1;
            ControlFlow::Continue(())
        });
        // A topic set after the walk began is not reported by it.
        store
            .set(&format!("ret/new{calls}"), 0)
            .expect("shallow topic");
    }
    assert_eq!(seen, n);
    assert!(calls >= n / 256, "{calls} calls");
}

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After any sets and removes, each filter finds exactly the topics `matches` accepts.
    #[test]
    fn for_each_match_agrees_with_brute_force(
        ops in prop::collection::vec((name(), any::<Option<u32>>()), 0..40),
        filters in prop::collection::vec(filter(), 1..12),
    ) {
        let mut store = RetainedStore::new();
        let mut model = BTreeMap::new();
        for (topic, value) in &ops {
            match value {
                Some(v) => prop_assert_eq!(store.set(topic, *v).expect("shallow topic"), model.insert(topic.clone(), *v)),
                None => prop_assert_eq!(store.remove(topic), model.remove(topic)),
            }
            prop_assert_eq!(store.check_invariants(), Ok(()));
        }
        prop_assert_eq!(store.len(), model.len());
        for f in &filters {
            let want: Vec<(String, u32)> =
                model.iter().filter(|(t, _)| matches(f, t)).map(|(t, v)| (t.clone(), *v)).collect();
            prop_assert_eq!(found(&store, f), want, "filter {:?}", f);
        }
        for topic in model.keys() {
            prop_assert!(store.remove(topic).is_some());
        }
        prop_assert_eq!((store.len(), store.node_count()), (0, 0));
    }
}

/// One change to the store between two pieces of a walk: set (`Some`) or remove (`None`).
fn change() -> impl Strategy<Value = (String, Option<u32>)> {
    (name(), any::<Option<u32>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A walk cut into pieces (a budget of nodes, a number of matches taken before the next
    /// is refused) with the store changing between pieces reports, in level order and once
    /// each, every matching topic it could: present when the walk began, and not set or
    /// removed meanwhile; never a value stored after it began.
    #[test]
    fn a_walk_in_pieces_survives_changes(
        initial in prop::collection::vec((name(), any::<u32>()), 0..30),
        filter in filter(),
        pieces in prop::collection::vec((1usize..5, 0usize..4, prop::option::of(change())), 1..40),
    ) {
        let mut store = RetainedStore::new();
        let mut model = BTreeMap::new();
        for (topic, value) in &initial {
            store.set(topic, *value).expect("shallow topic");
            model.insert(topic.clone(), *value);
        }
        let snapshot = store.stamp();
        let mut touched = BTreeSet::new();
        let mut cursor = Cursor::new();
        let mut reported: Vec<(String, u32)> = Vec::new();
        let mut refused: Option<String> = None;
        let mut piece = pieces.iter().cycle();
        let mut calls = 0;
        while !cursor.is_done() {
            calls += 1;
            prop_assert!(calls < 10_000, "the walk makes no progress");
            let &(budget, take, ref change) = piece.next().expect("cycled");
            let mut taken = 0;
            let mut first = true;
            let visited = store.scan(&filter, &mut cursor, snapshot, budget, |topic, value| {
                // A topic refused last time is the first one offered again.
                if first && let Some(r) = refused.take() {
                    assert!(r == topic || touched.contains(&r), "{r} refused, {topic} offered");
                }
                first = false;
                if taken == take && take > 0 {
                    refused = Some(topic.to_owned());
                    return ControlFlow::Break(());
                }
                taken += 1;
                reported.push((topic.to_owned(), *value));
                ControlFlow::Continue(())
            });
            prop_assert!(visited <= budget, "{} nodes visited on a budget of {}", visited, budget);
            for (topic, _) in &reported {
                prop_assert!(cursor.has_passed(topic), "{} not passed", topic);
            }
            if let Some((topic, value)) = change {
                touched.insert(topic.clone());
                match value {
                    Some(v) => { store.set(topic, *v).expect("shallow topic"); }
                    None => { store.remove(topic); }
                }
            }
            prop_assert_eq!(store.check_invariants(), Ok(()));
        }
        for pair in reported.windows(2) {
            prop_assert_eq!(level_order(&pair[0].0, &pair[1].0), Ordering::Less, "{:?}", pair);
        }
        for (topic, value) in &reported {
            prop_assert!(matches(&filter, topic));
            prop_assert_eq!(model.get(topic), Some(value), "{} reported with a newer value", topic);
        }
        let reported: BTreeMap<String, u32> = reported.into_iter().collect();
        for (topic, value) in &model {
            if matches(&filter, topic) && !touched.contains(topic) {
                prop_assert_eq!(reported.get(topic), Some(value), "{} missed", topic);
            }
        }
    }
}
