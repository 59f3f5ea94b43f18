//! A PUBLISH to everyone who wants it: the retained store, this loop's matching sessions
//! (one delivery per session at the highest matching QoS, MQTT-3.3.5-1), and the other loops
//! that hold any subscription.

use crate::core::delivery::{self, Outgoing};
use crate::core::message::SharedMessage;
use crate::core::{Action, Shard};
use crate::protocol::{PublishRef, QoS};

/// A PUBLISH received on this loop.
pub(crate) fn route_local_publish(shard: &mut Shard, publish: &PublishRef<'_>, now_ms: u64) {
    let mut shared: Option<SharedMessage> = None;
    let mut outgoing = Outgoing {
        view: *publish,
        shared: &mut shared,
    };
    if publish.retain {
        retain(shard, &mut outgoing);
    }
    deliver_to_matches(shard, &mut outgoing, now_ms);
    for to in 0..shard.loops {
        if to != shard.loop_index && shard.shared.has_subscribers(to) {
            let message = outgoing.shared();
            shard.actions.push_back(Action::Forward { to, message });
        }
    }
}

/// A PUBLISH forwarded by another loop (already retained there).
pub(crate) fn route_remote(shard: &mut Shard, message: &SharedMessage, now_ms: u64) {
    let mut shared = Some(message.clone());
    let view = message.as_publish(message.qos, message.retain, false, None);
    let mut outgoing = Outgoing {
        view,
        shared: &mut shared,
    };
    deliver_to_matches(shard, &mut outgoing, now_ms);
}

/// Sets or clears the retained message of the topic (MQTT-3.3.1-5, MQTT-3.3.1-10/11).
fn retain(shard: &mut Shard, outgoing: &mut Outgoing<'_, '_>) {
    let topic = outgoing.view.topic;
    let clear = outgoing.view.payload.is_empty();
    let message = (!clear).then(|| outgoing.shared());
    let Ok(mut store) = shard.shared.retained.lock() else {
        return;
    };
    match message {
        None => {
            store.remove(topic);
        }
        Some(message) => {
            if let Err(error) = store.set(topic, message) {
                tracing::info!(topic, %error, "retained message not stored");
            }
        }
    }
}

/// Delivers to every session of this loop with a matching subscription, once each.
fn deliver_to_matches(shard: &mut Shard, outgoing: &mut Outgoing<'_, '_>, _now_ms: u64) {
    let mut matches = std::mem::take(&mut shard.route_scratch);
    matches.clear();
    shard
        .index
        .for_each_match(outgoing.view.topic, |session, &qos| {
            matches.push((session, qos))
        });
    // Overlapping subscriptions of one session: keep the highest QoS (MQTT-3.3.5-1).
    matches.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    matches.dedup_by_key(|m| m.0);
    let published = outgoing.view.qos;
    for &(session, granted) in &matches {
        let qos: QoS = published.min(granted);
        // Live deliveries carry RETAIN 0 (MQTT-3.3.1-9).
        delivery::deliver(shard, session, outgoing, qos, false);
    }
    shard.route_scratch = matches;
}
