//! The subscription index: a trie of topic levels answering "who is subscribed to a topic
//! name?" without allocating.
//!
//! # Shape
//!
//! Each node stands for a filter prefix. A filter `a/b` is stored at node `a` → `b` in its
//! `exact` list; `a/#` in node `a`'s `multi` list (so `#` needs no node of its own and
//! matches node `a` itself, the "parent" of MQTT 5.0 §4.7.1.2); `a/+/b` under node `a`'s
//! dedicated `+` child. A match walks the name's levels once, following at each node the
//! literal child *and* the `+` child, and collecting `multi` lists on the way.
//!
//! # Removing a session
//!
//! [`SubscriptionIndex::unsubscribe_all`] takes the session's own list of filters: the
//! session keeps it anyway (SUBSCRIBE replies, persistent sessions, `$SYS`), and a reverse
//! map inside the index would store every filter a second time. [`SubscriptionIndex::purge`]
//! walks the whole trie instead, for when no list is at hand.
//!
//! # Overlapping subscriptions (MQTT-3.3.5-1)
//!
//! A subscriber holding `a/+` and `a/#` is reported once per matching filter, in no
//! particular order and not necessarily one after the other. The router delivers once, at
//! the highest granted QoS, without allocating, in either of two ways:
//!
//! - keep a scratch `Vec<(S, O)>` that is cleared but never shrunk (so it stops allocating
//!   once warm), push every match, `sort_unstable_by_key` on the subscriber (in place) and
//!   fold each run of equal subscribers into one delivery; or
//! - stamp each session slot with the sequence number of the message being routed: the
//!   first match sets the stamp, records the options and pushes the session onto the
//!   (warm) delivery list; later matches with the same stamp only raise the QoS.
//!
//! # Plan: MQTT 5 shared subscriptions
//!
//! Today `$share/{group}/{filter}` is stored literally, so it matches only the name
//! `$share/{group}/{filter}` (harmless: names starting with `$` are the server's). The plan:
//!
//! - `subscribe_shared(group, filter, subscriber, options)`; the caller splits
//!   `$share/{group}/{filter}` (MQTT-4.8.2-1, -2: the group is non-empty and has no `/`, `+`
//!   or `#`) because a 3.1.1 session must keep the literal meaning.
//! - The node reached by `{filter}` gets a boxed, usually absent, list of groups
//!   `{ name: Box<str>, members: Subscribers<S, O>, next: Cell<u32> }`, so plain nodes do not
//!   grow; the key of a shared subscription is (group, filter, subscriber).
//! - `for_each_match` reports a group once per message through a second callback (or a
//!   `Match::{Plain, Shared}` enum) and the router picks one member: round robin on `next`,
//!   skipping offline sessions. The `$` rule applies to `{filter}` (`$share/g/#` does not
//!   match `$SYS/x`), and retained messages are not sent to shared subscriptions.

use std::hash::Hash;
use std::str::Split;

use super::children::{Children, with_level};
use super::matching::{TooManyLevels, check_depth, is_dollar_topic};
use super::subscribers::Subscribers;
use super::{validate_topic_filter, validate_topic_name};

/// One filter prefix.
///
/// Invariant: every node but the root holds a subscription or has a child (no empty leaf
/// survives an unsubscribe), so the trie's size follows the live subscriptions.
#[derive(Debug)]
struct Node<S, O> {
    /// Subscriptions whose filter ends at this node.
    exact: Subscribers<S, O>,
    /// Subscriptions whose filter is this node's prefix followed by `#`.
    multi: Subscribers<S, O>,
    /// The `+` level below this node.
    single: Option<Box<Node<S, O>>>,
    /// Literal levels below this node.
    children: Children<Node<S, O>>,
}

impl<S, O> Default for Node<S, O> {
    fn default() -> Self {
        Node {
            exact: Subscribers::Empty,
            multi: Subscribers::Empty,
            single: None,
            children: Children::default(),
        }
    }
}

