//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 §4.8.2; also accepted from
//! 3.1.1 clients, as other brokers do).
//!
//! Each message that matches a group goes to exactly one of its members. The members of
//! a group may live on different loops (a session lives on the loop that accepted its
//! client's first CONNECT), so the groups are one registry for the whole broker ([`SharedGroups`], in
//! [`Shared`](super::Shared) behind a mutex that is taken only while any group exists),
//! and the member is chosen on the loop where the message was published: the online member
//! with the fewest unacknowledged messages (in flight or queued: a member that acknowledges
//! faster gets more), round-robin among equals. A member on another loop gets the
//! message by [`Action::ForwardShared`].
//!
//! Each member's load is a [`Presence`] shared between the registry and the member's
//! session: the owning loop stores the true load whenever the session's traffic changes,
//! and the choosing loop adds one for each QoS 1/2 message it hands out before that loop
//! has seen it, so a burst is spread even before the first acknowledgement (a QoS 0
//! delivery is never unacknowledged: members that only get QoS 0 take strict turns).
//!
//! A member whose session ends (clean session, or its expiry) hands its unacknowledged
//! QoS 1/2 messages from the group to another member (§4.8.2: "SHOULD send the Application
//! Message to another Client"); a member that is only offline keeps them for its return,
//! and is chosen only when no member is online.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use slab::Slab;

use crate::core::delivery::{self, Grant, Outgoing};
use crate::core::message::SharedMessage;
use crate::core::observe::DropReason;
use crate::core::persist::{self, codec::RouteTarget};
use crate::core::subscription::SubOpts;
use crate::core::{Action, Shard};
use crate::protocol::QoS;
use crate::protocol::v5::SharedFilter;
use crate::topic::SubscriptionIndex;

/// A member session's load and presence, shared by its loop and the registry.
#[derive(Debug, Default)]
pub struct Presence {
    /// Messages in flight or queued toward the member (plus those handed out to it that
    /// its loop has not seen yet).
    pub load: AtomicU32,
    /// Whether the member's client is connected.
    pub online: AtomicBool,
}

/// One member of a group.
#[derive(Debug, Clone)]
struct Member {
    loop_index: usize,
    session: u32,
    opts: SubOpts,
    presence: Arc<Presence>,
}

#[derive(Debug)]
struct Group {
    name: Box<str>,
    filter: Box<str>,
    members: Vec<Member>,
    /// Where the next round-robin scan starts.
    next: usize,
}

/// Every shared-subscription group of the broker.
#[derive(Debug, Default)]
pub struct SharedGroups {
    groups: Slab<Group>,
    by_name: HashMap<(Box<str>, Box<str>), u32>,
    index: SubscriptionIndex<u32, ()>,
}

/// A member chosen for one message.
#[derive(Debug, Clone)]
pub struct Pick {
    /// The group.
    pub group: u32,
    /// The member's loop.
    pub loop_index: usize,
    /// The member's session on that loop.
    pub session: u32,
    /// Its subscription's options.
    pub opts: SubOpts,
    /// Its presence (the receiving loop checks the session is still this member).
    pub presence: Arc<Presence>,
}

