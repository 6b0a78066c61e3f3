#!/usr/bin/env bash
# API fuzzing: schemathesis (PyPI, pinned in requirements.txt) against the
# /openapi.json of a lab daemon on free ports. Fails on any 5xx, any answer
# that does not match the documented schema (body, content type, headers)
# and any status code the document does not list.
#
#   tests/api/schemathesis.sh [path/to/verigate]   # default: the debug build
#   ST_MAX_TIME=600 tests/api/schemathesis.sh       # longer run (default 120 s)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/verigate}
[ -x "$bin" ] || { echo "schemathesis.sh: no verigate binary at $bin (cargo build first)" >&2; exit 1; }

# The pinned schemathesis in its own venv, installed when missing.
venv="$here/.venv"
want=$(sed -n 's/^schemathesis==//p' "$here/requirements.txt")
have() { "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("schemathesis") == sys.argv[1] else 1)' "$want" 2>/dev/null; }
if ! { [ -x "$venv/bin/st" ] && have; }; then
    echo "schemathesis.sh: installing schemathesis $want in tests/api/.venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"
    have || { echo "schemathesis.sh: schemathesis $want could not be installed" >&2; exit 1; }
fi

# A lab daemon on free ports in a scratch directory; long polls end within
# 2 s so none outlives the request timeout.
work=$(mktemp -d)
daemon_pid=
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
sets=()
for s in api.listen=127.0.0.1:0 api.admin_listen=127.0.0.1:0 lab.smsc.listen=127.0.0.1:0 \
         lab.smsc.control=127.0.0.1:0 lab.switch.listen=127.0.0.1:0 lab.switch.control=127.0.0.1:0 \
         lab.bank.listen=127.0.0.1:0 sip.listen=127.0.0.1:0 mo_login.max_wait=2s; do
    sets+=(--set "$s")
done
(cd "$work" && exec "$bin" run --config "$root/conf/verigate.toml" "${sets[@]}" >banner.json 2>daemon.log) &
daemon_pid=$!
for _ in $(seq 100); do
    [ -s "$work/banner.json" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; echo "schemathesis.sh: the lab daemon did not start" >&2; exit 1; }
    sleep 0.1
done
api=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["api"])' "$work/banner.json")

echo "schemathesis.sh: fuzzing http://$api (lab daemon $bin) for ${ST_MAX_TIME:-120} s"
# From the scratch directory: schemathesis keeps its state (.schemathesis/) where it runs.
cd "$work"
"$venv/bin/st" run "http://$api/openapi.json" \
    --header "Authorization: Bearer lab-key-change-me" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-time "${ST_MAX_TIME:-120}" --workers 2 --request-timeout 15 \
    --continue-on-failure --generation-database none
