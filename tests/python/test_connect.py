"""CONNECT / CONNACK (3.1, 3.2 of MQTT 3.1.1)."""

import time

import pytest

import mqtt_packets as mp
from helpers import assert_healthy, publishes_before_sentinel


def test_valid_connect_gets_connack_0_first_MQTT_3_1_4_4_MQTT_3_2_0_1(clients):
    c = clients.raw()
    c.send(mp.connect("plain-client", keepalive=30))
    first = c.recv_packet()
    ack = mp.decode_connack(first)  # CONNACK must be the first packet back (MQTT-3.2.0-1)
    assert ack.return_code == mp.CONNACK_ACCEPTED
    assert ack.ack_flags & 0xFE == 0, "CONNACK acknowledge flags bits 7-1 are reserved (3.2.2.1)"
    assert ack.session_present is False, "clean session: session present must be 0 (MQTT-3.2.2-1)"
    assert c.is_open()


@pytest.mark.parametrize("level", [0, 2, 3, 6, 0x7F])
def test_unacceptable_protocol_level_connack_0x01_then_close_MQTT_3_1_2_2(clients, level):
    """Unsupported level: CONNACK 0x01 (MQTT-3.1.2-2), session present 0 (MQTT-3.2.2-4),
    then the connection is closed (MQTT-3.2.2-5)."""
    c = clients.raw()
    c.send(mp.connect("bad-level", protocol_level=level))
    ack = mp.decode_connack(c.recv_packet())
    assert ack.return_code == mp.CONNACK_UNACCEPTABLE_PROTOCOL
    assert ack.session_present is False
    c.expect_closed()


def test_wrong_protocol_name_is_not_accepted_MQTT_3_1_2_1(clients):
    """An unknown protocol name: the server may disconnect (MQTT-3.1.2-1); it must not accept
    the connection as MQTT 3.1.1. A refusing CONNACK before the close is tolerated."""
    c = clients.raw()
    c.send(mp.connect("bad-name", protocol_name="MQTX"))
    seen = c.expect_closed(allow_packets=[mp.CONNACK])
    for p in seen:
        assert mp.decode_connack(p).return_code != 0


def test_mqisdp_level_3_accepted(clients):
    """MQTT 3.1 clients ('MQIsdp', level 3) are accepted and can publish and subscribe."""
    c = clients.raw()
    ack = c.connect("v31-client", protocol_name="MQIsdp", protocol_level=3)
    assert ack.return_code == 0
    assert c.subscribe([("v31/t", 1)]) == [1]
    c.publish("v31/t", b"hello 3.1", qos=1)
    msg = c.recv_publish(ack=True)
    assert (msg.topic, msg.payload, msg.qos) == ("v31/t", b"hello 3.1", 1)


def test_zero_length_client_id_with_clean_session_accepted_MQTT_3_1_3_6(clients):
    c = clients.raw()
    ack = c.connect("", clean_session=True)
    assert ack.return_code == 0 and ack.session_present is False
    assert c.subscribe([("anon/t", 0)]) == [0]
    c.publish("anon/t", b"x")
    assert c.recv_publish().payload == b"x"


def test_zero_length_client_ids_get_distinct_identities_MQTT_3_1_3_6(clients):
    """Each zero-length ClientId is assigned a unique id: a second such client must not take
    over the first one (as a shared id would, MQTT-3.1.4-2)."""
    a = clients.raw()
    a.connect("", clean_session=True)
    b = clients.raw()
    b.connect("", clean_session=True)
    assert a.is_open() and b.is_open()


def test_zero_length_client_id_without_clean_session_rejected_0x02_MQTT_3_1_3_8(clients):
    c = clients.raw()
    c.send(mp.connect("", clean_session=False))
    ack = mp.decode_connack(c.recv_packet())
    assert ack.return_code == mp.CONNACK_IDENTIFIER_REJECTED
    assert ack.session_present is False  # MQTT-3.2.2-4
    c.expect_closed()  # MQTT-3.2.2-5


def test_client_id_23_alphanumeric_chars_accepted_MQTT_3_1_3_5(clients):
    client_id = "abcdefghijKLMNOPQRST012"
    assert len(client_id) == 23
    c = clients.raw()
    assert c.connect(client_id).return_code == 0


def test_username_and_password_accepted_with_anonymous_access(clients):
    """Username/password fields in the right order (MQTT-3.1.2-19, MQTT-3.1.2-21, MQTT-3.1.3-1)."""
    c = clients.raw()
    ack = c.connect("with-creds", username="alice", password=b"\x00secret\xff",
                    will_topic="creds/will", will_message=b"bye")
    assert ack.return_code == 0
    assert c.is_open()


