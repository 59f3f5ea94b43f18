//! The children of a trie node, keyed by level name: a sorted vector while narrow, a hash
//! map (or, for an ordered trie, a B-tree) once wide. Shared by the subscription index and
//! the retained store.
//!
//! Children are boxed so that the wide table's buckets stay small (a key and a pointer,
//! 24 bytes) whatever the node's size: with 15,000 children a hash table carries about twice
//! as many buckets as entries, so the bucket size dominates.
//!
//! The wide table keeps std's `RandomState`: level names come from clients, and a keyed
//! hash keeps one client from degrading everybody's lookups (HashDoS).
//!
//! An *ordered* trie (`Children<N, true>`: the retained store) keeps its wide nodes in a
//! `BTreeMap` instead, so that its children can be walked in level order from any key
//! ([`Children::iter_from`]): a walk can stop, let the trie change, and resume after the last
//! topic it reported. A B-tree compares keys instead of hashing them, so it is not exposed to
//! HashDoS either; the subscription index keeps the hash map, whose lookups on the publish
//! path are cheaper.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// A narrow node turns wide when inserting would give it more children than this.
const NARROW_MAX: usize = 16;
/// A wide node turns narrow again when it falls to this many children (hysteresis, so that
/// one subscribe/unsubscribe pair at the boundary does not convert back and forth).
const WIDE_MIN: usize = 8;

/// Level name → child node. `ORDERED` tries widen into a B-tree, the others into a hash map.
///
/// Invariant: no key is `+` or `#` (wildcards live in dedicated node fields), and keys are
/// unique; an `ORDERED` trie never holds `Wide`, the others never `Sorted`.
#[derive(Debug)]
#[expect(
    clippy::box_collection,
    reason = "boxing the rare wide map keeps every node's children field at 24 bytes, not 48"
)]
pub(super) enum Children<N, const ORDERED: bool = false> {
    /// Invariant: sorted by key, at most [`NARROW_MAX`] entries; an empty vector holds no
    /// allocation.
    Narrow(Vec<(Box<str>, Box<N>)>),
    /// Invariant: more than [`WIDE_MIN`] entries.
    Wide(Box<HashMap<Box<str>, Box<N>>>),
    /// Invariant: more than [`WIDE_MIN`] entries.
    Sorted(Box<BTreeMap<Box<str>, Box<N>>>),
}

impl<N, const ORDERED: bool> Default for Children<N, ORDERED> {
    fn default() -> Self {
        Children::Narrow(Vec::new())
    }
}

/// Iterates over `(level, child)` pairs: in key order for an ordered trie, else in no
/// particular order.
pub(super) enum Iter<'a, N> {
    Narrow(std::slice::Iter<'a, (Box<str>, Box<N>)>),
    Wide(std::collections::hash_map::Iter<'a, Box<str>, Box<N>>),
    Sorted(std::collections::btree_map::Range<'a, Box<str>, Box<N>>),
}

impl<'a, N> Iterator for Iter<'a, N> {
    type Item = (&'a str, &'a N);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Narrow(it) => it.next().map(|(k, v)| (&**k, &**v)),
            Iter::Wide(it) => it.next().map(|(k, v)| (&**k, &**v)),
            Iter::Sorted(it) => it.next().map(|(k, v)| (&**k, &**v)),
        }
    }
}

fn search<N>(entries: &[(Box<str>, Box<N>)], level: &str) -> Result<usize, usize> {
    entries.binary_search_by(|(key, _)| (**key).cmp(level))
}

