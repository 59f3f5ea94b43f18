"""A persistent session's subscriptions are checked for whoever holds the session now: a
session resumed under another user name (no password file: takeover by any client, as in
Mosquitto) or through another listener with another ACL reads only what the new
connection may read.
"""

from __future__ import annotations

from helpers import configured, routed  # noqa: F401
from mqtt_packets import RawClient

ACL = """\
topic readwrite sync
user alice
topic read a/#
topic readwrite sync
user bob
topic read b/#
topic readwrite sync
user admin
topic readwrite #
"""


def test_session_resumed_by_another_user(configured):
    _, clients = configured.start(acl_file=configured.file("acl", ACL))
    writer = clients.raw_connected("writer", username="admin")
    alice = clients.raw()
    alice.connect("shared-id", clean_session=False, username="alice")
    assert alice.subscribe([("a/#", 1), ("#", 1), ("sync", 1)]) == [1, 1, 1]
    assert routed(writer, alice, "a/1", "sync") is True
    alice.disconnect()
    bob = clients.raw()
    assert bob.connect("shared-id", clean_session=False, username="bob").session_present is True
    got = {t: routed(writer, bob, t, "sync") for t in ("a/1", "b/1")}
    assert got == {"a/1": False, "b/1": True}


def test_session_resumed_anonymously(configured):
    _, clients = configured.start(acl_file=configured.file("acl", ACL))
    writer = clients.raw_connected("writer", username="admin")
    alice = clients.raw()
    alice.connect("shared-id", clean_session=False, username="alice")
    assert alice.subscribe([("a/#", 1), ("sync", 1)]) == [1, 1]
    assert routed(writer, alice, "a/1", "sync") is True  # alice's verdict is remembered...
    alice.disconnect()
    anon = clients.raw()
    assert anon.connect("shared-id", clean_session=False).session_present is True
    assert routed(writer, anon, "a/1", "sync") is False  # ...but not used for another user


def test_session_resumed_through_another_listener(configured):
    acl_a = configured.file("acl-a", "topic read a/#\ntopic readwrite sync\nuser admin\ntopic readwrite #\n")
    acl_b = configured.file("acl-b", "topic read b/#\ntopic readwrite sync\nuser admin\ntopic readwrite #\n")
    broker, clients = configured.start(listeners=[{"acl_file": acl_a}, {"acl_file": acl_b}])
    writer = clients.raw_connected("writer", username="admin")
    on_a = clients.raw()
    on_a.connect("roamer", clean_session=False)
    assert on_a.subscribe([("a/#", 1), ("sync", 1)]) == [1, 1]
    assert routed(writer, on_a, "a/1", "sync") is True
    on_a.disconnect()
    on_b = RawClient(broker.host, broker.ports[1])
    clients._open.append(on_b)
    assert on_b.connect("roamer", clean_session=False).session_present is True
    assert routed(writer, on_b, "a/1", "sync") is False
