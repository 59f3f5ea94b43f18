//! A session's own list of subscriptions (filter → options), mirrored in the loop's index.
//!
//! Most clients hold one or two subscriptions, and for them a vector is the smallest thing
//! there is (grown one entry at a time). A client may also hold a hundred thousand; looking a
//! filter up in a vector then costs a scan of all of them on every SUBSCRIBE and UNSUBSCRIBE,
//! which made 100 000 filters from one client take 43 s (measured: 95 % of the broker's
//! instructions in that scan). Past [`LIST_MAX_SUBSCRIPTIONS`] entries the list is a hash
//! table, so adding, replacing and removing a subscription cost one hash of the filter
//! however many the session holds. Filters come from clients, so the table's hash is keyed
//! (std's `RandomState`, as the index's wide nodes).

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use crate::core::subscription::SubOpts;

/// A list holds at most this many subscriptions before it becomes a hash table.
pub const LIST_MAX_SUBSCRIPTIONS: usize = 8;
/// A hash table falls back to a list when it holds this few (hysteresis: one subscription
/// added and removed at the boundary does not convert back and forth).
const TABLE_MIN_SUBSCRIPTIONS: usize = LIST_MAX_SUBSCRIPTIONS / 2;
/// Up to this many subscriptions a list grows exactly; beyond, amortised.
const EXACT_GROWTH_SUBSCRIPTIONS: usize = 4;

/// One subscription: its filter and options.
type Entry = (Box<str>, SubOpts);

/// A session's subscriptions, keyed by filter (compared byte for byte, MQTT-3.8.4-3).
#[derive(Debug, Default)]
pub struct Subscriptions {
    repr: Repr,
}

#[derive(Debug)]
enum Repr {
    /// Invariant: at most [`LIST_MAX_SUBSCRIPTIONS`] entries, filters unique.
    Few(Vec<Entry>),
    /// Invariant: more than [`TABLE_MIN_SUBSCRIPTIONS`] entries.
    Many(Box<Table>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Few(Vec::new())
    }
}

#[derive(Debug)]
struct Table {
    entries: HashTable<Entry>,
    hasher: RandomState,
}

impl Table {
    fn hash(&self, filter: &str) -> u64 {
        self.hasher.hash_one(filter)
    }

    fn find(&self, filter: &str) -> Option<&Entry> {
        self.entries
            .find(self.hash(filter), |(f, _)| &**f == filter)
    }
}