def test_session_present_flag_MQTT_3_2_2_1_to_3(clients):
    cid = clients.unique_id("sp")
    c = clients.raw()
    # No session stored yet: 0 (MQTT-3.2.2-3).
    assert c.connect(cid, clean_session=False).session_present is False
    c.subscribe([("sp/t", 1)])
    c.disconnect()
    # Session stored and resumed: 1 (MQTT-3.2.2-2).
    c = clients.raw()
    assert c.connect(cid, clean_session=False).session_present is True
    c.disconnect()
    # CleanSession=1 always gives 0 (MQTT-3.2.2-1) and discards the session (MQTT-3.1.2-6).
    c = clients.raw()
    assert c.connect(cid, clean_session=True).session_present is False
    c.disconnect()
    c = clients.raw()
    assert c.connect(cid, clean_session=False).session_present is False
    c.disconnect()


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(mp.pingreq(), id="PINGREQ"),
        pytest.param(mp.subscribe(1, [("a", 0)]), id="SUBSCRIBE"),
        pytest.param(mp.publish("a", b"x"), id="PUBLISH"),
        pytest.param(mp.publish("a", b"x", qos=1, packet_id=1), id="PUBLISH-qos1"),
    ],
)
def test_first_packet_must_be_connect_MQTT_3_1_0_1(broker, clients, first):
    bystander = clients.raw_connected()
    bystander.subscribe([("a", 0)])
    c = clients.raw()
    c.send(first)
    c.expect_closed()  # no PINGRESP/SUBACK/PUBACK, just a close
    # Nothing from the unconnected socket was routed.
    pub = clients.raw_connected()
    bystander.subscribe([("sentinel", 0)])
    assert publishes_before_sentinel(pub, bystander, "sentinel") == []
    assert_healthy(broker)


def test_second_connect_closes_connection_MQTT_3_1_0_2(clients):
    c = clients.raw()
    c.connect("twice")
    c.send(mp.connect("twice"))
    c.expect_closed()


def test_reserved_connect_flag_closes_without_connack_MQTT_3_1_2_3(clients):
    c = clients.raw()
    c.send(mp.connect("reserved", reserved_flag=True))
    c.expect_closed()


@pytest.mark.parametrize(
    "flags,why",
    [
        (0x02 | 0x08, "will QoS 1 without will flag (MQTT-3.1.2-13)"),
        (0x02 | 0x20, "will retain without will flag (MQTT-3.1.2-15)"),
        (0x02 | 0x40, "password flag without username flag (MQTT-3.1.2-22)"),
    ],
    ids=["will-qos-no-will", "will-retain-no-will", "password-no-username"],
)
def test_inconsistent_connect_flags_close_without_connack_MQTT_3_1_4_1(clients, flags, why):
    c = clients.raw()
    kw = {"password": b"pw"} if flags & 0x40 else {}
    c.send(mp.connect("inconsistent", flags=flags, **kw))
    c.expect_closed()


def test_will_qos_3_closes_MQTT_3_1_2_14(clients):
    c = clients.raw()
    c.send(mp.connect("wq3", will_topic="w", will_message=b"m", will_qos=3))
    c.expect_closed()


def test_username_flag_without_username_field_closes_MQTT_3_1_2_19(clients):
    c = clients.raw()
    c.send(mp.connect("nouser", flags=0x82))  # username flag set, payload has only the id
    c.expect_closed()


def test_will_topic_with_wildcard_closes_MQTT_4_7_1_1(clients):
    """The will topic is a topic name: no wildcards (MQTT-3.3.2-2, MQTT-4.7.1-1)."""
    c = clients.raw()
    c.send(mp.connect("wildwill", will_topic="will/#", will_message=b"m"))
    c.expect_closed()


def test_connect_fixed_header_flags_must_be_zero_MQTT_2_2_2_2(clients):
    c = clients.raw()
    c.send(mp.connect("fh", fixed_flags=0x01))
    c.expect_closed()


def test_refused_connect_stops_processing_MQTT_3_1_4_5(broker, clients):
    """After a refused CONNECT, bytes that follow it in the same write are not processed:
    a retained PUBLISH pipelined behind a CONNECT with level 3 must not be stored."""
    c = clients.raw()
    c.send(mp.connect("refused", protocol_level=3)
           + mp.publish("refused/retained", b"must not be stored", retain=True))
    assert mp.decode_connack(c.recv_packet()).return_code == mp.CONNACK_UNACCEPTABLE_PROTOCOL
    c.expect_closed()
    sub = clients.raw_connected()
    sub.subscribe([("refused/retained", 0)])
    pub = clients.raw_connected()
    assert publishes_before_sentinel(pub, sub, "refused/retained") == []


@pytest.mark.starling_only
@pytest.mark.broker_options(connect_timeout_ms=500)
def test_connect_timeout_closes_silent_socket(broker, clients):
    """A socket that never sends CONNECT is closed (3.1.4 'reasonable amount of time';
    Starling: --connect-timeout-ms). Its timer wheel has 1 s slots, hence the slack."""
    c = clients.raw()
    start = time.monotonic()
    c.expect_closed(timeout=5.0)
    assert time.monotonic() - start >= 0.4
    assert_healthy(broker)


@pytest.mark.starling_only
@pytest.mark.broker_options(connect_timeout_ms=500)
def test_connect_timeout_closes_partial_connect(broker, clients):
    """Half a CONNECT (a slowloris) does not hold the connection open past the timeout."""
    c = clients.raw()
    c.send(mp.connect("slow")[:7])
    c.expect_closed(timeout=5.0)
    assert_healthy(broker)


@pytest.mark.starling_only
@pytest.mark.broker_options(connect_timeout_ms=500)
def test_connect_timeout_does_not_close_connected_client(clients):
    c = clients.raw_connected(keepalive=0)
    time.sleep(2.0)
    assert c.is_open()
