//! Classifying a subscription's filter against a client's rules: filter-against-filter
//! *overlap* (some topic name matches both) and *cover* (every topic name matching one
//! matches the other), level by level, with the `$` rule (MQTT-4.7.2-1).
//!
//! Both relations are exact for valid filters, but for one topic `overlap` counts that no
//! client can publish: the empty name (a single empty level, matched by `+`, `#` or `/#`);
//! counting it can only turn an answer into [`FilterClass::PerTopic`]. The classification built on them is
//! conservative: it answers [`FilterClass::Always`] or [`FilterClass::Never`] only when one
//! rule alone decides every topic (a filter covered half by one read rule and half by
//! another is [`FilterClass::PerTopic`]), never wrongly.

use super::rules::{DENY, READ, RuleSet, substitutable, substitute};
use super::{Acl, FilterClass, Identity};

/// Whether the first level of a topic matching this literal level would start with `$`.
fn is_dollar_level(level: &str) -> bool {
    level.starts_with('$')
}

/// Whether some topic name matches both filters (given as levels).
pub(super) fn overlap(a: &[&str], b: &[&str]) -> bool {
    overlap_from(a, b, true)
}

fn overlap_from(a: &[&str], b: &[&str], first: bool) -> bool {
    match (a.first(), b.first()) {
        (Some(&"#"), _) => hash_overlaps(b, first),
        (_, Some(&"#")) => hash_overlaps(a, first),
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(&x), Some(&y)) => {
            let level_ok = match (x, y) {
                ("+", "+") => true,
                ("+", lit) | (lit, "+") => !(first && is_dollar_level(lit)),
                (x, y) => x == y,
            };
            level_ok && overlap_from(&a[1..], &b[1..], false)
        }
    }
}

/// Whether `#` (at the first level if `first`) and the rest `other` of another filter
/// match a common topic: always below the first level; at the first level, unless `other`
/// only matches `$` topics.
fn hash_overlaps(other: &[&str], first: bool) -> bool {
    !first
        || other
            .first()
            .is_none_or(|&l| l == "+" || l == "#" || !is_dollar_level(l))
}

/// Whether every topic name matching `inner` matches `outer` (both given as levels).
pub(super) fn covers(outer: &[&str], inner: &[&str]) -> bool {
    covers_from(outer, inner, true)
}

fn covers_from(outer: &[&str], inner: &[&str], first: bool) -> bool {
    match (outer.first(), inner.first()) {
        // `#` matches every continuation, but at the first level no `$` topic, which the
        // inner filter only matches when its first level is a literal `$…`.
        (Some(&"#"), inner_first) => {
            !first || inner_first.is_none_or(|&l| l == "+" || l == "#" || !is_dollar_level(l))
        }
        // The inner `#` matches every continuation, zero levels included except at the first
        // level: only `#` matches all of them, and `+/#` all non-empty ones.
        (_, Some(&"#")) => first && outer == ["+", "#"],
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(&o), Some(&i)) => {
            let level_ok = match (o, i) {
                // A first-level `+` on both sides matches the same non-`$` levels.
                ("+", "+") => true,
                ("+", lit) => !(first && is_dollar_level(lit)),
                (_, "+") => false,
                (o, i) => o == i,
            };
            level_ok && covers_from(&outer[1..], &inner[1..], false)
        }
    }
}

fn levels(filter: &str) -> Vec<&str> {
    filter.split('/').collect()
}

/// What the rules of one phase (a section, or the patterns) say about reading the
/// topics of a filter.
#[derive(Default)]
struct Phase {
    /// Some deny rule covers the filter: every topic is denied by this phase.
    deny_covers: bool,
    /// Some deny rule overlaps the filter.
    deny_overlaps: bool,
    /// Some read rule covers the filter.
    read_covers: bool,
    /// Some read rule overlaps the filter.
    read_overlaps: bool,
}

impl Phase {
    fn add(&mut self, rule: &str, access: u8, filter: &[&str]) {
        let rule = levels(rule);
        if access & DENY != 0 {
            self.deny_overlaps |= overlap(&rule, filter);
            self.deny_covers |= covers(&rule, filter);
        } else if access & READ != 0 {
            self.read_overlaps |= overlap(&rule, filter);
            self.read_covers |= covers(&rule, filter);
        }
    }

    fn of_section(set: Option<&RuleSet>, filter: &[&str]) -> Phase {
        let mut phase = Phase::default();
        for rule in set.map(RuleSet::rules).unwrap_or_default() {
            phase.add(&rule.filter, rule.access, filter);
        }
        phase
    }
}

impl Acl {
    /// See [`Acl::classify`]. A topic is readable when no section deny rule matches it and
    /// either a section read rule does, or (the client's values being substitutable) no
    /// pattern deny rule does and a pattern read rule does.
    pub(super) fn classify_filter(&self, who: Identity<'_>, filter: &str) -> FilterClass {
        let filter = levels(filter);
        let section = Phase::of_section(self.section(who), &filter);
        let mut patterns = Phase::default();
        if substitutable(who) {
            for rule in self.patterns.rules() {
                if let Some(rule_filter) = substitute(&rule.filter, who) {
                    patterns.add(&rule_filter, rule.access, &filter);
                }
            }
        }
        if section.deny_covers {
            return FilterClass::Never;
        }
        let patterns_may = patterns.read_overlaps && !patterns.deny_covers;
        if !section.read_overlaps && !patterns_may {
            return FilterClass::Never;
        }
        if !section.deny_overlaps
            && (section.read_covers || (patterns.read_covers && !patterns.deny_overlaps))
        {
            return FilterClass::Always;
        }
        FilterClass::PerTopic
    }
}
