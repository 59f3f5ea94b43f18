"""scripts/tls_report.py, the summary of scripts/bench-tls.sh: each broker's figures over
TLS and over TCP, TLS against TCP on the same broker in the same round, the first broker's
ratio to the second, and whether the brokers negotiated the same cipher suite. No broker
needed: each test writes harness reports (the JSON shape `starling-loadtest --json` prints)
into a results directory laid out as bench-tls.sh lays it out."""

import importlib.util
import json
import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
_spec = importlib.util.spec_from_file_location("tls_report", REPO_ROOT / "scripts" / "tls_report.py")
tls_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tls_report)

SUITE = {"version": "TLS 1.3", "cipher_suite": "TLS13_AES_256_GCM_SHA384", "key_exchange": "X25519"}


def latency(p50, p99):
    return {"p50_ms": p50, "p99_ms": p99}


def churn(per_sec, resumed=0, suite=SUITE, clients=100):
    """A churn run of two cycles; with `suite`, over TLS (cycle 2 `resumed` handshakes)."""
    cycles = []
    for n in (1, 2):
        connects = {"attempted": clients, "connected": clients, "per_sec": per_sec, "connack_latency": latency(5.0, 9.0)}
        connects["broker_cpu_us_per_connect"] = 1e6 / per_sec
        if suite:
            kinds = {"full": clients - resumed, "resumed": resumed} if n == 2 else {"full": clients, "resumed": 0}
            connects["tls"] = {**kinds, "hello_retries": 0, "handshake_latency": latency(2.0, 4.0)}
        cycles.append({"cycle": n, "connects": connects})
    report = {"cycles": cycles}
    if suite:
        report["tls"] = {"first": suite, "negotiated": [suite]}
    return report


def conn(rss_per_client, suite=SUITE):
    report = {
        "connects": {"attempted": 10, "connected": 10, "per_sec": 1000.0, "connack_latency": latency(1.0, 2.0)},
        "broker": {"rss_bytes_per_client": rss_per_client, "peak_rss_bytes": 2**20},
    }
    if suite:
        report["tls"] = {"first": suite, "negotiated": [suite]}
    return report


def fan(rate, unique=1000, suite=SUITE):
    report = conn(500.0, suite)
    del report["broker"]["rss_bytes_per_client"]
    report["messages"] = {
        "qos": 0,
        "delivered_per_sec": rate,
        "expected": 1000,
        "delivered_percent": unique / 10.0,
        "tally": {"delivered": unique, "unique": unique, "duplicates": 0, "missing": 1000 - unique},
        "drain": {"ended": "complete" if unique == 1000 else "quiet", "deadline_secs": 60},
        "dropped": 1000 - unique,
        "latency": latency(1.0, 4.0),
    }
    return report


def summary(tmp_path, rounds, brokers=("starling", "mosquitto")):
    """Writes `rounds` (one {key: {broker: report}} per round) and renders the summary."""
    (tmp_path / "brokers").write_text(" ".join(brokers) + "\n")
    keys = list(rounds[0])
    for n, key in enumerate(keys, 1):
        (tmp_path / f"{n}.run").write_text(key + "\n")
        (tmp_path / f"{n}.spec").write_text(key + "\n")
        for round_no, by_key in enumerate(rounds, 1):
            for broker, report in by_key[key].items():
                (tmp_path / f"{n}-{round_no}-{broker}.json").write_text(json.dumps(report))
    return tls_report.Summary(str(tmp_path)).render()


def row(text, label):
    """The cells after the label of the first summary row named `label`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in:\n{text}")


def test_tls_against_tcp_per_broker_and_broker_against_broker(tmp_path):
    rounds = [
        {
            "tls-full": {"starling": churn(4000.0), "mosquitto": churn(1000.0)},
            "tls-resumed": {"starling": churn(8000.0, resumed=100), "mosquitto": churn(2000.0, resumed=100)},
            "tcp-connect": {"starling": churn(20000.0, suite=None), "mosquitto": churn(10000.0, suite=None)},
            "tls-memory": {"starling": conn(3000.0), "mosquitto": conn(15000.0)},
            "tcp-memory": {"starling": conn(700.0, suite=None), "mosquitto": conn(730.0, suite=None)},
            "tls-fanin": {"starling": fan(rate), "mosquitto": fan(100_000.0)},
            "tcp-fanin": {"starling": fan(2 * rate, suite=None), "mosquitto": fan(80_000.0, suite=None)},
        }
        for rate in (500_000.0, 700_000.0)
    ]
    out = summary(tmp_path, rounds)
    assert row(out, "Full TLS handshakes: connects/s (churn cycle 2)") == ["4,000", "1,000", "4.00"]
    assert row(out, "handshakes resumed in cycle 2") == ["100", "100", ""]
    assert row(out, "TLS − TCP: broker RSS B/connection") == ["2,300", "14,270", ""]
    assert row(out, "TLS ÷ TCP: fan-in msg/s") == ["0.50", "1.25", ""]
    assert row(out, "QoS 0 fan-in over TLS: delivered msg/s") == ["600,000 [500,000–700,000]", "100,000", "6.00"]
    assert "(same cipher suite)" in out
    assert "## Every figure of every run" in out


def test_a_short_delivery_gets_no_ratio_and_different_suites_are_flagged(tmp_path):
    other = {**SUITE, "cipher_suite": "TLS13_AES_128_GCM_SHA256"}
    rounds = [
        {
            "tls-fanin": {"starling": fan(500_000.0), "mosquitto": fan(100_000.0, unique=900, suite=other)},
            "tcp-fanin": {"starling": fan(900_000.0, suite=None), "mosquitto": fan(90_000.0, suite=None)},
        }
    ]
    out = summary(tmp_path, rounds)
    cells = row(out, "QoS 0 fan-in over TLS: delivered msg/s")
    assert cells[1].startswith("100,000 [") and cells[2].startswith("no ratio [")
    # Mosquitto's TLS run delivered less than its TCP run: no TLS ÷ TCP for it.
    assert row(out, "TLS ÷ TCP: fan-in msg/s")[:2] == ["0.56", "-"]
    assert "different cipher suites" in out


def test_one_broker_alone(tmp_path):
    rounds = [{"tls-full": {"mosquitto": churn(1000.0)}, "tcp-connect": {"mosquitto": churn(9000.0, suite=None)}}]
    out = summary(tmp_path, rounds, brokers=("mosquitto",))
    assert row(out, "Full TLS handshakes: connects/s (churn cycle 2)") == ["1,000"]
    assert row(out, "TLS ÷ TCP: full-handshake connects/s") == ["0.11"]
