"""Malformed packets and protocol violations, byte by byte.

Each case sends the offending bytes on one connection and asserts that (1) the server closes
THAT connection (MQTT-4.8.0-1: a protocol violation closes the connection it arrived on),
without answering it; (2) a bystander client connected before keeps its connection and
still receives messages; (3) a fresh client can connect and exchange a message.
"""

import struct

import pytest

import mqtt_packets as mp
from helpers import assert_healthy, wait_for_log


# A violation is detected as the packet is parsed: the close should be immediate.
CLOSE_TIMEOUT_S = 2.5


def _bystander(clients):
    b = clients.raw_connected()
    b.subscribe([("bystander/t", 1)])
    return b


def _assert_only_offender_closed(broker, clients, bystander, offender, allow=()):
    offender.expect_closed(timeout=CLOSE_TIMEOUT_S, allow_packets=allow)
    pub = clients.raw_connected()
    pub.publish("bystander/t", b"still served", qos=1)
    msg = bystander.recv_publish(ack=True)
    assert msg.payload == b"still served"
    assert bystander.is_open()
    assert_healthy(broker)


def _pid(n):
    return struct.pack("!H", n)


# Mosquitto 2.0.11 deviations (the case is xfail(strict) under Mosquitto only).
IGNORES_FLAGS = ("keeps the connection after a PUBACK with reserved fixed-header flags 0010 "
                 "instead of closing it (MQTT-2.2.2-2)")
ACCEPTS_SERVER_PACKETS = ("keeps the connection after a client sends it a server-to-client packet "
                          "(SUBACK, UNSUBACK, PINGRESP) instead of closing it (MQTT-4.8.0-1)")
IGNORES_LENGTH = ("accepts a PUBACK/PINGREQ whose Remaining Length is not the fixed 3.1.1 value "
                  "(2 / 0) instead of treating it as malformed")

# Sent after a successful CONNECT: (id, bytes, statement[, Mosquitto xfail reason]).
AFTER_CONNECT = [
    ("subscribe-flags-0000", mp.subscribe(1, [("a", 0)], flags=0x0), "MQTT-3.8.1-1"),
    ("subscribe-flags-0011", mp.subscribe(1, [("a", 0)], flags=0x3), "MQTT-3.8.1-1"),
    ("unsubscribe-flags-0000", mp.unsubscribe(1, ["a"], flags=0x0), "MQTT-3.10.1-1"),
    ("pubrel-flags-0000", mp.pubrel(1, flags=0x0), "MQTT-3.6.1-1"),
    ("disconnect-flags-0001", mp.disconnect(flags=0x1), "MQTT-3.14.1-1"),
    ("puback-flags-0010", mp.packet(mp.PUBACK, 0x2, _pid(1)), "MQTT-2.2.2-2", IGNORES_FLAGS),
    ("publish-qos3", mp.publish("a", b"x", flags=0x06, packet_id=1), "MQTT-3.3.1-4"),
    ("publish-qos3-retain-dup", mp.publish("a", b"x", flags=0x0F, packet_id=1), "MQTT-3.3.1-4"),
    ("publish-topic-hash", mp.publish("a/#", b"x"), "MQTT-3.3.2-2"),
    ("publish-topic-plus", mp.publish("a/+/b", b"x"), "MQTT-3.3.2-2"),
    ("publish-topic-empty", mp.publish("", b"x"), "MQTT-4.7.3-1"),
    ("publish-topic-bad-utf8", mp.publish(b"a/\xc3\x28", b"x"), "MQTT-1.5.3-1"),
    ("publish-topic-overlong-utf8", mp.publish(b"a/\xc0\xaf", b"x"), "MQTT-1.5.3-1"),
    ("publish-topic-surrogate", mp.publish(b"a/\xed\xa0\x80", b"x"), "MQTT-1.5.3-1"),
    ("publish-topic-nul", mp.publish(b"a/\x00b", b"x"), "MQTT-1.5.3-2"),
    ("publish-qos1-packet-id-0", mp.publish("a", b"x", qos=1, packet_id=0), "MQTT-2.3.1-1"),
    ("publish-qos2-packet-id-0", mp.publish("a", b"x", qos=2, packet_id=0), "MQTT-2.3.1-1"),
    ("publish-topic-length-past-end", mp.packet(mp.PUBLISH, 0, b"\x00\x10abc"), "MQTT-4.8.0-1"),
    ("publish-qos1-no-packet-id", mp.packet(mp.PUBLISH, 0x2, mp.encode_string("a")), "MQTT-4.8.0-1"),
    ("subscribe-packet-id-0", mp.subscribe(0, [("a", 0)]), "MQTT-2.3.1-1"),
    ("unsubscribe-packet-id-0", mp.unsubscribe(0, ["a"]), "MQTT-2.3.1-1"),
    ("subscribe-no-topics", mp.packet(mp.SUBSCRIBE, 0x2, _pid(1)), "MQTT-3.8.3-3"),
    ("unsubscribe-no-topics", mp.packet(mp.UNSUBSCRIBE, 0x2, _pid(1)), "MQTT-3.10.3-2"),
    ("subscribe-qos-3", mp.subscribe(1, [("a", 3)]), "MQTT-3.8.3-4"),
    ("subscribe-qos-reserved-bits", mp.subscribe(1, [("a", 0x04)]), "MQTT-3.8.3-4"),
    ("subscribe-missing-qos-byte", mp.packet(mp.SUBSCRIBE, 0x2, _pid(1) + mp.encode_string("a")), "MQTT-4.8.0-1"),
    ("subscribe-filter-bad-utf8", mp.subscribe(1, [(b"a/\xff", 0)]), "MQTT-3.8.3-1"),
    ("subscribe-filter-nul", mp.subscribe(1, [(b"a\x00", 0)]), "MQTT-1.5.3-2"),
    ("unsubscribe-filter-bad-utf8", mp.unsubscribe(1, [b"\xfe\xff"]), "MQTT-3.10.3-1"),
    ("remaining-length-5-bytes", mp.raw_packet(0x30, remaining_length=b"\xff\xff\xff\xff\x7f"), "2.2.3"),
    ("reserved-type-0", mp.raw_packet(0x00), "2.2.1"),
    ("reserved-type-15", mp.raw_packet(0xF0), "2.2.1"),
    ("client-sends-connack", mp.packet(mp.CONNACK, 0, b"\x00\x00"), "MQTT-4.8.0-1"),
    ("client-sends-suback", mp.packet(mp.SUBACK, 0, _pid(1) + b"\x00"), "MQTT-4.8.0-1", ACCEPTS_SERVER_PACKETS),
    ("client-sends-unsuback", mp.packet(mp.UNSUBACK, 0, _pid(1)), "MQTT-4.8.0-1", ACCEPTS_SERVER_PACKETS),
    ("client-sends-pingresp", mp.packet(mp.PINGRESP, 0), "MQTT-4.8.0-1", ACCEPTS_SERVER_PACKETS),
    ("puback-remaining-length-3", mp.packet(mp.PUBACK, 0, b"\x00\x01\x00"), "3.4.1", IGNORES_LENGTH),
    ("pingreq-with-body", mp.packet(mp.PINGREQ, 0, b"\x00"), "3.12.1", IGNORES_LENGTH),
]


