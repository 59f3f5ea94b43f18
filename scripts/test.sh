#!/usr/bin/env bash
# Runs every check and test of the workspace, installing what they need first.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== cargo test"
cargo test --workspace --locked

# Black-box MQTT 3.1.1 suite (tests/python, see tests/python/README.md) against the real
# `starling` binary, built here so the build shows in the log (the pytest fixture then finds
# it up to date).
echo "== cargo build --release -p starling (for the black-box suite)"
cargo build --release --locked -p starling --bin starling
echo "== pytest tests/python (MQTT_BROKER=starling)"
MQTT_BROKER=starling STARLING_SKIP_BUILD=1 .venv/bin/python -m pytest tests/python -q
