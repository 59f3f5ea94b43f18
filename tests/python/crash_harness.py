#!/usr/bin/env python3
"""Crash test of a broker's persistence: traffic, SIGKILL at random moments, restart, check.

    python tests/python/crash_harness.py --broker starling|mosquitto --kills 20 --seed N \\
        [--mode sync|async|off|none] [--mosquitto-option 'autosave_interval 1'] [--json out.json]

Importable: ``run_crash(CrashConfig(...))`` returns the result dict (``test_persistence_crash.py``).

The scenario (all on 127.0.0.1, one broker started by us on a free port, killed by its pid):

* Publishers ``p0``..``p3`` with persistent sessions (3.1.1 ``clean_session=False``, 5.0
  ``clean_start=False`` with Session Expiry 3600 s), each on its own topic: p0 (3.1.1) and p1
  (5.0) at QoS 1, p2 (3.1.1) and p3 (5.0) at QoS 2. Payload ``p2:123``: publisher and
  sequence number. At most ``window`` unfinished messages each, paced at ``rate`` per second.
* ``r`` (5.0) sets retained values (QoS 1, retain) on ``retained/0..3``, round-robin, payload
  ``r:SEQ``; topic 0 is updated to the end, 1 until 2/3 of the kills, 2 until 1/3, 3 only
  before the first kill, so that the older values must survive many kills.
* Persistent subscribers to ``data/#``: ``steady`` ones (online but for the kills), ``flap``
  ones (also dropped, cleanly or not, and back at random moments in a phase) and ``offline``
  ones (away for 1 to 4 whole phases, so their queues build up in the broker, back at a random
  moment). Both protocol versions, subscribed at QoS 1 and QoS 2.
* ``kills`` times: traffic for a random time (``phase_s``), then SIGKILL (or SIGTERM with
  ``stop="term"``), restart on the same port and store directory, every client that should
  be online reconnects; each wait is for a condition (the port accepting, a CONNACK, the
  close of every connection), with ``timeout_s`` as the failure bound, never a fixed sleep.
* End: publishers stop and wait until paho has finished every message; every subscriber
  comes back; each publisher publishes a sentinel ``pN:END`` at its own QoS on its own topic,
  and each subscriber waits for the sentinel of every publisher: the broker keeps one
  publisher's messages on one topic at one QoS in order (MQTT-4.6.0-6), so whatever the
  broker still had for it arrives first. Then a fresh client reads the retained values.

What counts as acknowledged (recorded here, in the harness process, never asked of the
broker): QoS 1, a PUBACK (v5: with a reason code below 0x80); QoS 2, a PUBREC (v5: below
0x80), the point where the receiver "has accepted ownership" (section 4.3.3 of 3.1.1 and 5.0).
paho's ``on_publish`` fires only at PUBCOMP, so ``_Client`` below reads the PUBREC itself.

Checks (the result dict; ``summary()`` prints it):
* ``lost``: every acknowledged message must reach every subscriber at least once (all of them
  subscribed before the first publish and never unsubscribed; a subscription the broker
  forgot with a lost session counts, since the subscriber did nothing to end it).
* ``duplicates_qos2``: an acknowledged QoS 2 message must reach a QoS 2 subscriber's
  application exactly once. paho delivers a QoS 2 message on PUBREL and keeps the messages
  it has PUBREC'd but not yet seen released (``_in_messages``, by packet id) across
  reconnects when the session is not clean (3.1.1 ``clean_session=False``; 5.0
  ``clean_start=False``: ``_messages_reconnect_reset_in`` keeps QoS 2 entries). So a
  re-sent PUBLISH before PUBREL (DUP, same packet id) replaces the stored one and is
  delivered once, and a PUBREL re-sent after a restart delivers it. This needs the same
  paho ``Client`` object for the whole run, which ``Peer`` keeps: a new object would forget
  those entries and then *lose* the message (paho answers a PUBREL for an unknown packet id
  with PUBCOMP and delivers nothing, paho issue #284), a loss the client library would cause.
  A duplicate at the application therefore comes from the broker: it re-sent a PUBLISH after
  it had sent PUBREL for it (it lost the PUBREC it had been given), or routed a publisher's
  re-sent DUP PUBLISH a second time (it lost the inbound packet id it had PUBREC'd).
* ``sessions_lost``: every CONNACK after a client's first one must have session present 1.
* ``retained_wrong``: per topic, the value must be the one whose PUBACK arrived last (the
  broker acknowledges in the order it applies, MQTT-4.6.0-2), or one never acknowledged (sent
  or re-sent but its PUBACK lost in a kill); absent only if nothing was acknowledged.
* ``unexpected``: a payload that was never published (corruption).
* ``lost_outside_window`` / ``sessions_lost_outside_window`` (with ``loss_window_s``): lost
  messages acknowledged, and lost sessions begun, more than that long before the kill that
  lost them (async mode may lose only its flush window).

The seed fixes the schedule (phase lengths, who drops, who stays away, when); thread timing
still varies from run to run, so a failure is re-run with its seed, not replayed exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from clients import shutdown_socket  # noqa: E402
from helpers import PersistentBroker  # noqa: E402

SESSION_EXPIRY_S = 3600


class HarnessError(AssertionError):
    """The run could not go on (a broker that did not restart, a CONNACK that never came)."""


@dataclass
class CrashConfig:
    broker: str = "starling"            # "starling" | "mosquitto"
    kills: int = 20
    seed: int = 0
    stop: str = "kill"                  # "kill": SIGKILL; "term": SIGTERM, a clean stop
    # Starling's [persistence] keys (path is added), or None: no section (nothing kept).
    # For Mosquitto any dict means `persistence true`.
    persistence: Optional[dict] = field(default_factory=lambda: {"mode": "sync"})
    mosquitto_options: tuple = ()       # extra mosquitto.conf lines
    rate: float = 40.0                  # messages per second per publisher
    window: int = 10                    # unfinished messages per publisher at most
    phase_s: tuple = (0.2, 2.0)         # traffic between two kills: uniform in this range
    loss_window_s: Optional[float] = None
    timeout_s: float = 60.0             # bound of every wait (reached only on a failure)
    event_loops: Optional[int] = None
    workdir: Optional[str] = None       # kept when given; a temporary one is removed
    verbose: bool = True


def _say(cfg: CrashConfig, text: str) -> None:
    if cfg.verbose:
        print(f"[crash] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


class _Client(mqtt.Client):
    """paho's Client telling its owner of every PUBREC for a message it is publishing
    (``on_pubrec(mid, reason)``): paho's own ``on_publish`` fires for QoS 2 only at PUBCOMP.
    Relies on paho 2.2's packet handler (pinned in requirements.txt): ``_in_packet["packet"]``
    is the variable header onward, ``_out_messages`` the unfinished messages by packet id."""

    on_pubrec = None

    def _handle_pubrec(self):
        packet = self._in_packet["packet"]
        if self.on_pubrec is not None and len(packet) >= 2:
            mid = struct.unpack("!H", bytes(packet[:2]))[0]
            reason = packet[2] if self._protocol == mqtt.MQTTv5 and len(packet) > 2 else 0
            if mid in self._out_messages:  # as paho itself ignores a PUBREC it is not awaiting
                self.on_pubrec(mid, reason)
        return super()._handle_pubrec()


def _reason(rc) -> int:
    return rc.value if hasattr(rc, "value") else int(rc)


class Peer:
    """One client of the scenario: one paho ``Client`` object for the whole run (its QoS 2
    state must outlive reconnects), connected and reconnected by the controller thread."""

    def __init__(self, name: str, protocol: int, tag: str, broker):
        self.name, self.v5, self.broker = name, protocol == 5, broker
        self.client = _Client(CallbackAPIVersion.VERSION2, client_id=f"{tag}-{name}",
                              clean_session=None if self.v5 else False,
                              protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
                              reconnect_on_failure=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.cv = threading.Condition()
        self.io_lock = threading.Lock()   # never inside publish() while (re)connecting
        self.connack = threading.Event()
        self.closed = threading.Event()
        self.closed.set()
        self.online = False
        self.connects = 0
        self.session_lost = 0
        self.session_since = 0.0
        self.losses: list = []            # (CONNACK time, when the lost session began)
        self.rc: Optional[int] = None
        self.session_present = False

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.rc, self.session_present = _reason(reason_code), bool(flags.session_present)
        with self.cv:
            self.online = self.rc == 0
            self.cv.notify_all()
        self.connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.cv:
            self.online = False
            self.cv.notify_all()
        self.closed.set()

    def begin_connect(self, timeout: float) -> None:
        """Sends CONNECT (the first time a persistent-session CONNECT, then paho's reconnect,
        which re-sends unfinished messages after the CONNACK) and starts the network thread."""
        self.connack.clear()
        self.closed.clear()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.io_lock:
                    if self.connects == 0 and self.v5:
                        props = Properties(PacketTypes.CONNECT)
                        props.SessionExpiryInterval = SESSION_EXPIRY_S
                        self.client.connect(self.broker.host, self.broker.port, keepalive=60,
                                            clean_start=False, properties=props)
                    elif self.connects == 0:
                        self.client.connect(self.broker.host, self.broker.port, keepalive=60)
                    else:
                        self.client.reconnect()
                break
            except OSError as e:  # the broker is up (its port accepted); a refusal is a failure
                if time.monotonic() > deadline:
                    raise HarnessError(f"{self.name}: cannot connect: {e}") from None
                time.sleep(0.05)
        self.client.loop_start()

    def finish_connect(self, timeout: float) -> bool:
        """Waits for the CONNACK; returns whether a session that should exist was lost."""
        if not self.connack.wait(timeout):
            raise HarnessError(f"{self.name}: no CONNACK within {timeout}s")
        if self.rc != 0:
            raise HarnessError(f"{self.name}: CONNACK refused the connection ({self.rc})")
        self.connects += 1
        lost = self.connects > 1 and not self.session_present
        now = time.monotonic()
        if lost:
            self.session_lost += 1
            self.losses.append((now, self.session_since))
        if lost or self.connects == 1:
            self.session_since = now  # when this session began
        return lost

    def drop(self, clean: bool, timeout: float) -> None:
        """Leaves: a DISCONNECT (the session stays: expiry 3600 s / clean session false) or a
        closed socket without one, as a crashed client would."""
        if clean:
            self.client.disconnect()
        else:
            shutdown_socket(self.client)
        self.await_closed(timeout)

    def await_closed(self, timeout: float) -> None:
        if not self.closed.wait(timeout):
            raise HarnessError(f"{self.name}: connection not closed within {timeout}s")
        self.client.loop_stop()  # joins the network thread, which has returned

    def close(self) -> None:
        try:
            self.client.disconnect()
            self.closed.wait(5)
            self.client.loop_stop()
        except Exception:
            pass


class Publisher(Peer):
    """Publishes numbered messages from its own thread while online. ``sent``: seq -> topic;
    ``acked``: seq -> monotonic time of the acknowledgement (see the module docstring);
    ``ack_serial``: seq -> order of acknowledgement; ``done``: seqs paho has finished
    (PUBACK / PUBCOMP)."""

    def __init__(self, name, protocol, tag, broker, qos, topics, cfg):
        super().__init__(name, protocol, tag, broker)
        self.qos, self.topics, self.cfg = qos, list(topics), cfg
        self.active = list(topics)        # topics still being published to
        self.retain = name == "r"
        self.seq = 0
        self.sent: dict = {}
        self.acked: dict = {}
        self.ack_serial: dict = {}
        self.refused: dict = {}
        self.done: set = set()
        self.mid_seq: dict = {}
        self.early: dict = {}             # events for a mid publish() has not returned yet
        self.stopping = False
        self.client.on_publish = self._on_publish
        self.client.on_pubrec = self._on_pubrec
        self.thread = threading.Thread(target=self._run, name=f"crash-{name}", daemon=True)

    # -- acknowledgements (paho's network thread) --------------------------------------------

    def _event(self, mid: int, kind: str, reason: int) -> None:
        now = time.monotonic()
        with self.cv:
            seq = self.mid_seq.get(mid)
            if seq is None:
                self.early.setdefault(mid, []).append((kind, reason, now))
            else:
                self._apply(seq, kind, reason, now)
            self.cv.notify_all()

    def _apply(self, seq: int, kind: str, reason: int, now: float) -> None:
        if kind == "ack" and seq not in self.acked and seq not in self.refused:
            if reason >= 0x80:
                self.refused[seq] = reason
            else:
                self.acked[seq] = now
                self.ack_serial[seq] = len(self.ack_serial)
        elif kind == "done":
            self.done.add(seq)
            self.mid_seq = {m: s for m, s in self.mid_seq.items() if s != seq}

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if self.qos == 1:  # PUBACK: the acknowledgement and the end
            self._event(mid, "ack", _reason(reason_code))
        # QoS 2: PUBCOMP ends it (its reason may be 0x92 after a restart: the PUBREC counted)
        self._event(mid, "done", 0)

    def _on_pubrec(self, mid: int, reason: int) -> None:
        if self.qos == 2:
            self._event(mid, "ack", reason)

    # -- publishing (own thread) ---------------------------------------------------------------

    def unfinished(self) -> int:
        return len(self.sent) - len(self.done)

    def _run(self) -> None:
        pace = 1.0 / self.cfg.rate
        next_t = time.monotonic()
        while True:
            with self.cv:
                while not self.stopping and not (self.online and self.unfinished() < self.cfg.window):
                    self.cv.wait(0.5)
                if self.stopping:
                    return
                seq = self.seq + 1
                topic = self.active[seq % len(self.active)]
            payload = f"{self.name}:{seq}".encode()
            with self.io_lock:  # not while the controller reconnects this client
                if not self.online:
                    continue
                info = self.client.publish(topic, payload, qos=self.qos, retain=self.retain)
            with self.cv:
                self.seq = seq
                self.sent[seq] = topic
                self.mid_seq[info.mid] = seq
                for kind, reason, t in self.early.pop(info.mid, []):
                    self._apply(seq, kind, reason, t)
            next_t = max(next_t + pace, time.monotonic() - 1.0)
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the load, not a wait for anything

    def stop_publishing(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        self.thread.join(30)

    def wait_finished(self, timeout: float) -> int:
        """Waits until paho has finished every message; returns how many it has not."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while self.unfinished() and time.monotonic() < deadline:
                self.cv.wait(0.5)
            return self.unfinished()

    def publish_sentinel(self, timeout: float) -> None:
        with self.io_lock:
            info = self.client.publish(self.topics[0], f"{self.name}:END".encode(), qos=self.qos)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise HarnessError(f"{self.name}: sentinel not acknowledged within {timeout}s")


