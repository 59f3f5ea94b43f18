"""Wills under an acl_file: a CONNECT whose will topic the client may not write is refused
(3.1.1 CONNACK 0x05 Not authorized, 5.0 0x87); an allowed will is published when the
connection drops.

Mosquitto 2.0.11 (Debian's) does not check the will topic at CONNECT: it accepts the client
and drops the will when it would be published. The refusal tests are strict xfails under it;
"an unauthorized will is never published" holds for both.
"""


from __future__ import annotations

import pytest

from helpers import configured  # noqa: F401  (a fixture)

NO_WILL_CHECK = "Mosquitto 2.0.11 accepts the CONNECT and drops the unauthorized will later"

ACL = """\
topic write anon/will
topic read anon/readonly

user alice
topic write alice/will
topic read alice/readonly

user admin
topic readwrite #

pattern write clients/%c/status
"""


@pytest.fixture
def env(configured):
    _, clients = configured.start(acl_file=configured.file("acl", ACL))
    observer = clients.raw_connected("observer", username="admin")
    assert observer.subscribe([("#", 1)]) == [1]
    return clients, observer


@pytest.mark.parametrize("user,topic", [(None, "anon/will"), ("alice", "alice/will"),
                                        (None, "clients/dev-1/status"), ("alice", "clients/dev-1/status")])
def test_allowed_will_is_accepted_and_published(env, user, topic):
    clients, observer = env
    kw = {"username": user} if user else {}
    c = clients.raw()
    c.connect("dev-1", will_topic=topic, will_message=b"gone", will_qos=1, **kw)
    c.abort()  # no DISCONNECT: the will goes out
    m = observer.recv_publish(ack=True)
    assert (m.topic, m.payload) == (topic, b"gone")


@pytest.mark.parametrize("user,topic", [
    (None, "anon/readonly"),          # read-only for anonymous clients
    (None, "alice/will"),             # alice's, not the anonymous section's
    ("alice", "anon/will"),           # the anonymous section's, not alice's
    ("alice", "alice/readonly"),
    (None, "clients/someone-else/status"),
    ("alice", "nowhere"),
    (None, "$SYS/broker/x"),
])
@pytest.mark.xfail_mosquitto(NO_WILL_CHECK)
def test_will_without_write_access_refuses_connect_311(env, user, topic):
    clients, observer = env
    kw = {"username": user} if user else {}
    c = clients.raw()
    ack = c.connect("dev-1", expect_rc=None, will_topic=topic, will_message=b"x", **kw)
    assert ack.return_code == 0x05
    c.expect_closed()


@pytest.mark.parametrize("user,topic", [(None, "anon/readonly"), ("alice", "anon/will"),
                                        (None, "clients/someone-else/status")])
@pytest.mark.xfail_mosquitto(NO_WILL_CHECK)
def test_will_without_write_access_refuses_connect_v5(env, user, topic):
    clients, _ = env
    kw = {"username": user} if user else {}
    c = clients.raw5()
    ack = c.connect("dev-1", expect_rc=None, will_topic=topic, will_payload=b"x", **kw)
    assert ack.reason_code == 0x87
    c.expect_closed()


@pytest.mark.parametrize("protocol", [4, 5])
def test_unauthorized_will_is_never_published(configured, protocol):
    """Whether the CONNECT is refused (Starling) or the will dropped when due (Mosquitto),
    a will the client may not write never reaches a subscriber. One event loop; barrier:
    the same client id connects again (its CONNACK comes after the old connection's end was
    handled) and publishes a sentinel."""
    _, clients = configured.start(acl_file=configured.file("acl", ACL), event_loops=1)
    observer = clients.raw_connected("observer", username="admin")
    assert observer.subscribe([("#", 1)]) == [1]
    bad = clients.raw() if protocol == 4 else clients.raw5()
    kw = {"will_message": b"leak"} if protocol == 4 else {"will_payload": b"leak"}
    ack = bad.connect("dev-2", expect_rc=None, will_topic="anon/readonly", will_qos=1, **kw)
    bad.abort()
    again = clients.raw_connected("dev-2")
    again.publish("anon/will", b"barrier", qos=1)
    m = observer.recv_publish(ack=True)
    assert (m.topic, m.payload) == ("anon/will", b"barrier"), f"CONNACK {ack}"


@pytest.mark.xfail_mosquitto(NO_WILL_CHECK)
def test_refused_will_leaves_no_session(env):
    """The refusal leaves nothing behind: the same client id connects at once afterwards
    without a will and publishes."""
    clients, observer = env
    c = clients.raw()
    c.connect("dev-2", expect_rc=0x05, will_topic="anon/readonly", will_message=b"leak", clean_session=False)
    c.expect_closed()
    again = clients.raw()
    assert again.connect("dev-2", clean_session=False).session_present is False
    again.publish("anon/will", b"sentinel", qos=1)
    m = observer.recv_publish(ack=True)
    assert (m.topic, m.payload) == ("anon/will", b"sentinel")


@pytest.mark.parametrize("topic", ["$SYS/broker/connection/dev-1/state", "$foo/will"])
@pytest.mark.xfail_mosquitto(NO_WILL_CHECK)
def test_will_on_dollar_topic_refused_even_if_acl_grants_it(configured, topic):
    acl = configured.file("acl", "topic readwrite $SYS/#\ntopic readwrite $foo/#\n")
    _, clients = configured.start(acl_file=acl)
    c = clients.raw5()
    ack = c.connect("dev-1", expect_rc=None, will_topic=topic, will_payload=b"x")
    assert ack.reason_code == 0x87
