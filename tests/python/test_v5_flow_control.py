"""Flow control (4.9 of MQTT 5.0): Receive Maximum in both directions, Maximum Packet Size in
both directions."""

import pytest

import mqtt5_packets as m5
from helpers import publishes_before_sentinel


@pytest.mark.xfail_mosquitto("sends a 4th QoS 1 PUBLISH to a client with Receive Maximum 2 while "
                             "2 are unacknowledged, once one PUBACK has freed a slot (MQTT-3.3.4-9)")
def test_server_respects_client_receive_maximum_MQTT_3_3_4_9(clients):
    """The server sends no more than the client's Receive Maximum unacknowledged QoS 1
    PUBLISHes; each PUBACK frees one slot (4.9)."""
    sub = clients.v5(properties={m5.PROP_RECEIVE_MAXIMUM: 2})
    sub.subscribe([("v5/flow/rm", 1)])
    pub = clients.v5()
    for i in range(5):
        pub.publish("v5/flow/rm", str(i).encode(), qos=1)
    first = sub.recv_publishes(2)
    sub.expect_no_packet(0.6)
    sub.ack(first[0])
    third = sub.recv_publish()
    sub.expect_no_packet(0.4)
    for m in (first[1], third):
        sub.ack(m)
    rest = sub.recv_publishes(2, ack=True)
    assert [m.payload for m in first + [third] + rest] == [b"0", b"1", b"2", b"3", b"4"]


def test_receive_maximum_counts_qos2_until_pubcomp_MQTT_3_3_4_9(clients):
    sub = clients.v5(properties={m5.PROP_RECEIVE_MAXIMUM: 1})
    sub.subscribe([("v5/flow/rm2", 2)])
    pub = clients.v5()
    for i in range(2):
        pub.publish("v5/flow/rm2", str(i).encode(), qos=2)
    m = sub.recv_publish()
    sub.send(m5.mp.pubrec(m.packet_id))
    sub.expect(m5.PUBREL, m.packet_id)
    sub.expect_no_packet(0.5)  # still in flight until PUBCOMP
    sub.send(m5.mp.pubcomp(m.packet_id))
    assert sub.recv_publish(ack=True).payload == b"1"


@pytest.mark.xfail_mosquitto("answers the PUBLISH beyond its Receive Maximum with PUBREC 0x97 (Quota "
                             "exceeded) instead of DISCONNECT 0x93 (3.2.2.3.3)")
def test_client_exceeding_server_receive_maximum_disconnected_0x93(clients):
    """A client sending more unacknowledged QoS 2 PUBLISHes (PUBREC received, no PUBREL yet)
    than the server's Receive Maximum (read from CONNACK): DISCONNECT 0x93 (3.2.2.3.3)."""
    c = clients.v5()
    rm = c.connack.properties.get(m5.PROP_RECEIVE_MAXIMUM, 65535)
    assert rm <= 4096, f"Receive Maximum {rm} too large to exhaust in a test"
    c.send(b"".join(m5.publish("v5/flow/quota", b"q", qos=2, packet_id=i + 1) for i in range(rm)))
    for i in range(rm):
        # Accepted: 0x00, or 0x10 as nobody subscribed (both below 0x80).
        assert m5.decode_ack(c.expect(m5.PUBREC, i + 1)).reason_code in (
            m5.RC_SUCCESS, m5.RC_NO_MATCHING_SUBSCRIBERS)
    c.send(m5.publish("v5/flow/quota", b"one too many", qos=2, packet_id=rm + 1))
    c.expect_disconnect(m5.RC_RECEIVE_MAXIMUM_EXCEEDED)


@pytest.mark.starling_only
@pytest.mark.broker_options(receive_maximum=3)
def test_configured_receive_maximum_enforced(clients):
    c = clients.v5()
    assert c.connack.properties[m5.PROP_RECEIVE_MAXIMUM] == 3
    for pid in (1, 2, 3):
        c.send(m5.publish("v5/flow/quota3", b"q", qos=2, packet_id=pid))
        c.expect(m5.PUBREC, pid)
    c.send(m5.ack(m5.PUBREL, 1))  # frees one slot
    c.expect(m5.PUBCOMP, 1)
    c.send(m5.publish("v5/flow/quota3", b"q", qos=2, packet_id=4))
    c.expect(m5.PUBREC, 4)
    c.send(m5.publish("v5/flow/quota3", b"q", qos=2, packet_id=5))
    c.expect_disconnect(m5.RC_RECEIVE_MAXIMUM_EXCEEDED)


