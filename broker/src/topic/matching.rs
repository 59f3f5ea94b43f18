//! Matching one topic filter against one topic name (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7).
//!
//! [`matches()`] is the reference definition: the [`SubscriptionIndex`](super::SubscriptionIndex)
//! and the [`RetainedStore`](super::RetainedStore) are tested against it. Matching compares
//! levels byte for byte, with no normalisation (MQTT-4.7.3-4), so multibyte UTF-8 needs no
//! special care: `/` is ASCII and never occurs inside a multibyte sequence.

use super::{validate_topic_filter, validate_topic_name};

/// The deepest topic name or filter (in levels) the [`SubscriptionIndex`](super::SubscriptionIndex)
/// and the [`RetainedStore`](super::RetainedStore) accept.
///
/// The protocol allows 32,768 levels (`//…/` in 65,535 bytes). Both tries are walked
/// recursively, one stack frame per level, and dropped recursively, so their depth is bounded
/// here: 256 frames of well under 200 bytes each fit any thread stack. Callers refuse deeper
/// SUBSCRIBEs (SUBACK failure) and PUBLISHes with the retain flag.
pub const MAX_TOPIC_LEVELS: usize = 256;

/// A topic name or filter has more than [`MAX_TOPIC_LEVELS`] levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyLevels;

impl std::fmt::Display for TooManyLevels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "topic has more than {MAX_TOPIC_LEVELS} levels")
    }
}

impl std::error::Error for TooManyLevels {}

/// The number of levels in a topic name or filter: one more than its `/` count.
///
/// An empty level is still a level: `/` has two, `a//b` has three (MQTT 5.0 §4.7.1.1).
pub fn level_count(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

/// Refuses topics deeper than [`MAX_TOPIC_LEVELS`].
pub(super) fn check_depth(topic: &str) -> Result<(), TooManyLevels> {
    if level_count(topic) > MAX_TOPIC_LEVELS {
        return Err(TooManyLevels);
    }
    Ok(())
}

/// Whether the topic *name* is reserved for the server: it starts with `$` (MQTT 5.0 §4.7.2),
/// e.g. `$SYS/broker/uptime`.
pub fn is_dollar_topic(name: &str) -> bool {
    name.as_bytes().first() == Some(&b'$')
}

/// Whether a topic filter matches a topic name.
///
/// - `+` matches exactly one level, which may be empty: `sport/+` matches `sport/` but not
///   `sport` (§4.7.1.3).
/// - `#` matches its parent level and every level below: `sport/#` matches `sport`,
///   `sport/tennis` and `sport/tennis/player1` (§4.7.1.2).
/// - Empty levels are levels: `/finance` matches `+/+` and `/+` but not `+`.
/// - A filter starting with a wildcard never matches a name starting with `$`
///   (MQTT-4.7.2-1); `$SYS/#` and `$SYS/monitor/+` do match `$SYS/monitor/Clients`.
///
/// Both arguments must already be valid ([`validate_topic_filter`], [`validate_topic_name`]);
/// debug builds assert it. A `$share/{group}/{filter}` filter is compared literally here:
/// shared subscriptions are the index's business.
pub fn matches(filter: &str, name: &str) -> bool {
    debug_assert!(
        validate_topic_filter(filter).is_ok(),
        "invalid filter {filter:?}"
    );
    debug_assert!(validate_topic_name(name).is_ok(), "invalid name {name:?}");
    if is_dollar_topic(name) && matches!(filter.as_bytes().first(), Some(b'+' | b'#')) {
        return false; // MQTT-4.7.2-1
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            // `#` is last (MQTT-4.7.1-2) and matches the rest, including nothing at all.
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_count_counts_empty_levels() {
        assert_eq!(level_count("a"), 1);
        assert_eq!(level_count("/"), 2);
        assert_eq!(level_count("a//b"), 3);
        assert_eq!(level_count("/a/"), 3);
    }

    #[test]
    fn depth_limit_is_inclusive() {
        let deepest = "a/".repeat(MAX_TOPIC_LEVELS - 1) + "a";
        assert_eq!(check_depth(&deepest), Ok(()));
        assert_eq!(check_depth(&(deepest + "/a")), Err(TooManyLevels));
    }

    #[test]
    fn dollar_topics_are_recognised_by_their_first_byte() {
        assert!(is_dollar_topic("$SYS/x"));
        assert!(is_dollar_topic("$"));
        assert!(!is_dollar_topic("a/$SYS"));
        assert!(!is_dollar_topic("é/$"));
    }

    #[test]
    fn multibyte_first_characters_do_not_panic() {
        assert!(matches("é/+", "é/ü"));
        assert!(matches("+/#", "日本/語"));
        assert!(!matches("ü", "é"));
    }
}
