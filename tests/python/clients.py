"""A small synchronous wrapper around paho-mqtt 2.x (MQTT 3.1.1, or 5.0 with ``protocol=5``).

paho runs its network loop in a thread (``loop_start``); this wrapper turns its callbacks
into blocking calls with timeouts: ``connect`` waits for the CONNACK, ``subscribe`` for the
SUBACK, ``publish`` for the end of the QoS handshake, and received messages land in a queue
read by ``expect_message`` / ``expect_no_message``.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def v5_properties(packet_type: int, values: Optional[dict]) -> Optional[Properties]:
    """paho ``Properties`` for ``packet_type`` from a dict of paho property names."""
    if not values:
        return None
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props



def shutdown_socket(client: mqtt.Client):
    """Shuts a paho client's socket down both ways (no DISCONNECT): its network loop wakes at
    once and sees the connection gone. Returns the socket (None if it had none)."""
    sock = client.socket()
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return sock

class PahoClient:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str = "",
        clean_session: bool = True,
        keepalive: int = 60,
        will: Optional[dict] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        protocol: int = 4,
        clean_start: bool = True,
        connect_properties: Optional[dict] = None,
    ):
        """``protocol`` is the protocol level: 4 (MQTT 3.1.1) or 5 (MQTT 5.0). For 5,
        ``clean_start`` replaces ``clean_session`` and ``connect_properties`` are CONNECT
        properties by paho's names (e.g. ``{"SessionExpiryInterval": 60}``); ``will`` may
        carry ``properties`` the same way."""
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.v5 = protocol == 5
        self.clean_start = clean_start
        self.connect_properties = connect_properties
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if self.v5 else clean_session,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        if will:
            will = dict(will)
            if "properties" in will:
                will["properties"] = v5_properties(PacketTypes.WILLMESSAGE, will["properties"])
            self.client.will_set(**will)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack_rc: Optional[int] = None
        self.connack_properties = None
        self.disconnect_rc: Optional[int] = None
        self.session_present: Optional[bool] = None
        self._suback: dict = {}
        self._suback_cv = threading.Condition()
        self._unsuback: set = set()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self._loop_running = False

    # -- callbacks (paho's thread) ---------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack_rc = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        self.session_present = bool(flags.session_present)
        self.connack_properties = properties
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_rc = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        self.disconnected.set()

    def _on_message(self, client, userdata, message):
        self.messages.put(message)

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        with self._suback_cv:
            self._suback[mid] = [rc.value for rc in reason_code_list]
            self._suback_cv.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, reason_code_list, properties):
        with self._suback_cv:
            self._unsuback.add(mid)
            self._suback_cv.notify_all()

    # -- blocking API ----------------------------------------------------------------------

    def connect(self, timeout: float = 5.0, expect_rc: Optional[int] = 0) -> "PahoClient":
        if self.v5:
            props = v5_properties(PacketTypes.CONNECT, self.connect_properties)
            self.client.connect(self.host, self.port, keepalive=self.keepalive,
                                clean_start=self.clean_start, properties=props)
        else:
            self.client.connect(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        self._loop_running = True
        if not self.connected.wait(timeout):
            raise TimeoutError("no CONNACK")
        if expect_rc is not None:
            assert self.connack_rc == expect_rc, f"CONNACK rc {self.connack_rc} != {expect_rc}"
        return self

    def subscribe(self, topic, qos: int = 0, timeout: float = 5.0, options=None,
                  properties: Optional[dict] = None) -> list:
        """Subscribes (``topic`` may be a list of (filter, qos)); returns the granted QoS list
        (v5: the SUBACK reason codes). v5: ``options`` is a paho ``SubscribeOptions``,
        ``properties`` e.g. ``{"SubscriptionIdentifier": 7}``."""
        kw = {}
        if properties:
            kw["properties"] = v5_properties(PacketTypes.SUBSCRIBE, properties)
        if isinstance(topic, list):
            rc, mid = self.client.subscribe(topic, **kw)
        elif options is not None:
            rc, mid = self.client.subscribe(topic, options=options, **kw)
        else:
            rc, mid = self.client.subscribe(topic, qos, **kw)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        deadline = time.monotonic() + timeout
        with self._suback_cv:
            while mid not in self._suback:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no SUBACK")
                self._suback_cv.wait(left)
            return self._suback.pop(mid)

    def unsubscribe(self, topic, timeout: float = 5.0) -> None:
        rc, mid = self.client.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        deadline = time.monotonic() + timeout
        with self._suback_cv:
            while mid not in self._unsuback:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no UNSUBACK")
                self._suback_cv.wait(left)

    def publish(self, topic: str, payload=b"", qos: int = 0, retain: bool = False,
                timeout: float = 5.0, properties: Optional[dict] = None) -> None:
        """Publishes and waits until paho has finished the QoS handshake (sent, for QoS 0).
        v5: ``properties`` by paho's names, e.g. ``{"ResponseTopic": "r", "UserProperty":
        [("k", "v")]}``."""
        kw = {}
        if properties:
            kw["properties"] = v5_properties(PacketTypes.PUBLISH, properties)
        info = self.client.publish(topic, payload, qos=qos, retain=retain, **kw)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"publish to {topic!r} (QoS {qos}) not completed in {timeout}s"

    def expect_message(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def expect_messages(self, n: int, timeout: float = 5.0) -> list:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {len(out)} of {n} messages: {[m.topic for m in out]}")
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                continue
        return out

    def expect_no_message(self, timeout: float = 0.5) -> None:
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic!r}: {m.payload!r}")

    def drain(self) -> list:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def disconnect(self, timeout: float = 5.0) -> None:
        """A clean DISCONNECT (the will is discarded)."""
        if self._loop_running:
            self.client.disconnect()
            self.disconnected.wait(timeout)
            self.client.loop_stop()
            self._loop_running = False

    def close(self) -> None:
        """Drops the connection without DISCONNECT (the will, if any, is published) and stops
        the loop. shutdown() wakes paho's select at once, so this takes milliseconds."""
        sock = shutdown_socket(self.client)
        if self._loop_running:
            self.client.loop_stop()
            self._loop_running = False
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
