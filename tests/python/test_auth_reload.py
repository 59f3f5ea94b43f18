"""SIGHUP re-reads the password file (a user added logs in, a user removed is disconnected
with 0x87 and counted, a changed password takes effect, a broken file keeps the old rules),
and session takeover by user (``session_takeover = "same-user"`` by default with a
password file, ``"any"`` on request).

Starling only (skipped under ``MQTT_BROKER=mosquitto``).
"""

from __future__ import annotations

import re
import time

import pytest

import mqtt5_packets as m5
from auth_support import (
    STARLING_ONLY, V3_NOT_AUTHORIZED, V5_NOT_AUTHORIZED, add_user, auth_config, bad_credentials,
    connected, login, make_broker, starling_passwd,
    metric,
)
from conftest import HOST, free_port

pytestmark = STARLING_ONLY
_ = make_broker

RELOADED = "SIGHUP: password and ACL files re-read and in force"
REJECTED = "rejected; the running"


def hup_and_wait(broker, text: str = RELOADED, timeout: float = 10.0) -> str:
    """Sends SIGHUP and waits until the log shows ``text`` once more than before."""
    before = broker.log().count(text)
    broker.hup()
    deadline = time.monotonic() + timeout
    while broker.log().count(text) <= before:
        assert time.monotonic() < deadline, f"no {text!r} after SIGHUP:\n{broker.log()[-3000:]}"
        time.sleep(0.05)
    return broker.log()


@pytest.fixture
def passwords(tmp_path):
    p = tmp_path / "passwords"
    add_user(p, "alice", "alicepw")
    add_user(p, "bob", "bobpw", "starling-argon2id")
    return p


# --------------------------------------------------------------------------------------------
# SIGHUP
# --------------------------------------------------------------------------------------------


def test_sighup_user_added_logs_in(make_broker, passwords):
    broker = make_broker(auth_config(passwords))
    assert login(broker, 5, "carol", "carolpw") == bad_credentials(5)
    add_user(passwords, "carol", "carolpw", "starling-pbkdf2-sha512")
    hup_and_wait(broker)
    assert login(broker, 5, "carol", "carolpw") == 0
    assert login(broker, 4, "carol", "carolpw") == 0
    assert login(broker, 4, "alice", "alicepw") == 0


def test_sighup_user_removed_is_disconnected_with_0x87(make_broker, passwords):
    metrics_port = free_port()
    broker = make_broker(auth_config(passwords), options={"metrics_listen": f"{HOST}:{metrics_port}"})
    v5 = connected(broker, 5, "alice", "alicepw", "alice-v5")
    v3 = connected(broker, 4, "alice", "alicepw", "alice-v3")
    other = connected(broker, 5, "bob", "bobpw", "bob-v5")
    try:
        starling_passwd(passwords, "alice", "", delete=True)
        assert "alice:" not in passwords.read_text()
        log = hup_and_wait(broker)
        v5.expect_disconnect(V5_NOT_AUTHORIZED, timeout=10)
        v3.expect_closed(timeout=10)
        assert other.is_open()
        # Logged and counted.
        deadline = time.monotonic() + 5
        while "user removed on reload" not in log:
            assert time.monotonic() < deadline, log[-3000:]
            time.sleep(0.05)
            log = broker.log()
        assert "alice" in log
        # The loops publish their counters now and then: poll.
        deadline = time.monotonic() + 10
        while (removed := metric(metrics_port, "starling_disconnected_user_removed_total")) < 2:
            assert time.monotonic() < deadline, removed
            time.sleep(0.1)
        assert removed == 2
        # And alice can no longer log in (her remembered login is gone with the file).
        assert login(broker, 5, "alice", "alicepw") == bad_credentials(5)
    finally:
        v5.close()
        v3.close()
        other.close()


def test_sighup_changed_password_takes_effect(make_broker, passwords):
    broker = make_broker(auth_config(passwords))
    assert login(broker, 5, "alice", "alicepw") == 0  # now remembered
    add_user(passwords, "alice", "newpw")  # mosquitto_passwd updates the entry
    hup_and_wait(broker)
    assert login(broker, 5, "alice", "alicepw") == bad_credentials(5)
    assert login(broker, 5, "alice", "newpw") == 0


