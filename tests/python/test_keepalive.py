"""Keep alive (3.1.2.10, 3.12, 3.13 of MQTT 3.1.1). Keep-alive values of 1-2 s keep it fast."""

import time

import pytest

import mqtt_packets as mp
from helpers import assert_healthy, close_time, wait_for_log

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


# Mosquitto refuses a max_keepalive below 10: 20 s serves both brokers.
@pytest.mark.xfail_mosquitto("2.0.11 (Debian's) applies max_keepalive to MQTT 5 clients only and "
                             "accepts these 3.x clients; later releases refuse them with 0x02")
@pytest.mark.broker_options(max_keep_alive_secs=20)
@pytest.mark.parametrize("asked", [60, 0], ids=["over-the-cap", "no-keep-alive"])
@pytest.mark.parametrize("level,name", [(4, "MQTT"), (3, "MQIsdp")], ids=["3.1.1", "3.1"])
def test_max_keep_alive_refuses_v3_client_asking_for_more(broker, clients, asked, level, name):
    """A 3.x CONNECT cannot be told a Server Keep Alive (MQTT 5 only, 3.2.2.3.14). With a cap
    configured, a client asking for more (or for none: 0 would escape the cap) is refused
    with CONNACK 0x02 and closed, as Mosquitto does, rather than accepted and then closed for
    a silence it was allowed: such a client would reconnect for ever."""
    c = clients.raw()
    ack = c.connect(clients.unique_id("ka-cap"), keepalive=asked, expect_rc=None,
                    protocol_name=name, protocol_level=level)
    assert ack.return_code == mp.CONNACK_IDENTIFIER_REJECTED
    c.expect_closed(timeout=3)
    if broker.kind == "starling":
        wait_for_log(broker, "CONNECT refused: keep-alive over the cap", f"keep-alive of {asked} s",
                     "max_keep_alive_secs is 20")
    # Only that client was refused: one within the cap is served.
    ok = clients.raw()
    assert ok.connect(clients.unique_id("ka-ok"), keepalive=20).return_code == 0
    assert ok.subscribe([("ka/cap", 1)]) == [1]
    ok.publish("ka/cap", b"served", qos=1)
    assert ok.recv_publish(ack=True).payload == b"served"


@pytest.mark.broker_options(max_keep_alive_secs=20)
def test_max_keep_alive_accepts_v3_client_within_it(clients):
    """Asking for the cap or less is accepted (and, as always, enforced at 1.5 x)."""
    for asked in (20, 1):
        c = clients.raw()
        assert c.connect(clients.unique_id("ka-cap"), keepalive=asked).return_code == 0
        c.ping()
    elapsed = _silent_close_time(clients, keepalive=1, limit=8.0)
    assert elapsed >= 1.5 - 0.1
