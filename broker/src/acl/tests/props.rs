//! Property tests over small alphabets of levels: [`Acl::check`] against a naive reference
//! written after Mosquitto 2.0's `mosquitto_acl_check_default` (lists, textual
//! substitution, [`crate::topic::matches`]), and [`Acl::classify`] against brute force over
//! every topic name of up to four levels.

use proptest::prelude::*;

use super::super::rules::{DENY, READ, WRITE};
use super::super::*;
use crate::topic::matches;

const ACCESS: [(u8, &str); 5] = [
    (READ, "read "),
    (WRITE, "write "),
    (READ | WRITE, "readwrite "),
    (READ | WRITE, ""),
    (DENY, "deny "),
];

#[derive(Debug, Clone)]
struct Line {
    access: usize,
    filter: String,
}

#[derive(Debug, Clone)]
struct Spec {
    anonymous: Vec<Line>,
    users: Vec<(&'static str, Vec<Line>)>,
    patterns: Vec<Line>,
}

impl Spec {
    fn text(&self) -> String {
        let line = |kind: &str, l: &Line| format!("{kind} {}{}\n", ACCESS[l.access].1, l.filter);
        let mut text = String::new();
        for l in &self.anonymous {
            text += &line("topic", l);
        }
        for (i, (name, lines)) in self.users.iter().enumerate() {
            text += &format!("user {name}\n");
            for l in lines {
                text += &line("topic", l);
            }
            // Patterns anywhere in the file.
            if let Some(p) = self.patterns.get(i) {
                text += &line("pattern", p);
            }
        }
        for p in self.patterns.iter().skip(self.users.len()) {
            text += &line("pattern", p);
        }
        text
    }
}

fn filter(levels: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(levels), 1..=3),
        any::<bool>(),
    )
        .prop_map(|(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f += "/#";
            }
            if f.is_empty() { "#".to_owned() } else { f }
        })
}

const RULE_LEVELS: &[&str] = &["a", "b", "$x", "", "+"];
const PATTERN_LEVELS: &[&str] = &["a", "$x", "+", "%c", "%u", "x%c", ""];

fn lines(levels: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<Line>> {
    prop::collection::vec(
        (0..ACCESS.len(), filter(levels)).prop_map(|(access, filter)| Line { access, filter }),
        0..=max,
    )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        lines(RULE_LEVELS, 4),
        prop::collection::vec(
            (
                prop::sample::select(&["u", "v", "a"][..]),
                lines(RULE_LEVELS, 4),
            ),
            0..=3,
        ),
        lines(PATTERN_LEVELS, 4),
    )
        .prop_map(|(anonymous, users, patterns)| Spec {
            anonymous,
            users,
            patterns,
        })
}

