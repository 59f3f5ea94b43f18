//! What a message carries and how its arrival is judged: the payload layout (send timestamp,
//! publisher number, sequence number), latency histograms, and the per-stream accounting of
//! missing, duplicated and out-of-order deliveries (what a missing delivery was is judged
//! by how the drain ended: [`crate::drain`]).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Bytes of the header every payload starts with: send time (8), publisher (4), sequence (8).
pub const MIN_PAYLOAD_BYTES: usize = 20;
/// Largest latency a histogram records, nanoseconds (60 s); larger values are clamped.
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Significant decimal digits the histograms keep.
const HISTOGRAM_SIGFIGS: u8 = 3;

/// Nanoseconds since the harness's epoch (monotonic; senders and receivers share it).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Writes the header into `payload` (at least [`MIN_PAYLOAD_BYTES`] long).
pub fn stamp(payload: &mut [u8], sent_ns: u64, publisher: u32, seq: u64) {
    payload[0..8].copy_from_slice(&sent_ns.to_le_bytes());
    payload[8..12].copy_from_slice(&publisher.to_le_bytes());
    payload[12..20].copy_from_slice(&seq.to_le_bytes());
}

/// Reads the header back: (sent_ns, publisher, seq), or `None` for a foreign payload.
pub fn read_stamp(payload: &[u8]) -> Option<(u64, u32, u64)> {
    let h = payload.get(..MIN_PAYLOAD_BYTES)?;
    let word = |r: std::ops::Range<usize>| -> u64 {
        h[r].iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    Some((word(0..8), word(8..12) as u32, word(12..20)))
}

/// A latency histogram in nanoseconds.
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, HISTOGRAM_SIGFIGS)
        .expect("constant histogram bounds are valid")
}

/// Records `ns`, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
}

/// The deliveries of one publisher to one subscriber (or to one shared-subscription group).
#[derive(Debug, Default, Clone)]
struct Stream {
    unique: u64,
    next_seq: u64,
    seen: Vec<u64>,
}

/// How one receipt stood in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receipt {
    /// First receipt, in order.
    New,
    /// First receipt, after a later sequence number.
    Late,
    /// Already received.
    Repeat,
}

impl Stream {
    fn record(&mut self, seq: u64) -> Receipt {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            return Receipt::Repeat;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        if seq < self.next_seq {
            Receipt::Late
        } else {
            self.next_seq = seq + 1;
            Receipt::New
        }
    }

    /// Folds in the same stream as seen by another thread; returns the receipts both saw.
    fn absorb(&mut self, other: Stream) -> u64 {
        if self.seen.len() < other.seen.len() {
            self.seen.resize(other.seen.len(), 0);
        }
        let mut both = 0;
        for (mine, theirs) in self.seen.iter_mut().zip(other.seen) {
            both += u64::from((*mine & theirs).count_ones());
            *mine |= theirs;
        }
        self.unique = self.seen.iter().map(|w| u64::from(w.count_ones())).sum();
        self.next_seq = self.next_seq.max(other.next_seq);
        both
    }
}

/// Delivery accounting for the subscribers one thread owns. For members of a
/// shared-subscription group, each message must reach the group once: uniqueness and
/// duplicates are judged per group (across members, and across threads when merged), order
/// per member (MQTT 5 §4.8.2 orders nothing across members).
#[derive(Debug, Default)]
pub struct Tracker {
    streams: HashMap<(u32, u32), Stream>,
    /// (group, publisher) streams of shared-subscription groups.
    groups: HashMap<(u32, u32), Stream>,
    /// Every PUBLISH received (duplicates included).
    pub delivered: u64,
    /// Receipts of a (publisher, sequence) already received by that subscriber.
    pub duplicates: u64,
    /// First receipts that arrived after a later sequence number of the same stream.
    pub out_of_order: u64,
    /// Payloads without a harness header.
    pub foreign: u64,
}

/// Totals of one or more [`Tracker`]s.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Every PUBLISH received.
    pub delivered: u64,
    /// Distinct (subscriber, publisher, sequence) received.
    pub unique: u64,
    /// Repeated receipts.
    pub duplicates: u64,
    /// Receipts that overtook nothing but came after a later one.
    pub out_of_order: u64,
    /// Expected but not received by the end of the drain.
    pub missing: u64,
}

