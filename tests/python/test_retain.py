"""Retained messages (3.3.1.3 of MQTT 3.1.1)."""

import mqtt_packets as mp
from helpers import publishes_before_sentinel


def _first_publish_after_subscribe(clients, topic_filter, qos=1, live_topic=None):
    """Subscribes a fresh client, then publishes a live (non-retained) message on
    ``live_topic``; returns what arrived before the live one (the retained messages)."""
    sub = clients.raw_connected()
    live_topic = live_topic or topic_filter
    sub.subscribe([(topic_filter, qos)])
    pub = clients.raw_connected()
    return publishes_before_sentinel(pub, sub, live_topic, qos=qos)


def test_retained_delivered_on_subscribe_with_retain_1_MQTT_3_3_1_6_MQTT_3_3_1_8(clients):
    pub = clients.raw_connected()
    pub.publish("ret/a", b"last known", qos=1, retain=True)
    pub.disconnect()  # retained messages are not session state (MQTT-3.1.2-7)
    sub = clients.raw_connected()
    sub.subscribe([("ret/a", 1)])
    msg = sub.recv_publish(ack=True)
    assert (msg.topic, msg.payload, msg.retain, msg.qos) == ("ret/a", b"last known", True, 1)


def test_live_delivery_has_retain_0_MQTT_3_3_1_9(clients):
    sub = clients.raw_connected()
    sub.subscribe([("ret/live", 1)])
    pub = clients.raw_connected()
    pub.publish("ret/live", b"now", qos=1, retain=True)
    msg = sub.recv_publish(ack=True)
    assert (msg.payload, msg.retain) == (b"now", False)


def test_retained_replaced_by_newer_MQTT_3_3_1_5(clients):
    pub = clients.raw_connected()
    pub.publish("ret/r", b"old", qos=1, retain=True)
    pub.publish("ret/r", b"new", qos=1, retain=True)
    got = _first_publish_after_subscribe(clients, "ret/r")
    assert [(m.payload, m.retain) for m in got] == [(b"new", True)]


def test_qos0_retained_replaces_MQTT_3_3_1_7(clients):
    pub = clients.raw_connected()
    pub.publish("ret/q0", b"old", qos=1, retain=True)
    pub.publish("ret/q0", b"new qos0", qos=0, retain=True)
    got = _first_publish_after_subscribe(clients, "ret/q0")
    assert [(m.payload, m.qos) for m in got] == [(b"new qos0", 0)]


def test_empty_payload_clears_retained_MQTT_3_3_1_10_MQTT_3_3_1_11(clients):
    pub = clients.raw_connected()
    pub.publish("ret/clear", b"soon gone", qos=1, retain=True)
    pub.publish("ret/clear", b"", qos=1, retain=True)
    assert _first_publish_after_subscribe(clients, "ret/clear") == []


def test_empty_retained_forwarded_to_live_subscribers_MQTT_3_3_1_10(clients):
    """A zero-byte retained PUBLISH is 'processed as normal' for existing subscribers."""
    sub = clients.raw_connected()
    sub.subscribe([("ret/clear-live", 1)])
    pub = clients.raw_connected()
    pub.publish("ret/clear-live", b"", qos=1, retain=True)
    msg = sub.recv_publish(ack=True)
    assert (msg.payload, msg.retain) == (b"", False)


def test_non_retained_publish_leaves_retained_alone_MQTT_3_3_1_12(clients):
    pub = clients.raw_connected()
    pub.publish("ret/keep", b"retained", qos=1, retain=True)
    pub.publish("ret/keep", b"not retained", qos=1, retain=False)
    got = _first_publish_after_subscribe(clients, "ret/keep")
    assert [(m.payload, m.retain) for m in got] == [(b"retained", True)]


def test_retained_qos_capped_by_subscription_MQTT_3_3_1_5(clients):
    pub = clients.raw_connected()
    pub.publish("ret/qos", b"q2", qos=2, retain=True)
    for sub_qos in (0, 1, 2):
        sub = clients.raw_connected()
        sub.subscribe([("ret/qos", sub_qos)])
        msg = sub.recv_publish(ack=True)
        assert (msg.qos, msg.retain) == (sub_qos, True)


def test_retained_sent_for_every_matching_topic_on_wildcard_subscribe_MQTT_3_3_1_6(clients):
    pub = clients.raw_connected()
    for t in ("rw/a/1", "rw/a/2", "rw/b/1", "rw/a/2/deep"):
        pub.publish(t, t.encode(), qos=1, retain=True)
    got = _first_publish_after_subscribe(clients, "rw/a/+", live_topic="rw/a/live")
    assert sorted(m.topic for m in got) == ["rw/a/1", "rw/a/2"]
    assert all(m.retain and m.payload == m.topic.encode() for m in got)


def test_retained_not_matched_by_leading_wildcard_for_dollar_topic_MQTT_4_7_2_1(clients):
    pub = clients.raw_connected()
    pub.publish("$app/ret", b"internal", qos=1, retain=True)
    pub.publish("visible/ret", b"visible", qos=1, retain=True)
    got = _first_publish_after_subscribe(clients, "#", live_topic="zz/live")
    assert [m.topic for m in got] == ["visible/ret"]


def test_retained_survives_publisher_session_end_MQTT_3_1_2_7(clients):
    pub = clients.raw()
    pub.connect("ret-pub", clean_session=True)
    pub.publish("ret/orphan", b"still here", qos=1, retain=True)
    pub.disconnect()
    pub = clients.raw()
    pub.connect("ret-pub", clean_session=True)  # the old session is certainly gone
    pub.disconnect()
    got = _first_publish_after_subscribe(clients, "ret/orphan")
    assert [m.payload for m in got] == [b"still here"]


def test_paho_retained(clients):
    pub = clients.paho()
    pub.publish("ret/paho", b"retained by paho", qos=1, retain=True)
    sub = clients.paho()
    sub.subscribe("ret/paho", 1)
    m = sub.expect_message()
    assert (m.payload, m.retain) == (b"retained by paho", True)
    pub.publish("ret/paho", b"", qos=1, retain=True)
    m = sub.expect_message()
    assert (m.payload, m.retain) == (b"", False)


def test_raw_retained_flag_byte(clients):
    """A retained PUBLISH built byte by byte (flags 0011: QoS 1, RETAIN) is stored."""
    pub = clients.raw_connected()
    pub.send(mp.publish("ret/raw", b"r", flags=0x03, packet_id=3))
    assert mp.decode_packet_id(pub.expect(mp.PUBACK)) == 3
    got = _first_publish_after_subscribe(clients, "ret/raw")
    assert [(m.payload, m.retain) for m in got] == [(b"r", True)]
