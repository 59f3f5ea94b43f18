"""TLS listeners (``protocol = "tls"``): real clients (``mosquitto_pub``/``mosquitto_sub`` with
``--cafile``/``--cert``/``--key``, paho-mqtt's ``tls_set``, Python's ``ssl``), client
certificates, resumption, ALPN, bad input refused and counted with bystanders unaffected, and
certificates reloaded on SIGHUP without dropping a connection.

Certificates are made at test time with ``openssl`` (``tls_support``). Starling only: the
per-listener metrics and the reload without restart are Starling's.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from helpers import configured, metric_value, promtool_check, wait_for_log, wait_until  # noqa: F401
from mqtt_packets import RawClient, decode_connack
from mqtt_packets import connect as connect_packet
from tls_support import (client_context, make_ca, make_cert, make_server_pki, subject_cn, tls_connect,
                         tls_raw_client)

pytestmark = pytest.mark.starling_only

FAILURES = "starling_listener_handshake_failures_total"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate, client certificates (alice, an expired one, one from an
    untrusted CA) and a second server certificate for reloads."""
    d = tmp_path_factory.mktemp("pki")
    p = make_server_pki(d)
    make_cert(d, "alice", "alice", client=True)
    make_cert(d, "expired", "alice", days=-1, client=True)
    make_cert(d, "renewed", "renewed.localhost", days=200, sans="DNS:localhost,IP:127.0.0.1")
    make_ca(d, name="rogue", cn="Rogue CA")
    make_cert(d, "mallory", "mallory", ca="rogue", client=True)
    return p


def tls_listener(pki, **extra) -> dict:
    return {"protocol": "tls", "cert_file": str(pki.dir / "server.crt"),
            "key_file": str(pki.dir / "server.key"), **extra}


@pytest.fixture
def tls_broker(configured, pki):
    """A broker with a TLS listener (``ports[0]``) and a plain one (``ports[1]``)."""
    broker, _ = configured.start(listeners=[tls_listener(pki), {}], limits={"connect_timeout_ms": 1500})
    return broker


def mqtt_over_tls(broker, port, ctx, client_id: str) -> RawClient:
    c = tls_raw_client(broker.host, port, ctx)
    c.connect(client_id)
    return c


def failures(broker, reason: str) -> float:
    return metric_value(broker.metrics(), FAILURES, reason=reason)


# -- real clients --------------------------------------------------------------------------


def run(cmd: list, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_mosquitto_clients_over_tls_both_ways(tls_broker, pki):
    """mosquitto_sub on TLS receives from mosquitto_pub on plain TCP, and the reverse. The
    message is retained, so the subscriber gets it whenever its subscription lands."""
    tls_port, tcp_port = tls_broker.ports
    tls_args = ["--cafile", pki.ca]
    for sub_port, pub_port, sub_tls, pub_tls in [(tls_port, tcp_port, True, False),
                                                 (tcp_port, tls_port, False, True)]:
        topic = f"t/tls/{sub_port}"
        pub = run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(pub_port), "-t", topic, "-r",
                   "-m", f"hello {sub_port}", "-q", "1", *(tls_args if pub_tls else [])])
        assert pub.returncode == 0, pub.stderr
        sub = run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(sub_port), "-t", topic,
                   "-C", "1", "-W", "10", *(tls_args if sub_tls else [])], timeout=15)
        assert sub.returncode == 0, sub.stderr
        assert sub.stdout.strip() == f"hello {sub_port}"


def test_mosquitto_client_certificate(configured, pki):
    """mosquitto_pub and mosquitto_sub with --cert/--key on a listener requiring one."""
    listener = tls_listener(pki, ca_file=pki.ca, require_certificate=True)
    broker, _ = configured.start(listeners=[listener])
    args = ["-h", "127.0.0.1", "-p", str(broker.ports[0]), "--cafile", pki.ca,
            "--cert", str(pki.dir / "alice.crt"), "--key", str(pki.dir / "alice.key")]
    pub = run(["mosquitto_pub", *args, "-t", "cert/t", "-r", "-m", "with a certificate", "-q", "1"])
    assert pub.returncode == 0, pub.stderr
    sub = run(["mosquitto_sub", *args, "-t", "cert/t", "-C", "1", "-W", "10"], timeout=15)
    assert sub.stdout.strip() == "with a certificate", sub.stderr
    refused = run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.ports[0]), "--cafile", pki.ca,
                   "-t", "cert/t", "-m", "without"])
    assert refused.returncode != 0


