#!/usr/bin/env bash
# Lab mode in one command: builds verigate, starts the SMSC simulator,
# probes it with verigate (bind, submit, receipts) and shows what the handset
# received. The simulator then keeps running for your own probes (Ctrl-C
# stops it); pass --once to stop after the demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SMPP=${SMPP:-127.0.0.1:2775}
CONTROL=${CONTROL:-127.0.0.1:8775}
TO=${TO:-+447700900123}

cargo build --bins -q
bin="${CARGO_TARGET_DIR:-target}/debug"

"$bin/verigate-sim" smsc --listen "$SMPP" --control "$CONTROL" \
    --system-id verigate --password secret --dlr-delay-ms 200 >/dev/null &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -sf "http://$CONTROL/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "== verigate smpp probe against verigate-sim smsc at $SMPP"
"$bin/verigate" smpp probe --host "${SMPP%:*}" --port "${SMPP##*:}" \
    --system-id verigate --password secret --to "$TO" \
    --text "Your verigate code is 365882" --count 5 --wait-dlr 5

echo
echo "== what the handset $TO received (GET http://$CONTROL/inbox/${TO#+})"
curl -s "http://$CONTROL/inbox/${TO#+}" | python3 -m json.tool

if [ "${1:-}" = "--once" ]; then
    exit 0
fi
echo
echo "The simulator keeps running: SMPP $SMPP (system_id verigate, password secret),"
echo "control API http://$CONTROL (POST /mo, GET /inbox/{msisdn}, GET|PUT /faults, GET /stats)."
echo "Try: $bin/verigate smpp probe --host ${SMPP%:*} --port ${SMPP##*:} --system-id verigate --password secret --to $TO --count 100 --wait-dlr 5"
echo "Ctrl-C to stop."
wait $sim
