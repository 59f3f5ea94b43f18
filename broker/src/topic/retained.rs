//! The retained-message store: at most one value per topic name, found by topic filter.
//!
//! A trie of topic levels, like the [`SubscriptionIndex`](super::SubscriptionIndex) but keyed
//! by names: a literal filter level is one lookup, `+` visits one level of children, `#` a
//! whole subtree. Topic names are not stored: a walk rebuilds them in one buffer.
//!
//! # Walking in order, a bounded piece at a time
//!
//! The children of every node are kept in key order (`Children<_, true>`: a sorted vector,
//! a B-tree once wide), so a walk visits topics in *level order*: compared level by level,
//! a name comes before the names below it (`a` < `a/b` < `a/c` < `b`). [`RetainedStore::scan`]
//! walks a filter's matches from a [`Cursor`] (a position in that order, not a reference into
//! the trie) for at most a budget of nodes and stops wherever its caller wants: the store
//! may then change at will, and the next call seeks past the cursor (a lookup per level) and
//! goes on. A million matches are thus handed out in bounded pieces without copying them or
//! holding the store for long, and a topic set or removed meanwhile is simply found or not
//! when the walk gets there.
//!
//! Every value carries a *stamp*: the store's count of `set` calls when it was stored. A
//! scan reports only values stamped at or before the `max_stamp` it is given, so a walk that
//! began when the store's stamp was `s` skips what was stored after it began (which the
//! caller saw arrive on its own).
//!
//! Clearing is the caller's decision: a PUBLISH with the retain flag and an empty payload
//! removes the retained message and is not itself stored (3.1.1: MQTT-3.3.1-10 and -11;
//! 5.0: MQTT-3.3.1-6 and -7), so the broker calls [`RetainedStore::remove`] rather than
//! [`RetainedStore::set`] for it. Message expiry (5.0 §3.3.2.3.3) is also the caller's: keep
//! the arrival time in `V` and remove or skip expired values.

use std::cmp::Ordering;
use std::ops::ControlFlow;
use std::str::Split;

use super::children::{Children, with_level};
use super::matching::{TooManyLevels, check_depth};
use super::{validate_topic_filter, validate_topic_name};

/// A stored value and the store's stamp when it was stored.
#[derive(Debug)]
struct Stamped<V> {
    stamp: u64,
    value: V,
}

/// One topic-name prefix.
///
/// Invariant: every node but the root holds a value or has a child; the root never holds a
/// value (no topic name has zero levels).
#[derive(Debug)]
struct Node<V> {
    value: Option<Stamped<V>>,
    children: Children<Node<V>, true>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            value: None,
            children: Children::default(),
        }
    }
}

/// Retained messages keyed by topic name. `V` is whatever the broker retains (payload, QoS,
/// MQTT 5 properties, arrival time for the message expiry interval).
///
/// Names must be valid ([`validate_topic_name`]) and filters valid
/// ([`validate_topic_filter`]); debug builds assert it.
#[derive(Debug)]
pub struct RetainedStore<V> {
    root: Node<V>,
    len: usize,
    /// The stamp of the last value stored.
    stamp: u64,
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a [`RetainedStore::scan`] stands in the level order of topic names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The topic (or trie prefix) the position refers to; empty unless `at` says otherwise.
    topic: String,
    at: Position,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Position {
    /// Nothing walked yet.
    #[default]
    Start,
    /// Everything up to and including `topic` has been walked.
    After,
    /// Everything before `topic` has been walked; `topic` itself has not.
    At,
    /// The walk is over.
    Done,
}

impl Cursor {
    /// A cursor before every topic.
    pub fn new() -> Self {
        Cursor::default()
    }

    /// Whether the walk has been to the end.
    pub fn is_done(&self) -> bool {
        self.at == Position::Done
    }

    /// Whether the walk has reached `topic` already (it would not report it again).
    pub fn has_passed(&self, topic: &str) -> bool {
        match self.at {
            Position::Start => false,
            Position::Done => true,
            Position::After => level_order(topic, &self.topic) != Ordering::Greater,
            Position::At => level_order(topic, &self.topic) == Ordering::Less,
        }
    }

    /// Moves the cursor back to just before `topic`, so that the next scan reports it first
    /// (for a caller that took a value from a scan and then could not use it).
    pub fn rewind_to(&mut self, topic: &str) {
        self.set(Position::At, topic);
    }

    fn set(&mut self, at: Position, topic: &str) {
        self.at = at;
        self.topic.clear();
        self.topic.push_str(topic);
    }
}

/// Compares two topic names level by level (the order of a [`RetainedStore::scan`]).
pub fn level_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

impl<V> RetainedStore<V> {
    /// An empty store; allocates nothing until the first message.
    pub fn new() -> Self {
        RetainedStore {
            root: Node::default(),
            len: 0,
            stamp: 0,
        }
    }

