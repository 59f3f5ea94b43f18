//! The `protocol_fuzz.rs` target extended to MQTT 5: random bytes and random mutations of
//! valid v5 packets through `check_frame_for(V5, …)`, `decode_v5`, `decode_connect_any` and
//! `decode_publish_from_server`. Asserts no panic, consistent framing verdicts (a
//! non-minimal remaining length stays malformed whatever follows), that a v5 decode error
//! is never "need more bytes" and always carries a v5 reason code (0x81/0x82/0x84/0x85/0x8F/
//! 0x90), and that a stream of valid packets cut anywhere decodes like the packets one by
//! one. Bounded to a few seconds.

mod protocol_common;

use proptest::prelude::*;
use protocol_common::field;
use protocol_common::v5::*;
use starling::protocol::v5::decode_publish_from_server;
use starling::protocol::{
    FrameError, ProtocolVersion, ReasonCode, check_frame_for, decode_connect_any, decode_v5,
};

const MAX_PACKET_BYTES: usize = 4096;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn decode_all_ways(frame: &[u8]) -> Result<(), TestCaseError> {
    for result in [
        decode_v5(frame).map(drop),
        decode_connect_any(frame).map(drop),
        decode_publish_from_server(frame).map(drop),
    ] {
        if let Err(e) = result {
            prop_assert!(
                matches!(
                    e.reason_code(),
                    ReasonCode::MalformedPacket
                        | ReasonCode::ProtocolError
                        | ReasonCode::UnsupportedProtocolVersion
                        | ReasonCode::ClientIdentifierNotValid
                        | ReasonCode::TopicFilterInvalid
                        | ReasonCode::TopicNameInvalid
                ),
                "{e}"
            );
            let _ = e.to_string();
        }
    }
    Ok(())
}

fn assert_consistent(buf: &[u8], tail: &[u8]) -> Result<(), TestCaseError> {
    let extended = [buf, tail].concat();
    match check_frame_for(V5, buf, MAX_PACKET_BYTES) {
        Ok(header) => {
            let len = header.frame_len();
            prop_assert!(len <= buf.len());
            prop_assert_eq!(check_frame_for(V5, &extended, MAX_PACKET_BYTES), Ok(header));
            decode_all_ways(&buf[..len])?;
        }
        Err(FrameError::Incomplete { needed: Some(n) }) => {
            let mut completed = buf.to_vec();
            completed.resize(buf.len() + n, 0);
            let header = check_frame_for(V5, &completed, MAX_PACKET_BYTES);
            prop_assert_eq!(header.map(|h| h.frame_len()), Ok(completed.len()));
            decode_all_ways(&completed)?;
        }
        Err(FrameError::Incomplete { needed: None }) => decode_all_ways(buf)?,
        Err(e) => {
            prop_assert_eq!(check_frame_for(V5, &extended, MAX_PACKET_BYTES), Err(e));
            decode_all_ways(buf)?;
        }
    }
    Ok(())
}

