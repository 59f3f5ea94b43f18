"""MQTT 5 enhanced authentication with SCRAM-SHA-256 (Authentication Method property) on a
listener with a password file, driven by PyPI ``scramp`` over raw CONNECT/AUTH packets:
success (the server-final checked by scramp), wrong password, unknown user, a user without
a SCRAM verifier, re-authentication (AUTH 0x19), and re-authentication as another user.

Starling only (skipped under ``MQTT_BROKER=mosquitto``).
"""

from __future__ import annotations

import pytest

import mqtt5_packets as m5
import mqtt_packets as mp
from auth_support import (
    SCRAM, STARLING_ONLY, V5_NOT_AUTHORIZED, add_user, auth_config, auth_props, connected, login,
    make_broker, scram_client, scram_connect,
)

pytestmark = STARLING_ONLY
_ = make_broker

PASSWORD = "pencil-Ünïcode"


@pytest.fixture
def scram_broker(make_broker, tmp_path):
    passwords = tmp_path / "passwords"
    add_user(passwords, "alice", PASSWORD, "starling-scram-sha-256")
    add_user(passwords, "bob", "bobpw", "starling-scram-sha-256")
    add_user(passwords, "legacy", "legacypw", "mosquitto-7")  # no SCRAM verifier
    broker = make_broker(auth_config(passwords))
    broker.passwords = passwords
    return broker


def client5(broker) -> m5.Client5:
    return m5.Client5(broker.host, broker.port, timeout=10)


def test_scram_success_and_server_final_verified(scram_broker):
    c = client5(scram_broker)
    try:
        code, sc, data = scram_connect(c, "alice", PASSWORD, "scram-ok")
        assert code == 0, hex(code)
        assert data.startswith(b"v="), data  # scramp verified it in scram_connect
        c.subscribe([("scram/t", 1)])
        c.publish("scram/t", b"authenticated", qos=1)
        assert c.recv_publish(ack=True).payload == b"authenticated"
    finally:
        c.close()
    # The same user's plain password login works against the same verifier.
    assert login(scram_broker, 5, "alice", PASSWORD) == 0
    assert login(scram_broker, 4, "alice", PASSWORD) == 0


def test_scram_with_assigned_client_id(scram_broker):
    c = client5(scram_broker)
    try:
        c.send(m5.connect("", properties=[(m5.PROP_AUTHENTICATION_METHOD, SCRAM),
                                          (m5.PROP_AUTHENTICATION_DATA,
                                           (sc := scram_client("bob", "bobpw")).get_client_first().encode())]))
        code, _, data = auth_props(c.recv_packet())
        assert code == m5.RC_CONTINUE_AUTHENTICATION
        sc.set_server_first(data.decode())
        c.send(m5.auth(m5.RC_CONTINUE_AUTHENTICATION, [(m5.PROP_AUTHENTICATION_METHOD, SCRAM),
                                                       (m5.PROP_AUTHENTICATION_DATA, sc.get_client_final().encode())]))
        ack = m5.decode_connack(c.recv_packet())
        assert ack.reason_code == 0
        sc.set_server_final(ack.properties[m5.PROP_AUTHENTICATION_DATA].decode())
        assigned = ack.properties[m5.PROP_ASSIGNED_CLIENT_IDENTIFIER]
        assert assigned.startswith("starling-") and len(assigned) == len("starling-") + 32, assigned
        int(assigned[len("starling-"):], 16)
    finally:
        c.close()


@pytest.mark.parametrize("user, password", [
    ("alice", "wrong"),        # wrong password
    ("nobody", "whatever"),    # unknown user: not revealed before the end
    ("legacy", "legacypw"),    # right password, but no SCRAM verifier
], ids=["wrong-password", "unknown-user", "no-verifier"])
def test_scram_refusals_come_at_the_end_with_0x87(scram_broker, user, password):
    c = client5(scram_broker)
    try:
        code, _, _ = scram_connect(c, user, password, f"scram-{user}")
        assert code == V5_NOT_AUTHORIZED, hex(code)
        c.expect_closed(timeout=5)
    finally:
        c.close()
    # The broker still serves.
    ok = client5(scram_broker)
    try:
        assert scram_connect(ok, "alice", PASSWORD)[0] == 0
    finally:
        ok.close()


def test_legacy_user_still_logs_in_with_a_password(scram_broker):
    assert login(scram_broker, 5, "legacy", "legacypw") == 0


def test_unknown_method_is_refused_with_0x8c(scram_broker):
    c = client5(scram_broker)
    try:
        ack = c.connect("m", expect_rc=None, properties=[(m5.PROP_AUTHENTICATION_METHOD, "SCRAM-SHA-1"),
                                                         (m5.PROP_AUTHENTICATION_DATA, b"n,,n=alice,r=abc")])
        assert ack.reason_code == m5.RC_BAD_AUTHENTICATION_METHOD, hex(ack.reason_code)
    finally:
        c.close()


def test_scram_on_a_listener_without_password_file_is_refused_with_0x8c(make_broker):
    broker = make_broker("")
    c = client5(broker)
    try:
        code, _, _ = scram_connect(c, "alice", PASSWORD)
        assert code == m5.RC_BAD_AUTHENTICATION_METHOD, hex(code)
    finally:
        c.close()


