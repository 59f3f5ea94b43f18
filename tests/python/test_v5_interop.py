"""Both protocol versions on one listener: a v3.1.1 publisher and a v5 subscriber, and the
reverse, with raw clients, paho-mqtt (MQTTv311 / MQTTv5) and mosquitto_pub / mosquitto_sub
(-V mqttv311 / -V mqttv5)."""

import pytest

import mqtt5_packets as m5
from helpers import publishes_before_sentinel
from mosquitto_clients import mosquitto_pub, subs, subscribed, tools_present  # noqa: F401 (fixtures)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_v3_publisher_to_v5_subscriber(clients, qos):
    sub = clients.v5()
    sub.subscribe([("v5/x/v3-to-v5", 2)], subscription_id=4)
    pub = clients.raw_connected()
    pub.publish("v5/x/v3-to-v5", b"from 3.1.1", qos=qos)
    m = sub.recv_publish(ack=True)
    assert (m.topic, m.payload, m.qos) == ("v5/x/v3-to-v5", b"from 3.1.1", qos)
    assert m.subscription_ids == [4]
    assert set(m.properties.ids()) <= {m5.PROP_SUBSCRIPTION_IDENTIFIER}, "a v3 message has no properties"


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_v5_publisher_with_properties_to_v3_subscriber(clients, qos):
    """A v3.1.1 subscriber gets topic and payload exactly; v5 properties are not encoded
    in a 3.1.1 PUBLISH (the 3.1.1 decoder would read them as payload)."""
    sub = clients.raw_connected()
    sub.subscribe([("v5/x/v5-to-v3", 2)])
    pub = clients.v5()
    pub.publish("v5/x/v5-to-v3", b"from v5", qos=qos, properties=[
        (m5.PROP_CONTENT_TYPE, "text/plain"), (m5.PROP_USER_PROPERTY, ("k", "v")),
        (m5.PROP_MESSAGE_EXPIRY_INTERVAL, 60), (m5.PROP_RESPONSE_TOPIC, "v5/x/resp")])
    m = sub.recv_publish(ack=True)
    assert (m.topic, m.payload, m.qos) == ("v5/x/v5-to-v3", b"from v5", qos)


def test_v5_topic_alias_to_v3_subscriber(clients):
    sub = clients.raw_connected()
    sub.subscribe([("v5/x/alias", 1)])
    pub = clients.v5()
    pub.publish("v5/x/alias", b"1", qos=1, properties={m5.PROP_TOPIC_ALIAS: 1})
    pub.publish("", b"2", qos=1, properties={m5.PROP_TOPIC_ALIAS: 1})
    assert [(m.topic, m.payload) for m in sub.recv_publishes(2, ack=True)] == [
        ("v5/x/alias", b"1"), ("v5/x/alias", b"2")]


def test_retained_across_versions(clients):
    v5pub = clients.v5()
    v5pub.publish("v5/x/ret5", b"r5", qos=1, retain=True, properties={m5.PROP_CONTENT_TYPE: "c"})
    v3pub = clients.raw_connected()
    v3pub.publish("v5/x/ret3", b"r3", qos=1, retain=True)
    v3sub = clients.raw_connected()
    v3sub.subscribe([("v5/x/ret5", 1)])
    m = v3sub.recv_publish(ack=True)
    assert (m.payload, m.retain) == (b"r5", True)
    v5sub = clients.v5()
    v5sub.subscribe([("v5/x/ret3", 1)])
    m = v5sub.recv_publish(ack=True)
    assert (m.payload, m.retain) == (b"r3", True)


def test_v5_will_to_v3_subscriber(clients):
    sub = clients.raw_connected()
    sub.subscribe([("v5/x/will", 1)])
    c = clients.raw5()
    c.connect(clients.unique_id("xwill"), will_topic="v5/x/will", will_payload=b"v5 gone", will_qos=1,
              will_properties={m5.PROP_USER_PROPERTY: [("a", "b")]})
    c.abort()
    assert sub.recv_publish(ack=True).payload == b"v5 gone"


def test_no_local_does_not_affect_v3_clients(clients):
    """No Local is per subscription: a v3 client with the same topic still gets the v5
    client's message, the v5 No Local subscriber does not."""
    me = clients.v5()
    me.subscribe([("v5/x/nl", m5.sub_options(1, no_local=True))])
    v3 = clients.raw_connected()
    v3.subscribe([("v5/x/nl", 1)])
    me.publish("v5/x/nl", b"mine", qos=1)
    assert v3.recv_publish(ack=True).payload == b"mine"
    assert publishes_before_sentinel(clients.raw_connected(), me, "v5/x/nl", qos=1) == []


@pytest.mark.parametrize("direction", ["311-to-5", "5-to-311"])
def test_paho_cross_version(clients, direction):
    if direction == "311-to-5":
        sub, pub = clients.paho5(), clients.paho()
    else:
        sub, pub = clients.paho(), clients.paho5()
    sub.subscribe("v5/x/paho", 1)
    pub.publish("v5/x/paho", direction.encode(), qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload, m.qos) == ("v5/x/paho", direction.encode(), 1)


def test_mosquitto_pub_v5_properties_to_paho_v5(broker, clients):
    sub = clients.paho5()
    sub.subscribe("v5/x/mpub", 1)
    mosquitto_pub(broker, "-t", "v5/x/mpub", "-q", "1", "-m", "hello",
                  "-D", "publish", "user-property", "origin", "mosquitto_pub",
                  "-D", "publish", "content-type", "text/plain",
                  "-D", "publish", "response-topic", "v5/x/back", version="mqttv5")
    m = sub.expect_message()
    assert m.payload == b"hello"
    assert m.properties.UserProperty == [("origin", "mosquitto_pub")]
    assert m.properties.ContentType == "text/plain"
    assert m.properties.ResponseTopic == "v5/x/back"


def test_mosquitto_pub_v5_to_mosquitto_sub_v311(broker, clients, subs):
    sub = subs(broker, "-t", "v5/x/m5to3", "-q", "1", "-F", "%t|%q|%p")
    subscribed(sub, clients, "v5/x/m5to3")
    mosquitto_pub(broker, "-t", "v5/x/m5to3", "-q", "1", "-m", "five to three",
                  "-D", "publish", "user-property", "k", "v", version="mqttv5")
    assert sub.line() == b"v5/x/m5to3|1|five to three"


def test_mosquitto_pub_v311_to_mosquitto_sub_v5(broker, clients, subs):
    sub = subs(broker, "-t", "v5/x/m3to5", "-q", "1", "-F", "%t|%q|%p", version="mqttv5")
    subscribed(sub, clients, "v5/x/m3to5")
    mosquitto_pub(broker, "-t", "v5/x/m3to5", "-q", "1", "-m", "three to five")
    assert sub.line() == b"v5/x/m3to5|1|three to five"


def test_mosquitto_sub_v5_prints_properties(broker, clients, subs):
    """%C content type, %R response topic, %P user properties, %S subscription identifier."""
    sub = subs(broker, "-t", "v5/x/mprops", "-q", "1", "-D", "subscribe", "subscription-identifier", "9",
               "-F", "%t|%C|%R|%P|%S|%p", version="mqttv5")
    subscribed(sub, clients, "v5/x/mprops")
    mosquitto_pub(broker, "-t", "v5/x/mprops", "-q", "1", "-m", "props",
                  "-D", "publish", "content-type", "a/b", "-D", "publish", "response-topic", "r/t",
                  "-D", "publish", "user-property", "k", "v", version="mqttv5")
    assert sub.line() == b"v5/x/mprops|a/b|r/t|k:v|9|props"
