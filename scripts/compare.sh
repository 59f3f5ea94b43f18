#!/usr/bin/env bash
# Side-by-side load test: Starling and Mosquitto started by this script on free loopback
# ports, the same scenarios run against each (alternating which goes first), one markdown
# table with ratios at the end.
#
#   scripts/compare.sh SCENARIO[:FLAGS]...
#   scripts/compare.sh conn:'--clients 15000 --subscribe --hold-secs 2' fanin 'fanin:--qos 1'
#
# Environment: BIN_DIR (default target/release; set SKIP_BUILD=1 to use it as is),
# MOSQUITTO_CONF_EXTRA (lines appended to Mosquitto's config, e.g. "max_queued_messages 0"),
# STARLING_ARGS (extra broker flags), RESULTS_DIR (JSON reports; default a temp dir),
# FLOOR=1 (also run conn and churn scenarios against starling-floor, the least any MQTT
# server must do per connection, and add its column: the machine's ceiling in this run).
# Only the PIDs this script started are stopped.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${BIN_DIR:-$root/target/release}"
if [[ $# -eq 0 ]]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
prepare_comparison "$root"
open_workspace

starling_port="$(free_port)"
# shellcheck disable=SC2086 # STARLING_ARGS is a list of flags
"$bin_dir/starling" --listen "127.0.0.1:$starling_port" ${STARLING_ARGS:-} \
    >"$work/starling.log" 2>&1 &
starling_pid=$!
pids+=("$starling_pid")

mosquitto_port="$(free_port)"
{
    echo "listener $mosquitto_port 127.0.0.1"
    echo "persistence false"
    echo "max_connections -1"
    echo "allow_anonymous true"
    echo "log_dest none"
    printf '%s\n' "${MOSQUITTO_CONF_EXTRA:-}"
} >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
mosquitto_pid=$!
pids+=("$mosquitto_pid")

floor_port=""
if [[ "${FLOOR:-0}" == 1 ]]; then
    floor_port="$(free_port)"
    "$bin_dir/starling-floor" --listen "127.0.0.1:$floor_port" >"$work/floor.log" 2>&1 &
    floor_pid=$!
    pids+=("$floor_pid")
    wait_port "$floor_port"
fi

wait_port "$starling_port"
wait_port "$mosquitto_port"
echo "starling pid $starling_pid on :$starling_port, mosquitto pid $mosquitto_pid on :$mosquitto_port" >&2

run_one() {
    local broker=$1 port=$2 pid=$3 name=$4 flags=$5 out=$6
    # shellcheck disable=SC2086 # flags is a list of harness flags
    "$bin_dir/starling-loadtest" "$name" --target "127.0.0.1:$port" --broker-pid "$pid" \
        --label "$broker" --json $flags >"$out" 2>"$out.log" || {
        echo "$broker $name failed:" >&2
        tail -3 "$out.log" >&2
    }
}

n=0
for spec in "$@"; do
    split_spec "$spec"
    n=$((n + 1))
    s_out="$results/$n-starling.json"
    m_out="$results/$n-mosquitto.json"
    if ((n % 2)); then
        run_one starling "$starling_port" "$starling_pid" "$name" "$flags" "$s_out"
        run_one mosquitto "$mosquitto_port" "$mosquitto_pid" "$name" "$flags" "$m_out"
    else
        run_one mosquitto "$mosquitto_port" "$mosquitto_pid" "$name" "$flags" "$m_out"
        run_one starling "$starling_port" "$starling_pid" "$name" "$flags" "$s_out"
    fi
    if [[ -n "$floor_port" && ("$name" == conn || "$name" == churn) ]]; then
        run_one floor "$floor_port" "$floor_pid" "$name" "$flags" "$results/$n-floor.json"
    fi
    echo "$spec" >"$results/$n.spec"
done

python3 - "$results" "$n" <<'PY'
import json, sys, os
results, n = sys.argv[1], int(sys.argv[2])
def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None
def metrics(r):
    out = {}
    if not r:
        return out
    c = r.get("connects")
    if c:
        out["connects/s"] = c["per_sec"]
        out["CONNACK p50 ms"] = c["connack_latency"]["p50_ms"]
        out["CONNACK p99 ms"] = c["connack_latency"]["p99_ms"]
        if c.get("handshake_latency"):
            out["  TCP handshake p99 ms"] = c["handshake_latency"]["p99_ms"]
            out["  CONNECT→CONNACK p99 ms"] = c["connect_to_connack_latency"]["p99_ms"]
    for cy in r.get("cycles", []):
        out[f"cycle {cy['cycle']} connects/s"] = cy["connects"]["per_sec"]
        out[f"cycle {cy['cycle']} CONNACK p99 ms"] = cy["connects"]["connack_latency"]["p99_ms"]
    m = r.get("messages")
    if m:
        out["delivered msg/s"] = m["delivered_per_sec"]
        out["lost"] = m["tally"]["lost"]
        out["duplicated"] = m["tally"]["duplicates"]
        out["e2e p50 ms"] = m["latency"]["p50_ms"]
        out["e2e p99 ms"] = m["latency"]["p99_ms"]
        g = m.get("group")
        if g:
            out["group min/max"] = g["min"] / g["max"] if g["max"] else 0.0
            out["group spread (sd/mean) %"] = g["cv_percent"]
    t = r.get("timer_lateness")
    if t:
        out["machine stalls p99.9 ms (0.5 ms sleep woke late)"] = t["p999_ms"]
    b = r.get("broker")
    if b:
        if b.get("rss_bytes_per_client") is not None:
            out["RSS B/client"] = b["rss_bytes_per_client"]
        out["peak RSS MiB"] = b["peak_rss_bytes"] / 2**20
        if b.get("cpu_percent_messages") is not None:
            out["CPU %"] = b["cpu_percent_messages"]
    return out
floor = any(os.path.exists(os.path.join(results, f"{i}-floor.json")) for i in range(1, n + 1))
if floor:
    print("| scenario | metric | Starling | Mosquitto | ratio | floor | Starling/floor |")
    print("|---|---|---:|---:|---:|---:|---:|")
else:
    print("| scenario | metric | Starling | Mosquitto | ratio |")
    print("|---|---|---:|---:|---:|")
fmt = lambda v: "-" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}")
ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "-"
for i in range(1, n + 1):
    spec = open(os.path.join(results, f"{i}.spec")).read().strip()
    s = metrics(load(os.path.join(results, f"{i}-starling.json")))
    m = metrics(load(os.path.join(results, f"{i}-mosquitto.json")))
    f = metrics(load(os.path.join(results, f"{i}-floor.json")))
    for key in list(dict.fromkeys(list(s) + list(m))):
        a, b, c = s.get(key), m.get(key), f.get(key)
        row = f"| `{spec}` | {key} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |"
        if floor:
            row += f" {fmt(c)} | {ratio(a, c)} |"
        print(row)
PY