/// Valid v5 client→server packets.
fn valid_packet() -> impl Strategy<Value = Vec<u8>> {
    let user = ("[a-z]{0,4}", "[a-z]{0,4}").prop_map(|(k, v)| p_user(k.as_bytes(), v.as_bytes()));
    prop_oneof![
        (prop::collection::vec(user.clone(), 0..2), any::<bool>()).prop_map(|(u, will)| {
            let mut payload = field(b"client");
            if will {
                payload.extend(props(&[p_u32(0x18, 5)]));
                payload.extend(field(b"w"));
                payload.extend(field(b"x"));
            }
            connect5(if will { 0x0E } else { 0x02 }, &props(&u), &payload)
        }),
        (
            "[a-z/]{1,10}",
            0u8..3,
            prop::collection::vec(user.clone(), 0..2),
            prop::option::of(1u16..5),
            prop::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(t, q, u, alias, payload)| {
                let mut entries = u;
                entries.extend(alias.map(|a| p_u16(0x23, a)));
                entries.push(p_u32(0x02, 60));
                publish5(
                    q << 1,
                    t.as_bytes(),
                    (q > 0).then_some(3),
                    &props(&entries),
                    &payload,
                )
            }),
        (
            prop::sample::select(vec![0x40u8, 0x50, 0x62, 0x70]),
            1..=u16::MAX,
            any::<bool>()
        )
            .prop_map(|(f, id, long)| if long {
                ack5(f, id, Some(0), Some(&props(&[p_str(0x1F, b"r")])))
            } else {
                ack5(f, id, None, None)
            }),
        (
            prop::collection::vec(
                (
                    prop_oneof![Just("$share/g/a".to_owned()), "[a-z]{1,5}"],
                    0u8..0x30
                ),
                1..3
            ),
            prop::option::of(1u32..1000)
        )
            .prop_map(|(subs, id)| {
                let raw: Vec<(&[u8], u8)> = subs
                    .iter()
                    .map(|(f, o)| (f.as_bytes(), (o % 3) | (o & 0b0010_1000)))
                    .collect();
                subscribe5(
                    1,
                    &props(&id.map(|i| vec![p_varint(0x0B, i)]).unwrap_or_default()),
                    &raw,
                )
            }),
        Just(unsubscribe5(2, &props(&[p_user(b"k", b"v")]), &[b"a/+"])),
        Just(vec![0xC0, 0]),
        Just(vec![0xE0, 0]),
        Just(reason_packet(
            0xE0,
            Some(0x04),
            Some(&props(&[p_u32(0x11, 9)]))
        )),
        Just(reason_packet(
            0xF0,
            Some(0x18),
            Some(&props(&[p_str(0x15, b"M")]))
        )),
    ]
}

fn apply(bytes: &mut Vec<u8>, op: u8, at: prop::sample::Index, value: u8) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match op {
        0 => bytes[at.index(n)] = value,
        1 => bytes[at.index(n)] ^= 1 << (value % 8),
        2 => bytes.truncate(at.index(n)),
        3 => bytes.insert(at.index(n + 1), value),
        _ => {
            bytes.remove(at.index(n));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(buf in prop::collection::vec(any::<u8>(), 0..96), tail in prop::collection::vec(any::<u8>(), 1..16)) {
        assert_consistent(&buf, &tail)?;
    }

    #[test]
    fn mutated_valid_packets(
        packet in valid_packet(),
        edits in prop::collection::vec((0u8..5, any::<prop::sample::Index>(), any::<u8>()), 1..4),
        tail in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        prop_assert_eq!(check_frame_for(V5, &packet, MAX_PACKET_BYTES).map(|h| h.frame_len()), Ok(packet.len()));
        let ok = if packet[0] == 0x10 { decode_connect_any(&packet).is_ok() } else { decode_v5(&packet).is_ok() };
        prop_assert!(ok, "valid packet refused: {:02X?}", packet);
        let mut bytes = packet;
        for (op, at, value) in edits {
            apply(&mut bytes, op, at, value);
        }
        assert_consistent(&bytes, &tail)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn chunked_stream_decodes_like_whole_packets(
        packets in prop::collection::vec(valid_packet(), 1..8),
        cuts in prop::collection::vec(1usize..40, 1..64),
    ) {
        let decode = |p: &[u8]| if p[0] == 0x10 { format!("{:?}", decode_connect_any(p)) } else { format!("{:?}", decode_v5(p)) };
        let expected: Vec<String> = packets.iter().map(|p| decode(p)).collect();
        let stream = packets.concat();
        let (mut seen, mut buffer, mut fed) = (Vec::new(), Vec::<u8>::new(), 0);
        for step in cuts.iter().cycle() {
            if fed == stream.len() {
                break;
            }
            let step = (*step).min(stream.len() - fed);
            buffer.extend_from_slice(&stream[fed..fed + step]);
            fed += step;
            loop {
                match check_frame_for(V5, &buffer, MAX_PACKET_BYTES) {
                    Ok(h) => {
                        let frame: Vec<u8> = buffer.drain(..h.frame_len()).collect();
                        seen.push(decode(&frame));
                    }
                    Err(FrameError::Incomplete { .. }) => break,
                    Err(e) => return Err(TestCaseError::fail(format!("valid stream refused: {e}"))),
                }
            }
        }
        prop_assert!(buffer.is_empty());
        prop_assert_eq!(seen, expected);
    }
}
