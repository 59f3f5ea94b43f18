"""Topic aliases (3.3.2.3.4 of MQTT 5.0): from the client up to the server's Topic Alias
Maximum, the error cases, and (optionally) toward clients within theirs."""

import pytest

import mqtt5_packets as m5
from helpers import publishes_before_sentinel

# 3.3.2.3.4: an alias above the maximum is "Topic Alias invalid" (0x94); some brokers call it
# a protocol error. Alias 0 "is not permitted" without a reason code of its own: Mosquitto
# treats it as a malformed packet (0x81), which is accepted too.
ALIAS_INVALID = (m5.RC_TOPIC_ALIAS_INVALID, m5.RC_PROTOCOL_ERROR)
ALIAS_ZERO = ALIAS_INVALID + (m5.RC_MALFORMED_PACKET,)


def _alias(n):
    return {m5.PROP_TOPIC_ALIAS: n}


def _subscriber(clients, topic="v5/alias/#", **kw):
    s = clients.v5(**kw)
    s.subscribe([(topic, 1)])
    return s


def test_alias_set_then_used_with_empty_topic_MQTT_3_3_2_12(clients):
    """PUBLISH with topic + alias sets the mapping; PUBLISH with empty topic + alias uses it.
    Subscribers (Topic Alias Maximum 0: none announced) get the full topic and no alias
    (MQTT-3.1.2-27)."""
    sub = _subscriber(clients)
    pub = clients.v5()
    assert pub.connack.properties.get(m5.PROP_TOPIC_ALIAS_MAXIMUM, 0) >= 1
    pub.publish("v5/alias/one", b"set", qos=1, properties=_alias(1))
    pub.publish("", b"used", qos=1, properties=_alias(1))
    got = sub.recv_publishes(2, ack=True)
    assert [(m.topic, m.payload) for m in got] == [("v5/alias/one", b"set"), ("v5/alias/one", b"used")]
    for m in got:
        assert m5.PROP_TOPIC_ALIAS not in m.properties, "no alias toward a client that allows none"


def test_alias_remapped_MQTT_3_3_2_12(clients):
    sub = _subscriber(clients)
    pub = clients.v5()
    pub.publish("v5/alias/a", b"1", qos=1, properties=_alias(1))
    pub.publish("v5/alias/b", b"2", qos=1, properties=_alias(1))
    pub.publish("", b"3", qos=1, properties=_alias(1))
    got = sub.recv_publishes(3, ack=True)
    assert [m.topic for m in got] == ["v5/alias/a", "v5/alias/b", "v5/alias/b"]


def test_alias_up_to_the_maximum_accepted(clients):
    sub = _subscriber(clients)
    pub = clients.v5()
    top = pub.connack.properties.get(m5.PROP_TOPIC_ALIAS_MAXIMUM, 0)
    assert top >= 1
    pub.publish("v5/alias/top", b"x", qos=1, properties=_alias(top))
    pub.publish("", b"y", qos=1, properties=_alias(top))
    assert [m.topic for m in sub.recv_publishes(2, ack=True)] == ["v5/alias/top"] * 2


def test_alias_zero_is_invalid_MQTT_3_3_2_8(clients):
    pub = clients.v5()
    pub.send(m5.publish("v5/alias/zero", b"x", properties=_alias(0)))
    pub.expect_disconnect(ALIAS_ZERO)


def test_alias_above_maximum_is_invalid_MQTT_3_2_2_17(clients):
    """A client MUST NOT send an alias greater than the server's Topic Alias Maximum
    (MQTT-3.2.2-17); the server disconnects with 0x94 (3.3.2.3.4)."""
    pub = clients.v5()
    top = pub.connack.properties.get(m5.PROP_TOPIC_ALIAS_MAXIMUM, 0)
    pub.send(m5.publish("v5/alias/over", b"x", properties=_alias(top + 1)))
    pub.expect_disconnect(ALIAS_INVALID)


