"""Assertions shared by the test modules."""

from __future__ import annotations

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
