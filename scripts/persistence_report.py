#!/usr/bin/env python3
"""The summary of scripts/bench-persistence.sh: markdown tables of the QoS 1 fan-in to a
persistent subscriber (online and offline), the bytes on disk per stored message, restart
times with a large store, and RSS with a million queued messages; Starling against
Mosquitto.

    python3 scripts/persistence_report.py RESULTS_DIR

RESULTS_DIR is laid out as bench-persistence.sh lays it out: `PART-SPEC-ROUND-BROKER` files
(`.json` the harness's report, `.kv` the script's own `key=value` measurements, `.metrics`
Starling's /metrics, `.ready.json` the start-up probe), `machine.kv` and `fsync.json`. A cell
is the median [min–max] over the rounds (the value alone when they agree); a ratio is the
median of the same-round ratios, Starling's figure over Mosquitto's.
"""

import glob
import json
import os
import re
import statistics
import sys

MOSQUITTO = "mosquitto"
FANIN_BROKERS = ["starling_off", "starling_sync", "starling_async", MOSQUITTO]
NAMES = {
    "starling_off": "Starling `off`",
    "starling_sync": "Starling `sync`",
    "starling_async": "Starling `async` (100 ms)",
    MOSQUITTO: "Mosquitto (`persistence true`)",
}
DISK_WORKLOADS = [
    ("d64", "64 B payloads, all to one session"),
    ("d1k", "1 KiB payloads, all to one session"),
    ("share1", "one message to every session"),
    ("share100", "100 messages to every session"),
]
MIB = 1024 * 1024


def num(v, digits=None):
    """A number with thin thousands separators; `digits` decimals (default: by size)."""
    if v is None:
        return "-"
    if digits is None:
        digits = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2)
    text = f"{v:,.{digits}f}"
    return text.replace(",", " ")


def count(v):
    """A count: no decimals."""
    return num(v, 0)


def cell(values, digits=None):
    """The median [min–max] of `values` (None left out)."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if min(values) == max(values):
        return num(values[0], digits)
    return f"{num(statistics.median(values), digits)} [{num(min(values), digits)}–{num(max(values), digits)}]"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(pairs, digits=2):
    """The median of the same-round ratios a / b."""
    values = [a / b for a, b in pairs if a is not None and b]
    return num(statistics.median(values), digits) if values else "-"


class Results:
    def __init__(self, root):
        self.root = root

    def path(self, name):
        return os.path.join(self.root, name)

    def json(self, name):
        try:
            with open(self.path(name)) as f:
                text = f.read().strip()
            return json.loads(text) if text else None
        except (OSError, ValueError):
            return None

    def lines(self, name):
        try:
            with open(self.path(name)) as f:
                return [line.strip() for line in f]
        except OSError:
            return []

    def kv(self, name):
        """A `.kv` file as {key: text}."""
        pairs = (line.partition("=") for line in self.lines(name))
        return {key: value for key, sep, value in pairs if sep}

    def metrics(self, name):
        """Starling's /metrics as {name: value} (no labels)."""
        found = (re.match(r"^([a-z_]+) ([0-9.e+-]+)$", line) for line in self.lines(name))
        return {m.group(1): float(m.group(2)) for m in found if m}

    def rounds(self, prefix):
        """The rounds that have a file starting with `prefix-ROUND-`."""
        found = set()
        for path in glob.glob(self.path(f"{prefix}-*")):
            m = re.match(re.escape(prefix) + r"-(\d+)-", os.path.basename(path))
            if m:
                found.add(int(m.group(1)))
        return sorted(found)


def kv_num(kv, key):
    try:
        return float(kv[key])
    except (KeyError, ValueError):
        return None


def messages(report):
    return (report or {}).get("messages") or {}


def cpu_secs(report):
    return ((report or {}).get("broker") or {}).get("cpu_secs_messages")


