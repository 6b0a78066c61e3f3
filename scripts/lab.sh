#!/usr/bin/env bash
# Lab mode in one command: builds verigate and runs the daemon with
# conf/verigate.toml — embedded SQLite under ./var, the SMSC simulator started
# with it (SMPP 127.0.0.1:2775, control API http://127.0.0.1:8775), the SIP
# switch simulator (SIP 127.0.0.1:5080, control API http://127.0.0.1:8780), the HTTP
# API on http://127.0.0.1:8080 with API key `lab-key-change-me`.
# Ctrl-C (or SIGTERM) drains and stops it. Extra arguments go to `verigate run`
# (e.g. --set verify.code_length=8).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Cargo names the binaries it built, wherever its target directory is
# (CARGO_TARGET_DIR, build.target-dir); verigate finds verigate-sim next to it.
exe="$(cargo build --bins -q --message-format=json |
    grep -o '"executable":"[^"]*/verigate"' | head -n1 | cut -d'"' -f4)"
[ -x "$exe" ] || { echo "lab.sh: cargo built no verigate binary" >&2; exit 1; }
echo "verigate lab mode: API http://127.0.0.1:8080 (key lab-key-change-me), handset inbox http://127.0.0.1:8775/inbox/{msisdn}, handset calls http://127.0.0.1:8780/handsets/{msisdn}/calls" >&2
exec "$exe" run --config conf/verigate.toml "$@"
