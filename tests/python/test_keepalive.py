"""Keep alive (3.1.2.10, 3.12, 3.13 of MQTT 3.1.1). Keep-alive values of 1-2 s keep it fast."""

import time

import pytest

import mqtt_packets as mp
from helpers import assert_healthy, close_time

# Starling files keep-alive deadlines in a 1 s timer wheel: a close may come up to one slot
# after 1.5 x keep-alive, plus scheduling slack.
# 2.5 s: the slot and a busy host's scheduling (a CI machine running other work); loops that
# report they did not run at all get that time added (helpers.close_time). Still well under
# Mosquitto's ~5 s check interval, so the strict xfail below keeps telling the two apart.
LATE_SLACK_S = 2.5


def _silent_close_time(clients, keepalive: int, limit: float) -> float:
    c = clients.raw()
    c.connect(clients.unique_id("ka"), keepalive=keepalive)
    return close_time(c, clients.broker, limit)


@pytest.mark.xfail_mosquitto(
    "checks keep-alive only every ~5 s: a silent client with keep-alive 1 is closed after "
    "5-6 s, not 1.5 s"
)
def test_silent_client_closed_after_one_and_a_half_keepalive_MQTT_3_1_2_24(broker, clients):
    elapsed = _silent_close_time(clients, keepalive=1, limit=1.5 + LATE_SLACK_S)
    assert elapsed >= 1.5 - 0.1, f"closed after {elapsed:.2f}s, before 1.5 x keep-alive"
    assert_healthy(broker)


def test_silent_client_eventually_closed_MQTT_3_1_2_24(clients):
    """Loose bound (Mosquitto's ~5 s check interval fits): closed, and never early."""
    elapsed = _silent_close_time(clients, keepalive=1, limit=8.0)
    assert elapsed >= 1.5 - 0.1


def test_not_closed_before_one_and_a_half_keepalive_MQTT_3_1_2_24(clients):
    """Silence longer than the keep-alive but shorter than 1.5 x is allowed.

    The silence is measured from when the CONNECT was sent (the broker counts from when it
    read it, later): a run in which this process was not scheduled in time to ping within
    the 3 s proves nothing, and is tried again with a fresh connection."""
    for _ in range(3):
        c = clients.raw()
        sent = time.monotonic()
        c.connect(clients.unique_id("ka"), keepalive=2)
        time.sleep(2.4 - (time.monotonic() - sent))
        c.send(mp.pingreq())
        silence = time.monotonic() - sent
        if silence < 2.9:
            c.expect(mp.PINGRESP)
            return
    raise AssertionError("never pinged within 2.9 s of CONNECT: the machine is too busy to tell")


def test_pingreq_gets_pingresp_MQTT_3_12_4_1(clients):
    c = clients.raw_connected()
    c.send(mp.pingreq())
    p = c.recv_packet()
    assert (p.type, p.flags, p.body) == (mp.PINGRESP, 0, b"")


def test_pingreq_keeps_connection_alive_MQTT_3_1_2_23(clients):
    c = clients.raw()
    c.connect(clients.unique_id("ka"), keepalive=1)
    deadline = time.monotonic() + 6.5  # beyond Mosquitto's check interval too
    while time.monotonic() < deadline:
        c.ping(timeout=2)
        time.sleep(0.5)
    assert c.is_open()


def test_other_traffic_keeps_connection_alive_MQTT_3_1_2_23(clients):
    """Any control packet counts, not only PINGREQ: QoS 0 publishes every 0.5 s."""
    c = clients.raw()
    c.connect(clients.unique_id("ka"), keepalive=1)
    deadline = time.monotonic() + 6.5
    while time.monotonic() < deadline:
        c.send(mp.publish("ka/traffic", b"tick"))
        time.sleep(0.5)
    assert c.is_open()


def test_keepalive_zero_disables_timeout_section_3_1_2_10(clients):
    c = clients.raw()
    c.connect(clients.unique_id("ka"), keepalive=0)
    time.sleep(3.0)
    assert c.is_open()


@pytest.mark.starling_only
@pytest.mark.broker_options(max_keep_alive_secs=1)
def test_max_keep_alive_caps_requested_keepalive(broker, clients):
    """Starling --max-keep-alive-secs: a client asking for 60 s is held to 1 s (3.1.1 has no
    way to tell the client; the broker reduces it silently)."""
    elapsed = _silent_close_time(clients, keepalive=60, limit=1.5 + LATE_SLACK_S)
    assert elapsed >= 1.4
    assert_healthy(broker)


@pytest.mark.starling_only
@pytest.mark.broker_options(max_keep_alive_secs=1)
def test_max_keep_alive_leaves_keepalive_zero_off(clients):
    """Documents the contract for keep-alive 0 under a cap: Starling keeps 0 meaning 'off'
    (CoreConfig::keep_alive_timeout_ms), so the connection stays open."""
    c = clients.raw()
    c.connect(clients.unique_id("ka"), keepalive=0)
    time.sleep(2.5)
    assert c.is_open()
