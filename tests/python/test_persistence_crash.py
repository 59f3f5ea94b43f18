"""Persistence under crashes: ``crash_harness.py`` against the broker, and the client-library
behaviour the harness's exactly-once check rests on.

Starling's ``[persistence]`` modes (``sync``: nothing acknowledged is lost; ``async``: a
clean stop loses nothing, a crash only the last flush window). The seed of the random
schedule is ``STARLING_CRASH_SEED`` or, by default, new every run; it is printed and in every
failure message: ``STARLING_CRASH_SEED=N pytest tests/python/test_persistence_crash.py``
re-runs that schedule. Mosquitto's figures under the same harness are in
docs/persistence-crash-mosquitto.md.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import types

import pytest

import mqtt_packets as mp
from conftest import BROKER_KIND, is_mosquitto
from crash_harness import CrashConfig, Subscriber, run_crash, summary

SEED = int(os.environ.get("STARLING_CRASH_SEED") or time.time_ns() % 1_000_000_007)
KILLS = max(20, int(os.environ.get("STARLING_CRASH_KILLS", "20")))
# What async mode may lose on a crash: its flush interval, plus the time to write a batch
# and to be scheduled on a busy 2-core machine. A message acknowledged longer than this
# before a kill must survive it.
ASYNC_FLUSH_MS = 100
ASYNC_SLACK_S = 1.0

starling_modes = pytest.mark.skipif(
    is_mosquitto(), reason="Starling's [persistence] modes; Mosquitto's figures: "
                           "docs/persistence-crash-mosquitto.md")


@pytest.fixture
def crash(tmp_path):
    """Runs the harness against the broker under test in this test's directory."""
    def run(**kw) -> dict:
        print(f"\nSTARLING_CRASH_SEED={SEED}", flush=True)
        cfg = CrashConfig(broker=BROKER_KIND, seed=SEED, workdir=str(tmp_path / "crash"), **kw)
        r = run_crash(cfg)
        print(summary(r), flush=True)
        return r
    return run


def assert_ran(r: dict, kills: int) -> None:
    """The run did what it claims: the kills, traffic at both QoS, every subscriber drained
    up to its sentinels and every publish finished."""
    why = summary(r)
    assert r["kills"] == kills, why
    assert r["acknowledged"]["qos1"] > 0 and r["acknowledged"]["qos2"] > 0, why
    assert not r["undrained_subscribers"], why
    assert not any(r["unfinished_publishes"].values()), why
    assert r["unexpected"] == 0, why


def assert_durable(r: dict) -> None:
    why = summary(r)
    assert r["lost_total"] == {"qos1": 0, "qos2": 0}, why
    assert r["duplicates_qos2_total"] == 0, why
    assert r["sessions_lost"] == 0, why
    assert r["retained_wrong"] == 0, why


# --------------------------------------------------------------------------------------------
# sync: every acknowledgement is durable before it leaves
# --------------------------------------------------------------------------------------------


@starling_modes
@pytest.mark.timeout(300)
def test_sync_loses_nothing_acknowledged_across_kill9(crash):
    """SIGKILL at random moments, at least 20 times: every PUBACK'd / PUBREC'd message
    reaches every persistent subscriber, QoS 2 exactly once, no session is lost, every
    retained value is the last acknowledged one."""
    r = crash(kills=KILLS, persistence={"mode": "sync"})
    assert_ran(r, KILLS)
    assert_durable(r)


# --------------------------------------------------------------------------------------------
# async: a clean stop loses nothing; a crash at most the last flush window
# --------------------------------------------------------------------------------------------


@starling_modes
@pytest.mark.timeout(300)
def test_async_clean_stops_lose_nothing(crash):
    """SIGTERM and restart, repeatedly, with clients mid-traffic: the shutdown flushes the
    window, so nothing acknowledged is lost or duplicated, as in sync mode."""
    kills = 5
    r = crash(kills=kills, stop="term",
              persistence={"mode": "async", "flush_interval_ms": ASYNC_FLUSH_MS})
    assert_ran(r, kills)
    assert_durable(r)