def _cases(table):
    out = []
    for case in table:
        ident, data, statement = case[:3]
        marks = [pytest.mark.xfail_mosquitto(case[3])] if len(case) > 3 else []
        out.append(pytest.param(data, statement, id=f"{ident}({statement})", marks=marks))
    return out


@pytest.mark.parametrize("data,statement", _cases(AFTER_CONNECT))
def test_malformed_after_connect_closes_only_offender(broker, clients, data, statement):
    bystander = _bystander(clients)
    bad = clients.raw_connected()
    bad.send(data)
    _assert_only_offender_closed(broker, clients, bystander, bad)


@pytest.mark.xfail_mosquitto(
    "answers a PINGREQ whose reserved fixed-header flags are 0001 with PINGRESP and keeps the "
    "connection, instead of closing it"
)
def test_pingreq_reserved_flags_close_MQTT_2_2_2_2(broker, clients):
    bystander = _bystander(clients)
    bad = clients.raw_connected()
    bad.send(mp.pingreq(flags=0x1))
    _assert_only_offender_closed(broker, clients, bystander, bad)


# Sent as the first packet: (id, bytes, statement).
AS_CONNECT = [
    ("connect-client-id-bad-utf8", mp.connect(b"\xc3\x28"), "MQTT-1.5.3-1"),
    ("connect-client-id-nul", mp.connect(b"id\x00"), "MQTT-1.5.3-2"),
    ("connect-trailing-bytes", mp.connect("trailing", extra=b"zz"), "MQTT-3.1.4-1"),
    ("connect-truncated-payload", mp.packet(mp.CONNECT, 0, mp.connect("cut")[2:-2]), "MQTT-3.1.4-1"),
    ("connect-will-topic-bad-utf8", mp.connect("w", will_topic=b"\xff", will_message=b"m"), "MQTT-3.1.3-10"),
    ("connect-will-topic-nul", mp.connect("w", will_topic=b"w/\x00", will_message=b"m"), "MQTT-1.5.3-2"),
    ("connect-username-bad-utf8", mp.connect("u", username=b"\xc3"), "MQTT-3.1.3-11"),
    ("connect-reserved-flag", mp.connect("r", reserved_flag=True), "MQTT-3.1.2-3"),
    ("connect-remaining-length-5-bytes", mp.raw_packet(0x10, remaining_length=b"\x80\x80\x80\x80\x01"), "2.2.3"),
]