impl SharedGroups {
    /// Groups in existence.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn join(&mut self, shared: SharedFilter<'_>, member: Member) -> u32 {
        let name_key: (Box<str>, Box<str>) = (shared.group.into(), shared.filter.into());
        let id = match self.by_name.get(&name_key) {
            Some(&id) => id,
            None => {
                let id = self.groups.insert(Group {
                    name: name_key.0.clone(),
                    filter: name_key.1.clone(),
                    members: Vec::new(),
                    next: 0,
                }) as u32;
                // A filter too deep for the index was refused by the topic limits already.
                let _ = self.index.subscribe(shared.filter, id, ());
                self.by_name.insert(name_key, id);
                id
            }
        };
        if let Some(group) = self.groups.get_mut(id as usize) {
            let same =
                |m: &Member| m.loop_index == member.loop_index && m.session == member.session;
            match group.members.iter_mut().find(|m| same(m)) {
                Some(existing) => existing.opts = member.opts,
                None => group.members.push(member),
            }
        }
        id
    }

    fn leave(&mut self, shared: SharedFilter<'_>, loop_index: usize, session: u32) {
        let name_key: (Box<str>, Box<str>) = (shared.group.into(), shared.filter.into());
        let Some(&id) = self.by_name.get(&name_key) else {
            return;
        };
        let Some(group) = self.groups.get_mut(id as usize) else {
            return;
        };
        group
            .members
            .retain(|m| !(m.loop_index == loop_index && m.session == session));
        if group.members.is_empty() {
            self.index.unsubscribe(&group.filter, id);
            self.by_name.remove(&name_key);
            self.groups.remove(id as usize);
        }
    }

    /// One member for each group whose filter matches `topic`, into `picks`.
    fn pick_all(&mut self, topic: &str, qos: QoS, picks: &mut Vec<Pick>) {
        let mut ids: Vec<u32> = Vec::new();
        self.index.for_each_match(topic, |id, _| ids.push(id));
        for id in ids {
            if let Some(pick) = self.pick(id, qos) {
                picks.push(pick);
            }
        }
    }

    /// The member of group `id` to give the next message (published at `qos`) to.
    fn pick(&mut self, id: u32, qos: QoS) -> Option<Pick> {
        let group = self.groups.get_mut(id as usize)?;
        let n = group.members.len();
        let mut best: Option<(usize, (bool, u32))> = None;
        for step in 0..n {
            let at = (group.next + step) % n;
            let p = &group.members[at].presence;
            // Online first, then the fewest unacknowledged; the scan order breaks ties.
            let rank = (
                !p.online.load(Ordering::Relaxed),
                p.load.load(Ordering::Relaxed),
            );
            if best.is_none_or(|(_, r)| rank < r) {
                best = Some((at, rank));
            }
        }
        let (at, _) = best?;
        group.next = (at + 1) % n;
        let m = &group.members[at];
        if qos.min(m.opts.qos()) != QoS::AtMostOnce {
            // It will be unacknowledged until the member's loop sees it and stores the
            // true load; a QoS 0 delivery is never unacknowledged, so members that only
            // get QoS 0 stay tied and take strict turns.
            m.presence.load.fetch_add(1, Ordering::Relaxed);
        }
        Some(Pick {
            group: id,
            loop_index: m.loop_index,
            session: m.session,
            opts: m.opts,
            presence: m.presence.clone(),
        })
    }

    /// The filter members of group `id` subscribed with (`$share/name/filter`).
    pub fn share_filter(&self, id: u32) -> Option<String> {
        let group = self.groups.get(id as usize)?;
        Some(format!("$share/{}/{}", group.name, group.filter))
    }

    /// The group names and filters, for diagnostics.
    pub fn describe(&self) -> Vec<(String, String, usize)> {
        self.groups
            .iter()
            .map(|(_, g)| (g.name.to_string(), g.filter.to_string(), g.members.len()))
            .collect()
    }
}

/// The session's presence, created when it joins its first group.
fn presence_of(shard: &mut Shard, session_id: u32) -> Option<Arc<Presence>> {
    let session = shard.sessions.get_mut(session_id)?;
    let online = session.conn.is_some();
    let load = session.load();
    let extras = session.extras_mut();
    let presence = extras.presence.get_or_insert_with(|| {
        Arc::new(Presence {
            load: AtomicU32::new(u32::try_from(load).unwrap_or(u32::MAX)),
            online: AtomicBool::new(online),
        })
    });
    Some(presence.clone())
}

/// Adds the session to the group of `shared` (or updates its options).
pub(crate) fn join(shard: &mut Shard, session_id: u32, shared: SharedFilter<'_>, opts: SubOpts) {
    let Some(presence) = presence_of(shard, session_id) else {
        return;
    };
    let member = Member {
        loop_index: shard.loop_index,
        session: session_id,
        opts,
        presence,
    };
    if let Ok(mut groups) = shard.shared.groups.lock() {
        groups.join(shared, member);
        shard.shared.set_group_count(groups.len());
    }
}

/// Removes the session from the group of `shared`.
pub(crate) fn leave(shard: &mut Shard, session_id: u32, shared: SharedFilter<'_>) {
    if let Ok(mut groups) = shard.shared.groups.lock() {
        groups.leave(shared, shard.loop_index, session_id);
        shard.shared.set_group_count(groups.len());
    }
}