@pytest.mark.parametrize("broken", ["garbage-line", "unknown-scheme", "missing-file"])
def test_sighup_broken_file_keeps_the_old_rules(make_broker, passwords, broken):
    broker = make_broker(auth_config(passwords))
    alice = connected(broker, 5, "alice", "alicepw", "alice-stays")
    try:
        good = passwords.read_text()
        if broken == "garbage-line":
            passwords.write_text(good + "carol:$7$whatever\nthis line has no colon\n")
        elif broken == "unknown-scheme":
            passwords.write_text("carol:$5$abc$def\n")
        else:
            passwords.unlink()
        log = hup_and_wait(broker, REJECTED)
        rejection = [line for line in log.splitlines() if REJECTED in line][-1]
        assert str(passwords) in rejection, rejection
        if broken != "missing-file":
            assert re.search(re.escape(str(passwords)) + r":\d+:", rejection), rejection
        # The old rules stay: connected clients stay, and the old users still log in (bob's
        # first login: nothing remembered), the broken file's users do not.
        assert alice.is_open()
        assert login(broker, 5, "bob", "bobpw") == 0
        assert login(broker, 4, "alice", "alicepw") == 0
        assert login(broker, 5, "carol", "whatever") == bad_credentials(5)
        # Fixed again: in force on the next SIGHUP.
        passwords.write_text(good)
        add_user(passwords, "carol", "carolpw")
        hup_and_wait(broker)
        assert login(broker, 5, "carol", "carolpw") == 0
        assert alice.is_open()
    finally:
        alice.close()


# --------------------------------------------------------------------------------------------
# Session takeover
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_takeover_by_another_user_is_refused(make_broker, passwords, version):
    broker = make_broker(auth_config(passwords))
    alice = connected(broker, version, "alice", "alicepw", "device-1")
    try:
        assert login(broker, version, "bob", "bobpw", "device-1") == (
            V5_NOT_AUTHORIZED if version == 5 else V3_NOT_AUTHORIZED)
        assert alice.is_open()
        alice.subscribe([("own/t", 1)])
        alice.publish("own/t", b"mine", qos=1)
        assert alice.recv_publish(ack=True).payload == b"mine"
    finally:
        alice.close()


def test_takeover_of_an_offline_session_by_another_user_is_refused(make_broker, passwords):
    broker = make_broker(auth_config(passwords))
    alice = connected(broker, 5, "alice", "alicepw", "device-2", clean_start=False,
                      properties=[(m5.PROP_SESSION_EXPIRY_INTERVAL, 300)])
    alice.subscribe([("queued/t", 1)])
    alice.disconnect()
    pub = connected(broker, 5, "bob", "bobpw", "bob-pub")
    try:
        pub.publish("queued/t", b"for alice", qos=1)
        # bob may not resume alice's session (and read her queued message).
        assert login(broker, 5, "bob", "bobpw", "device-2", clean_start=False) == V5_NOT_AUTHORIZED
        assert login(broker, 4, "bob", "bobpw", "device-2", clean_session=True) == V3_NOT_AUTHORIZED
        back = connected(broker, 5, "alice", "alicepw", "device-2", clean_start=False,
                         properties=[(m5.PROP_SESSION_EXPIRY_INTERVAL, 300)])
        try:
            assert back.connack.session_present
            assert back.recv_publish(ack=True).payload == b"for alice"
        finally:
            back.close()
    finally:
        pub.close()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_takeover_by_the_same_user_is_allowed(make_broker, passwords, version):
    broker = make_broker(auth_config(passwords))
    first = connected(broker, version, "alice", "alicepw", "device-3")
    try:
        second = connected(broker, version, "alice", "alicepw", "device-3")
        try:
            if version == 5:
                first.expect_disconnect(m5.RC_SESSION_TAKEN_OVER)
            else:
                first.expect_closed()
            assert second.is_open()
        finally:
            second.close()
    finally:
        first.close()


def test_anonymous_may_not_take_over_a_users_session(make_broker, passwords):
    broker = make_broker(auth_config(passwords, allow_anonymous=True))
    alice = connected(broker, 5, "alice", "alicepw", "device-4")
    try:
        assert login(broker, 5, None, None, "device-4") == V5_NOT_AUTHORIZED
        assert alice.is_open()
    finally:
        alice.close()


def test_session_takeover_any_lets_another_user_take_over(make_broker, passwords):
    broker = make_broker(auth_config(passwords, session_takeover="any"))
    alice = connected(broker, 5, "alice", "alicepw", "device-5")
    try:
        bob = connected(broker, 5, "bob", "bobpw", "device-5")
        try:
            alice.expect_disconnect(m5.RC_SESSION_TAKEN_OVER)
            assert bob.is_open()
        finally:
            bob.close()
    finally:
        alice.close()


def test_takeover_refused_while_verifying_does_not_disturb_the_owner(make_broker, passwords):
    """A wrong password for the owner's client id: refused after the delay, owner untouched."""
    broker = make_broker(auth_config(passwords))
    alice = connected(broker, 5, "alice", "alicepw", "device-6")
    try:
        assert login(broker, 5, "alice", "wrong", "device-6") == bad_credentials(5)
        assert alice.is_open()
    finally:
        alice.close()
