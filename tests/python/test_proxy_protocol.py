"""The PROXY protocol (v1 and v2) on a listener with ``proxy_protocol = true``: the address in
the header is the client's for the logs and the per-IP limit; a connection without a valid
header is closed; a header on a plain listener is bad input. Then a real HAProxy with
``send-proxy-v2`` in front of the broker, and a paho client behind it.

Starling only (Mosquitto 2.0 has no PROXY protocol).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from helpers import assert_healthy, closed_within, configured, metric_value, wait_for_log, wait_until  # noqa: F401
from mqtt_packets import CONNACK_BAD_USERNAME_PASSWORD, CONNACK_NOT_AUTHORIZED, ConnectionClosed, RawClient, decode_connack
from mqtt_packets import connect as connect_packet

pytestmark = pytest.mark.starling_only

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1_header(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 1883) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2_header(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 1883,
              command: int = 0x1) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if s.version == 4 else 0x21
    body = s.packed + d.packed + struct.pack("!HH", sport, dport)
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def proxied(broker, port: int, header: bytes) -> RawClient:
    """A raw client on ``port`` that has sent ``header``."""
    c = RawClient(broker.host, port)
    c.send(header)
    return c


def connected_line(log: str, peer: str) -> bool:
    return any("client connected" in line and f"peer={peer}" in line for line in log.splitlines())


@pytest.fixture
def proxy_broker(configured):
    """A broker with a PROXY listener (``ports[0]``) and a plain one (``ports[1]``)."""
    broker, _ = configured.start(listeners=[{"proxy_protocol": True}, {}],
                                 limits={"connect_timeout_ms": 1500})
    return broker


def test_v1_and_v2_headers_name_the_client(proxy_broker):
    b = proxy_broker
    port = b.ports[0]
    cases = [
        (v1_header("198.51.100.7", 41000), "198.51.100.7:41000"),
        (v1_header("2001:db8::7", 41001, "::1"), "[2001:db8::7]:41001"),
        (v2_header("203.0.113.9", 50000), "203.0.113.9:50000"),
        (v2_header("2001:db8::9", 50001, "::1"), "[2001:db8::9]:50001"),
    ]
    clients = []
    for i, (header, peer) in enumerate(cases):
        c = proxied(b, port, header)
        clients.append(c)
        c.connect(f"proxied-{i}")
        wait_until(lambda: connected_line(b.log(), peer), what=f"client connected peer={peer}")
    # LOCAL (v2) and UNKNOWN (v1): the proxy's own address is kept.
    for i, header in enumerate([v2_header("10.9.9.9", 1, command=0x0), b"PROXY UNKNOWN\r\n"]):
        c = proxied(b, port, header)
        clients.append(c)
        c.connect(f"local-{i}")
    log = b.log()
    assert not connected_line(log, "10.9.9.9:1")
    assert re.search(r"client connected.*client=local-0.*peer=127\.0\.0\.1:\d+", log), log[-2000:]
    # The header and the CONNECT in one write, and a subscriber and publisher through it.
    sub = RawClient(b.host, port)
    sub.send(v1_header("198.51.100.20", 1000))
    sub.connect("proxied-sub")
    assert sub.subscribe([("proxy/t", 1)]) == [1]
    pub = RawClient(b.host, port)
    pub.send(v2_header("198.51.100.21", 1001) + connect_packet("proxied-pub"))
    pub.recv_packet()  # CONNACK
    pub.publish("proxy/t", b"through", qos=1)
    msg = sub.recv_publish(ack=True)
    assert (msg.topic, msg.payload) == ("proxy/t", b"through")
    for c in clients + [sub, pub]:
        c.disconnect()


def test_per_ip_limit_applies_to_the_header_address(configured):
    b, _ = configured.start(listeners=[{"proxy_protocol": True}],
                            limits={"max_connections_per_ip": 1})
    port = b.ports[0]
    first = proxied(b, port, v1_header("198.51.100.30", 2000))
    first.connect("ip-a-1")
    # A second connection claiming the same source: closed once its header is read.
    second = proxied(b, port, v2_header("198.51.100.30", 2001))
    assert closed_within(second, 5), "a second connection from the same claimed source"
    # Other claimed sources (all from 127.0.0.1): accepted.
    other = proxied(b, port, v2_header("198.51.100.31", 2002))
    other.connect("ip-b-1")
    third = proxied(b, port, v1_header("2001:db8::31", 2003, "::1"))
    third.connect("ip-c-1")
    assert metric_value(b.metrics(), "starling_connections_refused_total", reason="per_ip") >= 1
    # The first one's address is free again once it is gone.
    first.disconnect()
    wait_until(lambda: _connects(b, port, v1_header("198.51.100.30", 2004), "ip-a-2"),
               what="the claimed source admitted again")
    for c in (other, third):
        c.disconnect()


def test_the_client_address_travels_with_a_handover(configured):
    """The session of a client id lives on one event loop; a connection for it accepted by
    another loop is handed over there, with the address from its header."""
    b, _ = configured.start(listeners=[{"proxy_protocol": True}], event_loops=2)
    port = b.ports[0]
    open_clients = []
    peers = [f"198.51.100.{80 + i}:{5000 + i}" for i in range(8)]
    for peer in peers:
        host, sport = peer.split(":")
        c = proxied(b, port, v2_header(host, int(sport)))
        c.connect("roaming")  # takes over the previous connection
        open_clients.append(c)
        wait_until(lambda: re.search(rf"client connected client=roaming peer={re.escape(peer)} ", b.log()),
                   what=f"roaming connected from {peer}")
    # With 8 connections over 2 loops some were handed over (all 8 on one loop: 1 in 128).
    for c in open_clients:
        c.close()


@pytest.mark.timeout(60)
def test_the_login_throttle_counts_the_header_address(configured):
    """Ten failed logins claiming one source throttle that source (3.1.1: CONNACK 0x05, the
    right password included); another claimed source, over the same TCP source, is not."""
    passwords = configured.passwords("passwords", {"alice": "right"})
    b, _ = configured.start(listeners=[{"proxy_protocol": True, "password_file": passwords}])
    port = b.ports[0]

    def attempts(src: str, password: str, n: int) -> list:
        clients = [proxied(b, port, v1_header(src, 6000 + i)) for i in range(n)]
        for i, c in enumerate(clients):
            c.send(connect_packet(f"login-{src}-{i}", username="alice", password=password.encode()))
        try:
            return [decode_connack(c.recv_packet(10)).return_code for c in clients]
        finally:
            for c in clients:
                c.close()

    # In parallel: ten failures cost one failure delay.
    assert attempts("198.51.100.90", "wrong", 10) == [CONNACK_BAD_USERNAME_PASSWORD] * 10
    assert attempts("198.51.100.90", "right", 1) == [CONNACK_NOT_AUTHORIZED]
    assert attempts("198.51.100.91", "right", 1) == [0]


def _connects(b, port: int, header: bytes, client_id: str) -> bool:
    c = proxied(b, port, header)
    try:
        c.connect(client_id)
        c.disconnect()
        return True
    except (AssertionError, OSError, EOFError, ConnectionError, ConnectionClosed):
        # Still over the limit (the earlier connection's end not handled yet): closed.
        c.close()
        return False


def test_bad_input_on_a_proxy_listener_is_closed(proxy_broker):
    b = proxy_broker
    port = b.ports[0]
    bystander = proxied(b, port, v1_header("198.51.100.40", 3000))
    bystander.connect("bystander")
    for garbage in [connect_packet("no-header"), b"GET / HTTP/1.1\r\n\r\n",
                    b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n", b"PROXY TCP9\r\n",
                    V2_SIGNATURE + b"\x2f\x11\x00\x0c" + bytes(12),
                    b"PROXY UNKNOWN " + b"x" * 200]:
        c = RawClient(b.host, port)
        c.send(garbage)
        assert closed_within(c, 5), f"{garbage!r} left open"
        c.close()
    wait_for_log(b, "no valid PROXY protocol header")
    assert metric_value(b.metrics(), "starling_connections_closed_total", reason="proxy_header") >= 6
    assert bystander.subscribe([("still/here", 0)]) == [0]
    bystander.disconnect()


def test_a_header_that_never_completes_meets_the_connect_timeout(proxy_broker):
    b = proxy_broker
    c = RawClient(b.host, b.ports[0])
    c.send(b"PROXY TCP4 198.51.100.50 ")
    start = time.monotonic()
    assert closed_within(c, 10), "a partial header was never closed"
    assert time.monotonic() - start >= 1.0
    c.close()


def test_a_proxy_header_on_a_plain_listener_is_bad_input(proxy_broker):
    b = proxy_broker
    plain = b.ports[1]
    bystander = RawClient(b.host, plain)
    bystander.connect("plain-bystander")
    for header in (v1_header("198.51.100.60", 4000), v2_header("198.51.100.60", 4001)):
        c = RawClient(b.host, plain)
        c.send(header)
        assert closed_within(c, 5), f"{header!r} accepted on a plain listener"
        c.close()
    assert bystander.subscribe([("plain/t", 0)]) == [0]
    bystander.disconnect()
    assert_healthy(_Plain(b))


class _Plain:
    """``assert_healthy`` against the plain listener."""

    def __init__(self, b):
        self.host, self.port = b.host, b.ports[1]


# --------------------------------------------------------------------------------------------
# A real HAProxy in front of the broker
# --------------------------------------------------------------------------------------------

HAPROXY_CFG = """\
global
    maxconn 256

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend mqtt
    bind {host}:{front}
    default_backend starling

