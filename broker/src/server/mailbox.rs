//! What one event loop sends another: a connection whose client id's session it holds (handover), or a
//! message for its subscribers (forward). A channel send does not wake a blocked `poll`, so
//! every mailbox pairs its channel with the destination loop's `mio::Waker`. The main thread
//! uses the same mailboxes for reloads and shutdown ([`Control`]).
//!
//! Each mailbox also carries its loop's heartbeat: when the loop last went round
//! ([`Mailbox::beat`]), so the health check can tell a loop that is merely late to answer
//! from one that has stopped making progress ([`Mailbox::silent_ms`]).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::admission::Origin;
use super::control::Control;
use crate::core::SharedMessage;

/// The token of each loop's waker.
pub const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);

/// A delivery to another loop.
#[derive(Debug)]
pub enum Inbound {
    /// A socket whose CONNECT names a client id whose session the receiving loop holds
    /// ([`crate::core::Action::Handover`]); already deregistered from the sending loop.
    Handover {
        /// The connection.
        stream: mio::net::TcpStream,
        /// Where it came from (its admission counts move with it).
        origin: Origin,
        /// Its TLS and WebSocket layers, past their handshakes.
        stack: Option<Box<super::transport::Stack>>,
        /// The CONNECT and whatever followed it, to replay with `Shard::receive`.
        bytes: Vec<u8>,
    },
    /// A PUBLISH for the receiving loop's subscribers, and who published it
    /// ([`crate::core::Action::Forward`]).
    Forward(SharedMessage, Option<crate::core::flow::Origin>),
    /// A PUBLISH for one shared-subscription member of the receiving loop
    /// ([`crate::core::Action::ForwardShared`]).
    ForwardShared(
        crate::core::groups::Pick,
        SharedMessage,
        Option<crate::core::flow::Origin>,
    ),
    /// Hold back (true) or release (false) a publisher of the receiving loop for a
    /// congested subscriber of the sending loop ([`crate::core::Action::Hold`]).
    Hold(crate::core::ConnId, bool),
    /// The verdict on a parked CONNECT's credentials, from the verifier threads
    /// ([`crate::core::Action::Authenticate`]).
    Verdict(crate::core::ConnId, crate::core::credentials::Verdict),
    /// From the main thread: a live reload or a graceful shutdown.
    Control(Control),
}

impl Inbound {
    /// What a forwarded message holds while it waits: its topic, payload and shared copy
    /// (0 for anything else).
    fn message_bytes(&self) -> usize {
        match self {
            Inbound::Forward(message, _) | Inbound::ForwardShared(_, message, _) => {
                message.topic.len()
                    + message.payload.len()
                    + std::mem::size_of::<crate::core::Message>()
            }
            _ => 0,
        }
    }
}

/// The receiving half of one loop's mailbox: counts the forwarded messages' bytes out.
pub struct Inbox {
    receiver: Receiver<Inbound>,
    bytes: Arc<AtomicUsize>,
}

impl Inbox {
    /// The next delivery, if one is waiting.
    pub fn try_recv(&self) -> Result<Inbound, TryRecvError> {
        let inbound = self.receiver.try_recv()?;
        self.bytes
            .fetch_sub(inbound.message_bytes(), Ordering::Relaxed);
        Ok(inbound)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}

/// The sending half of one loop's mailbox.
pub struct Mailbox {
    sender: Sender<Inbound>,
    /// Bytes of the forwarded messages waiting ([`Mailbox::backlog_bytes`]).
    // Invariant: counted in before the send and out after the receive, so it never wraps.
    bytes: Arc<AtomicUsize>,
    waker: mio::Waker,
    /// Set when something was queued that the loop should see before its next read rather
    /// than after its turn: a hold on one of its publishers ([`Inbound::Hold`]).
    urgent: AtomicBool,
    /// Time zero of the loops' clocks (the same for every loop).
    epoch: Instant,
    /// When the loop last went round, in ms since `epoch`.
    last_turn_ms: AtomicU64,
}

/// Every loop's mailbox, indexed by loop.
pub type Peers = Arc<[Mailbox]>;

impl Mailbox {
    /// A mailbox for the loop whose poll has `registry`, and the receiver that loop drains.
    /// Unbounded: a bounded channel could deadlock two loops that both block on sending to
    /// each other. `epoch` is time zero of the loops' clocks (its heartbeat counts from it).
    pub fn new(registry: &mio::Registry, epoch: Instant) -> io::Result<(Mailbox, Inbox)> {
        let waker = mio::Waker::new(registry, WAKER_TOKEN)?;
        let (sender, receiver) = crossbeam_channel::unbounded();
        let bytes = Arc::new(AtomicUsize::new(0));
        let inbox = Inbox {
            receiver,
            bytes: Arc::clone(&bytes),
        };
        let mailbox = Mailbox {
            sender,
            bytes,
            waker,
            urgent: AtomicBool::new(false),
            last_turn_ms: AtomicU64::new(ms_since(epoch)),
            epoch,
        };
        Ok((mailbox, inbox))
    }

