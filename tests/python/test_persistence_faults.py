"""Persistence faults, black-box: Starling's ``[persistence]`` store when the disk is full,
when its file is damaged or held by another process, what a clean stop and a crash keep in
``async`` mode, what expires while the broker is down, and what a restart reports.

Every broker is a real process (``helpers.PersistentBroker``: a configuration file with a
``[persistence]`` section, its store in a directory of its own) on free loopback ports; the
clients are byte-level (``mqtt5_packets.Client5``, ``mqtt_packets.RawClient``). Each step
waits on something the broker shows (a packet, a log line, a metric, /healthz), never for a
fixed time, within bounds meant for a busy 2-core machine.

The disk-full test mounts an 8 MiB tmpfs on the store's directory (root only: it is skipped,
with the reason, where the mount is refused) and fills it with a file until ENOSPC.

Starling only: Mosquitto has neither these modes nor /metrics.
"""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import mqtt5_packets as m5
import mqtt_packets as mp
from conftest import is_mosquitto
from helpers import (PersistentBroker, _starling_bin, metric_value, promtool_check,
                     publishes_before_sentinel, wait_for_log, wait_until)

pytestmark = [
    pytest.mark.starling_only,
    pytest.mark.skipif(is_mosquitto(), reason="Starling's [persistence] store"),
]

#: Session Expiry Interval of the sessions that must outlive a restart.
LONG_EXPIRY_S = 3600
#: What a store fault or a restart may take on a busy 2-core machine.
SLOW_S = 30.0
#: The tmpfs the disk-full test fills, and the file it fills it with.
TMPFS_SIZE = "8m"
FILLER_CHUNK = 64 << 10
#: A payload larger than whatever free pages the store's file has: its commit must grow
#: the file (and so fails on a full disk).
BIG_PAYLOAD = bytes(range(256)) * 2048  # 512 KiB
#: Starling's default max_packet_size_bytes is 256 KiB: raised for BIG_PAYLOAD.
LIMITS = {"max_packet_size_bytes": 2 << 20}
#: How often a failed commit is logged at most (persist.rs FAILURE_LOG_INTERVAL_MS).
FAILURE_LOG_INTERVAL_S = 10.0
STORE_FAILED = "store write failed: persistence degraded (retrying)"
STORE_RESTORED = "store writes succeed again: persistence restored"
RECOVERED = "store opened and recovered"


# --------------------------------------------------------------------------------------------
# Brokers, clients and mounts of one test
# --------------------------------------------------------------------------------------------


class Stores:
    """What the ``stores`` fixture yields: persistent brokers, each in its own directory
    below one temporary directory, and their clients. At teardown the clients are closed,
    the brokers stopped (SIGTERM, then SIGKILL), any tmpfs unmounted, the directory removed."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.brokers = []
        self.mounts = []
        self.clients = []

    def broker(self, name: str, start: bool = True, mode: str = "sync", **kw) -> PersistentBroker:
        """A Starling broker in ``workdir/name`` with ``[persistence] mode``; ``kw``:
        ``flush_interval_ms`` (a persistence key) or PersistentBroker's own arguments."""
        persistence = {"mode": mode}
        if "flush_interval_ms" in kw:
            persistence["flush_interval_ms"] = kw.pop("flush_interval_ms")
        b = PersistentBroker("starling", self.workdir / name, persistence=persistence,
                             limits=LIMITS, **kw)
        self.brokers.append(b)
        if start:
            b.start()
        return b

    def v5(self, broker, client_id: str, **kw) -> m5.Client5:
        """A connected MQTT 5 client (``kw`` as for ``Client5.connect``)."""
        c = m5.Client5(broker.host, broker.port, timeout=SLOW_S)
        self.clients.append(c)
        c.connect(client_id, **kw)
        return c

    def v311(self, broker, client_id: str) -> mp.RawClient:
        """A connected MQTT 3.1.1 client with a clean session."""
        c = mp.RawClient(broker.host, broker.port, timeout=SLOW_S)
        self.clients.append(c)
        c.connect(client_id)
        return c

    def tmpfs(self, path: Path, size: str) -> None:
        """Mounts a tmpfs of ``size`` on ``path``; skips the test where that is refused."""
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs on {path} (root is needed): {proc.stderr.strip()}")
        self.mounts.append(path)

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for b in self.brokers:
            b.stop()
        for path in self.mounts:
            if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode:
                subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture
def stores():
    env = Stores(Path(tempfile.mkdtemp(prefix="mqtt-starling-faults-")))
    try:
        yield env
    finally:
        env.close()
        shutil.rmtree(env.workdir, ignore_errors=True)


