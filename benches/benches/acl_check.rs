//! `Acl::check` on a 1 000-rule ACL: 190 user sections of 5 rules each (950 rules) and
//! 50 patterns, as the core calls it for a PUBLISH and for a delivery to a subscription
//! classified `PerTopic`.
//!
//! - `user_rule`: granted by the user's own section (hash lookup, one short trie walk).
//! - `pattern`: the user's section does not match, a `%u` pattern grants.
//! - `miss`: nothing matches (section and patterns walked, denied).
//! - `classify`: one SUBSCRIBE's classification (allocates; not on the delivery path).
//!
//! `cargo bench -p starling-benches --bench acl_check`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use starling::acl::{Access, Acl, Identity};

const USERS: usize = 190;
const RULES_PER_USER: usize = 5;
const PATTERNS: usize = 50;

fn acl_text() -> String {
    let mut text = String::from("# anonymous\ntopic read $SYS/#\n");
    for u in 0..USERS {
        text += &format!("\nuser user{u}\n");
        text += &format!("topic readwrite site{}/user{u}/#\n", u % 7);
        text += &format!("topic read site{}/+/status\n", u % 7);
        text += &format!("topic write cmd/user{u}/+/out\n");
        text += &format!("topic deny site{}/user{u}/secret\n", u % 7);
        text += &format!("topic read fleet/{}/#\n", u % 13);
    }
    text += "\n";
    for p in 0..PATTERNS {
        match p % 5 {
            0 => text += &format!("pattern readwrite app{p}/%u/#\n"),
            1 => text += &format!("pattern write $SYS/broker/connection/%c/state{p}\n"),
            2 => text += &format!("pattern read devices/%c/cfg{p}\n"),
            3 => text += &format!("pattern deny app{p}/%u/locked\n"),
            _ => text += &format!("pattern read shared{p}/+/%u\n"),
        }
    }
    text
}

fn check(c: &mut Criterion) {
    let acl = Acl::parse(&acl_text(), "bench").expect("valid ACL");
    assert_eq!(acl.rule_count(), USERS * RULES_PER_USER + 1 + PATTERNS);
    let who = Identity {
        username: Some("user42"),
        client_id: "client-42",
    };
    let cases = [
        ("user_rule", "site0/user42/temperature", Access::Write, true),
        ("pattern", "app10/user42/state/now", Access::Read, true),
        ("miss", "elsewhere/user42/temperature", Access::Read, false),
    ];
    let mut group = c.benchmark_group("acl_check");
    for (name, topic, access, expected) in cases {
        assert_eq!(acl.check(who, topic, access), expected, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| acl.check(black_box(who), black_box(topic), access))
        });
    }
    group.bench_function("classify", |b| {
        b.iter(|| acl.classify(black_box(who), black_box("site0/+/status")))
    });
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
