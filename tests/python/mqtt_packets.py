"""Byte-level MQTT 3.1.1 packet builders, decoders and a raw socket client.

Everything here writes exact bytes, so tests can send what a client library never would:
reserved flag bits, QoS 3, a bad remaining-length varint, ill-formed UTF-8, packet id 0.
Section numbers refer to the OASIS MQTT 3.1.1 specification.

Builders return ``bytes``; ``RawClient`` sends them over a plain TCP socket and parses what
comes back, one control packet at a time (``recv_packet``), or checks that the server closed
the connection (``expect_closed``).
"""

from __future__ import annotations

import collections
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Tuple, Union

# Control packet types (2.2.1).
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

PACKET_NAMES = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
}

# CONNACK return codes (3.2.2.3).
CONNACK_ACCEPTED = 0x00
CONNACK_UNACCEPTABLE_PROTOCOL = 0x01
CONNACK_IDENTIFIER_REJECTED = 0x02
CONNACK_SERVER_UNAVAILABLE = 0x03
CONNACK_BAD_USERNAME_PASSWORD = 0x04
CONNACK_NOT_AUTHORIZED = 0x05

SUBACK_FAILURE = 0x80

Text = Union[str, bytes]


# --------------------------------------------------------------------------------------------
# Primitive encoders (1.5, 2.2.3)
# --------------------------------------------------------------------------------------------


def encode_remaining_length(n: int) -> bytes:
    """The variable-length Remaining Length of 2.2.3 (1 to 4 bytes, at most 268,435,455)."""
    if n < 0 or n > 268_435_455:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def decode_remaining_length(data: bytes, offset: int = 0) -> Tuple[int, int]:
    """Decodes a Remaining Length at ``offset``; returns (value, bytes used)."""
    multiplier = 1
    value = 0
    for i in range(4):
        if offset + i >= len(data):
            raise ValueError("truncated remaining length")
        byte = data[offset + i]
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value, i + 1
        multiplier *= 128
    raise ValueError("remaining length longer than 4 bytes")


def _raw(text: Text) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def encode_string(text: Text) -> bytes:
    """A UTF-8 encoded string (1.5.3): 2-byte big-endian length, then the bytes as given.

    ``bytes`` are sent verbatim, so ill-formed UTF-8 can be written on purpose.
    """
    data = _raw(text)
    return struct.pack("!H", len(data)) + data


def encode_binary(data: bytes) -> bytes:
    """Length-prefixed binary data (will message, password)."""
    return struct.pack("!H", len(data)) + data


def fixed_header(packet_type: int, flags: int, remaining_length: int) -> bytes:
    return bytes([(packet_type << 4) | (flags & 0x0F)]) + encode_remaining_length(remaining_length)


def packet(packet_type: int, flags: int, body: bytes = b"") -> bytes:
    """A whole control packet: fixed header with the correct remaining length, then ``body``."""
    return fixed_header(packet_type, flags, len(body)) + body


def raw_packet(first_byte: int, body: bytes = b"", remaining_length: Optional[bytes] = None) -> bytes:
    """Malformed-case builder: any first byte, and optionally raw Remaining Length bytes.

    ``remaining_length`` is sent exactly as given (e.g. ``b"\\xff\\xff\\xff\\xff\\x7f"``),
    otherwise the correct encoding of ``len(body)`` is used.
    """
    rl = encode_remaining_length(len(body)) if remaining_length is None else remaining_length
    return bytes([first_byte & 0xFF]) + rl + body


# --------------------------------------------------------------------------------------------
# Client packet builders (3.x)
# --------------------------------------------------------------------------------------------