@pytest.mark.xfail_mosquitto("for a v5 client the send window is its Receive Maximum alone: "
                             "max_inflight_messages 3 is ignored when the client allows 100")
@pytest.mark.broker_options(max_inflight_messages=3)
def test_send_window_is_min_of_inflight_and_receive_maximum(clients):
    """The broker's own window (max_inflight_messages) still applies when the client's
    Receive Maximum is larger."""
    sub = clients.v5(properties={m5.PROP_RECEIVE_MAXIMUM: 100})
    sub.subscribe([("v5/flow/win", 1)])
    pub = clients.v5()
    for i in range(5):
        pub.publish("v5/flow/win", str(i).encode(), qos=1)
    got = sub.recv_publishes(3)
    sub.expect_no_packet(0.5)
    for m in got:
        sub.ack(m)
    assert len(sub.recv_publishes(2, ack=True)) == 2


def test_message_too_big_for_subscriber_dropped_for_it_only_MQTT_3_1_2_25(clients):
    """The server MUST NOT send a packet above the client's Maximum Packet Size
    (MQTT-3.1.2-24): it discards the message for that subscriber only, as if sent
    (MQTT-3.1.2-25); other subscribers get it, and the small client's session goes on."""
    small = clients.v5(properties={m5.PROP_MAXIMUM_PACKET_SIZE: 128})
    big = clients.v5()
    for c in (small, big):
        c.subscribe([("v5/flow/mps", 1)])
    pub = clients.v5()
    pub.publish("v5/flow/mps", b"x" * 500, qos=1)
    pub.publish("v5/flow/mps", b"fits", qos=1)
    assert [m.payload for m in big.recv_publishes(2, ack=True)] == [b"x" * 500, b"fits"]
    got = small.recv_publish(ack=True)
    assert got.payload == b"fits"
    assert publishes_before_sentinel(pub, small, "v5/flow/mps", qos=1) == []
    assert small.is_open()


def test_queued_message_too_big_dropped_on_resume_MQTT_3_1_2_25(clients):
    """Messages queued for an offline session are checked against the Maximum Packet Size of
    the connection that resumes it."""
    cid = clients.unique_id("mps")
    c = clients.v5(cid, properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 30})
    c.subscribe([("v5/flow/mpsq", 1)])
    c.disconnect()
    pub = clients.v5()
    pub.publish("v5/flow/mpsq", b"y" * 400, qos=1)
    pub.publish("v5/flow/mpsq", b"small", qos=1)
    again = clients.v5(cid, clean_start=False, properties={
        m5.PROP_SESSION_EXPIRY_INTERVAL: 30, m5.PROP_MAXIMUM_PACKET_SIZE: 100})
    assert again.connack.session_present
    got = publishes_before_sentinel(pub, again, "v5/flow/mpsq", qos=1)
    assert [m.payload for m in got] == [b"small"]


@pytest.mark.broker_options(max_packet_size_bytes=1024)
def test_packet_above_server_maximum_disconnected_0x95_MQTT_3_2_2_15(clients):
    """The client must not exceed the server's Maximum Packet Size (MQTT-3.2.2-15); a larger
    packet gets DISCONNECT 0x95 (Packet too large) and the close."""
    sub = clients.v5()
    sub.subscribe([("v5/flow/toolarge", 1)])
    c = clients.v5()
    limit = c.connack.properties[m5.PROP_MAXIMUM_PACKET_SIZE]
    assert limit == 1024
    c.send(m5.publish("v5/flow/toolarge", b"z" * 2000, qos=1, packet_id=1))
    c.expect_disconnect(m5.RC_PACKET_TOO_LARGE)
    assert publishes_before_sentinel(clients.v5(), sub, "v5/flow/toolarge", qos=1) == []


@pytest.mark.broker_options(max_packet_size_bytes=1024)
def test_packet_at_server_maximum_accepted(clients):
    sub = clients.v5()
    sub.subscribe([("v5/flow/edge", 0)])
    c = clients.v5()
    overhead = len(m5.publish("v5/flow/edge", b"", qos=1, packet_id=1))
    payload = b"e" * (1024 - overhead - 1)  # the remaining length grows by one byte
    data = m5.publish("v5/flow/edge", payload, qos=1, packet_id=1)
    payload = payload[: len(payload) - (len(data) - 1024)]
    data = m5.publish("v5/flow/edge", payload, qos=1, packet_id=1)
    assert len(data) == 1024
    c.send(data)
    c.expect(m5.PUBACK, 1)
    assert sub.recv_publish().payload == payload