    /// The number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no message is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The stamp of the last value stored: every value now in the store is stamped at or
    /// before it, every value stored later after it.
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// Retains `value` for `topic`, returning the message it replaces (one retained message
    /// per topic; 5.0: MQTT-3.3.1-5, 3.1.1: MQTT-3.3.1-7 for QoS 0).
    ///
    /// # Errors
    ///
    /// [`TooManyLevels`] when the topic is deeper than
    /// [`MAX_TOPIC_LEVELS`](super::MAX_TOPIC_LEVELS); the store is left unchanged.
    pub fn set(&mut self, topic: &str, value: V) -> Result<Option<V>, TooManyLevels> {
        debug_assert!(
            validate_topic_name(topic).is_ok(),
            "invalid topic {topic:?}"
        );
        check_depth(topic)?;
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_or_insert_with(level, Node::default);
        }
        self.stamp += 1;
        let stamped = Stamped {
            stamp: self.stamp,
            value,
        };
        let replaced = node.value.replace(stamped).map(|s| s.value);
        if replaced.is_none() {
            self.len += 1;
        }
        Ok(replaced)
    }

    /// Removes the message retained for `topic`, freeing the nodes it leaves empty.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        debug_assert!(
            validate_topic_name(topic).is_ok(),
            "invalid topic {topic:?}"
        );
        let removed = self.root.remove(topic.split('/'));
        if removed.is_some() {
            self.len -= 1;
        }
        // Invariant: the walk above pruned every node it emptied.
        debug_assert!(
            self.len > 0 || self.root.children.is_empty(),
            "empty store kept nodes"
        );
        removed
    }

    /// The message retained for exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        self.get_stamped(topic).map(|(_, value)| value)
    }

    /// The message retained for exactly `topic`, with its stamp.
    pub fn get_stamped(&self, topic: &str) -> Option<(u64, &V)> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref().map(|s| (s.stamp, &s.value))
    }

    /// Calls `f(topic, value)` for every retained message whose topic matches `filter`
    /// ([`matches`](super::matches)), in level order.
    ///
    /// Literal levels are looked up, not scanned; names starting with `$` are skipped when
    /// the filter starts with `+` or `#` (MQTT-4.7.2-1). Allocates one `String` to rebuild
    /// topic names: this runs on SUBSCRIBE, not on the publish path.
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        let mut cursor = Cursor::new();
        self.scan(filter, &mut cursor, u64::MAX, usize::MAX, |topic, value| {
            f(topic, value);
            ControlFlow::Continue(())
        });
        debug_assert!(cursor.is_done());
    }

    /// Walks the messages matching `filter` that come after `cursor` in level order and
    /// are stamped at or before `max_stamp`, calling `f(topic, value)` for each, and moves
    /// the cursor along. The walk stops when
    ///
    /// - `f` returns `Break`: the cursor stays *at* that topic (the next scan offers it
    ///   again);
    /// - `budget_nodes` trie nodes have been visited: the cursor is after the last one;
    /// - or every match has been seen: the cursor is [done](Cursor::is_done).
    ///
    /// Each call costs a lookup per level of the cursor to find its place, then at most
    /// `budget_nodes` visits of nodes after it, however many messages are stored; it
    /// allocates one buffer for the topic names. A call makes progress whenever the budget is
    /// at least 1 and `f` does not refuse the first match it is offered. Returns the nodes
    /// visited after the cursor.
    pub fn scan(
        &self,
        filter: &str,
        cursor: &mut Cursor,
        max_stamp: u64,
        budget_nodes: usize,
        f: impl FnMut(&str, &V) -> ControlFlow<()>,
    ) -> usize {
        debug_assert!(
            validate_topic_filter(filter).is_ok(),
            "invalid filter {filter:?}"
        );
        if cursor.is_done() {
            return 0;
        }
        let from = std::mem::take(&mut cursor.topic);
        let bound = match cursor.at {
            Position::Start => Bound::None,
            Position::After => Bound::Exclusive(from.split('/')),
            Position::At => Bound::Inclusive(from.split('/')),
            Position::Done => return 0,
        };
        let mut walk = Walk {
            max_stamp,
            budget: budget_nodes,
            f,
            stop: None,
        };
        let mut path = String::with_capacity(from.len().max(filter.len()) + 16);
        let flow = self
            .root
            .scan(filter.split('/'), bound, true, &mut path, &mut walk);
        cursor.topic = from;
        match (flow, walk.stop) {
            (ControlFlow::Continue(()), _) => cursor.set(Position::Done, ""),
            (ControlFlow::Break(()), Some((at, topic))) => cursor.set(at, &topic),
            (ControlFlow::Break(()), None) => {
                debug_assert!(false, "a walk stopped without saying where");
                cursor.set(Position::Done, "");
            }
        }
        budget_nodes - walk.budget
    }

    /// The number of trie nodes besides the root: 0 once every message is removed.
    pub fn node_count(&self) -> usize {
        self.root.node_count()
    }

    /// Checks the trie's invariants (no empty non-root node, no value at the root, `len`
    /// equal to the stored values, no stamp past the store's, well-formed children).
    /// O(nodes); for tests.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.root.value.is_some() {
            return Err("the root holds a value".into());
        }
        let stored = self.root.check(true, self.stamp)?;
        if stored != self.len {
            return Err(format!(
                "len is {} but {stored} messages are stored",
                self.len
            ));
        }
        Ok(())
    }
}

