"""QoS 2 publishing (3.3, 3.5-3.7, 4.3.3 of MQTT 3.1.1), both directions."""

import pytest

import mqtt_packets as mp
from helpers import publishes_before_sentinel


def test_inbound_qos2_flow_pubrec_pubrel_pubcomp_MQTT_4_3_3_2(clients):
    """Server as receiver: PUBREC with the PUBLISH's id, then PUBCOMP for the PUBREL."""
    pub = clients.raw_connected()
    pub.send(mp.publish("q2/in", b"x", qos=2, packet_id=0xABCD))
    rec = pub.recv_packet()
    assert rec.type == mp.PUBREC and rec.flags == 0 and mp.decode_packet_id(rec) == 0xABCD
    pub.send(mp.pubrel(0xABCD))
    comp = pub.recv_packet()
    assert comp.type == mp.PUBCOMP and comp.flags == 0 and mp.decode_packet_id(comp) == 0xABCD


def test_outbound_qos2_flow_MQTT_4_3_3_1_MQTT_3_6_1_1(clients):
    """Server as sender: PUBLISH QoS 2 DUP 0, PUBREL (flags 0010) after our PUBREC, done after
    our PUBCOMP."""
    sub = clients.raw_connected()
    assert sub.subscribe([("q2/out", 2)]) == [2]
    pub = clients.raw_connected()
    pub.publish("q2/out", b"exactly once", qos=2)
    msg = sub.recv_publish()
    assert (msg.payload, msg.qos, msg.dup) == (b"exactly once", 2, False)
    assert msg.packet_id
    sub.send(mp.pubrec(msg.packet_id))
    rel = sub.recv_packet()
    assert rel.type == mp.PUBREL and rel.flags == 0x02, f"PUBREL flags must be 0010, got {rel!r}"
    assert mp.decode_packet_id(rel) == msg.packet_id
    sub.send(mp.pubcomp(msg.packet_id))
    assert publishes_before_sentinel(pub, sub, "q2/out", qos=2) == []


def _publish_with_duplicates(pub, sub, topic, duplicates):
    pub.send(mp.publish(topic, b"once", qos=2, packet_id=7))
    assert mp.decode_packet_id(pub.expect(mp.PUBREC)) == 7
    for _ in range(duplicates):
        pub.send(mp.publish(topic, b"once", qos=2, packet_id=7, dup=True))
        assert mp.decode_packet_id(pub.expect(mp.PUBREC)) == 7
    pub.send(mp.pubrel(7))
    assert mp.decode_packet_id(pub.expect(mp.PUBCOMP)) == 7
    first = sub.recv_publish(ack=True)
    assert first.payload == b"once"
    assert publishes_before_sentinel(pub, sub, topic, qos=2) == []


def test_duplicate_qos2_publish_not_redelivered_MQTT_4_3_3_2(clients):
    """Until PUBREL, a PUBLISH with the same packet id is acknowledged with PUBREC again but
    must not cause a duplicate delivery to subscribers."""
    sub = clients.raw_connected()
    sub.subscribe([("q2/dupe", 2)])
    pub = clients.raw_connected()
    _publish_with_duplicates(pub, sub, "q2/dupe", duplicates=1)


@pytest.mark.xfail_mosquitto(
    "a second duplicate QoS 2 PUBLISH before PUBREL is treated as a protocol error and the "
    "connection closed, instead of another PUBREC (eclipse-mosquitto/mosquitto#3602)"
)
def test_repeated_duplicate_qos2_publish_each_acked_MQTT_4_3_3_2(clients):
    """'MUST acknowledge any subsequent PUBLISH packet with the same Packet Identifier by
    sending a PUBREC': any number of resends, not just one."""
    sub = clients.raw_connected()
    sub.subscribe([("q2/dupes", 2)])
    pub = clients.raw_connected()
    _publish_with_duplicates(pub, sub, "q2/dupes", duplicates=3)


def test_packet_id_reused_after_pubcomp_is_new_message_MQTT_4_3_3_2(clients):
    sub = clients.raw_connected()
    sub.subscribe([("q2/reuse", 2)])
    pub = clients.raw_connected()
    pub.publish("q2/reuse", b"A", qos=2, packet_id=5)
    pub.publish("q2/reuse", b"B", qos=2, packet_id=5)
    got = [m.payload for m in sub.recv_publishes(2, ack=True)]
    assert got == [b"A", b"B"]


def test_pubrel_for_unknown_id_gets_pubcomp_MQTT_4_3_3_2(clients):
    c = clients.raw_connected()
    c.send(mp.pubrel(77))
    p = c.recv_packet()
    assert p.type == mp.PUBCOMP and mp.decode_packet_id(p) == 77