class Subscriber(Peer):
    """A persistent subscriber to every publisher's topic; counts what its application gets."""

    def __init__(self, name, protocol, tag, broker, qos, role, topic_filter):
        super().__init__(name, protocol, tag, broker)
        self.qos, self.role, self.filter = qos, role, topic_filter
        self.counts: Counter = Counter()   # (publisher, seq) -> deliveries to on_message
        self.how: dict = {}
        self.ends: set = set()
        self.unparsed: list = []
        self.away = 0                      # offline role: phases left away
        self._suback: dict = {}
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_message(self, client, userdata, msg):
        who, _, seq = msg.payload.decode(errors="replace").partition(":")
        with self.cv:
            if seq == "END":
                self.ends.add(who)
            elif seq.isdigit():
                key = (who, int(seq))
                self.counts[key] += 1
                # how each copy came: connection number, packet id, DUP flag (for examples)
                self.how.setdefault(key, []).append((self.connects, msg.mid, int(msg.dup)))
            else:
                self.unparsed.append(msg.payload)
            self.cv.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        with self.cv:
            self._suback[mid] = [_reason(rc) for rc in reason_code_list]
            self.cv.notify_all()

    def subscribe(self, timeout: float) -> None:
        rc, mid = self.client.subscribe(self.filter, self.qos)
        deadline = time.monotonic() + timeout
        with self.cv:
            while mid not in self._suback:
                if not self.cv.wait(max(0.0, deadline - time.monotonic())):
                    raise HarnessError(f"{self.name}: no SUBACK within {timeout}s")
            granted = self._suback.pop(mid)
        if granted != [self.qos]:
            raise HarnessError(f"{self.name}: SUBACK {granted}, asked QoS {self.qos}")

    def wait_sentinels(self, names: set, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cv:
            while not names <= self.ends:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
            return True


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

DATA_PUBLISHERS = [("p0", 4, 1), ("p1", 5, 1), ("p2", 4, 2), ("p3", 5, 2)]
SUBSCRIBERS = [  # name, protocol, subscription QoS, role
    ("s0-steady-v3-q2", 4, 2, "steady"), ("s1-steady-v5-q1", 5, 1, "steady"),
    ("s2-flap-v3-q1", 4, 1, "flap"), ("s3-flap-v5-q2", 5, 2, "flap"),
    ("s4-offline-v3-q2", 4, 2, "offline"), ("s5-offline-v5-q2", 5, 2, "offline"),
    ("s6-offline-v3-q1", 4, 1, "offline"),
]
RETAINED_TOPICS = 4


class CrashRun:
    def __init__(self, cfg: CrashConfig):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.tag = f"crash{cfg.seed}-{os.getpid()}-{time.time_ns() % 10**6}"
        self._own_workdir = cfg.workdir is None
        self.workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix=f"crash-{cfg.broker}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = PersistentBroker(cfg.broker, self.workdir, persistence=cfg.persistence,
                                       mosquitto_options=cfg.mosquitto_options,
                                       event_loops=cfg.event_loops)
        root = f"crash/{self.tag}"
        self.publishers = [Publisher(n, proto, self.tag, self.broker, q, [f"{root}/data/{n}"], cfg)
                           for n, proto, q in DATA_PUBLISHERS]
        self.retainer = Publisher("r", 5, self.tag, self.broker, 1,
                                  [f"{root}/retained/{k}" for k in range(RETAINED_TOPICS)], cfg)
        # retained/k is published to until kill number retained_until[k]
        n = cfg.kills
        self.retained_until = [n + 1, (2 * n) // 3, n // 3, 0]
        self.probe_topic = f"{root}/retained-probe"
        self.subscribers = [Subscriber(n, proto, self.tag, self.broker, q, role, f"{root}/data/#")
                            for n, proto, q, role in SUBSCRIBERS]
        self.kills: list = []  # (monotonic time of the kill, time the broker was back)

    @property
    def peers(self):
        return self.publishers + [self.retainer] + self.subscribers

    # -- phases ------------------------------------------------------------------------------

    def _connect_all(self, peers) -> None:
        t = self.cfg.timeout_s
        for p in peers:
            p.begin_connect(t)
        for p in peers:
            if p.finish_connect(t) and isinstance(p, Subscriber):
                p.subscribe(t)  # the broker forgot it: subscribe again to go on (counted lost)

    def _join(self, sub: Subscriber) -> None:
        if not sub.online and sub.closed.is_set():
            self._connect_all([sub])

    def setup(self) -> None:
        if self.cfg.broker == "starling":
            self.broker.check_config()
        self.broker.start()
        t = self.cfg.timeout_s
        self._connect_all(self.subscribers)
        for s in self.subscribers:
            s.subscribe(t)
        for s in self.subscribers:
            if s.role == "offline":
                s.away = self.rng.randint(1, 4)
                s.drop(clean=True, timeout=t)
        self._connect_all(self.publishers + [self.retainer])
        for p in self.publishers + [self.retainer]:
            p.thread.start()

    def phase(self, k: int) -> float:
        """Traffic for a random time, with the flapping and returning subscribers' moves."""
        rng, t = self.rng, self.cfg.timeout_s
        duration = rng.uniform(*self.cfg.phase_s)
        events = []
        for s in self.subscribers:
            if s.role == "flap" and rng.random() < 0.7:
                at = rng.uniform(0, duration)
                events.append((at, "drop", s, rng.random() < 0.5))
                events.append((at + rng.uniform(0.02, 0.4), "join", s, None))
            elif s.role == "offline" and not s.online and s.away == 0:
                events.append((rng.uniform(0, duration), "join", s, None))
        start = time.monotonic()
        for at, action, s, clean in sorted(events, key=lambda e: e[0]):
            if at >= duration:
                continue
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule's random moment, not a wait for a condition
            if action == "drop" and s.online:
                s.drop(clean=clean, timeout=t)
            elif action == "join":
                self._join(s)
        delay = start + duration - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the random moment of the kill
        return duration

    def crash_and_restart(self, k: int) -> None:
        t = self.cfg.timeout_s
        online = [p for p in self.peers if not p.closed.is_set()]
        killed = time.monotonic()
        if self.cfg.stop == "term":
            self.broker.terminate(t)
        else:
            self.broker.crash()
        for p in online:
            p.await_closed(t)
        try:
            self.broker.restart()  # same port, same store directory
        except RuntimeError as e:
            raise HarnessError(f"restart {k + 1} failed: {e}") from None
        self.kills.append((killed, time.monotonic()))
        with self.retainer.cv:
            active = [tp for i, tp in enumerate(self.retainer.topics) if self.retained_until[i] > k + 1]
            self.retainer.active = active or self.retainer.topics[:1]
        back = list(self.publishers) + [self.retainer]
        for s in self.subscribers:
            if s.role != "offline":
                back.append(s)
            elif s in online:
                if self.rng.random() < 0.5:
                    s.away = self.rng.randint(1, 4)  # stays away from now on
                else:
                    back.append(s)
            else:
                s.away = max(0, s.away - 1)
        self._connect_all([p for p in back if p.closed.is_set()])

    def finish(self) -> dict:
        t = self.cfg.timeout_s
        for p in self.publishers + [self.retainer]:
            p.stop_publishing()
        unfinished = {p.name: p.wait_finished(t) for p in self.publishers + [self.retainer]}
        for s in self.subscribers:
            self._join(s)
        for p in self.publishers:
            p.publish_sentinel(t)
        names = {p.name for p in self.publishers}
        drained = {s.name: s.wait_sentinels(names, t) for s in self.subscribers}
        retained = self.read_retained()
        return {"unfinished": unfinished, "drained": drained, "retained": retained}

    def read_retained(self) -> dict:
        """Reads every retained/# value with a fresh clean client. The barrier: after that
        SUBSCRIBE, a second one to a probe topic whose retained value was set last; the broker
        sends the first subscription's retained messages before the second's."""
        t = self.cfg.timeout_s
        with self.retainer.io_lock:
            info = self.retainer.client.publish(self.probe_topic, b"probe", qos=1, retain=True)
        info.wait_for_publish(t)
        got, cv = {}, threading.Condition()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.tag}-reader",
                        protocol=mqtt.MQTTv311, clean_session=True)

        def on_message(client, userdata, msg):
            with cv:
                got[msg.topic] = msg.payload.decode(errors="replace") if msg.retain else "(live)"
                cv.notify_all()
        c.on_message = on_message
        c.connect(self.broker.host, self.broker.port)
        c.loop_start()
        try:
            c.subscribe(f"crash/{self.tag}/retained/#", 1)
            c.subscribe(self.probe_topic, 1)
            wanted = set(self.retainer.topics)
            deadline = time.monotonic() + t
            with cv:
                while self.probe_topic not in got and time.monotonic() < deadline:
                    cv.wait(0.5)
                late = time.monotonic() + 2.0  # a missing value: a little more, then wrong
                while not wanted <= set(got) and time.monotonic() < late:
                    cv.wait(0.2)
                return {tp: got.get(tp) for tp in self.retainer.topics}
        finally:
            c.disconnect()
            c.loop_stop()

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> dict:
        cfg = self.cfg
        _say(cfg, f"seed={cfg.seed} broker={cfg.broker} kills={cfg.kills} stop={cfg.stop} "
                  f"persistence={cfg.persistence} mosquitto_options={list(cfg.mosquitto_options)} "
                  f"workdir={self.workdir} (reproduce with --seed {cfg.seed})")
        start = time.monotonic()
        try:
            self.setup()
            for k in range(cfg.kills):
                d = self.phase(k)
                self.crash_and_restart(k)
                acked = sum(len(p.acked) for p in self.publishers)
                _say(cfg, f"kill {k + 1}/{cfg.kills} after {d:.2f}s; acknowledged so far {acked}; "
                          f"sessions lost so far {sum(p.session_lost for p in self.peers)}")
            end = self.finish()
            return self.results(end, time.monotonic() - start)
        finally:
            for p in self.peers:
                p.stopping = True
            for p in self.peers:
                p.close()
            self.broker.stop()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _next_kill(self, t: float) -> Optional[float]:
        """The kill an acknowledgement received at ``t`` preceded: the first one the broker
        had not yet come back from by ``t`` (paho may read an ack the broker sent just before
        its kill a little after it; no ack arrives between a kill and the restart)."""
        return next((killed for killed, back in self.kills if back >= t), None)

    def results(self, end: dict, duration: float) -> dict:
        cfg = self.cfg
        acknowledged = {"qos1": 0, "qos2": 0}
        published = {"qos1": 0, "qos2": 0}
        for p in self.publishers:
            acknowledged[f"qos{p.qos}"] += len(p.acked)
            published[f"qos{p.qos}"] += len(p.sent)
        lost, dups2, dups1, unexpected, late_ok, outside = {}, {}, 0, 0, 0, 0
        examples = {}  # a few lost and duplicated messages per subscriber, to look up in logs
        for s in self.subscribers:
            lost[s.name] = {"qos1": 0, "qos2": 0}
            dups2[s.name] = 0
            ex = examples[s.name] = {"lost": [], "duplicated_qos2": []}
            for p in self.publishers:
                got = {seq: n for (who, seq), n in s.counts.items() if who == p.name}
                missing = sorted(seq for seq in p.acked if seq not in got)
                lost[s.name][f"qos{p.qos}"] += len(missing)
                ex["lost"] += [f"{p.name}:{seq}" for seq in missing[:3]]
                if p.qos == 2 and s.qos == 2:
                    ex["duplicated_qos2"] += [f"{p.name}:{seq} as (connection, packet id, dup) "
                                              f"{s.how[(p.name, seq)]}"
                                              for seq, n in sorted(got.items()) if n > 1][:3]
                for seq in missing:
                    nk = self._next_kill(p.acked[seq])
                    if cfg.loss_window_s is None or nk is None or nk - p.acked[seq] > cfg.loss_window_s:
                        outside += 1
                extra = sum(n - 1 for n in got.values() if n > 1)
                if p.qos == 2 and s.qos == 2:
                    dups2[s.name] += extra
                else:
                    dups1 += extra
                unexpected += sum(1 for seq in got if seq not in p.sent)
                late_ok += sum(1 for seq in got if seq in p.sent and seq not in p.acked)
            unexpected += len(s.unparsed) + len(s.ends - {p.name for p in self.publishers})
        retained = self.check_retained(end["retained"])
        sessions = {p.name: p.session_lost for p in self.peers if p.session_lost}
        sessions_outside = 0  # lost sessions that began longer than the window before a kill
        for p in self.peers:
            for at, since in p.losses:
                last_kill = max((killed for killed, _ in self.kills if killed < at), default=None)
                if cfg.loss_window_s is None or last_kill is None or last_kill - since > cfg.loss_window_s:
                    sessions_outside += 1
        return {
            "broker": cfg.broker, "seed": cfg.seed, "stop": cfg.stop, "kills": len(self.kills),
            "persistence": cfg.persistence, "mosquitto_options": list(cfg.mosquitto_options),
            "duration_s": round(duration, 1),
            "published": published, "acknowledged": acknowledged,
            "refused": sum(len(p.refused) for p in self.publishers),
            "lost": lost,
            "lost_total": {q: sum(v[q] for v in lost.values()) for q in ("qos1", "qos2")},
            "lost_outside_window": outside if cfg.loss_window_s is not None else None,
            "loss_window_s": cfg.loss_window_s,
            "duplicates_qos2": dups2, "duplicates_qos2_total": sum(dups2.values()),
            "duplicates_qos1_total": dups1,  # allowed: at least once
            "delivered_unacknowledged": late_ok,  # allowed: acknowledgement lost in a kill
            "unexpected": unexpected,
            "sessions_lost": sum(sessions.values()), "sessions_lost_by_client": sessions,
            "sessions_lost_outside_window": sessions_outside if cfg.loss_window_s is not None else None,
            "connects": sum(p.connects for p in self.peers),
            "retained": retained, "retained_wrong": sum(1 for r in retained.values() if not r["ok"]),
            "unfinished_publishes": end["unfinished"],
            "examples": {k: v for k, v in examples.items() if v["lost"] or v["duplicated_qos2"]},
            "undrained_subscribers": sorted(n for n, ok in end["drained"].items() if not ok),
        }

    def check_retained(self, got: dict) -> dict:
        r = self.retainer
        out = {}
        for topic in r.topics:
            acked = [s for s in r.acked if r.sent[s] == topic]
            unacked = sorted(s for s, tp in r.sent.items() if tp == topic and s not in r.acked)
            last = max(acked, key=lambda s: r.ack_serial[s]) if acked else None
            allowed = ([f"r:{last}"] if last is not None else [None]) + [f"r:{s}" for s in unacked]
            value = got.get(topic)
            out[topic.rsplit("/", 1)[1]] = {"got": value, "last_acknowledged": last,
                                             "unacknowledged": unacked, "ok": value in allowed}
        return out


