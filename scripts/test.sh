#!/usr/bin/env bash
# Runs every test Baton has: formatting, lints, the whole workspace's unit,
# model, integration and doc tests, then the short fault campaign against
# the docker-compose cluster (docs/campaign.md). The README's second command.
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
echo "== fault campaign (short, seed 1) on the compose cluster"
scripts/campaign short
