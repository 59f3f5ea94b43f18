//! The children of a trie node, keyed by level name: a sorted vector while narrow, a hash
//! map once wide. Shared by the subscription index and the retained store.
//!
//! Children are boxed so that the wide table's buckets stay small (a key and a pointer,
//! 24 bytes) whatever the node's size: with 15,000 children a hash table carries about twice
//! as many buckets as entries, so the bucket size dominates.
//!
//! The wide table keeps std's `RandomState`: level names come from clients, and a keyed
//! hash keeps one client from degrading everybody's lookups (HashDoS).

use std::collections::HashMap;

/// A narrow node turns wide when inserting would give it more children than this.
const NARROW_MAX: usize = 16;
/// A wide node turns narrow again when it falls to this many children (hysteresis, so that
/// one subscribe/unsubscribe pair at the boundary does not convert back and forth).
const WIDE_MIN: usize = 8;

/// Level name → child node.
///
/// Invariant: no key is `+` or `#` (wildcards live in dedicated node fields), and keys are
/// unique.
#[derive(Debug)]
#[expect(
    clippy::box_collection,
    reason = "boxing the rare wide map keeps every node's children field at 24 bytes, not 48"
)]
pub(super) enum Children<N> {
    /// Invariant: sorted by key, at most [`NARROW_MAX`] entries; an empty vector holds no
    /// allocation.
    Narrow(Vec<(Box<str>, Box<N>)>),
    /// Invariant: more than [`WIDE_MIN`] entries.
    Wide(Box<HashMap<Box<str>, Box<N>>>),
}

impl<N> Default for Children<N> {
    fn default() -> Self {
        Children::Narrow(Vec::new())
    }
}

/// Iterates over `(level, child)` pairs in no particular order.
pub(super) enum Iter<'a, N> {
    Narrow(std::slice::Iter<'a, (Box<str>, Box<N>)>),
    Wide(std::collections::hash_map::Iter<'a, Box<str>, Box<N>>),
}

impl<'a, N> Iterator for Iter<'a, N> {
    type Item = (&'a str, &'a N);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Narrow(it) => it.next().map(|(k, v)| (&**k, &**v)),
            Iter::Wide(it) => it.next().map(|(k, v)| (&**k, &**v)),
        }
    }
}

fn search<N>(entries: &[(Box<str>, Box<N>)], level: &str) -> Result<usize, usize> {
    entries.binary_search_by(|(key, _)| (**key).cmp(level))
}

impl<N> Children<N> {
    pub(super) fn len(&self) -> usize {
        match self {
            Children::Narrow(v) => v.len(),
            Children::Wide(m) => m.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn iter(&self) -> Iter<'_, N> {
        match self {
            Children::Narrow(v) => Iter::Narrow(v.iter()),
            Children::Wide(m) => Iter::Wide(m.iter()),
        }
    }

    /// Looks a child up without allocating.
    pub(super) fn get(&self, level: &str) -> Option<&N> {
        match self {
            Children::Narrow(v) => search(v, level).ok().map(|i| &*v[i].1),
            Children::Wide(m) => m.get(level).map(|n| &**n),
        }
    }

    pub(super) fn get_mut(&mut self, level: &str) -> Option<&mut N> {
        match self {
            Children::Narrow(v) => search(v, level).ok().map(|i| &mut *v[i].1),
            Children::Wide(m) => m.get_mut(level).map(|n| &mut **n),
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
        }
    }

    /// Removes a child, narrowing or shrinking the storage so that memory comes back.
    pub(super) fn remove(&mut self, level: &str) -> Option<Box<N>> {
        let removed = match self {
            Children::Narrow(v) => search(v, level).ok().map(|i| v.remove(i).1),
            Children::Wide(m) => m.remove(level),
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
        }
        self.shrink();
    }

    fn widen(&mut self) {
        if let Children::Narrow(v) = self {
            let mut map = HashMap::with_capacity(v.len() + 1);
            map.extend(std::mem::take(v));
            *self = Children::Wide(Box::new(map));
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
            _ => Ok(()),
        }
    }
}

/// Runs `f` with `level` appended to the filter or topic being rebuilt in `path`.
pub(super) fn with_level(
    path: &mut String,
    at_root: bool,
    level: &str,
    f: impl FnOnce(&mut String),
) {
    let mark = path.len();
    if !at_root {
        path.push('/');
    }
    path.push_str(level);
    f(path);
    path.truncate(mark);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &Children<u32>) -> Vec<String> {
        let mut k: Vec<String> = c.iter().map(|(k, _)| k.to_owned()).collect();
        k.sort();
        k
    }

    #[test]
    fn widens_past_the_narrow_limit_and_narrows_back() {
        let mut c = Children::default();
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
        let mut c = Children::default();
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
}