/// Gives a PUBLISH to one member of every matching group; whether any group took it.
pub(crate) fn route(shard: &mut Shard, outgoing: &mut Outgoing<'_, '_>, now_ms: u64) -> bool {
    if !shard.shared.has_groups() {
        return false;
    }
    let mut picks = Vec::new();
    if let Ok(mut groups) = shard.shared.groups.lock() {
        groups.pick_all(outgoing.view.topic, outgoing.view.qos, &mut picks);
    }
    let any = !picks.is_empty();
    for pick in picks {
        give(shard, outgoing, pick, now_ms);
    }
    any
}

/// Hands a message of group `group` on to another member (its member's session ended).
pub(crate) fn redispatch(shard: &mut Shard, group: u32, message: SharedMessage, now_ms: u64) {
    let pick = match shard.shared.groups.lock() {
        Ok(mut groups) => groups.pick(group, message.qos),
        Err(_) => None,
    };
    let Some(pick) = pick else {
        shard.stats.count_drop(DropReason::GroupMemberGone);
        return;
    };
    let mut slot = None;
    let mut outgoing = Outgoing::of_shared(&message, message.qos, message.retain, &mut slot);
    give(shard, &mut outgoing, pick, now_ms);
}

/// Delivers to the chosen member here, or forwards it to the member's loop.
fn give(shard: &mut Shard, outgoing: &mut Outgoing<'_, '_>, pick: Pick, now_ms: u64) {
    if pick.loop_index == shard.loop_index {
        deliver_local(shard, outgoing, &pick, now_ms);
    } else {
        let message = outgoing.shared();
        if shard.journal.enabled() && message.qos != QoS::AtMostOnce {
            record_hand_over(shard, &message, &pick);
        }
        shard.actions.push_back(Action::ForwardShared {
            to: pick.loop_index,
            pick,
            message,
            origin: outgoing.origin,
        });
    }
}

/// Records a message handed to a member on another loop until that loop has it
/// (`core::persist`).
fn record_hand_over(shard: &mut Shard, message: &SharedMessage, pick: &Pick) {
    let filter = match shard.shared.groups.lock() {
        Ok(groups) => groups.share_filter(pick.group),
        Err(_) => None,
    };
    let Some(filter) = filter else {
        return;
    };
    let target = RouteTarget::Group {
        loop_index: pick.loop_index as u16,
        filter: filter.into(),
    };
    let ticket = persist::ticket(pick.loop_index, Some(pick.group));
    let persist = &shard.shared.persist;
    shard.journal.forwarded(persist, message, ticket, &target);
}

/// Delivers a group's message to its chosen member on this loop.
pub(crate) fn deliver_local(
    shard: &mut Shard,
    outgoing: &mut Outgoing<'_, '_>,
    pick: &Pick,
    now_ms: u64,
) {
    let is_member = shard
        .sessions
        .get(pick.session)
        .and_then(|s| s.extras())
        .and_then(|e| e.presence.as_ref())
        .is_some_and(|p| Arc::ptr_eq(p, &pick.presence));
    if !is_member {
        // The member left between the choice and now (its slot may be reused): another
        // member takes it, if there is one.
        let message = outgoing.shared();
        redispatch(shard, pick.group, message, now_ms);
        return;
    }
    let ids = pick.opts.id();
    let grant = Grant {
        qos: outgoing.view.qos.min(pick.opts.qos()),
        retain: outgoing.view.retain && pick.opts.retain_as_published(),
        sub_ids: ids.as_slice(),
        group: Some(pick.group),
    };
    delivery::deliver(shard, pick.session, outgoing, grant, now_ms);
}

/// Stores the session's true load where its groups see it.
pub(crate) fn sync_presence(shard: &Shard, session_id: u32) {
    let Some(session) = shard.sessions.get(session_id) else {
        return;
    };
    if let Some(presence) = session.extras().and_then(|e| e.presence.as_ref()) {
        let load = u32::try_from(session.load()).unwrap_or(u32::MAX);
        presence.load.store(load, Ordering::Relaxed);
        presence
            .online
            .store(session.conn.is_some(), Ordering::Relaxed);
    }
}
