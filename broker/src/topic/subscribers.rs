//! The subscribers of one topic filter: `(subscriber, options)` pairs, unique by subscriber.
//!
//! Most filters have exactly one subscriber (a device listening on its own topic), so one
//! subscription is stored inline and only a second one allocates. A filter thousands of
//! clients share (`alerts/#`) keeps its subscribers in a vector, which matching walks, plus
//! a hash table from subscriber to position once there are more than
//! [`SCAN_MAX_SUBSCRIBERS`]: adding or removing one subscriber then costs a hash, not a scan
//! of everybody subscribed before.

use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;

/// A filter's subscribers are found by scanning up to this many; past it, by a table.
const SCAN_MAX_SUBSCRIBERS: usize = 32;
/// An indexed list drops its table again when it falls to this many (hysteresis).
const INDEXED_MIN_SUBSCRIBERS: usize = SCAN_MAX_SUBSCRIBERS / 2;

/// The subscriptions ending at one trie slot.
///
/// Invariant: a subscriber appears at most once; `Many` holds at least two entries and at
/// most [`SCAN_MAX_SUBSCRIBERS`]; `Indexed` more than [`INDEXED_MIN_SUBSCRIBERS`].
#[derive(Debug, Default)]
pub(super) enum Subscribers<S, O> {
    #[default]
    Empty,
    One(S, O),
    Many(Vec<(S, O)>),
    Indexed(Box<Indexed<S, O>>),
}

/// Many subscribers, with their positions in a hash table.
#[derive(Debug)]
pub(super) struct Indexed<S, O> {
    list: Vec<(S, O)>,
    /// Positions in `list`, hashed by the subscriber there.
    // Invariant: one entry per element of `list`, each naming its element's position.
    at: HashTable<u32>,
    hasher: RandomState,
}

impl<S: Copy + Eq + Hash, O: Copy> Indexed<S, O> {
    fn new(list: Vec<(S, O)>) -> Self {
        let mut indexed = Indexed {
            at: HashTable::with_capacity(list.len()),
            list,
            hasher: RandomState::new(),
        };
        for i in 0..indexed.list.len() {
            let hash = indexed.hasher.hash_one(indexed.list[i].0);
            let (list, hasher) = (&indexed.list, &indexed.hasher);
            indexed
                .at
                .insert_unique(hash, i as u32, |&j| hasher.hash_one(list[j as usize].0));
        }
        indexed
    }

    fn position(&self, subscriber: S) -> Option<usize> {
        let list = &self.list;
        self.at
            .find(self.hasher.hash_one(subscriber), |&j| {
                list[j as usize].0 == subscriber
            })
            .map(|&j| j as usize)
    }

    fn push(&mut self, subscriber: S, options: O) {
        let hash = self.hasher.hash_one(subscriber);
        self.list.push((subscriber, options));
        let (list, hasher) = (&self.list, &self.hasher);
        let at = (list.len() - 1) as u32;
        self.at
            .insert_unique(hash, at, |&j| hasher.hash_one(list[j as usize].0));
    }

    fn remove(&mut self, subscriber: S) -> Option<O> {
        let hash = self.hasher.hash_one(subscriber);
        let list = &self.list;
        let entry = self
            .at
            .find_entry(hash, |&j| list[j as usize].0 == subscriber)
            .ok()?;
        let at = *entry.get() as usize;
        entry.remove();
        let (_, old) = self.list.swap_remove(at);
        if let Some(&(moved, _)) = self.list.get(at) {
            // The last subscriber moved into the hole: its entry names the old last place.
            let last = self.list.len() as u32;
            if let Some(slot) = self
                .at
                .find_mut(self.hasher.hash_one(moved), |&j| j == last)
            {
                *slot = at as u32;
            }
        }
        if self.at.len() * 4 <= self.at.capacity() {
            let (list, hasher) = (&self.list, &self.hasher);
            self.at
                .shrink_to_fit(|&j| hasher.hash_one(list[j as usize].0));
            self.list.shrink_to_fit();
        }
        Some(old)
    }
}

