"""QoS 1 publishing (3.3, 3.4, 4.3.2 of MQTT 3.1.1), both directions."""

import mqtt_packets as mp
from helpers import publishes_before_sentinel


def test_qos1_publish_acked_with_same_packet_id_MQTT_2_3_1_6_MQTT_4_3_2_2(clients):
    pub = clients.raw_connected()
    pub.send(mp.publish("q1/ack", b"x", qos=1, packet_id=0x1234))
    p = pub.recv_packet()
    assert p.type == mp.PUBACK and p.flags == 0
    assert mp.decode_packet_id(p) == 0x1234


def test_qos1_delivered_with_nonzero_packet_id_dup0_MQTT_4_3_2_1(clients):
    sub = clients.raw_connected()
    assert sub.subscribe([("q1/t", 1)]) == [1]
    pub = clients.raw_connected()
    pub.publish("q1/t", b"payload", qos=1)
    msg = sub.recv_publish()
    assert (msg.topic, msg.payload, msg.qos, msg.dup, msg.retain) == ("q1/t", b"payload", 1, False, False)
    assert msg.packet_id and msg.packet_id != 0  # MQTT-2.3.1-1
    sub.send(mp.puback(msg.packet_id))
    # Acknowledged: not sent again.
    assert publishes_before_sentinel(pub, sub, "q1/t", qos=1) == []


def test_incoming_dup_not_propagated_MQTT_3_3_1_3(clients):
    """The DUP flag of an outgoing PUBLISH is set independently of the incoming one."""
    sub = clients.raw_connected()
    sub.subscribe([("q1/dup", 1)])
    pub = clients.raw_connected()
    pub.publish("q1/dup", b"x", qos=1, dup=True)
    msg = sub.recv_publish(ack=True)
    assert msg.dup is False


def test_resent_qos1_publish_is_acked_again_MQTT_4_3_2_2(clients):
    """After PUBACK, the same packet id starts a new publication: it is acknowledged again."""
    sub = clients.raw_connected()
    sub.subscribe([("q1/again", 1)])
    pub = clients.raw_connected()
    for payload, dup in ((b"first", False), (b"second", True)):
        pub.send(mp.publish("q1/again", payload, qos=1, packet_id=9, dup=dup))
        assert mp.decode_packet_id(pub.expect(mp.PUBACK)) == 9
    got = [m.payload for m in sub.recv_publishes(2, ack=True)]
    assert got == [b"first", b"second"]


def test_qos1_downgraded_for_qos0_subscriber_MQTT_3_8_4_6(clients):
    sub = clients.raw_connected()
    sub.subscribe([("q1/down", 0)])
    pub = clients.raw_connected()
    pub.publish("q1/down", b"x", qos=1)
    msg = sub.recv_publish()
    assert msg.qos == 0 and msg.packet_id is None


def test_qos1_order_preserved_MQTT_4_6_0_6(clients):
    sub = clients.raw_connected()
    sub.subscribe([("q1/order", 1)])
    pub = clients.raw_connected()
    for i in range(1, 101):
        pub.send(mp.publish("q1/order", str(i).encode(), qos=1, packet_id=i))
    acks = [mp.decode_packet_id(pub.expect(mp.PUBACK)) for _ in range(100)]
    assert sorted(acks) == list(range(1, 101))
    got = [int(m.payload) for m in sub.recv_publishes(100, ack=True)]
    assert got == list(range(1, 101))


def test_inflight_packet_ids_distinct_MQTT_2_3_1_2(clients):
    """Unacknowledged QoS 1 messages toward one client each use a different packet id."""
    sub = clients.raw_connected()
    sub.subscribe([("q1/ids", 1)])
    pub = clients.raw_connected()
    for i in range(10):
        pub.publish("q1/ids", str(i).encode(), qos=1)
    msgs = sub.recv_publishes(10)  # not acknowledged (default in-flight window is 20)
    ids = [m.packet_id for m in msgs]
    assert 0 not in ids and len(set(ids)) == 10
    for m in msgs:
        sub.send(mp.puback(m.packet_id))
    assert sub.is_open()


def test_unacked_qos1_redelivered_with_dup_after_reconnect_MQTT_4_4_0_1(clients):
    """Persistent session: an unacknowledged QoS 1 message is resent on reconnect with the
    same packet id and DUP=1 (MQTT-4.4.0-1, MQTT-3.3.1-1)."""
    cid = clients.unique_id("q1redeliver")
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe([("q1/redeliver", 1)])
    pub = clients.raw_connected()
    pub.publish("q1/redeliver", b"keep me", qos=1)
    first = sub.recv_publish()
    assert first.dup is False
    sub.abort()  # no PUBACK
    sub = clients.raw()
    assert sub.connect(cid, clean_session=False).session_present is True
    again = sub.recv_publish()
    assert (again.payload, again.qos, again.packet_id, again.dup) == (b"keep me", 1, first.packet_id, True)
    sub.send(mp.puback(again.packet_id))
    assert publishes_before_sentinel(pub, sub, "q1/redeliver", qos=1) == []


def test_paho_qos1_roundtrip(clients):
    sub = clients.paho()
    assert sub.subscribe("q1/paho", 1) == [1]
    pub = clients.paho()
    pub.publish("q1/paho", b"from paho", qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload, m.qos) == ("q1/paho", b"from paho", 1)
