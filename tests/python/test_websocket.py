"""WebSocket listeners (``protocol = "ws"`` and ``"wss"``): paho-mqtt with
``transport="websockets"`` (plain and over TLS), MQTT packets split across frames and several
in one frame, pings, closes, and bad input (an invalid upgrade, a wrong path, a forbidden
origin, unmasked, text and oversized frames) refused with the right HTTP status or close code,
counted, with a bystander unaffected.

The raw WebSocket client here builds its own frames: it has to send what real clients cannot
(unmasked frames, oversized ones). Starling only (the metrics are Starling's).
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time

import paho.mqtt.client as paho
import pytest

from helpers import configured, metric_value, wait_until  # noqa: F401
from mqtt_packets import RawClient
from mqtt_packets import connect as connect_packet
from mqtt_packets import publish as publish_packet
from mqtt_packets import subscribe as subscribe_packet
from tls_support import make_server_pki

pytestmark = pytest.mark.starling_only

FAILURES = "starling_listener_handshake_failures_total"
MAX_FRAME = 8 * 1024


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_server_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def ws_broker(configured, pki):
    """``ports``: ws (origin allow-list, 8 KiB frames), wss, plain tcp."""
    broker, _ = configured.start(listeners=[
        {"protocol": "ws", "ws_allowed_origins": ["https://app.example"], "ws_max_frame_bytes": MAX_FRAME},
        {"protocol": "wss", "cert_file": str(pki.dir / "server.crt"), "key_file": str(pki.dir / "server.key")},
        {},
    ], limits={"connect_timeout_ms": 2000})
    return broker


def failures(broker, reason: str) -> float:
    return metric_value(broker.metrics(), FAILURES, reason=reason)


# -- a raw WebSocket client ------------------------------------------------------------------


def frame(payload: bytes, opcode: int = 0x2, fin: bool = True, masked: bool = True) -> bytes:
    """One WebSocket frame from a client (masked unless told otherwise)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWs:
    """A TCP socket that has done the upgrade (or tried to); frames in and out by hand."""

    def __init__(self, broker, port: int, path: str = "/mqtt", origin=None, protocol="mqtt",
                 request: bytes = None):
        self.sock = socket.create_connection((broker.host, port), timeout=5)
        if request is None:
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [f"GET {path} HTTP/1.1", f"Host: {broker.host}:{port}", "Upgrade: websocket",
                     "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
            if protocol:
                lines.append(f"Sec-WebSocket-Protocol: {protocol}")
            if origin:
                lines.append(f"Origin: {origin}")
            request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.sock.sendall(request)
        self.buf = b""
        head = self._read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
        self.headers = head.decode(errors="replace")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        """(opcode, payload) of the server's next frame (never masked)."""
        b0, b1 = self._read_exact(2)
        assert not b1 & 0x80, "a server frame must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read_exact(8))
        return b0 & 0x0F, self._read_exact(n)

    def recv_mqtt(self, n: int) -> bytes:
        """``n`` bytes of MQTT from binary frames."""
        out = b""
        while len(out) < n:
            opcode, payload = self.recv_frame()
            assert opcode == 0x2, f"expected a binary frame, got opcode {opcode}"
            out += payload
        return out

    def closed(self) -> bool:
        try:
            while self.sock.recv(4096):
                pass
            return True
        except (ConnectionResetError, socket.timeout):
            return False


def close_code(ws: RawWs) -> int:
    opcode, payload = ws.recv_frame()
    assert opcode == 0x8, f"expected a close frame, got opcode {opcode}"
    return struct.unpack("!H", payload[:2])[0]


# -- real clients ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("protocol", [paho.MQTTv311, paho.MQTTv5])
def test_paho_over_websocket_reaches_a_tcp_subscriber(ws_broker, pki, scheme, protocol):
    """paho over ws:// and wss:// publishes to a TCP subscriber and receives from it."""
    port = ws_broker.ports[0] if scheme == "ws" else ws_broker.ports[1]
    tcp = RawClient(ws_broker.host, ws_broker.ports[2])
    tcp.connect(f"tcp-{scheme}-{protocol}")
    assert tcp.subscribe([("from/ws", 1)]) == [1]
    got, subscribed = threading.Event(), threading.Event()
    received = []
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"paho-{scheme}-{protocol}",
                    protocol=protocol, transport="websockets")
    c.ws_set_options(path="/mqtt", headers={"Origin": "https://app.example"})
    if scheme == "wss":
        c.tls_set(ca_certs=pki.ca)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda _c, _u, m: (received.append(m.payload), got.set())
    c.connect(ws_broker.host, port)
    c.loop_start()
    try:
        c.subscribe("to/ws", qos=1)
        assert subscribed.wait(5)
        c.publish("from/ws", b"y" * 5000, qos=1).wait_for_publish(5)
        msg = tcp.recv_publish(timeout=5, ack=True)
        assert msg.payload == b"y" * 5000
        tcp.publish("to/ws", b"from tcp", qos=1)
        assert got.wait(5)
        assert received == [b"from tcp"]
    finally:
        c.loop_stop()
        c.disconnect()


