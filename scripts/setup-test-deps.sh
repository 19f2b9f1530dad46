#!/usr/bin/env bash
# Installs what the tests need beyond Rust: kcat (Debian) and a virtualenv
# with confluent-kafka (librdkafka) and kafka-python plus their compression
# codecs (PyPI), in target/test-venv. Idempotent; scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kcat >/dev/null 2>&1 || ! command -v iptables >/dev/null 2>&1; then
  echo "== installing kcat and iptables (the campaign's network faults)"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q kcat iptables
fi

venv=target/test-venv
stamp="$venv/.requirements"
if ! cmp -s scripts/clients/requirements.txt "$stamp" 2>/dev/null; then
  echo "== creating $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/clients/requirements.txt
  cp scripts/clients/requirements.txt "$stamp"
fi
