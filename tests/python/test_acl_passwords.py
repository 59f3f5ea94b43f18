"""The ACL with a real password file (`mosquitto_passwd -b`): user sections apply to
authenticated users; anonymous clients are refused unless allow_anonymous = true, and then
get the anonymous section. (Authentication itself is test_auth_*.py's.)
"""

from __future__ import annotations

import pytest

from helpers import configured, routed  # noqa: F401
from mosquitto_clients import MosquittoSub, mosquitto_pub

ACL = """\
topic read public/#
topic readwrite sync/anon

user alice
topic readwrite a/#
topic readwrite sync/alice

user admin
topic readwrite #

pattern readwrite dev/%u/#
"""


@pytest.fixture
def env(configured):
    pw = configured.passwords("passwords", {"alice": "alice-pw", "admin": "admin-pw", "carol": "carol-pw"})
    broker, clients = configured.start(acl_file=configured.file("acl", ACL), password_file=pw,
                                       allow_anonymous=True)
    return broker, clients


def test_authenticated_user_gets_its_section(env):
    _, clients = env
    observer = clients.raw_connected("obs", username="admin", password=b"admin-pw")
    assert observer.subscribe([("#", 1)]) == [1]
    alice = clients.raw_connected("alice-1", username="alice", password=b"alice-pw")
    assert routed(alice, observer, "a/1", "sync/alice") is True
    assert routed(alice, observer, "public/1", "sync/alice") is False
    assert routed(alice, observer, "dev/alice/1", "sync/alice") is True
    carol = clients.raw_connected("carol-1", username="carol", password=b"carol-pw")
    assert routed(carol, observer, "a/1", "dev/carol/sync") is False
    assert routed(carol, observer, "dev/carol/x", "dev/carol/sync") is True


def test_anonymous_allowed_gets_anonymous_section(env):
    _, clients = env
    writer = clients.raw_connected("w", username="admin", password=b"admin-pw")
    anon = clients.raw_connected("anon-1")
    assert anon.subscribe([("#", 1)]) == [1]
    assert routed(writer, anon, "public/news", "sync/anon") is True
    assert routed(writer, anon, "a/1", "sync/anon") is False


def test_wrong_password_never_gets_the_section(env):
    _, clients = env
    c = clients.raw()
    ack = c.connect("alice-x", expect_rc=None, username="alice", password=b"nope")
    assert ack.return_code in (0x04, 0x05)
    c.expect_closed()


def test_anonymous_refused_without_allow_anonymous(configured):
    pw = configured.passwords("passwords", {"alice": "alice-pw"})
    _, clients = configured.start(acl_file=configured.file("acl", ACL), password_file=pw)
    c = clients.raw()
    assert c.connect("anon", expect_rc=None).return_code == 0x05
    ok = clients.raw_connected("alice-1", username="alice", password=b"alice-pw")
    assert ok.subscribe([("a/#", 1)]) == [1]


def test_mosquitto_clients_with_password(env):
    broker, clients = env
    sub = MosquittoSub(broker, "-u", "alice", "-P", "alice-pw", "-i", "alice-sub", "-t", "a/#",
                       "-t", "sync/alice", "-v", "-q", "1")
    try:
        import time
        deadline = time.monotonic() + 10
        while True:  # until the subscription is live
            mosquitto_pub(broker, "-u", "alice", "-P", "alice-pw", "-t", "sync/alice", "-m", "ready", "-q", "1")
            try:
                if sub.line(timeout=0.3) == b"sync/alice ready":
                    break
            except AssertionError:
                assert time.monotonic() < deadline, "mosquitto_sub never subscribed"
        while not sub.lines.empty():
            sub.lines.get_nowait()
        mosquitto_pub(broker, "-t", "a/1", "-m", "anonymous", "-q", "1")  # anonymous: no a/#
        mosquitto_pub(broker, "-u", "admin", "-P", "admin-pw", "-t", "a/1", "-m", "admin", "-q", "1")
        mosquitto_pub(broker, "-u", "alice", "-P", "alice-pw", "-t", "sync/alice", "-m", "end", "-q", "1")
        lines = []
        while not lines or lines[-1] != b"sync/alice end":
            lines.append(sub.line())
        assert lines == [b"a/1 admin", b"sync/alice end"]
    finally:
        sub.stop()
