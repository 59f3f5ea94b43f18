#!/usr/bin/env bash
# Drives starling-loadtest through a memory timeline (start-up, the first pool expansions,
# then up to the open-file limit, and simulated phases up to a million clients) and writes
# the table with measured values (docs/memory.md shows one run).
#
#   scripts/mem-timeline.sh [--output timeline.md] [--csv mem.csv] [--png mem.png]
#                           [--bin-dir target/release] [--quick]
#
# TCP phases, against one broker with ONE event loop (a single pool of 1 024 preheated
# objects): start-up, then clients added and held in steps: 819 (80 % of 1 024:
# the first expansion), 1 228 (80 % of 1 536: the second), 1 843 and 2 765 (the next two
# expansion triggers), 5 000, 10 000 and 19 000 (under the 20 000 open-file limit). Each
# step is a `starling-loadtest conn` that connects the extra clients and holds them until
# the end. RSS is read from /proc; connections and the pool from the broker's /metrics.
# scripts/mem-monitor.sh samples the whole run into --csv, and scripts/mem-plot turns it
# into --png. Then the simulated phases (no sockets, the broker's core in-process):
# 100 000 and 1 000 000 clients, with the broker heap the harness's counting allocator
# measures. --quick runs 0 / 50 / 100 clients and a 1 000-client simulation (for tests).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
output="-"
csv=""
png=""
bin_dir="${CARGO_TARGET_DIR:-${repo}/target}/release"
quick=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --output) output="$2"; shift 2 ;;
    --csv) csv="$2"; shift 2 ;;
    --png) png="$2"; shift 2 ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "mem-timeline: unknown argument: $1" >&2; exit 2 ;;
  esac
done

broker_bin="${bin_dir}/starling"
loadtest_bin="${bin_dir}/starling-loadtest"
for bin in "${broker_bin}" "${loadtest_bin}"; do
  if [ ! -x "${bin}" ]; then
    echo "mem-timeline: ${bin} missing: cargo build --release -p starling -p starling-loadtest" >&2
    exit 1
  fi
done

if [ "${quick}" -eq 1 ]; then
  tcp_phases=(50 100)
  sim_phases=(1000)
else
  tcp_phases=(819 1228 1843 2765 5000 10000 19000)
  sim_phases=(100000 1000000)
fi

work="$(mktemp -d)"
pids=()
# shellcheck source=scripts/lib.sh
. "${repo}/scripts/lib.sh"
trap cleanup EXIT

mqtt_port="$(free_port)"
metrics_port="$(free_port)"
metrics_url="http://127.0.0.1:${metrics_port}/metrics"

"${broker_bin}" --listen "127.0.0.1:${mqtt_port}" --metrics-listen "127.0.0.1:${metrics_port}" \
  --event-loops 1 --sys-interval-secs 0 --log-level info >"${work}/broker.log" 2>&1 &
broker_pid=$!
pids+=("${broker_pid}")

metric() {
  curl -fsS --max-time 2 "${metrics_url}" 2>/dev/null |
    awk -v name="$1" 'index($0, name) == 1 && substr($0, length(name) + 1) ~ /^[{ ]/ { s += $NF; seen = 1 }
                      END { if (seen) printf "%.0f\n", s }'
}
status_kb() {
  awk -v field="$1:" '$1 == field { print $2; exit }' "/proc/${broker_pid}/status"
}
wait_connections() {
  local want="$1" deadline=$((SECONDS + 180)) have
  while :; do
    have="$(metric starling_connections || true)"
    if [ -n "${have}" ] && [ "${have}" -ge "${want}" ]; then
      return 0
    fi
    if [ "${SECONDS}" -ge "${deadline}" ]; then
      echo "mem-timeline: only ${have:-?} of ${want} clients connected" >&2
      return 1
    fi
    sleep 0.5
  done
}

deadline=$((SECONDS + 10))
until metric starling_connections >/dev/null && [ -n "$(metric starling_connections)" ]; do
  if [ "${SECONDS}" -ge "${deadline}" ]; then
    echo "mem-timeline: the broker did not start:" >&2
    cat "${work}/broker.log" >&2
    exit 1
  fi
  sleep 0.1
