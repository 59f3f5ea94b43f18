"""Session Expiry Interval (3.1.2.11.2, 4.1 of MQTT 5.0): 0 (or absent), a finite value,
0xFFFFFFFF; it replaces 3.1.1's Clean Session for v5 clients. Changes made at DISCONNECT are
in test_v5_disconnect.py."""

import time

import pytest

import mqtt5_packets as m5

NEVER = 0xFFFFFFFF


def _expiry(seconds):
    return {m5.PROP_SESSION_EXPIRY_INTERVAL: seconds} if seconds is not None else None


def _leave_session(clients, cid, expiry, topic):
    c = clients.v5(cid, properties=_expiry(expiry))
    assert c.subscribe([(topic, 1)]) == [1]
    c.disconnect()
    return c


def _resume(clients, cid, expiry=60):
    return clients.v5(cid, clean_start=False, properties=_expiry(expiry))


@pytest.mark.parametrize("expiry", [None, 0])
def test_session_ends_with_connection_when_expiry_0_MQTT_3_1_2_23(clients, expiry):
    """Absent or 0: the session ends when the network connection closes."""
    cid = clients.unique_id("se0")
    _leave_session(clients, cid, expiry, "v5/se/zero")
    clients.v5().publish("v5/se/zero", b"nobody home", qos=1)
    c = _resume(clients, cid)
    assert c.connack.session_present is False
    c.expect_no_packet(0.5)


def test_session_kept_within_finite_expiry_MQTT_3_1_2_23(clients):
    """Expiry > 0: the server stores the session (subscriptions and QoS 1 messages queued
    while disconnected) until the interval has passed."""
    cid = clients.unique_id("sefin")
    _leave_session(clients, cid, 30, "v5/se/finite")
    clients.v5().publish("v5/se/finite", b"queued", qos=1)
    c = _resume(clients, cid)
    assert c.connack.session_present is True
    assert c.recv_publish(ack=True).payload == b"queued"


def test_session_discarded_after_expiry_MQTT_3_1_2_23(clients):
    cid = clients.unique_id("seexp")
    _leave_session(clients, cid, 1, "v5/se/expired")
    clients.v5().publish("v5/se/expired", b"too late", qos=1)
    time.sleep(2.5)
    c = _resume(clients, cid)
    assert c.connack.session_present is False, "the session must be gone 1 s after the close"
    c.expect_no_packet(0.5)


def test_session_never_expires_with_0xffffffff_MQTT_3_1_2_23(clients):
    cid = clients.unique_id("senever")
    _leave_session(clients, cid, NEVER, "v5/se/never")
    time.sleep(1.2)
    clients.v5().publish("v5/se/never", b"still here", qos=1)
    c = _resume(clients, cid, NEVER)
    assert c.connack.session_present is True
    assert c.recv_publish(ack=True).payload == b"still here"


def test_session_expiry_counts_from_the_latest_connection(clients):
    """The expiry interval used is the one of the latest CONNECT: a session created with 60 s
    and resumed with 1 s is gone 1 s after the second connection closes."""
    cid = clients.unique_id("selatest")
    _leave_session(clients, cid, 60, "v5/se/latest")
    c = _resume(clients, cid, expiry=1)
    assert c.connack.session_present is True
    c.disconnect()
    time.sleep(2.5)
    again = _resume(clients, cid)
    assert again.connack.session_present is False


def test_session_state_kept_across_abrupt_close(clients):
    """A network failure (no DISCONNECT) keeps the session too."""
    cid = clients.unique_id("seabort")
    c = clients.v5(cid, properties=_expiry(30))
    c.subscribe([("v5/se/abort", 1)])
    c.abort()
    clients.v5().publish("v5/se/abort", b"after the crash", qos=1)
    again = _resume(clients, cid)
    assert again.connack.session_present is True
    assert again.recv_publish(ack=True).payload == b"after the crash"


def test_unacknowledged_qos1_resent_on_resume_MQTT_4_4_0_1(clients):
    """A QoS 1 message sent but not acknowledged before the close is resent with DUP=1 and
    its original packet id when the session resumes."""
    cid = clients.unique_id("seresend")
    c = clients.v5(cid, properties=_expiry(30))
    c.subscribe([("v5/se/resend", 1)])
    clients.v5().publish("v5/se/resend", b"unacked", qos=1)
    first = c.recv_publish()  # not acknowledged
    c.abort()
    again = _resume(clients, cid)
    msg = again.recv_publish(ack=True)
    assert (msg.payload, msg.dup, msg.packet_id) == (b"unacked", True, first.packet_id)


def test_v5_resumes_session_left_by_v3_client(clients):
    """A session created by a 3.1.1 client with Clean Session 0 is resumed by a v5 CONNECT
    with Clean Start 0 (one session state per Client Identifier, both versions on one
    listener)."""
    cid = clients.unique_id("sev3")
    v3 = clients.raw()
    v3.connect(cid, clean_session=False)
    v3.subscribe([("v5/se/v3", 1)])
    v3.disconnect()
    clients.v5().publish("v5/se/v3", b"from v3 session", qos=1)
    c = _resume(clients, cid)
    assert c.connack.session_present is True
    assert c.recv_publish(ack=True).payload == b"from v3 session"