@pytest.mark.parametrize("data,statement", _cases(AS_CONNECT))
def test_malformed_connect_closes_only_offender(broker, clients, data, statement):
    bystander = _bystander(clients)
    bad = clients.raw()
    bad.send(data)
    _assert_only_offender_closed(broker, clients, bystander, bad)


def test_invalid_topic_filter_rejected_MQTT_4_7_1_2_MQTT_4_7_1_3(broker, clients):
    """'a/#/b' and 'a+' are invalid filters: the server either refuses them (SUBACK 0x80) or
    closes the connection; it must not subscribe to them. Valid filters in the same SUBSCRIBE
    keep their own return codes if the server answers."""
    for bad_filter in ("a/#/b", "a+", "#/a", "a/b#"):
        c = clients.raw_connected()
        c.send(mp.subscribe(5, [("ok/1", 1), (bad_filter, 0), ("ok/2", 2)]))
        try:
            p = c.recv_packet()
        except mp.ConnectionClosed:
            continue
        ack = mp.decode_suback(p)
        assert ack.return_codes == [1, mp.SUBACK_FAILURE, 2], f"{bad_filter!r}: {ack.return_codes}"
    assert_healthy(broker)


def test_byte_at_a_time_packets_are_reassembled(clients):
    """Framing survives arbitrary TCP segmentation: a CONNECT, SUBSCRIBE and PUBLISH sent
    one byte per write still work."""
    c = clients.raw()
    data = mp.connect("dribble") + mp.subscribe(1, [("drip", 0)]) + mp.publish("drip", b"x" * 300)
    for i in range(len(data)):
        c.send(data[i:i + 1])
    assert mp.decode_connack(c.recv_packet()).return_code == 0
    assert mp.decode_suback(c.recv_packet()).return_codes == [0]
    assert c.recv_publish().payload == b"x" * 300


def test_many_packets_in_one_write_are_all_processed(clients):
    c = clients.raw()
    c.send(mp.connect("burst") + mp.subscribe(1, [("burst", 0)])
           + b"".join(mp.publish("burst", str(i).encode()) for i in range(50)) + mp.pingreq())
    assert mp.decode_connack(c.recv_packet()).return_code == 0
    assert mp.decode_suback(c.recv_packet()).return_codes == [0]
    got = [int(m.payload) for m in c.recv_publishes(50)]
    assert got == list(range(50))
    assert c.recv_packet().type == mp.PINGRESP


@pytest.mark.broker_options(max_packet_size_bytes=1024)
def test_oversized_packet_closes_only_offender(broker, clients):
    """A packet over the broker's maximum packet size closes that connection (Starling:
    --max-packet-size-bytes, whole frame; Mosquitto: max_packet_size). Sizes are far from
    the limit so the two brokers' accounting of the fixed header does not matter."""
    bystander = _bystander(clients)
    ok = clients.raw_connected()
    ok.publish("bystander/t", b"s" * 512, qos=1)
    assert bystander.recv_publish(ack=True).payload == b"s" * 512
    bad = clients.raw_connected()
    bad.try_send(mp.publish("bystander/t", b"x" * 4096, qos=1, packet_id=1))
    _assert_only_offender_closed(broker, clients, bystander, bad)


@pytest.mark.broker_options(max_packet_size_bytes=1024)
def test_oversized_length_header_closes_before_body_arrives(broker, clients):
    """A Remaining Length announcing 100 MB is refused as soon as the header is read: the
    server must not wait for (or buffer) the body."""
    bystander = _bystander(clients)
    bad = clients.raw_connected()
    bad.send(mp.raw_packet(0x30, remaining_length=mp.encode_remaining_length(100_000_000)) + b"\x00\x01a")
    _assert_only_offender_closed(broker, clients, bystander, bad)


@pytest.mark.broker_options(max_packet_size_bytes=1024)
def test_oversized_connect_closes(broker, clients):
    bystander = _bystander(clients)
    bad = clients.raw()
    bad.try_send(mp.connect("big", will_topic="w", will_message=b"m" * 4096))
    _assert_only_offender_closed(broker, clients, bystander, bad)


# ---- MQTT 3.1: DUP on resent PUBREL, SUBSCRIBE and UNSUBSCRIBE ------------------------------


def _v31_client(clients):
    c = clients.raw()
    assert c.connect(clients.unique_id("v31"), protocol_name="MQIsdp", protocol_level=3).return_code == 0
    return c