@starling_modes
@pytest.mark.timeout(300)
def test_async_kill9_loses_only_its_window(crash):
    """What async can honestly promise under SIGKILL: acknowledgements leave before the
    write, so a crash may lose what was acknowledged in the last flush interval: messages
    (and with them retained values), and the store's record of QoS 2 handshakes of that
    window, so a QoS 2 message of the window may be delivered twice (a lost PUBREC record
    makes the broker re-send a PUBLISH it had released; a lost inbound packet id makes it
    route a publisher's DUP again). Those are reported, not asserted; so are sessions begun
    within the window before a kill (the first kill may come 0.2 s after the publishers
    connect). What it does promise: every restart recovers (the store is never left
    unreadable), nothing corrupt is delivered, and no message acknowledged and no session
    begun longer than the window before a kill is lost."""
    r = crash(kills=KILLS, persistence={"mode": "async", "flush_interval_ms": ASYNC_FLUSH_MS},
              loss_window_s=ASYNC_FLUSH_MS / 1000 + ASYNC_SLACK_S)
    assert_ran(r, KILLS)
    why = summary(r)
    assert r["sessions_lost_outside_window"] == 0, why
    assert r["lost_outside_window"] == 0, why


# --------------------------------------------------------------------------------------------
# The harness itself: it sees what a broker without persistence loses (either broker, today)
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_harness_sees_what_a_broker_without_persistence_loses(crash):
    """With nothing kept, every kill loses every session, the queues of the subscribers that
    were away in the first phase, and the retained value set only before the first kill: the
    checks that must stay at zero above are shown to count."""
    r = crash(kills=3, persistence=None)
    assert_ran(r, 3)
    why = summary(r)
    assert r["sessions_lost"] >= 3 * 5, why  # at least the five publishers, at every restart
    assert r["lost_total"]["qos1"] > 0 and r["lost_total"]["qos2"] > 0, why
    assert r["retained"]["3"]["got"] is None and r["retained_wrong"] >= 1, why


# --------------------------------------------------------------------------------------------
# paho's QoS 2 receiver across reconnects (what the exactly-once check rests on)
# --------------------------------------------------------------------------------------------


class FakeBroker:
    """A scripted server on 127.0.0.1 that plays one subscriber's QoS 2 flows by hand, to see
    what paho hands its application (no broker involved)."""

    TOPIC = "crash/fake/data/p2"

    def __init__(self, protocol: int):
        self.v5 = protocol == 5
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.host, self.port = self.listener.getsockname()
        self.conn = None

    def accept(self) -> None:
        """Takes the client's CONNECT and answers CONNACK with session present 1."""
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(10)
        assert self.read()[0] == mp.CONNECT
        self.conn.sendall(b"\x20\x03\x01\x00\x00" if self.v5 else b"\x20\x02\x01\x00")

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            assert chunk, "the client closed the connection"
            data += chunk
        return data

    def read(self) -> tuple:
        """(packet type, body) of the client's next packet."""
        first = self._exact(1)[0]
        length, mult = 0, 1
        while True:
            b = self._exact(1)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return first >> 4, self._exact(length)

    def expect(self, packet_type: int, mid: int) -> None:
        kind, body = self.read()
        assert (kind, struct.unpack("!H", body[:2])[0]) == (packet_type, mid)

    def publish(self, seq, mid: int, qos: int = 2, dup: bool = False) -> None:
        self.conn.sendall(mp.publish(self.TOPIC, f"p2:{seq}".encode(), qos=qos, dup=dup,
                                     packet_id=mid if qos else None,
                                     properties=b"\x00" if self.v5 else None))

    def pubrel(self, mid: int) -> None:
        self.conn.sendall(mp.pubrel(mid))

    def crash(self) -> None:
        """Closes the connection without a word, as a killed broker's kernel would."""
        self.conn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(params=[4, 5], ids=["v311", "v5"])
def fake(request):
    f = FakeBroker(request.param)
    yield f
    f.close()


