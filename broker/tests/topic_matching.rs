//! The matching rules of MQTT 3.1.1 §4.7 and MQTT 5.0 §4.7, using the specifications' own
//! examples. Every case is checked three ways: [`matches`], the [`SubscriptionIndex`] and the
//! [`RetainedStore`], so the tries are held to the same rules as the reference.

use starling::topic::{
    MAX_TOPIC_LEVELS, RetainedStore, SubscriptionIndex, TooManyLevels, matches,
    validate_topic_filter, validate_topic_name,
};

/// Asserts that `filter` matches `name` exactly when `expected`, in all three implementations.
fn check(filter: &str, name: &str, expected: bool) {
    assert_eq!(validate_topic_filter(filter), Ok(()), "filter {filter:?}");
    assert_eq!(validate_topic_name(name), Ok(()), "name {name:?}");
    assert_eq!(
        matches(filter, name),
        expected,
        "matches({filter:?}, {name:?})"
    );

    let mut index = SubscriptionIndex::new();
    assert_eq!(index.subscribe(filter, 1u32, ()), Ok(None));
    let mut hits = 0;
    index.for_each_match(name, |_, _| hits += 1);
    assert_eq!(
        hits,
        usize::from(expected),
        "index: {filter:?} against {name:?}"
    );

    let mut store = RetainedStore::new();
    assert_eq!(store.set(name, 7u8), Ok(None));
    let mut found = Vec::new();
    store.for_each_match(filter, |topic, v| found.push((topic.to_owned(), *v)));
    let want: Vec<(String, u8)> = if expected {
        vec![(name.to_owned(), 7)]
    } else {
        vec![]
    };
    assert_eq!(found, want, "retained: {filter:?} against {name:?}");
}

#[test]
fn multi_level_wildcard_examples_4_7_1_2() {
    // "sport/tennis/player1/#" would receive messages published to all of these.
    for name in [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
    ] {
        check("sport/tennis/player1/#", name, true);
    }
    // "sport/#" also matches the singular "sport": `#` includes the parent level.
    check("sport/#", "sport", true);
    check("sport/#", "sport/", true);
    check("#", "sport/tennis", true);
    check("sport/tennis/player1/#", "sport/tennis", false);
    check("sport/tennis/player1/#", "sport/tennis/player2", false);
}

#[test]
fn single_level_wildcard_examples_4_7_1_3() {
    check("sport/tennis/+", "sport/tennis/player1", true);
    check("sport/tennis/+", "sport/tennis/player2", true);
    check("sport/tennis/+", "sport/tennis/player1/ranking", false);
    // "sport/+" does not match "sport" but does match "sport/".
    check("sport/+", "sport", false);
    check("sport/+", "sport/", true);
    check("+", "sport", true);
    check("+/tennis/#", "sport/tennis/player1/ranking", true);
    check("sport/+/player1", "sport/tennis/player1", true);
    // "/finance" matches "+/+" and "/+", but not "+".
    check("+/+", "/finance", true);
    check("/+", "/finance", true);
    check("+", "/finance", false);
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards_mqtt_4_7_2_1() {
    // A subscription to "#" will not receive messages published to a topic beginning with $.
    check("#", "$SYS/monitor/Clients", false);
    check("#", "$", false);
    check("+", "$SYS", false);
    check("+/#", "$SYS/x", false);
    // A subscription to "+/monitor/Clients" will not receive "$SYS/monitor/Clients".
    check("+/monitor/Clients", "$SYS/monitor/Clients", false);
    // A subscription to "$SYS/#" and to "$SYS/monitor/+" will.
    check("$SYS/#", "$SYS/monitor/Clients", true);
    check("$SYS/monitor/+", "$SYS/monitor/Clients", true);
    check("$SYS/#", "$SYS", true);
    check("$", "$", true);
    // Only the first character counts: `$` deeper in the name is an ordinary character.
    check("#", "a/$SYS", true);
    check("+/+", "a/$SYS", true);
}

#[test]
fn empty_levels_are_levels_4_7_1_1() {
    check("/", "/", true);
    check("+/+", "/", true);
    check("+", "/", false);
    check("a//b", "a//b", true);
    check("a/+/b", "a//b", true);
    check("a/b", "a//b", false);
    check("a/#", "a//b", true);
    check("/#", "/", true);
    check("a/", "a", false);
    check("a/+", "a/", true);
    check("a/#", "a/", true);
}

#[test]
fn comparison_is_exact_and_case_sensitive_mqtt_4_7_3_4() {
    check("ACCOUNTS", "Accounts", false);
    check("Accounts payable", "Accounts payable", true);
    check("/finance", "finance", false);
    check("finance", "/finance", false);
    check("a/b", "a/b/c", false);
    check("a/b/c", "a/b", false);
    // No Unicode normalisation: precomposed é (U+00E9) is not e + U+0301.
    check("caf\u{e9}", "cafe\u{301}", false);
}

#[test]
fn multibyte_utf8_levels_match() {
    check("é/+", "é/ü", true);
    check("+/語", "日本/語", true);
    check("#", "日本", true);
    check("日本/#", "日本", true);
    check("ü", "é", false);
    check("+", "€", true);
}

#[test]
fn share_filters_are_literal_until_shared_subscriptions_exist() {
    check("$share/g/a", "$share/g/a", true);
    check("$share/g/a", "a", false);
}

#[test]
fn topics_deeper_than_the_limit_are_refused() {
    let deepest = vec!["x"; MAX_TOPIC_LEVELS].join("/");
    let too_deep = format!("{deepest}/x");
    let mut index = SubscriptionIndex::new();
    assert_eq!(index.subscribe(&deepest, 1u8, ()), Ok(None));
    assert_eq!(index.subscribe(&too_deep, 1u8, ()), Err(TooManyLevels));
    assert_eq!(
        index.subscribe(&format!("{deepest}/#"), 1u8, ()),
        Err(TooManyLevels)
    );
    assert_eq!(index.len(), 1);
    let mut hits = 0;
    index.for_each_match(&too_deep, |_, _| hits += 1);
    assert_eq!(hits, 0);

    let mut store = RetainedStore::new();
    assert_eq!(store.set(&too_deep, ()), Err(TooManyLevels));
    assert_eq!((store.len(), store.node_count()), (0, 0));
    // A deep name is still matched, and a deep filter still searched, without recursion
    // deeper than the trie.
    let very_deep = "/".repeat(30_000);
    assert!(matches("#", &very_deep));
    index.for_each_match(&very_deep, |_, _| hits += 1);
    store.for_each_match(&very_deep, |_, _| hits += 1);
    assert_eq!(hits, 0);
}
