#!/usr/bin/env bash
# Installs what the tests need on a fresh machine (nothing installed by hand survives).
# Safe to run again: each step checks first.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "${component}"
  fi
done

# --- Black-box MQTT suite (tests/python) -------------------------------------------------
# Debian's Mosquitto is the reference broker the suite is validated against, and its
# mosquitto_pub/mosquitto_sub are interop peers. On some machines installing the package
# auto-starts a system mosquitto on port 1883; the tests never use 1883 (each test starts its
# own broker on a free ephemeral loopback port), so that service is left alone.
# prometheus brings promtool, which checks the broker's /metrics text (tests/python/
# test_monitoring.py); shellcheck checks the scripts in scripts/ (same test file).
# haproxy sits in front of a proxy_protocol listener in test_proxy_protocol.py (started by the
# test on its own ports; the system service the package may start is left alone).
# chromium is the browser of test_browser.py (MQTT.js over WebSocket in a real page): Debian's
# build, driven through playwright-core, which never downloads a browser of its own here.
# libnss3-tools brings certutil, with which that test makes Chromium trust its own test CA
# (an NSS database in the HOME it gives the browser) for wss://.
# Node.js runs the browser driver (tests/browser/run.mjs) and npm installs its packages: a
# machine may already have both from elsewhere (e.g. NodeSource's nodejs, which bundles npm,
# and which Debian's npm would conflict with), so Debian's nodejs and npm are added only when
# `node` or `npm` is missing. Debian's nodejs is 18: playwright-core is pinned at 1.61, its
# last release that runs on 18 (checked with bookworm's node 18.20).
# openssl makes the test CAs and certificates (TLS and wss tests, the load harness's TLS
# tests and scripts/bench-tls.sh): no key is ever committed.
apt_packages=(mosquitto mosquitto-clients prometheus shellcheck haproxy chromium libnss3-tools openssl)
command -v node >/dev/null 2>&1 || apt_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)
apt_missing=()
for pkg in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "install ok installed"; then
    apt_missing+=("${pkg}")
  fi
done
if [ "${#apt_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: Debian packages missing (${apt_missing[*]}); run this script as root" >&2
    exit 1
  fi
  echo "setup: installing ${apt_missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${apt_missing[@]}" >/dev/null
fi

# Python packages go into a virtualenv at .venv/ (gitignored), not the user site: it is
# isolated from whatever the machine's Python already has, is not refused by Debian's
# "externally managed" pip guard, and the test command names it exactly
# (.venv/bin/python -m pytest). A stamp of the requirements' hash makes re-runs a no-op; a
# venv whose interpreter no longer runs (machine changed) is rebuilt.
repo_root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${repo_root}/.venv"
requirements="${repo_root}/tests/python/requirements.txt"
stamp="${venv}/.requirements.sha256"
want="$(sha256sum "${requirements}" | cut -d' ' -f1)"
if [ -d "${venv}" ] && ! "${venv}/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "setup: ${venv} is broken; recreating it"
  rm -rf "${venv}"
fi
if [ ! -x "${venv}/bin/python" ]; then
  python="${PYTHON:-python3}"
  if ! "${python}" -m venv "${venv}" >/dev/null 2>&1; then
    # Debian's own python3 needs python3-venv for ensurepip.
    rm -rf "${venv}"
    if [ "$(id -u)" -eq 0 ] && ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "install ok installed"; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    "${python}" -m venv "${venv}"
  fi
fi
if [ "$(cat "${stamp}" 2>/dev/null)" != "${want}" ]; then
  echo "setup: installing tests/python/requirements.txt into .venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "${venv}/bin/python" -m pip install -q -r "${requirements}"
  echo "${want}" >"${stamp}"
fi
# matplotlib (scripts/mem-plot) builds its font cache on first import: do it here, once,
# rather than inside a timed test.
MPLBACKEND=Agg "${venv}/bin/python" -c 'import matplotlib.pyplot' >/dev/null 2>&1 || true

# --- Browser test (tests/browser, run by tests/python/test_browser.py) ---------------------
# MQTT.js and playwright-core, pinned by the committed package-lock.json, go into
# tests/browser/node_modules (gitignored) with `npm ci`, which installs exactly the lock.
# --ignore-scripts: no package may run an install script (none of the locked ones has one;
# playwright-core's browser download is a separate command this project never runs, and the
# test uses Debian's /usr/bin/chromium). A stamp of the lock's hash makes re-runs a no-op,
# like the venv's; npm ci starts from an empty node_modules, so the stamp is written after.
browser_dir="${repo_root}/tests/browser"
lock="${browser_dir}/package-lock.json"
npm_stamp="${browser_dir}/node_modules/.package-lock.sha256"
npm_want="$(sha256sum "${lock}" | cut -d' ' -f1)"
if [ "$(cat "${npm_stamp}" 2>/dev/null)" != "${npm_want}" ]; then
  echo "setup: npm ci in tests/browser"
  (cd "${browser_dir}" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  echo "${npm_want}" >"${npm_stamp}"
fi