def test_repeated_pubrel_gets_pubcomp_each_time_delivered_once(clients):
    sub = clients.raw_connected()
    sub.subscribe([("q2/rel", 2)])
    pub = clients.raw_connected()
    pub.send(mp.publish("q2/rel", b"x", qos=2, packet_id=3))
    pub.expect(mp.PUBREC, 3)
    for _ in range(2):
        pub.send(mp.pubrel(3))
        assert mp.decode_packet_id(pub.expect(mp.PUBCOMP)) == 3
    assert sub.recv_publish(ack=True).payload == b"x"
    assert publishes_before_sentinel(pub, sub, "q2/rel", qos=2) == []


def test_qos2_downgraded_to_subscription_qos_MQTT_3_8_4_6(clients):
    s0 = clients.raw_connected()
    s0.subscribe([("q2/down", 0)])
    s1 = clients.raw_connected()
    s1.subscribe([("q2/down", 1)])
    pub = clients.raw_connected()
    pub.publish("q2/down", b"x", qos=2)
    assert s0.recv_publish().qos == 0
    assert s1.recv_publish(ack=True).qos == 1


def test_unacked_qos2_redelivered_with_dup_after_reconnect_MQTT_4_4_0_1(clients):
    """No PUBREC before the connection dropped: on reconnect the PUBLISH is resent with the
    same packet id and DUP=1 (MQTT-3.3.1-1); completing the flow then ends it."""
    cid = clients.unique_id("q2redeliver")
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe([("q2/redeliver", 2)])
    pub = clients.raw_connected()
    pub.publish("q2/redeliver", b"keep me", qos=2)
    first = sub.recv_publish()
    assert first.dup is False
    sub.abort()
    sub = clients.raw()
    assert sub.connect(cid, clean_session=False).session_present is True
    again = sub.recv_publish()
    assert (again.payload, again.qos, again.packet_id, again.dup) == (b"keep me", 2, first.packet_id, True)
    sub.ack(again)
    assert publishes_before_sentinel(pub, sub, "q2/redeliver", qos=2) == []


def test_pubrel_resent_not_publish_after_reconnect_MQTT_4_4_0_1(clients):
    """PUBREC sent, PUBCOMP not: on reconnect the server resends the PUBREL with the same id,
    never the PUBLISH again (MQTT-4.3.3-1: no re-send of PUBLISH once PUBREL was sent)."""
    cid = clients.unique_id("q2pubrel")
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe([("q2/pubrel", 2)])
    pub = clients.raw_connected()
    pub.publish("q2/pubrel", b"x", qos=2)
    msg = sub.recv_publish()
    sub.send(mp.pubrec(msg.packet_id))
    assert mp.decode_packet_id(sub.expect(mp.PUBREL)) == msg.packet_id
    sub.abort()  # no PUBCOMP
    sub = clients.raw()
    assert sub.connect(cid, clean_session=False).session_present is True
    rel = sub.recv_packet()
    assert rel.type == mp.PUBREL and rel.flags == 0x02 and mp.decode_packet_id(rel) == msg.packet_id, rel
    sub.send(mp.pubcomp(msg.packet_id))
    assert publishes_before_sentinel(pub, sub, "q2/pubrel", qos=2) == []


def test_inbound_qos2_state_survives_reconnect_MQTT_4_4_0_1(clients):
    """Publisher with a persistent session got PUBREC, lost the connection, reconnects and
    resends the PUBLISH (DUP=1): PUBREC again, then PUBCOMP, and a single delivery."""
    sub = clients.raw_connected()
    sub.subscribe([("q2/inbound", 2)])
    cid = clients.unique_id("q2pub")
    pub = clients.raw()
    pub.connect(cid, clean_session=False)
    pub.send(mp.publish("q2/inbound", b"one", qos=2, packet_id=11))
    pub.expect(mp.PUBREC, 11)
    pub.abort()
    pub = clients.raw()
    assert pub.connect(cid, clean_session=False).session_present is True
    pub.send(mp.publish("q2/inbound", b"one", qos=2, packet_id=11, dup=True))
    assert mp.decode_packet_id(pub.expect(mp.PUBREC)) == 11
    pub.send(mp.pubrel(11))
    assert mp.decode_packet_id(pub.expect(mp.PUBCOMP)) == 11
    assert sub.recv_publish(ack=True).payload == b"one"
    assert publishes_before_sentinel(pub, sub, "q2/inbound", qos=2) == []


def test_paho_qos2_roundtrip(clients):
    sub = clients.paho()
    assert sub.subscribe("q2/paho", 2) == [2]
    pub = clients.paho()
    pub.publish("q2/paho", b"from paho", qos=2)
    m = sub.expect_message()
    assert (m.topic, m.payload, m.qos) == ("q2/paho", b"from paho", 2)
    sub.expect_no_message(0.3)