impl<N, const ORDERED: bool> Children<N, ORDERED> {
    pub(super) fn len(&self) -> usize {
        match self {
            Children::Narrow(v) => v.len(),
            Children::Wide(m) => m.len(),
            Children::Sorted(m) => m.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn iter(&self) -> Iter<'_, N> {
        match self {
            Children::Narrow(v) => Iter::Narrow(v.iter()),
            Children::Wide(m) => Iter::Wide(m.iter()),
            Children::Sorted(m) => Iter::Sorted(m.range::<str, _>(..)),
        }
    }

    /// Looks a child up without allocating.
    pub(super) fn get(&self, level: &str) -> Option<&N> {
        match self {
            Children::Narrow(v) => search(v, level).ok().map(|i| &*v[i].1),
            Children::Wide(m) => m.get(level).map(|n| &**n),
            Children::Sorted(m) => m.get(level).map(|n| &**n),
        }
    }

    pub(super) fn get_mut(&mut self, level: &str) -> Option<&mut N> {
        match self {
            Children::Narrow(v) => search(v, level).ok().map(|i| &mut *v[i].1),
            Children::Wide(m) => m.get_mut(level).map(|n| &mut **n),
            Children::Sorted(m) => m.get_mut(level).map(|n| &mut **n),
        }
    }

    /// The child for `level`, created with `make` if missing.
    pub(super) fn get_or_insert_with(&mut self, level: &str, make: impl FnOnce() -> N) -> &mut N {
        debug_assert!(
            level != "+" && level != "#",
            "wildcard {level:?} used as a child key"
        );
        if let Children::Narrow(v) = self
            && v.len() == NARROW_MAX
            && search(v, level).is_err()
        {
            self.widen();
        }
        match self {
            Children::Narrow(v) => {
                let i = search(v, level).unwrap_or_else(|i| {
                    v.insert(i, (level.into(), Box::new(make())));
                    i
                });
                &mut v[i].1
            }
            // The entry API wants an owned key; subscribing is not the hot path.
            Children::Wide(m) => m.entry(level.into()).or_insert_with(|| Box::new(make())),
            Children::Sorted(m) => m.entry(level.into()).or_insert_with(|| Box::new(make())),
        }
    }

    /// Removes a child, narrowing or shrinking the storage so that memory comes back.
    pub(super) fn remove(&mut self, level: &str) -> Option<Box<N>> {
        let removed = match self {
            Children::Narrow(v) => search(v, level).ok().map(|i| v.remove(i).1),
            Children::Wide(m) => m.remove(level),
            Children::Sorted(m) => m.remove(level),
        };
        if removed.is_some() {
            self.shrink();
        }
        removed
    }

    /// Keeps the children for which `keep` returns true.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&mut N) -> bool) {
        match self {
            Children::Narrow(v) => v.retain_mut(|(_, n)| keep(n)),
            Children::Wide(m) => m.retain(|_, n| keep(n)),
            Children::Sorted(m) => m.retain(|_, n| keep(n)),
        }
        self.shrink();
    }

    fn widen(&mut self) {
        if let Children::Narrow(v) = self {
            let entries = std::mem::take(v);
            *self = if ORDERED {
                Children::Sorted(Box::new(entries.into_iter().collect()))
            } else {
                let mut map = HashMap::with_capacity(entries.len() + 1);
                map.extend(entries);
                Children::Wide(Box::new(map))
            };
        }
    }

    /// Gives memory back after removals: narrows a small wide node, and shrinks storage
    /// that is less than a quarter full (amortised O(1): each shrink halves it at least).
    fn shrink(&mut self) {
        match self {
            Children::Narrow(v) if v.len() * 4 <= v.capacity() => v.shrink_to_fit(),
            Children::Wide(m) if m.len() <= WIDE_MIN => {
                let mut entries: Vec<_> = std::mem::take(&mut **m).into_iter().collect();
                entries.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
                *self = Children::Narrow(entries);
            }
            Children::Wide(m) if m.len() * 4 <= m.capacity() => m.shrink_to_fit(),
            Children::Sorted(m) if m.len() <= WIDE_MIN => {
                *self = Children::Narrow(std::mem::take(&mut **m).into_iter().collect());
            }
            _ => {}
        }
    }

    /// Checks this container's own invariants (not the children's).
    pub(super) fn check(&self) -> Result<(), String> {
        if self.iter().any(|(k, _)| k == "+" || k == "#") {
            return Err("a wildcard is stored as a child key".into());
        }
        match self {
            Children::Narrow(v) if v.len() > NARROW_MAX => Err("narrow node too wide".into()),
            Children::Narrow(v) if !v.windows(2).all(|w| w[0].0 < w[1].0) => {
                Err("narrow children not sorted and unique".into())
            }
            Children::Wide(m) if m.len() <= WIDE_MIN => Err("wide node too narrow".into()),
            Children::Sorted(m) if m.len() <= WIDE_MIN => Err("wide node too narrow".into()),
            Children::Wide(_) if ORDERED => Err("an ordered node widened into a hash map".into()),
            Children::Sorted(_) if !ORDERED => {
                Err("an unordered node widened into a B-tree".into())
            }
            _ => Ok(()),
        }
    }
}