backend starling
    server starling {host}:{back} send-proxy-v2
"""


@pytest.mark.timeout(60)
def test_through_haproxy_send_proxy_v2(configured):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.access(haproxy, os.X_OK):
        pytest.fail("haproxy is not installed (scripts/setup.sh installs it)")
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from conftest import free_port

    b, _ = configured.start(listeners=[{"proxy_protocol": True}])
    front = free_port()
    cfg = configured.file("haproxy.cfg", HAPROXY_CFG.format(host=b.host, front=front, back=b.ports[0]))
    log = open(configured.workdir / "haproxy.log", "wb")
    proc = subprocess.Popen([haproxy, "-db", "-f", cfg], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    clients = []
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((b.host, front), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, (configured.workdir / "haproxy.log").read_text()
                assert time.monotonic() < deadline, "haproxy did not listen"
                time.sleep(0.05)

        got = []
        received = threading.Event()
        subscribed = threading.Event()

        def make(client_id: str, source: str):
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
            done = threading.Event()
            c.on_connect = lambda cl, ud, flags, rc, props=None: done.set()
            c.connect(b.host, front, keepalive=30, bind_address=source)
            c.loop_start()
            clients.append(c)
            assert done.wait(10), f"{client_id}: no CONNACK through haproxy"
            return c

        sub = make("via-haproxy-sub", "127.0.0.2")

        def on_message(cl, ud, msg):
            got.append((msg.topic, msg.payload))
            received.set()

        sub.on_message = on_message
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.subscribe("haproxy/t", qos=1)
        assert subscribed.wait(10), "no SUBACK through haproxy"
        pub = make("via-haproxy-pub", "127.0.0.3")
        pub.publish("haproxy/t", b"hello", qos=1).wait_for_publish(10)
        assert received.wait(10), "the message did not come back through haproxy"
        assert got == [("haproxy/t", b"hello")]
        log_text = wait_until(
            lambda: (lambda t: t if re.search(r"client connected.*client=via-haproxy-pub.*peer=127\.0\.0\.3:\d+", t)
                     and re.search(r"client connected.*client=via-haproxy-sub.*peer=127\.0\.0\.2:\d+", t)
                     else None)(b.log()),
            what="the clients' own addresses in the broker log")
        assert "no valid PROXY protocol header" not in log_text
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
