"""Large retained sets and many subscriptions, against the real binary.

A new subscription is owed the retained message of every matching topic (MQTT-3.3.1-6), each
with RETAIN set (MQTT-3.3.1-8) at the lower of its QoS and the granted one. With tens of
thousands of them, a broker that copies them into the session's queue drops all but its queue
limit; Starling sends them as the subscriber takes them. These tests load tens of thousands of
retained messages, read them with a byte-level client that acknowledges each window as it
arrives, and check that every one arrives once, that live messages do not overtake them, that
a resumed session gets the rest, and that a bystander is served meanwhile. The last tests give
one client 100 000 subscriptions.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

import mqtt5_packets as mp5
import mqtt_packets as mp
from test_monitoring import Monitored, value

# Mosquitto queues a new subscription's retained messages in the session, where its queue
# limits drop what does not fit (the suite runs it with max_queued_messages 1000).
MOSQUITTO_QUEUES = "queues retained messages on subscribe and drops past max_queued_messages"


# --------------------------------------------------------------------------------------------
# A bulk reader: parses whole socket reads at once and acknowledges every QoS 1 PUBLISH.
# --------------------------------------------------------------------------------------------


def _varint(buf, at: int):
    """A variable byte integer at ``at``: (value, bytes used), or None if incomplete."""
    value, shift = 0, 0
    for i in range(4):
        if at + i >= len(buf):
            return None
        b = buf[at + i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    raise AssertionError("bad variable byte integer from the broker")


class Reader:
    """Reads what the broker sends on ``client``'s socket in bulk. PUBLISHes are kept as
    (topic, payload, qos, retain, subscription ids); QoS 1 ones are acknowledged as soon as a
    read is parsed (so a small in-flight window keeps moving); other packets are kept by
    type."""

    def __init__(self, client: mp.RawClient, v5: bool = False):
        self.client = client
        self.v5 = v5
        # Take over what the client read already: parsed packets, then unparsed bytes.
        self.buf = bytearray(b"".join(p.to_bytes() for p in client._pending) + client._buf)
        client._pending.clear()
        client._buf.clear()
        self.publishes: list = []
        self.others: list = []
        # While set, acknowledgements wait here (the client "reads nothing yet").
        self.held = None

    def _acknowledge(self, acks: bytes) -> None:
        if self.held is not None:
            self.held += acks
        elif acks:
            self.client.sock.sendall(acks)

    def hold_acks(self) -> None:
        self.held = bytearray()

    def release_acks(self) -> None:
        held, self.held = self.held or b"", None
        self._acknowledge(bytes(held))

    def _parse(self) -> bytes:
        buf, at, acks = self.buf, 0, bytearray()
        while True:
            if len(buf) - at < 2:
                break
            header = _varint(buf, at + 1)
            if header is None:
                break
            length, used = header
            start = at + 1 + used
            end = start + length
            if end > len(buf):
                break
            first = buf[at]
            if first >> 4 == mp.PUBLISH:
                qos, retain = (first >> 1) & 3, bool(first & 1)
                (topic_len,) = struct.unpack_from("!H", buf, start)
                p = start + 2 + topic_len
                topic = bytes(buf[start + 2 : p]).decode()
                if qos:
                    (pid,) = struct.unpack_from("!H", buf, p)
                    p += 2
                    acks += mp.puback(pid)
                ids = ()
                if self.v5:
                    props, used = mp5.decode_properties(bytes(buf[p:end]), 0)
                    p += used
                    ids = tuple(props.all(mp5.PROP_SUBSCRIPTION_IDENTIFIER))
                self.publishes.append((topic, bytes(buf[p:end]), qos, retain, ids))
            else:
                packet = mp.Packet(type=first >> 4, flags=first & 0x0F, body=bytes(buf[start:end]))
                packet.after = len(self.publishes)  # how many PUBLISHes came before it
                self.others.append(packet)
            at = end
        del buf[:at]
        return bytes(acks)

    def read(self, want: int, quiet: float = 3.0, deadline: float = 15.0) -> list:
        """Reads until ``want`` PUBLISHes have arrived, nothing arrives for ``quiet`` seconds,
        or ``deadline`` seconds pass; returns the PUBLISHes so far."""
        sock = self.client.sock
        end = time.monotonic() + deadline
        sock.settimeout(quiet)
        self._acknowledge(self._parse())  # what was read before
        while len(self.publishes) < want and time.monotonic() < end:
            try:
                chunk = sock.recv(1 << 20)
            except socket.timeout:
                break
            if not chunk:
                break
            self.buf += chunk
            self._acknowledge(self._parse())
        return self.publishes

    def read_until(self, done, deadline: float = 15.0) -> list:
        """Reads until ``done(publishes)`` holds (failing after ``deadline`` seconds)."""
        end = time.monotonic() + deadline
        while not (self.publishes and done(self.publishes)):
            left = end - time.monotonic()
            assert left > 0, f"not there after {deadline} s: {len(self.publishes)} PUBLISHes"
            self.read(len(self.publishes) + 1, quiet=min(left, 1.0), deadline=left)
        return self.publishes

    def wait_other(self, packet_type: int, timeout: float = 5.0, packet_id=None) -> mp.Packet:
        """Reads until a packet of ``packet_type`` (not a PUBLISH; with ``packet_id`` if
        given) arrives, and returns it."""
        end = time.monotonic() + timeout
        self._acknowledge(self._parse())  # what was read before
        wanted_id = None if packet_id is None else struct.pack("!H", packet_id)
        while True:
            for i, p in enumerate(self.others):
                if p.type == packet_type and wanted_id in (None, p.body[:2]):
                    return self.others.pop(i)
            left = end - time.monotonic()
            assert left > 0, f"no packet of type {packet_type} within {timeout} s"
            self.client.sock.settimeout(left)
            chunk = self.client.sock.recv(1 << 20)
            assert chunk, "connection closed"
            self.buf += chunk
            self._acknowledge(self._parse())


def retain_many(broker, prefix: str, n: int, qos: int = 1) -> None:
    """Retains ``n`` messages ``{prefix}/{i}`` with payload ``i``, pipelined, and waits for
    every acknowledgement (or, at QoS 0, for a PINGRESP after them)."""
    pub = mp.RawClient(broker.host, broker.port, timeout=20)
    pub.connect(f"loader-{prefix}")
    batch = bytearray()
    for i in range(n):
        batch += mp.publish(f"{prefix}/{i}", str(i).encode(), qos=qos, retain=True,
                            packet_id=(i % 65535) + 1 if qos else None)
        if len(batch) > (1 << 20):
            pub.send(bytes(batch))
            batch.clear()
    batch += mp.pingreq()
    pub.send(bytes(batch))
    reader = Reader(pub)
    # Packets of one connection are handled in order: the PINGRESP comes after every PUBACK.
    reader.wait_other(mp.PINGRESP, timeout=20)
    if qos:
        assert sum(p.type == mp.PUBACK for p in reader.others) == n
    pub.disconnect()


class Bystander(threading.Thread):
    """A client on its own topic publishing a QoS 1 probe to itself every 50 ms while the
    test runs; each probe must come back within ``timeout`` seconds."""

    def __init__(self, broker, timeout: float = 3.0):
        super().__init__(daemon=True)
        self.client = mp.RawClient(broker.host, broker.port, timeout=timeout)
        self.client.connect(f"bystander-{time.monotonic_ns()}")
        assert self.client.subscribe([("bystander/probe", 1)]) == [1]
        self.timeout = timeout
        self.ok = 0
        self.failures: list = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            payload = f"probe-{self.ok}".encode()
            try:
                self.client.publish("bystander/probe", payload, qos=1)
                msg = self.client.recv_publish(self.timeout, ack=True)
                assert msg.payload == payload, msg
                self.ok += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported by check()
                self.failures.append(repr(e))
                return
            self.done.wait(0.05)

    def check(self) -> None:
        self.done.set()
        self.join(timeout=self.timeout + 2)
        assert not self.failures, f"bystander probes failed: {self.failures}"
        assert self.ok >= 1, "the bystander never got a probe through"
        self.client.disconnect()


def numbers(publishes, prefix: str) -> list:
    return sorted(int(t[len(prefix) + 1 :]) for t, *_ in publishes)


def subscriber(broker, client_id: str, clean_session: bool = True) -> mp.RawClient:
    c = mp.RawClient(broker.host, broker.port, timeout=10)
    c.connect(client_id, clean_session=clean_session)
    return c


# --------------------------------------------------------------------------------------------
# Retained sets
# --------------------------------------------------------------------------------------------


@pytest.mark.broker_options(max_inflight_messages=4)
@pytest.mark.xfail_mosquitto(MOSQUITTO_QUEUES)
def test_every_retained_message_arrives_at_qos1_through_a_small_window_MQTT_3_3_1_6(broker):
    n = 50_000
    retain_many(broker, "ret", n)
    bystander = Bystander(broker)
    bystander.start()
    sub = subscriber(broker, "big-sub")
    sub.send(mp.subscribe(1, [("ret/#", 1)]))
    reader = Reader(sub)
    got = reader.read(n)
    bystander.check()
    assert mp.decode_suback(reader.wait_other(mp.SUBACK)).return_codes == [1]
    assert len(got) == n, f"{len(got)} of {n} retained messages arrived"
    assert numbers(got, "ret") == list(range(n))
    assert all(qos == 1 and retain and payload == t[4:].encode() for t, payload, qos, retain, _ in got)


@pytest.mark.starling_only
def test_a_stream_takes_nothing_into_the_session_queue(tmp_path):
    """The retained messages go out as the window frees up, never through the queue: the
    queue stays empty while they stream, nothing is queued past its limit or dropped."""
    monitored = Monitored({"max_inflight_messages": 4}, tmp_path)
    try:
        n = 20_000
        retain_many(monitored.broker, "mem", n)
        peak, done = [0.0], threading.Event()

        def sample():
            while not done.is_set():
                queued = value(monitored.metrics(), "starling_queued_messages")
                peak[0] = max(peak[0], queued)
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sub = subscriber(monitored.broker, "mem-sub")
        sub.send(mp.subscribe(1, [("mem/#", 1)]))
        got = Reader(sub).read(n)
        done.set()
        sampler.join(timeout=10)
        assert numbers(got, "mem") == list(range(n))
        text = monitored.metrics()
        assert value(text, "starling_messages_queued_past_limit_total") == 0
        assert value(text, "starling_messages_dropped_total") == 0
        assert peak[0] == 0, f"{peak[0]} messages queued while streaming"
    finally:
        monitored.close()


def test_qos0_retained_messages_arrive_complete_for_a_reader_that_keeps_up(broker):
    n = 50_000
    retain_many(broker, "q0", n, qos=0)
    sub = subscriber(broker, "q0-sub")
    sub.send(mp.subscribe(1, [("q0/+", 1)]))
    got = Reader(sub).read(n)
    assert len(got) == n, f"{len(got)} of {n} retained messages arrived"
    assert numbers(got, "q0") == list(range(n))
    assert all(qos == 0 and retain for _, _, qos, retain, _ in got)


@pytest.mark.broker_options(max_inflight_messages=2)
@pytest.mark.xfail_mosquitto(MOSQUITTO_QUEUES)
def test_a_live_message_does_not_overtake_its_topics_retained_message(broker):
    n = 20_000
    retain_many(broker, "ord", n)
    sub = subscriber(broker, "ord-sub")
    sub.send(mp.subscribe(1, [("ord/#", 1)]))
    # The subscriber acknowledges nothing yet: its window is full, the stream far from the end.
    reader = Reader(sub)
    reader.hold_acks()
    reader.wait_other(mp.SUBACK)
    pub = mp.RawClient(broker.host, broker.port)
    pub.connect("live-pub")
    pub.publish(f"ord/{n - 1}", b"live", qos=1)
    reader.release_acks()
    got = reader.read(n + 1)
    on_last = [(payload, retain) for t, payload, _, retain, _ in got if t == f"ord/{n - 1}"]
    assert on_last == [(str(n - 1).encode(), True), (b"live", False)]
    assert len(got) == n + 1


@pytest.mark.broker_options(max_inflight_messages=4)
@pytest.mark.xfail_mosquitto(MOSQUITTO_QUEUES)
def test_a_resumed_session_gets_the_rest_of_the_retained_messages(broker):
    n = 20_000
    retain_many(broker, "res", n)
    sub = subscriber(broker, "resumer", clean_session=False)
    sub.send(mp.subscribe(1, [("res/#", 1)]))
    first = Reader(sub).read(1000)
    assert len(first) >= 1000
    sub.abort()  # lost mid-stream, with a window in flight
    sub = subscriber(broker, "resumer", clean_session=False)
    seen = set(numbers(first, "res"))
    reader = Reader(sub)
    while len(seen) < n:  # what was in flight comes again (DUP), then the rest
        before = len(reader.publishes)
        seen |= set(numbers(reader.read(before + n - len(seen)), "res"))
        if len(reader.publishes) == before:
            break
    assert seen == set(range(n))


@pytest.mark.broker_options(max_inflight_messages=4)
def test_unsubscribe_ends_the_stream_and_a_second_subscribe_streams_too(broker):
    n = 20_000
    retain_many(broker, "un", n)
    retain_many(broker, "two", 300)
    sub = subscriber(broker, "unsub")
    sub.send(mp.subscribe(1, [("un/#", 1)]))
    reader = Reader(sub)
    reader.read(500)
    # A second SUBSCRIBE while un/# streams: two/# is served once un/# is over, which the
    # UNSUBSCRIBE makes now.
    sub.send(mp.subscribe(2, [("two/#", 1)]))
    sub.send(mp.unsubscribe(3, ["un/#"]))
    unsuback = reader.wait_other(mp.UNSUBACK)
    reader.read_until(lambda got: sum(t.startswith("two/") for t, *_ in got) == 300)
    # A live message after all of two/#: whatever un/# could still send would come before it.
    pub = mp.RawClient(broker.host, broker.port)
    pub.connect("sentinel-pub")
    pub.publish("two/sentinel", b"end", qos=1)
    got = reader.read_until(lambda got: got[-1][0] == "two/sentinel")
    after = [t for t, *_ in got[unsuback.after :]]
    assert not [t for t in after if t.startswith("un/")], "un/# went on after its UNSUBACK"
    assert sum(t.startswith("un/") for t, *_ in got) < n
    assert numbers([p for p in got if p[0].startswith("two/") and p[1] != b"end"], "two") == list(range(300))


@pytest.mark.starling_only
def test_v5_streamed_retained_messages_carry_the_subscription_identifier(broker):
    n = 5000
    retain_many(broker, "v5r", n)
    sub = mp5.Client5(broker.host, broker.port, timeout=10)
    sub.connect("v5-sub")
    sub.send(mp5.subscribe(1, [("v5r/#", mp5.sub_options(qos=1))], subscription_id=7))
    reader = Reader(sub, v5=True)
    got = reader.read(n)
    assert numbers(got, "v5r") == list(range(n))
    assert all(ids == (7,) and retain for _, _, _, retain, ids in got)
    # Retain Handling 2 (§3.8.3.1): subscribing again sends nothing. A stream would start
    # writing in the same turn as the SUBACK, before the live message published after it.
    sub.send(mp5.subscribe(2, [("v5r/#", mp5.sub_options(qos=1, retain_handling=2))]))
    suback = reader.wait_other(mp.SUBACK, packet_id=2)
    pub = mp.RawClient(broker.host, broker.port)
    pub.connect("v5-live")
    pub.publish("v5r/live", b"live", qos=1)
    got = reader.read_until(lambda got: got[-1][0] == "v5r/live")
    assert [(t, retain) for t, _, _, retain, _ in got[suback.after :]] == [("v5r/live", False)]


# --------------------------------------------------------------------------------------------
# Many subscriptions
# --------------------------------------------------------------------------------------------


@pytest.mark.starling_only
@pytest.mark.broker_options(max_subscriptions_per_client=200_000)
def test_one_client_holds_100000_subscriptions_while_a_bystander_is_served(broker):
    n, per_packet = 100_000, 1000
    bystander = Bystander(broker)
    bystander.start()
    sub = subscriber(broker, "many")
    stream = bytearray()
    for k, first in enumerate(range(0, n, per_packet)):
        stream += mp.subscribe(k + 1, [(f"many/{i}/+", 1) for i in range(first, first + per_packet)])
    sub.send(bytes(stream))
    reader = Reader(sub)
    for _ in range(n // per_packet):
        codes = mp.decode_suback(reader.wait_other(mp.SUBACK, timeout=15)).return_codes
        assert codes == [1] * per_packet
    pub = mp.RawClient(broker.host, broker.port)
    pub.connect("many-pub")
    for i in (0, 54_321, n - 1):
        pub.publish(f"many/{i}/x", f"to {i}".encode(), qos=1)
    got = reader.read(3)
    assert [(t, payload) for t, payload, *_ in got] == [
        (f"many/{i}/x", f"to {i}".encode()) for i in (0, 54_321, n - 1)
    ]
    stream.clear()
    for k, first in enumerate(range(0, n, per_packet)):
        stream += mp.unsubscribe(k + 1, [f"many/{i}/+" for i in range(first, first + per_packet)])
    sub.send(bytes(stream))
    for _ in range(n // per_packet):
        reader.wait_other(mp.UNSUBACK, timeout=15)
    bystander.check()
    # Nothing is left: a publish to a former subscription does not arrive before a sentinel.
    sub.send(mp.subscribe(65_000, [("many-sentinel", 1)]))
    reader.wait_other(mp.SUBACK)
    pub.publish("many/0/y", b"after", qos=1)
    pub.publish("many-sentinel", b"end", qos=1)
    assert [t for t, *_ in reader.read(4)[3:]] == ["many-sentinel"]
