//! Shared pieces of the MQTT 5 codec: lazy views over validated property blocks (User
//! Properties, Subscription Identifiers) and the length-counting / writing sink every
//! encoder runs twice (once to count, once to write), so the two can never disagree.

use std::fmt;

use bytes::BufMut;

use crate::protocol::MAX_STRING_LEN_BYTES;
use crate::protocol::error::EncodeError;
use crate::protocol::frame::varint_len;
use crate::protocol::properties::{PropertyId, PropertyIter, PropertyValue};

/// The largest value of a variable byte integer (MQTT 5.0 §1.5.5), which bounds a
/// Subscription Identifier.
pub const MAX_VARINT_VALUE: u32 = 268_435_455;

/// An owned User Property (name, value), for owned packets (CONNECT, SUBSCRIBE…).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserProperty {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

#[derive(Clone, Copy)]
enum UserSource<'a> {
    Wire(&'a [u8]),
    Pairs(&'a [(&'a str, &'a str)]),
    Owned(&'a [UserProperty]),
}

/// The User Properties of a packet, in order, without allocating: either a view over a
/// validated property block (what the decoders return) or borrowed pairs (what callers
/// encode). Comparing two compares their entries.
#[derive(Clone, Copy)]
pub struct UserProperties<'a>(UserSource<'a>);

impl<'a> UserProperties<'a> {
    /// No User Properties.
    pub const NONE: UserProperties<'static> = UserProperties(UserSource::Pairs(&[]));

    /// Borrowed `(name, value)` pairs.
    pub const fn from_pairs(pairs: &'a [(&'a str, &'a str)]) -> Self {
        UserProperties(UserSource::Pairs(pairs))
    }

    /// Borrowed owned pairs (e.g. from a decoded CONNECT).
    pub const fn from_owned(pairs: &'a [UserProperty]) -> Self {
        UserProperties(UserSource::Owned(pairs))
    }

    /// The User Properties of a block `parse_properties` validated.
    pub(crate) const fn wire(block: &'a [u8]) -> Self {
        UserProperties(UserSource::Wire(block))
    }

    /// Iterates `(name, value)` in packet order.
    pub fn iter(&self) -> UserPropertyIter<'a> {
        UserPropertyIter(match self.0 {
            UserSource::Wire(block) => IterSource::Wire(PropertyIter::new(block)),
            UserSource::Pairs(pairs) => IterSource::Pairs(pairs.iter()),
            UserSource::Owned(pairs) => IterSource::Owned(pairs.iter()),
        })
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// An owned copy (allocates).
    pub fn to_vec(&self) -> Vec<UserProperty> {
        self.iter()
            .map(|(name, value)| UserProperty {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect()
    }

    pub(crate) fn emit(&self, s: &mut dyn Sink) {
        for (name, value) in self.iter() {
            s.u8(PropertyId::UserProperty.as_u8());
            s.string(name.as_bytes());
            s.string(value.as_bytes());
        }
    }
}

impl Default for UserProperties<'_> {
    fn default() -> Self {
        UserProperties::NONE
    }
}

impl PartialEq for UserProperties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for UserProperties<'_> {}

impl fmt::Debug for UserProperties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

enum IterSource<'a> {
    Wire(PropertyIter<'a>),
    Pairs(std::slice::Iter<'a, (&'a str, &'a str)>),
    Owned(std::slice::Iter<'a, UserProperty>),
}

/// Iterator over [`UserProperties`].
pub struct UserPropertyIter<'a>(IterSource<'a>);

impl<'a> Iterator for UserPropertyIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterSource::Wire(it) => it.find_map(|(_, v)| match v {
                PropertyValue::Pair(name, value) => Some((name, value)),
                _ => None,
            }),
            IterSource::Pairs(it) => it.next().copied(),
            IterSource::Owned(it) => it.next().map(|p| (p.name.as_str(), p.value.as_str())),
        }
    }
}

#[derive(Clone, Copy)]
enum IdSource<'a> {
    Wire(&'a [u8]),
    Slice(&'a [u32]),
}

/// The Subscription Identifiers of a server→client PUBLISH, without allocating: a view over
/// a validated block or a borrowed slice (what the core passes when delivering).
#[derive(Clone, Copy)]
pub struct SubscriptionIds<'a>(IdSource<'a>);

impl<'a> SubscriptionIds<'a> {
    /// None.
    pub const NONE: SubscriptionIds<'static> = SubscriptionIds(IdSource::Slice(&[]));

    /// Borrowed identifiers, each 1 to [`MAX_VARINT_VALUE`] (checked when encoding).
    pub const fn from_slice(ids: &'a [u32]) -> Self {
        SubscriptionIds(IdSource::Slice(ids))
    }

    pub(crate) const fn wire(block: &'a [u8]) -> Self {
        SubscriptionIds(IdSource::Wire(block))
    }

