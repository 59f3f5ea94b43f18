#!/usr/bin/env python3
"""Idle-connection memory: what one idle client costs a broker, measured from outside.

Starts a broker (Starling or Debian's Mosquitto) on a free loopback port, reads its RSS,
opens N clients that each CONNECT and SUBSCRIBE to a topic of their own, checks that a
publish to a sample of those topics is delivered, reads the RSS again, and reports
(RSS with clients - RSS before) / N. Runs each broker in turn when asked for both, so the
figures come from the same run. Traffic goes to 127.0.0.1 only; the brokers it starts are
stopped by PID. Starling runs with its defaults, its metrics endpoint on a free port of its
own (so that another broker holding the default port changes nothing).

It also reports the kernel's share: the growth of `Slab` in /proc/meminfo over the same
interval, divided by the 2 N sockets (both ends of each loopback connection are on this
machine). That counts the whole machine, so other work running at the time adds noise.

    python3 scripts/idle_memory.py --clients 15000 --brokers starling mosquitto
"""

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def slab_kib():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    raise RuntimeError("no Slab in /proc/meminfo")


def field(b):
    return len(b).to_bytes(2, "big") + b


def frame(first, body):
    out, n = bytearray([first]), len(body)
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + body


def connect_packet(client_id, keep_alive):
    return frame(0x10, field(b"MQTT") + bytes([4, 0x02]) + keep_alive.to_bytes(2, "big") + field(client_id))


def subscribe_packet(topic):
    return frame(0x82, (1).to_bytes(2, "big") + field(topic) + b"\x00")


def publish_packet(topic, payload):
    return frame(0x30, field(topic) + payload)


def start_broker(kind, port, workdir, starling_args=(), mosquitto_lines=()):
    """Starts Starling (release build, ``starling_args`` added) or Mosquitto (``mosquitto_lines``
    added to its config) on 127.0.0.1:port; returns the process once the port accepts."""
    if kind == "starling":
        binary = ROOT / "target" / "release" / "starling"
        if not binary.exists():
            subprocess.run(["cargo", "build", "--release", "-q", "-p", "starling"], cwd=ROOT, check=True)
        cmd = [str(binary), "--listen", f"127.0.0.1:{port}", "--log-level", "warn",
               "--metrics-listen", f"127.0.0.1:{free_port()}", *starling_args]
    else:
        conf = Path(workdir) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "log_dest none\nmax_connections -1\n" + "".join(f"{line}\n" for line in mosquitto_lines))
        cmd = ["mosquitto", "-c", str(conf)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} did not start")


def open_clients(port, n, keep_alive, timeout_s):
    """Opens n clients, each CONNECTed and SUBSCRIBEd; returns the sockets."""
    sel = selectors.DefaultSelector()
    socks, pending = [], {}
    expected = 4 + 5  # CONNACK + SUBACK with one return code
    batch = 500
    started = time.time()
    for lo in range(0, n, batch):
        for i in range(lo, min(n, lo + batch)):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            s.sendall(connect_packet(b"idle-%d" % i, keep_alive) + subscribe_packet(b"idle/%d" % i))
            socks.append(s)
            pending[s.fileno()] = (s, bytearray())
            sel.register(s, selectors.EVENT_READ)
        while pending and (len(pending) > 0 and time.time() - started < timeout_s):
            for key, _ in sel.select(timeout=1):
                s, got = pending.get(key.fd, (None, None))
                if s is None:
                    continue
                try:
                    data = s.recv(64)
                except BlockingIOError:
                    continue
                if not data:
                    raise RuntimeError("broker closed a client while connecting")
                got.extend(data)
                if len(got) >= expected:
                    if got[0] != 0x20 or got[3] != 0 or got[4] != 0x90 or got[8] != 0:
                        raise RuntimeError(f"unexpected reply {bytes(got)!r}")
                    sel.unregister(s)
                    del pending[key.fd]
        if pending:
            raise RuntimeError(f"{len(pending)} clients got no CONNACK/SUBACK in time")
    sel.close()
    return socks


def check_delivery(port, socks, samples):
    pub = socket.create_connection(("127.0.0.1", port))
    pub.sendall(connect_packet(b"idle-publisher", 0))
    pub.recv(4)
    step = max(1, len(socks) // samples)
    picked = list(range(0, len(socks), step))[:samples]
    for i in picked:
        pub.sendall(publish_packet(b"idle/%d" % i, b"ping"))
    for i in picked:
        s = socks[i]
        s.setblocking(True)
        s.settimeout(5)
        data = s.recv(64)
        if b"idle/%d" % i not in data or not data.endswith(b"ping"):
            raise RuntimeError(f"client {i} got {data!r}")
    pub.close()
    return len(picked)


def measure(kind, n, keep_alive, settle_s):
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        proc = start_broker(kind, port, workdir)
        try:
            time.sleep(settle_s)
            before = rss_kib(proc.pid)
            slab_before = slab_kib()
            t0 = time.time()
            socks = open_clients(port, n, keep_alive, timeout_s=120)
            connect_s = time.time() - t0
            time.sleep(settle_s)
            after = rss_kib(proc.pid)
            slab_after = slab_kib()
            delivered = check_delivery(port, socks, samples=100)
            for s in socks:
                s.close()
            return {
                "broker": kind,
                "clients": n,
                "rss_before_kib": before,
                "rss_with_clients_kib": after,
                "bytes_per_client": round((after - before) * 1024 / n, 1),
                "kernel_slab_bytes_per_socket": round((slab_after - slab_before) * 1024 / (2 * n)),
                "connect_seconds": round(connect_s, 2),
                "sampled_deliveries": delivered,
            }
        finally:
            proc.kill()
            proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=15000)
    parser.add_argument("--brokers", nargs="+", default=["starling", "mosquitto"], choices=["starling", "mosquitto"])
    parser.add_argument("--keep-alive-secs", type=int, default=600)
    parser.add_argument("--settle-secs", type=float, default=2.0)
    parser.add_argument("--json", action="store_true", help="one JSON object per broker")
    args = parser.parse_args()
    results = [measure(kind, args.clients, args.keep_alive_secs, args.settle_secs) for kind in args.brokers]
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['broker']:>10}: RSS {r['rss_before_kib']} KiB -> {r['rss_with_clients_kib']} KiB with "
                  f"{r['clients']} idle clients: {r['bytes_per_client']} B per client "
                  f"(connected in {r['connect_seconds']} s, {r['sampled_deliveries']} sampled deliveries ok); "
                  f"kernel slab {r['kernel_slab_bytes_per_socket']} B per socket")
    if len(results) == 2 and results[1]["bytes_per_client"] > 0:
        print(f"ratio {results[0]['broker']}/{results[1]['broker']}: "
              f"{results[0]['bytes_per_client'] / results[1]['bytes_per_client']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