def fanin_row(r, spec, broker, rnd):
    """One fan-in run's figures."""
    report = r.json(f"fanin-{spec}-{rnd}-{broker}.json")
    m = messages(report)
    if not m:
        return None
    tally = m.get("tally") or {}
    delivered = tally.get("unique")
    latency = m.get("latency") or {}
    metrics = r.metrics(f"fanin-{spec}-{rnd}-{broker}.metrics")
    commits = metrics.get("starling_store_commits_total")
    offline = m.get("offline") or {}
    row = {
        "delivered_per_sec": m.get("delivered_per_sec"),
        "delivered_percent": m.get("delivered_percent"),
        "p50": latency.get("p50_ms"),
        "p99": latency.get("p99_ms"),
        "cpu_us": (cpu_secs(report) or 0) * 1e6 / delivered if delivered and cpu_secs(report) else None,
        "commits": commits,
        "acked_per_sec": offline.get("acknowledged_per_sec"),
        "resumed": offline.get("resumed"),
        "away_cpu_us": None,
    }
    if offline.get("broker_cpu_secs") is not None and offline.get("acknowledged"):
        row["away_cpu_us"] = offline["broker_cpu_secs"] * 1e6 / offline["acknowledged"]
    busy = offline.get("acknowledged_secs") if offline else m.get("deliver_secs")
    if commits and busy:
        row["commits_per_sec"] = commits / busy
    if commits and m.get("published"):
        row["per_commit"] = m["published"] / commits
    return row


def fanin_tables(r, out):
    for spec, title in (
        ("online", "QoS 1 fan-in to a connected persistent subscriber"),
        ("offline", "QoS 1 fan-in while the persistent subscriber is away (queued only), then its return"),
        ("clean", "QoS 1 fan-in to a clean-session subscriber (nothing durable asked for)"),
    ):
        rounds = r.rounds(f"fanin-{spec}")
        if not rounds:
            continue
        brokers = [b for b in FANIN_BROKERS if any(r.json(f"fanin-{spec}-{n}-{b}.json") for n in rounds)]
        rows = {b: [fanin_row(r, spec, b, n) for n in rounds] for b in brokers}
        out.append(f"### {title}\n")
        if spec != "offline":
            head = ["Broker", "delivered msg/s", "÷ Mosquitto", "e2e p50 / p99 ms", "CPU µs / msg", "commits/s", "msgs / commit", "delivered %"]
            key = "delivered_per_sec"
        else:
            head = ["Broker", "acknowledged msg/s (away)", "÷ Mosquitto", "CPU µs / publish", "delivered msg/s (on return)", "÷ Mosquitto", "commits (away + return)", "delivered %"]
            key = "acked_per_sec"
        out.append("| " + " | ".join(head) + " |")
        out.append("|---|" + "---:|" * (len(head) - 1))
        for b in brokers:
            runs = [x or {} for x in rows[b]]
            get = lambda k: [x.get(k) for x in runs]  # noqa: E731
            mosq = [x or {} for x in rows.get(MOSQUITTO, [None] * len(rounds))]
            versus = "" if b == MOSQUITTO else ratio(zip(get(key), [x.get(key) for x in mosq]))
            if spec != "offline":
                cells = [
                    cell(get(key)), versus,
                    f"{num(median(get('p50')), 1)} / {num(median(get('p99')), 1)}",
                    cell(get("cpu_us"), 1), cell(get("commits_per_sec")), cell(get("per_commit"), 0),
                    cell(get("delivered_percent"), 1),
                ]
            else:
                back = "" if b == MOSQUITTO else ratio(zip(get("delivered_per_sec"), [x.get("delivered_per_sec") for x in mosq]))
                cells = [
                    cell(get(key)), versus, cell(get("away_cpu_us"), 1), cell(get("delivered_per_sec")), back,
                    cell(get("commits"), 0), cell(get("delivered_percent"), 1),
                ]
            out.append(f"| {NAMES.get(b, b)} | " + " | ".join(cells) + " |")
        out.append("")


