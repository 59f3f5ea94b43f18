"""MQTT 5.0 malformed packets and protocol errors, byte by byte (2.2.2, 4.13 of MQTT 5.0),
and reason codes on acknowledgements.

For each case the offender gets a DISCONNECT with the reason code the standard gives
(0x81 Malformed Packet, 0x82 Protocol Error, ...) and then the close (MQTT-4.13.1-1); a
bystander keeps its connection and its messages, and a fresh client is served.
"""

import struct

import pytest

import mqtt5_packets as m5
from helpers import assert_healthy, publishes_before_sentinel

MALFORMED = (m5.RC_MALFORMED_PACKET,)
PROTOCOL = (m5.RC_PROTOCOL_ERROR,)
EITHER = (m5.RC_MALFORMED_PACKET, m5.RC_PROTOCOL_ERROR)

P = m5.encode_properties
MEI, PFI, CT, RT, CD, SID = (m5.PROP_MESSAGE_EXPIRY_INTERVAL, m5.PROP_PAYLOAD_FORMAT_INDICATOR,
                             m5.PROP_CONTENT_TYPE, m5.PROP_RESPONSE_TOPIC, m5.PROP_CORRELATION_DATA,
                             m5.PROP_SUBSCRIPTION_IDENTIFIER)


def _raw_publish(props_block, qos=1):
    return m5.publish("v5/bad", b"x", qos=qos, packet_id=1 if qos else None, raw_properties=props_block)


def _raw_subscribe(props_block=None, opts=0x01, topic="v5/bad/sub"):
    return m5.subscribe(1, [(topic, opts)], raw_properties=props_block if props_block is not None else P())


def _bad_string_prop(prop_id, raw: bytes):
    body = bytes([prop_id]) + struct.pack("!H", len(raw)) + raw
    return m5.encode_varint(len(body)) + body


# How Mosquitto 2.0.11 deviates, per case (the 5th field of the tables below):
SILENT = "closes the connection without sending DISCONNECT with the reason code (4.13.1: SHOULD)"
ACCEPTS = "accepts the packet and keeps the connection"

