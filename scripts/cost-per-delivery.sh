#!/usr/bin/env bash
# Where a broker's CPU per delivered message goes: user time, kernel time, and the system
# calls behind them, for one load-harness scenario against a freshly started Starling.
#
#   scripts/cost-per-delivery.sh [HARNESS SCENARIO AND FLAGS]
#   RUNS=5 scripts/cost-per-delivery.sh fanin --publishers 100 --qos 1 --inflight 10 --duration-secs 5
#
# Default scenario: the line above. Each run starts the broker on a free loopback port
# (STARLING_ARGS are added to its flags), counts its system calls with `perf stat`
# (tracepoints: needs perf, from Debian's linux-perf, and root or a permissive
# perf_event_paranoid) while the harness runs, reads its user and kernel CPU ticks from
# /proc/PID/stat, and prints one line per run: delivered msg/s, user and kernel CPU µs per
# delivery, and each counted system call per delivery. Runs whose system calls per
# delivery agree but whose kernel time does not point at the machine (scheduling, wake-ups
# between CPUs), not at the broker's own work. BIN_DIR (default target/release) holds
# starling and starling-loadtest; SKIP_BUILD=1 uses them as they are.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${BIN_DIR:-$root/target/release}"
runs="${RUNS:-3}"
if [[ $# -eq 0 ]]; then
  set -- fanin --publishers 100 --qos 1 --inflight 10 --duration-secs 5
fi
command -v perf >/dev/null || {
  echo "perf is not installed (apt-get install linux-perf)" >&2
  exit 2
}
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$root" && cargo build --release -p starling -p starling-loadtest)
fi
work="$(mktemp -d)"
pids=()
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
trap cleanup EXIT
events=syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_write,context-switches
ticks_per_sec="$(getconf CLK_TCK)"

for run in $(seq "$runs"); do
  port="$(free_port)"
  read -r -a extra <<<"${STARLING_ARGS:-}"
  "$bin_dir/starling" --listen "127.0.0.1:$port" --metrics-listen off --log-level warn \
    "${extra[@]}" >"$work/broker.log" 2>&1 &
  broker=$!
  pids+=("$broker")
  wait_port "$port"
  read -r user0 sys0 < <(awk '{print $14, $15}' "/proc/$broker/stat")
  perf stat -x, -o "$work/perf.csv" -e "$events" -p "$broker" &
  perf_pid=$!
  pids+=("$perf_pid")
  "$bin_dir/starling-loadtest" "$@" --target "127.0.0.1:$port" --json >"$work/report.json" 2>"$work/harness.log"
  read -r user1 sys1 < <(awk '{print $14, $15}' "/proc/$broker/stat")
  kill -INT "$perf_pid"
  wait "$perf_pid" 2>/dev/null || true
  kill "$broker"
  wait "$broker" 2>/dev/null || true
  python3 - "$run" "$work/report.json" "$work/perf.csv" "$((user1 - user0))" "$((sys1 - sys0))" "$ticks_per_sec" <<'PY'
import json
import sys

run, report, perf, user, system, hz = sys.argv[1:]
messages = json.load(open(report))["messages"]
delivered = max(messages["tally"]["delivered"], 1)
counts = []
for line in open(perf):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].isdigit():
        name = fields[2].split(":")[-1].replace("sys_enter_", "")
        counts.append(f"{name} {int(fields[0]) / delivered:.3f}")
us = 1e6 / int(hz) / delivered
print(
    f"run {run}: {messages['delivered_per_sec']:,.0f} msg/s; CPU µs per delivery: "
    f"user {int(user) * us:.2f}, kernel {int(system) * us:.2f}; per delivery: " + ", ".join(counts)
)
PY
done