def disk_table(r, out):
    rounds = r.rounds("disk-empty")
    if not rounds:
        return
    out.append("### Bytes on disk per stored message\n")
    out.append(
        "| Workload | entries (bodies) | Starling `sync`: file size, B / entry | Starling: allocated, B / entry "
        "| Mosquitto `mosquitto.db`, B / entry | Starling ÷ Mosquitto (allocated) |"
    )
    out.append("|---|---:|---:|---:|---:|---:|")
    brokers = ("starling_sync", MOSQUITTO)
    empty = {
        (b, field): [kv_num(r.kv(f"disk-empty-{n}-{b}.kv"), field) for n in rounds]
        for b in brokers
        for field in ("file_bytes", "alloc_bytes")
    }
    same_live = True
    for key, label in DISK_WORKLOADS:
        per = {}
        entries = bodies = None
        for b in brokers:
            per[b] = {"file_bytes": [], "alloc_bytes": []}
            for i, n in enumerate(rounds):
                m = messages(r.json(f"disk-{key}-{n}-{b}.json"))
                queued = (m.get("offline") or {}).get("queued")
                if queued:
                    entries, bodies = queued, m.get("published")
                kv = r.kv(f"disk-{key}-{n}-{b}.kv")
                if b != MOSQUITTO and kv_num(kv, "live_file_bytes") != kv_num(kv, "file_bytes"):
                    same_live = False
                for field, values in per[b].items():
                    size, base = kv_num(kv, field), empty[(b, field)][i] or 0
                    values.append((size - base) / queued if size and queued else None)
        s, m = per["starling_sync"], per[MOSQUITTO]
        out.append(
            f"| {label} | {count(entries)} ({count(bodies)}) | {cell(s['file_bytes'], 1)} | "
            f"{cell(s['alloc_bytes'], 1)} | {cell(m['file_bytes'], 1)} | {ratio(zip(s['alloc_bytes'], m['alloc_bytes']))} |"
        )
    sizes = ", ".join(
        f"{NAMES[b]} {cell(empty[(b, 'file_bytes')])} B ({cell(empty[(b, 'alloc_bytes')])} B allocated)" for b in brokers
    )
    live = "the same" if same_live else "not always the same"
    out.append(
        f"\nMeasured after a clean stop; Starling's file was {live} size while running "
        f"(`starling_store_disk_bytes`). Empty store (subtracted above): {sizes}.\n"
    )


def start_figures(r, prefix):
    kv = r.kv(f"{prefix}.kv")
    ready = r.json(f"{prefix}.ready.json") or {}
    return {
        "connack_s": ready.get("connack_ms") / 1000 if ready.get("connack_ms") is not None else None,
        "port_s": ready.get("port_ms") / 1000 if ready.get("port_ms") is not None else None,
        "recovery_s": kv_num(kv, "recovery_ms") / 1000 if kv_num(kv, "recovery_ms") is not None else None,
        "rss_mib": kv_num(kv, "rss_kib") / 1024 if kv_num(kv, "rss_kib") else None,
        "hwm_mib": kv_num(kv, "hwm_kib") / 1024 if kv_num(kv, "hwm_kib") else None,
        "stop_s": kv_num(kv, "stop_ms") / 1000 if kv_num(kv, "stop_ms") is not None else None,
        "file_mib": kv_num(kv, "file_bytes") / MIB if kv_num(kv, "file_bytes") else None,
    }


RESTART_ROWS = [
    ("process start → first CONNACK, s", "connack_s", 2),
    ("process start → port accepts, s", "port_s", 2),
    ("recovery_ms (log), s", "recovery_s", 2),
    ("RSS after start, MiB", "rss_mib", 0),
    ("peak RSS during start, MiB", "hwm_mib", 0),
    ("clean stop (SIGTERM → exit), s", "stop_s", 2),
    ("store file, MiB", "file_mib", 0),
]


def restart_tables(r, out):
    gen_rounds = r.rounds("restart-gen")
    fill = r.json("restart-gen-fill.json")
    if gen_rounds and fill:
        out.append(
            f"### Restart, generated store: {count(fill['retained'])} retained, {count(fill['sessions'])} sessions × "
            f"{count(fill['queued'] / max(fill['sessions'], 1))} queued ({count(fill['queued'])} messages, "
            f"{fill['payload_bytes']} B payloads)\n"
        )
        figs = [start_figures(r, f"restart-gen-{n}-starling_sync") for n in gen_rounds]
        out.append("| Starling `sync` | median [min–max] |")
        out.append("|---|---:|")
        for label, key, digits in RESTART_ROWS:
            out.append(f"| {label} | {cell([f[key] for f in figs], digits)} |")
        session = r.json("restart-gen-verify-session.json")
        retained = r.json("restart-gen-verify-retained.json")
        if session or retained:
            out.append("")
            out.append(
                f"Read back over MQTT after the start: session present {session and session.get('session_present')}, "
                f"{session and session.get('received')} queued messages in order {session and session.get('in_order')}; "
                f"retained message with RETAIN {retained and retained.get('retained')} "
                f"(`{retained and retained.get('payload_prefix')}`)."
            )
        out.append("")
    mqtt_rounds = r.rounds("restart-mqtt")
    if not mqtt_rounds:
        return
    out.append("### Restart, the same content put through MQTT into each broker\n")
    fills = {}
    for b in ("starling_sync", MOSQUITTO):
        ret = r.json(f"restart-mqtt-fill-retained-{b}.json") or {}
        sessions = queued = 0
        for path in sorted(glob.glob(r.path(f"restart-mqtt-fill-sessions-*-{b}.json"))):
            offline = messages(r.json(os.path.basename(path))).get("offline") or {}
            sessions += offline.get("departed") or 0
            queued += offline.get("queued") or 0
        fills[b] = ((ret.get("retained") or {}).get("messages"), sessions, queued)
    out.append(
        "Content: " + "; ".join(f"{NAMES[b]} {count(f[0])} retained, {count(f[1])} sessions, {count(f[2])} queued" for b, f in fills.items()) + ".\n"
    )
    out.append("| Figure | Starling `sync` | Mosquitto | Starling ÷ Mosquitto |")
    out.append("|---|---:|---:|---:|")
    figs = {b: [start_figures(r, f"restart-mqtt-{n}-{b}") for n in mqtt_rounds] for b in ("starling_sync", MOSQUITTO)}
    for label, key, digits in RESTART_ROWS:
        s = [f[key] for f in figs["starling_sync"]]
        m = [f[key] for f in figs[MOSQUITTO]]
        versus = ratio(zip(s, m)) if any(v is not None for v in m) else ""
        out.append(f"| {label} | {cell(s, digits)} | {cell(m, digits)} | {versus} |")
    out.append("")


