"""Assertions shared by the test modules."""

from __future__ import annotations

import re
import select
import time

from mqtt_packets import RawClient


def assert_healthy(broker, topic: str = "health/check") -> None:
    """A fresh pair of clients can still connect, subscribe and exchange a QoS 1 message."""
    sub = RawClient(broker.host, broker.port)
    pub = RawClient(broker.host, broker.port)
    try:
        sub.connect(f"health-sub-{time.monotonic_ns()}")
        assert sub.subscribe([(topic, 1)]) == [1]
        pub.connect(f"health-pub-{time.monotonic_ns()}")
        pub.publish(topic, b"alive", qos=1)
        msg = sub.recv_publish(ack=True)
        assert (msg.topic, msg.payload) == (topic, b"alive")
    finally:
        sub.disconnect()
        pub.disconnect()


def publishes_before_sentinel(pub: RawClient, sub: RawClient, topic: str, qos: int = 0,
                              timeout: float = 5.0, ack: bool = True) -> list:
    """Barrier for negative assertions without long sleeps.

    ``pub`` publishes a sentinel on ``topic`` (to which ``sub`` is subscribed); returns every
    PUBLISH ``sub`` received before the sentinel. The broker forwards one client's messages
    to a subscriber in order (MQTT-4.6.0-6), so anything routed before the sentinel has
    arrived by then.
    """
    marker = f"sentinel-{time.monotonic_ns()}".encode()
    pub.publish(topic, marker, qos=qos)
    before = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"sentinel on {topic!r} never arrived; got {before!r}")
        msg = sub.recv_publish(left, ack=ack)  # RawClient (3.1.1) or Client5 (5.0) decoding
        if msg.topic == topic and msg.payload == marker:
            return before
        before.append(msg)


def wait_for_log(broker, *texts: str, timeout: float = 5.0) -> str:
    """Polls the broker's log until it contains every one of ``texts``; returns the log."""
    deadline = time.monotonic() + timeout
    while True:
        log = broker.log()
        if all(t in log for t in texts):
            return log
        if time.monotonic() > deadline:
            missing = [t for t in texts if t not in log]
            raise AssertionError(f"broker log lacks {missing}:\n{log[-3000:]}")
        time.sleep(0.05)
def closed_within(client: RawClient, timeout: float) -> bool:
    """Whether the server closes ``client`` within ``timeout`` (no packet may come first)."""
    ready, _, _ = select.select([client.sock], [], [], timeout)
    if not ready:
        return False
    try:
        data = client.sock.recv(1024)
    except (ConnectionResetError, ConnectionAbortedError):
        return True
    assert data == b"", f"expected a close, got {data!r}"
    return True


def stalled_s(broker) -> float:
    """Seconds Starling's event loops reported they did not run (``stalled_ms=`` in its log;
    0 for other brokers). Deadlines are pushed back by that time, so a test bounding when a
    deadline closes a client allows for it on a host too busy to schedule the broker."""
    return sum(int(ms) for ms in re.findall(r"stalled_ms=(\d+)", broker.log())) / 1000


def close_time(client: RawClient, broker, limit: float) -> float:
    """Seconds until the server closes ``client``, failing past ``limit`` plus whatever time
    the broker reported it did not run."""
    start = time.monotonic()
    while not closed_within(client, 0.1):
        waited = time.monotonic() - start
        assert waited < limit + stalled_s(broker), (
            f"server did not close the connection within {limit:.1f}s (+{stalled_s(broker):.1f}s stalled)")
    return time.monotonic() - start


# --------------------------------------------------------------------------------------------
# Brokers started from a configuration file (access-control tests)
# --------------------------------------------------------------------------------------------

import os as _os  # noqa: E402
import shutil as _shutil  # noqa: E402
import signal as _signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile as _tempfile  # noqa: E402
import json as _json  # noqa: E402
import urllib.error as _urlerror  # noqa: E402
import urllib.request as _urlrequest  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

