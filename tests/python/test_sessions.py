"""Sessions: CleanSession, offline queueing, takeover (3.1.2.4, 3.1.4, 4.1 of MQTT 3.1.1)."""

import mqtt_packets as mp
from helpers import publishes_before_sentinel


def test_persistent_session_keeps_subscriptions_and_queues_qos1_MQTT_3_1_2_4_MQTT_3_1_2_5(clients):
    cid = clients.unique_id("persist")
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe([("sess/q1", 1)])
    sub.disconnect()
    pub = clients.raw_connected()
    for i in range(5):
        pub.publish("sess/q1", f"offline-{i}".encode(), qos=1)
    sub = clients.raw()
    assert sub.connect(cid, clean_session=False).session_present is True
    got = sub.recv_publishes(5, ack=True)
    assert [m.payload for m in got] == [f"offline-{i}".encode() for i in range(5)]
    assert all(m.qos == 1 for m in got)
    # The subscription is still there without a new SUBSCRIBE.
    pub.publish("sess/q1", b"online again", qos=1)
    assert sub.recv_publish(ack=True).payload == b"online again"


def test_offline_qos2_queued_at_subscription_qos_MQTT_3_1_2_5(clients):
    cid = clients.unique_id("persist2")
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe([("sess/q2", 2), ("sess/q2-as-1", 1)])
    sub.disconnect()
    pub = clients.raw_connected()
    pub.publish("sess/q2", b"two", qos=2)
    pub.publish("sess/q2-as-1", b"one", qos=2)
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    got = {m.topic: m for m in sub.recv_publishes(2, ack=True)}
    assert (got["sess/q2"].payload, got["sess/q2"].qos) == (b"two", 2)
    assert (got["sess/q2-as-1"].payload, got["sess/q2-as-1"].qos) == (b"one", 1)


def test_clean_session_discards_stored_session_MQTT_3_1_2_6(clients):
    cid = clients.unique_id("discard")
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe([("sess/discard", 1)])
    sub.disconnect()
    pub = clients.raw_connected()
    pub.publish("sess/discard", b"queued for the old session", qos=1)
    sub = clients.raw()
    assert sub.connect(cid, clean_session=True).session_present is False
    sub.subscribe([("sess/sentinel", 1)])
    # Neither the queued message nor the old subscription survive.
    assert publishes_before_sentinel(pub, sub, "sess/sentinel", qos=1) == []
    pub.publish("sess/discard", b"after", qos=1)
    assert publishes_before_sentinel(pub, sub, "sess/sentinel", qos=1) == []


def test_clean_session_state_not_kept_after_disconnect_MQTT_3_1_2_6(clients):
    cid = clients.unique_id("ephemeral")
    sub = clients.raw()
    sub.connect(cid, clean_session=True)
    sub.subscribe([("sess/ephemeral", 1)])
    sub.disconnect()
    pub = clients.raw_connected()
    pub.publish("sess/ephemeral", b"nobody", qos=1)
    sub = clients.raw()
    assert sub.connect(cid, clean_session=False).session_present is False
    sub.subscribe([("sess/sentinel", 1)])
    assert publishes_before_sentinel(pub, sub, "sess/sentinel", qos=1) == []


def test_takeover_closes_existing_connection_MQTT_3_1_4_2(clients):
    cid = clients.unique_id("dup-id")
    first = clients.raw()
    first.connect(cid)
    second = clients.raw()
    assert second.connect(cid).return_code == 0
    first.expect_closed()
    assert second.is_open()


def test_takeover_continues_persistent_session_MQTT_3_1_4_2_MQTT_3_2_2_2(clients):
    cid = clients.unique_id("takeover")
    first = clients.raw()
    first.connect(cid, clean_session=False)
    first.subscribe([("sess/takeover", 1)])
    second = clients.raw()
    assert second.connect(cid, clean_session=False).session_present is True
    first.expect_closed()
    pub = clients.raw_connected()
    pub.publish("sess/takeover", b"to the new connection", qos=1)
    assert second.recv_publish(ack=True).payload == b"to the new connection"


def test_takeover_sends_nothing_more_to_old_connection(clients):
    cid = clients.unique_id("old-conn")
    first = clients.raw()
    first.connect(cid)
    first.subscribe([("sess/old", 0)])
    second = clients.raw()
    second.connect(cid)
    second.subscribe([("sess/old", 0)])
    first.expect_closed()
    pub = clients.raw_connected()
    pub.publish("sess/old", b"x")
    assert second.recv_publish().payload == b"x"


def test_persistent_session_survives_abnormal_disconnect(clients):
    cid = clients.unique_id("abrupt")
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe([("sess/abrupt", 1)])
    sub.abort()
    pub = clients.raw_connected()
    pub.publish("sess/abrupt", b"while down", qos=1)
    sub = clients.raw()
    assert sub.connect(cid, clean_session=False).session_present is True
    assert sub.recv_publish(ack=True).payload == b"while down"


def test_unsubscribe_is_part_of_session_state(clients):
    cid = clients.unique_id("unsub-persist")
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe([("sess/u", 1), ("sess/sentinel", 1)])
    sub.unsubscribe(["sess/u"])
    sub.disconnect()
    pub = clients.raw_connected()
    pub.publish("sess/u", b"not for you", qos=1)
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    assert publishes_before_sentinel(pub, sub, "sess/sentinel", qos=1) == []


def test_paho_persistent_session(clients):
    cid = clients.unique_id("paho-persist")
    c = clients.paho(client_id=cid, clean_session=False)
    assert c.session_present is False
    c.subscribe("sess/paho", 1)
    c.disconnect()
    pub = clients.paho()
    pub.publish("sess/paho", b"queued", qos=1)
    c = clients.paho(client_id=cid, clean_session=False)
    assert c.session_present is True
    m = c.expect_message()
    assert (m.payload, m.qos) == (b"queued", 1)


def test_qos1_queue_order_across_reconnect_MQTT_4_6_0_6(clients):
    cid = clients.unique_id("order")
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    sub.subscribe([("sess/order", 1)])
    sub.disconnect()
    pub = clients.raw_connected()
    for i in range(1, 51):
        pub.send(mp.publish("sess/order", str(i).encode(), qos=1, packet_id=i))
    for _ in range(50):
        pub.expect(mp.PUBACK)
    sub = clients.raw()
    sub.connect(cid, clean_session=False)
    got = [int(m.payload) for m in sub.recv_publishes(50, ack=True)]
    assert got == list(range(1, 51))