impl<N> Children<N, true> {
    /// The children whose level is `from` or after it, in key order (all of them for
    /// `None`): a lookup, then a walk; what comes before `from` is never visited.
    pub(super) fn iter_from(&self, from: Option<&str>) -> Iter<'_, N> {
        let lower = from.map_or(Bound::Unbounded, Bound::Included);
        match self {
            Children::Narrow(v) => {
                let start = from.map_or(0, |level| search(v, level).unwrap_or_else(|i| i));
                Iter::Narrow(v[start..].iter())
            }
            Children::Sorted(m) => Iter::Sorted(m.range::<str, _>((lower, Bound::Unbounded))),
            // Invariant: an ordered trie never widens into a hash map.
            Children::Wide(m) => {
                debug_assert!(false, "an ordered node widened into a hash map");
                Iter::Wide(m.iter())
            }
        }
    }
}

/// Runs `f` with `level` appended to the filter or topic being rebuilt in `path`.
pub(super) fn with_level<R>(
    path: &mut String,
    at_root: bool,
    level: &str,
    f: impl FnOnce(&mut String) -> R,
) -> R {
    let mark = path.len();
    if !at_root {
        path.push('/');
    }
    path.push_str(level);
    let result = f(path);
    path.truncate(mark);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<const ORDERED: bool>(c: &Children<u32, ORDERED>) -> Vec<String> {
        let mut k: Vec<String> = c.iter().map(|(k, _)| k.to_owned()).collect();
        k.sort();
        k
    }

    #[test]
    fn widens_past_the_narrow_limit_and_narrows_back() {
        let mut c: Children<u32> = Children::default();
        for i in 0..40u32 {
            *c.get_or_insert_with(&format!("k{i:02}"), || 0) += i;
            assert_eq!(c.check(), Ok(()));
        }
        assert!(matches!(c, Children::Wide(_)));
        assert_eq!(c.get("k07"), Some(&7));
        for i in 0..40u32 {
            assert_eq!(c.remove(&format!("k{i:02}")).map(|b| *b), Some(i));
            assert_eq!(c.check(), Ok(()));
        }
        assert!(matches!(&c, Children::Narrow(v) if v.capacity() == 0));
    }

    #[test]
    fn narrow_children_stay_sorted() {
        let mut c: Children<u32> = Children::default();
        for k in ["b", "", "a", "é", "$SYS"] {
            c.get_or_insert_with(k, || 1);
        }
        assert_eq!(c.check(), Ok(()));
        assert_eq!(keys(&c), ["", "$SYS", "a", "b", "é"]);
        c.retain(|n| {
            *n += 1;
            true
        });
        assert_eq!(c.get(""), Some(&2));
        assert_eq!(c.get("c"), None);
    }

    #[test]
    fn ordered_children_widen_into_a_b_tree_and_walk_from_any_key() {
        let mut c: Children<u32, true> = Children::default();
        for i in (0..40u32).rev() {
            c.get_or_insert_with(&format!("k{i:02}"), || i);
            assert_eq!(c.check(), Ok(()));
        }
        assert!(matches!(c, Children::Sorted(_)));
        let from = |c: &Children<u32, true>, key: Option<&str>| -> Vec<u32> {
            c.iter_from(key).map(|(_, v)| *v).collect()
        };
        assert_eq!(from(&c, Some("k37")), [37, 38, 39]);
        assert_eq!(from(&c, Some("k371")), [38, 39]); // between two keys
        assert_eq!(from(&c, None).len(), 40);
        for i in 0..35u32 {
            c.remove(&format!("k{i:02}"));
        }
        assert!(matches!(c, Children::Narrow(_)));
        assert_eq!(from(&c, Some("k36")), [36, 37, 38, 39]);
        assert_eq!(from(&c, Some("a")), [35, 36, 37, 38, 39]);
        assert_eq!(from(&c, Some("z")), Vec::<u32>::new());
    }
}
