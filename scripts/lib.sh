# Shared by the scripts that start processes (source it; not meant to run on its own).
# Expects `work` (a temp dir) and `pids` (an array of PIDs this script started).
# shellcheck shell=bash disable=SC2154

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
