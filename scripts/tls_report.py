#!/usr/bin/env python3
"""The summary of scripts/bench-tls.sh: TLS connects, memory and throughput per broker, TLS
against plain TCP on the same broker, and the first broker's ratio to the second.

    python3 scripts/tls_report.py RESULTS_DIR

RESULTS_DIR is laid out as compare.sh lays it out (`brokers`, `N.spec`, `N-R-BROKER.json`),
plus `N.run`: which of bench-tls.sh's runs spec N is (tls-full, tls-resumed, tls-full-one,
tls-resumed-one, tcp-connect, tls-memory, tcp-memory, tls-fanin, tcp-fanin, tls-fanout,
tcp-fanout). A cell is the median
[min–max] over the rounds; a ratio is the median of the same-round ratios, divided only
between runs that did the same work (compare_report.comparable: the same clients
connected, the same share delivered). After the summary: what each broker negotiated, and
every figure of every run (compare_report.py's table).
"""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_report import (  # noqa: E402
    CONNECT,
    MESSAGE,
    NAMES,
    Table,
    comparable,
    describe_tls,
    fmt,
    metrics,
)

# (label, spec key, metric, kind): one figure of one run kind, per broker.
FIGURES = [
    ("Full TLS handshakes: connects/s (churn cycle 2)", "tls-full", "cycle 2 connects/s", CONNECT),
    ("  connect → CONNACK p50 ms", "tls-full", "cycle 2 CONNACK p50 ms", CONNECT),
    ("  connect → CONNACK p99 ms", "tls-full", "cycle 2 CONNACK p99 ms", CONNECT),
    ("  TLS handshake p50 ms", "tls-full", "cycle 2 TLS handshake p50 ms", CONNECT),
    ("  broker CPU µs/connect", "tls-full", "cycle 2 broker CPU µs/connect", CONNECT),
    ("  harness CPU µs/connect", "tls-full", "cycle 2 harness CPU µs/connect", None),
    ("Resumed TLS handshakes: connects/s (churn cycle 2)", "tls-resumed", "cycle 2 connects/s", CONNECT),
    ("  connect → CONNACK p50 ms", "tls-resumed", "cycle 2 CONNACK p50 ms", CONNECT),
    ("  connect → CONNACK p99 ms", "tls-resumed", "cycle 2 CONNACK p99 ms", CONNECT),
    ("  TLS handshake p50 ms", "tls-resumed", "cycle 2 TLS handshake p50 ms", CONNECT),
    ("  broker CPU µs/connect", "tls-resumed", "cycle 2 broker CPU µs/connect", CONNECT),
    ("  harness CPU µs/connect", "tls-resumed", "cycle 2 harness CPU µs/connect", None),
    ("  handshakes resumed in cycle 2", "tls-resumed", "cycle 2 TLS handshakes resumed", None),
    ("  handshakes resumed in cycle 1", "tls-resumed", "cycle 1 TLS handshakes resumed", None),
    ("One connect at a time, full handshake: connect → CONNACK p50 ms", "tls-full-one",
     "cycle 2 CONNACK p50 ms", CONNECT),
    ("  connect → CONNACK p99 ms", "tls-full-one", "cycle 2 CONNACK p99 ms", CONNECT),
    ("One connect at a time, resumed: connect → CONNACK p50 ms", "tls-resumed-one",
     "cycle 2 CONNACK p50 ms", CONNECT),
    ("  connect → CONNACK p99 ms", "tls-resumed-one", "cycle 2 CONNACK p99 ms", CONNECT),
    ("Plain TCP: connects/s (churn cycle 2)", "tcp-connect", "cycle 2 connects/s", CONNECT),
    ("  connect → CONNACK p50 ms", "tcp-connect", "cycle 2 CONNACK p50 ms", CONNECT),
    ("  connect → CONNACK p99 ms", "tcp-connect", "cycle 2 CONNACK p99 ms", CONNECT),
    ("  broker CPU µs/connect", "tcp-connect", "cycle 2 broker CPU µs/connect", CONNECT),
    ("Idle TLS connection: broker RSS B/connection", "tls-memory", "RSS B/client", CONNECT),
    ("Idle TCP connection: broker RSS B/connection", "tcp-memory", "RSS B/client", CONNECT),
    ("QoS 0 fan-in over TLS: delivered msg/s", "tls-fanin", "delivered msg/s", MESSAGE),
    ("QoS 0 fan-in over TCP: delivered msg/s", "tcp-fanin", "delivered msg/s", MESSAGE),
    ("QoS 0 fan-out over TLS: deliveries/s", "tls-fanout", "delivered msg/s", MESSAGE),
    ("QoS 0 fan-out over TCP: deliveries/s", "tcp-fanout", "delivered msg/s", MESSAGE),
    ("fan-in over TLS: broker CPU µs/delivery", "tls-fanin", "CPU µs/delivery", MESSAGE),
    ("fan-in over TCP: broker CPU µs/delivery", "tcp-fanin", "CPU µs/delivery", MESSAGE),
    ("fan-out over TLS: broker CPU µs/delivery", "tls-fanout", "CPU µs/delivery", MESSAGE),
    ("fan-out over TCP: broker CPU µs/delivery", "tcp-fanout", "CPU µs/delivery", MESSAGE),
]

# (label, TLS spec key, TCP spec key, metric, how): the same broker over TLS and over TCP in
# the same round, as a ratio ("ratio") or a difference ("minus").
VERSUS = [
    ("TLS − TCP: broker RSS B/connection", "tls-memory", "tcp-memory", "RSS B/client", "minus"),
    ("TLS ÷ TCP: fan-in msg/s", "tls-fanin", "tcp-fanin", "delivered msg/s", "ratio"),
    ("TLS ÷ TCP: fan-out deliveries/s", "tls-fanout", "tcp-fanout", "delivered msg/s", "ratio"),
    ("TLS ÷ TCP: full-handshake connects/s", "tls-full", "tcp-connect", "cycle 2 connects/s", "ratio"),
    ("TLS ÷ TCP: resumed connects/s", "tls-resumed", "tcp-connect", "cycle 2 connects/s", "ratio"),
]