# Sent after a successful v5 CONNECT:
# (id, bytes, accepted reason codes, statement[, Mosquitto deviation]).
AFTER_CONNECT = [
    ("publish-duplicate-message-expiry", _raw_publish(P([(MEI, 10), (MEI, 20)])), PROTOCOL, "3.3.2.3.3", SILENT),
    ("publish-duplicate-payload-format", _raw_publish(P([(PFI, 0), (PFI, 0)])), PROTOCOL, "3.3.2.3.2", SILENT),
    ("publish-duplicate-content-type", _raw_publish(P([(CT, "a"), (CT, "b")])), PROTOCOL, "3.3.2.3.9", SILENT),
    ("publish-duplicate-response-topic", _raw_publish(P([(RT, "a"), (RT, "b")])), PROTOCOL, "3.3.2.3.5",
     SILENT),
    ("publish-duplicate-correlation-data", _raw_publish(P([(CD, b"a"), (CD, b"b")])), PROTOCOL, "3.3.2.3.6",
     SILENT),
    ("publish-duplicate-topic-alias", _raw_publish(P([(m5.PROP_TOPIC_ALIAS, 1), (m5.PROP_TOPIC_ALIAS, 1)])),
     PROTOCOL, "3.3.2.3.4", SILENT),
    ("publish-topic-alias-0", _raw_publish(P([(m5.PROP_TOPIC_ALIAS, 0)])),
     EITHER + (m5.RC_TOPIC_ALIAS_INVALID,), "MQTT-3.3.2-8"),
    ("publish-subscription-identifier-from-client", _raw_publish(P([(SID, 5)])), PROTOCOL, "MQTT-3.3.4-6",
     ACCEPTS),
    ("publish-subscription-identifier-0-from-client", _raw_publish(P([(SID, 0)])), EITHER, "MQTT-3.3.4-6",
     ACCEPTS),
    ("publish-unknown-property-0x7f", _raw_publish(m5.encode_varint(2) + b"\x7f\x00"), MALFORMED, "2.2.2.2"),
    ("publish-property-of-connect", _raw_publish(P([(m5.PROP_SESSION_EXPIRY_INTERVAL, 5)])), MALFORMED,
     "2.2.2.2"),
    ("publish-property-length-past-end", _raw_publish(m5.encode_varint(40) + P([(CT, "a")])[1:]), MALFORMED,
     "2.2.2.1"),
    ("publish-payload-format-2", _raw_publish(P([(PFI, 2)])), EITHER, "3.3.2.3.2", ACCEPTS),
    ("publish-response-topic-wildcard", _raw_publish(P([(RT, "v5/reply/#")])), EITHER, "MQTT-3.3.2-14",
     "RESPONSE_TOPIC"),
    ("publish-response-topic-bad-utf8", _raw_publish(_bad_string_prop(RT, b"\xc3\x28")), EITHER,
     "MQTT-1.5.4-1", SILENT),
    ("publish-content-type-bad-utf8", _raw_publish(_bad_string_prop(CT, b"\xff")), EITHER, "MQTT-1.5.4-1",
     SILENT),
    ("subscribe-subscription-identifier-0", _raw_subscribe(P([(SID, 0)])), EITHER, "3.8.2.1.2"),
    ("subscribe-duplicate-subscription-identifier", _raw_subscribe(P([(SID, 1), (SID, 2)])), PROTOCOL,
     "3.8.2.1.2", SILENT),
    ("subscribe-unknown-property", _raw_subscribe(m5.encode_varint(2) + b"\x7e\x00"), MALFORMED, "2.2.2.2"),
    ("subscribe-options-reserved-bits", _raw_subscribe(opts=0xC1), MALFORMED, "MQTT-3.8.3-5"),
    ("subscribe-retain-handling-3", _raw_subscribe(opts=0x31), EITHER, "3.8.3.1"),
    ("subscribe-no-local-on-shared", _raw_subscribe(opts=0x05, topic="$share/g/v5/bad"), PROTOCOL,
     "MQTT-3.8.3-4", ACCEPTS),
    ("unsubscribe-unknown-property",
     m5.packet(m5.UNSUBSCRIBE, 0x02, b"\x00\x01" + m5.encode_varint(2) + b"\x7d\x00" + m5.encode_string("a")),
     MALFORMED, "2.2.2.2"),
    ("puback-property-length-past-end", m5.packet(m5.PUBACK, 0, b"\x00\x01\x00\x20"), MALFORMED, "3.4.2.2",
     SILENT),
    ("disconnect-duplicate-reason-string",
     m5.disconnect(0, raw_properties=P([(m5.PROP_REASON_STRING, "a"), (m5.PROP_REASON_STRING, "b")])),
     PROTOCOL, "3.14.2.2.3", SILENT),
    ("auth-without-authentication-method", m5.auth(m5.RC_CONTINUE_AUTHENTICATION,
                                                   {m5.PROP_AUTHENTICATION_METHOD: "X"}), PROTOCOL, "3.15",
     SILENT),
    ("second-connect", m5.connect("again"), PROTOCOL, "MQTT-3.1.0-2", SILENT),
    # U+0000 in any UTF-8 string, topics included, is a Malformed Packet (MQTT-1.5.4-2),
    # not Topic Name / Topic Filter invalid.
    ("publish-topic-nul", m5.publish(b"v5/\x00", b"x"), MALFORMED, "MQTT-1.5.4-2"),
    ("subscribe-filter-nul", _raw_subscribe(topic=b"v5/\x00/#"), MALFORMED, "MQTT-1.5.4-2"),
    ("subscribe-share-name-nul", _raw_subscribe(topic=b"$share/g\x00/v5/x"), MALFORMED, "MQTT-1.5.4-2"),
    ("unsubscribe-filter-nul", m5.unsubscribe(1, [b"v5/\x00"]), MALFORMED, "MQTT-1.5.4-2"),
    ("publish-response-topic-nul", _raw_publish(_bad_string_prop(RT, b"v5/\x00")), MALFORMED, "MQTT-1.5.4-2",
     SILENT),
]


