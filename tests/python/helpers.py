"""Assertions shared by the test modules."""

from __future__ import annotations

import re
import select
import time

from mqtt_packets import RawClient


def assert_healthy(broker, topic: str = "health/check") -> None:
    """A fresh pair of clients can still connect, subscribe and exchange a QoS 1 message."""
    sub = RawClient(broker.host, broker.port)
    pub = RawClient(broker.host, broker.port)
    try:
        sub.connect(f"health-sub-{time.monotonic_ns()}")
        assert sub.subscribe([(topic, 1)]) == [1]
        pub.connect(f"health-pub-{time.monotonic_ns()}")
        pub.publish(topic, b"alive", qos=1)
        msg = sub.recv_publish(ack=True)
        assert (msg.topic, msg.payload) == (topic, b"alive")
    finally:
        sub.disconnect()
        pub.disconnect()


def publishes_before_sentinel(pub: RawClient, sub: RawClient, topic: str, qos: int = 0,
                              timeout: float = 5.0, ack: bool = True) -> list:
    """Barrier for negative assertions without long sleeps.

    ``pub`` publishes a sentinel on ``topic`` (to which ``sub`` is subscribed); returns every
    PUBLISH ``sub`` received before the sentinel. The broker forwards one client's messages
    to a subscriber in order (MQTT-4.6.0-6), so anything routed before the sentinel has
    arrived by then.
    """
    marker = f"sentinel-{time.monotonic_ns()}".encode()
    pub.publish(topic, marker, qos=qos)
    before = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"sentinel on {topic!r} never arrived; got {before!r}")
        msg = sub.recv_publish(left, ack=ack)  # RawClient (3.1.1) or Client5 (5.0) decoding
        if msg.topic == topic and msg.payload == marker:
            return before
        before.append(msg)


def wait_for_log(broker, *texts: str, timeout: float = 5.0) -> str:
    """Polls the broker's log until it contains every one of ``texts``; returns the log."""
    deadline = time.monotonic() + timeout
    while True:
        log = broker.log()
        if all(t in log for t in texts):
            return log
        if time.monotonic() > deadline:
            missing = [t for t in texts if t not in log]
            raise AssertionError(f"broker log lacks {missing}:\n{log[-3000:]}")
        time.sleep(0.05)
def closed_within(client: RawClient, timeout: float) -> bool:
    """Whether the server closes ``client`` within ``timeout`` (no packet may come first)."""
    ready, _, _ = select.select([client.sock], [], [], timeout)
    if not ready:
        return False
    try:
        data = client.sock.recv(1024)
    except (ConnectionResetError, ConnectionAbortedError):
        return True
    assert data == b"", f"expected a close, got {data!r}"
    return True


def stalled_s(broker) -> float:
    """Seconds Starling's event loops reported they did not run (``stalled_ms=`` in its log;
    0 for other brokers). Deadlines are pushed back by that time, so a test bounding when a
    deadline closes a client allows for it on a host too busy to schedule the broker."""
    return sum(int(ms) for ms in re.findall(r"stalled_ms=(\d+)", broker.log())) / 1000


def close_time(client: RawClient, broker, limit: float) -> float:
    """Seconds until the server closes ``client``, failing past ``limit`` plus whatever time
    the broker reported it did not run."""
    start = time.monotonic()
    while not closed_within(client, 0.1):
        waited = time.monotonic() - start
        assert waited < limit + stalled_s(broker), (
            f"server did not close the connection within {limit:.1f}s (+{stalled_s(broker):.1f}s stalled)")
    return time.monotonic() - start
