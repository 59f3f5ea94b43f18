# Shared by the scripts that start processes (source it; not meant to run on its own).
# Expects `work` (a temp dir) and `pids` (an array of PIDs this script started).
# shellcheck shell=bash disable=SC2154,SC2034

# A loopback TCP port that was free a moment ago.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Stops only the PIDs this script started, then removes its temp dir.
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "${pid}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "${pid}" 2>/dev/null || true
  done
  rm -rf "${work}"
}

# Stops one PID this script started and drops it from `pids` (cleanup has nothing left to
# do for it).
stop_pid() {
  local stop=$1 kept=() each
  kill "${stop}" 2>/dev/null || true
  wait "${stop}" 2>/dev/null || true
  for each in "${pids[@]}"; do
    [[ "${each}" == "${stop}" ]] || kept+=("${each}")
  done
  pids=("${kept[@]}")
}

# Waits until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
  local port=$1
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:${port}" >&2
  return 1
}

# Builds the release broker and harness in ROOT unless SKIP_BUILD=1, and checks that
# Mosquitto (the peer of the comparison scripts) is installed.
prepare_comparison() {
  local root=$1
  if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "${root}" && cargo build --release -p starling -p starling-loadtest)
  fi
  command -v mosquitto >/dev/null || {
    echo "mosquitto is not installed (apt-get install mosquitto)" >&2
    exit 2
  }
}

# For the comparison scripts: the temp dir `work`, the results dir `results` (RESULTS_DIR,
# or one under `work`) and the list `pids`; on exit those PIDs are stopped and `work` goes.
open_workspace() {
  work="$(mktemp -d)"
  results="${RESULTS_DIR:-${work}/results}"
  mkdir -p "${results}"
  pids=()
  trap cleanup EXIT
}

# Splits a SCENARIO[:FLAGS] spec of the comparison scripts into `name` and `flags`.
split_spec() {
  name="${1%%:*}"
  flags=""
  if [[ "$1" == *:* ]]; then
    flags="${1#*:}"
  fi
}

# For the benchmark scripts: sets `results` to RESULTS_DIR, or ROOT/target/NAME/DATE-TIME, and
# creates it; a directory that is not empty is refused (a run never mixes its files with
# another's).
new_results_dir() {
  local root=$1 name=$2
  results="${RESULTS_DIR:-${root}/target/${name}/$(date +%Y%m%d-%H%M%S)}"
  if [[ -e "${results}" && -n "$(ls -A "${results}")" ]]; then
    echo "RESULTS_DIR=${results} is not empty: give a new directory" >&2
    exit 2
  fi
  mkdir -p "${results}"
}

# Exits 2 naming the first of TOOLS... that is not installed (HINT says how to install them).
require_tools() {
  local hint=$1 tool
  shift
  for tool in "$@"; do
    command -v "${tool}" >/dev/null || {
      echo "${tool} is not installed (${hint})" >&2
      exit 2
    }
  done
}
