//! What another loop may need to know about this loop's subscriptions: a 64-bit summary of
//! their first topic levels, shared through [`Shared`](crate::core::shared::Shared).
//!
//! A PUBLISH is forwarded to another loop only when that loop's summary says one of its
//! subscriptions may match, and MQTT 5's 0x10 No matching subscribers is answered only when
//! no loop's may. Bits 0 to 62 are buckets of a filter's first level (FNV-1a of the level,
//! modulo 63); bit 63 stands for filters whose first level is a wildcard, which match every
//! topic that does not start with `$` (MQTT-4.7.2-1). A summary can say "may match" for a
//! topic nobody matches (two levels in one bucket, or a deeper level that differs), never
//! "no" for one that somebody matches: every filter sets the bit its matching topics test.
//!
//! Each loop counts its filters per bit, so removing one clears a bit only when no filter
//! of the loop needs it. Updating happens on SUBSCRIBE, UNSUBSCRIBE and session end; reading
//! is one relaxed atomic load per other loop per PUBLISH (the same ordering as the
//! subscription count it replaces for this purpose: a PUBLISH racing a SUBSCRIBE on another
//! thread may or may not reach it, as before).

use crate::core::Shard;
use crate::core::subscription::SubOpts;
use crate::topic::TooManyLevels;

/// The bit of filters whose first level is `+` or `#`.
pub const WILDCARD_FIRST_LEVEL_BIT: u64 = 1 << 63;

/// Buckets for first levels that are not wildcards: bits 0 to 62.
const LEVEL_BUCKETS: u64 = 63;

/// A loop's summary of the first levels of its subscriptions.
#[derive(Debug, Clone)]
pub struct TopicSummary {
    /// Filters that set each bit.
    counts: [u32; 64],
    /// The bits whose count is non-zero.
    bits: u64,
}

impl Default for TopicSummary {
    fn default() -> Self {
        TopicSummary {
            counts: [0; 64],
            bits: 0,
        }
    }
}

impl TopicSummary {
    /// The bits set by the filters held.
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// Counts a filter that entered the index.
    pub fn add(&mut self, filter: &str) {
        let bit = filter_bit(filter);
        let at = bit.trailing_zeros() as usize;
        self.counts[at] += 1;
        self.bits |= bit;
    }

    /// Uncounts a filter that left the index.
    pub fn remove(&mut self, filter: &str) {
        let bit = filter_bit(filter);
        let at = bit.trailing_zeros() as usize;
        // Invariant: only a filter that was added is removed.
        debug_assert!(
            self.counts[at] > 0,
            "summary count underflow for {filter:?}"
        );
        self.counts[at] = self.counts[at].saturating_sub(1);
        if self.counts[at] == 0 {
            self.bits &= !bit;
        }
    }
}

/// The bit a filter sets.
pub fn filter_bit(filter: &str) -> u64 {
    match filter.as_bytes() {
        [b'+' | b'#'] | [b'+' | b'#', b'/', ..] => WILDCARD_FIRST_LEVEL_BIT,
        bytes => first_level_bit(bytes),
    }
}

/// The bits a topic name tests: its first level's bucket and, unless it starts with `$`,
/// the wildcard bit. A summary sharing any of them may hold a matching filter. On the
/// publishing hot path: one pass over the first level's bytes.
pub fn topic_bits(topic: &str) -> u64 {
    let bytes = topic.as_bytes();
    let bit = first_level_bit(bytes);
    if bytes.first() == Some(&b'$') {
        bit
    } else {
        bit | WILDCARD_FIRST_LEVEL_BIT
    }
}

/// FNV-1a (64-bit) of the bytes before the first `/`, in one of the 63 buckets.
fn first_level_bit(topic: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for &b in topic {
        if b == b'/' {
            break;
        }
        hash = (hash ^ u64::from(b)).wrapping_mul(PRIME);
    }
    1 << (hash % LEVEL_BUCKETS)
}

impl Shard {
    /// Adds or replaces a plain (not shared) subscription in this loop's index, keeping the
    /// summary in step. `Ok(true)` when the subscription is new.
    pub(crate) fn index_subscribe(
        &mut self,
        filter: &str,
        session_id: u32,
        opts: SubOpts,
    ) -> Result<bool, TooManyLevels> {
        let replaced = self.index.subscribe(filter, session_id, opts)?;
        if replaced.is_none() {
            self.summary.add(filter);
        }
        Ok(replaced.is_none())
    }

    /// Removes a plain subscription; whether it existed.
    pub(crate) fn index_unsubscribe(&mut self, filter: &str, session_id: u32) -> bool {
        let removed = self.index.unsubscribe(filter, session_id).is_some();
        if removed {
            self.summary.remove(filter);
        }
        removed
    }

    /// Tells the other loops this loop's summary (after changes).
    pub(crate) fn publish_subscriptions(&self) {
        self.shared
            .set_summary(self.loop_index, self.summary.bits());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;
    use proptest::prelude::*;

    #[test]
    fn wildcards_first_match_all_but_dollar_topics() {
        assert_eq!(filter_bit("#"), WILDCARD_FIRST_LEVEL_BIT);
        assert_eq!(filter_bit("+/a"), WILDCARD_FIRST_LEVEL_BIT);
        assert_ne!(topic_bits("a/b") & WILDCARD_FIRST_LEVEL_BIT, 0);
        assert_eq!(topic_bits("$SYS/x") & WILDCARD_FIRST_LEVEL_BIT, 0);
        assert_ne!(topic_bits("$SYS/x") & filter_bit("$SYS/#"), 0);
        // The first level is the whole topic when there is no '/', and may be empty.
        assert_eq!(filter_bit("a"), filter_bit("a/#"));
        // Only a whole first level of `+` or `#` is a wildcard.
        assert_eq!(filter_bit("+"), WILDCARD_FIRST_LEVEL_BIT);
        assert_eq!(
            filter_bit("ab/c"),
            topic_bits("ab") & !WILDCARD_FIRST_LEVEL_BIT
        );
        assert_eq!(
            filter_bit("/a"),
            topic_bits("/b") & !WILDCARD_FIRST_LEVEL_BIT
        );
    }

    #[test]
    fn counts_keep_a_bit_until_its_last_filter_leaves() {
        let mut s = TopicSummary::default();
        s.add("a/1");
        s.add("a/2");
        s.add("#");
        s.remove("a/1");
        assert_ne!(s.bits() & filter_bit("a"), 0);
        s.remove("a/2");
        assert_eq!(s.bits(), WILDCARD_FIRST_LEVEL_BIT);
        s.remove("#");
        assert_eq!(s.bits(), 0);
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("+".to_string()),
            Just("$s".to_string()),
            Just(String::new()),
            "[a-c]{1,2}",
        ]
    }

    proptest! {
        /// Never "no" for a topic a filter matches: a summary holding the filter shares a
        /// bit with the topic.
        #[test]
        fn a_matching_filter_always_shares_a_bit(
            levels in prop::collection::vec(level(), 1..4),
            hash_last in any::<bool>(),
            topic in prop::collection::vec("[a-c$]{0,2}", 1..5),
        ) {
            let mut filter = levels.join("/");
            if hash_last {
                filter.push_str(if filter.is_empty() { "#" } else { "/#" });
            }
            let topic = topic.join("/");
            prop_assume!(crate::topic::validate_topic_filter(&filter).is_ok());
            prop_assume!(crate::topic::validate_topic_name(&topic).is_ok());
            if matches(&filter, &topic) {
                prop_assert_ne!(filter_bit(&filter) & topic_bits(&topic), 0);
            }
        }
    }
}