def test_v31_resent_subscribe_and_unsubscribe_with_dup_are_answered(clients):
    """MQTT 3.1 gives SUBSCRIBE and UNSUBSCRIBE QoS 1 and a DUP flag its clients set on a
    retry (3.1 sections 3.8, 3.10): flags 1010 are accepted from a 3.1 client, not treated
    as the 3.1.1 rule's malformed header (MQTT-3.8.1-1 and MQTT-3.10.1-1 are 3.1.1 rules)."""
    c = _v31_client(clients)
    c.send(mp.subscribe(7, [("v31/dup", 1)], flags=0x0A))
    assert mp.decode_suback(c.expect(mp.SUBACK, 7)).return_codes == [1]
    c.publish("v31/dup", b"subscribed", qos=1)
    assert c.recv_publish(ack=True).payload == b"subscribed"
    c.send(mp.unsubscribe(8, ["v31/dup"], flags=0x0A))
    c.expect(mp.UNSUBACK, 8)
    c.publish("v31/dup", b"gone", qos=0)
    c.expect_no_packet(0.5)
    assert c.is_open()


def test_v31_resent_pubrel_with_dup_completes_qos2(clients):
    """A 3.1 client resending PUBREL sets DUP (flags 1010): answered with PUBCOMP, and the
    message was delivered once."""
    sub = _v31_client(clients)
    assert sub.subscribe([("v31/rel", 2)]) == [2]
    pub = _v31_client(clients)
    pub.send(mp.publish("v31/rel", b"once", qos=2, packet_id=5))
    pub.expect(mp.PUBREC, 5)
    pub.send(mp.pubrel(5, flags=0x0A))
    pub.expect(mp.PUBCOMP, 5)
    assert sub.recv_publish(ack=True).payload == b"once"
    sub.expect_no_packet(0.5)
    assert pub.is_open()


@pytest.mark.parametrize("data", [
    mp.subscribe(1, [("a", 0)], flags=0x0A),
    mp.unsubscribe(1, ["a"], flags=0x0A),
    mp.pubrel(1, flags=0x0A),
], ids=["subscribe-MQTT-3.8.1-1", "unsubscribe-MQTT-3.10.1-1", "pubrel-MQTT-3.6.1-1"])
def test_v311_dup_on_pubrel_subscribe_unsubscribe_closes(broker, clients, data):
    """The same bytes from a 3.1.1 client break the fixed-header flags rule: closed."""
    bystander = _bystander(clients)
    bad = clients.raw_connected()
    bad.send(data)
    _assert_only_offender_closed(broker, clients, bystander, bad)


# ---- acknowledgements of the wrong kind ------------------------------------------------------

def _inflight(clients, qos):
    """A subscriber with one unacknowledged message of ``qos`` in flight toward it."""
    sub = clients.raw_connected(clients.unique_id("wrong-ack"))
    assert sub.subscribe([("wrong/ack", qos)]) == [qos]
    clients.raw_connected().publish("wrong/ack", b"m", qos=qos)
    msg = sub.recv_publish()
    assert msg.qos == qos
    return sub, msg


@pytest.mark.parametrize("qos,answer", [
    (1, mp.pubrec), (1, mp.pubcomp), (2, mp.puback), (2, mp.pubcomp),
], ids=["pubrec-for-qos1", "pubcomp-for-qos1", "puback-for-qos2", "pubcomp-before-pubrec"])
def test_acknowledgement_of_the_wrong_kind_closes_4_3(broker, clients, qos, answer):
    """Each QoS has its own exchange (4.3.2, 4.3.3): PUBREC or PUBCOMP for a QoS 1 message,
    PUBACK for a QoS 2 one, PUBCOMP before PUBREC are protocol violations that close the
    connection (MQTT-4.8.0-1), instead of being ignored with the in-flight slot kept taken."""
    bystander = _bystander(clients)
    sub, msg = _inflight(clients, qos)
    sub.send(answer(msg.packet_id))
    _assert_only_offender_closed(broker, clients, bystander, sub)
    if broker.kind == "starling":
        # One line naming the client id and the reason.
        wait_for_log(broker, "acknowledgement of the wrong kind", "client=wrong-ack-")


def test_right_acknowledgements_and_unknown_ids_keep_the_connection(clients):
    """Control: the right exchange completes, and an acknowledgement for an id that is not in
    flight (a late duplicate) is ignored."""
    sub, msg = _inflight(clients, 2)
    sub.send(mp.pubrec(msg.packet_id))
    sub.expect(mp.PUBREL, msg.packet_id)
    sub.send(mp.pubrec(msg.packet_id))  # a repeated PUBREC gets the PUBREL again
    sub.expect(mp.PUBREL, msg.packet_id)
    sub.send(mp.pubcomp(msg.packet_id))
    sub.send(mp.puback(4321) + mp.pubcomp(4321))
    assert sub.is_open()
    clients.raw_connected().publish("wrong/ack", b"next", qos=1)
    assert sub.recv_publish(ack=True).payload == b"next"
