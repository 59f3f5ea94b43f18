//! Rebuilding the broker from what the store recovered.
//!
//! [`plan`] is pure: it decodes the recovered records, drops what expired while the broker
//! was down (by the wall clock) and deals the sessions out to the loops (a session goes
//! back to the loop that held it, modulo the loop count). Each loop then rebuilds its
//! sessions ([`Shard::restore_sessions`]) and, once every loop has (the driver waits for
//! all of them, so a message reaches every loop's subscribers), routes the messages
//! another loop had handed to it and not yet routed at the crash
//! ([`Shard::restore_routes`]), and publishes the wills of clients that were connected
//! when the broker stopped (their connection ended without DISCONNECT).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use starling_store::{Op, Recovered};

use crate::core::delivery::{self, Grant, Outgoing};
use crate::core::message::{PersistId, SharedMessage};
use crate::core::persist::codec::{
    self, DecodeError, EntryMeta, EntryState, RouteTarget, WallClock, decode_entry,
};
use crate::core::persist::record::SessionRecord;
use crate::core::session::{Inflight, Queued};
use crate::core::{Shard, access, credentials, groups, routing};
use crate::protocol::v5::parse_shared_filter;

/// One session to rebuild.
#[derive(Debug)]
pub struct RestoredSession {
    /// The client identifier.
    pub client_id: Box<str>,
    /// Its record (times in wall-clock ms).
    pub record: SessionRecord,
    /// Its outbound entries, in order: sequence number, message, fields.
    pub outbound: Vec<(u64, SharedMessage, EntryMeta)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound: Vec<u16>,
}

/// A hand-over between loops that was not routed at the crash.
#[derive(Debug)]
pub struct RestoredRoute {
    /// The message.
    pub message: SharedMessage,
    /// Its ticket (`persist::ticket`).
    pub ticket: u32,
    /// Where it was going.
    pub target: RouteTarget,
}

/// What each loop rebuilds, and what the store must drop.
#[derive(Debug, Default)]
pub struct Plan {
    /// Sessions per loop.
    pub sessions: Vec<Vec<RestoredSession>>,
    /// Routes per loop.
    pub routes: Vec<Vec<RestoredRoute>>,
    /// Retained messages still live.
    pub retained: Vec<(Box<str>, SharedMessage)>,
    /// Deletions of what expired while the broker was down (sessions, retained messages).
    pub purge: Vec<Op>,
    /// The first message id and outbound sequence number free.
    pub first_message_id: u64,
    /// The first outbound sequence number free.
    pub first_seq: u64,
    /// Counts, for the recovery log line and the metrics.
    pub counts: Counts,
}

/// What a recovery found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Sessions rebuilt.
    pub sessions: usize,
    /// Sessions that had expired.
    pub sessions_expired: usize,
    /// Messages queued or in flight, over all sessions.
    pub outbound: usize,
    /// Retained messages rebuilt.
    pub retained: usize,
    /// Retained messages that had expired.
    pub retained_expired: usize,
    /// Hand-overs routed again.
    pub routes: usize,
}

/// A record the store gave back that does not decode.
#[derive(Debug)]
pub struct RestoreError {
    /// Which record (a client id, a topic, a message id).
    pub what: String,
    /// What was wrong.
    pub error: DecodeError,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the stored {} does not decode",
            self.what, self.error
        )
    }
}

impl std::error::Error for RestoreError {}

fn bad(what: impl fmt::Display, error: DecodeError) -> RestoreError {
    RestoreError {
        what: what.to_string(),
        error,
    }
}

