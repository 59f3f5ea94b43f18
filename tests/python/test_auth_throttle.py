"""Starling's brute-force throttle: after 10 failed logins from one source address within
60 s, that address's logins are refused without verifying (5.0: CONNACK 0x9F Connection
rate exceeded; 3.1.1: 0x05) until the window ends, the right password included; other
addresses are not affected; failures are logged as a summary line and counted in /metrics.

Starling only (skipped under ``MQTT_BROKER=mosquitto``).
"""

from __future__ import annotations

import re
import time

import pytest

from auth_support import (
    STARLING_ONLY, V3_NOT_AUTHORIZED, V5_BAD_CREDENTIALS, V5_RATE_EXCEEDED, Login, add_user,
    auth_config, login, logins, make_broker,
    metric,
)
from conftest import HOST, free_port

pytestmark = STARLING_ONLY
_ = make_broker

PASSWORD = "the-right-one"
SUMMARY = "failed logins (bad user name or password)"


def wait_metric(port: int, name: str, labels: str, at_least: float, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (value := metric(port, name, labels)) < at_least:
        assert time.monotonic() < deadline, f"{name}{{{labels}}} = {value} < {at_least}"
        time.sleep(0.1)


def throttled_broker(make_broker, tmp_path):
    passwords = tmp_path / "passwords"
    add_user(passwords, "alice", PASSWORD)
    metrics_port = free_port()
    broker = make_broker(auth_config(passwords), options={"metrics_listen": f"{HOST}:{metrics_port}"})
    broker.metrics_port = metrics_port
    # Ten failures at once (in parallel they cost one failure delay), all really verified.
    codes = logins(broker, 5, [("alice", f"guess-{i}") for i in range(10)])
    assert codes == [V5_BAD_CREDENTIALS] * 10, codes
    return broker


@pytest.mark.timeout(60)
def test_eleventh_failure_is_refused_early_and_so_is_the_right_password(make_broker, tmp_path):
    broker = throttled_broker(make_broker, tmp_path)
    started = time.monotonic()
    assert login(broker, 5, "alice", "guess-10") == V5_RATE_EXCEEDED
    assert login(broker, 4, "alice", "guess-11") == V3_NOT_AUTHORIZED
    # The right password from the throttled address is refused within the window too.
    assert login(broker, 5, "alice", PASSWORD) == V5_RATE_EXCEEDED
    assert login(broker, 4, "alice", PASSWORD) == V3_NOT_AUTHORIZED
    assert login(broker, 5, "nobody", "x") == V5_RATE_EXCEEDED
    assert time.monotonic() - started < 55, "the window may have ended: the test proves nothing"
    # Early refusals are counted as credential refusals (the loops publish their counters
    # now and then: poll).
    wait_metric(broker.metrics_port, "starling_connections_refused_total", 'reason="credentials"', 15)
    wait_metric(broker.metrics_port, "starling_credentials_verified_total", "", 15)
    # Anonymous clients are refused as ever (0x87, not a rate refusal: nothing to verify).
    assert login(broker, 5) == 0x87
    # The summary line: logged at most once per 10 s, so poll (each attempt takes ~1 s).
    deadline = time.monotonic() + 25
    while SUMMARY not in broker.log():
        assert time.monotonic() < deadline, f"no summary line:\n{broker.log()[-3000:]}"
        assert login(broker, 5, "alice", "again") == V5_RATE_EXCEEDED
    line = next(line for line in broker.log().splitlines() if SUMMARY in line)
    assert "failed_logins=10" in line and "addresses_throttled=1" in line, line
    assert re.search(r"refused_early=\d+", line), line
    assert PASSWORD not in broker.log() and "guess-" not in broker.log()


def test_other_source_addresses_are_not_throttled(make_broker, tmp_path):
    broker = throttled_broker(make_broker, tmp_path)
    assert login(broker, 5, "alice", PASSWORD) == V5_RATE_EXCEEDED
    # Same machine, another loopback address: its own count.
    for version in (4, 5):
        other = Login(broker, version, "alice", PASSWORD, source="127.0.0.2")
        try:
            assert other.result() == 0
        finally:
            other.close()
    wrong = Login(broker, 5, "alice", "wrong", source="127.0.0.3")
    try:
        assert wrong.result() == V5_BAD_CREDENTIALS
    finally:
        wrong.close()


def test_clients_connected_before_the_throttle_stay_connected(make_broker, tmp_path):
    passwords = tmp_path / "passwords"
    add_user(passwords, "alice", PASSWORD)
    broker = make_broker(auth_config(passwords))
    from auth_support import connected

    c = connected(broker, 5, "alice", PASSWORD, "steady")
    try:
        codes = logins(broker, 5, [("alice", f"guess-{i}") for i in range(11)])
        assert codes.count(V5_BAD_CREDENTIALS) >= 10 and set(codes) <= {V5_BAD_CREDENTIALS, V5_RATE_EXCEEDED}, codes
        assert login(broker, 5, "alice", PASSWORD) == V5_RATE_EXCEEDED
        assert c.is_open()
        c.subscribe([("t", 1)])
        c.publish("t", b"still here", qos=1)
        assert c.recv_publish(ack=True).payload == b"still here"
    finally:
        c.close()


@pytest.mark.timeout(60)
def test_a_burst_of_failures_is_logged_without_further_logins(make_broker, tmp_path):
    broker = throttled_broker(make_broker, tmp_path)
    assert login(broker, 5, "alice", "one-more") == V5_RATE_EXCEEDED
    deadline = time.monotonic() + 25  # summaries are due every 10 s
    while SUMMARY not in broker.log():
        if time.monotonic() > deadline:
            raise AssertionError("the failures were never logged")
        time.sleep(0.2)
