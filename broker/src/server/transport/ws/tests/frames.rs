//! After the upgrade: messages both ways, pings, closes, protocol errors, limits, memory.

use super::*;

#[test]
fn a_packet_split_across_three_messages_and_three_fragments() {
    let (mut layer, mut client) = open();
    let (a, rest) = CONNECT.split_at(3);
    let (b, c) = rest.split_at(7);
    let mqtt = send(
        &mut client,
        &mut layer,
        vec![binary(a), binary(b), binary(c)],
    );
    assert_eq!(mqtt, CONNECT);
    let fragments = vec![
        Message::Frame(Frame::message(
            a.to_vec(),
            OpCode::Data(Data::Binary),
            false,
        )),
        Message::Frame(Frame::message(
            b.to_vec(),
            OpCode::Data(Data::Continue),
            false,
        )),
        Message::Frame(Frame::message(
            c.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )),
    ];
    let mqtt = send(&mut client, &mut layer, fragments);
    assert_eq!(mqtt, CONNECT);
}

#[test]
fn a_fragmented_message_across_reads_with_a_ping_between() {
    let (mut layer, _client) = open();
    let mut mqtt = Vec::new();
    let first = client_frame(OpCode::Data(Data::Binary), false, &CONNECT[..5], true);
    let ping = client_frame(OpCode::Control(Control::Ping), true, b"hi", true);
    let last = client_frame(OpCode::Data(Data::Continue), true, &CONNECT[5..], true);
    assert_eq!(layer.read_wire(&first, &mut mqtt), Ok(()));
    assert_eq!(layer.read_wire(&ping, &mut mqtt), Ok(()));
    assert!(mqtt.is_empty());
    assert_eq!(take_out(&mut layer), b"\x8a\x02hi", "the pong");
    assert_eq!(layer.read_wire(&last, &mut mqtt), Ok(()));
    assert_eq!(mqtt, CONNECT);
}

#[test]
fn two_packets_in_one_message() {
    let (mut layer, mut client) = open();
    let both = [CONNECT, PINGREQ].concat();
    assert_eq!(send(&mut client, &mut layer, vec![binary(&both)]), both);
}

#[test]
fn mqtt_output_is_one_binary_message_per_write() {
    let (mut layer, mut client) = open();
    let connack = b"\x20\x02\x00\x00";
    assert_eq!(layer.write_mqtt(connack), Ok(()));
    assert_eq!(layer.write_mqtt(&[]), Ok(()));
    let big = vec![0x30; 70_000];
    assert_eq!(layer.write_mqtt(&big), Ok(()));
    client.get_mut().from_server.extend(take_out(&mut layer));
    assert_eq!(client.read().expect("read"), binary(connack));
    assert_eq!(client.read().expect("read"), binary(&big));
    assert!(client.read().is_err(), "nothing more");
}

#[test]
fn ping_gets_pong() {
    let (mut layer, mut client) = open();
    client
        .send(Message::Ping(b"keep".to_vec().into()))
        .expect("sent");
    let (result, mqtt) = pump(client.get_mut(), &mut layer);
    assert_eq!(result, Ok(()));
    assert!(mqtt.is_empty());
    assert_eq!(
        client.read().expect("read"),
        Message::Pong(b"keep".to_vec().into())
    );
    // Pongs from the client are ignored.
    let mqtt = send(
        &mut client,
        &mut layer,
        vec![Message::Pong(Vec::new().into()), binary(PINGREQ)],
    );
    assert_eq!(mqtt, PINGREQ);
    assert!(layer.wire_out().is_empty());
}

#[test]
fn a_text_frame_closes_with_1003() {
    let (mut layer, mut client) = open();
    client.write(binary(CONNECT)).expect("written");
    client.send(Message::Text("hello".into())).expect("sent");
    let (result, mqtt) = pump(client.get_mut(), &mut layer);
    assert_eq!(result, Err(WsError::TextFrame));
    assert_eq!(mqtt, CONNECT, "what came before still counts");
    assert_eq!(close_from_server(&mut client), Some(1003));
    assert!(!layer.upgraded());
    assert_eq!(layer.write_mqtt(PINGREQ), Err(WsError::Closed));
}

#[test]
fn an_unmasked_frame_closes_with_1002() {
    let (mut layer, mut client) = open();
    let frame = client_frame(OpCode::Data(Data::Binary), true, CONNECT, false);
    let mut mqtt = Vec::new();
    let result = layer.read_wire(&frame, &mut mqtt);
    assert!(
        matches!(&result, Err(WsError::Protocol(reason)) if reason.contains("unmasked")),
        "{result:?}"
    );
    assert!(mqtt.is_empty());
    client.get_mut().from_server.extend(take_out(&mut layer));
    assert_eq!(close_from_server(&mut client), Some(1002));
}

