"""Seeing the broker: GET /metrics (checked by promtool), GET /healthz in each of its four
states, $SYS topics at a real client, and the memory scripts (scripts/mem-monitor.sh,
scripts/mem-plot) against a live broker.

Starling only (Mosquitto has $SYS but no HTTP endpoint). Each test starts its own broker with
``--metrics-listen 127.0.0.1:FREE_PORT`` and a 1 s ``--sys-interval-secs``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import mqtt5_packets as m5
import mqtt_packets as mp
from conftest import HOST, REPO_ROOT, Broker, Clients, free_port, is_mosquitto
from helpers import promtool_check, wait_until

pytestmark = [
    pytest.mark.starling_only,
    pytest.mark.skipif(is_mosquitto(), reason="Starling's own metrics endpoint"),
]

SCRIPTS = REPO_ROOT / "scripts"
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


class Monitored:
    """A Starling broker with its metrics endpoint on a free port, and clients for it."""

    def __init__(self, options: dict, workdir: Path):
        self.metrics_port = free_port()
        opts = {"metrics_listen": f"{HOST}:{self.metrics_port}", "sys_interval_secs": 1}
        opts.update(options)
        self.broker = Broker("starling", opts, workdir)
        self.broker.start()
        self.clients = Clients(self.broker)
        self._wait_endpoint()

    def _wait_endpoint(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.get("/healthz")
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"no metrics endpoint on port {self.metrics_port}:\n{self.broker.log()[-2000:]}")

    def get(self, path: str) -> tuple:
        """(status, body) of GET path."""
        url = f"http://{HOST}:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metrics(self) -> str:
        status, text = self.get("/metrics")
        assert status == 200, text
        return text

    def health(self) -> tuple:
        import json

        status, body = self.get("/healthz")
        return status, json.loads(body)

    def close(self) -> None:
        self.clients.close_all()
        self.broker.stop()


@pytest.fixture
def monitored(request):
    """A monitored broker; options from @pytest.mark.monitor_options(**flags)."""
    options = {}
    for mark in request.node.iter_markers("monitor_options"):
        options.update(mark.kwargs)
    workdir = Path(tempfile.mkdtemp(prefix="mqtt-monitor-"))
    m = Monitored(options, workdir)
    try:
        yield m
    finally:
        alive = m.broker.alive()
        log = m.broker.log()
        m.close()
        shutil.rmtree(workdir, ignore_errors=True)
    assert alive, f"the broker exited during the test:\n{log[-3000:]}"


def value(text: str, name: str, **labels) -> float:
    """The sample `name{labels}` of Prometheus text, summed over label sets that match."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total += float(m.group(3))
            seen = True
    assert seen, f"no sample {name}{labels} in /metrics"
    return total


# --------------------------------------------------------------------------------------------
# /metrics
# --------------------------------------------------------------------------------------------


@pytest.mark.monitor_options(event_loops=2, sys_interval_secs=0)  # no retained $SYS messages
def test_metrics_pass_promtool_and_move_with_clients_and_messages(monitored):
    before = monitored.metrics()
    promtool_check(before)
    assert value(before, "starling_connections") == 0
    assert value(before, "starling_pool_preheated_objects") > 0
    assert value(before, "starling_resident_memory_bytes") > 0
    bytes_in_before = value(before, "starling_received_bytes_total")

    sub = monitored.clients.paho()
    sub.subscribe("m/+", qos=1)
    pub = monitored.clients.paho()
    third = monitored.clients.paho()
    for i in range(5):
        pub.publish(f"m/{i}", b"x" * 10, qos=1)
    pub.publish("m/r", b"kept", qos=0, retain=True)
    sub.expect_messages(6)

    after = monitored.metrics()
    promtool_check(after)
    assert value(after, "starling_connections") == 3
    assert value(after, "starling_connections_accepted_total") >= 3
    assert value(after, "starling_sessions", state="online") == 3
    assert value(after, "starling_subscriptions") == 1
    assert value(after, "starling_retained_messages") == 1
    assert value(after, "starling_pool_active_objects") == 3  # summed over both loops
    assert value(after, "starling_packets_received_total", type="connect") == 3
    assert value(after, "starling_packets_received_total", type="subscribe") == 1
    assert value(after, "starling_packets_sent_total", type="suback") == 1
    assert value(after, "starling_messages_published_total", qos="1") == 5
    assert value(after, "starling_messages_published_total", qos="0") == 1
    assert value(after, "starling_messages_delivered_total", qos="1") == 5
    assert value(after, "starling_packets_sent_total", type="puback") == 5
    assert value(after, "starling_received_bytes_total") > bytes_in_before
    assert value(after, "starling_sent_bytes_total") > 0

    third.disconnect()
    wait_until(lambda: value(monitored.metrics(), "starling_connections") == 2, what="a client to leave")