def _cases(table, strict_reason: bool):
    """pytest params; ``strict_reason``: the case asserts the DISCONNECT (not just the close),
    so a Mosquitto that closes silently is a deviation too."""
    out = []
    for case in table:
        ident, data, reasons, statement = case[:4]
        deviation = case[4] if len(case) > 4 else None
        marks = []
        if deviation == ACCEPTS or (deviation == SILENT and strict_reason):
            marks = [pytest.mark.xfail_mosquitto(deviation)]
        elif deviation not in (None, SILENT):
            marks = [pytest.mark.xfail_mosquitto(MOSQUITTO_OTHER[deviation])]
        out.append(pytest.param(data, reasons, id=f"{ident}({statement})", marks=marks))
    return out


MOSQUITTO_OTHER = {"RESPONSE_TOPIC": "accepts a Response Topic containing wildcards (MQTT-3.3.2-14)"}


def _bystander(clients):
    b = clients.v5()
    b.subscribe([("v5/bystander", 1)])
    return b


def _assert_bystander_served(broker, clients, bystander):
    pub = clients.v5()
    pub.publish("v5/bystander", b"still served", qos=1)
    assert bystander.recv_publish(ack=True).payload == b"still served"
    assert bystander.is_open()
    assert_healthy(broker)


def _expect_closed_with(bad, reasons):
    """The connection closes; a DISCONNECT sent before must carry one of ``reasons``."""
    for p in bad.expect_closed(timeout=3, allow_packets=[m5.DISCONNECT]):
        d = m5.decode_disconnect(p)
        assert d.reason_code in reasons, f"DISCONNECT {d.reason_code:#x} not in {[hex(r) for r in reasons]}"


@pytest.mark.parametrize("data,reasons", _cases(AFTER_CONNECT, strict_reason=False))
def test_v5_error_after_connect_closes_only_offender(broker, clients, data, reasons):
    """The offender is closed (MQTT-4.13.1-1); others are not affected."""
    bystander = _bystander(clients)
    bad = clients.v5()
    bad.send(data)
    _expect_closed_with(bad, reasons)
    _assert_bystander_served(broker, clients, bystander)


@pytest.mark.parametrize("data,reasons", _cases(AFTER_CONNECT, strict_reason=True))
def test_v5_error_after_connect_disconnect_names_reason(clients, data, reasons):
    """Before closing, the server sends DISCONNECT with the reason code (4.13.1; Starling does
    it wherever it closes a v5 connection)."""
    bad = clients.v5()
    bad.send(data)
    bad.expect_disconnect(reasons, timeout=3)


def test_v5_bad_publish_not_forwarded(clients):
    sub = clients.v5()
    sub.subscribe([("v5/bad", 1)])
    bad = clients.v5()
    bad.send(_raw_publish(P([(MEI, 10), (MEI, 20)])))
    _expect_closed_with(bad, PROTOCOL)
    assert publishes_before_sentinel(clients.v5(), sub, "v5/bad", qos=1) == []


def _connect_props(props_block):
    return m5.connect("bad-connect", raw_properties=props_block)


def _will_props(props_block):
    good = m5.connect("bad-will", will_topic="v5/w", will_payload=b"p")
    # Splice the raw will properties in place of the empty block (one 0x00 byte) before
    # the will topic: rebuild the packet body around it.
    body = good[2:]  # remaining length is one byte for this short packet
    marker = b"\x00" + m5.encode_string("v5/w")
    i = body.index(marker)
    body = body[:i] + props_block + body[i + 1:]
    return m5.packet(m5.CONNECT, 0, body)


