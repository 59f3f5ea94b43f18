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
