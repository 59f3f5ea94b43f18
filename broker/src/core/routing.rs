//! A PUBLISH to everyone who wants it: the retained store, this loop's matching sessions
//! (one delivery per session at the highest matching QoS, MQTT-3.3.5-1, carrying every
//! matching Subscription Identifier, MQTT-3.3.4-3), and the other loops whose summary says
//! they may hold a matching subscription (`core::summary`).

use crate::core::delivery::{self, Grant, Outgoing};
use crate::core::flow::Origin;
use crate::core::message::SharedMessage;
use crate::core::persist::{self, codec::RouteTarget};
use crate::core::subscription::SubOpts;
use crate::core::{Action, ConnId, Shard, groups, summary};
use crate::protocol::QoS;
use crate::protocol::v5::PublishV5;

/// Who published a message, for No Local (MQTT-3.8.3-3): the session on this loop.
pub(crate) type Publisher = Option<u32>;

/// Whether a PUBLISH may have reached a subscriber, for MQTT 5's 0x10 No matching
/// subscribers (§3.4.2.1). `false` only when the broker knows nobody got it: no matching
/// subscription on this loop (No Local ones of the publisher do not count), no shared
/// group took it, and no other loop's summary (`core::summary`) says it may hold a match.
/// A summary can say "may" for a topic nobody matches (it knows first levels only), so a
/// message forwarded to another loop counts as matched: the answer may be 0x00 when nobody
/// matched, never 0x10 when somebody did.
pub(crate) type Matched = bool;

/// A PUBLISH received on this loop (its topic resolved, its expiry computed), from the
/// client of connection `origin` if a client sent it.
pub(crate) fn route_local_publish(
    shard: &mut Shard,
    publisher: Publisher,
    origin: Option<ConnId>,
    publish: &PublishV5<'_>,
    expires_at_ms: Option<u64>,
    now_ms: u64,
) -> Matched {
    let mut shared: Option<SharedMessage> = None;
    // What reaches subscribers never carries the publisher's alias or expiry interval as
    // sent: those are set per delivery (`outbound::for_subscriber`), and the shared copy
    // keeps neither.
    let mut outgoing = Outgoing {
        view: *publish,
        expires_at_ms,
        shared: &mut shared,
        origin: origin.map(|conn| Origin {
            loop_index: shard.loop_index,
            conn,
        }),
    };
    // A retained PUBLISH decides where it goes under the store's lock (`retain`).
    let mut loops = std::mem::take(&mut shard.forward_scratch);
    loops.clear();
    if publish.retain {
        retain(shard, &mut outgoing, &mut loops);
    }
    let mut matched = deliver_to_matches(shard, publisher, None, &mut outgoing, now_ms);
    matched |= groups::route(shard, &mut outgoing, now_ms);
    if !publish.retain {
        loops_to_forward_to(shard, outgoing.view.topic, &mut loops);
    }
    for &to in &loops {
        forward(shard, &mut outgoing, to);
    }
    matched |= !loops.is_empty();
    shard.forward_scratch = loops;
    matched
}

/// Gives loop `to` the shared copy of the message, with who published it.
fn forward(shard: &mut Shard, outgoing: &mut Outgoing<'_, '_>, to: usize) {
    let message = outgoing.shared();
    let origin = outgoing.origin;
    let target = RouteTarget::All {
        loop_index: to as u16,
    };
    let persist = &shard.shared.persist;
    let ticket = persist::ticket(to, None);
    shard.journal.forwarded(persist, &message, ticket, &target);
    shard.actions.push_back(Action::Forward {
        to,
        message,
        origin,
    });
}

/// The other loops whose summary says they may hold a subscription matching `topic` (they
/// get a copy of the message). The topic's bits are computed once, and only if another
/// loop holds a subscription at all.
fn loops_to_forward_to(shard: &Shard, topic: &str, into: &mut Vec<usize>) {
    let mut topic_bits = None;
    for to in 0..shard.loops {
        let held = shard.shared.summary(to);
        if to == shard.loop_index || held == 0 {
            continue;
        }
        let bits = *topic_bits.get_or_insert_with(|| summary::topic_bits(topic));
        if held & bits != 0 {
            into.push(to);
        }
    }
}

/// A PUBLISH forwarded by another loop (already retained there).
pub(crate) fn route_remote(
    shard: &mut Shard,
    message: &SharedMessage,
    origin: Option<Origin>,
    now_ms: u64,
) {
    let mut slot = None;
    let mut outgoing = Outgoing::of_shared(message, message.qos, message.retain, &mut slot);
    outgoing.origin = origin;
    deliver_to_matches(shard, None, None, &mut outgoing, now_ms);
    let ticket = persist::ticket(shard.loop_index, None);
    shard.journal.routed(message, ticket);
}

/// A message another loop's shared-subscription group gave to a member here.
pub(crate) fn route_remote_shared(
    shard: &mut Shard,
    pick: groups::Pick,
    message: &SharedMessage,
    origin: Option<Origin>,
    now_ms: u64,
) {
    let mut slot = None;
    let mut outgoing = Outgoing::of_shared(message, message.qos, message.retain, &mut slot);
    outgoing.origin = origin;
    groups::deliver_local(shard, &mut outgoing, &pick, now_ms);
    let ticket = persist::ticket(shard.loop_index, Some(pick.group));
    shard.journal.routed(message, ticket);
}