def test_paho_over_tls_mqtt5(tls_broker, pki):
    """paho-mqtt (MQTT 5) with ``tls_set``: publish and receive on the TLS listener."""
    got = threading.Event()
    received = []
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="paho-tls", protocol=paho.MQTTv5)
    c.tls_set(ca_certs=pki.ca)
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda _c, _u, m: (received.append(m.payload), got.set())
    c.connect("127.0.0.1", tls_broker.ports[0])
    c.loop_start()
    try:
        c.subscribe("paho/tls", qos=1)
        assert subscribed.wait(5)
        c.publish("paho/tls", b"x" * 40_000, qos=1)  # bigger than one TLS record
        assert got.wait(5)
        assert received == [b"x" * 40_000]
    finally:
        c.loop_stop()
        c.disconnect()


# -- handshakes: versions, ALPN, resumption ------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_versions_and_resumption(tls_broker, pki, version):
    """TLS 1.2 (session cache) and 1.3 (tickets) both resume: the second handshake reuses the
    first session."""
    ctx = client_context(pki.ca, version=version)
    first = mqtt_over_tls(tls_broker, tls_broker.ports[0], ctx, f"resume-{version.name}-1")
    assert first.sock.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
    assert first.subscribe([("r/t", 0)]) == [0]  # a round trip: a 1.3 ticket has arrived
    session = first.sock.session
    first.close()
    assert session is not None
    c = tls_raw_client(tls_broker.host, tls_broker.ports[0], ctx, session=session)
    assert c.sock.session_reused, "the second handshake did not resume"
    c.connect(f"resume-{version.name}-2")
    c.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_1_is_refused(tls_broker, pki):
    ctx = client_context(pki.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(tls_broker.host, tls_broker.ports[0], ctx)
    wait_until(lambda: failures(tls_broker, "protocol_mismatch") >= 1, what="counted")


def test_alpn_mqtt_is_chosen_and_not_required(tls_broker, pki):
    """A client offering ``mqtt`` gets it; one offering something else is served without ALPN."""
    offered = tls_connect(tls_broker.host, tls_broker.ports[0], client_context(pki.ca, alpn=["mqtt"]))
    assert offered.selected_alpn_protocol() == "mqtt"
    offered.close()
    other = tls_raw_client(tls_broker.host, tls_broker.ports[0], client_context(pki.ca, alpn=["x-other"]))
    assert other.sock.selected_alpn_protocol() is None
    other.connect("alpn-other")
    other.close()


# -- client certificates ---------------------------------------------------------------------


@pytest.fixture
def mtls_broker(configured, pki):
    """``ports[0]``: TLS requiring a client certificate, its name the user name, with an ACL
    giving alice ``alice/#`` only; ``ports[1]``: plain, open."""
    acl = configured.file("acl", "user alice\ntopic readwrite alice/#\n")
    listener = tls_listener(pki, ca_file=pki.ca, require_certificate=True,
                            use_identity_as_username=True, acl_file=acl)
    broker, _ = configured.start(listeners=[listener, {}], limits={"connect_timeout_ms": 1500})
    return broker


def test_client_certificate_identity_is_the_user_name(mtls_broker, pki):
    """alice's certificate: connected as alice (whatever user name the CONNECT says), so the
    ACL lets her write ``alice/#`` and nothing else."""
    ctx = client_context(pki.ca, cert=str(pki.dir / "alice.crt"), key=str(pki.dir / "alice.key"))
    watcher = RawClient(mtls_broker.host, mtls_broker.ports[1])
    watcher.connect("watcher")
    assert watcher.subscribe([("#", 0)]) == [0]
    alice = tls_raw_client(mtls_broker.host, mtls_broker.ports[0], ctx)
    alice.send(connect_packet("alice-1", username="bob", password=b"ignored"))
    assert decode_connack(alice.recv_packet()).return_code == 0
    alice.publish("bob/x", b"denied")
    alice.publish("alice/x", b"allowed")
    msg = watcher.recv_publish(timeout=5)
    assert (msg.topic, msg.payload) == ("alice/x", b"allowed")


@pytest.mark.parametrize("cert, reason", [
    (None, "no_certificate"),
    ("expired", "certificate_expired"),
    ("mallory", "unknown_ca"),
])
def test_bad_client_certificates_are_refused_and_counted(mtls_broker, pki, cert, reason):
    """No certificate, an expired one, one from an unknown CA: the handshake fails, the
    failure is counted under its reason, and a client with a good certificate still gets in."""
    files = {} if cert is None else {"cert": str(pki.dir / f"{cert}.crt"), "key": str(pki.dir / f"{cert}.key")}
    ctx = client_context(pki.ca, **files)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        # TLS 1.3: the client learns of the refusal at its first read.
        s = tls_connect(mtls_broker.host, mtls_broker.ports[0], ctx)
        s.sendall(connect_packet("bad-cert"))
        if not s.recv(16):
            raise ConnectionError("closed")
    wait_until(lambda: failures(mtls_broker, reason) >= 1, what=f"{reason} counted")
    good = client_context(pki.ca, cert=str(pki.dir / "alice.crt"), key=str(pki.dir / "alice.key"))
    mqtt_over_tls(mtls_broker, mtls_broker.ports[0], good, "alice-after").close()


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_on_tls_and_plain_ports_closes_only_the_offender(tls_broker, pki):
    """Plain MQTT on the TLS port, garbage before a ClientHello, TLS on the plain port and a
    handshake that never finishes: each closed and counted; a TLS bystander keeps working."""
    ctx = client_context(pki.ca)
    bystander = mqtt_over_tls(tls_broker, tls_broker.ports[0], ctx, "bystander")
    assert bystander.subscribe([("by/t", 1)]) == [1]

    plain_on_tls = RawClient(tls_broker.host, tls_broker.ports[0])
    plain_on_tls.send(connect_packet("plain-on-tls"))
    garbage = RawClient(tls_broker.host, tls_broker.ports[0])
    garbage.send(os.urandom(64))
    for c in (plain_on_tls, garbage):
        data = wait_closed(c)
        assert not data or data[0] == 0x15, f"expected a TLS alert or nothing, got {data[:8]!r}"
    wait_until(lambda: failures(tls_broker, "protocol_mismatch") >= 2, what="protocol mismatches counted")

    bad_input = lambda: metric_value(tls_broker.metrics(), "starling_connections_closed_total",  # noqa: E731
                                     reason="bad_input")
    before = bad_input()
    raw = socket.create_connection((tls_broker.host, tls_broker.ports[1]), timeout=5)
    tls_on_plain = ctx.wrap_socket(raw, server_hostname="127.0.0.1", do_handshake_on_connect=False)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls_on_plain.do_handshake()
    tls_on_plain.close()
    wait_until(lambda: bad_input() > before, what="TLS on the plain port counted as bad input")

    stalled = RawClient(tls_broker.host, tls_broker.ports[0])
    stalled.send(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))  # a ClientHello's first bytes
    started = time.monotonic()
    wait_closed(stalled, timeout=10)
    assert time.monotonic() - started < 5, "the connect timeout (1.5 s) bounds the handshake"
    wait_until(lambda: failures(tls_broker, "timeout") >= 1, what="timeout counted")

    pub = mqtt_over_tls(tls_broker, tls_broker.ports[0], ctx, "by-pub")
    pub.publish("by/t", b"still here", qos=1)
    msg = bystander.recv_publish(timeout=5, ack=True)
    assert msg.payload == b"still here"


