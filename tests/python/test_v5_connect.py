"""MQTT 5.0 CONNECT / CONNACK (3.1, 3.2 of MQTT 5.0): CONNACK properties, Assigned Client
Identifier, Server Keep Alive, Clean Start, Authentication Method."""

import re

import pytest

import mqtt5_packets as m5
from helpers import publishes_before_sentinel, wait_for_log

BOOLEAN_CAPABILITIES = (
    m5.PROP_RETAIN_AVAILABLE,
    m5.PROP_WILDCARD_SUBSCRIPTION_AVAILABLE,
    m5.PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    m5.PROP_SHARED_SUBSCRIPTION_AVAILABLE,
)
CONNACK_ONLY = BOOLEAN_CAPABILITIES + (
    m5.PROP_RECEIVE_MAXIMUM, m5.PROP_MAXIMUM_QOS, m5.PROP_MAXIMUM_PACKET_SIZE,
    m5.PROP_TOPIC_ALIAS_MAXIMUM, m5.PROP_ASSIGNED_CLIENT_IDENTIFIER, m5.PROP_SERVER_KEEP_ALIVE,
    m5.PROP_REASON_STRING, m5.PROP_USER_PROPERTY, m5.PROP_RESPONSE_INFORMATION,
    m5.PROP_SERVER_REFERENCE, m5.PROP_AUTHENTICATION_METHOD, m5.PROP_AUTHENTICATION_DATA,
    m5.PROP_SESSION_EXPIRY_INTERVAL,
)


def test_v5_connack_success_with_valid_properties_MQTT_3_2_2_1(clients):
    """CONNACK 0x00 for a v5 CONNECT; its properties are only CONNACK properties, each at most
    once (the decoder asserts it), with legal values (3.2.2.3)."""
    c = clients.v5()
    ack = c.connack
    assert ack.reason_code == m5.RC_SUCCESS and ack.session_present is False
    assert set(ack.properties.ids()) <= set(CONNACK_ONLY), ack.properties
    for prop in BOOLEAN_CAPABILITIES:
        assert ack.properties.get(prop, 1) in (0, 1), f"{prop:#x} must be 0 or 1"
    assert ack.properties.get(m5.PROP_MAXIMUM_QOS, 2) in (0, 1, 2)
    assert ack.properties.get(m5.PROP_MAXIMUM_QOS) != 2, "Maximum QoS 2 is sent by omission (3.2.2.3.4)"
    assert ack.properties.get(m5.PROP_RECEIVE_MAXIMUM, 65535) > 0, "Receive Maximum 0 is a protocol error"
    assert ack.properties.get(m5.PROP_MAXIMUM_PACKET_SIZE, 1) > 0
    assert m5.PROP_ASSIGNED_CLIENT_IDENTIFIER not in ack.properties, (
        "no Assigned Client Identifier when the client gave one (3.2.2.3.7)")


@pytest.mark.starling_only
def test_v5_connack_announces_starling_defaults(clients):
    """The defaults Starling announces in every v5 CONNACK (docs/mqtt5.md)."""
    p = clients.v5().connack.properties
    assert p.get(m5.PROP_RECEIVE_MAXIMUM) == 1024
    assert p.get(m5.PROP_MAXIMUM_PACKET_SIZE) == 262144
    assert p.get(m5.PROP_TOPIC_ALIAS_MAXIMUM) == 10
    assert m5.PROP_MAXIMUM_QOS not in p
    for prop in BOOLEAN_CAPABILITIES:
        assert p.get(prop, 1) == 1


@pytest.mark.starling_only
@pytest.mark.broker_options(receive_maximum=7, topic_alias_maximum=3, max_packet_size_bytes=5000)
def test_v5_connack_announces_configured_limits(clients):
    p = clients.v5().connack.properties
    assert (p.get(m5.PROP_RECEIVE_MAXIMUM), p.get(m5.PROP_TOPIC_ALIAS_MAXIMUM),
            p.get(m5.PROP_MAXIMUM_PACKET_SIZE)) == (7, 3, 5000)