def connect(
    client_id: Text = "",
    *,
    clean_session: bool = True,
    keepalive: int = 60,
    will_topic: Optional[Text] = None,
    will_message: bytes = b"",
    will_qos: int = 0,
    will_retain: bool = False,
    username: Optional[Text] = None,
    password: Optional[bytes] = None,
    protocol_name: Text = "MQTT",
    protocol_level: int = 4,
    flags: Optional[int] = None,
    reserved_flag: bool = False,
    fixed_flags: int = 0,
    extra: bytes = b"",
    properties: Optional[bytes] = None,
    will_properties: Optional[bytes] = None,
) -> bytes:
    """CONNECT (3.1).

    The connect-flags byte is derived from the arguments unless ``flags`` gives it raw; the
    payload still follows the arguments, so the two can be made to disagree on purpose.
    ``reserved_flag`` sets bit 0 (MQTT-3.1.2-3); ``fixed_flags`` the low nibble of the fixed
    header; ``extra`` appends bytes after the payload. ``properties`` / ``will_properties``
    are encoded MQTT 5 property blocks (``mqtt5_packets`` builds them), written after the
    keep-alive / before the will topic when given.
    """
    if flags is None:
        flags = 0
        if reserved_flag:
            flags |= 0x01
        if clean_session:
            flags |= 0x02
        if will_topic is not None:
            flags |= 0x04 | ((will_qos & 0x03) << 3)
            if will_retain:
                flags |= 0x20
        if password is not None:
            flags |= 0x40
        if username is not None:
            flags |= 0x80
    variable = encode_string(protocol_name) + bytes([protocol_level & 0xFF, flags & 0xFF])
    variable += struct.pack("!H", keepalive)
    if properties is not None:
        variable += properties
    payload = encode_string(client_id)
    if will_topic is not None:
        if will_properties is not None:
            payload += will_properties
        payload += encode_string(will_topic) + encode_binary(will_message)
    if username is not None:
        payload += encode_string(username)
    if password is not None:
        payload += encode_binary(password)
    return packet(CONNECT, fixed_flags, variable + payload + extra)


def publish(
    topic: Text,
    payload: bytes = b"",
    *,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: Optional[int] = None,
    flags: Optional[int] = None,
    properties: Optional[bytes] = None,
) -> bytes:
    """PUBLISH (3.3). ``qos`` may be 3 (malformed); ``packet_id`` is written whenever it is
    given or ``qos`` > 0 (default 1). ``flags`` overrides the whole low nibble.
    ``properties``: an encoded MQTT 5 property block, written after the packet id."""
    if flags is None:
        flags = (0x08 if dup else 0) | ((qos & 0x03) << 1) | (0x01 if retain else 0)
    body = encode_string(topic)
    if packet_id is None and qos > 0:
        packet_id = 1
    if packet_id is not None:
        body += struct.pack("!H", packet_id)
    if properties is not None:
        body += properties
    return packet(PUBLISH, flags, body + payload)


def puback(packet_id: int) -> bytes:
    return packet(PUBACK, 0, struct.pack("!H", packet_id))


def pubrec(packet_id: int) -> bytes:
    return packet(PUBREC, 0, struct.pack("!H", packet_id))


def pubrel(packet_id: int, flags: int = 0x02) -> bytes:
    """PUBREL; its fixed-header flags MUST be 0010 (MQTT-3.6.1-1)."""
    return packet(PUBREL, flags, struct.pack("!H", packet_id))


def pubcomp(packet_id: int) -> bytes:
    return packet(PUBCOMP, 0, struct.pack("!H", packet_id))


def subscribe(
    packet_id: int,
    topics: Iterable[Union[Tuple[Text, int], Text]],
    *,
    flags: int = 0x02,
) -> bytes:
    """SUBSCRIBE (3.8): ``topics`` is a list of (filter, requested QoS byte) or plain filters
    (QoS 0). The QoS byte is written as given, so reserved bits can be set."""
    body = struct.pack("!H", packet_id)
    for item in topics:
        if isinstance(item, tuple):
            topic, qos = item
        else:
            topic, qos = item, 0
        body += encode_string(topic) + bytes([qos & 0xFF])
    return packet(SUBSCRIBE, flags, body)


def unsubscribe(packet_id: int, topics: Iterable[Text], *, flags: int = 0x02) -> bytes:
    body = struct.pack("!H", packet_id)
    for topic in topics:
        body += encode_string(topic)
    return packet(UNSUBSCRIBE, flags, body)


def pingreq(flags: int = 0) -> bytes:
    return packet(PINGREQ, flags)


def disconnect(flags: int = 0) -> bytes:
    return packet(DISCONNECT, flags)


# --------------------------------------------------------------------------------------------
# Decoding what the server sends
# --------------------------------------------------------------------------------------------