def leave_session(stores: Stores, broker, client_id: str, topic_filter: str = "t/#",
                  expiry: int = LONG_EXPIRY_S) -> None:
    """An MQTT 5 session with Session Expiry Interval ``expiry`` subscribed to
    ``topic_filter`` at QoS 1, left by a DISCONNECT: what is published to it is stored for
    it. Returns once the broker has logged the DISCONNECT."""
    done = f"client disconnected (DISCONNECT) client={client_id} "
    before = broker.log().count(done)
    c = stores.v5(broker, client_id, properties={m5.PROP_SESSION_EXPIRY_INTERVAL: expiry})
    assert c.subscribe([(topic_filter, 1)]) == [1]
    c.disconnect()
    wait_until(lambda: broker.log().count(done) > before, SLOW_S, f"{client_id}'s DISCONNECT")


def resume(stores: Stores, broker, client_id: str, expiry: int = LONG_EXPIRY_S) -> m5.Client5:
    """``client_id`` connects again with Clean Start 0 (``.connack.session_present`` says
    whether the broker still had its session)."""
    return stores.v5(broker, client_id, clean_start=False,
                     properties={m5.PROP_SESSION_EXPIRY_INTERVAL: expiry})


def metric(broker, name: str) -> float:
    return metric_value(broker.metrics(), name)


def recovered_counts(broker) -> dict:
    """The key=value fields of the broker's last "store opened and recovered" log line."""
    lines = [line for line in broker.log().splitlines() if RECOVERED in line]
    assert lines, f"no {RECOVERED!r} line:\n{broker.log()[-3000:]}"
    return dict(re.findall(r"(\w+)=(\S+)", lines[-1]))


