"""One client's traffic stays that client's problem: slow subscribers, floods, drops and
per-client publish rates, against the real broker.

- A subscriber that cannot keep up holds back only the publishers whose messages go to it,
  and only for ``max_publisher_hold_ms``; then its queue limit applies and its drops are
  counted in ``/metrics`` and logged once. A bystander publishing elsewhere is never held.
- A subscriber that keeps reading loses nothing, at QoS 1 or QoS 0: its publishers are
  paced by TCP instead.
- Every message not delivered to a matching subscription is counted under a reason.
- ``max_publish_rate_messages_per_sec`` / ``max_publish_rate_bytes_per_sec`` pause only the
  client over them.

Starling's own limits and metrics: skipped under Mosquitto.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import is_mosquitto
from mqtt_packets import PUBACK, PUBLISH, ConnectionClosed, RawClient, connect, decode_remaining_length, puback, publish
from test_monitoring import Monitored, value

pytestmark = [
    pytest.mark.starling_only,
    pytest.mark.skipif(is_mosquitto(), reason="Starling's own limits and metrics endpoint"),
]

PAYLOAD_1K = bytes(1024)


@pytest.fixture
def started(tmp_path):
    """Starts monitored brokers with the given flags; stops them at teardown."""
    made = []

    def start(**options) -> Monitored:
        m = Monitored(options, tmp_path)
        made.append(m)
        return m

    yield start
    for m in made:
        alive = m.broker.alive()
        log = m.broker.log()
        m.close()
        assert alive, f"the broker exited during the test:\n{log[-3000:]}"


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Polls `condition` until it is true; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def small_window(m: Monitored, client_id: str, rcvbuf: int = 4096) -> RawClient:
    """A connected raw client with a small receive buffer: what it does not read piles up in
    the broker, not in the kernel."""
    c = RawClient(m.broker.host, m.broker.port, rcvbuf=rcvbuf)
    m.clients._open.append(c)
    c.connect(client_id)
    return c


class SlowSubscriber(threading.Thread):
    """Reads `bytes_per_sec` at most (1 KiB at a time, small receive buffer), acknowledging
    every QoS 1 PUBLISH; records the first payload bytes of what it gets, in order."""

    def __init__(self, client: RawClient, bytes_per_sec: int):
        super().__init__(daemon=True)
        self.client = client
        self.pause = 1024 / bytes_per_sec
        self.got = []
        self.stop = threading.Event()
        self.error = None

    def run(self):
        buf = bytearray()
        sock = self.client.sock
        sock.settimeout(0.2)
        try:
            while not self.stop.is_set():
                try:
                    chunk = sock.recv(1024)
                except socket.timeout:
                    continue
                if not chunk:
                    raise ConnectionClosed("EOF")
                buf += chunk
                while len(buf) >= 2:
                    try:
                        rl, used = decode_remaining_length(bytes(buf[:5]), 1)
                    except ValueError:
                        break
                    total = 1 + used + rl
                    if len(buf) < total:
                        break
                    first, body = buf[0], bytes(buf[1 + used : total])
                    del buf[:total]
                    if first >> 4 == PUBLISH:
                        topic_len = int.from_bytes(body[:2], "big")
                        at = 2 + topic_len
                        if (first >> 1) & 3:
                            pid = int.from_bytes(body[at : at + 2], "big")
                            at += 2
                            sock.sendall(puback(pid))
                        self.got.append(body[at : at + 8])
                time.sleep(self.pause)
        except Exception as e:  # reported by the test
            self.error = e


class Flooder(threading.Thread):
    """Publishes 1 KiB QoS 1 messages on `topic` with `window` in flight until stopped;
    records how long each waited for its PUBACK."""

    def __init__(self, client: RawClient, topic: str, window: int = 10):
        super().__init__(daemon=True)
        self.client, self.topic, self.window = client, topic, window
        self.waits = []
        self.sent = 0
        self.stop = threading.Event()
        self.error = None

    def run(self):
        pending = {}
        try:
            while not self.stop.is_set() or pending:
                while not self.stop.is_set() and len(pending) < self.window:
                    pid = self.sent % 65535 + 1
                    self.sent += 1
                    pending[pid] = time.monotonic()
                    self.client.send(publish(self.topic, PAYLOAD_1K, qos=1, packet_id=pid))
                p = self.client.recv_packet(timeout=30)
                if p.type == PUBACK:
                    pid = int.from_bytes(p.body[:2], "big")
                    self.waits.append(time.monotonic() - pending.pop(pid))
        except Exception as e:  # reported by the test
            self.error = e


def probe(publisher: RawClient, subscriber: RawClient, topic: str, n: int, timeout: float) -> bool:
    """One bystander round trip: PUBACK and delivery of message `n` within `timeout`."""
    payload = f"probe-{n}".encode()
    pid = publisher.next_packet_id()
    publisher.send(publish(topic, payload, qos=1, packet_id=pid))
    try:
        publisher.expect(PUBACK, packet_id=pid, timeout=timeout)
        while True:
            msg = subscriber.recv_publish(timeout=timeout, ack=True)
            if msg.payload == payload:
                return True
    except (AssertionError, TimeoutError, ConnectionClosed, OSError):
        return False


def test_a_slow_subscriber_holds_back_only_its_own_publishers_and_only_for_a_while(started):
    """A subscriber reading 20 KB/s, a flooder of 1 KiB QoS 1 messages to it, and a
    bystander pair on another topic: every bystander probe succeeds within 3 s, the flooder
    waits at most about `max_publisher_hold_ms` for a PUBACK, and the slow subscriber's
    drops are counted and logged once."""
    m = started(max_queued_messages=100, max_publisher_hold_ms=1000)
    slow_id = "slow-subscriber"
    slow = small_window(m, slow_id, rcvbuf=8192)
    slow.subscribe([("flood/#", 1)])
    reader = SlowSubscriber(slow, bytes_per_sec=20_000)
    flooder = Flooder(m.clients.raw_connected("flooder"), "flood/x")
    by_pub = m.clients.raw_connected("bystander-pub")
    by_sub = m.clients.raw_connected("bystander-sub")
    by_sub.subscribe([("other/#", 1)])
    reader.start()
    flooder.start()
    wait_for(lambda: value(m.metrics(), "starling_publishers_held_total") >= 1, 10,
             "the flooder to be held back")
    results = []
    deadline = time.monotonic() + 8
    n = 0
    while time.monotonic() < deadline:
        results.append(probe(by_pub, by_sub, "other/t", n, timeout=3.0))
        n += 1
        time.sleep(0.25)
    flooder.stop.set()
    flooder.join(timeout=60)
    reader.stop.set()
    reader.join(timeout=10)
    assert flooder.error is None, flooder.error
    assert reader.error is None, reader.error
    assert all(results), f"bystander probes: {results.count(False)} of {len(results)} failed"
    assert len(results) >= 10
    # The flooder was held once for at most the hold time (1 s), then read again; whatever
    # else it waited for is the broker's work under load, far below the 7.9 s of a global hold.
    assert max(flooder.waits) < 4.0, f"longest PUBACK wait {max(flooder.waits):.2f} s"
    text = m.metrics()
    assert value(text, "starling_publisher_hold_timeouts_total") >= 1
    assert value(text, "starling_messages_dropped_total", reason="queue_full_messages") > 0
    lines = [l for l in m.broker.log().splitlines() if "subscriber too slow" in l]
    assert len(lines) == 1 and slow_id in lines[0], lines
    # The slow subscriber itself was never cut off: it got messages, in order.
    assert len(reader.got) > 10


def consume(client: RawClient, expected: int, quiet: float = 5.0, pace: float = 0.0) -> list:
    """Reads PUBLISHes (acknowledging QoS 1) until `expected` arrived or none came for
    `quiet` seconds; returns their payloads."""
    got = []
    while len(got) < expected:
        try:
            msg = client.recv_publish(timeout=quiet, ack=True)
        except (AssertionError, TimeoutError):
            break
        got.append(msg.payload)
        if pace:
            time.sleep(pace)
    return got


def flood(client: RawClient, topic: str, count: int, qos: int, tag: int) -> None:
    """Publishes `count` messages "tag:seq" (QoS 1 with up to 20 in flight)."""
    pending = set()
    for seq in range(count):
        pid = None
        if qos:
            while len(pending) >= 20:
                pending.discard(int.from_bytes(client.recv_type(PUBACK, timeout=60).body[:2], "big"))
            pid = client.next_packet_id()
            pending.add(pid)
        client.send(publish(topic, f"{tag}:{seq}".encode() + bytes(200), qos=qos, packet_id=pid))
    while pending:
        pending.discard(int.from_bytes(client.recv_type(PUBACK, timeout=60).body[:2], "big"))


@pytest.mark.parametrize("qos", [1, 0])
def test_a_subscriber_that_keeps_reading_loses_nothing_while_its_publishers_are_paced(started, qos):
    """Ten publishers flood one subscriber that reads steadily but slower than they write:
    its queue crosses the high-water mark, the publishers are held back and released, and
    every message arrives, in order per publisher; nothing is dropped."""
    # A small output buffer and receive buffer, so that QoS 0 too has to queue.
    m = started(max_queued_messages=200, max_publisher_hold_ms=10_000, max_output_buffer_bytes=4096)
    sub = small_window(m, "steady")
    sub.subscribe([("fanin/#", qos)])
    publishers = [m.clients.raw_connected(f"fanin-{i}") for i in range(10)]
    per_publisher = 300
    threads = [threading.Thread(target=flood, args=(p, f"fanin/{i}", per_publisher, qos, i), daemon=True)
               for i, p in enumerate(publishers)]
    for t in threads:
        t.start()
    got = consume(sub, 10 * per_publisher, pace=0.0005)
    for t in threads:
        t.join(timeout=60)
    text = m.metrics()
    assert value(text, "starling_messages_dropped_total") == 0
    assert len(got) == 10 * per_publisher
    assert value(text, "starling_publishers_held_total") >= 1, "the publishers were never held back"
    for i in range(10):
        seqs = [int(tag_seq.split(b":")[1]) for tag_seq in (p.split(b"\0", 1)[0] for p in got)
                if tag_seq.startswith(f"{i}:".encode())]
        assert seqs == list(range(per_publisher)), f"publisher {i}"


def test_every_message_not_delivered_is_counted_by_reason(started):
    """A QoS 0 subscriber too slow for its publisher: what it does not receive is exactly
    what /metrics counts as dropped, under named reasons."""
    m = started(max_queued_messages=50, max_publisher_hold_ms=200, max_output_buffer_bytes=4096)
    sub = small_window(m, "lossy")
    sub.subscribe([("lossy/#", 0)])
    pub = m.clients.raw_connected("lossy-pub")
    count = 10_000
    for seq in range(count):
        pub.send(publish("lossy/t", seq.to_bytes(4, "big") + bytes(1000), qos=0))
    wait_for(lambda: value(m.metrics(), "starling_messages_published_total", qos="0") >= count, 60,
             "the broker to read every message")
    got = consume(sub, count, quiet=2.0)
    text = m.metrics()
    dropped = value(text, "starling_messages_dropped_total")
    assert dropped > 0, "the test must make the subscriber drop"
    assert len(got) + dropped == count, (len(got), dropped)
    named = sum(value(text, "starling_messages_dropped_total", reason=r)
                for r in ("queue_full_messages", "queue_full_bytes"))
    assert named == dropped
    # Order is kept among what arrived.
    seqs = [int.from_bytes(p[:4], "big") for p in got]
    assert seqs == sorted(seqs)


def test_a_client_over_its_publish_rate_is_paused_and_no_one_else_is(started):
    """max_publish_rate_messages_per_sec=200: 1 000 QoS 1 messages take at least (1000 -
    200) / 200 = 4 s to be acknowledged, while a bystander's probes go straight through."""
    m = started(max_publish_rate_messages_per_sec=200)
    fast = m.clients.raw_connected("rated")
    by_pub = m.clients.raw_connected("rate-bystander-pub")
    by_sub = m.clients.raw_connected("rate-bystander-sub")
    by_sub.subscribe([("other/#", 1)])
    start = time.monotonic()
    t = threading.Thread(target=flood, args=(fast, "rated/t", 1000, 1, 0), daemon=True)
    t.start()
    probes = []
    n = 0
    while t.is_alive() and n < 40:
        probe_start = time.monotonic()
        ok = probe(by_pub, by_sub, "other/t", n, timeout=3.0)
        probes.append((ok, time.monotonic() - probe_start))
        n += 1
        time.sleep(0.1)
    t.join(timeout=60)
    elapsed = time.monotonic() - start
    assert not t.is_alive()
    assert elapsed >= 3.5, f"1 000 messages at 200/s took only {elapsed:.2f} s"
    assert all(ok for ok, _ in probes), probes
    assert value(m.metrics(), "starling_publish_rate_pauses_total", limit="messages") >= 1
    lines = [l for l in m.broker.log().splitlines() if "over its publish rate" in l]
    assert len(lines) == 1 and "rated" in lines[0], lines


def test_the_byte_rate_paces_large_messages(started):
    """max_publish_rate_bytes_per_sec=100000: 500 KiB of 1 KiB QoS 1 messages take at least
    4 s."""
    m = started(max_publish_rate_bytes_per_sec=100_000)
    client = m.clients.raw_connected("byte-rated")
    start = time.monotonic()
    pending = set()
    for _ in range(500):
        while len(pending) >= 20:
            pending.discard(int.from_bytes(client.recv_type(PUBACK, timeout=60).body[:2], "big"))
        pid = client.next_packet_id()
        pending.add(pid)
        client.send(publish("bytes/t", PAYLOAD_1K, qos=1, packet_id=pid))
    while pending:
        pending.discard(int.from_bytes(client.recv_type(PUBACK, timeout=60).body[:2], "big"))
    elapsed = time.monotonic() - start
    assert elapsed >= 3.5, f"512 KB at 100 KB/s took only {elapsed:.2f} s"
    assert value(m.metrics(), "starling_publish_rate_pauses_total", limit="bytes") >= 1