def rss_table(r, out):
    rounds = r.rounds("rss")
    if not rounds:
        return
    entries = None
    rows = {}
    for b in ("starling_sync", MOSQUITTO):
        runs = []
        for n in rounds:
            kv = r.kv(f"rss-{n}-{b}.kv")
            offline = messages(r.json(f"rss-{n}-{b}.json")).get("offline") or {}
            entries = offline.get("queued") or entries
            ready = r.json(f"rss-{n}-{b}.ready.json") or {}
            idle, queued, restarted = (kv_num(kv, k) for k in ("idle_kib", "queued_kib", "restarted_kib"))
            runs.append({
                "idle": idle / 1024 if idle else None,
                "queued": queued / 1024 if queued else None,
                "restarted": restarted / 1024 if restarted else None,
                "per_entry": (queued - idle) * 1024 / offline["queued"] if queued and idle and offline.get("queued") else None,
                "acked": offline.get("acknowledged_per_sec"),
                "stop": kv_num(kv, "stop_ms") / 1000 if kv_num(kv, "stop_ms") is not None else None,
                "ready": ready.get("connack_ms") / 1000 if ready.get("connack_ms") is not None else None,
                "file": kv_num(kv, "file_bytes") / MIB if kv_num(kv, "file_bytes") else None,
            })
        rows[b] = runs
    out.append(f"### RSS with {count(entries)} messages queued for offline sessions\n")
    out.append("| Figure | Starling `sync` | Mosquitto | Starling ÷ Mosquitto |")
    out.append("|---|---:|---:|---:|")
    for label, key, digits in [
        ("RSS idle, MiB", "idle", 1),
        ("RSS with the messages queued, MiB", "queued", 0),
        ("  per queued message (over idle), B", "per_entry", 0),
        ("RSS after a clean stop and restart, MiB", "restarted", 0),
        ("filling: publishes acknowledged per s", "acked", 0),
        ("clean stop, s", "stop", 2),
        ("restart: process start → first CONNACK, s", "ready", 2),
        ("store file after the stop, MiB", "file", 0),
    ]:
        s = [x[key] for x in rows["starling_sync"]]
        m = [x[key] for x in rows[MOSQUITTO]]
        out.append(f"| {label} | {cell(s, digits)} | {cell(m, digits)} | {ratio(zip(s, m))} |")
    out.append("")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    r = Results(argv[1])
    machine = r.kv("machine.kv")
    fsync = (r.json("fsync.json") or {}).get("fdatasync_us") or {}
    out = [
        f"# Persistence: Starling against Mosquitto {machine.get('mosquitto', '')}, {machine.get('runs', '?')} rounds\n",
        f"{machine.get('date', '')}, commit {machine.get('commit', '?')}, {machine.get('cpus', '?')} CPUs; load average "
        f"{machine.get('load_before', '?')} before, {machine.get('load_after', '?')} after; took {machine.get('secs', '?')} s. "
        f"fdatasync of 4 KiB on the store's disk: p50 {fsync.get('p50', '-')} µs, p90 {fsync.get('p90', '-')} µs.\n",
    ]
    fanin_tables(r, out)
    disk_table(r, out)
    restart_tables(r, out)
    rss_table(r, out)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
