"""Black-box MQTT 3.1.1 conformance suite: broker fixture and shared helpers.

Which broker runs is chosen by ``MQTT_BROKER``:

* ``starling`` (default): ``target/release/starling --listen 127.0.0.1:PORT [flags]``. At
  session start the binary is built with ``cargo build --release -p starling`` (cargo skips
  the work when nothing changed). ``STARLING_BIN=/path`` uses a given binary and skips the
  build; ``STARLING_SKIP_BUILD=1`` skips the build but still uses ``target/release/starling``.
  A missing binary or a failed build stops the run with a clear message (never a skip).
* ``mosquitto``: Debian's Mosquitto 2.0.x (the reference), run as ``mosquitto -c FILE`` with
  a generated config. ``MOSQUITTO_BIN`` overrides the path.

Each test gets its own broker on a free ephemeral loopback port (never 1883). Per-test limits
come from ``@pytest.mark.broker_options(max_inflight_messages=2, ...)`` with the names of
Starling's CLI flags (underscores for dashes). For Mosquitto they map to its config where it
has an equivalent; a test that needs an option Mosquitto cannot express must be marked
``@pytest.mark.starling_only`` (it is then skipped under Mosquitto).

``@pytest.mark.xfail_mosquitto("reason")`` marks a test as ``xfail(strict=True)`` under
Mosquitto only: used where Mosquitto deviates from the spec (or from Starling's stricter
contract), so the test still proves it asserts real behaviour.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients import PahoClient  # noqa: E402
from mqtt_packets import RawClient  # noqa: E402
from mqtt5_packets import Client5  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_KIND = os.environ.get("MQTT_BROKER", "starling").strip().lower() or "starling"
if BROKER_KIND not in ("starling", "mosquitto"):
    raise pytest.UsageError(f"MQTT_BROKER must be 'starling' or 'mosquitto', not {BROKER_KIND!r}")

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0

# Starling's CLI flags (the contract of the binary), by option name.
STARLING_OPTIONS = {
    "event_loops",
    "max_connections",
    "max_packet_size_bytes",
    "connect_timeout_ms",
    "partial_packet_timeout_ms",
    "max_inflight_messages",
    "max_queued_messages",
    "max_keep_alive_secs",
    # MQTT 5
    "topic_alias_maximum",
    "receive_maximum",
    # Slow subscribers and per-client rates
    "max_output_buffer_bytes",
    "max_publisher_hold_ms",
    "max_publish_rate_messages_per_sec",
    "max_publish_rate_bytes_per_sec",
    # What one connection may pin
    "max_topic_alias_bytes",
    "max_client_id_length_bytes",
    "max_subscriptions_per_client",
}
# Options Mosquitto can express: (config key, whether it goes in the listener block).
MOSQUITTO_EQUIVALENTS = {
    "max_inflight_messages": ("max_inflight_messages", False),
    "max_queued_messages": ("max_queued_messages", False),
    "max_packet_size_bytes": ("max_packet_size", False),
    "topic_alias_maximum": ("max_topic_alias", True),  # a per-listener option in Mosquitto
    # For v5 clients Mosquitto announces it as Server Keep Alive, as Starling does; 3.x
    # clients asking for more (or for none) Starling refuses with CONNACK 0x02, as Mosquitto
    # releases after 2.0.11 do (2.0.11 accepts them: those tests are xfail_mosquitto).
    "max_keep_alive_secs": ("max_keepalive", False),
}
# Not mapped on purpose: max_connections (Mosquitto 2.0.11's per-listener max_connections did
# not refuse a 4th client with a limit of 3 here, and would close rather than send CONNACK
# 0x03), connect_timeout_ms (no equivalent), receive_maximum (Mosquitto announces
# max_inflight_messages as its Receive Maximum: no separate inbound window).
# Options that change performance, not behaviour: ignored under Mosquitto.
MOSQUITTO_IGNORED = {"event_loops"}
# Mosquitto defaults made equal to Starling's defaults (broker/src/core/config.rs).
MOSQUITTO_DEFAULTS = {"max_inflight_messages": 20, "max_queued_messages": 1000}


def is_mosquitto() -> bool:
    return BROKER_KIND == "mosquitto"


# --------------------------------------------------------------------------------------------
# pytest hooks
# --------------------------------------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line("markers", "starling_only: needs a Starling limit Mosquitto cannot express")
    config.addinivalue_line("markers", "broker_options(**opts): per-test broker limits (Starling flag names)")
    config.addinivalue_line("markers", "xfail_mosquitto(reason): strict xfail under Mosquitto only")


def pytest_report_header(config):
    return f"MQTT broker under test: {BROKER_KIND}"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if is_mosquitto() and item.get_closest_marker("starling_only"):
            item.add_marker(pytest.mark.skip(reason="starling_only: Mosquitto has no equivalent limit"))
        mark = item.get_closest_marker("xfail_mosquitto")
        if mark and is_mosquitto():
            reason = mark.args[0] if mark.args else mark.kwargs.get("reason", "Mosquitto deviates")
            item.add_marker(pytest.mark.xfail(reason=f"Mosquitto: {reason}", strict=True))


_STARLING_BIN: Optional[Path] = None


def _starling_binary_path() -> Path:
    if os.environ.get("STARLING_BIN"):
        return Path(os.environ["STARLING_BIN"]).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "release" / "starling"


def pytest_sessionstart(session):
    """Builds Starling once per session (outside any test's timeout)."""
    global _STARLING_BIN
    if BROKER_KIND != "starling" or session.config.option.collectonly:
        return
    path = _starling_binary_path()
    if not os.environ.get("STARLING_BIN") and os.environ.get("STARLING_SKIP_BUILD") != "1":
        cargo = shutil.which("cargo")
        if cargo is None:
            pytest.exit("MQTT_BROKER=starling: cargo not found, cannot build the broker", returncode=1)
        print("\n[conftest] cargo build --release -p starling --bin starling", flush=True)
        proc = subprocess.run(
            [cargo, "build", "--release", "-p", "starling", "--bin", "starling"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-40:])
            pytest.exit(
                "MQTT_BROKER=starling but `cargo build --release -p starling --bin starling` failed "
                "(does broker/ have its binary yet? set MQTT_BROKER=mosquitto to run the suite "
                f"against the reference broker):\n{tail}",
                returncode=1,
            )
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.exit(f"MQTT_BROKER=starling: no executable broker binary at {path}", returncode=1)
    _STARLING_BIN = path


# --------------------------------------------------------------------------------------------
# Broker process
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago (never 1883)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port != 1883:
            return port


def _mosquitto_binary() -> str:
    explicit = os.environ.get("MOSQUITTO_BIN")
    if explicit:
        return explicit
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if not found:
        pytest.fail("MQTT_BROKER=mosquitto but the mosquitto binary is missing: run scripts/setup.sh")
    return found


class Broker:
    """A broker process on 127.0.0.1:port. ``log()`` returns everything it printed."""

    def __init__(self, kind: str, options: dict, workdir: Path):
        self.kind = kind
        self.host = HOST
        self.options = dict(options)
        self.workdir = workdir
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = workdir / "broker.log"
        self._log_file = None
        self.starts = 0

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list:
        if self.kind == "starling":
            cmd = [str(_STARLING_BIN), "--listen", f"{self.host}:{self.port}"]
            for key, value in sorted(self.options.items()):
                cmd += ["--" + key.replace("_", "-"), str(value)]
            return cmd
        conf = self.workdir / "mosquitto.conf"
        general = dict(MOSQUITTO_DEFAULTS)
        listener = {}
        for key, value in self.options.items():
            if key in MOSQUITTO_IGNORED:
                continue
            conf_key, in_listener = MOSQUITTO_EQUIVALENTS[key]
            (listener if in_listener else general)[conf_key] = value
        lines = [
            "persistence false",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # stay root: do not drop to the 'mosquitto' user
        lines += [f"{k} {v}" for k, v in general.items()]
        lines += [f"listener {self.port} {self.host}", "allow_anonymous true"]
        lines += [f"{k} {v}" for k, v in listener.items()]
        conf.write_text("\n".join(lines) + "\n")
        return [_mosquitto_binary(), "-c", str(conf)]

    def start(self) -> None:
        last_error = ""
        for attempt in range(3):
            if attempt:
                self.port = free_port()  # lost a race for the port: try another
            self._log_file = open(self.log_path, "ab")
            self._log_file.write(f"\n=== start {self.kind} on {self.address}\n".encode())
            self._log_file.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
            self.starts += 1
            if self._wait_ready():
                return
            last_error = self.log()[-3000:]
            self._kill()
        raise RuntimeError(f"{self.kind} did not start listening on {self.address}:\n{last_error}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _kill(self) -> None:
        """Stops the process by its pid: SIGTERM, then SIGKILL after 3 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        self._kill()

    def restart(self) -> None:
        """Stops the broker and starts it again on the same port (state without persistence is lost)."""
        self._kill()
        self.proc = None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the port can stay busy for a moment after the old process exits
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((self.host, self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=self.workdir,
        )
        self.starts += 1
        if not self._wait_ready():
            raise RuntimeError(f"{self.kind} did not restart on {self.address}:\n{self.log()[-3000:]}")

    def log(self) -> str:
        """Everything the broker has printed so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _broker_options(request) -> dict:
    options = {}
    for mark in reversed(list(request.node.iter_markers("broker_options"))):
        options.update(mark.kwargs)
    unknown = set(options) - STARLING_OPTIONS
    if unknown:
        pytest.fail(f"unknown broker option(s) {sorted(unknown)}; known: {sorted(STARLING_OPTIONS)}")
    if is_mosquitto():
        missing = set(options) - set(MOSQUITTO_EQUIVALENTS) - MOSQUITTO_IGNORED
        if missing:
            pytest.fail(
                f"broker option(s) {sorted(missing)} have no Mosquitto equivalent: "
                "mark the test @pytest.mark.starling_only"
            )
    return options


@pytest.fixture
def broker(request):
    """A fresh broker on a free loopback port for this test; killed by pid at teardown.

    Fails the test (at teardown) if the broker process died while the test ran.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"mqtt-{BROKER_KIND}-"))
    b = Broker(BROKER_KIND, _broker_options(request), workdir)
    b.start()
    try:
        yield b
    finally:
        died = not b.alive()
        code = b.proc.poll() if b.proc else None
        b.stop()
        log = b.log()
        shutil.rmtree(workdir, ignore_errors=True)
    if died:
        pytest.fail(f"the broker process exited during the test (code {code}); log tail:\n{log[-3000:]}")


# --------------------------------------------------------------------------------------------
# Client factories (closed before the broker is stopped)
# --------------------------------------------------------------------------------------------


class Clients:
    """Makes connected clients for one test and closes them all at teardown."""

    def __init__(self, broker: Broker):
        self.broker = broker
        self._open = []
        self._n = 0

    def unique_id(self, prefix: str = "c") -> str:
        self._n += 1
        return f"{prefix}-{os.getpid()}-{self._n}"

    def raw(self, timeout: float = 5.0) -> RawClient:
        """An unconnected RawClient (no CONNECT sent yet)."""
        c = RawClient(self.broker.host, self.broker.port, timeout=timeout)
        self._open.append(c)
        return c

    def raw_connected(self, client_id: Optional[str] = None, **kw) -> RawClient:
        """A RawClient that has sent CONNECT and received CONNACK 0."""
        c = self.raw()
        c.connect(self.unique_id("raw") if client_id is None else client_id, **kw)
        return c

    def raw5(self, timeout: float = 5.0) -> Client5:
        """An unconnected MQTT 5 raw client (no CONNECT sent yet)."""
        c = Client5(self.broker.host, self.broker.port, timeout=timeout)
        self._open.append(c)
        return c

    def v5(self, client_id: Optional[str] = None, **kw) -> Client5:
        """A Client5 that has sent a v5 CONNECT (``kw`` as for ``mqtt5_packets.connect``) and
        received CONNACK 0x00 (``expect_rc=`` to expect another reason code)."""
        c = self.raw5()
        c.connect(self.unique_id("v5") if client_id is None else client_id, **kw)
        return c

    def paho5(self, client_id: Optional[str] = None, connect: bool = True, **kw) -> PahoClient:
        """A paho-mqtt client speaking MQTT 5.0 (``kw`` as for ``PahoClient``)."""
        return self.paho(self.unique_id("paho5") if client_id is None else client_id, connect,
                         protocol=5, **kw)

    def paho(self, client_id: Optional[str] = None, connect: bool = True, **kw) -> PahoClient:
        c = PahoClient(self.broker.host, self.broker.port,
                       client_id=self.unique_id("paho") if client_id is None else client_id, **kw)
        self._open.append(c)
        if connect:
            c.connect()
        return c

    def close_all(self) -> None:
        for c in reversed(self._open):
            try:
                c.close()
            except Exception:
                pass
        self._open.clear()


@pytest.fixture
def clients(broker):
    c = Clients(broker)
    try:
        yield c
    finally:
        c.close_all()
