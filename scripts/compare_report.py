#!/usr/bin/env python3
"""The table scripts/compare.sh prints: every broker's figures and Starling's ratio to each peer.

    python3 scripts/compare_report.py RESULTS_DIR

RESULTS_DIR holds what compare.sh wrote: `brokers` (the brokers in column order, the first is
the one the ratios are about), `N.spec` (scenario N as given) and `N-R-BROKER.json` (the
harness's JSON report of scenario N, round R, against BROKER; `floor` is starling-floor).

A broker's cell is its figure, or with several rounds the median and [min-max]. A ratio is
the median of the same-round ratios. Two runs are divided only if they did the same work:
they connected the same number of clients, and for a message figure (a rate, a latency,
CPU, memory in a run with messages) they delivered the same share of what they were
expected to (everything, or the same fraction to within DELIVERED_PERCENT_TOLERANCE
points): a broker that dropped, or was still delivering when the harness gave up, did less
work, so its rate is no measure of the other's. Otherwise the ratio cell names a note under
the table that says what each did: how many it connected, what it delivered, and whether
the rest was dropped (deliveries had stopped) or not delivered by the deadline (still
arriving).
"""

import json
import os
import re
import statistics
import sys

# Two runs' delivered shares, in percentage points, closer than this count as the same.
DELIVERED_PERCENT_TOLERANCE = 0.1

NAMES = {"starling": "Starling", "mosquitto": "Mosquitto", "rumqttd": "rumqttd", "floor": "floor"}

# What a figure is: CONNECT (connect phase, or memory of a run without messages) is always
# divided; MESSAGE (message phase, and memory of a run with messages) only between runs that
# delivered alike; COUNT and TEXT are shown, never divided.
CONNECT, MESSAGE, COUNT, TEXT = "connect", "message", "count", "text"


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def delivered_percent(messages):
    if "delivered_percent" in messages:
        return messages["delivered_percent"]
    expected = messages.get("expected", 0)
    unique = messages.get("tally", {}).get("unique", 0)
    return 100.0 if expected == 0 else 100.0 * min(unique, expected) / expected


def metrics(report):
    """{name: (value, kind)} of one harness report, in display order."""
    out = {}
    if not report:
        return out
    c = report.get("connects")
    if c:
        out["connects/s"] = (c["per_sec"], CONNECT)
        out["CONNACK p50 ms"] = (c["connack_latency"]["p50_ms"], CONNECT)
        out["CONNACK p99 ms"] = (c["connack_latency"]["p99_ms"], CONNECT)
        if c.get("handshake_latency"):
            out["  TCP handshake p99 ms"] = (c["handshake_latency"]["p99_ms"], CONNECT)
            out["  CONNECT→CONNACK p99 ms"] = (c["connect_to_connack_latency"]["p99_ms"], CONNECT)
        out.update(tls_connects(c.get("tls"), ""))
        out.update(connect_cpu(c, ""))
    for cy in report.get("cycles", []):
        out[f"cycle {cy['cycle']} connects/s"] = (cy["connects"]["per_sec"], CONNECT)
        out[f"cycle {cy['cycle']} CONNACK p50 ms"] = (cy["connects"]["connack_latency"]["p50_ms"], CONNECT)
        out[f"cycle {cy['cycle']} CONNACK p99 ms"] = (cy["connects"]["connack_latency"]["p99_ms"], CONNECT)
        out.update(tls_connects(cy["connects"].get("tls"), f"cycle {cy['cycle']} "))
        out.update(connect_cpu(cy["connects"], f"cycle {cy['cycle']} "))
    tls = report.get("tls")
    if tls and tls.get("first"):
        out["TLS negotiated (first connection)"] = (describe_tls(tls["first"]), TEXT)
    m = report.get("messages")
    if m:
        tally = m["tally"]
        out["delivered msg/s"] = (m["delivered_per_sec"], MESSAGE)
        out["delivered %"] = (delivered_percent(m), COUNT)
        drain = m.get("drain")
        if drain:
            out["drain ended"] = (drain["ended"], TEXT)
        out["missing: dropped"] = (m.get("dropped", tally.get("missing", 0)), COUNT)
        out["missing: not delivered by the deadline"] = (m.get("undelivered", 0), COUNT)
        out["duplicated"] = (tally["duplicates"], COUNT)
        if m.get("qos", 0) > 0 and "unacknowledged" in m:
            out["publishes unacknowledged at the end"] = (m["unacknowledged"], COUNT)
        out["e2e p50 ms"] = (m["latency"]["p50_ms"], MESSAGE)
        out["e2e p99 ms"] = (m["latency"]["p99_ms"], MESSAGE)
        if "longest_gap_ms" in m:
            out["longest gap between deliveries ms"] = (m["longest_gap_ms"], COUNT)
        g = m.get("group")
        if g:
            out["group min/max"] = (g["min"] / g["max"] if g["max"] else 0.0, COUNT)
            out["group spread (sd/mean) %"] = (g["cv_percent"], COUNT)
    b = report.get("broker")
    memory = MESSAGE if m else CONNECT
    if b:
        if b.get("rss_bytes_per_client") is not None:
            out["RSS B/client"] = (b["rss_bytes_per_client"], CONNECT)
        out["peak RSS MiB"] = (b["peak_rss_bytes"] / 2**20, memory)
        if b.get("end"):
            out["RSS after the run MiB"] = (b["end"]["rss_bytes"] / 2**20, memory)
        if b.get("cpu_percent_messages") is not None:
            out["CPU %"] = (b["cpu_percent_messages"], MESSAGE)
        delivered = m["tally"]["delivered"] if m else 0
        if b.get("cpu_secs_messages") is not None and delivered:
            out["CPU µs/delivery"] = (1e6 * b["cpu_secs_messages"] / delivered, MESSAGE)
    t = report.get("timer_lateness")
    if t:
        out["machine stalls p99.9 ms (0.5 ms sleep woke late)"] = (t["p999_ms"], COUNT)
    return out


