//! An application message once it has to outlive the packet it arrived in.

use std::sync::Arc;

use crate::protocol::{PublishRef, QoS};

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
}

/// A message shared between queues, loops and the retained store.
pub type SharedMessage = Arc<Message>;

impl Message {
    /// Copies a borrowed PUBLISH into an owned, shareable message.
    pub fn from_publish(publish: &PublishRef<'_>) -> SharedMessage {
        Arc::new(Message {
            topic: publish.topic.into(),
            payload: publish.payload.into(),
            qos: publish.qos,
            retain: publish.retain,
        })
    }

    /// A borrowed PUBLISH view of this message for encoding, with the delivery's own QoS,
    /// flags and packet id.
    pub fn as_publish(
        &self,
        qos: QoS,
        retain: bool,
        dup: bool,
        packet_id: Option<u16>,
    ) -> PublishRef<'_> {
        PublishRef {
            topic: &self.topic,
            payload: &self.payload,
            qos,
            retain,
            dup,
            packet_id,
        }
    }

    /// Heap bytes this message holds (topic and payload), for accounting.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Message>() + self.topic.len() + self.payload.len()
    }
}