AS_CONNECT = [
    ("connect-duplicate-session-expiry", _connect_props(P([(m5.PROP_SESSION_EXPIRY_INTERVAL, 1)] * 2)),
     PROTOCOL, "3.1.2.11.2"),
    ("connect-receive-maximum-0", _connect_props(P([(m5.PROP_RECEIVE_MAXIMUM, 0)])), PROTOCOL, "3.1.2.11.3"),
    ("connect-maximum-packet-size-0", _connect_props(P([(m5.PROP_MAXIMUM_PACKET_SIZE, 0)])), PROTOCOL,
     "3.1.2.11.4"),
    ("connect-duplicate-topic-alias-maximum", _connect_props(P([(m5.PROP_TOPIC_ALIAS_MAXIMUM, 1)] * 2)),
     PROTOCOL, "3.1.2.11.5"),
    ("connect-request-problem-information-2", _connect_props(P([(m5.PROP_REQUEST_PROBLEM_INFORMATION, 2)])),
     PROTOCOL, "3.1.2.11.7"),
    ("connect-request-response-information-2",
     _connect_props(P([(m5.PROP_REQUEST_RESPONSE_INFORMATION, 2)])), PROTOCOL, "3.1.2.11.6"),
    ("connect-unknown-property", _connect_props(m5.encode_varint(2) + b"\x7f\x00"), MALFORMED, "2.2.2.2"),
    ("connect-publish-only-property", _connect_props(P([(m5.PROP_TOPIC_ALIAS, 1)])), MALFORMED, "2.2.2.2"),
    ("connect-property-length-past-end", m5.packet(m5.CONNECT, 0, m5.connect("x")[2:12] + b"\x30"),
     MALFORMED, "2.2.2.1"),
    ("will-duplicate-will-delay", _will_props(P([(m5.PROP_WILL_DELAY_INTERVAL, 1)] * 2)), PROTOCOL,
     "3.1.3.2.2"),
    ("will-subscription-identifier", _will_props(P([(SID, 1)])), MALFORMED, "3.1.3.2"),
    ("will-topic-nul", m5.connect("nul-will", will_topic=b"v5/\x00", will_payload=b"p"), MALFORMED,
     "MQTT-1.5.4-2"),
]


@pytest.mark.parametrize("data,reasons", _cases(AS_CONNECT, strict_reason=False))
def test_v5_bad_connect_refused_with_reason(broker, clients, data, reasons):
    """A CONNECT with a property error: CONNACK with the reason code (>= 0x80), then the
    close (MQTT-3.2.2-7); a server may also close without CONNACK (MQTT-4.13.1-1)."""
    bystander = _bystander(clients)
    bad = clients.raw5()
    bad.send(data)
    seen = bad.expect_closed(timeout=3, allow_packets=[m5.CONNACK])
    assert len(seen) <= 1
    for p in seen:
        ack = m5.decode_connack(p)
        assert ack.reason_code in reasons, f"CONNACK {ack.reason_code:#x} not in {[hex(r) for r in reasons]}"
    _assert_bystander_served(broker, clients, bystander)


@pytest.mark.xfail_mosquitto("closes the connection without a CONNACK naming the reason (3.2.2.2 "
                             "lists 0x81 / 0x82 for exactly these)")
@pytest.mark.parametrize("data,reasons", _cases(AS_CONNECT, strict_reason=True))
def test_v5_bad_connect_gets_connack_reason(clients, data, reasons):
    """Starling answers a bad v5 CONNECT with a CONNACK naming the reason, then closes."""
    bad = clients.raw5()
    bad.send(data)
    seen = bad.expect_closed(timeout=3, allow_packets=[m5.CONNACK])
    assert len(seen) == 1 and m5.decode_connack(seen[0]).reason_code in reasons


@pytest.mark.parametrize("data", [
    _connect_props(P([(m5.PROP_RECEIVE_MAXIMUM, 5), (m5.PROP_MAXIMUM_PACKET_SIZE, 1000)])),
    _connect_props(P([(m5.PROP_REQUEST_PROBLEM_INFORMATION, 1), (m5.PROP_TOPIC_ALIAS_MAXIMUM, 0)])),
    _will_props(P()),
    _will_props(P([(m5.PROP_WILL_DELAY_INTERVAL, 1), (m5.PROP_CONTENT_TYPE, "c")])),
], ids=["limits", "flags", "will-no-props", "will-props"])
def test_v5_connect_builders_control(clients, data):
    """Control for the cases above: the same builders with valid properties are accepted,
    so a refusal there is caused by the property error alone."""
    c = clients.raw5()
    c.send(data)
    assert m5.decode_connack(c.recv_packet()).reason_code == 0
    assert c.is_open()


def test_duplicate_user_properties_allowed_2_2_2_2(clients):
    """User Property may appear any number of times, with repeated names."""
    c = clients.v5(properties=[(m5.PROP_USER_PROPERTY, ("k", "1")), (m5.PROP_USER_PROPERTY, ("k", "1"))])
    assert c.is_open()


