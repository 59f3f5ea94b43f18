//! Random streams of frames cut into random reads, and arbitrary input.

use proptest::prelude::*;

use super::*;

/// One message of a random client stream: a binary message in `fragments` frames, or a
/// ping.
#[derive(Debug, Clone)]
enum Piece {
    Binary { payload: Vec<u8>, fragments: usize },
    Ping,
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => (proptest::collection::vec(any::<u8>(), 0..3000), 1usize..4)
            .prop_map(|(payload, fragments)| Piece::Binary { payload, fragments }),
        1 => Just(Piece::Ping),
    ]
}

proptest! {
    /// Whatever the frames and however the reads cut them, the MQTT stream is the binary
    /// payloads in order, every ping is answered, and the idle layer holds the same.
    #[test]
    fn any_stream_in_any_reads(
        pieces in proptest::collection::vec(piece(), 1..12),
        cuts in proptest::collection::vec(1usize..5000, 1..20),
    ) {
        let (mut layer, mut client) = open();
        let mut expected = Vec::new();
        let mut pings = 0;
        for piece in pieces {
            match piece {
                Piece::Binary { payload, fragments } => {
                    let size = payload.len().div_ceil(fragments).max(1);
                    let chunks: Vec<&[u8]> = if payload.is_empty() {
                        vec![&[]]
                    } else {
                        payload.chunks(size).collect()
                    };
                    let last = chunks.len() - 1;
                    for (i, chunk) in chunks.into_iter().enumerate() {
                        let opcode = if i == 0 { Data::Binary } else { Data::Continue };
                        let frame = Frame::message(chunk.to_vec(), OpCode::Data(opcode), i == last);
                        client.write(Message::Frame(frame)).expect("written");
                    }
                    expected.extend_from_slice(&payload);
                }
                Piece::Ping => {
                    client.write(Message::Ping(b"p".to_vec().into())).expect("written");
                    pings += 1;
                }
            }
        }
        client.flush().expect("flushed");
        let stream = std::mem::take(&mut client.get_mut().to_server);
        let mut mqtt = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= stream.len() {
                break;
            }
            let end = (at + cut).min(stream.len());
            prop_assert_eq!(layer.read_wire(&stream[at..end], &mut mqtt), Ok(()));
            at = end;
        }
        prop_assert_eq!(mqtt, expected);
        client.get_mut().from_server.extend(take_out(&mut layer));
        for _ in 0..pings {
            prop_assert_eq!(client.read().expect("a pong"), Message::Pong(b"p".to_vec().into()));
        }
        prop_assert_eq!(layer.heap_bytes(), 0);
    }

    /// Arbitrary bytes after the upgrade never panic, and an error always leaves a close
    /// frame (or a close reply) for the client.
    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (mut layer, mut client) = open();
        let mut mqtt = Vec::new();
        if layer.read_wire(&bytes, &mut mqtt).is_err() {
            client.get_mut().from_server.extend(take_out(&mut layer));
            // Pongs perhaps, then a close frame.
            let closed = std::iter::from_fn(|| client.read().ok())
                .any(|message| matches!(message, Message::Close(_)));
            prop_assert!(closed);
        }
    }

    /// Arbitrary bytes as the upgrade request never panic, and a refusal is an HTTP answer.
    #[test]
    fn arbitrary_requests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut layer = layer();
        let mut request = b"GET ".to_vec();
        request.extend(&bytes);
        let mut mqtt = Vec::new();
        if layer.read_wire(&request, &mut mqtt).is_err() {
            prop_assert!(layer.wire_out().starts_with(b"HTTP/1.1 4"));
        }
    }
}