def reauth(c: m5.Client5, user: str, password: str):
    """Runs AUTH 0x19 → AUTH 0x18 → AUTH 0x18; returns the packet that ends it."""
    sc = scram_client(user, password)
    c.send(m5.auth(0x19, [(m5.PROP_AUTHENTICATION_METHOD, SCRAM),
                          (m5.PROP_AUTHENTICATION_DATA, sc.get_client_first().encode())]))
    p = c.recv_packet()
    if p.type == mp.DISCONNECT:
        return p, sc
    code, method, data = auth_props(p)
    if code != m5.RC_CONTINUE_AUTHENTICATION:
        return p, sc
    assert method == SCRAM
    sc.set_server_first(data.decode())
    c.send(m5.auth(m5.RC_CONTINUE_AUTHENTICATION, [(m5.PROP_AUTHENTICATION_METHOD, SCRAM),
                                                   (m5.PROP_AUTHENTICATION_DATA, sc.get_client_final().encode())]))
    while True:
        p = c.recv_packet()
        if p.type in (m5.AUTH, mp.DISCONNECT):
            return p, sc
        c._pending.append(p)  # keep anything else for later


def test_reauthentication_as_the_same_user(scram_broker):
    c = client5(scram_broker)
    try:
        assert scram_connect(c, "alice", PASSWORD, "reauth")[0] == 0
        for _ in range(2):
            p, sc = reauth(c, "alice", PASSWORD)
            code, method, data = auth_props(p)
            assert p.type == m5.AUTH and code == 0, p
            assert method == SCRAM
            sc.set_server_final(data.decode())
        assert c.is_open()
        c.subscribe([("re/t", 1)])
        c.publish("re/t", b"still", qos=1)
        assert c.recv_publish(ack=True).payload == b"still"
    finally:
        c.close()


def test_reauthentication_as_another_user_disconnects_with_0x87(scram_broker):
    c = client5(scram_broker)
    try:
        assert scram_connect(c, "alice", PASSWORD, "reauth-other")[0] == 0
        p, _ = reauth(c, "bob", "bobpw")
        assert p.type == mp.DISCONNECT, p
        assert m5.decode_disconnect(p).reason_code == V5_NOT_AUTHORIZED
        c.expect_closed(timeout=5)
    finally:
        c.close()


def test_reauthentication_with_a_wrong_password_disconnects_with_0x87(scram_broker):
    c = client5(scram_broker)
    try:
        assert scram_connect(c, "alice", PASSWORD, "reauth-wrong")[0] == 0
        p, _ = reauth(c, "alice", "not-it")
        assert p.type == mp.DISCONNECT, p
        assert m5.decode_disconnect(p).reason_code == V5_NOT_AUTHORIZED
        c.expect_closed(timeout=5)
    finally:
        c.close()


def test_reauthentication_of_a_password_login_is_a_protocol_error(scram_broker):
    """A connection not authenticated by a method cannot re-authenticate (MQTT-4.12.1-1:
    the method must be the CONNECT's): DISCONNECT 0x82."""
    c = connected(scram_broker, 5, "alice", PASSWORD, "plain-then-auth")
    try:
        p, _ = reauth(c, "alice", PASSWORD)
        assert p.type == mp.DISCONNECT, p
        assert m5.decode_disconnect(p).reason_code == m5.RC_PROTOCOL_ERROR
    finally:
        c.close()


def test_scram_identity_owns_the_session(scram_broker):
    """The SCRAM user (not the CONNECT's User Name field) is the session's user: another
    user may not take the client id over (session_takeover = same-user by default)."""
    c = client5(scram_broker)
    try:
        assert scram_connect(c, "alice", PASSWORD, "owned", username="bob")[0] == 0
        assert login(scram_broker, 5, "bob", "bobpw", "owned") == V5_NOT_AUTHORIZED
        assert c.is_open()
        assert login(scram_broker, 5, "alice", PASSWORD, "owned") == 0
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# SCRAM and the brute-force defences of password logins
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_scram_guesses_are_throttled_like_password_guesses(scram_broker):
    import time

    started = time.monotonic()
    for i in range(11):
        c = client5(scram_broker)
        try:
            assert scram_connect(c, "alice", f"guess-{i}")[0] in (V5_NOT_AUTHORIZED, 0x9F)
        finally:
            c.close()
    elapsed = time.monotonic() - started
    # Password logins from this address are now throttled, as after 11 password guesses...
    assert login(scram_broker, 5, "alice", PASSWORD) == 0x9F
    # ...and so are SCRAM ones; each refusal took the failure delay.
    c = client5(scram_broker)
    try:
        assert scram_connect(c, "alice", PASSWORD)[0] != 0
    finally:
        c.close()
    assert elapsed >= 10, f"11 SCRAM refusals took {elapsed:.2f}s: no failure delay"


def test_scram_from_a_throttled_address_is_refused(scram_broker):
    from auth_support import V5_BAD_CREDENTIALS, logins

    codes = logins(scram_broker, 5, [("alice", f"guess-{i}") for i in range(10)])
    assert codes == [V5_BAD_CREDENTIALS] * 10, codes
    assert login(scram_broker, 5, "alice", PASSWORD) == 0x9F
    c = client5(scram_broker)
    try:
        code = scram_connect(c, "alice", PASSWORD)[0]
    finally:
        c.close()
    assert code != 0, "a throttled address authenticated by SCRAM"
