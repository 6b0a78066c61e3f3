#!/usr/bin/env bash
# Lab mode in one command: builds verigate and runs the daemon with
# conf/verigate.toml — embedded SQLite under ./var, the SMSC simulator started
# with it (SMPP 127.0.0.1:2775, control API http://127.0.0.1:8775), the HTTP
# API on http://127.0.0.1:8080 with API key `lab-key-change-me`.
# Ctrl-C (or SIGTERM) drains and stops it. Extra arguments go to `verigate run`
# (e.g. --set verify.code_length=8).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --bins -q
bin="${CARGO_TARGET_DIR:-target}/debug"
echo "verigate lab mode: API http://127.0.0.1:8080 (key lab-key-change-me), handset inbox http://127.0.0.1:8775/inbox/{msisdn}" >&2
exec "$bin/verigate" run --config conf/verigate.toml "$@"
