//! The PUBLISH hot path allocates nothing: `check_frame`, `decode` of a PUBLISH or an ack,
//! and `encode_publish`/acks into a fixed buffer. Checked with a counting global allocator
//! (this test binary only).

use starling::protocol::{
    Packet, ProtocolVersion, PublishRef, QoS, check_frame, decode, encode_puback, encode_publish,
};
use starling_alloc_count::{Counting, snapshot};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (not frees) this thread has made.
fn allocations() -> u64 {
    snapshot().allocations
}

#[test]
fn publish_decode_and_encode_do_not_allocate() {
    let frame = [0x3A, 9, 0, 3, b'a', b'/', b'b', 0x12, 0x34, b'h', b'i'];
    let ack = [0x40, 2, 0, 1];
    let mut storage = [0u8; 64];

    let before = allocations();
    let header = check_frame(&frame, 1024).expect("frame");
    let packet = decode(ProtocolVersion::V311, &frame[..header.frame_len()]).expect("valid");
    let Packet::Publish(publish) = packet else {
        panic!("not a publish")
    };
    let forwarded = PublishRef {
        qos: QoS::AtLeastOnce,
        packet_id: Some(7),
        dup: false,
        ..publish
    };
    let mut out: &mut [u8] = &mut storage;
    let written = encode_publish(&mut out, ProtocolVersion::V311, &forwarded).expect("fits");
    let acked = decode(ProtocolVersion::V311, &ack).expect("valid ack");
    encode_puback(&mut out, ProtocolVersion::V311, 7).expect("fits");
    let after = allocations();

    assert_eq!(after - before, 0, "hot path allocated");
    // The counter does count: a SUBSCRIBE allocates its filter list.
    let subscribe = [0x82, 6, 0, 1, 0, 1, b'a', 0];
    assert!(decode(ProtocolVersion::V311, &subscribe).is_ok());
    assert!(allocations() > after, "allocation counter is not counting");
    assert_eq!(acked, Packet::PubAck(1));
    assert_eq!(
        &storage[..written],
        &[0x32, 9, 0, 3, b'a', b'/', b'b', 0, 7, b'h', b'i']
    );
}