@pytest.mark.broker_options(max_packet_size_bytes=4096)
def test_v5_connack_announces_maximum_packet_size_MQTT_3_2_2_15(clients):
    assert clients.v5().connack.properties.get(m5.PROP_MAXIMUM_PACKET_SIZE) == 4096


def test_assigned_client_identifier_MQTT_3_2_2_16(clients):
    """A zero-length Client Identifier gets an Assigned Client Identifier, unique per client."""
    a = clients.v5(client_id="")
    b = clients.v5(client_id="")
    ida = a.connack.properties.get(m5.PROP_ASSIGNED_CLIENT_IDENTIFIER)
    idb = b.connack.properties.get(m5.PROP_ASSIGNED_CLIENT_IDENTIFIER)
    assert ida and idb, "zero-length ClientID must get an Assigned Client Identifier (MQTT-3.2.2-16)"
    assert ida != idb, "assigned identifiers must be unique (MQTT-3.1.3-6)"
    assert a.is_open() and b.is_open()


ASSIGNED_ID = re.compile(r"starling-[0-9a-f]{32}")  # 128 bits from a keyed hash


@pytest.mark.starling_only
@pytest.mark.broker_options(event_loops=1)
def test_assigned_client_identifiers_are_unguessable(broker, clients):
    """Starling's assigned ids carry 128 bits derived from a key drawn at start: none repeats,
    and a restarted broker (a new key) assigns others, so nobody can name, and take over, the
    session of a client that was given its id."""
    def assigned(count: int) -> list:
        ids = []
        for _ in range(count):
            c = clients.v5(client_id="")
            ids.append(c.connack.properties[m5.PROP_ASSIGNED_CLIENT_IDENTIFIER])
            c.disconnect()
        return ids

    before = assigned(20)
    for i in before:
        assert ASSIGNED_ID.fullmatch(i), i
    assert len(set(before)) == len(before)
    broker.restart()
    after = assigned(20)
    assert all(ASSIGNED_ID.fullmatch(i) for i in after), after
    assert not set(before) & set(after), "a new broker assigns new ids"


def test_assigned_client_identifier_names_the_session_MQTT_3_1_3_7(clients):
    """The assigned identifier is the session's: reconnecting with it (Clean Start 0) resumes
    the session the zero-length CONNECT created."""
    a = clients.v5(client_id="", properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 30})
    assigned = a.connack.properties[m5.PROP_ASSIGNED_CLIENT_IDENTIFIER]
    assert a.subscribe([("v5/assigned", 1)]) == [1]
    a.disconnect()
    b = clients.v5(client_id=assigned, clean_start=False,
                   properties={m5.PROP_SESSION_EXPIRY_INTERVAL: 30})
    assert b.connack.session_present is True
    pub = clients.v5()
    pub.publish("v5/assigned", b"to the assigned id", qos=1)
    assert b.recv_publish(ack=True).payload == b"to the assigned id"


@pytest.mark.broker_options(max_keep_alive_secs=20)  # Mosquitto refuses a max_keepalive below 10
@pytest.mark.parametrize("asked", [60, 0])
def test_server_keep_alive_caps_requested_keep_alive_MQTT_3_2_2_21(clients, asked):
    """A keep-alive above the configured maximum (or 0, 'no keep-alive') is answered with
    Server Keep Alive = the maximum, which the client must then use (MQTT-3.2.2-21)."""
    c = clients.v5(keepalive=asked)
    assert c.connack.properties.get(m5.PROP_SERVER_KEEP_ALIVE) == 20


@pytest.mark.broker_options(max_keep_alive_secs=20)  # Mosquitto refuses a max_keepalive below 10
def test_no_server_keep_alive_when_request_within_maximum_MQTT_3_2_2_22(clients):
    """Asking for less than the maximum: the client's value stands (absent, or equal)."""
    c = clients.v5(keepalive=15)
    assert c.connack.properties.get(m5.PROP_SERVER_KEEP_ALIVE, 15) == 15


