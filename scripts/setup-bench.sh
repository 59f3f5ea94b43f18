#!/usr/bin/env bash
# Installs the peers scripts/compare.sh measures Starling against, on a fresh machine:
# Mosquitto (the Debian package, which scripts/setup.sh installs too) and rumqttd, built by
# cargo into BENCH_TOOLS_DIR (default target/bench-tools; compare.sh looks there). Not part
# of scripts/setup.sh: building rumqttd takes minutes and only benchmark runs need it.
# Safe to run again: each step checks first. Set RUMQTTD to a binary of the right version
# to use that one instead.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${BENCH_TOOLS_DIR:-${root}/target/bench-tools}"
# The version the figures in docs/benchmarks.md were measured against.
rumqttd_version="0.20.0"

if ! command -v mosquitto >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-bench: mosquitto is missing; run this script as root (or apt-get install mosquitto)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
fi

# Whether $1 is a rumqttd binary of the wanted version.
is_wanted_rumqttd() {
  [ -x "$1" ] && [ "$("$1" --version 2>/dev/null)" = "rumqttd ${rumqttd_version}" ]
}

rumqttd="${RUMQTTD:-${tools}/bin/rumqttd}"
if is_wanted_rumqttd "${rumqttd}"; then
  echo "setup-bench: rumqttd ${rumqttd_version} is at ${rumqttd}"
  exit 0
fi
if [ -n "${RUMQTTD:-}" ]; then
  echo "setup-bench: RUMQTTD=${RUMQTTD} is not rumqttd ${rumqttd_version}" >&2
  exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup-bench: cargo is missing; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
# Without --locked: the crate's own lock file pins dependency versions that no longer build
# with current toolchains; cargo resolves compatible ones instead.
echo "setup-bench: building rumqttd ${rumqttd_version} into ${tools} (a few minutes)"
cargo install rumqttd --version "${rumqttd_version}" --root "${tools}"
is_wanted_rumqttd "${tools}/bin/rumqttd" || {
  echo "setup-bench: ${tools}/bin/rumqttd does not report version ${rumqttd_version}" >&2
  exit 1
}
echo "setup-bench: rumqttd ${rumqttd_version} is at ${tools}/bin/rumqttd"