import pytest as _pytest  # noqa: E402

from conftest import BROKER_KIND, Broker, Clients, free_port  # noqa: E402


class ConfiguredBroker(Broker):
    """A broker started from a configuration file instead of flags: Starling's TOML
    (``--config``) or a generated ``mosquitto.conf``, with the access keys of each listener.

    ``listeners``: one dict per listener with any of ``acl_file``, ``password_file``,
    ``allow_anonymous`` (a listener's own keys; Mosquitto gets ``per_listener_settings true``
    when there are several). ``access``: the same keys for every listener (Starling's
    ``[auth]``, Mosquitto's global keys). ``sys_interval``: seconds between ``$SYS`` rounds.
    ``port`` is the first listener's; ``ports`` all of them. ``metrics()`` (Starling) reads
    GET /metrics.
    """

    def __init__(self, kind: str, workdir: _Path, listeners=None, access=None, sys_interval: int = 1,
                 event_loops=None, limits=None):
        super().__init__(kind, {}, workdir)
        self.event_loops = event_loops  # Starling's [server] event_loops (Mosquitto has one)
        self.limits = dict(limits or {})  # Starling's [limits] (Starling only)
        self.listener_access = [dict(x) for x in (listeners or [{}])]
        self.access = dict(access or {})
        self.sys_interval = sys_interval
        self.ports = [self.port] + [free_port() for _ in self.listener_access[1:]]
        self.metrics_port = free_port()
        self.serves_metrics = True  # a subclass whose configuration turns metrics off says so

    def command(self) -> list:
        if self.port != self.ports[0]:  # Broker.start() lost a race for a port: new ports all
            self.ports = [self.port] + [free_port() for _ in self.ports[1:]]
            self.metrics_port = free_port()
        if self.kind == "starling":
            conf = self.workdir / "starling.toml"
            conf.write_text(self._starling_toml())
            return [str(_starling_bin()), "--config", str(conf)]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self._mosquitto_conf())
        return [_mosquitto_bin(), "-c", str(conf)]

    @staticmethod
    def _toml_value(value) -> str:
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(ConfiguredBroker._toml_value(v) for v in value) + "]"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def _starling_toml(self) -> str:
        lines = ["[server]", f"event_loops = {self.event_loops}", ""] if self.event_loops else []
        for port, own in zip(self.ports, self.listener_access):
            protocol = own.get("protocol", "tcp")
            lines += ["[[listeners]]", f'protocol = "{protocol}"', f'bind = "{self.host}:{port}"']
            lines += [f"{k} = {self._toml_value(v)}" for k, v in own.items() if k != "protocol"]
            lines.append("")
        if self.limits:
            lines.append("[limits]")
            lines += [f"{k} = {self._toml_value(v)}" for k, v in self.limits.items()]
            lines.append("")
        lines.append("[auth]")
        lines += [f"{k} = {self._toml_value(v)}" for k, v in self.access.items()]
        lines += ["", "[monitoring]", f'metrics_listen = "{self.host}:{self.metrics_port}"',
                  f"sys_interval_secs = {self.sys_interval}", ""]
        return "\n".join(lines)

    def _mosquitto_conf(self) -> str:
        assert not self.limits, "[limits] is Starling's"
        per_listener = len(self.ports) > 1
        lines = [
            # A log file (flushed per line, unlike stdout) so that log() sees a reload at once.
            "persistence false", f"log_dest file {self.log_path}", "log_type all",
            "connection_messages true",
            f"sys_interval {self.sys_interval}",
            f"per_listener_settings {'true' if per_listener else 'false'}",
        ]
        if _os.geteuid() == 0:
            lines.append("user root")

        def keys(d: dict) -> list:
            d = dict(d)
            if "allow_anonymous" not in d:  # Starling's default: open without a password file
                d["allow_anonymous"] = "password_file" not in d
            return [f"{k} {str(v).lower() if isinstance(v, bool) else v}" for k, v in d.items()]

        if not per_listener:
            lines += keys(self.access)
        for port, own in zip(self.ports, self.listener_access):
            lines.append(f"listener {port} {self.host}")
            lines += _mosquitto_transport(own)
            own = {k: v for k, v in own.items() if k not in TRANSPORT_KEYS}
            if per_listener:
                lines += keys({**self.access, **own})
            else:
                assert not own, "Mosquitto: a listener's own access keys need several listeners"
        return "\n".join(lines) + "\n"

    def _wait_ready(self) -> bool:
        if not super()._wait_ready():
            return False
        # Starling's metrics endpoint too: it is bound beside the listeners, and a test may
        # read /metrics first thing (a port taken meanwhile fails the start, retried on others).
        extra = [self.metrics_port] if self.kind == "starling" and self.serves_metrics else []
        for port in self.ports[1:] + extra:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection((self.host, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        return False
                    time.sleep(0.02)
        return True

    def reload(self) -> None:
        """SIGHUP: both brokers re-read their configuration and ACL files."""
        _os.kill(self.proc.pid, _signal.SIGHUP)

    def metrics(self) -> str:
        """GET /metrics (Starling only)."""
        status, text = http_get(self.host, self.metrics_port, "/metrics")
        assert status == 200, f"GET /metrics: {status} {text}"
        return text

    def health(self) -> dict:
        """GET /healthz (Starling only), decoded; its HTTP status under ``http_status``."""
        status, text = http_get(self.host, self.metrics_port, "/healthz")
        return {**_json.loads(text), "http_status": status}


def http_get(host: str, port: int, path: str) -> tuple:
    """(HTTP status, body) of GET ``path``; an error status is returned, not raised."""
    try:
        with _urlrequest.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except _urlerror.HTTPError as error:
        return error.code, error.read().decode()


#: A listener's transport keys (Starling's names); the other keys of a listener are access keys.
TRANSPORT_KEYS = {"protocol", "cert_file", "key_file", "ca_file", "require_certificate",
                  "use_identity_as_username", "ws_path", "ws_allowed_origins", "ws_max_frame_bytes"}


def _mosquitto_transport(own: dict) -> list:
    """A listener's transport keys in mosquitto.conf: TLS files and ``protocol websockets``."""
    lines = []
    if own.get("protocol") in ("ws", "wss"):
        lines.append("protocol websockets")
    for ours, theirs in [("cert_file", "certfile"), ("key_file", "keyfile"), ("ca_file", "cafile")]:
        if ours in own:
            lines.append(f"{theirs} {own[ours]}")
    for key in ("require_certificate", "use_identity_as_username"):
        if key in own:
            lines.append(f"{key} {str(own[key]).lower()}")
    return lines


def _starling_bin():
    import conftest
    return conftest._STARLING_BIN or conftest._starling_binary_path()


def _mosquitto_bin() -> str:
    import conftest
    return conftest._mosquitto_binary()


def metric_value(text: str, name: str, **labels) -> float:
    """The sample ``name{labels}`` of Prometheus text, summed over the label sets that match
    (0 when there is none)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total += float(m.group(3))
    return total


def promtool_check(text: str) -> None:
    """Prometheus's own linter passes ``text`` (a GET /metrics)."""
    promtool = _shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup.sh installs the Debian package prometheus"
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"promtool check metrics failed:\n{proc.stdout}\n{proc.stderr}"


def wait_until(predicate, timeout: float = 5.0, what: str = "condition"):
    """Polls ``predicate`` until it returns something true (returned), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class ConfiguredEnv:
    """What the ``configured`` fixture yields: writes files into a temporary directory and
    starts brokers from them; every broker and client is closed at teardown."""

    def __init__(self, workdir: _Path):
        self.workdir = workdir
        self.brokers = []
        self._clients = []

    def file(self, name: str, text: str) -> str:
        path = self.workdir / name
        path.write_text(text)
        return str(path)

    def passwords(self, name: str, users: dict) -> str:
        """A password file written by ``mosquitto_passwd -b`` (``$7$`` hashes)."""
        path = self.workdir / name
        path.write_text("")
        for user, password in users.items():
            proc = subprocess.run(["mosquitto_passwd", "-b", str(path), user, password],
                                  capture_output=True, text=True, timeout=30)
            assert proc.returncode == 0, proc.stderr
        return str(path)

    def start(self, listeners=None, sys_interval: int = 1, event_loops=None, limits=None, **access):
        """A broker whose listeners get ``access`` (acl_file=, password_file=,
        allow_anonymous=) and their own keys from ``listeners``; returns ``(broker, clients)``.
        ``event_loops=1``: one Starling event loop, so that messages from different
        connections reach a subscriber in the order the broker handled them. ``limits``:
        Starling's ``[limits]`` keys."""
        b = ConfiguredBroker(BROKER_KIND, self.workdir, listeners=listeners, access=access,
                             sys_interval=sys_interval, event_loops=event_loops, limits=limits)
        b.start()
        self.brokers.append(b)
        c = Clients(b)
        self._clients.append(c)
        return b, c


@_pytest.fixture
def configured():
    """Starts brokers from configuration files (``ConfiguredEnv``); fails the test if one of
    them died during it."""
    workdir = _Path(_tempfile.mkdtemp(prefix=f"mqtt-{BROKER_KIND}-conf-"))
    env = ConfiguredEnv(workdir)
    try:
        yield env
    finally:
        for c in env._clients:
            c.close_all()
        dead = [(b.proc.poll(), b.log()) for b in env.brokers if not b.alive()]
        for b in env.brokers:
            b.stop()
        _shutil.rmtree(workdir, ignore_errors=True)
    if dead:
        code, log = dead[0]
        _pytest.fail(f"a broker exited during the test (code {code}); log tail:\n{log[-3000:]}")


_routed_n = 0


def routed(pub, sub, topic: str, sync: str, qos: int = 1) -> bool:
    """Whether a message ``pub`` publishes to ``topic`` reaches ``sub`` (a RawClient or
    Client5 subscribed to ``topic`` and to ``sync``): ``pub`` then publishes a sentinel on
    ``sync``, which ``pub`` may write and ``sub`` may read; anything routed arrives before it."""
    global _routed_n
    _routed_n += 1
    payload = f"probe-{_routed_n}-{time.monotonic_ns()}".encode()
    pub.publish(topic, payload, qos=qos)
    got = publishes_before_sentinel(pub, sub, sync, qos=qos, ack=True)
    return any(m.topic == topic and m.payload == payload for m in got)


# --------------------------------------------------------------------------------------------
# Brokers that keep their state across restarts (crash tests)
# --------------------------------------------------------------------------------------------


class PersistentBroker(ConfiguredBroker):
    """A broker whose state lives in ``store_dir`` (under ``workdir``) across restarts on the
    same port, for crash tests (``crash_harness.py``).

    ``persistence``: Starling's ``[persistence]`` keys (``mode``, ``flush_interval_ms``;
    ``path`` is always ``store_dir``), or None for no section at all (the broker's default:
    nothing kept). ``mosquitto_options``: extra ``mosquitto.conf`` lines (``autosave_interval
    1``, ``autosave_on_changes true``); Mosquitto gets ``persistence true`` and
    ``persistence_location store_dir/`` whenever ``persistence`` is not None (its
    ``autosave_interval`` left at the default, 1800 s, unless given). ``queue_limit``: the
    messages one offline client may have queued, on both brokers (Starling's
    ``[limits] max_queued_messages``, with no byte limit; Mosquitto's ``max_queued_messages``),
    so that a crash test's offline subscribers measure durability, not a queue cap.
    ``store_dir``: another directory (a second broker on the same store); ``limits``: more
    of Starling's ``[limits]`` keys.
    """

    def __init__(self, kind: str, workdir: _Path, persistence=None, mosquitto_options=(),
                 queue_limit: int = 100_000, event_loops=None, store_dir=None, limits=None):
        limits = {"max_queued_messages": queue_limit, "max_queued_bytes": 0, **(limits or {})}
        super().__init__(kind, workdir, event_loops=event_loops,
                         limits=limits if kind == "starling" else None)
        workdir.mkdir(parents=True, exist_ok=True)
        self.store_dir = _Path(store_dir) if store_dir is not None else workdir / "store"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.persistence = None if persistence is None else dict(persistence)
        self.mosquitto_options = list(mosquitto_options)
        self.queue_limit = queue_limit

    def _starling_toml(self) -> str:
        text = super()._starling_toml()
        if self.persistence is None:
            return text
        keys = {**self.persistence, "path": str(self.store_dir)}
        return text + "\n".join(["", "[persistence]"] + [f"{k} = {self._toml_value(v)}"
                                                          for k, v in keys.items()]) + "\n"

    def _mosquitto_conf(self) -> str:
        lines = [f"log_dest file {self.log_path}", "log_type all", "connection_messages true",
                 f"max_queued_messages {self.queue_limit}", "allow_anonymous true"]
        if self.persistence is None:
            lines.append("persistence false")
        else:
            lines += ["persistence true", f"persistence_location {self.store_dir}/"]
        lines += self.mosquitto_options
        if _os.geteuid() == 0:
            lines.append("user root")  # stay root: the store directory is ours
        lines.append(f"listener {self.port} {self.host}")
        return "\n".join(lines) + "\n"

    def check_config(self) -> str:
        """Starling: ``--check-config`` on the file this broker would start with; fails with
        the broker's own message when it refuses it (e.g. a build without ``[persistence]``)."""
        if self.kind != "starling":
            return ""
        conf = self.workdir / "starling.toml"
        conf.write_text(self._starling_toml())
        proc = subprocess.run([str(_starling_bin()), "--check-config", str(conf)],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"starling --check-config refused {conf}:\n"
                                 f"{conf.read_text()}\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    @property
    def store_file(self) -> _Path:
        """Starling's store file in ``store_dir``."""
        return self.store_dir / "starling.redb"

    def start_refused(self, timeout: float = 30.0) -> tuple:
        """Starling: starts the broker where it must refuse to start (a damaged or locked
        store): waits for the process to exit; returns (exit code, what it printed). Fails
        (the broker stopped) if it logs that it is listening instead (it binds its ports
        before it opens the store: an open port says nothing), or still runs after
        ``timeout``."""
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n=== start (to be refused) {self.kind} on {self.address}\n".encode())
        self._log_file.flush()
        start = len(self.log())
        self.proc = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            started = " listening addr=" in self.log()[start:]
            if started or time.monotonic() > deadline:
                self._kill()
                what = "started" if started else f"still runs {timeout}s after a start"
                raise AssertionError(f"{self.kind} {what} where it must refuse to start:\n"
                                     f"{self.log()[start:][-3000:]}")
            time.sleep(0.02)
        code = self.proc.returncode
        self._kill()
        return code, self.log()[start:]

    def crash(self) -> None:
        """SIGKILL by pid, and waits for the process to be gone (nothing is flushed)."""
        _os.kill(self.proc.pid, _signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM by pid and waits for a clean exit; fails (after a SIGKILL) if the broker
        does not exit within ``timeout``, or exits with an error."""
        _os.kill(self.proc.pid, _signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.crash()
            raise AssertionError(f"{self.kind} did not exit within {timeout}s of SIGTERM")
        if code != 0:
            raise AssertionError(f"{self.kind} exited with {code} after SIGTERM:\n{self.log()[-3000:]}")
