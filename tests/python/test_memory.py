"""What one connection may pin, and memory coming back once clients are gone.

Starling's own limits (skipped under Mosquitto, which has neither): the topic bytes an MQTT 5
connection's Topic Alias table may hold (``max_topic_alias_bytes``: past it, DISCONNECT 0x97
Quota exceeded, since MQTT 5 can announce a count of aliases but no byte budget) and the
longest client identifier (``max_client_id_length_bytes``: CONNACK 0x85, 3.1.1 0x02
Identifier rejected). Then rounds of clients that pin tens of MB each (large topic aliases,
long client ids) connect and close, and the broker's resident memory, read from
``/proc/PID/status``, must come back to within a few MiB of where it started after every
round: glibc keeps freed memory in its arenas unless asked to return it.
"""

import socket
import time
from pathlib import Path

import pytest

import mqtt5_packets as m5
import mqtt_packets as mp

pytestmark = pytest.mark.starling_only

# How far above its start-up RSS the broker may stay once the clients are gone: file-backed
# pages of code run for the first time, the pool's and tables' own growth.
RSS_RETURN_TOLERANCE_KIB = 4 * 1024
# How long the broker may take to give the memory back (it trims about once a second).
RSS_RETURN_DEADLINE_S = 15.0
# A round moves tens of MB over loopback; on a busy machine three take longer than the
# suite's 20 s per test.
ROUNDS_TIMEOUT_S = 90
ROUNDS = 3


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def wait_rss_at_most(pid: int, limit_kib: int, deadline_s: float = RSS_RETURN_DEADLINE_S) -> int:
    """Polls the RSS until it is at most ``limit_kib``; returns it, or fails at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        rss = rss_kib(pid)
        if rss <= limit_kib:
            return rss
        if time.monotonic() > deadline:
            raise AssertionError(f"RSS {rss} KiB still above {limit_kib} KiB after {deadline_s:.0f} s")
        time.sleep(0.1)


def sync(c: mp.RawClient) -> None:
    """PINGREQ and wait for PINGRESP: everything sent before it has been handled."""
    c.ping(timeout=30)


def alias(n: int) -> dict:
    return {m5.PROP_TOPIC_ALIAS: n}


def topic_of(prefix: str, length: int) -> str:
    return (prefix + "/").ljust(length, "x")


# --------------------------------------------------------------------------------------------
# Topic Alias byte budget
# --------------------------------------------------------------------------------------------


@pytest.mark.broker_options(max_topic_alias_bytes=1000)
def test_topic_alias_table_past_its_byte_budget_is_disconnected_0x97(broker, clients):
    """Aliases within the budget work; the one that takes the table past it is answered with
    DISCONNECT 0x97 Quota exceeded, and only that connection closes."""
    bystander = clients.v5()
    bystander.subscribe([("mem/#", 1)])
    pub = clients.v5()
    a, b = topic_of("mem/a", 600), topic_of("mem/b", 300)
    pub.publish(a, b"1", qos=1, properties=alias(1), expect_reason=0)
    pub.publish(b, b"2", qos=1, properties=alias(2), expect_reason=0)
    pub.publish("", b"3", qos=1, properties=alias(1), expect_reason=0)
    got = bystander.recv_publishes(3, ack=True)
    assert [(m.topic, m.payload) for m in got] == [(a, b"1"), (b, b"2"), (a, b"3")]
    # 900 + 101 bytes > 1000.
    pub.send(m5.publish(topic_of("mem/c", 101), b"4", qos=1, packet_id=9, properties=alias(3)))
    pub.expect_disconnect(m5.RC_QUOTA_EXCEEDED)
    bystander.ping()
    bystander.expect_no_packet(0.3)  # the refused PUBLISH was not routed
    assert "Topic Alias table over max_topic_alias_bytes" in broker.log()


@pytest.mark.broker_options(max_topic_alias_bytes=1000)
def test_replacing_an_alias_counts_only_the_new_topic(clients):
    """Remapping an alias frees its old topic's bytes: many remaps of one alias stay within a
    budget they would exceed together."""
    sub = clients.v5()
    sub.subscribe([("mem/#", 0)])
    pub = clients.v5()
    topics = [topic_of(f"mem/{i}", 900) for i in range(5)]
    for t in topics:
        pub.publish(t, b"x", qos=1, properties=alias(1), expect_reason=0)
    assert [m.topic for m in sub.recv_publishes(5)] == topics
    assert pub.is_open()


def test_the_default_budget_takes_one_large_alias_but_not_two(clients):
    """With the defaults (10 aliases, 64 KiB of topics) one 60 KB topic can have an alias;
    a second one would pin 120 KB and is refused."""
    pub = clients.v5()
    assert pub.connack.properties.get(m5.PROP_TOPIC_ALIAS_MAXIMUM) == 10
    # Nobody subscribes: accepted, with 0x10 No matching subscribers.
    pub.publish(topic_of("mem/big1", 60_000), b"x", qos=1, properties=alias(1), expect_reason=0x10)
    pub.send(m5.publish(topic_of("mem/big2", 60_000), b"y", qos=1, packet_id=2, properties=alias(2)))
    pub.expect_disconnect(m5.RC_QUOTA_EXCEEDED)


@pytest.mark.broker_options(max_topic_alias_bytes=200)
def test_brokers_own_aliases_stay_within_the_budget(clients):
    """Toward a subscriber that accepts aliases, the broker aliases a topic only while its
    table stays within the budget; a topic that does not fit goes in full, every time."""
    sub = clients.v5(properties={m5.PROP_TOPIC_ALIAS_MAXIMUM: 5})
    sub.subscribe([("mem/#", 0)])
    pub = clients.v5()
    short, long_topic = "mem/short", topic_of("mem/long", 300)
    for t in (short, short, long_topic, long_topic):
        pub.publish(t, b"p")
    got = sub.recv_publishes(4)
    assert got[0].topic == short and m5.PROP_TOPIC_ALIAS in got[0].properties
    assert got[1].topic == "" and got[1].properties[m5.PROP_TOPIC_ALIAS] == got[0].properties[m5.PROP_TOPIC_ALIAS]
    for m in got[2:]:
        assert m.topic == long_topic and m5.PROP_TOPIC_ALIAS not in m.properties


# --------------------------------------------------------------------------------------------
# Client identifier length
# --------------------------------------------------------------------------------------------


@pytest.mark.broker_options(max_client_id_length_bytes=64)
def test_client_id_over_the_limit_refused_0x85(broker, clients):
    ok = clients.v5("i" * 64)
    long_id = clients.raw5()
    ack = long_id.connect("i" * 65, expect_rc=m5.RC_CLIENT_ID_NOT_VALID)
    assert ack.session_present is False
    long_id.expect_closed()
    ok.ping()
    assert "client id too long" in broker.log()


@pytest.mark.broker_options(max_client_id_length_bytes=64)
def test_client_id_over_the_limit_refused_0x02_in_3_1_1(clients):
    ok = clients.raw_connected("j" * 64)
    long_id = clients.raw()
    long_id.send(mp.connect("j" * 65))
    assert mp.decode_connack(long_id.recv_packet()).return_code == mp.CONNACK_IDENTIFIER_REJECTED
    long_id.expect_closed()
    ok.ping()


def test_the_default_client_id_limit_is_256_bytes(clients):
    clients.raw_connected("k" * 256)
    c = clients.raw()
    c.send(mp.connect("k" * 257))
    assert mp.decode_connack(c.recv_packet()).return_code == mp.CONNACK_IDENTIFIER_REJECTED


# --------------------------------------------------------------------------------------------
# Memory coming back
# --------------------------------------------------------------------------------------------


def assert_rounds_return(broker, clients, one_round, min_growth_kib: int) -> list:
    """Runs ``one_round`` (which connects clients, waits until the broker handled all they
    sent, and returns them) ROUNDS times; after each, the clients close and the RSS must come
    back to within RSS_RETURN_TOLERANCE_KIB of the start. Returns (peak, after) per round."""
    bystander = clients.raw_connected()
    start = rss_kib(broker.pid)
    seen = []
    for n in range(ROUNDS):
        round_clients = one_round(n)
        peak = rss_kib(broker.pid)
        assert peak - start >= min_growth_kib, (
            f"round {n}: RSS grew only {peak - start} KiB: the clients did not pin what they should")
        for c in round_clients:
            c.close()
        after = wait_rss_at_most(broker.pid, start + RSS_RETURN_TOLERANCE_KIB)
        seen.append((peak, after))
        bystander.ping()
    return seen


@pytest.mark.timeout(ROUNDS_TIMEOUT_S)
@pytest.mark.broker_options(max_topic_alias_bytes=1_000_000)
def test_memory_returns_after_rounds_of_clients_with_large_topic_aliases(broker, clients):
    """100 MQTT 5 connections, each mapping 10 topic aliases of 60 KB (60 MB in all), close;
    three rounds, and the RSS comes back each time instead of staying or growing."""
    def one_round(n):
        conns = []
        for i in range(100):
            c = clients.v5(f"alias-{n}-{i}")
            for a in range(1, 11):
                c.send(m5.publish(topic_of(f"mem/{n}/{i}/{a}", 60_000), b"x", properties=alias(a)))
            conns.append(c)
        for c in conns:
            sync(c)
        return conns

    assert_rounds_return(broker, clients, one_round, min_growth_kib=40 * 1024)


@pytest.mark.timeout(ROUNDS_TIMEOUT_S)
@pytest.mark.broker_options(max_client_id_length_bytes=65535)
def test_memory_returns_after_rounds_of_clients_with_long_client_ids(broker, clients):
    """500 clients with 64 KiB client ids (32 MB of sessions) connect and close; three
    rounds, and the RSS comes back each time."""
    def one_round(n):
        conns = []
        for i in range(500):
            c = clients.raw()
            c.send(mp.connect(f"id-{n}-{i}-".ljust(65535, "z")))
            conns.append(c)
        for c in conns:
            assert mp.decode_connack(c.recv_packet(timeout=30)).return_code == 0
        return conns

    assert_rounds_return(broker, clients, one_round, min_growth_kib=20 * 1024)