impl<S: Copy + Eq + Hash, O: Copy> Subscribers<S, O> {
    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Subscribers::Empty)
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Subscribers::Empty => 0,
            Subscribers::One(..) => 1,
            Subscribers::Many(v) => v.len(),
            Subscribers::Indexed(x) => x.list.len(),
        }
    }

    /// Adds or replaces `subscriber`'s options, returning the replaced ones.
    pub(super) fn insert(&mut self, subscriber: S, options: O) -> Option<O> {
        match self {
            Subscribers::Empty => *self = Subscribers::One(subscriber, options),
            Subscribers::One(s, o) if *s == subscriber => {
                return Some(std::mem::replace(o, options));
            }
            Subscribers::One(s, o) => {
                *self = Subscribers::Many(vec![(*s, *o), (subscriber, options)])
            }
            Subscribers::Many(v) => {
                if let Some((_, o)) = v.iter_mut().find(|(s, _)| *s == subscriber) {
                    return Some(std::mem::replace(o, options));
                }
                if v.len() < SCAN_MAX_SUBSCRIBERS {
                    v.push((subscriber, options));
                } else {
                    let mut indexed = Indexed::new(std::mem::take(v));
                    indexed.push(subscriber, options);
                    *self = Subscribers::Indexed(Box::new(indexed));
                }
            }
            Subscribers::Indexed(x) => match x.position(subscriber) {
                Some(at) => return Some(std::mem::replace(&mut x.list[at].1, options)),
                None => x.push(subscriber, options),
            },
        }
        None
    }

    pub(super) fn get(&self, subscriber: S) -> Option<&O> {
        match self {
            Subscribers::One(s, o) if *s == subscriber => Some(o),
            Subscribers::Many(v) => v.iter().find(|(s, _)| *s == subscriber).map(|(_, o)| o),
            Subscribers::Indexed(x) => x.position(subscriber).map(|at| &x.list[at].1),
            _ => None,
        }
    }

    /// Removes `subscriber`, returning its options.
    pub(super) fn remove(&mut self, subscriber: S) -> Option<O> {
        match self {
            Subscribers::One(s, o) if *s == subscriber => {
                let old = *o;
                *self = Subscribers::Empty;
                Some(old)
            }
            Subscribers::Many(v) => {
                let i = v.iter().position(|(s, _)| *s == subscriber)?;
                let (_, old) = v.swap_remove(i);
                self.normalise();
                Some(old)
            }
            Subscribers::Indexed(x) => {
                let old = x.remove(subscriber)?;
                if x.list.len() <= INDEXED_MIN_SUBSCRIBERS {
                    *self = Subscribers::Many(std::mem::take(&mut x.list));
                }
                Some(old)
            }
            _ => None,
        }
    }

    /// Restores the `Many` invariant and gives back memory after a removal.
    fn normalise(&mut self) {
        if let Subscribers::Many(v) = self {
            match v.as_slice() {
                [] => *self = Subscribers::Empty,
                &[(s, o)] => *self = Subscribers::One(s, o),
                _ if v.len() * 4 <= v.capacity() => v.shrink_to_fit(),
                _ => {}
            }
        }
    }

    /// Calls `f` for every subscription, without allocating.
    pub(super) fn for_each(&self, f: &mut impl FnMut(S, &O)) {
        match self {
            Subscribers::Empty => {}
            Subscribers::One(s, o) => f(*s, o),
            Subscribers::Many(v) => v.iter().for_each(|(s, o)| f(*s, o)),
            Subscribers::Indexed(x) => x.list.iter().for_each(|(s, o)| f(*s, o)),
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        match self {
            Subscribers::Many(v) => {
                if v.len() < 2 || v.len() > SCAN_MAX_SUBSCRIBERS {
                    return Err(format!("a Many list of {} subscribers", v.len()));
                }
                if v.iter()
                    .enumerate()
                    .any(|(i, (s, _))| v[..i].iter().any(|(t, _)| t == s))
                {
                    return Err("a subscriber appears twice in one list".into());
                }
            }
            Subscribers::Indexed(x) => {
                if x.list.len() <= INDEXED_MIN_SUBSCRIBERS || x.at.len() != x.list.len() {
                    return Err("an indexed list of the wrong size".into());
                }
                // Each subscriber found at its own place: so none appears twice.
                for (i, &(s, _)) in x.list.iter().enumerate() {
                    if x.position(s) != Some(i) {
                        return Err("an indexed subscriber not found at its place".into());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subscription_is_inline_and_small() {
        assert!(size_of::<Subscribers<u32, u8>>() <= 24);
    }

    #[test]
    fn insert_replaces_and_remove_shrinks_back_to_inline() {
        let mut s = Subscribers::default();
        assert_eq!(s.insert(1u32, 'a'), None);
        assert_eq!(s.insert(1, 'b'), Some('a'));
        assert_eq!(s.insert(2, 'c'), None);
        assert_eq!(s.insert(3, 'd'), None);
        assert_eq!(s.insert(2, 'e'), Some('c'));
        assert_eq!((s.len(), s.get(2), s.check()), (3, Some(&'e'), Ok(())));
        assert_eq!(s.remove(1), Some('b'));
        assert_eq!(s.remove(1), None);
        assert_eq!(s.remove(3), Some('d'));
        assert!(matches!(s, Subscribers::One(2, 'e')));
        assert_eq!(s.remove(2), Some('e'));
        assert!(s.is_empty());
    }

    #[test]
    fn many_subscribers_are_indexed_and_found_without_a_scan() {
        let mut s = Subscribers::default();
        for i in 0..1000u32 {
            assert_eq!(s.insert(i, i), None);
        }
        assert!(matches!(s, Subscribers::Indexed(_)));
        assert_eq!((s.len(), s.check()), (1000, Ok(())));
        assert_eq!(s.insert(500, 7), Some(500));
        assert_eq!(s.get(500), Some(&7));
        // Removing from the middle moves the last one into the hole.
        for i in (0..1000u32).step_by(3) {
            assert!(s.remove(i).is_some(), "{i}");
            assert_eq!(s.check(), Ok(()));
        }
        assert_eq!(s.remove(0), None);
        let mut seen = Vec::new();
        s.for_each(&mut |k, _| seen.push(k));
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).filter(|i| i % 3 != 0).collect::<Vec<_>>());
        for i in 0..1000u32 {
            s.remove(i);
        }
        assert!(s.is_empty());
    }
}
