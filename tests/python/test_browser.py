"""MQTT over WebSocket from a real browser: MQTT.js (npm ``mqtt``) in headless Chromium.

``tests/browser/page.html`` loads MQTT.js's browser bundle; ``tests/browser/run.mjs`` drives
Debian's ``/usr/bin/chromium`` through playwright-core (one browser for this module, a new
page per scenario). The page is served by a local HTTP server on 127.0.0.1 (a thread here);
the broker has a plain TCP listener for the native client (paho) and a ``ws://`` and a
``wss://`` listener (path ``/mqtt``). For ``wss://`` a CA and a server certificate (SANs
127.0.0.1 and localhost) are made with ``openssl`` in a temporary directory, and the CA is
trusted by Chromium through an NSS database in the ``$HOME`` it runs with (``certutil``), so
the browser really verifies the chain and the name.

Both directions, both schemes: the browser subscribes and receives, in order, what paho
publishes at QoS 0 and 1 (one payload above 64 KiB, so the WebSocket frame needs the 64-bit
length, and one multi-byte UTF-8 payload); paho subscribes and receives what the browser
publishes. Every wait is on an event (CONNACK, SUBACK, PUBACK, a message), bounded.

Mosquitto 2.0.11 needs its WebSocket listeners bound to an interface name (``lo``): given
an IP address they listen on every address.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BROKER_KIND, REPO_ROOT, Clients
from helpers import ConfiguredBroker

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
CHROMIUM = "/usr/bin/chromium"
WS_PATH = "/mqtt"
SCENARIO_TIMEOUT_MS = 10_000
LAUNCH_TIMEOUT_S = 60.0  # Chromium's first start on a busy 2-core machine

# One browser serves the module; its start-up is paid by the first test.
pytestmark = pytest.mark.timeout(90)

# What the publisher sends, in order: QoS 0 and 1 interleaved, a payload above 64 KiB (a
# WebSocket frame with the 64-bit length) and multi-byte UTF-8.
MESSAGES = [
    ("zero", 0),
    ("one", 1),
    ("grüße ✓ 🚀", 1),
    ("x" * 70_000, 0),
    ("last", 1),
]


# --------------------------------------------------------------------------------------------
# Certificates, the page server, the browser
# --------------------------------------------------------------------------------------------


def _run(cmd: list, cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A CA, a server certificate it signed (SANs 127.0.0.1 and localhost) with its key, and
    a ``home`` whose NSS database (``.pki/nssdb``, what Chromium reads on Linux) trusts the
    CA. Made here with openssl: no key is ever committed."""
    for tool in ("openssl", "certutil"):
        assert shutil.which(tool), f"{tool} is missing: scripts/setup.sh installs it"
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
          "-subj", "/CN=Starling browser test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    _run(["openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
          "-subj", "/CN=localhost"], d)
    (d / "server.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt"], d)
    nssdb = d / "home" / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    _run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], d)
    _run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "starling-test-ca",
          "-i", "ca.crt"], d)
    return {"cert": d / "server.crt", "key": d / "server.key", "home": d / "home"}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def page_url():
    """tests/browser over HTTP on 127.0.0.1 and an ephemeral port (a thread); the page's URL."""
    handler = functools.partial(_QuietHandler, directory=str(BROWSER_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="page-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/page.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class BrowserDriver:
    """``node run.mjs PAGE_URL``: one Chromium, a scenario per line on its standard input and
    its events as JSON lines on its standard output (read by a thread into a queue)."""

    def __init__(self, page_url: str, home: Path, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            ["node", str(BROWSER_DIR / "run.mjs"), page_url],
            cwd=BROWSER_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            text=True, env={**os.environ, "HOME": str(home)},
        )
        self.lines: "queue.Queue" = queue.Queue()
        threading.Thread(target=self._read, name="run.mjs-stdout", daemon=True).start()
        started = time.monotonic()
        self.info = self._next({"browser"}, LAUNCH_TIMEOUT_S)
        self.launch_s = time.monotonic() - started

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _stderr(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def _next(self, events: set, timeout: float, scenario_id=None) -> dict:
        """The next line of one of ``events`` (of scenario ``scenario_id``, when given: a late
        line of an earlier scenario that failed on this side is passed over)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"run.mjs: no {sorted(events)} within {timeout:.0f}s; "
                                     f"stderr:\n{self._stderr()}") from None
            if line is None:
                raise AssertionError(f"run.mjs exited ({self.proc.wait(timeout=10)}); "
                                     f"stderr:\n{self._stderr()}")
            msg = json.loads(line)
            if msg["event"] == "error":
                raise AssertionError(f"run.mjs: {msg['error']}; stderr:\n{self._stderr()}")
            if msg["event"] in events and scenario_id in (None, msg.get("id")):
                return msg

    def run(self, scenario: dict, on_ready=None) -> dict:
        """Runs ``scenario`` in a new page; ``on_ready`` is called once the page's client is
        connected (and subscribed). Returns the result line."""
        scenario = {"timeoutMs": SCENARIO_TIMEOUT_MS, **scenario}
        self.proc.stdin.write(json.dumps(scenario) + "\n")
        self.proc.stdin.flush()
        bound = 3 * scenario["timeoutMs"] / 1000 + 10  # run.mjs bounds each of its 3 steps
        msg = self._next({"ready", "result"}, bound, scenario["id"])
        if msg["event"] == "ready":
            if on_ready is not None:
                on_ready(msg)
            msg = self._next({"result"}, bound, scenario["id"])
        return msg

    def close(self) -> None:
        """EOF on its standard input ends run.mjs (and its Chromium); killed by pid if not."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()


@pytest.fixture(scope="module")
def browser(page_url, tls, tmp_path_factory):
    for path, what in ((CHROMIUM, "the Debian package chromium"),
                       (BROWSER_DIR / "node_modules" / "mqtt" / "dist" / "mqtt.min.js", "npm ci"),
                       (BROWSER_DIR / "node_modules" / "playwright-core", "npm ci")):
        assert os.path.exists(path), f"{path} is missing: scripts/setup.sh installs it ({what})"
    assert shutil.which("node"), "node is missing: scripts/setup.sh installs nodejs"
    driver = BrowserDriver(page_url, tls["home"], tmp_path_factory.mktemp("browser") / "run.log")
    print(f"\n[browser] Chromium {driver.info['version']} up in {driver.launch_s:.1f}s")
    try:
        yield driver
    finally:
        driver.close()


# --------------------------------------------------------------------------------------------
# The broker: tcp (ports[0]), ws (ports[1]) and wss (ports[2]) listeners
# --------------------------------------------------------------------------------------------


class WebSocketBroker(ConfiguredBroker):
    """A broker with a plain TCP listener for the native clients and a ``ws://`` and a
    ``wss://`` one on the path ``/mqtt``."""

    def __init__(self, kind: str, workdir: Path, cert: Path, key: Path):
        super().__init__(kind, workdir, listeners=[{}, {}, {}])
        self.serves_metrics = False  # metrics_listen = "off" below
        self.cert, self.key = cert, key

    def url(self, scheme: str) -> str:
        return f"{scheme}://{self.host}:{self.ports[1 if scheme == 'ws' else 2]}{WS_PATH}"

    def _starling_toml(self) -> str:
        tcp, ws, wss = self.ports
        q = self._toml_value
        return "\n".join([
            "[[listeners]]", 'protocol = "tcp"', f"bind = {q(f'{self.host}:{tcp}')}", "",
            "[[listeners]]", 'protocol = "ws"', f"bind = {q(f'{self.host}:{ws}')}",
            f"ws_path = {q(WS_PATH)}", "",
            # ws_path left to its default, /mqtt
            "[[listeners]]", 'protocol = "wss"', f"bind = {q(f'{self.host}:{wss}')}",
            f"cert_file = {q(self.cert)}", f"key_file = {q(self.key)}", "",
            "[monitoring]", 'metrics_listen = "off"', "",
        ])

    def _mosquitto_conf(self) -> str:
        tcp, ws, wss = self.ports
        lines = ["persistence false", f"log_dest file {self.log_path}", "log_type all",
                 "connection_messages true", "allow_anonymous true"]
        if os.geteuid() == 0:
            lines.append("user root")
        # 2.0.11's WebSocket listeners (libwebsockets) bind every address when given an IP
        # address, and loopback only when given the interface's name. Any URL path is served.
        lines += [f"listener {tcp} {self.host}",
                  f"listener {ws} lo", "protocol websockets",
                  f"listener {wss} lo", "protocol websockets",
                  f"certfile {self.cert}", f"keyfile {self.key}"]
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def ws_support(tls, tmp_path_factory):
    """Starts the broker once with its ws and wss listeners, before Chromium starts, so that
    a broker that cannot serve them fails the module at once."""
    b = WebSocketBroker(BROKER_KIND, tmp_path_factory.mktemp("probe"), tls["cert"], tls["key"])
    b.start()
    b.stop()


@pytest.fixture
def ws_broker(ws_support, tls, tmp_path):
    """The broker (``WebSocketBroker``) and a ``Clients`` for its TCP listener."""
    b = WebSocketBroker(BROKER_KIND, tmp_path, tls["cert"], tls["key"])
    b.start()
    clients = Clients(b)
    try:
        yield b, clients
    finally:
        clients.close_all()
        died = not b.alive()
        b.stop()
    if died:
        pytest.fail(f"the broker exited during the test; log tail:\n{b.log()[-3000:]}")


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def _short(messages: list) -> list:
    """(topic, payload, qos) with long payloads cut, for readable assertion messages."""
    return [(t, p if len(p) <= 40 else f"{p[:20]}...({len(p)} chars)", q) for t, p, q in messages]


def _seen(result: dict) -> list:
    return [(m["topic"], m["payload"], m["qos"]) for m in result["received"]]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_browser_receives_what_a_tcp_client_publishes(ws_broker, browser, scheme):
    broker, clients = ws_broker
    topic = f"browser/{scheme}/down"
    publisher = clients.paho()
    expected = [(topic, payload, qos) for payload, qos in MESSAGES]

    def publish(ready):
        assert ready["granted"] == [1], ready
        for payload, qos in MESSAGES:
            publisher.publish(topic, payload.encode(), qos=qos)

    result = browser.run({
        "id": f"{scheme}-subscriber", "url": broker.url(scheme), "clientId": f"browser-sub-{scheme}",
        "subscribe": {"topic": topic, "qos": 1},
        "expect": [{"topic": t, "payload": p, "qos": q} for t, p, q in expected],
    }, on_ready=publish)
    assert _short(_seen(result)) == _short(expected), result["error"]
    assert result["ok"], result["error"]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_tcp_client_receives_what_the_browser_publishes(ws_broker, browser, scheme):
    broker, clients = ws_broker
    topic = f"browser/{scheme}/up"
    subscriber = clients.paho()
    assert subscriber.subscribe(topic, qos=1) == [1]
    result = browser.run({
        "id": f"{scheme}-publisher", "url": broker.url(scheme), "clientId": f"browser-pub-{scheme}",
        "publish": [{"topic": topic, "payload": p, "qos": q} for p, q in MESSAGES],
    })
    assert result["ok"], result["error"]  # connected, and every QoS 1 message got its PUBACK
    got = subscriber.expect_messages(len(MESSAGES), timeout=SCENARIO_TIMEOUT_MS / 1000)
    seen = [(m.topic, m.payload.decode(), m.qos) for m in got]
    assert _short(seen) == _short([(topic, p, q) for p, q in MESSAGES])