/// Decodes what the store recovered into what `loops` loops rebuild, at wall time
/// `now_wall_ms`.
pub fn plan(
    recovered: Recovered,
    loops: usize,
    clock: WallClock,
    now_wall_ms: u64,
) -> Result<Plan, RestoreError> {
    let loops = loops.max(1);
    let mut plan = Plan {
        sessions: (0..loops).map(|_| Vec::new()).collect(),
        routes: (0..loops).map(|_| Vec::new()).collect(),
        first_message_id: recovered.max_message_id + 1,
        ..Plan::default()
    };
    let mut messages: HashMap<u64, SharedMessage> =
        HashMap::with_capacity(recovered.messages.len());
    for (id, body) in recovered.messages {
        let message =
            codec::decode_message(&body, clock).map_err(|e| bad(format!("message {id}"), e))?;
        let message = crate::core::Message {
            persist_id: PersistId::new(id),
            ..message
        };
        messages.insert(id, Arc::new(message));
    }
    let mut max_seq = 0;
    for stored in recovered.sessions {
        let client_id = stored.client_id;
        let record =
            SessionRecord::decode(&stored.record, clock).map_err(|e| bad(&client_id, e))?;
        if record.expiry_due_wall_ms != 0 && record.expiry_due_wall_ms <= now_wall_ms {
            plan.counts.sessions_expired += 1;
            plan.purge.push(Op::DeleteSession { client_id });
            continue;
        }
        let mut outbound = Vec::with_capacity(stored.outbound.len());
        for entry in stored.outbound {
            let meta = decode_entry(&entry.meta).map_err(|e| bad(&client_id, e))?;
            let Some(message) = messages.get(&entry.message) else {
                return Err(bad(&client_id, DecodeError("outbound entry's message")));
            };
            max_seq = max_seq.max(entry.seq);
            outbound.push((entry.seq, Arc::clone(message), meta));
        }
        plan.counts.sessions += 1;
        plan.counts.outbound += outbound.len();
        let at = usize::from(record.loop_index) % loops;
        plan.sessions[at].push(RestoredSession {
            client_id,
            record,
            outbound,
            inbound: stored.inbound,
        });
    }
    plan.first_seq = max_seq + 1;
    for (topic, body) in recovered.retained {
        let message = codec::decode_message(&body, clock).map_err(|e| bad(&topic, e))?;
        let expired = message
            .expires_at_ms()
            .is_some_and(|at| clock.to_wall(at) <= now_wall_ms);
        if expired {
            plan.counts.retained_expired += 1;
            plan.purge.push(Op::DeleteRetained { topic });
        } else {
            plan.counts.retained += 1;
            plan.retained.push((topic, Arc::new(message)));
        }
    }
    for route in recovered.routes {
        let target = codec::decode_route(&route.record)
            .map_err(|e| bad(format!("route of message {}", route.message), e))?;
        let Some(message) = messages.get(&route.message) else {
            return Err(bad(
                format!("route of message {}", route.message),
                DecodeError("route's message"),
            ));
        };
        let old_loop = match &target {
            RouteTarget::All { loop_index } | RouteTarget::Group { loop_index, .. } => *loop_index,
        };
        plan.counts.routes += 1;
        plan.routes[usize::from(old_loop) % loops].push(RestoredRoute {
            message: Arc::clone(message),
            ticket: route.ticket,
            target,
        });
    }
    Ok(plan)
}

impl Shard {
    /// Rebuilds this loop's share of the recovered sessions (before the loop serves
    /// anyone). Every session is written again in the first batch, with this loop as its
    /// holder and, for a client that was connected at the crash, as offline since now.
    pub fn restore_sessions(&mut self, sessions: Vec<RestoredSession>, now_ms: u64) {
        for restored in sessions {
            restore_session(self, restored, now_ms);
        }
        self.publish_subscriptions();
    }

    /// Routes the hand-overs to this loop that were not routed at the crash, to the
    /// sessions that were on the loop they were handed to (call once every loop has
    /// restored its sessions). Then forgets where sessions came from.
    pub fn restore_routes(&mut self, routes: Vec<RestoredRoute>, now_ms: u64) {
        let mut origins = std::mem::take(&mut self.restored_from);
        origins.sort_unstable();
        for route in routes {
            let old_loop = match &route.target {
                RouteTarget::All { loop_index } | RouteTarget::Group { loop_index, .. } => {
                    *loop_index
                }
            };
            let from = origins.partition_point(|&(l, _)| l < old_loop);
            let to = origins.partition_point(|&(l, _)| l <= old_loop);
            let sessions: Vec<u32> = origins[from..to].iter().map(|&(_, s)| s).collect();
            match &route.target {
                RouteTarget::All { .. } => {
                    routing::route_restored(self, &route.message, &sessions, now_ms);
                }
                RouteTarget::Group { filter, .. } => {
                    deliver_to_member(self, &route.message, filter, &sessions, now_ms);
                }
            }
            self.journal.routed(&route.message, route.ticket);
        }
    }
}

