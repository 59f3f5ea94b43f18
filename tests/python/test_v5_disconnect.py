"""DISCONNECT in MQTT 5.0 (3.14, 4.13): the client's DISCONNECT (Remaining Length 0, reason
codes, Session Expiry changed at DISCONNECT) and the server's DISCONNECT with the reason for
every close it initiates."""

import os
import signal
import time

import pytest

import mqtt5_packets as m5
from helpers import publishes_before_sentinel

TAKEOVER = ("closes the old connection on a session take-over without DISCONNECT 0x8E "
            "(MQTT-3.1.4-3)")

# Starling files keep-alive deadlines in a 1 s timer wheel, plus a busy host's scheduling
# (see test_keepalive.py).
LATE_SLACK_S = 2.5


def _expiry(s):
    return {m5.PROP_SESSION_EXPIRY_INTERVAL: s}


def test_disconnect_remaining_length_0_MQTT_3_14_2_1(clients):
    """The common DISCONNECT: 0xE0 0x00, reason 0x00 implied. The server closes the
    connection and does not publish the will (MQTT-3.14.4-3)."""
    w = clients.v5()
    w.subscribe([("v5/disc/will", 1)])
    c = clients.raw5()
    c.connect(clients.unique_id("d0"), will_topic="v5/disc/will", will_payload=b"no")
    assert m5.disconnect() == b"\xe0\x00"
    c.send(m5.disconnect())
    assert c.expect_closed(timeout=3) == [], "the server sends nothing after a client DISCONNECT"
    assert publishes_before_sentinel(clients.v5(), w, "v5/disc/will", qos=1) == []


def test_disconnect_with_reason_and_properties_accepted(clients):
    c = clients.v5()
    c.send(m5.disconnect(m5.RC_SUCCESS, [(m5.PROP_REASON_STRING, "done"), (m5.PROP_USER_PROPERTY, ("k", "v"))]))
    assert c.expect_closed(timeout=3) == []


def test_session_expiry_reduced_to_0_at_disconnect_MQTT_3_14_2_2(clients):
    """Session Expiry 60 in CONNECT, 0 in DISCONNECT: the session ends with the connection."""
    cid = clients.unique_id("dse0")
    c = clients.v5(cid, properties=_expiry(60))
    c.subscribe([("v5/disc/se", 1)])
    c.send(m5.disconnect(0, _expiry(0)))
    c.expect_closed(timeout=3)
    again = clients.v5(cid, clean_start=False, properties=_expiry(60))
    assert again.connack.session_present is False


def test_session_expiry_raised_at_disconnect(clients):
    """Session Expiry 1 in CONNECT, 30 in DISCONNECT: the session outlives the 1 s."""
    cid = clients.unique_id("dse30")
    c = clients.v5(cid, properties=_expiry(1))
    c.subscribe([("v5/disc/se30", 1)])
    c.send(m5.disconnect(0, _expiry(30)))
    c.expect_closed(timeout=3)
    clients.v5().publish("v5/disc/se30", b"waiting", qos=1)
    time.sleep(2.0)
    again = clients.v5(cid, clean_start=False, properties=_expiry(30))
    assert again.connack.session_present is True
    assert again.recv_publish(ack=True).payload == b"waiting"


def test_session_expiry_from_0_at_disconnect_is_protocol_error_3_14_2_2_2(clients):
    """Session Expiry 0 (absent) in CONNECT and non-zero in DISCONNECT: a Protocol Error.
    The session is not kept, and a DISCONNECT the server sends names 0x82."""
    cid = clients.unique_id("dse-err")
    c = clients.v5(cid)
    c.subscribe([("v5/disc/err", 1)])
    c.send(m5.disconnect(0, _expiry(60)))
    for p in c.expect_closed(timeout=3, allow_packets=[m5.DISCONNECT]):
        assert m5.decode_disconnect(p).reason_code == m5.RC_PROTOCOL_ERROR
    again = clients.v5(cid, clean_start=False, properties=_expiry(60))
    assert again.connack.session_present is False


def test_session_expiry_from_0_at_disconnect_gets_disconnect_0x82(clients):
    c = clients.v5()
    c.send(m5.disconnect(0, _expiry(60)))
    c.expect_disconnect(m5.RC_PROTOCOL_ERROR, timeout=3)


def test_session_expiry_from_0_at_disconnect_publishes_will(clients):
    """The protocol error means the connection did not end with a valid DISCONNECT: the
    will is published (3.1.2.5)."""
    w = clients.v5()
    w.subscribe([("v5/disc/err-will", 1)])
    c = clients.raw5()
    c.connect(clients.unique_id("dsew"), will_topic="v5/disc/err-will", will_payload=b"bad exit")
    c.send(m5.disconnect(0, _expiry(60)))
    assert w.recv_publish(timeout=3, ack=True).payload == b"bad exit"