def test_no_server_keep_alive_without_maximum(clients):
    c = clients.v5(keepalive=7)
    assert c.connack.properties.get(m5.PROP_SERVER_KEEP_ALIVE, 7) == 7


def _session_expiry(seconds):
    return {m5.PROP_SESSION_EXPIRY_INTERVAL: seconds}


def test_clean_start_1_discards_session_MQTT_3_1_2_4_MQTT_3_2_2_2(clients):
    cid = clients.unique_id("cs")
    a = clients.v5(cid, properties=_session_expiry(60))
    a.subscribe([("v5/cs1", 1)])
    a.disconnect()
    pub = clients.v5()
    pub.publish("v5/cs1", b"for the old session", qos=1)
    b = clients.v5(cid, clean_start=True, properties=_session_expiry(60))
    assert b.connack.session_present is False, "Clean Start 1: Session Present 0 (MQTT-3.2.2-2)"
    b.expect_no_packet(0.5)
    pub2 = clients.v5()
    b.subscribe([("v5/cs1-sentinel", 1)])
    assert publishes_before_sentinel(pub2, b, "v5/cs1-sentinel", qos=1) == []


def test_clean_start_0_resumes_session_MQTT_3_1_2_5_MQTT_3_2_2_3(clients):
    cid = clients.unique_id("cs")
    a = clients.v5(cid, properties=_session_expiry(60))
    a.subscribe([("v5/cs0", 1)])
    a.disconnect()
    pub = clients.v5()
    pub.publish("v5/cs0", b"kept", qos=1)
    b = clients.v5(cid, clean_start=False, properties=_session_expiry(60))
    assert b.connack.session_present is True, "Clean Start 0 with a session: Session Present 1"
    msg = b.recv_publish(ack=True)
    assert (msg.topic, msg.payload, msg.qos) == ("v5/cs0", b"kept", 1)


def test_clean_start_0_without_session_MQTT_3_2_2_3(clients):
    c = clients.v5(clients.unique_id("fresh"), clean_start=False, properties=_session_expiry(60))
    assert c.connack.session_present is False


def test_authentication_method_refused_with_0x8c_MQTT_3_2_2_7(clients):
    """No enhanced authentication configured: a CONNECT with an Authentication Method gets
    CONNACK 0x8C (Bad authentication method, 4.12), and the connection is closed
    (a CONNACK >= 0x80 is followed by a close, MQTT-3.2.2-7)."""
    c = clients.raw5()
    ack = c.connect(clients.unique_id("auth"), expect_rc=None, properties=[
        (m5.PROP_AUTHENTICATION_METHOD, "SCRAM-SHA-256"),
        (m5.PROP_AUTHENTICATION_DATA, b"client-first-message"),
    ])
    assert ack.reason_code == m5.RC_BAD_AUTHENTICATION_METHOD
    assert ack.session_present is False, "Session Present 0 with a refusal (MQTT-3.2.2-6)"
    c.expect_closed(timeout=3)


def test_paho_v5_connects_and_reads_connack_properties(clients):
    c = clients.paho5(connect_properties={"SessionExpiryInterval": 10, "ReceiveMaximum": 5})
    assert c.connack_rc == 0
    assert c.connack_properties is not None
    c.subscribe("v5/paho/connect", 1)
    c.publish("v5/paho/connect", b"hi", qos=1)
    assert c.expect_message().payload == b"hi"


