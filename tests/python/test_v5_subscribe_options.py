"""Subscription options (3.8.3.1 of MQTT 5.0): No Local, Retain As Published, Retain Handling
0/1/2; Subscription Identifiers (3.8.2.1.2, 3.3.4); v5 SUBACK / UNSUBACK reason codes."""

import pytest

import mqtt5_packets as m5
from helpers import publishes_before_sentinel

opts = m5.sub_options


def test_no_local_suppresses_own_messages_MQTT_3_8_3_3(clients):
    me = clients.v5()
    assert me.subscribe([("v5/nl/t", opts(1, no_local=True))]) == [1]
    other = clients.v5()
    other.subscribe([("v5/nl/t", 1)])
    me.publish("v5/nl/t", b"mine", qos=1)
    assert other.recv_publish(ack=True).payload == b"mine"
    assert publishes_before_sentinel(clients.v5(), me, "v5/nl/t", qos=1) == []


def test_no_local_0_delivers_own_messages(clients):
    me = clients.v5()
    me.subscribe([("v5/nl/own", 1)])
    me.publish("v5/nl/own", b"echo", qos=1)
    assert me.recv_publish(ack=True).payload == b"echo"


def test_retain_as_published_1_keeps_retain_flag_MQTT_3_3_1_13(clients):
    sub = clients.v5()
    sub.subscribe([("v5/rap/t", opts(1, retain_as_published=True))])
    clients.v5().publish("v5/rap/t", b"r", qos=1, retain=True)
    assert sub.recv_publish(ack=True).retain is True


def test_retain_as_published_0_clears_retain_flag_MQTT_3_3_1_12(clients):
    sub = clients.v5()
    sub.subscribe([("v5/rap/f", opts(1))])
    clients.v5().publish("v5/rap/f", b"r", qos=1, retain=True)
    assert sub.recv_publish(ack=True).retain is False


def _retained(clients, topic, payload=b"kept"):
    pub = clients.v5()
    pub.publish(topic, payload, qos=1, retain=True)
    return pub


def test_retain_handling_0_sends_on_every_subscribe_MQTT_3_3_1_9(clients):
    pub = _retained(clients, "v5/rh0/t")
    sub = clients.v5()
    sub.subscribe([("v5/rh0/t", opts(1, retain_handling=0))])
    assert sub.recv_publish(ack=True).payload == b"kept"
    sub.subscribe([("v5/rh0/t", opts(1, retain_handling=0))])
    msg = sub.recv_publish(ack=True)
    assert (msg.payload, msg.retain) == (b"kept", True)
    assert publishes_before_sentinel(pub, sub, "v5/rh0/t", qos=1) == []


def test_retain_handling_1_sends_only_for_new_subscription_MQTT_3_3_1_10(clients):
    pub = _retained(clients, "v5/rh1/t")
    sub = clients.v5()
    sub.subscribe([("v5/rh1/t", opts(1, retain_handling=1))])
    assert sub.recv_publish(ack=True).payload == b"kept"
    sub.subscribe([("v5/rh1/t", opts(1, retain_handling=1))])  # exists: no retained
    assert publishes_before_sentinel(pub, sub, "v5/rh1/t", qos=1) == []


def test_retain_handling_1_after_resume_subscription_exists_MQTT_3_3_1_10(clients):
    """The subscription survives in the session: re-subscribing after a resume is not new."""
    cid = clients.unique_id("rh1")
    pub = _retained(clients, "v5/rh1s/t")
    a = clients.v5(cid, properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 30})
    a.subscribe([("v5/rh1s/t", opts(1, retain_handling=1))])
    assert a.recv_publish(ack=True).payload == b"kept"
    a.disconnect()
    b = clients.v5(cid, clean_start=False, properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 30})
    b.subscribe([("v5/rh1s/t", opts(1, retain_handling=1))])
    assert publishes_before_sentinel(pub, b, "v5/rh1s/t", qos=1) == []


