"""Will messages (3.1.2.5-3.1.2.7, 3.1.3.2-3.1.3.3 of MQTT 3.1.1)."""

import pytest

import mqtt_packets as mp
from helpers import publishes_before_sentinel


def _will_client(clients, topic, payload=b"gone", qos=0, retain=False, **kw):
    c = clients.raw()
    c.connect(clients.unique_id("will"), will_topic=topic, will_message=payload,
              will_qos=qos, will_retain=retain, **kw)
    return c


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_will_published_on_abnormal_close_MQTT_3_1_2_8(clients, how):
    """Socket closed without DISCONNECT (cleanly, or reset as by a crash): the will is published."""
    sub = clients.raw_connected()
    sub.subscribe([("will/abnormal", 1)])
    c = _will_client(clients, "will/abnormal", b"client lost", qos=1)
    c.close() if how == "fin" else c.abort()
    msg = sub.recv_publish(ack=True)
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("will/abnormal", b"client lost", 1, False)


@pytest.mark.parametrize("will_qos", [0, 1, 2])
def test_will_qos_used_MQTT_3_1_2_9(clients, will_qos):
    sub = clients.raw_connected()
    sub.subscribe([("will/qos", 2)])
    c = _will_client(clients, "will/qos", qos=will_qos)
    c.abort()
    msg = sub.recv_publish(ack=True)
    assert msg.qos == will_qos


def test_will_not_published_after_disconnect_MQTT_3_1_2_10_MQTT_3_14_4_3(clients):
    sub = clients.raw_connected()
    sub.subscribe([("will/clean", 1)])
    c = _will_client(clients, "will/clean", qos=1)
    c.send(mp.disconnect())
    c.close()  # the will must be discarded on DISCONNECT, whoever closes the socket
    sub.expect_no_packet(0.7)
    pub = clients.raw_connected()
    assert publishes_before_sentinel(pub, sub, "will/clean", qos=1) == []


def test_will_retain_publishes_retained_MQTT_3_1_2_17(clients):
    live = clients.raw_connected()
    live.subscribe([("will/retained", 1)])
    c = _will_client(clients, "will/retained", b"last words", qos=1, retain=True)
    c.abort()
    msg = live.recv_publish(ack=True)
    assert (msg.payload, msg.retain) == (b"last words", False)  # live: RETAIN 0 (MQTT-3.3.1-9)
    late = clients.raw_connected()
    late.subscribe([("will/retained", 1)])
    msg = late.recv_publish(ack=True)
    assert (msg.payload, msg.retain) == (b"last words", True)


def test_will_without_retain_not_retained_MQTT_3_1_2_16(clients):
    live = clients.raw_connected()
    live.subscribe([("will/unretained", 1)])
    c = _will_client(clients, "will/unretained", qos=1, retain=False)
    c.abort()
    live.recv_publish(ack=True)
    late = clients.raw_connected()
    late.subscribe([("will/unretained", 1)])
    pub = clients.raw_connected()
    assert publishes_before_sentinel(pub, late, "will/unretained", qos=1) == []


def test_no_will_flag_no_will_MQTT_3_1_2_12(clients):
    sub = clients.raw_connected()
    sub.subscribe([("#", 0)])
    c = clients.raw_connected()
    c.abort()
    sub.expect_no_packet(0.7)


def test_will_published_on_protocol_error_MQTT_3_1_2_8(clients):
    """'The Server closes the Network Connection because of a protocol error' is one of the
    listed cases: a malformed packet (PUBLISH QoS 3) triggers the will."""
    sub = clients.raw_connected()
    sub.subscribe([("will/protocol-error", 0)])
    c = _will_client(clients, "will/protocol-error", b"bad client")
    c.send(mp.publish("x", b"y", flags=0x06))
    c.expect_closed()
    assert sub.recv_publish().payload == b"bad client"


def test_will_published_on_keepalive_expiry_MQTT_3_1_2_8(clients):
    sub = clients.raw_connected()
    sub.subscribe([("will/keepalive", 0)])
    c = _will_client(clients, "will/keepalive", b"timed out", keepalive=1)
    c.expect_closed(timeout=8)  # Mosquitto checks keep-alive only every few seconds
    assert sub.recv_publish(timeout=3).payload == b"timed out"


def test_will_published_once_with_binary_payload(clients):
    payload = bytes(range(256))
    sub = clients.raw_connected()
    sub.subscribe([("will/bin", 1)])
    c = _will_client(clients, "will/bin", payload, qos=1)
    c.abort()
    assert sub.recv_publish(ack=True).payload == payload
    pub = clients.raw_connected()
    assert publishes_before_sentinel(pub, sub, "will/bin", qos=1) == []


def test_paho_will_on_lost_connection(clients):
    sub = clients.paho()
    sub.subscribe("will/paho", 1)
    c = clients.paho(will={"topic": "will/paho", "payload": b"paho gone", "qos": 1})
    c.close()  # socket closed without DISCONNECT
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("will/paho", b"paho gone")