done

if [ -n "${csv}" ]; then
  bash "${repo}/scripts/mem-monitor.sh" --pid "${broker_pid}" --interval-secs 0.5 \
    --metrics-url "${metrics_url}" --output "${csv}" &
  pids+=($!)
fi

rows=()
row() {
  local phase="$1" clients="$2"
  local rss peak preheated active live expansions per
  rss="$(status_kb VmRSS)"
  peak="$(status_kb VmHWM)"
  preheated="$(metric starling_pool_preheated_objects)"
  active="$(metric starling_pool_active_objects)"
  live="$(metric starling_pool_live_objects)"
  expansions="$(metric starling_pool_expansions_total)"
  per="-"
  if [ "${clients}" -gt 0 ]; then
    per="$(awk -v r="${rss}" -v b="${base_kb}" -v n="${clients}" 'BEGIN { printf "%.0f", (r - b) * 1024 / n }')"
  fi
  rows+=("| ${phase} | ${clients} | $(awk -v k="${rss}" 'BEGIN { printf "%.1f", k / 1024 }') | $(awk -v k="${peak}" 'BEGIN { printf "%.1f", k / 1024 }') | ${per} | ${preheated} | ${active} | ${live} | ${expansions} |")
}

sleep 1
base_kb="$(status_kb VmRSS)"
row "start-up (tcp, 1 loop)" 0
connected=0
for target in "${tcp_phases[@]}"; do
  add=$((target - connected))
  "${loadtest_bin}" conn --transport tcp --target "127.0.0.1:${mqtt_port}" --clients "${add}" \
    --hold-secs 3600 --client-prefix "tl${target}" --topic-prefix "tl${target}" \
    --source-addrs 127.0.0.1-127.0.0.8 >"${work}/lt-${target}.log" 2>&1 &
  pids+=($!)
  wait_connections "${target}"
  connected="${target}"
  sleep 2 # let preheating finish its steps
  row "tcp, ${target} clients" "${target}"
done
if [ -n "${png}" ] && [ -n "${csv}" ]; then
  sleep 1
  python="${repo}/.venv/bin/python"
  [ -x "${python}" ] || python=python3
  "${python}" "${repo}/scripts/mem-plot" "${csv}" "${png}" \
    --title "Starling, 1 event loop: RSS, clients and pool while clients are added (scripts/mem-timeline.sh)" >&2
fi

sim_rows=()
for clients in "${sim_phases[@]}"; do
  "${loadtest_bin}" conn --transport sim --clients "${clients}" --threads 1 --json \
    >"${work}/sim-${clients}.json" 2>"${work}/sim-${clients}.log"
  sim_rows+=("$(python3 - "${work}/sim-${clients}.json" "${clients}" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
sim = report.get("sim") or {}
n = int(sys.argv[2])
mib = 1024 * 1024
lines = [line for shard in sim.get("expansions", []) for line in shard]
print(f"| sim, {n:,} clients (1 shard) | {sim.get('heap_loaded_bytes', 0) / mib:.1f} | "
      f"{sim.get('heap_bytes_per_client', 0):.0f} | {sim.get('rss_loaded_bytes', 0) / mib:.1f} | "
      f"{len(lines)} | {(lines[-1] if lines else '-')} |")
PY
)")
done

{
  echo "| Phase | Clients | RSS (MiB) | Peak RSS (MiB) | RSS per client over start-up (B) | Pool preheated | Active | Live | Expansions |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "| Simulated phase | Broker heap loaded (MiB) | Heap per client (B) | Process RSS loaded (MiB) | Expansions | Last expansion |"
  echo "|---|---:|---:|---:|---:|---|"
  printf '%s\n' "${sim_rows[@]}"
} >"${work}/table.md"
if [ "${output}" = "-" ]; then
  cat "${work}/table.md"
else
  cp "${work}/table.md" "${output}"
fi