def harness_subscriber(fake: FakeBroker) -> Subscriber:
    """The harness's own subscriber class (one paho Client for its whole life)."""
    where = types.SimpleNamespace(host=fake.host, port=fake.port)
    return Subscriber("sub", 5 if fake.v5 else 4, f"fake{time.time_ns()}", where, 2, "steady", "unused")


def connect(sub: Subscriber, fake: FakeBroker) -> None:
    sub.begin_connect(10)
    fake.accept()
    sub.finish_connect(10)


def delivered(sub: Subscriber, fake: FakeBroker, seq: int) -> int:
    """How many times the application got ``p2:seq``, once the QoS 0 sentinel that follows
    on the same connection has arrived (paho handles a connection's packets in order)."""
    fake.publish("END", 0, qos=0)
    assert sub.wait_sentinels({"p2"}, 10), "the sentinel never reached the application"
    sub.ends.clear()
    return sub.counts[("p2", seq)]


def test_paho_delivers_a_qos2_publish_resent_before_pubrel_once(fake):
    """PUBLISH, PUBREC, then the connection dies before PUBREL; after the reconnect the
    server re-sends the PUBLISH (DUP, same packet id) and then PUBREL: paho kept the message
    by packet id (``_in_messages``, kept across reconnects when the session is not clean),
    so the re-sent copy replaces it and the application gets it once."""
    sub = harness_subscriber(fake)
    try:
        connect(sub, fake)
        fake.publish(1, mid=7)
        fake.expect(mp.PUBREC, 7)
        fake.crash()
        sub.await_closed(10)
        connect(sub, fake)
        fake.publish(1, mid=7, dup=True)
        fake.expect(mp.PUBREC, 7)
        fake.pubrel(7)
        fake.expect(mp.PUBCOMP, 7)
        assert delivered(sub, fake, 1) == 1
    finally:
        sub.close()


@pytest.mark.parametrize("same_client", [True, False], ids=["same-client", "new-client"])
def test_paho_delivers_on_a_pubrel_resent_after_reconnect_only_with_the_same_client(fake, same_client):
    """PUBLISH, PUBREC, the connection dies; after the reconnect the server (which recorded
    the PUBREC) sends only PUBREL. The same paho Client delivers the message; a new Client
    object answers PUBCOMP for the unknown packet id and delivers nothing (paho #284): a loss
    the client library would cause, which is why the harness keeps one Client per session."""
    sub = harness_subscriber(fake)
    fresh = None
    try:
        connect(sub, fake)
        fake.publish(1, mid=9)
        fake.expect(mp.PUBREC, 9)
        fake.crash()
        sub.await_closed(10)
        if not same_client:
            fresh = harness_subscriber(fake)  # the same session (clean false), a new object
        receiver = sub if same_client else fresh
        connect(receiver, fake)
        fake.pubrel(9)
        fake.expect(mp.PUBCOMP, 9)
        assert delivered(receiver, fake, 1) == (1 if same_client else 0)
    finally:
        sub.close()
        if fresh is not None:
            fresh.close()


def test_paho_delivers_again_a_publish_resent_after_pubrel(fake):
    """The broker's fault the harness counts as a QoS 2 duplicate: the message was released
    (PUBREL, PUBCOMP: delivered), then after a reconnect the server re-sends the PUBLISH with
    the same packet id, as a broker that lost its record of the PUBREC would. paho has
    forgotten the packet id at PUBREL, so it takes a new message and delivers it again."""
    sub = harness_subscriber(fake)
    try:
        connect(sub, fake)
        fake.publish(1, mid=11)
        fake.expect(mp.PUBREC, 11)
        fake.pubrel(11)
        fake.expect(mp.PUBCOMP, 11)
        assert delivered(sub, fake, 1) == 1
        fake.crash()
        sub.await_closed(10)
        connect(sub, fake)
        fake.publish(1, mid=11, dup=True)
        fake.expect(mp.PUBREC, 11)
        fake.pubrel(11)
        fake.expect(mp.PUBCOMP, 11)
        assert delivered(sub, fake, 1) == 2
    finally:
        sub.close()
