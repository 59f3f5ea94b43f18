//! What a WebSocket connection's layer costs, counted by a counting allocator (bytes
//! requested, before malloc's own overhead), and whether `WsLayer::heap_bytes` tells the
//! truth about it. The figures are printed (run with `--nocapture`).

use std::sync::Arc;

use starling::server::transport::ws::{WsLayer, WsSettings};
use starling_alloc_count::{Counting, calls_during, snapshot};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

#[global_allocator]
static GLOBAL: Counting = Counting;

const LAYERS: usize = 1000;
/// An MQTT 3.1.1 CONNECT (client id "abcd").
const CONNECT: &[u8] = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd";
/// A CONNACK.
const CONNACK: &[u8] = b"\x20\x02\x00\x00";
/// The most allocator calls (allocations and frees) a read of a few small frames may take
/// on an idle layer: the read's copy, tungstenite's state, its read buffer, the shared
/// header `bytes` adds when a frame is split off it, each allocated and freed (measured: 8
/// for one frame, 9 for ten).
const MAX_CALLS_PER_SMALL_READ: u64 = 10;
/// Room for the MQTT bytes of a read, allocated before it is measured.
const MQTT_ROOM_BYTES: usize = 1 << 20;

fn live() -> isize {
    snapshot().live_bytes
}

/// A browser's upgrade request, with the `mqtt` subprotocol.
fn upgrade_request() -> Vec<u8> {
    b"GET /mqtt HTTP/1.1\r\nHost: broker.example\r\nConnection: Upgrade\r\n\
      Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\
      Origin: https://app.example.com\r\n\r\n"
        .to_vec()
}

/// A masked frame, as a client sends it.
fn client_frame(opcode: Data, is_final: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = Frame::message(payload.to_vec(), OpCode::Data(opcode), is_final);
    frame.header_mut().mask = Some([9, 8, 7, 6]);
    let mut out = Vec::new();
    frame.format(&mut out).expect("formatted");
    out
}

fn drain(layer: &mut WsLayer) {
    let n = layer.wire_out().len();
    layer.consume_wire_out(n);
}

/// An upgraded layer that has read a CONNECT and sent a CONNACK.
fn connected(settings: &Arc<WsSettings>, request: &[u8], frame: &[u8]) -> WsLayer {
    let mut layer = WsLayer::new(Arc::clone(settings));
    let mut mqtt = Vec::new();
    layer.read_wire(request, &mut mqtt).expect("upgraded");
    layer.read_wire(frame, &mut mqtt).expect("read");
    assert_eq!(mqtt, CONNECT);
    layer.write_mqtt(CONNACK).expect("written");
    drain(&mut layer);
    layer
}

#[test]
fn an_idle_upgraded_layer_holds_nothing_on_the_heap() {
    let settings = Arc::new(WsSettings::default());
    let request = upgrade_request();
    let frame = client_frame(Data::Binary, true, CONNECT);
    let mut layers = Vec::with_capacity(LAYERS);
    let start = live();
    for _ in 0..LAYERS {
        layers.push(connected(&settings, &request, &frame));
    }
    let held = live() - start;
    let reported: usize = layers.iter().map(WsLayer::heap_bytes).sum();
    println!(
        "{LAYERS} idle upgraded layers: {held} heap bytes ({} reported), {} bytes inline each",
        reported,
        std::mem::size_of::<WsLayer>()
    );
    assert_eq!(held, 0);
    assert_eq!(reported, 0);
}

#[test]
fn heap_bytes_tells_the_truth_mid_message() {
    let settings = Arc::new(WsSettings::default());
    let request = upgrade_request();
    let connect = client_frame(Data::Binary, true, CONNECT);
    let payload = vec![0x30; 200_000];
    let big = client_frame(Data::Binary, true, &payload);
    let first = client_frame(Data::Binary, false, &payload[..5000]);

    // A request in pieces: what came.
    let mut layer = WsLayer::new(Arc::clone(&settings));
    let held = held_by(
        &mut layer,
        &request[..100],
        "an upgrade request, 100 bytes in",
    );
    assert_eq!(held, layer.heap_bytes() as isize);

    // A large frame, 1000 bytes in: what came, not what its header announces.
    let mut layer = connected(&settings, &request, &connect);
    let held = held_by(&mut layer, &big[..1000], "a 200 kB frame, 1000 bytes in");
    assert_eq!(held, layer.heap_bytes() as isize);
    let held = held_by(&mut layer, &big[1000..], "the rest of it");
    assert_eq!(held, -1000, "all freed once it is read");

    // A fragmented message, its first 5000 bytes in: tungstenite holds them (estimated).
    let held = held_by(&mut layer, &first, "a fragmented message, 5000 bytes in");
    assert!(layer.heap_bytes() as isize >= held, "{held}");
    assert!((layer.heap_bytes() as isize) < 2 * held + 1024, "{held}");
}

/// The heap bytes `layer` holds more after reading `wire` (the MQTT bytes it yields are
/// not counted), printed with what it reports.
fn held_by(layer: &mut WsLayer, wire: &[u8], what: &str) -> isize {
    let mut mqtt = Vec::with_capacity(MQTT_ROOM_BYTES);
    let start = live();
    layer.read_wire(wire, &mut mqtt).expect("read");
    let held = live() - start;
    println!("{what}: {held} held, {} reported", layer.heap_bytes());
    held
}

#[test]
fn reading_a_small_frame_takes_few_allocations() {
    let settings = Arc::new(WsSettings::default());
    let mut layer = connected(
        &settings,
        &upgrade_request(),
        &client_frame(Data::Binary, true, CONNECT),
    );
    let pingreq = client_frame(Data::Binary, true, b"\xc0\x00");
    let publishes: Vec<u8> = (0..10)
        .flat_map(|_| client_frame(Data::Binary, true, &[0x30; 100]))
        .collect();
    let mut mqtt = Vec::with_capacity(4096);
    let small = calls_during(|| {
        layer.read_wire(&pingreq, &mut mqtt).expect("read");
    });
    let ten = calls_during(|| {
        layer.read_wire(&publishes, &mut mqtt).expect("read");
    });
    println!("allocator calls: {small} for a PINGREQ's frame, {ten} for ten 100-byte frames");
    assert!(small <= MAX_CALLS_PER_SMALL_READ, "{small}");
    assert!(ten <= MAX_CALLS_PER_SMALL_READ, "{ten}");
}
