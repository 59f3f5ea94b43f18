//! Retained messages sent on SUBSCRIBE as a stream paced by the subscriber.
//!
//! A new subscription is owed the retained message of every matching topic (MQTT-3.3.1-6),
//! and there may be a million of them. Instead of copying them into the session's queue
//! (where all but `max_queued_messages` would be dropped), each subscription that wants them
//! gets a [`Stream`]: the filter, its granted QoS and Subscription Identifier, and a
//! [`Cursor`](crate::topic::retained::Cursor) into the shared
//! [`RetainedStore`](crate::topic::RetainedStore), which the store walks in level order from
//! wherever the cursor stands. Nothing else is kept: the messages stay in the store until
//! they are written.
//!
//! **Pacing.** `pump` runs at the end of `delivery::pump`, that is whenever the client's
//! queue has drained and its output or window has room (after an acknowledgement, a drained
//! output, a resumption, the SUBSCRIBE itself). It takes from the store only what fits now:
//! QoS 1/2 messages up to the free slots of the in-flight window, all of them up to the room
//! left in the output buffer. So a stream never queues anything, every message arrives at
//! QoS 1 with any window, QoS 0 arrives complete, and the memory a stream holds is its cursor
//! and the client's output buffer, whatever the store holds.
//!
//! **The store's lock.** Every loop shares the store behind a mutex. A stream holds it for
//! one batch: at most [`RETAINED_BATCH_MESSAGES`] messages taken (reference counts, not
//! copies) or [`RETAINED_BATCH_NODES`] trie nodes visited. Between batches the store may
//! change; the cursor is a position in the order of topic names, not a reference into the
//! trie, so the next batch goes on after it.
//!
//! **Fairness.** A session's streams send at most [`RETAINED_TURN_MESSAGES`] messages and
//! visit at most [`RETAINED_TURN_NODES`] trie nodes per turn of its event loop (a reader that
//! keeps up would otherwise keep the loop writing to it alone); then they wait on the loop's
//! paused list, and `on_tick` resumes them on the next turn.
//!
//! **Live messages.** The subscription is in the index from the SUBSCRIBE on, so live
//! messages arrive while the stream runs. A stream reports only messages stored before it
//! began (the store stamps every message), since later ones reached the client live. A live
//! message on a topic the stream has not reached yet would overtake that topic's older
//! retained message: `before_live` (called by `delivery::deliver`) sends the retained one
//! first and remembers the topic, which the stream then skips, so each topic's messages
//! arrive in order.
//!
//! **Sessions.** Streams belong to the session ([`Streams`]): several subscriptions of one
//! SUBSCRIBE, or of a later one, are served one after the other in order; subscribing again
//! to a filter that is streaming starts it over after the others (Retain Handling 0) or only
//! updates its grant; an UNSUBSCRIBE ends it; a persistent session that goes offline keeps
//! its streams and goes on when the client resumes; a session that ends drops them. Shared
//! subscriptions get no retained messages (§4.8.2), so no stream.

mod streams;

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::core::conn::Phase;
use crate::core::delivery::{self, Outgoing};
use crate::core::message::SharedMessage;
use crate::core::{ConnId, Shard};
use crate::protocol::{ProtocolVersion, QoS, publish_len};
use crate::topic::matches;

use streams::Budget;
pub use streams::{Stream, Streams};

/// Messages a stream takes from the store under one lock.
pub const RETAINED_BATCH_MESSAGES: usize = 256;
/// Trie nodes a stream visits under one lock (a filter that matches little of a large
/// store still lets go of the lock this often).
pub const RETAINED_BATCH_NODES: usize = 1024;
/// Messages a session's streams send per turn of its event loop before they let the others
/// go first.
pub const RETAINED_TURN_MESSAGES: usize = 1024;
/// Trie nodes a session's streams visit per turn of its event loop (a stream that finds
/// nothing, the usual case for most of a hundred thousand new subscriptions, costs a few).
pub const RETAINED_TURN_NODES: usize = 64 * RETAINED_BATCH_NODES;
/// Topics a stream remembers having sent ahead of its cursor (because a live message on
/// them came first). Past this, a live message on a topic the stream has not reached is
/// sent without its retained message first, which the stream then sends when it gets there.
pub const MAX_SENT_AHEAD_TOPICS: usize = 4096;

