"""mosquitto_pub / mosquitto_sub driven from the tests (shared by test_interop.py and
test_v5_interop.py): ``mosquitto_pub`` runs to completion, ``MosquittoSub`` collects output
lines in a thread and is stopped by pid, the ``subs`` fixture starts and stops them, and
``subscribed`` waits until a mosquitto_sub's subscription is live. ``version`` is the
``-V`` argument (``mqttv311`` or ``mqttv5``)."""

import os
import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

TOOLS = ("mosquitto_pub", "mosquitto_sub")


@pytest.fixture(autouse=True)
def tools_present():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{missing} not installed: run scripts/setup.sh (Debian package mosquitto-clients)")


def _base(broker, version="mqttv311"):
    return ["-h", broker.host, "-p", str(broker.port), "-V", version]


def mosquitto_pub(broker, *args, input_bytes=None, timeout=10, version="mqttv311"):
    """Runs mosquitto_pub to completion (``version``: mqttv311 or mqttv5), asserting exit 0."""
    proc = subprocess.run(["mosquitto_pub", *_base(broker, version), *args], input=input_bytes,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    assert proc.returncode == 0, f"mosquitto_pub {args} failed: {proc.stderr.decode(errors='replace')}"
    return proc


class MosquittoSub:
    """A running mosquitto_sub whose output lines are collected by a thread; stopped by pid."""

    def __init__(self, broker, *args, version="mqttv311"):
        self.proc = subprocess.Popen(
            ["mosquitto_sub", *_base(broker, version), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        self.lines: "queue.Queue[bytes]" = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip(b"\n"))

    def line(self, timeout=5.0) -> bytes:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            err = b""
            if self.proc.poll() is not None:
                err = self.proc.stderr.read()
            raise AssertionError(f"mosquitto_sub printed nothing in {timeout}s {err!r}") from None

    def wait_exit(self, timeout=10.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=3)


@pytest.fixture
def subs():
    started = []

    def start(broker, *args, version="mqttv311"):
        s = MosquittoSub(broker, *args, version=version)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def subscribed(sub: MosquittoSub, clients, topic: str) -> None:
    """Waits until mosquitto_sub's subscription is live: publishes a probe on ``topic`` until
    it is printed (mosquitto_sub has no 'subscribed' signal)."""
    probe = clients.raw_connected()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe.publish(topic, b"__ready__")
        try:
            while True:
                line = sub.line(timeout=0.2)
                if b"__ready__" in line or b"__ready__".hex().encode() in line:
                    # Swallow further probes that may still be on their way.
                    time.sleep(0.1)
                    while not sub.lines.empty():
                        sub.lines.get_nowait()
                    return
        except AssertionError:
            continue
    raise AssertionError("mosquitto_sub never subscribed")