/// The part of the cursor's position still below the node being visited.
#[derive(Clone)]
enum Bound<'c> {
    /// Everything below the node comes after the cursor.
    None,
    /// The cursor is these levels further down; the topic it names was walked.
    Exclusive(Split<'c, char>),
    /// The cursor is these levels further down; the topic it names was not walked.
    Inclusive(Split<'c, char>),
}

impl<'c> Bound<'c> {
    /// Splits the bound at a node into whether the node's own value is after the cursor,
    /// and the first level of the cursor below it (with the bound for that child).
    fn at_node(self) -> (bool, Option<(&'c str, Bound<'c>)>) {
        let (mut levels, inclusive) = match self {
            Bound::None => return (true, None),
            Bound::Exclusive(levels) => (levels, false),
            Bound::Inclusive(levels) => (levels, true),
        };
        match levels.next() {
            // The cursor names this node: its value only if not walked yet; every child
            // comes after it.
            None => (inclusive, None),
            // The cursor is further down: this node (a prefix) comes before it.
            Some(level) => {
                let rest = if inclusive {
                    Bound::Inclusive(levels)
                } else {
                    Bound::Exclusive(levels)
                };
                (false, Some((level, rest)))
            }
        }
    }

    /// The bound for the child `level`, given the cursor's next level below the node.
    fn for_child(next: &Option<(&'c str, Bound<'c>)>, level: &str) -> Bound<'c> {
        match next {
            Some((first, rest)) if *first == level => rest.clone(),
            _ => Bound::None,
        }
    }
}

/// The state of one [`RetainedStore::scan`].
struct Walk<F> {
    max_stamp: u64,
    budget: usize,
    f: F,
    /// Where the walk stopped, once it has.
    stop: Option<(Position, String)>,
}

impl<V> Node<V> {
    fn remove(&mut self, mut levels: Split<'_, char>) -> Option<V> {
        let Some(level) = levels.next() else {
            return self.value.take().map(|s| s.value);
        };
        let child = self.children.get_mut(level)?;
        let removed = child.remove(levels);
        // Invariant: the child was not empty before, so only a removal can empty it.
        debug_assert!(removed.is_some() || child.value.is_some() || !child.children.is_empty());
        if child.value.is_none() && child.children.is_empty() {
            self.children.remove(level);
        }
        removed
    }

    /// Visits this node (whose topic is `path`) and what is below it, for the remaining
    /// filter `levels`, in level order, skipping what `bound` says was walked.
    fn scan<F>(
        &self,
        mut levels: Split<'_, char>,
        bound: Bound<'_>,
        at_root: bool,
        path: &mut String,
        walk: &mut Walk<F>,
    ) -> ControlFlow<()>
    where
        F: FnMut(&str, &V) -> ControlFlow<()>,
    {
        let (own, next) = bound.at_node();
        let filter_level = levels.next();
        // Only nodes after the cursor count: the ones on the way to it (found again on
        // every call) are not progress, and stopping at one would move the cursor back.
        if !at_root && own {
            if matches!(filter_level, None | Some("#")) {
                self.report(path, walk)?;
            }
            walk.budget = walk.budget.saturating_sub(1);
            if walk.budget == 0 {
                // Everything up to this node is walked; what is below it is not.
                walk.stop = Some((Position::After, path.clone()));
                return ControlFlow::Break(());
            }
        }
        let from = next.as_ref().map(|(first, _)| *first);
        match filter_level {
            None => ControlFlow::Continue(()),
            Some(level) if level != "#" && level != "+" => {
                let Some(child) = self.children.get(level) else {
                    return ControlFlow::Continue(());
                };
                if from.is_some_and(|first| level < first) {
                    return ControlFlow::Continue(()); // walked already
                }
                let bound = Bound::for_child(&next, level);
                with_level(path, at_root, level, |path| {
                    child.scan(levels, bound, false, path, walk)
                })
            }
            // `#` (the rest of the subtree) or `+` (one level of it).
            Some(wildcard) => {
                for (level, child) in self.children.iter_from(from) {
                    if at_root && level.starts_with('$') {
                        continue; // MQTT-4.7.2-1
                    }
                    let bound = Bound::for_child(&next, level);
                    // `#` goes on below the child; `+` took this level only.
                    let rest = if wildcard == "#" {
                        "#".split('/')
                    } else {
                        levels.clone()
                    };
                    with_level(path, at_root, level, |path| {
                        child.scan(rest, bound, false, path, walk)
                    })?;
                }
                ControlFlow::Continue(())
            }
        }
    }