def tls_connects(t, prefix):
    """The TLS figures of one connect phase (`connects.tls` of a report), keys prefixed."""
    if not t:
        return {}
    return {
        f"{prefix}TLS handshake p50 ms": (t["handshake_latency"]["p50_ms"], CONNECT),
        f"{prefix}TLS handshake p99 ms": (t["handshake_latency"]["p99_ms"], CONNECT),
        f"{prefix}TLS handshakes full": (t["full"], COUNT),
        f"{prefix}TLS handshakes resumed": (t["resumed"], COUNT),
    }


def connect_cpu(c, prefix):
    """The broker's and the harness's CPU per connect of one connect phase, keys prefixed."""
    out = {}
    if c.get("broker_cpu_us_per_connect") is not None:
        out[f"{prefix}broker CPU µs/connect"] = (c["broker_cpu_us_per_connect"], CONNECT)
    if c.get("harness_cpu_us_per_connect") is not None:
        out[f"{prefix}harness CPU µs/connect"] = (c["harness_cpu_us_per_connect"], COUNT)
    return out


def describe_tls(n):
    """`TLS 1.3 TLS13_AES_256_GCM_SHA384 X25519` from a report's `tls.first`."""
    return " ".join([n["version"], n["cipher_suite"], n.get("key_exchange") or "(no key exchange)"])


def delivery(report):
    """What a run delivered, in words, and its delivered share (None: no message phase)."""
    m = (report or {}).get("messages")
    if not m:
        return None, ""
    share = delivered_percent(m)
    words = f"{share:.1f} %"
    rest = []
    if m.get("dropped"):
        rest.append(f"{m['dropped']:,} dropped")
    if m.get("undelivered"):
        deadline = (m.get("drain") or {}).get("deadline_secs")
        rest.append(f"{m['undelivered']:,} not delivered by the {deadline} s deadline")
    if rest:
        words += " (" + ", ".join(rest) + ")"
    return share, words


def connected(report):
    """How many clients a run connected, in words, and the count (None: no connect phase)."""
    phases = [(report or {}).get("connects")] + [c["connects"] for c in (report or {}).get("cycles", [])]
    phases = [p for p in phases if p]
    if not phases:
        return None, ""
    done = sum(p["connected"] for p in phases)
    tried = sum(p["attempted"] for p in phases)
    return done, f"connected {done:,} of {tried:,}"