@dataclass
class Packet:
    """One control packet as read off the wire."""

    type: int
    flags: int
    body: bytes

    @property
    def name(self) -> str:
        return PACKET_NAMES.get(self.type, f"TYPE{self.type}")

    def __repr__(self) -> str:  # short and readable in assertion messages
        body = self.body if len(self.body) <= 48 else self.body[:48] + b"..."
        return f"<{self.name} flags={self.flags:#x} body={body!r}>"

    def to_bytes(self) -> bytes:
        return packet(self.type, self.flags, self.body)


@dataclass
class Connack:
    session_present: bool
    return_code: int
    ack_flags: int


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: Optional[int]
    topic_bytes: bytes = field(repr=False, default=b"")


@dataclass
class Suback:
    packet_id: int
    return_codes: list


def decode_connack(p: Packet) -> Connack:
    assert p.type == CONNACK, f"expected CONNACK, got {p!r}"
    assert p.flags == 0, f"CONNACK fixed-header flags must be 0, got {p.flags:#x}"
    assert len(p.body) == 2, f"CONNACK remaining length must be 2, got {len(p.body)}"
    ack_flags, rc = p.body[0], p.body[1]
    return Connack(session_present=bool(ack_flags & 0x01), return_code=rc, ack_flags=ack_flags)


def decode_publish(p: Packet) -> Publish:
    assert p.type == PUBLISH, f"expected PUBLISH, got {p!r}"
    qos = (p.flags >> 1) & 0x03
    assert qos != 3, "server sent PUBLISH with QoS 3"
    (tlen,) = struct.unpack_from("!H", p.body, 0)
    topic_bytes = p.body[2 : 2 + tlen]
    pos = 2 + tlen
    packet_id = None
    if qos > 0:
        (packet_id,) = struct.unpack_from("!H", p.body, pos)
        pos += 2
    return Publish(
        topic=topic_bytes.decode("utf-8"),
        payload=p.body[pos:],
        qos=qos,
        retain=bool(p.flags & 0x01),
        dup=bool(p.flags & 0x08),
        packet_id=packet_id,
        topic_bytes=topic_bytes,
    )


def decode_packet_id(p: Packet) -> int:
    """PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK: the 2-byte packet id (remaining length 2)."""
    assert len(p.body) == 2, f"{p.name} remaining length must be 2, got {len(p.body)}"
    return struct.unpack("!H", p.body)[0]


def decode_suback(p: Packet) -> Suback:
    assert p.type == SUBACK, f"expected SUBACK, got {p!r}"
    assert p.flags == 0, f"SUBACK fixed-header flags must be 0, got {p.flags:#x}"
    (pid,) = struct.unpack_from("!H", p.body, 0)
    return Suback(packet_id=pid, return_codes=list(p.body[2:]))


# --------------------------------------------------------------------------------------------
# RawClient
# --------------------------------------------------------------------------------------------


class ConnectionClosed(Exception):
    """The server closed the connection (EOF or reset) while a packet was expected."""


