"""QoS 0 publishing (3.3, 4.3.1 of MQTT 3.1.1)."""

import os

import pytest

import mqtt_packets as mp
from helpers import publishes_before_sentinel


def test_qos0_delivered_with_qos0_dup0_no_packet_id_MQTT_4_3_1_1(clients):
    sub = clients.raw_connected()
    assert sub.subscribe([("q0/t", 0)]) == [0]
    pub = clients.raw_connected()
    pub.publish("q0/t", b"hello")
    msg = sub.recv_publish()
    assert (msg.topic, msg.payload, msg.qos, msg.dup, msg.retain) == ("q0/t", b"hello", 0, False, False)
    assert msg.packet_id is None


def test_qos0_publish_gets_no_acknowledgement_MQTT_3_3_4_1(clients):
    pub = clients.raw_connected()
    pub.send(mp.publish("q0/noack", b"x"))
    pub.expect_no_packet(0.3)
    assert pub.is_open()


def test_qos0_stays_qos0_for_qos2_subscriber_MQTT_3_8_4_6(clients):
    sub = clients.raw_connected()
    sub.subscribe([("q0/up", 2)])
    pub = clients.raw_connected()
    pub.publish("q0/up", b"x", qos=0)
    assert sub.recv_publish().qos == 0


def test_qos0_order_preserved_MQTT_4_6_0_6(clients):
    sub = clients.raw_connected()
    sub.subscribe([("q0/order", 0)])
    pub = clients.raw_connected()
    for i in range(200):
        pub.send(mp.publish("q0/order", str(i).encode()))
    got = [int(m.payload) for m in sub.recv_publishes(200)]
    assert got == list(range(200))


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 100_000])
def test_payload_sizes_and_remaining_length_encodings(clients, size):
    """Payloads whose packets need 1 to 3 Remaining Length bytes (2.2.3) arrive intact."""
    payload = os.urandom(size)
    sub = clients.raw_connected()
    sub.subscribe([("q0/size", 0)])
    pub = clients.raw_connected()
    pub.publish("q0/size", payload)
    msg = sub.recv_publish(timeout=10)
    assert msg.payload == payload


def test_binary_payload_all_byte_values(clients):
    payload = bytes(range(256)) * 4
    sub = clients.raw_connected()
    sub.subscribe([("q0/bin", 0)])
    pub = clients.raw_connected()
    pub.publish("q0/bin", payload)
    assert sub.recv_publish().payload == payload


def test_not_delivered_to_non_matching_subscription_MQTT_3_3_2_3(clients):
    sub = clients.raw_connected()
    sub.subscribe([("q0/a", 0), ("q0/sentinel", 0)])
    pub = clients.raw_connected()
    pub.publish("q0/b", b"other topic")
    pub.publish("q0/A", b"case differs")
    pub.publish("q0/a/deeper", b"deeper level")
    assert publishes_before_sentinel(pub, sub, "q0/sentinel") == []


def test_publisher_receives_its_own_message_when_subscribed(clients):
    c = clients.raw_connected()
    c.subscribe([("q0/self", 0)])
    c.publish("q0/self", b"echo")
    assert c.recv_publish().payload == b"echo"


def test_multiple_subscribers_each_receive_a_copy_MQTT_4_5_0_1(clients):
    subs = [clients.raw_connected() for _ in range(5)]
    for s in subs:
        s.subscribe([("q0/fan", 0)])
    pub = clients.raw_connected()
    pub.publish("q0/fan", b"to all")
    for s in subs:
        assert s.recv_publish().payload == b"to all"


def test_utf8_topic_delivered_byte_exact_MQTT_4_7_3_4(clients):
    topic = "ünïcødé/ß/日本/🎉"
    sub = clients.raw_connected()
    sub.subscribe([(topic, 0)])
    pub = clients.raw_connected()
    pub.publish(topic, b"x")
    msg = sub.recv_publish()
    assert msg.topic_bytes == topic.encode("utf-8")


def test_topics_not_normalised_MQTT_4_7_3_4(clients):
    """'café' precomposed (U+00E9) and decomposed (e + U+0301) are different topics."""
    sub = clients.raw_connected()
    sub.subscribe([("q0/caf\u00e9", 0), ("q0/sentinel", 0)])
    pub = clients.raw_connected()
    pub.publish("q0/cafe\u0301", b"decomposed")
    assert publishes_before_sentinel(pub, sub, "q0/sentinel") == []


def test_topic_levels_may_be_empty_and_contain_spaces_section_4_7_3(clients):
    sub = clients.raw_connected()
    topics = ["/", "//", "q0//x", "q0/with space/ x ", "/leading", "trailing/"]
    sub.subscribe([(t, 0) for t in topics])
    pub = clients.raw_connected()
    for t in topics:
        pub.publish(t, t.encode())
    got = sub.recv_publishes(len(topics))
    assert [m.topic for m in got] == topics
    assert all(m.payload == m.topic.encode() for m in got)


def test_paho_qos0_roundtrip(clients):
    sub = clients.paho()
    assert sub.subscribe("q0/paho", 0) == [0]
    pub = clients.paho()
    pub.publish("q0/paho", b"from paho", qos=0)
    m = sub.expect_message()
    assert (m.topic, m.payload, m.qos, m.retain) == ("q0/paho", b"from paho", 0, False)