    /// Offers this node's value (its topic is `path`), if it has one the walk may report.
    fn report<F>(&self, path: &str, walk: &mut Walk<F>) -> ControlFlow<()>
    where
        F: FnMut(&str, &V) -> ControlFlow<()>,
    {
        let Some(stamped) = &self.value else {
            return ControlFlow::Continue(());
        };
        if stamped.stamp > walk.max_stamp {
            return ControlFlow::Continue(());
        }
        let flow = (walk.f)(path, &stamped.value);
        if flow.is_break() {
            walk.stop = Some((Position::At, path.to_owned()));
        }
        flow
    }

    fn node_count(&self) -> usize {
        self.children.iter().map(|(_, c)| c.node_count() + 1).sum()
    }

    fn check(&self, is_root: bool, max_stamp: u64) -> Result<usize, String> {
        if !is_root && self.value.is_none() && self.children.is_empty() {
            return Err("an empty node survived".into());
        }
        if self.value.as_ref().is_some_and(|s| s.stamp > max_stamp) {
            return Err("a value is stamped after the store's last stamp".into());
        }
        self.children.check()?;
        let mut stored = usize::from(self.value.is_some());
        let mut previous: Option<&str> = None;
        for (level, child) in self.children.iter_from(None) {
            if previous.is_some_and(|p| p >= level) {
                return Err("children out of order".into());
            }
            previous = Some(level);
            stored += child.check(false, max_stamp)?;
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_prunes_but_keeps_ancestors_with_values() {
        let mut store = RetainedStore::new();
        assert_eq!(store.set("a", 1), Ok(None));
        assert_eq!(store.set("a/b/c", 2), Ok(None));
        assert_eq!(store.node_count(), 3);
        assert_eq!(store.remove("a/b/c"), Some(2));
        assert_eq!((store.node_count(), store.get("a")), (1, Some(&1)));
        assert_eq!(store.remove("a/b"), None);
        assert_eq!(store.remove("a"), Some(1));
        assert_eq!(
            (store.len(), store.node_count(), store.check_invariants()),
            (0, 0, Ok(()))
        );
    }

    #[test]
    fn level_order_puts_a_name_before_the_names_below_it() {
        let mut names = ["b", "a/c", "a", "a/b/z", "a/b", "/", "a-"];
        names.sort_by(|a, b| level_order(a, b));
        assert_eq!(names, ["/", "a", "a/b", "a/b/z", "a/c", "a-", "b"]);
    }

    #[test]
    fn a_scan_stops_and_resumes_where_it_was() {
        let mut store = RetainedStore::new();
        for (i, t) in ["a/1", "a/2", "a/2/x", "a/3", "b"].into_iter().enumerate() {
            assert_eq!(store.set(t, i), Ok(None));
        }
        let mut cursor = Cursor::new();
        let mut seen = Vec::new();
        // Two at a time: the third is refused and offered again by the next scan.
        while !cursor.is_done() {
            let mut taken = 0;
            store.scan("a/#", &mut cursor, u64::MAX, usize::MAX, |t, _| {
                if taken == 2 {
                    return ControlFlow::Break(());
                }
                taken += 1;
                seen.push(t.to_owned());
                ControlFlow::Continue(())
            });
        }
        assert_eq!(seen, ["a/1", "a/2", "a/2/x", "a/3"]);
        // One node at a time: every node visited once, the matches all found.
        let mut cursor = Cursor::new();
        let mut seen = Vec::new();
        let mut calls = 0;
        while !cursor.is_done() {
            calls += 1;
            store.scan("+/+", &mut cursor, u64::MAX, 1, |t, _| {
                seen.push(t.to_owned());
                ControlFlow::Continue(())
            });
        }
        assert_eq!(seen, ["a/1", "a/2", "a/3"]);
        assert!(calls >= 5, "{calls}");
    }
}