def test_retain_handling_2_never_sends_retained_MQTT_3_3_1_11(clients):
    pub = _retained(clients, "v5/rh2/t")
    sub = clients.v5()
    sub.subscribe([("v5/rh2/t", opts(1, retain_handling=2))])
    assert publishes_before_sentinel(pub, sub, "v5/rh2/t", qos=1) == []


def test_subscription_identifier_delivered_MQTT_3_3_4_3(clients):
    sub = clients.v5()
    sub.subscribe([("v5/sid/+", 1)], subscription_id=7)
    clients.v5().publish("v5/sid/a", b"x", qos=1)
    msg = sub.recv_publish(ack=True)
    assert msg.subscription_ids == [7]


def test_overlapping_subscription_identifiers_MQTT_3_3_4_4_MQTT_3_3_4_5(clients):
    """Two matching subscriptions with identifiers 7 and 900: one copy with both identifiers
    (MQTT-3.3.4-4) or one copy per subscription with its own (MQTT-3.3.4-5)."""
    sub = clients.v5()
    sub.subscribe([("v5/sid2/+", 1)], subscription_id=7)
    sub.subscribe([("v5/sid2/#", 1)], subscription_id=900)
    pub = clients.v5()
    pub.publish("v5/sid2/a", b"x", qos=1)
    got = publishes_before_sentinel(pub, sub, "v5/sid2/end", qos=1)
    ids = sorted(i for m in got for i in m.subscription_ids)
    assert ids == [7, 900], got
    assert all(m.payload == b"x" for m in got)
    assert len(got) in (1, 2)


def test_subscription_without_identifier_gets_none(clients):
    sub = clients.v5()
    sub.subscribe([("v5/sid3/+", 1)], subscription_id=5)
    sub.subscribe([("v5/sid3/b", 1)])
    pub = clients.v5()
    pub.publish("v5/sid3/a", b"only first", qos=1)
    assert sub.recv_publish(ack=True).subscription_ids == [5]


def test_subscription_identifier_replaced_on_resubscribe_MQTT_3_8_4_3(clients):
    sub = clients.v5()
    sub.subscribe([("v5/sid4/t", 1)], subscription_id=3)
    sub.subscribe([("v5/sid4/t", 1)], subscription_id=12345)
    clients.v5().publish("v5/sid4/t", b"x", qos=1)
    assert sub.recv_publish(ack=True).subscription_ids == [12345]


def test_subscription_identifier_on_retained_delivery(clients):
    _retained(clients, "v5/sid5/t")
    sub = clients.v5()
    sub.subscribe([("v5/sid5/t", 1)], subscription_id=268435455)  # the largest varint
    msg = sub.recv_publish(ack=True)
    assert msg.retain and msg.subscription_ids == [268435455]


def test_paho_subscribe_options(clients):
    from paho.mqtt.subscribeoptions import SubscribeOptions
    me = clients.paho5()
    me.subscribe("v5/paho/nl", options=SubscribeOptions(qos=1, noLocal=True))
    me.subscribe("v5/paho/nl-end", 1)
    me.publish("v5/paho/nl", b"mine", qos=1)
    clients.paho5().publish("v5/paho/nl-end", b"end", qos=1)
    assert me.expect_message().topic == "v5/paho/nl-end"


def test_suback_reason_codes_are_granted_qos_MQTT_3_9_3_1(clients):
    sub = clients.v5()
    assert sub.subscribe([("v5/sa/0", 0), ("v5/sa/1", 1), ("v5/sa/2", 2)]) == [0, 1, 2]


def test_unsuback_reason_codes_MQTT_3_11_3_1(clients):
    sub = clients.v5()
    sub.subscribe([("v5/ua/yes", 1)])
    assert sub.unsubscribe(["v5/ua/yes", "v5/ua/no"]) == [m5.RC_SUCCESS, m5.RC_NO_SUBSCRIPTION_EXISTED]