/// A message another loop had handed to this one and that was not routed at a crash: to
/// the matching sessions among `sessions` (those restored from the loop it was handed to).
pub(crate) fn route_restored(
    shard: &mut Shard,
    message: &SharedMessage,
    sessions: &[u32],
    now_ms: u64,
) {
    let mut slot = None;
    let mut outgoing = Outgoing::of_shared(message, message.qos, message.retain, &mut slot);
    let mut only = sessions.to_vec();
    only.sort_unstable();
    deliver_to_matches(shard, None, Some(&only), &mut outgoing, now_ms);
}

/// Sets or clears the retained message of the topic (MQTT-3.3.1-5, MQTT-3.3.1-10/11), and
/// finds the loops to forward the message to while the store is locked.
///
/// A SUBSCRIBE publishes its loop's subscription count and takes the store's stamp under the
/// same lock (`retained_stream::subscriptions_published`), so the two cannot interleave: a
/// message stored before the stamp is sent by the new subscription's retained stream and,
/// if that loop had no subscription before, not forwarded to it; one stored after is
/// forwarded and delivered live, and the stream skips it. Either way it arrives once.
fn retain(shard: &mut Shard, outgoing: &mut Outgoing<'_, '_>, forward: &mut Vec<usize>) {
    let topic = outgoing.view.topic;
    let clear = outgoing.view.payload.is_empty();
    let message = (!clear).then(|| outgoing.shared());
    let shared = std::sync::Arc::clone(&shard.shared);
    let Ok(mut store) = shared.retained.lock() else {
        loops_to_forward_to(shard, topic, forward);
        return;
    };
    loops_to_forward_to(shard, topic, forward);
    match message {
        None => {
            store.remove(topic);
            let recorded = shared.persist.retained(topic, None);
            shard.journal.retained_changed(recorded);
        }
        Some(message) => match store.set(topic, message.clone()) {
            Ok(_) => {
                let recorded = shared.persist.retained(topic, Some(&message));
                shard.journal.retained_changed(recorded);
            }
            Err(error) => tracing::info!(topic, %error, "retained message not stored"),
        },
    }
}

/// Delivers to every session of this loop with a matching subscription (of those in
/// `only`, sorted, if given), once each; whether there was any.
fn deliver_to_matches(
    shard: &mut Shard,
    publisher: Publisher,
    only: Option<&[u32]>,
    outgoing: &mut Outgoing<'_, '_>,
    now_ms: u64,
) -> Matched {
    let mut matches = std::mem::take(&mut shard.route_scratch);
    let mut ids = std::mem::take(&mut shard.id_scratch);
    matches.clear();
    shard
        .index
        .for_each_match(outgoing.view.topic, |session, &opts| {
            // No Local: never back to the publishing session (MQTT-3.8.3-3).
            let own = opts.no_local() && Some(session) == publisher;
            let wanted = only.is_none_or(|only| only.binary_search(&session).is_ok());
            if !own && wanted {
                matches.push((session, opts));
            }
        });
    matches.sort_unstable_by_key(|m| m.0);
    let published = outgoing.view.qos;
    if let [(session, opts)] = matches[..] {
        // The common case: one matching subscription.
        ids.clear();
        ids.extend(opts.id());
        let grant = Grant {
            qos: published.min(opts.qos()),
            retain: live_retain(outgoing.view.retain, std::iter::once(opts)),
            sub_ids: &ids,
            group: None,
        };
        delivery::deliver(shard, session, outgoing, grant, now_ms);
        shard.route_scratch = matches;
        shard.id_scratch = ids;
        return true;
    }
    let matched = !matches.is_empty();
    let mut at = 0;
    while at < matches.len() {
        let session = matches[at].0;
        let end = at + matches[at..].iter().take_while(|m| m.0 == session).count();
        let group = &matches[at..end];
        // Overlapping subscriptions of one session: one delivery at the highest QoS
        // (MQTT-3.3.5-1) with all their identifiers (MQTT-3.3.4-3).
        let granted = group
            .iter()
            .map(|m| m.1.qos())
            .max()
            .unwrap_or(QoS::AtMostOnce);
        ids.clear();
        ids.extend(group.iter().filter_map(|m| m.1.id()));
        let grant = Grant {
            qos: published.min(granted),
            retain: live_retain(outgoing.view.retain, group.iter().map(|m| m.1)),
            sub_ids: &ids,
            group: None,
        };
        delivery::deliver(shard, session, outgoing, grant, now_ms);
        at = end;
    }
    shard.route_scratch = matches;
    shard.id_scratch = ids;
    matched
}

/// The RETAIN flag of a live delivery: 0 (MQTT-3.3.1-12), or the publisher's where a
/// matching subscription asked for Retain As Published (MQTT-3.3.1-13).
fn live_retain(published: bool, mut subscriptions: impl Iterator<Item = SubOpts>) -> bool {
    published && subscriptions.any(|opts| opts.retain_as_published())
}
