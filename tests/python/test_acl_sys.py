"""`$SYS` and other `$` topics under an acl_file.

Reading `$SYS` needs an explicit rule starting with `$SYS` (a first-level wildcard never
matches a `$` topic, MQTT-4.7.2-1: `topic read #` does not grant it); with no acl_file
anyone may read it. No client may publish to a `$` topic in Starling, whatever the ACL says
(MQTT 5: PUBACK 0x87). Mosquitto 2.0 denies client writes to `$SYS` too (except
`$SYS/broker/connection/+/state`, for bridges) but leaves other `$` topics to the ACL: those
cases are strict xfails under Mosquitto. The broker publishes `$SYS/broker/uptime` every
second here (sys_interval 1), which both brokers do.
"""

from __future__ import annotations

import pytest

from conftest import is_mosquitto
from helpers import configured, publishes_before_sentinel, routed  # noqa: F401  (configured is a fixture)

UPTIME = "$SYS/broker/uptime"


def next_sys_round(client, topic: str = UPTIME, timeout: float = 10.0) -> list:
    """Reads PUBLISHes until one on ``topic`` arrives; returns all of them, that one last."""
    got = []
    while True:
        m = client.recv_publish(timeout=timeout, ack=True)
        got.append(m)
        if m.topic == topic:
            return got


def test_sys_readable_by_anyone_without_acl(configured):
    _, clients = configured.start()
    c = clients.raw_connected("anyone")
    assert c.subscribe([("$SYS/#", 0)]) == [0]
    assert next_sys_round(c)[-1].topic == UPTIME


@pytest.mark.parametrize("rule", ["topic read $SYS/#", "topic readwrite $SYS/#",
                                  "topic read $SYS/broker/+", "pattern read $SYS/#"])
def test_sys_readable_with_explicit_rule(configured, rule):
    acl = configured.file("acl", rule + "\n")
    _, clients = configured.start(acl_file=acl)
    c = clients.raw_connected("watcher")
    assert c.subscribe([(UPTIME, 0)]) == [0]
    assert next_sys_round(c)[-1].topic == UPTIME
    c5 = clients.v5("watcher5")
    assert c5.subscribe([(UPTIME, 0)]) == [0]
    assert next_sys_round(c5)[-1].topic == UPTIME


@pytest.mark.parametrize("rule", ["topic readwrite #", "topic read +/broker/#", "pattern read #",
                                  "topic read $SYS/#\ntopic deny $SYS/broker/uptime"])
def test_sys_not_readable_without_explicit_rule(configured, rule):
    """`#` and `+/...` rules do not reach `$SYS`; a deny overrides `$SYS/#`. The subscriber
    (Starling: SUBACK 0x80, no topic of the filter being readable; Mosquitto grants it and
    checks each delivery) gets nothing while a watcher allowed `$SYS` sees two rounds."""
    acl = configured.file("acl", rule + "\nuser watcher\ntopic read $SYS/#\n")
    _, clients = configured.start(acl_file=acl)
    c = clients.raw_connected("nosy")
    granted = c.subscribe([(UPTIME, 0)])
    assert granted == ([0] if is_mosquitto() else [0x80])
    watcher = clients.raw_connected("watcher", username="watcher")
    assert watcher.subscribe([(UPTIME, 0)]) == [0]
    next_sys_round(watcher)  # the retained one, or the next round
    next_sys_round(watcher)  # a whole round after the subscriptions
    c.expect_no_packet(0.3)  # that round went out to both at once


@pytest.mark.xfail_mosquitto("acl_file does not check SUBSCRIBE: Mosquitto grants QoS 0 and "
                             "filters each delivery")
def test_sys_subscription_refused_with_hash_rule(configured):
    """SUBSCRIBE to a `$SYS` filter that no rule makes readable: 3.1.1 SUBACK 0x80, 5.0
    0x87 (Not authorized), each per filter in a SUBSCRIBE with an allowed one."""
    acl = configured.file("acl", "topic readwrite #\n")
    _, clients = configured.start(acl_file=acl)
    c = clients.raw_connected("nosy")
    assert c.subscribe([("$SYS/#", 0), ("a/b", 1)]) == [0x80, 1]
    c5 = clients.v5("nosy5")
    assert c5.subscribe([("$SYS/#", 0), ("a/b", 1)]) == [0x87, 1]


