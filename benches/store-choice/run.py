#!/usr/bin/env python3
"""Runs every scenario of store-choice three times per store, alternating the stores, and
writes results/raw.jsonl (one line per run) and results/summary.md (median [min–max]).

    python3 run.py            # the whole matrix (about 12 minutes on 2 cores)
    python3 run.py --quick    # one short run of each, to check the harness
    python3 run.py build-cost # clean release build of each store alone, and its dependencies

Every run is a separate process with a timeout; each works in a fresh directory under
/tmp/store-choice and removes it.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "target", "release", "store-choice")
RESULTS = os.path.join(HERE, "results")
REPS = 3

# (label, store, extra options): the variants run beside the two defaults.
DEFAULT = [("redb", "redb", []), ("fjall", "fjall", [])]
VARIANTS_SYNC = [
    ("redb quick-repair", "redb", ["--redb-quick-repair", "yes"]),
    ("fjall fdatasync", "fjall", ["--fjall-sync", "data"]),
]


def matrix(quick):
    """(scenario, options, [(label, store, extra)])"""
    secs = "1" if quick else "3"
    m = []
    for payload in ("64", "1024"):
        for batch in ("1", "16", "256"):
            stores = DEFAULT + (VARIANTS_SYNC if payload == "64" else [])
            m.append(("fanin", ["--payload", payload, "--batch", batch, "--seconds", secs], stores))
    for payload in ("64", "1024"):
        for batch in ("1", "16", "256"):
            m.append(("async", ["--payload", payload, "--batch", batch, "--seconds", secs,
                                "--flush-ms", "10"], DEFAULT))
    m.append(("fanout", ["--refs", "100", "--repeat", "20"], DEFAULT))
    m.append(("fanout", ["--refs", "10000", "--repeat", "10"], DEFAULT))
    msgs = "100000" if quick else "1000000"
    m.append(("churn", ["--messages", msgs], DEFAULT + [
        ("fjall journal 64 MiB", "fjall", ["--fjall-journal-mib", "64"])]))
    rec = ["--retained", "100000", "--sessions", "10000"] if quick else []
    m.append(("recovery", rec, DEFAULT + [
        ("redb quick-repair", "redb", ["--redb-quick-repair", "yes"])]))
    m.append(("lock", [], DEFAULT))
    return m


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_one(store, scenario, opts, timeout=400):
    p = sh([BIN, store, scenario] + opts, timeout=timeout)
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if p.returncode != 0 or not line:
        raise RuntimeError(f"{store} {scenario} {opts} failed:\n{p.stdout}\n{p.stderr}")
    kv = {}
    for tok in line[-1].split()[1:]:
        k, _, v = tok.partition("=")
        kv[k] = v
    return kv


def strace_fsyncs(store, extra):
    """fsync-family calls and commits in a one-second fan-in run (batch 16, 64 B)."""
    out = "/tmp/store-choice-strace.txt"
    p = sh(["strace", "-f", "-c", "-o", out, "-e",
            "trace=fsync,fdatasync,sync_file_range,msync,pwrite64,write",
            BIN, store, "fanin", "--batch", "16", "--seconds", "1"] + extra, timeout=60)
    kv = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if not kv or not os.path.exists(out):
        return None
    msgs = int(re.search(r"messages=(\d+)", kv[-1]).group(1))
    commits = msgs // 16
    calls = {}
    with open(out) as f:
        for l in f:
            parts = l.split()
            if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync", "sync_file_range", "msync",
                                                 "pwrite64", "write"):
                calls[parts[-1]] = int(parts[3])
    os.remove(out)
    return {"commits": commits, **calls}


def fmt(vals):
    nums = []
    for v in vals:
        try:
            nums.append(float(v))
        except ValueError:
            return " / ".join(sorted(set(vals)))
    med = statistics.median(nums)

    def f(x):
        if abs(x) >= 1000:
            return f"{x:,.0f}".replace(",", "\u202f")
        return f"{x:.1f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x)}"
    if len(nums) == 1:
        return f(med)
    return f"{f(med)} [{f(min(nums))}–{f(max(nums))}]"


SHOW = {
    "fanin": ["msgs_per_s", "fsyncs_per_s", "commit_p50_us", "commit_p99_us",
              "write_bytes_per_msg", "threads_end", "peak_rss_mib"],
    "async": ["msgs_per_s", "commits_per_s", "syncs_per_s", "commit_p50_us", "commit_p99_us",
              "write_bytes_per_msg", "peak_rss_mib"],
    "fanout": ["commit_p50_us", "commit_max_us", "logical_bytes_per_commit", "wchar_per_commit",
               "write_bytes_per_commit", "disk_growth_per_commit"],
    "churn": ["messages", "msgs_per_s", "commit_p50_us", "commit_p99_us", "disk_before_mib",
              "disk_after_mib", "journal_after_mib", "disk_idle_2s_mib", "disk_reopened_mib",
              "reopen_scan_ms", "entries_live", "entries_expected", "peak_rss_mib",
              "disk_checkpoints_mib"],
    "recovery": ["load_s", "bytes_per_retained", "bytes_per_queued_ref", "disk_closed_mib",
                 "journal_closed_mib", "first_open_ms", "first_open_scan_ms",
                 "again_cold_open_ms", "again_cold_open_scan_ms", "dirty_open_ms",
                 "dirty_open_scan_ms", "flushed_open_ms", "flushed_open_scan_ms",
                 "bytes_per_entry_flushed_no_journal", "peak_rss_mib"],
    "lock": ["second_process_while_open", "second_process_after_close"],
}


def summarize(rows, header):
    lines = [header, ""]
    groups = {}
    for r in rows:
        key = (r["scenario"], " ".join(r["opts"]))
        groups.setdefault(key, {}).setdefault(r["label"], []).append(r["kv"])
    for (scenario, opts), by_label in groups.items():
        labels = list(by_label)
        lines.append(f"### {scenario} {opts}".rstrip())
        lines.append("")
        lines.append("| metric | " + " | ".join(labels) + " |")
        lines.append("|---|" + "---:|" * len(labels))
        for metric in SHOW[scenario]:
            cells = []
            for l in labels:
                vals = [kv[metric] for kv in by_label[l] if metric in kv]
                cells.append(fmt(vals) if vals else "–")
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        loads = [kv["load_start"] for l in labels for kv in by_label[l]]
        lines.append(f"| load average (1 min) at start | {min(loads)}–{max(loads)} |")
        lines.append("")
    return "\n".join(lines)


def build_cost():
    out = []
    for store in ("redb", "fjall"):
        target = f"/tmp/store-choice-build-{store}"
        shutil.rmtree(target, ignore_errors=True)
        la = loadavg()
        t0 = time.time()
        p = sh(["/usr/bin/time", "-f", "TIME %e %U %S", "cargo", "build", "--release",
                "--no-default-features", "--features", store, "--target-dir", target], cwd=HERE)
        m = re.search(r"TIME ([\d.]+) ([\d.]+) ([\d.]+)", p.stderr)
        wall, user, sys_ = (float(x) for x in m.groups())
        tree = sh(["cargo", "tree", "--no-default-features", "--features", store, "-e", "normal",
                   "--prefix", "none"], cwd=HERE).stdout
        pkgs = {" ".join(l.split()[:2]) for l in tree.splitlines() if l.strip()}
        pkgs = {p for p in pkgs if not p.startswith("store-choice ")}
        # libc is this crate's own dependency (posix_fadvise): count it only if the store needs it.
        inv = sh(["cargo", "tree", "--no-default-features", "--features", store, "-e", "normal",
                  "-i", "libc", "--prefix", "none"], cwd=HERE).stdout
        if not any(l.split()[0] not in ("libc", "store-choice") for l in inv.splitlines() if l.strip()):
            pkgs = {p for p in pkgs if not p.startswith("libc ")}
        pkgs = sorted(pkgs)
        out.append({"store": store, "wall_s": wall, "cpu_s": round(user + sys_, 1),
                    "load_before": la, "load_after": loadavg(), "packages": len(pkgs),
                    "package_list": pkgs})
        shutil.rmtree(target, ignore_errors=True)
        print(json.dumps(out[-1]))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "build-cost.json"), "w") as f:
        json.dump(out, f, indent=1)


def main():
    if "build-cost" in sys.argv:
        return build_cost()
    quick = "--quick" in sys.argv
    reps = 1 if quick else REPS
    subprocess.run(["cargo", "build", "--release"], cwd=HERE, check=True)
    os.makedirs(RESULTS, exist_ok=True)
    df = sh(["df", "-T", "/tmp"]).stdout.strip().splitlines()[-1].split()
    started = time.time()
    header = (f"Run of {time.strftime('%Y-%m-%d %H:%M')}, /tmp on {df[1]} ({df[0]}), "
              f"{os.cpu_count()} cores, load average at start {loadavg()}")
    print(header, flush=True)
    rows = []
    raw = open(os.path.join(RESULTS, "raw.jsonl" if not quick else "quick.jsonl"), "w")
    for scenario, opts, stores in matrix(quick):
        for rep in range(reps):
            order = stores if rep % 2 == 0 else list(reversed(stores))
            for label, store, extra in order:
                kv = run_one(store, scenario, opts + extra)
                row = {"scenario": scenario, "opts": opts, "label": label, "store": store,
                       "extra": extra, "rep": rep, "kv": kv}
                rows.append(row)
                raw.write(json.dumps(row) + "\n")
                raw.flush()
                show = {k: kv.get(k) for k in SHOW[scenario][:3]}
                print(f"{time.time() - started:6.0f}s {scenario} {' '.join(opts)} {label} "
                      f"#{rep}: {show}", flush=True)
    fs = {}
    for label, store, extra in DEFAULT + VARIANTS_SYNC:
        fs[label] = strace_fsyncs(store, extra)
    raw.close()
    footer = (f"\nTotal {time.time() - started:.0f} s; load average at end {loadavg()}.\n\n"
              "### System calls in a 1 s fan-in run (batch 16, 64 B), counted by strace -f -c\n\n"
              + "\n".join(f"- {k}: {json.dumps(v)}" for k, v in fs.items()) + "\n")
    name = "summary.md" if not quick else "quick.md"
    with open(os.path.join(RESULTS, name), "w") as f:
        f.write(summarize(rows, "# " + header) + footer)
    print(footer)


if __name__ == "__main__":
    main()
