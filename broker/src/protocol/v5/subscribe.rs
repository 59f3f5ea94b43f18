//! MQTT 5 SUBSCRIBE (§3.8) and UNSUBSCRIBE (§3.10), with subscription options and shared
//! subscriptions (`$share/{ShareName}/{filter}`, §4.8.2).

use crate::protocol::QoS;
use crate::protocol::decode::{FLAGS_0010, expect_flags};
use crate::protocol::error::{DecodeError, DecodeErrorKind, SharedFilterError};
use crate::protocol::frame::{FrameHeader, PacketType};
use crate::protocol::properties::{
    Direction, PropertyContext, PropertyId, PropertyValue, parse_properties,
};
use crate::protocol::reader::Reader;
use crate::topic::{TopicError, validate_topic_filter};

use super::wire::{UserProperties, UserProperty};

/// The prefix of a shared subscription's topic filter.
pub const SHARED_PREFIX: &str = "$share/";

const OPT_QOS_MASK: u8 = 0b0000_0011;
const OPT_NO_LOCAL: u8 = 0b0000_0100;
const OPT_RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;
const OPT_RETAIN_HANDLING_SHIFT: u8 = 4;
const OPT_RETAIN_HANDLING_MASK: u8 = 0b0011_0000;
/// Bits 6 and 7 of the options byte (MQTT-3.8.3-5).
const OPT_RESERVED: u8 = 0b1100_0000;

/// When retained messages are sent for a new subscription (§3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetainHandling {
    /// 0: at the time of the subscribe.
    SendOnSubscribe = 0,
    /// 1: only if the subscription did not exist yet.
    SendOnNewSubscription = 1,
    /// 2: never.
    DoNotSend = 2,
}

/// The options byte of one subscription (§3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local: do not send the client its own PUBLISHes.
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag when forwarding.
    pub retain_as_published: bool,
    /// Retain Handling.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with `qos` and everything else at its default (0).
    pub const fn new(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendOnSubscribe,
        }
    }

    /// Decodes the options byte: reserved bits set is malformed (MQTT-3.8.3-5); QoS 3 or
    /// Retain Handling 3 a protocol error (§3.8.3.1).
    pub const fn from_byte(b: u8) -> Result<Self, DecodeErrorKind> {
        if b & OPT_RESERVED != 0 {
            return Err(DecodeErrorKind::InvalidSubscriptionOptions(b));
        }
        let Some(qos) = QoS::from_u8(b & OPT_QOS_MASK) else {
            return Err(DecodeErrorKind::InvalidSubscriptionQoS);
        };
        let retain_handling = match (b & OPT_RETAIN_HANDLING_MASK) >> OPT_RETAIN_HANDLING_SHIFT {
            0 => RetainHandling::SendOnSubscribe,
            1 => RetainHandling::SendOnNewSubscription,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeErrorKind::InvalidRetainHandling),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: b & OPT_NO_LOCAL != 0,
            retain_as_published: b & OPT_RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    /// The options byte.
    pub const fn as_byte(self) -> u8 {
        let mut b = self.qos.as_u8() | ((self.retain_handling as u8) << OPT_RETAIN_HANDLING_SHIFT);
        if self.no_local {
            b |= OPT_NO_LOCAL;
        }
        if self.retain_as_published {
            b |= OPT_RETAIN_AS_PUBLISHED;
        }
        b
    }
}

/// A shared subscription's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedFilter<'a> {
    /// The ShareName (non-empty, no `/`, `+` or `#`).
    pub group: &'a str,
    /// The topic filter messages are matched against.
    pub filter: &'a str,
}

/// Splits `$share/{ShareName}/{filter}`: `Ok(None)` for a filter that is not shared (not
/// starting with `$share/`), an error for a malformed shared one (MQTT-4.8.2-1/2). The
/// filter part is validated like any filter.
pub fn parse_shared_filter(filter: &str) -> Result<Option<SharedFilter<'_>>, SharedFilterError> {
    let Some(rest) = filter.strip_prefix(SHARED_PREFIX) else {
        return Ok(None);
    };
    if rest.contains('\0') {
        // In the ShareName as in the filter: a malformed string (MQTT-1.5.4-2).
        return Err(SharedFilterError::InvalidFilter(TopicError::NullCharacter));
    }
    let Some((group, filter)) = rest.split_once('/') else {
        return Err(if rest.is_empty() {
            SharedFilterError::EmptyShareName
        } else if rest.contains(['+', '#']) {
            SharedFilterError::WildcardInShareName
        } else {
            SharedFilterError::MissingFilter
        });
    };
    if group.is_empty() {
        return Err(SharedFilterError::EmptyShareName);
    }
    if group.contains(['+', '#']) {
        return Err(SharedFilterError::WildcardInShareName);
    }
    if filter.is_empty() {
        return Err(SharedFilterError::MissingFilter);
    }
    validate_topic_filter(filter).map_err(SharedFilterError::InvalidFilter)?;
    Ok(Some(SharedFilter { group, filter }))
}

