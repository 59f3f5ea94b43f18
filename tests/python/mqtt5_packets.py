"""Byte-level MQTT 5.0 packet builders, decoders and a raw v5 client.

Builds on ``mqtt_packets`` (the 3.1.1 helpers): the fixed header, Remaining Length varint,
UTF-8 string and binary encoders and ``RawClient`` are reused from there. Section numbers
refer to the OASIS MQTT 5.0 specification.

Properties (2.2.2) are given as a list of ``(property id, value)`` pairs, so a test can repeat a
single-value property or order User Properties on purpose; a ``dict`` is accepted too. The
value's encoding follows the property's type (``PROPERTY_TYPES``); ``raw_properties=`` on the
builders sends a property block verbatim (its length prefix included) for malformed cases.

Decoded properties are a ``Properties`` object: ``props[PROP_X]`` / ``props.get(PROP_X)`` for
single-value properties, ``props.all(PROP_X)`` for the repeatable ones (User Property,
Subscription Identifier), ``props.user`` for the User Properties as a list of pairs.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import mqtt_packets as mp
from mqtt_packets import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    ConnectionClosed,
    Packet,
    RawClient,
    Text,
    decode_remaining_length,
    encode_binary,
    encode_remaining_length,
    encode_string,
    packet,
)

AUTH = 15
mp.PACKET_NAMES.setdefault(AUTH, "AUTH")

# --------------------------------------------------------------------------------------------
# Property identifiers (2.2.2.2) and their types
# --------------------------------------------------------------------------------------------

PROP_PAYLOAD_FORMAT_INDICATOR = 0x01
PROP_MESSAGE_EXPIRY_INTERVAL = 0x02
PROP_CONTENT_TYPE = 0x03
PROP_RESPONSE_TOPIC = 0x08
PROP_CORRELATION_DATA = 0x09
PROP_SUBSCRIPTION_IDENTIFIER = 0x0B
PROP_SESSION_EXPIRY_INTERVAL = 0x11
PROP_ASSIGNED_CLIENT_IDENTIFIER = 0x12
PROP_SERVER_KEEP_ALIVE = 0x13
PROP_AUTHENTICATION_METHOD = 0x15
PROP_AUTHENTICATION_DATA = 0x16
PROP_REQUEST_PROBLEM_INFORMATION = 0x17
PROP_WILL_DELAY_INTERVAL = 0x18
PROP_REQUEST_RESPONSE_INFORMATION = 0x19
PROP_RESPONSE_INFORMATION = 0x1A
PROP_SERVER_REFERENCE = 0x1C
PROP_REASON_STRING = 0x1F
PROP_RECEIVE_MAXIMUM = 0x21
PROP_TOPIC_ALIAS_MAXIMUM = 0x22
PROP_TOPIC_ALIAS = 0x23
PROP_MAXIMUM_QOS = 0x24
PROP_RETAIN_AVAILABLE = 0x25
PROP_USER_PROPERTY = 0x26
PROP_MAXIMUM_PACKET_SIZE = 0x27
PROP_WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
PROP_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A

BYTE, U16, U32, VARINT, STRING, BINARY, PAIR = "byte", "u16", "u32", "varint", "string", "binary", "pair"

PROPERTY_TYPES: Dict[int, str] = {
    PROP_PAYLOAD_FORMAT_INDICATOR: BYTE,
    PROP_MESSAGE_EXPIRY_INTERVAL: U32,
    PROP_CONTENT_TYPE: STRING,
    PROP_RESPONSE_TOPIC: STRING,
    PROP_CORRELATION_DATA: BINARY,
    PROP_SUBSCRIPTION_IDENTIFIER: VARINT,
    PROP_SESSION_EXPIRY_INTERVAL: U32,
    PROP_ASSIGNED_CLIENT_IDENTIFIER: STRING,
    PROP_SERVER_KEEP_ALIVE: U16,
    PROP_AUTHENTICATION_METHOD: STRING,
    PROP_AUTHENTICATION_DATA: BINARY,
    PROP_REQUEST_PROBLEM_INFORMATION: BYTE,
    PROP_WILL_DELAY_INTERVAL: U32,
    PROP_REQUEST_RESPONSE_INFORMATION: BYTE,
    PROP_RESPONSE_INFORMATION: STRING,
    PROP_SERVER_REFERENCE: STRING,
    PROP_REASON_STRING: STRING,
    PROP_RECEIVE_MAXIMUM: U16,
    PROP_TOPIC_ALIAS_MAXIMUM: U16,
    PROP_TOPIC_ALIAS: U16,
    PROP_MAXIMUM_QOS: BYTE,
    PROP_RETAIN_AVAILABLE: BYTE,
    PROP_USER_PROPERTY: PAIR,
    PROP_MAXIMUM_PACKET_SIZE: U32,
    PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: BYTE,
    PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE: BYTE,
    PROP_SHARED_SUBSCRIPTION_AVAILABLE: BYTE,
}
REPEATABLE = {PROP_USER_PROPERTY, PROP_SUBSCRIPTION_IDENTIFIER}

# Reason codes (2.4) used by the tests.
RC_SUCCESS = 0x00
RC_GRANTED_QOS_1 = 0x01
RC_GRANTED_QOS_2 = 0x02
RC_DISCONNECT_WITH_WILL = 0x04
RC_NO_MATCHING_SUBSCRIBERS = 0x10
RC_NO_SUBSCRIPTION_EXISTED = 0x11
RC_CONTINUE_AUTHENTICATION = 0x18
RC_UNSPECIFIED_ERROR = 0x80
RC_MALFORMED_PACKET = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_IMPLEMENTATION_SPECIFIC = 0x83
RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84
RC_CLIENT_ID_NOT_VALID = 0x85
RC_NOT_AUTHORIZED = 0x87
RC_BAD_AUTHENTICATION_METHOD = 0x8C
RC_KEEP_ALIVE_TIMEOUT = 0x8D
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_PACKET_ID_IN_USE = 0x91
RC_PACKET_ID_NOT_FOUND = 0x92
RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93
RC_TOPIC_ALIAS_INVALID = 0x94
RC_PACKET_TOO_LARGE = 0x95
RC_QUOTA_EXCEEDED = 0x97
RC_PAYLOAD_FORMAT_INVALID = 0x99
RC_RETAIN_NOT_SUPPORTED = 0x9A
RC_QOS_NOT_SUPPORTED = 0x9B
RC_SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
RC_SUBSCRIPTION_IDS_NOT_SUPPORTED = 0xA1
RC_SERVER_SHUTTING_DOWN = 0x8B

PropList = Union[None, Dict[int, object], Sequence[Tuple[int, object]]]


# --------------------------------------------------------------------------------------------
# Properties (2.2.2)
# --------------------------------------------------------------------------------------------


def encode_varint(n: int) -> bytes:
    """A Variable Byte Integer (1.5.5): the same encoding as the Remaining Length."""
    return encode_remaining_length(n)


def encode_property(prop_id: int, value, prop_type: Optional[str] = None) -> bytes:
    """One property: its identifier (a varint, in practice one byte) and its value, encoded
    by ``prop_type`` (default: the property's own type; give another to mis-encode it)."""
    kind = prop_type or PROPERTY_TYPES[prop_id]
    head = encode_varint(prop_id)
    if kind == BYTE:
        return head + bytes([value & 0xFF])
    if kind == U16:
        return head + struct.pack("!H", value)
    if kind == U32:
        return head + struct.pack("!I", value)
    if kind == VARINT:
        return head + encode_varint(value)
    if kind == STRING:
        return head + encode_string(value)
    if kind == BINARY:
        return head + encode_binary(value)
    if kind == PAIR:
        k, v = value
        return head + encode_string(k) + encode_string(v)
    raise ValueError(f"unknown property type {kind!r}")


def _prop_items(props: PropList) -> List[Tuple[int, object]]:
    if not props:
        return []
    if isinstance(props, dict):
        out = []
        for k, v in props.items():
            if k in REPEATABLE and isinstance(v, list):
                out += [(k, x) for x in v]
            else:
                out.append((k, v))
        return out
    return list(props)


def encode_properties(props: PropList = None) -> bytes:
    """The property block: its length (a varint) then each property in the order given."""
    body = b"".join(encode_property(k, v) for k, v in _prop_items(props))
    return encode_varint(len(body)) + body


def _props_block(properties: PropList, raw_properties: Optional[bytes]) -> bytes:
    return raw_properties if raw_properties is not None else encode_properties(properties)


class Properties:
    """Decoded properties in wire order."""

    def __init__(self, items: List[Tuple[int, object]]):
        self.items = items

    def get(self, prop_id: int, default=None):
        for k, v in self.items:
            if k == prop_id:
                return v
        return default

    def __getitem__(self, prop_id: int):
        for k, v in self.items:
            if k == prop_id:
                return v
        raise KeyError(f"property {prop_id:#04x} absent (have {self})")

    def __contains__(self, prop_id: int) -> bool:
        return any(k == prop_id for k, _ in self.items)

    def all(self, prop_id: int) -> list:
        return [v for k, v in self.items if k == prop_id]

    @property
    def user(self) -> List[Tuple[str, str]]:
        return self.all(PROP_USER_PROPERTY)

    def ids(self) -> List[int]:
        return [k for k, _ in self.items]

    def __repr__(self) -> str:
        return "Properties(" + ", ".join(f"{k:#04x}={v!r}" for k, v in self.items) + ")"


def _decode_string(data: bytes, pos: int) -> Tuple[str, int]:
    (n,) = struct.unpack_from("!H", data, pos)
    raw = data[pos + 2 : pos + 2 + n]
    assert len(raw) == n, "truncated string"
    return raw.decode("utf-8"), pos + 2 + n


def _decode_binary(data: bytes, pos: int) -> Tuple[bytes, int]:
    (n,) = struct.unpack_from("!H", data, pos)
    raw = data[pos + 2 : pos + 2 + n]
    assert len(raw) == n, "truncated binary data"
    return bytes(raw), pos + 2 + n


def decode_properties(data: bytes, pos: int = 0) -> Tuple[Properties, int]:
    """Decodes the property block at ``pos``; returns (properties, position after it).

    Asserts the server's block is well formed: known identifiers only, no repeated
    single-value property (2.2.2.2)."""
    length, used = decode_remaining_length(data, pos)
    pos += used
    end = pos + length
    assert end <= len(data), f"property length {length} runs past the packet"
    items: List[Tuple[int, object]] = []
    while pos < end:
        prop_id, used = decode_remaining_length(data, pos)
        pos += used
        kind = PROPERTY_TYPES.get(prop_id)
        assert kind is not None, f"server sent unknown property id {prop_id:#x}"
        if kind == BYTE:
            value, pos = data[pos], pos + 1
        elif kind == U16:
            (value,), pos = struct.unpack_from("!H", data, pos), pos + 2
        elif kind == U32:
            (value,), pos = struct.unpack_from("!I", data, pos), pos + 4
        elif kind == VARINT:
            value, used = decode_remaining_length(data, pos)
            pos += used
        elif kind == STRING:
            value, pos = _decode_string(data, pos)
        elif kind == BINARY:
            value, pos = _decode_binary(data, pos)
        else:
            k, pos = _decode_string(data, pos)
            v, pos = _decode_string(data, pos)
            value = (k, v)
        if prop_id not in REPEATABLE:
            assert all(k != prop_id for k, _ in items), f"server repeated property {prop_id:#x} (2.2.2.2)"
        items.append((prop_id, value))
    assert pos == end, "property block length does not match its contents"
    return Properties(items), end


# --------------------------------------------------------------------------------------------
# Client packet builders (3.x of MQTT 5.0)
# --------------------------------------------------------------------------------------------


def connect(
    client_id: Text = "",
    *,
    clean_start: bool = True,
    keepalive: int = 60,
    properties: PropList = None,
    raw_properties: Optional[bytes] = None,
    will_topic: Optional[Text] = None,
    will_payload: bytes = b"",
    will_qos: int = 0,
    will_retain: bool = False,
    will_properties: PropList = None,
    protocol_level: int = 5,
    **kw,
) -> bytes:
    """CONNECT (3.1) with protocol level 5, properties and will properties; ``kw`` as for
    ``mqtt_packets.connect`` (username, password, flags, ...)."""
    return mp.connect(client_id, clean_session=clean_start, keepalive=keepalive, will_topic=will_topic,
                      will_message=will_payload, will_qos=will_qos, will_retain=will_retain,
                      protocol_level=protocol_level, properties=_props_block(properties, raw_properties),
                      will_properties=encode_properties(will_properties), **kw)


def publish(
    topic: Text,
    payload: bytes = b"",
    *,
    properties: PropList = None,
    raw_properties: Optional[bytes] = None,
    **kw,
) -> bytes:
    """PUBLISH (3.3) with properties; ``kw`` as for ``mqtt_packets.publish`` (qos, retain,
    dup, packet_id). ``topic`` may be empty when a Topic Alias is given."""
    return mp.publish(topic, payload, properties=_props_block(properties, raw_properties), **kw)


def ack(packet_type: int, packet_id: int, reason: Optional[int] = None, properties: PropList = None,
        raw_properties: Optional[bytes] = None) -> bytes:
    """PUBACK/PUBREC/PUBREL/PUBCOMP (3.4-3.7). Without a reason code and properties the
    Remaining Length is 2 (reason 0x00 implied); with a reason code only, 3."""
    flags = 0x02 if packet_type == PUBREL else 0
    body = struct.pack("!H", packet_id)
    if reason is not None or properties or raw_properties is not None:
        body += bytes([0 if reason is None else reason])
        if properties or raw_properties is not None:
            body += _props_block(properties, raw_properties)
    return packet(packet_type, flags, body)


def sub_options(qos: int = 0, no_local: bool = False, retain_as_published: bool = False,
                retain_handling: int = 0) -> int:
    """The Subscription Options byte (3.8.3.1)."""
    return (qos & 0x03) | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | (
        (retain_handling & 0x03) << 4)


def subscribe(packet_id: int, topics: Iterable[Union[Tuple[Text, int], Text]], *,
              properties: PropList = None, raw_properties: Optional[bytes] = None,
              subscription_id: Optional[int] = None, flags: int = 0x02) -> bytes:
    """SUBSCRIBE (3.8): ``topics`` is a list of (filter, options byte) or plain filters."""
    if subscription_id is not None:
        properties = [(PROP_SUBSCRIPTION_IDENTIFIER, subscription_id)] + _prop_items(properties)
    body = struct.pack("!H", packet_id) + _props_block(properties, raw_properties)
    for item in topics:
        topic, opts = item if isinstance(item, tuple) else (item, 0)
        body += encode_string(topic) + bytes([opts & 0xFF])
    return packet(SUBSCRIBE, flags, body)


def unsubscribe(packet_id: int, topics: Iterable[Text], *, properties: PropList = None) -> bytes:
    body = struct.pack("!H", packet_id) + encode_properties(properties)
    for topic in topics:
        body += encode_string(topic)
    return packet(UNSUBSCRIBE, 0x02, body)


def disconnect(reason: Optional[int] = None, properties: PropList = None,
               raw_properties: Optional[bytes] = None) -> bytes:
    """DISCONNECT (3.14). With no reason code and no properties the Remaining Length is 0
    (reason 0x00, Normal disconnection: 3.14.2.1)."""
    body = b""
    if reason is not None or properties or raw_properties is not None:
        body = bytes([0 if reason is None else reason])
        if properties or raw_properties is not None:
            body += _props_block(properties, raw_properties)
    return packet(DISCONNECT, 0, body)


def auth(reason: int = RC_CONTINUE_AUTHENTICATION, properties: PropList = None) -> bytes:
    """AUTH (3.15)."""
    body = b""
    if reason or properties:
        body = bytes([reason]) + encode_properties(properties)
    return packet(AUTH, 0, body)


# --------------------------------------------------------------------------------------------
# Decoding what the server sends
# --------------------------------------------------------------------------------------------


@dataclass
class Connack:
    session_present: bool
    reason_code: int
    properties: Properties


@dataclass
class Publish(mp.Publish):
    """A 3.1.1 ``Publish`` plus its v5 properties."""

    properties: Properties = field(default_factory=lambda: Properties([]))

    @property
    def user(self) -> List[Tuple[str, str]]:
        return self.properties.user

    @property
    def subscription_ids(self) -> List[int]:
        return self.properties.all(PROP_SUBSCRIPTION_IDENTIFIER)


@dataclass
class Ack:
    """PUBACK/PUBREC/PUBREL/PUBCOMP, DISCONNECT and AUTH: reason code and properties."""

    type: int
    packet_id: Optional[int]
    reason_code: int
    properties: Properties


@dataclass
class Suback:
    packet_id: int
    reason_codes: list
    properties: Properties


def decode_connack(p: Packet) -> Connack:
    assert p.type == CONNACK, f"expected CONNACK, got {p!r}"
    assert p.flags == 0, f"CONNACK fixed-header flags must be 0, got {p.flags:#x}"
    assert len(p.body) >= 3, f"v5 CONNACK too short: {p!r}"
    assert p.body[0] & 0xFE == 0, "CONNACK acknowledge flags bits 7-1 are reserved (MQTT-3.2.2-1)"
    props, end = decode_properties(p.body, 2)
    assert end == len(p.body), "bytes after the CONNACK properties"
    return Connack(session_present=bool(p.body[0] & 1), reason_code=p.body[1], properties=props)


def decode_publish(p: Packet) -> Publish:
    assert p.type == PUBLISH, f"expected PUBLISH, got {p!r}"
    qos = (p.flags >> 1) & 0x03
    assert qos != 3, "server sent PUBLISH with QoS 3"
    topic, pos = _decode_string(p.body, 0)
    packet_id = None
    if qos > 0:
        (packet_id,) = struct.unpack_from("!H", p.body, pos)
        pos += 2
    props, pos = decode_properties(p.body, pos)
    return Publish(topic=topic, payload=p.body[pos:], qos=qos, retain=bool(p.flags & 1),
                   dup=bool(p.flags & 8), packet_id=packet_id, topic_bytes=topic.encode(),
                   properties=props)


def decode_ack(p: Packet) -> Ack:
    """PUBACK/PUBREC/PUBREL/PUBCOMP (3.4.2): packet id, then an optional reason code and
    optional properties (Remaining Length 2 means reason 0x00)."""
    assert p.type in (PUBACK, PUBREC, PUBREL, PUBCOMP), f"expected a publish ack, got {p!r}"
    assert p.flags == (0x02 if p.type == PUBREL else 0), f"{p.name} flags {p.flags:#x}"
    assert len(p.body) >= 2, f"{p.name} too short"
    (pid,) = struct.unpack_from("!H", p.body, 0)
    if len(p.body) == 2:
        return Ack(p.type, pid, 0, Properties([]))
    if len(p.body) == 3:
        return Ack(p.type, pid, p.body[2], Properties([]))
    props, end = decode_properties(p.body, 3)
    assert end == len(p.body)
    return Ack(p.type, pid, p.body[2], props)


def decode_disconnect(p: Packet) -> Ack:
    """DISCONNECT (3.14.2): Remaining Length 0 means reason 0x00 and no properties."""
    assert p.type == DISCONNECT, f"expected DISCONNECT, got {p!r}"
    assert p.flags == 0, f"DISCONNECT flags must be 0, got {p.flags:#x}"
    if not p.body:
        return Ack(DISCONNECT, None, 0, Properties([]))
    if len(p.body) == 1:
        return Ack(DISCONNECT, None, p.body[0], Properties([]))
    props, end = decode_properties(p.body, 1)
    assert end == len(p.body)
    return Ack(DISCONNECT, None, p.body[0], props)


def decode_auth(p: Packet) -> Ack:
    assert p.type == AUTH, f"expected AUTH, got {p!r}"
    if not p.body:
        return Ack(AUTH, None, 0, Properties([]))
    props, _ = decode_properties(p.body, 1) if len(p.body) > 1 else (Properties([]), 1)
    return Ack(AUTH, None, p.body[0], props)


def decode_suback(p: Packet) -> Suback:
    """SUBACK / UNSUBACK (3.9, 3.11): packet id, properties, one reason code per filter."""
    assert p.type in (SUBACK, UNSUBACK), f"expected SUBACK/UNSUBACK, got {p!r}"
    assert p.flags == 0, f"{p.name} flags must be 0, got {p.flags:#x}"
    (pid,) = struct.unpack_from("!H", p.body, 0)
    props, pos = decode_properties(p.body, 2)
    return Suback(packet_id=pid, reason_codes=list(p.body[pos:]), properties=props)


def packet_size(p: Packet) -> int:
    """Size of the whole packet on the wire (fixed header included), as Maximum Packet
    Size counts it (3.1.2.11.4)."""
    return 1 + len(encode_remaining_length(len(p.body))) + len(p.body)


# --------------------------------------------------------------------------------------------
# Client5: RawClient speaking v5
# --------------------------------------------------------------------------------------------


class Client5(RawClient):
    """``RawClient`` with v5 conveniences: connect/subscribe/publish with properties, v5
    decoders for what comes back, and ``expect_disconnect`` for server-initiated closes."""

    connack: Optional[Connack] = None
    decode_publish = staticmethod(decode_publish)  # recv_publish & co. decode v5 PUBLISHes

    def connect(self, client_id: Text = "", expect_rc: Optional[int] = 0, **kw) -> Connack:
        """Sends a v5 CONNECT (``kw`` as for ``connect()``) and returns the decoded CONNACK."""
        self.send(connect(client_id, **kw))
        ack = decode_connack(self.recv_packet())
        if expect_rc is not None:
            assert ack.reason_code == expect_rc, (
                f"CONNACK reason {ack.reason_code:#x} != {expect_rc:#x} ({ack.properties})")
        self.connack = ack
        return ack

    def subscribe(self, topics, packet_id: Optional[int] = None, timeout: Optional[float] = None,
                  **kw) -> list:
        """SUBSCRIBE and wait for the SUBACK; returns its reason codes. ``topics``: a filter,
        or a list of (filter, options byte); ``kw``: properties / subscription_id."""
        pid = packet_id if packet_id is not None else self.next_packet_id()
        if isinstance(topics, (str, bytes)):
            topics = [(topics, 0)]
        self.send(subscribe(pid, topics, **kw))
        ack = decode_suback(self.expect(SUBACK, pid, timeout))
        assert ack.packet_id == pid, f"SUBACK packet id {ack.packet_id} != {pid}"
        assert len(ack.reason_codes) == len(list(topics)), "one SUBACK reason code per filter (MQTT-3.9.3-1)"
        return ack.reason_codes

    def unsubscribe(self, topics, packet_id: Optional[int] = None) -> list:
        pid = packet_id if packet_id is not None else self.next_packet_id()
        if isinstance(topics, (str, bytes)):
            topics = [topics]
        self.send(unsubscribe(pid, topics))
        return decode_suback(self.expect(UNSUBACK, pid)).reason_codes

    def publish(self, topic: Text, payload: bytes = b"", qos: int = 0, retain: bool = False,
                packet_id: Optional[int] = None, dup: bool = False, properties: PropList = None,
                raw_properties: Optional[bytes] = None, expect_reason: Optional[int] = None) -> Optional[Ack]:
        """Publishes and completes the sender's side of the QoS 1/2 handshake; returns the
        PUBACK (QoS 1) or PUBREC (QoS 2) decoded. ``expect_reason`` asserts its reason code."""
        if qos > 0 and packet_id is None:
            packet_id = self.next_packet_id()
        self.send(publish(topic, payload, qos=qos, retain=retain, packet_id=packet_id, dup=dup,
                          properties=properties, raw_properties=raw_properties))
        if qos == 0:
            return None
        got = decode_ack(self.expect(PUBACK if qos == 1 else PUBREC, packet_id))
        assert got.packet_id == packet_id
        if expect_reason is not None:
            assert got.reason_code == expect_reason, f"{mp.PACKET_NAMES[got.type]} reason {got.reason_code:#x} != {expect_reason:#x}"
        if qos == 2 and got.reason_code < 0x80:
            self.send(ack(PUBREL, packet_id))
            comp = decode_ack(self.expect(PUBCOMP, packet_id))
            assert comp.reason_code == 0, f"PUBCOMP reason {comp.reason_code:#x}"
        return got

    def ack(self, msg: Publish) -> None:
        if msg.qos == 1:
            self.send(mp.puback(msg.packet_id))
        elif msg.qos == 2:
            self.send(mp.pubrec(msg.packet_id))
            rel = decode_ack(self.expect(PUBREL, msg.packet_id))
            assert rel.reason_code == 0, f"PUBREL reason {rel.reason_code:#x}"
            self.send(mp.pubcomp(msg.packet_id))

    def expect_disconnect(self, reasons: Union[int, Sequence[int]], timeout: float = 5.0,
                          allow_packets: Sequence[int] = ()) -> Ack:
        """Waits for a server DISCONNECT with one of ``reasons`` (other packets of the types
        in ``allow_packets`` may come first), then for the connection to close."""
        reasons = (reasons,) if isinstance(reasons, int) else tuple(reasons)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no DISCONNECT within {timeout:.1f}s")
            try:
                p = self.recv_packet(left)
            except ConnectionClosed:
                raise AssertionError(
                    f"connection closed without a DISCONNECT (expected reason {[hex(r) for r in reasons]})"
                ) from None
            except TimeoutError:
                raise AssertionError(f"no DISCONNECT within {timeout:.1f}s") from None
            if p.type == DISCONNECT:
                break
            assert p.type in allow_packets, f"expected DISCONNECT, got {p!r}"
        d = decode_disconnect(p)
        assert d.reason_code in reasons, (
            f"DISCONNECT reason {d.reason_code:#x} not in {[hex(r) for r in reasons]} ({d.properties})")
        assert PROP_SESSION_EXPIRY_INTERVAL not in d.properties, (
            "a server DISCONNECT must not carry Session Expiry Interval (MQTT-3.14.2-2)")
        self.expect_closed(timeout=max(deadline - time.monotonic(), 1.0))
        return d

    def disconnect(self, reason: Optional[int] = None, properties: PropList = None) -> None:
        self.try_send(disconnect(reason, properties))
        self.close()


def connect5(host: str, port: int, client_id: Text = "", timeout: float = 5.0, **kw) -> Client5:
    """A Client5 that has connected (CONNACK 0x00 asserted unless ``expect_rc`` says otherwise)."""
    c = Client5(host, port, timeout=timeout)
    c.connect(client_id, **kw)
    return c