/// A loop's side of the streams: the sessions waiting for the next turn, the turn
/// count, and scratch space reused by every batch.
#[derive(Debug, Default)]
pub(crate) struct LoopStreams {
    /// Sessions whose stream used its turn (resumed through whatever connection they have
    /// then: the one that paused may be gone, and the session taken over or resumed).
    paused: Vec<u32>,
    /// Turns of the loop so far ([`on_tick`] counts them).
    turn: u64,
    /// One batch's messages.
    batch: Vec<SharedMessage>,
    /// Topics whose retained message expired, found by the batch.
    stale: Vec<Box<str>>,
}

/// A SUBSCRIBE's subscriptions are in the loop's index: publishes the loop's subscription
/// count and summary (so other loops forward to it) and returns the retained store's stamp, both under
/// the store's lock (see `routing::retain`: a retained message is then either before the
/// stamp, and streamed, or after it, and delivered live). `None` if the store is unusable.
pub(crate) fn subscriptions_published(shard: &Shard) -> Option<u64> {
    let Ok(store) = shard.shared.retained.lock() else {
        shard.publish_subscriptions();
        return None;
    };
    shard.publish_subscriptions();
    Some(store.stamp())
}

/// A subscription was made or replaced on `filter` with `grant` (QoS, Subscription
/// Identifier): `send` starts its stream of what the store held at `snapshot` (after the
/// others; from the beginning, if the filter was streaming already); otherwise a stream
/// still running for the filter goes on with the new grant.
pub(crate) fn subscribed(
    shard: &mut Shard,
    session_id: u32,
    filter: &str,
    grant: (QoS, Option<u32>),
    send: bool,
    snapshot: u64,
) {
    let (qos, sub_id) = grant;
    if !send {
        if let Some(stream) = streams_mut(shard, session_id).and_then(|s| s.get_mut(filter)) {
            (stream.qos, stream.sub_id) = (qos, sub_id);
        }
        return;
    }
    // A filter without wildcards names one topic: most of a client's many subscriptions
    // have no retained message, and then no stream is needed. (Absent now, it was absent at
    // `snapshot` or has been removed since: nothing is owed either way.)
    let literal = !filter.bytes().any(|b| b == b'+' || b == b'#');
    if literal
        && shard
            .shared
            .retained
            .lock()
            .map_or(true, |store| store.get(filter).is_none())
    {
        return;
    }
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return;
    };
    let streams = session
        .extras_mut()
        .retained
        .get_or_insert_with(Box::default);
    streams.start(filter, snapshot, qos, sub_id);
}

/// The subscription on `filter` is gone: its stream ends.
pub(crate) fn unsubscribed(shard: &mut Shard, session_id: u32, filter: &str) {
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return;
    };
    let Some(extras) = session.extras_if_any() else {
        return;
    };
    if let Some(streams) = extras.retained.as_mut() {
        streams.cancel(filter);
        if streams.is_empty() && !streams.paused {
            extras.retained = None;
        }
    }
}

fn streams_mut(shard: &mut Shard, session_id: u32) -> Option<&mut Streams> {
    shard
        .sessions
        .get_mut(session_id)?
        .extras_if_any()?
        .retained
        .as_deref_mut()
}

/// Takes a session's streams out (so they can be worked on while the shard is borrowed).
fn take(shard: &mut Shard, session_id: u32) -> Option<Box<Streams>> {
    shard
        .sessions
        .get_mut(session_id)?
        .extras_if_any()?
        .retained
        .take()
}

/// Puts a session's streams back, or drops them once all are finished and none waits on
/// the paused list.
fn put_back(shard: &mut Shard, session_id: u32, streams: Box<Streams>) {
    if streams.is_empty() && !streams.paused {
        return;
    }
    if let Some(session) = shard.sessions.get_mut(session_id) {
        session.extras_mut().retained = Some(streams);
    }
}