/// Rebuilds one session on `shard`.
fn restore_session(shard: &mut Shard, restored: RestoredSession, now_ms: u64) {
    let RestoredSession {
        client_id,
        record,
        outbound,
        inbound,
    } = restored;
    if shard.sessions.find(&client_id).is_some() {
        return; // one session per client id (the store keys them so: never twice)
    }
    let clock = shard.shared.persist.clock;
    let session_id = shard.sessions.create(client_id, record.expiry_secs);
    shard.restored_from.push((record.loop_index, session_id));
    let acl = shard.access.listener(record.listener).acl.is_some();
    for (filter, opts) in &record.subscriptions {
        match parse_shared_filter(filter) {
            Ok(Some(shared)) => groups::join(shard, session_id, shared, *opts),
            Ok(None) => {
                if shard.index_subscribe(filter, session_id, *opts).is_err() {
                    continue;
                }
            }
            Err(_) => continue,
        }
        if let Some(session) = shard.sessions.get_mut(session_id) {
            session.subscriptions.insert(filter, *opts);
        }
    }
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return;
    };
    session.listener = record.listener;
    session.persisted = true;
    if record.username.is_some() || acl {
        session.extras_mut().access = Some(Box::new(access::SessionAccess::new(
            record.username.clone(),
        )));
    }
    let traffic = session.traffic_mut();
    for (seq, message, meta) in outbound {
        match meta.state {
            EntryState::Queued => traffic.push_queued(Queued {
                qos: meta.qos,
                retain: meta.retain,
                message,
                sub_ids: meta.sub_ids,
                group: None,
                seq,
            }),
            EntryState::Inflight { packet_id, state } => traffic.inflight.push(Inflight {
                packet_id,
                qos: meta.qos,
                state,
                message,
                sub_ids: meta.sub_ids,
                group: None,
                seq,
            }),
        }
    }
    traffic.awaiting_rel = inbound;
    session.last_packet_id = traffic
        .inflight
        .iter()
        .map(|m| m.packet_id)
        .max()
        .unwrap_or(0);
    schedule_offline(shard, session_id, &record, clock, now_ms);
    if let Some(session) = shard.sessions.get_mut(session_id) {
        shard.journal.session_changed(session_id, session);
    }
    credentials::reclassify(shard, session_id);
    groups::sync_presence(shard, session_id);
}

/// Files the restored (offline) session's expiry and its will: a client connected at the
/// crash lost its connection without DISCONNECT, so its will is due (after its delay); its
/// session expires its interval after now.
fn schedule_offline(
    shard: &mut Shard,
    session_id: u32,
    record: &SessionRecord,
    clock: WallClock,
    now_ms: u64,
) {
    use std::cmp::Reverse;
    let expiry_secs = record.expiry_secs;
    let Some(session) = shard.sessions.get_mut(session_id) else {
        return;
    };
    if expiry_secs != u32::MAX {
        let due = match record.expiry_due_wall_ms {
            0 => now_ms.saturating_add(u64::from(expiry_secs) * 1000),
            wall => clock.to_loop(wall),
        }
        .max(1);
        session.extras_mut().expiry_due_ms = due;
        shard.session_timers.push(Reverse((due, session_id)));
    }
    let Some(mut will) = record.will.clone() else {
        return;
    };
    will.due_ms = match will.due_ms {
        // Connected at the crash: due after its delay, from now (at once if none: the next
        // tick, once every loop is restored).
        0 => now_ms.saturating_add(u64::from(will.delay_secs.min(expiry_secs)) * 1000),
        wall => clock.to_loop(wall),
    }
    .max(1);
    let due = will.due_ms;
    if let Some(session) = shard.sessions.get_mut(session_id) {
        session.extras_mut().delayed_will = Some(will);
    }
    shard.session_timers.push(Reverse((due, session_id)));
}

/// Gives a shared group's message to a restored member (the first that has the group's
/// subscription among `sessions`).
fn deliver_to_member(
    shard: &mut Shard,
    message: &SharedMessage,
    filter: &str,
    sessions: &[u32],
    now_ms: u64,
) {
    let member = sessions.iter().find_map(|&id| {
        let opts = shard.sessions.get(id)?.subscriptions.get(filter)?;
        Some((id, opts))
    });
    let Some((session_id, opts)) = member else {
        return;
    };
    let mut slot = None;
    let mut outgoing = Outgoing::of_shared(message, message.qos, message.retain, &mut slot);
    let ids = opts.id();
    let grant = Grant {
        qos: message.qos.min(opts.qos()),
        retain: message.retain && opts.retain_as_published(),
        sub_ids: ids.as_slice(),
        group: None,
    };
    delivery::deliver(shard, session_id, &mut outgoing, grant, now_ms);
}
