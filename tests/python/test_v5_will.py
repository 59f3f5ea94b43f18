"""Will messages in MQTT 5.0 (3.1.2.5, 3.1.3.2-3.1.3.4): will properties, Will Delay
Interval, a will cancelled by a reconnect within the delay, DISCONNECT 0x04."""

import time

import pytest

import mqtt5_packets as m5
from helpers import publishes_before_sentinel


def _watcher(clients, topic):
    w = clients.v5()
    w.subscribe([(topic, 1)])
    return w


def _will_client(clients, topic, payload=b"gone", cid=None, session_expiry=None,
                 will_properties=None, qos=1, **kw):
    c = clients.raw5()
    props = {m5.PROP_SESSION_EXPIRY_INTERVAL: session_expiry} if session_expiry is not None else None
    c.connect(cid or clients.unique_id("will5"), will_topic=topic, will_payload=payload,
              will_qos=qos, will_properties=will_properties, properties=props, **kw)
    return c


def test_will_properties_forwarded_MQTT_3_1_3_10(clients):
    """Will properties become the PUBLISH properties of the will; User Properties in their
    order (MQTT-3.1.3-10)."""
    w = _watcher(clients, "v5/will/props")
    user = [("b", "2"), ("a", "1"), ("a", "0")]
    c = _will_client(clients, "v5/will/props", b'{"state":"offline"}', will_properties=[
        (m5.PROP_PAYLOAD_FORMAT_INDICATOR, 1),
        (m5.PROP_CONTENT_TYPE, "application/json"),
        (m5.PROP_RESPONSE_TOPIC, "v5/will/reply"),
        (m5.PROP_CORRELATION_DATA, b"\x00\x01corr"),
        (m5.PROP_MESSAGE_EXPIRY_INTERVAL, 60),
    ] + [(m5.PROP_USER_PROPERTY, kv) for kv in user])
    c.abort()
    m = w.recv_publish(ack=True)
    p = m.properties
    assert m.payload == b'{"state":"offline"}'
    assert p[m5.PROP_PAYLOAD_FORMAT_INDICATOR] == 1
    assert p[m5.PROP_CONTENT_TYPE] == "application/json"
    assert p[m5.PROP_RESPONSE_TOPIC] == "v5/will/reply"
    assert p[m5.PROP_CORRELATION_DATA] == b"\x00\x01corr"
    assert 58 <= p[m5.PROP_MESSAGE_EXPIRY_INTERVAL] <= 60
    assert p.user == user
    assert m5.PROP_WILL_DELAY_INTERVAL not in p, "Will Delay Interval is not a PUBLISH property"


def test_will_delay_interval_delays_publication_MQTT_3_1_3_9(clients):
    """Will Delay 2 s, session expiry 30 s: nothing in the first ~1.5 s, then the will."""
    w = _watcher(clients, "v5/will/delay")
    c = _will_client(clients, "v5/will/delay", b"late", session_expiry=30,
                     will_properties={m5.PROP_WILL_DELAY_INTERVAL: 2})
    c.abort()
    start = time.monotonic()
    w.expect_no_packet(1.5)
    m = w.recv_publish(timeout=6, ack=True)
    assert m.payload == b"late"
    assert time.monotonic() - start >= 1.9


def test_will_cancelled_by_reconnect_within_delay_MQTT_3_1_3_9(clients):
    """A new connection to the session before the Will Delay passes: no will, ever."""
    cid = clients.unique_id("willcancel")
    w = _watcher(clients, "v5/will/cancel")
    c = _will_client(clients, "v5/will/cancel", b"must not appear", cid=cid, session_expiry=30,
                     will_properties={m5.PROP_WILL_DELAY_INTERVAL: 2})
    c.abort()
    time.sleep(0.3)
    back = clients.v5(cid, clean_start=False, properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 30})
    assert back.connack.session_present
    w.expect_no_packet(3.0)
    assert publishes_before_sentinel(clients.v5(), w, "v5/will/cancel", qos=1) == []


def test_will_published_when_session_ends_before_delay_MQTT_3_1_2_8(clients):
    """Will Delay 30 s but session expiry 1 s: the will is published when the session ends
    (whichever happens first, 3.1.3.2.2)."""
    w = _watcher(clients, "v5/will/session-end")
    c = _will_client(clients, "v5/will/session-end", b"session over", session_expiry=1,
                     will_properties={m5.PROP_WILL_DELAY_INTERVAL: 30})
    c.abort()
    assert w.recv_publish(timeout=6, ack=True).payload == b"session over"


def test_will_without_delay_published_at_once_MQTT_3_1_2_8(clients):
    w = _watcher(clients, "v5/will/now")
    c = _will_client(clients, "v5/will/now", b"now")
    c.abort()
    assert w.recv_publish(timeout=2, ack=True).payload == b"now"


def test_disconnect_0x04_publishes_will(clients):
    """DISCONNECT with reason 0x04 (Disconnect with Will Message): the will is published
    (3.14.2.1)."""
    w = _watcher(clients, "v5/will/0x04")
    c = _will_client(clients, "v5/will/0x04", b"asked for it")
    c.send(m5.disconnect(m5.RC_DISCONNECT_WITH_WILL))
    assert w.recv_publish(timeout=3, ack=True).payload == b"asked for it"


@pytest.mark.parametrize("how", ["empty", "explicit-0x00"])
def test_normal_disconnect_discards_will_MQTT_3_1_2_10(clients, how):
    w = _watcher(clients, "v5/will/normal")
    c = _will_client(clients, "v5/will/normal", b"must not appear")
    c.send(m5.disconnect() if how == "empty" else m5.disconnect(m5.RC_SUCCESS, {m5.PROP_REASON_STRING: "bye"}))
    c.close()
    assert publishes_before_sentinel(clients.v5(), w, "v5/will/normal", qos=1) == []


def test_will_retain_with_properties(clients):
    w = _watcher(clients, "v5/will/retained")
    c = clients.raw5()
    c.connect(clients.unique_id("willret"), will_topic="v5/will/retained", will_payload=b"last",
              will_qos=1, will_retain=True, will_properties={m5.PROP_CONTENT_TYPE: "text/plain"})
    c.abort()
    # Published (and so retained, which comes first) once a live subscriber has it.
    assert w.recv_publish(ack=True).payload == b"last"
    late = clients.v5()
    late.subscribe([("v5/will/retained", 1)])
    m = late.recv_publish(ack=True)
    assert (m.payload, m.retain, m.properties.get(m5.PROP_CONTENT_TYPE)) == (b"last", True, "text/plain")


def test_paho_v5_will_with_delay(clients):
    w = _watcher(clients, "v5/will/paho")
    c = clients.paho5(connect_properties={"SessionExpiryInterval": 30},
                      will={"topic": "v5/will/paho", "payload": b"paho gone", "qos": 1,
                            "properties": {"WillDelayInterval": 1, "UserProperty": [("k", "v")]}})
    c.close()
    w.expect_no_packet(0.6)
    m = w.recv_publish(timeout=6, ack=True)
    assert (m.payload, m.user) == (b"paho gone", [("k", "v")])