/// A live message on `topic` (its shared copy `live`, if made) is about to be delivered to
/// session `session_id`: each of its streams that will still send `topic`'s retained message
/// sends it now, first, so that the topic's messages arrive in order, and skips it later.
///
/// Returns whether the live message is still to be delivered: not when it is itself a
/// retained message one of the session's streams sends or has sent (stored by another loop
/// before the SUBSCRIBE's stamp, forwarded here after it: the client gets it once).
pub(crate) fn before_live(
    shard: &mut Shard,
    session_id: u32,
    topic: &str,
    live: Option<&SharedMessage>,
    now_ms: u64,
) -> bool {
    let Some(streams) = shard
        .sessions
        .get(session_id)
        .and_then(|s| s.extras())
        .and_then(|e| e.retained.as_deref())
    else {
        return true;
    };
    if live.is_some_and(|m| m.retain) && streamed(shard, streams, topic, live) {
        return false;
    }
    if !streams.live().any(|s| s.owes(topic)) {
        return true;
    }
    let Some(mut streams) = take(shard, session_id) else {
        return true;
    };
    for stream in streams.live_mut().filter(|s| s.owes(topic)) {
        if stream.sent_ahead.len() >= MAX_SENT_AHEAD_TOPICS {
            continue;
        }
        let retained = shard.shared.retained.lock().ok().and_then(|store| {
            store
                .get_stamped(topic)
                .filter(|(stamp, _)| *stamp <= stream.snapshot)
                .map(|(_, message)| message.clone())
        });
        // Nothing older than the live message: nothing to keep in order.
        let Some(message) = retained else {
            continue;
        };
        if delivery::expired(message.expires_at_ms(), now_ms) {
            continue;
        }
        stream.sent_ahead.insert(topic.into());
        send(shard, session_id, stream, &message, now_ms);
    }
    put_back(shard, session_id, streams);
    true
}

/// Whether `live` is the message the store holds for `topic`, stored before the snapshot
/// of one of `streams` whose filter matches it (so that stream sends or sent it).
fn streamed(shard: &Shard, streams: &Streams, topic: &str, live: Option<&SharedMessage>) -> bool {
    let Some(live) = live else {
        return false;
    };
    let Some(snapshot) = streams
        .live()
        .filter(|s| matches(&s.filter, topic))
        .map(|s| s.snapshot)
        .max()
    else {
        return false;
    };
    shard.shared.retained.lock().is_ok_and(|store| {
        store
            .get_stamped(topic)
            .is_some_and(|(stamp, stored)| stamp <= snapshot && Arc::ptr_eq(stored, live))
    })
}

/// Sends one retained message of `stream` (the caller checked it can go, or accepts that
/// it is queued).
fn send(
    shard: &mut Shard,
    session_id: u32,
    stream: &mut Stream,
    message: &SharedMessage,
    now_ms: u64,
) {
    let grant = stream.grant(message.qos);
    let mut slot = None;
    let mut outgoing = Outgoing::of_shared(message, grant.qos, true, &mut slot);
    delivery::send_or_queue(shard, session_id, &mut outgoing, grant, now_ms);
    stream.sent += 1;
}

/// What one batch of a stream came to.
enum Step {
    /// The stream has sent everything it owed.
    Finished,
    /// The window, the output or the queue is full: an acknowledgement or a drained output
    /// pumps again.
    Blocked,
    /// The stream used its turn: the next one resumes it.
    Paused,
    /// More may go now.
    More,
}

