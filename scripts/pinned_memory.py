#!/usr/bin/env python3
"""Memory clients pin, and whether it comes back: RSS at start, at peak and after close.

Two rounds of clients that each make the broker hold a lot, run against Starling and Mosquitto
in the same invocation (each broker started afresh for every run, the order alternating):

* ``alias``: N MQTT 5 connections (default 300), each mapping 10 Topic Aliases to 60 000-byte
  topics with QoS 0 PUBLISHes (about 180 MB of topics in all), then PINGREQ so every PUBLISH
  has been handled.
* ``long-id``: N MQTT 3.1.1 clients (default 2 000) with 65 535-byte client ids, clean
  session (about 131 MB of ids), each waiting for its CONNACK.

Each round is repeated (``--repeats``, default 3) on the same broker: RSS (``VmRSS`` from
``/proc/PID/status``) is read before the first round, at the peak of each round (all clients
connected and handled) and after the clients closed, once the RSS has stopped falling (no
change for ``--settle-secs``, at most ``--deadline-secs``). For Starling the round needs
the limits raised (``--max-topic-alias-bytes 1000000``, ``--max-client-id-length-bytes
65535``) to pin the same memory as Mosquitto does; ``starling-default`` runs the same
round with the default limits, which refuse the clients (DISCONNECT 0x97 after one alias,
CONNACK 0x02 for the ids), to show what the limits bound. Traffic goes to 127.0.0.1 only;
the brokers are stopped by PID.

    python3 scripts/pinned_memory.py --runs 3 --brokers starling mosquitto starling-default
"""

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from idle_memory import field, frame, free_port, rss_kib, start_broker  # noqa: E402

ALIASES = 10
ALIAS_TOPIC_BYTES = 60_000
CLIENT_ID_BYTES = 65_535
RAISED_LIMITS = ["--max-topic-alias-bytes", "1000000", "--max-client-id-length-bytes", "65535"]
QUIET = ["--metrics-listen", "off", "--sys-interval-secs", "0"]
PINGREQ, PINGRESP = b"\xc0\x00", b"\xd0\x00"