def wait_closed(c: RawClient, timeout: float = 5.0) -> bytes:
    """Reads until the server closes ``c``; returns what it sent first."""
    c.sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = c.sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            return data
        except socket.timeout:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError("the server did not close the connection")


# -- reload ----------------------------------------------------------------------------------


def test_sighup_reloads_the_certificate_without_dropping_connections(configured, pki, tmp_path):
    """New handshakes get the new certificate; a connection made before keeps working; a
    broken file is refused and the certificate in use stays; the expiry is in /metrics."""
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(pki.dir / "server.crt", cert)
    shutil.copy(pki.dir / "server.key", key)
    broker, _ = configured.start(listeners=[{"protocol": "tls", "cert_file": str(cert), "key_file": str(key)}])
    port = broker.ports[0]
    ctx = client_context(pki.ca)
    wait_for_log(broker, "TLS certificate loaded expires soon", "CN=localhost")
    before = metric_value(broker.metrics(), "starling_listener_certificate_expiry_timestamp_seconds")
    assert before > time.time()

    old = mqtt_over_tls(broker, port, ctx, "before-reload")
    assert old.subscribe([("reload/t", 1)]) == [1]
    s = tls_connect(broker.host, port, ctx)
    assert subject_cn(s) == "localhost"
    s.close()

    shutil.copy(pki.dir / "renewed.crt", cert)
    shutil.copy(pki.dir / "renewed.key", key)
    broker.reload()
    wait_for_log(broker, "TLS certificate reloaded", "CN=renewed.localhost")
    s = tls_connect(broker.host, port, ctx)
    assert subject_cn(s) == "renewed.localhost"
    s.close()
    after = metric_value(broker.metrics(), "starling_listener_certificate_expiry_timestamp_seconds")
    assert after > before + 100 * 86400

    key.write_text("not a key\n")
    broker.reload()
    wait_for_log(broker, "TLS files rejected")
    s = tls_connect(broker.host, port, ctx)
    assert subject_cn(s) == "renewed.localhost", "the broken file replaced the certificate"
    s.close()

    pub = mqtt_over_tls(broker, port, ctx, "after-reload")
    pub.publish("reload/t", b"across reloads", qos=1)
    assert old.recv_publish(timeout=5, ack=True).payload == b"across reloads"


