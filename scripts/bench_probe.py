#!/usr/bin/env python3
"""Probes for scripts/bench-persistence.sh: MQTT 3.1.1 checks over a raw socket (no client
library: the bench machine needs nothing but Python) and the disk's sync latency.

  bench_probe.py ready PORT --since EPOCH_SECS [--timeout SECS]
      Polls 127.0.0.1:PORT every 5 ms until it accepts a TCP connection, then sends CONNECT
      until a CONNACK comes back. Prints {"port_ms": .., "connack_ms": ..}, both counted from
      EPOCH_SECS (the time the broker process was started): a broker that binds its
      listener before it has read its store accepts connections early and answers them
      once it is ready, so the CONNACK is the time it serves.
  bench_probe.py session PORT CLIENT_ID --count N [--expect-prefix P]
      Connects CLIENT_ID with Clean Session 0 and reads N PUBLISHes (not acknowledged: they
      stay in the broker). Prints {"session_present": .., "received": .., "in_order": ..,
      "topics": [..]}; with P, "in_order" says whether payload j starts with P + j + ".".
  bench_probe.py retained PORT TOPIC [--expect-prefix P]
      Subscribes a new clean client to TOPIC and waits for its retained message. Prints
      {"retained": .., "payload_prefix": ..}.
  bench_probe.py fsync DIR [--count N]
      Writes 4 KiB and calls fdatasync N times (default 200) in a file in DIR, then removes
      it. Prints {"fdatasync_us": {"p50": .., "p90": .., "max": ..}}: what one durable commit
      costs this disk at least.

Exit status 0 when the check passed, 1 when it did not (the JSON says what was seen).
"""

import argparse
import json
import os
import socket
import struct
import sys
import time

POLL_SECS = 0.005
READ_TIMEOUT_SECS = 10.0


def encode_len(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id, clean=True, keep_alive=60):
    body = mqtt_str("MQTT") + bytes([4, 0x02 if clean else 0]) + struct.pack("!H", keep_alive)
    body += mqtt_str(client_id)
    return bytes([0x10]) + encode_len(len(body)) + body


def subscribe_packet(packet_id, topic, qos=1):
    body = struct.pack("!H", packet_id) + mqtt_str(topic) + bytes([qos])
    return bytes([0x82]) + encode_len(len(body)) + body


class Reader:
    """Frames MQTT packets from a blocking socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no packet before the deadline")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        self.buf += chunk

    def packet(self, timeout=READ_TIMEOUT_SECS):
        """The next packet: (first byte, body)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                length, shift, at = 0, 0, 1
                complete = False
                while at < len(self.buf) and at <= 4:
                    byte = self.buf[at]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    at += 1
                    if not byte & 0x80:
                        complete = True
                        break
                if complete and len(self.buf) >= at + length:
                    first, body = self.buf[0], self.buf[at : at + length]
                    self.buf = self.buf[at + length :]
                    return first, body
            self._fill(deadline)


def parse_publish(first, body):
    """(topic, qos, retain, payload) of a PUBLISH."""
    qos = (first >> 1) & 3
    (topic_len,) = struct.unpack("!H", body[:2])
    at = 2 + topic_len
    topic = body[2:at].decode(errors="replace")
    if qos:
        at += 2
    return topic, qos, bool(first & 1), bytes(body[at:])


def open_client(port, client_id, clean=True):
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_SECS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(client_id, clean))
    reader = Reader(sock)
    first, body = reader.packet()
    if first >> 4 != 2 or len(body) < 2 or body[1] != 0:
        raise ConnectionError(f"no CONNACK 0 for {client_id}: {first:#x} {bytes(body)!r}")
    return sock, reader, bool(body[0] & 1)


def ready(args):
    since = args.since
    deadline = time.monotonic() + args.timeout
    port_ms = None
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection(("127.0.0.1", args.port), timeout=1.0)
        except OSError:
            time.sleep(POLL_SECS)
            continue
        if port_ms is None:
            port_ms = (time.time() - since) * 1000
        try:
            sock.sendall(connect_packet("bench-ready-probe"))
            first, _ = Reader(sock).packet(timeout=max(0.1, deadline - time.monotonic()))
            if first >> 4 == 2:
                connack_ms = (time.time() - since) * 1000
                sock.close()
                print(json.dumps({"port_ms": round(port_ms, 1), "connack_ms": round(connack_ms, 1)}))
                return 0
        except (OSError, TimeoutError, ConnectionError):
            pass
        finally:
            sock.close()
        time.sleep(POLL_SECS)
    print(json.dumps({"port_ms": port_ms, "connack_ms": None}))
    return 1


def session(args):
    sock, reader, present = open_client(args.port, args.client_id, clean=False)
    received, in_order, topics = 0, True, set()
    try:
        while received < args.count:
            first, body = reader.packet()
            if first >> 4 != 3:
                continue
            topic, _, _, payload = parse_publish(first, body)
            topics.add(topic)
            if args.expect_prefix is not None:
                expected = f"{args.expect_prefix}{received}.".encode()
                in_order &= payload.startswith(expected)
            received += 1
    except (OSError, TimeoutError, ConnectionError):
        pass
    finally:
        sock.close()
    result = {
        "session_present": present,
        "received": received,
        "in_order": in_order,
        "topics": sorted(topics),
    }
    print(json.dumps(result))
    return 0 if present and received == args.count and in_order else 1


def retained(args):
    sock, reader, _ = open_client(args.port, "bench-retained-probe")
    seen = None
    try:
        sock.sendall(subscribe_packet(1, args.topic))
        while seen is None:
            first, body = reader.packet()
            if first >> 4 == 3:
                seen = parse_publish(first, body)
    except (OSError, TimeoutError, ConnectionError):
        pass
    finally:
        sock.close()
    ok = seen is not None and seen[0] == args.topic and seen[2]
    prefix = seen[3][:24].decode(errors="replace") if seen else None
    if ok and args.expect_prefix is not None:
        ok = seen[3].startswith(args.expect_prefix.encode())
    print(json.dumps({"retained": bool(seen and seen[2]), "topic": seen and seen[0], "payload_prefix": prefix}))
    return 0 if ok else 1


def fsync(args):
    path = os.path.join(args.dir, "bench-fsync-probe")
    block = b"\0" * 4096
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(args.count):
            os.write(fd, block)
            began = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - began) * 1e6)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    pick = lambda q: round(times[min(len(times) - 1, int(q * len(times)))], 1)  # noqa: E731
    print(json.dumps({"fdatasync_us": {"p50": pick(0.5), "p90": pick(0.9), "max": round(times[-1], 1)}}))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ready")
    p.add_argument("port", type=int)
    p.add_argument("--since", type=float, required=True)
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(run=ready)
    p = sub.add_parser("session")
    p.add_argument("port", type=int)
    p.add_argument("client_id")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--expect-prefix")
    p.set_defaults(run=session)
    p = sub.add_parser("retained")
    p.add_argument("port", type=int)
    p.add_argument("topic")
    p.add_argument("--expect-prefix")
    p.set_defaults(run=retained)
    p = sub.add_parser("fsync")
    p.add_argument("dir")
    p.add_argument("--count", type=int, default=200)
    p.set_defaults(run=fsync)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