@pytest.mark.parametrize("level", [6, 0x85])
def test_unsupported_protocol_level_refused_MQTT_3_1_2_2(clients, level):
    """An unsupported protocol level: CONNACK 0x84 (v5 form) or 0x01 (3.1.1 form) may be
    sent, then the connection is closed."""
    c = clients.raw5()
    c.send(m5.connect(clients.unique_id("lvl"), protocol_level=level))
    seen = c.expect_closed(timeout=3, allow_packets=[m5.CONNACK])
    for p in seen:
        assert p.body[1] in (0x01, 0x84), f"CONNACK reason {p.body[1]:#x} (wanted 0x84 or 0x01)"


def test_request_problem_information_0_no_reason_string_on_acks_MQTT_3_1_2_29(clients):
    """Request Problem Information 0: no Reason String or User Property on packets other than
    PUBLISH, CONNACK and DISCONNECT (MQTT-3.1.2-29)."""
    c = clients.v5(properties={m5.PROP_REQUEST_PROBLEM_INFORMATION: 0})
    acks = [c.publish("v5/rpi/nobody", b"x", qos=1), c.publish("v5/rpi/nobody", b"y", qos=2)]
    c.send(m5.subscribe(c.next_packet_id(), [("v5/rpi/+", 1)]))
    suback = m5.decode_suback(c.expect(m5.SUBACK))
    for props in [a.properties for a in acks] + [suback.properties]:
        assert m5.PROP_REASON_STRING not in props and m5.PROP_USER_PROPERTY not in props, props


@pytest.mark.starling_only
@pytest.mark.broker_options(max_connections=1)
def test_connection_limit_refused_with_0x97_quota_exceeded_MQTT_3_2_2_7(clients):
    """At ``max_connections`` a v5 client gets CONNACK 0x97 Quota exceeded (an
    administrative limit, 3.2.2.2; a 3.1.1 client gets 0x03) and the connection is closed;
    the client already connected is unaffected."""
    first = clients.raw5()
    first.connect(clients.unique_id("first"))
    second = clients.raw5()
    ack = second.connect(clients.unique_id("second"), expect_rc=None)
    assert ack.reason_code == 0x97
    assert ack.session_present is False
    second.expect_closed(timeout=3)
    first.ping()


# ---- a CONNACK within the client's Maximum Packet Size (MQTT-3.1.2-24) ----------------------


def _small_client(clients, limit, client_id=None):
    """Sends a v5 CONNECT announcing Maximum Packet Size ``limit``; returns the client and
    every packet it got before the connection closed or went quiet."""
    c = clients.raw5()
    c.send(m5.connect(clients.unique_id("mps") if client_id is None else client_id,
                      properties={m5.PROP_MAXIMUM_PACKET_SIZE: limit}))
    try:
        return c, [c.recv_packet(timeout=2)]
    except m5.ConnectionClosed:
        return c, []


def test_v5_connack_fits_a_small_maximum_packet_size_MQTT_3_1_2_24(clients):
    """A client announcing Maximum Packet Size 20 gets its CONNACK within 20 bytes: the
    capabilities whose absence means 'available' (Retain, Wildcard Subscription, Subscription
    Identifier, Shared Subscription Available = 1) need not be sent, and the session then
    works."""
    c, seen = _small_client(clients, 20)
    assert seen, "no CONNACK: a client must get its CONNACK before anything else"
    ack = m5.decode_connack(seen[0])
    assert ack.reason_code == m5.RC_SUCCESS
    assert m5.packet_size(seen[0]) <= 20, f"CONNACK of {m5.packet_size(seen[0])} bytes"
    assert c.subscribe([("v5/mps/small", 1)]) == [1]
    c.ping()


@pytest.mark.starling_only
def test_v5_connack_leaves_out_default_capabilities(clients):
    """Starling sends only what differs from the defaults a client assumes when a property is
    absent: with its default limits the CONNACK is 16 bytes (Receive Maximum, Maximum Packet
    Size and Topic Alias Maximum)."""
    c, seen = _small_client(clients, 16)
    assert m5.packet_size(seen[0]) == 16
    c.connack = m5.decode_connack(seen[0])
    assert set(c.connack.properties.ids()) == {m5.PROP_MAXIMUM_PACKET_SIZE, m5.PROP_RECEIVE_MAXIMUM,
                                              m5.PROP_TOPIC_ALIAS_MAXIMUM}