/// Sends what the streams of `session_id` (whose client is `key`) may send now, front
/// stream first; called by `delivery::pump` once the queue is empty.
pub(crate) fn pump(shard: &mut Shard, key: ConnId, session_id: u32, now_ms: u64) {
    let has_streams = shard
        .sessions
        .get(session_id)
        .and_then(|s| s.extras())
        .is_some_and(|e| e.retained.is_some());
    if !has_streams {
        return;
    }
    let Some(mut streams) = take(shard, session_id) else {
        return;
    };
    let mut batch = std::mem::take(&mut shard.retained.batch);
    streams.budget.enter(shard.retained.turn);
    loop {
        let mut budget = std::mem::take(&mut streams.budget);
        let step = match streams.front_mut() {
            Some(stream) => send_batch(
                shard,
                key,
                session_id,
                stream,
                &mut budget,
                &mut batch,
                now_ms,
            ),
            None => Step::Blocked,
        };
        streams.budget = budget;
        match step {
            Step::More => {}
            Step::Finished => {
                if let Some(done) = streams.pop_front() {
                    finished(shard, session_id, &done);
                }
            }
            Step::Blocked => break,
            Step::Paused => {
                if !std::mem::replace(&mut streams.paused, true) {
                    shard.retained.paused.push(session_id);
                }
                break;
            }
        }
    }
    shard.retained.batch = batch;
    put_back(shard, session_id, streams);
}

fn finished(shard: &Shard, session_id: u32, stream: &Stream) {
    let client = shard.sessions.get(session_id).map_or("", |s| &s.client_id);
    tracing::debug!(client, filter = %stream.filter, sent = stream.sent, "retained messages sent");
}

/// Room for messages toward a client now: free window slots, output bytes, and whether the
/// output is empty (one packet of any size fits an empty output).
#[derive(Debug, Clone, Copy)]
struct Room {
    slots: usize,
    bytes: usize,
    empty: bool,
}

impl Room {
    /// What `key`'s client can take now, or `None` while its queue is not empty (queued
    /// messages go first).
    ///
    /// While messages are in flight and less than half the window is free, there is no room
    /// either: each acknowledgement would otherwise start a walk of the store (a lock and a
    /// seek) for one message; waiting for half the window makes it one walk per half
    /// window, and the acknowledgements still due wake the stream.
    fn now(shard: &Shard, key: ConnId, session_id: u32) -> Option<Room> {
        let traffic = shard.sessions.get(session_id)?.traffic();
        if !traffic.queue.is_empty() {
            return None;
        }
        let window = delivery::window(shard, key);
        let slots = window.saturating_sub(traffic.inflight.len());
        if !traffic.inflight.is_empty() && slots < window.div_ceil(2) {
            return None;
        }
        let output = shard.pool.get(key).ok()?.output.len();
        Some(Room {
            slots,
            bytes: shard.config.max_output_buffer_bytes.saturating_sub(output),
            empty: output == 0,
        })
    }

    /// Takes room for a message of `len` bytes at `qos`, if there is.
    fn take(&mut self, qos: QoS, len: usize) -> bool {
        let slot = usize::from(qos != QoS::AtMostOnce);
        if self.slots < slot || (len > self.bytes && !self.empty) {
            return false;
        }
        self.slots -= slot;
        self.bytes = self.bytes.saturating_sub(len);
        self.empty = false;
        true
    }
}

/// The encoded size of a PUBLISH the way `delivery` counts it for room.
fn publish_bytes(message: &SharedMessage, qos: QoS) -> usize {
    publish_len(
        ProtocolVersion::V311,
        message.topic.len(),
        message.payload.len(),
        qos,
    )
    .unwrap_or(usize::MAX)
}

