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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

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
    /// From the main thread: a live reload or a graceful shutdown.
    Control(Control),
}

/// The sending half of one loop's mailbox.
pub struct Mailbox {
    sender: Sender<Inbound>,
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
    pub fn new(
        registry: &mio::Registry,
        epoch: Instant,
    ) -> io::Result<(Mailbox, Receiver<Inbound>)> {
        let waker = mio::Waker::new(registry, WAKER_TOKEN)?;
        let (sender, receiver) = crossbeam_channel::unbounded();
        let mailbox = Mailbox {
            sender,
            waker,
            urgent: AtomicBool::new(false),
            last_turn_ms: AtomicU64::new(ms_since(epoch)),
            epoch,
        };
        Ok((mailbox, receiver))
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
        self.sender.send(inbound).map_err(|e| e.0)
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

    /// Wakes the loop so that it drains its mailbox.
    pub fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }
}

/// Milliseconds elapsed since `epoch`.
fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}
