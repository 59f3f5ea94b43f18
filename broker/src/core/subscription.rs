//! What one subscription asks for ([`SubOpts`], packed into 32 bits so the index entry
//! stays 8 bytes) and the Subscription Identifiers a delivery carries ([`SubIds`]).

use crate::protocol::QoS;
use crate::protocol::v5::MAX_VARINT_VALUE;

const QOS_MASK: u32 = 0b11;
const NO_LOCAL: u32 = 1 << 2;
const RETAIN_AS_PUBLISHED: u32 = 1 << 3;
const ID_SHIFT: u32 = 4;

/// The options of one subscription as the subscription index stores them: the granted
/// QoS, No Local, Retain As Published (MQTT 5 §3.8.3.1) and the Subscription Identifier
/// (0: none). Retain Handling is used at SUBSCRIBE time only and is not kept.
// Invariant: the identifier fits 28 bits (MAX_VARINT_VALUE is 2^28 - 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOpts(u32);

impl SubOpts {
    /// A 3.1.1 subscription: only a QoS.
    pub const fn qos_only(qos: QoS) -> SubOpts {
        SubOpts(qos.as_u8() as u32)
    }

    /// A subscription with all its options; an identifier of 0 or above
    /// [`MAX_VARINT_VALUE`] is none (the decoder refuses those, §3.8.2.1.2).
    pub fn new(qos: QoS, no_local: bool, retain_as_published: bool, id: Option<u32>) -> SubOpts {
        let id = id.filter(|&n| n <= MAX_VARINT_VALUE).unwrap_or(0);
        debug_assert!(id < (1 << (32 - ID_SHIFT)));
        let mut bits = qos.as_u8() as u32 | (id << ID_SHIFT);
        if no_local {
            bits |= NO_LOCAL;
        }
        if retain_as_published {
            bits |= RETAIN_AS_PUBLISHED;
        }
        SubOpts(bits)
    }

    /// The granted QoS.
    pub fn qos(self) -> QoS {
        QoS::from_u8((self.0 & QOS_MASK) as u8).unwrap_or(QoS::AtMostOnce)
    }

    /// No Local: the subscriber's own messages are not sent back to it (MQTT-3.8.3-3).
    pub const fn no_local(self) -> bool {
        self.0 & NO_LOCAL != 0
    }

    /// Retain As Published: live deliveries keep the publisher's RETAIN flag
    /// (MQTT-3.3.1-12/13).
    pub const fn retain_as_published(self) -> bool {
        self.0 & RETAIN_AS_PUBLISHED != 0
    }

    /// The Subscription Identifier, if one was given.
    pub const fn id(self) -> Option<u32> {
        match self.0 >> ID_SHIFT {
            0 => None,
            id => Some(id),
        }
    }

    /// The packed form (what the store keeps).
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Options from their packed form ([`SubOpts::bits`]); `None` for bits no options
    /// give (an unknown QoS or flag).
    pub fn from_bits(bits: u32) -> Option<SubOpts> {
        let known = QOS_MASK | NO_LOCAL | RETAIN_AS_PUBLISHED | (u32::MAX << ID_SHIFT);
        (bits & !known == 0 && QoS::from_u8((bits & QOS_MASK) as u8).is_some())
            .then_some(SubOpts(bits))
    }

    /// The same options with another granted QoS.
    pub fn with_qos(self, qos: QoS) -> SubOpts {
        SubOpts((self.0 & !QOS_MASK) | qos.as_u8() as u32)
    }
}

/// The Subscription Identifiers one delivery carries (MQTT-3.3.4-3: every matching
/// subscription's). Most deliveries carry none or one, which need no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SubIds {
    /// None.
    #[default]
    None,
    /// One.
    One(u32),
    /// Several (overlapping subscriptions with identifiers).
    Many(Box<[u32]>),
}

impl SubIds {
    /// From a list of identifiers.
    pub fn from_slice(ids: &[u32]) -> SubIds {
        match ids {
            [] => SubIds::None,
            [one] => SubIds::One(*one),
            many => SubIds::Many(many.into()),
        }
    }

    /// The identifiers.
    pub fn as_slice(&self) -> &[u32] {
        match self {
            SubIds::None => &[],
            SubIds::One(id) => std::slice::from_ref(id),
            SubIds::Many(ids) => ids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_the_packed_form() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for (nl, rap) in [(false, false), (true, false), (false, true), (true, true)] {
                for id in [None, Some(1), Some(MAX_VARINT_VALUE)] {
                    let o = SubOpts::new(qos, nl, rap, id);
                    assert_eq!(
                        (o.qos(), o.no_local(), o.retain_as_published(), o.id()),
                        (qos, nl, rap, id)
                    );
                    assert_eq!(o.with_qos(QoS::AtMostOnce).id(), id);
                }
            }
        }
        assert_eq!(SubOpts::qos_only(QoS::AtLeastOnce).id(), None);
    }
}