#[test]
fn protocol_errors_close_with_1002() {
    let reserved_opcode = {
        let mut frame = bin(b"x");
        frame[0] = 0x83;
        frame
    };
    let reserved_bit = {
        let mut frame = bin(b"x");
        frame[0] |= 0x40;
        frame
    };
    let stray_continuation = client_frame(OpCode::Data(Data::Continue), true, b"x", true);
    let fragmented_ping = client_frame(OpCode::Control(Control::Ping), false, b"x", true);
    for (frame, what) in [
        (reserved_opcode, "a reserved opcode"),
        (reserved_bit, "a reserved bit"),
        (stray_continuation, "a continuation without a message"),
        (fragmented_ping, "a fragmented ping"),
    ] {
        let (mut layer, mut client) = open();
        let mut mqtt = Vec::new();
        let result = layer.read_wire(&frame, &mut mqtt);
        assert_eq!(result.map_err(|e| e.label()), Err("protocol"), "{what}");
        client.get_mut().from_server.extend(take_out(&mut layer));
        assert_eq!(close_from_server(&mut client), Some(1002), "{what}");
    }
}

/// An upgraded layer whose messages may have at most `max` bytes, and its client.
fn open_with_limit(max: usize) -> (WsLayer, Client) {
    let mut layer = layer_with(WsSettings {
        max_message_bytes: max,
        ..WsSettings::default()
    });
    let (client, _) = connect(&mut layer, request("/mqtt", &["mqtt"])).expect("upgraded");
    (layer, client)
}

#[test]
fn an_oversized_frame_closes_with_1009_from_its_header() {
    let max = 1000;
    let (mut layer, mut client) = open_with_limit(max);
    // Just the limit: fine.
    let mqtt = send(&mut client, &mut layer, vec![binary(&vec![7; max])]);
    assert_eq!(mqtt.len(), max);
    // One more byte, announced by a header and never sent: refused at once.
    let header = FrameHeader {
        mask: Some([1, 2, 3, 4]),
        ..binary_header()
    };
    let mut bytes = Vec::new();
    header
        .format(max as u64 + 1, &mut bytes)
        .expect("formatted");
    let mut mqtt = Vec::new();
    let result = layer.read_wire(&bytes, &mut mqtt);
    assert_eq!(result, Err(WsError::FrameTooBig { size: max + 1, max }));
    client.get_mut().from_server.extend(take_out(&mut layer));
    assert_eq!(close_from_server(&mut client), Some(1009));
}

#[test]
fn an_oversized_fragmented_message_closes_with_1009() {
    let max = 1000;
    let (mut layer, mut client) = open_with_limit(max);
    let part = vec![1; 600];
    client
        .write(Message::Frame(Frame::message(
            part.clone(),
            OpCode::Data(Data::Binary),
            false,
        )))
        .expect("written");
    client
        .send(Message::Frame(Frame::message(
            part,
            OpCode::Data(Data::Continue),
            true,
        )))
        .expect("sent");
    let (result, mqtt) = pump(client.get_mut(), &mut layer);
    assert_eq!(result.map_err(|e| e.label()), Err("frame_too_big"));
    assert!(mqtt.is_empty());
    assert_eq!(close_from_server(&mut client), Some(1009));
}

#[test]
fn a_close_from_the_client_is_answered() {
    let (mut layer, mut client) = open();
    client.close(None).expect("close queued");
    let (result, _) = pump(client.get_mut(), &mut layer);
    assert_eq!(result, Err(WsError::ClosedByClient(None)));
    assert!(matches!(client.read(), Ok(Message::Close(None))));
    assert!(!layer.upgraded());

    let (mut layer, mut client) = open();
    client
        .close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }))
        .expect("close queued");
    let (result, _) = pump(client.get_mut(), &mut layer);
    assert_eq!(result, Err(WsError::ClosedByClient(Some(1001))));
    assert_eq!(
        close_from_server(&mut client),
        Some(1001),
        "the status echoed"
    );
}

#[test]
fn the_broker_closes_once_and_reads_until_the_answer() {
    let (mut layer, mut client) = open();
    layer.close(1001);
    layer.close(1000);
    assert!(!layer.upgraded());
    assert_eq!(layer.write_mqtt(PINGREQ), Err(WsError::Closed));
    client.get_mut().from_server.extend(take_out(&mut layer));
    assert_eq!(close_from_server(&mut client), Some(1001));
    assert!(client.read().is_err(), "one close frame only");
    // The client's answer (tungstenite's client queued it on reading ours) ends it.
    client.flush().ok();
    let (result, _) = pump(client.get_mut(), &mut layer);
    assert_eq!(result, Err(WsError::Closed));
    assert!(layer.wire_out().is_empty(), "no reply to an answer");
}

#[test]
fn close_before_the_upgrade_sends_nothing() {
    let mut layer = layer();
    layer.close(1001);
    assert!(layer.wire_out().is_empty());
    let mut mqtt = Vec::new();
    let request = raw_request("/mqtt", "");
    assert_eq!(layer.read_wire(request.as_bytes(), &mut mqtt), Ok(()));
    assert!(layer.upgraded());
}