/// Topic-filter subscriptions, keyed by (filter, subscriber), matched against topic names.
///
/// `S` identifies a subscriber (a session handle); `O` is the per-subscription options
/// (the granted QoS today; MQTT 5 adds no-local, retain-as-published, retain handling and
/// the subscription identifier). Filters must be valid ([`validate_topic_filter`]) and names
/// valid ([`validate_topic_name`]); debug builds assert it.
///
/// Costs: subscribe and unsubscribe walk the filter's levels (a binary search or a hash
/// lookup per level), then find the subscriber among that filter's (a scan of at most a few
/// dozen, a hash lookup past that): independent of how many subscriptions the index or the
/// subscriber holds. Matching a name visits only the trie nodes that match a prefix of it.
#[derive(Debug)]
pub struct SubscriptionIndex<S, O> {
    root: Node<S, O>,
    len: usize,
}

impl<S: Copy + Eq + Hash, O: Copy> Default for SubscriptionIndex<S, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Copy + Eq + Hash, O: Copy> SubscriptionIndex<S, O> {
    /// An empty index; allocates nothing until the first subscription.
    pub fn new() -> Self {
        SubscriptionIndex {
            root: Node::default(),
            len: 0,
        }
    }

    /// The number of subscriptions (distinct (filter, subscriber) pairs).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Subscribes `subscriber` to `filter`.
    ///
    /// A subscription with the same filter (compared byte for byte) from the same subscriber
    /// is replaced, and its old options returned (MQTT-3.8.4-3, in 3.1.1 and 5.0).
    ///
    /// # Errors
    ///
    /// [`TooManyLevels`] when the filter is deeper than
    /// [`MAX_TOPIC_LEVELS`](super::MAX_TOPIC_LEVELS); the index is left unchanged.
    pub fn subscribe(
        &mut self,
        filter: &str,
        subscriber: S,
        options: O,
    ) -> Result<Option<O>, TooManyLevels> {
        debug_assert!(
            validate_topic_filter(filter).is_ok(),
            "invalid filter {filter:?}"
        );
        check_depth(filter)?;
        let replaced = self.root.slot_or_create(filter).insert(subscriber, options);
        if replaced.is_none() {
            self.len += 1;
        }
        Ok(replaced)
    }

    /// Removes `subscriber`'s subscription to `filter`, returning its options, or `None` if
    /// there was none (MQTT 5: reason code 0x11, "No subscription existed"). Nodes left empty
    /// are freed.
    pub fn unsubscribe(&mut self, filter: &str, subscriber: S) -> Option<O> {
        debug_assert!(
            validate_topic_filter(filter).is_ok(),
            "invalid filter {filter:?}"
        );
        let removed = self.root.remove(filter.split('/'), subscriber);
        if removed.is_some() {
            self.len -= 1;
        }
        // Invariant: the walk above pruned every node it emptied.
        debug_assert!(
            self.len > 0 || self.root.is_empty(),
            "empty index kept nodes"
        );
        removed
    }

