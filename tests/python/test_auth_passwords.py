"""Starling's password logins (``[auth] password_file``): every hash format, files written
by Debian's ``mosquitto_passwd`` and by ``starling passwd``, anonymous clients per settings,
packets pipelined behind a CONNECT being verified, user names that are not UTF-8 or very
long, and the failure delay. Real clients: raw packets, paho 3.1.1 / 5.0, mosquitto_pub and
mosquitto_sub with ``-u``/``-P``.

Starling only (skipped under ``MQTT_BROKER=mosquitto``).
"""

from __future__ import annotations

import subprocess
import time

import pytest

import mqtt5_packets as m5
import mqtt_packets as mp
from auth_support import (
    HASH_FORMATS, STARLING_ONLY, V3_NOT_AUTHORIZED, V5_NOT_AUTHORIZED, Login, add_user,
    assert_serves, auth_config, bad_credentials, connected, hash_of, login, logins,
    make_broker, not_authorized,
)
from clients import PahoClient
from helpers import publishes_before_sentinel
from mosquitto_clients import mosquitto_pub, subs  # noqa: F401

pytestmark = STARLING_ONLY
_ = make_broker  # the fixture, imported for this module

PASSWORD = "s3cret-Pässwörd"  # non-ASCII on purpose: passwords are bytes


@pytest.fixture
def passwords(tmp_path):
    return tmp_path / "passwords"


# --------------------------------------------------------------------------------------------
# Every hash format: right password, wrong password, unknown user (3.1.1 and 5.0 codes)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
@pytest.mark.parametrize("fmt", sorted(HASH_FORMATS))
def test_each_hash_format_accepts_the_right_password_only(make_broker, passwords, fmt, version):
    add_user(passwords, "alice", PASSWORD, fmt)
    add_user(passwords, "bob", "other", "mosquitto-7")
    assert hash_of(passwords, "alice").startswith(HASH_FORMATS[fmt][1]), passwords.read_text()
    broker = make_broker(auth_config(passwords))
    assert login(broker, version, "alice", PASSWORD) == 0
    # Sent together: each refusal costs the failure delay, in parallel only once.
    wrong = logins(broker, version, [
        ("alice", PASSWORD + "x"),        # wrong password
        ("alice", PASSWORD[:-1]),         # a prefix of it
        ("alice", "other"),               # another user's password
        ("carol", PASSWORD),              # unknown user
        ("Alice", PASSWORD),              # user names are case-sensitive
        ("alice", ""),                    # empty password
        ("alice", None),                  # no password at all
    ])
    assert wrong == [bad_credentials(version)] * len(wrong), [hex(c) if c is not None else c for c in wrong]
    assert login(broker, version, "bob", "other") == 0
    # Remembered logins do not let another password through.
    assert login(broker, version, "alice", PASSWORD) == 0
    assert login(broker, version, "alice", "nope") == bad_credentials(version)


def test_paho_and_mosquitto_tools_with_user_and_password(make_broker, passwords, subs):
    add_user(passwords, "alice", PASSWORD)
    add_user(passwords, "bob", "hunter2", "starling-argon2id")
    broker = make_broker(auth_config(passwords))
    sub = subs(broker, "-u", "alice", "-P", PASSWORD, "-t", "tools/#", "-q", "1", "-v")
    # mosquitto_sub has no 'subscribed' signal: probe with an authenticated publisher.
    probe = connected(broker, 4, "bob", "hunter2")
    deadline = time.monotonic() + 10
    while True:
        probe.publish("tools/probe", b"__ready__")
        try:
            if b"__ready__" in sub.line(timeout=0.3):
                break
        except AssertionError:
            assert time.monotonic() < deadline, "mosquitto_sub never subscribed"
    probe.close()
    mosquitto_pub(broker, "-u", "bob", "-P", "hunter2", "-t", "tools/v3", "-m", "by-pub-311", "-q", "1")
    mosquitto_pub(broker, "-u", "bob", "-P", "hunter2", "-t", "tools/v5", "-m", "by-pub-5", "-q", "1",
                  version="mqttv5")
    seen = set()
    while not {b"tools/v3 by-pub-311", b"tools/v5 by-pub-5"} <= seen:
        seen.add(sub.line(timeout=5))
    # A wrong password: mosquitto_pub fails and says why.
    for version in ("mqttv311", "mqttv5"):
        proc = subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", version,
                               "-u", "bob", "-P", "wrong", "-t", "tools/x", "-m", "x"],
                              capture_output=True, text=True, timeout=15)
        assert proc.returncode != 0, proc
        assert "bad user name or password" in (proc.stderr + proc.stdout).lower(), proc.stderr
    # paho 3.1.1 and 5.0
    for protocol in (4, 5):
        ok = PahoClient(broker.host, broker.port, client_id=f"paho-ok-{protocol}", username="alice",
                        password=PASSWORD, protocol=protocol)
        try:
            ok.connect()
            ok.subscribe("tools/paho", qos=1)
            ok.publish("tools/paho", b"hello", qos=1)
            assert ok.expect_message().payload == b"hello"
        finally:
            ok.close()
        bad = PahoClient(broker.host, broker.port, client_id=f"paho-bad-{protocol}", username="alice",
                         password="wrong", protocol=protocol)
        try:
            bad.connect(expect_rc=None, timeout=10)
            # paho 2 reports 3.1.1's return code 4 as the v5 reason code 0x86 as well.
            assert bad.connack_rc == 0x86, bad.connack_rc
        finally:
            bad.close()


