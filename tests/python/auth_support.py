"""Shared by the ``test_auth_*.py`` modules (Starling's authentication): brokers started
with a configuration file, password files made by ``mosquitto_passwd`` and ``starling
passwd``, raw logins and their timing, and a SCRAM-SHA-256 client driving raw MQTT 5
CONNECT/AUTH packets with PyPI ``scramp``.

Starling's ``[auth]`` keys have no flags: a broker here runs as ``starling --listen
127.0.0.1:PORT --metrics-listen off --config FILE`` (``--listen`` replaces the file's
``[[listeners]]``, ``[auth]`` applies to it), or, for several listeners, as ``starling
--config FILE`` alone with the file's own ``[[listeners]]``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

import conftest
import mqtt5_packets as m5
import mqtt_packets as mp
from conftest import HOST, Broker, free_port, is_mosquitto
from mqtt_packets import ConnectionClosed, RawClient

STARLING_ONLY = [
    pytest.mark.starling_only,
    pytest.mark.skipif(is_mosquitto(), reason="Starling's own authentication settings"),
]

# CONNACK codes
V3_BAD_CREDENTIALS = mp.CONNACK_BAD_USERNAME_PASSWORD  # 0x04
V3_NOT_AUTHORIZED = mp.CONNACK_NOT_AUTHORIZED  # 0x05
V5_BAD_CREDENTIALS = 0x86
V5_NOT_AUTHORIZED = m5.RC_NOT_AUTHORIZED  # 0x87
V5_RATE_EXCEEDED = 0x9F

MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"


def metric(port: int, name: str, labels: str = "") -> float:
    """The sample ``name{labels}`` (``labels`` as written in the exposition, e.g.
    ``reason="credentials"``) of the broker's /metrics on ``port``; it must be there."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{\})?") + r" (\S+)"
    m = re.search("^" + pattern + "$", text, re.M)
    assert m, f"{name}{{{labels}}} not in /metrics:\n{text[:3000]}"
    return float(m.group(1))


def toml_str(value) -> str:
    """A TOML basic string."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def starling_bin() -> str:
    path = conftest._STARLING_BIN or conftest._starling_binary_path()
    return str(path)


# --------------------------------------------------------------------------------------------
# Password files
# --------------------------------------------------------------------------------------------


def mosquitto_passwd(path: Path, user: str, password: str, sha512: bool = False) -> None:
    """Adds ``user`` to ``path`` with Debian's mosquitto_passwd ($7$, or $6$ with -H sha512)."""
    if not os.path.exists(MOSQUITTO_PASSWD):
        pytest.fail("mosquitto_passwd missing: run scripts/setup.sh (Debian package mosquitto)")
    cmd = [MOSQUITTO_PASSWD, "-b"]
    if sha512:
        cmd += ["-H", "sha512"]
    if not path.exists():
        cmd.append("-c")
    subprocess.run(cmd + [str(path), user, password], check=True, capture_output=True, timeout=30)


def starling_passwd(path: Path, user: str, password: str, hash_format: Optional[str] = None,
                    delete: bool = False) -> subprocess.CompletedProcess:
    """``starling passwd [-c] -b [--hash F] FILE USER PASSWORD`` (or ``-D FILE USER``)."""
    cmd = [starling_bin(), "passwd"]
    if delete:
        cmd += ["-D", str(path), user]
    else:
        if not path.exists():
            cmd.append("-c")
        cmd.append("-b")
        if hash_format:
            cmd += ["--hash", hash_format]
        cmd += [str(path), user, password]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{cmd} failed: {proc.stdout}{proc.stderr}"
    return proc


# name → (how to write it, the prefix of the hash it writes)
HASH_FORMATS = {
    "mosquitto-7": (lambda p, u, pw: mosquitto_passwd(p, u, pw), "$7$"),
    "mosquitto-6": (lambda p, u, pw: mosquitto_passwd(p, u, pw, sha512=True), "$6$"),
    "starling-argon2id": (lambda p, u, pw: starling_passwd(p, u, pw, "argon2id"), "$argon2id$"),
    "starling-pbkdf2-sha512": (lambda p, u, pw: starling_passwd(p, u, pw, "pbkdf2-sha512"), "$7$"),
    "starling-scram-sha-256": (lambda p, u, pw: starling_passwd(p, u, pw, "scram-sha-256"),
                               "$scram-sha-256$"),
}


def add_user(path: Path, user: str, password: str, fmt: str = "mosquitto-7") -> None:
    HASH_FORMATS[fmt][0](path, user, password)


