//! Proptest-driven fuzzing of `check_frame` + `decode`/`decode_connect`: random bytes and
//! random mutations of valid packets. Asserts no panic and that framing verdicts are
//! consistent:
//!
//! - `Incomplete` only for a true prefix: with `needed: Some(n)`, `n` more bytes (any bytes)
//!   give exactly one whole frame; with `needed: None`, the fixed header is genuinely
//!   unfinished.
//! - `Ok(header)`: every shorter prefix of that frame is `Incomplete`, and the decoders
//!   return (never panic, never ask for more bytes: their error type cannot say so).
//! - `Malformed` and `TooLarge` stay so whatever bytes follow.
//! - A stream of valid packets cut at random points decodes to the same packets.
//!
//! Bounded to a few seconds: 2 × 2000 cases plus 300 streams.

mod protocol_common;

use proptest::prelude::*;
use protocol_common::{ConnectSpec, ack, frame, publish, subscribe, unsubscribe};
use starling::protocol::{
    FrameError, MAX_FIXED_HEADER_LEN_BYTES, Packet, ProtocolVersion, check_frame, decode,
    decode_connect, peek_connect_version,
};

/// Small limit so that `TooLarge` is exercised by random headers too.
const MAX_PACKET_BYTES: usize = 4096;

fn decode_all_ways(frame: &[u8]) {
    // Results are irrelevant here; panics are not.
    let _ = decode(ProtocolVersion::V311, frame);
    let _ = decode(ProtocolVersion::V31, frame);
    let _ = decode_connect(frame);
    let _ = peek_connect_version(frame);
}

fn assert_consistent(buf: &[u8], tail: &[u8]) -> Result<(), TestCaseError> {
    let extended = [buf, tail].concat();
    match check_frame(buf, MAX_PACKET_BYTES) {
        Ok(header) => {
            let len = header.frame_len();
            prop_assert!(len <= buf.len() && (2..=MAX_PACKET_BYTES).contains(&len));
            for k in 0..len {
                let verdict = check_frame(&buf[..k], MAX_PACKET_BYTES);
                let expected = if k < header.header_len {
                    None
                } else {
                    Some(len - k)
                };
                prop_assert_eq!(
                    verdict,
                    Err(FrameError::Incomplete { needed: expected }),
                    "prefix {}",
                    k
                );
            }
            prop_assert_eq!(check_frame(&extended, MAX_PACKET_BYTES), Ok(header));
            decode_all_ways(&buf[..len]);
        }
        Err(FrameError::Incomplete { needed: Some(n) }) => {
            prop_assert!(n > 0);
            let mut completed = buf.to_vec();
            completed.extend(tail.iter().copied().cycle().take(n));
            completed.resize(buf.len() + n, 0);
            let header = check_frame(&completed, MAX_PACKET_BYTES);
            prop_assert_eq!(header.map(|h| h.frame_len()), Ok(completed.len()));
            decode_all_ways(&completed);
        }
        Err(FrameError::Incomplete { needed: None }) => {
            prop_assert!(buf.len() < MAX_FIXED_HEADER_LEN_BYTES);
            prop_assert!(
                buf.iter().skip(1).all(|b| b & 0x80 != 0),
                "header is really unfinished"
            );
            decode_all_ways(buf);
        }
        Err(e @ (FrameError::Malformed(_) | FrameError::TooLarge { .. })) => {
            prop_assert_eq!(
                check_frame(&extended, MAX_PACKET_BYTES),
                Err(e),
                "verdict must stick"
            );
            decode_all_ways(buf);
        }
    }
    Ok(())
}

