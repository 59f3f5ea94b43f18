#!/usr/bin/env bash
# Samples a running broker's memory every N seconds into CSV (what a `ps` loop would show,
# read from /proc): resident and peak RSS from /proc/PID/status, and from Starling's /metrics the
# connected clients and the connection pool (preheated, active, expansions; summed over
# event loops). Stops when the process exits, after --samples rows, or on Ctrl-C.
#
#   scripts/mem-monitor.sh --pid 1234 [--interval-secs 1] [--output mem.csv]
#   scripts/mem-monitor.sh --name starling --metrics-url http://127.0.0.1:9464/metrics
#
# Columns: time_unix_s, elapsed_s, rss_bytes, peak_rss_bytes, connections,
# pool_preheated_objects, pool_active_objects, pool_expansions. A metric the broker does not
# serve (another broker, or metrics_listen = "off") is left empty. Plot it with
# scripts/mem-plot. Linux only (reads /proc); scripts/mem-monitor.ps1 is the Windows one.
set -euo pipefail

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

pid=""
name=""
interval_secs=1
samples=0
output="-"
metrics_url="http://127.0.0.1:9464/metrics"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --pid) pid="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --interval-secs) interval_secs="$2"; shift 2 ;;
    --samples) samples="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    --metrics-url) metrics_url="$2"; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "mem-monitor: unknown argument: $1" >&2; usage 2 ;;
  esac
done

if [ -z "${pid}" ] && [ -n "${name}" ]; then
  pid="$(pgrep -o -x "${name}" || true)"
  if [ -z "${pid}" ]; then
    echo "mem-monitor: no process named ${name}" >&2
    exit 1
  fi
fi
if [ -z "${pid}" ]; then
  echo "mem-monitor: give --pid PID or --name NAME" >&2
  usage 2
fi
case "${interval_secs}${samples}" in
  *[!0-9.]*) echo "mem-monitor: --interval-secs and --samples take numbers" >&2; exit 2 ;;
esac
if [ ! -r "/proc/${pid}/status" ]; then
  echo "mem-monitor: no process ${pid} (or /proc is not readable)" >&2
  exit 1
fi

# /proc/PID/status field (kB) in bytes, or empty.
status_bytes() {
  awk -v field="$1:" '$1 == field { print $2 * 1024; exit }' "/proc/${pid}/status" 2>/dev/null || true
}

# The /metrics text: curl if installed, else bash's /dev/tcp (plain HTTP only).
fetch_metrics() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 2 "${metrics_url}" 2>/dev/null || true
    return
  fi
  local rest hostport host port path
  rest="${metrics_url#http://}"
  hostport="${rest%%/*}"
  path="/${rest#*/}"
  [ "${path}" = "/${rest}" ] && path="/metrics"
  host="${hostport%:*}"
  port="${hostport##*:}"
  {
    exec 3<>"/dev/tcp/${host}/${port}" &&
      printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "${path}" "${hostport}" >&3 &&
      timeout 2 cat <&3
    exec 3<&-
  } 2>/dev/null || true
}

# Sum of a metric over its label sets (empty if absent).
metric_sum() {
  awk -v name="$1" '
    index($0, name) == 1 {
      rest = substr($0, length(name) + 1)
      if (rest ~ /^[{ ]/) { sum += $NF; seen = 1 }
    }
    END { if (seen) printf "%.0f\n", sum }' <<<"$2"
}

write_row() {
  if [ "${output}" = "-" ]; then
    printf '%s\n' "$1"
  else
    printf '%s\n' "$1" >>"${output}"
  fi
}

header="time_unix_s,elapsed_s,rss_bytes,peak_rss_bytes,connections,pool_preheated_objects,pool_active_objects,pool_expansions"
if [ "${output}" != "-" ]; then
  : >"${output}"
fi
write_row "${header}"
start="$(date +%s.%N)"
taken=0
while [ -r "/proc/${pid}/status" ]; do
  now="$(date +%s.%N)"
  rss="$(status_bytes VmRSS)"
  peak="$(status_bytes VmHWM)"
  text="$(fetch_metrics)"
  connections="$(metric_sum starling_connections "${text}")"
  preheated="$(metric_sum starling_pool_preheated_objects "${text}")"
  active="$(metric_sum starling_pool_active_objects "${text}")"
  expansions="$(metric_sum starling_pool_expansions_total "${text}")"
  elapsed="$(awk -v a="${start}" -v b="${now}" 'BEGIN { printf "%.2f", b - a }')"
  write_row "$(printf '%.2f' "${now}"),${elapsed},${rss},${peak},${connections},${preheated},${active},${expansions}"
  taken=$((taken + 1))
  if [ "${samples}" -gt 0 ] && [ "${taken}" -ge "${samples}" ]; then
    break
  fi
  sleep "${interval_secs}"
done