impl Tracker {
    /// A PUBLISH from `publisher` with `seq` reached `subscriber`.
    pub fn receive(&mut self, subscriber: u32, publisher: u32, seq: u64) {
        self.delivered += 1;
        let stream = self.streams.entry((subscriber, publisher)).or_default();
        match stream.record(seq) {
            Receipt::New => {}
            Receipt::Late => self.out_of_order += 1,
            Receipt::Repeat => self.duplicates += 1,
        }
    }

    /// A PUBLISH from `publisher` with `seq` reached `member` of shared-subscription group
    /// `group`.
    pub fn receive_in_group(&mut self, group: u32, member: u32, publisher: u32, seq: u64) {
        self.delivered += 1;
        let in_group = self
            .groups
            .entry((group, publisher))
            .or_default()
            .record(seq);
        if in_group == Receipt::Repeat {
            self.duplicates += 1;
        }
        let stream = self.streams.entry((member, publisher)).or_default();
        if stream.record(seq) == Receipt::Late {
            self.out_of_order += 1;
        }
    }

    /// Distinct messages each subscriber got, by subscriber number (for a group's members:
    /// each member's share).
    pub fn per_subscriber(&self) -> Vec<(u32, u64)> {
        let mut counts: HashMap<u32, u64> = HashMap::new();
        for (&(subscriber, _), stream) in &self.streams {
            *counts.entry(subscriber).or_default() += stream.unique;
        }
        let mut out: Vec<(u32, u64)> = counts.into_iter().collect();
        out.sort_unstable();
        out
    }

    /// Distinct messages `subscriber` got from `publisher`.
    pub fn unique(&self, subscriber: u32, publisher: u32) -> u64 {
        self.streams
            .get(&(subscriber, publisher))
            .map_or(0, |s| s.unique)
    }

    /// Distinct messages over all streams (a group's streams count each message once for
    /// the whole group).
    pub fn unique_total(&self) -> u64 {
        let plain: u64 = self.streams.values().map(|s| s.unique).sum();
        if self.groups.is_empty() {
            return plain;
        }
        self.groups.values().map(|s| s.unique).sum()
    }

    /// Merges another thread's tracker (disjoint subscribers; a group's members may be
    /// spread over threads, so what both saw of a group is counted as duplicated).
    pub fn merge(&mut self, other: Tracker) {
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.foreign += other.foreign;
        self.streams.extend(other.streams);
        for (key, stream) in other.groups {
            match self.groups.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut mine) => {
                    self.duplicates += mine.get_mut().absorb(stream);
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(stream);
                }
            }
        }
    }

    /// Totals, given how many distinct messages were expected in all.
    pub fn tally(&self, expected: u64) -> Tally {
        let unique = self.unique_total();
        Tally {
            delivered: self.delivered,
            unique,
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            missing: expected.saturating_sub(unique),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let mut p = [0u8; 32];
        stamp(&mut p, 123_456_789, 42, 9_000_000_000);
        assert_eq!(read_stamp(&p), Some((123_456_789, 42, 9_000_000_000)));
        assert_eq!(read_stamp(&p[..10]), None);
    }

    #[test]
    fn loss_duplicates_and_reordering_are_told_apart() {
        let mut t = Tracker::default();
        for seq in [0, 1, 3, 2, 3, 5] {
            t.receive(1, 7, seq);
        }
        // Sent 0..=5: 4 is missing, the second 3 is a duplicate, 2 came after 3.
        let tally = t.tally(6);
        assert_eq!(tally.delivered, 6);
        assert_eq!(tally.unique, 5);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.out_of_order, 1);
        assert_eq!(tally.missing, 1);
    }

    #[test]
    fn a_group_gets_each_message_once_across_members_and_threads() {
        // Publisher 9 sent 0..=5 to a group whose members 1 and 2 live on one thread and
        // member 3 on another. 4 is missing; 2 reached two members (a duplicate); member 2
        // got 3 before 1 (out of order within the member).
        let mut a = Tracker::default();
        for (member, seq) in [(1, 0), (2, 3), (2, 1), (1, 2)] {
            a.receive_in_group(0, member, 9, seq);
        }
        let mut b = Tracker::default();
        for seq in [2, 5] {
            b.receive_in_group(0, 3, 9, seq);
        }
        a.merge(b);
        let tally = a.tally(6);
        assert_eq!(tally.delivered, 6);
        assert_eq!(tally.unique, 5);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.out_of_order, 1);
        assert_eq!(tally.missing, 1);
        assert_eq!(a.per_subscriber(), vec![(1, 2), (2, 2), (3, 2)]);
    }
}