#[test]
fn partial_output_is_kept_until_sent() {
    let (mut layer, mut client) = open();
    assert_eq!(layer.write_mqtt(CONNECT), Ok(()));
    let all = layer.wire_out().to_vec();
    layer.consume_wire_out(3);
    assert_eq!(layer.wire_out(), &all[3..]);
    assert_eq!(layer.write_mqtt(PINGREQ), Ok(()));
    layer.consume_wire_out(all.len() - 3);
    client.get_mut().from_server.extend(&all);
    client.get_mut().from_server.extend(take_out(&mut layer));
    assert_eq!(client.read().expect("read"), binary(CONNECT));
    assert_eq!(client.read().expect("read"), binary(PINGREQ));
    assert_eq!(layer.heap_bytes(), 0);
}

#[test]
fn an_idle_upgraded_layer_holds_little() {
    let (mut layer, mut client) = open();
    let inline = std::mem::size_of::<WsLayer>();
    println!(
        "idle upgraded WsLayer: {inline} bytes inline, {} on the heap; tungstenite at work: {}",
        layer.heap_bytes(),
        std::mem::size_of::<Active>()
    );
    assert_eq!(layer.heap_bytes(), 0);
    assert!(inline <= IDLE_MAX_BYTES, "{inline}");
    // After traffic, large frames and pings included, it comes back to nothing.
    let big = vec![3; 200_000];
    client.write(binary(CONNECT)).expect("written");
    client.write(binary(&big)).expect("written");
    client.send(Message::Ping(Vec::new().into())).expect("sent");
    let frames = std::mem::take(&mut client.get_mut().to_server);
    let mut mqtt = Vec::new();
    assert_eq!(layer.read_wire(&frames, &mut mqtt), Ok(()));
    assert_eq!(mqtt.len(), CONNECT.len() + big.len());
    assert!(layer.heap_bytes() > 0, "the pong waits to be sent");
    take_out(&mut layer);
    assert_eq!(layer.heap_bytes(), 0);
    // A large frame arriving slowly holds what came, not what its header announces.
    client.send(binary(&big)).expect("sent");
    let frame = std::mem::take(&mut client.get_mut().to_server);
    let mut mqtt = Vec::new();
    assert_eq!(layer.read_wire(&frame[..1000], &mut mqtt), Ok(()));
    assert_eq!(layer.heap_bytes(), 1000);
    assert_eq!(layer.read_wire(&frame[1000..], &mut mqtt), Ok(()));
    assert_eq!(mqtt, big);
    assert_eq!(layer.heap_bytes(), 0);
    // While a fragmented message is open, tungstenite's buffers are counted.
    let first = client_frame(OpCode::Data(Data::Binary), false, &big[..5000], true);
    assert_eq!(layer.read_wire(&first, &mut mqtt), Ok(()));
    assert!(layer.heap_bytes() >= 5000, "{}", layer.heap_bytes());
    let last = client_frame(OpCode::Data(Data::Continue), true, b"", true);
    assert_eq!(layer.read_wire(&last, &mut mqtt), Ok(()));
    assert_eq!(layer.heap_bytes(), 0);
}

#[test]
fn after_the_end_only_output_is_held() {
    let mut layer = layer();
    let (result, _) = feed_raw(&mut layer, b"POST / HTTP/1.1\r\n\r\n");
    assert!(result.is_err());
    assert_eq!(layer.heap_bytes(), 0, "the response was taken");
    let mut mqtt = Vec::new();
    assert_eq!(layer.read_wire(b"x", &mut mqtt), Err(WsError::Closed));
}

#[test]
fn labels_are_distinct() {
    let errors = [
        WsError::BadRequest(String::new()),
        WsError::RequestTooLarge,
        WsError::WrongPath(String::new()),
        WsError::ForbiddenOrigin(String::new()),
        WsError::NoMqttSubprotocol(String::new()),
        WsError::TextFrame,
        WsError::FrameTooBig { size: 2, max: 1 },
        WsError::Protocol(String::new()),
        WsError::ClosedByClient(None),
        WsError::Closed,
        WsError::NotUpgraded,
    ];
    let mut labels: Vec<&str> = errors.iter().map(WsError::label).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), errors.len());
}

#[test]
fn message_limits_follow_the_packet_size() {
    assert_eq!(
        DEFAULT_WS_MAX_MESSAGE_BYTES,
        max_message_bytes_for(DEFAULT_MAX_PACKET_SIZE_BYTES)
    );
    const { assert!(DEFAULT_WS_MAX_MESSAGE_BYTES > DEFAULT_MAX_PACKET_SIZE_BYTES) };
    assert_eq!(max_message_bytes_for(usize::MAX), usize::MAX);
}
