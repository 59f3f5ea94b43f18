"""Starling's access configuration: the safe default for listeners off loopback, per-listener
``allow_anonymous`` / ``password_file``, and password files that are broken (start-up and
``--check-config`` refuse them with ``file:line: what``).

Starling only (skipped under ``MQTT_BROKER=mosquitto``).
"""

from __future__ import annotations

import subprocess

import pytest

from auth_support import (
    STARLING_ONLY, V3_NOT_AUTHORIZED, V5_NOT_AUTHORIZED, add_user, auth_config, bad_credentials,
    connected, login, make_broker, starling_bin, toml_str,
)
from conftest import free_port

pytestmark = STARLING_ONLY
_ = make_broker

PASSWORD = "correct horse"


def listener(bind: str, **keys) -> str:
    lines = ["[[listeners]]", 'protocol = "tcp"', f"bind = {toml_str(bind)}"]
    for key, value in keys.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        else:
            lines.append(f"{key} = {toml_str(value)}")
    return "\n".join(lines) + "\n"


def check_config(path) -> subprocess.CompletedProcess:
    return subprocess.run([starling_bin(), "--check-config", str(path)], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------
# The safe default: a listener off loopback needs a password file or allow_anonymous = true
# --------------------------------------------------------------------------------------------


def test_non_loopback_listener_without_auth_refuses_to_start(make_broker):
    port = free_port()
    broker = make_broker(listener(f"0.0.0.0:{port}"), listen=False, start=False, port=port)
    proc = broker.run_once()
    assert proc.returncode == 2, proc
    out = proc.stdout + proc.stderr
    assert "allow_anonymous" in out and "0.0.0.0" in out, out
    checked = check_config(broker.config_path)
    assert checked.returncode == 2 and "allow_anonymous" in checked.stderr, checked


def test_non_loopback_listen_flag_without_auth_refuses_to_start(make_broker):
    broker = make_broker("", start=False)
    broker.host = "0.0.0.0"  # --listen 0.0.0.0:PORT, no [auth]
    proc = broker.run_once()
    assert proc.returncode == 2, proc
    assert "allow_anonymous" in proc.stdout + proc.stderr, proc


@pytest.mark.parametrize("where", ["auth", "listener"])
def test_non_loopback_listener_with_allow_anonymous_true_starts(make_broker, where):
    port = free_port()
    if where == "auth":
        config = auth_config(allow_anonymous=True) + listener(f"0.0.0.0:{port}")
    else:
        config = listener(f"0.0.0.0:{port}", allow_anonymous=True)
    assert check_config_text(make_broker, config).returncode == 0
    broker = make_broker(config, listen=False, port=port)
    assert login(broker, 4) == 0
    assert login(broker, 5) == 0


def check_config_text(make_broker, config):
    b = make_broker(config, listen=False, start=False)
    return check_config(b.config_path)


@pytest.mark.parametrize("where", ["auth", "listener"])
def test_non_loopback_listener_with_password_file_starts_and_refuses_anonymous(make_broker, tmp_path, where):
    passwords = tmp_path / "passwords"
    add_user(passwords, "alice", PASSWORD)
    port = free_port()
    if where == "auth":
        config = auth_config(passwords) + listener(f"0.0.0.0:{port}")
    else:
        config = listener(f"0.0.0.0:{port}", password_file=str(passwords))
    broker = make_broker(config, listen=False, port=port)
    assert login(broker, 4) == V3_NOT_AUTHORIZED
    assert login(broker, 5) == V5_NOT_AUTHORIZED
    assert login(broker, 5, "alice", PASSWORD) == 0
    assert login(broker, 4, "alice", "nope") == bad_credentials(4)


# --------------------------------------------------------------------------------------------
# Per-listener settings
# --------------------------------------------------------------------------------------------


def test_two_listeners_one_open_one_with_password_file(make_broker, tmp_path):
    passwords = tmp_path / "passwords"
    add_user(passwords, "alice", PASSWORD)
    open_port, closed_port = free_port(), free_port()
    config = (listener(f"127.0.0.1:{open_port}")
              + listener(f"127.0.0.1:{closed_port}", password_file=str(passwords)))
    assert check_config_text(make_broker, config).returncode == 0
    broker = make_broker(config, listen=False, port=open_port)
    secured = _at_port(broker, closed_port)
    # The open listener: anonymous and any user name (no password file there).
    assert login(broker, 4) == 0
    assert login(broker, 5, "alice", "not-her-password") == 0
    assert login(broker, 5, "anyone", "anything") == 0
    # The other: only alice, with her password.
    assert login(secured, 4) == V3_NOT_AUTHORIZED
    assert login(secured, 5) == V5_NOT_AUTHORIZED
    assert login(secured, 4, "alice", "not-her-password") == bad_credentials(4)
    assert login(secured, 5, "anyone", "anything") == bad_credentials(5)
    assert login(secured, 5, "alice", PASSWORD) == 0
    # One broker: messages cross listeners.
    sub = connected(secured, 5, "alice", PASSWORD, "secured-sub")
    pub = connected(broker, 4, None, None, "open-pub")
    try:
        assert sub.subscribe([("x/#", 1)]) == [1]
        pub.publish("x/y", b"across", qos=1)
        assert sub.recv_publish(ack=True).payload == b"across"
    finally:
        sub.close()
        pub.close()


def test_listener_allow_anonymous_overrides_auth(make_broker, tmp_path):
    passwords = tmp_path / "passwords"
    add_user(passwords, "alice", PASSWORD)
    a, b = free_port(), free_port()
    config = (auth_config(passwords)
              + listener(f"127.0.0.1:{a}")
              + listener(f"127.0.0.1:{b}", allow_anonymous=True))
    broker = make_broker(config, listen=False, port=a)
    other = _at_port(broker, b)
    assert login(broker, 4) == V3_NOT_AUTHORIZED  # [auth]'s password file: anonymous refused
    assert login(other, 4) == 0  # its own allow_anonymous = true
    assert login(other, 5, "alice", "wrong") == bad_credentials(5)  # still [auth]'s file
    assert login(other, 5, "alice", PASSWORD) == 0


def test_listeners_with_different_password_files(make_broker, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    add_user(first, "alice", "pw-one")
    add_user(second, "alice", "pw-two", "starling-argon2id")
    a, b = free_port(), free_port()
    config = (listener(f"127.0.0.1:{a}", password_file=str(first))
              + listener(f"127.0.0.1:{b}", password_file=str(second)))
    broker = make_broker(config, listen=False, port=a)
    other = _at_port(broker, b)
    assert login(broker, 4, "alice", "pw-one") == 0
    assert login(other, 4, "alice", "pw-two") == 0
    # A login remembered on one listener does not open the other.
    assert login(broker, 5, "alice", "pw-two") == bad_credentials(5)
    assert login(other, 5, "alice", "pw-one") == bad_credentials(5)


class _Port:
    def __init__(self, host, port):
        self.host, self.port = host, port


def _at_port(broker, port):
    import socket
    import time

    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((broker.host, port), timeout=0.5).close()
            return _Port(broker.host, port)
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}:\n{broker.log()[-2000:]}"
            time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# Broken password files
# --------------------------------------------------------------------------------------------


BROKEN = {
    "no-colon": ("# users\nalice:{good}\nbob\n", 3),
    "unknown-scheme": ("alice:{good}\n\nbob:$5$abc$def\n", 3),
    "bad-7": ("bob:$7$101$notbase64!!$xx\nalice:{good}\n", 1),
    "empty-hash": ("alice:{good}\nbob:\n", 2),
    "duplicate": ("alice:{good}\nalice:{good}\n", 2),
    "empty-user": (":{good}\n", 1),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_malformed_password_file_refuses_start_with_file_and_line(make_broker, tmp_path, case):
    good_file = tmp_path / "good"
    add_user(good_file, "alice", PASSWORD)
    good = good_file.read_text().strip().split(":", 1)[1]
    text, line = BROKEN[case]
    passwords = tmp_path / "passwords"
    passwords.write_text(text.format(good=good))
    broker = make_broker(auth_config(passwords), start=False)
    proc = broker.run_once()
    assert proc.returncode == 2, proc
    assert f"{passwords}:{line}:" in proc.stderr, proc.stderr
    checked = check_config(broker.config_path)
    assert checked.returncode == 2, checked
    assert f"{passwords}:{line}:" in checked.stderr, checked.stderr
    # The hash is never echoed in the message.
    assert good not in proc.stderr and good not in checked.stderr


def test_missing_password_file_refuses_start(make_broker, tmp_path):
    passwords = tmp_path / "does-not-exist"
    broker = make_broker(auth_config(passwords), start=False)
    proc = broker.run_once()
    assert proc.returncode == 2, proc
    assert str(passwords) in proc.stderr and "password_file" in proc.stderr, proc.stderr


def test_check_config_passes_a_good_password_file(make_broker, tmp_path):
    passwords = tmp_path / "passwords"
    add_user(passwords, "alice", PASSWORD)
    add_user(passwords, "bob", PASSWORD, "mosquitto-6")
    add_user(passwords, "carol", PASSWORD, "starling-scram-sha-256")
    broker = make_broker(auth_config(passwords), start=False)
    checked = check_config(broker.config_path)
    assert checked.returncode == 0, checked