def run_crash(cfg: CrashConfig) -> dict:
    return CrashRun(cfg).run()


def summary(r: dict) -> str:
    kept = r["persistence"] if r["broker"] == "starling" else r["persistence"] is not None
    lines = [f"{r['broker']} seed={r['seed']} kills={r['kills']} stop={r['stop']} "
             f"persistence={kept} {' '.join(r['mosquitto_options'])} "
             f"in {r['duration_s']}s",
             f"  acknowledged qos1={r['acknowledged']['qos1']} qos2={r['acknowledged']['qos2']} "
             f"(published {r['published']['qos1']}/{r['published']['qos2']}, refused {r['refused']})",
             f"  lost qos1={r['lost_total']['qos1']} qos2={r['lost_total']['qos2']} "
             f"(outside the loss window: {r['lost_outside_window']})"]
    for name, v in r["lost"].items():
        if v["qos1"] or v["qos2"] or r["duplicates_qos2"][name]:
            lines.append(f"    {name}: lost qos1={v['qos1']} qos2={v['qos2']} "
                         f"qos2 duplicates={r['duplicates_qos2'][name]}")
    lines += [f"  qos2 duplicates={r['duplicates_qos2_total']} (qos1 duplicates, allowed: "
              f"{r['duplicates_qos1_total']}); unexpected payloads={r['unexpected']}",
              f"  sessions lost={r['sessions_lost']} of {r['connects']} connects "
              f"(outside the loss window: {r['sessions_lost_outside_window']}) "
              f"{r['sessions_lost_by_client'] or ''}",
              f"  retained wrong={r['retained_wrong']}: " + ", ".join(
                  f"{k}={v['got']} (last acked r:{v['last_acknowledged']})" for k, v in r["retained"].items()),
              f"  unfinished publishes={sum(r['unfinished_publishes'].values())}; "
              f"undrained subscribers={r['undrained_subscribers']}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", choices=["starling", "mosquitto"], default="starling")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None, help="default: time-based, printed")
    ap.add_argument("--mode", choices=["sync", "async", "off", "none"], default="sync",
                    help="Starling's [persistence] mode ('none': no section); Mosquitto: "
                         "'none' or 'off' is persistence false, else true")
    ap.add_argument("--flush-interval-ms", type=int, default=None, help="Starling async mode")
    ap.add_argument("--mosquitto-option", action="append", default=[],
                    help="an extra mosquitto.conf line, e.g. 'autosave_interval 1' (repeatable)")
    ap.add_argument("--stop", choices=["kill", "term"], default="kill")
    ap.add_argument("--rate", type=float, default=CrashConfig.rate)
    ap.add_argument("--loss-window-s", type=float, default=None)
    ap.add_argument("--starling-bin", default=None, help="default: $STARLING_BIN or target/release/starling")
    ap.add_argument("--workdir", default=None, help="keep the broker's files here")
    ap.add_argument("--json", default=None, help="write the result dict here")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.starling_bin:
        os.environ["STARLING_BIN"] = a.starling_bin
    seed = a.seed if a.seed is not None else time.time_ns() % 1_000_000_007
    if a.mode == "none" or (a.broker == "mosquitto" and a.mode == "off"):
        persistence = None
    else:
        persistence = {"mode": a.mode}
        if a.flush_interval_ms is not None:
            persistence["flush_interval_ms"] = a.flush_interval_ms
    cfg = CrashConfig(broker=a.broker, kills=a.kills, seed=seed, stop=a.stop, persistence=persistence,
                      mosquitto_options=tuple(a.mosquitto_option), rate=a.rate,
                      loss_window_s=a.loss_window_s, workdir=a.workdir, verbose=not a.quiet)
    print(f"crash_harness: seed={seed}", flush=True)
    # SIGTERM unwinds like Ctrl-C, so that the broker we started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        r = run_crash(cfg)
    except (HarnessError, AssertionError, RuntimeError) as e:
        print(f"crash_harness: seed={seed}: run failed: {e}", file=sys.stderr)
        if a.json:
            Path(a.json).write_text(json.dumps({"config": asdict(cfg), "error": str(e)}, indent=2) + "\n")
        return 2
    print(summary(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
