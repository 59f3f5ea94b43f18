"""Interoperability with real clients: Mosquitto's mosquitto_pub / mosquitto_sub (forced to
MQTT 3.1.1 with -V mqttv311) and paho-mqtt, against the broker under test."""

import os
import signal

import pytest

from mosquitto_clients import MosquittoSub, mosquitto_pub, subs, tools_present  # noqa: F401 (fixtures)
from mosquitto_clients import subscribed as _subscribed


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_to_mosquitto_sub(broker, clients, subs, qos):
    sub = subs(broker, "-t", "interop/q", "-q", "2", "-F", "%t|%q|%r|%p")
    _subscribed(sub, clients, "interop/q")
    mosquitto_pub(broker, "-t", "interop/q", "-q", str(qos), "-m", f"hello qos {qos}")
    assert sub.line() == f"interop/q|{qos}|0|hello qos {qos}".encode()


def test_retained_via_mosquitto_clients(broker, subs):
    mosquitto_pub(broker, "-t", "interop/retained", "-q", "1", "-r", "-m", "kept")
    sub = subs(broker, "-t", "interop/retained", "-q", "1", "-C", "1", "-W", "5", "-F", "%t|%q|%r|%p")
    assert sub.line() == b"interop/retained|1|1|kept"
    assert sub.wait_exit() == 0
    mosquitto_pub(broker, "-t", "interop/retained", "-r", "-n")  # clear (empty payload)
    sub = subs(broker, "-t", "interop/retained", "--retained-only", "-W", "1", "-F", "%t|%p")
    sub.wait_exit()
    assert sub.lines.empty()


def test_binary_file_payload(broker, clients, subs, tmp_path):
    payload = bytes(range(256)) * 400  # 100 KB, every byte value
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    sub = subs(broker, "-t", "interop/bin", "-q", "1", "-F", "%t|%x")
    _subscribed(sub, clients, "interop/bin")
    mosquitto_pub(broker, "-t", "interop/bin", "-q", "1", "-f", str(path))
    assert sub.line() == b"interop/bin|" + payload.hex().encode()


def test_line_mode_publishes_in_order(broker, clients, subs):
    sub = subs(broker, "-t", "interop/lines", "-q", "1", "-F", "%p")
    _subscribed(sub, clients, "interop/lines")
    lines = [f"line {i}" for i in range(50)]
    mosquitto_pub(broker, "-t", "interop/lines", "-q", "1", "-l",
                  input_bytes=("\n".join(lines) + "\n").encode())
    assert [sub.line().decode() for _ in lines] == lines


def test_persistent_session_with_mosquitto_sub(broker, subs):
    """-c -i: a persistent session subscribed, gone, then back for the queued QoS 1 message."""
    first = subs(broker, "-t", "interop/persist", "-q", "1", "-c", "-i", "interop-persist", "-E")
    assert first.wait_exit() == 0  # -E: exit once subscribed
    mosquitto_pub(broker, "-t", "interop/persist", "-q", "1", "-m", "while away")
    again = subs(broker, "-t", "interop/persist", "-q", "1", "-c", "-i", "interop-persist",
                 "-C", "1", "-W", "5", "-F", "%t|%q|%p")
    assert again.line() == b"interop/persist|1|while away"


def test_wildcard_subscription_with_mosquitto_sub(broker, clients, subs):
    sub = subs(broker, "-t", "interop/w/+/x", "-t", "interop/deep/#", "-F", "%p|%t")
    _subscribed(sub, clients, "interop/deep/ready")
    for topic in ("interop/w/a/x", "interop/w/a/y", "interop/deep/1/2/3", "interop/other"):
        mosquitto_pub(broker, "-t", topic, "-m", "m")
    mosquitto_pub(broker, "-t", "interop/deep/end", "-m", "m")
    got = []
    while not got or got[-1] != b"m|interop/deep/end":
        got.append(sub.line())
    assert got == [b"m|interop/w/a/x", b"m|interop/deep/1/2/3", b"m|interop/deep/end"]


def test_credentials_accepted(broker, subs):
    mosquitto_pub(broker, "-t", "interop/creds", "-u", "alice", "-P", "secret", "-m", "x", "-r")
    sub = subs(broker, "-t", "interop/creds", "-u", "bob", "-C", "1", "-W", "5", "-F", "%p")
    assert sub.line() == b"x"


def test_will_from_mosquitto_sub_on_kill(broker, clients, subs):
    watcher = clients.paho()
    watcher.subscribe("interop/will", 1)
    victim = subs(broker, "-t", "interop/victim", "-i", "interop-victim", "--will-topic",
                  "interop/will", "--will-payload", "victim died", "--will-qos", "1")
    _subscribed(victim, clients, "interop/victim")
    os.kill(victim.proc.pid, signal.SIGKILL)  # no DISCONNECT
    victim.proc.wait(timeout=5)
    m = watcher.expect_message()
    assert (m.topic, m.payload, m.qos) == ("interop/will", b"victim died", 1)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_to_mosquitto_sub(broker, clients, subs, qos):
    sub = subs(broker, "-t", "interop/paho", "-q", "2", "-F", "%q|%p")
    _subscribed(sub, clients, "interop/paho")
    pub = clients.paho()
    pub.publish("interop/paho", f"paho {qos}".encode(), qos=qos)
    assert sub.line() == f"{qos}|paho {qos}".encode()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_to_paho(broker, clients, qos):
    sub = clients.paho()
    sub.subscribe("interop/to-paho", 2)
    mosquitto_pub(broker, "-t", "interop/to-paho", "-q", str(qos), "-m", "to paho")
    m = sub.expect_message()
    assert (m.payload, m.qos) == (b"to paho", qos)
