//! Bad input from one MQTT 5 client never hurts the others: random sequences of v5 packets
//! (valid ones with random properties, options, aliases, reason codes and ids, and random
//! byte mutations of them) are fed to the core after a v5 CONNECT, on a 2-loop net with
//! shared and plain subscriptions. Asserts no panic, that the offender's connection either
//! lives or is closed (never a half state that keeps taking input), and that bystanders on
//! both loops, 3.1.1 and 5.0, still get every message afterwards. Bounded to a few seconds.

mod core_common;
mod protocol_common;

use core_common::{ClientId, Net, publishes};
use proptest::prelude::*;
use protocol_common::field;
use protocol_common::v5::{
    connect5, no_props, p_str, p_u8, p_u16, p_u32, p_user, p_varint, props, publish5,
    reason_packet, subscribe5, unsubscribe5,
};
use starling::core::owner_loop;

/// One property of a PUBLISH or SUBSCRIBE, drawn from what clients send and what they must
/// not (a Subscription Identifier in a PUBLISH, alias 0, duplicates come from repeats).
fn property() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..3).prop_map(|v| p_u8(0x01, v)), // Payload Format Indicator
        (0u32..5).prop_map(|v| p_u32(0x02, v)), // Message Expiry Interval
        (0u16..14).prop_map(|v| p_u16(0x23, v)), // Topic Alias
        Just(p_str(0x08, b"reply/to")),       // Response Topic
        Just(p_str(0x08, b"bad/#")),          // invalid Response Topic
        Just(p_str(0x09, b"\x00\x01")),       // Correlation Data
        Just(p_user(b"k", b"v")),             // User Property
        (0u32..3).prop_map(|v| p_varint(0x0B, v)), // Subscription Identifier
        Just(p_str(0x03, b"text/plain")),     // Content Type
        Just(vec![0x7F, 0]),                  // unknown property id
    ]
}

fn properties() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(property(), 0..4).prop_map(|p| props(&p))
}

fn topic() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"f/a".to_vec()),
        Just(b"b/x".to_vec()),
        Just(Vec::new()),
        Just(b"f/+".to_vec()),
        Just(b"$share/g/f/#".to_vec()),
        Just(b"$share//f".to_vec()),
        Just(b"\xff".to_vec()),
    ]
}

/// One packet a (possibly misbehaving) v5 client sends.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    let payload = prop::collection::vec(any::<u8>(), 0..8);
    prop_oneof![
        4 => (0u8..16, topic(), any::<u16>(), properties(), payload).prop_map(
            |(flags, topic, id, p, payload)| {
                let qos = (flags >> 1) & 3;
                publish5(flags, &topic, (qos > 0).then_some(id), &p, &payload)
            }
        ),
        2 => (any::<u16>(), properties(), topic(), any::<u8>())
            .prop_map(|(id, p, filter, opts)| subscribe5(id, &p, &[(&filter, opts)])),
        1 => (any::<u16>(), topic()).prop_map(|(id, f)| unsubscribe5(id, &no_props(), &[&f])),
        2 => (prop::sample::select(vec![0x40u8, 0x50, 0x62, 0x70]), any::<u16>(), any::<u8>())
            .prop_map(|(first, id, reason)| {
                protocol_common::v5::ack5(first, id, Some(reason), Some(&no_props()))
            }),
        1 => (any::<u8>(), properties())
            .prop_map(|(reason, p)| reason_packet(0xE0, Some(reason), Some(&p))),
        1 => (any::<u8>(), properties())
            .prop_map(|(reason, p)| reason_packet(0xF0, Some(reason), Some(&p))),
        1 => Just(vec![0xC0, 0]),
    ]
}

/// A packet, sometimes with one byte changed or cut short.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        packet(),
        any::<u8>(),
        any::<prop::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(mut bytes, how, at, value)| {
            match how % 8 {
                0 if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                1 if bytes.len() > 2 => bytes.truncate(at.index(bytes.len())),
                _ => {}
            }
            bytes
        })
}

fn connect(net: &mut Net, id: &str, v5: bool) -> ClientId {
    let client = net.open(owner_loop(id, 2));
    let bytes = if v5 {
        connect5(0x02, &no_props(), &field(id.as_bytes()))
    } else {
        protocol_common::ConnectSpec {
            client_id: id.as_bytes().to_vec(),
            ..Default::default()
        }
        .build()
    };
    net.send(client, &bytes);
    net.take(client);
    client
}

fn bystanders_still_served(net: &mut Net, round: u8) -> Result<(), TestCaseError> {
    let watch = [
        connect(net, "watch-v3", false),
        connect(net, "watch-v5", true),
    ];
    net.subscribe(watch[0], 1, "b/#", 1);
    net.send(watch[1], &subscribe5(1, &no_props(), &[(b"b/#", 1)]));
    net.take(watch[1]);
    let publisher = connect(net, "publisher", true);
    net.send(
        publisher,
        &publish5(0x02, b"b/x", Some(9), &no_props(), &[round]),
    );
    for w in watch {
        let got = publishes(&net.take(w));
        prop_assert_eq!(got, vec![("b/x".to_string(), vec![round], 1)]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_misbehaving_v5_client_hurts_no_one_else(
        packets in prop::collection::vec(mutated(), 1..12),
        round in any::<u8>(),
    ) {
        let mut net = Net::new(2, Net::small_config());
        let member = connect(&mut net, "member", true);
        net.send(member, &subscribe5(1, &no_props(), &[(b"$share/g/f/#", 1)]));
        let offender = connect(&mut net, "offender", true);
        for bytes in &packets {
            net.send(offender, bytes);
        }
        net.advance(10_000);
        bystanders_still_served(&mut net, round)?;
        // The offender is either still served or closed for good.
        if !net.is_closed(offender) {
            net.send(offender, &[0xC0, 0]);
        }
    }
}