/// One subscription of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionV5 {
    /// The topic filter as received (for a shared subscription, with `$share/{group}/`).
    pub filter: String,
    /// Options.
    pub options: SubscriptionOptions,
}

impl SubscriptionV5 {
    /// The group and filter of a shared subscription (validated at decode time).
    pub fn shared(&self) -> Option<SharedFilter<'_>> {
        parse_shared_filter(&self.filter).ok().flatten()
    }
}

/// A decoded SUBSCRIBE. Owned: not on the hot path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeV5 {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// Subscription Identifier (1 to 268 435 455).
    pub subscription_identifier: Option<u32>,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
    /// At least one subscription, in packet order.
    pub subscriptions: Vec<SubscriptionV5>,
}

/// A decoded UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeV5 {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// User Properties.
    pub user_properties: Vec<UserProperty>,
    /// At least one topic filter, in packet order.
    pub filters: Vec<String>,
}

fn read_filter<'a>(r: &mut Reader<'a>, context: &'static str) -> Result<&'a str, DecodeError> {
    let filter = r.utf8(context)?;
    let shared = parse_shared_filter(filter)
        .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidSharedSubscription(e), context))?;
    if shared.is_none() {
        validate_topic_filter(filter)
            .map_err(|e| DecodeError::new(DecodeErrorKind::InvalidTopicFilter(e), context))?;
    }
    Ok(filter)
}

fn header_and_id<'a>(
    header: &FrameHeader,
    body: &'a [u8],
    context: &'static str,
) -> Result<(Reader<'a>, u16), DecodeError> {
    expect_flags(header, FLAGS_0010, context)?;
    let mut r = Reader::new(body);
    let packet_id = r.packet_id(context)?;
    Ok((r, packet_id))
}

fn no_filters(packet_type: PacketType, context: &'static str) -> DecodeError {
    DecodeError::new(DecodeErrorKind::NoTopicFilters(packet_type), context)
}

/// Decodes a v5 SUBSCRIBE body.
pub(crate) fn decode_subscribe(
    header: &FrameHeader,
    body: &[u8],
) -> Result<SubscribeV5, DecodeError> {
    let (mut r, packet_id) = header_and_id(header, body, "SUBSCRIBE fixed header")?;
    let mut subscription_identifier = None;
    let block = parse_properties(
        &mut r,
        PropertyContext::Packet(PacketType::Subscribe),
        Direction::ClientToServer,
        "SUBSCRIBE properties",
        |id, v| {
            if let (PropertyId::SubscriptionIdentifier, PropertyValue::Varint(n)) = (id, v) {
                subscription_identifier = Some(n);
            }
        },
    )?;
    if r.is_empty() {
        return Err(no_filters(PacketType::Subscribe, "SUBSCRIBE payload"));
    }
    let mut subscriptions = Vec::new();
    while !r.is_empty() {
        const CONTEXT: &str = "SUBSCRIBE subscription options";
        let filter = read_filter(&mut r, "SUBSCRIBE topic filter")?;
        let options = SubscriptionOptions::from_byte(r.u8(CONTEXT)?)
            .map_err(|kind| DecodeError::new(kind, CONTEXT))?;
        if options.no_local && filter.starts_with(SHARED_PREFIX) {
            return Err(DecodeError::new(
                DecodeErrorKind::NoLocalOnSharedSubscription,
                CONTEXT,
            ));
        }
        subscriptions.push(SubscriptionV5 {
            filter: filter.to_owned(),
            options,
        });
    }
    Ok(SubscribeV5 {
        packet_id,
        subscription_identifier,
        user_properties: UserProperties::wire(block).to_vec(),
        subscriptions,
    })
}

/// Decodes a v5 UNSUBSCRIBE body.
pub(crate) fn decode_unsubscribe(
    header: &FrameHeader,
    body: &[u8],
) -> Result<UnsubscribeV5, DecodeError> {
    let (mut r, packet_id) = header_and_id(header, body, "UNSUBSCRIBE fixed header")?;
    let block = parse_properties(
        &mut r,
        PropertyContext::Packet(PacketType::Unsubscribe),
        Direction::ClientToServer,
        "UNSUBSCRIBE properties",
        |_, _| {},
    )?;
    if r.is_empty() {
        return Err(no_filters(PacketType::Unsubscribe, "UNSUBSCRIBE payload"));
    }
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(read_filter(&mut r, "UNSUBSCRIBE topic filter")?.to_owned());
    }
    Ok(UnsubscribeV5 {
        packet_id,
        user_properties: UserProperties::wire(block).to_vec(),
        filters,
    })
}
