"""Liveness against the real binary: no client is dropped for time the broker did not run,
slow clients are closed at their deadlines, bytes that are not MQTT are refused at once, and
/healthz tells a late event loop from a stuck one.

- A host stall: the broker is stopped (SIGSTOP) for longer than its clients' keep-alive grace
  while they keep pinging and a publisher sends QoS 1 messages; after SIGCONT every client is
  still there, every PINGREQ is answered and every message acknowledged and delivered.
- Slowloris: a CONNECT dripped byte by byte is closed at the connect timeout (counted from
  accept), a PUBLISH dripped after CONNECT at ``partial_packet_timeout_ms``; a bystander is
  served throughout.
- Not MQTT: an HTTP request, a TLS ClientHello, a first packet that is not CONNECT, a wrong
  protocol name: closed as soon as read, with a log line.
- /healthz: an event loop that is late to answer but going round (one thread stopped again
  and again with ptrace, each time for less than the stuck window) keeps 200; one stopped for
  longer than the window is 503 until it runs again.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import time
from pathlib import Path

import pytest

import mqtt_packets as mp
from conftest import is_mosquitto
from helpers import closed_within, stalled_s

# --------------------------------------------------------------------------------------------
# Many raw clients from one thread
# --------------------------------------------------------------------------------------------


class FleetConn:
    """One raw 3.1.1 connection of a :class:`Fleet`."""

    def __init__(self, name: str, sock: socket.socket):
        self.name = name
        self.sock = sock
        self.buf = bytearray()
        self.connack = None
        self.closed = False
        self.pings_sent = 0
        self.pingresps = 0
        self.pubacks = set()
        self.subacks = set()
        self.publishes = []


class Fleet:
    """Raw MQTT 3.1.1 connections driven from one thread through epoll (``select`` stops at
    1024 descriptors). QoS 1 PUBLISHes received are acknowledged; everything else is counted."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.sel = selectors.DefaultSelector()
        self.conns = []

    def open(self, name: str, keepalive: int) -> FleetConn:
        sock = socket.create_connection((self.host, self.port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = FleetConn(name, sock)
        sock.sendall(mp.connect(name, keepalive=keepalive))
        self.sel.register(sock, selectors.EVENT_READ, conn)
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.conns:
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()
        self.sel.close()

    def send(self, conn: FleetConn, data: bytes) -> None:
        if not conn.closed:
            try:
                conn.sock.sendall(data)
            except OSError:
                self._gone(conn)

    def ping_all(self) -> None:
        for conn in self.conns:
            if not conn.closed:
                conn.pings_sent += 1
                self.send(conn, mp.pingreq())

    def _gone(self, conn: FleetConn) -> None:
        conn.closed = True
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def pump(self, timeout: float) -> None:
        """Reads whatever arrives within ``timeout`` and handles every whole packet."""
        for key, _ in self.sel.select(timeout):
            conn = key.data
            try:
                chunk = conn.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self._gone(conn)
                continue
            conn.buf += chunk
            while True:
                packet = self._parse(conn)
                if packet is None:
                    break
                self._handle(conn, packet)

    @staticmethod
    def _parse(conn: FleetConn):
        if len(conn.buf) < 2:
            return None
        try:
            length, used = mp.decode_remaining_length(bytes(conn.buf[:5]), 1)
        except ValueError:
            return None  # the Remaining Length is not all there yet
        total = 1 + used + length
        if len(conn.buf) < total:
            return None
        first = conn.buf[0]
        packet = mp.Packet(type=first >> 4, flags=first & 0x0F, body=bytes(conn.buf[1 + used:total]))
        del conn.buf[:total]
        return packet

    def _handle(self, conn: FleetConn, packet) -> None:
        if packet.type == mp.CONNACK:
            conn.connack = mp.decode_connack(packet).return_code
        elif packet.type == mp.PINGRESP:
            conn.pingresps += 1
        elif packet.type == mp.PUBACK:
            conn.pubacks.add(mp.decode_packet_id(packet))
        elif packet.type == mp.SUBACK:
            conn.subacks.add(mp.decode_suback(packet).packet_id)
        elif packet.type == mp.PUBLISH:
            msg = mp.decode_publish(packet)
            conn.publishes.append(msg.payload)
            if msg.qos == 1:
                self.send(conn, mp.puback(msg.packet_id))

    def run(self, seconds: float, ping_every: float, until=None) -> bool:
        """Pumps for ``seconds``, pinging every connection every ``ping_every`` seconds;
        returns early (True) once ``until()`` holds."""
        end = time.monotonic() + seconds
        next_ping = time.monotonic()
        while True:
            now = time.monotonic()
            if until is not None and until():
                return True
            if now >= end:
                return False
            if now >= next_ping:
                self.ping_all()
                next_ping += ping_every
            self.pump(max(0.0, min(0.05, end - now, next_ping - now)))


# --------------------------------------------------------------------------------------------
# A host stall
# --------------------------------------------------------------------------------------------

STALL_CLIENTS = 300
STALL_KEEP_ALIVE_S = 2  # a client silent for 3 s is closed
STALL_PING_EVERY_S = 1.0
STALL_S = 5.0  # longer than the 3 s grace
STALL_PUBLISHES = 20


@pytest.mark.timeout(60)
@pytest.mark.xfail_mosquitto("counts the stopped time against keep-alive: clients are closed after SIGCONT")
def test_a_stall_longer_than_the_keep_alive_grace_drops_nobody(broker):
    """SIGSTOP for 5 s with 300 clients at keep-alive 2 s pinging every second: the PINGREQs
    wait in the socket buffers, so after SIGCONT the broker reads them before it expires
    anyone and does not count the 5 s against them; the QoS 1 messages published during the
    stall are acknowledged and delivered."""
    fleet = Fleet(broker.host, broker.port)
    try:
        pingers = [fleet.open(f"pinger-{i}", STALL_KEEP_ALIVE_S) for i in range(STALL_CLIENTS)]
        sub = fleet.open("stall-sub", STALL_KEEP_ALIVE_S)
        pub = fleet.open("stall-pub", STALL_KEEP_ALIVE_S)
        everyone = pingers + [sub, pub]
        assert fleet.run(20, STALL_PING_EVERY_S, until=lambda: all(c.connack is not None for c in everyone))
        assert all(c.connack == 0 for c in everyone)
        fleet.send(sub, mp.subscribe(1, [("stall/#", 1)]))
        assert fleet.run(5, STALL_PING_EVERY_S, until=lambda: 1 in sub.subacks)
        fleet.run(2 * STALL_PING_EVERY_S, STALL_PING_EVERY_S)  # pings flowing

        os.kill(broker.pid, signal.SIGSTOP)
        try:
            fleet.run(STALL_S / 2, STALL_PING_EVERY_S)
            for i in range(1, STALL_PUBLISHES + 1):
                fleet.send(pub, mp.publish("stall/t", f"during-{i}".encode(), qos=1, packet_id=i))
            fleet.run(STALL_S / 2, STALL_PING_EVERY_S)
        finally:
            os.kill(broker.pid, signal.SIGCONT)

        wanted = set(range(1, STALL_PUBLISHES + 1))
        assert fleet.run(15, STALL_PING_EVERY_S,
                         until=lambda: pub.pubacks >= wanted and len(sub.publishes) >= STALL_PUBLISHES)
        # Past the 3 s grace and a timer slot after SIGCONT: whoever was to be closed is.
        fleet.run(STALL_KEEP_ALIVE_S * 1.5 + 1.5, STALL_PING_EVERY_S)
        assert fleet.run(10, 3600, until=lambda: all(c.pingresps == c.pings_sent for c in everyone)), (
            "unanswered PINGREQs: "
            + str([(c.name, c.pings_sent - c.pingresps, c.closed) for c in everyone if c.pingresps != c.pings_sent][:5]))
        closed = [c.name for c in everyone if c.closed]
        assert closed == [], f"{len(closed)} closed by the stall, e.g. {closed[:5]}"
        assert sorted(sub.publishes) == sorted(f"during-{i}".encode() for i in wanted)
    finally:
        fleet.close()
    if not is_mosquitto():
        log = broker.log()
        assert "keep-alive timeout" not in log
        assert "event loop did not run" in log, log[-2000:]


# --------------------------------------------------------------------------------------------
# Slowloris
# --------------------------------------------------------------------------------------------

DRIP_EVERY_S = 0.25
# The close comes within one 1 s timer slot of the deadline, plus scheduling slack.
DEADLINE_SLACK_S = 2.5


def drip(broker, client: mp.RawClient, data: bytes, probe, limit_s: float) -> float:
    """Sends ``data`` one byte every ``DRIP_EVERY_S``, calling ``probe()`` (a bystander's
    round trip) at each byte; returns the seconds from the first byte to the broker's close,
    which must come within ``limit_s`` (plus any time the broker reported it did not run)."""
    start = time.monotonic()
    for byte in data:
        client.try_send(bytes([byte]))
        probe()
        if closed_within(client, DRIP_EVERY_S):
            return time.monotonic() - start
        assert time.monotonic() - start < limit_s + stalled_s(broker), "still open"
    raise AssertionError("the whole packet was sent before the broker closed the connection")


@pytest.mark.starling_only
@pytest.mark.broker_options(connect_timeout_ms=2000)
def test_a_connect_dripped_byte_by_byte_is_closed_at_the_connect_timeout(broker, clients):
    bystander = clients.raw_connected(keepalive=60)
    slow = clients.raw()
    connect = mp.connect("slowloris-" + "x" * 200, keepalive=60)
    waited = drip(broker, slow, connect, bystander.ping, limit_s=2 + DEADLINE_SLACK_S)
    assert waited >= 2.0 - 0.1, f"closed after {waited:.2f} s, before the connect timeout"
    assert bystander.is_open()
    assert "closing connection: connect timeout" in broker.log()


@pytest.mark.starling_only
@pytest.mark.broker_options(partial_packet_timeout_ms=2000)
def test_a_packet_dripped_after_connect_is_closed_at_its_deadline(broker, clients):
    bystander = clients.raw_connected(keepalive=60)
    assert bystander.subscribe([("by/t", 1)]) == [1]
    sent = []

    def probe():
        # A full QoS 1 round trip through the broker for the bystander at every byte.
        sent.append(f"probe-{len(sent)}".encode())
        bystander.publish("by/t", sent[-1], qos=1)
        assert bystander.recv_publish(timeout=2, ack=True).payload == sent[-1]

    slow = clients.raw_connected(keepalive=60)
    probe()
    publish = mp.publish("drip/t", b"x" * 1000, qos=1, packet_id=1)
    slow.send(publish[:5])  # the fixed header announces 1000+ bytes
    waited = drip(broker, slow, publish[5:], probe, limit_s=2 + DEADLINE_SLACK_S)
    assert waited >= 2.0 - DRIP_EVERY_S - 0.1, f"closed after {waited:.2f} s, before the deadline"
    probe()
    assert "closing connection: partial packet timeout" in broker.log()


NOT_MQTT = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", id="http-request"),
    pytest.param(bytes.fromhex("160301020001fc0303") + b"\x00" * 32, id="tls-client-hello"),
    pytest.param(mp.publish("t", b"x" * 200)[:20], id="publish-first"),
    pytest.param(mp.connect("wrong-name", protocol_name="MQTX")[:10], id="protocol-name-MQTX",
                 marks=pytest.mark.xfail_mosquitto("waits for the whole CONNECT before reading its name")),
]


@pytest.mark.parametrize("data", NOT_MQTT)
def test_bytes_that_are_not_mqtt_are_closed_at_once(broker, clients, data):
    """Not after the connect timeout (10 s by default): at once, with no CONNACK."""
    c = clients.raw()
    c.send(data)
    assert closed_within(c, 3.0), "still open 3 s after bytes that cannot be a CONNECT"
    if not is_mosquitto():
        wait_for_log(broker, "closing connection: not MQTT")


# --------------------------------------------------------------------------------------------
# /healthz: late is not stuck
# --------------------------------------------------------------------------------------------

PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WAIT_ALL_THREADS = 0x40000000  # __WALL
# How long the loop is stopped each time while it is "late": more than the probe's 1 s
# timeout, well under the 5 s stuck window.
LATE_STOP_S = 2.5
LATE_ROUNDS = 3
STUCK_WINDOW_S = 5.0


class ThreadStopper:
    """Stops and resumes one thread of another process (ptrace: SIGSTOP would stop them
    all). Every call comes from the thread that seized it."""

    def __init__(self, tid: int):
        self.tid = tid
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.restype = ctypes.c_long
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self._call(PTRACE_SEIZE)
        self.stopped = False

    def _call(self, request: int) -> None:
        if self.libc.ptrace(request, self.tid, None, None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"ptrace({request:#x}, {self.tid}): {os.strerror(errno)}")

    def stop(self) -> None:
        self._call(PTRACE_INTERRUPT)
        os.waitpid(self.tid, WAIT_ALL_THREADS)
        self.stopped = True

    def resume(self) -> None:
        self._call(PTRACE_CONT)
        self.stopped = False

    def detach(self) -> None:
        if not self.stopped:
            self.stop()
        self._call(PTRACE_DETACH)


def wait_for_log(broker, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in broker.log():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{broker.log()[-3000:]}"
        time.sleep(0.05)


def thread_id(pid: int, name: str) -> int:
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            return int(task.name)
    raise AssertionError(f"no thread {name} in process {pid}")


@pytest.mark.starling_only
@pytest.mark.skipif(is_mosquitto(), reason="Starling's own health endpoint")
@pytest.mark.timeout(60)
def test_healthz_stays_up_while_a_loop_is_late_and_goes_down_when_it_is_stuck(tmp_path):
    from test_monitoring import Monitored

    monitored = Monitored({"event_loops": 2, "sys_interval_secs": 0}, tmp_path)
    stopper = None
    try:
        client = monitored.clients.raw_connected(keepalive=0)

        def health():
            status, body = monitored.get("/healthz")
            return status, json.loads(body)["message"]

        try:
            stopper = ThreadStopper(thread_id(monitored.broker.pid, "starling-loop-0"))
        except OSError as error:
            pytest.skip(f"ptrace is not permitted here: {error}")
        # Late but going round: stopped for 2.5 s at a time, between each a turn.
        for _ in range(LATE_ROUNDS):
            stopper.stop()
            stopped_at = time.monotonic()
            status, message = health()  # asks while the loop is stopped: its answer is late
            assert status == 200, message
            assert "late to answer" in message and "loop 0" in message, message
            time.sleep(max(0.0, LATE_STOP_S - (time.monotonic() - stopped_at)))
            stopper.resume()
            # Going round again: it answers (on a busy host maybe after a late probe or two).
            deadline = time.monotonic() + 5
            while True:
                status, message = health()
                assert status == 200, message
                if "loop 0" not in message:
                    break
                assert time.monotonic() < deadline, f"loop 0 still silent: {message}"
        assert client.is_open()
        # Stuck: stopped for longer than the window.
        stopper.stop()
        stopped_at = time.monotonic()
        while True:
            status, message = health()
            if status == 503:
                break
            assert status == 200, message
            assert time.monotonic() - stopped_at < STUCK_WINDOW_S + 5, "never reported stuck"
        # (Its last heartbeat may be up to an idle poll, 100 ms, older than the stop.)
        assert time.monotonic() - stopped_at >= STUCK_WINDOW_S - 0.5
        assert "stuck" in message and "loop 0" in message, message
        # The health watch (every second) logs the change too.
        wait_for_log(monitored.broker, "[HEALTH] healthy -> unavailable")
        stopper.resume()
        deadline = time.monotonic() + 5
        while health()[0] != 200:
            assert time.monotonic() < deadline, "still unavailable after the loop ran again"
        wait_for_log(monitored.broker, "[HEALTH] unavailable -> healthy")
        stopper.detach()
        stopper = None
        assert client.is_open()
        assert monitored.broker.log().count("-> unavailable") == 1, "it went down only once"
    finally:
        if stopper is not None:
            stopper.detach()
        monitored.close()