    /// Removes `subscriber`'s subscriptions to each of `filters` (the session's own list),
    /// returning how many existed.
    pub fn unsubscribe_all<'a>(
        &mut self,
        subscriber: S,
        filters: impl IntoIterator<Item = &'a str>,
    ) -> usize {
        filters
            .into_iter()
            .filter(|f| self.unsubscribe(f, subscriber).is_some())
            .count()
    }

    /// Removes every subscription of `subscriber` by walking the whole trie: O(nodes).
    /// Prefer [`unsubscribe_all`](Self::unsubscribe_all) when the filters are known.
    pub fn purge(&mut self, subscriber: S) -> usize {
        let removed = self.root.purge(subscriber);
        self.len -= removed;
        removed
    }

    /// The options of `subscriber`'s subscription to exactly `filter`, if any.
    pub fn get(&self, filter: &str, subscriber: S) -> Option<&O> {
        let mut node = &self.root;
        for level in filter.split('/') {
            node = match level {
                "#" => return node.multi.get(subscriber),
                "+" => node.single.as_deref()?,
                _ => node.children.get(level)?,
            };
        }
        node.exact.get(subscriber)
    }

    /// Calls `f(subscriber, options)` for every subscription whose filter matches the topic
    /// `name` ([`matches`](super::matches)), in no particular order, once per matching
    /// filter: see the module docs for delivering once per subscriber. Never allocates.
    ///
    /// Filters starting with `+` or `#` do not match names starting with `$` (MQTT-4.7.2-1).
    pub fn for_each_match(&self, name: &str, mut f: impl FnMut(S, &O)) {
        debug_assert!(validate_topic_name(name).is_ok(), "invalid name {name:?}");
        let mut levels = name.split('/');
        if !is_dollar_topic(name) {
            self.root.visit(levels, &mut f);
        } else if let Some(first) = levels.next()
            && let Some(child) = self.root.children.get(first)
        {
            // MQTT-4.7.2-1: the root's `#` and `+` are skipped; only literal `$…` levels match.
            child.visit(levels, &mut f);
        }
    }

    /// Calls `f(filter, subscriber, options)` for every subscription, in no particular
    /// order. Rebuilds each filter in one reusable `String`; meant for inspection, session
    /// dumps and tests, not for the publish path.
    pub fn for_each(&self, mut f: impl FnMut(&str, S, &O)) {
        let mut path = String::new();
        self.root.for_each(&mut path, true, &mut f);
    }

    /// The number of trie nodes besides the root: 0 once every subscription is gone.
    pub fn node_count(&self) -> usize {
        self.root.node_count()
    }

    /// Checks the trie's invariants (no empty non-root node, unique subscribers per filter,
    /// well-formed children, `len` equal to the stored subscriptions). O(nodes); for tests.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        let stored = self.root.check(true)?;
        if stored != self.len {
            return Err(format!(
                "len is {} but {stored} subscriptions are stored",
                self.len
            ));
        }
        Ok(())
    }
}