class RawClient:
    """A plain TCP socket speaking bytes, with a packet parser for what comes back."""

    decode_publish = staticmethod(decode_publish)  # the protocol version's PUBLISH decoder

    def __init__(self, host: str, port: int, timeout: float = 5.0, rcvbuf: Optional[int] = None,
                 source_address: Optional[Tuple[str, int]] = None):
        """``source_address``: (ip, port) to connect from (e.g. another 127.x address)."""
        self.host = host
        self.port = port
        self.default_timeout = timeout
        if rcvbuf is None:
            self.sock = socket.create_connection((host, port), timeout=timeout,
                                                 source_address=source_address)
        else:
            # A small receive buffer must be set before connecting (the window is agreed
            # then): a client that reads slowly, whose data the server has to hold.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._pending: "collections.deque[Packet]" = collections.deque()
        self._eof = False
        self._next_id = 0

    # -- plumbing ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Sends, returning False instead of raising if the server already closed."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Drops the connection with a TCP RST, as a crashed client or lost network would."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def next_packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def _fill(self, deadline: float) -> bool:
        """Reads more bytes into the buffer; False on timeout. Raises ConnectionClosed at EOF."""
        if self._eof:
            raise ConnectionClosed("connection closed by server")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([self.sock], [], [], remaining)
        if not ready:
            return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as e:
            self._eof = True
            raise ConnectionClosed(f"connection reset by server: {e}") from None
        if not chunk:
            self._eof = True
            raise ConnectionClosed("connection closed by server (EOF)")
        self._buf += chunk
        return True

    def _try_parse(self) -> Optional[Packet]:
        if len(self._buf) < 2:
            return None
        try:
            rl, used = decode_remaining_length(bytes(self._buf), 1)
        except ValueError as e:
            if "truncated" in str(e):
                return None
            raise
        total = 1 + used + rl
        if len(self._buf) < total:
            return None
        first = self._buf[0]
        body = bytes(self._buf[1 + used : total])
        del self._buf[:total]
        return Packet(type=first >> 4, flags=first & 0x0F, body=body)

    # -- receiving -----------------------------------------------------------------------

    def _recv_wire(self, deadline: float, timeout: float) -> Packet:
        while True:
            p = self._try_parse()
            if p is not None:
                return p
            if not self._fill(deadline):
                raise TimeoutError(f"no packet within {timeout:.1f}s")

    def recv_packet(self, timeout: Optional[float] = None) -> Packet:
        """The next packet, in arrival order (including any set aside by ``expect``);
        TimeoutError if none arrives in ``timeout``, ConnectionClosed at EOF."""
        if self._pending:
            return self._pending.popleft()
        timeout = self.default_timeout if timeout is None else timeout
        return self._recv_wire(time.monotonic() + timeout, timeout)

    def expect(self, packet_type: int, packet_id: Optional[int] = None,
               timeout: Optional[float] = None) -> Packet:
        """Waits for a packet of ``packet_type`` (and ``packet_id`` if given), setting aside
        any other packets (e.g. PUBLISH) for later ``recv_packet`` calls: the spec lets a
        server interleave them (e.g. retained PUBLISHes may precede the SUBACK, 3.8.4)."""
        def matches(p: Packet) -> bool:
            if p.type != packet_type:
                return False
            return packet_id is None or (len(p.body) >= 2 and struct.unpack_from("!H", p.body)[0] == packet_id)

        for i, p in enumerate(self._pending):
            if matches(p):
                del self._pending[i]
                return p
        timeout = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            p = self._recv_wire(deadline, timeout)
            if matches(p):
                return p
            self._pending.append(p)

    def recv_type(self, packet_type: int, timeout: Optional[float] = None) -> Packet:
        p = self.recv_packet(timeout)
        assert p.type == packet_type, f"expected {PACKET_NAMES[packet_type]}, got {p!r}"
        return p

    def expect_no_packet(self, timeout: float = 0.5) -> None:
        """Asserts nothing arrives for ``timeout`` seconds (the connection may stay open)."""
        try:
            p = self.recv_packet(timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected packet {p!r}")

    def expect_closed(self, timeout: float = 5.0, allow_packets: Sequence[int] = ()) -> list:
        """Asserts the server closes the connection within ``timeout``.

        Packets of the types in ``allow_packets`` may arrive first (they are returned); any
        other packet fails the assertion.
        """
        deadline = time.monotonic() + timeout
        seen = []
        while self._pending:
            p = self._pending.popleft()
            if p.type not in allow_packets:
                raise AssertionError(f"expected the connection to close, got {p!r}")
            seen.append(p)
        while True:
            try:
                p = self._try_parse()
                if p is None:
                    if not self._fill(deadline):
                        raise AssertionError(
                            f"server did not close the connection within {timeout:.1f}s"
                            + (f" (got {seen!r})" if seen else "")
                        )
                    continue
            except ConnectionClosed:
                return seen
            if p.type not in allow_packets:
                raise AssertionError(f"expected the connection to close, got {p!r}")
            seen.append(p)

    def is_open(self, timeout: float = 2.0) -> bool:
        """Round-trips a PINGREQ: True when PINGRESP comes back (other packets are kept)."""
        if not self.try_send(pingreq()):
            return False
        try:
            self.expect(PINGRESP, timeout=timeout)
            return True
        except (ConnectionClosed, TimeoutError):
            return False

    # -- conveniences --------------------------------------------------------------------

    def connect(self, client_id: Text = "", expect_rc: Optional[int] = 0, **kw) -> Optional[Connack]:
        """Sends CONNECT and reads the CONNACK (asserting its return code unless None)."""
        self.send(connect(client_id, **kw))
        ack = decode_connack(self.recv_packet())
        if expect_rc is not None:
            assert ack.return_code == expect_rc, f"CONNACK rc {ack.return_code:#x} != {expect_rc:#x}"
        return ack

    def subscribe(self, topics, packet_id: Optional[int] = None, timeout: Optional[float] = None) -> list:
        """SUBSCRIBE and wait for the SUBACK; returns its return codes."""
        pid = packet_id if packet_id is not None else self.next_packet_id()
        if isinstance(topics, (str, bytes)):
            topics = [(topics, 0)]
        self.send(subscribe(pid, topics))
        ack = decode_suback(self.expect(SUBACK, pid, timeout))
        assert ack.packet_id == pid, f"SUBACK packet id {ack.packet_id} != {pid} (MQTT-3.8.4-2)"
        return ack.return_codes

    def unsubscribe(self, topics, packet_id: Optional[int] = None) -> None:
        pid = packet_id if packet_id is not None else self.next_packet_id()
        if isinstance(topics, (str, bytes)):
            topics = [topics]
        self.send(unsubscribe(pid, topics))
        p = self.expect(UNSUBACK, pid)
        assert decode_packet_id(p) == pid, "UNSUBACK packet id mismatch (MQTT-3.10.4-5)"

    def publish(self, topic: Text, payload: bytes = b"", qos: int = 0, retain: bool = False,
                packet_id: Optional[int] = None, dup: bool = False) -> Optional[int]:
        """Publishes and completes the QoS 1/2 handshake from the sender's side."""
        if qos > 0 and packet_id is None:
            packet_id = self.next_packet_id()
        self.send(publish(topic, payload, qos=qos, retain=retain, packet_id=packet_id, dup=dup))
        if qos == 1:
            p = self.expect(PUBACK, packet_id)
            assert decode_packet_id(p) == packet_id
        elif qos == 2:
            p = self.expect(PUBREC, packet_id)
            assert decode_packet_id(p) == packet_id
            self.send(pubrel(packet_id))
            p = self.expect(PUBCOMP, packet_id)
            assert decode_packet_id(p) == packet_id
        return packet_id

    def recv_publish(self, timeout: Optional[float] = None, ack: bool = False) -> Publish:
        """Reads the next packet, which must be a PUBLISH; optionally acknowledges it
        (PUBACK for QoS 1; PUBREC, PUBREL and PUBCOMP for QoS 2)."""
        msg = self.decode_publish(self.recv_packet(timeout))
        if ack:
            self.ack(msg)
        return msg

    def ack(self, msg: Publish) -> None:
        if msg.qos == 1:
            self.send(puback(msg.packet_id))
        elif msg.qos == 2:
            self.send(pubrec(msg.packet_id))
            p = self.expect(PUBREL, msg.packet_id)
            assert p.flags == 0x02, f"PUBREL flags must be 0010 (MQTT-3.6.1-1), got {p.flags:#x}"
            assert decode_packet_id(p) == msg.packet_id
            self.send(pubcomp(msg.packet_id))

    def recv_publishes(self, n: int, timeout: Optional[float] = None, ack: bool = False) -> list:
        """Reads ``n`` PUBLISH packets (failing on any other packet type)."""
        timeout = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            left = max(deadline - time.monotonic(), 0.001)
            try:
                out.append(self.recv_publish(left, ack=ack))
            except TimeoutError:
                raise AssertionError(f"got {len(out)} of {n} PUBLISHes: {out!r}") from None
        return out

    def collect_publishes(self, quiet: float = 0.5, ack: bool = False, limit: int = 100_000) -> list:
        """Reads PUBLISH packets until none arrives for ``quiet`` seconds."""
        out = []
        while len(out) < limit:
            try:
                out.append(self.recv_publish(quiet, ack=ack))
            except TimeoutError:
                break
        return out

    def ping(self, timeout: Optional[float] = None) -> None:
        self.send(pingreq())
        p = self.expect(PINGRESP, timeout=timeout)
        assert p.flags == 0 and p.body == b"", f"malformed PINGRESP {p!r}"

    def disconnect(self) -> None:
        self.try_send(disconnect())
        self.close()
