//! A session's retained streams: one per subscription still owed retained messages, served
//! in the order they were started, found by filter in constant time (a client may start a
//! hundred thousand of them with one SUBSCRIBE, and replace or end each with another packet),
//! and the session's budget for one turn of its loop.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::core::delivery::Grant;
use crate::protocol::QoS;
use crate::topic::matches;
use crate::topic::retained::Cursor;

/// The retained messages one subscription is still owed.
#[derive(Debug)]
pub struct Stream {
    /// The subscription's filter.
    pub(super) filter: Box<str>,
    /// Where the walk of the store stands.
    pub(super) cursor: Cursor,
    /// The store's stamp when the subscription was made: what is stamped later arrived live.
    pub(super) snapshot: u64,
    /// The granted QoS.
    pub(super) qos: QoS,
    /// The SUBSCRIBE's Subscription Identifier (MQTT 5).
    pub(super) sub_id: Option<u32>,
    /// Topics not reached yet whose retained message was sent already (`before_live`).
    // Invariant: every entry matches `filter`; an entry is removed when the walk reaches
    // it (one whose message was replaced or deleted meanwhile stays until the stream ends).
    pub(super) sent_ahead: HashSet<Box<str>>,
    /// Messages sent so far (for the log line at the end).
    pub(super) sent: u64,
    /// Its place in the order streams were started.
    serial: u64,
    /// Ended (by an UNSUBSCRIBE, or a newer stream for the same filter) before it finished.
    cancelled: bool,
}

impl Stream {
    /// Whether the stream will still send the retained message of `topic`.
    pub(super) fn owes(&self, topic: &str) -> bool {
        !self.cancelled
            && !self.cursor.has_passed(topic)
            && matches(&self.filter, topic)
            && !self.sent_ahead.contains(topic)
    }

    /// The delivery of a retained message of QoS `published` on this stream.
    pub(super) fn grant(&self, published: QoS) -> Grant<'_> {
        Grant {
            qos: published.min(self.qos),
            retain: true, // MQTT-3.3.1-8
            sub_ids: self.sub_id.as_slice(),
            group: None,
        }
    }
}

/// The work a session's streams may do in one turn of its loop.
#[derive(Debug, Default)]
pub(super) struct Budget {
    /// The turn the counts are for.
    turn: u64,
    /// Messages sent in it.
    pub(super) messages: usize,
    /// Trie nodes visited in it.
    pub(super) nodes: usize,
}

impl Budget {
    /// Starts counting afresh if `turn` is a new one.
    pub(super) fn enter(&mut self, turn: u64) {
        if self.turn != turn {
            *self = Budget {
                turn,
                ..Budget::default()
            };
        }
    }
}

/// A session's streams, served front first.
#[derive(Debug, Default)]
pub struct Streams {
    /// In the order started; a cancelled stream stays until it reaches the front or the
    /// list is compacted.
    // Invariant: serials strictly increase from front to back.
    list: VecDeque<Stream>,
    /// The serial of the stream for each filter that has one not cancelled.
    // Invariant: exactly the streams of `list` not cancelled.
    by_filter: HashMap<Box<str>, u64>,
    next_serial: u64,
    /// Cancelled streams in `list`.
    cancelled: usize,
    /// This turn's work.
    pub(super) budget: Budget,
    /// Whether the session is on its loop's paused list.
    pub(super) paused: bool,
}

impl Streams {
    /// Streams not finished yet.
    pub fn len(&self) -> usize {
        self.list.len() - self.cancelled
    }

    /// Whether every stream has finished.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a stream for `filter` at the back (ending the one it had, if any).
    pub(super) fn start(&mut self, filter: &str, snapshot: u64, qos: QoS, sub_id: Option<u32>) {
        self.cancel(filter);
        let serial = self.next_serial;
        self.next_serial += 1;
        self.by_filter.insert(filter.into(), serial);
        self.list.push_back(Stream {
            filter: filter.into(),
            cursor: Cursor::new(),
            snapshot,
            qos,
            sub_id,
            sent_ahead: HashSet::new(),
            sent: 0,
            serial,
            cancelled: false,
        });
    }