def fill_disk(directory: Path) -> Path:
    """Writes a file in ``directory`` until its file system is full (ENOSPC); returns it.
    Unbuffered, so that nothing is left to write when the file is closed."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(b"\0" * FILLER_CHUNK)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return filler


# --------------------------------------------------------------------------------------------
# 1. The disk fills up (sync mode)
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_disk_full_holds_acks_refuses_new_qos12_serves_qos0_and_recovers(stores):
    """The store's directory is a full tmpfs. A QoS 1 PUBLISH whose message must be stored
    gets no PUBACK while the commit fails (its output is held, the commit retried every
    500 ms); /healthz says degraded, ``starling_store_degraded`` is 1, failures count up and
    the broker logs the store's error (with the file) once, not at every retry. Meanwhile
    new QoS 1/2 PUBLISHes are refused (MQTT 5: PUBACK / PUBREC 0x97; 3.1.1: the connection is
    closed with no PUBACK), QoS 0 flows, and no other client is disconnected. Once the space
    is freed the held PUBACK (success) goes out, the broker is healthy again, QoS 1 is
    acknowledged, and the offline subscriber gets the held message (it was stored) and none
    of the refused ones, also after a clean restart on that store."""
    b = stores.broker("full", start=False)
    stores.tmpfs(b.store_dir, TMPFS_SIZE)
    b.start()
    leave_session(stores, b, "keeper")
    # A durable commit before the fill: the PUBACK leaves once everything before it is in.
    warm = stores.v5(b, "warm")
    warm.publish("t/warm", b"before the disk filled", qos=1, expect_reason=m5.RC_SUCCESS)
    q0_sub = stores.v311(b, "q0-sub")
    assert q0_sub.subscribe([("q0/#", 0)]) == [0]
    q0_pub = stores.v311(b, "q0-pub")
    held = stores.v5(b, "held")
    assert metric(b, "starling_store_degraded") == 0

    filled = time.monotonic()
    filler = fill_disk(b.store_dir)
    # (a) The large message must be stored for keeper: the commit fails, the PUBACK is held.
    held_id = held.next_packet_id()
    held.send(m5.publish("t/big", BIG_PAYLOAD, qos=1, packet_id=held_id))
    wait_until(lambda: metric(b, "starling_store_degraded") == 1, SLOW_S, "starling_store_degraded 1")
    health = wait_until(lambda: (h := b.health())["status"] == "degraded" and h, SLOW_S,
                        "/healthz degraded")
    assert health["http_status"] == 200 and "store" in health["message"], health
    wait_until(lambda: metric(b, "starling_store_commit_failures_total") >= 3, SLOW_S,
               "commits retried (3 failures)")
    failed_lines = [line for line in b.log().splitlines() if STORE_FAILED in line]
    allowed = 1 + int((time.monotonic() - filled) / FAILURE_LOG_INTERVAL_S)
    assert 1 <= len(failed_lines) <= allowed, failed_lines
    assert str(b.store_file) in failed_lines[0] and "no space left" in failed_lines[0], failed_lines[0]
    held.expect_no_packet(0.1)  # after three failed commits: held, not lost in a queue

    # (b) A new MQTT 5 client: QoS 1 and QoS 2 refused with 0x97 Quota exceeded.
    fresh = stores.v5(b, "fresh")
    fresh.publish("t/refused", b"qos1 refused", qos=1, expect_reason=m5.RC_QUOTA_EXCEEDED)
    fresh.publish("t/refused", b"qos2 refused", qos=2, expect_reason=m5.RC_QUOTA_EXCEEDED)
    # (c) A 3.1.1 client cannot be told: its connection is closed, no PUBACK first.
    old = stores.v311(b, "old")
    old.send(mp.publish("t/refused", b"3.1.1 refused", qos=1, packet_id=1))
    assert old.expect_closed(SLOW_S) == []
    wait_until(lambda: metric(b, "starling_store_refused_publishes_total") >= 3, SLOW_S,
               "three refusals counted")
    # (d) QoS 0 flows between clients with clean sessions.
    q0_pub.publish("q0/x", b"zero", qos=0)
    msg = q0_sub.recv_publish(SLOW_S)
    assert (msg.topic, msg.payload, msg.qos) == ("q0/x", b"zero", 0)
    # (e) Nobody else was disconnected (held's output is held: it is checked after).
    for c in (q0_sub, q0_pub, fresh, warm):
        assert c.is_open(SLOW_S), "a client was disconnected while the store was degraded"
    held.expect_no_packet(0.1)
    assert metric(b, "starling_store_degraded") == 1, "the disk is still full"

    filler.unlink()
    ack = m5.decode_ack(held.expect(mp.PUBACK, held_id, SLOW_S))
    assert ack.reason_code == m5.RC_SUCCESS, ack
    wait_until(lambda: metric(b, "starling_store_degraded") == 0, SLOW_S, "starling_store_degraded 0")
    health = b.health()
    assert health["status"] == "healthy", health
    wait_for_log(b, STORE_RESTORED, timeout=SLOW_S)
    fresh.publish("t/after", b"after the disk was freed", qos=1, expect_reason=m5.RC_SUCCESS)
    assert held.is_open(SLOW_S) and q0_sub.is_open(SLOW_S)

    expected = [("t/warm", b"before the disk filled"), ("t/big", BIG_PAYLOAD),
                ("t/after", b"after the disk was freed")]
    keeper = resume(stores, b, "keeper")
    assert keeper.connack.session_present is True
    got = publishes_before_sentinel(fresh, keeper, "t/end", qos=1, timeout=SLOW_S, ack=False)
    assert [(m.topic, m.payload) for m in got] == expected, [(m.topic, len(m.payload)) for m in got]
    keeper.disconnect()  # nothing acknowledged: all of it stays in flight for keeper

    b.terminate()
    b.restart()  # on the same tmpfs
    keeper = resume(stores, b, "keeper")
    assert keeper.connack.session_present is True, "the session did not survive the restart"
    again = []
    while not again or again[-1].topic != "t/end":
        again.append(keeper.recv_publish(SLOW_S, ack=True))
    assert [(m.topic, m.payload) for m in again[:-1]] == expected
    assert all(m.dup for m in again), "messages sent before the restart are sent again with DUP"


# --------------------------------------------------------------------------------------------
# 2. A damaged store
# --------------------------------------------------------------------------------------------


def damage(file: Path, how: str, payload: bytes) -> None:
    """Truncates ``file`` to half, or flips 64 bytes in the middle of the stored ``payload``."""
    data = bytearray(file.read_bytes())
    if how == "truncated":
        del data[len(data) // 2:]
    else:
        at = data.find(payload[:4096])
        assert at >= 0, "the stored payload is not in the file"
        middle = at + len(payload) // 2
        for i in range(middle, middle + 64):
            data[i] ^= 0x5A
    file.write_bytes(bytes(data))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["truncated", "overwritten"])
def test_a_damaged_store_is_refused_with_what_to_do(stores, how):
    """A store with a session, a queued message and a retained message, stopped cleanly,
    then damaged: truncated to half, or 64 bytes overwritten in the middle of the stored
    message. The broker must not start on it (no silent empty start, no silent loss of what
    was durable): it exits non-zero, naming the file and what to do, and leaves the file as
    it was; ``starling store DIR`` says the same. ``--check-config`` does not open the
    store: it passes the same configuration.
    Restoring the file from a copy taken before the damage brings everything back."""
    b = stores.broker(f"damaged-{how}")
    leave_session(stores, b, "keeper")
    queued = b"queued message " * 14_000  # 210 kB: much of the file, its middle
    p = stores.v5(b, "p")
    p.publish("r/kept", b"retained", qos=1, retain=True, expect_reason=m5.RC_NO_MATCHING_SUBSCRIBERS)
    p.publish("t/queued", queued, qos=1, expect_reason=m5.RC_SUCCESS)
    p.disconnect()
    b.terminate()
    backup = b.store_file.read_bytes()
    damage(b.store_file, how, queued)
    damaged = b.store_file.read_bytes()

    code, output = b.start_refused()
    assert code != 0, output
    refusal = [line for line in output.splitlines() if "could not start" in line]
    assert refusal, output
    for words in (str(b.store_file), "the store is damaged", "restore it from a backup",
                  "move the directory aside"):
        assert words in refusal[0], refusal[0]
    assert b.store_file.read_bytes() == damaged, "the refused start changed the file"
    # `starling store DIR` (to look at a store) reports the same; --check-config checks the
    # configuration, not the store's data: it passes.
    look = subprocess.run([str(_starling_bin()), "store", str(b.store_dir)], capture_output=True,
                          text=True, timeout=SLOW_S)
    assert look.returncode != 0 and str(b.store_file) in look.stderr, look
    assert "the store is damaged" in look.stderr, look.stderr
    assert b.store_file.read_bytes() == damaged, "`starling store` changed the file"
    assert "valid" in b.check_config()

    b.store_file.write_bytes(backup)
    b.start()
    keeper = resume(stores, b, "keeper")
    assert keeper.connack.session_present is True
    msg = keeper.recv_publish(SLOW_S, ack=True)
    assert (msg.topic, msg.payload) == ("t/queued", queued)
    reader = stores.v5(b, "reader")
    reader.subscribe([("r/#", 1)])
    msg = reader.recv_publish(SLOW_S, ack=True)
    assert (msg.topic, msg.payload, msg.retain) == ("r/kept", b"retained", True)


# --------------------------------------------------------------------------------------------
# 3. A store held by another broker
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_second_broker_on_the_same_store_is_refused_and_the_first_keeps_serving(stores):
    """A second broker with the same ``[persistence] path`` (its own port and files) exits
    non-zero with "open in another process" and the file's name; the first still takes
    QoS 1 (a durable commit), is not degraded, and its store still holds what it wrote."""
    first = stores.broker("first")
    leave_session(stores, first, "keeper")
    second = stores.broker("second", start=False, store_dir=first.store_dir)
    assert second.port != first.port

    code, output = second.start_refused()
    assert code != 0, output
    refusal = [line for line in output.splitlines() if "could not start" in line]
    assert refusal, output
    assert "open in another process" in refusal[0] and str(first.store_file) in refusal[0], refusal[0]

    assert first.alive()
    p = stores.v5(first, "p")
    p.publish("t/after", b"after the second start", qos=1, expect_reason=m5.RC_SUCCESS)
    p.disconnect()
    assert metric(first, "starling_store_degraded") == 0
    assert metric(first, "starling_store_commit_failures_total") == 0
    first.terminate()
    first.restart()
    keeper = resume(stores, first, "keeper")
    assert keeper.connack.session_present is True
    msg = keeper.recv_publish(SLOW_S, ack=True)
    assert (msg.topic, msg.payload) == ("t/after", b"after the second start")


# --------------------------------------------------------------------------------------------
# 4. async mode: a clean stop flushes, a crash loses the window
# --------------------------------------------------------------------------------------------

ASYNC_MESSAGES = 5


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_async_clean_stop_keeps_the_window_and_a_kill_loses_it(stores, stop):
    """``mode = "async"`` with ``flush_interval_ms = 60000``: in this test nothing is
    flushed but by a clean stop. The subscriber's session is made durable by a first clean
    stop; then QoS 1 messages are acknowledged for it while it is offline. A SIGTERM stop
    flushes them: all come back after the restart. Under SIGKILL they were only in memory,
    acknowledged before any write (what async trades for its speed: a crash loses up to
    ``flush_interval_ms`` of acknowledged changes), so at least one is lost; the session,
    durable before the window, is not."""
    b = stores.broker(f"async-{stop}", mode="async", flush_interval_ms=60_000)
    leave_session(stores, b, "keeper")
    b.terminate()
    b.restart()
    p = stores.v5(b, "p")
    sent = [(f"t/{i}", f"window {i}".encode()) for i in range(ASYNC_MESSAGES)]
    for topic, payload in sent:
        p.publish(topic, payload, qos=1, expect_reason=m5.RC_SUCCESS)
    p.disconnect()
    if stop == "sigterm":
        b.terminate()
    else:
        b.crash()
    b.restart()

    keeper = resume(stores, b, "keeper")
    assert keeper.connack.session_present is True, "the session was durable before the window"
    end = stores.v5(b, "end")
    got = [(m.topic, m.payload) for m in publishes_before_sentinel(end, keeper, "t/end", qos=1,
                                                                   timeout=SLOW_S)]
    if stop == "sigterm":
        assert got == sent
    else:
        kept = [m for m in sent if m in got]
        assert len(kept) < len(sent), f"a kill 60 s into nothing flushed lost nothing: {got}"


# --------------------------------------------------------------------------------------------
# 5. Expiry while the broker is down
# --------------------------------------------------------------------------------------------

SHORT_EXPIRY_S = 2


@pytest.mark.timeout(120)
def test_sessions_and_retained_messages_expire_while_the_broker_is_down(stores):
    """A session with Session Expiry Interval 2 s and a retained message with Message
    Expiry Interval 2 s; the broker is stopped cleanly and restarted once 2 s have passed:
    that session is gone (CONNACK session present 0) and so is that retained message, while
    a session with 3600 s and a retained message without expiry are still there. The
    recovery's log line counts what expired, when the stop came before the 2 s did."""
    b = stores.broker("expiry")
    leave_session(stores, b, "short", expiry=SHORT_EXPIRY_S)
    short_left = time.monotonic()
    leave_session(stores, b, "long")
    p = stores.v5(b, "p")
    p.publish("r/short", b"expires", qos=1, retain=True,
              properties={m5.PROP_MESSAGE_EXPIRY_INTERVAL: SHORT_EXPIRY_S})
    p.publish("r/long", b"stays", qos=1, retain=True)
    p.disconnect()
    b.terminate()
    stopped_in_time = time.monotonic() - short_left < SHORT_EXPIRY_S
    # The wall clock passing is the behaviour under test.
    wait_until(lambda: time.monotonic() - short_left > SHORT_EXPIRY_S + 0.5, SLOW_S,
               "the expiry intervals to pass")
    b.restart()

    counts = recovered_counts(b)
    assert (counts["sessions"], counts["retained"]) == ("1", "1"), counts
    if stopped_in_time:
        assert (counts["sessions_expired"], counts["retained_expired"]) == ("1", "1"), counts
    short = resume(stores, b, "short", expiry=SHORT_EXPIRY_S)
    assert short.connack.session_present is False
    long = resume(stores, b, "long")
    assert long.connack.session_present is True
    reader = stores.v5(b, "reader")
    reader.subscribe([("r/#", 1)])
    got = publishes_before_sentinel(reader, reader, "r/end", qos=1, timeout=SLOW_S)
    assert [(m.topic, m.payload, m.retain) for m in got] == [("r/long", b"stays", True)]