/// Valid 3.1.1 client→server packets.
fn valid_packet() -> impl Strategy<Value = Vec<u8>> {
    let topic = "[a-z/]{1,12}";
    let filter = prop_oneof![Just("#".to_owned()), Just("a/+/b".to_owned()), "[a-z]{1,8}"];
    prop_oneof![
        (
            "[a-z]{0,10}",
            any::<bool>(),
            prop::option::of(("[a-z]{1,5}", "[a-z]{0,5}"))
        )
            .prop_map(|(id, will, login)| {
                ConnectSpec {
                    client_id: id.into_bytes(),
                    will: will.then(|| (b"will/t".to_vec(), b"gone".to_vec(), 1, true)),
                    username: login.as_ref().map(|(u, _)| u.clone().into_bytes()),
                    password: login.map(|(_, p)| p.into_bytes()),
                    ..ConnectSpec::default()
                }
                .build()
            }),
        (
            topic,
            0u8..3,
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(t, qos, retain, payload)| {
                let id = (qos > 0).then_some(7);
                publish((qos << 1) | u8::from(retain), t.as_bytes(), id, &payload)
            }),
        (prop::collection::vec((filter.clone(), 0u8..3), 1..4)).prop_map(|fs| {
            let raw: Vec<(&[u8], u8)> = fs.iter().map(|(f, q)| (f.as_bytes(), *q)).collect();
            subscribe(3, &raw)
        }),
        (prop::collection::vec(filter, 1..4)).prop_map(|fs| {
            let raw: Vec<&[u8]> = fs.iter().map(|f| f.as_bytes()).collect();
            unsubscribe(4, &raw)
        }),
        (
            prop::sample::select(vec![0x40u8, 0x50, 0x62, 0x70]),
            1..=u16::MAX
        )
            .prop_map(|(first, id)| ack(first, id)),
        Just(frame(0xC0, &[])),
        Just(frame(0xE0, &[])),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    FlipBit(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Set(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Mutation::FlipBit(i, bit) => {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Mutation::Remove(i) => {
            bytes.remove(i.index(bytes.len()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes(
        buf in prop::collection::vec(any::<u8>(), 0..96),
        tail in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        assert_consistent(&buf, &tail)?;
    }

    #[test]
    fn mutated_valid_packets(
        packet in valid_packet(),
        mutations in prop::collection::vec(mutation(), 1..4),
        tail in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        // The unmutated packet is valid and framed exactly.
        prop_assert_eq!(check_frame(&packet, MAX_PACKET_BYTES).map(|h| h.frame_len()), Ok(packet.len()));
        let ok = if packet[0] == 0x10 {
            decode_connect(&packet).is_ok()
        } else {
            decode(ProtocolVersion::V311, &packet).is_ok()
        };
        prop_assert!(ok, "valid packet refused: {:?}", packet);
        let mut bytes = packet;
        for m in &mutations {
            apply(&mut bytes, m);
        }
        assert_consistent(&bytes, &tail)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A read loop over a stream cut at arbitrary points sees the same packets as decoding
    /// each packet on its own, and never reports an error on valid input.
    #[test]
    fn chunked_stream_decodes_like_whole_packets(
        packets in prop::collection::vec(valid_packet(), 1..8),
        cuts in prop::collection::vec(1usize..40, 1..64),
    ) {
        let stream: Vec<u8> = packets.concat();
        let mut expected = Vec::new();
        for p in &packets {
            expected.push(if p[0] == 0x10 {
                format!("{:?}", decode_connect(p))
            } else {
                format!("{:?}", decode(ProtocolVersion::V311, p))
            });
        }

        let mut seen = Vec::new();
        let mut buffer: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut cut = cuts.iter().cycle();
        while fed < stream.len() || !buffer.is_empty() {
            let step = (*cut.next().unwrap_or(&1)).min(stream.len() - fed);
            buffer.extend_from_slice(&stream[fed..fed + step]);
            fed += step;
            loop {
                match check_frame(&buffer, MAX_PACKET_BYTES) {
                    Ok(header) => {
                        let frame: Vec<u8> = buffer.drain(..header.frame_len()).collect();
                        seen.push(if frame[0] == 0x10 {
                            format!("{:?}", decode_connect(&frame))
                        } else {
                            let decoded = decode(ProtocolVersion::V311, &frame);
                            prop_assert!(!matches!(decoded, Ok(Packet::Connect(_))));
                            format!("{decoded:?}")
                        });
                    }
                    Err(FrameError::Incomplete { .. }) => break,
                    Err(e) => return Err(TestCaseError::fail(format!("valid stream refused: {e}"))),
                }
            }
            if step == 0 && !buffer.is_empty() {
                return Err(TestCaseError::fail("bytes left over at end of stream"));
            }
        }
        prop_assert_eq!(seen, expected);
    }
}