    /// Iterates the identifiers in packet order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let (wire, slice) = match self.0 {
            IdSource::Wire(block) => (Some(PropertyIter::new(block)), None),
            IdSource::Slice(ids) => (None, Some(ids.iter().copied())),
        };
        let wire = wire.into_iter().flatten().filter_map(|(id, v)| match v {
            PropertyValue::Varint(n) if id == PropertyId::SubscriptionIdentifier => Some(n),
            _ => None,
        });
        wire.chain(slice.into_iter().flatten())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        match self.iter().find(|&id| id == 0 || id > MAX_VARINT_VALUE) {
            Some(_) => Err(EncodeError::InvalidProperty(
                PropertyId::SubscriptionIdentifier.as_u8(),
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn emit(&self, s: &mut dyn Sink) {
        for id in self.iter() {
            s.u8(PropertyId::SubscriptionIdentifier.as_u8());
            s.varint(id);
        }
    }
}

impl Default for SubscriptionIds<'_> {
    fn default() -> Self {
        SubscriptionIds::NONE
    }
}

impl PartialEq for SubscriptionIds<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for SubscriptionIds<'_> {}

impl fmt::Debug for SubscriptionIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Where an encoder's bytes go: a [`Counter`] (first pass) or a [`Writer`] (second pass).
/// Object-safe, so packet bodies are plain functions of `&mut dyn Sink`.
pub(crate) trait Sink {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    /// A variable byte integer; callers keep `v <= MAX_VARINT_VALUE`.
    fn varint(&mut self, v: u32);
    /// Raw bytes (payloads).
    fn bytes(&mut self, b: &[u8]);
    /// A two-byte length prefix and the bytes; the counter flags longer than 65535 bytes.
    fn string(&mut self, b: &[u8]);
}

/// A property block: the varint length of what `body` emits, then what it emits.
pub(crate) fn properties(s: &mut dyn Sink, body: &dyn Fn(&mut dyn Sink)) {
    let mut inner = Counter::default();
    body(&mut inner);
    // Saturates far above MAX_VARINT_VALUE; such a block makes the frame too large, which
    // the counting pass reports before anything is written.
    s.varint(
        u32::try_from(inner.len)
            .unwrap_or(u32::MAX)
            .min(MAX_VARINT_VALUE),
    );
    body(s);
}

/// Counts bytes; notes a string longer than a length prefix can say.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    pub(crate) len: usize,
    pub(crate) too_long: bool,
}

impl Sink for Counter {
    fn u8(&mut self, _: u8) {
        self.len += 1;
    }
    fn u16(&mut self, _: u16) {
        self.len += 2;
    }
    fn u32(&mut self, _: u32) {
        self.len += 4;
    }
    fn varint(&mut self, v: u32) {
        self.len += varint_len(v as usize);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len = self.len.saturating_add(b.len());
    }
    fn string(&mut self, b: &[u8]) {
        self.too_long |= b.len() > MAX_STRING_LEN_BYTES;
        self.len = self.len.saturating_add(2 + b.len());
    }
}

/// Writes into a [`BufMut`] the counting pass found room in.
pub(crate) struct Writer<'b, B: BufMut + ?Sized>(pub(crate) &'b mut B);

impl<B: BufMut + ?Sized> Sink for Writer<'_, B> {
    fn u8(&mut self, v: u8) {
        self.0.put_u8(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.put_u16(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.put_u32(v);
    }
    fn varint(&mut self, mut v: u32) {
        loop {
            // Truncation intended: the low seven bits.
            let mut byte = (v % 128) as u8;
            v /= 128;
            if v > 0 {
                byte |= 0x80;
            }
            self.0.put_u8(byte);
            if v == 0 {
                break;
            }
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.put_slice(b);
    }
    fn string(&mut self, b: &[u8]) {
        // At most 65535: checked by the counting pass.
        self.0.put_u16(b.len() as u16);
        self.0.put_slice(b);
    }
}

/// Property emitters: the identifier byte, then the value.
pub(crate) fn prop_u8(s: &mut dyn Sink, id: PropertyId, v: Option<u8>) {
    if let Some(v) = v {
        s.u8(id.as_u8());
        s.u8(v);
    }
}

/// A Two Byte Integer property, when present.
pub(crate) fn prop_u16(s: &mut dyn Sink, id: PropertyId, v: Option<u16>) {
    if let Some(v) = v {
        s.u8(id.as_u8());
        s.u16(v);
    }
}

/// A Four Byte Integer property, when present.
pub(crate) fn prop_u32(s: &mut dyn Sink, id: PropertyId, v: Option<u32>) {
    if let Some(v) = v {
        s.u8(id.as_u8());
        s.u32(v);
    }
}

/// A UTF-8 string or binary property, when present.
pub(crate) fn prop_bytes(s: &mut dyn Sink, id: PropertyId, v: Option<&[u8]>) {
    if let Some(v) = v {
        s.u8(id.as_u8());
        s.string(v);
    }
}