def spread(values):
    """The median [min–max] of the values that exist (`-` when none; one value when all agree)."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    median = fmt(statistics.median(values))
    return median if min(values) == max(values) else f"{median} [{fmt(min(values))}–{fmt(max(values))}]"


def value(report, metric):
    return metrics(report).get(metric, (None,))[0]


class Summary:
    def __init__(self, results):
        self.table = Table(results)
        self.brokers = self.table.brokers
        self.specs = {}
        for name in os.listdir(results):
            if name.endswith(".run"):
                n = int(name[: -len(".run")])
                key = open(os.path.join(results, name)).read().strip()
                self.specs[key] = self.table.runs(n)
        self.notes = []

    def rounds(self, key):
        return self.specs.get(key, {})

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)
        return f"[{self.notes.index(text) + 1}]"

    def broker_ratio(self, key, metric, kind):
        """The first broker ÷ the second, median of the same-round ratios."""
        if len(self.brokers) < 2 or kind is None:
            return ""
        a, b = self.brokers[0], self.brokers[1]
        ratios = []
        for r, reports in self.rounds(key).items():
            ra, rb = reports.get(a), reports.get(b)
            va, vb = value(ra, metric), value(rb, metric)
            if va is None or not vb:
                continue
            ok, why = comparable(ra, rb, kind)
            if not ok:
                return "no ratio " + self.note(f"`{key}` round {r}: {NAMES[a]} {why[0]}, {NAMES[b]} {why[1]}")
            ratios.append(va / vb)
        return f"{statistics.median(ratios):.2f}" if ratios else "-"

    def versus(self, broker, tls_key, tcp_key, metric, how):
        """TLS against TCP on `broker`, per round, then the median [min–max]."""
        tls_rounds, tcp_rounds = self.rounds(tls_key), self.rounds(tcp_key)
        out = []
        for r, reports in tls_rounds.items():
            a, b = reports.get(broker), tcp_rounds.get(r, {}).get(broker)
            va, vb = value(a, metric), value(b, metric)
            if va is None or vb is None:
                continue
            kind = MESSAGE if "msg/s" in metric else CONNECT
            ok, why = comparable(a, b, kind) if kind == MESSAGE else (True, "")
            if not ok:
                self.note(f"{NAMES[broker]} round {r}: `{tls_key}` {why[0]}, `{tcp_key}` {why[1]}")
                continue
            if how == "minus":
                out.append(va - vb)
            elif vb:
                out.append(va / vb)
        if not out:
            return "-"
        if how == "minus":
            return spread(out)
        median = f"{statistics.median(out):.2f}"
        low, high = f"{min(out):.2f}", f"{max(out):.2f}"
        return median if low == high else f"{median} [{low}–{high}]"

    def delivered(self, key, broker):
        """A footnote when some run of `key` against `broker` did not deliver everything."""
        shares = [value(reports.get(broker), "delivered %") for reports in self.rounds(key).values()]
        short = [s for s in shares if s is not None and s < 100.0]
        if not short:
            return ""
        shown = ", ".join(f"{s:.1f} %" for s in shares if s is not None)
        return " " + self.note(f"`{key}` against {NAMES[broker]} delivered {shown} of what was published")

    def render(self):
        names = [NAMES.get(b, b) for b in self.brokers]
        head = ["Figure"] + names
        if len(self.brokers) >= 2:
            head.append(f"{names[0]} ÷ {names[1]}")
        lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
        for label, key, metric, kind in FIGURES:
            if key not in self.specs:
                continue
            row = [label]
            for b in self.brokers:
                values = [value(reports.get(b), metric) for reports in self.rounds(key).values()]
                extra = self.delivered(key, b) if kind == MESSAGE else ""
                row.append(spread(values) + extra)
            if len(self.brokers) >= 2:
                row.append(self.broker_ratio(key, metric, kind))
            lines.append("| " + " | ".join(row) + " |")
        for label, tls_key, tcp_key, metric, how in VERSUS:
            if tls_key not in self.specs or tcp_key not in self.specs:
                continue
            row = [label] + [self.versus(b, tls_key, tcp_key, metric, how) for b in self.brokers]
            if len(self.brokers) >= 2:
                row.append("")
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", self.negotiated()]
        for k, text in enumerate(self.notes, 1):
            lines.append(f"\n[{k}] {text}")
        lines += ["", "## Every figure of every run", "", self.table.render()]
        return "\n".join(lines)

    def negotiated(self):
        """What each broker negotiated over all TLS runs, and whether they agree."""
        seen = {}
        for key, rounds in self.specs.items():
            if not key.startswith("tls-"):
                continue
            for reports in rounds.values():
                for b, report in reports.items():
                    for n in ((report or {}).get("tls") or {}).get("negotiated", []):
                        seen.setdefault(b, set()).add(describe_tls(n))
        parts = [f"{NAMES.get(b, b)}: {'; '.join(sorted(seen.get(b, {'-'})))}" for b in self.brokers]
        suites = [{s.split(" ")[2] for s in seen.get(b, set())} for b in self.brokers]
        same = len(self.brokers) < 2 or all(s == suites[0] for s in suites)
        verdict = "same cipher suite" if same else "**different cipher suites: the comparison is not like for like**"
        return "Negotiated (every TLS run): " + " — ".join(parts) + f" ({verdict})."


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print(Summary(argv[1]).render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