# --------------------------------------------------------------------------------------------
# 6. What a restart reports
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_recovery_is_logged_and_in_metrics(stores):
    """Three stored sessions holding five queued messages between them, and two retained
    messages; after a clean restart the "store opened and recovered" line counts them, and
    /metrics (which promtool passes) has the same numbers in
    ``starling_store_recovered_sessions`` / ``_messages`` / ``_retained`` and the time in
    ``starling_store_recovery_seconds``."""
    b = stores.broker("recovery")
    for name, topic_filter in [("s0", "t/a"), ("s1", "t/a"), ("s2", "t/b")]:
        leave_session(stores, b, name, topic_filter)
    p = stores.v5(b, "p")
    for topic in ("t/a", "t/a", "t/b"):  # 2 + 2 + 1 queued
        p.publish(topic, b"queued", qos=1, expect_reason=m5.RC_SUCCESS)
    for topic in ("r/1", "r/2"):
        p.publish(topic, b"retained", qos=1, retain=True)
    p.disconnect()
    b.terminate()
    b.restart()

    counts = recovered_counts(b)
    assert (counts["sessions"], counts["messages"], counts["retained"]) == ("3", "5", "2"), counts
    assert str(b.store_file) in counts["path"]
    text = b.metrics()
    promtool_check(text)
    for name, want in [("sessions", 3), ("messages", 5), ("retained", 2)]:
        assert metric_value(text, f"starling_store_recovered_{name}") == want, name
    assert re.search(r"^starling_store_recovery_seconds \S+$", text, re.M), "no recovery time"
    assert metric_value(text, "starling_store_recovery_seconds") == int(counts["recovery_ms"]) / 1000
