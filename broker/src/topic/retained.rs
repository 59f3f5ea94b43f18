//! The retained-message store: at most one value per topic name, found by topic filter.
//!
//! A trie of topic levels, like the [`SubscriptionIndex`](super::SubscriptionIndex) but keyed
//! by names: a literal filter level is one lookup, `+` visits one level of children, `#` a
//! whole subtree. Topic names are not stored: [`RetainedStore::for_each_match`] rebuilds them
//! in one buffer while walking.
//!
//! Clearing is the caller's decision: a PUBLISH with the retain flag and an empty payload
//! removes the retained message and is not itself stored (3.1.1: MQTT-3.3.1-10 and -11;
//! 5.0: MQTT-3.3.1-6 and -7), so the broker calls [`RetainedStore::remove`] rather than
//! [`RetainedStore::set`] for it. Message expiry (5.0 §3.3.2.3.3) is also the caller's: keep
//! the arrival time in `V` and remove or skip expired values.

use std::str::Split;

use super::children::{Children, with_level};
use super::matching::{TooManyLevels, check_depth};
use super::{validate_topic_filter, validate_topic_name};

/// One topic-name prefix.
///
/// Invariant: every node but the root holds a value or has a child; the root never holds a
/// value (no topic name has zero levels).
#[derive(Debug)]
struct Node<V> {
    value: Option<V>,
    children: Children<Node<V>>,
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
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedStore<V> {
    /// An empty store; allocates nothing until the first message.
    pub fn new() -> Self {
        RetainedStore {
            root: Node::default(),
            len: 0,
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
        let replaced = node.value.replace(value);
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
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Calls `f(topic, value)` for every retained message whose topic matches `filter`
    /// ([`matches`](super::matches)), in no particular order.
    ///
    /// Literal levels are looked up, not scanned; names starting with `$` are skipped when
    /// the filter starts with `+` or `#` (MQTT-4.7.2-1). Allocates one `String` to rebuild
    /// topic names: this runs on SUBSCRIBE, not on the publish path.
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        debug_assert!(
            validate_topic_filter(filter).is_ok(),
            "invalid filter {filter:?}"
        );
        let mut path = String::with_capacity(filter.len() + 32);
        self.root.walk(filter.split('/'), &mut path, true, &mut f);
    }

    /// The number of trie nodes besides the root: 0 once every message is removed.
    pub fn node_count(&self) -> usize {
        self.root.node_count()
    }

    /// Checks the trie's invariants (no empty non-root node, no value at the root, `len`
    /// equal to the stored values, well-formed children). O(nodes); for tests.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.root.value.is_some() {
            return Err("the root holds a value".into());
        }
        let stored = self.root.check(true)?;
        if stored != self.len {
            return Err(format!(
                "len is {} but {stored} messages are stored",
                self.len
            ));
        }
        Ok(())
    }
}

impl<V> Node<V> {
    fn remove(&mut self, mut levels: Split<'_, char>) -> Option<V> {
        let Some(level) = levels.next() else {
            return self.value.take();
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

    /// Reports the values below this node whose topics match the remaining filter `levels`.
    fn walk(
        &self,
        mut levels: Split<'_, char>,
        path: &mut String,
        at_root: bool,
        f: &mut impl FnMut(&str, &V),
    ) {
        match levels.next() {
            None => self.report(path, f),
            Some("#") => self.report_all(path, at_root, f),
            Some("+") => {
                for (level, child) in self.children.iter() {
                    if at_root && level.starts_with('$') {
                        continue; // MQTT-4.7.2-1
                    }
                    with_level(path, at_root, level, |path| {
                        child.walk(levels.clone(), path, false, f)
                    });
                }
            }
            Some(level) => {
                if let Some(child) = self.children.get(level) {
                    with_level(path, at_root, level, |path| {
                        child.walk(levels, path, false, f)
                    });
                }
            }
        }
    }

    fn report(&self, path: &str, f: &mut impl FnMut(&str, &V)) {
        if let Some(value) = &self.value {
            f(path, value);
        }
    }

    /// This node (the parent level `#` also matches) and everything below it.
    fn report_all(&self, path: &mut String, at_root: bool, f: &mut impl FnMut(&str, &V)) {
        self.report(path, f);
        for (level, child) in self.children.iter() {
            if at_root && level.starts_with('$') {
                continue; // MQTT-4.7.2-1
            }
            with_level(path, at_root, level, |path| {
                child.report_all(path, false, f)
            });
        }
    }

    fn node_count(&self) -> usize {
        self.children.iter().map(|(_, c)| c.node_count() + 1).sum()
    }

    fn check(&self, is_root: bool) -> Result<usize, String> {
        if !is_root && self.value.is_none() && self.children.is_empty() {
            return Err("an empty node survived".into());
        }
        self.children.check()?;
        let mut stored = usize::from(self.value.is_some());
        for (_, child) in self.children.iter() {
            stored += child.check(false)?;
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
}
