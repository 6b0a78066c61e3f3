#!/usr/bin/env bash
# Decode a capture as SMPP with tshark and fail on anything Wireshark considers broken.
#
#   tests/interop/tshark_check.sh PCAP PORT [PORT...]
#
# Every PORT is decoded as SMPP (-d tcp.port==PORT,smpp); the SMPP-over-TCP
# heuristic is disabled so only those ports count. The check fails (exit 1)
#   - if any frame is flagged malformed (_ws.malformed) or carries an expert info
#     of severity "error" (the offending frames are printed, with the expert messages)
#   - if no SMPP PDU at all was decoded.
# Otherwise it prints the number of SMPP PDUs decoded (a frame may carry several)
# and a per-command breakdown, and exits 0. Exit 2 = usage / tshark problem.
#
# Note: Wireshark's SMPP dissector refuses PDUs whose command_id it does not know
# (e.g. the 0x000000AA probe of smsc.js --mode hostile); such a PDU shows up as
# undissected "Data", is neither counted nor flagged malformed.
#
# Capturing (see README.md / capture.sh):
#   tshark -i lo -f 'tcp port N' -w /tmp/x.pcapng -q 2>/tmp/x.log &  TSHARK_PID=$!
#   # wait until /tmp/x.log says "Capturing on", run the traffic, then
#   kill -INT "$TSHARK_PID"; wait "$TSHARK_PID"
set -u
set -o pipefail

usage() {
    echo "usage: $0 PCAP PORT [PORT...]" >&2
    exit 2
}

[ $# -ge 2 ] || usage
pcap=$1
shift
[ -r "$pcap" ] || { echo "tshark_check: cannot read capture '$pcap'" >&2; exit 2; }
command -v tshark >/dev/null 2>&1 || { echo "tshark_check: tshark not installed (run tests/interop/setup.sh)" >&2; exit 2; }

decode=()
for port in "$@"; do
    case $port in
        ''|*[!0-9]*) echo "tshark_check: bad port '$port'" >&2; exit 2 ;;
    esac
    decode+=(-d "tcp.port==$port,smpp")
done

errlog=$(mktemp)
trap 'rm -f "$errlog"' EXIT

# tshark writes a "Running as user root" warning to stderr; only show stderr when it fails.
run_tshark() {
    if ! tshark -n -2 -r "$pcap" --disable-heuristic smpp_tcp "${decode[@]}" "$@" 2>"$errlog"; then
        echo "tshark_check: tshark failed:" >&2
        grep -v 'Running as user' "$errlog" >&2
        exit 2
    fi
}

# Only the SMPP ports under test: the capture holds all loopback TCP, and
# other tests (some deliberately hostile) run at the same time.
ports_set=$(IFS=,; echo "$*")
bad_filter="tcp.port in {${ports_set}} && (_ws.malformed || _ws.expert.severity >= error)"

bad_frames=$(run_tshark -Y "$bad_filter" -T fields -e frame.number) || exit 2
if [ -n "$bad_frames" ]; then
    count=$(printf '%s\n' "$bad_frames" | wc -l)
    echo "tshark_check: FAIL: $count frame(s) malformed or with expert errors in $pcap:"
    run_tshark -Y "$bad_filter" || exit 2
    echo "--- expert details ---"
    run_tshark -Y "$bad_filter" -T fields -E separator=' | ' \
        -e frame.number -e _ws.col.Protocol -e _ws.col.Info -e _ws.expert.message || exit 2
    echo "--- full decode of the offending frames ---"
    run_tshark -Y "$bad_filter" -V -O smpp || exit 2
    exit 1
fi

# One line per frame; several PDUs in one frame come out comma-separated.
ids=$(run_tshark -Y smpp -T fields -E occurrence=a -E aggregator=, -e smpp.command_id) || exit 2
ids=$(printf '%s\n' "$ids" | tr ',' '\n' | sed '/^$/d')
total=$(printf '%s\n' "$ids" | sed '/^$/d' | wc -l)

if [ "$total" -eq 0 ]; then
    echo "tshark_check: FAIL: no SMPP PDUs decoded in $pcap (ports: $*)"
    exit 1
fi

name_of() {
    case $1 in
        0x80000000) echo generic_nack ;;
        0x00000001) echo bind_receiver ;;        0x80000001) echo bind_receiver_resp ;;
        0x00000002) echo bind_transmitter ;;     0x80000002) echo bind_transmitter_resp ;;
        0x00000003) echo query_sm ;;             0x80000003) echo query_sm_resp ;;
        0x00000004) echo submit_sm ;;            0x80000004) echo submit_sm_resp ;;
        0x00000005) echo deliver_sm ;;           0x80000005) echo deliver_sm_resp ;;
        0x00000006) echo unbind ;;               0x80000006) echo unbind_resp ;;
        0x00000007) echo replace_sm ;;           0x80000007) echo replace_sm_resp ;;
        0x00000008) echo cancel_sm ;;            0x80000008) echo cancel_sm_resp ;;
        0x00000009) echo bind_transceiver ;;     0x80000009) echo bind_transceiver_resp ;;
        0x0000000b) echo outbind ;;
        0x00000015) echo enquire_link ;;         0x80000015) echo enquire_link_resp ;;
        0x00000021) echo submit_multi ;;         0x80000021) echo submit_multi_resp ;;
        0x00000102) echo alert_notification ;;
        0x00000103) echo data_sm ;;              0x80000103) echo data_sm_resp ;;
        *) echo "$1" ;;
    esac
}

echo "tshark_check: OK: $total SMPP PDUs decoded in $pcap, none malformed"
printf '%s\n' "$ids" | tr 'A-F' 'a-f' | sort | uniq -c | sort -k2,2 | while read -r n id; do
    printf '  %6d  %s\n' "$n" "$(name_of "$id")"
done
exit 0
