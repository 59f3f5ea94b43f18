"""Message Expiry Interval (3.3.2.3.3 of MQTT 5.0): an expired message is not delivered, and
the subscriber sees the remaining interval."""

import math
import time

import mqtt5_packets as m5
from helpers import publishes_before_sentinel


def _expiry(seconds):
    return {m5.PROP_MESSAGE_EXPIRY_INTERVAL: seconds}


def _offline_subscriber(clients, topic):
    cid = clients.unique_id("mexp")
    c = clients.v5(cid, properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 60})
    assert c.subscribe([(topic, 1)]) == [1]
    c.disconnect()
    return cid


def _at_least(interval: int, since: float) -> int:
    """The least remaining interval a message published at ``since`` with ``interval`` seconds
    may show now: the sleeps here are lower bounds, a busy machine makes them longer."""
    return interval - math.ceil(time.monotonic() - since) - 1


def _back(clients, cid):
    c = clients.v5(cid, clean_start=False, properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 60})
    assert c.connack.session_present is True
    return c


def test_expired_queued_message_not_delivered_MQTT_3_3_2_5(clients):
    topic = "v5/mexp/queued"
    cid = _offline_subscriber(clients, topic)
    pub = clients.v5()
    pub.publish(topic, b"short-lived", qos=1, properties=_expiry(1))
    pub.publish(topic, b"no expiry", qos=1)
    time.sleep(2.2)
    c = _back(clients, cid)
    got = publishes_before_sentinel(pub, c, topic, qos=1)
    assert [m.payload for m in got] == [b"no expiry"]
    assert m5.PROP_MESSAGE_EXPIRY_INTERVAL not in got[0].properties, (
        "a message published without expiry is forwarded without one")


def test_remaining_interval_sent_to_subscriber_MQTT_3_3_2_6(clients):
    """The forwarded Message Expiry Interval is the received value minus the time waited."""
    topic = "v5/mexp/remaining"
    cid = _offline_subscriber(clients, topic)
    published = time.monotonic()
    clients.v5().publish(topic, b"ticking", qos=1, properties=_expiry(20))
    time.sleep(2.2)
    c = _back(clients, cid)
    msg = c.recv_publish(ack=True)
    remaining = msg.properties[m5.PROP_MESSAGE_EXPIRY_INTERVAL]
    assert _at_least(20, published) <= remaining <= 18, f"remaining interval {remaining} after ~2 s of 20 s"


def test_live_delivery_keeps_expiry_MQTT_3_3_2_6(clients):
    sub = clients.v5()
    sub.subscribe([("v5/mexp/live", 1)])
    clients.v5().publish("v5/mexp/live", b"now", qos=1, properties=_expiry(30))
    msg = sub.recv_publish(ack=True)
    assert msg.properties[m5.PROP_MESSAGE_EXPIRY_INTERVAL] in (29, 30)


def test_expired_retained_message_not_sent_MQTT_3_3_2_5(clients):
    pub = clients.v5()
    pub.publish("v5/mexp/retained", b"stale", qos=1, retain=True, properties=_expiry(1))
    time.sleep(2.2)
    sub = clients.v5()
    sub.subscribe([("v5/mexp/retained", 1)])
    assert publishes_before_sentinel(pub, sub, "v5/mexp/retained", qos=1) == []


def test_retained_message_carries_remaining_interval_MQTT_3_3_2_6(clients):
    pub = clients.v5()
    published = time.monotonic()
    pub.publish("v5/mexp/retained2", b"fresh", qos=1, retain=True, properties=_expiry(30))
    time.sleep(1.2)
    sub = clients.v5()
    sub.subscribe([("v5/mexp/retained2", 1)])
    msg = sub.recv_publish(ack=True)
    assert msg.retain and msg.payload == b"fresh"
    assert _at_least(30, published) <= msg.properties[m5.PROP_MESSAGE_EXPIRY_INTERVAL] <= 29


def test_unexpired_inflight_message_redelivered(clients):
    """Not yet expired when the session resumes: delivered, with the reduced interval."""
    topic = "v5/mexp/inflight"
    cid = _offline_subscriber(clients, topic)
    # 10 s: still unexpired however long a busy machine stretches the 1.1 s.
    published = time.monotonic()
    clients.v5().publish(topic, b"a", qos=1, properties=_expiry(10))
    time.sleep(1.1)
    c = _back(clients, cid)
    msg = c.recv_publish(ack=True)
    assert msg.payload == b"a"
    assert _at_least(10, published) <= msg.properties[m5.PROP_MESSAGE_EXPIRY_INTERVAL] <= 9
