//! An application message once it has to outlive the packet it arrived in.

use std::sync::Arc;

use crate::protocol::v5::{
    PayloadFormat, PublishProperties, PublishV5, SubscriptionIds, UserProperties, UserProperty,
};
use crate::protocol::{PublishRef, QoS};

/// The MQTT 5 properties a message carries from its publisher to its subscribers
/// unchanged (MQTT-3.3.2-17/18/20: User Properties, Response Topic, Correlation Data,
/// Content Type, Payload Format Indicator), and its expiry. Only messages that have any
/// pay for it: a message from a 3.1.1 publisher holds `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProps {
    /// Payload Format Indicator.
    pub payload_format: Option<PayloadFormat>,
    /// When the message expires, in loop ms (from its Message Expiry Interval).
    pub expires_at_ms: Option<u64>,
    /// Content Type.
    pub content_type: Option<Box<str>>,
    /// Response Topic.
    pub response_topic: Option<Box<str>>,
    /// Correlation Data.
    pub correlation_data: Option<Box<[u8]>>,
    /// User Properties, in order.
    pub user_properties: Box<[UserProperty]>,
}

impl MessageProps {
    /// The owned copy of `props` (the publisher's), with the expiry deadline `expires_at_ms`;
    /// `None` when there is nothing to carry.
    pub fn from_publish(
        props: &PublishProperties<'_>,
        expires_at_ms: Option<u64>,
    ) -> Option<Box<MessageProps>> {
        let none = props.payload_format.is_none()
            && expires_at_ms.is_none()
            && props.content_type.is_none()
            && props.response_topic.is_none()
            && props.correlation_data.is_none()
            && props.user_properties.is_empty();
        (!none).then(|| {
            Box::new(MessageProps {
                payload_format: props.payload_format,
                expires_at_ms,
                content_type: props.content_type.map(Into::into),
                response_topic: props.response_topic.map(Into::into),
                correlation_data: props.correlation_data.map(Into::into),
                user_properties: props.user_properties.to_vec().into_boxed_slice(),
            })
        })
    }

    /// The borrowed properties to encode (no expiry interval, alias or identifiers yet:
    /// those are per delivery).
    pub fn view(&self) -> PublishProperties<'_> {
        PublishProperties {
            payload_format: self.payload_format,
            message_expiry_interval_secs: None,
            topic_alias: None,
            response_topic: self.response_topic.as_deref(),
            correlation_data: self.correlation_data.as_deref(),
            user_properties: UserProperties::from_owned(&self.user_properties),
            subscription_identifiers: SubscriptionIds::NONE,
            content_type: self.content_type.as_deref(),
        }
    }

    /// Heap bytes held (for accounting).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<MessageProps>()
            + self.content_type.as_ref().map_or(0, |s| s.len())
            + self.response_topic.as_ref().map_or(0, |s| s.len())
            + self.correlation_data.as_ref().map_or(0, |s| s.len())
            + self
                .user_properties
                .iter()
                .map(|p| std::mem::size_of::<UserProperty>() + p.name.len() + p.value.len())
                .sum::<usize>()
    }
}

/// A message kept beyond the read buffer: queued for a slow or offline client, in flight at
/// QoS 1/2, retained, or forwarded to another event loop. Immutable and shared: one copy for
/// all its subscribers. The payload is copied out of the read buffer (never a `Bytes` slice of
/// it, which would pin the whole buffer).
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// Topic name (validated).
    pub topic: Box<str>,
    /// Payload bytes.
    pub payload: Box<[u8]>,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// MQTT 5 properties and expiry, if it has any.
    pub props: Option<Box<MessageProps>>,
    /// Its id in the store, once a durable queue or route holds it (`core::persist`).
    pub persist_id: PersistId,
}

/// A message's id in the store: 0 until the first durable reference gives it one, the same
/// for every loop that holds the message after that. Not part of the message's content:
/// two messages compare equal whatever their ids.
#[derive(Debug, Default)]
pub struct PersistId(std::sync::atomic::AtomicU64);

impl PersistId {
    /// An id given already (a message read back from the store).
    pub fn new(id: u64) -> PersistId {
        PersistId(std::sync::atomic::AtomicU64::new(id))
    }

    /// The id, or 0 if it has none yet.
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Gives the message `id` if it has none yet; returns the id it has.
    pub fn get_or_set(&self, id: impl FnOnce() -> u64) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        match self.0.load(Relaxed) {
            0 => {
                let id = id();
                match self.0.compare_exchange(0, id, Relaxed, Relaxed) {
                    Ok(_) => id,
                    Err(other) => other,
                }
            }
            id => id,
        }
    }
}

impl PartialEq for PersistId {
    fn eq(&self, _: &PersistId) -> bool {
        true
    }
}

impl Eq for PersistId {}

/// A message shared between queues, loops and the retained store.
pub type SharedMessage = Arc<Message>;

impl Message {
    /// A message from its parts (no store id yet).
    pub fn new(
        topic: Box<str>,
        payload: Box<[u8]>,
        qos: QoS,
        retain: bool,
        props: Option<Box<MessageProps>>,
    ) -> Message {
        Message {
            topic,
            payload,
            qos,
            retain,
            props,
            persist_id: PersistId::default(),
        }
    }

    /// Copies a borrowed 3.x PUBLISH into an owned, shareable message.
    pub fn from_publish(publish: &PublishRef<'_>) -> SharedMessage {
        Message::from_publish_v5(&PublishV5::from_v3(publish), None)
    }

    /// Copies a borrowed PUBLISH (its topic resolved, if it came by alias) into an owned,
    /// shareable message expiring at `expires_at_ms`.
    pub fn from_publish_v5(publish: &PublishV5<'_>, expires_at_ms: Option<u64>) -> SharedMessage {
        Arc::new(Message::new(
            publish.topic.into(),
            publish.payload.into(),
            publish.qos,
            publish.retain,
            MessageProps::from_publish(&publish.properties, expires_at_ms),
        ))
    }

    /// A borrowed PUBLISH view of this message for encoding, with the delivery's own QoS,
    /// flags and packet id.
    pub fn as_publish(
        &self,
        qos: QoS,
        retain: bool,
        dup: bool,
        packet_id: Option<u16>,
    ) -> PublishV5<'_> {
        PublishV5 {
            topic: &self.topic,
            payload: &self.payload,
            qos,
            retain,
            dup,
            packet_id,
            properties: self.props.as_ref().map(|p| p.view()).unwrap_or_default(),
        }
    }

    /// When the message expires, in loop ms, if it does.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.props.as_ref().and_then(|p| p.expires_at_ms)
    }

    /// Heap bytes this message holds (topic, payload, properties), for accounting.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Message>()
            + self.topic.len()
            + self.payload.len()
            + self.props.as_ref().map_or(0, |p| p.heap_bytes())
    }
}