def test_empty_topic_with_unknown_alias_is_protocol_error(clients):
    """Empty topic and an alias with no mapping: a Protocol Error (3.3.4)."""
    pub = clients.v5()
    pub.send(m5.publish("", b"x", properties=_alias(2)))
    pub.expect_disconnect((m5.RC_PROTOCOL_ERROR, m5.RC_TOPIC_ALIAS_INVALID))


def test_empty_topic_without_alias_is_protocol_error(clients):
    pub = clients.v5()
    pub.send(m5.publish("", b"x"))
    pub.expect_disconnect((m5.RC_PROTOCOL_ERROR, m5.RC_TOPIC_NAME_INVALID, m5.RC_MALFORMED_PACKET))


def test_aliases_not_carried_to_a_new_connection_MQTT_3_3_2_12(clients):
    cid = clients.unique_id("alias")
    first = clients.v5(cid, properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 30})
    first.publish("v5/alias/conn", b"x", qos=1, properties=_alias(1))
    first.disconnect()
    second = clients.v5(cid, clean_start=False, properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 30})
    second.send(m5.publish("", b"y", qos=1, packet_id=5, properties=_alias(1)))
    second.expect_disconnect((m5.RC_PROTOCOL_ERROR, m5.RC_TOPIC_ALIAS_INVALID))


@pytest.mark.broker_options(topic_alias_maximum=0)
def test_aliases_refused_when_maximum_is_zero_MQTT_3_2_2_18(clients):
    """Topic Alias Maximum 0 (or absent) in CONNACK: the client may not use aliases
    (MQTT-3.2.2-18); any alias is invalid."""
    pub = clients.v5()
    assert pub.connack.properties.get(m5.PROP_TOPIC_ALIAS_MAXIMUM, 0) == 0
    pub.send(m5.publish("v5/alias/none", b"x", properties=_alias(1)))
    pub.expect_disconnect(ALIAS_INVALID)


@pytest.mark.broker_options(topic_alias_maximum=3)
def test_configured_maximum_announced_and_enforced(clients):
    pub = clients.v5()
    assert pub.connack.properties.get(m5.PROP_TOPIC_ALIAS_MAXIMUM) == 3
    sub = _subscriber(clients)
    pub.publish("v5/alias/three", b"ok", qos=1, properties=_alias(3))
    assert sub.recv_publish(ack=True).topic == "v5/alias/three"
    pub.send(m5.publish("v5/alias/four", b"x", properties=_alias(4)))
    pub.expect_disconnect(ALIAS_INVALID)


def test_server_aliases_toward_client_within_its_maximum_MQTT_3_1_2_26(clients):
    """A client announcing Topic Alias Maximum 2 may receive aliases (optional for the
    server) but never one above 2 or 0; resolving them yields the right topics."""
    sub = clients.v5(properties={m5.PROP_TOPIC_ALIAS_MAXIMUM: 2})
    sub.subscribe([("v5/alias/out/#", 0)])
    pub = clients.v5()
    topics = [f"v5/alias/out/{n % 3}" for n in range(9)]
    for i, t in enumerate(topics):
        pub.publish(t, str(i).encode())
    mapping = {}
    seen = []
    for m in sub.recv_publishes(len(topics)):
        alias = m.properties.get(m5.PROP_TOPIC_ALIAS)
        if alias is not None:
            assert 1 <= alias <= 2, f"alias {alias} outside 1..2 (MQTT-3.1.2-26)"
            if m.topic:
                mapping[alias] = m.topic
            else:
                assert alias in mapping, "empty topic with an alias never set"
        else:
            assert m.topic, "empty topic without an alias"
        seen.append((m.topic or mapping[alias], m.payload))
    assert seen == [(t, str(i).encode()) for i, t in enumerate(topics)]


def test_alias_message_not_delivered_after_error(clients):
    """The PUBLISH with the invalid alias is not forwarded."""
    sub = _subscriber(clients)
    bad = clients.v5()
    bad.send(m5.publish("v5/alias/bad", b"x", properties=_alias(0)))
    bad.expect_disconnect(ALIAS_ZERO)
    assert publishes_before_sentinel(clients.v5(), sub, "v5/alias/sentinel", qos=1) == []
