//! The subscribers of one topic filter: `(subscriber, options)` pairs, unique by subscriber.
//!
//! Most filters have exactly one subscriber (a device listening on its own topic), so one
//! subscription is stored inline and only a second one allocates.

/// The subscriptions ending at one trie slot.
///
/// Invariant: a subscriber appears at most once; `Many` holds at least two entries.
#[derive(Debug, Default)]
pub(super) enum Subscribers<S, O> {
    #[default]
    Empty,
    One(S, O),
    Many(Vec<(S, O)>),
}

impl<S: Copy + Eq, O: Copy> Subscribers<S, O> {
    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Subscribers::Empty)
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Subscribers::Empty => 0,
            Subscribers::One(..) => 1,
            Subscribers::Many(v) => v.len(),
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
            Subscribers::Many(v) => match v.iter_mut().find(|(s, _)| *s == subscriber) {
                Some((_, o)) => return Some(std::mem::replace(o, options)),
                None => v.push((subscriber, options)),
            },
        }
        None
    }

    pub(super) fn get(&self, subscriber: S) -> Option<&O> {
        match self {
            Subscribers::One(s, o) if *s == subscriber => Some(o),
            Subscribers::Many(v) => v.iter().find(|(s, _)| *s == subscriber).map(|(_, o)| o),
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
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if let Subscribers::Many(v) = self {
            if v.len() < 2 {
                return Err("a Many list with fewer than two subscribers".into());
            }
            if v.iter()
                .enumerate()
                .any(|(i, (s, _))| v[..i].iter().any(|(t, _)| t == s))
            {
                return Err("a subscriber appears twice in one list".into());
            }
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
}