    /// The loop went round at `now_ms` (ms since the epoch): it is making progress.
    pub fn beat(&self, now_ms: u64) {
        self.last_turn_ms.store(now_ms, Ordering::Relaxed);
    }

    /// How long ago the loop last went round.
    pub fn silent_ms(&self) -> u64 {
        ms_since(self.epoch).saturating_sub(self.last_turn_ms.load(Ordering::Relaxed))
    }

    /// Queues `inbound` without waking the loop (the sender batches wakes). Gives the
    /// delivery back if the loop is gone.
    pub fn send(&self, inbound: Inbound) -> Result<(), Inbound> {
        let bytes = inbound.message_bytes();
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.sender.send(inbound).map_err(|e| {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            e.0
        })
    }

    /// Queues `inbound` and flags it for the loop's next read ([`Mailbox::take_urgent`]).
    pub fn send_urgent(&self, inbound: Inbound) -> Result<(), Inbound> {
        self.send(inbound)?;
        self.urgent.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether something urgent was queued since the last call (the loop then drains its
    /// mailbox before it reads another socket).
    pub fn take_urgent(&self) -> bool {
        self.urgent.load(Ordering::Relaxed) && self.urgent.swap(false, Ordering::AcqRel)
    }

    /// Deliveries waiting in the mailbox.
    pub fn backlog(&self) -> usize {
        self.sender.len()
    }

    /// Bytes of the forwarded messages waiting in the mailbox (topics, payloads, shared
    /// copies).
    pub fn backlog_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Wakes the loop so that it drains its mailbox.
    pub fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }
}

/// Milliseconds elapsed since `epoch`.
fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Message;
    use crate::protocol::{PublishRef, QoS};

    fn message(payload: &[u8]) -> SharedMessage {
        Message::from_publish(&PublishRef {
            topic: "a/b",
            payload,
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            packet_id: None,
        })
    }

    #[test]
    fn forwarded_bytes_are_counted_in_on_send_and_out_on_receive() {
        let poll = mio::Poll::new().expect("poll");
        let (mailbox, inbox) = Mailbox::new(poll.registry(), Instant::now()).expect("mailbox");
        let each = 3 + 1000 + std::mem::size_of::<Message>();
        for _ in 0..3 {
            assert!(
                mailbox
                    .send(Inbound::Forward(message(&[0; 1000]), None))
                    .is_ok()
            );
        }
        assert!(
            mailbox
                .send(Inbound::Hold(crate::core::ConnId::from_u64(1), true))
                .is_ok()
        );
        assert_eq!(mailbox.backlog(), 4);
        assert_eq!(
            mailbox.backlog_bytes(),
            3 * each,
            "only forwarded messages weigh"
        );
        assert!(inbox.try_recv().is_ok());
        assert_eq!(mailbox.backlog_bytes(), 2 * each);
        while inbox.try_recv().is_ok() {}
        assert!(inbox.is_empty());
        assert_eq!(mailbox.backlog_bytes(), 0);
    }
}