impl<S: Copy + Eq + Hash, O: Copy> Node<S, O> {
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.multi.is_empty()
            && self.single.is_none()
            && self.children.is_empty()
    }

    /// The subscriber list `filter` ends in, creating the nodes on the way.
    fn slot_or_create(&mut self, filter: &str) -> &mut Subscribers<S, O> {
        let mut node = self;
        for level in filter.split('/') {
            node = match level {
                "#" => return &mut node.multi, // last level (MQTT-4.7.1-2)
                "+" => node.single.get_or_insert_default(),
                _ => node.children.get_or_insert_with(level, Node::default),
            };
        }
        &mut node.exact
    }

    /// Removes one subscription below this node, pruning children it leaves empty.
    fn remove(&mut self, mut levels: Split<'_, char>, subscriber: S) -> Option<O> {
        match levels.next() {
            None => self.exact.remove(subscriber),
            Some("#") => self.multi.remove(subscriber),
            Some("+") => {
                let child = self.single.as_deref_mut()?;
                let removed = child.remove(levels, subscriber);
                // Invariant: the child was not empty before, so only a removal can empty it.
                debug_assert!(
                    removed.is_some() || !child.is_empty(),
                    "an empty node survived"
                );
                if child.is_empty() {
                    self.single = None;
                }
                removed
            }
            Some(level) => {
                let child = self.children.get_mut(level)?;
                let removed = child.remove(levels, subscriber);
                debug_assert!(
                    removed.is_some() || !child.is_empty(),
                    "an empty node survived"
                );
                if child.is_empty() {
                    self.children.remove(level);
                }
                removed
            }
        }
    }

    /// Removes `subscriber` everywhere below this node, pruning; returns the count.
    fn purge(&mut self, subscriber: S) -> usize {
        let mut removed = usize::from(self.exact.remove(subscriber).is_some());
        removed += usize::from(self.multi.remove(subscriber).is_some());
        if let Some(child) = self.single.as_deref_mut() {
            removed += child.purge(subscriber);
            if child.is_empty() {
                self.single = None;
            }
        }
        self.children.retain(|child| {
            removed += child.purge(subscriber);
            !child.is_empty()
        });
        removed
    }

    /// Reports the subscriptions below this node matching the remaining `levels`.
    fn visit(&self, mut levels: Split<'_, char>, f: &mut impl FnMut(S, &O)) {
        self.multi.for_each(f); // `#` matches its parent level and everything below
        match levels.next() {
            None => self.exact.for_each(f),
            Some(level) => {
                if let Some(child) = self.single.as_deref() {
                    child.visit(levels.clone(), f);
                }
                if let Some(child) = self.children.get(level) {
                    child.visit(levels, f);
                }
            }
        }
    }

    fn for_each(&self, path: &mut String, at_root: bool, f: &mut impl FnMut(&str, S, &O)) {
        self.exact.for_each(&mut |s, o| f(path, s, o));
        with_level(path, at_root, "#", |path| {
            self.multi.for_each(&mut |s, o| f(path, s, o))
        });
        if let Some(child) = self.single.as_deref() {
            with_level(path, at_root, "+", |path| child.for_each(path, false, f));
        }
        for (level, child) in self.children.iter() {
            with_level(path, at_root, level, |path| child.for_each(path, false, f));
        }
    }

    fn node_count(&self) -> usize {
        let below: usize = self.children.iter().map(|(_, c)| c.node_count()).sum();
        below + self.single.as_deref().map_or(0, |c| c.node_count() + 1) + self.children.len()
    }

    /// Checks the invariants below this node; returns the subscriptions stored there.
    fn check(&self, is_root: bool) -> Result<usize, String> {
        if !is_root && self.is_empty() {
            return Err("an empty node survived".into());
        }
        self.exact.check()?;
        self.multi.check()?;
        self.children.check()?;
        let mut stored = self.exact.len() + self.multi.len();
        if let Some(child) = self.single.as_deref() {
            stored += child.check(false)?;
        }
        for (_, child) in self.children.iter() {
            stored += child.check(false)?;
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched(index: &SubscriptionIndex<u32, u8>, name: &str) -> Vec<(u32, u8)> {
        let mut out = Vec::new();
        index.for_each_match(name, |s, o| out.push((s, *o)));
        out.sort_unstable();
        out
    }

    #[test]
    fn nodes_stay_compact() {
        // Two inline-or-vector subscriber lists, an optional box and the children: the
        // per-subscription memory bound in tests/topic_index_memory.rs depends on this.
        assert!(
            size_of::<Node<u32, u8>>() <= 80,
            "{}",
            size_of::<Node<u32, u8>>()
        );
        assert_eq!(size_of::<Children<Node<u32, u8>>>(), 24);
    }

    #[test]
    fn hash_matches_parent_plus_does_not() {
        let mut index = SubscriptionIndex::new();
        assert_eq!(index.subscribe("sport/#", 1, 0), Ok(None));
        assert_eq!(index.subscribe("sport/+", 2, 1), Ok(None));
        assert_eq!(matched(&index, "sport"), [(1, 0)]);
        assert_eq!(matched(&index, "sport/"), [(1, 0), (2, 1)]);
        assert_eq!(matched(&index, "sport/tennis/x"), [(1, 0)]);
    }

    #[test]
    fn node_count_and_for_each_follow_the_filters() {
        let mut index = SubscriptionIndex::new();
        for (i, f) in ["a/+/c", "a/#", "#", "/", "+"].into_iter().enumerate() {
            assert_eq!(index.subscribe(f, 7u32, i as u8), Ok(None));
        }
        assert_eq!(index.node_count(), 6); // a, a/+, a/+/c, "", "/" and +
        let mut seen = Vec::new();
        index.for_each(|f, s, o| seen.push((f.to_owned(), s, *o)));
        seen.sort();
        let filters: Vec<&str> = seen.iter().map(|(f, ..)| f.as_str()).collect();
        assert_eq!(filters, ["#", "+", "/", "a/#", "a/+/c"]);
        assert_eq!(index.purge(7), 5);
        assert_eq!(
            (index.len(), index.node_count(), index.check_invariants()),
            (0, 0, Ok(()))
        );
    }
}