@pytest.mark.xfail_mosquitto(TAKEOVER)
def test_session_taken_over_0x8e_MQTT_3_1_4_3(clients):
    """A second connection with the same Client Identifier: the first gets DISCONNECT 0x8E
    (Session taken over) and is closed."""
    cid = clients.unique_id("takeover")
    first = clients.v5(cid)
    clients.v5(cid)
    first.expect_disconnect(m5.RC_SESSION_TAKEN_OVER)


@pytest.mark.xfail_mosquitto(TAKEOVER)
def test_session_taken_over_by_v3_client(clients):
    """The reason goes to the v5 connection whatever the version of the new one."""
    cid = clients.unique_id("takeover3")
    first = clients.v5(cid)
    v3 = clients.raw()
    v3.connect(cid)
    first.expect_disconnect(m5.RC_SESSION_TAKEN_OVER)
    assert v3.is_open()


@pytest.mark.xfail_mosquitto("closes a keep-alive-expired v5 connection without DISCONNECT 0x8D")
def test_keep_alive_timeout_0x8d_MQTT_3_1_2_22(clients):
    """A silent client past 1.5 x keep-alive gets DISCONNECT 0x8D (Keep Alive timeout).
    Loose bound: Mosquitto checks keep-alive every few seconds."""
    c = clients.v5(keepalive=1)
    start = time.monotonic()
    c.expect_disconnect(m5.RC_KEEP_ALIVE_TIMEOUT, timeout=8)
    assert time.monotonic() - start >= 1.4


@pytest.mark.starling_only
def test_keep_alive_timeout_at_one_and_a_half_MQTT_3_1_2_22(clients):
    c = clients.v5(keepalive=1)
    start = time.monotonic()
    c.expect_disconnect(m5.RC_KEEP_ALIVE_TIMEOUT, timeout=1.5 + LATE_SLACK_S)
    assert time.monotonic() - start >= 1.4


@pytest.mark.starling_only
@pytest.mark.broker_options(max_keep_alive_secs=1)
def test_server_keep_alive_enforced_MQTT_3_2_2_21(clients):
    """Asked 60 s, told 1 s by Server Keep Alive: the server enforces 1.5 x 1 s."""
    c = clients.v5(keepalive=60)
    assert c.connack.properties[m5.PROP_SERVER_KEEP_ALIVE] == 1
    start = time.monotonic()
    c.expect_disconnect(m5.RC_KEEP_ALIVE_TIMEOUT, timeout=1.5 + LATE_SLACK_S)
    assert time.monotonic() - start >= 1.4


@pytest.mark.broker_options(max_packet_size_bytes=512)
def test_packet_too_large_0x95(clients):
    c = clients.v5()
    c.send(m5.publish("v5/disc/big", b"b" * 1000))
    c.expect_disconnect(m5.RC_PACKET_TOO_LARGE)


def test_protocol_error_0x82_second_connect_MQTT_3_1_0_2(clients):
    c = clients.v5()
    c.send(m5.connect("again"))
    for p in c.expect_closed(timeout=3, allow_packets=[m5.DISCONNECT]):
        assert m5.decode_disconnect(p).reason_code == m5.RC_PROTOCOL_ERROR


@pytest.mark.xfail_mosquitto(TAKEOVER)
def test_server_disconnect_has_no_session_expiry_MQTT_3_14_2_2(clients):
    """Checked inside expect_disconnect for every server DISCONNECT; here on a take-over."""
    cid = clients.unique_id("noexp")
    first = clients.v5(cid, properties=_expiry(30))
    clients.v5(cid, clean_start=False, properties=_expiry(30))
    d = first.expect_disconnect(m5.RC_SESSION_TAKEN_OVER)
    assert m5.PROP_SESSION_EXPIRY_INTERVAL not in d.properties


@pytest.mark.starling_only
def test_server_shutting_down_0x8b_on_sigterm(broker, clients):
    """SIGTERM (graceful shutdown): every v5 client gets DISCONNECT 0x8B (Server shutting
    down) before the close; 3.1.1 clients are just closed."""
    a = clients.v5()
    b = clients.v5()
    v3 = clients.raw_connected()
    os.kill(broker.pid, signal.SIGTERM)
    for c in (a, b):
        c.expect_disconnect(m5.RC_SERVER_SHUTTING_DOWN, timeout=5)
    assert v3.expect_closed(timeout=5) == []
    broker.proc.wait(timeout=10)
    broker.restart()  # the fixture checks that the broker it hands back is alive


@pytest.mark.xfail_mosquitto(TAKEOVER)
def test_paho_v5_sees_takeover_reason(clients):
    cid = clients.unique_id("pahotake")
    first = clients.paho5(cid)
    clients.v5(cid)
    assert first.disconnected.wait(5)
    assert first.disconnect_rc == m5.RC_SESSION_TAKEN_OVER