# ---- reason codes on acknowledgements ------------------------------------------------------


def test_puback_reason_without_subscribers(clients):
    """No subscriber: PUBACK 0x00, or 0x10 (No matching subscribers) which the server MAY use."""
    pub = clients.v5()
    ack = pub.publish("v5/acks/nobody", b"x", qos=1)
    assert ack.reason_code in (m5.RC_SUCCESS, m5.RC_NO_MATCHING_SUBSCRIBERS)


@pytest.mark.parametrize("qos", [1, pytest.param(2, marks=pytest.mark.xfail_mosquitto(
    "routes a QoS 2 message at PUBREL, after its PUBREC, which therefore says 0x00"))])
def test_no_matching_subscribers_0x10_3_4_2_1(clients, qos):
    """Nobody subscribed: PUBACK / PUBREC 0x10 No matching subscribers (3.4.2.1, 3.5.2.1),
    which lets a publisher notice it talks to nobody; a QoS 2 exchange still completes
    (0x10 is not an error). A subscription elsewhere in the tree and a subscriber that left
    do not count, nor does a retained message being stored."""
    other = clients.v5()
    other.subscribe([("elsewhere/v5/#", 1)])  # another first level
    gone = clients.v5()
    gone.subscribe([("v5/nobody/t", 1)])
    gone.unsubscribe(["v5/nobody/t"])
    pub = clients.v5()
    pub.publish("v5/nobody/t", b"x", qos=qos, expect_reason=m5.RC_NO_MATCHING_SUBSCRIBERS)
    pub.publish("v5/nobody/t", b"retained", qos=qos, retain=True,
                expect_reason=m5.RC_NO_MATCHING_SUBSCRIBERS)
    assert pub.is_open()


@pytest.mark.xfail_mosquitto("counts the publisher's own No Local subscription as a match (0x00)")
def test_own_no_local_subscription_is_no_match_0x10(clients):
    """The publisher's own No Local subscription never receives its message
    (MQTT-3.8.3-3), so it is no matching subscriber either."""
    pub = clients.v5()
    pub.subscribe([("v5/nobody/+", m5.sub_options(1, no_local=True))])
    pub.publish("v5/nobody/t", b"x", qos=1, expect_reason=m5.RC_NO_MATCHING_SUBSCRIBERS)
    pub.expect_no_packet(0.3)


@pytest.mark.parametrize("kind", ["plain", "wildcard", "shared", "own-without-no-local"])
def test_matching_subscriber_gets_success_not_0x10(clients, kind):
    """Never 0x10 when a subscriber did get the message: a plain or wildcard subscriber (on
    whichever event loop its connection landed), a shared-subscription group, or the
    publisher's own subscription without No Local."""
    pub = clients.v5()
    filters = {"plain": "v5/match/t", "wildcard": "v5/+/t", "shared": "$share/g/v5/match/t",
               "own-without-no-local": "v5/match/#"}
    sub = pub if kind == "own-without-no-local" else clients.v5()
    sub.subscribe([(filters[kind], 1)])
    for qos in (1, 2):
        pub.publish("v5/match/t", b"m", qos=qos, expect_reason=m5.RC_SUCCESS)
        assert sub.recv_publish(ack=True).payload == b"m"


def test_puback_success_with_subscriber(clients):
    sub = clients.v5()
    sub.subscribe([("v5/acks/some", 1)])
    pub = clients.v5()
    assert pub.publish("v5/acks/some", b"x", qos=1).reason_code == m5.RC_SUCCESS
    rec = pub.publish("v5/acks/some", b"y", qos=2)
    assert rec.reason_code == m5.RC_SUCCESS


@pytest.mark.xfail_mosquitto("answers PUBCOMP 0x00 to a PUBREL for an unknown packet id instead of "
                             "0x92 (Packet Identifier not found, 3.7.2.1)")
def test_pubrel_unknown_packet_id_gets_pubcomp_0x92(clients):
    """PUBREL for a packet id the server does not know: PUBCOMP 0x92 (Packet Identifier not
    found, 3.7.2.1); the connection stays."""
    c = clients.v5()
    c.send(m5.ack(m5.PUBREL, 777))
    comp = m5.decode_ack(c.expect(m5.PUBCOMP, 777))
    assert comp.reason_code == m5.RC_PACKET_ID_NOT_FOUND
    assert c.is_open()