# --------------------------------------------------------------------------------------------
# Anonymous clients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_password_file_refuses_anonymous_by_default(make_broker, passwords, version):
    add_user(passwords, "alice", PASSWORD)
    broker = make_broker(auth_config(passwords))
    assert login(broker, version) == not_authorized(version)
    assert login(broker, version, client_id="anon-with-id") == not_authorized(version)
    if version == 5:  # MQTT 5 allows a password without a user name: still anonymous
        assert login(broker, 5, password=PASSWORD) == V5_NOT_AUTHORIZED
    assert login(broker, version, "alice", PASSWORD) == 0


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_password_file_with_allow_anonymous_true(make_broker, passwords, version):
    add_user(passwords, "alice", PASSWORD)
    broker = make_broker(auth_config(passwords, allow_anonymous=True))
    assert login(broker, version) == 0
    # A user name is still verified: anonymous is no back door for a wrong password.
    assert login(broker, version, "alice", "wrong") == bad_credentials(version)
    assert login(broker, version, "mallory", "x") == bad_credentials(version)
    assert login(broker, version, "alice", PASSWORD) == 0


def test_allow_anonymous_false_without_password_file(make_broker):
    broker = make_broker(auth_config(allow_anonymous=False))
    assert login(broker, 4) == V3_NOT_AUTHORIZED
    assert login(broker, 5) == V5_NOT_AUTHORIZED
    # No password file: a user name is taken as given, as Mosquitto does.
    assert login(broker, 4, "anyone", "anything") == 0
    assert login(broker, 5, "anyone") == 0


def test_no_config_admits_anonymous_and_any_user(make_broker):
    broker = make_broker("")
    assert login(broker, 4) == 0
    assert login(broker, 5, "who", "ever") == 0


# --------------------------------------------------------------------------------------------
# Packets pipelined behind a CONNECT
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_publish_in_the_same_write_as_connect_is_delivered_after_verification(
        make_broker, passwords, version):
    add_user(passwords, "alice", PASSWORD, "starling-argon2id")  # a slow hash on purpose
    add_user(passwords, "sub", "subpw")
    broker = make_broker(auth_config(passwords))
    sub = connected(broker, version, "sub", "subpw", "pipelined-sub")
    try:
        assert sub.subscribe([("pipe/#", 1)]) == [1]
        mod = m5 if version == 5 else mp
        extra = (mod.publish("pipe/a", b"first", qos=1, packet_id=7)
                 + mod.subscribe(8, [("pipe/echo", 1)])
                 + mod.publish("pipe/b", b"second", qos=0))
        pub = Login(broker, version, "alice", PASSWORD, "pipelined-pub", extra=extra)
        try:
            assert pub.result() == 0
            pub.client.expect(mp.PUBACK, 7)
            pub.client.expect(mp.SUBACK, 8)
            got = [sub.recv_publish(ack=True) for _ in range(2)]
            assert [(m.topic, m.payload) for m in got] == [("pipe/a", b"first"), ("pipe/b", b"second")]
            assert got[0].qos == 1
            # The pipelined SUBSCRIBE took effect too.
            pub.client.publish("pipe/echo", b"echo", qos=1)
            echoed = pub.client.recv_publish(ack=True)
            assert echoed.payload == b"echo"
        finally:
            pub.close()
    finally:
        sub.close()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_publish_pipelined_behind_a_refused_connect_is_never_delivered(make_broker, passwords, version):
    add_user(passwords, "alice", PASSWORD)
    broker = make_broker(auth_config(passwords))
    sub = connected(broker, 4, "alice", PASSWORD, "refused-sub")
    pub = connected(broker, 4, "alice", PASSWORD, "refused-pub")
    try:
        assert sub.subscribe([("leak/#", 1)]) == [1]
        mod = m5 if version == 5 else mp
        extra = mod.publish("leak/x", b"must-not-arrive", qos=1, packet_id=1) + mod.publish(
            "leak/x", b"must-not-arrive-either", qos=0, retain=True)
        bad = Login(broker, version, "alice", "wrong", "refused-client", extra=extra)
        try:
            assert bad.result() == bad_credentials(version)
            bad.client.expect_closed(timeout=5)
        finally:
            bad.close()
        assert publishes_before_sentinel(pub, sub, "leak/x", qos=1) == []
        # Nor was anything retained.
        late = connected(broker, 4, "alice", PASSWORD, "late-sub")
        try:
            assert late.subscribe([("leak/#", 1)]) == [1]
            late.expect_no_packet(0.3)
        finally:
            late.close()
    finally:
        sub.close()
        pub.close()