def varint(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_v5(client_id):
    # Clean Start, keep-alive 600 s, no properties.
    return frame(0x10, field(b"MQTT") + bytes([5, 0x02]) + (600).to_bytes(2, "big") + b"\x00" + field(client_id))


def connect_v311(client_id):
    return frame(0x10, field(b"MQTT") + bytes([4, 0x02]) + (600).to_bytes(2, "big") + field(client_id))


def publish_with_alias(topic, alias):
    props = bytes([0x23]) + alias.to_bytes(2, "big")
    return frame(0x30, field(topic) + varint(len(props)) + props + b"x")


def recv_until(sock, suffix, timeout_s):
    """Reads until the bytes end with ``suffix``; returns what came, or None if closed."""
    sock.settimeout(timeout_s)
    got = b""
    while not got.endswith(suffix):
        data = sock.recv(65536)
        if not data:
            return None
        got += data
    return got


def alias_round(port, n, tag):
    """N v5 clients with 10 large aliases each; returns (sockets, clients still open)."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(connect_v5(b"alias-%s-%d" % (tag, i)))
        for a in range(1, ALIASES + 1):
            topic = (b"pin/%s/%d/%d/" % (tag, i, a)).ljust(ALIAS_TOPIC_BYTES, b"x")
            try:
                s.sendall(publish_with_alias(topic, a))
            except OSError:
                break  # refused: the broker closed the connection
        try:
            s.sendall(PINGREQ)
        except OSError:
            pass
        socks.append(s)
    open_ = 0
    for s in socks:
        try:
            if recv_until(s, PINGRESP, 60) is not None:
                open_ += 1
        except OSError:
            pass
    return socks, open_


def long_id_round(port, n, tag):
    """N 3.1.1 clients with 64 KiB client ids; returns (sockets, clients accepted)."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(connect_v311((b"id-%s-%d-" % (tag, i)).ljust(CLIENT_ID_BYTES, b"z")))
        socks.append(s)
    accepted = 0
    for s in socks:
        try:
            s.settimeout(60)
            ack = s.recv(4)
            accepted += int(len(ack) == 4 and ack[3] == 0)
        except OSError:
            pass
    return socks, accepted


def settled_rss(pid, settle_s, deadline_s):
    """The RSS once it has not changed for ``settle_s`` (or at the deadline)."""
    deadline = time.monotonic() + deadline_s
    last, since = rss_kib(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = rss_kib(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            break
    return last


def measure(kind, scenario, n, repeats, settle_s, deadline_s):
    broker = "starling" if kind.startswith("starling") else "mosquitto"
    args = QUIET + (RAISED_LIMITS if kind == "starling" else [])
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        proc = start_broker(broker, port, workdir, starling_args=args)
        try:
            start = settled_rss(proc.pid, settle_s, deadline_s)
            rounds = []
            for r in range(repeats):
                run = alias_round if scenario == "alias" else long_id_round
                socks, kept = run(port, n, b"%d" % r)
                peak = rss_kib(proc.pid)
                for s in socks:
                    s.close()
                after = settled_rss(proc.pid, settle_s, deadline_s)
                rounds.append({"peak_kib": peak, "after_kib": after, "clients_kept": kept})
            return {"broker": kind, "scenario": scenario, "clients": n, "start_kib": start, "rounds": rounds}
        finally:
            proc.kill()
            proc.wait()


def spread(values):
    mib = sorted(v / 1024 for v in values)
    return f"{mib[0]:.1f} / {statistics.median(mib):.1f} / {mib[-1]:.1f}"


def report(results, repeats):
    """A Markdown table: min / median / max over the runs of each figure."""
    print(f"| Scenario | Broker | clients kept (round 1) | RSS at start (MiB) | peak | "
          + " | ".join(f"after round {r + 1}" for r in range(repeats)) + " |")
    print("|---|---|---:|---:|---:|" + "---:|" * repeats)
    keys = sorted({(r["scenario"], r["broker"]) for r in results}, key=lambda k: (k[0], k[1]))
    for scenario, broker in keys:
        runs = [r for r in results if r["scenario"] == scenario and r["broker"] == broker]
        kept = sorted({r["rounds"][0]["clients_kept"] for r in runs})
        cells = [spread([r["start_kib"] for r in runs]),
                 spread([max(x["peak_kib"] for x in r["rounds"]) for r in runs])]
        cells += [spread([r["rounds"][i]["after_kib"] for r in runs]) for i in range(repeats)]
        print(f"| {scenario} ({runs[0]['clients']}) | {broker} | {'/'.join(map(str, kept))} | "
              + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="rounds per broker process")
    parser.add_argument("--brokers", nargs="+", default=["starling", "mosquitto"],
                        choices=["starling", "mosquitto", "starling-default"])
    parser.add_argument("--scenarios", nargs="+", default=["alias", "long-id"], choices=["alias", "long-id"])
    parser.add_argument("--alias-clients", type=int, default=300)
    parser.add_argument("--long-id-clients", type=int, default=2000)
    parser.add_argument("--settle-secs", type=float, default=3.0)
    parser.add_argument("--deadline-secs", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="also print one JSON object per measurement")
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        order = args.brokers if run % 2 == 0 else list(reversed(args.brokers))
        for scenario in args.scenarios:
            n = args.alias_clients if scenario == "alias" else args.long_id_clients
            for kind in order:
                r = measure(kind, scenario, n, args.repeats, args.settle_secs, args.deadline_secs)
                results.append(r)
                if args.json:
                    print(json.dumps(r), flush=True)
                else:
                    print(f"run {run + 1} {scenario:>7} {kind:>16}: start {r['start_kib']} KiB, "
                          + ", ".join(f"peak {x['peak_kib']} -> after {x['after_kib']} KiB" for x in r["rounds"]),
                          flush=True)
    report(results, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