def comparable(a, b, kind):
    """Whether two runs' figures of `kind` may be divided; if not, what each did (in words).
    Message figures need the same delivered share; every figure needs the same clients."""
    done_a, words_a = connected(a)
    done_b, words_b = connected(b)
    if done_a is not None and done_b is not None and done_a != done_b:
        return False, (words_a, words_b)
    if kind != MESSAGE:
        return True, ""
    share_a, words_a = delivery(a)
    share_b, words_b = delivery(b)
    if share_a is None or share_b is None:
        return True, ""
    if abs(share_a - share_b) <= DELIVERED_PERCENT_TOLERANCE:
        return True, ""
    return False, (f"delivered {words_a}", f"delivered {words_b}")


def fmt(v, count=False):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if count:
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}"


def cell(values):
    """One broker's figure over the rounds: the value, or the median [min–max]."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if isinstance(values[0], str):
        return "/".join(dict.fromkeys(values))
    count = all(isinstance(v, int) for v in values)
    if min(values) == max(values):
        return fmt(values[0], count)
    median = fmt(statistics.median(values), count)
    return f"{median} [{fmt(min(values), count)}–{fmt(max(values), count)}]"


class Table:
    def __init__(self, results):
        self.results = results
        self.brokers = open(os.path.join(results, "brokers")).read().split()
        self.notes = []

    def runs(self, n):
        """{round: {broker: report}} of scenario n."""
        rounds = {}
        for name in os.listdir(self.results):
            hit = re.fullmatch(rf"{n}-(\d+)-(\w+)\.json", name)
            if hit:
                rounds.setdefault(int(hit.group(1)), {})[hit.group(2)] = load(os.path.join(self.results, name))
        return dict(sorted(rounds.items()))

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)
        return self.notes.index(text) + 1

    def ratio(self, spec, key, kind, rounds, ref, peer):
        ratios, refused = [], []
        for r, reports in rounds.items():
            a, b = reports.get(ref), reports.get(peer)
            va, vb = metrics(a).get(key, (None,))[0], metrics(b).get(key, (None,))[0]
            if va is None or not vb:
                continue
            ok, why = comparable(a, b, kind)
            if not ok:
                refused.append((r, why))
                continue
            ratios.append(va / vb)
        if ratios:
            text = f"{statistics.median(ratios):.2f}"
            if refused:
                text += f" ({len(ratios)} of {len(ratios) + len(refused)} runs)"
            return text
        if refused:
            lines = "; ".join(
                f"run {r}: {NAMES.get(ref, ref)} {wa}, {NAMES.get(peer, peer)} {wb}" for r, (wa, wb) in refused
            )
            k = self.note(f"`{spec}`: no ratio, the runs did not do the same work ({lines}).")
            return f"no ratio [{k}]"
        return "-"

    def render(self):
        n_specs = len([f for f in os.listdir(self.results) if f.endswith(".spec")])
        ref, peers = self.brokers[0], self.brokers[1:]
        floor = any(re.fullmatch(r"\d+-\d+-floor\.json", f) for f in os.listdir(self.results))
        head = ["scenario", "metric"] + [NAMES.get(b, b) for b in self.brokers]
        head += [f"{NAMES.get(ref, ref)}/{NAMES.get(p, p)}" for p in peers]
        if floor:
            head += ["floor", f"{NAMES.get(ref, ref)}/floor"]
        lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
        for n in range(1, n_specs + 1):
            spec = open(os.path.join(self.results, f"{n}.spec")).read().strip()
            rounds = self.runs(n)
            table = {b: [metrics(reports.get(b)) for reports in rounds.values()] for b in self.brokers + ["floor"]}
            keys = {}
            for b in self.brokers:
                for ms in table[b]:
                    for key, (_, kind) in ms.items():
                        keys.setdefault(key, kind)
            for key, kind in keys.items():
                row = [f"`{spec}`", key]
                row += [cell([ms.get(key, (None,))[0] for ms in table[b]]) for b in self.brokers]
                divisible = kind in (CONNECT, MESSAGE)
                row += [self.ratio(spec, key, kind, rounds, ref, p) if divisible else "" for p in peers]
                if floor:
                    row.append(cell([ms.get(key, (None,))[0] for ms in table["floor"]]))
                    row.append(self.ratio(spec, key, kind, rounds, ref, "floor") if divisible else "")
                lines.append("| " + " | ".join(row) + " |")
        for k, text in enumerate(self.notes, 1):
            lines.append(f"\n[{k}] {text}")
        return "\n".join(lines)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print(Table(argv[1]).render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