fn substitute_naive(pattern: &str, who: Identity<'_>) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('%', Some('c')) => {
                chars.next();
                out += who.client_id;
            }
            ('%', Some('u')) => {
                chars.next();
                out += who.username.unwrap_or_default();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Mosquitto 2.0's algorithm, with `/` refused in values as documented in the module.
fn reference(spec: &Spec, who: Identity<'_>, topic: &str, access: Access) -> bool {
    let wanted = match access {
        Access::Read => READ,
        Access::Write => WRITE,
    };
    let section: Option<Vec<&Line>> = match who.username {
        None => Some(spec.anonymous.iter().collect()).filter(|s: &Vec<&Line>| !s.is_empty()),
        Some(u) => {
            let mut found = None::<Vec<&Line>>;
            for (name, lines) in &spec.users {
                if *name == u {
                    found.get_or_insert_with(Vec::new).extend(lines);
                }
            }
            found
        }
    };
    for l in ordered(section.unwrap_or_default()) {
        if topic.starts_with('$') && !l.filter.starts_with('$') {
            continue;
        }
        if matches(&l.filter, topic) {
            let bits = ACCESS[l.access].0;
            if bits == DENY {
                return false;
            }
            if bits & wanted != 0 {
                return true;
            }
        }
    }
    if spec.patterns.is_empty() {
        return false;
    }
    let dangerous = |s: &str| s.contains(['+', '#', '/']);
    if dangerous(who.client_id) || who.username.is_some_and(dangerous) {
        return false;
    }
    for l in ordered(spec.patterns.iter().collect()) {
        if l.filter.contains("%u") && who.username.is_none() {
            continue;
        }
        let f = substitute_naive(&l.filter, who);
        if !f.is_empty() && matches(&f, topic) {
            let bits = ACCESS[l.access].0;
            if bits == DENY {
                return false;
            }
            if bits & wanted != 0 {
                return true;
            }
        }
    }
    false
}

/// Deny lines first, as Mosquitto puts them at the front of each list.
fn ordered(lines: Vec<&Line>) -> Vec<&Line> {
    let (mut deny, rest): (Vec<_>, Vec<_>) =
        lines.into_iter().partition(|l| ACCESS[l.access].0 == DENY);
    deny.extend(rest);
    deny
}

const NAME_LEVELS: [&str; 4] = ["a", "b", "$x", ""];

/// Every topic name of one to four levels over [`NAME_LEVELS`].
fn all_topics() -> Vec<String> {
    let mut out = Vec::new();
    let mut frontier = vec![String::new()];
    for depth in 0..4 {
        let mut next = Vec::new();
        for prefix in &frontier {
            for level in NAME_LEVELS {
                let t = if depth == 0 {
                    level.to_owned()
                } else {
                    format!("{prefix}/{level}")
                };
                next.push(t);
            }
        }
        out.extend(next.iter().filter(|t| !t.is_empty()).cloned());
        frontier = next;
    }
    out
}

fn identities() -> Vec<Identity<'static>> {
    let ids = ["a", "$x", "", "a/b", "c+"];
    let users = [None, Some("u"), Some("a"), Some("v"), Some("x#")];
    let mut out = Vec::new();
    for (i, username) in users.into_iter().enumerate() {
        out.push(Identity {
            username,
            client_id: ids[i % ids.len()],
        });
        out.push(Identity {
            username,
            client_id: ids[(i + 1) % ids.len()],
        });
    }
    out
}

/// Whether a filter (as levels) matches the empty topic name (one empty level).
fn matches_empty(levels: &[&str]) -> bool {
    match levels {
        ["#", ..] => true,
        [first] => matches!(*first, "" | "+"),
        [first, "#"] => matches!(*first, "" | "+"),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn check_agrees_with_the_reference(spec in spec()) {
        let acl = Acl::parse(&spec.text(), "<prop>").map_err(|e| TestCaseError::fail(e.to_string()))?;
        for who in identities() {
            for topic in all_topics() {
                for access in [Access::Read, Access::Write] {
                    prop_assert_eq!(
                        acl.check(who, &topic, access),
                        reference(&spec, who, &topic, access),
                        "{:?} {} {:?}\n{}", who, topic, access, spec.text()
                    );
                }
            }
        }
    }

    #[test]
    fn classify_is_sound(spec in spec(), sub in filter(RULE_LEVELS)) {
        let acl = Acl::parse(&spec.text(), "<prop>").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let topics = all_topics();
        for who in identities() {
            let class = acl.classify(who, &sub);
            for topic in topics.iter().filter(|t| matches(&sub, t)) {
                let readable = acl.check(who, topic, Access::Read);
                match class {
                    FilterClass::Always => prop_assert!(readable, "{:?} {} {}\n{}", who, sub, topic, spec.text()),
                    FilterClass::Never => prop_assert!(!readable, "{:?} {} {}\n{}", who, sub, topic, spec.text()),
                    FilterClass::PerTopic => {}
                }
            }
        }
    }

    #[test]
    fn overlap_and_covers_agree_with_brute_force(a in filter(RULE_LEVELS), b in filter(RULE_LEVELS)) {
        let (la, lb): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
        let topics = all_topics();
        let both = topics.iter().any(|t| matches(&a, t) && matches(&b, t));
        // Exact but for the empty topic name (one empty level, which no client can publish):
        // `overlap` may count it, which only ever makes a classification `PerTopic`.
        let only_empty = !both && matches_empty(&la) && matches_empty(&lb);
        if !only_empty {
            prop_assert_eq!(super::overlap(&la, &lb), both, "{} {}", a, b);
        }
        let a_in_b = topics.iter().filter(|t| matches(&a, t)).all(|t| matches(&b, t));
        // Brute force over four levels can only refute covering, not prove it for `#`.
        if super::covers(&lb, &la) {
            prop_assert!(a_in_b, "{} covers {}", b, a);
        } else if !a.ends_with('#') && !b.ends_with('#') {
            prop_assert!(!a_in_b, "{} should cover {}", b, a);
        }
    }
}