@pytest.mark.parametrize("limit,client_id", [
    pytest.param(10, None, marks=pytest.mark.xfail_mosquitto(
        "sends an 11-byte CONNACK to a client whose Maximum Packet Size is 10")),
    (20, ""), (4, None)], ids=["limit-10", "assigned-id-over-20", "limit-4"])
def test_v5_no_session_without_its_connack_MQTT_3_1_2_24(clients, limit, client_id):
    """When the CONNACK cannot fit the client's Maximum Packet Size, the server must neither
    send it (MQTT-3.1.2-24) nor run the session without it: at most a refusing CONNACK that
    fits, then the close; a SUBSCRIBE or PINGREQ sent meanwhile is never answered."""
    c, seen = _small_client(clients, limit, client_id)
    if seen and m5.decode_connack(seen[0]).reason_code == m5.RC_SUCCESS:
        # A broker whose CONNACK fits this limit: it must fit, and the session must work.
        assert m5.packet_size(seen[0]) <= limit
        pytest.skip(f"this broker's CONNACK fits {limit} bytes")
    for p in seen:
        assert p.type == m5.CONNACK and m5.packet_size(p) <= limit, p
        assert m5.decode_connack(p).reason_code == m5.RC_PACKET_TOO_LARGE
    c.try_send(m5.subscribe(1, [("v5/mps/none", 0)]) + m5.mp.pingreq())
    assert c.expect_closed(timeout=3, allow_packets=[m5.CONNACK]) == [], "answered without a CONNACK"


@pytest.mark.starling_only
@pytest.mark.parametrize("limit,client_id,refusal", [(10, None, True), (20, "", True), (4, None, False)],
                         ids=["limit-10", "assigned-id-over-20", "limit-4"])
def test_v5_connack_too_large_is_refused_with_0x95(broker, clients, limit, client_id, refusal):
    """Starling's CONNACK (16 bytes with its defaults; more with an Assigned Client
    Identifier) does not fit: CONNACK 0x95 Packet too large (5 bytes) where that fits, nothing
    where even that does not, then the close, logged with the sizes and counted."""
    c, seen = _small_client(clients, limit, client_id)
    if refusal:
        assert len(seen) == 1 and m5.decode_connack(seen[0]).reason_code == m5.RC_PACKET_TOO_LARGE
        assert m5.packet_size(seen[0]) == 5
    else:
        assert seen == []
    c.expect_closed(timeout=3)
    wait_for_log(broker, "CONNACK larger than the client's Maximum Packet Size",
                 f"Maximum Packet Size of {limit} bytes")


@pytest.mark.xfail_mosquitto("sends the SUBACK although it exceeds the client's Maximum Packet Size")
def test_v5_suback_too_large_for_the_client_closes_it_MQTT_3_1_2_24(clients):
    """A SUBACK whose reason codes alone exceed the client's Maximum Packet Size cannot be
    trimmed (only a Reason String and User Properties may be left out, MQTT-3.9.2-1/2): the
    server must not send it (MQTT-3.1.2-24), so the client is told DISCONNECT 0x95 and closed
    rather than left waiting for an answer that never comes."""
    c, seen = _small_client(clients, 20)
    assert seen and m5.decode_connack(seen[0]).reason_code == m5.RC_SUCCESS
    filters = [(f"v5/mps/f{i}", 0) for i in range(20)]  # SUBACK: 5 + 20 bytes
    c.send(m5.subscribe(3, filters))
    for p in c.expect_closed(timeout=3, allow_packets=[m5.DISCONNECT, m5.SUBACK]):
        assert p.type == m5.DISCONNECT and m5.packet_size(p) <= 20, p
        assert m5.decode_disconnect(p).reason_code == m5.RC_PACKET_TOO_LARGE
