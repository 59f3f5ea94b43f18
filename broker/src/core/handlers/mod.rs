//! One handler per packet type. Each takes the shard, the connection and the decoded packet,
//! and returns what the frame loop does next.

pub(crate) mod acks;
pub(crate) mod connect;
pub(crate) mod publish;
pub(crate) mod subscribe;

use crate::core::input::Flow;
use crate::core::{ConnId, Shard, lifecycle};
use crate::protocol::{Packet, encode_pingresp};

/// Dispatches a packet of a connected client.
pub(crate) fn handle_packet(
    shard: &mut Shard,
    key: ConnId,
    packet: Packet<'_>,
    now_ms: u64,
) -> Flow {
    match packet {
        Packet::Connect(_) => {
            lifecycle::close_for(
                shard,
                key,
                "second CONNECT (MQTT-3.1.0-2)",
                &"protocol violation",
                now_ms,
            );
            Flow::Stop
        }
        Packet::Publish(publish) => publish::handle_publish(shard, key, &publish, now_ms),
        Packet::PubAck(id) => acks::handle_puback(shard, key, id, now_ms),
        Packet::PubRec(id) => acks::handle_pubrec(shard, key, id),
        Packet::PubRel(id) => publish::handle_pubrel(shard, key, id),
        Packet::PubComp(id) => acks::handle_pubcomp(shard, key, id, now_ms),
        Packet::Subscribe { packet_id, filters } => {
            subscribe::handle_subscribe(shard, key, packet_id, &filters, now_ms)
        }
        Packet::Unsubscribe { packet_id, filters } => {
            subscribe::handle_unsubscribe(shard, key, packet_id, &filters)
        }
        Packet::PingReq => handle_pingreq(shard, key),
        Packet::Disconnect => lifecycle::handle_disconnect(shard, key),
    }
}

/// PINGREQ: answer PINGRESP (MQTT-3.12.4-1).
fn handle_pingreq(shard: &mut Shard, key: ConnId) -> Flow {
    shard.write(key, encode_pingresp::<Vec<u8>>);
    Flow::Continue
}
