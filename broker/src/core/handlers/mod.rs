//! One handler per packet type. Each takes the shard, the connection and the decoded packet,
//! and returns what the frame loop does next.
//!
//! The handlers are written once, against the MQTT 5 shapes of the packets: a 3.1.1 packet
//! is the MQTT 5 packet without properties or reason codes ([`handle_packet`] converts it;
//! for PUBLISH the conversion is a copy of the borrowed view), and the replies go through
//! the version-aware writers of `core::outbound`.

pub(crate) mod acks;
pub(crate) mod auth;
pub(crate) mod connect;
pub(crate) mod publish;
pub(crate) mod subscribe;

use crate::core::input::Flow;
use crate::core::{ConnId, Shard, lifecycle};
use crate::protocol::v5::{
    PacketV5, PublishV5, RetainHandling, SubscriptionOptions, SubscriptionV5,
};
use crate::protocol::{Packet, ReasonCode, encode_pingresp};

/// Dispatches a packet of a connected 3.1 / 3.1.1 client.
pub(crate) fn handle_packet(
    shard: &mut Shard,
    key: ConnId,
    packet: Packet<'_>,
    now_ms: u64,
) -> Flow {
    match packet {
        Packet::Connect(_) => second_connect(shard, key, now_ms),
        Packet::Publish(publish) => {
            publish::handle_publish(shard, key, PublishV5::from_v3(&publish), now_ms)
        }
        Packet::PubAck(id) => acks::handle_puback(shard, key, id, now_ms),
        Packet::PubRec(id) => acks::handle_pubrec(shard, key, id, ReasonCode::Success, now_ms),
        Packet::PubRel(id) => publish::handle_pubrel(shard, key, id),
        Packet::PubComp(id) => acks::handle_pubcomp(shard, key, id, now_ms),
        Packet::Subscribe { packet_id, filters } => {
            let subscriptions: Vec<SubscriptionV5> = filters
                .into_iter()
                .map(|(filter, qos)| SubscriptionV5 {
                    filter,
                    options: SubscriptionOptions {
                        qos,
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: RetainHandling::SendOnSubscribe,
                    },
                })
                .collect();
            subscribe::handle_subscribe(shard, key, packet_id, None, &subscriptions, now_ms)
        }
        Packet::Unsubscribe { packet_id, filters } => {
            subscribe::handle_unsubscribe(shard, key, packet_id, &filters, now_ms)
        }
        Packet::PingReq => handle_pingreq(shard, key),
        Packet::Disconnect => lifecycle::handle_disconnect(shard, key, None, now_ms),
    }
}

/// Dispatches a packet of a connected MQTT 5 client.
pub(crate) fn handle_packet_v5(
    shard: &mut Shard,
    key: ConnId,
    packet: PacketV5<'_>,
    now_ms: u64,
) -> Flow {
    match packet {
        PacketV5::Connect(_) => second_connect(shard, key, now_ms),
        PacketV5::Publish(publish) => publish::handle_publish(shard, key, publish, now_ms),
        PacketV5::PubAck(ack) => acks::handle_puback(shard, key, ack.packet_id, now_ms),
        PacketV5::PubRec(ack) => acks::handle_pubrec(shard, key, ack.packet_id, ack.reason, now_ms),
        PacketV5::PubRel(ack) => publish::handle_pubrel(shard, key, ack.packet_id),
        PacketV5::PubComp(ack) => acks::handle_pubcomp(shard, key, ack.packet_id, now_ms),
        PacketV5::Subscribe(s) => subscribe::handle_subscribe(
            shard,
            key,
            s.packet_id,
            s.subscription_identifier,
            &s.subscriptions,
            now_ms,
        ),
        PacketV5::Unsubscribe(u) => {
            subscribe::handle_unsubscribe(shard, key, u.packet_id, &u.filters, now_ms)
        }
        PacketV5::PingReq => handle_pingreq(shard, key),
        PacketV5::Disconnect(d) => lifecycle::handle_disconnect(shard, key, Some(&d), now_ms),
        PacketV5::Auth(auth) => auth::handle_auth(shard, key, &auth, now_ms),
    }
}

/// A second CONNECT is a protocol error (MQTT-3.1.0-2).
fn second_connect(shard: &mut Shard, key: ConnId, now_ms: u64) -> Flow {
    lifecycle::close_for(
        shard,
        key,
        "second CONNECT (MQTT-3.1.0-2)",
        ReasonCode::ProtocolError,
        &"protocol violation",
        now_ms,
    );
    Flow::Stop
}

/// PINGREQ: answer PINGRESP (MQTT-3.12.4-1).
fn handle_pingreq(shard: &mut Shard, key: ConnId) -> Flow {
    shard.write(key, encode_pingresp::<Vec<u8>>);
    Flow::Continue
}
