//! Topic names and topic filters (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7).
//!
//! - [`validate_topic_name`] / [`validate_topic_filter`]: the syntax rules, written by us
//!   because the codec crates get them wrong (`a+/b` accepted as a filter, wildcards accepted
//!   in PUBLISH topics).
//! - [`matches()`]: one filter against one name, the reference for everything below.
//! - [`SubscriptionIndex`]: who is subscribed to a topic name; matching never allocates.
//! - [`RetainedStore`]: the retained message of each topic name, found by topic filter.
//!
//! Everything here is sans-IO and assumes validated input: callers validate a topic once at
//! the protocol boundary, and debug builds assert it again here. Both tries refuse topics
//! deeper than [`MAX_TOPIC_LEVELS`] so that their recursive walks stay shallow.

mod children;
pub mod index;
pub mod matching;
pub mod retained;
mod subscribers;

pub use index::SubscriptionIndex;
pub use matching::{MAX_TOPIC_LEVELS, TooManyLevels, is_dollar_topic, level_count, matches};
pub use retained::RetainedStore;

/// The longest topic name or filter the protocol can carry: a two-byte length prefix.
pub const MAX_TOPIC_LENGTH_BYTES: usize = u16::MAX as usize;

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// Zero-length names and filters are not allowed (MQTT-4.7.3-1).
    Empty,
    /// Longer than [`MAX_TOPIC_LENGTH_BYTES`].
    TooLong,
    /// Contains U+0000 (MQTT-1.5.3-2; 5.0: MQTT-1.5.4-2).
    NullCharacter,
    /// A topic *name* contains `+` or `#` (MQTT-3.3.2-2).
    WildcardInName,
    /// `#` not alone in the last level, or `+` not alone in its level (MQTT-4.7.1-2, MQTT-4.7.1-3).
    MisplacedWildcard,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            TopicError::Empty => "topic is empty",
            TopicError::TooLong => "topic is longer than 65535 bytes",
            TopicError::NullCharacter => "topic contains U+0000",
            TopicError::WildcardInName => "topic name contains a wildcard",
            TopicError::MisplacedWildcard => "wildcard is not alone in its topic level",
        };
        f.write_str(text)
    }
}

impl std::error::Error for TopicError {}

fn check_common(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LENGTH_BYTES {
        return Err(TopicError::TooLong);
    }
    if topic.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Checks a topic *name* (the topic of a PUBLISH or of a will).
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic *filter* (a SUBSCRIBE or UNSUBSCRIBE entry).
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            "#" if is_last => {}
            "+" => {}
            _ if level.contains(['+', '#']) => return Err(TopicError::MisplacedWildcard),
            _ => {}
        }
        if level == "#" && !is_last {
            return Err(TopicError::MisplacedWildcard);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_wildcards_mqtt_3_3_2_2() {
        assert_eq!(
            validate_topic_name("a/+/b"),
            Err(TopicError::WildcardInName)
        );
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a/b"), Ok(()));
        assert_eq!(validate_topic_name("/"), Ok(()));
        assert_eq!(validate_topic_name("$SYS/x"), Ok(()));
    }

    #[test]
    fn empty_and_null_are_refused_mqtt_4_7_3_1_and_1_5_3_2() {
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(
            validate_topic_filter("a/\0"),
            Err(TopicError::NullCharacter)
        );
    }

    #[test]
    fn over_long_topics_are_refused() {
        let long = "a".repeat(MAX_TOPIC_LENGTH_BYTES + 1);
        assert_eq!(validate_topic_name(&long), Err(TopicError::TooLong));
        assert_eq!(validate_topic_name(&long[1..]), Ok(()));
    }

    #[test]
    fn filter_wildcards_must_fill_their_level_mqtt_4_7_1_2_and_4_7_1_3() {
        for ok in [
            "#", "+", "a/#", "a/+/b", "+/+", "/+", "a//#", "+/#", "$SYS/#",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a+/b", "a/#/b", "#/a", "a#", "a/b#", "+a", "##", "a/++"] {
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::MisplacedWildcard),
                "{bad}"
            );
        }
    }
}