@pytest.mark.monitor_options(max_connections=2, event_loops=1)
def test_refusals_are_counted_by_reason(monitored):
    monitored.clients.paho()
    monitored.clients.paho()
    monitored.clients.raw().connect("third", expect_rc=3)  # CONNACK 0x03: server unavailable
    text = monitored.metrics()
    assert value(text, "starling_connections_refused_total", reason="max_connections") == 1
    assert value(text, "starling_connections_refused_total") == 1


# --------------------------------------------------------------------------------------------
# /healthz
# --------------------------------------------------------------------------------------------


@pytest.mark.monitor_options(max_connections=20, event_loops=1)
def test_healthz_reports_each_of_the_four_states(monitored):
    # Degraded from 75 % of max_connections, overloaded from 90 %, unavailable at 100 %;
    # 200 while clients can still come, 503 once a balancer should stop sending.
    steps = [(0, "healthy", 200), (15, "degraded", 200), (18, "overloaded", 503), (20, "unavailable", 503)]
    connected = 0
    for target, state, code in steps:
        while connected < target:
            monitored.clients.paho()
            connected += 1
        status, report = monitored.health()
        assert (status, report["status"]) == (code, state), report
        assert report["active_connections"] == target
        assert report["max_connections"] == 20
        assert report["utilisation"] == pytest.approx(target / 20, abs=1e-3)
        assert state in report["message"]
    monitored.clients.raw().connect("one-too-many", expect_rc=3)
    status, report = monitored.health()
    assert report["refused_connections"] == 1
    assert 0 <= report["error_rate"] <= 1
    # The watcher (every second) logs every change; the jump 0 -> 15 may be seen as one.
    wait_until(lambda: "[HEALTH]" in monitored.broker.log() and "-> unavailable" in monitored.broker.log(),
               timeout=5, what="the health change to be logged")