def test_a_missing_certificate_refuses_to_start(tmp_path):
    """A TLS listener whose files do not load: the broker says which and exits."""
    from helpers import _starling_bin
    proc = subprocess.run([str(_starling_bin()), "--listen",
                           f"127.0.0.1:0,protocol=tls,cert_file={tmp_path}/none.crt,key_file={tmp_path}/none.key"],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert "none.crt" in proc.stderr + proc.stdout


def test_a_tls_connection_handed_to_another_loop_keeps_its_session(tls_broker, pki):
    """Reconnects with one client id land on either loop (SO_REUSEPORT); one that lands on
    the loop not holding the session is handed over with its TLS state: it gets its CONNACK
    (session present) and its queued message over TLS."""
    ctx = client_context(pki.ca)
    tcp = RawClient(tls_broker.host, tls_broker.ports[1])
    tcp.connect("handover-pub")
    handed = lambda: metric_value(tls_broker.metrics(), "starling_connections_handed_over_total")  # noqa: E731
    before = handed()
    for attempt in range(60):
        c = tls_raw_client(tls_broker.host, tls_broker.ports[0], ctx)
        c.send(connect_packet("handover-tls", clean_session=False))
        ack = decode_connack(c.recv_packet())
        assert ack.return_code == 0
        if attempt == 0:
            assert c.subscribe([("handover/t", 1)]) == [1]
        else:
            assert ack.session_present, f"attempt {attempt}"
            tcp.publish("handover/t", f"m{attempt}".encode(), qos=1)
            assert c.recv_publish(timeout=5, ack=True).payload == f"m{attempt}".encode()
        c.close()
        if handed() > before:
            return
    raise AssertionError("60 reconnects never landed on the other loop")


def test_listener_metrics_pass_promtool_and_agree(tls_broker, pki):
    """The per-listener counters and the handshake histogram are valid Prometheus text, and
    the histogram counts what the counter counts."""
    ctx = client_context(pki.ca)
    for i in range(3):
        mqtt_over_tls(tls_broker, tls_broker.ports[0], ctx, f"metrics-{i}").close()
    RawClient(tls_broker.host, tls_broker.ports[0]).send(b"not TLS at all")
    wait_until(lambda: failures(tls_broker, "protocol_mismatch") >= 1, what="failure counted")
    text = tls_broker.metrics()
    promtool_check(text)
    listener = f"127.0.0.1:{tls_broker.ports[0]}"
    handshakes = metric_value(text, "starling_listener_handshakes_total", listener=listener)
    assert handshakes >= 3
    assert metric_value(text, "starling_listener_handshake_duration_seconds_count", listener=listener) == handshakes
    assert metric_value(text, "starling_listener_handshake_duration_seconds_bucket", listener=listener,
                        le="+Inf") == handshakes
    assert metric_value(text, "starling_listener_connections_accepted_total", listener=listener) >= 4


def test_a_proxy_header_comes_before_tls(configured, pki):
    """On a listener with both ``proxy_protocol`` and TLS, the PROXY header is read first and
    the handshake follows; the address in the header is the client's in the logs."""
    from test_proxy_protocol import connected_line, v2_header
    broker, _ = configured.start(listeners=[tls_listener(pki, proxy_protocol=True)])
    raw = socket.create_connection((broker.host, broker.ports[0]), timeout=5)
    raw.sendall(v2_header("203.0.113.9", 40123))
    s = client_context(pki.ca).wrap_socket(raw, server_hostname=broker.host)
    s.sendall(connect_packet("proxied-tls"))
    assert s.recv(4) == b"\x20\x02\x00\x00"
    wait_until(lambda: connected_line(broker.log(), "203.0.113.9:40123"), what="the header's address logged")
    s.close()