def hash_of(path: Path, user: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(user + ":"):
            return line[len(user) + 1:]
    raise AssertionError(f"{user} not in {path}:\n{path.read_text()}")


# --------------------------------------------------------------------------------------------
# Brokers with a configuration file
# --------------------------------------------------------------------------------------------


class AuthBroker(Broker):
    """A Starling broker run with a configuration file.

    ``listen=True``: ``--listen 127.0.0.1:PORT`` as the conftest broker, plus ``--config``
    (the file's ``[auth]``, no ``[[listeners]]``). ``listen=False``: the file's own
    ``[[listeners]]``; ``self.port`` must then be set to one of them (waited for).
    """

    def __init__(self, workdir: Path, config: str, listen: bool = True, options: Optional[dict] = None):
        opts = {"metrics_listen": "off"}
        opts.update(options or {})
        super().__init__("starling", opts, workdir)
        self.listen = listen
        self.config_path = workdir / "starling.toml"
        self.config_path.write_text(config)

    def command(self) -> list:
        if self.listen:
            return super().command() + ["--config", str(self.config_path)]
        cmd = [starling_bin(), "--config", str(self.config_path)]
        for key, value in sorted(self.options.items()):
            cmd += ["--" + key.replace("_", "-"), str(value)]
        return cmd

    def start(self) -> None:
        # Unlike the conftest broker, never retry on another port (a config file names it).
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        self.starts += 1
        if not self._wait_ready():
            log = self.log()[-3000:]
            self._kill()
            raise RuntimeError(f"starling did not start listening on {self.address}:\n{log}")

    def hup(self) -> None:
        os.kill(self.proc.pid, signal.SIGHUP)

    def run_once(self, timeout: float = 30) -> subprocess.CompletedProcess:
        """Runs the command to its exit (for configurations that must refuse to start)."""
        return subprocess.run(self.command(), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=self.workdir)


@pytest.fixture
def make_broker(tmp_path):
    """``make_broker(config, listen=True, options=None, start=True)`` → a started AuthBroker
    in its own directory; stopped at teardown, failing the test if it died meanwhile."""
    made: List[AuthBroker] = []

    def make(config: str = "", listen: bool = True, options: Optional[dict] = None,
             start: bool = True, port: Optional[int] = None) -> AuthBroker:
        workdir = tmp_path / f"broker{len(made)}"
        workdir.mkdir()
        b = AuthBroker(workdir, config, listen=listen, options=options)
        if port is not None:
            b.port = port
        made.append(b)
        if start:
            b.start()
        return b

    yield make
    died = [(b, b.proc.poll()) for b in made if b.proc is not None and b.starts and not b.alive()]
    for b in made:
        b.stop()
    if died:
        b, code = died[0]
        pytest.fail(f"the broker exited during the test (code {code}); log tail:\n{b.log()[-3000:]}")


def auth_config(password_file: Optional[Path] = None, **keys) -> str:
    """An ``[auth]`` section: ``password_file`` and any other key (bools and strings)."""
    lines = ["[auth]"]
    if password_file is not None:
        lines.append(f"password_file = {toml_str(password_file)}")
    for key, value in keys.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        else:
            lines.append(f"{key} = {toml_str(value)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Logins
# --------------------------------------------------------------------------------------------


def connack_code(p: mp.Packet, version: int) -> int:
    if version == 5:
        return m5.decode_connack(p).reason_code
    return mp.decode_connack(p).return_code


class Login:
    """A raw CONNECT sent now; ``result()`` waits for its CONNACK code (None if the server
    closed without one) and records how long it took from the send."""

    def __init__(self, broker, version: int, username=None, password=None, client_id: str = "",
                 timeout: float = 10.0, extra: bytes = b"", source: Optional[str] = None, **kw):
        self.version = version
        cls = m5.Client5 if version == 5 else RawClient
        self.client = cls(broker.host, broker.port, timeout=timeout,
                          source_address=(source, 0) if source else None)
        pw = password.encode() if isinstance(password, str) else password
        if version == 5:
            data = m5.connect(client_id, username=username, password=pw, **kw)
        else:
            data = mp.connect(client_id, username=username, password=pw, **kw)
        self.sent_at = time.monotonic()
        self.client.send(data + extra)
        self.code: Optional[int] = None
        self.elapsed: Optional[float] = None

    def result(self, timeout: float = 10.0) -> Optional[int]:
        try:
            p = self.client.recv_packet(timeout)
        except ConnectionClosed:
            self.elapsed = time.monotonic() - self.sent_at
            return None
        self.elapsed = time.monotonic() - self.sent_at
        self.code = connack_code(p, self.version)
        return self.code

    def close(self) -> None:
        self.client.close()


def login(broker, version: int, username=None, password=None, client_id: str = "", **kw) -> int:
    """CONNACK code of one login (the connection is closed after)."""
    attempt = Login(broker, version, username, password, client_id, **kw)
    try:
        return attempt.result()
    finally:
        attempt.close()


def logins(broker, version: int, credentials, **kw) -> list:
    """CONNACK codes of several logins sent at once (refusals are delayed by 1 s each: in
    parallel they cost one delay): ``credentials`` is a list of (username, password)."""
    attempts = [Login(broker, version, u, p, **kw) for u, p in credentials]
    try:
        return [a.result() for a in attempts]
    finally:
        for a in attempts:
            a.close()


def bad_credentials(version: int) -> int:
    return V5_BAD_CREDENTIALS if version == 5 else V3_BAD_CREDENTIALS


def not_authorized(version: int) -> int:
    return V5_NOT_AUTHORIZED if version == 5 else V3_NOT_AUTHORIZED


def connected(broker, version: int, username: str, password: str, client_id: str = "",
              **kw):
    """A raw client logged in (CONNACK 0 asserted); the caller closes it."""
    c = (m5.Client5 if version == 5 else RawClient)(broker.host, broker.port, timeout=10)
    pw = password.encode() if isinstance(password, str) else password
    c.connect(client_id, username=username, password=pw, **kw)
    return c


def assert_serves(broker, username: str, password: str, topic: str = "health/auth") -> None:
    """Two fresh logged-in clients exchange a QoS 1 message (the broker still works)."""
    sub = connected(broker, 4, username, password, f"hs-{time.monotonic_ns()}")
    pub = connected(broker, 5, username, password, f"hp-{time.monotonic_ns()}")
    try:
        assert sub.subscribe([(topic, 1)]) == [1]
        pub.publish(topic, b"alive", qos=1)
        msg = sub.recv_publish(ack=True)
        assert (msg.topic, msg.payload) == (topic, b"alive")
    finally:
        sub.disconnect()
        pub.disconnect()


# --------------------------------------------------------------------------------------------
# SCRAM-SHA-256 over MQTT 5 AUTH
# --------------------------------------------------------------------------------------------

SCRAM = "SCRAM-SHA-256"


def scram_client(user: str, password: str):
    from scramp import ScramClient

    return ScramClient([SCRAM], user, password)


def auth_props(packet: mp.Packet):
    """(reason code, Authentication Method, Authentication Data) of a CONNACK or AUTH."""
    if packet.type == mp.CONNACK:
        ack = m5.decode_connack(packet)
        code, props = ack.reason_code, ack.properties
    elif packet.type == m5.AUTH:
        a = m5.decode_auth(packet)
        code, props = a.reason_code, a.properties
    else:
        raise AssertionError(f"expected CONNACK or AUTH, got {packet!r}")
    return code, props.get(m5.PROP_AUTHENTICATION_METHOD), props.get(m5.PROP_AUTHENTICATION_DATA)


def scram_connect(client: m5.Client5, user: str, password: str, client_id: str = "",
                  **kw):
    """Runs the SCRAM exchange of a CONNECT. Returns (CONNACK code, ScramClient, final
    data); the server-final is verified by scramp when the CONNACK is a success."""
    sc = scram_client(user, password)
    first = sc.get_client_first().encode()
    client.send(m5.connect(client_id, properties=[(m5.PROP_AUTHENTICATION_METHOD, SCRAM),
                                                  (m5.PROP_AUTHENTICATION_DATA, first)], **kw))
    p = client.recv_packet()
    code, method, data = auth_props(p)
    if p.type == mp.CONNACK:
        return code, sc, data
    assert code == m5.RC_CONTINUE_AUTHENTICATION and method == SCRAM, (code, method)
    sc.set_server_first(data.decode())
    client.send(m5.auth(m5.RC_CONTINUE_AUTHENTICATION,
                        [(m5.PROP_AUTHENTICATION_METHOD, SCRAM),
                         (m5.PROP_AUTHENTICATION_DATA, sc.get_client_final().encode())]))
    p = client.recv_packet()
    assert p.type == mp.CONNACK, f"expected CONNACK after the client-final, got {p!r}"
    code, method, data = auth_props(p)
    if code == 0:
        assert method == SCRAM, method
        sc.set_server_final(data.decode())  # raises if the server signature is wrong
    return code, sc, data