def test_sys_partly_readable(configured):
    """`topic read $SYS/broker/uptime` and a subscription to `$SYS/#`: only uptime arrives
    of the broker's whole round (granted: the filter overlaps what may be read)."""
    acl = configured.file("acl", "topic read $SYS/broker/uptime\n")
    _, clients = configured.start(acl_file=acl)
    c = clients.raw_connected("watcher")
    assert c.subscribe([("$SYS/#", 0)]) == [0]
    got = next_sys_round(c) + next_sys_round(c)
    assert {m.topic for m in got} == {UPTIME}


# --------------------------------------------------------------------------------------------
# No client publishes to a $ topic
# --------------------------------------------------------------------------------------------

READER = "user reader\ntopic read $SYS/#\ntopic read $foo/#\ntopic readwrite sync\n"
ACLS = {
    "no-acl": None,
    "readwrite-#": "topic readwrite #\n",
    "explicit-$": "topic readwrite #\ntopic readwrite $SYS/#\ntopic readwrite $foo/#\n",
}
# (acl, topic) pairs Mosquitto routes: other `$` topics are left to the ACL (none: allowed),
# and $SYS/broker/connection/+/state is writable for bridges when the ACL allows it (or
# when there is no ACL at all).
MOSQUITTO_ALLOWS = {("no-acl", "$foo/bar"), ("explicit-$", "$foo/bar"),
                    ("no-acl", "$SYS/broker/connection/c1/state"),
                    ("explicit-$", "$SYS/broker/connection/c1/state")}


@pytest.mark.parametrize("topic", ["$SYS/broker/uptime", "$SYS/broker/connection/c1/state",
                                   "$SYS/custom", "$foo/bar"])
@pytest.mark.parametrize("acl", list(ACLS))
def test_dollar_topics_not_publishable(configured, request, acl, topic):
    if is_mosquitto() and (acl, topic) in MOSQUITTO_ALLOWS:
        request.applymarker(pytest.mark.xfail(strict=True, reason="Mosquitto: routes this $ publish"))
    text = ACLS[acl]
    _, clients = configured.start(**({"acl_file": configured.file("acl", text + READER)} if text else {}))
    reader = clients.raw_connected("reader", username="reader")
    assert reader.subscribe([(topic, 0), ("sync", 0)]) == [0, 0]
    pub5 = clients.v5("c1")
    ack = pub5.publish(topic, b"forged", qos=1)
    routed_5 = any(m.topic == topic and m.payload == b"forged"
                   for m in publishes_before_sentinel(pub5, reader, "sync"))
    pub = clients.raw_connected("c1-311")
    routed_311 = routed(pub, reader, topic, "sync", qos=0)
    assert (ack.reason_code, routed_5, routed_311) == (0x87, False, False)


def test_dollar_publish_with_retain_is_not_stored(configured):
    """A refused `$` publish with the retain flag stores nothing: a later subscriber to
    `$foo/#` gets no retained message (Starling; Mosquitto with `topic readwrite #` refuses
    `$foo` as the ACL does not grant it)."""
    acl = configured.file("acl", "topic readwrite #\n" + READER)
    _, clients = configured.start(acl_file=acl)
    pub = clients.v5("p")
    assert pub.publish("$foo/r", b"x", qos=1, retain=True).reason_code == 0x87
    pub.publish("sync", b"kept", qos=1, retain=True)
    reader = clients.raw_connected("reader", username="reader")
    assert reader.subscribe([("$foo/#", 0)]) == [0]
    assert reader.subscribe([("sync", 0)]) == [0]  # served after $foo/#'s retained messages
    m = reader.recv_publish()
    assert (m.topic, m.payload, m.retain) == ("sync", b"kept", True)