/// Takes one batch of `stream` from the store (what fits now) and sends it.
fn send_batch(
    shard: &mut Shard,
    key: ConnId,
    session_id: u32,
    stream: &mut Stream,
    budget: &mut Budget,
    batch: &mut Vec<SharedMessage>,
    now_ms: u64,
) -> Step {
    if budget.messages >= RETAINED_TURN_MESSAGES || budget.nodes >= RETAINED_TURN_NODES {
        return Step::Paused;
    }
    let Some(mut room) = Room::now(shard, key, session_id) else {
        return Step::Blocked;
    };
    let limits = Limits {
        messages: RETAINED_BATCH_MESSAGES.min(RETAINED_TURN_MESSAGES - budget.messages),
        nodes: RETAINED_BATCH_NODES.min(RETAINED_TURN_NODES - budget.nodes),
    };
    let Some((full, visited)) = take_batch(shard, stream, &mut room, limits, batch, now_ms) else {
        return Step::Finished; // the store is unusable (a loop panicked holding it)
    };
    budget.nodes += visited.max(1);
    let mut blocked = full;
    for message in batch.drain(..) {
        let grant_qos = stream.grant(message.qos).qos;
        let fits = shard.sessions.get(session_id).is_some_and(|session| {
            delivery::can_send_now(
                shard,
                session,
                key,
                grant_qos,
                publish_bytes(&message, grant_qos),
            )
        });
        if !fits || !is_connected(shard, key) {
            // Not now after all (the output grew more than counted, or the client left): the
            // rest of the batch goes back to the store, to be taken again from here.
            stream.cursor.rewind_to(&message.topic);
            blocked = true;
            break;
        }
        send(shard, session_id, stream, &message, now_ms);
        budget.messages += 1;
    }
    batch.clear();
    if blocked {
        Step::Blocked
    } else if stream.cursor.is_done() {
        Step::Finished
    } else {
        Step::More
    }
}

fn is_connected(shard: &Shard, key: ConnId) -> bool {
    shard
        .pool
        .get(key)
        .is_ok_and(|c| c.phase == Phase::Connected)
}

/// How much one batch may take.
#[derive(Debug, Clone, Copy)]
struct Limits {
    messages: usize,
    nodes: usize,
}

/// Walks the store from the stream's cursor under one lock, putting into `batch` what fits
/// in `room` and `limits`; expired messages met on the way are deleted (§3.3.2.3.3).
/// Whether the walk stopped for lack of room, and the nodes it visited; `None` if the
/// store's lock is poisoned.
fn take_batch(
    shard: &mut Shard,
    stream: &mut Stream,
    room: &mut Room,
    limits: Limits,
    batch: &mut Vec<SharedMessage>,
    now_ms: u64,
) -> Option<(bool, usize)> {
    let shared = Arc::clone(&shard.shared);
    let mut store = shared.retained.lock().ok()?;
    let mut stale = std::mem::take(&mut shard.retained.stale);
    let mut out_of_room = false;
    let (qos, sent_ahead) = (stream.qos, &mut stream.sent_ahead);
    let visited = store.scan(
        &stream.filter,
        &mut stream.cursor,
        stream.snapshot,
        limits.nodes,
        |topic, message| {
            if delivery::expired(message.expires_at_ms(), now_ms) {
                stale.push(topic.into());
                return ControlFlow::Continue(());
            }
            if sent_ahead.remove(topic) {
                return ControlFlow::Continue(()); // sent before a live message
            }
            if batch.len() >= limits.messages {
                return ControlFlow::Break(());
            }
            let grant_qos = message.qos.min(qos);
            if !room.take(grant_qos, publish_bytes(message, grant_qos)) {
                out_of_room = true;
                return ControlFlow::Break(());
            }
            batch.push(Arc::clone(message));
            ControlFlow::Continue(())
        },
    );
    for topic in stale.drain(..) {
        store.remove(&topic);
    }
    shard.retained.stale = stale;
    Some((out_of_room, visited))
}

/// A new turn of the loop: streams that used their turn go on. Returns whether any stream
/// is still waiting for a turn (the loop then comes back at once).
pub(crate) fn on_tick(shard: &mut Shard, now_ms: u64) -> bool {
    shard.retained.turn += 1;
    if shard.retained.paused.is_empty() {
        return false;
    }
    let paused = std::mem::take(&mut shard.retained.paused);
    for &session_id in &paused {
        if let Some(streams) = streams_mut(shard, session_id) {
            streams.paused = false;
        }
        if let Some(key) = shard.sessions.get(session_id).and_then(|s| s.conn) {
            delivery::pump(shard, key, now_ms);
        }
    }
    if shard.retained.paused.is_empty() {
        // Keep the list's capacity for the next turn.
        shard.retained.paused = paused;
        shard.retained.paused.clear();
    }
    !shard.retained.paused.is_empty()
}