# --------------------------------------------------------------------------------------------
# Hostile user names and passwords
# --------------------------------------------------------------------------------------------


def _utf8_invalid_connect(version: int, username: bytes) -> bytes:
    # encode_string takes bytes as they are: an ill-formed UTF-8 user name.
    if version == 5:
        return m5.connect("bad-utf8", username=username, password=b"x")
    return mp.connect("bad-utf8", username=username, password=b"x")


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
@pytest.mark.parametrize("username", [b"\xff\xfe", b"ab\xc3", b"\xed\xa0\x80", b"a\x00b"],
                         ids=["ff-fe", "truncated", "surrogate", "nul"])
def test_user_name_not_valid_utf8_is_refused_cleanly(make_broker, passwords, version, username):
    add_user(passwords, "alice", PASSWORD)
    broker = make_broker(auth_config(passwords))
    c = (m5.Client5 if version == 5 else mp.RawClient)(broker.host, broker.port, timeout=10)
    try:
        c.send(_utf8_invalid_connect(version, username))
        seen = c.expect_closed(timeout=10, allow_packets=[mp.CONNACK])
        for p in seen:  # a CONNACK, if any, is a refusal (MQTT-1.5.4-1: malformed)
            code = m5.decode_connack(p).reason_code if version == 5 else mp.decode_connack(p).return_code
            assert code != 0, p
            if version == 5:
                assert code in (0x81, 0x80, 0x86, 0x87), hex(code)
    finally:
        c.close()
    assert_serves(broker, "alice", PASSWORD)


@pytest.mark.parametrize("field", ["username", "password", "both"])
def test_very_long_user_name_or_password_is_refused_without_harming_others(make_broker, passwords, field):
    add_user(passwords, "alice", PASSWORD, "starling-argon2id")
    broker = make_broker(auth_config(passwords))
    big = "u" * 60_000
    user = big if field in ("username", "both") else "alice"
    password = ("p" * 60_000) if field in ("password", "both") else PASSWORD
    attempts = [Login(broker, v, user, password) for v in (4, 5)]
    try:
        # Meanwhile a legitimate client logs in and works.
        assert_serves(broker, "alice", PASSWORD)
        codes = [a.result() for a in attempts]
        assert codes == [bad_credentials(4), bad_credentials(5)], codes
        for a in attempts:
            a.client.expect_closed(timeout=5)
    finally:
        for a in attempts:
            a.close()
    # The maximum an MQTT string holds (65535 bytes) as user name and password.
    assert logins(broker, 5, [("x" * 65535, "y" * 65535)]) == [bad_credentials(5)]
    assert login(broker, 4, "alice", PASSWORD) == 0


def test_long_user_name_in_the_password_file_logs_in(make_broker, passwords):
    user = "l" * 20_000
    add_user(passwords, user, PASSWORD, "starling-pbkdf2-sha512")
    broker = make_broker(auth_config(passwords))
    assert login(broker, 5, user, PASSWORD) == 0
    assert login(broker, 4, user, PASSWORD + "!") == bad_credentials(4)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mosquitto-7", "starling-argon2id"])
def test_failures_are_answered_after_the_delay(make_broker, passwords, fmt):
    """A refusal takes at least ~1 s (FAILURE_DELAY_MS) from the CONNECT, for a wrong password
    and an unknown user alike; a success is not delayed so (only reported, not bounded)."""
    add_user(passwords, "alice", PASSWORD, fmt)
    broker = make_broker(auth_config(passwords))
    for version in (4, 5):
        wrong = Login(broker, version, "alice", "wrong")
        unknown = Login(broker, version, "nobody", "wrong")
        try:
            assert wrong.result() == bad_credentials(version)
            assert unknown.result() == bad_credentials(version)
        finally:
            wrong.close()
            unknown.close()
        assert wrong.elapsed >= 0.95, wrong.elapsed
        assert unknown.elapsed >= 0.95, unknown.elapsed
        right = Login(broker, version, "alice", PASSWORD)
        try:
            assert right.result() == 0
        finally:
            right.close()
        print(f"v{version} {fmt}: wrong {wrong.elapsed:.3f}s unknown {unknown.elapsed:.3f}s "
              f"right {right.elapsed:.3f}s")


def test_anonymous_refusal_is_not_delayed_by_verification(make_broker, passwords):
    """Anonymous refusals need no verification (nothing to guess): answered without the
    verifiers, and a flood of them does not count toward the failure throttle."""
    add_user(passwords, "alice", PASSWORD)
    broker = make_broker(auth_config(passwords))
    assert logins(broker, 5, [(None, None)] * 15) == [V5_NOT_AUTHORIZED] * 15
    assert login(broker, 5, "alice", PASSWORD) == 0