# -- framing ---------------------------------------------------------------------------------


def test_packets_split_across_frames_and_several_per_frame(ws_broker):
    """A CONNECT in three frames; SUBSCRIBE and a PUBLISH in one frame; a ping gets a pong."""
    ws = RawWs(ws_broker, ws_broker.ports[0])
    assert ws.status == 101 and "sec-websocket-protocol: mqtt" in ws.headers.lower(), ws.headers
    packet = connect_packet("split-frames")
    cuts = [0, 3, 10, len(packet)]
    for a, b in zip(cuts, cuts[1:]):
        ws.sock.sendall(frame(packet[a:b]))
    ack = ws.recv_mqtt(4)
    assert ack[0] == 0x20 and ack[3] == 0, ack
    ws.sock.sendall(frame(subscribe_packet(1, [("split/t", 0)]) + publish_packet("split/t", b"both")))
    suback_and_publish = ws.recv_mqtt(5 + 2 + 7 + 4)
    assert suback_and_publish[0] == 0x90
    assert suback_and_publish[5:].endswith(b"split/tboth")
    ws.sock.sendall(frame(b"ping!", opcode=0x9))
    assert ws.recv_frame() == (0xA, b"ping!")
    ws.sock.sendall(frame(struct.pack("!H", 1000), opcode=0x8))
    assert close_code(ws) == 1000


def test_old_clients_get_mqttv31(ws_broker):
    ws = RawWs(ws_broker, ws_broker.ports[0], protocol="mqttv3.1")
    assert ws.status == 101 and "sec-websocket-protocol: mqttv3.1" in ws.headers.lower()


# -- bad input -------------------------------------------------------------------------------


def test_bad_upgrades_get_their_status_and_are_counted(ws_broker):
    """Not a WebSocket request (400), another path (404), an origin not allowed (403), no
    MQTT subprotocol among those offered (400), plain MQTT on the ws port (400)."""
    cases = [
        (dict(request=b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n"), 400, "bad_upgrade"),
        (dict(path="/other"), 404, "bad_upgrade"),
        (dict(origin="https://evil.example"), 403, "forbidden_origin"),
        (dict(protocol="chat"), 400, "bad_upgrade"),
        (dict(request=connect_packet("mqtt-on-ws")), 400, "bad_upgrade"),
    ]
    for kwargs, status, _ in cases:
        ws = RawWs(ws_broker, ws_broker.ports[0], **kwargs)
        assert ws.status == status, (kwargs, ws.headers)
        assert ws.closed(), kwargs
    wait_until(lambda: failures(ws_broker, "bad_upgrade") >= 4 and failures(ws_broker, "forbidden_origin") >= 1,
               what="refused upgrades counted")


@pytest.mark.parametrize("bad, code", [
    (frame(b"\x10", masked=False), 1002),                        # unmasked
    (frame(b"text", opcode=0x1), 1003),                          # text
    (frame(b"\x00" * (MAX_FRAME + 1)), 1009),                    # over ws_max_frame_bytes
    (frame(b"x", opcode=0x3), 1002),                             # a reserved opcode
])
def test_bad_frames_are_closed_with_a_status_and_bystanders_carry_on(ws_broker, bad, code):
    bystander = RawWs(ws_broker, ws_broker.ports[0])
    bystander.sock.sendall(frame(connect_packet("ws-bystander")))
    assert bystander.recv_mqtt(4)[3] == 0
    bystander.sock.sendall(frame(subscribe_packet(1, [("by/ws", 0)])))
    bystander.recv_mqtt(5)
    before = failures(ws_broker, "bad_frame")

    ws = RawWs(ws_broker, ws_broker.ports[0])
    ws.sock.sendall(frame(connect_packet("bad-frames")))
    assert ws.recv_mqtt(4)[3] == 0
    ws.sock.sendall(bad)
    assert close_code(ws) == code
    assert ws.closed()
    wait_until(lambda: failures(ws_broker, "bad_frame") > before, what="bad frame counted")

    tcp = RawClient(ws_broker.host, ws_broker.ports[2])
    tcp.connect("by-pub")
    tcp.publish("by/ws", b"still here")
    data = bystander.recv_mqtt(2 + 2 + 5 + 10)
    assert data.endswith(b"by/wsstill here")


def test_an_upgrade_that_never_ends_is_bounded_by_the_connect_timeout(ws_broker):
    """A request whose headers never end is closed at the connect timeout (2 s here)."""
    s = socket.create_connection((ws_broker.host, ws_broker.ports[0]), timeout=10)
    s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")  # no blank line, ever
    started = time.monotonic()
    try:
        data = s.recv(4096)
    except ConnectionResetError:
        data = b""
    assert data == b"", f"expected the close, got {data!r}"
    assert time.monotonic() - started < 8
    wait_until(lambda: failures(ws_broker, "timeout") >= 1, what="timeout counted")