@pytest.mark.monitor_options(event_loops=1)
def test_bad_http_requests_get_a_status_and_the_endpoint_survives(monitored):
    def raw(request: bytes) -> str:
        with socket.create_connection((HOST, monitored.metrics_port), timeout=5) as s:
            try:
                s.sendall(request)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server answered and closed before reading it all
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    assert raw(b"POST /metrics HTTP/1.1\r\n\r\n").startswith("HTTP/1.1 405")
    assert raw(b"GET /nothing HTTP/1.1\r\n\r\n").startswith("HTTP/1.1 404")
    assert raw(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n").startswith("HTTP/1.1 400")
    assert raw(b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n").startswith("HTTP/1.1 431")
    head = raw(b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert head.startswith("HTTP/1.1 200") and head.endswith("\r\n\r\n")  # no body
    status, _ = monitored.get("/healthz")
    assert status == 200
    monitored.clients.paho().publish("still/works", b"1", qos=1)


def listening_sockets(pid: int) -> int:
    """TCP sockets in LISTEN state held by process `pid` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", str(target))
        if m:
            inodes.add(m.group(1))
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                count += 1
    return count


@pytest.mark.parametrize("metrics_listen, expected", [("off", 1), ("auto", 2)])
def test_metrics_listen_off_serves_nothing(tmp_path, metrics_listen, expected):
    # One event loop: one MQTT listening socket, plus the endpoint's unless it is off.
    if metrics_listen == "auto":
        metrics_listen = f"{HOST}:{free_port()}"
    broker = Broker("starling", {"metrics_listen": metrics_listen, "event_loops": 1}, tmp_path)
    broker.start()
    try:
        wait_until(lambda: listening_sockets(broker.pid) == expected, timeout=5,
                   what=f"{expected} listening socket(s)")
        time.sleep(0.3)
        assert listening_sockets(broker.pid) == expected
        if expected == 1:
            assert "endpoint off" in broker.log()
    finally:
        broker.stop()


# --------------------------------------------------------------------------------------------
# The metrics token (monitoring.token_file)
# --------------------------------------------------------------------------------------------

METRICS_TOKEN = "Zm9vYmFy.metrics-token_0123456789~"


def get_with(monitored: Monitored, path: str, headers: dict) -> tuple:
    """(status, headers, body) of GET path with `headers`."""
    request = urllib.request.Request(f"http://{HOST}:{monitored.metrics_port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def test_metrics_token_is_required_for_metrics_not_for_healthz(tmp_path):
    token_file = tmp_path / "metrics-token"
    token_file.write_text(f"  {METRICS_TOKEN}\n")  # surrounding whitespace is trimmed
    m = Monitored({"event_loops": 1, "token_file": str(token_file)}, tmp_path)
    try:
        for headers in ({}, {"Authorization": f"Bearer {METRICS_TOKEN}x"},
                        {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"},
                        {"Authorization": f"Basic {METRICS_TOKEN}"}):
            status, got, body = get_with(m, "/metrics", headers)
            assert status == 401, (headers, status, body)
            assert got["WWW-Authenticate"].startswith("Bearer"), got
            assert "starling_" not in body
        status, _, body = get_with(m, "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200 and value(body, "starling_connections") == 0, body[:500]
        # Load balancers probe health without credentials.
        status, _ = m.get("/healthz")
        assert status == 200
        log = m.broker.log()
        assert "with the bearer token" in log and METRICS_TOKEN not in log
    finally:
        m.close()


@pytest.mark.parametrize("contents, why", [
    ("\n  \n", "is empty"),
    ("a" * 4097, "longer than 4096 bytes"),
    ("two words", "visible ASCII only"),
    (None, "cannot read the token file"),
], ids=["empty", "over-4-KiB", "space", "missing"])
def test_a_bad_token_file_is_refused_at_start_and_by_check_config(tmp_path, contents, why):
    token_file = tmp_path / "metrics-token"
    if contents is not None:
        token_file.write_text(contents)
    broker = Broker("starling", {"metrics_listen": f"{HOST}:{free_port()}",
                                 "token_file": str(token_file)}, tmp_path)
    started = subprocess.run(broker.command(), capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    assert started.returncode == 2, started.stdout + started.stderr
    assert "invalid configuration" in started.stderr and "monitoring.token_file" in started.stderr, started.stderr
    assert why in started.stderr, started.stderr
    config = tmp_path / "starling.toml"
    config.write_text(f"[monitoring]\ntoken_file = {str(token_file)!r}\n".replace("'", '"'))
    checked = subprocess.run([broker.command()[0], "--check-config", str(config)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 2 and why in checked.stderr, checked.stdout + checked.stderr
    assert f"{config}:2:1: key `monitoring.token_file`" in checked.stderr, checked.stderr


# --------------------------------------------------------------------------------------------
# $SYS
# --------------------------------------------------------------------------------------------


@pytest.mark.monitor_options(event_loops=2)
def test_sys_topics_reach_sys_subscribers_and_not_hash_subscribers(monitored):
    # Several $SYS subscribers, so that (client ids hash to loops) some sit on the loop that
    # does not publish $SYS: the messages reach them through the normal cross-loop routing.
    sys_subs = [monitored.clients.paho() for _ in range(6)]
    for s in sys_subs:
        s.subscribe("$SYS/#")
    everything = monitored.clients.paho()
    everything.subscribe("#")
    wanted = {
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/messages/received",
        "$SYS/broker/load/messages/received/1min",
        "$SYS/broker/pool/preheated",
        "$SYS/broker/pool/active",
    }
    for s in sys_subs:
        seen = {}
        deadline = time.monotonic() + 5
        while not wanted <= set(seen) and time.monotonic() < deadline:
            m = s.expect_message(timeout=max(0.1, deadline - time.monotonic()))
            assert m.topic.startswith("$SYS/broker/"), m.topic
            seen[m.topic] = m.payload.decode()
        assert wanted <= set(seen), sorted(wanted - set(seen))
        assert seen["$SYS/broker/version"].startswith("starling version ")
        assert re.fullmatch(r"\d+ seconds", seen["$SYS/broker/uptime"])
        int(seen["$SYS/broker/clients/connected"])  # the retained round may predate the clients
        assert int(seen["$SYS/broker/pool/preheated"]) > 0
    # `#` does not match topics beginning with `$` (MQTT-4.7.2-1), across 2 more rounds...
    everything.expect_no_message(timeout=2.5)
    # ...while it does get ordinary messages.
    monitored.clients.paho().publish("plain/topic", b"p", qos=1)
    assert everything.expect_message().topic == "plain/topic"
    # Retained: a late subscriber gets the last round at once.
    late = monitored.clients.paho()
    late.subscribe("$SYS/broker/clients/connected")
    assert int(late.expect_message(timeout=1).payload) >= 7  # the 7 subscribers above


@pytest.mark.monitor_options(event_loops=1, sys_interval_secs=0)
def test_sys_interval_zero_publishes_nothing(monitored):
    s = monitored.clients.paho()
    s.subscribe("$SYS/#")
    s.expect_no_message(timeout=2.5)


# --------------------------------------------------------------------------------------------
# scripts/mem-monitor.sh, scripts/mem-plot
# --------------------------------------------------------------------------------------------


def test_scripts_are_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: scripts/setup.sh installs it"
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    assert any(s.endswith("mem-monitor.sh") for s in scripts)
    proc = subprocess.run([shellcheck, "-x", *scripts], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.monitor_options(event_loops=2)
@pytest.mark.timeout(120)  # mem-plot imports matplotlib: slow on a busy machine
def test_mem_monitor_and_mem_plot_against_a_live_broker(monitored, tmp_path):
    csv_path = tmp_path / "mem.csv"
    png_path = tmp_path / "mem.png"
    monitor = subprocess.Popen(
        ["bash", str(SCRIPTS / "mem-monitor.sh"), "--pid", str(monitored.broker.pid),
         "--interval-secs", "0.3", "--samples", "12", "--output", str(csv_path),
         "--metrics-url", f"http://{HOST}:{monitored.metrics_port}/metrics"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # The first sample is taken before anyone connects (the script starts at its own pace).
    wait_until(lambda: csv_path.exists() and len(csv_path.read_text().splitlines()) >= 2,
               timeout=10, what="mem-monitor's first sample")
    for _ in range(5):
        monitored.clients.paho()
    out, err = monitor.communicate(timeout=30)
    assert monitor.returncode == 0, err
    lines = csv_path.read_text().splitlines()
    assert lines[0] == ("time_unix_s,elapsed_s,rss_bytes,peak_rss_bytes,connections,"
                        "pool_preheated_objects,pool_active_objects,pool_expansions")
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 12
    for row in rows:
        assert len(row) == 8 and all(cell != "" for cell in row), row
        assert int(row[2]) > 0 and int(row[3]) >= int(row[2])
    connections = [int(r[4]) for r in rows]
    assert connections[0] == 0 and connections[-1] == 5, connections
    assert int(rows[-1][5]) > 0 and int(rows[-1][6]) == 5

    proc = subprocess.run([str(VENV_PYTHON), str(SCRIPTS / "mem-plot"), str(csv_path), str(png_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000  # a real plot, not an empty canvas


def test_mem_monitor_refuses_a_missing_process():
    proc = subprocess.run(["bash", str(SCRIPTS / "mem-monitor.sh"), "--name", "no-such-broker-xyz"],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1 and "no process named" in proc.stderr


@pytest.mark.monitor_options(max_keep_alive_secs=20, event_loops=1)
def test_protocol_refusals_and_wrong_acks_are_counted_by_reason(monitored):
    """The refusals and closes the protocol rules add have their own reasons: a 3.x
    keep-alive over the cap (CONNACK 0x02), a v5 CONNACK that cannot fit the client's Maximum
    Packet Size (CONNACK 0x95), and an acknowledgement of the wrong kind (closed)."""
    clients = monitored.clients
    clients.raw().connect("long-keep-alive", keepalive=60, expect_rc=mp.CONNACK_IDENTIFIER_REJECTED)
    tiny = clients.raw5()
    tiny.send(m5.connect("tiny", properties={m5.PROP_MAXIMUM_PACKET_SIZE: 10}))
    assert m5.decode_connack(tiny.recv_packet()).reason_code == m5.RC_PACKET_TOO_LARGE
    sub = clients.raw()
    sub.connect("wrong-ack", keepalive=20)
    assert sub.subscribe([("metrics/wrong", 1)]) == [1]
    pub = clients.raw()
    pub.connect("publisher", keepalive=20)
    pub.publish("metrics/wrong", b"m", qos=1)
    sub.send(mp.pubcomp(sub.recv_publish().packet_id))
    sub.expect_closed(timeout=3)
    wait_until(lambda: value(monitored.metrics(), "starling_connections_closed_total", reason="wrong_ack") == 1,
               what="the wrong-kind acknowledgement to be counted")
    text = monitored.metrics()
    assert value(text, "starling_connections_refused_total", reason="keep_alive_over_cap") == 1
    assert value(text, "starling_connections_refused_total", reason="connack_too_large") == 1
    assert value(text, "starling_connections_refused_total", reason="protocol") == 0
