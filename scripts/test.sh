#!/usr/bin/env bash
# Runs every test Baton has: formatting, lints, then the whole workspace's
# unit, model, integration and doc tests. The README's second command. The
# fault campaign (scripts/campaign, docs/campaign.md) is run on its own: its
# short run is not in CI while the anomaly it found (a paused leader's
# request finishing after its lease ended) is open.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== test dependencies (kcat, Python Kafka clients)"
scripts/setup-test-deps.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
