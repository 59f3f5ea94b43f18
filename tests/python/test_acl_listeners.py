"""Per-listener ACLs: each `[[listeners]]` entry may set its own acl_file over `[auth]`'s
(Mosquitto: `per_listener_settings true`). A client is checked against the ACL of the
listener it connected through, for its writes and for what it reads, whichever listener
the message came in on.
"""

from __future__ import annotations

import pytest

from helpers import configured, routed  # noqa: F401
from mqtt_packets import RawClient

ACL_A = "topic readwrite a/#\ntopic readwrite sync\n"
ACL_B = "topic read a/#\ntopic readwrite b/#\ntopic readwrite sync\n"


def connect_on(clients, port: int, client_id: str, **kw) -> RawClient:
    c = RawClient(clients.broker.host, port)
    clients._open.append(c)  # closed with the others at teardown
    c.connect(client_id, **kw)
    return c


@pytest.fixture
def two(configured):
    a = configured.file("acl-a", ACL_A)
    b = configured.file("acl-b", ACL_B)
    broker, clients = configured.start(listeners=[{"acl_file": a}, {"acl_file": b}])
    return broker, clients


def test_writes_checked_against_own_listener(two):
    broker, clients = two
    pa, pb = broker.ports
    reader_a = connect_on(clients, pa, "reader-a")
    assert reader_a.subscribe([("a/#", 1), ("sync", 1)]) == [1, 1]
    reader_b = connect_on(clients, pb, "reader-b")
    assert reader_b.subscribe([("b/#", 1), ("sync", 1)]) == [1, 1]
    on_a = connect_on(clients, pa, "pub-a")
    on_b = connect_on(clients, pb, "pub-b")
    assert routed(on_a, reader_a, "a/1", "sync") is True
    assert routed(on_a, reader_b, "b/1", "sync") is False  # listener A's ACL has no b/#
    assert routed(on_b, reader_b, "b/1", "sync") is True
    assert routed(on_b, reader_a, "a/1", "sync") is False  # listener B's ACL: a/# is read-only


def test_reads_checked_against_readers_listener(two):
    """A message written through A reaches a reader on B when B's ACL lets it read the
    topic; a message written through B reaches a reader on A only if A's ACL lets it."""
    broker, clients = two
    pa, pb = broker.ports
    reader_a = connect_on(clients, pa, "reader-a")
    assert reader_a.subscribe([("#", 1)]) == [1]
    reader_b = connect_on(clients, pb, "reader-b")
    assert reader_b.subscribe([("#", 1)]) == [1]
    on_a = connect_on(clients, pa, "pub-a")
    on_b = connect_on(clients, pb, "pub-b")
    assert routed(on_a, reader_b, "a/x", "sync") is True
    assert routed(on_b, reader_a, "b/x", "sync") is False
    assert routed(on_b, reader_b, "b/x", "sync") is True


def test_listener_acl_overrides_global(configured):
    """`[auth] acl_file` (global) for the first listener, the second listener's own file
    for the second."""
    glob = configured.file("acl-global", "topic readwrite g/#\ntopic readwrite sync\n")
    own = configured.file("acl-own", "topic readwrite o/#\ntopic readwrite sync\n")
    broker, clients = configured.start(listeners=[{}, {"acl_file": own}], acl_file=glob)
    pa, pb = broker.ports
    ra = connect_on(clients, pa, "ra")
    assert ra.subscribe([("#", 1)]) == [1]
    rb = connect_on(clients, pb, "rb")
    assert rb.subscribe([("#", 1)]) == [1]
    wa = connect_on(clients, pa, "wa")
    wb = connect_on(clients, pb, "wb")
    assert routed(wa, ra, "g/1", "sync") is True
    assert routed(wa, ra, "o/1", "sync") is False
    assert routed(wb, rb, "o/1", "sync") is True
    assert routed(wb, rb, "g/1", "sync") is False


def test_listener_without_acl_is_open(configured):
    acl = configured.file("acl", "topic readwrite a/#\ntopic readwrite sync\n")
    broker, clients = configured.start(listeners=[{"acl_file": acl}, {}])
    pa, pb = broker.ports
    open_reader = connect_on(clients, pb, "open-reader")
    assert open_reader.subscribe([("#", 1)]) == [1]
    restricted = connect_on(clients, pa, "restricted")
    free = connect_on(clients, pb, "free")
    assert routed(free, open_reader, "z/1", "sync") is True
    assert routed(restricted, open_reader, "z/1", "sync") is False
    assert routed(restricted, open_reader, "a/1", "sync") is True


def test_reload_changes_one_listener(configured):
    """SIGHUP re-reads each listener's own file."""
    a = configured.file("acl-a", ACL_A)
    b = configured.file("acl-b", ACL_B)
    broker, clients = configured.start(listeners=[{"acl_file": a}, {"acl_file": b}])
    from helpers import wait_until
    pa, pb = broker.ports
    reader = connect_on(clients, pa, "reader-a")
    assert reader.subscribe([("#", 1)]) == [1]
    on_b = connect_on(clients, pb, "pub-b")
    assert routed(on_b, reader, "a/1", "sync") is False
    with open(b, "w") as f:
        f.write(ACL_B.replace("topic read a/#", "topic readwrite a/#"))
    broker.reload()
    wait_until(lambda: routed(on_b, reader, "a/1", "sync"), what="listener B's new rules")