    /// The stream for `filter`, if it has one.
    pub(super) fn get_mut(&mut self, filter: &str) -> Option<&mut Stream> {
        let serial = *self.by_filter.get(filter)?;
        let at = self.list.binary_search_by_key(&serial, |s| s.serial).ok()?;
        self.list.get_mut(at)
    }

    /// Ends the stream for `filter`, if it has one; compacts the list once most of it is
    /// cancelled (so a client that keeps subscribing and unsubscribing behind a blocked
    /// stream cannot grow it).
    pub(super) fn cancel(&mut self, filter: &str) {
        let Some(serial) = self.by_filter.remove(filter) else {
            return;
        };
        if let Ok(at) = self.list.binary_search_by_key(&serial, |s| s.serial)
            && let Some(stream) = self.list.get_mut(at)
        {
            stream.cancelled = true;
            stream.sent_ahead = HashSet::new();
            self.cancelled += 1;
        }
        if self.cancelled * 2 > self.list.len() {
            self.list.retain(|s| !s.cancelled);
            self.cancelled = 0;
        }
    }

    /// The stream to serve (cancelled ones at the front are dropped).
    pub(super) fn front_mut(&mut self) -> Option<&mut Stream> {
        while self.list.front().is_some_and(|s| s.cancelled) {
            self.list.pop_front();
            self.cancelled -= 1;
        }
        self.list.front_mut()
    }

    /// Removes the front stream (it has finished).
    pub(super) fn pop_front(&mut self) -> Option<Stream> {
        let stream = self.list.pop_front()?;
        if stream.cancelled {
            self.cancelled -= 1;
        } else {
            self.by_filter.remove(&stream.filter);
        }
        Some(stream)
    }

    /// The streams not cancelled.
    pub(super) fn live_mut(&mut self) -> impl Iterator<Item = &mut Stream> {
        self.list.iter_mut().filter(|s| !s.cancelled)
    }

    /// The streams not cancelled.
    pub(super) fn live(&self) -> impl Iterator<Item = &Stream> {
        self.list.iter().filter(|s| !s.cancelled)
    }

    /// Checks the invariants (for tests).
    #[cfg(test)]
    fn check(&self) {
        assert!(
            self.list
                .iter()
                .zip(self.list.iter().skip(1))
                .all(|(a, b)| a.serial < b.serial)
        );
        assert_eq!(
            self.list.iter().filter(|s| s.cancelled).count(),
            self.cancelled
        );
        assert_eq!(self.by_filter.len(), self.len());
        for s in self.live() {
            assert_eq!(self.by_filter.get(&s.filter), Some(&s.serial));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_found_by_filter_and_cancelled_in_place() {
        let mut streams = Streams::default();
        for i in 0..1000 {
            streams.start(&format!("f/{i}"), 0, QoS::AtLeastOnce, None);
        }
        streams.check();
        assert_eq!(streams.len(), 1000);
        streams.get_mut("f/500").expect("started").qos = QoS::AtMostOnce;
        // Starting again moves the filter to the back.
        streams.start("f/0", 1, QoS::AtLeastOnce, None);
        streams.check();
        assert_eq!(streams.front_mut().map(|s| &*s.filter), Some("f/1"));
        for i in 1..600 {
            streams.cancel(&format!("f/{i}"));
            streams.check();
        }
        assert_eq!(streams.len(), 401);
        assert_eq!(streams.front_mut().map(|s| &*s.filter), Some("f/600"));
        assert_eq!(streams.get_mut("f/500").map(|s| s.qos), None);
        while streams.pop_front().is_some() {}
        streams.check();
        assert!(streams.is_empty());
    }
}