impl Subscriptions {
    /// How many subscriptions the session holds.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Few(v) => v.len(),
            Repr::Many(t) => t.entries.len(),
        }
    }

    /// Whether the session holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The options of the subscription to exactly `filter`.
    pub fn get(&self, filter: &str) -> Option<SubOpts> {
        match &self.repr {
            Repr::Few(v) => v.iter().find(|(f, _)| &**f == filter).map(|e| e.1),
            Repr::Many(t) => t.find(filter).map(|e| e.1),
        }
    }

    /// Adds a subscription, or replaces the options of the one with the same filter;
    /// returns the replaced options.
    pub fn insert(&mut self, filter: &str, opts: SubOpts) -> Option<SubOpts> {
        if let Repr::Few(v) = &mut self.repr {
            if let Some(entry) = v.iter_mut().find(|(f, _)| &**f == filter) {
                return Some(std::mem::replace(&mut entry.1, opts));
            }
            if v.len() < LIST_MAX_SUBSCRIPTIONS {
                if v.len() < EXACT_GROWTH_SUBSCRIPTIONS {
                    v.reserve_exact(1);
                }
                v.push((filter.into(), opts));
                return None;
            }
            self.widen();
        }
        let Repr::Many(t) = &mut self.repr else {
            unreachable!("widened above");
        };
        let hash = t.hash(filter);
        let hasher = &t.hasher;
        match t.entries.entry(
            hash,
            |(f, _)| &**f == filter,
            |(f, _)| hasher.hash_one(&**f),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut entry) => {
                Some(std::mem::replace(&mut entry.get_mut().1, opts))
            }
            hashbrown::hash_table::Entry::Vacant(entry) => {
                entry.insert((filter.into(), opts));
                None
            }
        }
    }

    /// Removes the subscription to `filter`, returning its options.
    pub fn remove(&mut self, filter: &str) -> Option<SubOpts> {
        let removed = match &mut self.repr {
            Repr::Few(v) => {
                let at = v.iter().position(|(f, _)| &**f == filter)?;
                let (_, opts) = v.swap_remove(at);
                if v.len() * 4 <= v.capacity() {
                    v.shrink_to_fit();
                }
                return Some(opts);
            }
            Repr::Many(t) => {
                let hash = t.hash(filter);
                let found = t.entries.find_entry(hash, |(f, _)| &**f == filter).ok()?;
                found.remove().0.1
            }
        };
        self.shrink();
        Some(removed)
    }

    /// Every subscription, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, SubOpts)> {
        let (few, many) = match &self.repr {
            Repr::Few(v) => (Some(v.iter()), None),
            Repr::Many(t) => (None, Some(t.entries.iter())),
        };
        few.into_iter()
            .flatten()
            .chain(many.into_iter().flatten())
            .map(|(f, o)| (&**f, *o))
    }

    fn widen(&mut self) {
        if let Repr::Few(v) = &mut self.repr {
            let hasher = RandomState::new();
            let mut entries = HashTable::with_capacity(v.len() * 2);
            for entry in std::mem::take(v) {
                let hash = hasher.hash_one(&*entry.0);
                entries.insert_unique(hash, entry, |(f, _)| hasher.hash_one(&**f));
            }
            self.repr = Repr::Many(Box::new(Table { entries, hasher }));
        }
    }

    /// Gives memory back after removals: a small table becomes a list again, a sparse one
    /// shrinks (amortised O(1): each shrink at least halves it).
    fn shrink(&mut self) {
        let Repr::Many(t) = &mut self.repr else {
            return;
        };
        if t.entries.len() <= TABLE_MIN_SUBSCRIPTIONS {
            let entries: Vec<Entry> = std::mem::take(&mut t.entries).into_iter().collect();
            self.repr = Repr::Few(entries);
        } else if t.entries.len() * 4 <= t.entries.capacity() {
            let hasher = &t.hasher;
            t.entries.shrink_to_fit(|(f, _)| hasher.hash_one(&**f));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QoS;

    fn opts(qos: QoS) -> SubOpts {
        SubOpts::new(qos, false, false, None)
    }

    #[test]
    fn a_list_turns_into_a_table_and_back() {
        let mut subs = Subscriptions::default();
        for i in 0..1000 {
            assert_eq!(subs.insert(&format!("f/{i}"), opts(QoS::AtMostOnce)), None);
            assert_eq!(subs.len(), i + 1);
        }
        assert!(matches!(subs.repr, Repr::Many(_)));
        assert_eq!(
            subs.insert("f/7", opts(QoS::AtLeastOnce)),
            Some(opts(QoS::AtMostOnce))
        );
        assert_eq!(subs.get("f/7"), Some(opts(QoS::AtLeastOnce)));
        assert_eq!(subs.iter().count(), 1000);
        for i in 0..998 {
            assert!(subs.remove(&format!("f/{i}")).is_some());
        }
        assert_eq!(subs.remove("f/0"), None);
        assert!(matches!(&subs.repr, Repr::Few(v) if v.len() == 2));
        let mut left: Vec<&str> = subs.iter().map(|(f, _)| f).collect();
        left.sort_unstable();
        assert_eq!(left, ["f/998", "f/999"]);
    }

    #[test]
    fn one_or_two_subscriptions_cost_one_or_two_entries() {
        let mut subs = Subscriptions::default();
        subs.insert("a", opts(QoS::AtMostOnce));
        assert!(matches!(&subs.repr, Repr::Few(v) if v.capacity() == 1));
        subs.insert("b", opts(QoS::AtMostOnce));
        assert!(matches!(&subs.repr, Repr::Few(v) if v.capacity() == 2));
        assert_eq!(size_of::<Subscriptions>(), 24);
    }
}