def test_subscriber_puback_error_reason_accepted(clients):
    """A subscriber may refuse a message with a PUBACK reason >= 0x80 and a Reason String:
    the message is done (not resent) and the connection stays (4.3.2)."""
    sub = clients.v5()
    sub.subscribe([("v5/acks/refuse", 1)])
    pub = clients.v5()
    pub.publish("v5/acks/refuse", b"unwanted", qos=1)
    m = sub.recv_publish()
    sub.send(m5.ack(m5.PUBACK, m.packet_id, m5.RC_IMPLEMENTATION_SPECIFIC, {m5.PROP_REASON_STRING: "no thanks"}))
    pub.publish("v5/acks/refuse", b"next", qos=1)
    assert sub.recv_publish(ack=True).payload == b"next"
    assert sub.is_open()


def test_subscriber_pubrec_error_ends_qos2_flow_MQTT_4_3_3_4(clients):
    """PUBREC with a reason >= 0x80 ends the QoS 2 exchange: no PUBREL follows, and the
    packet id is free again."""
    sub = clients.v5()
    sub.subscribe([("v5/acks/pubrec", 2)])
    pub = clients.v5()
    pub.publish("v5/acks/pubrec", b"refused", qos=2)
    m = sub.recv_publish()
    sub.send(m5.ack(m5.PUBREC, m.packet_id, m5.RC_UNSPECIFIED_ERROR))
    sub.expect_no_packet(0.5)
    pub.publish("v5/acks/pubrec", b"after", qos=2)
    assert sub.recv_publish(ack=True).payload == b"after"


def test_subscriber_qos2_acks_with_properties_accepted(clients):
    """PUBREC / PUBCOMP from the client may carry a reason code and properties (3.5.2, 3.7.2)."""
    sub = clients.v5()
    sub.subscribe([("v5/acks/props", 2)])
    pub = clients.v5()
    for payload in (b"one", b"two"):
        pub.publish("v5/acks/props", payload, qos=2)
        m = sub.recv_publish()
        assert m.payload == payload
        sub.send(m5.ack(m5.PUBREC, m.packet_id, m5.RC_SUCCESS, {m5.PROP_USER_PROPERTY: [("seen", "yes")]}))
        rel = m5.decode_ack(sub.expect(m5.PUBREL, m.packet_id))
        assert rel.reason_code == m5.RC_SUCCESS
        sub.send(m5.ack(m5.PUBCOMP, m.packet_id, m5.RC_SUCCESS, {m5.PROP_REASON_STRING: "done"}))
    assert sub.is_open()


# ---- acknowledgements of the wrong kind ------------------------------------------------------


@pytest.mark.xfail_mosquitto("closes the connection without DISCONNECT 0x82 (4.13.1: SHOULD)")
@pytest.mark.parametrize("qos,ack_type", [
    (1, m5.PUBREC), (1, m5.PUBCOMP), (2, m5.PUBACK), (2, m5.PUBCOMP),
], ids=["pubrec-for-qos1", "pubcomp-for-qos1", "puback-for-qos2", "pubcomp-before-pubrec"])
def test_wrong_kind_of_acknowledgement_is_a_protocol_error_0x82(broker, clients, qos, ack_type):
    """PUBREC or PUBCOMP for a QoS 1 message, PUBACK for a QoS 2 one, PUBCOMP before PUBREC:
    each QoS has its own exchange (4.3.2, 4.3.3), so the subscriber gets DISCONNECT 0x82
    Protocol Error and the close, instead of the ack being ignored with its in-flight slot
    kept taken."""
    bystander = _bystander(clients)
    sub = clients.v5()
    sub.subscribe([("v5/acks/wrong", qos)])
    clients.v5().publish("v5/acks/wrong", b"m", qos=qos)
    msg = sub.recv_publish()
    sub.send(m5.ack(ack_type, msg.packet_id))
    sub.expect_disconnect(m5.RC_PROTOCOL_ERROR)
    _assert_bystander_served(broker, clients, bystander)
