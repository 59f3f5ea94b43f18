#!/usr/bin/env bash
# Benchmarks of the state a broker holds for its clients, Starling beside Mosquitto: a large
# retained set delivered to one new subscriber, and many subscriptions made and removed.
# Every run gets fresh broker processes (a retained set or a million subscriptions would
# otherwise carry over), the two brokers alternate which goes first, and each spec runs RUNS
# times (default 3); the table gives min, median and max of each figure, and the ratio of the
# medians.
#
#   scripts/bench-state.sh SCENARIO[:FLAGS]...
#   scripts/bench-state.sh 'retained:--messages 100000 --payload-bytes 16 --qos 0' \
#       'subscribe:--clients 1 --filters 100000'
#   scripts/bench-state.sh            # the set docs/benchmarks.md reports
#
# Environment: BIN_DIR (default target/release; SKIP_BUILD=1 uses it as is), RUNS,
# STARLING_ARGS (extra broker flags; default raises --max-subscriptions-per-client, which
# Mosquitto does not limit), MOSQUITTO_CONF_EXTRA (default lifts its queue limits:
# "max_queued_messages 0", as its retained delivery is otherwise cut at the queue limit),
# RESULTS_DIR (JSON reports; default a temp dir), BEFORE_BIN (another starling binary, e.g.
# a build from before a change: run the same way as a third broker, "before", with its own
# column and the ratio to it). Only the PIDs this script started are stopped.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${BIN_DIR:-$root/target/release}"
runs="${RUNS:-3}"
if [[ $# -eq 0 ]]; then
    set -- \
        'retained:--messages 1000000 --payload-bytes 16 --qos 0 --drain-secs 60' \
        'retained:--messages 1000000 --payload-bytes 16 --qos 1 --drain-secs 60' \
        'retained:--messages 100000 --payload-bytes 16 --qos 0 --drain-secs 30' \
        'retained:--messages 100000 --payload-bytes 16 --qos 1 --drain-secs 30' \
        'subscribe:--clients 1 --filters 1000' \
        'subscribe:--clients 1 --filters 100000' \
        'subscribe:--clients 1000 --filters 1000'
fi
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
prepare_comparison "$root"
open_workspace

# Starts one broker on a free port; sets $port and $pid.
start_broker() {
    local broker=$1
    port="$(free_port)"
    if [[ "$broker" == starling || "$broker" == before ]]; then
        local binary="$bin_dir/starling"
        [[ "$broker" == before ]] && binary="$BEFORE_BIN"
        # shellcheck disable=SC2086 # STARLING_ARGS is a list of flags
        "$binary" --listen "127.0.0.1:$port" \
            ${STARLING_ARGS:---max-subscriptions-per-client 2000000} \
            >>"$work/$broker.log" 2>&1 &
    else
        {
            echo "listener $port 127.0.0.1"
            echo "persistence false"
            echo "max_connections -1"
            echo "allow_anonymous true"
            echo "log_dest none"
            printf '%s\n' "${MOSQUITTO_CONF_EXTRA:-max_queued_messages 0}"
        } >"$work/mosquitto.conf"
        mosquitto -c "$work/mosquitto.conf" >>"$work/mosquitto.log" 2>&1 &
    fi
    pid=$!
    pids+=("$pid")
    wait_port "$port"
}

stop_broker() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

run_one() {
    local broker=$1 name=$2 flags=$3 out=$4
    start_broker "$broker"
    # shellcheck disable=SC2086 # flags is a list of harness flags
    "$bin_dir/starling-loadtest" "$name" --target "127.0.0.1:$port" --broker-pid "$pid" \
        --label "$broker" --json $flags >"$out" 2>"$out.log" || {
        echo "$broker $name failed:" >&2
        tail -3 "$out.log" >&2
    }
    stop_broker "$pid"
}

n=0
for spec in "$@"; do
    split_spec "$spec"
    n=$((n + 1))
    echo "$spec" >"$results/$n.spec"
    for run in $(seq "$runs"); do
        echo "[$n] $spec: run $run of $runs" >&2
        if (((n + run) % 2)); then
            order=(starling mosquitto)
        else
            order=(mosquitto starling)
        fi
        if [[ -n "${BEFORE_BIN:-}" ]]; then
            order+=(before)
        fi
        for broker in "${order[@]}"; do
            run_one "$broker" "$name" "$flags" "$results/$n-$broker-$run.json"
        done
    done
done

python3 - "$results" "$n" "$runs" "${BEFORE_BIN:+before}" <<'PY'
import json, os, statistics, sys
results, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
brokers = ["starling", "mosquitto"] + (["before"] if sys.argv[4:] and sys.argv[4] else [])
MIB = 2**20
def report(i, broker, run):
    """The JSON report of one run, or None if it failed."""
    try:
        return json.loads(open(os.path.join(results, f"{i}-{broker}-{run}.json")).read())
    except (OSError, ValueError):
        return None
def metrics(r):
    out = {}
    if r is None:
        return out
    t = r.get("retained")
    if t:
        out["delivery s (SUBSCRIBE → last)"] = t["deliver_secs"]
        out["first message ms"] = t["first_ms"]
        if t.get("cpu_deliver_secs") is not None:
            out["broker CPU s delivering"] = t["cpu_deliver_secs"]
        out["delivered (of set)"] = t["distinct"]
        out["missing"] = t["missing"]
        out["duplicates"] = t["duplicates"]
        if t.get("rss_loaded_bytes") is not None:
            out["RSS loaded MiB"] = t["rss_loaded_bytes"] / MIB
            out["RSS peak delivering MiB"] = t["rss_peak_bytes"] / MIB
            out["RSS growth delivering MiB"] = (t["rss_peak_bytes"] - t["rss_loaded_bytes"]) / MIB
        out["bystander p99 ms"] = t["bystander"]["round_trip"]["p99_ms"]
        out["bystander failed"] = t["bystander"]["failed"]
    lateness = r.get("timer_lateness")
    if lateness:
        out["machine stalls p99 ms (0.5 ms sleep woke late)"] = lateness["p99_ms"]
    s = r.get("subscriptions")
    if s:
        out["µs per subscribe"] = s["per_subscribe_us"]
        out["µs per unsubscribe"] = s["per_unsubscribe_us"]
        if s.get("cpu_per_subscribe_us") is not None:
            out["broker CPU µs per subscribe"] = s["cpu_per_subscribe_us"]
            out["broker CPU µs per unsubscribe"] = s["cpu_per_unsubscribe_us"]
        if s.get("rss_bytes_per_subscription") is not None:
            out["RSS B per subscription"] = s["rss_bytes_per_subscription"]
        out["refused"] = s["refused"]
        out["bystander p99 ms"] = s["bystander"]["round_trip"]["p99_ms"]
        out["bystander failed"] = s["bystander"]["failed"]
    return out
fmt = lambda v: "-" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")
def spread(values):
    if not values:
        return "-", None
    m = statistics.median(values)
    return f"{fmt(min(values))} – **{fmt(m)}** – {fmt(max(values))}", m
print(f"min – **median** – max of {runs} runs, fresh brokers each run\n")
if "before" in brokers:
    print("| scenario | metric | Starling | Mosquitto | ratio of medians | Starling before | ratio to before |")
    print("|---|---|---:|---:|---:|---:|---:|")
else:
    print("| scenario | metric | Starling | Mosquitto | ratio of medians |")
    print("|---|---|---:|---:|---:|")
for i in range(1, n + 1):
    spec = open(os.path.join(results, f"{i}.spec")).read().strip()
    per = {b: [metrics(report(i, b, k)) for k in range(1, runs + 1)] for b in brokers}
    keys = list(dict.fromkeys(k for b in per.values() for m in b for k in m))
    for key in keys:
        s_text, s_med = spread([m[key] for m in per["starling"] if key in m])
        m_text, m_med = spread([m[key] for m in per["mosquitto"] if key in m])
        ratio = f"{s_med / m_med:.2f}" if s_med is not None and m_med else "-"
        row = f"| `{spec}` | {key} | {s_text} | {m_text} | {ratio} |"
        if "before" in brokers:
            b_text, b_med = spread([m[key] for m in per["before"] if key in m])
            row += f" {b_text} | {s_med / b_med:.2f} |" if s_med is not None and b_med else f" {b_text} | - |"
        print(row)
PY
