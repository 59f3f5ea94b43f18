"""`starling_access_denied_total{what=...}` on GET /metrics moves with denied publishes
(3.1.1 dropped, 5.0 0x87, `$` topics), refused subscriptions and deliveries not made on a
partly readable subscription. Starling's own (Mosquitto has no metrics endpoint).
"""

from __future__ import annotations

import pytest

from conftest import is_mosquitto
from helpers import configured, metric_value, publishes_before_sentinel, wait_until  # noqa: F401

pytestmark = [pytest.mark.starling_only,
              pytest.mark.skipif(is_mosquitto(), reason="Starling's own metrics endpoint")]

ACL = "topic read r/#\ntopic write w/#\ntopic readwrite sync\nuser admin\ntopic readwrite #\n"
NAME = "starling_access_denied_total"


@pytest.fixture
def env(configured):
    broker, clients = configured.start(acl_file=configured.file("acl", ACL))
    wait_until(lambda: _get(broker), what="the metrics endpoint")
    return broker, clients


def _get(broker):
    try:
        return broker.metrics()
    except OSError:
        return None


def denied(broker, what: str) -> float:
    return metric_value(broker.metrics(), NAME, what=what)


def wait_denied(broker, what: str, value: float) -> None:
    wait_until(lambda: denied(broker, what) == value,
               what=f"{NAME}{{what={what!r}}} == {value} (now {denied(broker, what)})")


def test_counters_start_at_zero(env):
    broker, _ = env
    text = broker.metrics()
    for what in ("publish", "subscribe", "delivery"):
        assert f'{NAME}{{what="{what}"}} 0' in text


def test_denied_publishes_counted(env):
    broker, clients = env
    c = clients.raw_connected("p311")
    c.publish("r/1", b"x", qos=0)   # read-only: dropped
    c.publish("other", b"x", qos=1)  # acknowledged, dropped
    c.publish("w/1", b"x", qos=1)    # allowed: not counted
    c5 = clients.v5("p5")
    assert c5.publish("r/1", b"x", qos=1).reason_code == 0x87
    assert c5.publish("$SYS/x", b"x", qos=2).reason_code == 0x87
    c.publish("$foo", b"x", qos=0)
    wait_denied(broker, "publish", 5)
    assert denied(broker, "subscribe") == 0 and denied(broker, "delivery") == 0


def test_refused_subscriptions_counted(env):
    broker, clients = env
    c = clients.raw_connected("s311")
    assert c.subscribe([("w/#", 0), ("r/#", 0), ("$SYS/#", 0)]) == [0x80, 0, 0x80]
    c5 = clients.v5("s5")
    assert c5.subscribe([("nowhere", 1)]) == [0x87]
    wait_denied(broker, "subscribe", 3)


def test_deliveries_not_made_counted(env):
    """`#` granted on r/# only: each message on another topic that matched the filter but
    was not delivered counts once."""
    broker, clients = env
    reader = clients.raw_connected("reader")
    assert reader.subscribe([("#", 0)]) == [0]
    writer = clients.raw_connected("writer", username="admin")
    for t in ("r/1", "w/1", "x", "r/2", "y/z"):
        writer.publish(t, b"m", qos=0)
    got = publishes_before_sentinel(writer, reader, "sync")
    assert [m.topic for m in got] == ["r/1", "r/2"]
    wait_denied(broker, "delivery", 3)


def test_retained_not_sent_counted_as_delivery(env):
    """Retained messages a subscriber may not read, skipped on SUBSCRIBE, count as
    deliveries not made too (or at least never as made)."""
    broker, clients = env
    writer = clients.raw_connected("writer", username="admin")
    for t in ("r/1", "x/1", "x/2"):
        writer.publish(t, b"kept", qos=1, retain=True)
    reader = clients.raw_connected("reader")
    assert reader.subscribe([("#", 1)]) == [1]
    assert reader.recv_publish(ack=True).topic == "r/1"
    wait_denied(broker, "delivery", 2)
